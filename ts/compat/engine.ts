// One configuration and one engine per process, namespace and table, as Infinization had (its mode, probe
// and lock were static): Infinization passes its options to one `new NftablesService({...})`, while
// VMLifecycle, HealthMonitor and EventHandler build bare `new NftablesService()` instances that must
// behave the same. Every facade on a (namespace, table) joins one `Context`: the options and (for facades
// without their own `nft`) one Nft + VmFirewall, so one scheduler per table: the engine's scheduler is the
// only lock (the facade decides in the VM's turn, through ApplyOptions.prepare, never under a lock of its own).
//
// Options are fixed by the first facade that passes them; facades that leave an option out use the
// table's value, whenever they are created (before or after); a facade that passes a *different* value
// is refused with CONFIG_CONFLICT and changes nothing. The context lives while one facade is open.
import { Nft } from '../nft.js'
import { VmFirewall } from '../firewall/vm-firewall.js'
import { CONNTRACK_MODE_ENV, NFTABLES_MAIN_FILE } from './constants.js'
import { NftablesError, NftablesErrorCode } from './errors.js'
import type { BridgeConntrackMode, NftablesServiceConfig, VmIdentity } from './types.js'

/** The options that describe the table, hence shared by every facade on it. */
export interface SharedOptions {
  bridgeConntrackMode: BridgeConntrackMode
  dhcp: boolean
  /** undefined: persistence off. */
  persistencePath: string | undefined
  vmIdentity: NftablesServiceConfig['vmIdentity']
  /** The engine's exactTable option (fixed once an engine exists). */
  exactTable: boolean
}
type Key = keyof SharedOptions

/** What `NftablesService.firewall` exposes of the engine: its reads only (every write goes through the
 *  facade, so through one scheduler and the facade's translation and persistence). */
export type FirewallReader = Readonly<
  Pick<VmFirewall, 'table' | 'conntrack' | 'capabilities' | 'plan' | 'verify' | 'verifyVm' | 'inventory' | 'stats' | 'exportRuleset' | 'knownVms' | 'hasVm' | 'chainNames' | 'exactVms'>
>

export interface Engine {
  nft: Nft
  fw: VmFirewall
  /** The engine's reads, bound and frozen (one per engine, so facades sharing an engine share it). */
  reader: FirewallReader
}

function readerOf(fw: VmFirewall): FirewallReader {
  return Object.freeze({
    table: fw.table,
    conntrack: fw.conntrack,
    capabilities: () => fw.capabilities(),
    plan: (spec) => fw.plan(spec),
    verify: (desired) => fw.verify(desired),
    verifyVm: (spec, options) => fw.verifyVm(spec, options && { attach: options.attach, checkTable: options.checkTable }),
    inventory: () => fw.inventory(),
    stats: (vmId) => fw.stats(vmId),
    exportRuleset: () => fw.exportRuleset(),
    knownVms: () => fw.knownVms(),
    hasVm: (vmId) => fw.hasVm(vmId),
    chainNames: () => fw.chainNames(),
    exactVms: () => fw.exactVms(),
  } satisfies FirewallReader)
}

export class Context {
  readonly key: string
  readonly netns: string | undefined
  readonly table: string
  /** Values some facade passed explicitly (the others are defaults). */
  readonly #explicit = new Map<Key, SharedOptions[Key]>()
  readonly #defaults: SharedOptions
  #shared: Engine | undefined
  readonly #byNft = new WeakMap<Nft, Engine>()
  /** Engines created (their exactTable option is fixed). */
  #engines = 0
  refs = 0

  constructor(key: string, netns: string | undefined, table: string) {
    this.key = key
    this.netns = netns
    this.table = table
    this.#defaults = {
      bridgeConntrackMode: process.env[CONNTRACK_MODE_ENV] === 'degrade' ? 'degrade' : 'fail',
      dhcp: true,
      persistencePath: undefined,
      vmIdentity: undefined,
      exactTable: false,
    }
  }

  get<K extends Key>(k: K): SharedOptions[K] {
    return (this.#explicit.has(k) ? this.#explicit.get(k) : this.#defaults[k]) as SharedOptions[K]
  }

  /** Which options were given explicitly, and by value (for messages and tests). */
  explicit(): Partial<SharedOptions> {
    return Object.fromEntries(this.#explicit) as Partial<SharedOptions>
  }

  /** Checks `given` against the fixed options, then fixes the new ones. All or nothing. */
  merge(given: Partial<SharedOptions>): void {
    for (const [k, v] of Object.entries(given) as [Key, SharedOptions[Key]][]) {
      // exactTable is the engine's: once an engine runs, its value is fixed even if nobody passed it.
      const fixed = this.#explicit.has(k) ? this.#explicit.get(k) : k === 'exactTable' && this.#engines > 0 ? this.get(k) : v
      if (fixed !== v) {
        throw new NftablesError(
          NftablesErrorCode.CONFIG_CONFLICT,
          `${k} is already ${describe(fixed)} for bridge table ${this.table}${this.netns ? ` in netns ${this.netns}` : ''} ` +
            `in this process (set by an earlier NftablesService); this one asks for ${describe(v)}. One configuration per table: ` +
            'pass the same value, or leave the option out to use the table\'s.',
          { command: 'constructor', field: k },
        )
      }
    }
    for (const [k, v] of Object.entries(given) as [Key, SharedOptions[Key]][]) this.#explicit.set(k, v)
  }

  /** The engine for a facade: its own `nft`'s (one VmFirewall per Nft and table), else the shared one. */
  engine(nft: Nft | undefined): Engine {
    if (nft) {
      let e = this.#byNft.get(nft)
      if (!e) {
        const fw = this.#firewall(nft)
        e = { nft, fw, reader: readerOf(fw) }
        this.#byNft.set(nft, e)
      }
      return e
    }
    if (!this.#shared || this.#shared.nft.closed) {
      const shared = new Nft(this.netns !== undefined ? { netns: this.netns } : {})
      const fw = this.#firewall(shared)
      this.#shared = { nft: shared, fw, reader: readerOf(fw) }
    }
    return this.#shared
  }

  #firewall(nft: Nft): VmFirewall {
    this.#engines++
    // Always 'auto': the facade enforces bridgeConntrackMode 'fail' itself, so the mode stays a
    // property of the table's configuration, not of the engine.
    return new VmFirewall(nft, { table: this.table, conntrack: 'auto', exactTable: this.get('exactTable') })
  }

  /** The shared engine, if one was created (tests: one per table). */
  get sharedEngine(): Engine | undefined {
    return this.#shared
  }

  closeShared(): void {
    this.#shared?.nft.close()
    this.#shared = undefined
  }
}

function describe(v: unknown): string {
  if (typeof v === 'function') return 'a different vmIdentity function'
  return v === undefined ? 'unset (persistence off)' : JSON.stringify(v)
}

const contexts = new Map<string, Context>()

/** Options of `config` that the facade passed explicitly, validated (throws INVALID_ARGUMENT). */
export function explicitOptions(config: NftablesServiceConfig): Partial<SharedOptions> {
  const out: Partial<SharedOptions> = {}
  const m = config.bridgeConntrackMode
  if (m !== undefined) {
    if (m !== 'fail' && m !== 'degrade') {
      throw new NftablesError(NftablesErrorCode.INVALID_ARGUMENT, "bridgeConntrackMode must be 'fail' or 'degrade'", {
        command: 'constructor',
        field: 'bridgeConntrackMode',
      })
    }
    out.bridgeConntrackMode = m
  }
  if (config.dhcp !== undefined) {
    if (typeof config.dhcp !== 'boolean') {
      throw new NftablesError(NftablesErrorCode.INVALID_ARGUMENT, 'dhcp must be a boolean', { command: 'constructor', field: 'dhcp' })
    }
    out.dhcp = config.dhcp
  }
  if (config.enablePersistence !== undefined) {
    if (typeof config.enablePersistence !== 'boolean') {
      throw new NftablesError(NftablesErrorCode.INVALID_ARGUMENT, 'enablePersistence must be a boolean', { command: 'constructor', field: 'enablePersistence' })
    }
    if (config.persistencePath !== undefined && (typeof config.persistencePath !== 'string' || config.persistencePath === '')) {
      throw new NftablesError(NftablesErrorCode.INVALID_ARGUMENT, 'persistencePath must be a non-empty string', { command: 'constructor', field: 'persistencePath' })
    }
    out.persistencePath = config.enablePersistence ? config.persistencePath ?? NFTABLES_MAIN_FILE : undefined
  }
  if (config.vmIdentity !== undefined) {
    if (typeof config.vmIdentity !== 'function') {
      throw new NftablesError(NftablesErrorCode.INVALID_ARGUMENT, 'vmIdentity must be a function', { command: 'constructor', field: 'vmIdentity' })
    }
    out.vmIdentity = config.vmIdentity as (vmId: string) => VmIdentity | undefined | Promise<VmIdentity | undefined>
  }
  if (config.exactTable !== undefined) {
    if (typeof config.exactTable !== 'boolean') {
      throw new NftablesError(NftablesErrorCode.INVALID_ARGUMENT, 'exactTable must be a boolean', { command: 'constructor', field: 'exactTable' })
    }
    out.exactTable = config.exactTable
  }
  return out
}

/** Joins (creating it if needed) the context of (netns, table), fixing `given`. Throws CONFIG_CONFLICT. */
export function joinContext(netns: string | undefined, table: string, given: Partial<SharedOptions>): Context {
  const key = `${netns ?? ''}\0${table}`
  const ctx = contexts.get(key) ?? new Context(key, netns, table)
  ctx.merge(given)
  contexts.set(key, ctx)
  ctx.refs++
  return ctx
}

/** A facade closed: the last one out closes the shared engine and forgets the configuration. */
export function leaveContext(ctx: Context): void {
  if (--ctx.refs > 0) return
  ctx.closeShared()
  if (contexts.get(ctx.key) === ctx) contexts.delete(ctx.key)
}

/** The live context of (netns, table), if any facade is open on it (tests and diagnostics). */
export function contextOf(netns: string | undefined, table: string): Context | undefined {
  return contexts.get(`${netns ?? ''}\0${table}`)
}
