//! Committing a batch of nf_tables messages encoded by the caller, without libnftables (`commitBatch`).
//!
//! The caller (the TypeScript encoder) hands over the messages of one transaction; this module checks each
//! of them before anything is sent: a well-formed netlink message of the nf_tables subsystem, of one of the
//! few kinds a VM's chains need (a regular chain, a chain's flush, a rule, verdict-map elements added or
//! deleted) or a table's creation needs (the table itself, its base chains, its sets and maps; issue 14's
//! bulk sync into an absent table), in the bridge family, naming exactly the caller's table. Nothing else
//! can reach the kernel through here, whatever the buffer holds: nothing is ever deleted but rules (a
//! chain's flush) and elements, and no other table or family is touched. The messages are then wrapped in
//! a batch (begin, messages, end).
//!
//! Only the last message asks for an acknowledgement (as libnftables, which asks for none, the kernel
//! reports every refused message anyway): a bulk batch of tens of thousands of messages then costs one
//! acknowledgement, not one receive call per message. The kernel queues its answers in message order,
//! after a refusal of the batch as a whole, so once the last message's acknowledgement is read the outcome
//! is known: committed if no message and not the batch was refused, else the first refused message and
//! its errno. The receive buffer is sized for one refusal per message all the same (as libnftables sizes
//! it: 1 KiB a message), so a batch refused everywhere does not overflow it.
//!
//! The kernel handles a batch while `sendmsg` runs (netlink to the kernel is synchronous), so every
//! acknowledgement is queued by the time the send returns; the receive timeout only bounds a pathological
//! wait. The socket is opened on first use by the worker thread (so in its namespace), kept in a
//! thread-local and dropped after an I/O failure.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use crate::error::{from_errno, NativeError};
use crate::netlink::{align4, attributes, u16_at, u32_at, whole_messages, Socket, NFGENMSG_LEN, NLMSG_HDRLEN};

/// `NFNL_SUBSYS_NFTABLES` and the batch delimiters (linux/netfilter/nfnetlink.h).
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
/// The message kinds a batch may hold (linux/netfilter/nf_tables.h).
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_DELCHAIN: u16 = 5;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_DELRULE: u16 = 8;
const NFT_MSG_NEWSET: u16 = 9;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
/// The table attribute is type 1 in table (its name), chain, rule, set and element-list messages alike.
const NFTA_TABLE: u16 = 1;
/// `NFTA_TABLE_FLAGS`: a created table may carry none (no dormant table, no table owned by this socket,
/// which the kernel would delete when the socket closes).
const NFTA_TABLE_FLAGS: u16 = 2;
const NFPROTO_BRIDGE: u8 = 7;
/// Request flags a message may carry besides REQUEST and ACK (which are set here).
const ALLOWED_FLAGS: u16 = (libc::NLM_F_CREATE | libc::NLM_F_EXCL | libc::NLM_F_APPEND) as u16;
/// `NFT_NAME_MAXLEN` with its NUL.
const NAME_MAX: usize = 256;
/// Bounds well above a bulk sync's batch (1000 VMs x 50 rules: ~55,000 messages, ~15 MB); a larger buffer
/// is refused before anything is read into the socket.
const MAX_BYTES: usize = 128 << 20;
const MAX_MESSAGES: usize = 1_000_000;
const RECV_BUFFER: usize = 64 * 1024;
const RECV_TIMEOUT: Duration = Duration::from_secs(10);
/// Receive room per acknowledgement (its skb's true size, generously).
const ACK_ROOM: usize = 1024;

thread_local! {
  static SOCKET: RefCell<Option<Socket>> = const { RefCell::new(None) };
  static SEQUENCE: Cell<u32> = const { Cell::new(0) };
}

/// A refused buffer: nothing was sent.
fn refused(message: impl Into<String>) -> NativeError {
  NativeError::binding("BATCH_REFUSED", message)
}

/// The start and length of each message of `buffer`, after checking every one of them (see the module doc).
pub fn validate(buffer: &[u8], table: &str) -> Result<Vec<(usize, usize)>, NativeError> {
  if table.is_empty() || table.len() >= NAME_MAX || table.contains('\0') {
    return Err(refused("the table name must be 1-255 bytes without NUL"));
  }
  if buffer.is_empty() {
    return Err(refused("the batch has no messages"));
  }
  if buffer.len() > MAX_BYTES {
    return Err(refused(format!(
      "the batch is {} bytes (at most {MAX_BYTES})",
      buffer.len()
    )));
  }
  let mut wanted = table.as_bytes().to_vec();
  wanted.push(0);
  let mut spans = Vec::new();
  let mut at = 0;
  while at < buffer.len() {
    let index = spans.len();
    if index >= MAX_MESSAGES {
      return Err(refused(format!("more than {MAX_MESSAGES} messages")));
    }
    let bad = |what: &str| refused(format!("message {index}: {what}"));
    let len = u32_at(buffer, at).ok_or_else(|| bad("truncated header"))? as usize;
    if len < NLMSG_HDRLEN + NFGENMSG_LEN || len > buffer.len() - at {
      return Err(bad("length out of bounds"));
    }
    // The last message may end without its padding.
    let end = (at + align4(len)).min(buffer.len());
    if buffer[at + len..end].iter().any(|&b| b != 0) {
      return Err(bad("non-zero padding"));
    }
    let message = &buffer[at..at + len];
    let kind = u16_at(message, 4).ok_or_else(|| bad("truncated header"))?;
    let flags = u16_at(message, 6).ok_or_else(|| bad("truncated header"))?;
    if kind >> 8 != NFNL_SUBSYS_NFTABLES {
      return Err(bad("not an nf_tables message"));
    }
    let kind = kind & 0xff;
    if ![
      NFT_MSG_NEWTABLE,
      NFT_MSG_NEWCHAIN,
      NFT_MSG_DELCHAIN,
      NFT_MSG_NEWRULE,
      NFT_MSG_DELRULE,
      NFT_MSG_NEWSET,
      NFT_MSG_NEWSETELEM,
      NFT_MSG_DELSETELEM,
    ]
    .contains(&kind)
    {
      return Err(bad(&format!("message type {kind} is not allowed")));
    }
    if flags & !(ALLOWED_FLAGS | libc::NLM_F_REQUEST as u16 | libc::NLM_F_ACK as u16) != 0 {
      return Err(bad(&format!("flags {flags:#x} are not allowed")));
    }
    let header = &message[NLMSG_HDRLEN..NLMSG_HDRLEN + NFGENMSG_LEN];
    if header[0] != NFPROTO_BRIDGE || header[1] != 0 || header[2..4] != [0, 0] {
      return Err(bad("not a bridge-family nf_tables message"));
    }
    let attrs = &message[NLMSG_HDRLEN + NFGENMSG_LEN..];
    let mut walked = 0;
    let mut tables = 0;
    for (attr, payload) in attributes(attrs) {
      walked += align4(4 + payload.len());
      if attr == NFTA_TABLE {
        tables += 1;
        if payload != wanted.as_slice() {
          return Err(bad(&format!("names another table than {table}")));
        }
      }
      if kind == NFT_MSG_NEWTABLE && attr == NFTA_TABLE_FLAGS && payload.iter().any(|&b| b != 0) {
        return Err(bad("table flags are not allowed"));
      }
    }
    // The walk stops at the first malformed attribute; the last one may end without padding.
    if walked != attrs.len() && walked != align4(attrs.len()) {
      return Err(bad("malformed attributes"));
    }
    if tables != 1 {
      return Err(bad("must name its table exactly once"));
    }
    spans.push((at, len));
    at = end;
  }
  Ok(spans)
}

/// The datagram sent: begin, the messages (with REQUEST, the last one also with ACK, sequence numbers
/// `seq + 1 + i`, port 0), end (left out for a dry run: the kernel then checks the batch, answers and aborts).
fn datagram(buffer: &[u8], spans: &[(usize, usize)], seq: u32, dry_run: bool) -> Vec<u8> {
  let delimiter = |kind: u16, seq: u32| {
    let mut m = vec![0u8; NLMSG_HDRLEN + NFGENMSG_LEN];
    m[0..4].copy_from_slice(&((NLMSG_HDRLEN + NFGENMSG_LEN) as u32).to_ne_bytes());
    m[4..6].copy_from_slice(&kind.to_ne_bytes());
    m[6..8].copy_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    m[8..12].copy_from_slice(&seq.to_ne_bytes());
    // family AF_UNSPEC, version NFNETLINK_V0, res_id NFNL_SUBSYS_NFTABLES (big-endian).
    m[18..20].copy_from_slice(&NFNL_SUBSYS_NFTABLES.to_be_bytes());
    m
  };
  let mut out = Vec::with_capacity(buffer.len() + 2 * (NLMSG_HDRLEN + NFGENMSG_LEN) + 4 * spans.len());
  out.extend_from_slice(&delimiter(NFNL_MSG_BATCH_BEGIN, seq));
  for (i, &(at, len)) in spans.iter().enumerate() {
    let start = out.len();
    out.extend_from_slice(&buffer[at..at + len]);
    out.resize(start + align4(len), 0);
    let ack = if i + 1 == spans.len() {
      libc::NLM_F_ACK as u16
    } else {
      0
    };
    let flags = (u16_at(&out, start + 6).unwrap_or(0) & !(libc::NLM_F_ACK as u16)) | libc::NLM_F_REQUEST as u16 | ack;
    out[start + 6..start + 8].copy_from_slice(&flags.to_ne_bytes());
    out[start + 8..start + 12].copy_from_slice(&seq.wrapping_add(1 + i as u32).to_ne_bytes());
    out[start + 12..start + 16].copy_from_slice(&0u32.to_ne_bytes());
  }
  if !dry_run {
    out.extend_from_slice(&delimiter(NFNL_MSG_BATCH_END, seq.wrapping_add(1 + spans.len() as u32)));
  }
  out
}

#[derive(Debug, PartialEq)]
enum Failure {
  /// The kernel refused message `index` (None: the batch as a whole) with this errno.
  Kernel {
    errno: i32,
    index: Option<usize>,
  },
  Io(std::io::ErrorKind, Option<i32>),
  Malformed(&'static str),
}

/// What the answers to one batch say, read datagram by datagram: the first refused message, and whether the
/// last message's acknowledgement (the end of the answers) was read. `Some` once the outcome is known.
struct Acks {
  messages: usize,
  first_error: Option<(usize, i32)>,
}

impl Acks {
  fn new(messages: usize) -> Self {
    Self {
      messages,
      first_error: None,
    }
  }

  fn read(&mut self, datagram: &[u8], seq: u32) -> Option<Result<(), Failure>> {
    let messages = match whole_messages(datagram) {
      Ok(messages) => messages,
      Err(what) => return Some(Err(Failure::Malformed(what))),
    };
    let mut done = false;
    for message in messages {
      if message.kind != libc::NLMSG_ERROR as u16 {
        continue;
      }
      let Some(error) = u32_at(message.body, 0).map(|e| e as i32) else {
        return Some(Err(Failure::Malformed("short acknowledgement")));
      };
      let offset = message.seq.wrapping_sub(seq);
      if offset == 0 {
        // The batch itself (its begin message) was refused, or its commit failed.
        return Some(Err(Failure::Kernel {
          errno: -error,
          index: None,
        }));
      }
      let index = offset as usize - 1;
      if index >= self.messages {
        continue; // another request's
      }
      if error != 0 && self.first_error.is_none_or(|(i, _)| index < i) {
        self.first_error = Some((index, -error));
      }
      // The last message's answer comes last: everything the kernel had to say about the batch is read.
      done |= index + 1 == self.messages;
    }
    if !done {
      return None;
    }
    Some(match self.first_error {
      Some((index, errno)) => Err(Failure::Kernel {
        errno,
        index: Some(index),
      }),
      None => Ok(()),
    })
  }
}

fn next_sequence(messages: usize) -> u32 {
  SEQUENCE.with(|s| {
    let mut base = s.get().wrapping_add(1);
    // Keep the batch's numbers from wrapping past zero, so that offsets from `base` stay unique.
    if base.checked_add(messages as u32 + 2).is_none() {
      base = 1;
    }
    s.set(base.wrapping_add(messages as u32 + 1));
    base
  })
}

fn talk(socket: &Socket, datagram: &[u8], seq: u32, messages: usize) -> Result<(), Failure> {
  let io = |e: std::io::Error| Failure::Io(e.kind(), e.raw_os_error());
  socket
    .buffers(datagram.len() + 64 * 1024, (messages + 2) * ACK_ROOM + RECV_BUFFER)
    .map_err(io)?;
  socket.send(datagram).map_err(io)?;
  let mut acks = Acks::new(messages);
  let mut buffer = vec![0u8; RECV_BUFFER];
  loop {
    let Some(received) = socket.recv(&mut buffer).map_err(io)? else {
      return Err(Failure::Io(std::io::ErrorKind::TimedOut, Some(libc::ETIMEDOUT)));
    };
    if let Some(outcome) = acks.read(&buffer[..received], seq) {
      return outcome;
    }
  }
}

/// Validates and commits `buffer` (nf_tables messages of table `table`, bridge family) as one transaction.
pub fn commit(buffer: &[u8], table: &str, dry_run: bool) -> Result<(), NativeError> {
  let spans = validate(buffer, table)?;
  let seq = next_sequence(spans.len());
  let datagram = datagram(buffer, &spans, seq, dry_run);
  SOCKET.with(|cell| {
    let mut cell = cell.borrow_mut();
    let socket = match cell.take() {
      Some(socket) => socket,
      None => open().map_err(|e| io_error(&e, "cannot open a netfilter netlink socket"))?,
    };
    let outcome = talk(&socket, &datagram, seq, spans.len());
    if !matches!(outcome, Err(Failure::Io(..) | Failure::Malformed(_))) {
      *cell = Some(socket);
    }
    outcome.map_err(|failure| match failure {
      Failure::Kernel { errno, index } => {
        let e = std::io::Error::from_raw_os_error(errno);
        let mut error = match index {
          Some(i) => from_errno(errno, format!("Could not process message {i} of the batch: {e}")),
          None => from_errno(errno, format!("Could not process the batch: {e}")),
        };
        error.index = index.and_then(|i| u32::try_from(i).ok());
        error
      }
      Failure::Io(kind, Some(errno)) => from_errno(errno, format!("cannot commit the batch: {kind}")),
      Failure::Io(kind, None) => NativeError::binding("INTERNAL", format!("cannot commit the batch: {kind}")),
      Failure::Malformed(what) => NativeError::binding("INTERNAL", format!("unexpected acknowledgement: {what}")),
    })
  })
}

fn open() -> std::io::Result<Socket> {
  let socket = Socket::with_timeout(RECV_TIMEOUT)?;
  socket.cap_ack()?;
  Ok(socket)
}

fn io_error(e: &std::io::Error, what: &str) -> NativeError {
  match e.raw_os_error() {
    Some(errno) => from_errno(errno, format!("{what}: {e}")),
    None => NativeError::binding("INTERNAL", format!("{what}: {e}")),
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::netlink::build::{attr, message};

  const NESTED: u16 = 0x8000;

  fn rule(table: &str) -> Vec<u8> {
    let mut m = message(
      NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWRULE,
      0,
      NFPROTO_BRIDGE,
      &[attr(1, format!("{table}\0").as_bytes()), attr(2, b"c\0")],
    );
    m[6..8].copy_from_slice(&((libc::NLM_F_CREATE | libc::NLM_F_APPEND) as u16).to_ne_bytes());
    m
  }

  fn code(r: Result<Vec<(usize, usize)>, NativeError>) -> String {
    r.map(|_| String::new()).unwrap_or_else(|e| e.code + ": " + &e.message)
  }

  #[test]
  fn allowed_messages_of_the_table_pass() {
    let mut b = rule("t");
    b.extend(message(
      NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWCHAIN,
      0,
      NFPROTO_BRIDGE,
      &[attr(1, b"t\0"), attr(3, b"c\0")],
    ));
    let spans = validate(&b, "t").unwrap();
    assert_eq!(spans.len(), 2);
    assert_eq!(spans[1].0, rule("t").len());
  }

  #[test]
  fn another_table_or_family_or_kind_is_refused() {
    assert!(code(validate(&rule("other"), "t")).contains("names another table"));
    assert!(code(validate(&rule("t"), "tt")).contains("names another table"));
    assert!(code(validate(&rule("t"), "t\0")).starts_with("BATCH_REFUSED"));
    let mut inet = rule("t");
    inet[16] = 1;
    assert!(code(validate(&inet, "t")).contains("bridge-family"));
    let deltable = message(NFNL_SUBSYS_NFTABLES << 8 | 2, 0, NFPROTO_BRIDGE, &[attr(1, b"t\0")]);
    assert!(code(validate(&deltable, "t")).contains("type 2 is not allowed"));
    let ipset = message(6 << 8 | NFT_MSG_NEWRULE, 0, NFPROTO_BRIDGE, &[attr(1, b"t\0")]);
    assert!(code(validate(&ipset, "t")).contains("not an nf_tables message"));
  }

  #[test]
  fn a_table_named_twice_or_never_is_refused() {
    let twice = message(
      NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWRULE,
      0,
      NFPROTO_BRIDGE,
      &[attr(1, b"t\0"), attr(1, b"x\0")],
    );
    assert!(code(validate(&twice, "t")).contains("another table"));
    let twice_same = message(
      NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWRULE,
      0,
      NFPROTO_BRIDGE,
      &[attr(1, b"t\0"), attr(1, b"t\0")],
    );
    assert!(code(validate(&twice_same, "t")).contains("exactly once"));
    let never = message(
      NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWRULE,
      0,
      NFPROTO_BRIDGE,
      &[attr(2, b"c\0")],
    );
    assert!(code(validate(&never, "t")).contains("exactly once"));
  }

  #[test]
  fn malformed_buffers_are_refused() {
    let good = rule("t");
    assert!(code(validate(&[], "t")).contains("no messages"));
    assert!(code(validate(&good[..10], "t")).contains("length out of bounds"));
    let mut long = good.clone();
    long[0..4].copy_from_slice(&(good.len() as u32 + 8).to_ne_bytes());
    assert!(code(validate(&long, "t")).contains("length out of bounds"));
    let mut short = good.clone();
    short[0..4].copy_from_slice(&8u32.to_ne_bytes());
    assert!(code(validate(&short, "t")).contains("length out of bounds"));
    let mut attr_overrun = good.clone();
    attr_overrun[20..22].copy_from_slice(&200u16.to_ne_bytes());
    assert!(code(validate(&attr_overrun, "t")).starts_with("BATCH_REFUSED"));
    let mut flags = good.clone();
    flags[6..8].copy_from_slice(&(libc::NLM_F_DUMP as u16).to_ne_bytes());
    assert!(code(validate(&flags, "t")).contains("flags"));
    let mut trailing = good.clone();
    trailing.extend_from_slice(&[1, 2, 3]);
    assert!(code(validate(&trailing, "t")).starts_with("BATCH_REFUSED"));
  }

  #[test]
  fn the_datagram_wraps_the_messages_with_numbers_and_ack_requests() {
    let mut b = rule("t");
    b.extend(rule("t"));
    let spans = validate(&b, "t").unwrap();
    let d = datagram(&b, &spans, 100, false);
    assert_eq!(crate::netlink::messages(&datagram(&b, &spans, 100, true)).count(), 3);
    let all: Vec<_> = crate::netlink::messages(&d).collect();
    assert_eq!(all.len(), 4);
    assert_eq!((all[0].kind, all[0].seq), (NFNL_MSG_BATCH_BEGIN, 100));
    assert_eq!(all[0].body, &[0, 0, 0, 10]);
    assert_eq!((all[1].seq, all[2].seq, all[3].seq), (101, 102, 103));
    assert_eq!(all[3].kind, NFNL_MSG_BATCH_END);
    // Only the last message asks for an acknowledgement (one given by the caller is dropped elsewhere).
    let flags = |i: usize| u16_at(&d, 20 + i * rule("t").len() + 6).unwrap();
    assert_eq!(
      flags(0),
      (libc::NLM_F_REQUEST | libc::NLM_F_CREATE | libc::NLM_F_APPEND) as u16
    );
    assert_eq!(
      flags(1),
      (libc::NLM_F_REQUEST | libc::NLM_F_ACK | libc::NLM_F_CREATE | libc::NLM_F_APPEND) as u16
    );
    let mut acked = rule("t");
    acked[6..8].copy_from_slice(&((libc::NLM_F_CREATE | libc::NLM_F_ACK) as u16).to_ne_bytes());
    acked.extend(rule("t"));
    let spans = validate(&acked, "t").unwrap();
    let d = datagram(&acked, &spans, 100, false);
    assert_eq!(
      u16_at(&d, 20 + 6).unwrap(),
      (libc::NLM_F_REQUEST | libc::NLM_F_CREATE) as u16
    );
  }

  fn ack(seq: u32, errno: i32) -> Vec<u8> {
    let mut m = vec![0u8; NLMSG_HDRLEN + 4 + NLMSG_HDRLEN];
    let len = m.len() as u32;
    m[0..4].copy_from_slice(&len.to_ne_bytes());
    m[4..6].copy_from_slice(&(libc::NLMSG_ERROR as u16).to_ne_bytes());
    m[8..12].copy_from_slice(&seq.to_ne_bytes());
    m[16..20].copy_from_slice(&(-errno).to_ne_bytes());
    m
  }

  #[test]
  fn acknowledgements_give_the_outcome_and_the_first_refused_message() {
    // Three messages from sequence 11: refusals of 13 and 12 arrive, then the last one's (13) answer ends it.
    let mut acks = Acks::new(3);
    assert_eq!(acks.read(&ack(7, libc::EPERM), 10), None, "another request's");
    assert_eq!(
      acks.read(&ack(12, libc::EEXIST), 10),
      None,
      "not the last message's answer yet"
    );
    assert_eq!(
      acks.read(&ack(13, libc::ENOENT), 10),
      Some(Err(Failure::Kernel {
        errno: libc::EEXIST,
        index: Some(1)
      }))
    );
    // In one datagram, in any order: the lowest refused index is reported.
    let mut both = ack(13, libc::ENOENT);
    both.extend(ack(12, libc::EEXIST));
    assert_eq!(
      Acks::new(3).read(&both, 10),
      Some(Err(Failure::Kernel {
        errno: libc::EEXIST,
        index: Some(1)
      }))
    );
    let mut ok = Acks::new(1);
    assert_eq!(ok.read(&ack(21, 0), 20), Some(Ok(())));
    // Success answers of other messages (a caller's ACK flag) do not end the read.
    let mut many = Acks::new(3);
    assert_eq!(many.read(&ack(31, 0), 30), None);
    assert_eq!(many.read(&ack(33, 0), 30), Some(Ok(())));
    let mut whole = Acks::new(1);
    assert_eq!(
      whole.read(&ack(30, libc::EPERM), 30),
      Some(Err(Failure::Kernel {
        errno: libc::EPERM,
        index: None
      }))
    );
  }

  fn msg(kind: u16, attrs: &[Vec<u8>]) -> Vec<u8> {
    let mut m = message(NFNL_SUBSYS_NFTABLES << 8 | kind, 0, NFPROTO_BRIDGE, attrs);
    m[6..8].copy_from_slice(&(libc::NLM_F_CREATE as u16).to_ne_bytes());
    m
  }

  #[test]
  fn a_table_its_base_chains_and_its_sets_may_be_created() {
    let hook = attr(
      NESTED | 4,
      &[attr(1, &0u32.to_be_bytes()), attr(2, &(-150i32).to_be_bytes())].concat(),
    );
    let mut b = msg(NFT_MSG_NEWTABLE, &[attr(1, b"t\0"), attr(2, &[0; 4])]);
    b.extend(msg(
      NFT_MSG_NEWCHAIN,
      &[
        attr(1, b"t\0"),
        attr(3, b"prerouting\0"),
        attr(7, b"filter\0"),
        attr(5, &1u32.to_be_bytes()),
        hook.clone(),
      ],
    ));
    b.extend(msg(
      NFT_MSG_NEWSET,
      &[
        attr(1, b"t\0"),
        attr(2, b"from_vm\0"),
        attr(3, &8u32.to_be_bytes()),
        attr(10, &1u32.to_be_bytes()),
      ],
    ));
    assert_eq!(validate(&b, "t").unwrap().len(), 3);
    // The same kinds for another table, or in another family, are refused.
    for kind in [NFT_MSG_NEWTABLE, NFT_MSG_NEWCHAIN, NFT_MSG_NEWSET] {
      let other = msg(kind, &[attr(1, b"other\0"), attr(3, b"x\0")]);
      assert!(code(validate(&other, "t")).contains("names another table"), "{kind}");
      let mut inet = msg(kind, &[attr(1, b"t\0"), attr(3, b"x\0")]);
      inet[16] = 1;
      assert!(code(validate(&inet, "t")).contains("bridge-family"), "{kind}");
      let nameless = msg(kind, &[attr(3, b"x\0")]);
      assert!(code(validate(&nameless, "t")).contains("exactly once"), "{kind}");
    }
    let base_elsewhere = msg(NFT_MSG_NEWCHAIN, &[attr(1, b"u\0"), attr(3, b"c\0"), hook]);
    assert!(code(validate(&base_elsewhere, "t")).contains("names another table"));
    // A table created dormant or owned by this socket is refused; deleting one still is.
    let dormant = msg(NFT_MSG_NEWTABLE, &[attr(1, b"t\0"), attr(2, &1u32.to_be_bytes())]);
    assert!(code(validate(&dormant, "t")).contains("table flags"));
    for kind in [1u16, 2, 4, 11] {
      // GETTABLE, DELTABLE, GETCHAIN, DELSET
      let m = msg(kind, &[attr(1, b"t\0"), attr(2, b"x\0")]);
      assert!(
        code(validate(&m, "t")).contains(&format!("type {kind} is not allowed")),
        "{kind}"
      );
    }
  }
}
