// What the engine knows of its table between calls: the dispatch maps and whether the table and its shared
// sets exist, valid for one ruleset generation. The hot path (applyVm, detach, attach, remove) then lists
// nothing: one generation read (~20 µs) says whether anyone else committed since our last look.
//
// Generation ids count commits in the namespace (+1 per committed batch, whoever sends it; listings, dry runs
// and failed batches leave it alone). A write is bracketed by two reads: when the id moved by at most one,
// the commit was ours alone and the view, updated with what we wrote, is exact at the new id.
import type { NftCommand } from '../schema.js'
import { generationMoved, type FirewallKernel, type KernelWrite } from './kernel.js'
import { commandTable, MAP_FROM_VM, MAP_TO_VM, VM_SETS, type DispatchMaps, type SetContents } from './layout.js'

export type { DispatchMaps }


/** A committed batch and the generation ids just before and just after it. */
export type WriteResult = KernelWrite

/** What the view knows of the table at `generation`. */
export interface Snapshot {
  generation: number
  /** undefined: the maps (so the table) do not exist. */
  maps: DispatchMaps | undefined
  /** The table and its shared sets were written by us in this lineage of generations. */
  setsKnown: boolean
  /** Issue 15: the guard's per-VM sets that exist, and their elements. */
  contents: SetContents
  /** The same when all of them exist; undefined when some are missing (a table of the layout before the guard,
   *  or none: the next apply installs it). */
  sets: SetContents | undefined
  /** Names of the table's chains at this generation; undefined until someone asks (read lazily). */
  chains?: Set<string>
}

/** Kernel errors that mean "someone else changed what we read": re-read and retry. GENERATION_MOVED: a batch
 *  computed at a generation that no longer held was not sent. */
export function isConflict(e: unknown): boolean {
  const code = (e as { code?: string })?.code
  return code === 'ENOENT' || code === 'EBUSY' || code === 'EEXIST' || code === 'GENERATION_MOVED'
}

export class KernelView {
  #snap?: Snapshot
  #epoch = 0

  /** Issue 14: changes whenever the view is re-read from the kernel or dropped, never on our own writes that
   *  keep it exact: an unchanged epoch means nobody else committed since (what the engine found then holds). */
  get epoch(): number {
    return this.#epoch
  }

  constructor(readonly kernel: FirewallKernel) {}

  /** The dispatch maps, read from the kernel only if someone else committed since we last knew them. */
  async maps(): Promise<DispatchMaps | undefined> {
    return (await this.current()).maps
  }

  /** Forgets everything (after an outside change was seen, or a failed batch). */
  invalidate(): void {
    this.#snap = undefined
    this.#epoch++
  }

  /**
   * Runs one batch and keeps the view exact: its commands' effect on the maps, chain names and guard sets is
   * applied to the current snapshot. `createsSets`: the batch (re)added the table and its shared sets; `lean`:
   * it may go without libnftables (kernel.ts); `expect`: the generation the batch was computed at (an
   * optimistic snapshot, see `known()`): the batch is sent only while it still holds, else `GENERATION_MOVED`.
   * On failure the view is dropped and the error rethrown.
   */
  async write(commands: NftCommand[], effect: { createsSets?: boolean; lean?: boolean; expect?: number } = {}): Promise<WriteResult> {
    if (commands.length === 0) {
      // Nothing to send, but "nothing to do" was decided from that view too: it holds only if it still does.
      const g = await this.kernel.generation()
      if (effect.expect !== undefined && g !== effect.expect) {
        this.invalidate()
        throw generationMoved(effect.expect, g)
      }
      return { output: { nftables: [] }, before: g, after: g }
    }
    const before = this.#snap
    let w: KernelWrite
    try {
      w = await this.kernel.write(commands, { lean: effect.lean === true, ...(effect.expect === undefined ? {} : { expect: effect.expect }) })
    } catch (e) {
      this.invalidate()
      throw e
    }
    const { output: out, before: g0, after: g1 } = w
    // Only our commit happened since g0, and the view was exact at g0: apply our changes to it. (Every batch we
    // send changes something, so a +1 is ours; a dry run commits nothing and teaches nothing.)
    if (!this.kernel.dryRun && before && before.generation === g0 && g1 - g0 <= 1) {
      // In place: the old snapshot is replaced at once, and a copy of the maps and chain names would cost O(VMs)
      // per write (~0.2 ms at 1000 VMs). Callers use what current() gives them before their next await.
      // Issue 15: a batch may also write the exact table (a VM moving between the tables); its sets share the
      // guard's names, so only this table's commands count here.
      const own = commands.filter((c) => commandTable(c) === this.kernel.table)
      const maps = applyElements(before.maps, own)
      const chains = before.chains && applyChains(before.chains, own)
      const contents = applySetElements(before.contents, own)
      const sets = VM_SETS.every((n) => contents.has(n)) ? contents : undefined
      this.#snap = { generation: g1, maps, contents, sets, setsKnown: before.setsKnown || effect.createsSets === true, ...(chains ? { chains } : {}) }
    } else {
      this.#snap = undefined // the next call re-reads
      this.#epoch++
    }
    return { output: out, before: g0, after: g1 }
  }

  /** Issue 14: one batch of ours that changed nothing the view holds (the rendering probe: a scratch chain added
   *  and deleted) moved the generation from `from` to `to`: the view stays exact, in the same epoch. */
  advance(from: number, to: number): void {
    if (this.#snap && this.#snap.generation === from && to === from + 1 && !this.kernel.dryRun) this.#snap.generation = to
  }

  /** Takes the maps and sets as known at `generation` (a caller that read and rewrote the whole table). */
  adopt(generation: number, maps: DispatchMaps, setsKnown: boolean, sets?: SetContents): void {
    if (!this.kernel.dryRun) {
      const contents = sets ? copySets(sets) : new Map<string, Set<string>>()
      // Copies: the view updates its own in place (see applyElements).
      this.#snap = { generation, maps: { [MAP_FROM_VM]: new Map(maps[MAP_FROM_VM]), [MAP_TO_VM]: new Map(maps[MAP_TO_VM]) }, setsKnown, contents, sets: VM_SETS.every((n) => contents.has(n)) ? contents : undefined }
    }
    this.#epoch++
  }

  /** Issue 14: the snapshot as last known, without reading the generation (one round trip to the instance's
   *  thread saved); undefined when there is none. Only for building a batch written with `expect` set to its
   *  `generation`: the batch is sent only if nobody committed since. */
  known(): Snapshot | undefined {
    return this.#snap && this.#snap.generation !== -1 ? this.#snap : undefined
  }

  /** Issue 14: the view write attempt `attempt` (from 1) builds from: the first from the snapshot as last known
   *  (no read; send it with `expectFor`), a retry from a fresh read. */
  async attemptView(attempt: number): Promise<Readonly<Snapshot>> {
    return (attempt === 1 ? this.known() : undefined) ?? this.current()
  }

  /** The `expect` of a batch built from `view` in attempt `attempt`: a first attempt's snapshot as last known must
   *  still hold when the batch is sent; a view just read (a retry, or no snapshot was known) is sent as is. */
  expectFor(view: Readonly<Snapshot>, attempt: number): { expect?: number } {
    return attempt === 1 && view === this.known() ? { expect: view.generation } : {}
  }

  /** The maps, the guard's sets and what is known of the table, at the current generation (re-read if anyone committed). */
  async current(): Promise<Readonly<Snapshot>> {
    const generation = await this.kernel.generation()
    if (this.#snap && this.#snap.generation === generation) return this.#snap
    this.#epoch++
    const maps = await this.#readMaps()
    const found = await this.kernel.sets()
    const contents = found?.contents ?? new Map<string, Set<string>>()
    const sets = found && found.missing.length === 0 ? contents : undefined
    // Read the id again: a commit between the two reads makes this snapshot valid for no id; keep the older id
    // so that the next call re-reads.
    const after = await this.kernel.generation()
    const snap: Snapshot = { generation: after === generation ? generation : -1, maps, setsKnown: false, contents, sets }
    this.#snap = snap
    return snap
  }

  // ---- chain names (issue 14: hasVm and the compat facade decide from the view, without listings) ----

  /** Names of the table's chains at the current generation: one `list chains` (names only, no rules) the
   *  first time after someone else committed, nothing while the view is current. Empty without the table. */
  async chainNames(): Promise<ReadonlySet<string>> {
    return (await this.state()).chains
  }

  /** Issue 15: the guard's per-VM set contents (undefined: not all of its sets exist). */
  async sets(): Promise<SetContents | undefined> {
    return (await this.current()).sets
  }

  /** The maps and the chain names at the current generation: one generation read while the view is current.
   *  `optimistic`: from the snapshot as last known when it holds the chain names (no read): what is decided from
   *  it must be checked before it counts (a write with `expect`, or `epoch` unchanged after a `current()`). */
  async state(optimistic = false): Promise<{ maps: DispatchMaps | undefined; chains: ReadonlySet<string> }> {
    const known = optimistic ? this.known() : undefined
    if (known?.chains) return { maps: known.maps, chains: known.chains }
    const snap = (await this.current()) as Snapshot
    if (snap.chains) return { maps: snap.maps, chains: snap.chains }
    const names = await this.kernel.chainNames()
    // Kept only if nothing was committed meanwhile (the snapshot is still the current one).
    if (this.#snap === snap && snap.generation !== -1 && (await this.kernel.generation()) === snap.generation) snap.chains = names
    return { maps: snap.maps, chains: names }
  }

  async #readMaps(): Promise<DispatchMaps | undefined> {
    // Both in one `list maps` (issue 15: with the guard's `list sets`, a re-read stays two calls).
    return this.kernel.dispatchMaps()
  }

}

function copySets(sets: SetContents): SetContents {
  return new Map([...sets].map(([k, v]) => [k, new Set(v)]))
}

/** The guard's set contents after a batch of ours: sets it adds (empty when new), element adds and deletes; a
 *  deleted table has none. In place (see write()). */
function applySetElements(sets: SetContents, commands: NftCommand[]): SetContents {
  let next = sets
  for (const cmd of commands) {
    const [verb, body] = Object.entries(cmd)[0] as [string, Record<string, Record<string, unknown>>]
    if ('table' in body && verb === 'delete') next = new Map()
    const set = body.set
    if (set && (verb === 'add' || verb === 'create') && VM_SETS.includes(set.name as string) && !next.has(set.name as string)) next.set(set.name as string, new Set())
    if (set && verb === 'delete') next.delete(set.name as string)
    const el = body.element
    if (!el || !VM_SETS.includes(el.name as string)) continue
    const keys = next.get(el.name as string)
    if (!keys) continue
    for (const e of el.elem as unknown[]) {
      const c = (e as { concat?: string[] } | null)?.concat
      const key = typeof e === 'string' ? e : Array.isArray(c) ? `${c[0]} . ${c[1]}` : undefined
      if (key === undefined) continue
      if (verb === 'add' || verb === 'create') keys.add(key)
      else if (verb === 'delete') keys.delete(key)
    }
  }
  return next
}

/** The table's chain names after a batch of ours (adds and deletes of chains; a deleted table has none). In place. */
function applyChains(chains: Set<string>, commands: NftCommand[]): Set<string> {
  for (const cmd of commands) {
    const [verb, body] = Object.entries(cmd)[0] as [string, Record<string, Record<string, unknown>>]
    if ('table' in body && verb === 'delete') chains.clear()
    const c = body.chain
    if (!c || typeof c.name !== 'string') continue
    if (verb === 'add' || verb === 'create') chains.add(c.name)
    else if (verb === 'delete' || verb === 'destroy') chains.delete(c.name)
  }
  return chains
}

/** The dispatch maps after a batch of ours: its element adds and deletes, and maps it created. In place. */
function applyElements(maps: DispatchMaps | undefined, commands: NftCommand[]): DispatchMaps | undefined {
  let next: DispatchMaps | undefined = maps
  for (const cmd of commands) {
    const [verb, body] = Object.entries(cmd)[0] as [string, Record<string, Record<string, unknown>>]
    if ('map' in body && verb === 'add') {
      next ??= { [MAP_FROM_VM]: new Map(), [MAP_TO_VM]: new Map() }
      continue
    }
    if ('table' in body && verb === 'delete') next = undefined
    const el = body.element
    if (!el || !next || (el.name !== MAP_FROM_VM && el.name !== MAP_TO_VM)) continue
    const m = next[el.name as typeof MAP_FROM_VM]
    for (const e of el.elem as unknown[]) {
      if (verb === 'add' && Array.isArray(e)) {
        const target = (e[1] as { jump?: { target?: string } }).jump?.target
        if (typeof e[0] === 'string' && typeof target === 'string') m.set(e[0], target)
      } else if (verb === 'delete' && typeof e === 'string') m.delete(e)
    }
  }
  return next
}
