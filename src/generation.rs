//! The ruleset generation id of the calling thread's network namespace (`NFT_MSG_GETGEN`).
//!
//! The kernel bumps the id on every committed nf_tables batch in a namespace, whoever sends it;
//! listings, dry runs and failed batches leave it alone. One netlink request answers it, so a caller
//! can tell cheaply whether anyone changed the ruleset since it last looked.
//!
//! The socket is opened on first use by the thread that asks (a worker thread, which lives in its
//! instance's namespace, so the socket belongs to that namespace), kept in a thread-local and closed
//! when the thread exits. After an I/O error it is dropped and reopened by the next call.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use crate::error::NativeError;
use crate::netlink::{attributes, be32, u32_at, whole_messages, Socket, NFGENMSG_LEN, NLMSG_HDRLEN};

/// `NFNL_SUBSYS_NFTABLES` (linux/netfilter/nfnetlink.h).
const NFNL_SUBSYS_NFTABLES: u16 = 10;
/// `NFT_MSG_NEWGEN` / `NFT_MSG_GETGEN` (linux/netfilter/nf_tables.h).
const NFT_MSG_NEWGEN: u16 = 15;
const NFT_MSG_GETGEN: u16 = 16;
/// `NFTA_GEN_ID`: the generation, a big-endian u32.
const NFTA_GEN_ID: u16 = 1;
/// A reply is about 60 bytes; this leaves room for any attributes a future kernel adds.
const RECV_BUFFER: usize = 8192;
/// The kernel answers while it handles the request; this only bounds a pathological wait.
const RECV_TIMEOUT: Duration = Duration::from_secs(5);

thread_local! {
  static SOCKET: RefCell<Option<Socket>> = const { RefCell::new(None) };
  static SEQUENCE: Cell<u32> = const { Cell::new(0) };
}

/// Reads the generation id of the calling thread's network namespace.
pub fn read() -> Result<u32, NativeError> {
  let seq = SEQUENCE.with(|s| {
    let next = s.get().wrapping_add(1);
    s.set(next);
    next
  });
  SOCKET.with(|cell| {
    let mut cell = cell.borrow_mut();
    let socket = match cell.take() {
      Some(socket) => socket,
      None => Socket::with_timeout(RECV_TIMEOUT).map_err(|e| os_error(&e, "cannot open a netfilter netlink socket"))?,
    };
    let answer = query(&socket, seq);
    // A kernel refusal (EPERM) leaves the socket usable; an I/O failure might leave a late reply
    // queued, which the sequence check would skip anyway, but a fresh socket is simpler to trust.
    if !matches!(answer, Err(Failure::Io(_))) {
      *cell = Some(socket);
    }
    answer.map_err(|failure| match failure {
      Failure::Kernel(errno) => os_error(
        &std::io::Error::from_raw_os_error(errno),
        "cannot read the ruleset generation",
      ),
      Failure::Io(e) => os_error(&e, "cannot read the ruleset generation"),
      Failure::Malformed(what) => NativeError::binding("INTERNAL", format!("unexpected NFT_MSG_NEWGEN reply: {what}")),
    })
  })
}

#[derive(Debug)]
enum Failure {
  /// The kernel answered with this errno.
  Kernel(i32),
  Io(std::io::Error),
  Malformed(&'static str),
}

fn os_error(e: &std::io::Error, what: &str) -> NativeError {
  match e.raw_os_error() {
    Some(errno) => crate::error::from_errno(errno, format!("{what}: {e}")),
    None => NativeError::binding("INTERNAL", format!("{what}: {e}")),
  }
}

fn query(socket: &Socket, seq: u32) -> Result<u32, Failure> {
  socket.send(&request(seq)).map_err(Failure::Io)?;
  let mut buffer = vec![0u8; RECV_BUFFER];
  loop {
    let received = match socket.recv(&mut buffer) {
      Ok(Some(n)) => n,
      // The timeout passed with no answer: reported as the EAGAIN it is.
      Ok(None) => return Err(Failure::Io(std::io::Error::from_raw_os_error(libc::EAGAIN))),
      Err(e) => return Err(Failure::Io(e)),
    };
    if let Some(answer) = parse_reply(&buffer[..received], seq) {
      return answer;
    }
  }
}

/// `NFT_MSG_GETGEN` with sequence number `seq`: nlmsghdr + nfgenmsg (AF_UNSPEC, NFNETLINK_V0).
fn request(seq: u32) -> [u8; NLMSG_HDRLEN + NFGENMSG_LEN] {
  let mut message = [0u8; NLMSG_HDRLEN + NFGENMSG_LEN];
  message[0..4].copy_from_slice(&((NLMSG_HDRLEN + NFGENMSG_LEN) as u32).to_ne_bytes());
  message[4..6].copy_from_slice(&(NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETGEN).to_ne_bytes());
  message[6..8].copy_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
  message[8..12].copy_from_slice(&seq.to_ne_bytes());
  // pid 0 (the kernel assigns ours), family AF_UNSPEC, version NFNETLINK_V0, res_id 0.
  message
}

/// The answer to request `seq` in one datagram, or `None` if the datagram holds none (a stale reply).
fn parse_reply(datagram: &[u8], seq: u32) -> Option<Result<u32, Failure>> {
  let messages = match whole_messages(datagram) {
    Ok(messages) => messages,
    Err(what) => return Some(Err(Failure::Malformed(what))),
  };
  for message in messages.into_iter().filter(|m| m.seq == seq) {
    if message.kind == libc::NLMSG_ERROR as u16 {
      // struct nlmsgerr: a negative errno (0 for an acknowledgement), then the request's header.
      let Some(error) = u32_at(message.body, 0).map(|e| e as i32) else {
        return Some(Err(Failure::Malformed("short error message")));
      };
      return Some(match error {
        0 => Err(Failure::Malformed("an acknowledgement instead of the generation")),
        e => Err(Failure::Kernel(-e)),
      });
    }
    if message.kind != NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWGEN {
      continue;
    }
    return Some(generation_attribute(message.body).ok_or(Failure::Malformed("no NFTA_GEN_ID attribute")));
  }
  None
}

/// `NFTA_GEN_ID` of a NEWGEN message's body (after the netlink header).
fn generation_attribute(body: &[u8]) -> Option<u32> {
  let attrs = body.get(NFGENMSG_LEN..)?;
  attributes(attrs)
    .find(|&(kind, payload)| kind == NFTA_GEN_ID && payload.len() >= 4)
    .and_then(|(_, payload)| be32(payload))
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::netlink::u16_at;

  fn header(len: usize, kind: u16, seq: u32) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&(len as u32).to_ne_bytes());
    h.extend_from_slice(&kind.to_ne_bytes());
    h.extend_from_slice(&0u16.to_ne_bytes());
    h.extend_from_slice(&seq.to_ne_bytes());
    h.extend_from_slice(&0u32.to_ne_bytes());
    h
  }

  /// NEWGEN as the kernel sends it: id, then pid and a process name.
  fn newgen(seq: u32, id: u32) -> Vec<u8> {
    let mut body = vec![0, 0, 0, 0];
    body.extend_from_slice(&8u16.to_ne_bytes());
    body.extend_from_slice(&NFTA_GEN_ID.to_ne_bytes());
    body.extend_from_slice(&id.to_be_bytes());
    body.extend_from_slice(&8u16.to_ne_bytes());
    body.extend_from_slice(&2u16.to_ne_bytes());
    body.extend_from_slice(&1234u32.to_be_bytes());
    body.extend_from_slice(&9u16.to_ne_bytes());
    body.extend_from_slice(&3u16.to_ne_bytes());
    body.extend_from_slice(b"node\0\0\0\0");
    let mut m = header(
      NLMSG_HDRLEN + body.len(),
      NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWGEN,
      seq,
    );
    m.extend_from_slice(&body);
    m
  }

  fn error(seq: u32, errno: i32) -> Vec<u8> {
    let mut m = header(NLMSG_HDRLEN + 4 + NLMSG_HDRLEN, libc::NLMSG_ERROR as u16, seq);
    m.extend_from_slice(&(-errno).to_ne_bytes());
    m.extend_from_slice(&request(seq)[..NLMSG_HDRLEN]);
    m
  }

  #[test]
  fn the_request_is_a_getgen_of_the_nftables_subsystem() {
    let r = request(7);
    assert_eq!(u32_at(&r, 0), Some(20));
    assert_eq!(u16_at(&r, 4), Some(0x0a10));
    assert_eq!(u16_at(&r, 6), Some(libc::NLM_F_REQUEST as u16));
    assert_eq!(u32_at(&r, 8), Some(7));
    assert_eq!(&r[16..], &[0, 0, 0, 0]);
  }

  #[test]
  fn the_id_is_read_big_endian() {
    assert_eq!(parse_reply(&newgen(3, 0x0102_0304), 3).unwrap().unwrap(), 0x0102_0304);
  }

  #[test]
  fn replies_to_other_requests_are_skipped() {
    assert!(parse_reply(&newgen(2, 5), 3).is_none());
    let mut two = newgen(2, 5);
    two.extend_from_slice(&newgen(3, 6));
    assert_eq!(parse_reply(&two, 3).unwrap().unwrap(), 6);
  }

  #[test]
  fn a_kernel_error_carries_its_errno() {
    assert!(matches!(
      parse_reply(&error(4, libc::EPERM), 4),
      Some(Err(Failure::Kernel(libc::EPERM)))
    ));
  }

  #[test]
  fn truncated_or_incomplete_replies_are_malformed() {
    let whole = newgen(1, 9);
    let mut cut = whole.clone();
    cut.truncate(whole.len() - 4);
    assert!(matches!(parse_reply(&cut, 1), Some(Err(Failure::Malformed(_)))));
    let bare = header(NLMSG_HDRLEN + 4, NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWGEN, 1);
    let mut bare = bare;
    bare.extend_from_slice(&[0, 0, 0, 0]);
    assert!(matches!(parse_reply(&bare, 1), Some(Err(Failure::Malformed(_)))));
  }
}
