// Benchmark: this library against the nft CLI (spawn per command, nft -f per transaction) and
// python3-nftables, in throwaway network namespaces. `npm run bench` (full) / `npm run bench -- --quick`.
// Options: --quick, --out DIR, --only a,b (noop,add-rule,vm,bulk,lag,dataplane), --paths spawn,nft-f,lib-text,lib-json,py-text,py-json,vmfw,compat,
// --no-python, --no-dataplane,
// --rules 0,1000,... --chains N --vms 1,100,1000 --bulk 1000x50 --bulk-rounds N --dp-vms N --dp-seconds S --rounds N.
// --only levers (issue 15, never part of a default run): --lever-vms 10,100,... --lever-shards 1,2,4,... --lever-rounds N
// --lever-dp-vms N --lever-dp-rounds N --lever-variants B,B2,B3,E,F (one-table variants besides A).
import { mkdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { machineInfo } from './lib/machine.js'
import { cleanupAll, removeStaleNamespaces, sh } from './lib/netns.js'
import { PYTHON } from './lib/drivers.js'
import { buildMarkdown, buildSvg, evaluateTargets } from './lib/report.js'
import { fmtMs } from './lib/stats.js'
import type { BenchResults, WorkloadResult } from './lib/types.js'
import { loadFirewall } from './lib/vmfirewall.js'
import { addRuleWorkload, bulkSyncWorkload, bulkWorkload, overheadWorkload, vmSuite, type Ctx } from './lib/workloads.js'
import { lagWorkload } from './lib/lag.js'
import { dataplaneWorkload } from './lib/dataplane.js'
import { leversWorkload } from './lib/levers.js'
import { LEVER_VARIANTS, type LeverVariant } from './lib/levers-gen.js'

interface Config {
  quick: boolean
  outDir: string
  only: Set<string> | null
  paths: Set<string> | undefined
  python: boolean
  rounds: number
  addRuleSizes: number[]
  spreadChains: number
  vmCounts: number[]
  rulesPerVm: number
  bulk: { vms: number; rules: number; rounds: number; syncRounds: number; spawnSampleVms: number }
  syncFraction: number
  dataplane: { enabled: boolean; vms: number; rulesPerVm: number; seconds: number; rounds: number; udp: boolean }
  levers: { vmCounts: number[]; shards: number[]; variants: LeverVariant[]; rounds: number; floorIterations: number; dpVms: number; dpRounds: number; udp: boolean }
}

function parseArgs(argv: string[]): Config {
  const flag = (name: string) => argv.includes(`--${name}`)
  const value = (name: string): string | undefined => {
    const i = argv.indexOf(`--${name}`)
    if (i >= 0) return argv[i + 1]
    const eq = argv.find((a) => a.startsWith(`--${name}=`))
    return eq?.slice(name.length + 3)
  }
  const nums = (s: string | undefined, d: number[]) => (s ? s.split(',').map(Number).filter((n) => Number.isFinite(n) && n >= 0) : d)
  const quick = flag('quick')
  const bulkArg = value('bulk')?.split('x').map(Number)
  const cfg: Config = {
    quick,
    outDir: path.resolve(value('out') ?? path.join(__dirname, 'results')),
    only: value('only') ? new Set(value('only')!.split(',')) : null,
    paths: value('paths') ? new Set(value('paths')!.split(',')) : undefined,
    python: !flag('no-python'),
    rounds: Number(value('rounds') ?? (quick ? 4 : 15)),
    addRuleSizes: nums(value('rules'), quick ? [0, 1000] : [0, 1000, 10000, 50000]),
    spreadChains: Number(value('chains') ?? (quick ? 100 : 1000)),
    vmCounts: nums(value('vms'), quick ? [1, 50] : [1, 100, 1000]),
    rulesPerVm: Number(value('rules-per-vm') ?? 20),
    bulk: {
      vms: bulkArg?.[0] ?? (quick ? 20 : 1000),
      rules: bulkArg?.[1] ?? 50,
      rounds: Number(value('bulk-rounds') ?? (quick ? 2 : 3)),
      // Paired sync-vs-nft -f rounds are short (no spawn path): more of them for a steadier ratio.
      syncRounds: Number(value('bulk-rounds') ?? (quick ? 2 : 5)),
      spawnSampleVms: quick ? 1 : 3,
    },
    syncFraction: 0.01,
    dataplane: {
      enabled: !flag('no-dataplane'),
      vms: Number(value('dp-vms') ?? (quick ? 50 : 1000)),
      rulesPerVm: 20,
      seconds: Number(value('dp-seconds') ?? (quick ? 1 : 3)),
      rounds: quick ? 1 : 5,
      udp: !quick && !flag('no-udp'),
    },
    levers: {
      vmCounts: nums(value('lever-vms'), quick ? [10, 100] : [10, 100, 500, 1000, 2000]),
      shards: nums(value('lever-shards'), quick ? [1, 2, 4] : [1, 2, 4, 8, 16]).filter((k) => k >= 1),
      variants: (value('lever-variants')?.split(',') ?? [...LEVER_VARIANTS]).filter((v): v is LeverVariant => (LEVER_VARIANTS as readonly string[]).includes(v)),
      rounds: Number(value('lever-rounds') ?? (quick ? 3 : 21)),
      floorIterations: 3,
      dpVms: Number(value('lever-dp-vms') ?? (quick ? 50 : 1000)),
      dpRounds: Number(value('lever-dp-rounds') ?? (quick ? 1 : 6)),
      udp: !flag('no-udp'),
    },
  }
  return cfg
}

const want = (cfg: Config, what: string) => cfg.only === null || cfg.only.has(what)

async function main(): Promise<number> {
  const cfg = parseArgs(process.argv.slice(2))
  const started = new Date()
  const log = (msg: string) => process.stderr.write(`[${((Date.now() - started.getTime()) / 1000).toFixed(1).padStart(6)}s] ${msg}\n`)
  if (process.getuid?.() !== 0) {
    log('bench needs root (it creates network namespaces and programs nftables inside them)')
    return 1
  }
  const stale = removeStaleNamespaces()
  if (stale.length) log(`removed stale namespaces: ${stale.join(', ')}`)
  const machine = machineInfo()
  log(`${cfg.quick ? 'quick' : 'full'} run on ${machine.cpu} (${machine.cores} cores), kernel ${machine.kernel}, libnftables ${machine.libnftables}, node ${machine.node}`)
  const fw = loadFirewall()
  log(fw.note)
  const notes: string[] = []
  let python = cfg.python
  if (python) {
    try {
      sh(PYTHON, ['-c', 'import nftables'])
    } catch {
      python = false
      notes.push(`python3-nftables is not importable by ${PYTHON}: its paths were not measured (apt-get install python3-nftables).`)
      log(notes[notes.length - 1]!)
    }
  }
  const ctx: Ctx = { python, paths: cfg.paths, log, firewall: fw.adapter }
  const workloads: WorkloadResult[] = []
  const errors: string[] = []
  const results: BenchResults = {
    version: 1,
    startedAt: started.toISOString(),
    finishedAt: '',
    durationS: 0,
    mode: cfg.quick ? 'quick' : 'full',
    config: { ...cfg, only: cfg.only ? [...cfg.only] : null, paths: cfg.paths ? [...cfg.paths] : null },
    machine,
    vmFirewall: { available: fw.adapter !== undefined, note: fw.note },
    workloads,
    targets: [],
    errors,
    notes,
  }
  const logged = new Set<WorkloadResult>()
  const attempt = async (name: string, f: () => Promise<void>) => {
    const t0 = Date.now()
    try {
      await f()
      for (const w of workloads) {
        if (logged.has(w)) continue
        logged.add(w)
        const cells = Object.entries(w.paths).map(([p, r]) => `${p} ${fmtMs(r!.summary.median)}`)
        log(`  ${w.title}: ${cells.join(', ')}`)
      }
      log(`  (${name}: ${((Date.now() - t0) / 1000).toFixed(1)} s)`)
    } catch (e) {
      const msg = `${name}: ${e instanceof Error ? e.message : String(e)}`
      errors.push(msg.slice(0, 2000))
      log(`ERROR ${msg.slice(0, 500)}`)
    }
  }

  if (want(cfg, 'noop')) {
    await attempt('noop', async () => {
      log('fixed cost of one call')
      workloads.push(await overheadWorkload(ctx, cfg.rounds * 2))
    })
  }
  if (want(cfg, 'add-rule')) {
    for (const chains of [1, cfg.spreadChains]) {
      for (const rules of cfg.addRuleSizes) {
        await attempt(`add-rule ${rules}/${chains}`, async () => {
          const rounds = rules >= 20000 && chains === 1 ? Math.max(3, Math.ceil(cfg.rounds / 3)) : rules >= 10000 ? Math.max(3, Math.ceil(cfg.rounds / 2)) : cfg.rounds
          log(`add one rule: ${rules} rules over ${chains} chain(s), ${rounds} rounds`)
          workloads.push(await addRuleWorkload(ctx, rules, chains, rounds))
        })
      }
    }
  }
  if (want(cfg, 'vm')) {
    const maxVms = Math.max(...cfg.vmCounts)
    for (const vms of cfg.vmCounts) {
      await attempt(`vm ${vms}`, async () => {
        log(`per-VM operations: ${vms} VMs x ${cfg.rulesPerVm} rules`)
        workloads.push(
          ...(await vmSuite(ctx, {
            vms,
            rulesPerVm: cfg.rulesPerVm,
            rounds: cfg.rounds,
            extended: vms === maxVms,
            syncFraction: cfg.syncFraction,
            syncRounds: cfg.quick ? 2 : 4,
            listRounds: cfg.quick ? 2 : 3,
          })),
        )
      })
    }
  }
  if (want(cfg, 'bulk')) {
    await attempt('bulk', async () => {
      log(`bulk load ${cfg.bulk.vms} VMs x ${cfg.bulk.rules} rules, ${cfg.bulk.rounds} rounds`)
      workloads.push(await bulkWorkload(ctx, cfg.bulk.vms, cfg.bulk.rules, cfg.bulk.rounds, cfg.bulk.spawnSampleVms))
    })
    await attempt('bulk-sync', async () => {
      log(`VmFirewall.sync of ${cfg.bulk.vms} VMs x ${cfg.bulk.rules} rules from empty vs nft -f of the same ruleset, ${cfg.bulk.syncRounds} rounds`)
      const w = await bulkSyncWorkload(ctx, cfg.bulk.vms, cfg.bulk.rules, cfg.bulk.syncRounds)
      if (w) workloads.push(w)
    })
  }
  if (want(cfg, 'lag')) {
    await attempt('lag', async () => {
      log(`event-loop lag and peak RSS while bulk loading ${cfg.bulk.vms} x ${cfg.bulk.rules} (fresh process)`)
      results.lag = await lagWorkload(cfg.bulk.vms, cfg.bulk.rules, 3)
    })
  }
  let iperf = true
  try {
    sh('iperf3', ['--version'])
  } catch {
    iperf = false
    if (want(cfg, 'dataplane') && cfg.dataplane.enabled) {
      notes.push('iperf3 is not installed: the data plane was not measured (apt-get install iperf3).')
      log(notes[notes.length - 1]!)
    }
  }
  if (want(cfg, 'dataplane') && cfg.dataplane.enabled && iperf) {
    await attempt('dataplane', async () => {
      log(`data plane: iperf3 across a bridge, ${cfg.dataplane.vms} VMs x ${cfg.dataplane.rulesPerVm} rules, ${cfg.dataplane.seconds}s x ${cfg.dataplane.rounds} rounds`)
      results.dataplane = await dataplaneWorkload(ctx, cfg.dataplane)
    })
  }

  // Issue 15: where a frame's time goes in VmFirewall's ruleset: only when asked for (`--only anatomy`, ~8 minutes).
  if (cfg.only?.has('anatomy') && iperf) {
    await attempt('anatomy', async () => {
      log(`data plane anatomy: VmFirewall's table taken apart, ${cfg.dataplane.vms} VMs x ${cfg.dataplane.rulesPerVm} rules, ${cfg.dataplane.seconds}s x ${cfg.levers.dpRounds} rounds`)
      results.anatomy = await dataplaneWorkload(ctx, { ...cfg.dataplane, rounds: cfg.levers.dpRounds, udp: cfg.levers.udp, anatomy: true })
      log('data plane anatomy, from an uplink port to a VM')
      results.anatomyUplink = await dataplaneWorkload(ctx, { ...cfg.dataplane, rounds: cfg.levers.dpRounds, udp: cfg.levers.udp, anatomy: true, uplink: true })
    })
  }

  // Issue 15's lever measurements: only when asked for (`--only levers`), they take ~15 minutes.
  if (cfg.only?.has('levers')) {
    await attempt('levers', async () => {
      const l = cfg.levers
      log(`commit cost levers: replace one VM at ${l.vmCounts.join(', ')} VMs, variants A, ${l.variants.filter((v) => v !== 'A').join(', ')}, C (K = ${l.shards.filter((k) => k > 1).join(', ') || 'none'}), ${l.rounds} rounds`)
      results.levers = await leversWorkload(ctx, { vmCounts: l.vmCounts, shards: l.shards, variants: l.variants, rounds: l.rounds, floorIterations: l.floorIterations })
      if (cfg.dataplane.enabled && iperf) {
        log(`commit cost levers, data plane: ${l.dpVms} VMs, ${cfg.dataplane.seconds}s x ${l.dpRounds} rounds`)
        results.levers.dataplane = await dataplaneWorkload(ctx, { vms: l.dpVms, rulesPerVm: 22, seconds: cfg.dataplane.seconds, rounds: l.dpRounds, udp: l.udp, levers: l.shards, leverVariants: l.variants })
      } else if (!iperf) {
        results.levers.notes.push('iperf3 is not installed: the data plane of the levers was not measured')
      }
    })
  }

  const finished = new Date()
  results.finishedAt = finished.toISOString()
  results.durationS = Math.round((finished.getTime() - started.getTime()) / 100) / 10
  results.targets = evaluateTargets(results)
  mkdirSync(cfg.outDir, { recursive: true })
  const base = cfg.quick ? 'quick' : 'latest'
  writeFileSync(path.join(cfg.outDir, `${base}.json`), JSON.stringify(results, null, 2) + '\n')
  writeFileSync(path.join(cfg.outDir, `${base}.md`), buildMarkdown(results))
  writeFileSync(path.join(cfg.outDir, `${base}.svg`), buildSvg(results))
  process.stdout.write(buildMarkdown(results))
  log(`wrote ${path.join(cfg.outDir, base)}.{json,md,svg} in ${results.durationS}s`)
  return errors.length ? 1 : 0
}

main()
  .then((code) => {
    cleanupAll()
    process.exit(code)
  })
  .catch((e) => {
    process.stderr.write(`bench failed: ${e instanceof Error ? e.stack : String(e)}\n`)
    cleanupAll()
    process.exit(1)
  })
