//! A NETLINK_NETFILTER socket (sending, and the one receive loop) and the attribute walking that decoding
//! its messages needs: the listeners of `monitor` and `nflog`, and the one-shot query of `generation`.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

pub const NLMSG_HDRLEN: usize = 16;
/// `struct nfgenmsg`: family, version, res_id.
pub const NFGENMSG_LEN: usize = 4;
/// `NLA_TYPE_MASK`: attribute type without the nested / byte-order flags.
const NLA_TYPE_MASK: u16 = 0x3fff;
/// `SOL_NETLINK` options (linux/netlink.h).
const NETLINK_ADD_MEMBERSHIP: libc::c_int = 1;
const NETLINK_NO_ENOBUFS: libc::c_int = 5;
const NETLINK_CAP_ACK: libc::c_int = 10;

pub struct Socket {
  fd: OwnedFd,
}

/// A new NETLINK_NETFILTER socket of the calling thread's network namespace (close-on-exec).
pub fn netfilter_socket() -> std::io::Result<OwnedFd> {
  // SAFETY: plain socket(2) call; the result is checked before use.
  let fd = unsafe {
    libc::socket(
      libc::AF_NETLINK,
      libc::SOCK_RAW | libc::SOCK_CLOEXEC,
      libc::NETLINK_NETFILTER,
    )
  };
  if fd < 0 {
    return Err(std::io::Error::last_os_error());
  }
  // SAFETY: `fd` is a freshly created descriptor that nothing else owns.
  Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// One netlink message of a datagram.
pub struct Message<'a> {
  pub kind: u16,
  pub seq: u32,
  pub port: u32,
  /// Everything after the netlink header.
  pub body: &'a [u8],
}

impl Socket {
  /// A NETLINK_NETFILTER socket of the calling thread's network namespace, whose receive calls wait at
  /// most `timeout` (so the owning thread can notice that it should stop) and whose buffer is `rcvbuf`.
  pub fn open(timeout: Duration, rcvbuf: usize) -> std::io::Result<Self> {
    let socket = Self::with_timeout(timeout)?;
    let size = libc::c_int::try_from(rcvbuf).unwrap_or(libc::c_int::MAX);
    // FORCE goes past net.core.rmem_max with CAP_NET_ADMIN; without it, the capped size is still fine.
    if socket.set(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &size).is_err() {
      socket.set(libc::SOL_SOCKET, libc::SO_RCVBUF, &size)?;
    }
    let address = kernel_address();
    // SAFETY: `address` is a valid sockaddr_nl of the size passed; the socket is open.
    let rc = unsafe {
      libc::bind(
        socket.fd.as_raw_fd(),
        (&address as *const libc::sockaddr_nl).cast(),
        std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
      )
    };
    if rc != 0 {
      return Err(std::io::Error::last_os_error());
    }
    Ok(socket)
  }

  /// A NETLINK_NETFILTER socket whose receive calls wait at most `timeout`, with the default buffer and
  /// no explicit bind (the first send binds it): enough for a request and its answer.
  pub fn with_timeout(timeout: Duration) -> std::io::Result<Self> {
    let socket = Self {
      fd: netfilter_socket()?,
    };
    let timeout = libc::timeval {
      tv_sec: timeout.as_secs() as libc::time_t,
      tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    socket.set(libc::SOL_SOCKET, libc::SO_RCVTIMEO, &timeout)?;
    Ok(socket)
  }

  fn set<T>(&self, level: libc::c_int, name: libc::c_int, value: &T) -> std::io::Result<()> {
    // SAFETY: `value` is a valid T whose size is passed with it; the socket is open.
    let rc = unsafe {
      libc::setsockopt(
        self.fd.as_raw_fd(),
        level,
        name,
        (value as *const T).cast(),
        std::mem::size_of::<T>() as libc::socklen_t,
      )
    };
    if rc != 0 {
      return Err(std::io::Error::last_os_error());
    }
    Ok(())
  }

  /// Joins multicast group `group` (e.g. NFNLGRP_NFTABLES).
  pub fn join(&self, group: u32) -> std::io::Result<()> {
    self.set(libc::SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group)
  }

  /// Keeps the kernel from reporting overruns as ENOBUFS (nfnetlink_log: drops are counted elsewhere).
  pub fn no_enobufs(&self) -> std::io::Result<()> {
    self.set(libc::SOL_NETLINK, NETLINK_NO_ENOBUFS, &1 as &libc::c_int)
  }

  /// Error acknowledgements carry only the failing request's header, not the whole request.
  pub fn cap_ack(&self) -> std::io::Result<()> {
    self.set(libc::SOL_NETLINK, NETLINK_CAP_ACK, &1 as &libc::c_int)
  }

  /// Makes room for one datagram of `bytes` to send and `rcv` bytes of replies (FORCE goes past the
  /// sysctl caps with CAP_NET_ADMIN; without it the capped sizes are tried).
  pub fn buffers(&self, snd: usize, rcv: usize) -> std::io::Result<()> {
    for (force, plain, bytes) in [
      (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, snd),
      (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, rcv),
    ] {
      let size = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
      if self.set(libc::SOL_SOCKET, force, &size).is_err() {
        self.set(libc::SOL_SOCKET, plain, &size)?;
      }
    }
    Ok(())
  }

  pub fn send(&self, message: &[u8]) -> std::io::Result<()> {
    let to = kernel_address();
    // SAFETY: `message` and `to` are valid for the lengths passed; the socket is open.
    let sent = unsafe {
      libc::sendto(
        self.fd.as_raw_fd(),
        message.as_ptr().cast(),
        message.len(),
        0,
        (&to as *const libc::sockaddr_nl).cast(),
        std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
      )
    };
    if sent < 0 {
      return Err(std::io::Error::last_os_error());
    }
    Ok(())
  }

  /// One datagram from the kernel into `buffer`: `Ok(None)` when the timeout passed first.
  pub fn recv(&self, buffer: &mut [u8]) -> std::io::Result<Option<usize>> {
    loop {
      let mut from = kernel_address();
      let mut from_len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
      // SAFETY: `buffer`, `from` and `from_len` are valid, writable and sized as passed.
      let received = unsafe {
        libc::recvfrom(
          self.fd.as_raw_fd(),
          buffer.as_mut_ptr().cast(),
          buffer.len(),
          0,
          (&mut from as *mut libc::sockaddr_nl).cast(),
          &mut from_len,
        )
      };
      if received < 0 {
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
          Some(libc::EINTR) => continue,
          Some(libc::EAGAIN) => return Ok(None),
          _ => return Err(e),
        }
      }
      if from.nl_pid != 0 {
        continue; // not from the kernel
      }
      return Ok(Some(received as usize));
    }
  }
}

fn kernel_address() -> libc::sockaddr_nl {
  // SAFETY: sockaddr_nl is plain data for which all-zero bytes are valid (pid 0 is the kernel).
  let mut address: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
  address.nl_family = libc::AF_NETLINK as libc::sa_family_t;
  address
}

pub fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
  Some(u16::from_ne_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

pub fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
  Some(u32::from_ne_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

pub fn be16(bytes: &[u8]) -> Option<u16> {
  Some(u16::from_be_bytes(bytes.get(..2)?.try_into().ok()?))
}

pub fn be32(bytes: &[u8]) -> Option<u32> {
  Some(u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?))
}

pub fn be64(bytes: &[u8]) -> Option<u64> {
  Some(u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?))
}

pub const fn align4(n: usize) -> usize {
  (n + 3) & !3
}

/// The messages of one datagram, each `Err` where a message's length runs past the datagram (or below a
/// header), after which the walk stops; bytes too few for a header end it cleanly.
fn walk(datagram: &[u8]) -> impl Iterator<Item = Result<Message<'_>, &'static str>> {
  let mut at = 0;
  let mut done = false;
  std::iter::from_fn(move || {
    if done || at + NLMSG_HDRLEN > datagram.len() {
      return None;
    }
    let len = u32_at(datagram, at)? as usize;
    if len < NLMSG_HDRLEN || at + len > datagram.len() {
      done = true;
      return Some(Err("truncated netlink message"));
    }
    let m = &datagram[at..at + len];
    at += align4(len);
    Some(Ok(Message {
      kind: u16_at(m, 4)?,
      seq: u32_at(m, 8)?,
      port: u32_at(m, 12)?,
      body: &m[NLMSG_HDRLEN..],
    }))
  })
}

/// The messages of one datagram; a truncated tail ends the walk (event streams: keep what arrived whole).
pub fn messages(datagram: &[u8]) -> impl Iterator<Item = Message<'_>> {
  walk(datagram).map_while(Result::ok)
}

/// The messages of one reply datagram, or the error when it holds a truncated one (replies to a request are
/// read whole or not trusted).
pub fn whole_messages(datagram: &[u8]) -> Result<Vec<Message<'_>>, &'static str> {
  walk(datagram).collect()
}

/// The attributes (type without flags, payload) of `bytes`; a malformed tail ends the walk.
pub fn attributes(bytes: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
  let mut at = 0;
  std::iter::from_fn(move || {
    let len = u16_at(bytes, at)? as usize;
    let kind = u16_at(bytes, at + 2)? & NLA_TYPE_MASK;
    if len < 4 || at + len > bytes.len() {
      return None;
    }
    let payload = &bytes[at + 4..at + len];
    at += align4(len);
    Some((kind, payload))
  })
}

/// The first attribute of type `kind`.
pub fn attribute(bytes: &[u8], kind: u16) -> Option<&[u8]> {
  attributes(bytes).find(|&(k, _)| k == kind).map(|(_, p)| p)
}

/// A NUL-terminated (or not) string attribute.
pub fn string(payload: &[u8]) -> String {
  let end = payload.iter().position(|&b| b == 0).unwrap_or(payload.len());
  String::from_utf8_lossy(&payload[..end]).into_owned()
}

#[cfg(test)]
pub mod build {
  //! Message builders for decoder tests.

  pub fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
    let mut a = Vec::new();
    a.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
    a.extend_from_slice(&kind.to_ne_bytes());
    a.extend_from_slice(payload);
    while a.len() % 4 != 0 {
      a.push(0);
    }
    a
  }

  pub fn message(kind: u16, port: u32, family: u8, attrs: &[Vec<u8>]) -> Vec<u8> {
    let body: Vec<u8> = attrs.concat();
    let mut m = Vec::new();
    m.extend_from_slice(&((16 + 4 + body.len()) as u32).to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&0u16.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&port.to_ne_bytes());
    m.extend_from_slice(&[family, 0, 0, 0]);
    m.extend_from_slice(&body);
    m
  }
}

#[cfg(test)]
mod tests {
  use super::build::*;
  use super::*;

  #[test]
  fn messages_and_attributes_are_walked_and_truncation_stops_the_walk() {
    let mut d = message(0x0a06, 7, 7, &[attr(1, b"t\0"), attr(2, b"chain\0")]);
    d.extend_from_slice(&message(0x0a0f, 9, 0, &[attr(1, &5u32.to_be_bytes())]));
    let all: Vec<_> = messages(&d).collect();
    assert_eq!(all.len(), 2);
    assert_eq!((all[0].kind, all[0].port), (0x0a06, 7));
    let attrs: Vec<_> = attributes(&all[0].body[NFGENMSG_LEN..]).collect();
    assert_eq!(string(attrs[1].1), "chain");
    assert_eq!(be32(attribute(&all[1].body[NFGENMSG_LEN..], 1).unwrap()), Some(5));
    d.truncate(d.len() - 2);
    assert_eq!(messages(&d).count(), 1);
  }
}
