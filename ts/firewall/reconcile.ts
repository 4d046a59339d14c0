// Reconciliation, pure: the kernel's view of the table (a parsed listing) and the desired, compiled VMs in,
// drift and the commands that repair it out. No I/O: tested from listing fixtures without a kernel.
import type { NftCommand } from '../schema.js'
import type { CompiledRule, CompiledVm } from './compile.js'
import {
  FAMILY,
  MAP_FROM_VM,
  MAP_TO_VM,
  chainDeleteCommands,
  elementAdd,
  elementDelete,
  identityChanges,
  identityElements,
  inventoryOf,
  keyTap,
  setElementCommands,
  VM_SETS,
  setCommands,
  tableCommands,
  vmApplyCommands,
  type DispatchMaps,
  type KernelTable,
  type GuardLog,
  type SetContents,
  type SetElement,
} from './layout.js'

export type { DispatchMaps }
import type { SyncResult, VerifyResult, VmDrift } from './model.js'
import { ruleKey } from './rendering.js'

/** How the kernel lists a compiled rule back (rendering.ts learns it from the kernel; tests give fixtures). */
export interface Renderings {
  /** The kernel's rendering of `expr` as `ruleKey` of the listed rule, if known. */
  lookup(expr: readonly unknown[]): string | undefined
}

/** A VM as the desired state holds it: compiled, and whether its tap should dispatch to it. */
export interface Desired {
  compiled: CompiledVm
  attached: boolean
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
function sameRule(listed: unknown[], want: CompiledRule, rendering: Renderings): boolean {
  const reference = rendering.lookup(want.expr)
  return reference !== undefined ? ruleKey(listed) === reference : canonicalExpr(listed) === canonicalExpr(want.expr)
}

export interface KernelRule {
  comment?: string
  expr?: unknown[]
  /** The rule as we compiled and wrote it (a table known from our own last sync, not listed). */
  ours?: boolean
}

/** Compares a kernel chain with the compiled one: rule identity (comments), order, and each rule's statements. */
export function diffChain(
  name: string,
  want: CompiledRule[],
  have: KernelRule[] | undefined,
  drift: { missing: string[]; extra: string[]; changed: string[] },
  rendering: Renderings,
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

/** Dispatch entries of one VM compared with what they should be (tap -> its chains, or none when detached),
 *  and (given `sets`, the guard's set contents; null: the guard's sets are missing) its guard elements, which
 *  are part of its dispatch: `dispatch:<set>:<key>`. */
export function dispatchDrift(
  maps: DispatchMaps,
  c: CompiledVm,
  attached: boolean,
  drift: { missing: string[]; extra: string[] },
  sets?: SetContents | null,
): void {
  const taps = new Set<string>(attached ? [c.tap] : [])
  for (const [map, chain] of [
    [MAP_FROM_VM, c.chains.out],
    [MAP_TO_VM, c.chains.in],
  ] as const) {
    const keys = [...maps[map]].filter(([, t]) => t === chain).map(([key]) => key)
    if (attached && !keys.includes(c.tap)) drift.missing.push(`dispatch:${map}:${c.tap}`)
    for (const key of keys) if (!attached || key !== c.tap) drift.extra.push(`dispatch:${map}:${key}`)
    for (const key of keys) taps.add(key)
  }
  if (sets === undefined) return
  const e = identityChanges(sets ?? new Map(), taps, attached ? identityElements(c.identity, c.tap) : [])
  drift.missing.push(...e.add.map((x) => `dispatch:${x.set}:${x.key}`))
  drift.extra.push(...e.del.map((x) => `dispatch:${x.set}:${x.key}`))
}

/** The guard elements to delete and add for one VM (see dispatchDrift): its tap and those dispatching to it. */
export function vmElementChanges(maps: DispatchMaps, sets: SetContents, c: CompiledVm, attached: boolean): { del: SetElement[]; add: SetElement[] } {
  const taps = new Set<string>(attached ? [c.tap] : [])
  for (const { key } of staleEntries(maps, c.chains, undefined)) taps.add(key)
  return identityChanges(sets, taps, attached ? identityElements(c.identity, c.tap) : [])
}

/** Map entries to delete so that only `tap` (if given) dispatches to `chains`, and `tap` to nothing else. */
export function staleEntries(maps: DispatchMaps, chains: { out: string; in: string }, tap: string | undefined): { map: string; key: string }[] {
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

/** Drift of one VM: its two chains as listed (undefined: missing) and the dispatch maps (undefined: the
 *  dispatch is not compared). */
export function vmDrift(
  c: CompiledVm,
  outRules: KernelRule[] | undefined,
  inRules: KernelRule[] | undefined,
  maps: DispatchMaps | undefined,
  attached: boolean,
  renderings: Renderings,
  sets?: SetContents | null,
): VmDrift {
  const drift: VmDrift = { vmId: c.vmId, chains: c.chains, status: 'ok', missing: [], extra: [], changed: [] }
  const outOk = diffChain(c.chains.out, c.out, outRules, drift, renderings)
  const inOk = diffChain(c.chains.in, c.in, inRules, drift, renderings)
  if (maps) dispatchDrift(maps, c, attached, drift, sets)
  if (!outRules && !inRules) drift.status = 'missing'
  else if (!outOk || !inOk || drift.missing.length || drift.extra.length || drift.changed.length) drift.status = 'changed'
  return drift
}

/** Drift between a listed table and the desired VMs: per VM, orphans (VM chains nobody wants), table problems. */
export function verifyTable(k: KernelTable, expected: readonly Desired[], renderings: Renderings): VerifyResult {
  const result: VerifyResult = { ok: true, vms: [], orphans: [], table: k.exists ? [...k.problems] : ['table missing'] }
  const owned = new Set<string>()
  for (const known of expected) {
    const c = known.compiled
    owned.add(c.chains.out)
    owned.add(c.chains.in)
    const drift: VmDrift = { vmId: c.vmId, chains: c.chains, status: 'ok', missing: [], extra: [], changed: [] }
    const outOk = diffChain(c.chains.out, c.out, k.chains.has(c.chains.out) ? k.rules.get(c.chains.out) ?? [] : undefined, drift, renderings)
    const inOk = diffChain(c.chains.in, c.in, k.chains.has(c.chains.in) ? k.rules.get(c.chains.in) ?? [] : undefined, drift, renderings)
    dispatchDrift(k.maps, c, known.attached, drift, k.sets)
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
  // Guard elements of interfaces that dispatch to no VM: nobody's identity (a removed VM's, left behind).
  const orphanElements = [...k.sets].flatMap(([set, keys]) => [...keys].filter((key) => !k.maps[MAP_FROM_VM].has(keyTap(key)) && !k.maps[MAP_TO_VM].has(keyTap(key))).map((key) => `${set}:${key}`))
  if (orphanElements.length) result.table.push(`guard elements of undispatched interfaces: ${orphanElements.join(', ')}`)
  if (result.orphans.length || result.table.length) result.ok = false
  return result
}

export interface SyncPlan {
  commands: NftCommand[]
  result: SyncResult
  /** The batch (re)adds the table and its shared sets. */
  createsSets: boolean
}

/** The one transaction that turns the listed table into the desired set (see VmFirewall.sync for `prune`). */
export function planSync(
  k: KernelTable,
  compiled: readonly CompiledVm[],
  opts: { table: string; prune: 'all' | 'none'; renderings: Renderings; log?: GuardLog },
): SyncPlan {
  const { table, prune, renderings, log } = opts
  const ids = new Set(compiled.map((c) => c.vmId))
  const res: SyncResult = { added: [], changed: [], removed: [], reattached: [], unchanged: [], removedChains: [], results: {} }
  const deletes: NftCommand[] = []
  const chainOps: NftCommand[] = []
  const adds: NftCommand[] = []
  // An absent table: everything below is created by this batch, nothing to flush.
  const fresh = !k.exists
  const head =
    !k.exists || k.problems.length > 0
      ? [...recreateBaseChains(k, table), ...tableCommands(table, fresh, log)]
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
      if (prune === 'all' || want.has(key) || wanted.has(target)) deletes.push(elementDelete(table, map, key))
    }
    for (const [key, target] of want) if (have.get(key) !== target) adds.push(elementAdd(table, map, key, target))
  }
  // The guard's elements (issue 15): exactly the desired VMs' identities for their taps; with prune 'none' only
  // those of our taps and of taps dispatching to our chains are removed.
  const wantElems = new Map<string, Set<string>>(VM_SETS.map((n) => [n, new Set<string>()]))
  for (const c of compiled) for (const e of identityElements(c.identity, c.tap)) wantElems.get(e.set)!.add(e.key)
  const ours = (tap: string) => fromWant.has(tap) || wanted.has(k.maps[MAP_FROM_VM].get(tap) ?? '') || wanted.has(k.maps[MAP_TO_VM].get(tap) ?? '')
  const elemDel: SetElement[] = []
  const elemAdd: SetElement[] = []
  const elemDrift = new Set<string>() // taps whose elements differ
  for (const set of VM_SETS) {
    const have = k.sets.get(set) ?? new Set<string>()
    for (const key of have) {
      if (wantElems.get(set)!.has(key)) continue
      if (prune === 'all' || ours(keyTap(key))) {
        elemDel.push({ set, key })
        elemDrift.add(keyTap(key))
      }
    }
    for (const key of wantElems.get(set)!) {
      if (have.has(key)) continue
      elemAdd.push({ set, key })
      elemDrift.add(keyTap(key))
    }
  }
  deletes.push(...setElementCommands(table, 'delete', elemDel))
  adds.push(...setElementCommands(table, 'add', elemAdd))
  for (const c of compiled) {
    const drift = { missing: [], extra: [], changed: [] }
    const outOk = diffChain(c.chains.out, c.out, k.chains.has(c.chains.out) ? k.rules.get(c.chains.out) ?? [] : undefined, drift, renderings)
    const inOk = diffChain(c.chains.in, c.in, k.chains.has(c.chains.in) ? k.rules.get(c.chains.in) ?? [] : undefined, drift, renderings)
    const existed = k.chains.has(c.chains.out) || k.chains.has(c.chains.in)
    const dispatchOk = k.maps[MAP_FROM_VM].get(c.tap) === c.chains.out && k.maps[MAP_TO_VM].get(c.tap) === c.chains.in && !elemDrift.has(c.tap)
    if (!outOk || !inOk) {
      chainOps.push(...vmApplyCommands(table, c, [], false, fresh).filter((cmd) => !('element' in (Object.values(cmd)[0] as object))))
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
    for (const chain of chains) chainOps.push(...chainDeleteCommands(table, chain))
    if (entry.vmId !== undefined && !ids.has(entry.vmId)) res.removed.push(entry.vmId)
    else res.removedChains.push(...chains)
  }
  const commands = [...(head.length === 0 && chainOps.length > 0 ? setCommands(table) : head), ...deletes, ...chainOps, ...adds]
  return { commands, result: res, createsSets: head.length > 0 || chainOps.length > 0 }
}

/**
 * The one transaction that puts back what an instance last applied where the listed table differs: the table,
 * base chains and maps when damaged, and each known VM whose chains or dispatch entries differ. Chains and
 * entries of VMs not in `known` are left alone (another writer's). Empty when everything matches.
 */
export function planRepair(
  k: KernelTable,
  known: readonly Desired[],
  opts: { table: string; renderings: Renderings; log?: GuardLog },
): { commands: NftCommand[]; table: boolean; vms: string[] } {
  const { table, renderings, log } = opts
  const damaged = !k.exists || k.problems.length > 0
  const vms: string[] = []
  const body: NftCommand[] = []
  for (const { compiled: c, attached } of known) {
    const drift: VmDrift = { vmId: c.vmId, chains: c.chains, status: 'ok', missing: [], extra: [], changed: [] }
    const outOk = diffChain(c.chains.out, c.out, k.chains.has(c.chains.out) ? k.rules.get(c.chains.out) ?? [] : undefined, drift, renderings)
    const inOk = diffChain(c.chains.in, c.in, k.chains.has(c.chains.in) ? k.rules.get(c.chains.in) ?? [] : undefined, drift, renderings)
    dispatchDrift(k.maps, c, attached, drift, k.sets)
    if (outOk && inOk && !drift.missing.length && !drift.extra.length && !drift.changed.length) continue
    vms.push(c.vmId)
    body.push(...vmApplyCommands(table, c, staleEntries(k.maps, c.chains, attached ? c.tap : undefined), attached, false, vmElementChanges(k.maps, k.sets, c, attached)))
  }
  if (!damaged && body.length === 0) return { commands: [], table: false, vms: [] }
  const head = damaged ? [...recreateBaseChains(k, table), ...tableCommands(table, false, log)] : setCommands(table)
  return { commands: [...head, ...body], table: damaged, vms }
}

/** Deletes the base chains a listing found at another type/hook/priority (recreated by tableCommands after). */
function recreateBaseChains(k: KernelTable, table: string): NftCommand[] {
  return k.recreate.flatMap((name): NftCommand[] => [
    { flush: { chain: { family: FAMILY, table, name } } },
    { delete: { chain: { family: FAMILY, table, name } } },
  ])
}
