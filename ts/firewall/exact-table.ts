// The exact table's layout (issue 15): the table that holds the VMs whose policies are exact-key elements
// (exact-rules.ts), next to the VM-chain table. It has the same guard as that table, over sets of its own
// (each table only ever judges its own taps), and after the guard, instead of the jump to a VM's chains,
// one verdict-map lookup per rule shape in use, then the tap's default. Its own table because a commit that
// makes the kernel validate a table walks every element of every verdict map its base chains reach: in the
// VM-chain table these elements would make every chain VM's replace cost ~10 ms at 1000 VMs
// (bench/results/issue-15-exact-key-elements, mixed-table-time.ts). Only the shapes some VM uses are looked
// up: each empty lookup costs a frame about a point of 64-byte UDP (bench/results/issue-15-shape-catalogue).
// Names, writers and the reader of the listing, side by side. Pure: no I/O.
import type { NftCommand, NftExpression } from '../schema.js'
import type { Side } from './compile.js'
import { countInto, zeroCounters } from './counters.js'
import type { VmStats } from './model.js'
import { EXACT_SHAPES, type ExactElement, type ExactField, type ExactPolicy } from './exact-rules.js'
import { baseChainProblems, CHAIN_POSTROUTING, CHAIN_PREROUTING, FAMILY, guardChainProblems, tableCommands, type GuardLog, type GuardRule, type TableDispatch } from './layout.js'

/** The exact table of the firewall whose VM-chain table is `table` (checkTableName allows 31 characters, the
 *  kernel 255). */
export const exactTableName = (table: string): string => `${table}_exact`

/** The map of one shape's elements on one side: `out_s4lp` (frames from the VM), `in_lp` (frames to it). */
export const exactMapName = (side: Side, shape: string): string => `${side}_${shape}`
/** The map of each tap's default verdict, per side. */
export const exactDefaultMap = (side: Side): string => `${side}_default`

/** Comments of the base chains' rules after the guard, naming what each looks up (a listing shows which rule is which). */
const LOOKUP_TAG = 'x:'
export const lookupComment = (side: Side, shape: string): string => `${LOOKUP_TAG}${exactMapName(side, shape)}`
const ESTABLISHED_COMMENT = `${LOOKUP_TAG}established`

/** Element comments: the rule an element comes from (`r:<ruleId>`), the VM of a default (`d:<vmId>`). Both
 *  are tokens without quotes or spaces (validate.ts), at most 98 bytes (the kernel keeps 256). */
export const elementComment = (e: ExactElement): string => `r:${e.ruleId}`
export const defaultComment = (vmId: string): string => `d:${vmId}`

const portKey = (side: Side): NftExpression => ({ meta: { key: side === 'out' ? 'iifname' : 'oifname' } }) as NftExpression

/** Each key component's expression and its type as a map declares it (netlink-batch.ts encodes the same). */
export const EXACT_FIELD_KEY: Record<ExactField, { expr: NftExpression; type: string }> = {
  saddr4: { expr: { payload: { protocol: 'ip', field: 'saddr' } } as NftExpression, type: 'ipv4_addr' },
  daddr4: { expr: { payload: { protocol: 'ip', field: 'daddr' } } as NftExpression, type: 'ipv4_addr' },
  saddr6: { expr: { payload: { protocol: 'ip6', field: 'saddr' } } as NftExpression, type: 'ipv6_addr' },
  daddr6: { expr: { payload: { protocol: 'ip6', field: 'daddr' } } as NftExpression, type: 'ipv6_addr' },
  l4proto: { expr: { meta: { key: 'l4proto' } } as NftExpression, type: 'inet_proto' },
  // `th dport`: the transport header's bytes 2-3, the destination port of TCP and UDP (the key's protocol
  // says which); no shape without l4proto reads it.
  dport: { expr: { payload: { protocol: 'th', field: 'dport' } } as NftExpression, type: 'inet_service' },
}

/** The shapes looked up on each side: what the table's base chains need for the VMs it holds. */
export type ExactShapes = Record<Side, ReadonlySet<string>>

/** The union of the VMs' shapes (or of any shapes: a table's and a VM's). */
export function shapesOf(policies: Iterable<{ shapes: ExactShapes }>): ExactShapes {
  const out = new Set<string>()
  const inn = new Set<string>()
  for (const p of policies) {
    for (const s of p.shapes.out) out.add(s)
    for (const s of p.shapes.in) inn.add(s)
  }
  return { out, in: inn }
}

/** What follows the guard in the exact table's base chains (layout.ts's TableDispatch). */
function dispatch(shapes: ExactShapes, stateful: boolean): TableDispatch {
  const lookups = (side: Side): GuardRule[] => [
    // As compile.ts puts it at the head of a stateful VM's chains: replies and related traffic of allowed flows.
    ...(stateful ? [{ comment: ESTABLISHED_COMMENT, expr: [{ match: { op: 'in', left: { ct: { key: 'state' } }, right: ['established', 'related'] } }, { accept: null }] }] : []),
    // In the catalogue's order: where two rules of different verdicts overlap, exact-rules.ts has checked that
    // this order is theirs.
    ...EXACT_SHAPES.filter((s) => shapes[side].has(s.name)).map((s) => ({
      comment: lookupComment(side, s.name),
      expr: [{ vmap: { key: { concat: [portKey(side), ...s.fields.map((f) => EXACT_FIELD_KEY[f].expr)] }, data: `@${exactMapName(side, s.name)}` } }],
    })),
    { comment: lookupComment(side, 'default'), expr: [{ counter: null }, { vmap: { key: portKey(side), data: `@${exactDefaultMap(side)}` } }] },
  ]
  return {
    maps: (table) =>
      (['out', 'in'] as const).flatMap((side) => [
        ...EXACT_SHAPES.filter((s) => shapes[side].has(s.name)).map((s) => mapCommand(table, exactMapName(side, s.name), ['ifname', ...s.fields.map((f) => EXACT_FIELD_KEY[f].type)])),
        mapCommand(table, exactDefaultMap(side), 'ifname'),
      ]),
    pre: lookups('out'),
    post: lookups('in'),
  }
}

/** A verdict map whose elements each count their packets (`stats` reads them per rule). */
const mapCommand = (table: string, name: string, type: string | string[]): NftCommand =>
  ({ add: { map: { family: FAMILY, table, name, type, map: 'verdict', stmt: [{ counter: null }] } } }) as unknown as NftCommand

/**
 * The exact table with lookups for `shapes` (idempotent adds; the base chains are flushed and rewritten unless
 * `fresh`). Rewriting the base chains adds rules, so that one commit is validated; the VMs' element changes
 * after it are not. `stateful`: conntrack works in a bridge table (the firewall's probed capability).
 */
export function exactTableCommands(table: string, opts: { shapes: ExactShapes; stateful: boolean; fresh?: boolean; log?: GuardLog }): NftCommand[] {
  return tableCommands(table, opts.fresh ?? false, opts.log, dispatch(opts.shapes, opts.stateful))
}

const keyJson = (tap: string, key: readonly (string | number)[]): unknown => (key.length === 0 ? tap : { concat: [tap, ...key] })

/** One element a VM holds in the table: its map, the key after its tap, the verdict, the comment. */
export interface ExactTableElement {
  map: string
  key: readonly (string | number)[]
  verdict: string
  comment: string
}

/** The elements VM `vmId` holds under `policy`: its rules' elements in the policy's order, then its default on
 *  each side (elementCommands groups them by map). */
export function tableElementsOf(vmId: string, policy: ExactPolicy): ExactTableElement[] {
  const rules = policy.elements.map((e): ExactTableElement => ({ map: exactMapName(e.side, e.shape), key: e.key, verdict: e.verdict, comment: elementComment(e) }))
  const defaults = (['out', 'in'] as const).map((side): ExactTableElement => ({ map: exactDefaultMap(side), key: [], verdict: policy.defaultAction, comment: defaultComment(vmId) }))
  return [...rules, ...defaults]
}

const MAP_ORDER: readonly string[] = (['out', 'in'] as const).flatMap((side) => [...EXACT_SHAPES.map((s) => exactMapName(side, s.name)), exactDefaultMap(side)])

/**
 * Adds or deletes elements of `tap`, one command per map, in the catalogue's order. A delete names keys only;
 * an add carries each element's verdict and comment, and gets a fresh counter.
 */
export function elementCommands(table: string, verb: 'add' | 'delete', tap: string, elements: readonly ExactTableElement[]): NftCommand[] {
  const byMap = new Map<string, unknown[]>()
  for (const e of elements) {
    const val = keyJson(tap, e.key)
    ;(byMap.get(e.map) ?? byMap.set(e.map, []).get(e.map)!).push(verb === 'delete' ? val : [{ elem: { val, comment: e.comment } }, { [e.verdict]: null }])
  }
  return MAP_ORDER.filter((m) => byMap.has(m)).map((name) => ({ [verb]: { element: { family: FAMILY, table, name, elem: byMap.get(name) } } }) as unknown as NftCommand)
}

/** Adds or deletes all of one VM's elements (tableElementsOf). */
export function exactElementCommands(table: string, verb: 'add' | 'delete', tap: string, vmId: string, policy: ExactPolicy): NftCommand[] {
  return elementCommands(table, verb, tap, tableElementsOf(vmId, policy))
}

// ---- reader ----

/** One element as listed: its map, the key after the tap, the verdict, the comment and the counter. */
export interface ListedExactElement {
  map: string
  key: string[]
  verdict: string
  comment?: string
  packets: number
  bytes: number
}

/** The exact table as listed: its elements per tap, and the maps found. */
export interface ExactTableView {
  maps: Set<string>
  elements: Map<string, ListedExactElement[]>
}

/** Splits `a . "b c" . d` on the concatenation dots outside quotes. */
function splitTop(text: string, sep: string): string[] {
  const parts: string[] = []
  let q = false
  let start = 0
  for (let i = 0; i < text.length; i++) {
    const c = text[i]
    if (c === '"') q = !q
    else if (!q && text.startsWith(sep, i)) {
      parts.push(text.slice(start, i))
      start = i + sep.length
      i += sep.length - 1
    }
  }
  parts.push(text.slice(start))
  return parts.map((p) => p.trim())
}

const unquote = (s: string): string => (s.startsWith('"') && s.endsWith('"') ? s.slice(1, -1) : s)

/** One listed element: `"tap" . 10.0.0.1 . tcp . 22 counter packets 1 bytes 60 comment "r:ssh" : accept`. */
function parseElement(map: string, text: string): [string, ListedExactElement] | undefined {
  const colon = text.lastIndexOf(' : ')
  if (colon < 0) return undefined
  const verdict = text.slice(colon + 3).trim()
  let head = text.slice(0, colon)
  let comment: string | undefined
  const c = / comment "([^"]*)"$/.exec(head)
  if (c) {
    comment = c[1]
    head = head.slice(0, c.index)
  }
  let packets = 0
  let bytes = 0
  const n = / counter packets (\d+) bytes (\d+)$/.exec(head)
  if (n) {
    packets = Number(n[1])
    bytes = Number(n[2])
    head = head.slice(0, n.index)
  }
  const [tap, ...key] = splitTop(head, ' . ').map(unquote)
  if (!tap) return undefined
  return [tap, { map, key, verdict, ...(comment === undefined ? {} : { comment }), packets, bytes }]
}

/**
 * The exact table's maps and their elements, from the text of `list table bridge <exact table>` (text, as
 * layout.ts reads the guard's sets: libnftables 1.0.6's JSON printer of set types is not thread-safe).
 */
export function exactTableOfText(text: string): ExactTableView {
  const view: ExactTableView = { maps: new Set(), elements: new Map() }
  const re = /^\s*map (\S+) \{([\s\S]*?)^\s*\}/gm
  for (let m = re.exec(text); m; m = re.exec(text)) {
    const name = m[1]!
    view.maps.add(name)
    const body = m[2]!
    const e = /elements = \{([\s\S]*?)\}\s*$/.exec(body)
    if (!e) continue
    for (const item of splitTop(e[1]!.replace(/\s*\n\s*/g, ' '), ',')) {
      const parsed = item && parseElement(name, item)
      if (!parsed) continue
      const [tap, el] = parsed
      ;(view.elements.get(tap) ?? view.elements.set(tap, []).get(tap)!).push(el)
    }
  }
  return view
}

/** The shapes the listed table looks up, read from its maps (exactTableCommands writes a shape's map and its
 *  lookup in one transaction). */
export function shapesOfView(view: ExactTableView): ExactShapes {
  const shapes = { out: new Set<string>(), in: new Set<string>() }
  for (const side of ['out', 'in'] as const) for (const s of EXACT_SHAPES) if (view.maps.has(exactMapName(side, s.name))) shapes[side].add(s.name)
  return shapes
}

/**
 * What is wrong with the exact table's shape, as `verify` reports it for the VM-chain table: its base chains
 * (hook, priority, policy, the guard's rules, then the established rule and the lookups of `shapes`, by
 * comment), its guard chains, and a map for every lookup. `chains`: the table's chains as listed (JSON chain
 * objects by name), `rules`: their rules in order. Empty: as exactTableCommands writes it.
 */
export function exactTableProblems(
  listed: { chains: ReadonlyMap<string, Record<string, unknown>>; rules: ReadonlyMap<string, readonly { expr: unknown[]; comment?: string }[]>; maps: ReadonlySet<string> },
  opts: { shapes: ExactShapes; stateful: boolean; log?: GuardLog },
): string[] {
  const d = dispatch(opts.shapes, opts.stateful)
  const problems: string[] = []
  for (const name of [CHAIN_PREROUTING, CHAIN_POSTROUTING] as const) {
    const chain = listed.chains.get(name)
    problems.push(...baseChainProblems(name, chain, listed.rules.get(name) ?? [], opts.log, d).problems)
  }
  problems.push(...guardChainProblems(listed.chains, listed.rules, opts.log))
  for (const side of ['out', 'in'] as const) {
    for (const shape of [...EXACT_SHAPES.filter((s) => opts.shapes[side].has(s.name)).map((s) => exactMapName(side, s.name)), exactDefaultMap(side)]) {
      if (!listed.maps.has(shape)) problems.push(`map ${shape} missing`)
    }
  }
  return problems
}

/** A VM's counters as `stats` reports them, from its listed elements: per rule (by the element comments),
 *  its default, and everything its elements dropped, each per side. The built-ins count in the guard's tap
 *  sets, as in the VM-chain table. */
export function exactCounters(listed: readonly ListedExactElement[]): Pick<VmStats, 'rules' | 'default' | 'dropped'> {
  const zero = zeroCounters
  const stats: Pick<VmStats, 'rules' | 'default' | 'dropped'> = { rules: {}, default: zero(), dropped: zero() }
  for (const e of listed) {
    const side: Side = e.map.startsWith('out_') ? 'out' : 'in'
    const comment = e.comment ?? ''
    const bucket = comment.startsWith('d:') ? stats.default : comment.startsWith('r:') ? (stats.rules[comment.slice(2)] ??= zero()) : undefined
    if (!bucket) continue
    countInto(e.verdict === 'drop' ? [bucket, stats.dropped] : [bucket], side, e)
  }
  return stats
}
