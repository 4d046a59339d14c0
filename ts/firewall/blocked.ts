// Blocked traffic: the packets the `logDrops` log rules send to an nfnetlink_log group, read by a native
// thread bound to that group in the firewall's namespace (NativeListener kind 'nflog'), as typed events that
// name the VM, the rule (or 'default') and the packet's addresses and ports. Memory stays bounded under a
// flood: the kernel rate-limits each log rule, and the native queue counts what it cannot hold ('lost').
import { openListener, type NativeEvent } from '../listener.js'
import type { NftError } from '../errors.js'
import type { Nft } from '../nft.js'
import { vmChainNames } from './compile.js'
import { DEFAULT_LOG_GROUP, GUARD_STEM, parseLogPrefix } from './log-drops.js'
import type { VmFirewall } from './vm-firewall.js'
import { ListenerStream } from './event-stream.js'

export interface BlockedOptions {
  /** nfnetlink_log group (default: the firewall's `logDrops.group`, else 16). */
  group?: number
  /** Packets the native queue keeps before counting the rest as lost (default 4096). */
  queueLimit?: number
  /** Resolve chains of VMs this instance does not know by listing the table (default true; at most once a
   *  second, only for an unknown chain). */
  resolveUnknown?: boolean
}

export interface BlockedEvent {
  type: 'blocked'
  /** The VM whose chain dropped the packet (undefined when the chain belongs to no VM that could be found). */
  vmId?: string
  /** The VM chain (`vm_<hex>_o` / `_i`); for a built-in drop of the shared guard (issue 15), the out chain of
   *  the VM its interface dispatches to, or `guard` when none does. */
  chain: string
  /** 'out': sent by the VM; 'in': on its way to the VM. */
  direction: 'out' | 'in'
  /** The rule id, 'default' for the default drop, or `builtin:<name>` (e.g. builtin:ip-spoof). */
  rule: string
  /** 'tcp', 'udp', 'icmp', 'icmpv6', 'arp', another IP protocol number, or undefined (not IP). */
  protocol?: string
  /** 4 or 6 for IP packets. */
  family?: 4 | 6
  src?: string
  dst?: string
  srcPort?: number
  dstPort?: number
  icmpType?: number
  icmpCode?: number
  /** Ethertype of the frame. */
  ethertype: number
  /** The bridge port the frame came in on / was leaving by. */
  inInterface?: string
  outInterface?: string
  time: Date
}

export interface BlockedLostEvent {
  type: 'lost'
  /** Packets read but not delivered because the queue was full. */
  count: number
  time: Date
}

export interface BlockedEndEvent {
  type: 'end'
  reason: 'stopped' | 'netns' | 'error'
  error?: NftError
}

export type BlockedStreamEvent = BlockedEvent | BlockedLostEvent | BlockedEndEvent

export interface BlockedEvents {
  blocked: [BlockedEvent]
  lost: [BlockedLostEvent]
  end: [BlockedEndEvent]
  event: [BlockedStreamEvent]
}

export class BlockedStream extends ListenerStream<BlockedStreamEvent, BlockedEndEvent> {
  readonly group: number
  readonly #fw: VmFirewall
  readonly #resolveUnknown: boolean
  /** Chain stem -> vmId for chains not known to the instance (from the table's default-rule comments). */
  #inventory = new Map<string, string>()
  #inventoryAt = 0

  constructor(fw: VmFirewall, nft: Nft, options: BlockedOptions) {
    super()
    this.#fw = fw
    this.group = options.group ?? fw.logDrops?.group ?? DEFAULT_LOG_GROUP
    this.#resolveUnknown = options.resolveUnknown ?? true
    this.listen(openListener({ kind: 'nflog', netns: nft.options.netns, group: this.group, queueLimit: options.queueLimit }))
  }

  protected override async onEvents(events: NativeEvent[]): Promise<void> {
    const byStem = this.#known()
    for (const e of events) {
      if (e.type !== 'packet') continue
      const b = await this.#event(e, byStem)
      if (b) this.deliver(b)
    }
  }

  protected override onLost(count: number): void {
    this.deliver({ type: 'lost', count, time: new Date() })
  }

  #known(): Map<string, string> {
    const m = new Map<string, string>()
    for (const vmId of this.#fw.knownVms()) m.set(vmChainNames(vmId).out.slice(0, -2), vmId)
    return m
  }

  async #vmOf(stem: string, byStem: Map<string, string>): Promise<string | undefined> {
    const known = byStem.get(stem) ?? this.#inventory.get(stem)
    if (known || !this.#resolveUnknown || Date.now() - this.#inventoryAt < 1000) return known
    this.#inventoryAt = Date.now()
    try {
      const m = new Map<string, string>()
      for (const entry of await this.#fw.inventory()) {
        if (entry.vmId === undefined) continue
        for (const chain of entry.chains) m.set(chain.slice(0, -2), entry.vmId)
      }
      this.#inventory = m
    } catch {
      // The table may be gone; the event still names the chain.
    }
    return this.#inventory.get(stem)
  }

  async #event(e: NativeEvent, byStem: Map<string, string>): Promise<BlockedEvent | undefined> {
    const p = parseLogPrefix(e.prefix ?? '')
    if (!p) return undefined // another logger sharing the group
    // A drop of the shared guard names no VM: the frame's interface does (the listener resolved its index in the
    // namespace), and the dispatch map says which VM it belongs to.
    const tap = e.physindev ?? e.indev
    const guardChain = p.stem === GUARD_STEM && tap ? await this.#fw.chainOfTap(tap).catch(() => undefined) : undefined
    const stem = p.stem === GUARD_STEM ? guardChain?.slice(0, -2) : p.stem
    const vmId = p.kind === 'd' ? p.tag : stem ? await this.#vmOf(stem, byStem) : undefined
    const b: BlockedEvent = {
      type: 'blocked',
      chain: stem ? `${stem}_${p.direction === 'out' ? 'o' : 'i'}` : GUARD_STEM,
      direction: p.direction,
      rule: p.kind === 'd' ? 'default' : p.kind === 'b' ? `builtin:${p.tag}` : p.tag,
      ethertype: e.ethertype ?? 0,
      time: new Date(e.time ?? Date.now()),
    }
    if (vmId !== undefined) b.vmId = vmId
    const opt = <K extends keyof BlockedEvent>(k: K, v: BlockedEvent[K] | null | undefined): void => {
      if (v !== undefined && v !== null) b[k] = v
    }
    opt('protocol', e.protocol)
    opt('family', e.ipFamily === 4 || e.ipFamily === 6 ? e.ipFamily : undefined)
    opt('src', e.src)
    opt('dst', e.dst)
    opt('srcPort', e.sport)
    opt('dstPort', e.dport)
    opt('icmpType', e.icmpType)
    opt('icmpCode', e.icmpCode)
    opt('inInterface', e.physindev ?? e.indev)
    opt('outInterface', e.physoutdev ?? e.outdev)
    return b
  }
}
