// A VM's policy as exact-key verdict-map elements (issue 15). When every rule of a VM matches one protocol, at
// most one port (or a short range, spelled as its ports) and at most one host, and the order of its rules
// cannot change what any packet meets, the VM needs no chains: each rule becomes elements
// `tap . key : accept|drop` of one hash map per shape, looked up one shape after another, then the VM's
// default. Adding or deleting such elements carries no jump, so the kernel does not re-validate the table on
// the commit: a replace costs the same at 10 VMs and at 2000 (bench/results/issue-15-exact-key-elements).
// Everything else keeps its chains (compile.ts), and says why here. Pure: no I/O.
import type { Cidr } from './address.js'
import type { CompileOptions, Side } from './compile.js'
import { mergeRules } from './merge.js'
import type { NormalizedRule, NormalizedVm } from './validate.js'

/** A key field of a shape, in key order. */
export type ExactField = 'saddr4' | 'daddr4' | 'saddr6' | 'daddr6' | 'l4proto' | 'dport'

export interface ExactShape {
  /** `s4lp` = IPv4 source . protocol . destination port, `lp` = protocol . port, `d6` = IPv6 destination, ... */
  name: string
  fields: readonly ExactField[]
}

const HOSTS = [['s4', 'saddr4'], ['d4', 'daddr4'], ['s6', 'saddr6'], ['d6', 'daddr6']] as const

/**
 * Every shape, in the order a packet's keys are looked up: a host with protocol and port, a host with
 * protocol, a host alone, then protocol and port, then protocol alone. The order only matters where two
 * rules of different verdicts overlap; `exactPolicy` accepts those only when it agrees with the rules' order.
 */
export const EXACT_SHAPES: readonly ExactShape[] = [
  ...HOSTS.map(([n, f]): ExactShape => ({ name: `${n}lp`, fields: [f, 'l4proto', 'dport'] })),
  ...HOSTS.map(([n, f]): ExactShape => ({ name: `${n}l`, fields: [f, 'l4proto'] })),
  ...HOSTS.map(([n, f]): ExactShape => ({ name: n, fields: [f] })),
  { name: 'lp', fields: ['l4proto', 'dport'] },
  { name: 'l', fields: ['l4proto'] },
]

const SHAPE_INDEX: ReadonlyMap<string, number> = new Map(EXACT_SHAPES.map((s, i) => [s.name, i]))

/** Ports one rule may spell out as elements (a wider range keeps the VM's chains). */
export const EXACT_RANGE_MAX = 256
/** Elements one VM may hold, both sides together. */
export const EXACT_ELEMENTS_MAX = 4096

export interface ExactElement {
  side: Side
  shape: string
  /** The key after the tap, one value per field of the shape: an address, `tcp`/`udp`/`icmp`/`ipv6-icmp`, a port. */
  key: readonly (string | number)[]
  verdict: 'accept' | 'drop'
  /** The rule the element comes from (its counter counts toward this rule in `stats`). */
  ruleId: string
}

export interface ExactPolicy {
  elements: ExactElement[]
  /** Shapes the elements use, per side (the lookups the table needs). */
  shapes: Record<Side, Set<string>>
  defaultAction: 'accept' | 'drop'
  /** The shared `ct state established,related accept` ahead of the lookups (as compile.ts puts it ahead of the
   *  VM's rules), when the firewall is stateful. */
  stateful: boolean
}

export type ExactRefusalReason =
  | 'stateless' // the reply rules that stand in for conntrack match TCP flags and ICMP types: no exact key
  | 'logged' // a logged drop needs a log rule ahead of it
  | 'reject' // REJECT is a statement, not a verdict a map element can carry
  | 'connection-state' // a ct state match other than the shared established,related accept
  | 'match-all' // a rule with no match at all: a second default
  | 'prefix' // an address with a prefix shorter than the host
  | 'two-hosts' // source and destination address both
  | 'source-port' // no shape has a source port
  | 'port-range' // a range wider than EXACT_RANGE_MAX
  | 'too-many-elements' // over EXACT_ELEMENTS_MAX
  | 'order-dependent' // two rules of different verdicts overlap and the lookup order disagrees with theirs

export interface ExactRefusal {
  reason: ExactRefusalReason
  /** The rule that does not fit (for order-dependent: the later of the two). */
  ruleId?: string
  message: string
}

/** What a rule matches, per field: undefined = any. */
export interface ExactMatch {
  family?: 4 | 6
  saddr?: string
  daddr?: string
  l4proto?: readonly string[]
  dports?: readonly [number, number]
}

interface SideRule {
  rule: NormalizedRule
  verdict: 'accept' | 'drop'
  match: ExactMatch
  shape: string
}

const refuse = (reason: ExactRefusalReason, message: string, ruleId?: string): ExactRefusal => (ruleId === undefined ? { reason, message } : { reason, ruleId, message })

const hostOf = (c: Cidr | undefined, rule: NormalizedRule): string | ExactRefusal | undefined => {
  if (!c) return undefined
  return c.len === (c.family === 4 ? 32 : 128) ? c.addr : refuse('prefix', `address ${c.addr}/${c.len} is a network, not one host`, rule.id)
}

function l4Of(r: NormalizedRule): readonly string[] | undefined {
  if (r.protocol === 'tcp' || r.protocol === 'udp') return [r.protocol]
  if (r.protocol === 'icmp') return r.family === 4 ? ['icmp'] : r.family === 6 ? ['ipv6-icmp'] : ['icmp', 'ipv6-icmp']
  return undefined
}

/** The rule's match and shape, or why it has none. */
function matchOf(r: NormalizedRule): { match: ExactMatch; shape: string } | ExactRefusal {
  if (r.srcPorts) return refuse('source-port', 'matches a source port', r.id)
  if (r.src && r.dst) return refuse('two-hosts', 'matches both a source and a destination address', r.id)
  const saddr = hostOf(r.src, r)
  const daddr = hostOf(r.dst, r)
  if (typeof saddr === 'object') return saddr
  if (typeof daddr === 'object') return daddr
  const l4proto = l4Of(r)
  const dports = r.dstPorts
  if (dports && dports[1] - dports[0] + 1 > EXACT_RANGE_MAX) return refuse('port-range', `port range ${dports[0]}-${dports[1]} is wider than ${EXACT_RANGE_MAX} ports`, r.id)
  const family = r.src?.family ?? r.dst?.family
  const host = saddr !== undefined ? `s${family}` : daddr !== undefined ? `d${family}` : ''
  const shape = `${host}${l4proto ? 'l' : ''}${dports ? 'p' : ''}`
  if (shape === '') return refuse('match-all', 'matches every packet', r.id)
  const match: ExactMatch = {}
  if (family) match.family = family
  if (saddr !== undefined) match.saddr = saddr
  if (daddr !== undefined) match.daddr = daddr
  if (l4proto) match.l4proto = l4proto
  if (dports) match.dports = dports
  return { match, shape }
}

/** Whether some packet matches both (a field only one of them matches is "any" for the other). */
export function overlaps(a: ExactMatch, b: ExactMatch): boolean {
  if (a.family && b.family && a.family !== b.family) return false
  if (a.saddr !== undefined && b.saddr !== undefined && a.saddr !== b.saddr) return false
  if (a.daddr !== undefined && b.daddr !== undefined && a.daddr !== b.daddr) return false
  if (a.l4proto && b.l4proto && !a.l4proto.some((p) => b.l4proto!.includes(p))) return false
  if (a.dports && b.dports && (a.dports[1] < b.dports[0] || b.dports[1] < a.dports[0])) return false
  return true
}

function keysOf(shape: ExactShape, m: ExactMatch): (string | number)[][] {
  let keys: (string | number)[][] = [[]]
  for (const f of shape.fields) {
    let values: readonly (string | number)[]
    if (f === 'l4proto') values = m.l4proto!
    else if (f === 'dport') values = Array.from({ length: m.dports![1] - m.dports![0] + 1 }, (_, i) => m.dports![0] + i)
    else values = [f.startsWith('s') ? m.saddr! : m.daddr!]
    keys = keys.flatMap((k) => values.map((v) => [...k, v]))
  }
  return keys
}

/**
 * The VM's rules as elements, or why they cannot be. The same merge (department and VM rules, overrides,
 * priorities) and the same capability choices as compileVm: where compileVm's chains would accept or drop a
 * packet, the elements do the same.
 */
export function exactPolicy(vm: NormalizedVm, opts: CompileOptions): ExactPolicy | ExactRefusal {
  const stateful = opts.conntrack !== 'off' && opts.capabilities.bridgeConntrack
  if (!stateful) return refuse('stateless', 'without bridge conntrack every ACCEPT carries reply rules that match TCP flags and ICMP types')
  if (opts.logDrops) return refuse('logged', 'logDrops puts a log rule ahead of the drops')
  const { rules } = mergeRules(vm.departmentRules, vm.rules)
  const sides: Record<Side, SideRule[]> = { out: [], in: [] }
  for (const r of rules) {
    if (r.log === true && r.action !== 'ACCEPT') return refuse('logged', 'asks for its drops to be logged', r.id)
    if (r.connectionState) {
      const cs = r.connectionState
      // compile.ts puts `ct state established,related accept` ahead of every rule of a stateful VM: an ACCEPT of
      // only those states can never be reached, and the shared rule ahead of the lookups stands in for it.
      if (r.action === 'ACCEPT' && !cs.new && !cs.invalid) continue
      return refuse('connection-state', 'matches a connection state', r.id)
    }
    const m = matchOf(r)
    if ('reason' in m) return m
    const dirs: Side[] = r.direction === 'OUT' ? ['out'] : r.direction === 'IN' ? ['in'] : ['out', 'in']
    for (const side of dirs) {
      const verdict = r.action === 'ACCEPT' ? 'accept' : 'drop'
      // As compile.ts: a REJECT is a reject where the kernel can send one (out, with bridge reject), else a drop.
      if (r.action === 'REJECT' && side === 'out' && opts.capabilities.bridgeReject) return refuse('reject', 'REJECT answers the sender; an element can only accept or drop', r.id)
      sides[side].push({ rule: r, verdict, match: m.match, shape: m.shape })
    }
  }
  const elements: ExactElement[] = []
  const shapes: Record<Side, Set<string>> = { out: new Set(), in: new Set() }
  for (const side of ['out', 'in'] as const) {
    const list = sides[side]
    for (let j = 0; j < list.length; j++) {
      const later = list[j]!
      for (let i = 0; i < j; i++) {
        const earlier = list[i]!
        if (earlier.verdict === later.verdict || earlier.shape === later.shape || !overlaps(earlier.match, later.match)) continue
        // A packet both match meets the earlier one in the chain; the lookups must find it first too.
        if (SHAPE_INDEX.get(earlier.shape)! > SHAPE_INDEX.get(later.shape)!) {
          return refuse('order-dependent', `overlaps rule ${JSON.stringify(earlier.rule.id)} (${earlier.verdict}, earlier), whose shape is looked up after this one's (${later.verdict})`, later.rule.id)
        }
      }
    }
    // Within a shape a key holds one verdict: the first rule's, as in the chain.
    const seen = new Set<string>()
    for (const sr of list) {
      const shape = EXACT_SHAPES[SHAPE_INDEX.get(sr.shape)!]!
      for (const key of keysOf(shape, sr.match)) {
        const id = `${sr.shape} ${key.join(' . ')}`
        if (seen.has(id)) continue
        seen.add(id)
        elements.push({ side, shape: sr.shape, key, verdict: sr.verdict, ruleId: sr.rule.id })
        shapes[side].add(sr.shape)
      }
      if (elements.length > EXACT_ELEMENTS_MAX) return refuse('too-many-elements', `more than ${EXACT_ELEMENTS_MAX} elements`, sr.rule.id)
    }
  }
  return { elements, shapes, defaultAction: vm.defaultAction, stateful }
}
