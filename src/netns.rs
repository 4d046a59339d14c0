//! Entering a network namespace on the current thread only.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

/// Where `ip netns add NAME` puts its bind mounts.
const NETNS_RUN_DIR: &str = "/var/run/netns";

/// Resolves `name` the way `ip netns exec` does: a bare name lives under /var/run/netns, anything
/// with a slash is a path (e.g. /proc/1234/ns/net).
pub fn resolve(name: &str) -> Result<PathBuf, String> {
  if name.is_empty() || name == "." || name == ".." || name.contains('\0') {
    return Err(format!("invalid network namespace name '{name}'"));
  }
  Ok(if name.contains('/') {
    PathBuf::from(name)
  } else {
    PathBuf::from(NETNS_RUN_DIR).join(name)
  })
}

/// Moves the calling thread (not the process) into the network namespace at `name`.
///
/// setns(2) with CLONE_NEWNET changes only the calling thread, so the worker thread that owns a
/// libnftables context enters the namespace and every netlink socket it opens belongs there, while
/// Node's own threads stay where they are.
pub fn enter(name: &str) -> Result<(), String> {
  let path = resolve(name)?;
  let file = File::open(&path).map_err(|e| format!("cannot open network namespace '{}': {e}", path.display()))?;
  // SAFETY: `file` is an open descriptor for the duration of the call; setns does not retain it.
  let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
  if rc != 0 {
    let e = std::io::Error::last_os_error();
    return Err(format!("cannot enter network namespace '{}': {e}", path.display()));
  }
  Ok(())
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn bare_names_live_under_the_run_dir() {
    assert_eq!(resolve("vm-test").unwrap(), PathBuf::from("/var/run/netns/vm-test"));
    assert_eq!(resolve("/proc/1/ns/net").unwrap(), PathBuf::from("/proc/1/ns/net"));
  }

  #[test]
  fn empty_and_dot_names_are_rejected() {
    assert!(resolve("").is_err());
    assert!(resolve("..").is_err());
  }

  #[test]
  fn a_missing_namespace_is_an_error() {
    let err = enter("nftables-node-no-such-netns").unwrap_err();
    assert!(err.contains("/var/run/netns/nftables-node-no-such-netns"), "{err}");
  }
}
