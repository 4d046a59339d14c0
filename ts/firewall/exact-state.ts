// What the engine knows of the exact table between calls (issue 15): its shapes, every tap's elements and
// which VM holds each tap, and the guard's set contents, valid while the VM-chain table's view stays in the
// same epoch (kernel-view.ts: nobody else committed since). The hot path then lists nothing: a VM's element
// changes are computed against this and the batch goes out with the view's generation as its `expect`.
import type { FirewallKernel } from './kernel.js'
import type { KernelView } from './kernel-view.js'
import type { VmInventoryEntry } from './model.js'
import { defaultComment, exactDefaultMap, exactMapName, exactTableOfText, shapesOfView, type ExactShapes, type ExactTableElement } from './exact-table.js'
import { listedAsTableElements } from './exact-reconcile.js'
import { keyTap, setContentsOfText, VM_SETS, type SetContents, type SetElement } from './layout.js'

export interface ExactSnapshot {
  /** The view epoch this was read in (or kept exact through our own writes). */
  epoch: number
  exists: boolean
  shapes: ExactShapes
  /** The maps the table has. */
  maps: Set<string>
  /** Each tap's elements. */
  taps: Map<string, ExactTableElement[]>
  /** The tap each VM's elements are keyed by (read from its default's comment, `d:<vmId>`). */
  owners: Map<string, string>
  /** The guard's set contents; undefined when some of its sets are missing. */
  sets: SetContents | undefined
}

/** What one of our batches changed in the exact table, applied to the snapshot once it committed. */
export interface ExactChange {
  /** The table was (re)written with these lookups. */
  shapes?: ExactShapes
  /** Taps whose elements are now exactly these ([]: none), and the VM they belong to. */
  taps: { tap: string; vmId?: string; elements: ExactTableElement[] }[]
  /** Guard set elements deleted and added. */
  sets: { del: SetElement[]; add: SetElement[] }
}

const DEFAULT_PREFIX = defaultComment('')

/** The snapshot of the exact table's text listing (undefined: no table). */
export function exactSnapshotOf(text: string | undefined, exactTable: string, epoch: number): ExactSnapshot {
  if (text === undefined) return { epoch, exists: false, shapes: { out: new Set(), in: new Set() }, maps: new Set(), taps: new Map(), owners: new Map(), sets: undefined }
  const view = exactTableOfText(text)
  const taps = new Map<string, ExactTableElement[]>()
  const owners = new Map<string, string>()
  for (const [tap, listed] of view.elements) {
    taps.set(tap, listedAsTableElements(listed))
    const d = listed.find((e) => e.comment?.startsWith(DEFAULT_PREFIX))
    if (d) owners.set(d.comment!.slice(DEFAULT_PREFIX.length), tap)
  }
  const found = setContentsOfText(text, exactTable)
  return { epoch, exists: true, shapes: shapesOfView(view), maps: view.maps, taps, owners, sets: found.missing.length === 0 ? found.contents : undefined }
}

/** `change` applied to `snap`, in place. */
export function applyExactChange(snap: ExactSnapshot, change: ExactChange): void {
  if (change.shapes) {
    snap.exists = true
    snap.shapes = { out: new Set(change.shapes.out), in: new Set(change.shapes.in) }
    for (const side of ['out', 'in'] as const) {
      for (const shape of change.shapes[side]) snap.maps.add(exactMapName(side, shape))
      snap.maps.add(exactDefaultMap(side))
    }
    snap.sets ??= new Map(VM_SETS.map((n) => [n, new Set<string>()]))
  }
  for (const t of change.taps) {
    for (const [vm, tap] of snap.owners) if (tap === t.tap) snap.owners.delete(vm)
    if (t.elements.length === 0) snap.taps.delete(t.tap)
    else {
      snap.taps.set(t.tap, t.elements)
      if (t.vmId !== undefined) snap.owners.set(t.vmId, t.tap)
    }
  }
  for (const [verb, list] of [['del', change.sets.del], ['add', change.sets.add]] as const) {
    for (const e of list) {
      const keys = snap.sets?.get(e.set)
      if (!keys) continue
      if (verb === 'add') keys.add(e.key)
      else keys.delete(e.key)
    }
  }
}

/** The exact table as last read or written, re-read when the VM-chain table's view says someone else committed. */
export class ExactState {
  #snap?: ExactSnapshot

  constructor(
    readonly view: KernelView,
    /** The door to the exact table. */
    readonly kernel: FirewallKernel,
  ) {}

  /** The snapshot, current at the view's epoch (one generation read; one listing after someone else committed). */
  async current(): Promise<ExactSnapshot> {
    await this.view.current()
    for (let i = 0; ; i++) {
      const epoch = this.view.epoch
      if (this.#snap?.epoch === epoch) return this.#snap
      const snap = exactSnapshotOf(await this.kernel.listText(), this.kernel.table, epoch)
      // Kept only if nobody committed while we listed.
      await this.view.current()
      if (this.view.epoch === epoch) return (this.#snap = snap)
      if (i >= 3) return snap
    }
  }

  /** A fresh listing (verify, inventory and stats: counters move without commits). */
  async read(): Promise<{ snap: ExactSnapshot; text: string | undefined }> {
    await this.view.current()
    const epoch = this.view.epoch
    const text = await this.kernel.listText()
    const snap = exactSnapshotOf(text, this.kernel.table, epoch)
    await this.view.current()
    if (this.view.epoch === epoch) this.#snap = snap
    return { snap, text }
  }

  /** The snapshot if it is current at the view's epoch as last known (no read). */
  known(): ExactSnapshot | undefined {
    return this.#snap?.epoch === this.view.epoch ? this.#snap : undefined
  }

  /** Our batch committed starting in view epoch `epoch`: applied to the snapshot while the view stayed in it
   *  (only our commit happened), else forgotten. */
  applied(epoch: number, change: ExactChange): void {
    if (this.#snap && this.#snap.epoch === epoch && this.view.epoch === epoch && !this.kernel.dryRun) applyExactChange(this.#snap, change)
    else this.#snap = undefined
  }

  /** The view took a new epoch from our own write alone (KernelView.adopt after a sync): a snapshot of
   *  `epoch` still holds. */
  follow(epoch: number): void {
    if (this.#snap?.epoch === epoch) this.#snap.epoch = this.view.epoch
  }

  invalidate(): void {
    this.#snap = undefined
  }
}

/** The verdict of the VM's default element at `tap` (undefined: none, or not accept/drop). */
export function exactDefaultAction(snap: ExactSnapshot, vmId: string, tap: string): 'accept' | 'drop' | undefined {
  const v = snap.taps.get(tap)?.find((e) => e.comment === defaultComment(vmId))?.verdict
  return v === 'accept' || v === 'drop' ? v : undefined
}

/** The VMs the exact table holds, as `inventory` reports them (and taps of elements without a VM's default). */
export function exactInventoryOf(snap: ExactSnapshot): VmInventoryEntry[] {
  const owner = new Map([...snap.owners].map(([vm, tap]) => [tap, vm]))
  return [...snap.taps].map(([tap, elements]) => {
    const vmId = owner.get(tap)
    const d = elements.find((e) => e.comment.startsWith(DEFAULT_PREFIX))
    const guard = [...(snap.sets?.values() ?? [])].reduce((n, keys) => n + [...keys].filter((k) => keyTap(k) === tap).length, 0)
    const action = d?.verdict === 'accept' || d?.verdict === 'drop' ? d.verdict : undefined
    return { ...(vmId !== undefined ? { vmId } : {}), chains: [], taps: [tap], rules: 0, elements: elements.length, guardElements: guard, ...(action ? { defaultAction: action } : {}) }
  })
}
