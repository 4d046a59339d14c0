// VmFirewall: per-VM bridge firewalls applied through one libnftables context, one transaction per call.
import { countInto, zeroCounters } from './counters.js'
import type { Nft } from '../nft.js'
import type { NftCommand } from '../schema.js'
import { FirewallError, FirewallValidationError, isNotFound } from './errors.js'
import { rulesFingerprint } from './rule-identity.js'
import { compileVm, vmIdentity, type CompiledRule, type CompiledVm } from './compile.js'
import {
  CHAIN_POSTROUTING,
  CHAIN_PREROUTING,
  baseChainProblems,
  BUILTIN_SETS,
  DEFAULT_TABLE,
  FAMILY,
  MAP_FROM_VM,
  MAP_TO_VM,
  chainDeleteCommands,
  commandTable,
  counterOf,
  elementAdd,
  elementDelete,
  identityChanges,
  identityElements,
  inventoryOf,
  setElementCommands,
  parseComment,
  setCommands,
  tableCommands,
  tableOf,
  vmApplyCommands,
  vmChainNames,
  type Elements,
  type KernelTable,
  type GuardLog,
  type SetContents,
  type SetCounters,
  type VmIdentity,
  setContentsOfText,
} from './layout.js'
import type {
  ConntrackMode,
  FirewallCapabilities,
  FirewallDefaultAction,
  SyncResult,
  VerifyResult,
  VmApplyResult,
  VmDrift,
  VmInventoryEntry,
  VmSpec,
  VmStats,
} from './model.js'
import { GroupCommit, StaleDecision } from './group-commit.js'
import { FirewallKernel, generationMoved } from './kernel.js'
import { BlockedStream, type BlockedOptions } from './blocked.js'
import { FirewallWatch, type RepairResult, type WatchOptions } from './watch.js'
import { guardLogOf, resolveLogDrops, type LogDropsOptions, type ResolvedLogDrops } from './log-drops.js'
import { KernelView, isConflict, type DispatchMaps, type Snapshot } from './kernel-view.js'
import { planVm, type VmPlan } from './plan.js'
import { dispatchDrift, planRepair, planSync, staleEntries, verifyTable, vmDrift } from './reconcile.js'
import { KernelRendering } from './rendering.js'
import { checkRestore } from './restore-guard.js'
import { exactPolicy, type ExactPolicy } from './exact-rules.js'
import { exactDefaultAction, applyExactChange, exactInventoryOf, ExactState, type ExactChange, type ExactSnapshot } from './exact-state.js'
import { chainTableLeaving, exactApplyBatch, exactLeaving, exactTableBatch, exactTapsOf, exactVmBatch, type ChainTableView, type ExactTables } from './exact-placement.js'
import { exactCounters, exactTableName, exactTableOfText, tableElementsOf } from './exact-table.js'
import { exactChanges, exactVerify, type ExactExpected } from './exact-reconcile.js'
import { Scheduler } from './scheduler.js'

export type { VmPlan }
import { checkIfname, checkTableName, checkToken, normalizeVm, VMID_MAX, type NormalizedVm } from './validate.js'

export interface VmFirewallOptions {
  /** Bridge-family table owned by the firewall. Default 'infinization'. */
  table?: string
  /** 'auto' (default): stateful when the kernel has bridge conntrack, else stateless (reported);
   *  'require': fail without bridge conntrack; 'off': always stateless. */
  conntrack?: ConntrackMode
  /** Capabilities to assume instead of probing (plan() on machines without the addon, tests). */
  capabilities?: FirewallCapabilities
  /** Log blocked traffic to an nfnetlink_log group (read it with `blocked()`): true for the defaults, or
   *  which drop paths, group and rate (see LogDropsOptions). Default off. */
  logDrops?: boolean | LogDropsOptions
  /** Issue 15: applyVm writes a VM's chains, rules and dispatch elements as netlink messages, without
   *  libnftables, when its encoder spells every command exactly (default true); issue 14: so does sync() into
   *  an absent table (the table, its sets and guard, every VM, one transaction). false: always libnftables. */
  leanWrites?: boolean
  /** Issue 15: a VM whose policy fits exact-key elements (exact-rules.ts: stateful kernels; one protocol, at
   *  most one port or a short range and one host per rule, ...) lives in the table `<table>_exact` as map
   *  elements instead of chains, so its applies commit without the kernel re-validating the table (flat in the
   *  number of VMs). applyVm and applyVmIfChanged with `attach: true` (or 'keep' of a VM held there) and no
   *  `also`/`create` place it, and move a VM between the tables in one transaction when its policy changes;
   *  verifyVm, removeVm, detachVm, attachVm, hasVm, vmState (`exactTap`), sync, verify, repair, inventory,
   *  stats, export/restore and watch see both tables. A table written without the option migrates in place:
   *  after verify(), one sync() moves the VMs that fit in one transaction. Default false (see the README:
   *  bulk loads cost more than with chains). */
  exactTable?: boolean
}

/** What the shared guard needs of a VM (issue 15): the fields of its VmSpec that decide its built-ins. */
export type VmIdentitySpec = Pick<VmSpec, 'mac' | 'ipv4' | 'ipv6' | 'antiSpoofing' | 'dhcp'>

export interface SyncOptions {
  /** 'all' (default): the set is the whole firewall; VM chains and dispatch entries not in it are removed.
   *  'none': only the given VMs are reconciled; everything else in the table is left as it is (for tables that
   *  several processes write, each owning its own VMs). */
  prune?: 'all' | 'none'
}

export interface ApplyOptions {
  /** Dispatch the VM's tap to its chains (default true). False: chains only, as for a stopped VM.
   *  'keep' (issue 14): the VM's dispatch entries are left exactly as they are, from whichever interface
   *  (a VM that has none gets none); `spec.tap` is then only its label. Decided in the VM's turn. */
  attach?: boolean | 'keep'
  /** Commands appended to the same transaction (applyVm only; the compat facade removes a VM's chain of
   *  the old Infinization layout with it). */
  also?: NftCommand[]
  /** Issue 14: called in the VM's turn (after earlier calls for it, before anything is compiled against the
   *  kernel) with the VM as the engine's view has it; what it returns overrides `attach`, adds `also`
   *  commands, replaces the spec (same vmId) or skips the write. See {@link ApplyDecision}. The state is the view
   *  as last known (no kernel read while nobody else commits); when someone else committed before the write
   *  went out, `prepare` is called again with a fresh state (a bounded number of times), so it must not have
   *  side effects of its own. */
  prepare?: (state: VmState) => ApplyDecision | void | Promise<ApplyDecision | void>
}

// ---- issue 14 additions (types) ----

/**
 * A caller's commands (this table only) for the transaction of a removeVm/removeVmByChain/detachVm, decided from
 * the chain names of the view that transaction is built from; called again with a fresh view if another writer
 * committed first (so, like ApplyOptions.prepare, without side effects). For the compat facade's old-layout objects.
 */
export type AlsoCommands = (table: { hasChain(name: string): boolean }) => NftCommand[] | Promise<NftCommand[]>

/** One VM as the engine's view has it (see VmFirewall.vmState and ApplyOptions.prepare). */
export interface VmState {
  vmId: string
  chains: { out: string; in: string }
  /** The dispatch maps (so the table) exist. */
  tableExists: boolean
  outExists: boolean
  inExists: boolean
  /** Interfaces whose dispatch entry points at the VM's chains, per direction. */
  dispatch: { from: string[]; to: string[] }
  /** Issue 15: the interface the exact table holds the VM's elements at (undefined: none, or the option off).
   *  Such a VM has no chains: its policy is in force as elements. */
  exactTap: string | undefined
  /** Whether a chain of this name (any chain of the table) exists. */
  hasChain(name: string): boolean
  /** The verdict of the VM's default rule as the kernel has it (one chain listing, on first call only; for a
   *  VM of the exact table, its default element's). */
  defaultAction(): Promise<FirewallDefaultAction | undefined>
}

/** What ApplyOptions.prepare may decide, in the VM's turn. */
export interface ApplyDecision {
  /** Overrides ApplyOptions.attach. */
  attach?: boolean | 'keep'
  /** Appended to ApplyOptions.also (same transaction; this table only). */
  also?: NftCommand[]
  /** Applied instead of the given spec (same vmId). */
  spec?: VmSpec
  /** Write nothing (applyVm returns the compiled result; applyVmIfChanged reports `changed: false`). */
  skip?: boolean
  /** applyVmIfChanged: write even when the kernel already matches (e.g. `also` must run). */
  force?: boolean
  /** The VM's chains that `state` showed missing are created with `create`, not `add`: if another writer
   *  created them since (the batch fails with EEXIST), `prepare` runs again on a fresh view (bounded). For a
   *  write meant only for a VM that does not exist yet (a closed default), never over someone's policy. */
  create?: boolean
}

export interface IfChangedOptions extends ApplyOptions {
  /** Also count a missing or changed base chain or dispatch rule as drift (two chain listings more when the
   *  generation moved); the apply then repairs the table in the same transaction. For a VM of the exact table
   *  (`exactTable`), that table's shape: base chains, lookups and maps (one listing of it). */
  checkTable?: boolean
}

interface Decided {
  /** The spec decided on (ApplyDecision.spec, else the caller's). */
  spec: NormalizedVm
  compiled: CompiledVm
  /** true/false, or 'keep' resolved: the interface dispatching to the VM now (undefined: none). */
  attach: boolean | { keep: string | undefined }
  /** Whether the VM is dispatched after the apply. */
  attached: boolean
  also: NftCommand[]
  skip: boolean
  force: boolean
  /** Chains to create with `create` (ApplyDecision.create). */
  create: string[]
  /** The view's epoch when the decision read it (undefined: it did not). */
  epoch?: number
}

/** `add chain` of the given chains turned into `create chain` (fails with EEXIST when the chain exists). */
function creating(commands: NftCommand[], chains: string[]): NftCommand[] {
  if (chains.length === 0) return commands
  return commands.map((c) => {
    const ch = 'add' in c ? (c.add as { chain?: { name?: string } }).chain : undefined
    return ch && typeof ch.name === 'string' && chains.includes(ch.name) ? ({ create: { chain: ch } } as NftCommand) : c
  })
}

function checkAttach(a: unknown): boolean | 'keep' | undefined {
  if (a !== undefined && a !== true && a !== false && a !== 'keep') throw new FirewallValidationError('attach', "must be true, false or 'keep'")
  return a as boolean | 'keep' | undefined
}


interface Known {
  compiled: CompiledVm
  attached: boolean
  /** Issue 15: the VM lives in the exact table with this policy. */
  exact?: ExactPolicy
}

/** Writes that lost a race with another writer are rebuilt from a fresh read this many times in all. */
const CONFLICT_ATTEMPTS = 4

export class VmFirewall {
  readonly table: string
  readonly conntrack: ConntrackMode
  /** The resolved `logDrops` option (undefined: off). */
  readonly logDrops: ResolvedLogDrops | undefined
  readonly #kernel: FirewallKernel
  readonly #sched = new Scheduler()
  readonly #known = new Map<string, Known>()
  readonly #rendering: KernelRendering
  readonly #view: KernelView
  readonly #lean: boolean
  /** The shared guard's log chains (logDrops with built-ins), part of the table's layout. */
  readonly #guardLog: GuardLog | undefined
  readonly #group: GroupCommit<Readonly<Snapshot>>
  /** The table as our last full sync left it, valid while the generation has not moved since. */
  #synced?: { generation: number; table: KernelTable }
  #caps?: Promise<FirewallCapabilities>
  #capsValue?: FirewallCapabilities
  /** Issue 15: the exact table's state (the `exactTable` option; undefined: off). */
  readonly #exact: ExactState | undefined

  constructor(nft: Nft, options: VmFirewallOptions = {}) {
    this.table = checkTableName(options.table ?? DEFAULT_TABLE)
    this.logDrops = resolveLogDrops(options.logDrops)
    this.#guardLog = guardLogOf(this.logDrops)
    this.#kernel = new FirewallKernel(nft, this.table, this.#guardLog)
    this.#rendering = new KernelRendering(this.#kernel)
    this.#view = new KernelView(this.#kernel)
    this.#lean = options.leanWrites !== false
    this.#exact = options.exactTable === true ? new ExactState(this.#view, new FirewallKernel(nft, exactTableName(this.table), this.#guardLog)) : undefined
    this.#group = new GroupCommit(
      // Issue 14: the first attempt builds from the view as last known (no generation read) and its batch is sent
      // only if that generation still holds (checked on the instance's thread, in the same round trip as the
      // commit); a retry reads the view again.
      // Issue 15: an item's build also reads the exact snapshot (a VM leaving the exact table takes its elements out
      // in the same batch) and the chain names (an exact item deletes the chains of a VM that leaves them). The
      // first attempt takes both as last known when they are, as the view (its batch is checked the same way);
      // otherwise they are made current first.
      (attempt) => (this.#exact ? this.#exactAttemptView(attempt) : this.#view.attemptView(attempt)),
      async (commands, view, attempt) => {
        // The table and its shared sets are re-added only when we do not know them to exist (idempotent adds).
        // A table without the shared guard's sets (none yet, or one of the layout before the guard) gets the whole
        // layout first, in the same transaction: a VM's chains no longer hold its built-ins.
        // Issue 15: a group of exact-table writes alone (with at most deletes here: VMs leaving) needs neither.
        const needs = addsTo(commands as NftCommand[], this.table)
        const head = view.setsKnown || !needs ? [] : view.maps && view.sets ? setCommands(this.table) : tableCommands(this.table, false, this.#guardLog)
        // Two VMs of a group may both find the same stale dispatch entry (a tap moving between them): delete once.
        const seen = new Set<string>()
        const body = (commands as NftCommand[]).filter((c) => {
          if (!('delete' in c) || !('element' in (c.delete as object))) return true
          const key = JSON.stringify(c)
          return !seen.has(key) && seen.add(key) !== undefined
        })
        // Issue 15: with the table and its sets known to exist, a batch of VM chains and dispatch elements goes
        // to the kernel as netlink messages (no libnftables cache refresh and parse); anything else through libnftables.
        await this.#view.write([...head, ...body], { createsSets: head.length > 0, lean: (view.setsKnown || !needs) && this.#lean, ...this.#view.expectFor(view, attempt) })
      },
      isConflict,
      CONFLICT_ATTEMPTS,
    )
    const mode = options.conntrack ?? 'auto'
    if (mode !== 'auto' && mode !== 'require' && mode !== 'off') {
      throw new FirewallValidationError('conntrack', "must be 'auto', 'require' or 'off'")
    }
    this.conntrack = mode
    if (options.capabilities) {
      this.#capsValue = { ...options.capabilities }
      this.#caps = Promise.resolve(this.#capsValue)
    }
  }

  /** Kernel features, probed once by dry-run (nothing is created). */
  capabilities(): Promise<FirewallCapabilities> {
    if (!this.#caps) {
      this.#caps = this.#kernel.capabilities().then(
        (c) => (this.#capsValue = c),
        (e: unknown) => {
          this.#caps = undefined
          throw e
        },
      )
    }
    return this.#caps
  }

  /** Creates the table, dispatch maps and base chains (idempotent; other tables are never touched). */
  async init(): Promise<void> {
    return this.#sched.exclusive(async () => {
      await this.#view.write([...(await this.#baseChainRepairs()), ...tableCommands(this.table, false, this.#guardLog)], { createsSets: true })
    })
  }

  /** The JSON and text applyVm would apply, without applying: `planVm` with this instance's table, mode and
   *  capabilities (given, or probed by an earlier call; none assumed before that). Works without the addon. */
  plan(spec: VmSpec): VmPlan {
    return planVm(spec, {
      table: this.table,
      conntrack: this.conntrack,
      capabilities: this.#capsValue ?? { bridgeConntrack: false, bridgeReject: false },
      logDrops: this.logDrops,
    })
  }

  /** Creates or replaces everything for one VM in one transaction. With `attach: false` the chains are
   *  written but no traffic is dispatched to them (a stopped VM). */
  async applyVm(spec: VmSpec, options: ApplyOptions = {}): Promise<VmApplyResult> {
    const vm = normalizeVm(spec)
    checkAttach(options.attach)
    return this.#sched.vm(vm.vmId, async () => {
      for (let attempt = 1; ; attempt++) {
        // Issue 14: all but the last decision are made from the view as last known (no read); one that turns out
        // stale (someone else committed before its batch went out) is made again. The last, from a view just
        // read, is written as decided, as every decision was before.
        const optimistic = attempt < CONFLICT_ATTEMPTS
        const d = await this.#decide(vm, options, optimistic)
        await this.#keepExact(d)
        if (d.skip) {
          // Nothing is written, so nothing would check an optimistic decision: confirm its view first.
          if (optimistic && d.epoch !== undefined && (await this.#view.current(), this.#view.epoch !== d.epoch)) continue
          return d.compiled.result
        }
        try {
          const policy = await this.#exactRoute(d, optimistic)
          if (policy === 'stale') continue
          if (policy) {
            await this.#applyExact(d.compiled, policy)
            return { ...d.compiled.result, placement: 'exact' }
          }
          await this.#apply(d.compiled, d.attach, d.also, d.create, d.epoch, optimistic)
          return this.#exact ? { ...d.compiled.result, placement: 'chains' } : d.compiled.result
        } catch (e) {
          if (e instanceof StaleDecision) continue
          // ApplyDecision.create lost a race with another writer: decide again on a fresh view (issue 14).
          if (d.create.length === 0 || attempt >= CONFLICT_ATTEMPTS || !isConflict(e)) throw e
        }
      }
    })
  }

  /** Like applyVm, but first compares with the kernel (the VM's two chains and its dispatch entries) and
   *  writes nothing when they already match. */
  async applyVmIfChanged(spec: VmSpec, options: IfChangedOptions = {}): Promise<{ changed: boolean; result: VmApplyResult; drift: VmDrift }> {
    const vm = normalizeVm(spec)
    checkAttach(options.attach)
    return this.#sched.vm(vm.vmId, async () => {
      const { d, drift, tableBroken, exact } = await this.#decideAndCompare(vm, options)
      if (d.skip) return { changed: false, result: d.compiled.result, drift }
      const changed = drift.status !== 'ok' || d.force
      if (exact) {
        // Issue 15: a VM whose policy fits is compared with, and written to, the exact table (with checkTable,
        // a damaged shape of that table is rewritten in the same transaction).
        if (changed) {
          const epoch = this.#view.epoch
          await this.#applyExact(d.compiled, exact, tableBroken)
          if (tableBroken && this.#view.epoch === epoch) this.#exactTableOkEpoch = epoch
        } else this.#known.set(vm.vmId, { compiled: d.compiled, attached: true, exact })
        return { changed, result: { ...d.compiled.result, placement: 'exact' }, drift }
      }
      if (changed) {
        // A broken base chain or dispatch rule is repaired in the same transaction (as init() would).
        const repairs = tableBroken ? [...(await this.#baseChainRepairs()), ...tableCommands(this.table, false, this.#guardLog)] : []
        const epoch = this.#view.epoch
        await this.#apply(d.compiled, d.attach, [...d.also, ...repairs])
        if (tableBroken && this.#view.epoch === epoch) this.#tableOkEpoch = epoch
      } else this.#known.set(vm.vmId, { compiled: d.compiled, attached: d.attached })
      return { changed, result: this.#exact ? { ...d.compiled.result, placement: 'chains' } : d.compiled.result, drift }
    })
  }

  /** Drift of one VM against the kernel (its two chains and the dispatch maps; no full table listing). */
  async verifyVm(spec: VmSpec, options: IfChangedOptions = {}): Promise<VmDrift> {
    const vm = normalizeVm(spec)
    checkAttach(options.attach)
    return this.#sched.vm(vm.vmId, async () => (await this.#decideAndCompare(vm, options)).drift)
  }

  async #apply(
    compiled: CompiledVm,
    attach: boolean | { keep: string | undefined },
    also: NftCommand[] = [],
    create: string[] = [],
    viewEpoch?: number,
    checkDecision = false,
  ): Promise<void> {
    // Issue 15: chains found or written exactly so in this view epoch (nobody else committed since) are not
    // rewritten: a change of identity or dispatch alone is then a change of set elements only.
    const memo = this.#verified.get(compiled.vmId)
    const key = rulesFingerprint(compiled.out, compiled.in)
    const known = memo && memo.key === key && create.length === 0 && also.length === 0 ? memo.epoch : undefined
    const chainsKnown = () => known !== undefined && known === this.#view.epoch
    this.#forget(compiled.vmId) // issue 14: what verify found of it no longer holds
    this.#checkOwnTable(also)
    // Issue 14: the epoch our write starts from (just read by #decide, else the view as last known: its batch goes
    // out only if that still holds; without a view, one read).
    if (viewEpoch === undefined && !this.#view.known()) await this.#view.current()
    const epoch = viewEpoch ?? this.#view.epoch
    // A decision from the view (viewEpoch) holds only while nobody else committed since: the view's epoch unchanged.
    const valid = checkDecision && viewEpoch !== undefined ? { valid: () => this.#view.epoch === viewEpoch } : {}
    if (typeof attach === 'object') {
      // attach 'keep': chains and rules only; whatever dispatches to them (from `keep`, or nothing) stays.
      // The interface dispatching to the VM gets the VM's identity in the guard (its policy), nothing else changes.
      await this.#group.submit({
        keys: [`(chains)${compiled.chains.out}`, ...(attach.keep !== undefined ? [attach.keep] : []), ...(also.length > 0 ? ['(also)'] : [])],
        ...valid,
        build: ({ sets }) => {
          const elements = attach.keep === undefined ? { del: [], add: [] } : identityChanges(sets, [attach.keep], identityElements(compiled.identity, attach.keep))
          const onlyChains = elements.add.length === 0 && elements.del.length === 0
          return creating([...vmApplyCommands(this.table, compiled, [], false, false, elements, { chains: !chainsKnown() || onlyChains }), ...also], create)
        },
      })
      this.#wrote(compiled, epoch)
      const tap = attach.keep ?? compiled.tap
      this.#known.set(compiled.vmId, { compiled: { ...compiled, tap, result: { ...compiled.result, tap } }, attached: attach.keep !== undefined })
      return
    }
    // Grouped with other VMs' applies that arrive while a transaction is in flight (one commit for all); two
    // applies that touch the same tap never share a group.
    // Its guard elements move with its dispatch: the taps leaving it lose theirs, its tap holds exactly its identity
    // (the taps now dispatching to it are group keys too: no other VM of the group may touch their elements).
    const leaving = this.#tapsOf((this.#view.known() ?? (await this.#view.current())).maps, compiled.chains)
    // Issue 15: what the exact table holds of the VM or its tap leaves it in the same batch.
    const exactTaps = this.#exact ? exactTapsOf(this.#exact.known() ?? (await this.#exact.current()), compiled.vmId, attach ? compiled.tap : undefined) : []
    let exactOut: { epoch: number; change: ExactChange } | undefined
    await this.#group.submit({
      keys: [...new Set([compiled.tap, ...leaving, ...exactTaps]), ...(also.length > 0 ? ['(also)'] : [])],
      ...valid,
      build: ({ maps, sets }) => {
        const out = this.#exactOut(compiled.vmId, attach ? compiled.tap : undefined)
        exactOut = out && { epoch: this.#view.epoch, change: out.change }
        const stale = maps ? staleEntries(maps, compiled.chains, attach ? compiled.tap : undefined) : []
        const taps = attach ? [compiled.tap, ...stale.map((x) => x.key)] : stale.map((x) => x.key)
        const elements = identityChanges(sets, taps, attach ? identityElements(compiled.identity, compiled.tap) : [])
        const dispatched = maps?.[MAP_FROM_VM].get(compiled.tap) === compiled.chains.out && maps?.[MAP_TO_VM].get(compiled.tap) === compiled.chains.in
        // Nothing but the chains could change: they are replaced as always (applyVm's contract; counters restart).
        const onlyChains = elements.add.length === 0 && elements.del.length === 0 && stale.length === 0 && (dispatched || !attach)
        const write = { chains: !chainsKnown() || onlyChains, dispatch: !dispatched }
        return creating([...vmApplyCommands(this.table, compiled, stale, attach, false, elements, write), ...also, ...(out?.commands ?? [])], create)
      },
    })
    if (exactOut) this.#exact!.applied(exactOut.epoch, exactOut.change)
    if (attach) this.#noteTakeover(compiled.vmId, compiled.tap)
    this.#known.set(compiled.vmId, { compiled, attached: attach })
    this.#wrote(compiled, epoch)
  }

  // ---- issue 15: the exact table ----

  /** The group commit's view with the exact table: see the constructor. */
  async #exactAttemptView(attempt: number): Promise<Readonly<Snapshot>> {
    const known = attempt === 1 ? this.#view.known() : undefined
    if (known?.chains && this.#exact!.known()) return known
    await this.#exact!.current()
    await this.#view.state()
    return this.#view.attemptView(attempt)
  }

  /** Both tables' names and what the exact table's base chains depend on. */
  #exactTables(): ExactTables {
    const caps = this.#capsValue
    return { table: this.table, exactTable: exactTableName(this.table), stateful: caps?.bridgeConntrack === true && this.conntrack !== 'off', ...(this.#guardLog ? { log: this.#guardLog } : {}) }
  }

  /** 'keep' for a VM of the exact table keeps the interface its elements are keyed by (as an attach). */
  async #keepExact(d: Decided): Promise<void> {
    const held = typeof d.attach === 'object' && this.#exact ? (await this.#exact.current()).owners.get(d.spec.vmId) : undefined
    if (held !== undefined) Object.assign(d, { attach: true, attached: true, compiled: { ...d.compiled, tap: held, result: { ...d.compiled.result, tap: held } } })
  }

  /** The VM's exact policy when this decision puts it into the exact table: the option on, the VM attached,
   *  nothing of the caller's to run in the same transaction (`also`, `create`: chain-table commands), and its
   *  policy fits. 'stale': the decision was made from a view that no longer holds (decide again). */
  async #exactRoute(d: Decided, optimistic: boolean): Promise<ExactPolicy | undefined | 'stale'> {
    if (!this.#exact || d.attach !== true || d.also.length > 0 || d.create.length > 0) return undefined
    const policy = await this.#placement(d.spec)
    // A prepare() decision read the view: it holds while nobody else committed since (checked here, as the
    // exact batch is checked against the exact snapshot's epoch, not the decision's).
    if (policy && optimistic && d.epoch !== undefined && (await this.#view.current(), this.#view.epoch !== d.epoch)) return 'stale'
    return policy
  }

  /** The drift of a VM bound for the exact table: its elements and guard elements there, and anything the
   *  VM-chain table still holds of it (its chains, dispatch to them or from its tap), which its exact apply
   *  deletes. */
  async #exactVmDrift(c: CompiledVm, policy: ExactPolicy): Promise<VmDrift> {
    const x = await this.#exact!.current()
    const [drift] = exactVerify(x, [{ vmId: c.vmId, tap: c.tap, chains: c.chains, identity: c.identity, policy, attached: true }], undefined, this.#exactTables()).vms
    const { maps, chains: names } = await this.#view.state()
    for (const ch of [c.chains.out, c.chains.in]) if (names.has(ch)) drift!.extra.push(`chain:${ch}`)
    for (const m of [MAP_FROM_VM, MAP_TO_VM] as const) {
      for (const [key, chain] of maps?.[m] ?? []) if (key === c.tap || chain === c.chains.out || chain === c.chains.in) drift!.extra.push(`dispatch:${m}:${key}`)
    }
    if (drift!.status === 'ok' && drift!.extra.length > 0) drift!.status = 'changed'
    return drift!
  }

  /** The VM's exact policy when it goes into the exact table (the option on and its policy fits), else undefined. */
  async #placement(vm: NormalizedVm): Promise<ExactPolicy | undefined> {
    if (!this.#exact) return undefined
    const p = exactPolicy(vm, { capabilities: await this.capabilities(), conntrack: this.conntrack, logDrops: this.logDrops })
    return 'elements' in p ? p : undefined
  }

  /** The deletes that take what the exact table holds of `vmId` (and of `tap`) out of it, for a batch built in
   *  the view's current epoch (the group commit made the snapshot current); undefined when it holds nothing. */
  #exactOut(vmId: string, tap: string | undefined): { commands: NftCommand[]; change: ExactChange } | undefined {
    if (!this.#exact) return undefined
    const x = this.#exact.known()
    // Read in this attempt, so current; should it not be, the batch is refused as a conflict and rebuilt.
    if (!x) throw generationMoved(this.#view.epoch, -1)
    const taps = exactTapsOf(x, vmId, tap)
    if (taps.length === 0) return undefined
    return exactLeaving(this.#exactTables(), x, taps)
  }

  /** One transaction putting the VM into the exact table (its chains, and what holds its tap, leave the VM-chain
   *  table in it), grouped with other VMs' writes. */
  async #applyExact(c: CompiledVm, policy: ExactPolicy, rewrite = false): Promise<void> {
    this.#forget(c.vmId)
    await this.#exactSubmit(c.vmId, c.tap, c.chains, (x, view) => exactVmBatch(this.#exactTables(), c, policy, view, x, { rewrite }))
    this.#noteTakeover(c.vmId, c.tap)
    this.#known.set(c.vmId, { compiled: c, attached: true, exact: policy })
  }

  /** A VM of the exact table that this instance did not apply: its elements as the table holds them, moved from
   *  `from` to `tap` (nothing when they are there and its identity is the guard's). */
  async #moveExact(vmId: string, from: string, tap: string, identity: VmIdentity): Promise<void> {
    const chains = vmChainNames(vmId)
    await this.#exactSubmit(vmId, tap, chains, (x, view) => {
      const elements = x.taps.get(from)
      if (x.owners.get(vmId) !== from || !elements) throw new FirewallError('VM_NOT_FOUND', `VM ${vmId} has no chains: apply it first`, vmId)
      return exactApplyBatch(this.#exactTables(), { vmId, tap, chains, identity, elements, shapes: x.shapes }, view, x)
    })
    this.#noteTakeover(vmId, tap)
  }

  /**
   * A write of the exact table through the group commit: coalesced with other VMs' writes that arrive while a
   * transaction is in flight, built from both views as the group's attempt has them (made current for it).
   * Each build applies its change to the exact snapshot at once, so the next item of the same group builds on
   * it (two VMs needing new shapes get one rewrite with both); a failed attempt drops the snapshot, so nothing
   * tentative survives it.
   */
  async #exactSubmit(vmId: string, tap: string, chains: { out: string; in: string }, build: (x: ExactSnapshot, view: ChainTableView) => { commands: NftCommand[]; change: ExactChange }): Promise<void> {
    const exact = this.#exact!
    // As last known when they are (group keys only; the build checks its views): no read on the hot path.
    const x0 = exact.known() ?? (await exact.current())
    // The chain names, which say whether the VM still has chains to leave, are read once per epoch.
    const { maps } = await this.#view.state(true)
    let epoch: number | undefined
    try {
      await this.#group.submit({
        keys: [...new Set([tap, ...exactTapsOf(x0, vmId), ...this.#tapsOf(maps, chains)])],
        build: (view) => {
          try {
            const x = exact.known()
            if (!x || !view.chains) throw generationMoved(this.#view.epoch, -1)
            const b = build(x, { maps: view.maps, sets: view.sets, chains: view.chains })
            applyExactChange(x, b.change)
            epoch = this.#view.epoch
            return b.commands
          } catch (e) {
            exact.invalidate()
            throw e
          }
        },
      })
    } catch (e) {
      exact.invalidate()
      throw e
    }
    // Someone else committed with it (the view was dropped): what was applied tentatively is not known to hold.
    if (epoch !== this.#view.epoch) exact.invalidate()
  }

  /** Interfaces whose dispatch entries point at `chains` now. */
  #tapsOf(maps: DispatchMaps | undefined, chains: { out: string; in: string }): string[] {
    const taps = new Set<string>()
    for (const [map, chain] of [
      [MAP_FROM_VM, chains.out],
      [MAP_TO_VM, chains.in],
    ] as const) {
      for (const [key, target] of maps?.[map] ?? []) if (target === chain) taps.add(key)
    }
    return [...taps]
  }

  /** Deletes of dispatch entries to `chains` other than from `tap` (all without it) and of the guard elements of
   *  the interfaces they were for, as the view has them. */
  #undispatch(maps: DispatchMaps, sets: SetContents | undefined, chains: { out: string; in: string }, tap?: string): NftCommand[] {
    const stale = staleEntries(maps, chains, tap)
    const gone = stale.map((x) => x.key).filter((k) => k !== tap)
    return [...stale.map((x) => elementDelete(this.table, x.map, x.key)), ...setElementCommands(this.table, 'delete', identityChanges(sets, gone, []).del)]
  }

  /** `also` commands may only touch this firewall's own table. */
  #checkOwnTable(commands: NftCommand[]): void {
    for (const [i, cmd] of commands.entries()) {
      const body = Object.values(cmd as Record<string, unknown>)[0] as Record<string, Record<string, unknown>> | undefined
      const o = body && typeof body === 'object' ? Object.values(body)[0] : undefined
      if (!o || o.family !== FAMILY || commandTable(cmd) !== this.table) {
        throw new FirewallValidationError(`also[${i}]`, `must target table ${FAMILY} ${this.table}`)
      }
    }
  }

  /**
   * Builds a batch from the engine's view of the dispatch maps and commits it. Another writer may change the
   * table between our view and our commit (the kernel then refuses with ENOENT/EBUSY/EEXIST): the batch is
   * rebuilt from a fresh read and sent again, a bounded number of times. Only idempotent operations use this.
   */
  async #write(build: (maps: DispatchMaps | undefined, sets: SetContents | undefined) => { commands: NftCommand[]; createsSets?: boolean; exact?: ExactChange }, also?: AlsoCommands): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      // Issue 15: builds may read the exact table's snapshot (#exactOut): current first.
      if (this.#exact) await this.#exact.current()
      // As the group commit: the first attempt from the view as last known, sent only while it holds; lean when
      // the table and its sets are known (a VM's removal: its dispatch and guard elements, its chains deleted).
      const view = await this.#view.attemptView(attempt)
      // Taken before `also` may read: should that read find the view moved on, the batch built from `view` is refused.
      const expect = this.#view.expectFor(view, attempt)
      const plan = build(view.maps, view.sets)
      if (also) {
        // The caller's part, decided from the same view (the chain names as last known on the first attempt: the
        // batch's `expect` then covers them too), in the same transaction.
        const { chains } = await this.#view.state(attempt === 1)
        const more = await also({ hasChain: (name) => chains.has(name) })
        this.#checkOwnTable(more)
        plan.commands = [...plan.commands, ...more]
      }
      try {
        const epoch = this.#view.epoch
        await this.#view.write(plan.commands, { createsSets: plan.createsSets, lean: view.setsKnown && this.#lean, ...expect })
        if (plan.exact) this.#exact?.applied(epoch, plan.exact)
        return
      } catch (e) {
        this.#exact?.invalidate()
        if (attempt >= CONFLICT_ATTEMPTS || !isConflict(e)) throw e
      }
    }
  }

  async #vmDrift(c: CompiledVm, attached: boolean, dispatch = true): Promise<VmDrift> {
    const outRules = (await this.#kernel.chain(c.chains.out))?.rules
    const inRules = (await this.#kernel.chain(c.chains.in))?.rules
    await this.#rendering.learn([...(outRules ? c.out : []), ...(inRules ? c.in : [])].map((r) => r.expr))
    const view = await this.#view.current()
    const maps = view.maps ?? { [MAP_FROM_VM]: new Map<string, string>(), [MAP_TO_VM]: new Map<string, string>() }
    return vmDrift(c, outRules, inRules, dispatch ? maps : undefined, attached, this.#rendering, view.sets ?? null)
  }

  /** Deletes a VM's chains and dispatch entries. Idempotent. `options.also`: more commands of this table for the
   *  same transaction, decided from the same view (see AlsoCommands). */
  async removeVm(vmId: string, options: { also?: AlsoCommands } = {}): Promise<void> {
    checkToken(vmId, 'vmId', VMID_MAX, {})
    return this.#sched.vm(vmId, async () => {
      this.#forget(vmId) // issue 14: what verify found of it no longer holds
      await this.#removeChains(vmChainNames(vmId), options.also, vmId)
      this.#known.delete(vmId)
    })
  }

  /** Deletes two VM chains and every dispatch entry to them, whether or not they exist. */
  async #removeChains(chains: { out: string; in: string }, also?: AlsoCommands, vmId?: string): Promise<void> {
    await this.#write((maps, sets) => {
      // Issue 15: and its elements in the exact table.
      const out = vmId !== undefined ? this.#exactOut(vmId, undefined) : undefined
      return {
        commands: [
          ...(maps ? [...this.#undispatch(maps, sets, chains), ...chainDeleteCommands(this.table, chains.out), ...chainDeleteCommands(this.table, chains.in)] : []),
          ...(out?.commands ?? []),
        ],
        ...(out ? { exact: out.change } : {}),
      }
    }, also)
  }

  /** Removes VM chains by name (`vm_<24 hex>`, with or without `_o`/`_i`) and their dispatch entries, for
   *  chains whose vmId is unknown. Idempotent. */
  async removeVmByChain(name: string, options: { also?: AlsoCommands } = {}): Promise<void> {
    const m = /^(vm_[0-9a-f]{24})(_[oi])?$/.exec(typeof name === 'string' ? name : '')
    if (!m) throw new FirewallValidationError('name', 'must be a VM chain name (vm_ + 24 hex digits, optional _o/_i)')
    const chains = { out: `${m[1]}_o`, in: `${m[1]}_i` }
    return this.#sched.exclusive(async () => {
      this.#forget() // issue 14: what verify found of it no longer holds
      // Issue 15: a VM of the exact table has no chains; its elements name its vmId, whose chain names these are.
      const x = this.#exact && (await this.#exact.current())
      const owner = x ? [...x.owners.keys()].find((id) => vmChainNames(id).out === chains.out) : undefined
      await this.#removeChains(chains, options.also, owner)
      for (const [id, known] of this.#known) if (known.compiled.chains.out === chains.out) this.#known.delete(id)
    })
  }

  /** Whether the VM's chains (either) exist in the kernel: from the engine's view, so no listing while nobody
   *  else committed since its last look (else one `list chains`, names only). */
  async hasVm(vmId: string): Promise<boolean> {
    checkToken(vmId, 'vmId', VMID_MAX, {})
    const chains = vmChainNames(vmId)
    const names = await this.#view.chainNames()
    return names.has(chains.out) || names.has(chains.in) || (this.#exact !== undefined && (await this.#exact.current()).owners.has(vmId))
  }

  /** Stops dispatching the VM's traffic to its chains (VM stopped); rules are kept. Idempotent. `options.also`:
   *  more commands of this table for the same transaction, decided from the same view (see AlsoCommands). */
  async detachVm(vmId: string, options: { also?: AlsoCommands } = {}): Promise<void> {
    checkToken(vmId, 'vmId', VMID_MAX, {})
    return this.#sched.vm(vmId, async () => {
      const known = this.#known.get(vmId)
      if (known) known.attached = false
      await this.#write((maps, sets) => {
        // Issue 15: a VM of the exact table has nothing but its elements: they go (attachVm puts them back).
        const out = this.#exactOut(vmId, undefined)
        return { commands: [...(maps ? this.#undispatch(maps, sets, vmChainNames(vmId)) : []), ...(out?.commands ?? [])], ...(out ? { exact: out.change } : {}) }
      }, options.also)
    })
  }

  /** Dispatches `tap`'s traffic to the VM's existing chains (VM started), and puts its identity into the shared
   *  guard for `tap`. Idempotent. The identity is the one this instance last applied; for a VM it did not apply
   *  (another process's, or before a restart) give `options.identity` (its mac/ipv4/ipv6/antiSpoofing/dhcp as
   *  in its VmSpec), else it is refused: attaching without its built-ins would leave the VM unguarded. */
  async attachVm(vmId: string, tap: string, options: { identity?: VmIdentitySpec } = {}): Promise<void> {
    checkToken(vmId, 'vmId', VMID_MAX, {})
    checkIfname(tap, 'tap', { vmId })
    const given = options.identity && vmIdentity(normalizeVm({ mac: options.identity.mac, ipv4: options.identity.ipv4, ipv6: options.identity.ipv6, antiSpoofing: options.identity.antiSpoofing, dhcp: options.identity.dhcp, vmId, tap, defaultAction: 'drop' }))
    return this.#sched.vm(vmId, async () => {
      const chains = vmChainNames(vmId)
      const identity = given ?? this.#known.get(vmId)?.compiled.identity
      // Issue 15: a VM of the exact table gets its elements (as applied, or as the table holds them) at `tap`.
      const mine = this.#known.get(vmId)
      if (mine?.exact && identity) {
        const c = { ...mine.compiled, tap, identity, result: { ...mine.compiled.result, tap } }
        return this.#applyExact(c, mine.exact)
      }
      const held = this.#exact && (await this.#exact.current()).owners.get(vmId)
      if (held !== undefined) {
        if (!identity) throw new FirewallValidationError('identity', `VM ${vmId} was not applied by this instance: give its identity (the shared guard needs it)`, { vmId })
        return this.#moveExact(vmId, held, tap, identity)
      }
      if (!identity) {
        const names = await this.#view.chainNames()
        if (!names.has(chains.out) || !names.has(chains.in)) throw new FirewallError('VM_NOT_FOUND', `VM ${vmId} has no chains: apply it first`, vmId)
        throw new FirewallValidationError('identity', `VM ${vmId} was not applied by this instance: give its identity (the shared guard needs it)`, { vmId })
      }
      try {
        await this.#write((maps, sets) => {
          if (!maps) throw new FirewallError('VM_NOT_FOUND', `no firewall table: apply VM ${vmId} first`, vmId)
          const stale = staleEntries(maps, chains, tap)
          const ok = maps[MAP_FROM_VM].get(tap) === chains.out && maps[MAP_TO_VM].get(tap) === chains.in
          const elements = identityChanges(sets, [tap, ...stale.map((x) => x.key)], identityElements(identity, tap))
          if (ok && stale.length === 0 && elements.add.length === 0 && elements.del.length === 0) return { commands: [] }
          return {
            commands: [
              ...stale.map((s) => elementDelete(this.table, s.map, s.key)),
              ...setElementCommands(this.table, 'delete', elements.del),
              ...(ok ? [] : [elementAdd(this.table, MAP_FROM_VM, tap, chains.out), elementAdd(this.table, MAP_TO_VM, tap, chains.in)]),
              ...setElementCommands(this.table, 'add', elements.add),
            ],
          }
        })
      } catch (e) {
        if (isNotFound(e)) throw new FirewallError('VM_NOT_FOUND', `VM ${vmId} has no chains: apply it first`, vmId)
        throw e
      }
      this.#noteTakeover(vmId, tap)
      const known = this.#known.get(vmId)
      if (known) {
        known.attached = true
        known.compiled = { ...known.compiled, tap, result: { ...known.compiled.result, tap } }
      }
    })
  }

  /** Reconciles the kernel with the full desired set in one transaction: only differing VMs are rewritten,
   *  VM chains not in the set are removed. */
  async sync(specs: VmSpec[], options: SyncOptions = {}): Promise<SyncResult> {
    if (!Array.isArray(specs)) throw new FirewallValidationError('vms', 'must be an array of VmSpec')
    const prune = options.prune ?? 'all'
    if (prune !== 'all' && prune !== 'none') throw new FirewallValidationError('prune', "must be 'all' or 'none'")
    const vms = specs.map(normalizeVm)
    const ids = new Set<string>()
    const taps = new Set<string>()
    for (const vm of vms) {
      if (ids.has(vm.vmId)) throw new FirewallValidationError('vmId', 'duplicate vmId in sync set', { vmId: vm.vmId })
      if (taps.has(vm.tap)) throw new FirewallValidationError('tap', `tap ${vm.tap} used by two VMs`, { vmId: vm.vmId })
      ids.add(vm.vmId)
      taps.add(vm.tap)
    }
    return this.#sched.exclusive(async () => {
      this.#forget() // issue 14: what verify found of it no longer holds
      const caps = await this.capabilities()
      const all = vms.map((vm) => compileVm(vm, { capabilities: caps, conntrack: this.conntrack, logDrops: this.logDrops }))
      // Issue 15: the VMs whose policies fit go into the exact table; the VM-chain table is synced with the rest.
      const placed = new Map<string, ExactPolicy>()
      for (const vm of vms) {
        const p = await this.#placement(vm)
        if (p) placed.set(vm.vmId, p)
      }
      const compiled = all.filter((c) => !placed.has(c.vmId))
      // Nobody committed since our last full sync: the table is what that sync wrote, no listing needed.
      const read = await this.#kernel.generation()
      const known = this.#synced?.generation === read ? this.#synced.table : undefined
      const k = known ?? (await this.#readTable())
      const readAt = known || (await this.#kernel.generation()) === read ? read : -1
      if (!known) await this.#learnRenderings(k, compiled)
      // Issue 15: a set of exact VMs alone needs no VM-chain table (each table's guard costs every frame).
      const none = this.#exact !== undefined && !k.exists && compiled.length === 0
      const { commands, result: res, createsSets } = none
        ? { commands: [] as NftCommand[], result: { added: [], changed: [], removed: [], reattached: [], unchanged: [], removedChains: [], results: {} } as SyncResult, createsSets: false }
        : planSync(k, compiled, { table: this.table, prune, renderings: this.#rendering, log: this.#guardLog })
      const exact = this.#exact ? await this.#exactSync(k, all, placed, prune, res) : undefined
      if (exact) commands.push(...exact.commands)
      this.#synced = undefined
      // Issue 14: into an absent table the whole batch (table, sets, guard, every VM) is written without
      // libnftables when the encoder spells all of it (netlink-batch.ts; else libnftables, as with leanWrites off).
      const w = await this.#view.write(commands, { createsSets, lean: this.#lean && !k.exists })
      // prune 'none' leaves the other VMs in the kernel as they were: what this instance applied of them (their
      // identities too, which attachVm needs for the guard) still holds.
      if (prune === 'all') this.#known.clear()
      for (const c of all) this.#known.set(c.vmId, { compiled: c, attached: true, ...(placed.has(c.vmId) ? { exact: placed.get(c.vmId)! } : {}) })
      if (exact) this.#exact!.applied(exact.epoch, exact.change)
      // The table is now exactly the set (prune 'all'), if only this batch was committed since the read.
      if (prune === 'all' && !none && readAt === w.before && w.after - w.before <= 1 && !this.#kernel.dryRun) {
        this.#synced = { generation: w.after, table: tableOf(compiled) }
        const before = this.#view.epoch
        this.#view.adopt(w.after, this.#synced.table.maps, true, this.#synced.table.sets)
        this.#exact?.follow(before)
        for (const c of compiled) this.#wrote(c, this.#view.epoch)
      }
      return res
    })
  }

  /** sync()'s part in the exact table (issue 15), for the same transaction: the placed VMs' elements (only what
   *  differs), the other VMs of the set out of it, and (prune 'all') everything else out of it; with prune
   *  'none' the placed VMs leave the VM-chain table too (prune 'all' removes them there with every VM not in
   *  the chain set). Their outcomes go into `res`. */
  async #exactSync(k: KernelTable, all: CompiledVm[], placed: ReadonlyMap<string, ExactPolicy>, prune: 'all' | 'none', res: SyncResult): Promise<{ commands: NftCommand[]; change: ExactChange; epoch: number }> {
    const { snap: x } = await this.#exact!.read()
    const epoch = this.#view.epoch
    const t = this.#exactTables()
    const mine = all.filter((c) => placed.has(c.vmId))
    const others = all.filter((c) => !placed.has(c.vmId))
    const want = mine.map((c) => ({ vmId: c.vmId, tap: c.tap, identity: c.identity, elements: tableElementsOf(c.vmId, placed.get(c.vmId)!), shapes: placed.get(c.vmId)!.shapes }))
    const batch = exactTableBatch(t, x, want, others.flatMap((c) => exactTapsOf(x, c.vmId, c.tap)), { prune: prune === 'all' })
    const chainSide = prune === 'none' ? chainTableLeaving(t, { maps: k.maps, sets: k.sets, chains: k.chains }, mine, new Set(others.map((c) => c.tap))) : []
    for (const w of want) {
      const c = all.find((a) => a.vmId === w.vmId)!
      res.results[c.vmId] = { ...c.result, placement: 'exact' }
      const had = x.owners.get(c.vmId)
      const inChains = k.chains.has(c.chains.out) || k.chains.has(c.chains.in)
      const d = exactChanges(x.taps.get(c.tap) ?? [], w.elements)
      const g = identityChanges(x.sets, [c.tap], identityElements(c.identity, c.tap))
      const same = had === c.tap && d.del.length + d.add.length + g.del.length + g.add.length === 0
      ;(had === undefined && !inChains ? res.added : same && !inChains ? res.unchanged : res.changed).push(c.vmId)
      // Its chains, pruned by the chain table's sync, are not a removal: it moved.
      const i = res.removed.indexOf(c.vmId)
      if (i >= 0) res.removed.splice(i, 1)
    }
    for (const c of others) res.results[c.vmId] = { ...c.result, placement: 'chains' }
    if (prune === 'all') for (const id of x.owners.keys()) if (!res.results[id] && !res.removed.includes(id)) res.removed.push(id)
    return { commands: [...chainSide, ...batch.commands], change: batch.change, epoch }
  }

  /** repair()'s part in the exact table (issue 15): the known exact VMs' elements and guard elements where they
   *  differ, a detached one's taken out, and the table's base chains rewritten when its shape is damaged. */
  async #exactRepair(known: Known[]): Promise<{ commands: NftCommand[]; change: ExactChange; epoch: number; table: boolean; vms: string[] }> {
    const { snap: x } = await this.#exact!.read()
    const epoch = this.#view.epoch
    const expected = this.#exactExpected(known)
    const listed = x.exists ? await this.#exact!.kernel.chainsAndRules() : undefined
    const v = exactVerify(x, expected, listed, this.#exactTables())
    const damaged = x.exists && v.table.length > 0
    const want = expected.filter((e) => e.attached).map((e) => ({ ...e, elements: tableElementsOf(e.vmId, e.policy), shapes: e.policy.shapes }))
    const clear = expected.filter((e) => !e.attached).flatMap((e) => exactTapsOf(x, e.vmId))
    const batch = exactTableBatch(this.#exactTables(), x, want, clear, { rewrite: damaged })
    return { ...batch, epoch, table: damaged || (!x.exists && want.length > 0), vms: v.vms.filter((d) => d.status !== 'ok').map((d) => d.vmId) }
  }

  /** The known VMs of the exact table, as exactVerify expects them. */
  #exactExpected(known: readonly Known[]): ExactExpected[] {
    return known.flatMap((e) => (e.exact ? [{ vmId: e.compiled.vmId, tap: e.compiled.tap, chains: e.compiled.chains, identity: e.compiled.identity, policy: e.exact, attached: e.attached }] : []))
  }

  /** Drift between the kernel (read now, one listing) and a desired set: `desired` when given (all attached,
   *  like sync()), else what this instance last applied (applyVm/sync/attach/detach). */
  async verify(desired?: VmSpec[]): Promise<VerifyResult> {
    const vms = desired?.map(normalizeVm)
    return this.#sched.exclusive(async () => {
      let expected: Known[]
      if (vms) {
        const caps = await this.capabilities()
        expected = []
        for (const vm of vms) expected.push({ compiled: compileVm(vm, { capabilities: caps, conntrack: this.conntrack, logDrops: this.logDrops }), attached: true, exact: await this.#placement(vm) })
      } else {
        expected = [...this.#known.values()]
      }
      const chainVms = expected.filter((e) => !e.exact)
      const k = await this.#readTable()
      await this.#learnRenderings(k, chainVms.map((e) => e.compiled))
      const result = verifyTable(k, chainVms, this.#rendering)
      if (!this.#exact) return result
      // Issue 15: the exact table's VMs and shape; a firewall of exact VMs alone needs no VM-chain table.
      if (!k.exists && chainVms.length === 0) result.table = result.table.filter((p) => p !== 'table missing')
      const { snap } = await this.#exact.read()
      const listed = snap.exists ? await this.#exact.kernel.chainsAndRules() : undefined
      const x = exactVerify(snap, this.#exactExpected(expected), listed, this.#exactTables())
      result.vms.push(...x.vms)
      result.orphans.push(...x.orphans)
      result.table.push(...x.table)
      result.ok = result.vms.every((v) => v.status === 'ok') && result.orphans.length === 0 && result.table.length === 0
      return result
    })
  }

  /** Puts back what this instance last applied (applyVm/sync/attach/detach) where the kernel differs from it,
   *  in one transaction: the table, base chains and maps when they are damaged, and each known VM whose chains
   *  or dispatch entries differ. Chains and entries of VMs this instance does not know are left alone (another
   *  writer's, with prune 'none'). Writes nothing when everything matches. What `watch({ repair: true })` runs. */
  async repair(): Promise<RepairResult> {
    return this.#sched.exclusive(async () => {
      const all = [...this.#known.values()]
      const known = all.filter((e) => !e.exact)
      const k = await this.#readTable()
      await this.#learnRenderings(k, known.map((e) => e.compiled))
      // Issue 15: a firewall of exact VMs alone has no VM-chain table to put back.
      const { commands, table, vms } = this.#exact && !k.exists && known.length === 0 ? { commands: [], table: false, vms: [] } : planRepair(k, known, { table: this.table, renderings: this.#rendering, log: this.#guardLog })
      const exact = this.#exact ? await this.#exactRepair(all) : undefined
      if (commands.length === 0 && !exact?.commands.length) return { ok: true, table: false, vms: [] }
      this.#synced = undefined
      const w = await this.#view.write([...commands, ...(exact?.commands ?? [])], { createsSets: true })
      if (exact) this.#exact!.applied(exact.epoch, exact.change)
      return { ok: false, table: table || exact?.table === true, vms: [...vms, ...(exact?.vms ?? [])], generation: w.after }
    })
  }

  /** Reports, within milliseconds, every change someone else makes to this firewall's table (nf_tables
   *  notifications read on a thread in the instance's namespace); `repair: true` puts it back with `repair()`.
   *  Stop it with `stop()`. See watch.ts. */
  watch(options: WatchOptions = {}): FirewallWatch {
    return new FirewallWatch(this, this.#kernel.nft, options, this.#exact ? [exactTableName(this.table)] : [])
  }

  /** Packets the `logDrops` rules logged, as typed events (nfnetlink_log group read in the instance's
   *  namespace). Stop it with `stop()`. See blocked.ts. */
  blocked(options: BlockedOptions = {}): BlockedStream {
    return new BlockedStream(this, this.#kernel.nft, options)
  }

  /** The VMs present in the kernel's table (one listing), whoever applied them. */
  async inventory(): Promise<VmInventoryEntry[]> {
    return this.#sched.exclusive(async () => [
      ...inventoryOf(await this.#readTable()),
      // Issue 15: and the exact table's.
      ...(this.#exact ? exactInventoryOf((await this.#exact.read()).snap) : []),
    ])
  }

  /** Packets and bytes per rule id, read from the kernel's counters. */
  async stats(vmId: string): Promise<VmStats> {
    checkToken(vmId, 'vmId', VMID_MAX, {})
    return this.#sched.vm(vmId, async () => {
      const chains = vmChainNames(vmId)
      const zero = zeroCounters
      const stats: VmStats = { vmId, rules: {}, default: zero(), builtin: {}, dropped: zero() }
      // Issue 15: a VM of the exact table counts in its elements, and its built-ins in that table's guard.
      const exact = this.#exact && (await this.#exact.read())
      const tap = exact?.snap.owners.get(vmId)
      if (exact && tap !== undefined) {
        const text = exact.text ?? ''
        Object.assign(stats, exactCounters(exactTableOfText(text).elements.get(tap) ?? []))
        builtinCounters(stats, setContentsOfText(text, exactTableName(this.table)).counters, { out: [tap], in: [tap] })
        return stats
      }
      for (const side of ['out', 'in'] as const) {
        const listed = await this.#kernel.chain(chains[side])
        if (!listed) throw new FirewallError('VM_NOT_FOUND', `VM ${vmId} has no chains`, vmId)
        for (const r of listed.rules) {
          const p = parseComment(r.comment)
          if (!p) continue
          const c = counterOf(r.expr)
          const bucket =
            p.kind === 'd' ? stats.default : p.kind === 'b' ? (stats.builtin[p.tag] ??= zero()) : (stats.rules[p.tag] ??= zero())
          const verdict = r.expr[r.expr.length - 1] as Record<string, unknown> | undefined
          const drops = verdict !== undefined && ('drop' in verdict || 'reject' in verdict)
          countInto(drops ? [bucket, stats.dropped] : [bucket], side, c)
        }
      }
      // Issue 15: the built-ins count in the guard's tap sets, one counter per element: the VM's own are those of
      // the interfaces dispatching to it, per direction.
      const maps = await this.#view.maps()
      const taps = {
        out: [...(maps?.[MAP_FROM_VM] ?? [])].filter(([, t]) => t === chains.out).map(([k]) => k),
        in: [...(maps?.[MAP_TO_VM] ?? [])].filter(([, t]) => t === chains.in).map(([k]) => k),
      }
      const counters = taps.out.length || taps.in.length ? (await this.#kernel.sets())?.counters : undefined
      builtinCounters(stats, counters, taps)
      return stats
    })
  }

  /** An idempotent nft script recreating the table exactly (for `nft -f` at boot or restoreRuleset()). */
  async exportRuleset(): Promise<string> {
    if (this.#kernel.terse) {
      // `-t` omits set and map contents: the export would lose every VM's dispatch entry.
      throw new FirewallValidationError('nft', 'exportRuleset() needs an Nft without the `terse` option')
    }
    return this.#sched.exclusive(async () => {
      const listing = await this.#kernel.runText(`list table ${FAMILY} ${this.table}`)
      // Issue 15: and the exact table, replaced with it in the same transaction (deleted when it has none).
      const exact = this.#exact && (await this.#exact.kernel.listText())
      const x = exactTableName(this.table)
      return [
        `# @infinibay/nftables-node VmFirewall export: replaces table ${FAMILY} ${this.table}${this.#exact ? ` and ${FAMILY} ${x}` : ''} atomically`,
        `table ${FAMILY} ${this.table} {}`,
        `delete table ${FAMILY} ${this.table}`,
        listing.trimEnd(),
        ...(this.#exact ? [`table ${FAMILY} ${x} {}`, `delete table ${FAMILY} ${x}`, ...(exact ? [exact.trimEnd()] : [])] : []),
        '',
      ].join('\n')
    })
  }

  /** Applies an exportRuleset() file of this firewall's table (with `exactTable`, of its exact table too) in one transaction; anything else (other tables,
   *  `include`, `define`, `flush ruleset`, ...) is a RestoreValidationError naming the line, checked before
   *  libnftables sees it. Forgets what this instance knew about VMs. */
  async restoreRuleset(text: string): Promise<void> {
    const { script } = checkRestore(text, this.table, FAMILY, this.#exact ? [exactTableName(this.table)] : [])
    return this.#sched.exclusive(async () => {
      this.#forget() // issue 14: what verify found of it no longer holds
      this.#view.invalidate()
      this.#exact?.invalidate()
      await this.#kernel.runText(script)
      this.#known.clear()
    })
  }

  /** VMs this instance applied (the desired state verify() compares with). */
  knownVms(): string[] {
    return [...this.#known.keys()]
  }

  /** The VMs knownVms() names, each with its tap (watch names a VM by the tap of an exact-table element). */
  knownVmTaps(): [vmId: string, tap: string][] {
    return [...this.#known.values()].map((e) => [e.compiled.vmId, e.compiled.tap])
  }


  // ==== Engine additions for callers that decide per VM (the compat facade; issue 14) ====================
  // Additive: ApplyOptions.attach 'keep' and .prepare, IfChangedOptions.checkTable, vmState(), chainNames(),
  // commit(), tableProblems(). Decisions run in the VM's turn of the scheduler (the one lock) and read
  // the engine's view (validated by the ruleset generation), so the hot path lists nothing.

  /** The VM as the engine's view has it now: no listing while nobody else committed since its last look
   *  (else the dispatch maps and the chain names are read once). A snapshot: in the VM's turn, use `prepare`. */
  async vmState(vmId: string): Promise<VmState> {
    checkToken(vmId, 'vmId', VMID_MAX, {})
    return this.#stateOf(vmId)
  }

  /** Issue 15: the VM chain `tap`'s frames are dispatched to (from the engine's view: no listing while nobody
   *  else committed), for events of the shared guard, which name the interface and not the VM. */
  async chainOfTap(tap: string): Promise<string | undefined> {
    return (await this.#view.maps())?.[MAP_FROM_VM].get(tap)
  }

  /** Issue 15: the VMs the exact table holds (from the engine's snapshot: no listing while nobody else
   *  committed; [] with the option off). They have no chains: chainNames() does not name them. */
  async exactVms(): Promise<string[]> {
    return this.#exact ? [...(await this.#exact.current()).owners.keys()] : []
  }

  /** Names of the table's chains, in the kernel's order, from the engine's view ([] without the table). */
  async chainNames(): Promise<string[]> {
    return [...(await this.#view.chainNames())]
  }

  /** Runs the commands `build` returns (this table only) as one transaction, keeping the engine's view exact;
   *  nothing when it returns []. With `vmId`: in that VM's turn, `build` getting the VM's state; without: alone,
   *  like init() and sync(). For a caller's own objects next to the VMs (the compat facade's old-layout chains
   *  and jumps); VMs' own chains and dispatch go through applyVm/removeVm/attachVm/detachVm. */
  async commit(build: (state: VmState | undefined) => NftCommand[] | Promise<NftCommand[]>, options: { vmId?: string } = {}): Promise<void> {
    const { vmId } = options
    if (vmId !== undefined) checkToken(vmId, 'vmId', VMID_MAX, {})
    const run = async () => {
      const commands = await build(vmId !== undefined ? await this.#stateOf(vmId) : undefined)
      if (commands.length === 0) return
      this.#checkOwnTable(commands)
      await this.#view.write(commands)
    }
    return vmId !== undefined ? this.#sched.vm(vmId, run) : this.#sched.exclusive(run)
  }

  /** Problems of the base chains and their dispatch rules (two chain listings; [] when healthy); with
   *  `exactTable`, of the exact table's shape too (`exact table: ...`, one more listing when it exists). */
  async tableProblems(): Promise<string[]> {
    const problems: string[] = []
    for (const name of [CHAIN_PREROUTING, CHAIN_POSTROUTING] as const) {
      const listed = await this.#kernel.chain(name)
      problems.push(...baseChainProblems(name, listed?.chain, listed?.rules ?? [], this.#guardLog).problems)
    }
    return [...problems, ...(await this.#exactTableProblems())]
  }

  /** Issue 15: what verify() reports of the exact table's shape (base chains, guard chains, a map per lookup),
   *  judged against the shapes it looks up and those of the exact VMs this instance knows. */
  async #exactTableProblems(): Promise<string[]> {
    if (!this.#exact) return []
    const x = await this.#exact.current()
    const listed = x.exists ? await this.#exact.kernel.chainsAndRules() : undefined
    return exactVerify(x, this.#exactExpected([...this.#known.values()]), listed, this.#exactTables()).table
  }

  /** #exactTableProblems, or none without listing in a view epoch where the shape was found intact (nobody
   *  else committed since; our own writes keep it so). */
  async #exactTableChecked(): Promise<string[]> {
    await this.#view.current()
    const epoch = this.#view.epoch
    if (this.#exactTableOkEpoch === epoch) return []
    const problems = await this.#exactTableProblems()
    await this.#view.current()
    if (problems.length === 0 && this.#view.epoch === epoch && !this.#kernel.dryRun) this.#exactTableOkEpoch = epoch
    return problems
  }

  /** VMs whose chains were found exactly as compiled (`key`) in a view epoch: while nobody else commits (the
   *  epoch stands) and no write of ours to the VM follows (#forget), applyVmIfChanged/verifyVm need not list
   *  them again (their dispatch is always checked, against the view). */
  readonly #verified = new Map<string, { epoch: number; key: string; defaultAction: FirewallDefaultAction }>()
  /** The view epoch in which the base chains and dispatch rules were found intact (our writes never break them). */
  #tableOkEpoch = -1
  /** The same of the exact table's shape (issue 15). */
  #exactTableOkEpoch = -1

  /** Our write of `c` committed and nobody else's since `epoch` (still the view's): its chains are as compiled. */
  #wrote(c: CompiledVm, epoch: number): void {
    if (this.#view.epoch === epoch && !this.#kernel.dryRun) this.#verified.set(c.vmId, { epoch, key: rulesFingerprint(c.out, c.in), defaultAction: c.result.defaultAction })
  }

  /** Drops what was verified of one VM (of all, without a vmId): a write of ours may change it. */
  #forget(vmId?: string): void {
    if (vmId === undefined) this.#verified.clear()
    else this.#verified.delete(vmId)
  }

  async #stateOf(vmId: string, optimistic = false): Promise<VmState> {
    const chains = vmChainNames(vmId)
    const { maps, chains: names } = await this.#view.state(optimistic)
    const keysTo = (m: Elements | undefined, chain: string) => {
      const keys: string[] = []
      for (const [k, t] of m ?? []) if (t === chain) keys.push(k)
      return keys
    }
    let action: Promise<FirewallDefaultAction | undefined> | undefined
    // Issue 15: what the exact table holds of it (as last known when optimistic, like the view).
    const x = this.#exact ? ((optimistic ? this.#exact.known() : undefined) ?? (await this.#exact.current())) : undefined
    const exactTap = x?.owners.get(vmId)
    const outExists = names.has(chains.out)
    const inExists = names.has(chains.in)
    return {
      vmId,
      chains,
      tableExists: maps !== undefined,
      outExists,
      inExists,
      dispatch: { from: keysTo(maps?.[MAP_FROM_VM], chains.out), to: keysTo(maps?.[MAP_TO_VM], chains.in) },
      exactTap,
      hasChain: (name) => names.has(name),
      // Known without listing while the VM's chains are as we found or wrote them (nobody else committed since).
      defaultAction: () => {
        const memo = this.#verified.get(vmId)
        if (action) return action
        if (memo && memo.epoch === this.#view.epoch) return (action = Promise.resolve(memo.defaultAction))
        if (!outExists && !inExists && exactTap !== undefined) return (action = Promise.resolve(exactDefaultAction(x!, vmId, exactTap)))
        return (action = this.#defaultActionOf(chains, names))
      },
    }
  }

  /** The verdict of the VM's default rule (its last rule, tagged `d:`), read from its first existing chain. */
  async #defaultActionOf(chains: { out: string; in: string }, names: ReadonlySet<string>): Promise<FirewallDefaultAction | undefined> {
    for (const chain of [chains.out, chains.in]) {
      if (!names.has(chain)) continue
      const last = (await this.#kernel.chain(chain))?.rules.at(-1)
      if (parseComment(last?.comment)?.kind !== 'd') continue
      const verdict = last!.expr.at(-1) as Record<string, unknown> | undefined
      if (verdict && 'accept' in verdict) return 'accept'
      if (verdict && 'drop' in verdict) return 'drop'
    }
    return undefined
  }

  /** What an apply does, decided in the VM's turn: `prepare`'s answer over the options, 'keep' resolved. */
  async #decide(vm: NormalizedVm, options: ApplyOptions, optimistic = false): Promise<Decided> {
    let attach: boolean | 'keep' = options.attach ?? true
    let also = options.also ?? []
    let spec = vm
    let skip = false
    let force = false
    let create: string[] = []
    let state: VmState | undefined
    // The view's epoch when the state was read: the decision holds while it has not changed.
    let at: number | undefined
    if (options.prepare) {
      state = await this.#stateOf(vm.vmId, optimistic)
      at = this.#view.epoch
      const d = (await options.prepare(state)) ?? {}
      if (d.attach !== undefined) attach = checkAttach(d.attach) ?? attach
      if (d.also) also = [...also, ...d.also]
      if (d.spec) {
        spec = normalizeVm(d.spec)
        if (spec.vmId !== vm.vmId) throw new FirewallValidationError('vmId', 'prepare() may not change the VM', { vmId: vm.vmId })
      }
      skip = d.skip === true
      force = d.force === true
      if (d.create) create = [state.chains.out, state.chains.in].filter((ch) => !state!.hasChain(ch))
    }
    let compiled = compileVm(spec, { capabilities: await this.capabilities(), conntrack: this.conntrack, logDrops: this.logDrops })
    const epoch = () => (at !== undefined ? { epoch: at } : {})
    if (attach !== 'keep') return { spec, compiled, attach, attached: attach, also, skip, force, create, ...epoch() }
    if (!state) {
      state = await this.#stateOf(vm.vmId, optimistic)
      at = this.#view.epoch
    }
    const keep = state.dispatch.from[0] ?? state.dispatch.to[0]
    if (keep !== undefined) compiled = { ...compiled, tap: keep, result: { ...compiled.result, tap: keep } }
    return { spec, compiled, attach: { keep }, attached: keep !== undefined, also, skip, force, create, ...epoch() }
  }

  /** The decision and the VM's drift against it. Issue 14: decided from the view as last known; the comparison's
   *  own read of the generation then says whether that view held (else decided again, a bounded number of times;
   *  the last from a view just read): one generation read in all while nobody else commits. */
  async #decideAndCompare(vm: NormalizedVm, options: IfChangedOptions): Promise<{ d: Decided; drift: VmDrift; tableBroken: boolean; exact?: ExactPolicy }> {
    for (let attempt = 1; ; attempt++) {
      const optimistic = attempt < CONFLICT_ATTEMPTS
      const d = await this.#decide(vm, options, optimistic)
      // Issue 15: bound for the exact table: compared there (with checkTable, that table's shape too).
      await this.#keepExact(d)
      const exact = await this.#exactRoute(d, optimistic)
      if (exact === 'stale') continue
      if (exact) {
        const drift = await this.#exactVmDrift(d.compiled, exact)
        const table = options.checkTable === true ? await this.#exactTableChecked() : []
        if (table.length > 0) {
          drift.changed.push(...table.map((p) => `table:${p}`))
          if (drift.status === 'ok') drift.status = 'changed'
        }
        return { d, drift, tableBroken: table.length > 0, exact }
      }
      const r = await this.#driftOrKnown(d, options.checkTable === true, optimistic)
      if (r) return { d, ...r }
    }
  }

  /** The VM's drift (and, with checkTable, the base chains'), or none without listing when the generation has
   *  not moved since the same VM was found exactly so. `optimistic`: undefined when the view the decision was
   *  made from no longer holds (decide again). */
  async #driftOrKnown(d: Decided, checkTable: boolean, optimistic = false): Promise<{ drift: VmDrift; tableBroken: boolean } | undefined> {
    const c = d.compiled
    const keep = typeof d.attach === 'object'
    const key = rulesFingerprint(c.out, c.in)
    const fresh = (): VmDrift => ({ vmId: c.vmId, chains: c.chains, status: 'ok', missing: [], extra: [], changed: [] })
    const first = await this.#view.current()
    let epoch = this.#view.epoch
    // An optimistic decision holds when the view it read is the current one (nobody else committed since).
    if (optimistic && d.epoch !== undefined && d.epoch !== epoch) return undefined
    const memo = this.#verified.get(c.vmId)
    let drift: VmDrift
    if (memo && memo.epoch === epoch) {
      // Nobody else committed since its chains were found (or written) exactly so: no listing. A different
      // policy is drift for sure; the dispatch is checked against the view (exact).
      drift = fresh()
      if (memo.key !== key) drift.changed.push(`rule:${c.chains.out}`, `rule:${c.chains.in}`)
      if (!keep) dispatchDrift(first.maps ?? { [MAP_FROM_VM]: new Map(), [MAP_TO_VM]: new Map() }, c, d.attached, drift, first.sets ?? null)
      if (drift.missing.length || drift.extra.length || drift.changed.length) drift.status = 'changed'
      if (checkTable && this.#tableOkEpoch !== epoch) {
        const table = await this.tableProblems()
        drift.changed.push(...table.map((p) => `table:${p}`))
        if (table.length > 0) drift.status = 'changed'
        else if ((await this.#view.current(), this.#view.epoch === epoch)) this.#tableOkEpoch = epoch
        return { drift, tableBroken: table.length > 0 }
      }
      return { drift, tableBroken: false }
    }
    this.#verified.delete(c.vmId)
    // The kernel's rendering of these rules first: learning commits (once per rule shape: a scratch chain added
    // and deleted), which must not look like someone else's commit to the view.
    const exprs = [...c.out, ...c.in].map((r) => r.expr)
    const unknown = exprs.some((e) => this.#rendering.lookup(e) === undefined)
    const g0 = unknown ? await this.#kernel.generation() : 0
    await this.#rendering.learn(exprs)
    if (unknown && exprs.every((e) => this.#rendering.lookup(e) !== undefined)) this.#view.advance(g0, await this.#kernel.generation())
    await this.#view.current()
    epoch = this.#view.epoch
    drift = await this.#vmDrift(c, d.attached, !keep)
    const chainsOk = drift.status !== 'missing' && [...drift.missing, ...drift.extra, ...drift.changed].every((x) => x.startsWith('dispatch:'))
    const table = !checkTable || this.#tableOkEpoch === epoch ? [] : await this.tableProblems()
    if (table.length > 0) {
      drift.changed.push(...table.map((p) => `table:${p}`))
      if (drift.status === 'ok') drift.status = 'changed'
    }
    // Kept only if nobody committed while we listed (the view, made current again, is in the same epoch).
    await this.#view.current()
    if (this.#view.epoch === epoch && !this.#kernel.dryRun) {
      if (checkTable && table.length === 0) this.#tableOkEpoch = epoch
      if (chainsOk) this.#verified.set(c.vmId, { epoch, key, defaultAction: c.result.defaultAction })
    }
    return { drift, tableBroken: table.length > 0 }
  }
  // ==== end of engine additions (issue 14) ===================================================================

  // ---- internals ----

  /** The kernel's rendering of every compiled rule whose chain exists (one transaction, only for new rules). */
  async #learnRenderings(k: KernelTable, compiled: CompiledVm[]): Promise<void> {
    const rules: CompiledRule[] = []
    for (const c of compiled) {
      for (const [chain, want] of [
        [c.chains.out, c.out],
        [c.chains.in, c.in],
      ] as const) {
        // Statements are compared only where the comments line up (see diffChain): learn just those.
        const have = k.rules.get(chain)
        if (have && have.length === want.length && want.every((r, i) => r.comment === have[i]!.comment)) rules.push(...want)
      }
    }
    await this.#rendering.learn(rules.map((r) => r.expr))
  }

  /** Deletes base chains whose type, hook or priority differ from the layout (a hook cannot be changed in place;
   *  for example a table made by an older version at priority -200): the same transaction recreates them. */
  async #baseChainRepairs(): Promise<NftCommand[]> {
    const repairs: NftCommand[] = []
    for (const name of [CHAIN_PREROUTING, CHAIN_POSTROUTING] as const) {
      const listed = await this.#kernel.chain(name)
      if (!listed || !baseChainProblems(name, listed.chain, listed.rules, this.#guardLog).recreate) continue
      repairs.push({ flush: { chain: { family: FAMILY, table: this.table, name } } }, { delete: { chain: { family: FAMILY, table: this.table, name } } })
    }
    return repairs
  }

  #readTable(): Promise<KernelTable> {
    return this.#kernel.listTable()
  }

  /** Another VM that had this tap is now detached (its dispatch entry was replaced). */
  #noteTakeover(vmId: string, tap: string): void {
    for (const [id, known] of this.#known) if (id !== vmId && known.compiled.tap === tap) known.attached = false
  }
}

/** The built-ins' counters of the guard's tap sets, one counter per element, into `stats`: the VM's own are
 *  those of its interfaces, per direction. */
function builtinCounters(stats: VmStats, counters: SetCounters | undefined, taps: Record<'out' | 'in', readonly string[]>): void {
  for (const [set, b] of BUILTIN_SETS) {
    for (const tap of taps[b.side]) {
      const c = counters?.get(set)?.get(tap)
      if (!c) continue
      const own = (stats.builtin[b.tag] ??= zeroCounters())
      countInto(b.verdict === 'drop' ? [own, stats.dropped] : [own], b.side, c)
    }
  }
}

/** Whether `commands` add anything to `table` (a chain added only to be flushed and deleted does not count):
 *  the table and its sets must then exist. */
function addsTo(commands: readonly NftCommand[], table: string): boolean {
  const body = (c: NftCommand) => Object.entries(c)[0] as [string, Record<string, { name?: string }>]
  const deleted = new Set(commands.flatMap((c) => { const [verb, b] = body(c); return verb === 'delete' && b.chain && commandTable(c) === table ? [b.chain.name] : [] }))
  return commands.some((c) => {
    const [verb, b] = body(c)
    return (verb === 'add' || verb === 'create') && commandTable(c) === table && !(b.chain && deleted.has(b.chain.name))
  })
}
