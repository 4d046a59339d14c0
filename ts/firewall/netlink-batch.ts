// The lean write (issue 15): the commands of a VM apply — its chains added and flushed, their rules, the dispatch
// elements added or deleted — lowered to the nf_tables netlink messages libnftables 1.0.6 sends for them, for
// `Nft.commitBatch` to send without libnftables' per-call cache refresh and parse. Pure: no I/O.
// Issue 14: also the table's creation, for a sync into an absent table (one bulk transaction): the table, its
// base chains, the layout's shared sets (with their elements), the guard's identity and tap sets, the dispatch
// maps, and the guard's rules (tap-set and identity lookups, the protocol dispatch through an anonymous verdict
// map, the dispatch through the named maps, jumps to the log chains).
// Issue 15: also the exact table (exact-table.ts): its maps, its lookups, and a VM's verdict-map elements, added
// with their comments or deleted by key.
//
// Exactness is the contract: every expression, register, implicit dependency and payload merge is the one
// libnftables emits for the same command (learnt from `nft --debug=netlink,mnl` and proven by listing the same
// rules added both ways, __test__/firewall/netlink-batch.wire.test.ts). Whatever is outside the forms spelt here
// makes `encodeBatch` return undefined and the caller writes through libnftables instead. Two differences, neither
// visible in a listing: libnftables also sends the set id its cache gave a set it looks up or adds elements to
// (NFTA_LOOKUP_SET_ID, NFTA_SET_ELEM_LIST_SET_ID; the kernel finds an existing set by name first), and
// libnftables 1.1 writes a port range as one `range` expression where 1.0.6 writes two compares (spelt here as
// 1.0.6 does; both list as the same range).
import { endianness } from 'node:os'
import { parseIPv4, parseIPv6 } from './address.js'
import { EXACT_SHAPES, type ExactField } from './exact-rules.js'
import { EXACT_FIELD_KEY, exactDefaultMap, exactMapName } from './exact-table.js'
import { BUILTIN_SETS, FAMILY, MAP_FROM_VM, MAP_TO_VM, SET_ID_IPV4, SET_ID_IPV6, SET_ID_MAC, SHARED_SETS, VM_SETS } from './layout.js'
import { FrozenListMemo } from './rule-identity.js'

// ---- netlink constants (linux/netlink.h, linux/netfilter/nf_tables.h) ----
const SUBSYS = 10 << 8
const MSG = { newtable: SUBSYS | 0, newchain: SUBSYS | 3, delchain: SUBSYS | 5, newrule: SUBSYS | 6, delrule: SUBSYS | 8, newset: SUBSYS | 9, newsetelem: SUBSYS | 12, delsetelem: SUBSYS | 14 }
const F_EXCL = 0x200
const F_CREATE = 0x400
const F_APPEND = 0x800
const NESTED = 0x8000
const NFPROTO_BRIDGE = 7
const BASE = { ll: 0, nh: 1, th: 2 } as const
type Base = (typeof BASE)[keyof typeof BASE]
const CMP = { '==': 0, '!=': 1, '<=': 3, '>=': 5 } as const
const META_PROTOCOL = 1
const META_IIFNAME = 6
const META_OIFNAME = 7
const META_L4PROTO = 16
const CT_STATE = 0
const VERDICT = { accept: 1, drop: 0, jump: -3 }
const LIMIT_UNIT: Record<string, number> = { second: 1, minute: 60, hour: 3600, day: 86400, week: 604800 }
/** NFTNL_UDATA_COMMENT_MAXLEN: libnftables refuses longer comments. */
const COMMENT_MAX = 128
/** NF_LOG_PREFIXLEN with its NUL. */
const LOG_PREFIX_MAX = 127
const IFNAMSIZ = 16
/** The strings libnftables takes verbatim (render.ts's quotable set). */
const QUOTABLE = /^[\x20\x21\x23-\x5b\x5d-\x7e]+$/
const IFNAME = /^[\x21\x23-\x29\x2b-\x5b\x5d-\x7e]{1,15}$/

const LITTLE = endianness() === 'LE'

/** A form this encoder does not spell exactly. */
class Unencodable extends Error {}
const fail = (): never => {
  throw new Unencodable()
}

// ---- attribute writer ----

/** The batch's bytes, written in place (a bulk sync is ~55,000 messages: no buffer per attribute). */
class Writer {
  buf: Buffer
  at = 0

  // One VM's apply is a few KiB (a bulk sync grows by doubling): no megabyte to allocate and collect per apply.
  constructor(size = 1 << 14) {
    this.buf = Buffer.allocUnsafe(size)
  }

  /** Bytes written before (an attribute or a nest, already padded). */
  raw(bytes: Buffer): void {
    this.room(bytes.length)
    bytes.copy(this.buf, this.at)
    this.at += bytes.length
  }

  room(n: number): void {
    if (this.at + n <= this.buf.length) return
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.at + n))
    this.buf.copy(next, 0, 0, this.at)
    this.buf = next
  }

  /** An attribute header at `at` (nla_len is 16 bits). */
  head(at: number, len: number, type: number): void {
    if (len > 0xffff) fail()
    if (LITTLE) {
      this.buf.writeUInt16LE(len, at)
      this.buf.writeUInt16LE(type, at + 2)
    } else {
      this.buf.writeUInt16BE(len, at)
      this.buf.writeUInt16BE(type, at + 2)
    }
  }

  pad(): void {
    while (this.at % 4) this.buf[this.at++] = 0
  }

  attr(type: number, payload: Buffer): void {
    this.room(payload.length + 8)
    this.head(this.at, 4 + payload.length, type)
    payload.copy(this.buf, this.at + 4)
    this.at += 4 + payload.length
    this.pad()
  }

  str(type: number, s: string): void {
    const n = Buffer.byteLength(s)
    this.room(n + 8)
    this.head(this.at, 5 + n, type)
    this.buf.write(s, this.at + 4)
    this.buf[this.at + 4 + n] = 0
    this.at += 5 + n
    this.pad()
  }

  be32(type: number, n: number): void {
    this.room(8)
    this.head(this.at, 8, type)
    this.buf.writeInt32BE(n | 0, this.at + 4)
    this.at += 8
  }

  be64(type: number, n: number): void {
    this.room(12)
    this.head(this.at, 12, type)
    this.buf.writeBigUInt64BE(BigInt(n), this.at + 4)
    this.at += 12
  }

  /** Starts a nest (or a message): its header is written by `end`. */
  begin(size = 4): number {
    this.room(size)
    const start = this.at
    this.at += size
    return start
  }

  end(start: number, type: number): void {
    this.head(start, this.at - start, type | NESTED)
  }
}

/** An attribute (or a message), written when the batch is. */
type Attr = (w: Writer) => void

const attr = (type: number, payload: Buffer): Attr => (w) => w.attr(type, payload)
const nest =
  (type: number, attrs: Attr[]): Attr =>
  (w) => {
    const start = w.begin()
    for (const a of attrs) a(w)
    w.end(start, type)
  }
const str = (type: number, s: string): Attr => (w) => w.str(type, s)
const be32 = (type: number, n: number): Attr => (w) => w.be32(type, n)
const be64 = (type: number, n: number): Attr => (w) => w.be64(type, n)
/** NFTA_DATA_VALUE inside a nest. */
const data =
  (type: number, value: Buffer): Attr =>
  (w) => {
    const start = w.begin()
    w.attr(1, value)
    w.end(start, type)
  }

/** Writes one message's header (port, sequence and flags the binding completes) and `nfgenmsg`, then `body`. */
function writeMessage(w: Writer, type: number, flags: number, body: (w: Writer) => void): void {
  const start = w.begin(20)
  w.buf.fill(0, start + 8, start + 20)
  w.buf[start + 16] = NFPROTO_BRIDGE
  body(w)
  const len = w.at - start
  if (LITTLE) {
    w.buf.writeUInt32LE(len, start)
    w.buf.writeUInt16LE(type, start + 4)
    w.buf.writeUInt16LE(flags, start + 6)
  } else {
    w.buf.writeUInt32BE(len, start)
    w.buf.writeUInt16BE(type, start + 4)
    w.buf.writeUInt16BE(flags, start + 6)
  }
}

function message(type: number, flags: number, attrs: Attr[]): Attr {
  return (w) =>
    writeMessage(w, type, flags, () => {
      for (const a of attrs) a(w)
    })
}

// ---- expressions (one nest each: name, then its data) ----

const REG1 = 1
const expr = (name: string, attrs: Attr[]): Attr => nest(1, [str(1, name), nest(2, attrs)])
const REG2 = 2
const payloadLoad = (base: Base, offset: number, len: number, reg = REG1): Attr => expr('payload', [be32(1, reg), be32(2, base), be32(3, offset), be32(4, len)])
const metaLoad = (key: number, reg = REG1): Attr => expr('meta', [be32(2, key), be32(1, reg)])
const cmp = (op: number, value: Buffer): Attr => expr('cmp', [be32(1, REG1), be32(2, op), data(3, value)])
const bitwise = (mask: Buffer): Attr =>
  expr('bitwise', [be32(1, REG1), be32(2, REG1), be32(6, 0), be32(3, mask.length), data(4, mask), data(5, Buffer.alloc(mask.length))])
const lookup = (set: string): Attr => expr('lookup', [be32(2, REG1), str(1, set)])
/** NFT_LOOKUP_F_INV: `!= @set`. */
const lookupInv = (set: string): Attr => expr('lookup', [be32(2, REG1), str(1, set), be32(5, 1)])
/** A verdict map's lookup (its data into the verdict register); `id`: a set of this batch found by its id. */
const vmapLookup = (set: string, id?: number): Attr => expr('lookup', [be32(2, REG1), be32(3, 0), str(1, set), ...(id === undefined ? [] : [be32(4, id)])])
const immediate = (code: number): Attr => expr('immediate', [be32(1, 0), nest(2, [nest(2, [be32(1, code)])])])
/** NFTA_VERDICT_CODE and NFTA_VERDICT_CHAIN of a jump (in an immediate or a map element's data). */
const jumpVerdict = (chain: string): Attr => nest(2, [be32(1, VERDICT.jump), str(2, chain)])
const immediateJump = (chain: string): Attr => expr('immediate', [be32(1, 0), nest(2, [jumpVerdict(chain)])])

// ---- the rule's statements, lowered ----

/** A lowered statement: a load-and-compare the merge pass may join, or finished expressions. */
type Low =
  | { k: 'pcmp'; base: Base; offset: number; value: Buffer; op: number; mergeable: boolean }
  | { k: 'exprs'; exprs: Attr[] }

interface Field {
  base: Base
  offset: number
  len: number
  /** The protocol the field belongs to (its dependency), and the value type. */
  proto: 'ether' | 'arp' | 'ip' | 'ip6' | 'tcp' | 'udp' | 'icmp' | 'icmpv6'
  type: 'mac' | 'ethertype' | 'ipv4' | 'ipv6' | 'port' | 'icmp_type' | 'icmpv6_type' | 'byte' | 'tcp_flags'
}

const FIELDS: Record<string, Field> = {
  'ether saddr': { base: BASE.ll, offset: 6, len: 6, proto: 'ether', type: 'mac' },
  'ether daddr': { base: BASE.ll, offset: 0, len: 6, proto: 'ether', type: 'mac' },
  'ether type': { base: BASE.ll, offset: 12, len: 2, proto: 'ether', type: 'ethertype' },
  'arp saddr ether': { base: BASE.nh, offset: 8, len: 6, proto: 'arp', type: 'mac' },
  'arp saddr ip': { base: BASE.nh, offset: 14, len: 4, proto: 'arp', type: 'ipv4' },
  'arp daddr ether': { base: BASE.nh, offset: 18, len: 6, proto: 'arp', type: 'mac' },
  'arp daddr ip': { base: BASE.nh, offset: 24, len: 4, proto: 'arp', type: 'ipv4' },
  'ip saddr': { base: BASE.nh, offset: 12, len: 4, proto: 'ip', type: 'ipv4' },
  'ip daddr': { base: BASE.nh, offset: 16, len: 4, proto: 'ip', type: 'ipv4' },
  'ip6 saddr': { base: BASE.nh, offset: 8, len: 16, proto: 'ip6', type: 'ipv6' },
  'ip6 daddr': { base: BASE.nh, offset: 24, len: 16, proto: 'ip6', type: 'ipv6' },
  'tcp sport': { base: BASE.th, offset: 0, len: 2, proto: 'tcp', type: 'port' },
  'tcp dport': { base: BASE.th, offset: 2, len: 2, proto: 'tcp', type: 'port' },
  'tcp flags': { base: BASE.th, offset: 13, len: 1, proto: 'tcp', type: 'tcp_flags' },
  'udp sport': { base: BASE.th, offset: 0, len: 2, proto: 'udp', type: 'port' },
  'udp dport': { base: BASE.th, offset: 2, len: 2, proto: 'udp', type: 'port' },
  'icmp type': { base: BASE.th, offset: 0, len: 1, proto: 'icmp', type: 'icmp_type' },
  'icmp code': { base: BASE.th, offset: 1, len: 1, proto: 'icmp', type: 'byte' },
  'icmpv6 type': { base: BASE.th, offset: 0, len: 1, proto: 'icmpv6', type: 'icmpv6_type' },
  'icmpv6 code': { base: BASE.th, offset: 1, len: 1, proto: 'icmpv6', type: 'byte' },
}

const ETHERTYPES: Record<string, number> = { ip: 0x0800, arp: 0x0806, ip6: 0x86dd, '8021q': 0x8100, '8021ad': 0x88a8 }
const NET_OF_ETHERTYPE: Record<number, Net> = { 0x0800: 'ip', 0x0806: 'arp', 0x86dd: 'ip6' }
const L4: Record<string, number> = { icmp: 1, tcp: 6, udp: 17, 'ipv6-icmp': 58 }
const L4_OF: Record<string, number> = { tcp: 6, udp: 17, icmp: 1, icmpv6: 58 }
const ICMP_TYPES: Record<string, number> = { 'echo-reply': 0, 'destination-unreachable': 3, 'echo-request': 8, 'time-exceeded': 11 }
const ICMPV6_TYPES: Record<string, number> = {
  'destination-unreachable': 1,
  'packet-too-big': 2,
  'time-exceeded': 3,
  'echo-request': 128,
  'echo-reply': 129,
  'mld-listener-query': 130,
  'mld-listener-report': 131,
  'mld-listener-done': 132,
  'nd-router-solicit': 133,
  'nd-router-advert': 134,
  'nd-neighbor-solicit': 135,
  'nd-neighbor-advert': 136,
  'nd-redirect': 137,
  'mld2-listener-report': 143,
}
const TCP_FLAGS: Record<string, number> = { fin: 1, syn: 2, rst: 4, psh: 8, ack: 16, urg: 32, ecn: 64, cwr: 128 }
const CT_STATES: Record<string, number> = { invalid: 1, established: 2, related: 4, new: 8, untracked: 64 }
/** The value type of each shared set's elements, for lookups (libnftables refuses a lookup of another type). */
const SET_TYPES: Record<string, string> = Object.fromEntries(SHARED_SETS.map((s) => [s.name, s.type]))
const LOOKUP_TYPE: Partial<Record<Field['type'], string>> = { ethertype: 'ether_type', icmp_type: 'icmp_type', icmpv6_type: 'icmpv6_type' }
/** The field type each identity set's second component holds (its first is the interface). */
const ID_SET_FIELD: Record<string, Field['type']> = { [SET_ID_MAC]: 'mac', [SET_ID_IPV4]: 'ipv4', [SET_ID_IPV6]: 'ipv6' }

type Net = 'ip' | 'ip6' | 'arp'

/** What the rule has established so far about the packet (libnftables' protocol context), and the batch it
 *  is encoded into (an anonymous map the rule needs goes before it). */
interface Ctx {
  net?: Net
  l4?: number
  batch: Batch
}

/** One batch being encoded: the set ids given so far (each set this batch creates has one, as libnftables
 *  numbers them), and the messages that must precede the rule being encoded. */
interface Batch {
  table: string
  setId: number
  pre: Attr[]
}

const u8 = (n: unknown, max = 255): Buffer => (typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= max ? Buffer.from([n]) : fail())
const u16be = (n: unknown): Buffer => {
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > 0xffff) return fail()
  const b = Buffer.alloc(2)
  b.writeUInt16BE(n, 0)
  return b
}
const mac = (s: unknown): Buffer => {
  if (typeof s !== 'string' || !/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(s)) return fail()
  return Buffer.from(s.split(':').map((x) => parseInt(x, 16)))
}
const name = (table: Record<string, number>, v: unknown): number => (typeof v === 'string' && Object.hasOwn(table, v) ? table[v]! : fail())
const ipv4 = (v: unknown): Buffer => (typeof v === 'string' ? Buffer.from(parseIPv4(v) ?? fail()) : fail())
/** An IPv6 address without an embedded IPv4 tail (libnftables prints and may parse those its own way). */
const ipv6 = (v: unknown): Buffer => (typeof v === 'string' && !v.includes('.') ? Buffer.from(parseIPv6(v) ?? fail()) : fail())

/** The bytes of a constant of the field's type. */
function constant(f: Field, v: unknown): Buffer {
  switch (f.type) {
    case 'mac':
      return mac(v)
    case 'ethertype':
      return u16be(name(ETHERTYPES, v))
    case 'ipv4':
      return ipv4(v)
    case 'ipv6':
      return ipv6(v)
    case 'port':
      return u16be(v)
    case 'icmp_type':
      return u8(name(ICMP_TYPES, v))
    case 'icmpv6_type':
      return u8(name(ICMPV6_TYPES, v))
    case 'byte':
      return u8(v)
    default:
      return fail()
  }
}

function field(left: unknown): Field {
  const p = (left as { payload?: { protocol?: unknown; field?: unknown } }).payload
  if (!p || typeof p.protocol !== 'string' || typeof p.field !== 'string' || Object.keys(left as object).length !== 1) return fail()
  const key = `${p.protocol} ${p.field}`
  return Object.hasOwn(FIELDS, key) ? FIELDS[key]! : fail()
}

/** The implicit dependencies libnftables puts in front of a load of `f` (bridge family), given `ctx`. */
function dependencies(f: Field, ctx: Ctx, out: Low[]): void {
  const netDep = (net: Net, how: 'meta' | 'ether'): void => {
    if (ctx.net === net) return
    if (ctx.net !== undefined) fail()
    const value = u16be(net === 'ip' ? 0x0800 : net === 'ip6' ? 0x86dd : 0x0806)
    if (how === 'meta') out.push({ k: 'exprs', exprs: [metaLoad(META_PROTOCOL), cmp(CMP['=='], value)] })
    else out.push({ k: 'pcmp', base: BASE.ll, offset: 12, value, op: CMP['=='], mergeable: true })
    ctx.net = net
  }
  switch (f.proto) {
    case 'ether':
      return
    case 'arp':
      return netDep('arp', 'ether')
    case 'ip':
    case 'ip6':
      return netDep(f.proto, 'meta')
    default: {
      const l4 = L4_OF[f.proto]!
      if (ctx.l4 === l4) return
      if (ctx.l4 !== undefined) fail()
      // tcp/udp loads always follow the compiler's own `meta l4proto`; the rest is not spelt here.
      if (f.proto !== 'icmp' && f.proto !== 'icmpv6') fail()
      netDep(f.proto === 'icmp' ? 'ip' : 'ip6', 'ether')
      out.push({ k: 'exprs', exprs: [metaLoad(META_L4PROTO), cmp(CMP['=='], Buffer.from([l4]))] })
      ctx.l4 = l4
    }
  }
}

function setName(v: unknown): string | undefined {
  return typeof v === 'string' && v.startsWith('@') ? v.slice(1) : undefined
}

function lowerMatch(m: { op?: unknown; left?: unknown; right?: unknown }, ctx: Ctx, out: Low[]): void {
  const op = m.op ?? '=='
  const { left, right } = m
  if (left === null || typeof left !== 'object') return fail()
  const l = left as Record<string, unknown>
  if ('meta' in l) {
    const key = (l.meta as { key?: unknown }).key
    const set = setName(right)
    if (key === 'iifname' || key === 'oifname') {
      // `iifname @b_arp`: the interface among one of the guard's tap sets.
      if (op !== '==' || set === undefined || !BUILTIN_SETS.has(set)) return fail()
      out.push({ k: 'exprs', exprs: [metaLoad(key === 'iifname' ? META_IIFNAME : META_OIFNAME), lookup(set)] })
      return
    }
    if (key === 'l4proto') {
      if (set !== undefined) {
        if (op !== '==' || SET_TYPES[set] !== 'inet_proto') return fail()
        out.push({ k: 'exprs', exprs: [metaLoad(META_L4PROTO), lookup(set)] })
        return
      }
      if (op !== '==' && op !== '!=') return fail()
      const proto = name(L4, right)
      out.push({ k: 'exprs', exprs: [metaLoad(META_L4PROTO), cmp(CMP[op], Buffer.from([proto]))] })
      if (op === '==') ctx.l4 = proto
      return
    }
    if (key === 'protocol') {
      if (op !== '==' && op !== '!=') return fail()
      const type = name(ETHERTYPES, right)
      out.push({ k: 'exprs', exprs: [metaLoad(META_PROTOCOL), cmp(CMP[op], u16be(type))] })
      if (op === '==') {
        if (ctx.net !== undefined && ctx.net !== NET_OF_ETHERTYPE[type]) fail()
        ctx.net = NET_OF_ETHERTYPE[type] ?? fail()
      }
      return
    }
    return fail()
  }
  if ('concat' in l) {
    // `iifname . ip saddr != @id_ipv4`: the interface (16 bytes, register 1) and the field (register 2) looked up
    // together in an identity set, after the field's dependency.
    const parts = Array.isArray(l.concat) && l.concat.length === 2 && Object.keys(l).length === 1 ? l.concat : fail()
    const first = parts[0] as { meta?: { key?: unknown } } | null
    if (first === null || typeof first !== 'object' || Object.keys(first).length !== 1 || first.meta?.key !== 'iifname' || Object.keys(first.meta).length !== 1) return fail()
    const f = field(parts[1])
    const set = setName(right)
    if (set === undefined || ID_SET_FIELD[set] !== f.type || (op !== '==' && op !== '!=')) return fail()
    dependencies(f, ctx, out)
    out.push({ k: 'exprs', exprs: [metaLoad(META_IIFNAME), payloadLoad(f.base, f.offset, f.len, REG2), op === '!=' ? lookupInv(set) : lookup(set)] })
    return
  }
  if ('ct' in l) {
    const ct = l.ct as { key?: unknown; dir?: unknown }
    if (ct.key !== 'state' || Object.keys(ct).length !== 1 || op !== 'in') return fail()
    const states = Array.isArray(right) ? right : fail()
    let bits = 0
    for (const s of states) bits |= name(CT_STATES, s)
    if (bits === 0) return fail()
    const mask = Buffer.alloc(4)
    if (LITTLE) mask.writeUInt32LE(bits, 0)
    else mask.writeUInt32BE(bits, 0)
    out.push({ k: 'exprs', exprs: [expr('ct', [be32(2, CT_STATE), be32(1, REG1)]), bitwise(mask), cmp(CMP['!='], Buffer.alloc(4))] })
    return
  }
  if ('&' in l) {
    const [inner, flags] = Array.isArray(l['&']) && l['&'].length === 2 ? l['&'] : fail()
    const f = field(inner)
    if (f.type !== 'tcp_flags' || (op !== '==' && op !== '!=')) return fail()
    const bitsOf = (v: unknown): number => (Array.isArray(v) ? v.reduce((a: number, x) => a | name(TCP_FLAGS, x), 0) : name(TCP_FLAGS, v))
    dependencies(f, ctx, out)
    out.push({
      k: 'exprs',
      exprs: [payloadLoad(f.base, f.offset, f.len), bitwise(Buffer.from([bitsOf(flags)])), cmp(CMP[op], Buffer.from([bitsOf(right)]))],
    })
    return
  }
  const f = field(l)
  if (f.type === 'tcp_flags') return fail()
  const set = setName(right)
  if (set !== undefined) {
    if (op !== '==' || LOOKUP_TYPE[f.type] === undefined || SET_TYPES[set] !== LOOKUP_TYPE[f.type]) return fail()
    dependencies(f, ctx, out)
    out.push({ k: 'exprs', exprs: [payloadLoad(f.base, f.offset, f.len), lookup(set)] })
    return
  }
  if (op !== '==' && op !== '!=') return fail()
  if (right !== null && typeof right === 'object') {
    const r = right as Record<string, unknown>
    if ('range' in r && f.type === 'port' && op === '==') {
      const [lo, hi] = Array.isArray(r.range) && r.range.length === 2 ? r.range : fail()
      const a = u16be(lo)
      const b = u16be(hi)
      if ((lo as number) >= (hi as number)) return fail()
      dependencies(f, ctx, out)
      out.push({ k: 'exprs', exprs: [payloadLoad(f.base, f.offset, f.len), cmp(CMP['>='], a), cmp(CMP['<='], b)] })
      return
    }
    if ('prefix' in r && (f.type === 'ipv4' || f.type === 'ipv6') && op === '==') {
      const p = r.prefix as { addr?: unknown; len?: unknown }
      const addr = constant(f, p.addr)
      const bits = p.len
      if (typeof bits !== 'number' || !Number.isInteger(bits) || bits < 1 || bits >= f.len * 8) return fail()
      const mask = Buffer.alloc(f.len)
      for (let i = 0; i < f.len; i++) mask[i] = bits >= (i + 1) * 8 ? 0xff : bits > i * 8 ? (0xff << (8 - (bits - i * 8))) & 0xff : 0
      for (let i = 0; i < f.len; i++) if ((addr[i]! & mask[i]!) !== addr[i]) return fail() // host bits set
      dependencies(f, ctx, out)
      if (bits % 8 === 0) {
        // A byte-aligned prefix is a shorter load of its leading bytes.
        out.push({ k: 'pcmp', base: f.base, offset: f.offset, value: addr.subarray(0, bits / 8), op: CMP['=='], mergeable: false })
      } else {
        out.push({ k: 'exprs', exprs: [payloadLoad(f.base, f.offset, f.len), bitwise(mask), cmp(CMP['=='], addr)] })
      }
      return
    }
    return fail()
  }
  const value = constant(f, right)
  dependencies(f, ctx, out)
  out.push({ k: 'pcmp', base: f.base, offset: f.offset, value, op: CMP[op], mergeable: true })
  if (op === '==' && f.type === 'ethertype') {
    const net = NET_OF_ETHERTYPE[value.readUInt16BE(0)]
    if (net) ctx.net = net
  }
}

/** libnftables' payload merge: adjacent equality loads of one header become one load, unless that makes a
 *  load above 4 bytes past the link layer (the kernel's fast path) or above one register. */
function canMerge(a: { base: Base; offset: number; value: Buffer }, b: { base: Base; offset: number; value: Buffer }): boolean {
  if (a.base !== b.base || a.offset + a.value.length !== b.offset) return false
  const total = a.value.length + b.value.length
  if (total > 16) return false
  if (a.value.length > 4 && b.value.length > 4) return true
  return !(total > 4 && a.base >= BASE.nh)
}

function linearize(lows: Low[]): Attr[] {
  const out: Attr[] = []
  for (let i = 0; i < lows.length; i++) {
    const s = lows[i]!
    if (s.k === 'exprs') {
      out.push(...s.exprs)
      continue
    }
    const next = lows[i + 1]
    const isEq = (x: Low | undefined): x is Extract<Low, { k: 'pcmp' }> => x?.k === 'pcmp' && x.mergeable && x.op === CMP['==']
    if (isEq(s) && isEq(next) && canMerge(s, next)) {
      if (isEq(lows[i + 2]) && canMerge(next, lows[i + 2] as Extract<Low, { k: 'pcmp' }>)) fail() // runs of three: not spelt here
      const value = Buffer.concat([s.value, next.value])
      out.push(payloadLoad(s.base, s.offset, value.length), cmp(CMP['=='], value))
      i++
      continue
    }
    out.push(payloadLoad(s.base, s.offset, s.value.length), cmp(s.op, s.value))
  }
  return out
}

function lowerStatement(st: unknown, ctx: Ctx, out: Low[]): void {
  if (st === null || typeof st !== 'object') return fail()
  const keys = Object.keys(st)
  if (keys.length !== 1) return fail()
  const key = keys[0]!
  const v = (st as Record<string, unknown>)[key]
  switch (key) {
    case 'match':
      return lowerMatch(v as Record<string, unknown>, ctx, out)
    case 'counter': {
      const c = v as { packets?: unknown; bytes?: unknown } | null
      if (c !== null && (typeof c !== 'object' || (c.packets ?? 0) !== 0 || (c.bytes ?? 0) !== 0 || Object.keys(c).some((k) => k !== 'packets' && k !== 'bytes'))) return fail()
      out.push({ k: 'exprs', exprs: [expr('counter', [])] })
      return
    }
    case 'accept':
    case 'drop':
      if (v !== null) return fail()
      out.push({ k: 'exprs', exprs: [immediate(VERDICT[key])] })
      return
    case 'jump': {
      const j = v as { target?: unknown } | null
      if (j === null || typeof j !== 'object' || Object.keys(j).length !== 1) return fail()
      out.push({ k: 'exprs', exprs: [immediateJump(chainName(j.target))] })
      return
    }
    case 'vmap':
      return lowerVmap(v as { key?: unknown; data?: unknown } | null, ctx, out)
    case 'reject': {
      let type: number
      let code: number
      if (v === null) {
        // The reject libnftables picks for the network protocol the rule established (bridge family).
        if (ctx.net === 'ip') [type, code] = [0, 3]
        else if (ctx.net === 'ip6') [type, code] = [0, 4]
        else if (ctx.net === undefined) [type, code] = [2, 1]
        else return fail()
      } else if (typeof v === 'object' && Object.keys(v).length === 1 && (v as { type?: unknown }).type === 'tcp reset' && ctx.l4 === 6) {
        ;[type, code] = [1, 0]
      } else return fail()
      out.push({ k: 'exprs', exprs: [expr('reject', [be32(1, type), attr(2, Buffer.from([code]))])] })
      return
    }
    case 'limit': {
      const l = v as { rate?: unknown; burst?: unknown; per?: unknown }
      if (Object.keys(l).some((k) => k !== 'rate' && k !== 'burst' && k !== 'per')) return fail()
      const int = (n: unknown, min: number): number => (typeof n === 'number' && Number.isSafeInteger(n) && n >= min && n <= 0xffffffff ? n : fail())
      const unit = typeof l.per === 'string' && Object.hasOwn(LIMIT_UNIT, l.per) ? LIMIT_UNIT[l.per]! : fail()
      out.push({ k: 'exprs', exprs: [expr('limit', [be64(1, int(l.rate, 1)), be64(2, unit), be32(3, int(l.burst, 1)), be32(4, 0), be32(5, 0)])] })
      return
    }
    case 'log': {
      const l = v as { prefix?: unknown; group?: unknown }
      if (Object.keys(l).some((k) => k !== 'prefix' && k !== 'group')) return fail()
      const prefix = typeof l.prefix === 'string' && QUOTABLE.test(l.prefix) && Buffer.byteLength(l.prefix) <= LOG_PREFIX_MAX ? l.prefix : fail()
      out.push({ k: 'exprs', exprs: [expr('log', [str(2, prefix), attr(1, u16be(l.group))])] })
      return
    }
    default:
      return fail()
  }
}

/** `iifname vmap @from_vm` (a dispatch map of the layout), or `ether type vmap { ip : jump guard_ip, ... }`: an
 *  anonymous constant map that this batch creates just before the rule, found by its set id. */
function lowerVmap(v: { key?: unknown; data?: unknown } | null, ctx: Ctx, out: Low[]): void {
  if (v === null || typeof v !== 'object' || Object.keys(v).length !== 2) return fail()
  const key = v.key as Record<string, unknown> | null
  if (key === null || typeof key !== 'object') return fail()
  if ('meta' in key) {
    const k = (key.meta as { key?: unknown }).key
    const map = setName(v.data)
    const dispatch = (k === 'iifname' && (map === MAP_FROM_VM || map === exactDefaultMap('out'))) || (k === 'oifname' && (map === MAP_TO_VM || map === exactDefaultMap('in')))
    if (Object.keys(key).length !== 1 || Object.keys(key.meta as object).length !== 1 || !dispatch) return fail()
    out.push({ k: 'exprs', exprs: [metaLoad(k === 'iifname' ? META_IIFNAME : META_OIFNAME), vmapLookup(map!)] })
    return
  }
  if ('concat' in key) return lowerExactLookup(key, setName(v.data), ctx, out)
  const f = field(key)
  if (f.type !== 'ethertype') return fail()
  const items = (v.data as { set?: unknown } | null)?.set
  if (!Array.isArray(items) || items.length === 0 || Object.keys(v.data as object).length !== 1) return fail()
  const elems = items.map((item: unknown) => {
    const [k, verdict] = Array.isArray(item) && item.length === 2 ? item : fail()
    return [constant(f, k), jumpOf(verdict)] as const
  })
  dependencies(f, ctx, out)
  const batch = ctx.batch
  const id = ++batch.setId
  const t = str(1, batch.table)
  // As libnftables 1.0.6 declares `ether type vmap { ... }`: anonymous, constant, a map; its size; its user data.
  batch.pre.push(
    message(MSG.newset, F_CREATE, [
      t,
      str(2, '__map%d'),
      be32(3, SET_F_ANONYMOUS | SET_F_CONSTANT | SET_F_MAP),
      be32(4, TYPE.ether_type),
      be32(5, 2),
      be32(6, DATA_VERDICT),
      be32(7, 0),
      be32(10, id),
      nest(9, [be32(1, elems.length)]),
      attr(13, UDATA_ETHERTYPE_VMAP),
    ]),
    ...elementMessages(MSG.newsetelem, F_CREATE, [t, str(2, '__map%d'), be32(4, id)], elems.map(([k, chain]) => [data(1, k), nest(2, [jumpVerdict(chain)])])),
  )
  out.push({ k: 'exprs', exprs: [payloadLoad(f.base, f.offset, f.len), vmapLookup('__map%d', id)] })
}

/** The target of a `{ jump: { target } }` verdict. */
function jumpOf(verdict: unknown): string {
  const jump = (verdict as { jump?: { target?: unknown } } | null)?.jump
  if (!jump || Object.keys(verdict as object).length !== 1 || Object.keys(jump).length !== 1) return fail()
  return chainName(jump.target)
}

function ruleExpressions(statements: unknown, batch: Batch): Attr {
  if (!Array.isArray(statements) || statements.length === 0) return fail()
  const known = ENCODED.get(statements)
  if (known) return (w) => w.raw(known)
  const ctx: Ctx = { batch }
  const lows: Low[] = []
  const pre = batch.pre.length
  for (const st of statements) lowerStatement(st, ctx, lows)
  const exprs = nest(4, linearize(lows))
  // Kept only when nothing else depends on this batch (no anonymous set declared for it: its id is the batch's).
  if (!Object.isFrozen(statements) || batch.pre.length !== pre) return exprs
  const w = new Writer(1024)
  exprs(w)
  const bytes = ENCODED.keep(statements, Buffer.from(w.buf.subarray(0, w.at)))
  return (w) => w.raw(bytes)
}

/** NFTA_RULE_EXPRESSIONS already encoded (interned rules' lists; see FrozenListMemo): a 1000-VM sync encodes
 *  each distinct rule once. */
const ENCODED = new FrozenListMemo<Buffer>()

/** The comment TLV of a rule's or a set element's user data (NFTNL_UDATA_RULE_COMMENT and
 *  NFTNL_UDATA_SET_ELEM_COMMENT are both 0): type, its length with the NUL, the string. */
function commentTlv(text: unknown): Buffer {
  if (typeof text !== 'string' || !QUOTABLE.test(text)) return fail()
  const bytes = Buffer.from(`${text}\0`)
  // (libnftables 1.0.6 takes element comments of up to 254 bytes; longer than a rule's are left to it.)
  if (bytes.length > COMMENT_MAX) return fail()
  return Buffer.concat([Buffer.from([0, bytes.length]), bytes])
}

/** NFTA_RULE_USERDATA: the comment. */
const comment = (text: unknown): Attr => attr(7, commentTlv(text))

// ---- commands ----

const CHAIN_NAME = /^[A-Za-z0-9_.-]{1,255}$/

function chainName(v: unknown): string {
  return typeof v === 'string' && CHAIN_NAME.test(v) ? v : fail()
}

function ifname(v: unknown): Buffer {
  if (typeof v !== 'string' || !IFNAME.test(v)) return fail()
  const b = Buffer.alloc(IFNAMSIZ)
  b.write(v, 'latin1')
  return b
}

/** The key of one element of a guard set (see encodeCommand). */
function guardKey(set: string, e: unknown): Buffer {
  if (typeof e === 'string') return set === SET_ID_MAC || set === SET_ID_IPV4 || set === SET_ID_IPV6 ? fail() : ifname(e)
  const c = (e as { concat?: unknown } | null)?.concat
  if (!Array.isArray(c) || c.length !== 2 || Object.keys(e as object).length !== 1) return fail()
  const v = c[1]
  let value: Buffer
  if (set === SET_ID_MAC) value = Buffer.concat([mac(v), Buffer.alloc(2)])
  else if (set === SET_ID_IPV4) value = ipv4(v)
  else if (set === SET_ID_IPV6) value = ipv6(v)
  else return fail()
  return Buffer.concat([ifname(c[0]), value])
}

function keysOnly(o: Record<string, unknown>, allowed: string[]): void {
  for (const k of Object.keys(o)) if (!allowed.includes(k)) fail()
}

// ---- the exact table's elements (issue 15) ----

/** Every map an exact table may have (exact-table.ts's names), with its key's fields after the tap. */
const EXACT_MAPS: ReadonlyMap<string, readonly ExactField[]> = new Map(
  (['out', 'in'] as const).flatMap((side) => [...EXACT_SHAPES.map((s): [string, readonly ExactField[]] => [exactMapName(side, s.name), s.fields]), [exactDefaultMap(side), []] as [string, readonly ExactField[]]]),
)

/** A key of an exact map: the tap alone (a default), or `tap . <fields>` as a concatenation. */
function exactKey(fields: readonly ExactField[], v: unknown): Buffer {
  if (fields.length === 0) return ifname(v)
  const c = typeof v === 'object' ? (v as { concat?: unknown } | null)?.concat : undefined
  if (!Array.isArray(c) || c.length !== fields.length + 1 || Object.keys(v as object).length !== 1) return fail()
  return Buffer.concat([ifname(c[0]), ...fields.map((f, i) => EXACT_COMPONENT[f].bytes(c[i + 1]))])
}

/** `{ accept: null }` or `{ drop: null }`. */
function acceptOrDrop(v: unknown): number {
  if (v === null || typeof v !== 'object' || Object.keys(v).length !== 1) return fail()
  const [verdict, arg] = Object.entries(v)[0]!
  return (verdict === 'accept' || verdict === 'drop') && arg === null ? VERDICT[verdict] : fail()
}

/** One element of an exact map: a delete names its key; an add is `[{ elem: { val, comment } }, verdict]`, sent
 *  as key, verdict and the comment in NFTA_SET_ELEM_USERDATA. No counter expression: libnftables 1.0.6 sends
 *  none per element, the kernel gives each new element the counter the map declares. */
function exactElement(fields: readonly ExactField[], del: boolean, e: unknown): Attr[] {
  if (del) return [data(1, exactKey(fields, e))]
  const [head, verdict] = Array.isArray(e) && e.length === 2 ? e : fail()
  const elem = typeof head === 'object' ? (head as { elem?: unknown } | null)?.elem : undefined
  if (elem === null || typeof elem !== 'object' || Array.isArray(elem) || Object.keys(head as object).length !== 1) return fail()
  const o = elem as Record<string, unknown>
  keysOnly(o, ['val', 'comment'])
  return [data(1, exactKey(fields, o.val)), nest(2, [nest(2, [be32(1, acceptOrDrop(verdict))])]), attr(6, commentTlv(o.comment))]
}

/** `iifname . ip saddr . meta l4proto . th dport vmap @out_s4lp`: an exact-table lookup (exact-table.ts's
 *  dispatch), after the address's dependency. As libnftables lays out a concatenated key: the tap in the first
 *  16 bytes, each further component in the next 4-byte registers (an IPv6 address in four), then one lookup
 *  whose data go to the verdict register. */
function lowerExactLookup(key: Record<string, unknown>, map: string | undefined, ctx: Ctx, out: Low[]): void {
  const fields = map === undefined ? undefined : EXACT_MAPS.get(map)
  const parts = key.concat
  if (!fields || fields.length === 0 || !Array.isArray(parts) || parts.length !== fields.length + 1 || Object.keys(key).length !== 1) return fail()
  const tap = map!.startsWith('out_') ? 'iifname' : 'oifname'
  if (JSON.stringify(parts[0]) !== JSON.stringify({ meta: { key: tap } })) return fail()
  const loads = [metaLoad(tap === 'iifname' ? META_IIFNAME : META_OIFNAME)]
  let word = IFNAMSIZ / 4
  fields.forEach((name, i) => {
    if (JSON.stringify(parts[i + 1]) !== JSON.stringify(EXACT_FIELD_KEY[name].expr)) return fail()
    const { load } = EXACT_COMPONENT[name]
    if (load === 'l4proto') loads.push(metaLoad(META_L4PROTO, register(word)))
    else {
      // An address depends on its network (`th dport` on nothing: the key's `meta l4proto` says which protocol).
      if (name !== 'dport') dependencies(load, ctx, out)
      loads.push(payloadLoad(load.base, load.offset, load.len, register(word)))
    }
    word += EXACT_COMPONENT[name].len / 4
  })
  out.push({ k: 'exprs', exprs: [...loads, vmapLookup(map!)] })
}

/** The register of the 4-byte word `word` of the key, as libnftables numbers it: a 16-byte register when the
 *  word starts one (NFT_REG_1 + n), else the 32-bit one (NFT_REG32_00 + word). */
const register = (word: number): number => (word % 4 === 0 ? 1 + word / 4 : 8 + word)

// ---- sets (issue 14: created with their table) ----

const SET_F_ANONYMOUS = 0x1
const SET_F_CONSTANT = 0x2
const SET_F_MAP = 0x8
/** NFT_DATA_VERDICT: a map's data are verdicts. */
const DATA_VERDICT = 0xffffff00
/** libnftables' data type ids (datatype.h) of the layout's set keys. */
const TYPE = { ipv4_addr: 7, ipv6_addr: 8, ether_addr: 9, ether_type: 10, inet_proto: 12, inet_service: 13, icmp_type: 14, icmpv6_type: 29, ifname: 41 } as const
/** Concatenated keys: each component's type shifted in (TYPE_BITS = 6), each component padded to 4 bytes. */
const concatType = (a: number, b: number): number => (a << 6) | b
const u32h = (n: number): Buffer => {
  const b = Buffer.alloc(4)
  if (LITTLE) b.writeUInt32LE(n, 0)
  else b.writeUInt32BE(n, 0)
  return b
}
// The set user data (libnftnl's NFTNL_UDATA_SET_* TLVs: type, length, value; numbers in host order) as
// libnftables 1.0.6 writes them; `nft list` reads the key's and the data's printing back from these.
/** TLV 0, the key's byte order: 0 unspecified, 1 host, 2 network. */
const keyOrder = (order: number): Buffer => Buffer.concat([Buffer.from([0, 4]), u32h(order)])
/** TLV 1, the data's byte order (a verdict map's: 0). */
const DATA_ORDER = Buffer.concat([Buffer.from([1, 4]), u32h(0)])
/** TLV 6, data-interval 0 (a map's data are not ranges). */
const DATA_INTERVAL = Buffer.concat([Buffer.from([6, 4]), u32h(0)])
/** TLV 3 (the key) or 4 (the data): the typeof nest as libnftables writes it for a type, `value` its marker. */
const typeofTlv = (tlv: 3 | 4, value: number): Buffer => Buffer.concat([Buffer.from([tlv, 8, 0, 4]), u32h(value), Buffer.from([1, 0])])
/** A concatenated key `ifname . X`. */
const UDATA_CONCAT = Buffer.concat([keyOrder(0), typeofTlv(3, 13)])
/** A verdict map keyed by ifname. */
const UDATA_VMAP = Buffer.concat([keyOrder(1), DATA_ORDER, DATA_INTERVAL])
/** A verdict map keyed by a concatenation (the exact table's). */
const UDATA_CONCAT_VMAP = Buffer.concat([keyOrder(0), DATA_ORDER, typeofTlv(3, 13), DATA_INTERVAL])
/** `ether type vmap { }`: its data's typeof too. */
const UDATA_ETHERTYPE_VMAP = Buffer.concat([keyOrder(2), DATA_ORDER, typeofTlv(4, 1), DATA_INTERVAL])
/** NFTA_SET_EXPR of a set declared with `counter;`. */
const COUNTER_EXPR = nest(17, [str(1, 'counter'), nest(2, [])])
/** Each exact key component (exact-table.ts's EXACT_FIELD_KEY gives its expression and type name): its type id,
 *  its length in the key, its bytes and what loads it. Each is padded to 4 bytes as libnftables lays out a
 *  concatenated key (a protocol: 1 + 3, a port: 2 + 2, network order). */
const EXACT_COMPONENT: Record<ExactField, { type: number; len: number; bytes: (v: unknown) => Buffer; load: Field | 'l4proto' }> = {
  saddr4: { type: TYPE.ipv4_addr, len: 4, bytes: ipv4, load: FIELDS['ip saddr']! },
  daddr4: { type: TYPE.ipv4_addr, len: 4, bytes: ipv4, load: FIELDS['ip daddr']! },
  saddr6: { type: TYPE.ipv6_addr, len: 16, bytes: ipv6, load: FIELDS['ip6 saddr']! },
  daddr6: { type: TYPE.ipv6_addr, len: 16, bytes: ipv6, load: FIELDS['ip6 daddr']! },
  l4proto: { type: TYPE.inet_proto, len: 4, bytes: (v) => Buffer.from([name(L4, v), 0, 0, 0]), load: 'l4proto' },
  // `th dport`: the transport header's bytes 2-3, whatever the protocol.
  dport: { type: TYPE.inet_service, len: 4, bytes: (v) => Buffer.concat([u16be(v), Buffer.alloc(2)]), load: { base: BASE.th, offset: 2, len: 2, proto: 'tcp', type: 'port' } },
}

/** Key type, key length, key byte order and the bytes of one element, per shared-set type of the layout. */
const SHARED_KEYS: Record<string, { type: number; len: number; order: number; value: (v: unknown) => Buffer }> = {
  inet_proto: { type: TYPE.inet_proto, len: 1, order: 0, value: (v) => Buffer.from([name(L4, v)]) },
  icmp_type: { type: TYPE.icmp_type, len: 1, order: 2, value: (v) => u8(name(ICMP_TYPES, v)) },
  icmpv6_type: { type: TYPE.icmpv6_type, len: 1, order: 2, value: (v) => u8(name(ICMPV6_TYPES, v)) },
  ether_type: { type: TYPE.ether_type, len: 2, order: 2, value: (v) => u16be(name(ETHERTYPES, v)) },
}
const ID_KEYS: Record<string, { type: number; len: number }> = {
  ether_addr: { type: concatType(TYPE.ifname, TYPE.ether_addr), len: IFNAMSIZ + 8 },
  ipv4_addr: { type: concatType(TYPE.ifname, TYPE.ipv4_addr), len: IFNAMSIZ + 4 },
  ipv6_addr: { type: concatType(TYPE.ifname, TYPE.ipv6_addr), len: IFNAMSIZ + 16 },
}

/** Room for NFTA_SET_ELEM_LIST_ELEMENTS (its length is 16 bits), with room for one more element of any size
 *  spelt here: a longer list goes on in another message. */
const ELEMENTS_ROOM = 0xffff - 1024

/** Element-list messages (`head`: table, set and maybe its id), each element a nest of `attrs`; numbered from 1
 *  as libnftnl numbers them, split into several messages when one would not hold them. */
function elementMessages(type: number, flags: number, head: Attr[], elems: Attr[][]): Attr[] {
  return [
    (w) => {
      let i = 0
      while (i < elems.length) {
        writeMessage(w, type, flags, () => {
          for (const a of head) a(w)
          const list = w.begin()
          for (let n = 1; i < elems.length && w.at - list < ELEMENTS_ROOM; n++, i++) nest(n, elems[i]!)(w)
          w.end(list, 3)
        })
      }
    },
  ]
}

/** `add set` / `add map` of the layout (setCommands, tableCommands): a shared set with its elements, an identity
 *  set, a tap set with its per-element counter, or a dispatch map. */
function encodeSet(kind: 'set' | 'map', o: Record<string, unknown>, t: Attr, b: Batch, flags: number): Attr[] {
  const setName = typeof o.name === 'string' && CHAIN_NAME.test(o.name) && !o.name.startsWith('__') ? o.name : fail()
  const id = ++b.setId
  const head = [t, str(2, setName)]
  if (kind === 'map') {
    keysOnly(o, ['family', 'table', 'name', 'type', 'map', 'stmt'])
    if (o.map !== 'verdict') return fail()
    const verdictMap = (type: number, len: number, udata: Buffer, counted: boolean): Attr[] => [
      message(MSG.newset, flags, [...head, be32(3, SET_F_MAP), be32(4, type), be32(5, len), be32(6, DATA_VERDICT), be32(7, 0), be32(10, id), attr(13, udata), ...(counted ? [COUNTER_EXPR] : [])]),
    ]
    if (o.stmt === undefined) return o.type === 'ifname' ? verdictMap(TYPE.ifname, IFNAMSIZ, UDATA_VMAP, false) : fail()
    // Issue 15: an exact-table map (`<side>_<shape>`), a counter per element.
    const fields = EXACT_MAPS.get(setName) ?? fail()
    if (JSON.stringify(o.stmt) !== '[{"counter":null}]') return fail()
    if (fields.length === 0) return o.type === 'ifname' ? verdictMap(TYPE.ifname, IFNAMSIZ, UDATA_VMAP, true) : fail()
    const types = Array.isArray(o.type) && o.type.length === fields.length + 1 && o.type[0] === 'ifname' ? o.type.slice(1) : fail()
    let type: number = TYPE.ifname
    let len = IFNAMSIZ
    fields.forEach((f, i) => {
      const k = EXACT_COMPONENT[f]
      if (types[i] !== EXACT_FIELD_KEY[f].type) return fail()
      type = (type << 6) | k.type
      len += k.len
    })
    return verdictMap(type, len, UDATA_CONCAT_VMAP, true)
  }
  keysOnly(o, ['family', 'table', 'name', 'type', 'elem', 'stmt'])
  if (Array.isArray(o.type)) {
    // An identity set: `ifname . <type>`, no elements, no statements.
    const [a, second] = o.type.length === 2 ? o.type : fail()
    const key = a === 'ifname' && typeof second === 'string' && Object.hasOwn(ID_KEYS, second) ? ID_KEYS[second]! : fail()
    if (o.elem !== undefined || o.stmt !== undefined) return fail()
    return [message(MSG.newset, flags, [...head, be32(3, 0), be32(4, key.type), be32(5, key.len), be32(10, id), attr(13, UDATA_CONCAT)])]
  }
  if (o.type === 'ifname') {
    // A tap set: a counter per element (`counter;` in the set's declaration), no elements.
    const stmt = o.stmt
    if (o.elem !== undefined || !Array.isArray(stmt) || stmt.length !== 1 || JSON.stringify(stmt[0]) !== '{"counter":null}') return fail()
    return [message(MSG.newset, flags, [...head, be32(3, 0), be32(4, TYPE.ifname), be32(5, IFNAMSIZ), be32(10, id), attr(13, keyOrder(1)), COUNTER_EXPR])]
  }
  const key = typeof o.type === 'string' && Object.hasOwn(SHARED_KEYS, o.type) ? SHARED_KEYS[o.type]! : fail()
  if (o.stmt !== undefined) return fail()
  const set = message(MSG.newset, flags, [...head, be32(3, 0), be32(4, key.type), be32(5, key.len), be32(10, id), attr(13, keyOrder(key.order))])
  if (o.elem === undefined) return [set]
  const elems = Array.isArray(o.elem) && o.elem.length > 0 ? o.elem : fail()
  return [set, ...elementMessages(MSG.newsetelem, F_CREATE, [...head, be32(4, id)], elems.map((e: unknown) => [data(1, key.value(e))]))]
}

const HOOKS: Record<string, number> = { prerouting: 0, input: 1, forward: 2, output: 3, postrouting: 4 }
const POLICY: Record<string, number> = { drop: 0, accept: 1 }

function encodeCommand(b: Batch, cmd: unknown): Attr[] {
  const table = b.table
  if (cmd === null || typeof cmd !== 'object') return fail()
  const verbs = Object.keys(cmd)
  if (verbs.length !== 1) return fail()
  const verb = verbs[0]!
  const body = (cmd as Record<string, unknown>)[verb] as Record<string, Record<string, unknown>>
  if (body === null || typeof body !== 'object' || Object.keys(body).length !== 1) return fail()
  const kind = Object.keys(body)[0]!
  const o = body[kind]!
  if (o === null || typeof o !== 'object' || o.family !== FAMILY) return fail()
  const t = str(1, table)
  if (kind === 'table') {
    // Issue 14: the table of a bulk sync, created (no flags: never dormant, never owned by a socket).
    if (verb !== 'add' || o.name !== table) return fail()
    keysOnly(o, ['family', 'name'])
    return [message(MSG.newtable, F_CREATE, [t, be32(2, 0)])]
  }
  if (o.table !== table) return fail()
  if ((kind === 'set' || kind === 'map') && (verb === 'add' || verb === 'create')) return encodeSet(kind, o, t, b, F_CREATE | (verb === 'create' ? F_EXCL : 0))
  if (kind === 'chain' && (verb === 'add' || verb === 'create') && o.hook !== undefined) {
    // A base chain: type, hook, priority, policy, all given (as tableCommands gives them).
    keysOnly(o, ['family', 'table', 'name', 'type', 'hook', 'prio', 'policy'])
    const hook = typeof o.hook === 'string' && Object.hasOwn(HOOKS, o.hook) ? HOOKS[o.hook]! : fail()
    const policy = typeof o.policy === 'string' && Object.hasOwn(POLICY, o.policy) ? POLICY[o.policy]! : fail()
    const prio = typeof o.prio === 'number' && Number.isInteger(o.prio) && Math.abs(o.prio) < 2 ** 31 ? o.prio : fail()
    if (o.type !== 'filter') return fail()
    return [message(MSG.newchain, F_CREATE | (verb === 'create' ? F_EXCL : 0), [t, str(3, chainName(o.name)), str(7, 'filter'), be32(5, policy), nest(4, [be32(1, hook), be32(2, prio)])])]
  }
  if (kind === 'chain' && (verb === 'add' || verb === 'create' || verb === 'flush' || verb === 'delete')) {
    keysOnly(o, ['family', 'table', 'name'])
    const c = chainName(o.name)
    if (verb === 'flush') return [message(MSG.delrule, 0, [t, str(2, c)])]
    // As libnftables 1.0.6 deletes a chain by name (a VM's, removeVm: no rule with a verdict is added, so the
    // kernel does not re-validate the table).
    if (verb === 'delete') return [message(MSG.delchain, 0, [t, str(3, c)])]
    return [message(MSG.newchain, F_CREATE | (verb === 'create' ? F_EXCL : 0), [t, str(3, c)])]
  }
  if (kind === 'rule' && verb === 'add') {
    keysOnly(o, ['family', 'table', 'chain', 'comment', 'expr'])
    const attrs = [t, str(2, chainName(o.chain)), ruleExpressions(o.expr, b)]
    if (o.comment !== undefined) attrs.push(comment(o.comment))
    const pre = b.pre.splice(0)
    return [...pre, message(MSG.newrule, F_CREATE | F_APPEND, attrs)]
  }
  if (kind === 'element' && (verb === 'add' || verb === 'create' || verb === 'delete') && VM_SETS.includes(o.name as string)) {
    // Issue 15: the guard's sets, no data. A key is the interface name (16 bytes), or its concatenation with the
    // identity, each component padded to 4 bytes (a MAC: 6 + 2), as libnftables lays out a concatenated key.
    keysOnly(o, ['family', 'table', 'name', 'elem'])
    const elems = Array.isArray(o.elem) && o.elem.length > 0 ? o.elem : fail()
    const type = verb === 'delete' ? MSG.delsetelem : MSG.newsetelem
    const flags = verb === 'delete' ? 0 : F_CREATE | (verb === 'create' ? F_EXCL : 0)
    return elementMessages(type, flags, [t, str(2, o.name as string)], elems.map((e: unknown) => [data(1, guardKey(o.name as string, e))]))
  }
  if (kind === 'element' && (verb === 'add' || verb === 'delete') && typeof o.name === 'string' && EXACT_MAPS.has(o.name)) {
    // Issue 15: a VM's elements in the exact table (exactElementCommands), the key's layout from the map's name.
    keysOnly(o, ['family', 'table', 'name', 'elem'])
    const fields = EXACT_MAPS.get(o.name)!
    const elems = Array.isArray(o.elem) && o.elem.length > 0 ? o.elem : fail()
    const del = verb === 'delete'
    return elementMessages(del ? MSG.delsetelem : MSG.newsetelem, del ? 0 : F_CREATE, [t, str(2, o.name)], elems.map((e: unknown) => exactElement(fields, del, e)))
  }
  if (kind === 'element' && (verb === 'add' || verb === 'create' || verb === 'delete')) {
    keysOnly(o, ['family', 'table', 'name', 'elem'])
    // Only the layout's dispatch maps, whose keys are interface names and whose data are jumps.
    if (o.name !== MAP_FROM_VM && o.name !== MAP_TO_VM) return fail()
    const elems = Array.isArray(o.elem) && o.elem.length > 0 ? o.elem : fail()
    const list = elems.map((e: unknown): Attr[] => {
      if (verb === 'delete') return [data(1, ifname(e))]
      const [key, verdict] = Array.isArray(e) && e.length === 2 ? e : fail()
      return [data(1, ifname(key)), nest(2, [jumpVerdict(jumpOf(verdict))])]
    })
    const type = verb === 'delete' ? MSG.delsetelem : MSG.newsetelem
    const flags = verb === 'delete' ? 0 : F_CREATE | (verb === 'create' ? F_EXCL : 0)
    return elementMessages(type, flags, [t, str(2, o.name)], list)
  }
  return fail()
}

/**
 * The netlink messages (for `Nft.commitBatch(table, ...)`) that commit `commands` exactly as libnftables would,
 * or undefined when any command is outside the forms spelt here (the caller then writes through libnftables).
 * Commands must name `table` of the bridge family; the named sets and maps they use must exist, or be created
 * by an earlier command of the same batch (issue 14: a table created whole, as `tableCommands` spells it).
 */
export function encodeBatch(table: string, commands: readonly unknown[]): Buffer | undefined {
  if (commands.length === 0) return undefined
  const b: Batch = { table, setId: 0, pre: [] }
  try {
    const w = new Writer()
    for (const c of commands) for (const m of encodeCommand(b, c)) m(w)
    return w.buf.subarray(0, w.at)
  } catch (e) {
    if (e instanceof Unencodable) return undefined
    throw e
  }
}
