// Reconciling one VM's elements in the exact table (issue 15): what the tap holds (listed, or what the engine
// wrote) against what its policy wants, as drift and as the element changes that make it so. Only what
// differs is deleted and added, so a one-rule change of a VM touches that rule's elements, and every element
// left alone keeps its counter. Pure: no I/O.
import type { NftCommand } from '../schema.js'
import type { ExactPolicy } from './exact-rules.js'
import type { ExactSnapshot } from './exact-state.js'
import { elementCommands, exactTableProblems, shapesOf, tableElementsOf, type ExactShapes, type ExactTableElement, type ListedExactElement } from './exact-table.js'
import { identityChanges, identityElements, type GuardLog, type VmIdentity } from './layout.js'
import type { VerifyResult, VmDrift } from './model.js'

/** An element's identity in its map: the map and the key (a port listed as text and one compiled as a number
 *  are the same key). */
const idOf = (e: { map: string; key: readonly (string | number)[] }): string => `${e.map} ${e.key.join(' . ')}`
const valueOf = (e: { verdict: string; comment?: string }): string => `${e.verdict} ${e.comment ?? ''}`

/** The listed elements of one tap as the table elements they are. */
export const listedAsTableElements = (listed: readonly ListedExactElement[]): ExactTableElement[] =>
  listed.map((e) => ({ map: e.map, key: e.key, verdict: e.verdict, comment: e.comment ?? '' }))

export interface ExactDrift {
  /** `<map> <key>` wanted and not held. */
  missing: string[]
  /** Held and not wanted. */
  extra: string[]
  /** Held with another verdict or comment. */
  changed: string[]
}

export interface ExactChanges extends ExactDrift {
  del: ExactTableElement[]
  add: ExactTableElement[]
}

/** What differs between what a tap holds and what it should, and the deletes and adds that close the gap (a
 *  changed element is deleted and added again in the same transaction: an element's verdict cannot be updated). */
export function exactChanges(have: readonly ExactTableElement[], want: readonly ExactTableElement[]): ExactChanges {
  const held = new Map(have.map((e) => [idOf(e), e]))
  const wanted = new Map(want.map((e) => [idOf(e), e]))
  const out: ExactChanges = { missing: [], extra: [], changed: [], del: [], add: [] }
  for (const [id, e] of held) {
    const w = wanted.get(id)
    if (!w) {
      out.extra.push(id)
      out.del.push(e)
    } else if (valueOf(w) !== valueOf(e)) {
      out.changed.push(id)
      out.del.push(e)
      out.add.push(w)
    }
  }
  for (const [id, w] of wanted) {
    if (!held.has(id)) {
      out.missing.push(id)
      out.add.push(w)
    }
  }
  return out
}

/** The commands of `changes` for `tap` in `table`: deletes first (a changed key is free again for its add). */
export function exactChangeCommands(table: string, tap: string, changes: Pick<ExactChanges, 'del' | 'add'>): NftCommand[] {
  return [...(changes.del.length ? elementCommands(table, 'delete', tap, changes.del) : []), ...(changes.add.length ? elementCommands(table, 'add', tap, changes.add) : [])]
}

/** The shapes `policy` needs that the table does not look up yet (undefined: none), and the table's shapes with
 *  them: a table rewrite (exactTableCommands) has to come first, in the same transaction. */
export function shapesMissing(table: ExactShapes, policy: { shapes: ExactShapes }): ExactShapes | undefined {
  const all = shapesOf([{ shapes: table }, policy])
  return all.out.size === table.out.size && all.in.size === table.in.size ? undefined : all
}

/** A VM the engine expects in the exact table: its policy, tap and identity, and whether it is attached
 *  (detached: it holds nothing). */
export interface ExactExpected {
  vmId: string
  tap: string
  chains: { out: string; in: string }
  identity: VmIdentity
  policy: ExactPolicy
  attached: boolean
}

/** What `verify` reports of the exact table: each expected VM's drift (elements `element:<map> <key>`, guard
 *  elements `guard:<set>:<key>`), the VMs and taps nobody expects, and the table's problems. */
export function exactVerify(
  snap: ExactSnapshot,
  expected: readonly ExactExpected[],
  listed: { chains: ReadonlyMap<string, Record<string, unknown>>; rules: ReadonlyMap<string, readonly { expr: unknown[]; comment?: string }[]> } | undefined,
  opts: { stateful: boolean; log?: GuardLog },
): Pick<VerifyResult, 'vms' | 'orphans' | 'table'> {
  const out: Pick<VerifyResult, 'vms' | 'orphans' | 'table'> = { vms: [], orphans: [], table: [] }
  const claimed = new Set<string>()
  for (const e of expected) {
    const drift: VmDrift = { vmId: e.vmId, chains: e.chains, status: 'ok', missing: [], extra: [], changed: [] }
    const own = snap.owners.get(e.vmId)
    const want = e.attached ? tableElementsOf(e.vmId, e.policy) : []
    if (e.attached) claimed.add(e.tap)
    const taps = [...new Set([...(own !== undefined ? [own] : []), ...(e.attached ? [e.tap] : [])])]
    for (const tap of taps) {
      const d = exactChanges(snap.taps.get(tap) ?? [], tap === e.tap ? want : [])
      drift.missing.push(...d.missing.map((x) => `element:${x}`))
      drift.extra.push(...d.extra.map((x) => `element:${tap === e.tap ? '' : `${tap} `}${x}`))
      drift.changed.push(...d.changed.map((x) => `element:${x}`))
      if (tap !== e.tap) claimed.add(tap)
    }
    const guard = identityChanges(snap.sets ?? new Map(), taps, e.attached ? identityElements(e.identity, e.tap) : [])
    drift.missing.push(...guard.add.map((g) => `guard:${g.set}:${g.key}`))
    drift.extra.push(...guard.del.map((g) => `guard:${g.set}:${g.key}`))
    if (e.attached && !snap.taps.has(e.tap)) drift.status = 'missing'
    else if (drift.missing.length || drift.extra.length || drift.changed.length) drift.status = 'changed'
    out.vms.push(drift)
  }
  for (const [tap, elements] of snap.taps) {
    if (claimed.has(tap)) continue
    const vmId = [...snap.owners].find(([, t]) => t === tap)?.[0]
    out.orphans.push({ ...(vmId !== undefined ? { vmId } : {}), chains: [], elements: elements.length })
  }
  if (!snap.exists) {
    if (expected.some((e) => e.attached)) out.table.push('exact table missing')
    return out
  }
  const shapes = shapesOf([{ shapes: snap.shapes }, ...expected.filter((e) => e.attached).map((e) => e.policy)])
  out.table.push(...exactTableProblems({ chains: listed?.chains ?? new Map(), rules: listed?.rules ?? new Map(), maps: snap.maps }, { shapes, stateful: opts.stateful, ...(opts.log ? { log: opts.log } : {}) }).map((p) => `exact table: ${p}`))
  return out
}
