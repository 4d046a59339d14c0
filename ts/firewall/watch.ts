// Live drift: nf_tables change notifications of the firewall's namespace, read by a native thread that
// entered it (NativeListener kind 'nftables'), grouped by committed batch (each ends with NFT_MSG_NEWGEN,
// which names the generation and the committing task). Batches committed by a thread of this process are
// ours and never drift; the others that touch this firewall's table become 'drift' events, and with
// `repair: true` one debounced `repair()` (through the engine's own scheduler: never concurrently with this
// instance's applies) puts back what the instance last applied.
import { openListener, type NativeEvent } from '../listener.js'
import type { NftError } from '../errors.js'
import type { Nft } from '../nft.js'
import { ListenerStream } from './event-stream.js'
import { CHAIN_POSTROUTING, CHAIN_PREROUTING, MAP_FROM_VM, MAP_TO_VM, VM_CHAIN_RE, parseComment, vmChainNames } from './compile.js'
import type { VmFirewall } from './vm-firewall.js'

const NFPROTO_BRIDGE = 7
/** Changes kept per drift event (a flushed table of 1000 VMs is thousands of notifications). */
const MAX_CHANGES = 200

export interface WatchOptions {
  /** Repair drift with `repair()` (default false: report only). */
  repair?: boolean
  /** Quiet time after the last drift before a repair runs (ms, default 50): a burst of outside changes is
   *  repaired once. */
  debounceMs?: number
  /** At most this many repairs per `repairWindowMs` (default 5 per 10 000 ms). More means something keeps
   *  undoing the repairs (another instance with a different desired state, an operator's script): repairs
   *  stop with a 'repair-suspended' event until the window has passed, rather than fight it. */
  maxRepairs?: number
  repairWindowMs?: number
  /** Notifications the native queue keeps before counting the rest as lost (default 4096). */
  queueLimit?: number
}

export type TableObject = 'table' | 'chain' | 'rule' | 'set' | 'element' | 'object' | 'flowtable'

/** One object change of a drift. */
export interface TableChange {
  /** The notification: 'newrule', 'delrule', 'newchain', 'delchain', 'newsetelem', 'delsetelem', ... */
  change: string
  object: TableObject
  /** The table changed: the firewall's, or (the `exactTable` option) its exact table. */
  table: string
  /** The VM the object belongs to, when known (its chain, its default rule's comment, or a dispatch entry). */
  vmId?: string
  /** A base object of the layout: 'table', 'prerouting', 'postrouting', 'from_vm', 'to_vm' or a shared set. */
  base?: string
  chain?: string
  /** Set / map / object name. */
  name?: string
  comment?: string
  handle?: number
  /** Element keys (a dispatch map's interface names) and the chains they jump to. */
  keys?: string[]
  targets?: string[]
}

export interface DriftEvent {
  type: 'drift'
  /** Generation id the batch committed. */
  generation: number
  /** Task id and name of the committing process (`nft`, another service), as the kernel reports them. */
  pid?: number
  process?: string
  /** VMs touched (ids; chains of VMs this instance does not know are in `chains`). */
  vms: string[]
  /** VM chains touched. */
  chains: string[]
  /** Base objects touched. */
  base: string[]
  /** The table itself was deleted. */
  tableDeleted: boolean
  changes: TableChange[]
  /** Changes beyond MAX_CHANGES, counted, not listed. */
  omitted: number
  time: Date
}

/** Notifications were lost (the socket overran): what changed is unknown; a repair, if on, checks everything. */
export interface LostEvent {
  type: 'lost'
  count: number
  time: Date
}

export interface RepairResult {
  /** Nothing differed: no transaction was sent. */
  ok: boolean
  /** The table, base chains or maps were rebuilt. */
  table: boolean
  /** Known VMs re-applied. */
  vms: string[]
  /** Generation of the repair's commit. */
  generation?: number
}

export interface RepairedEvent {
  type: 'repaired'
  /** The drifts' generations this repair answers. */
  generations: number[]
  result: RepairResult
  durationMs: number
}

export interface RepairFailedEvent {
  type: 'repair-failed'
  error: unknown
}

export interface RepairSuspendedEvent {
  type: 'repair-suspended'
  /** Repairs resume after this time. */
  until: Date
  repairs: number
}

export interface WatchEndEvent {
  type: 'end'
  /** 'stopped': stop() was called; 'netns': the namespace was deleted or replaced; 'table-deleted': the table
   *  was deleted (without repair; with repair it is rebuilt); 'error': the socket failed. */
  reason: 'stopped' | 'netns' | 'table-deleted' | 'error'
  error?: NftError
}

export type WatchEvent = DriftEvent | LostEvent | RepairedEvent | RepairFailedEvent | RepairSuspendedEvent | WatchEndEvent

export interface WatchEvents {
  drift: [DriftEvent]
  lost: [LostEvent]
  repaired: [RepairedEvent]
  'repair-failed': [RepairFailedEvent]
  'repair-suspended': [RepairSuspendedEvent]
  end: [WatchEndEvent]
  event: [WatchEvent]
}

export class FirewallWatch extends ListenerStream<WatchEvent, WatchEndEvent> {
  readonly #fw: VmFirewall
  readonly #options: Required<Omit<WatchOptions, 'queueLimit'>>
  #pending: NativeEvent[] = []
  #timer?: NodeJS.Timeout
  #generations: number[] = []
  #repairing?: Promise<void>
  #again = false
  #repairs: number[] = []
  #suspendedUntil = 0

  readonly #tables: ReadonlySet<string>

  /** `more`: further tables of the firewall (its exact table), watched as part of it. */
  constructor(fw: VmFirewall, nft: Nft, options: WatchOptions, more: readonly string[] = []) {
    super()
    this.#fw = fw
    this.#tables = new Set([fw.table, ...more])
    this.#options = {
      repair: options.repair ?? false,
      debounceMs: options.debounceMs ?? 50,
      maxRepairs: options.maxRepairs ?? 5,
      repairWindowMs: options.repairWindowMs ?? 10_000,
    }
    // The thread keeps only these tables' changes, and only of batches other processes committed.
    this.listen(openListener({ kind: 'nftables', netns: nft.options.netns, queueLimit: options.queueLimit, tables: [...this.#tables], family: NFPROTO_BRIDGE }))
  }

  protected override onEvents(events: NativeEvent[]): void {
    for (const e of events) this.#onNative(e)
  }

  #onNative(e: NativeEvent): void {
    if (e.type === 'change') {
      if (e.family === NFPROTO_BRIDGE && e.table && this.#tables.has(e.table)) this.#pending.push(e)
      return
    }
    if (e.type === 'lost') return this.onLost(1)
    if (e.type !== 'generation') return
    const changes = this.#pending
    this.#pending = []
    if (e.own || changes.length === 0) return
    const drift = this.#describe(changes, e)
    this.deliver(drift)
    if (drift.tableDeleted && !this.#options.repair) {
      void this.end('table-deleted')
      return
    }
    this.#schedule(drift.generation)
  }

  protected override onLost(count: number): void {
    // Changes queued before the loss cannot be attributed to a batch any more.
    this.#pending = []
    this.deliver({ type: 'lost', count, time: new Date() })
    this.#schedule(undefined)
  }

  #describe(changes: NativeEvent[], gen: NativeEvent): DriftEvent {
    const byStem = new Map<string, string>()
    const byTap = new Map<string, string>()
    for (const [vmId, tap] of this.#fw.knownVmTaps()) {
      const c = vmChainNames(vmId)
      byStem.set(c.out.slice(0, -2), vmId)
      byTap.set(tap, vmId)
    }
    const vms = new Set<string>()
    const chains = new Set<string>()
    const base = new Set<string>()
    let tableDeleted = false
    const out: TableChange[] = []
    const vmOf = (chain: string | undefined, comment?: string): string | undefined => {
      if (!chain || !VM_CHAIN_RE.test(chain)) return undefined
      chains.add(chain)
      const known = byStem.get(chain.slice(0, -2))
      if (known) return known
      const p = parseComment(comment)
      return p?.kind === 'd' ? p.tag : undefined
    }
    for (const n of changes) {
      const object = objectOf(n.change ?? '')
      const c: TableChange = { change: n.change ?? 'unknown', object, table: n.table ?? this.#fw.table }
      if (n.chain) c.chain = n.chain
      if (n.name) c.name = n.name
      if (n.comment) c.comment = n.comment
      if (n.handle !== undefined && n.handle !== null) c.handle = n.handle
      if (n.keys) c.keys = n.keys
      if (n.targets) c.targets = n.targets
      if (c.table !== this.#fw.table) {
        // The exact table (issue 15): a VM's rules are elements keyed by its tap; the rest is its layout.
        if (object === 'table' && n.change === 'deltable') tableDeleted = true
        const tap = object === 'element' ? interfaceOfKey(n.keys?.[0]) : undefined
        const vmId = tap === undefined ? undefined : byTap.get(tap)
        if (vmId) c.vmId = vmId
        else c.base = object === 'table' ? 'table' : (n.chain ?? n.name ?? object)
      } else if (object === 'table') {
        c.base = 'table'
        if (n.change === 'deltable') tableDeleted = true
      } else if (n.chain === CHAIN_PREROUTING || n.chain === CHAIN_POSTROUTING) {
        c.base = n.chain
      } else if (n.chain) {
        c.vmId = vmOf(n.chain, n.comment ?? undefined)
      } else if (n.name && object !== 'element') {
        c.base = n.name
      }
      if (object === 'element') {
        if (n.name === MAP_FROM_VM || n.name === MAP_TO_VM) {
          const ids = (n.targets ?? []).map((t) => vmOf(t)).filter((v): v is string => v !== undefined)
          if (ids.length > 0) c.vmId = ids[0]
          for (const id of ids) vms.add(id)
          if (ids.length === 0) base.add(n.name)
        } else if (n.name) {
          c.base = n.name
        }
      }
      if (c.vmId) vms.add(c.vmId)
      if (c.base) base.add(c.base)
      if (out.length < MAX_CHANGES) out.push(c)
    }
    return {
      type: 'drift',
      generation: gen.generation ?? 0,
      ...(gen.pid !== undefined && gen.pid !== null ? { pid: gen.pid } : {}),
      ...(gen.process ? { process: gen.process } : {}),
      vms: [...vms],
      chains: [...chains],
      base: [...base],
      tableDeleted,
      changes: out,
      omitted: changes.length - out.length + (gen.omitted ?? 0),
      time: new Date(),
    }
  }

  #schedule(generation: number | undefined): void {
    if (!this.#options.repair || this.stopping) return
    if (generation !== undefined) this.#generations.push(generation)
    clearTimeout(this.#timer)
    this.#timer = setTimeout(() => this.#runRepair(), this.#options.debounceMs)
  }

  #runRepair(): void {
    this.#timer = undefined
    if (this.#repairing) {
      this.#again = true
      return
    }
    const now = Date.now()
    if (now < this.#suspendedUntil) return
    this.#repairs = this.#repairs.filter((t) => now - t < this.#options.repairWindowMs)
    if (this.#repairs.length >= this.#options.maxRepairs) {
      this.#suspendedUntil = this.#repairs[0]! + this.#options.repairWindowMs
      this.deliver({ type: 'repair-suspended', until: new Date(this.#suspendedUntil), repairs: this.#repairs.length })
      // One more look once the window has passed: whatever is still wrong then is repaired.
      this.#timer = setTimeout(() => this.#runRepair(), this.#suspendedUntil - now)
      return
    }
    const generations = this.#generations
    this.#generations = []
    const started = performance.now()
    this.#repairing = this.#fw
      .repair()
      .then(
        (result) => {
          if (!result.ok) this.#repairs.push(Date.now())
          this.deliver({ type: 'repaired', generations, result, durationMs: performance.now() - started })
        },
        (error: unknown) => this.deliver({ type: 'repair-failed', error }),
      )
      .finally(() => {
        this.#repairing = undefined
        if (this.#again && !this.stopping) {
          this.#again = false
          this.#runRepair()
        }
      })
  }

  /** A repair in flight completes before the end event; none is scheduled after it. */
  protected override async beforeEnd(): Promise<void> {
    clearTimeout(this.#timer)
    await this.#repairing
  }
}

/** The interface name an element key starts with (every key of the exact table does: `iifname . ...`): the
 *  listener gives a bare name as text, a concatenation as hex (16 bytes, NUL padded, first). */
function interfaceOfKey(key: string | undefined): string | undefined {
  if (!key) return undefined
  if (!/^(?:[0-9a-f]{2}){16,}$/.test(key)) return key
  const name = Buffer.from(key.slice(0, 32), 'hex')
  const end = name.indexOf(0)
  return end > 0 ? name.subarray(0, end).toString('latin1') : undefined
}

function objectOf(change: string): TableObject {
  const o = change.replace(/^(new|del)/, '')
  switch (o) {
    case 'table':
    case 'chain':
    case 'rule':
    case 'set':
    case 'flowtable':
      return o
    case 'setelem':
      return 'element'
    default:
      return 'object'
  }
}

