// The table's layout, in one place: every name, the comment tags, the commands that write the table's shape,
// and the readers of its listing. The compiler (policy), the reconciler and the compat facade use these and
// nothing else, so changing a name or a tag is one edit here.
import { createHash } from 'node:crypto'
import type { NftablesJson, NftCommand, NftDataType, NftExpression } from '../schema.js'
import type { CompiledRule, CompiledVm } from './compile.js'
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

/** Infinization's chain name: `vm_` + first 24 hex chars of sha256(vmId). */
export function generateVMChainName(vmId: string): string {
  return VM_CHAIN_PREFIX + createHash('sha256').update(vmId).digest('hex').slice(0, 24)
}

/** The two chains of a VM: `_o` (frames the VM sends, prerouting) and `_i` (frames delivered to it, postrouting). */
export function vmChainNames(vmId: string): { out: string; in: string } {
  const base = generateVMChainName(vmId)
  return { out: `${base}_o`, in: `${base}_i` }
}

// ---- comment tags ----

export type RuleKind = 'r' | 'm' | 'b' | 'd'

/** `<kind>:<hash8 of the rule's body>:<tag>`: r = a user rule (tag: rule id), m = its reply or REJECT answer
 *  rule, b = a built-in rule (tag: its name), d = the VM's default action (tag: vmId). */
export function ruleComment(kind: RuleKind, body: unknown, tag: string): string {
  return `${kind}:${createHash('sha256').update(JSON.stringify(body)).digest('hex').slice(0, 8)}:${tag}`
}

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

/** The table and its shared sets (idempotent `add`s; included in every VM transaction). */
export function setCommands(table: string): NftCommand[] {
  return [
    { add: { table: { family: FAMILY, name: table } } },
    ...SHARED_SETS.map((s): NftCommand => ({ add: { set: { family: FAMILY, table, name: s.name, type: s.type, elem: s.elem } } })),
  ]
}

/** `fresh`: the table does not exist before this batch, so nothing needs flushing (a flush between the adds
 *  would also split the batch's text into many blocks, each a table update for the kernel). */
export function tableCommands(table: string, fresh = false): NftCommand[] {
  const f = FAMILY
  return [
    ...setCommands(table),
    { add: { map: { family: f, table, name: MAP_FROM_VM, type: 'ifname', map: 'verdict' } } },
    { add: { map: { family: f, table, name: MAP_TO_VM, type: 'ifname', map: 'verdict' } } },
    { add: { chain: { family: f, table, name: CHAIN_PREROUTING, type: 'filter', hook: 'prerouting', prio: BASE_PRIORITY, policy: 'accept' } } },
    { add: { chain: { family: f, table, name: CHAIN_POSTROUTING, type: 'filter', hook: 'postrouting', prio: BASE_PRIORITY, policy: 'accept' } } },
    ...(fresh
      ? []
      : [{ flush: { chain: { family: f, table, name: CHAIN_PREROUTING } } }, { flush: { chain: { family: f, table, name: CHAIN_POSTROUTING } } }]),
    { add: { rule: { family: f, table, chain: CHAIN_PREROUTING, expr: [{ vmap: { key: meta('iifname'), data: `@${MAP_FROM_VM}` } }] } } },
    { add: { rule: { family: f, table, chain: CHAIN_POSTROUTING, expr: [{ vmap: { key: meta('oifname'), data: `@${MAP_TO_VM}` } }] } } },
  ]
}

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

/** Commands that (re)build one VM: chains, rules, dispatch. `stale` lists map keys to delete first. */
export function vmApplyCommands(table: string, c: CompiledVm, stale: { map: string; key: string }[], attach = true, fresh = false): NftCommand[] {
  return [
    ...stale.map((s) => elementDelete(table, s.map, s.key)),
    ...chainReplaceCommands(table, c.chains.out, c.out, fresh),
    ...chainReplaceCommands(table, c.chains.in, c.in, fresh),
    ...(attach ? [elementAdd(table, MAP_FROM_VM, c.tap, c.chains.out), elementAdd(table, MAP_TO_VM, c.tap, c.chains.in)] : []),
  ]
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
  [CHAIN_PREROUTING]: { hook: 'prerouting', key: 'iifname', map: MAP_FROM_VM },
  [CHAIN_POSTROUTING]: { hook: 'postrouting', key: 'oifname', map: MAP_TO_VM },
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
): { problems: string[]; recreate: boolean } {
  const { hook, key, map } = BASE_CHAINS[name]
  if (!chain) return { problems: [`base chain ${name} missing`], recreate: false }
  if (!chain.hook) return { problems: [`base chain ${name} is a regular chain`], recreate: true }
  const problems: string[] = []
  const recreate = chain.hook !== hook || chain.type !== 'filter' || chain.prio !== BASE_PRIORITY
  if (recreate) problems.push(`base chain ${name} changed (type ${String(chain.type)} hook ${String(chain.hook)} priority ${String(chain.prio)})`)
  if (chain.policy !== 'accept') problems.push(`base chain ${name} policy ${String(chain.policy)} (expected accept)`)
  const ok = rules.length === 1 && JSON.stringify(rules[0]!.expr) === JSON.stringify([{ vmap: { key: { meta: { key } }, data: `@${map}` } }])
  if (!ok) problems.push(`dispatch rule in ${name} missing or changed`)
  return { problems, recreate }
}

export function parseTable(doc: NftablesJson | undefined): KernelTable {
  const t: KernelTable = {
    exists: doc !== undefined,
    chains: new Set(),
    rules: new Map(),
    maps: { [MAP_FROM_VM]: new Map(), [MAP_TO_VM]: new Map() },
    mapsExist: false,
    problems: [],
    recreate: [],
  }
  if (!doc) return t
  let mapCount = 0
  const sets = new Set<string>()
  const base = new Map<string, Record<string, unknown>>()
  for (const o of doc.nftables) {
    if ('chain' in o) {
      const c = o.chain as unknown as Record<string, unknown>
      t.chains.add(c.name as string)
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
  for (const name of [CHAIN_PREROUTING, CHAIN_POSTROUTING] as const) {
    const c = base.get(name) ?? (t.chains.has(name) ? {} : undefined)
    const found = baseChainProblems(name, c, t.rules.get(name) ?? [])
    t.problems.push(...found.problems)
    if (found.recreate) t.recreate.push(name)
  }
  return t
}

/** The table a full sync of `compiled` leaves (all attached), as a listing of it would read. */
export function tableOf(compiled: CompiledVm[]): KernelTable {
  const t = parseTable({ nftables: [] })
  t.problems = []
  t.mapsExist = true
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
  }
  for (const name of [CHAIN_PREROUTING, CHAIN_POSTROUTING]) t.chains.add(name)
  return t
}

/** Groups the table's VM chains by VM (chain name stem), with the vmId read from the default rule's comment. */
export function inventoryOf(k: KernelTable): VmInventoryEntry[] {
  const byStem = new Map<string, VmInventoryEntry>()
  for (const chain of [...k.chains].sort()) {
    if (!VM_CHAIN_RE.test(chain)) continue
    const stem = chain.slice(0, -2)
    const entry = byStem.get(stem) ?? { chains: [], taps: [], rules: 0 }
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
  return [...byStem.values()]
}
