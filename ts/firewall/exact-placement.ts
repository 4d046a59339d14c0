// Where a VM lives and how it moves (issue 15): the batches that put a VM's policy into the exact table, or
// take it out, each with whatever the VM-chain table holds of the same VM or tap, in one transaction: a VM
// moving between the tables is never in neither (no fail-open moment) nor judged twice after the commit.
// Pure: from the engine's views of both tables to commands and the change to the exact table's snapshot.
import type { NftCommand } from '../schema.js'
import type { CompiledVm } from './compile.js'
import type { ExactPolicy } from './exact-rules.js'
import type { ExactChange, ExactSnapshot } from './exact-state.js'
import { exactChangeCommands, exactChanges, shapesMissing } from './exact-reconcile.js'
import { exactTableCommands, shapesOf, tableElementsOf, type ExactShapes, type ExactTableElement } from './exact-table.js'
import {
  chainDeleteCommands,
  elementDelete,
  identityChanges,
  identityElements,
  MAP_FROM_VM,
  MAP_TO_VM,
  setElementCommands,
  type DispatchMaps,
  type GuardLog,
  type SetContents,
  keyTap,
  type VmIdentity,
} from './layout.js'

/** What the engine's view has of the VM-chain table. */
export interface ChainTableView {
  maps: DispatchMaps | undefined
  sets: SetContents | undefined
  chains: ReadonlySet<string>
}

export interface ExactTables {
  /** The VM-chain table. */
  table: string
  exactTable: string
  stateful: boolean
  log?: GuardLog
}

/** Deletes of everything the VM-chain table has of VMs `vms`: their chains, every dispatch entry to them or
 *  from their taps, and the guard elements of those interfaces, except for the interfaces in `keep` (another
 *  part of the batch owns those). */
export function chainTableLeaving(t: ExactTables, view: ChainTableView, vms: readonly { chains: { out: string; in: string }; tap?: string }[], keep: ReadonlySet<string> = new Set()): NftCommand[] {
  const own = new Set(vms.flatMap((v) => [v.chains.out, v.chains.in]))
  const taps = new Set(vms.flatMap((v) => (v.tap !== undefined ? [v.tap] : [])))
  const stale: { map: string; key: string }[] = []
  for (const map of [MAP_FROM_VM, MAP_TO_VM] as const) {
    for (const [key, target] of view.maps?.[map] ?? []) if ((own.has(target) || taps.has(key)) && !keep.has(key)) stale.push({ map, key })
  }
  const guard = identityChanges(view.sets, new Set(stale.map((s) => s.key)), []).del
  return [
    ...stale.map((s) => elementDelete(t.table, s.map, s.key)),
    ...(view.sets ? setElementCommands(t.table, 'delete', guard) : []),
    ...[...own].filter((c) => view.chains.has(c)).flatMap((c) => chainDeleteCommands(t.table, c)),
  ]
}

/** Deletes of the exact table's elements of `taps` (each tap's elements and its guard elements). */
export function exactLeaving(t: ExactTables, exact: ExactSnapshot, taps: readonly string[]): { commands: NftCommand[]; change: ExactChange } {
  return exactTableBatch(t, exact, [], taps)
}

/** The taps the exact table holds for `vmId` or as `tap`. */
export function exactTapsOf(exact: ExactSnapshot | undefined, vmId: string, tap?: string): string[] {
  if (!exact) return []
  const own = exact.owners.get(vmId)
  return [...new Set([...(own !== undefined ? [own] : []), ...(tap !== undefined && exact.taps.has(tap) ? [tap] : [])])]
}

/** A VM as the exact table should hold it: its elements keyed by its tap, its identity in the guard. */
export interface ExactHolding {
  vmId: string
  tap: string
  identity: VmIdentity
  elements: readonly ExactTableElement[]
  shapes: ExactShapes
}

/**
 * The exact table's part of a batch: the table created, or its base chains rewritten for shapes it does not
 * look up yet (one validated commit; `rewrite`: whatever it looks up, as `repair` puts a damaged table back);
 * each tap of `want` made to hold exactly its VM's elements and identity,
 * and each tap of `clear` (or, with `prune`, every other tap) made to hold nothing. Per tap, only the elements
 * that differ are deleted and added, once each, whatever moved where.
 */
export function exactTableBatch(
  t: ExactTables,
  exact: ExactSnapshot,
  want: readonly ExactHolding[],
  clear: readonly string[],
  opts: { prune?: boolean; rewrite?: boolean } = {},
): { commands: NftCommand[]; change: ExactChange } {
  const prune = opts.prune === true
  const head: NftCommand[] = []
  let shapes: ExactChange['shapes']
  const needed = shapesOf([{ shapes: exact.shapes }, ...want])
  if ((want.length > 0 || opts.rewrite) && (!exact.exists || !exact.sets || opts.rewrite)) {
    shapes = needed
    head.push(...exactTableCommands(t.exactTable, { shapes, stateful: t.stateful, fresh: !exact.exists, ...(t.log ? { log: t.log } : {}) }))
  } else if (want.length > 0) {
    shapes = shapesMissing(exact.shapes, { shapes: needed })
    if (shapes) head.push(...exactTableCommands(t.exactTable, { shapes, stateful: t.stateful, ...(t.log ? { log: t.log } : {}) }))
  }
  const byTap = new Map(want.map((w) => [w.tap, w]))
  const guardTaps = (sets: SetContents | undefined) => [...new Set([...(sets?.values() ?? [])].flatMap((keys) => [...keys].map(keyTap)))]
  const gone = new Set(prune ? [...exact.taps.keys(), ...guardTaps(exact.sets)] : clear)
  for (const tap of byTap.keys()) gone.delete(tap)
  const elements: NftCommand[] = []
  const taps: ExactChange['taps'] = []
  for (const tap of [...byTap.keys(), ...gone]) {
    const w = byTap.get(tap)
    const changes = exactChanges(exact.taps.get(tap) ?? [], w?.elements ?? [])
    elements.push(...exactChangeCommands(t.exactTable, tap, changes))
    taps.push({ tap, ...(w ? { vmId: w.vmId } : {}), elements: [...(w?.elements ?? [])] })
  }
  // A table being created has no guard elements yet.
  const sets = exact.exists ? exact.sets : undefined
  const guard = identityChanges(sets, [...byTap.keys(), ...gone], want.flatMap((w) => identityElements(w.identity, w.tap)))
  return {
    commands: [...head, ...elements, ...setElementCommands(t.exactTable, 'delete', guard.del), ...setElementCommands(t.exactTable, 'add', guard.add)],
    change: { ...(shapes ? { shapes } : {}), taps, sets: guard },
  }
}

/**
 * One VM into the exact table at its tap, in one batch with everything the VM-chain table has of the VM or
 * the tap (its chains and dispatch; another VM's dispatch from the tap: that VM is detached), and the VM's
 * elements under an earlier tap. `rewrite`: the table's base chains too (a damaged shape, found by a check).
 */
export function exactApplyBatch(
  t: ExactTables,
  vm: ExactHolding & { chains: { out: string; in: string } },
  view: ChainTableView,
  exact: ExactSnapshot,
  opts: { rewrite?: boolean } = {},
): { commands: NftCommand[]; change: ExactChange } {
  const chainSide = chainTableLeaving(t, view, [vm])
  const x = exactTableBatch(t, exact, [vm], exactTapsOf(exact, vm.vmId), opts)
  return { commands: [...chainSide, ...x.commands], change: x.change }
}

/** `exactApplyBatch` for a compiled VM and its exact policy. */
export function exactVmBatch(t: ExactTables, c: CompiledVm, policy: ExactPolicy, view: ChainTableView, exact: ExactSnapshot, opts: { rewrite?: boolean } = {}): { commands: NftCommand[]; change: ExactChange } {
  return exactApplyBatch(t, { ...c, elements: tableElementsOf(c.vmId, policy), shapes: policy.shapes }, view, exact, opts)
}
