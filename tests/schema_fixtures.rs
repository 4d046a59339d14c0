//! Every JSON fixture under `__test__/fixtures/json/` must deserialize into the `nftables` crate's
//! model of libnftables-json(5), so the TypeScript types and the fixtures stay consistent with it.

use std::fs;
use std::path::{Path, PathBuf};

fn fixture_dir() -> PathBuf {
  Path::new(env!("CARGO_MANIFEST_DIR")).join("__test__/fixtures/json")
}

fn fixtures() -> Vec<PathBuf> {
  let dir = fixture_dir();
  let mut files: Vec<PathBuf> = fs::read_dir(&dir)
    .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
    .map(|entry| entry.expect("directory entry").path())
    .filter(|p| p.extension().is_some_and(|ext| ext == "json"))
    .collect();
  files.sort();
  files
}

#[test]
fn fixtures_exist() {
  assert!(
    fixtures().len() >= 6,
    "expected at least 6 fixtures in {}",
    fixture_dir().display()
  );
}

#[test]
fn every_fixture_deserializes_into_the_crate_schema() {
  let mut failures = Vec::new();
  for path in fixtures() {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: cannot read: {e}"));
    match serde_json::from_str::<nftables::schema::Nftables>(&text) {
      Ok(doc) if doc.objects.is_empty() => failures.push(format!("{name}: empty nftables array")),
      Ok(_) => {}
      Err(e) => failures.push(format!("{name}: {e}")),
    }
  }
  assert!(
    failures.is_empty(),
    "fixtures rejected by nftables::schema::Nftables:\n{}",
    failures.join("\n")
  );
}

const COMMANDS: [&str; 9] = [
  "add", "create", "insert", "replace", "delete", "list", "reset", "flush", "rename",
];

/// Why an object is rejected: retried as the externally tagged enum it is meant to be, whose error
/// names the offending field (the untagged `NfObject` only says "did not match any variant").
fn explain(object: &serde_json::Value) -> String {
  let is_command = object
    .as_object()
    .is_some_and(|o| o.keys().any(|k| COMMANDS.contains(&k.as_str())));
  let error = if is_command {
    serde_json::from_value::<nftables::schema::NfCmd>(object.clone()).err()
  } else {
    serde_json::from_value::<nftables::schema::NfListObject>(object.clone()).err()
  };
  error.map_or_else(|| "rejected as NfObject".to_owned(), |e| e.to_string())
}

/// Each object on its own, so a failure names the exact command rather than the whole document
/// (serde's untagged enums otherwise report only "did not match any variant").
#[test]
fn every_object_deserializes_on_its_own() {
  let mut failures = Vec::new();
  for path in fixtures() {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: cannot read: {e}"));
    let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: invalid JSON: {e}"));
    let objects = value
      .get("nftables")
      .and_then(|v| v.as_array())
      .unwrap_or_else(|| panic!("{name}: no top-level `nftables` array"));
    for (i, object) in objects.iter().enumerate() {
      if serde_json::from_value::<nftables::schema::NfObject>(object.clone()).is_err() {
        failures.push(format!("{name}: nftables[{i}] = {object}: {}", explain(object)));
      }
    }
  }
  assert!(
    failures.is_empty(),
    "objects rejected by nftables::schema::NfObject:\n{}",
    failures.join("\n")
  );
}
