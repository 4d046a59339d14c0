//! nf_tables change notifications (multicast group NFNLGRP_NFTABLES), decoded just enough to say what
//! changed: message type, family, table, chain / set / object name, rule comment, set element keys and
//! the chains they jump to, and the NFT_MSG_NEWGEN that closes each committed batch (its generation id
//! and the process that committed it).

use crate::netlink::{self, attribute, attributes, be32, be64, string, NFGENMSG_LEN};

/// `NFNLGRP_NFTABLES` (linux/netfilter/nfnetlink.h).
pub const NFNLGRP_NFTABLES: u32 = 7;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
/// `NFTA_GEN_*`.
const NFTA_GEN_ID: u16 = 1;
const NFTA_GEN_PROC_PID: u16 = 2;
const NFTA_GEN_PROC_NAME: u16 = 3;
/// `NFTA_SET_ELEM_LIST_ELEMENTS`, `NFTA_LIST_ELEM`, `NFTA_SET_ELEM_KEY` / `_DATA`, `NFTA_DATA_VALUE` /
/// `_VERDICT`, `NFTA_VERDICT_CHAIN`.
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CHAIN: u16 = 2;
/// `NFTA_RULE_HANDLE`, `NFTA_RULE_USERDATA`; udata TLV `NFTNL_UDATA_RULE_COMMENT`.
const NFTA_RULE_HANDLE: u16 = 3;
const NFTA_RULE_USERDATA: u16 = 7;
const UDATA_RULE_COMMENT: u8 = 0;
/// At most this many element keys are kept per message (a big map load is still one change).
const MAX_KEYS: usize = 64;

/// What one notification says.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Change {
  /// `newtable`, `deltable`, `newchain`, `delchain`, `newrule`, `delrule`, `newset`, `delset`,
  /// `newsetelem`, `delsetelem`, `newobj`, `delobj`, `newflowtable`, `delflowtable`.
  pub kind: &'static str,
  /// nfgenmsg family (7: bridge).
  pub family: u8,
  pub table: String,
  /// Chain of a chain or rule change.
  pub chain: Option<String>,
  /// Set, map, object or flowtable name.
  pub name: Option<String>,
  /// Rule comment (rule changes).
  pub comment: Option<String>,
  /// Rule handle.
  pub handle: Option<u64>,
  /// Element keys (set element changes; interface names as text, other keys as hex).
  pub keys: Vec<String>,
  /// Chains the elements jump to or go to (verdict maps).
  pub targets: Vec<String>,
  /// Port id of the socket that made the change.
  pub port: u32,
}

/// The NFT_MSG_NEWGEN that follows the notifications of one committed batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
  pub id: u32,
  pub pid: Option<u32>,
  pub process: Option<String>,
  pub port: u32,
}

#[derive(Debug, PartialEq)]
pub enum Notification {
  Change(Change),
  Generation(Generation),
}

fn kind_name(kind: u8) -> Option<&'static str> {
  Some(match kind {
    0 => "newtable",
    2 | 26 => "deltable",
    3 => "newchain",
    5 | 27 => "delchain",
    6 => "newrule",
    8 | 28 => "delrule",
    9 => "newset",
    11 | 29 => "delset",
    12 => "newsetelem",
    14 | 30 => "delsetelem",
    18 => "newobj",
    20 | 31 => "delobj",
    22 => "newflowtable",
    24 | 32 => "delflowtable",
    _ => return None,
  })
}

/// The nf_tables notifications of one datagram.
pub fn decode(datagram: &[u8]) -> Vec<Notification> {
  netlink::messages(datagram)
    .filter_map(|m| {
      if m.kind >> 8 != NFNL_SUBSYS_NFTABLES || m.body.len() < NFGENMSG_LEN {
        return None;
      }
      let family = m.body[0];
      let attrs = &m.body[NFGENMSG_LEN..];
      let kind = (m.kind & 0xff) as u8;
      if kind == 15 {
        return Some(Notification::Generation(Generation {
          id: be32(attribute(attrs, NFTA_GEN_ID)?)?,
          pid: attribute(attrs, NFTA_GEN_PROC_PID).and_then(be32),
          process: attribute(attrs, NFTA_GEN_PROC_NAME).map(string),
          port: m.port,
        }));
      }
      let mut change = Change {
        kind: kind_name(kind)?,
        family,
        port: m.port,
        ..Change::default()
      };
      // Attribute 1 is the table name in every object's message (NFTA_TABLE_NAME, NFTA_CHAIN_TABLE,
      // NFTA_RULE_TABLE, NFTA_SET_TABLE, NFTA_SET_ELEM_LIST_TABLE, NFTA_OBJ_TABLE, NFTA_FLOWTABLE_TABLE).
      change.table = attribute(attrs, 1).map(string).unwrap_or_default();
      match kind {
        3 | 5 | 27 => change.chain = attribute(attrs, 3).map(string),
        6 | 8 | 28 => {
          change.chain = attribute(attrs, 2).map(string);
          change.handle = attribute(attrs, NFTA_RULE_HANDLE).and_then(be64);
          change.comment = attribute(attrs, NFTA_RULE_USERDATA).and_then(comment);
        }
        9 | 11 | 29 | 18 | 20 | 31 | 22 | 24 | 32 => change.name = attribute(attrs, 2).map(string),
        12 | 14 | 30 => {
          change.name = attribute(attrs, 2).map(string);
          if let Some(list) = attribute(attrs, NFTA_SET_ELEM_LIST_ELEMENTS) {
            elements(list, &mut change);
          }
        }
        _ => {}
      }
      Some(Notification::Change(change))
    })
    .collect()
}

/// The comment TLV of a rule's user data.
fn comment(udata: &[u8]) -> Option<String> {
  let mut at = 0;
  while at + 2 <= udata.len() {
    let (kind, len) = (udata[at], udata[at + 1] as usize);
    let value = udata.get(at + 2..at + 2 + len)?;
    if kind == UDATA_RULE_COMMENT {
      return Some(string(value));
    }
    at += 2 + len;
  }
  None
}

fn elements(list: &[u8], change: &mut Change) {
  for (kind, element) in attributes(list) {
    if kind != NFTA_LIST_ELEM || change.keys.len() >= MAX_KEYS {
      continue;
    }
    if let Some(key) = attribute(element, NFTA_SET_ELEM_KEY).and_then(|k| attribute(k, NFTA_DATA_VALUE)) {
      change.keys.push(key_text(key));
    }
    let target = attribute(element, NFTA_SET_ELEM_DATA)
      .and_then(|d| attribute(d, NFTA_DATA_VERDICT))
      .and_then(|v| attribute(v, NFTA_VERDICT_CHAIN))
      .map(string);
    if let Some(target) = target {
      change.targets.push(target);
    }
  }
}

/// An interface name (printable bytes, NUL padded) as text, anything else as hex.
fn key_text(key: &[u8]) -> String {
  let end = key.iter().position(|&b| b == 0).unwrap_or(key.len());
  let (text, padding) = key.split_at(end);
  if !text.is_empty() && text.iter().all(|b| b.is_ascii_graphic()) && padding.iter().all(|&b| b == 0) {
    return String::from_utf8_lossy(text).into_owned();
  }
  key.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::netlink::build::{attr, message};

  const T: u16 = NFNL_SUBSYS_NFTABLES << 8;

  #[test]
  fn rules_chains_and_generations_are_decoded() {
    let mut udata = vec![UDATA_RULE_COMMENT, 8];
    udata.extend_from_slice(b"d:1:vm1\0");
    let mut d = message(
      T | 8,
      42,
      7,
      &[
        attr(1, b"infinization\0"),
        attr(2, b"vm_0123_o\0"),
        attr(3, &9u64.to_be_bytes()),
        attr(7, &udata),
      ],
    );
    d.extend_from_slice(&message(
      T | 5,
      42,
      7,
      &[attr(1, b"infinization\0"), attr(3, b"prerouting\0")],
    ));
    d.extend_from_slice(&message(
      T | 15,
      42,
      0,
      &[
        attr(1, &77u32.to_be_bytes()),
        attr(2, &1234u32.to_be_bytes()),
        attr(3, b"nft\0"),
      ],
    ));
    let n = decode(&d);
    let Notification::Change(rule) = &n[0] else { panic!() };
    assert_eq!(
      (rule.kind, rule.family, rule.table.as_str(), rule.chain.as_deref()),
      ("delrule", 7, "infinization", Some("vm_0123_o"))
    );
    assert_eq!((rule.handle, rule.comment.as_deref()), (Some(9), Some("d:1:vm1")));
    let Notification::Change(chain) = &n[1] else { panic!() };
    assert_eq!((chain.kind, chain.chain.as_deref()), ("delchain", Some("prerouting")));
    assert_eq!(
      n[2],
      Notification::Generation(Generation {
        id: 77,
        pid: Some(1234),
        process: Some("nft".into()),
        port: 42
      })
    );
  }

  #[test]
  fn verdict_map_elements_name_their_key_and_chain() {
    let mut ifname = b"vnet0".to_vec();
    ifname.resize(16, 0);
    let key = attr(NFTA_SET_ELEM_KEY | 0x8000, &attr(NFTA_DATA_VALUE, &ifname));
    let verdict = attr(
      NFTA_SET_ELEM_DATA | 0x8000,
      &attr(
        NFTA_DATA_VERDICT | 0x8000,
        &[attr(1, &(-3i32).to_be_bytes()), attr(NFTA_VERDICT_CHAIN, b"vm_ab_o\0")].concat(),
      ),
    );
    let element = attr(NFTA_LIST_ELEM | 0x8000, &[key, verdict].concat());
    let d = message(
      T | 14,
      1,
      7,
      &[attr(1, b"t\0"), attr(2, b"from_vm\0"), attr(3 | 0x8000, &element)],
    );
    let Notification::Change(c) = &decode(&d)[0] else {
      panic!()
    };
    assert_eq!((c.kind, c.name.as_deref()), ("delsetelem", Some("from_vm")));
    assert_eq!(
      (c.keys.clone(), c.targets.clone()),
      (vec!["vnet0".into()], vec!["vm_ab_o".into()])
    );
    assert_eq!(key_text(&[1, 2, 0xff]), "0102ff");
  }

  #[test]
  fn other_subsystems_and_unknown_types_are_ignored() {
    assert!(decode(&message(4 << 8, 1, 7, &[attr(1, b"t\0")])).is_empty());
    assert!(decode(&message(T | 17, 1, 7, &[attr(1, b"t\0")])).is_empty());
  }
}
