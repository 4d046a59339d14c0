// VmFirewall: per-VM bridge firewalls applied through one libnftables context, one transaction per call.
import type { Nft } from '../nft.js'
import type { NftablesJson, NftCommand } from '../schema.js'
import { probeCapabilities } from './capabilities.js'
import { FirewallError, FirewallValidationError, isNotFound } from './errors.js'
import {
  CHAIN_POSTROUTING,
  CHAIN_PREROUTING,
  BASE_PRIORITY,
  DEFAULT_TABLE,
  FAMILY,
  MAP_FROM_VM,
  MAP_TO_VM,
  VM_CHAIN_RE,
  chainDeleteCommands,
  compileVm,
  elementAdd,
  elementDelete,
  parseComment,
  tableCommands,
  setCommands,
  SHARED_SETS,
  vmApplyCommands,
  vmChainNames,
  type CompiledRule,
  type CompiledVm,
} from './compile.js'
import type {
  ConntrackMode,
  FirewallCapabilities,
  RuleCounters,
  SyncResult,
  VerifyResult,
  VmApplyResult,
  VmDrift,
  VmInventoryEntry,
  VmSpec,
  VmStats,
} from './model.js'
import { GroupCommit } from './group-commit.js'
import { BlockedStream, type BlockedOptions } from './blocked.js'
import { FirewallWatch, type RepairResult, type WatchOptions } from './watch.js'
import { resolveLogDrops, type LogDropsOptions, type ResolvedLogDrops } from './log-drops.js'
import { KernelView, isConflict, type DispatchMaps } from './kernel-view.js'
import { mapElements } from './map-elements.js'
import { renderCommands } from './render.js'
import { KernelRendering, ruleKey } from './rendering.js'
import { checkRestore } from './restore-guard.js'
import { Scheduler } from './scheduler.js'
import { checkIfname, checkTableName, checkToken, normalizeVm, VMID_MAX } from './validate.js'

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
}

export interface SyncOptions {
  /** 'all' (default): the set is the whole firewall; VM chains and dispatch entries not in it are removed.
   *  'none': only the given VMs are reconciled; everything else in the table is left as it is (for tables that
   *  several processes write, each owning its own VMs). */
  prune?: 'all' | 'none'
}

export interface ApplyOptions {
  /** Dispatch the VM's tap to its chains (default true). False: chains only, as for a stopped VM. */
  attach?: boolean
  /** Commands appended to the same transaction (applyVm only; the compat facade removes a VM's chain of
   *  the old Infinization layout with it). */
  also?: NftCommand[]
}

export interface VmPlan {
  /** The VM's part of the transaction applyVm would run: its chains, rules and dispatch entries. applyVm also
   *  (re)adds the table and its shared sets (idempotent) and deletes stale dispatch entries found at apply time. */
  commands: NftablesJson
  /** The same as nft text, for humans. */
  text: string
  result: VmApplyResult
}

interface Known {
  compiled: CompiledVm
  attached: boolean
}

type Elements = Map<string, string> // key (ifname) -> jump target
/** Writes that lost a race with another writer are rebuilt from a fresh read this many times in all. */
const CONFLICT_ATTEMPTS = 4

interface KernelTable {
  exists: boolean
  chains: Set<string>
  /** Rules per chain, with comments and counters, in order. */
  rules: Map<string, { comment?: string; packets: number; bytes: number; expr: unknown[]; ours?: boolean }[]>
  maps: { [MAP_FROM_VM]: Elements; [MAP_TO_VM]: Elements }
  mapsExist: boolean
  problems: string[]
  /** Base chains whose type/hook/priority differ (cannot be changed in place: delete and recreate). */
  recreate: string[]
}

function counterOf(expr: unknown[]): { packets: number; bytes: number } {
  for (const s of expr) {
    const c = (s as { counter?: { packets?: number; bytes?: number } }).counter
    if (c && typeof c === 'object') return { packets: c.packets ?? 0, bytes: c.bytes ?? 0 }
  }
  return { packets: 0, bytes: 0 }
}

function parseTable(doc: NftablesJson | undefined): KernelTable {
  const t: KernelTable = {
    exists: doc !== undefined,
    chains: new Set(),
    rules: new Map(),
    maps: { [MAP_FROM_VM]: new Map(), [MAP_TO_VM]: new Map() },
    mapsExist: false,
    problems: [],
    recreate: [],
  }
  if (!doc) return t
  let mapCount = 0
  const sets = new Set<string>()
  const base = new Map<string, Record<string, unknown>>()
  for (const o of doc.nftables) {
    if ('chain' in o) {
      const c = o.chain as unknown as Record<string, unknown>
      t.chains.add(c.name as string)
      if (c.hook) base.set(c.name as string, c)
    } else if ('set' in o) {
      sets.add((o.set as { name: string }).name)
    } else if ('map' in o) {
      const m = o.map as unknown as Record<string, unknown>
      if (m.name === MAP_FROM_VM || m.name === MAP_TO_VM) {
        mapCount++
        t.maps[m.name] = mapElements(m)
      }
    } else if ('rule' in o) {
      const r = o.rule as unknown as Record<string, unknown>
      const list = t.rules.get(r.chain as string) ?? []
      const expr = (r.expr as unknown[]) ?? []
      list.push({ comment: r.comment as string | undefined, ...counterOf(expr), expr })
      t.rules.set(r.chain as string, list)
    }
  }
  t.mapsExist = mapCount === 2
  if (!t.mapsExist) t.problems.push('dispatch maps missing')
  const missingSets = SHARED_SETS.filter((x) => !sets.has(x.name)).map((x) => x.name)
  if (missingSets.length) t.problems.push(`shared sets missing: ${missingSets.join(', ')}`)
  for (const [name, hook, key, map] of [
    [CHAIN_PREROUTING, 'prerouting', 'iifname', MAP_FROM_VM],
    [CHAIN_POSTROUTING, 'postrouting', 'oifname', MAP_TO_VM],
  ] as const) {
    const c = base.get(name)
    if (!c) {
      t.problems.push(t.chains.has(name) ? `base chain ${name} is a regular chain` : `base chain ${name} missing`)
      if (t.chains.has(name)) t.recreate.push(name)
      continue
    }
    if (c.hook !== hook || c.type !== 'filter' || c.prio !== BASE_PRIORITY) {
      t.problems.push(`base chain ${name} changed (type ${String(c.type)} hook ${String(c.hook)} priority ${String(c.prio)})`)
      t.recreate.push(name)
    }
    if (c.policy !== 'accept') t.problems.push(`base chain ${name} policy ${String(c.policy)} (expected accept)`)
    const rules = t.rules.get(name) ?? []
    const ok =
      rules.length === 1 &&
      JSON.stringify(rules[0]!.expr) === JSON.stringify([{ vmap: { key: { meta: { key } }, data: `@${map}` } }])
    if (!ok) t.problems.push(`dispatch rule in ${name} missing or changed`)
  }
  return t
}


/** Header protocols whose matches make libnftables add (and, when listing, hide) a `meta l4proto` or
 *  `meta protocol` dependency. */
const IMPLIED_BY: Record<string, Record<string, string[]>> = {
  l4proto: { tcp: ['tcp'], udp: ['udp'], icmp: ['icmp'], 'ipv6-icmp': ['icmpv6'] },
  protocol: { ip: ['ip', 'icmp'], ip6: ['ip6', 'icmpv6'], arp: ['arp'] },
}
const L4_FAMILY: Record<string, string> = { icmp: 'ip', 'ipv6-icmp': 'ip6' }

/**
 * A rule's statements in a form that compares equal between what we send and what the kernel lists back:
 * counter values zeroed, and a `meta l4proto X` / `meta protocol X` match dropped when a later match reads a
 * header that implies it (libnftables lists such dependencies implicitly).
 */
export function canonicalExpr(expr: readonly unknown[]): string {
  const out: unknown[] = []
  expr.forEach((st, i) => {
    const o = st as Record<string, unknown>
    if (o && typeof o === 'object' && 'counter' in o) {
      out.push({ counter: typeof o.counter === 'string' ? o.counter : null })
      return
    }
    const m = (o as { match?: { op?: string; left?: { meta?: { key?: string } }; right?: unknown } }).match
    const key = m?.left?.meta?.key
    if (m && m.op === '==' && key && typeof m.right === 'string') {
      const headers = IMPLIED_BY[key]?.[m.right]
      if (headers) {
        const implied = expr.slice(i + 1).some((later) => {
          const lm = (later as { match?: { left?: { meta?: { key?: string } }; right?: unknown } }).match
          // `meta l4proto icmp` / `ipv6-icmp` also implies the network protocol.
          if (key === 'protocol' && lm?.left?.meta?.key === 'l4proto') return L4_FAMILY[String(lm.right)] === m.right
          return headerProtocols(lm?.left).some((p) => headers.includes(p))
        })
        if (implied) return
      }
    }
    out.push(st)
  })
  return JSON.stringify(out)
}

/** Protocols of the header fields an expression reads (`tcp dport`, `tcp flags & (syn|ack)`, ...). */
function headerProtocols(x: unknown): string[] {
  if (Array.isArray(x)) return x.flatMap(headerProtocols)
  if (!x || typeof x !== 'object') return []
  const o = x as Record<string, unknown>
  const p = (o.payload as { protocol?: unknown } | undefined)?.protocol
  if (typeof p === 'string') return [p]
  return Object.values(o).flatMap(headerProtocols)
}

/** Whether a listed rule still says what we wrote: compared with the kernel's own rendering of the compiled
 *  rule when known (exact on every libnftables version), else with the compiled form, normalised. */
function sameRule(listed: unknown[], want: CompiledRule, rendering: KernelRendering): boolean {
  const reference = rendering.lookup(want.expr)
  return reference !== undefined ? ruleKey(listed) === reference : canonicalExpr(listed) === canonicalExpr(want.expr)
}

interface KernelRule {
  comment?: string
  expr?: unknown[]
  /** The rule as we compiled and wrote it (a table known from our own last sync, not listed). */
  ours?: boolean
}

/** Compares a kernel chain with the compiled one: rule identity (comments), order, and each rule's statements. */
function diffChain(
  name: string,
  want: CompiledRule[],
  have: KernelRule[] | undefined,
  drift: { missing: string[]; extra: string[]; changed: string[] },
  rendering: KernelRendering,
): boolean {
  if (!have) {
    drift.missing.push(`chain:${name}`)
    return false
  }
  const w = want.map((r) => r.comment)
  const h = have.map((r) => r.comment ?? '(no comment)')
  if (w.length === h.length && w.every((c, i) => c === h[i])) {
    // Same rules in the same order: each must also still say what we wrote (not edited in place).
    let ok = true
    want.forEach((r, i) => {
      const k = have[i]!
      const same = k.ours ? ruleKey(k.expr ?? []) === ruleKey(r.expr) : k.expr === undefined || sameRule(k.expr, r, rendering)
      if (!same) {
        drift.changed.push(`rule:${name}:${r.comment}`)
        ok = false
      }
    })
    return ok
  }
  const hs = new Set(h)
  const ws = new Set(w)
  const missing = w.filter((c) => !hs.has(c))
  const extra = h.filter((c) => !ws.has(c))
  drift.missing.push(...missing.map((c) => `rule:${name}:${c}`))
  drift.extra.push(...extra.map((c) => `rule:${name}:${c}`))
  if (missing.length === 0 && extra.length === 0) drift.changed.push(`order:${name}`)
  return false
}

/** The table a full sync of `compiled` leaves (all attached), as a listing of it would read. */
function tableOf(compiled: CompiledVm[]): KernelTable {
  const t = parseTable({ nftables: [] })
  t.problems = []
  t.mapsExist = true
  for (const c of compiled) {
    for (const [chain, rules] of [
      [c.chains.out, c.out],
      [c.chains.in, c.in],
    ] as const) {
      t.chains.add(chain)
      t.rules.set(chain, rules.map((r) => ({ comment: r.comment, packets: 0, bytes: 0, expr: r.expr, ours: true })))
    }
    t.maps[MAP_FROM_VM].set(c.tap, c.chains.out)
    t.maps[MAP_TO_VM].set(c.tap, c.chains.in)
  }
  for (const name of [CHAIN_PREROUTING, CHAIN_POSTROUTING]) t.chains.add(name)
  return t
}

/** Groups the table's VM chains by VM (chain name stem), with the vmId read from the default rule's comment. */
function inventoryOf(k: KernelTable): VmInventoryEntry[] {
  const byStem = new Map<string, VmInventoryEntry>()
  for (const chain of [...k.chains].sort()) {
    if (!VM_CHAIN_RE.test(chain)) continue
    const stem = chain.slice(0, -2)
    const entry = byStem.get(stem) ?? { chains: [], taps: [], rules: 0 }
    byStem.set(stem, entry)
    entry.chains.push(chain)
    const rules = k.rules.get(chain) ?? []
    entry.rules += rules.length
    const last = rules[rules.length - 1]
    const p = parseComment(last?.comment)
    if (p?.kind === 'd') {
      entry.vmId = p.tag
      const verdict = last!.expr[last!.expr.length - 1] as Record<string, unknown> | undefined
      if (verdict && ('accept' in verdict || 'drop' in verdict)) entry.defaultAction = 'accept' in verdict ? 'accept' : 'drop'
    }
    for (const map of [MAP_FROM_VM, MAP_TO_VM] as const) {
      for (const [key, target] of k.maps[map]) if (target === chain && !entry.taps.includes(key)) entry.taps.push(key)
    }
  }
  return [...byStem.values()]
}

/** Dispatch entries of one VM compared with what they should be (tap -> its chains, or none when detached). */
function dispatchDrift(
  maps: { [MAP_FROM_VM]: Elements; [MAP_TO_VM]: Elements },
  c: CompiledVm,
  attached: boolean,
  drift: { missing: string[]; extra: string[] },
): void {
  for (const [map, chain] of [
    [MAP_FROM_VM, c.chains.out],
    [MAP_TO_VM, c.chains.in],
  ] as const) {
    const keys = [...maps[map]].filter(([, t]) => t === chain).map(([key]) => key)
    if (attached && !keys.includes(c.tap)) drift.missing.push(`dispatch:${map}:${c.tap}`)
    for (const key of keys) if (!attached || key !== c.tap) drift.extra.push(`dispatch:${map}:${key}`)
  }
}

export class VmFirewall {
  readonly table: string
  readonly conntrack: ConntrackMode
  /** The resolved `logDrops` option (undefined: off). */
  readonly logDrops: ResolvedLogDrops | undefined
  readonly #nft: Nft
  readonly #sched = new Scheduler()
  readonly #known = new Map<string, Known>()
  readonly #rendering: KernelRendering
  readonly #view: KernelView
  readonly #group: GroupCommit<{ maps: DispatchMaps | undefined; setsKnown: boolean }>
  /** The table as our last full sync left it, valid while the generation has not moved since. */
  #synced?: { generation: number; table: KernelTable }
  #caps?: Promise<FirewallCapabilities>
  #capsValue?: FirewallCapabilities

  constructor(nft: Nft, options: VmFirewallOptions = {}) {
    this.#nft = nft
    this.table = checkTableName(options.table ?? DEFAULT_TABLE)
    this.#rendering = new KernelRendering(nft, this.table)
    this.#view = new KernelView(nft, this.table)
    this.#group = new GroupCommit(
      () => this.#view.current(),
      async (commands, view) => {
        // The table and its shared sets are re-added only when we do not know them to exist (idempotent adds).
        const head = view.setsKnown ? [] : view.maps ? setCommands(this.table) : tableCommands(this.table)
        // Two VMs of a group may both find the same stale dispatch entry (a tap moving between them): delete once.
        const seen = new Set<string>()
        const body = (commands as NftCommand[]).filter((c) => {
          if (!('delete' in c) || !('element' in (c.delete as object))) return true
          const key = JSON.stringify(c)
          return !seen.has(key) && seen.add(key) !== undefined
        })
        await this.#view.write([...head, ...body], { createsSets: !view.setsKnown })
      },
      isConflict,
      CONFLICT_ATTEMPTS,
    )
    const mode = options.conntrack ?? 'auto'
    if (mode !== 'auto' && mode !== 'require' && mode !== 'off') {
      throw new FirewallValidationError('conntrack', "must be 'auto', 'require' or 'off'")
    }
    this.conntrack = mode
    this.logDrops = resolveLogDrops(options.logDrops)
    if (options.capabilities) {
      this.#capsValue = { ...options.capabilities }
      this.#caps = Promise.resolve(this.#capsValue)
    }
  }

  /** Kernel features, probed once by dry-run (nothing is created). */
  capabilities(): Promise<FirewallCapabilities> {
    if (!this.#caps) {
      this.#caps = probeCapabilities(this.#nft).then(
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
      await this.#view.write([...(await this.#baseChainRepairs()), ...tableCommands(this.table)], { createsSets: true })
    })
  }

  /** The JSON and text applyVm would apply, without applying. Pure: works without the native addon. */
  plan(spec: VmSpec): VmPlan {
    const vm = normalizeVm(spec)
    const compiled = compileVm(vm, {
      capabilities: this.#capsValue ?? { bridgeConntrack: false, bridgeReject: false },
      conntrack: this.conntrack,
      logDrops: this.logDrops,
    })
    const commands = vmApplyCommands(this.table, compiled, [])
    return { commands: { nftables: commands }, text: renderCommands(commands), result: compiled.result }
  }

  /** Creates or replaces everything for one VM in one transaction. With `attach: false` the chains are
   *  written but no traffic is dispatched to them (a stopped VM). */
  async applyVm(spec: VmSpec, options: ApplyOptions = {}): Promise<VmApplyResult> {
    const vm = normalizeVm(spec)
    const attach = options.attach ?? true
    return this.#sched.vm(vm.vmId, async () => {
      const compiled = compileVm(vm, { capabilities: await this.capabilities(), conntrack: this.conntrack, logDrops: this.logDrops })
      await this.#apply(compiled, attach, options.also)
      return compiled.result
    })
  }

  /** Like applyVm, but first compares with the kernel (the VM's two chains and its dispatch entries) and
   *  writes nothing when they already match. */
  async applyVmIfChanged(spec: VmSpec, options: ApplyOptions = {}): Promise<{ changed: boolean; result: VmApplyResult; drift: VmDrift }> {
    const vm = normalizeVm(spec)
    const attach = options.attach ?? true
    return this.#sched.vm(vm.vmId, async () => {
      const compiled = compileVm(vm, { capabilities: await this.capabilities(), conntrack: this.conntrack, logDrops: this.logDrops })
      const drift = await this.#vmDrift(compiled, attach)
      if (drift.status !== 'ok') await this.#apply(compiled, attach)
      else this.#known.set(vm.vmId, { compiled, attached: attach })
      return { changed: drift.status !== 'ok', result: compiled.result, drift }
    })
  }

  /** Drift of one VM against the kernel (its two chains and the dispatch maps; no full table listing). */
  async verifyVm(spec: VmSpec, options: ApplyOptions = {}): Promise<VmDrift> {
    const vm = normalizeVm(spec)
    return this.#sched.vm(vm.vmId, async () => {
      const compiled = compileVm(vm, { capabilities: await this.capabilities(), conntrack: this.conntrack, logDrops: this.logDrops })
      return this.#vmDrift(compiled, options.attach ?? true)
    })
  }

  async #apply(compiled: CompiledVm, attach: boolean, also: NftCommand[] = []): Promise<void> {
    this.#checkOwnTable(also)
    // Grouped with other VMs' applies that arrive while a transaction is in flight (one commit for all); two
    // applies that touch the same tap never share a group.
    await this.#group.submit({
      keys: [compiled.tap, ...(also.length > 0 ? ['(also)'] : [])],
      build: ({ maps }) => {
        const stale = maps ? this.#staleFor(maps, compiled.chains, attach ? compiled.tap : undefined) : []
        return [...vmApplyCommands(this.table, compiled, stale, attach), ...also]
      },
    })
    if (attach) this.#noteTakeover(compiled.vmId, compiled.tap)
    this.#known.set(compiled.vmId, { compiled, attached: attach })
  }

  /** `also` commands may only touch this firewall's own table. */
  #checkOwnTable(commands: NftCommand[]): void {
    for (const [i, cmd] of commands.entries()) {
      const body = Object.values(cmd as Record<string, unknown>)[0] as Record<string, Record<string, unknown>> | undefined
      const [kind, o] = (body && typeof body === 'object' ? Object.entries(body)[0] : undefined) ?? []
      const table = kind === 'table' ? o?.name : o?.table
      if (!o || o.family !== FAMILY || table !== this.table) {
        throw new FirewallValidationError(`also[${i}]`, `must target table ${FAMILY} ${this.table}`)
      }
    }
  }

  /**
   * Builds a batch from the engine's view of the dispatch maps and commits it. Another writer may change the
   * table between our view and our commit (the kernel then refuses with ENOENT/EBUSY/EEXIST): the batch is
   * rebuilt from a fresh read and sent again, a bounded number of times. Only idempotent operations use this.
   */
  async #write(build: (maps: DispatchMaps | undefined, setsKnown: boolean) => { commands: NftCommand[]; createsSets?: boolean }): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const view = await this.#view.current()
      const plan = build(view.maps, view.setsKnown)
      try {
        await this.#view.write(plan.commands, { createsSets: plan.createsSets })
        return
      } catch (e) {
        if (attempt >= CONFLICT_ATTEMPTS || !isConflict(e)) throw e
      }
    }
  }

  async #vmDrift(c: CompiledVm, attached: boolean): Promise<VmDrift> {
    const drift: VmDrift = { vmId: c.vmId, chains: c.chains, status: 'ok', missing: [], extra: [], changed: [] }
    const rulesOf = async (chain: string) => {
      try {
        const doc = await this.#nft.listChain(FAMILY, this.table, chain)
        return doc.nftables
          .filter((o) => 'rule' in o)
          .map((o) => {
            const r = (o as { rule: { comment?: string; expr?: unknown[] } }).rule
            return { comment: r.comment, expr: r.expr ?? [] }
          })
      } catch (e) {
        if (isNotFound(e)) return undefined
        throw e
      }
    }
    const outRules = await rulesOf(c.chains.out)
    const inRules = await rulesOf(c.chains.in)
    await this.#rendering.learn([...(outRules ? c.out : []), ...(inRules ? c.in : [])].map((r) => r.expr))
    const outOk = diffChain(c.chains.out, c.out, outRules, drift, this.#rendering)
    const inOk = diffChain(c.chains.in, c.in, inRules, drift, this.#rendering)
    const maps = (await this.#view.maps()) ?? { [MAP_FROM_VM]: new Map<string, string>(), [MAP_TO_VM]: new Map<string, string>() }
    dispatchDrift(maps, c, attached, drift)
    if (!outRules && !inRules) drift.status = 'missing'
    else if (!outOk || !inOk || drift.missing.length || drift.extra.length || drift.changed.length) drift.status = 'changed'
    return drift
  }

  /** Deletes a VM's chains and dispatch entries. Idempotent. */
  async removeVm(vmId: string): Promise<void> {
    checkToken(vmId, 'vmId', VMID_MAX, {})
    return this.#sched.vm(vmId, async () => {
      await this.#removeChains(vmChainNames(vmId))
      this.#known.delete(vmId)
    })
  }

  /** Deletes two VM chains and every dispatch entry to them, whether or not they exist. */
  async #removeChains(chains: { out: string; in: string }): Promise<void> {
    await this.#write((maps) => ({
      commands: maps
        ? [
            ...this.#staleFor(maps, chains, undefined).map((s) => elementDelete(this.table, s.map, s.key)),
            ...chainDeleteCommands(this.table, chains.out),
            ...chainDeleteCommands(this.table, chains.in),
          ]
        : [],
    }))
  }

  /** Removes VM chains by name (`vm_<24 hex>`, with or without `_o`/`_i`) and their dispatch entries, for
   *  chains whose vmId is unknown. Idempotent. */
  async removeVmByChain(name: string): Promise<void> {
    const m = /^(vm_[0-9a-f]{24})(_[oi])?$/.exec(typeof name === 'string' ? name : '')
    if (!m) throw new FirewallValidationError('name', 'must be a VM chain name (vm_ + 24 hex digits, optional _o/_i)')
    const chains = { out: `${m[1]}_o`, in: `${m[1]}_i` }
    return this.#sched.exclusive(async () => {
      await this.#removeChains(chains)
      for (const [id, known] of this.#known) if (known.compiled.chains.out === chains.out) this.#known.delete(id)
    })
  }

  /** Whether the VM's chains exist in the kernel (two cheap chain listings). */
  async hasVm(vmId: string): Promise<boolean> {
    checkToken(vmId, 'vmId', VMID_MAX, {})
    const chains = vmChainNames(vmId)
    for (const chain of [chains.out, chains.in]) {
      try {
        await this.#nft.listChain(FAMILY, this.table, chain)
        return true
      } catch (e) {
        if (!isNotFound(e)) throw e
      }
    }
    return false
  }

  /** Stops dispatching the VM's traffic to its chains (VM stopped); rules are kept. Idempotent. */
  async detachVm(vmId: string): Promise<void> {
    checkToken(vmId, 'vmId', VMID_MAX, {})
    return this.#sched.vm(vmId, async () => {
      const known = this.#known.get(vmId)
      if (known) known.attached = false
      await this.#write((maps) => ({
        commands: maps ? this.#staleFor(maps, vmChainNames(vmId), undefined).map((s) => elementDelete(this.table, s.map, s.key)) : [],
      }))
    })
  }

  /** Dispatches `tap`'s traffic to the VM's existing chains (VM started). Idempotent. */
  async attachVm(vmId: string, tap: string): Promise<void> {
    checkToken(vmId, 'vmId', VMID_MAX, {})
    checkIfname(tap, 'tap', { vmId })
    return this.#sched.vm(vmId, async () => {
      const chains = vmChainNames(vmId)
      try {
        await this.#write((maps) => {
          if (!maps) throw new FirewallError('VM_NOT_FOUND', `no firewall table: apply VM ${vmId} first`, vmId)
          const stale = this.#staleFor(maps, chains, tap)
          const ok = maps[MAP_FROM_VM].get(tap) === chains.out && maps[MAP_TO_VM].get(tap) === chains.in
          return {
            commands:
              ok && stale.length === 0
                ? []
                : [
                    ...stale.map((s) => elementDelete(this.table, s.map, s.key)),
                    elementAdd(this.table, MAP_FROM_VM, tap, chains.out),
                    elementAdd(this.table, MAP_TO_VM, tap, chains.in),
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
      const caps = await this.capabilities()
      const compiled = vms.map((vm) => compileVm(vm, { capabilities: caps, conntrack: this.conntrack, logDrops: this.logDrops }))
      // Nobody committed since our last full sync: the table is what that sync wrote, no listing needed.
      const read = await this.#nft.generation()
      const known = this.#synced?.generation === read ? this.#synced.table : undefined
      const k = known ?? (await this.#readTable())
      const readAt = known || (await this.#nft.generation()) === read ? read : -1
      if (!known) await this.#learnRenderings(k, compiled)
      const res: SyncResult = { added: [], changed: [], removed: [], reattached: [], unchanged: [], removedChains: [], results: {} }
      const deletes: NftCommand[] = []
      const chainOps: NftCommand[] = []
      const adds: NftCommand[] = []
      const head =
        !k.exists || k.problems.length > 0
          ? [
              ...k.recreate.flatMap((name): NftCommand[] => [
                { flush: { chain: { family: FAMILY, table: this.table, name } } },
                { delete: { chain: { family: FAMILY, table: this.table, name } } },
              ]),
              ...tableCommands(this.table),
            ]
          : []
      const wanted = new Map<string, string>() // chain -> vmId
      const fromWant = new Map<string, string>() // tap -> chain
      const toWant = new Map<string, string>()
      for (const c of compiled) {
        wanted.set(c.chains.out, c.vmId)
        wanted.set(c.chains.in, c.vmId)
        fromWant.set(c.tap, c.chains.out)
        toWant.set(c.tap, c.chains.in)
        res.results[c.vmId] = c.result
      }
      // Dispatch entries: delete wrong or orphan ones, add missing ones.
      for (const [map, want] of [
        [MAP_FROM_VM, fromWant],
        [MAP_TO_VM, toWant],
      ] as const) {
        const have = k.maps[map]
        for (const [key, target] of have) {
          if (want.get(key) === target) continue
          // prune 'none' leaves other VMs' entries alone: only our taps, and entries into our chains, are fixed.
          if (prune === 'all' || want.has(key) || wanted.has(target)) deletes.push(elementDelete(this.table, map, key))
        }
        for (const [key, target] of want) if (have.get(key) !== target) adds.push(elementAdd(this.table, map, key, target))
      }
      for (const c of compiled) {
        const drift = { missing: [], extra: [], changed: [] }
        const outOk = diffChain(c.chains.out, c.out, k.chains.has(c.chains.out) ? k.rules.get(c.chains.out) ?? [] : undefined, drift, this.#rendering)
        const inOk = diffChain(c.chains.in, c.in, k.chains.has(c.chains.in) ? k.rules.get(c.chains.in) ?? [] : undefined, drift, this.#rendering)
        const existed = k.chains.has(c.chains.out) || k.chains.has(c.chains.in)
        const dispatchOk = k.maps[MAP_FROM_VM].get(c.tap) === c.chains.out && k.maps[MAP_TO_VM].get(c.tap) === c.chains.in
        if (!outOk || !inOk) {
          chainOps.push(...vmApplyCommands(this.table, c, [], false).filter((cmd) => !('element' in (Object.values(cmd)[0] as object))))
          ;(existed ? res.changed : res.added).push(c.vmId)
        } else if (!dispatchOk) {
          res.reattached.push(c.vmId)
        } else {
          res.unchanged.push(c.vmId)
        }
      }
      // Orphan chains: ours by name, not wanted (with prune 'none': kept, they may be another writer's VMs).
      for (const entry of prune === 'all' ? inventoryOf(k) : []) {
        const chains = entry.chains.filter((ch) => !wanted.has(ch))
        if (chains.length === 0) continue
        for (const chain of chains) chainOps.push(...chainDeleteCommands(this.table, chain))
        if (entry.vmId !== undefined && !ids.has(entry.vmId)) res.removed.push(entry.vmId)
        else res.removedChains.push(...chains)
      }
      const commands = [...(head.length === 0 && chainOps.length > 0 ? setCommands(this.table) : head), ...deletes, ...chainOps, ...adds]
      this.#synced = undefined
      const w = await this.#view.write(commands, { createsSets: head.length > 0 || chainOps.length > 0 })
      this.#known.clear()
      for (const c of compiled) this.#known.set(c.vmId, { compiled: c, attached: true })
      // The table is now exactly the set (prune 'all'), if only this batch was committed since the read.
      if (prune === 'all' && readAt === w.before && w.after - w.before <= 1 && !this.#nft.options.dryRun) {
        this.#synced = { generation: w.after, table: tableOf(compiled) }
        this.#view.adopt(w.after, this.#synced.table.maps, true)
      }
      return res
    })
  }

  /** Drift between the kernel (read now, one listing) and a desired set: `desired` when given (all attached,
   *  like sync()), else what this instance last applied (applyVm/sync/attach/detach). */
  async verify(desired?: VmSpec[]): Promise<VerifyResult> {
    const vms = desired?.map(normalizeVm)
    return this.#sched.exclusive(async () => {
      let expected: Known[]
      if (vms) {
        const caps = await this.capabilities()
        expected = vms.map((vm) => ({ compiled: compileVm(vm, { capabilities: caps, conntrack: this.conntrack, logDrops: this.logDrops }), attached: true }))
      } else {
        expected = [...this.#known.values()]
      }
      const k = await this.#readTable()
      await this.#learnRenderings(k, expected.map((e) => e.compiled))
      const result: VerifyResult = { ok: true, vms: [], orphans: [], table: k.exists ? k.problems : ['table missing'] }
      const owned = new Set<string>()
      for (const known of expected) {
        const c = known.compiled
        owned.add(c.chains.out)
        owned.add(c.chains.in)
        const drift: VmDrift = { vmId: c.vmId, chains: c.chains, status: 'ok', missing: [], extra: [], changed: [] }
        const outOk = diffChain(c.chains.out, c.out, k.chains.has(c.chains.out) ? k.rules.get(c.chains.out) ?? [] : undefined, drift, this.#rendering)
        const inOk = diffChain(c.chains.in, c.in, k.chains.has(c.chains.in) ? k.rules.get(c.chains.in) ?? [] : undefined, drift, this.#rendering)
        dispatchDrift(k.maps, c, known.attached, drift)
        const chainsGone = !k.chains.has(c.chains.out) && !k.chains.has(c.chains.in)
        if (chainsGone) drift.status = 'missing'
        else if (!outOk || !inOk || drift.missing.length || drift.extra.length || drift.changed.length) drift.status = 'changed'
        if (drift.status !== 'ok') result.ok = false
        result.vms.push(drift)
      }
      for (const entry of inventoryOf(k)) {
        const chains = entry.chains.filter((ch) => !owned.has(ch))
        if (chains.length === 0) continue
        result.orphans.push(entry.vmId !== undefined ? { vmId: entry.vmId, chains } : { chains })
      }
      if (result.orphans.length || result.table.length) result.ok = false
      return result
    })
  }

  /** Puts back what this instance last applied (applyVm/sync/attach/detach) where the kernel differs from it,
   *  in one transaction: the table, base chains and maps when they are damaged, and each known VM whose chains
   *  or dispatch entries differ. Chains and entries of VMs this instance does not know are left alone (another
   *  writer's, with prune 'none'). Writes nothing when everything matches. What `watch({ repair: true })` runs. */
  async repair(): Promise<RepairResult> {
    return this.#sched.exclusive(async () => {
      const known = [...this.#known.values()]
      const k = await this.#readTable()
      await this.#learnRenderings(k, known.map((e) => e.compiled))
      const table = !k.exists || k.problems.length > 0
      const head = table
        ? [
            ...k.recreate.flatMap((name): NftCommand[] => [
              { flush: { chain: { family: FAMILY, table: this.table, name } } },
              { delete: { chain: { family: FAMILY, table: this.table, name } } },
            ]),
            ...tableCommands(this.table),
          ]
        : []
      const vms: string[] = []
      const body: NftCommand[] = []
      for (const { compiled: c, attached } of known) {
        const drift: VmDrift = { vmId: c.vmId, chains: c.chains, status: 'ok', missing: [], extra: [], changed: [] }
        const outOk = diffChain(c.chains.out, c.out, k.chains.has(c.chains.out) ? k.rules.get(c.chains.out) ?? [] : undefined, drift, this.#rendering)
        const inOk = diffChain(c.chains.in, c.in, k.chains.has(c.chains.in) ? k.rules.get(c.chains.in) ?? [] : undefined, drift, this.#rendering)
        dispatchDrift(k.maps, c, attached, drift)
        if (outOk && inOk && !drift.missing.length && !drift.extra.length && !drift.changed.length) continue
        vms.push(c.vmId)
        body.push(...vmApplyCommands(this.table, c, this.#staleFor(k.maps, c.chains, attached ? c.tap : undefined), attached))
      }
      if (!table && body.length === 0) return { ok: true, table: false, vms: [] }
      this.#synced = undefined
      const w = await this.#view.write([...(table ? head : setCommands(this.table)), ...body], { createsSets: true })
      return { ok: false, table, vms, generation: w.after }
    })
  }

  /** Reports, within milliseconds, every change someone else makes to this firewall's table (nf_tables
   *  notifications read on a thread in the instance's namespace); `repair: true` puts it back with `repair()`.
   *  Stop it with `stop()`. See watch.ts. */
  watch(options: WatchOptions = {}): FirewallWatch {
    return new FirewallWatch(this, this.#nft, options)
  }

  /** Packets the `logDrops` rules logged, as typed events (nfnetlink_log group read in the instance's
   *  namespace). Stop it with `stop()`. See blocked.ts. */
  blocked(options: BlockedOptions = {}): BlockedStream {
    return new BlockedStream(this, this.#nft, options)
  }

  /** The VMs present in the kernel's table (one listing), whoever applied them. */
  async inventory(): Promise<VmInventoryEntry[]> {
    return this.#sched.exclusive(async () => inventoryOf(await this.#readTable()))
  }

  /** Packets and bytes per rule id, read from the kernel's counters. */
  async stats(vmId: string): Promise<VmStats> {
    checkToken(vmId, 'vmId', VMID_MAX, {})
    return this.#sched.vm(vmId, async () => {
      const chains = vmChainNames(vmId)
      const zero = (): RuleCounters => ({ packets: 0, bytes: 0, out: { packets: 0, bytes: 0 }, in: { packets: 0, bytes: 0 } })
      const stats: VmStats = { vmId, rules: {}, default: zero(), builtin: {} }
      for (const side of ['out', 'in'] as const) {
        let doc: NftablesJson
        try {
          doc = await this.#nft.listChain(FAMILY, this.table, chains[side])
        } catch (e) {
          if (isNotFound(e)) throw new FirewallError('VM_NOT_FOUND', `VM ${vmId} has no chains`, vmId)
          throw e
        }
        for (const o of doc.nftables) {
          if (!('rule' in o)) continue
          const r = o.rule as { comment?: string; expr?: unknown[] }
          const p = parseComment(r.comment)
          if (!p) continue
          const c = counterOf(r.expr ?? [])
          const bucket =
            p.kind === 'd' ? stats.default : p.kind === 'b' ? (stats.builtin[p.tag] ??= zero()) : (stats.rules[p.tag] ??= zero())
          bucket.packets += c.packets
          bucket.bytes += c.bytes
          bucket[side].packets += c.packets
          bucket[side].bytes += c.bytes
        }
      }
      return stats
    })
  }

  /** An idempotent nft script recreating the table exactly (for `nft -f` at boot or restoreRuleset()). */
  async exportRuleset(): Promise<string> {
    if (this.#nft.options?.terse) {
      // `-t` omits set and map contents: the export would lose every VM's dispatch entry.
      throw new FirewallValidationError('nft', 'exportRuleset() needs an Nft without the `terse` option')
    }
    return this.#sched.exclusive(async () => {
      const listing = await this.#nft.run(`list table ${FAMILY} ${this.table}`)
      return [
        `# @infinibay/nftables-node VmFirewall export: replaces table ${FAMILY} ${this.table} atomically`,
        `table ${FAMILY} ${this.table} {}`,
        `delete table ${FAMILY} ${this.table}`,
        listing.trimEnd(),
        '',
      ].join('\n')
    })
  }

  /** Applies an exportRuleset() file of this firewall's table in one transaction; anything else (other tables,
   *  `include`, `define`, `flush ruleset`, ...) is a RestoreValidationError naming the line, checked before
   *  libnftables sees it. Forgets what this instance knew about VMs. */
  async restoreRuleset(text: string): Promise<void> {
    const { script } = checkRestore(text, this.table, FAMILY)
    return this.#sched.exclusive(async () => {
      this.#view.invalidate()
      await this.#nft.run(script)
      this.#known.clear()
    })
  }

  /** VMs this instance applied (the desired state verify() compares with). */
  knownVms(): string[] {
    return [...this.#known.keys()]
  }

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
    for (const [name, hook] of [
      [CHAIN_PREROUTING, 'prerouting'],
      [CHAIN_POSTROUTING, 'postrouting'],
    ] as const) {
      let doc: NftablesJson
      try {
        doc = await this.#nft.listChain(FAMILY, this.table, name)
      } catch (e) {
        if (isNotFound(e)) continue
        throw e
      }
      const c = doc.nftables.find((o) => 'chain' in o)?.chain as { type?: string; hook?: string; prio?: number } | undefined
      if (c && c.type === 'filter' && c.hook === hook && c.prio === BASE_PRIORITY) continue
      repairs.push({ flush: { chain: { family: FAMILY, table: this.table, name } } }, { delete: { chain: { family: FAMILY, table: this.table, name } } })
    }
    return repairs
  }

  async #readTable(): Promise<KernelTable> {
    try {
      return parseTable(await this.#nft.listTable(FAMILY, this.table))
    } catch (e) {
      if (isNotFound(e)) return parseTable(undefined)
      throw e
    }
  }

  /** Map entries to delete so that only `tap` (if given) dispatches to `chains`, and `tap` to nothing else. */
  #staleFor(maps: { [MAP_FROM_VM]: Elements; [MAP_TO_VM]: Elements }, chains: { out: string; in: string }, tap: string | undefined) {
    const stale: { map: string; key: string }[] = []
    for (const [map, chain] of [
      [MAP_FROM_VM, chains.out],
      [MAP_TO_VM, chains.in],
    ] as const) {
      for (const [key, target] of maps[map]) {
        if ((target === chain && key !== tap) || (key === tap && target !== chain)) stale.push({ map, key })
      }
    }
    return stale
  }

  /** Another VM that had this tap is now detached (its dispatch entry was replaced). */
  #noteTakeover(vmId: string, tap: string): void {
    for (const [id, known] of this.#known) if (id !== vmId && known.compiled.tap === tap) known.attached = false
  }
}
