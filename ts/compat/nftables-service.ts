// `NftablesService`: Infinization's firewall API (method names, arguments, result shapes) implemented
// on the VmFirewall engine. The facade only translates: arguments into VmSpecs and engine options, the
// engine's results and errors (by class and code) into Infinization's, and persists. Decisions that depend on
// the kernel (is the VM new, running, stopped, still on the old layout?) are taken by `prepare` callbacks in
// the VM's turn of the engine's scheduler, from the engine's view of the table: on the hot path nothing is
// listed and every write is one VmFirewall call, i.e. one kernel transaction.
import type { Nft } from '../nft.js'
import type { NftCommand } from '../schema.js'
import type { AlsoCommands, ApplyDecision, VmFirewall, VmState } from '../firewall/vm-firewall.js'
import { FirewallError } from '../firewall/errors.js'
import { VM_CHAIN_RE, generateVMChainName } from '../firewall/compile.js'
import type { FirewallCapabilities, FirewallDefaultAction, VmApplyResult, VmSpec } from '../firewall/model.js'
import { VMID_MAX, checkIfname, checkTableName, checkToken } from '../firewall/validate.js'
import { BASE_CHAIN_RE, INFINIZATION_TABLE_NAME, NFTABLES_MAIN_FILE, generateTapName } from './constants.js'
import { explicitOptions, joinContext, leaveContext, type Context, type Engine, type FirewallReader } from './engine.js'
import { NftablesError, NftablesErrorCode, conntrackUnavailable, toNftablesError } from './errors.js'
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

/** A VM as the facade decides on it, in the VM's turn: the engine's state plus its part of the old layout. */
interface Turn {
  /** The VM exists in either layout. */
  known: boolean
  /** The interface it is filtered from now, in either layout (undefined: detached or new). */
  filtered: string | undefined
  /** The interface its new-layout chains are dispatched from now. */
  dispatched: string | undefined
  legacy?: { layout: LegacyLayout; vm: LegacyVm }
  /** Commands deleting its part of the old layout (run with the write that takes over its filtering). */
  legacyRemoval: NftCommand[]
}

const CLOSED: ScreenedRules = { departmentRules: [], rules: [], failures: [], refused: [] }

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

  /** The engine's reads (verify(), verifyVm(), stats(), inventory(), exportRuleset() …), read-only: every
   *  write goes through the facade's methods, so through the engine's one scheduler. */
  get firewall(): FirewallReader {
    return this.#eng().reader
  }

  /** The libnftables context underneath (for reads; a write through it is another writer to the engine,
   *  which sees it through the ruleset generation and re-reads). */
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
      const fw = this.#fw()
      await fw.init()
      // The old layout (Infinization's CLI service, same table) keeps filtering its VMs until each moves
      // with its first apply; a `forward` chain with no old VM left is removed now.
      await fw.commit(async () => legacyLeftoverCommands(this.table, await this.#legacyLayout()))
    })
    await this.#persist()
  }

  /**
   * Makes sure the VM has its chains and dispatches `tapDeviceName` to them. A VM created here has only
   * its default action (drop) until applyRules: never an empty, fail-open chain. Returns the base chain name.
   */
  async createVMChain(vmId: string, tapDeviceName: string): Promise<string> {
    const base = await this.#vm('createVMChain', vmId, [tapDeviceName], () => this.#ensureAttached(vmId, tapDeviceName))
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
    await this.#vm('applyRules', vmId, [tapDeviceName], async () => {
      checkIfname(tapDeviceName, 'tap', { vmId })
      const action = checkDefaultAction(defaultAction)
      const r = await this.#applyOrRefuse(vmId, tapDeviceName, screenRules(departmentRules, vmRules), action)
      result = r.result
      wrote = r.wrote
    })
    if (wrote) await this.#persist()
    return result
  }

  /**
   * applyRules, unless the kernel already holds exactly this policy for the VM (VmFirewall.applyVmIfChanged:
   * both chains compared rule by rule with what the engine would write, the dispatch applyRules would leave,
   * and the base chains; nothing listed while the ruleset generation has not moved since the VM was last
   * found so). A chain deleted or edited behind the service's back, or a broken base chain, counts as
   * changed (the generation moved). Rules that fail validation always count as changed, as Infinization
   * never cached a partial apply; an apply refused as a whole (`result.applied: false`) reports
   * `changed: false` unless it closed a new VM.
   */
  async applyRulesIfChanged(
    vmId: string,
    tapDeviceName: string,
    departmentRules: FirewallRuleInput[],
    vmRules: FirewallRuleInput[],
    defaultAction: FirewallDefaultAction = 'drop',
  ): Promise<{ changed: boolean; result?: FirewallApplyResult }> {
    let out!: { changed: boolean; result?: FirewallApplyResult }
    await this.#vm('applyRulesIfChanged', vmId, [tapDeviceName], async () => {
      checkIfname(tapDeviceName, 'tap', { vmId })
      const action = checkDefaultAction(defaultAction)
      const screened = screenRules(departmentRules, vmRules)
      if (screened.failures.length > 0) {
        const r = await this.#applyOrRefuse(vmId, tapDeviceName, screened, action)
        out = { changed: r.wrote, result: r.result }
        return
      }
      let attached = true
      const r = await this.#fw().applyVmIfChanged(
        { ...(await this.#spec(vmId, action, screened)), tap: tapDeviceName },
        {
          checkTable: true,
          prepare: async (st) => {
            const t = await this.#turn(st)
            attached = !t.known || t.filtered !== undefined
            // A VM still on the old layout always moves (its old chain must go, even if the new one matches).
            return { attach: attached, also: t.legacyRemoval, force: t.legacy !== undefined }
          },
        },
      )
      out = r.changed ? { changed: true, result: toApplyResult(r.result, screened, generateVMChainName(vmId), tapDeviceName, attached) } : { changed: false }
    })
    if (out.changed) await this.#persist()
    return out
  }

  /** Deletes the VM's chains and dispatch entries in one transaction (its part of the old layout too). Idempotent. */
  async removeVMChain(vmId: string): Promise<void> {
    await this.#vm('removeVMChain', vmId, [], async () => {
      await this.#fw().removeVm(vmId, { also: this.#legacyRemoval(generateVMChainName(vmId)) })
    })
    await this.#persist()
  }

  /**
   * removeVMChain by base chain name (`vm_` + 24 hex; the engine's `_o`/`_i` names are accepted too):
   * both chains and their dispatch entries are deleted by name, in one transaction; idempotent. A VM still
   * on the old layout loses its old chain and jumps too (in the same transaction).
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
    await this.#guard('removeVMChainByName', [chainName], async () => {
      await this.#fw().removeVmByChain(base, { also: this.#legacyRemoval(base) })
    })
    await this.#persist()
  }

  /**
   * Removes the VM's rules, leaving its default action (the one in force, drop if unreadable) and the
   * builtins (ARP, NDP, DHCP client). Never fails open. Dispatch is unchanged. No-op for an unknown VM.
   * A VM on the old layout moves to the new one (its old default action, its TAP) in one transaction.
   */
  async flushVMRules(vmId: string): Promise<void> {
    await this.#vm('flushVMRules', vmId, [], () =>
      this.#rewrite(vmId, async (st, t) => {
        if (!t.known) return { skip: true }
        const legacyAction = t.legacy?.vm.exists ? await legacyDefault(this.#eng().nft, this.table, t.legacy.vm.chain) : undefined
        return this.#keeping(vmId, t, (await st.defaultAction()) ?? legacyAction ?? 'drop')
      }),
    )
    await this.#persist()
  }

  /** Chains of the table; each VM appears once, by its base name (`vm_` + 24 hex), whichever layout it is
   *  on (the old layout's `forward` chain is listed while it exists; a VM of the exact table, which has no
   *  chains, too). [] without the table. */
  async listChains(): Promise<string[]> {
    return this.#guard('listChains', [], async () => {
      const names = await this.#fw().chainNames()
      const exact = (await this.#fw().exactVms()).map(generateVMChainName)
      return [...new Set([...names.map((n) => (VM_CHAIN_RE.test(n) ? n.slice(0, -2) : n)), ...exact])]
    })
  }

  /** Whether a chain exists; for a VM base name, whether both of the VM's chains exist (or its chain of
   *  the old layout, which is that exact name), or the exact table holds the VM. */
  async chainExists(chainName: string): Promise<boolean> {
    if (typeof chainName !== 'string' || chainName.length === 0 || chainName.length > 255 || chainName.includes('\0')) return false
    return this.#guard('chainExists', [chainName], async () => {
      const names = new Set(await this.#fw().chainNames())
      if (BASE_CHAIN_RE.test(chainName) && names.has(`${chainName}_o`) && names.has(`${chainName}_i`)) return true
      if (names.has(chainName)) return true
      return BASE_CHAIN_RE.test(chainName) && (await this.#fw().exactVms()).some((vmId) => generateVMChainName(vmId) === chainName)
    })
  }

  /**
   * Makes sure the VM's chains exist, without touching dispatch. Chains created here hold only the
   * default action (drop): a VM attached before its rules are applied is closed, not open. A VM on the
   * old layout keeps it (its old chain goes on filtering) until its first apply.
   */
  async ensureVMChain(vmId: string): Promise<string> {
    const base = await this.#vm('ensureVMChain', vmId, [], () =>
      this.#rewrite(vmId, async (st, t) => {
        // A VM of the exact table has no chains to make: its policy is in force as elements.
        if ((st.outExists && st.inExists) || st.exactTap !== undefined) return { skip: true }
        const action = (await st.defaultAction()) ?? 'drop'
        // Still filtered by its old chain alone: the new chains are written beside it, undispatched.
        if (t.legacy && t.dispatched === undefined) return { spec: { ...(await this.#spec(vmId, action)), tap: generateTapName(vmId) }, attach: false, create: true }
        return { ...(await this.#keeping(vmId, t, action)), create: true }
      }),
    )
    await this.#persist()
    return base
  }

  /** Dispatches `tapDeviceName` to the VM's chains (VM start). Exactly one entry per direction and TAP. */
  async attachJumpRules(vmId: string, tapDeviceName: string): Promise<void> {
    await this.#vm('attachJumpRules', vmId, [tapDeviceName], () => this.#ensureAttached(vmId, tapDeviceName))
    await this.#persist()
  }

  /** Stops dispatching the VM's traffic (VM stop); chains and rules are kept. Idempotent. On the old
   *  layout, its jumps are deleted and its chain kept (as Infinization did). */
  async detachJumpRules(vmId: string): Promise<void> {
    await this.#vm('detachJumpRules', vmId, [], async () => {
      const base = generateVMChainName(vmId)
      // One transaction, decided from one view: its dispatch entries, and on the old layout its jumps.
      await this.#fw().detachVm(vmId, {
        also: async (table) => {
          const legacy = await this.#legacyOf(base, table)
          return legacy ? legacyDetachCommands(this.table, legacy.vm) : []
        },
      })
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
   * Health of the table as the facade sees it: the base chains and dispatch rules (with `exactTable`, the
   * exact table's shape too), and every part of the old layout still filtering (old VM chains, their jumps,
   * `forward`). `ok` only when nothing is left.
   */
  async verify(): Promise<ServiceVerifyResult> {
    return this.#guard('verify', [], async () => {
      const problems = await this.#fw().tableProblems()
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
    return this.#guard('capabilities', [], () => this.#fw().capabilities())
  }

  /** An idempotent nft script recreating the table (for `nft -f` at boot or restoreRuleset()). */
  async exportRuleset(): Promise<string> {
    return this.#guard('exportRuleset', [], () => this.#fw().exportRuleset(), NftablesErrorCode.TABLE_NOT_FOUND)
  }

  /** Applies an exportRuleset() script in one transaction. */
  async restoreRuleset(text: string): Promise<void> {
    await this.#guard('restoreRuleset', [], () => this.#fw().restoreRuleset(text))
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

  #fw(): VmFirewall {
    return this.#eng().fw
  }

  /** bridgeConntrackMode 'fail' on a kernel without bridge conntrack: refuse before writing anything. */
  async #requireConntrack(command: string): Promise<void> {
    if (this.bridgeConntrackMode !== 'fail') return
    if (!(await this.#fw().capabilities()).bridgeConntrack) throw conntrackUnavailable(command)
  }

  async #guard<T>(command: string, args: string[], fn: () => Promise<T>, notFound?: NftablesErrorCode): Promise<T> {
    try {
      return await fn()
    } catch (e) {
      throw toNftablesError(e, command, args, notFound)
    }
  }

  /** Validates vmId, checks the conntrack mode, runs `fn` (translating its errors); returns the base chain name. */
  async #vm(command: string, vmId: string, args: string[], fn: () => Promise<void>): Promise<string> {
    return this.#guard(
      command,
      [String(vmId), ...args],
      async () => {
        checkToken(vmId, 'vmId', VMID_MAX, {})
        if (COMPILING.has(command)) await this.#requireConntrack(command)
        await fn()
        return generateVMChainName(vmId)
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

  /** The VM in its turn: the engine's state (no listing while the view is current) and, only when its old
   *  chain exists, its part of the old layout (listed: the upgrade path). */
  async #turn(st: VmState): Promise<Turn> {
    const legacy = await this.#legacyOf(st.chains.out.slice(0, -2), st)
    // A VM of the exact table (option exactTable) is dispatched from the tap its elements are keyed by.
    const dispatched = st.dispatch.from[0] ?? st.dispatch.to[0] ?? st.exactTap
    return {
      known: st.outExists || st.inExists || st.exactTap !== undefined || legacy !== undefined,
      filtered: dispatched ?? legacy?.vm.taps[0],
      dispatched,
      ...(legacy ? { legacy } : {}),
      legacyRemoval: legacy ? legacyRemovalCommands(this.table, legacy.layout, legacy.vm) : [],
    }
  }

  /** The VM's part of the old layout, when its old chain (`vm_` + 24 hex, no suffix) exists. */
  async #legacyOf(base: string, st: Pick<VmState, 'hasChain'>): Promise<Turn['legacy']> {
    if (!st.hasChain(base)) return undefined
    const layout = await this.#legacyLayout(base)
    const vm = legacyVm(layout, base)
    return isLegacyVm(vm) ? { layout, vm } : undefined
  }

  /**
   * #apply, unless a refused rule's absence would widen access (wideningRefusals): then the VM keeps its
   * previous chains untouched (no write), or, having none, gets only its closed default (drop) and the
   * usual dispatch, and the result says `applied: false`.
   */
  async #applyOrRefuse(vmId: string, tap: string, screened: ScreenedRules, defaultAction: FirewallDefaultAction): Promise<{ result: FirewallApplyResult; wrote: boolean }> {
    const widening = wideningRefusals(screened, defaultAction)
    if (widening.length === 0) return { result: await this.#apply(vmId, tap, screened, defaultAction), wrote: true }
    let known = false
    let attached = true
    await this.#apply(vmId, tap, CLOSED, 'drop', (t) => {
      known = t.known
      attached = t.filtered !== undefined
      // A new VM is closed, never over a policy another writer put in place meanwhile (create, re-decided).
      return known ? { skip: true } : { attach: true, create: true }
    })
    const base = generateVMChainName(vmId)
    if (known) return { result: notAppliedResult(screened, widening, base, attached, 'previous'), wrote: false }
    return { result: notAppliedResult(screened, widening, base, true, 'closed'), wrote: true }
  }

  /**
   * One applyVm. New VM (Infinization created and attached it here too) or a running one, in either layout:
   * dispatched (moved to `tap` if it pointed elsewhere). A stopped (detached) VM stays detached. One
   * transaction, which also deletes the VM's part of the old layout: the new chains take over atomically.
   */
  async #apply(
    vmId: string,
    tap: string,
    screened: ScreenedRules,
    defaultAction: FirewallDefaultAction,
    override?: (t: Turn) => ApplyDecision | undefined,
  ): Promise<FirewallApplyResult> {
    let attached = true
    const details: VmApplyResult = await this.#fw().applyVm(
      { ...(await this.#spec(vmId, defaultAction, screened)), tap },
      {
        prepare: async (st) => {
          const t = await this.#turn(st)
          const o = override?.(t)
          if (o) return o
          attached = !t.known || t.filtered !== undefined
          return { attach: attached, also: t.legacyRemoval }
        },
      },
    )
    return toApplyResult(details, screened, generateVMChainName(vmId), tap, attached)
  }

  /** One applyVm whose spec and dispatch `decide` chooses in the VM's turn. */
  async #rewrite(vmId: string, decide: (st: VmState, t: Turn) => Promise<ApplyDecision>): Promise<void> {
    await this.#fw().applyVm(
      { ...(await this.#spec(vmId, 'drop')), tap: generateTapName(vmId) },
      { prepare: async (st) => decide(st, await this.#turn(st)) },
    )
  }

  /** Rewrites a VM's chains (default `action`, no rules) without changing whether, and from which TAP, it
   *  is filtered; a VM on the old layout moves to the new one with it. */
  async #keeping(vmId: string, t: Turn, action: FirewallDefaultAction): Promise<ApplyDecision> {
    const spec = await this.#spec(vmId, action)
    if (!t.legacy) return { spec: { ...spec, tap: generateTapName(vmId) }, attach: 'keep' }
    if (t.filtered !== undefined) return { spec: { ...spec, tap: t.filtered }, attach: true, also: t.legacyRemoval }
    return { spec: { ...spec, tap: generateTapName(vmId) }, attach: false, also: t.legacyRemoval }
  }

  async #ensureAttached(vmId: string, tap: string, retried = false): Promise<void> {
    checkIfname(tap, 'tap', { vmId })
    let existing = false
    await this.#rewrite(vmId, async (st, t) => {
      const action = async () => (await st.defaultAction()) ?? 'drop'
      if (t.legacy) {
        // Still filtered by its old chain from this very TAP (both directions): left as it is, so its previous
        // policy stays in force until its first apply moves it. Otherwise it moves now, closed (default drop).
        const both = (['iifname', 'oifname'] as const).every((k) => t.legacy!.vm.jumps.some((j) => j.key === k && j.tap === tap))
        if (both && t.legacy.vm.exists && t.dispatched === undefined) return { skip: true }
        return { spec: { ...(await this.#spec(vmId, await action())), tap }, attach: true, also: t.legacyRemoval }
      }
      // In the exact table at this tap already: its policy is in force (nothing to write).
      if (st.exactTap === tap) return { skip: true }
      if ((st.outExists && st.inExists) || st.exactTap !== undefined) {
        existing = true
        return { skip: true }
      }
      // Created closed: `create` fails if another writer made the VM meanwhile, and this turn is decided again.
      return { spec: { ...(await this.#spec(vmId, await action())), tap }, attach: true, create: true }
    })
    if (!existing) return
    try {
      // The guard needs its identity (issue 15): from `vmIdentity`, as an apply would take it.
      await this.#fw().attachVm(vmId, tap, { identity: await this.#spec(vmId, 'drop') }) // nothing to write when already so
    } catch (e) {
      // Its chains vanished since its turn: create it closed, as for a new VM.
      if (retried || !(e instanceof FirewallError && e.code === 'VM_NOT_FOUND')) throw e
      await this.#ensureAttached(vmId, tap, true)
    }
  }

  /** The old layout in the table, all of it (chain names from the engine's view). */
  async #legacyLayout(vmChain?: string): Promise<LegacyLayout> {
    return readLegacy(this.#eng().nft, this.table, { ...(vmChain !== undefined ? { vmChain } : {}), chainNames: () => this.#fw().chainNames() })
  }

  /** The commands that delete a VM's part of the old layout (its chain and jumps), for its removal's transaction. */
  #legacyRemoval(base: string): AlsoCommands {
    return async (table) => {
      const legacy = await this.#legacyOf(base, table)
      return legacy ? legacyRemovalCommands(this.table, legacy.layout, legacy.vm) : []
    }
  }

  async #persist(): Promise<void> {
    const path = this.persistencePath
    if (path === undefined) return
    const r = await this.forcePersist(path)
    this.lastPersistError = r.success ? undefined : r.error
  }
}
