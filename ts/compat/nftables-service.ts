// `NftablesService`: Infinization's firewall API (method names, arguments, result shapes) implemented
// on the VmFirewall engine. The facade translates arguments and results and reads the kernel (small
// listings) to decide; every write is one VmFirewall call, i.e. one kernel transaction.
import type { Nft } from '../nft.js'
import type { VmFirewall } from '../firewall/vm-firewall.js'
import { VM_CHAIN_RE, generateVMChainName } from '../firewall/compile.js'
import type { FirewallCapabilities, FirewallDefaultAction, VmApplyResult, VmSpec } from '../firewall/model.js'
import { VMID_MAX, checkIfname, checkTableName, checkToken } from '../firewall/validate.js'
import { BASE_CHAIN_RE, INFINIZATION_TABLE_NAME, NFTABLES_MAIN_FILE, generateTapName } from './constants.js'
import { explicitOptions, joinContext, leaveContext, type Context, type Engine } from './engine.js'
import { NftablesError, NftablesErrorCode, conntrackUnavailable, toNftablesError } from './errors.js'
import { baseProblems, chainPresent, listChainNames, readVm, type VmKernelState } from './kernel-state.js'
import type { NftCommand } from '../schema.js'
import { writeRulesetFile, type PersistResult } from './persistence.js'
import {
  hasLegacy,
  isLegacyVm,
  legacyDefault,
  legacyDetachCommands,
  legacyLeftoverCommands,
  legacyRemovalCommands,
  legacyVm,
  readLegacy,
  type LegacyLayout,
  type LegacyVm,
} from './legacy.js'
import { notAppliedResult, screenRules, toApplyResult, wideningRefusals, type ScreenedRules } from './rules.js'
import type { BridgeConntrackMode, FirewallApplyResult, FirewallRuleInput, MigrationStatus, NftablesServiceConfig, ServiceVerifyResult } from './types.js'

type SpecWithoutTap = Omit<VmSpec, 'tap'>

/** Calls that compile a VM's chains (refused in bridgeConntrackMode 'fail' without bridge conntrack). */
const COMPILING = new Set(['createVMChain', 'applyRules', 'applyRulesIfChanged', 'flushVMRules', 'ensureVMChain', 'attachJumpRules'])

/** A VM's kernel state in both layouts: the new chains and dispatch, and its part of the old layout. */
interface VmState extends VmKernelState {
  layout: LegacyLayout
  legacy: LegacyVm
}

/** The interface a VM's traffic is dispatched from now through the new layout (undefined: not dispatched). */
const dispatchedTap = (st: VmKernelState): string | undefined => st.dispatch.from[0] ?? st.dispatch.to[0]
/** The interface the VM is filtered from now, in either layout (undefined: detached). */
const filteredTap = (st: VmState): string | undefined => dispatchedTap(st) ?? st.legacy.taps[0]
/** Nothing of the VM exists in either layout. */
const unknownVm = (st: VmState): boolean => !st.outExists && !st.inExists && !isLegacyVm(st.legacy)

function checkDefaultAction(a: unknown): FirewallDefaultAction {
  if (a !== 'accept' && a !== 'drop') {
    throw new NftablesError(NftablesErrorCode.INVALID_ARGUMENT, "defaultAction must be 'accept' or 'drop'", { field: 'defaultAction' })
  }
  return a
}

export class NftablesService {
  /** Bridge table the service works in. */
  readonly table: string
  /** Last automatic persistence failure (persistence never fails the operation itself). */
  lastPersistError: string | undefined

  readonly #nft: Nft | undefined
  readonly #netns: string | undefined
  readonly #given: ReturnType<typeof explicitOptions>
  #ctx: Context | undefined

  /**
   * Joins the configuration of its (namespace, table) in this process: options it passes are fixed for
   * every facade on the table (if not fixed already), options it leaves out take the table's values.
   * Throws INVALID_ARGUMENT for a bad option and CONFIG_CONFLICT for one that differs from the table's;
   * either way nothing changes.
   */
  constructor(config: NftablesServiceConfig = {}) {
    try {
      this.table = checkTableName(config.table ?? INFINIZATION_TABLE_NAME)
    } catch (e) {
      throw toNftablesError(e, 'constructor')
    }
    if (config.nft !== undefined && (config.nft === null || typeof config.nft !== 'object' || typeof config.nft.runJson !== 'function')) {
      throw new NftablesError(NftablesErrorCode.INVALID_ARGUMENT, 'nft must be an Nft instance', { command: 'constructor', field: 'nft' })
    }
    if (config.nft === undefined && config.netns !== undefined && (typeof config.netns !== 'string' || config.netns === '')) {
      throw new NftablesError(NftablesErrorCode.INVALID_ARGUMENT, 'netns must be a non-empty string', { command: 'constructor', field: 'netns' })
    }
    this.#nft = config.nft
    this.#netns = config.nft ? config.nft.options.netns : config.netns
    this.#given = explicitOptions(config)
    this.#ctx = joinContext(this.#netns, this.table, this.#given)
  }

  /** `fail` (refuse without bridge conntrack) or `degrade` (stateless): the table's, in this process. */
  get bridgeConntrackMode(): BridgeConntrackMode {
    return this.#context().get('bridgeConntrackMode')
  }

  /** Where changes are persisted (undefined: persistence off): the table's, in this process. */
  get persistencePath(): string | undefined {
    return this.#context().get('persistencePath')
  }

  /** The engine underneath (verify(), stats(), sync() …). */
  get firewall(): VmFirewall {
    return this.#eng().fw
  }

  /** The libnftables context underneath. */
  get nft(): Nft {
    return this.#eng().nft
  }

  // ---- Infinization's methods ----

  /**
   * Probes the kernel once and creates the table, dispatch maps and base chains (idempotent; VM chains
   * are kept). With `bridgeConntrackMode: 'fail'` and no bridge conntrack, throws CONNTRACK_UNAVAILABLE
   * before creating anything.
   */
  async initialize(): Promise<void> {
    await this.#guard('initialize', [], async () => {
      await this.#requireConntrack('initialize')
      const { nft, fw } = this.#eng()
      await fw.init()
      // The old layout (Infinization's CLI service, same table) keeps filtering its VMs until each moves
      // with its first apply; a `forward` chain with no old VM left is removed now.
      const leftover = legacyLeftoverCommands(this.table, await this.#legacyLayout())
      if (leftover.length > 0) await nft.runJson({ nftables: leftover })
    })
    await this.#persist()
  }

  /**
   * Makes sure the VM has its chains and dispatches `tapDeviceName` to them. A VM created here has only
   * its default action (drop) until applyRules: never an empty, fail-open chain. Returns the base chain name.
   */
  async createVMChain(vmId: string, tapDeviceName: string): Promise<string> {
    const base = await this.#vm('createVMChain', vmId, [tapDeviceName], (st) => this.#ensureAttached(vmId, tapDeviceName, st))
    await this.#persist()
    return base
  }

  /**
   * Replaces the VM's rules in one transaction: department + VM rules merged, then the default action.
   * Names are cleaned as Infinization did (control characters, over 255 bytes). A rule that still fails
   * validation is left out and reported in `failures` (with a code) and the rest applies, unless leaving
   * it out would widen access (a DROP/REJECT under default accept or ahead of an ACCEPT): then nothing
   * is applied, the VM keeps its previous rules (a VM without chains gets only its default drop) and the
   * result says `applied: false`. A VM whose chains are missing is created and attached to
   * `tapDeviceName`; a VM that is detached (stopped) stays detached.
   */
  async applyRules(
    vmId: string,
    tapDeviceName: string,
    departmentRules: FirewallRuleInput[],
    vmRules: FirewallRuleInput[],
    defaultAction: FirewallDefaultAction = 'drop',
  ): Promise<FirewallApplyResult> {
    let result!: FirewallApplyResult
    let wrote = true
    await this.#vm('applyRules', vmId, [tapDeviceName], async (st) => {
      checkIfname(tapDeviceName, 'tap', { vmId })
      const action = checkDefaultAction(defaultAction)
      const r = await this.#applyOrRefuse(vmId, tapDeviceName, screenRules(departmentRules, vmRules), action, st)
      result = r.result
      wrote = r.wrote
    })
    if (wrote) await this.#persist()
    return result
  }

  /**
   * applyRules, unless the kernel already holds exactly this policy for the VM (VmFirewall.verifyVm:
   * both chains compared rule by rule with what the engine would write, dispatch as it is now). A chain
   * deleted or edited behind the service's back, or a broken base chain, counts as changed. Rules that
   * fail validation always count as changed, as Infinization never cached a partial apply; an apply
   * refused as a whole (`result.applied: false`) reports `changed: false` unless it closed a new VM.
   */
  async applyRulesIfChanged(
    vmId: string,
    tapDeviceName: string,
    departmentRules: FirewallRuleInput[],
    vmRules: FirewallRuleInput[],
    defaultAction: FirewallDefaultAction = 'drop',
  ): Promise<{ changed: boolean; result?: FirewallApplyResult }> {
    let out!: { changed: boolean; result?: FirewallApplyResult }
    await this.#vm('applyRulesIfChanged', vmId, [tapDeviceName], async (st) => {
      checkIfname(tapDeviceName, 'tap', { vmId })
      const action = checkDefaultAction(defaultAction)
      const screened = screenRules(departmentRules, vmRules)
      const { nft, fw } = this.#eng()
      if (screened.failures.length === 0 && !isLegacyVm(st.legacy)) {
        const current = dispatchedTap(st)
        const drift = await fw.verifyVm({ ...(await this.#spec(vmId, action, screened)), tap: current ?? tapDeviceName }, { attach: current !== undefined })
        const problems = await baseProblems(nft, this.table)
        if (problems.length === 0 && drift.status === 'ok') {
          out = { changed: false }
          return
        }
        if (problems.length > 0) await fw.init()
      }
      const r = await this.#applyOrRefuse(vmId, tapDeviceName, screened, action, st)
      out = { changed: r.wrote, result: r.result }
    })
    if (out.changed) await this.#persist()
    return out
  }

  /** Deletes the VM's chains and dispatch entries in one transaction. Idempotent. */
  async removeVMChain(vmId: string): Promise<void> {
    await this.#vm('removeVMChain', vmId, [], async (st) => {
      await this.#eng().fw.removeVm(vmId)
      await this.#removeLegacy(st)
    })
    await this.#persist()
  }

  /**
   * removeVMChain by base chain name (`vm_` + 24 hex; the engine's `_o`/`_i` names are accepted too).
   * The VM id is read from the kernel (comment of the default rule); if it cannot be read (chains emptied
   * behind our back), both chains and their dispatch entries are deleted by name. One transaction either
   * way; idempotent. A VM still on the old layout loses its old chain and jumps too (a second transaction).
   */
  async removeVMChainByName(chainName: string): Promise<void> {
    const base = typeof chainName === 'string' && VM_CHAIN_RE.test(chainName) ? chainName.slice(0, -2) : chainName
    if (typeof base !== 'string' || !BASE_CHAIN_RE.test(base)) {
      throw new NftablesError(NftablesErrorCode.INVALID_ARGUMENT, `not a VM chain name: ${JSON.stringify(chainName)} (expected vm_ + 24 hex)`, {
        command: 'removeVMChainByName',
        args: [String(chainName)],
        field: 'chainName',
      })
    }
    await this.#guard('removeVMChainByName', [chainName], () =>
      this.#context().lock.run(base, async () => {
        const { fw } = this.#eng()
        const st = await this.#readState(base)
        if (st.outExists || st.inExists || st.dispatch.from.length > 0 || st.dispatch.to.length > 0) {
          if (st.vmId !== undefined && generateVMChainName(st.vmId) === base) await fw.removeVm(st.vmId)
          else await fw.removeVmByChain(base)
        }
        await this.#removeLegacy(st)
      }),
    )
    await this.#persist()
  }

  /**
   * Removes the VM's rules, leaving its default action (the one in force, drop if unreadable) and the
   * builtins (ARP, NDP, DHCP client). Never fails open. Dispatch is unchanged. No-op for an unknown VM.
   * A VM on the old layout moves to the new one (its old default action, its TAP) in one transaction.
   */
  async flushVMRules(vmId: string): Promise<void> {
    await this.#vm('flushVMRules', vmId, [], async (st) => {
      if (unknownVm(st)) return
      const action = st.defaultAction ?? (st.legacy.exists ? await legacyDefault(this.#eng().nft, this.table, st.legacy.chain) : undefined) ?? 'drop'
      await this.#applyKeepingDispatch(vmId, await this.#spec(vmId, action), st)
    })
    await this.#persist()
  }

  /** Chains of the table; each VM appears once, by its base name (`vm_` + 24 hex), whichever layout it is
   *  on (the old layout's `forward` chain is listed while it exists). [] without the table. */
  async listChains(): Promise<string[]> {
    return this.#guard('listChains', [], async () => {
      const names = await listChainNames(this.#eng().nft, this.table)
      return [...new Set(names.map((n) => (VM_CHAIN_RE.test(n) ? n.slice(0, -2) : n)))]
    })
  }

  /** Whether a chain exists; for a VM base name, whether both of the VM's chains exist (or its chain of
   *  the old layout, which is that exact name). */
  async chainExists(chainName: string): Promise<boolean> {
    if (typeof chainName !== 'string' || chainName.length === 0 || chainName.length > 255 || chainName.includes('\0')) return false
    return this.#guard('chainExists', [chainName], async () => {
      const nft = this.#eng().nft
      if (!BASE_CHAIN_RE.test(chainName)) return chainPresent(nft, this.table, chainName)
      if ((await chainPresent(nft, this.table, `${chainName}_o`)) && (await chainPresent(nft, this.table, `${chainName}_i`))) return true
      return chainPresent(nft, this.table, chainName)
    })
  }

  /**
   * Makes sure the VM's chains exist, without touching dispatch. Chains created here hold only the
   * default action (drop): a VM attached before its rules are applied is closed, not open. A VM on the
   * old layout keeps it (its old chain goes on filtering) until its first apply.
   */
  async ensureVMChain(vmId: string): Promise<string> {
    const base = await this.#vm('ensureVMChain', vmId, [], async (st) => {
      if (st.outExists && st.inExists) return
      const spec = await this.#spec(vmId, st.defaultAction ?? 'drop')
      if (isLegacyVm(st.legacy) && dispatchedTap(st) === undefined) {
        await this.#eng().fw.applyVm({ ...spec, tap: generateTapName(vmId) }, { attach: false })
        return
      }
      await this.#applyKeepingDispatch(vmId, spec, st)
    })
    await this.#persist()
    return base
  }

  /** Dispatches `tapDeviceName` to the VM's chains (VM start). Exactly one entry per direction and TAP. */
  async attachJumpRules(vmId: string, tapDeviceName: string): Promise<void> {
    await this.#vm('attachJumpRules', vmId, [tapDeviceName], (st) => this.#ensureAttached(vmId, tapDeviceName, st))
    await this.#persist()
  }

  /** Stops dispatching the VM's traffic (VM stop); chains and rules are kept. Idempotent. On the old
   *  layout, its jumps are deleted and its chain kept (as Infinization did). */
  async detachJumpRules(vmId: string): Promise<void> {
    await this.#vm('detachJumpRules', vmId, [], async (st) => {
      await this.#eng().fw.detachVm(vmId)
      const cmds = legacyDetachCommands(this.table, st.legacy)
      if (cmds.length > 0) await this.#eng().nft.runJson({ nftables: cmds })
    })
    await this.#persist()
  }

  /** Kept for compatibility: there is no cache to clear, decisions are taken against the kernel. */
  clearRulesCache(_vmId: string): void {}

  // ---- additions ----

  /**
   * Where the in-place upgrade from Infinization's old layout stands: the VMs still filtered by their
   * old chain (each moves with its first apply through this service), and what is left of `forward`.
   */
  async migrationStatus(): Promise<MigrationStatus> {
    return this.#guard('migrationStatus', [], async () => {
      const l = await this.#legacyLayout()
      const names = new Set([...l.chains, ...l.jumps.map((j) => j.chain)])
      const vms = await Promise.all(
        [...names].sort().map(async (chain) => {
          const v = legacyVm(l, chain)
          const defaultAction = v.exists ? await legacyDefault(this.#eng().nft, this.table, chain) : undefined
          return { chainName: chain, chainExists: v.exists, taps: v.taps, attached: v.taps.length > 0, ...(defaultAction ? { defaultAction } : {}) }
        }),
      )
      return {
        complete: !hasLegacy(l),
        forwardChain: l.forward,
        dhcpRules: l.dhcp.length,
        foreignRules: l.other.length,
        legacyVms: vms,
      }
    })
  }

  /**
   * Health of the table as the facade sees it: the base chains and dispatch rules, and every part of the
   * old layout still filtering (old VM chains, their jumps, `forward`). `ok` only when nothing is left.
   */
  async verify(): Promise<ServiceVerifyResult> {
    return this.#guard('verify', [], async () => {
      const problems = await baseProblems(this.#eng().nft, this.table)
      const migration = await this.migrationStatus()
      for (const vm of migration.legacyVms) {
        problems.push(
          `old-layout VM chain ${vm.chainName}${vm.chainExists ? '' : ' (missing)'} ${vm.attached ? `filters ${vm.taps.join(', ')} from forward` : 'is detached'}: not migrated yet`,
        )
      }
      if (migration.forwardChain && migration.legacyVms.length === 0) problems.push('old-layout base chain forward is still present')
      return { ok: problems.length === 0, problems, migration }
    })
  }

  /** Kernel features (probed once). */
  async capabilities(): Promise<FirewallCapabilities> {
    return this.#guard('capabilities', [], () => this.#eng().fw.capabilities())
  }

  /** An idempotent nft script recreating the table (for `nft -f` at boot or restoreRuleset()). */
  async exportRuleset(): Promise<string> {
    return this.#guard('exportRuleset', [], () => this.#eng().fw.exportRuleset(), NftablesErrorCode.TABLE_NOT_FOUND)
  }

  /** Applies an exportRuleset() script in one transaction. */
  async restoreRuleset(text: string): Promise<void> {
    await this.#guard('restoreRuleset', [], () => this.#eng().fw.restoreRuleset(text))
    await this.#persist()
  }

  /** Writes exportRuleset() to `filePath` (default: persistencePath, else Infinization's file) now. */
  async forcePersist(filePath: string = this.persistencePath ?? NFTABLES_MAIN_FILE): Promise<PersistResult> {
    try {
      return await writeRulesetFile(filePath, await this.exportRuleset())
    } catch (e) {
      return { success: false, filePath, error: e instanceof Error ? e.message : String(e) }
    }
  }

  /**
   * Leaves the table's configuration: the last facade of a (namespace, table) to close releases the
   * shared libnftables context and forgets the options. Using the facade again joins again.
   */
  close(): void {
    if (this.#ctx) leaveContext(this.#ctx)
    this.#ctx = undefined
  }

  // ---- internals ----

  #context(): Context {
    this.#ctx ??= joinContext(this.#netns, this.table, this.#given)
    return this.#ctx
  }

  #eng(): Engine {
    try {
      return this.#context().engine(this.#nft)
    } catch (e) {
      throw toNftablesError(e, 'constructor')
    }
  }

  /** bridgeConntrackMode 'fail' on a kernel without bridge conntrack: refuse before writing anything. */
  async #requireConntrack(command: string): Promise<void> {
    if (this.bridgeConntrackMode !== 'fail') return
    if (!(await this.#eng().fw.capabilities()).bridgeConntrack) throw conntrackUnavailable(command)
  }

  async #guard<T>(command: string, args: string[], fn: () => Promise<T>, notFound?: NftablesErrorCode): Promise<T> {
    try {
      return await fn()
    } catch (e) {
      throw toNftablesError(e, command, args, notFound)
    }
  }

  /** Validates vmId, takes the VM's lock, reads its kernel state, runs `fn`; returns the base chain name. */
  async #vm(command: string, vmId: string, args: string[], fn: (st: VmState) => Promise<void>): Promise<string> {
    return this.#guard(
      command,
      [String(vmId), ...args],
      async () => {
        checkToken(vmId, 'vmId', VMID_MAX, {})
        const base = generateVMChainName(vmId)
        if (COMPILING.has(command)) await this.#requireConntrack(command)
        await this.#context().lock.run(base, async () => fn(await this.#readState(base)))
        return base
      },
      NftablesErrorCode.CHAIN_NOT_FOUND,
    )
  }

  /** What the engine gets for a VM: rules, default action, DHCP, and the identity from `vmIdentity`. */
  async #spec(vmId: string, defaultAction: FirewallDefaultAction, screened?: ScreenedRules): Promise<SpecWithoutTap> {
    const lookup = this.#context().get('vmIdentity')
    const identity = lookup ? await lookup(vmId) : undefined
    return {
      ...(identity ?? {}),
      vmId,
      departmentRules: screened?.departmentRules ?? [],
      rules: screened?.rules ?? [],
      defaultAction,
      dhcp: this.#context().get('dhcp'),
    }
  }

  /**
   * #apply, unless a refused rule's absence would widen access (wideningRefusals): then the VM keeps its
   * previous chains untouched (no write), or, having none, gets only its closed default (drop) and the
   * usual dispatch, and the result says `applied: false`.
   */
  async #applyOrRefuse(
    vmId: string,
    tap: string,
    screened: ScreenedRules,
    defaultAction: FirewallDefaultAction,
    st: VmState,
  ): Promise<{ result: FirewallApplyResult; wrote: boolean }> {
    const widening = wideningRefusals(screened, defaultAction)
    if (widening.length === 0) return { result: await this.#apply(vmId, tap, screened, defaultAction, st), wrote: true }
    const base = generateVMChainName(vmId)
    if (!unknownVm(st)) return { result: notAppliedResult(screened, widening, base, filteredTap(st) !== undefined, 'previous'), wrote: false }
    const closed: ScreenedRules = { departmentRules: [], rules: [], failures: [], refused: [] }
    await this.#apply(vmId, tap, closed, 'drop', st)
    return { result: notAppliedResult(screened, widening, base, true, 'closed'), wrote: true }
  }

  async #apply(vmId: string, tap: string, screened: ScreenedRules, defaultAction: FirewallDefaultAction, st: VmState): Promise<FirewallApplyResult> {
    const spec = await this.#spec(vmId, defaultAction, screened)
    // New VM (Infinization created and attached it here too) or a running one, in either layout: dispatch
    // (moved to `tap` if it pointed elsewhere). A stopped (detached) VM stays detached. One transaction,
    // which also deletes the VM's part of the old layout: the new chains take over atomically.
    const attached = unknownVm(st) || filteredTap(st) !== undefined
    const details: VmApplyResult = await this.#eng().fw.applyVm({ ...spec, tap }, { attach: attached, also: this.#legacyRemoval(st) })
    return toApplyResult(details, screened, generateVMChainName(vmId), tap, attached)
  }

  /** Rewrites a VM's chains without changing whether (and from which TAP) it is dispatched. */
  async #applyKeepingDispatch(vmId: string, spec: SpecWithoutTap, st: VmState): Promise<void> {
    const current = filteredTap(st)
    const also = this.#legacyRemoval(st)
    if (current !== undefined) await this.#eng().fw.applyVm({ ...spec, tap: current }, { also })
    else await this.#eng().fw.applyVm({ ...spec, tap: generateTapName(vmId) }, { attach: false, also })
  }

  async #ensureAttached(vmId: string, tap: string, st: VmState): Promise<void> {
    checkIfname(tap, 'tap', { vmId })
    const { fw } = this.#eng()
    if (isLegacyVm(st.legacy)) {
      // Still filtered by its old chain from this very TAP (both directions): left as it is, so its previous
      // policy stays in force until its first apply moves it. Otherwise it moves now, closed (default drop).
      const both = (['iifname', 'oifname'] as const).every((k) => st.legacy.jumps.some((j) => j.key === k && j.tap === tap))
      if (both && st.legacy.exists && dispatchedTap(st) === undefined) return
      const spec = await this.#spec(vmId, st.defaultAction ?? 'drop')
      await fw.applyVm({ ...spec, tap }, { also: this.#legacyRemoval(st) })
      return
    }
    if (st.outExists && st.inExists) await fw.attachVm(vmId, tap)
    else await fw.applyVm({ ...(await this.#spec(vmId, st.defaultAction ?? 'drop')), tap })
  }

  /** The old layout in the table, all of it. */
  async #legacyLayout(vmChain?: string): Promise<LegacyLayout> {
    const nft = this.#eng().nft
    return readLegacy(nft, this.table, { ...(vmChain !== undefined ? { vmChain } : {}), chainNames: () => listChainNames(nft, this.table) })
  }

  /** One VM in both layouts. Without `forward` and without the VM's old chain: two small listings more. */
  async #readState(base: string): Promise<VmState> {
    const st = await readVm(this.#eng().nft, this.table, base)
    const layout = await this.#legacyLayout(base)
    return { ...st, layout, legacy: legacyVm(layout, base) }
  }

  #legacyRemoval(st: VmState): NftCommand[] {
    return isLegacyVm(st.legacy) ? legacyRemovalCommands(this.table, st.layout, st.legacy) : []
  }

  /** Deletes the VM's part of the old layout on its own (the VM is being removed). */
  async #removeLegacy(st: VmState): Promise<void> {
    const cmds = this.#legacyRemoval(st)
    if (cmds.length > 0) await this.#eng().nft.runJson({ nftables: cmds })
  }

  async #persist(): Promise<void> {
    const path = this.persistencePath
    if (path === undefined) return
    const r = await this.forcePersist(path)
    this.lastPersistError = r.success ? undefined : r.error
  }
}
