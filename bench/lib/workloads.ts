// The control-plane workloads. Each one builds its namespace(s), loads the starting ruleset untimed, then
// runs rounds: in every round each path does the operation once (path order rotated per round), followed by
// an untimed restore, so all paths see the same ruleset size and ratios are taken round by round.
import { Nft } from '../../ts/index.js'
import { Drivers, type PathId } from './drivers.js'
import { createNetns, deleteNetns } from './netns.js'
import {
  ADD_TABLE,
  addChainName,
  addVmCmds,
  batch,
  deleteTableCmd,
  fullRulesetCmds,
  preloadAddText,
  probeRuleCmd,
  removeVmCmds,
  replaceVmCmds,
  vmNames,
  type Batch,
} from './gen.js'
import { pairedRatio, rotate, summarize } from './stats.js'
import type { PathResult, WorkloadResult } from './types.js'
import type { FirewallAdapter } from './vmfirewall.js'

export interface Ctx {
  python: boolean
  /** Only these paths (all when undefined). */
  paths?: Set<string>
  log: (msg: string) => void
  firewall?: FirewallAdapter
}

export const RAW_PATHS: PathId[] = ['spawn', 'nft-f', 'lib-text', 'lib-json', 'py-text', 'py-json']

type Op = (p: PathId, round: number) => Promise<number>
type Restore = (p: PathId, round: number) => Promise<void>

/**
 * Runs `rounds` rounds (+1 untimed warm-up round) over `paths`; returns per-path samples.
 *
 * Before each CLI op, `settle` runs an untimed `nft -f -` of empty input (no cache fetch): after any deletion (a restore, or another
 * path's flush) the kernel defers freeing to an RCU grace period, and the next process that closes an
 * nf_tables netlink socket waits for it (~10 ms here). Without settling, a spawned `nft` would be charged
 * for the previous path's deletions; with it, each CLI run pays only for its own.
 */
export async function runRounds(
  paths: PathId[],
  rounds: number,
  op: Op,
  restore?: Restore,
  settle?: () => Promise<unknown>,
  warmup = true,
  endRound?: () => Promise<void>,
): Promise<Record<string, (number | undefined)[]>> {
  const samples: Record<string, (number | undefined)[]> = {}
  for (const p of paths) samples[p] = []
  for (let r = warmup ? -1 : 0; r < rounds; r++) {
    for (const p of rotate(paths, r + 1)) {
      if (settle && (p === 'spawn' || p === 'nft-f')) await settle()
      const ms = await op(p, r)
      if (r >= 0) samples[p]![r] = ms
      if (restore) await restore(p, r)
    }
    if (endRound) await endRound()
  }
  return samples
}

export function toResult(
  base: Omit<WorkloadResult, 'paths' | 'vsSpawn' | 'vsNftF' | 'rounds' | 'notes'> & { notes?: string[] },
  samples: Record<string, (number | undefined)[]>,
  rounds: number,
  extra: Partial<Record<PathId, Partial<PathResult>>> = {},
): WorkloadResult {
  const paths: WorkloadResult['paths'] = {}
  const vsSpawn: WorkloadResult['vsSpawn'] = {}
  const vsNftF: WorkloadResult['vsNftF'] = {}
  for (const [p, s] of Object.entries(samples)) {
    paths[p as PathId] = { samples: s, summary: summarize(s.filter((x): x is number => x !== undefined)), ...extra[p as PathId] }
  }
  for (const p of Object.keys(samples) as PathId[]) {
    if (samples.spawn && p !== 'spawn') vsSpawn[p] = pairedRatio(samples.spawn, samples[p]!)
    if (samples['nft-f'] && p !== 'nft-f') vsNftF[p] = pairedRatio(samples['nft-f'], samples[p]!)
  }
  return { ...base, notes: base.notes ?? [], rounds, paths, vsSpawn, vsNftF }
}

let ctxPaths: Set<string> | undefined
function rawPaths(d: Drivers): PathId[] {
  return RAW_PATHS.filter((p) => (!p.startsWith('py-') || d.py) && (!ctxPaths || ctxPaths.has(p)))
}
function useFw(ctx: Ctx): boolean {
  ctxPaths = ctx.paths
  return ctx.firewall !== undefined && (!ctx.paths || ctx.paths.has('vmfw'))
}

// ---------------------------------------------------------------------------------------------

const NO_RESTORE_FROM = 10_000

/** Add one rule with `rules` rules loaded, in one chain or spread over `chains` chains. */
export async function addRuleWorkload(ctx: Ctx, rules: number, chains: number, rounds: number): Promise<WorkloadResult> {
  useFw(ctx)
  const layout = chains === 1 ? 'one-chain' : `${chains}-chains`
  const ns = createNetns('add')
  let d: Drivers | undefined
  const echo = new Nft({ netns: ns, echo: true, handles: true })
  try {
    d = await Drivers.open(ns, { python: ctx.python })
    const settle = () => d!.settle()
    await d.nft.run(preloadAddText(rules, chains))
    // With a large table, deleting the added rules again costs far more than adding them (a `delete rule`
    // makes libnftables 1.0.6 fetch every rule of the table: seconds at 50k), so from `NO_RESTORE_FROM`
    // rules on nothing is deleted: the chain grows by one rule per path and round (< 0.1% at 50k in one
    // chain; in the spread layout each round adds to the next chain, so each chain gains at most one rule
    // per path). Below that, the rules added in a round are deleted in one transaction at its end, by their
    // predicted handles (rule handles are allocated in sequence per table).
    const restore = rules < NO_RESTORE_FROM
    const chainFor = (round: number) => addChainName((Math.floor(chains / 2) + (restore ? 0 : round + 1)) % chains)
    let seq = 0
    let strays = 0
    const learn = async (): Promise<number> => {
      const chain = chainFor(0)
      const out = await echo.run(probeRuleCmd(chain, seq++).text)
      const h = Number(/# handle (\d+)/.exec(out)?.[1])
      if (!Number.isFinite(h)) throw new Error(`cannot read handle from ${JSON.stringify(out)}`)
      await d!.nft.run(`delete rule bridge ${ADD_TABLE} ${chain} handle ${h}`)
      return h + 1
    }
    let expected = restore ? await learn() : 0
    let pending: number[] = []
    const paths = rawPaths(d)
    const samples = await runRounds(
      paths,
      rounds,
      async (p, round) => {
        const ms = await d!.runBatch(p, batch([probeRuleCmd(chainFor(round), seq++)]))
        pending.push(expected++)
        return ms
      },
      undefined,
      settle,
      true,
      async () => {
        const handles = pending
        pending = []
        if (!restore) return
        try {
          await d!.nft.run(handles.map((h) => `delete rule bridge ${ADD_TABLE} ${chainFor(0)} handle ${h}`).join('\n'))
        } catch {
          strays += handles.length
          expected = await learn()
        }
      },
    )
    const notes = strays ? [`${strays} added rule(s) could not be removed between runs`] : []
    if (!restore) notes.push(`added rules are not removed (${rules} rules loaded: a delete would cost seconds); the table grows by ${paths.length * (rounds + 1)} rules over the run${chains > 1 ? ', spread over as many chains as rounds' : ''}`)
    return toResult(
      {
        id: `add-rule/${layout}/${rules}`,
        group: `add-rule/${layout}`,
        title: `Add one rule, ${rules} rules loaded ${chains === 1 ? 'in one chain' : `over ${chains} chains`}`,
        size: rules,
        sizeLabel: `${rules} rules`,
        notes,
      },
      samples,
      rounds,
    )
  } finally {
    echo.close()
    d?.close()
    deleteNetns(ns)
  }
}

// ---------------------------------------------------------------------------------------------

export const VM_TABLE = 'bench_vm'


export interface VmSuiteOptions {
  vms: number
  rulesPerVm: number
  rounds: number
  /** Also run remove-one-VM, sync-1% and list on this size. */
  extended: boolean
  syncFraction: number
  syncRounds: number
  listRounds: number
}

/** Apply (replace) one VM's rules with `vms` VMs loaded; optionally remove one VM, sync 1%, list. */
export async function vmSuite(ctx: Ctx, o: VmSuiteOptions): Promise<WorkloadResult[]> {
  const out: WorkloadResult[] = []
  const ns = createNetns('vm')
  let d: Drivers | undefined
  const fw = useFw(ctx) ? ctx.firewall : undefined
  let fwNs: string | undefined
  let fwh: Awaited<ReturnType<FirewallAdapter['open']>> | undefined
  try {
    d = await Drivers.open(ns, { python: ctx.python })
    const settle = () => d!.settle()
    const t0 = Date.now()
    await d.nft.run(batch(fullRulesetCmds(VM_TABLE, o.vms, o.rulesPerVm)).text)
    ctx.log(`    loaded ${o.vms} VMs x ${o.rulesPerVm} rules (raw) in ${Date.now() - t0} ms`)
    if (fw) {
      fwNs = createNetns('vmfw')
      const t1 = Date.now()
      fwh = await fw.open(fwNs, o.vms, o.rulesPerVm)
      ctx.log(`    loaded ${o.vms} VMs x ${o.rulesPerVm} rules (VmFirewall) in ${Date.now() - t1} ms`)
    }
    const paths = rawPaths(d)
    const allPaths: PathId[] = fwh ? [...paths, 'vmfw'] : paths
    // The compat facade joins the apply rows only (its other operations are the engine's).
    const applyPaths: PathId[] = fwh?.applyRulesOne && (!ctx.paths || ctx.paths.has('compat')) ? [...allPaths, 'compat'] : allPaths
    const target = vmNames(Math.floor(o.vms / 2))
    const sizeLabel = `${o.vms} VMs`
    let variant = 1

    // Apply (replace) one VM's rules.
    {
      const samples = await runRounds(applyPaths, o.rounds, (p) => {
        const v = variant++
        if (p === 'vmfw') return fwh!.applyOne(target.index, v)
        if (p === 'compat') return fwh!.applyRulesOne!(target.index, v)
        return d!.runBatch(p, batch(replaceVmCmds(VM_TABLE, target, o.rulesPerVm, v)))
      }, undefined, settle)
      out.push(
        toResult(
          {
            id: `apply-vm/${o.vms}`,
            group: 'apply-vm',
            title: `Replace one VM's ${o.rulesPerVm} rules, ${o.vms} VMs loaded`,
            size: o.vms,
            sizeLabel,
            notes: [`raw: flush both VM chains + ${o.rulesPerVm} adds in one transaction; spawn: ${o.rulesPerVm + 2} processes`],
          },
          samples,
          o.rounds,
        ),
      )
    }
    // The same, one in-process path at a time in a tight loop (no other path disturbing caches between
    // calls): the best case, closest to how the facts file measured libnftables.
    {
      const hot: Record<string, (number | undefined)[]> = {}
      for (const p of applyPaths.filter((x) => x !== 'spawn' && x !== 'nft-f')) {
        const s = await runRounds([p], o.rounds, (q) => {
          const v = variant++
          if (q === 'vmfw') return fwh!.applyOne(target.index, v)
          if (q === 'compat') return fwh!.applyRulesOne!(target.index, v)
          return d!.runBatch(q, batch(replaceVmCmds(VM_TABLE, target, o.rulesPerVm, v)))
        })
        hot[p] = s[p]!
      }
      out.push(
        toResult(
          {
            id: `apply-vm-hot/${o.vms}`,
            group: 'apply-vm-hot',
            title: `Replace one VM's ${o.rulesPerVm} rules, ${o.vms} VMs loaded (hot loop, one path at a time)`,
            size: o.vms,
            sizeLabel,
            notes: ['each path alone, back to back; no ratios (the CLI paths are not in the loop)'],
          },
          hot,
          o.rounds,
        ),
      )
    }
    // Issue 14: the facade against the engine, paired: one apply each, the order alternating, many pairs (each on
    // its own equally loaded table). The median of the per-pair differences is what the facade adds; two medians
    // of separate runs differ by more than that on a shared machine.
    if (applyPaths.includes('compat')) {
      const pairs = Math.max(30, 2 * o.rounds)
      const engine: number[] = []
      const facade: number[] = []
      for (let i = 0; i < pairs; i++) {
        // Each its own new rules: neither reuses what the other just compiled and encoded (interned rules).
        const [v, w] = [variant++, variant++]
        const first = i % 2 === 0
        if (first) engine.push(await fwh!.applyOne(target.index, v))
        facade.push(await fwh!.applyRulesOne!(target.index, w))
        if (!first) engine.push(await fwh!.applyOne(target.index, v))
      }
      out.push(
        toResult(
          {
            id: `apply-vm-paired/${o.vms}`,
            group: 'apply-vm-paired',
            title: `Replace one VM's ${o.rulesPerVm} rules, ${o.vms} VMs loaded (VmFirewall and the compat facade in pairs)`,
            size: o.vms,
            sizeLabel,
            notes: [`${pairs} pairs, the order alternating; sample i of both paths is pair i`],
          },
          { vmfw: engine, compat: facade },
          pairs,
        ),
      )
    }
    if (!o.extended) return out

    // Anatomy: what libnftables costs for the pieces of a replace at this size (Nft.run, hot loop).
    {
      const items: [string, string, () => string][] = [
        ['noop', 'empty call', () => ''],
        ['list-chain', 'list one VM chain', () => `list chain bridge ${VM_TABLE} ${target.out}`],
        ['list-map', 'list one dispatch map', () => `list map bridge ${VM_TABLE} from_vm`],
        ['add-rule', 'add one rule to a VM chain', () => `add rule bridge ${VM_TABLE} ${target.in} counter`],
        ['flush-chain', 'flush one VM chain', () => `flush chain bridge ${VM_TABLE} ${target.in}`],
        ['replace', `replace one VM (2 flushes + ${o.rulesPerVm} adds)`, () => batch(replaceVmCmds(VM_TABLE, target, o.rulesPerVm, variant++)).text],
      ]
      const rounds = Math.max(3, Math.ceil(o.rounds / 2))
      for (const [id, name, text] of items) {
        const s = await runRounds(['lib-text'], rounds, () => d!.libText(text()))
        out.push(
          toResult(
            {
              id: `anatomy/${id}/${o.vms}`,
              group: 'anatomy',
              title: `Anatomy at ${o.vms} VMs: ${name} (Nft.run, hot loop)`,
              size: o.vms,
              sizeLabel,
            },
            s,
            rounds,
          ),
        )
      }
      // Put the VM back to its normal rules.
      await d.nft.run(batch(replaceVmCmds(VM_TABLE, target, o.rulesPerVm, 0)).text)
    }

    // Remove one VM (restored untimed after each run).
    {
      const samples = await runRounds(
        allPaths,
        o.rounds,
        (p) => (p === 'vmfw' ? fwh!.removeOne(target.index) : d!.runBatch(p, batch(removeVmCmds(VM_TABLE, target)))),
        async (p) => {
          if (p === 'vmfw') await fwh!.restoreOne(target.index)
          else await d!.nft.run(batch(addVmCmds(VM_TABLE, target, o.rulesPerVm, 0)).text)
        },
        settle,
      )
      out.push(
        toResult(
          {
            id: `remove-vm/${o.vms}`,
            group: 'remove-vm',
            title: `Remove one VM, ${o.vms} VMs loaded`,
            size: o.vms,
            sizeLabel,
            notes: ['raw: delete 2 map elements + 2 chains; spawn: 4 processes'],
          },
          samples,
          o.rounds,
        ),
      )
    }

    // Sync with 1% of the VMs changed: raw paths replace those VMs in one transaction.
    {
      const changed = Math.max(1, Math.ceil(o.vms * o.syncFraction))
      const step = Math.max(1, Math.floor(o.vms / changed))
      const which = Array.from({ length: changed }, (_, i) => vmNames((i * step) % o.vms))
      const rounds = o.syncRounds
      const samples = await runRounds(allPaths, rounds, async (p) => {
        const v = variant++
        if (p === 'vmfw') return fwh!.syncChanged(which.map((w) => w.index), v)
        // spawn per command: the processes of one VM's replace, scaled by the number of changed VMs.
        if (p === 'spawn') return (await d!.runBatch(p, batch(replaceVmCmds(VM_TABLE, which[0]!, o.rulesPerVm, v)))) * changed
        return d!.runBatch(p, batch(which.flatMap((vm) => replaceVmCmds(VM_TABLE, vm, o.rulesPerVm, v))))
      }, undefined, settle)
      out.push(
        toResult(
          {
            id: `sync-1pct/${o.vms}`,
            group: 'sync-1pct',
            title: `Sync ${changed} changed VM(s) of ${o.vms} (${Math.round(o.syncFraction * 100)}%)`,
            size: o.vms,
            sizeLabel,
            notes: [
              `raw: ${changed} VM replaces in one transaction; spawn: ${changed * (o.rulesPerVm + 2)} processes (one VM's ${o.rulesPerVm + 2} measured, scaled x${changed})`,
              fwh ? 'VmFirewall: sync() of all VMs with the changed ones edited (includes reading/diffing the kernel state)' : '',
            ].filter(Boolean),
          },
          samples,
          rounds,
          changed > 1 ? { spawn: { extrapolated: `one VM measured, scaled x${changed}` } } : {},
        ),
      )
    }

    // List the ruleset, text and JSON.
    for (const kind of ['text', 'json'] as const) {
      const listPaths = [...paths]
      const samples = await runRounds(listPaths, o.listRounds, async (p) => {
        const flags = kind === 'json' ? ['-j'] : []
        switch (p) {
          case 'spawn':
            return d!.spawnArgv([['list', 'ruleset']], flags)
          case 'nft-f':
            return d!.nftF('list ruleset\n', flags)
          case 'lib-text':
          case 'lib-json': {
            const t = process.hrtime.bigint()
            if (kind === 'text') await d!.nft.run('list ruleset')
            else await d!.nft.listRuleset()
            return Number(process.hrtime.bigint() - t) / 1e6
          }
          case 'py-text':
          case 'py-json':
            return kind === 'text' ? d!.pyText('list ruleset') : d!.pyJson({ nftables: [{ list: { ruleset: null } }] })
          default:
            throw new Error(p)
        }
      }, undefined, settle, false)
      // lib-text/lib-json (and py-*) are the same call here; keep one of each.
      const keep: Record<string, (number | undefined)[]> = {}
      for (const [p, s] of Object.entries(samples)) {
        if ((kind === 'text' && (p === 'lib-json' || p === 'py-json')) || (kind === 'json' && (p === 'lib-text' || p === 'py-text'))) continue
        keep[p] = s
      }
      out.push(
        toResult(
          {
            id: `list-${kind}/${o.vms}`,
            group: `list-${kind}`,
            title: `List the ruleset as ${kind}, ${o.vms} VMs x ${o.rulesPerVm} rules`,
            size: o.vms,
            sizeLabel,
            notes:
              kind === 'json'
                ? ['spawn/nft -f: `nft -j`, output not parsed; Nft.listRuleset() and json_cmd include parsing the JSON']
                : ['spawn: `nft list ruleset`; nft -f: `list ruleset` on stdin'],
          },
          keep,
          o.listRounds,
        ),
      )
    }
    return out
  } finally {
    d?.close()
    await fwh?.close()
    deleteNetns(ns)
    if (fwNs) deleteNetns(fwNs)
  }
}

// ---------------------------------------------------------------------------------------------

export const BULK_TABLE = 'bench_bulk'

/** Bulk load `vms` x `rules` from empty; spawn-per-command is measured on a sample and scaled. */
export async function bulkWorkload(ctx: Ctx, vms: number, rules: number, rounds: number, spawnSampleVms: number): Promise<WorkloadResult> {
  const ns = createNetns('bulk')
  let d: Drivers | undefined
  const fw = useFw(ctx) ? ctx.firewall : undefined
  let fwNs: string | undefined
  try {
    d = await Drivers.open(ns, { python: ctx.python })
    const settle = () => d!.settle()
    const full: Batch = batch(fullRulesetCmds(BULK_TABLE, vms, rules))
    const sampleVms = Math.min(spawnSampleVms, vms)
    const sample = batch(fullRulesetCmds(BULK_TABLE, sampleVms, rules))
    const paths = rawPaths(d)
    let fwBulk: Awaited<ReturnType<FirewallAdapter['bulk']>> | undefined
    if (fw) {
      fwNs = createNetns('bulkfw')
      fwBulk = await fw.bulk(fwNs, vms, rules)
    }
    const allPaths: PathId[] = fwBulk ? [...paths, 'vmfw'] : paths
    const scale = vms / sampleVms
    const samples = await runRounds(
      allPaths,
      rounds,
      async (p) => {
        if (p === 'vmfw') return fwBulk!.load()
        if (p === 'spawn') return (await d!.spawnArgv(sample.argvs)) * scale
        return d!.runBatch(p, full)
      },
      async (p) => {
        if (p === 'vmfw') await fwBulk!.clear()
        else await d!.nft.run(deleteTableCmd(BULK_TABLE).text)
      },
      settle,
      false,
    )
    return toResult(
      {
        id: `bulk/${vms}x${rules}`,
        group: 'bulk',
        title: `Bulk load ${vms} VMs x ${rules} rules from empty`,
        size: vms * rules,
        sizeLabel: `${vms}x${rules}`,
        notes: [
          `${full.commands} commands (${(full.text.length / 1e6).toFixed(1)} MB of text) in one transaction`,
          `spawn per command: ${sample.commands} processes for ${sampleVms} VMs, scaled x${scale} (${Math.round(full.commands)} processes would take too long)`,
        ],
      },
      samples,
      rounds,
      { spawn: { extrapolated: `measured on ${sampleVms} VMs, scaled x${scale}` } },
    )
  } finally {
    d?.close()
    deleteNetns(ns)
    if (fwNs) deleteNetns(fwNs)
  }
}

// ---------------------------------------------------------------------------------------------

/**
 * VmFirewall.sync of `vms` VMs into an empty table against `nft -f -` of the very ruleset that sync leaves
 * (the kernel's listing of it, captured untimed), both in the same namespace, paired per round. The raw bulk
 * row compares with a smaller equivalent ruleset; this one is the same rules, sets and maps on both sides.
 */
export async function bulkSyncWorkload(ctx: Ctx, vms: number, rules: number, rounds: number): Promise<WorkloadResult | undefined> {
  const fw = useFw(ctx) ? ctx.firewall : undefined
  if (!fw) return undefined
  const ns = createNetns('bulksync')
  let d: Drivers | undefined
  try {
    d = await Drivers.open(ns, { python: false })
    const settle = () => d!.settle()
    const fwBulk = await fw.bulk(ns, vms, rules)
    const text = await fwBulk.listing()
    const paths: PathId[] = [...(!ctx.paths || ctx.paths.has('nft-f') ? (['nft-f'] as PathId[]) : []), 'vmfw']
    const samples = await runRounds(
      paths,
      rounds,
      (p) => (p === 'vmfw' ? fwBulk.load() : d!.nftF(text)),
      () => fwBulk.clear(),
      settle,
      false,
    )
    return toResult(
      {
        id: `bulk-sync/${vms}x${rules}`,
        group: 'bulk-sync',
        title: `VmFirewall.sync of ${vms} VMs x ${rules} rules from empty vs nft -f of the same ruleset`,
        size: vms * rules,
        sizeLabel: `${vms}x${rules}`,
        notes: [
          `nft -f: the kernel's listing of the table sync leaves (${(text.length / 1e6).toFixed(1)} MB of text), same namespace`,
          'VmFirewall: sync() into an absent table (compile, read, plan and write included)',
        ],
      },
      samples,
      rounds,
    )
  } finally {
    d?.close()
    deleteNetns(ns)
  }
}

// ---------------------------------------------------------------------------------------------

/** Fixed cost of one call that does nothing (empty text / a metainfo-only JSON document), empty ruleset. */
export async function overheadWorkload(ctx: Ctx, rounds: number): Promise<WorkloadResult> {
  useFw(ctx)
  const ns = createNetns('nop')
  let d: Drivers | undefined
  try {
    d = await Drivers.open(ns, { python: ctx.python })
    const nopDoc = { nftables: [{ metainfo: { json_schema_version: 1 } }] }
    const paths = rawPaths(d).filter((p) => p !== 'spawn')
    const samples = await runRounds(paths, rounds, (p) => {
      switch (p) {
        case 'nft-f':
          return d!.nftF('')
        case 'lib-text':
          return d!.libText('')
        case 'lib-json':
          return d!.libJson(nopDoc)
        case 'py-text':
          return d!.pyText('')
        case 'py-json':
          return d!.pyJson(nopDoc)
        default:
          throw new Error(p)
      }
    })
    return toResult(
      {
        id: 'noop/0',
        group: 'noop',
        title: 'One call that does nothing (fixed cost per call)',
        size: 0,
        sizeLabel: 'empty',
        notes: ['empty text, or a JSON document holding only metainfo; nft -f: process start + empty stdin'],
      },
      samples,
      rounds,
    )
  } finally {
    d?.close()
    deleteNetns(ns)
  }
}
