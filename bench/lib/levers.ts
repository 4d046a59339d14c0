// The commit-cost levers of issue 15, control plane: replace one VM's chains at N VMs for variants A
// (identity rules per VM), B (shared identity sets) and C (B over K shard tables), through `nft -f -`,
// Nft.run (text) and the kernel floor (the same kind of rule batch as netlink messages, committed without
// libnftables through Nft.commitBatch). All variants of one N are loaded side by side, each in
// its own namespace (libnftables 1.0.6 dumps every table of a namespace into its cache), and every round
// runs every path on every variant (orders rotated), so ratios between paths and between variants are paired.
import type { Nft } from '../../ts/index.js'
import { encodeBatch } from '../../ts/firewall/netlink-batch.js'
import { Drivers } from './drivers.js'
import { vmNames } from './gen.js'
import { guardRulesPre, identityElementCount, replaceElementCount, identityRuleCount, leverIdentityText, leverSpecs, leverRulesetText, roundTrip, leverReplaceText, replaceRuleCount, sharedRulesPre, specLabel, tableOf, USER_RULES_PER_CHAIN, validatedRules, type LeverSpec, type LeverVariant } from './levers-gen.js'
import { createNetns, deleteNetns } from './netns.js'
import { median, pairedRatio, rotate, summarize } from './stats.js'
import type { LeverCell, LeverPath, LeversResult } from './types.js'
import type { Ctx } from './workloads.js'

export interface LeverOptions {
  vmCounts: number[]
  shards: number[]
  rounds: number
  /** Batches per floor run (its per-round sample is their median). */
  floorIterations: number
  /** One-table variants besides A (default all: B, B2, B3, E, F, G). */
  variants?: LeverVariant[]
}

/**
 * The kernel floor of a rule batch: the VM's out chain flushed and `rules` generic rules added (ip saddr, tcp
 * dport, counter, drop, comment), as nf_tables netlink messages encoded before the clock starts and
 * committed without libnftables (`Nft.commitBatchSync`: no cache, no parse; what is left is the kernel's
 * commit and one round trip to the instance's thread). Undefined if the encoder cannot spell it.
 */
export function floorBatch(table: string, chain: string, rules: number, variant: number): Buffer | undefined {
  const match = (left: unknown, right: unknown) => ({ match: { op: '==', left, right } })
  const commands: unknown[] = [{ flush: { chain: { family: 'bridge', table, name: chain } } }]
  for (let i = 0; i < rules; i++) {
    const expr = [
      match({ payload: { protocol: 'ip', field: 'saddr' } }, `198.51.${100 + (variant % 100)}.${1 + (i % 250)}`),
      match({ meta: { key: 'l4proto' } }, 'tcp'),
      match({ payload: { protocol: 'tcp', field: 'dport' } }, 1000 + i),
      { counter: { packets: 0, bytes: 0 } },
      { drop: null },
    ]
    commands.push({ add: { rule: { family: 'bridge', table, chain, comment: `floor${i}v${variant}`, expr } } })
  }
  return encodeBatch(table, commands)
}

/** One floor run on `nft`'s namespace: `iters` batches (each encoded beforehand); the median batch time. */
function runFloor(nft: Nft, table: string, chain: string, rules: number, iters: number, variant: number): number {
  const times: number[] = []
  for (let i = 0; i < iters; i++) {
    const buffer = floorBatch(table, chain, rules, variant * iters + i)!
    const t0 = process.hrtime.bigint()
    nft.commitBatchSync(table, buffer)
    times.push(Number(process.hrtime.bigint() - t0) / 1e6)
  }
  return median(times)
}

export async function leversWorkload(ctx: Ctx, o: LeverOptions): Promise<LeversResult> {
  const floor = floorBatch('t', 'c', 1, 0)
    ? { available: true, note: 'kernel floor: the batch as netlink messages, committed without libnftables (Nft.commitBatchSync)' }
    : { available: false, note: 'kernel floor not measured: the netlink encoder cannot spell its batch' }
  ctx.log(`    ${floor.note}`)
  const notes: string[] = []
  const cells: LeverCell[] = []
  const paths: LeverPath[] = floor.available ? ['nft-f', 'lib-text', 'floor'] : ['nft-f', 'lib-text']
  let syntaxChecked = false
  const notedGuard = new Set<string>()
  try {
    for (const vms of o.vmCounts) {
      const specs = leverSpecs(vms, o.shards, o.variants)
      const target = Math.floor(vms / 2)
      const vm = vmNames(target)
      // cur: the variant of the target's identity; rules: of its rules (a replace moves both, an identity change the first).
      const open: { spec: LeverSpec; ns: string; d: Drivers; cur: number; rules: number }[] = []
      try {
        for (const spec of specs) {
          const ns = createNetns(`lv${spec.variant}${spec.shards}`)
          const d = await Drivers.open(ns, { python: false })
          open.push({ spec, ns, d, cur: 0, rules: 0 })
          const t0 = Date.now()
          await d.nft.run(leverRulesetText(spec, vms))
          ctx.log(`    ${vms} VMs, ${specLabel(spec)}: loaded in ${Date.now() - t0} ms`)
          if ((spec.variant === 'B2' || spec.variant === 'B3') && !notedGuard.has(spec.variant)) {
            notedGuard.add(spec.variant)
            const rt = roundTrip(guardRulesPre(spec), await d.nft.run(`list chain bridge ${tableOf(spec, target)} pre`))
            notes.push(`variant ${spec.variant} syntax: loads; ${rt.exact} of ${guardRulesPre(spec).length} prerouting rules list back exactly as written${rt.differ.length ? ` (${rt.differ.map(([w, l]) => `\`${w}\` -> \`${l}\``).join('; ')})` : ''}`)
          }
          if (spec.variant === 'B' && !syntaxChecked) {
            syntaxChecked = true
            const rt = roundTrip(sharedRulesPre(), await d.nft.run(`list chain bridge ${tableOf(spec, target)} pre`))
            const concat = rt.differ.filter(([w]) => w.includes(' . '))
            notes.push(
              `variant B syntax: the ruleset loads on this kernel and libnftables (concatenations with ifname, negated lookups \`!= @set\`); ${rt.exact} of ${sharedRulesPre().length} shared prerouting rules list back exactly as written` +
                (concat.length ? `; concatenation rules that list differently: ${concat.map(([w, l]) => `\`${w}\` -> \`${l}\``).join('; ')}` : ', every concatenation among them') +
                (rt.differ.length - concat.length ? `; the others list as: ${rt.differ.filter(([w]) => !w.includes(' . ')).map(([w, l]) => `\`${w}\` -> \`${l}\``).join('; ')}` : ''),
            )
          }
        }
        const samples = new Map<LeverSpec, Record<LeverPath, number[]>>()
        const idSamples = new Map<LeverSpec, Record<LeverPath, number[]>>()
        for (const x of open) {
          samples.set(x.spec, { 'nft-f': [], 'lib-text': [], floor: [] })
          idSamples.set(x.spec, { 'nft-f': [], 'lib-text': [], floor: [] })
        }
        // The paths of a change that adds `ruleCount` rules: the floor only when it has rules to send (an
        // element-only change, an identity change of B* or a replace of E/F, has no rule batch for it).
        const pathsFor = (ruleCount: number): LeverPath[] => paths.filter((p) => p !== 'floor' || ruleCount > 0)
        const idPaths = (s: LeverSpec) => pathsFor(identityRuleCount(s))
        const replacePaths = (s: LeverSpec) => pathsFor(replaceRuleCount(s))
        // One timed operation of one path on one variant: the floor (when the change has rules to send), else
        // the next text of `change` through nft -f or Nft.run.
        let floorRuns = 0
        const timeOne = async (p: LeverPath, x: (typeof open)[number], change: typeof leverReplaceText, ruleCount: number): Promise<number> => {
          if (p === 'floor') return runFloor(x.d.nft, tableOf(x.spec, target), vm.out, ruleCount, o.floorIterations, floorRuns++)
          const text = change(x.spec, target, x.cur, x.cur + 1, x.rules)
          if (change === leverReplaceText) x.rules = x.cur + 1
          x.cur++
          if (p !== 'nft-f') return x.d.libText(text)
          await x.d.settle()
          return x.d.nftF(text)
        }
        for (let r = -1; r < o.rounds; r++) {
          for (const x of rotate(open, r + 1)) {
            for (const p of rotate(replacePaths(x.spec), r + 1)) {
              const ms = await timeOne(p, x, leverReplaceText, replaceRuleCount(x.spec))
              if (r >= 0) samples.get(x.spec)![p][r] = ms
            }
            for (const p of rotate(idPaths(x.spec), r)) {
              const ms = await timeOne(p, x, leverIdentityText, identityRuleCount(x.spec))
              if (r >= 0) idSamples.get(x.spec)![p][r] = ms
            }
          }
        }
        const aId = idSamples.get(specs[0]!)!
        const a = samples.get(specs[0]!)!
        for (const spec of specs) {
          const s = samples.get(spec)!
          const cell: LeverCell = {
            variant: spec.variant === 'B' && spec.shards > 1 ? 'C' : spec.variant,
            shards: spec.shards,
            label: specLabel(spec),
            vms,
            replaceRules: replaceRuleCount(spec),
            validatedRules: validatedRules(spec, vms, target),
            paths: {},
            vsNftF: {},
            vsA: {},
          }
          for (const p of replacePaths(spec)) {
            cell.paths[p] = { samples: s[p], summary: summarize(s[p]) }
            if (p !== 'nft-f') cell.vsNftF[p] = pairedRatio(s['nft-f'], s[p])
            if (spec !== specs[0]) cell.vsA[p] = pairedRatio(a[p], s[p])
          }
          const si = idSamples.get(spec)!
          const id: NonNullable<LeverCell['identity']> = { rules: identityRuleCount(spec), elements: identityElementCount(spec), paths: {}, vsA: {} }
          for (const p of idPaths(spec)) {
            id.paths[p] = { samples: si[p], summary: summarize(si[p]) }
            if (spec !== specs[0]) id.vsA[p] = pairedRatio(aId[p], si[p])
          }
          cell.identity = id
          cells.push(cell)
          ctx.log(`    ${vms} VMs, ${cell.label}: ${replacePaths(spec).map((p) => `${p} ${cell.paths[p]!.summary.median.toFixed(2)} ms`).join(', ')}; identity change ${idPaths(spec).map((p) => `${p} ${id.paths[p]!.summary.median.toFixed(2)} ms`).join(', ')}`)
        }
      } finally {
        for (const x of open) {
          x.d.close()
          deleteNetns(x.ns)
        }
      }
    }
  } finally {
  }
  notes.push(
    `replace = flush both VM chains + add their rules (A: ${replaceRuleCount({ variant: 'A', shards: 1 })} rules, B/C: ${replaceRuleCount({ variant: 'B', shards: 1 })} rules + delete/add of the VM's 3 identity elements: MAC, IPv4, IPv6 pair; E/F/G: no chains, delete/add of its rule elements (E: ${replaceElementCount({ variant: 'E', shards: 1 })}, F: ${replaceElementCount({ variant: 'F', shards: 1 })}, port ranges spelled as their ports), whose verdicts are accept/drop, and of its identity elements), one transaction, VM #⌊N/2⌋; its identity and rules change every replace`,
  )
  notes.push(
    `identity change = the VM's MAC/IPv4/IPv6 change, its user rules do not: A flushes its out chain and adds it again (${identityRuleCount({ variant: 'A', shards: 1 })} rules, the identity ones with the new addresses; its floor is that batch), B/B2/B3/E/F/G only delete the old identity elements and add the new ones (B, B2, E, F, G: ${identityElementCount({ variant: 'B', shards: 1 })} elements each way, B3: ${identityElementCount({ variant: 'B3', shards: 1 })}), no rule and no element carrying a verdict, so the kernel has no reason to validate the table; the floor batch is rules only, so an element-only change has no floor column: compare its Nft.run time with the floor of the rule batches`,
  )
  if (floor.available) {
    notes.push(
      `kernel floor: in the target's namespace, one batch = flush of the VM's out chain + as many generic rules (ip saddr, tcp dport, counter, drop, comment) as the variant's replace adds, no element update (encoded beforehand, committed by Nft.commitBatchSync without libnftables: the time from the send to the last ack; median of ${o.floorIterations} batches per round); no libnftables, no cache`,
    )
  }
  return { vmCounts: o.vmCounts, shards: o.shards, rounds: o.rounds, userRulesPerChain: USER_RULES_PER_CHAIN, floor: { available: floor.available, note: floor.note, iterations: o.floorIterations }, cells, notes }
}
