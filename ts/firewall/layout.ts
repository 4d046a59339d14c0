// The table's layout, in one place: every name, the comment tags, the commands that write the table's shape,
// and the readers of its listing. The compiler (policy), the reconciler and the compat facade use these and
// nothing else, so changing a name or a tag is one edit here.
import { sha256Hex } from './sha256.js'
import type { NftablesJson, NftCommand, NftDataType, NftExpression } from '../schema.js'
import type { CompiledRule, CompiledVm } from './compile.js'
import { ruleComment } from './rule-identity.js'
import { guardLogPrefix } from './log-drops.js'
import { mapElements } from './map-elements.js'
import type { VmInventoryEntry } from './model.js'

export const FAMILY = 'bridge' as const
export const DEFAULT_TABLE = 'infinization'
export const MAP_FROM_VM = 'from_vm'
export const MAP_TO_VM = 'to_vm'
export const CHAIN_PREROUTING = 'prerouting'
export const CHAIN_POSTROUTING = 'postrouting'
/**
 * Hook priority of both base chains. Strictly after bridge conntrack (nf_conntrack_bridge attaches and
 * defragments at -200 in prerouting: a chain at -200 runs before it whenever it registers later, and then
 * reads every packet as `ct state invalid`) and strictly before br_netfilter's hand-over to the IP layer
 * (prerouting 0, postrouting INT_MAX). Same value on both hooks so one number describes the layout.
 */
export const BASE_PRIORITY = -150
/** Infinization's prefix for per-VM chains. */
export const VM_CHAIN_PREFIX = 'vm_'
/** A regular chain that exists only inside one transaction: the kernel renders our rules there (see
 *  rendering.ts) and the same transaction deletes it. Never dispatched to, never visible after a commit. */
export const RENDER_CHAIN = 'nftnode_render'
/** Matches the chains this library creates for VMs. */
export const VM_CHAIN_RE = /^vm_[0-9a-f]{24}_[oi]$/

// ---- the shared identity guard (issue 15, shape B2) ----
// Each VM's built-in checks (anti-spoofing, VLAN, DHCP, RA, NDP) are rules of a few chains shared by every VM
// of the table, over set lookups keyed by the VM's tap: the identity sets hold each tap's MAC and addresses,
// and one tap set per built-in holds the taps it applies to (with a counter per element: each VM's counter of
// that built-in). A VM then contributes set elements only; its chains hold its established/user/default rules.

/** Identity sets: each tap's MAC, IPv4 and IPv6 addresses (the EUI-64 link-local of its MAC included). */
export const SET_ID_MAC = 'id_mac'
export const SET_ID_IPV4 = 'id_ipv4'
export const SET_ID_IPV6 = 'id_ipv6'
export const ID_SETS = [
  { name: SET_ID_MAC, type: ['ifname', 'ether_addr'] },
  { name: SET_ID_IPV4, type: ['ifname', 'ipv4_addr'] },
  { name: SET_ID_IPV6, type: ['ifname', 'ipv6_addr'] },
] as const
/** Regular chains the prerouting chain's protocol dispatch jumps to (each referenced once). */
export const GUARD_IP = 'guard_ip'
export const GUARD_IP6 = 'guard_ip6'
export const GUARD_ARP = 'guard_arp'
export const GUARD_VLAN = 'guard_vlan'
export const GUARD_CHAINS = [GUARD_IP, GUARD_IP6, GUARD_ARP, GUARD_VLAN] as const

/** With `logDrops` (built-ins included), each built-in drop of the guard jumps to a chain of its own that logs
 *  the frame (rate-limited) and drops it: the tap set's lookup, so the VM's counter, stays one per frame. */
export interface GuardLog {
  group: number
  rate: number
  burst: number
  per: string
}
export const guardLogChain = (tag: string): string => `glog_${tag.replace(/-/g, '_')}`

export type BuiltinSide = 'out' | 'in'
/** The built-in checks, in the order a VM's chains held them before the guard: tag (the `builtin` key of
 *  stats and the `b:` comment tag), side, and its verdict. */
export const BUILTINS: readonly { tag: string; side: BuiltinSide; verdict: 'accept' | 'drop' }[] = [
  { tag: 'mac-spoof', side: 'out', verdict: 'drop' },
  { tag: 'arp-mac-spoof', side: 'out', verdict: 'drop' },
  { tag: 'vlan-from-vm', side: 'out', verdict: 'drop' },
  { tag: 'arp-ip-spoof', side: 'out', verdict: 'drop' },
  { tag: 'arp', side: 'out', verdict: 'accept' },
  { tag: 'dhcp-discover', side: 'out', verdict: 'accept' },
  { tag: 'ip-spoof', side: 'out', verdict: 'drop' },
  { tag: 'ip6-unspecified', side: 'out', verdict: 'accept' },
  { tag: 'ip6-spoof', side: 'out', verdict: 'drop' },
  { tag: 'ra-from-vm', side: 'out', verdict: 'drop' },
  { tag: 'dhcp-server-from-vm', side: 'out', verdict: 'drop' },
  { tag: 'dhcp6-server-from-vm', side: 'out', verdict: 'drop' },
  { tag: 'dhcp-client', side: 'out', verdict: 'accept' },
  { tag: 'dhcp6-client', side: 'out', verdict: 'accept' },
  { tag: 'ndp', side: 'out', verdict: 'accept' },
  { tag: 'arp', side: 'in', verdict: 'accept' },
  { tag: 'ndp', side: 'in', verdict: 'accept' },
  { tag: 'dhcp-reply', side: 'in', verdict: 'accept' },
  { tag: 'dhcp6-reply', side: 'in', verdict: 'accept' },
]

/** The tap set of one built-in: `b_ip_spoof`, `b_arp_in`, ... */
export function builtinSet(side: BuiltinSide, tag: string): string {
  return `b_${tag.replace(/-/g, '_')}${side === 'in' ? '_in' : ''}`
}
/** Every tap set of the layout, name -> its built-in. */
export const BUILTIN_SETS: ReadonlyMap<string, { tag: string; side: BuiltinSide; verdict: 'accept' | 'drop' }> = new Map(
  BUILTINS.map((b) => [builtinSet(b.side, b.tag), b]),
)
/** Every per-VM set of the layout (identity and tap sets). */
export const VM_SETS: readonly string[] = [...ID_SETS.map((s) => s.name), ...BUILTIN_SETS.keys()]
/** The log chains of the built-in drops (see GuardLog). */
export const GUARD_LOG_CHAINS: readonly string[] = BUILTINS.filter((b) => b.verdict === 'drop').map((b) => guardLogChain(b.tag))

/** What one VM puts into the guard's sets (compile.ts decides it): the identities its checks compare with, and
 *  the built-ins that apply to it, per side. */
export interface VmIdentity {
  mac?: string
  ipv4: string[]
  /** Allowed IPv6 sources: the EUI-64 link-local of the MAC (when known) and the VM's addresses. */
  ipv6: string[]
  out: string[]
  in: string[]
}

/** One element of a per-VM set: `tap` (tap sets) or `tap . value` (identity sets), as `setKey` spells it. */
export type SetElement = { set: string; key: string }
/** Elements of the layout's per-VM sets: set name -> keys (`setKey`). */
export type SetContents = Map<string, Set<string>>

export const setKey = (tap: string, value?: string): string => (value === undefined ? tap : `${tap} . ${value}`)
/** The tap an element key belongs to. */
export const keyTap = (key: string): string => {
  const i = key.indexOf(' . ')
  return i < 0 ? key : key.slice(0, i)
}

/** The elements VM `id` holds for `tap`. */
export function identityElements(id: VmIdentity, tap: string): SetElement[] {
  const e: SetElement[] = []
  if (id.mac) e.push({ set: SET_ID_MAC, key: setKey(tap, id.mac) })
  for (const a of id.ipv4) e.push({ set: SET_ID_IPV4, key: setKey(tap, a) })
  for (const a of id.ipv6) e.push({ set: SET_ID_IPV6, key: setKey(tap, a) })
  for (const tag of id.out) e.push({ set: builtinSet('out', tag), key: tap })
  for (const tag of id.in) e.push({ set: builtinSet('in', tag), key: tap })
  return e
}

/** The JSON element of a key (a concatenation for identity sets). */
function elementJson(key: string): unknown {
  const i = key.indexOf(' . ')
  return i < 0 ? key : { concat: [key.slice(0, i), key.slice(i + 3)] }
}

/** Adds (or deletes) elements, one command per set, in the layout's set order. */
export function setElementCommands(table: string, verb: 'add' | 'delete', elements: readonly SetElement[]): NftCommand[] {
  const bySet = new Map<string, string[]>()
  for (const e of elements) (bySet.get(e.set) ?? bySet.set(e.set, []).get(e.set)!).push(e.key)
  const out: NftCommand[] = []
  for (const set of VM_SETS) {
    const keys = bySet.get(set)
    if (keys?.length) out.push({ [verb]: { element: { family: FAMILY, table, name: set, elem: keys.map(elementJson) } } } as unknown as NftCommand)
  }
  return out
}

/** The element key of a listed element (`"tap"`, `{ concat: [...] }`, or either wrapped with its counter). */
export function listedKey(e: unknown): { key: string; packets: number; bytes: number } | undefined {
  let v = e
  let counter: { packets?: number; bytes?: number } | undefined
  if (v && typeof v === 'object' && !Array.isArray(v) && 'elem' in v) {
    const w = (v as { elem: { val?: unknown; counter?: { packets?: number; bytes?: number } } }).elem
    v = w?.val
    counter = w?.counter
  }
  const c = (v as { concat?: unknown } | null)?.concat
  const key = typeof v === 'string' ? v : Array.isArray(c) && c.length === 2 && c.every((x) => typeof x === 'string') ? setKey(c[0] as string, c[1] as string) : undefined
  return key === undefined ? undefined : { key, packets: counter?.packets ?? 0, bytes: counter?.bytes ?? 0 }
}

export type SetCounters = Map<string, Map<string, { packets: number; bytes: number }>>

/**
 * The layout's per-VM sets in the *text* of `list sets bridge` (every bridge table's sets with their elements):
 * the engine reads them this way because libnftables 1.0.6's JSON printer of a set's type is not thread-safe
 * (`strtok` in set_dtype_json: two Nft instances of one process listing sets in JSON at once can abort the
 * process); the text printer is. Elements as nft prints them: `"tap"` or `"tap" . value`, each optionally
 * followed by `counter packets N bytes M`.
 */
export function setContentsOfText(text: string, table: string): { contents: SetContents; counters: SetCounters; missing: string[] } {
  const contents: SetContents = new Map()
  const counters: SetCounters = new Map()
  let inTable = false
  let set: string | undefined
  let elements: string | undefined
  const take = (body: string) => {
    for (const item of body.replace(/}\s*$/, '').split(',')) {
      const m = /^"([^"]*)"(?: \. (\S+))?(?: counter packets (\d+) bytes (\d+))?$/.exec(item.trim())
      if (!m || !set) continue
      const key = setKey(m[1]!, m[2])
      contents.get(set)!.add(key)
      counters.get(set)!.set(key, { packets: Number(m[3] ?? 0), bytes: Number(m[4] ?? 0) })
    }
  }
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    const t = /^table bridge (\S+) \{$/.exec(line)
    if (t) {
      inTable = t[1] === table
      continue
    }
    if (raw === '}') inTable = false
    if (!inTable) continue
    const head = /^set (\S+) \{$/.exec(line)
    if (head) {
      set = VM_SETS.includes(head[1]!) ? head[1]! : undefined
      if (set) {
        contents.set(set, new Set())
        counters.set(set, new Map())
      }
      continue
    }
    if (!set) continue
    if (elements !== undefined) {
      elements += ` ${line}`
    } else if (line.startsWith('elements = {')) {
      elements = line.slice('elements = {'.length)
    } else {
      if (line === '}') set = undefined
      continue
    }
    if (elements.trimEnd().endsWith('}')) {
      take(elements)
      elements = undefined
    }
  }
  return { contents, counters, missing: VM_SETS.filter((n) => !contents.has(n)) }
}
/** The layout's per-VM sets in a `list sets` / `list table` JSON document: contents, element counters, and the
 *  names of those missing. */
export function setContentsOf(doc: { nftables: unknown[] } | undefined, table: string): { contents: SetContents; counters: SetCounters; missing: string[] } {
  const contents: SetContents = new Map()
  const counters = new Map<string, Map<string, { packets: number; bytes: number }>>()
  for (const o of doc?.nftables ?? []) {
    const st = (o as { set?: { table?: string; name?: string; elem?: unknown[] } }).set
    if (!st || st.table !== table || typeof st.name !== 'string' || !VM_SETS.includes(st.name)) continue
    const keys = new Set<string>()
    const cs = new Map<string, { packets: number; bytes: number }>()
    for (const e of st.elem ?? []) {
      const k = listedKey(e)
      if (!k) continue
      keys.add(k.key)
      cs.set(k.key, { packets: k.packets, bytes: k.bytes })
    }
    contents.set(st.name, keys)
    counters.set(st.name, cs)
  }
  return { contents, counters, missing: VM_SETS.filter((n) => !contents.has(n)) }
}

/** Infinization's chain name: `vm_` + first 24 hex chars of sha256(vmId). */
export function generateVMChainName(vmId: string): string {
  return VM_CHAIN_PREFIX + sha256Hex(vmId).slice(0, 24)
}

/** The two chains of a VM: `_o` (frames the VM sends, prerouting) and `_i` (frames delivered to it, postrouting). */
export function vmChainNames(vmId: string): { out: string; in: string } {
  const base = generateVMChainName(vmId)
  return { out: `${base}_o`, in: `${base}_i` }
}

// ---- comment tags ----

export type RuleKind = 'r' | 'm' | 'b' | 'd'

export { ruleComment }


/** Parses a comment written by `ruleComment()`. */
export function parseComment(comment: unknown): { kind: 'r' | 'm' | 'b' | 'd'; hash: string; tag: string } | undefined {
  if (typeof comment !== 'string') return undefined
  const m = /^([rmbd]):([0-9a-f]{8}):(.+)$/.exec(comment)
  return m ? { kind: m[1] as 'r' | 'm' | 'b' | 'd', hash: m[2]!, tag: m[3]! } : undefined
}

// ---- commands that write the table's shape ----

const meta = (key: 'iifname' | 'oifname'): NftExpression => ({ meta: { key } })

const ICMP_REPLIES = ['echo-reply', 'destination-unreachable', 'time-exceeded']
const ICMPV6_REPLIES = ['destination-unreachable', 'packet-too-big', 'time-exceeded', 'echo-reply']
const NDP_FROM_VM = ['nd-router-solicit', 'nd-neighbor-solicit', 'nd-neighbor-advert', 'mld-listener-query', 'mld-listener-report', 'mld-listener-done', 'mld2-listener-report']
const NDP_TO_VM = ['nd-router-solicit', 'nd-router-advert', 'nd-neighbor-solicit', 'nd-neighbor-advert', 'mld-listener-query', 'mld-listener-report', 'mld-listener-done', 'mld2-listener-report']

/**
 * Constant type lists shared by every VM chain, as named sets of the table. Anonymous sets (one per rule)
 * make every libnftables call slower: it loads all sets into its cache before each command. Measured on
 * 600 chains, one anonymous set each: `list chain` 0.4 -> 24 ms, `add rule` 1.5 -> 8.5 ms. VM address lists
 * use chained `!=` matches for the same reason.
 */
export const SHARED_SETS: { name: string; type: NftDataType; elem: string[] }[] = [
  { name: 'icmp_protos', type: 'inet_proto', elem: ['icmp', 'ipv6-icmp'] },
  { name: 'icmp_reply', type: 'icmp_type', elem: ICMP_REPLIES },
  { name: 'icmpv6_reply', type: 'icmpv6_type', elem: ICMPV6_REPLIES },
  { name: 'ndp_from_vm', type: 'icmpv6_type', elem: NDP_FROM_VM },
  { name: 'ndp_to_vm', type: 'icmpv6_type', elem: NDP_TO_VM },
  { name: 'ra_redirect', type: 'icmpv6_type', elem: ['nd-router-advert', 'nd-redirect'] },
  { name: 'dad_mld', type: 'icmpv6_type', elem: ['nd-neighbor-solicit', 'mld-listener-report', 'mld2-listener-report'] },
  { name: 'vlan_types', type: 'ether_type', elem: ['8021q', '8021ad'] },
]

/** The table, its shared sets and the guard's per-VM sets (idempotent `add`s). */
export function setCommands(table: string): NftCommand[] {
  return [
    { add: { table: { family: FAMILY, name: table } } },
    ...SHARED_SETS.map((s): NftCommand => ({ add: { set: { family: FAMILY, table, name: s.name, type: s.type, elem: s.elem } } })),
    ...ID_SETS.map((s) => ({ add: { set: { family: FAMILY, table, name: s.name, type: [...s.type] } } }) as unknown as NftCommand),
    ...[...BUILTIN_SETS.keys()].map((name) => ({ add: { set: { family: FAMILY, table, name, type: 'ifname', stmt: [{ counter: null }] } } }) as unknown as NftCommand),
  ]
}

// ---- the guard's rules ----

const pl = (protocol: string, field: string): NftExpression => ({ payload: { protocol, field } })
const is = (left: NftExpression, right: unknown, op: '==' | '!=' = '=='): NftExpression => ({ match: { op, left, right } }) as unknown as NftExpression
const l4 = (p: string) => is({ meta: { key: 'l4proto' } } as NftExpression, p)
/** `iifname . <field> != @<identity set>`: the frame's field is not among its tap's identities. */
const notIdentity = (field: NftExpression, set: string) => is({ concat: [meta('iifname'), field] } as unknown as NftExpression, `@${set}`, '!=')

export interface GuardRule {
  comment: string
  expr: unknown[]
}

/** One built-in as a guard rule: its matches, then (last, so that its element counter counts exactly the
 *  frames the built-in decides) the lookup of the tap in the built-in's set, then its verdict. */
function guardRule(side: BuiltinSide, tag: string, matches: NftExpression[], log?: GuardLog): GuardRule {
  const b = BUILTIN_SETS.get(builtinSet(side, tag))!
  const verdict = log && b.verdict === 'drop' ? { jump: { target: guardLogChain(tag) } } : { [b.verdict]: null }
  const expr = [...matches, is(meta(side === 'out' ? 'iifname' : 'oifname'), `@${builtinSet(side, tag)}`), verdict]
  return { comment: ruleComment('b', expr, tag), expr }
}

/** The log chains (GuardLog): a rate-limited log of the frame, then its drop. */
export function guardLogChainRules(log: GuardLog | undefined): [string, GuardRule[]][] {
  if (!log) return []
  return BUILTINS.filter((b) => b.verdict === 'drop').map((b) => {
    // Key order as libnftables lists it (see log-drops.ts).
    const logged = [{ limit: { rate: log.rate, burst: log.burst, per: log.per } }, { log: { prefix: guardLogPrefix(b.tag), group: log.group } }]
    return [guardLogChain(b.tag), [{ comment: ruleComment('b', logged, `${b.tag}-log`), expr: logged }, { comment: ruleComment('b', [{ drop: null }], b.tag), expr: [{ drop: null }] }]]
  })
}

const dhcpFromVm = (log?: GuardLog): GuardRule[] => [
  guardRule('out', 'dhcp-server-from-vm', [l4('udp'), is(pl('udp', 'sport'), 67)], log),
  guardRule('out', 'dhcp6-server-from-vm', [l4('udp'), is(pl('udp', 'sport'), 547)], log),
  guardRule('out', 'dhcp-client', [l4('udp'), is(pl('udp', 'sport'), 68), is(pl('udp', 'dport'), 67)]),
  guardRule('out', 'dhcp6-client', [l4('udp'), is(pl('udp', 'sport'), 546), is(pl('udp', 'dport'), 547)]),
]

/** The guard chains and their rules: per protocol, the built-ins that can match it, in their order. */
export function guardChainRules(log?: GuardLog): [string, GuardRule[]][] {
  return [
    [
      GUARD_IP,
      [
        guardRule('out', 'dhcp-discover', [is(pl('ip', 'saddr'), '0.0.0.0'), l4('udp'), is(pl('udp', 'sport'), 68), is(pl('udp', 'dport'), 67)]),
        guardRule('out', 'ip-spoof', [notIdentity(pl('ip', 'saddr'), SET_ID_IPV4)], log),
        ...dhcpFromVm(log),
      ],
    ],
    [
      GUARD_IP6,
      [
        guardRule('out', 'ip6-unspecified', [is(pl('ip6', 'saddr'), '::'), is(pl('icmpv6', 'type'), '@dad_mld')]),
        guardRule('out', 'ip6-spoof', [notIdentity(pl('ip6', 'saddr'), SET_ID_IPV6)], log),
        guardRule('out', 'ra-from-vm', [is(pl('icmpv6', 'type'), '@ra_redirect')], log),
        ...dhcpFromVm(log),
        guardRule('out', 'ndp', [is(pl('icmpv6', 'type'), '@ndp_from_vm')]),
      ],
    ],
    [
      GUARD_ARP,
      [
        guardRule('out', 'arp-mac-spoof', [notIdentity(pl('arp', 'saddr ether'), SET_ID_MAC)], log),
        guardRule('out', 'arp-ip-spoof', [is(pl('arp', 'saddr ip'), '0.0.0.0', '!='), notIdentity(pl('arp', 'saddr ip'), SET_ID_IPV4)], log),
        guardRule('out', 'arp', []),
      ],
    ],
    [GUARD_VLAN, [guardRule('out', 'vlan-from-vm', [], log)]],
  ]
}

const PROTOCOL_DISPATCH = {
  vmap: {
    key: pl('ether', 'type'),
    data: {
      set: [
        ['ip', { jump: { target: GUARD_IP } }],
        ['ip6', { jump: { target: GUARD_IP6 } }],
        ['arp', { jump: { target: GUARD_ARP } }],
        ['8021q', { jump: { target: GUARD_VLAN } }],
        ['8021ad', { jump: { target: GUARD_VLAN } }],
      ],
    },
  },
}

/** The rules of a base chain before its dispatch rule: prerouting checks the MAC once, then sends each frame
 *  to its protocol's guard chain (which returns here unless a built-in decides); postrouting the inbound built-ins. */
export function baseGuardRules(name: typeof CHAIN_PREROUTING | typeof CHAIN_POSTROUTING, log?: GuardLog): GuardRule[] {
  if (name === CHAIN_PREROUTING) {
    return [guardRule('out', 'mac-spoof', [notIdentity(pl('ether', 'saddr'), SET_ID_MAC)], log), { comment: ruleComment('b', [PROTOCOL_DISPATCH], 'guard'), expr: [PROTOCOL_DISPATCH] }]
  }
  return [
    guardRule('in', 'arp', [is(pl('ether', 'type'), 'arp')]),
    guardRule('in', 'ndp', [is(pl('icmpv6', 'type'), '@ndp_to_vm')]),
    guardRule('in', 'dhcp-reply', [l4('udp'), is(pl('udp', 'sport'), 67), is(pl('udp', 'dport'), 68)]),
    guardRule('in', 'dhcp6-reply', [l4('udp'), is(pl('udp', 'sport'), 547), is(pl('udp', 'dport'), 546)]),
  ]
}

/** What the base chains do after the guard: the maps they look up, and their rules in order. */
export interface TableDispatch {
  maps: (table: string) => NftCommand[]
  pre: GuardRule[]
  post: GuardRule[]
}

/** The VM-chain table's dispatch: each tap's frames jump to its VM's chains. */
const VM_CHAIN_DISPATCH: TableDispatch = {
  maps: (table) => [
    { add: { map: { family: FAMILY, table, name: MAP_FROM_VM, type: 'ifname', map: 'verdict' } } },
    { add: { map: { family: FAMILY, table, name: MAP_TO_VM, type: 'ifname', map: 'verdict' } } },
  ],
  pre: [{ comment: '', expr: [{ vmap: { key: meta('iifname'), data: `@${MAP_FROM_VM}` } }] }],
  post: [{ comment: '', expr: [{ vmap: { key: meta('oifname'), data: `@${MAP_TO_VM}` } }] }],
}

/** `fresh`: the table does not exist before this batch, so nothing needs flushing (a flush between the adds
 *  would also split the batch's text into many blocks, each a table update for the kernel). `dispatch`: what
 *  follows the guard in the base chains (the VM chains' dispatch maps, or exact-table.ts's lookups). */
export function tableCommands(table: string, fresh = false, log?: GuardLog, dispatch: TableDispatch = VM_CHAIN_DISPATCH): NftCommand[] {
  const f = FAMILY
  const logChains = guardLogChainRules(log)
  return [
    ...setCommands(table),
    ...dispatch.maps(table),
    ...[...logChains.map(([name]) => name), ...GUARD_CHAINS].map((name): NftCommand => ({ add: { chain: { family: f, table, name } } })),
    { add: { chain: { family: f, table, name: CHAIN_PREROUTING, type: 'filter', hook: 'prerouting', prio: BASE_PRIORITY, policy: 'accept' } } },
    { add: { chain: { family: f, table, name: CHAIN_POSTROUTING, type: 'filter', hook: 'postrouting', prio: BASE_PRIORITY, policy: 'accept' } } },
    ...(fresh
      ? []
      : [...logChains.map(([name]) => name), ...GUARD_CHAINS, CHAIN_PREROUTING, CHAIN_POSTROUTING].map((name): NftCommand => ({ flush: { chain: { family: f, table, name } } }))),
    // Log chains of an earlier `logDrops` that this one does not log (the flushes above drop their references).
    ...(fresh || log ? [] : GUARD_LOG_CHAINS.flatMap((name) => chainDeleteCommands(table, name))),
    ...[...logChains, ...guardChainRules(log)].flatMap(([chain, rules]) => rules.map((r) => ruleCommand(table, chain, r))),
    ...[...baseGuardRules(CHAIN_PREROUTING, log), ...dispatch.pre].map((r) => ruleCommand(table, CHAIN_PREROUTING, r)),
    ...[...baseGuardRules(CHAIN_POSTROUTING, log), ...dispatch.post].map((r) => ruleCommand(table, CHAIN_POSTROUTING, r)),
  ]
}

/** A rule of a base or guard chain (no comment: the dispatch rule, which carries none). */
const ruleCommand = (table: string, chain: string, r: GuardRule): NftCommand =>
  ({ add: { rule: { family: FAMILY, table, chain, ...(r.comment ? { comment: r.comment } : {}), expr: r.expr } } }) as unknown as NftCommand

/** Creates or empties a chain without failing either way (`add` is idempotent), then optionally fills it.
 *  `fresh`: the chain cannot exist yet (its table is created by the same batch): no flush. */
export function chainReplaceCommands(table: string, chain: string, rules: CompiledRule[], fresh = false): NftCommand[] {
  const f = FAMILY
  return [
    { add: { chain: { family: f, table, name: chain } } },
    ...(fresh ? [] : [{ flush: { chain: { family: f, table, name: chain } } }]),
    ...rules.map((r) => ({ add: { rule: { family: f, table, chain, comment: r.comment, expr: r.expr } } })),
  ]
}

/** Deletes a chain whether or not it exists (`add` + `flush` + `delete`: no `destroy` needed on 1.0.6). */
/** The table a command names (its `table` object's name, or the `table` of its chain, rule, set or element). */
export function commandTable(cmd: NftCommand): string | undefined {
  const body = Object.values(cmd as Record<string, Record<string, Record<string, unknown>>>)[0]
  const [kind, o] = (body && typeof body === 'object' ? Object.entries(body)[0] : undefined) ?? []
  const t = kind === 'table' ? o?.name : o?.table
  return typeof t === 'string' ? t : undefined
}

export function chainDeleteCommands(table: string, chain: string): NftCommand[] {
  const f = FAMILY
  return [
    { add: { chain: { family: f, table, name: chain } } },
    { flush: { chain: { family: f, table, name: chain } } },
    { delete: { chain: { family: f, table, name: chain } } },
  ]
}

export function elementAdd(table: string, map: string, key: string, chain: string): NftCommand {
  return { add: { element: { family: FAMILY, table, name: map, elem: [[key, { jump: { target: chain } }]] } } }
}

export function elementDelete(table: string, map: string, key: string): NftCommand {
  return { delete: { element: { family: FAMILY, table, name: map, elem: [key] } } }
}

/** Commands that (re)build one VM: chains, rules, dispatch. `stale` lists map keys to delete first;
 *  `elements` the guard's set elements to delete first and to add (the VM's identity for its tap; see
 *  `identityChanges`). */
export function vmApplyCommands(
  table: string,
  c: CompiledVm,
  stale: { map: string; key: string }[],
  attach = true,
  fresh = false,
  elements: { del: SetElement[]; add: SetElement[] } = { del: [], add: attach ? identityElements(c.identity, c.tap) : [] },
  /** `chains: false`: the VM's chains are known to hold exactly its rules (not rewritten); `dispatch: false`:
   *  its tap is known to dispatch to them (not re-added). An identity change is then element-only. */
  write: { chains?: boolean; dispatch?: boolean } = {},
): NftCommand[] {
  const chains = write.chains !== false
  return [
    ...stale.map((s) => elementDelete(table, s.map, s.key)),
    ...setElementCommands(table, 'delete', elements.del),
    ...(chains ? chainReplaceCommands(table, c.chains.out, c.out, fresh) : []),
    ...(chains ? chainReplaceCommands(table, c.chains.in, c.in, fresh) : []),
    ...(attach && write.dispatch !== false ? [elementAdd(table, MAP_FROM_VM, c.tap, c.chains.out), elementAdd(table, MAP_TO_VM, c.tap, c.chains.in)] : []),
    ...setElementCommands(table, 'add', elements.add),
  ]
}

/**
 * The guard elements to delete and add so that exactly `want` (one VM's elements for its tap, or none) is held
 * for the taps in `taps` (its tap and those leaving it), given the sets' contents (`have`, exact: a delete of a
 * missing element fails the batch). Without `have` (contents unknown) nothing is deleted and everything added.
 * Only what is missing is added: an element already there keeps its counter and costs nothing.
 */
export function identityChanges(have: SetContents | undefined, taps: Iterable<string>, want: readonly SetElement[]): { del: SetElement[]; add: SetElement[] } {
  if (!have) return { del: [], add: [...want] }
  const tapSet = new Set(taps)
  const wanted = new Set(want.map((e) => `${e.set}\0${e.key}`))
  const del: SetElement[] = []
  for (const set of VM_SETS) {
    const keys = have.get(set)
    if (!keys) continue
    if (BUILTIN_SETS.has(set)) {
      // A tap set's key is the tap itself: no scan (a VM apply stays O(its taps), not O(the table's elements)).
      for (const tap of tapSet) if (keys.has(tap) && !wanted.has(`${set}\0${tap}`)) del.push({ set, key: tap })
    } else {
      for (const key of keys) if (tapSet.has(keyTap(key)) && !wanted.has(`${set}\0${key}`)) del.push({ set, key })
    }
  }
  const add = want.filter((e) => !have.get(e.set)?.has(e.key))
  return { del, add }
}

// ---- readers of the table's listing ----

export type Elements = Map<string, string> // key (ifname) -> jump target
/** Both dispatch maps of the table. */
export type DispatchMaps = { [MAP_FROM_VM]: Elements; [MAP_TO_VM]: Elements }

export interface KernelTable {
  exists: boolean
  chains: Set<string>
  /** Rules per chain, with comments and counters, in order. */
  rules: Map<string, { comment?: string; packets: number; bytes: number; expr: unknown[]; ours?: boolean }[]>
  maps: { [MAP_FROM_VM]: Elements; [MAP_TO_VM]: Elements }
  mapsExist: boolean
  /** The guard's per-VM sets (those that exist) and their element counters. */
  sets: SetContents
  setCounters: SetCounters
  problems: string[]
  /** Base chains whose type/hook/priority differ (cannot be changed in place: delete and recreate). */
  recreate: string[]
}

export function counterOf(expr: unknown[]): { packets: number; bytes: number } {
  for (const s of expr) {
    const c = (s as { counter?: { packets?: number; bytes?: number } }).counter
    if (c && typeof c === 'object') return { packets: c.packets ?? 0, bytes: c.bytes ?? 0 }
  }
  return { packets: 0, bytes: 0 }
}

const BASE_CHAINS = {
  [CHAIN_PREROUTING]: { hook: 'prerouting' },
  [CHAIN_POSTROUTING]: { hook: 'postrouting' },
} as const

/**
 * One base chain of the layout and its dispatch rule against what was listed: `chain` is its own object
 * (undefined: no chain of that name; without a hook: a regular chain), `rules` its rules. `recreate`: its
 * type, hook or priority differ, which cannot be changed in place. The whole-table reader and the two-listing
 * check (VmFirewall.tableProblems, #baseChainRepairs) both judge with this.
 */
export function baseChainProblems(
  name: typeof CHAIN_PREROUTING | typeof CHAIN_POSTROUTING,
  chain: Record<string, unknown> | undefined,
  rules: readonly { expr: unknown[] }[],
  log?: GuardLog,
  /** What follows the guard (tableCommands' `dispatch`): rules with a comment are judged by it, the others by
   *  their expressions. */
  dispatch: TableDispatch = VM_CHAIN_DISPATCH,
): { problems: string[]; recreate: boolean } {
  const { hook } = BASE_CHAINS[name]
  if (!chain) return { problems: [`base chain ${name} missing`], recreate: false }
  if (!chain.hook) return { problems: [`base chain ${name} is a regular chain`], recreate: true }
  const problems: string[] = []
  const recreate = chain.hook !== hook || chain.type !== 'filter' || chain.prio !== BASE_PRIORITY
  if (recreate) problems.push(`base chain ${name} changed (type ${String(chain.type)} hook ${String(chain.hook)} priority ${String(chain.prio)})`)
  if (chain.policy !== 'accept') problems.push(`base chain ${name} policy ${String(chain.policy)} (expected accept)`)
  // The guard's rules (by comment: each names its built-in and hashes what we wrote), then the dispatch rule.
  const guard = baseGuardRules(name, log)
  const tail = name === CHAIN_PREROUTING ? dispatch.pre : dispatch.post
  const listed = rules as readonly { expr: unknown[]; comment?: string }[]
  const guardOk = listed.length >= guard.length && guard.every((g, i) => listed[i]!.comment === g.comment)
  if (!guardOk) problems.push(`guard rules in ${name} missing or changed`)
  const found = listed.slice(-tail.length)
  const same = (want: GuardRule, have: { expr: unknown[]; comment?: string } | undefined) =>
    have !== undefined && (want.comment ? have.comment === want.comment : have.comment === undefined && JSON.stringify(have.expr) === JSON.stringify(want.expr))
  // The rules after an intact guard are the dispatch's: exactly its own (a rule more or less is its problem).
  const ok = found.length === tail.length && tail.every((w, i) => same(w, found[i])) && (!guardOk || listed.length === guard.length + tail.length)
  if (!ok) problems.push(`dispatch rule in ${name} missing or changed`)
  return { problems, recreate }
}

/** Problems of the guard chains (missing, a base chain, or rules other than the layout's, by comment). */
export function guardChainProblems(chains: ReadonlyMap<string, Record<string, unknown>>, rules: ReadonlyMap<string, readonly { comment?: string }[]>, log?: GuardLog): string[] {
  const problems: string[] = []
  const logChains = guardLogChainRules(log)
  if (!log) for (const name of GUARD_LOG_CHAINS) if (chains.has(name)) problems.push(`guard log chain ${name} left over`)
  for (const [name, want] of [...guardChainRules(log), ...logChains]) {
    const c = chains.get(name)
    if (!c) problems.push(`guard chain ${name} missing`)
    else if (c.hook) problems.push(`guard chain ${name} is a base chain`)
    else {
      const have = rules.get(name) ?? []
      if (have.length !== want.length || want.some((w, i) => have[i]!.comment !== w.comment)) problems.push(`guard chain ${name} changed`)
    }
  }
  return problems
}

export function parseTable(doc: NftablesJson | undefined, log?: GuardLog): KernelTable {
  const t: KernelTable = {
    exists: doc !== undefined,
    chains: new Set(),
    rules: new Map(),
    maps: { [MAP_FROM_VM]: new Map(), [MAP_TO_VM]: new Map() },
    mapsExist: false,
    sets: new Map(),
    setCounters: new Map(),
    problems: [],
    recreate: [],
  }
  if (!doc) return t
  let mapCount = 0
  const sets = new Set<string>()
  const base = new Map<string, Record<string, unknown>>()
  const chainObjects = new Map<string, Record<string, unknown>>()
  for (const o of doc.nftables) {
    if ('chain' in o) {
      const c = o.chain as unknown as Record<string, unknown>
      t.chains.add(c.name as string)
      chainObjects.set(c.name as string, c)
      if (c.hook) base.set(c.name as string, c)
    } else if ('set' in o) {
      sets.add((o.set as { name: string }).name)
    } else if ('map' in o) {
      const m = o.map as unknown as Record<string, unknown>
      if (m.name === MAP_FROM_VM || m.name === MAP_TO_VM) {
        mapCount++
        t.maps[m.name] = mapElements(m)
      }
    } else if ('rule' in o) {
      const r = o.rule as unknown as Record<string, unknown>
      const list = t.rules.get(r.chain as string) ?? []
      const expr = (r.expr as unknown[]) ?? []
      list.push({ comment: r.comment as string | undefined, ...counterOf(expr), expr })
      t.rules.set(r.chain as string, list)
    }
  }
  t.mapsExist = mapCount === 2
  if (!t.mapsExist) t.problems.push('dispatch maps missing')
  const missingSets = SHARED_SETS.filter((x) => !sets.has(x.name)).map((x) => x.name)
  if (missingSets.length) t.problems.push(`shared sets missing: ${missingSets.join(', ')}`)
  const guardSets = setContentsOf(doc as unknown as { nftables: unknown[] }, tableNameOf(doc))
  t.sets = guardSets.contents
  t.setCounters = guardSets.counters
  if (guardSets.missing.length) t.problems.push(`guard sets missing: ${guardSets.missing.join(', ')}`)
  t.problems.push(...guardChainProblems(chainObjects, t.rules, log))
  for (const name of [CHAIN_PREROUTING, CHAIN_POSTROUTING] as const) {
    const c = base.get(name) ?? (t.chains.has(name) ? {} : undefined)
    const found = baseChainProblems(name, c, t.rules.get(name) ?? [], log)
    t.problems.push(...found.problems)
    if (found.recreate) t.recreate.push(name)
  }
  return t
}

/** The table a listing is of (its first object naming one). */
function tableNameOf(doc: NftablesJson): string {
  for (const o of doc.nftables) {
    const body = Object.values(o)[0] as { table?: unknown } | undefined
    if (body && typeof body.table === 'string') return body.table
  }
  return ''
}

/** The table a full sync of `compiled` leaves (all attached), as a listing of it would read. */
export function tableOf(compiled: CompiledVm[]): KernelTable {
  const t = parseTable({ nftables: [] })
  t.problems = []
  t.mapsExist = true
  for (const name of VM_SETS) t.sets.set(name, new Set())
  for (const c of compiled) {
    for (const [chain, rules] of [
      [c.chains.out, c.out],
      [c.chains.in, c.in],
    ] as const) {
      t.chains.add(chain)
      t.rules.set(chain, rules.map((r) => ({ comment: r.comment, packets: 0, bytes: 0, expr: r.expr, ours: true })))
    }
    t.maps[MAP_FROM_VM].set(c.tap, c.chains.out)
    t.maps[MAP_TO_VM].set(c.tap, c.chains.in)
    for (const e of identityElements(c.identity, c.tap)) t.sets.get(e.set)!.add(e.key)
  }
  for (const name of [CHAIN_PREROUTING, CHAIN_POSTROUTING, ...GUARD_CHAINS]) t.chains.add(name)
  return t
}

/** Groups the table's VM chains by VM (chain name stem), with the vmId read from the default rule's comment. */
export function inventoryOf(k: KernelTable): VmInventoryEntry[] {
  const byStem = new Map<string, VmInventoryEntry>()
  for (const chain of [...k.chains].sort()) {
    if (!VM_CHAIN_RE.test(chain)) continue
    const stem = chain.slice(0, -2)
    const entry = byStem.get(stem) ?? { chains: [], taps: [], rules: 0, guardElements: 0 }
    byStem.set(stem, entry)
    entry.chains.push(chain)
    const rules = k.rules.get(chain) ?? []
    entry.rules += rules.length
    const last = rules[rules.length - 1]
    const p = parseComment(last?.comment)
    if (p?.kind === 'd') {
      entry.vmId = p.tag
      const verdict = last!.expr[last!.expr.length - 1] as Record<string, unknown> | undefined
      if (verdict && ('accept' in verdict || 'drop' in verdict)) entry.defaultAction = 'accept' in verdict ? 'accept' : 'drop'
    }
    for (const map of [MAP_FROM_VM, MAP_TO_VM] as const) {
      for (const [key, target] of k.maps[map]) if (target === chain && !entry.taps.includes(key)) entry.taps.push(key)
    }
  }
  for (const entry of byStem.values()) {
    const taps = new Set(entry.taps)
    for (const keys of k.sets.values()) for (const key of keys) if (taps.has(keyTap(key))) entry.guardElements = (entry.guardElements ?? 0) + 1
  }
  return [...byStem.values()]
}
