//! nfnetlink_log (NFNL_SUBSYS_ULOG): binding a log group in the calling thread's namespace and decoding
//! the packets `log group N` sends it — prefix, interfaces, and the L3/L4 header fields a person asks
//! about (addresses, protocol, ports, ICMP type) from the first bytes of the packet.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::netlink::{self, attribute, be16, be32, be64, string, NFGENMSG_LEN, NLMSG_HDRLEN};

const NFNL_SUBSYS_ULOG: u16 = 4;
const NFULNL_MSG_PACKET: u16 = 0;
const NFULNL_MSG_CONFIG: u16 = 1;
/// `NFULA_CFG_*` and `NFULNL_CFG_CMD_*`, `NFULNL_COPY_PACKET`.
const NFULA_CFG_CMD: u16 = 1;
const NFULA_CFG_MODE: u16 = 2;
const NFULA_CFG_NLBUFSIZ: u16 = 3;
const NFULA_CFG_TIMEOUT: u16 = 4;
const NFULA_CFG_QTHRESH: u16 = 5;
const CMD_BIND: u8 = 1;
const COPY_PACKET: u8 = 2;
/// `NFULA_*` of a packet.
const NFULA_PACKET_HDR: u16 = 1;
const NFULA_TIMESTAMP: u16 = 3;
const NFULA_IFINDEX_INDEV: u16 = 4;
const NFULA_IFINDEX_OUTDEV: u16 = 5;
const NFULA_IFINDEX_PHYSINDEV: u16 = 6;
const NFULA_IFINDEX_PHYSOUTDEV: u16 = 7;
const NFULA_PAYLOAD: u16 = 9;
const NFULA_PREFIX: u16 = 10;

/// How the group is bound.
pub struct Config {
  pub group: u16,
  /// Bytes of each packet copied (headers only).
  pub copy_range: u32,
  /// Kernel-side batching: flush after this many 1/100 s or this many packets, whichever comes first.
  pub timeout_cs: u32,
  pub qthresh: u32,
  pub nlbufsiz: u32,
}

fn config_message(group: u16, seq: u32, attrs: &[Vec<u8>]) -> Vec<u8> {
  let body: Vec<u8> = attrs.concat();
  let len = NLMSG_HDRLEN + NFGENMSG_LEN + body.len();
  let mut m = Vec::with_capacity(len);
  m.extend_from_slice(&(len as u32).to_ne_bytes());
  m.extend_from_slice(&(NFNL_SUBSYS_ULOG << 8 | NFULNL_MSG_CONFIG).to_ne_bytes());
  m.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16).to_ne_bytes());
  m.extend_from_slice(&seq.to_ne_bytes());
  m.extend_from_slice(&0u32.to_ne_bytes());
  m.extend_from_slice(&[libc::AF_UNSPEC as u8, 0]);
  m.extend_from_slice(&group.to_be_bytes());
  m.extend_from_slice(&body);
  m
}

fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
  let mut a = Vec::with_capacity(netlink::align4(4 + payload.len()));
  a.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
  a.extend_from_slice(&kind.to_ne_bytes());
  a.extend_from_slice(payload);
  a.resize(netlink::align4(a.len()), 0);
  a
}

/// The requests that bind `config.group` and set its copy mode and batching, one acknowledgement each.
pub fn bind_requests(config: &Config) -> Vec<Vec<u8>> {
  let mut mode = config.copy_range.to_be_bytes().to_vec();
  mode.extend_from_slice(&[COPY_PACKET, 0]);
  vec![
    config_message(config.group, 1, &[attr(NFULA_CFG_CMD, &[CMD_BIND])]),
    config_message(
      config.group,
      2,
      &[
        attr(NFULA_CFG_MODE, &mode),
        attr(NFULA_CFG_NLBUFSIZ, &config.nlbufsiz.to_be_bytes()),
        attr(NFULA_CFG_TIMEOUT, &config.timeout_cs.to_be_bytes()),
        attr(NFULA_CFG_QTHRESH, &config.qthresh.to_be_bytes()),
      ],
    ),
  ]
}

/// The errno of the acknowledgement of request `seq` in a datagram (`Some(0)`: accepted).
pub fn ack(datagram: &[u8], seq: u32) -> Option<i32> {
  netlink::messages(datagram)
    .find(|m| m.kind == libc::NLMSG_ERROR as u16 && m.seq == seq)
    .and_then(|m| netlink::u32_at(m.body, 0))
    .map(|e| -(e as i32))
}

/// One logged packet.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Packet {
  pub prefix: String,
  /// Ethertype of the frame (0x0800, 0x86dd, 0x0806, ...).
  pub ethertype: u16,
  /// Netfilter hook number (bridge: 0 prerouting, 4 postrouting).
  pub hook: u8,
  pub indev: Option<u32>,
  pub outdev: Option<u32>,
  pub physindev: Option<u32>,
  pub physoutdev: Option<u32>,
  /// Microseconds since the epoch when the kernel stamped the packet.
  pub timestamp_us: Option<u64>,
  pub family: Option<u8>,
  /// `tcp`, `udp`, `icmp`, `icmpv6`, `arp`, or the IP protocol number.
  pub protocol: Option<String>,
  pub src: Option<String>,
  pub dst: Option<String>,
  pub sport: Option<u16>,
  pub dport: Option<u16>,
  pub icmp_type: Option<u8>,
  pub icmp_code: Option<u8>,
}

/// The logged packets of one datagram.
pub fn decode(datagram: &[u8]) -> Vec<Packet> {
  netlink::messages(datagram)
    .filter(|m| m.kind == (NFNL_SUBSYS_ULOG << 8 | NFULNL_MSG_PACKET) && m.body.len() >= NFGENMSG_LEN)
    .map(|m| packet(&m.body[NFGENMSG_LEN..]))
    .collect()
}

fn packet(attrs: &[u8]) -> Packet {
  let index = |kind| attribute(attrs, kind).and_then(be32);
  let mut p = Packet {
    prefix: attribute(attrs, NFULA_PREFIX).map(string).unwrap_or_default(),
    indev: index(NFULA_IFINDEX_INDEV),
    outdev: index(NFULA_IFINDEX_OUTDEV),
    physindev: index(NFULA_IFINDEX_PHYSINDEV),
    physoutdev: index(NFULA_IFINDEX_PHYSOUTDEV),
    ..Packet::default()
  };
  if let Some(h) = attribute(attrs, NFULA_PACKET_HDR) {
    p.ethertype = be16(h).unwrap_or(0);
    p.hook = h.get(2).copied().unwrap_or(0);
  }
  if let Some(t) = attribute(attrs, NFULA_TIMESTAMP) {
    if let (Some(sec), Some(usec)) = (be64(t), t.get(8..).and_then(be64)) {
      p.timestamp_us = Some(sec.saturating_mul(1_000_000).saturating_add(usec));
    }
  }
  if let Some(payload) = attribute(attrs, NFULA_PAYLOAD) {
    headers(p.ethertype, payload, &mut p);
  }
  p
}

fn headers(ethertype: u16, l3: &[u8], p: &mut Packet) {
  let (proto, l4) = match ethertype {
    0x0800 if l3.len() >= 20 && l3[0] >> 4 == 4 => {
      let ihl = usize::from(l3[0] & 0x0f) * 4;
      p.family = Some(4);
      p.src = Some(Ipv4Addr::from(<[u8; 4]>::try_from(&l3[12..16]).unwrap_or_default()).to_string());
      p.dst = Some(Ipv4Addr::from(<[u8; 4]>::try_from(&l3[16..20]).unwrap_or_default()).to_string());
      let fragment_offset = be16(&l3[6..8]).unwrap_or(0) & 0x1fff;
      // Later fragments carry no L4 header.
      let l4 = if fragment_offset == 0 { l3.get(ihl..) } else { None };
      (l3[9], l4)
    }
    0x86dd if l3.len() >= 40 && l3[0] >> 4 == 6 => {
      p.family = Some(6);
      p.src = Some(Ipv6Addr::from(<[u8; 16]>::try_from(&l3[8..24]).unwrap_or_default()).to_string());
      p.dst = Some(Ipv6Addr::from(<[u8; 16]>::try_from(&l3[24..40]).unwrap_or_default()).to_string());
      let (mut next, mut at) = (l3[6], 40usize);
      // Hop-by-hop, routing, destination options: skip to the upper layer; a fragment header ends it.
      while matches!(next, 0 | 43 | 60) && at + 8 <= l3.len() {
        next = l3[at];
        at += (usize::from(l3[at + 1]) + 1) * 8;
      }
      (next, l3.get(at..))
    }
    0x0806 if l3.len() >= 28 => {
      p.protocol = Some("arp".into());
      if be16(&l3[2..4]) == Some(0x0800) && l3[4] == 6 && l3[5] == 4 {
        p.src = Some(Ipv4Addr::from(<[u8; 4]>::try_from(&l3[14..18]).unwrap_or_default()).to_string());
        p.dst = Some(Ipv4Addr::from(<[u8; 4]>::try_from(&l3[24..28]).unwrap_or_default()).to_string());
      }
      return;
    }
    _ => return,
  };
  p.protocol = Some(match proto {
    6 => "tcp".into(),
    17 => "udp".into(),
    1 => "icmp".into(),
    2 => "igmp".into(),
    58 => "icmpv6".into(),
    n => n.to_string(),
  });
  let Some(l4) = l4 else { return };
  match proto {
    6 | 17 if l4.len() >= 4 => {
      p.sport = be16(&l4[0..2]);
      p.dport = be16(&l4[2..4]);
    }
    1 | 58 if l4.len() >= 2 => {
      p.icmp_type = Some(l4[0]);
      p.icmp_code = Some(l4[1]);
    }
    _ => {}
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::netlink::build::{attr as a, message};

  fn logged(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut hdr = ethertype.to_be_bytes().to_vec();
    hdr.extend_from_slice(&[0, 0]);
    let mut ts = 1_700_000_000u64.to_be_bytes().to_vec();
    ts.extend_from_slice(&250_000u64.to_be_bytes());
    message(
      NFNL_SUBSYS_ULOG << 8,
      0,
      7,
      &[
        a(NFULA_PACKET_HDR, &hdr),
        a(NFULA_TIMESTAMP, &ts),
        a(NFULA_IFINDEX_PHYSINDEV, &5u32.to_be_bytes()),
        a(NFULA_PREFIX, b"nn:x:o:r:ssh\0"),
        a(NFULA_PAYLOAD, payload),
      ],
    )
  }

  #[test]
  fn an_ipv4_tcp_packet_names_addresses_and_ports() {
    let mut ip = vec![0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 2, 10, 0, 0, 1];
    ip.extend_from_slice(&[0xc3, 0x50, 0, 22, 0, 0, 0, 0]);
    let p = &decode(&logged(0x0800, &ip))[0];
    assert_eq!(p.prefix, "nn:x:o:r:ssh");
    assert_eq!((p.family, p.protocol.as_deref()), (Some(4), Some("tcp")));
    assert_eq!(
      (p.src.as_deref(), p.dst.as_deref()),
      (Some("10.0.0.2"), Some("10.0.0.1"))
    );
    assert_eq!((p.sport, p.dport, p.physindev), (Some(50000), Some(22), Some(5)));
    assert_eq!(p.timestamp_us, Some(1_700_000_000_250_000));
  }

  #[test]
  fn an_ipv6_icmp_packet_after_an_extension_header() {
    let mut ip = vec![0x60, 0, 0, 0, 0, 16, 0, 64];
    ip.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
    ip.extend_from_slice(&"fd00::1".parse::<Ipv6Addr>().unwrap().octets());
    ip.extend_from_slice(&[58, 0, 0, 0, 0, 0, 0, 0]); // hop-by-hop, then ICMPv6
    ip.extend_from_slice(&[128, 0, 0, 0]);
    let p = &decode(&logged(0x86dd, &ip))[0];
    assert_eq!((p.family, p.protocol.as_deref()), (Some(6), Some("icmpv6")));
    assert_eq!(
      (p.dst.as_deref(), p.icmp_type, p.icmp_code),
      (Some("fd00::1"), Some(128), Some(0))
    );
  }

  #[test]
  fn short_and_unknown_payloads_keep_what_is_known() {
    let p = &decode(&logged(0x0800, &[0x45, 0]))[0];
    assert_eq!((p.ethertype, p.src.as_deref()), (0x0800, None));
    let p = &decode(&logged(0x88cc, &[1, 2, 3]))[0];
    assert_eq!(p.protocol, None);
  }

  #[test]
  fn bind_requests_carry_the_group_and_the_ack_errno_is_read() {
    let r = bind_requests(&Config {
      group: 0x1234,
      copy_range: 128,
      timeout_cs: 5,
      qthresh: 64,
      nlbufsiz: 65536,
    });
    assert_eq!(&r[0][16..20], &[0, 0, 0x12, 0x34]);
    assert_eq!(netlink::u16_at(&r[0], 4), Some(0x0401));
    let mut e = message(libc::NLMSG_ERROR as u16, 0, 0, &[]);
    e[8..12].copy_from_slice(&1u32.to_ne_bytes());
    e[16..20].copy_from_slice(&(-libc::EBUSY).to_ne_bytes());
    assert_eq!(ack(&e, 1), Some(libc::EBUSY));
    assert_eq!(ack(&e, 2), None);
  }
}
