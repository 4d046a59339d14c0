// Pure report builders: targets, Markdown, SVG. No I/O (unit-tested in __test__/bench).
import { BASE_PRIORITY } from '../../ts/firewall/compile.js'
import { PATH_LABEL, type PathId } from './paths.js'
import { fmtMs, fmtRatio } from './stats.js'
import type { BenchResults, DataplaneResult, LeverCell, LeverPath, LeversResult, Target, WorkloadResult } from './types.js'

const ORDER: PathId[] = ['spawn', 'nft-f', 'lib-text', 'lib-json', 'py-text', 'py-json', 'vmfw', 'compat']
const COLORS: Record<PathId, string> = {
  spawn: '#d62728',
  'nft-f': '#ff7f0e',
  'lib-text': '#1f77b4',
  'lib-json': '#17becf',
  'py-text': '#2ca02c',
  'py-json': '#98df8a',
  vmfw: '#9467bd',
  compat: '#8c564b',
}

const med = (w: WorkloadResult | undefined, p: PathId): number | undefined => w?.paths[p]?.summary.median

/** Median over samples i of compat[i] − vmfw[i] (a workload whose sample i of both paths is one pair). */
export function pairedDifference(w: WorkloadResult): number {
  const f = w.paths.compat?.samples ?? []
  const e = w.paths.vmfw?.samples ?? []
  const d = f.flatMap((x, i) => (x !== undefined && e[i] !== undefined ? [x - e[i]!] : [])).sort((a, b) => a - b)
  if (d.length === 0) return NaN
  const m = Math.floor(d.length / 2)
  return d.length % 2 ? d[m]! : (d[m - 1]! + d[m]!) / 2
}

function largest(results: BenchResults, group: string): WorkloadResult | undefined {
  return results.workloads.filter((w) => w.group === group).sort((a, b) => b.size - a.size)[0]
}

/** The workload of `group` with the smallest size below `size` (the contrast case). */
function smallestBelow(results: BenchResults, group: string, size: number): WorkloadResult | undefined {
  return results.workloads.filter((w) => w.group === group && w.size < size).sort((a, b) => b.size - a.size).pop()
}

function libPaths(w: WorkloadResult | undefined): PathId[] {
  return (['vmfw', 'lib-text', 'lib-json'] as PathId[]).filter((p) => w?.paths[p])
}

/** Evaluates the issue's targets against the results. */
export function evaluateTargets(results: BenchResults): Target[] {
  const t: Target[] = []
  const apply = largest(results, 'apply-vm')
  if (apply) {
    const size = `${apply.size} VMs`
    const byId = (id: string) => results.workloads.find((w) => w.id === id)
    const an = (id: string) => med(byId(`anatomy/${id}/${apply.size}`), 'lib-text')
    const noop = byId('noop/0')
    const overhead = (med(noop, 'lib-text') ?? NaN) - (med(noop, 'py-text') ?? NaN)
    const sync = largest(results, 'sync-1pct')
    const changed = Number(/Sync (\d+)/.exec(sync?.title ?? '')?.[1] ?? NaN)
    const syncPerVm = (med(sync, 'lib-text') ?? NaN) / changed
    const hot = byId(`apply-vm-hot/${apply.size}`)
    const add0 = med(byId('add-rule/one-chain/0'), 'lib-text')
    const hot1 = smallestBelow(results, 'apply-vm-hot', apply.size)
    // Twice the empty table's cost for one added rule: the per-command work grows with what is cached.
    const cacheGrows = !((an('add-rule') ?? NaN) <= 2 * (add0 ?? NaN))
    const cause =
      `Same batch through python3-nftables (same libnftables, in-process): ${fmtMs(med(apply, 'py-text'))} (hot loop ${fmtMs(med(hot, 'py-text'))}), so what the batch costs is libnftables' and the kernel's, not the binding's; ` +
      `the binding adds ~${fmtMs(overhead)} per call (no-op call, Nft.run vs python). ` +
      // Whether this libnftables' per-command work grows with the table (1.0.6-1.0.9 refresh their cache of every
      // chain and map; 1.1.x fetches what the batch needs): read from the measurement, not assumed per version.
      (cacheGrows
        ? `libnftables ${results.machine.libnftables} refreshes its cache of the table (chains, maps and their elements) before it evaluates a batch, and its per-command work grows with the number of cached objects: `
        : `libnftables ${results.machine.libnftables} fetches only what a batch needs (its per-command work does not grow with the table here), so what grows is the kernel's commit: `) +
      `at ${size} (${2 * apply.size} VM chains, ~${apply.size * 20} rules, ${2 * apply.size} map elements) one added rule costs ${fmtMs(an('add-rule'))} (${fmtMs(add0)} on an empty table), listing one dispatch map ${fmtMs(an('list-map'))}, and the 22-command replace ${fmtMs(an('replace'))} in a hot loop` +
      `${hot1 ? ` (${fmtMs(med(hot1, 'lib-text'))} with ${hot1.size} VM${hot1.size === 1 ? '' : 's'} loaded)` : ''}. ` +
      `Fix: amortize over many VMs per transaction (here ${Number.isFinite(changed) ? changed : '?'} VMs in one transaction cost ${fmtMs(med(sync, 'lib-text'))}, ${fmtMs(syncPerVm)} per VM)` +
      (cacheGrows ? '; keep fewer objects in the table a batch touches; or libnftables 1.1.x, whose per-command work does not grow with the table (bench/results/libnftables-versions).' : '.')
    const vmfwExtra = (p: PathId) =>
      p === 'vmfw'
        ? ` VmFirewall on top: applyVm lists nothing (it builds from its view of the dispatch maps as last known, and its one transaction is sent only while the ruleset generation has not moved: checked and read again on the instance's thread, one round trip per apply), and writes its batch as netlink messages without libnftables (the lean path: no cache refresh, no parse), its chains carry a default rule each besides the raw batch's rules (the ARP, NDP and identity built-ins are elements of the shared guard's sets, issue 15), and at this size the kernel's commit, which re-validates every rule reachable from the table's base chains, is most of the time: ${fmtMs(med(apply, 'vmfw'))} vs ${fmtMs(med(apply, 'lib-text'))} for the raw text batch through libnftables; ${fmtMs(med(hot, 'vmfw'))} in a hot loop (the likely difference: in the rotation the other paths' work evicts the table's rules from the CPU caches before each commit, and the validation walk runs from memory). Fix: fewer VMs per table (shards, measured and rejected for their data-plane cost) or a kernel that validates only the chains a batch touches: see the commit cost levers (issue 15).`
        : ''
    for (const p of libPaths(apply)) {
      const m = med(apply, p)!
      const label = PATH_LABEL[p]
      t.push({
        name: `Replace one VM's rules (${size}): median, ${label}`,
        goal: '≤ 0.5 ms',
        measured: fmtMs(m),
        status: m <= 0.5 ? 'met' : 'missed',
        by: m <= 0.5 ? `${fmtRatio(0.5 / m)} under` : `${fmtRatio(m / 0.5)} over (+${fmtMs(m - 0.5)})`,
        why: m <= 0.5 ? undefined : cause + vmfwExtra(p),
      })
      const rf = apply.vsNftF[p]
      if (rf !== undefined) {
        t.push({
          name: `Replace one VM's rules (${size}): vs nft -f, ${label}`,
          goal: '≥ 8× faster',
          measured: fmtRatio(rf),
          status: rf >= 8 ? 'met' : 'missed',
          by: rf >= 8 ? `${fmtRatio(rf / 8)} above target` : `${Math.round((1 - rf / 8) * 100)}% short`,
          why:
            rf >= 8
              ? undefined
              : `nft -f (${fmtMs(med(apply, 'nft-f'))}) = process start (~${fmtMs(med(noop, 'nft-f'))}) + the same cache refresh + its exit; the in-process paths skip only the process start, so when the refresh dominates the ratio is bounded by (start + refresh) / refresh. Same fix as above.${vmfwExtra(p)}`,
        })
      }
      const rs = apply.vsSpawn[p]
      if (rs !== undefined) {
        t.push({
          name: `Replace one VM's rules (${size}): vs spawn per rule, ${label}`,
          goal: '≥ 100× faster',
          measured: fmtRatio(rs),
          status: rs >= 100 ? 'met' : 'missed',
          by: rs >= 100 ? `${fmtRatio(rs / 100)} above target` : `${Math.round((1 - rs / 100) * 100)}% short`,
          why:
            rs >= 100
              ? undefined
              : `each of the ${apply.notes.join(' ').match(/spawn: (\d+)/)?.[1] ?? '22'} spawned nft pays process start + the same per-command cache refresh (${fmtMs(med(apply, 'spawn'))} in total), so the ratio is ≈ N × (start + refresh) / (one refresh + batch); the in-process refresh is what keeps it below 100×.${vmfwExtra(p)}`,
        })
      }
    }
    // Issue 14: the compat facade adds translation only: measured interleaved with every path, and in pairs with
    // the engine (the median of per-pair differences; the hot loops of the two run apart, so their medians differ
    // by the machine's drift between them).
    const paired = byId(`apply-vm-paired/${apply.size}`)
    for (const w of [apply, paired]) {
      const f = med(w, 'compat')
      const e = med(w, 'vmfw')
      if (f === undefined || e === undefined || !w) continue
      const d = w === paired ? pairedDifference(w) : f - e
      t.push({
        name: `Replace one VM's rules (${size}${w === paired ? ', in pairs' : ''}): NftablesService.applyRules vs VmFirewall.applyVm`,
        goal: '≤ +0.2 ms',
        measured: `${fmtMs(f)} vs ${fmtMs(e)} (${d >= 0 ? '+' : ''}${d.toFixed(2)} ms${w === paired ? `, median of ${w.rounds} paired differences` : ''})`,
        status: d <= 0.2 ? 'met' : 'missed',
        by: d <= 0.2 ? 'within' : `${(d - 0.2).toFixed(2)} ms over`,
        why: d <= 0.2 ? undefined : 'one libnftables call on either path (the facade decides from the engine\'s view); the rest is run-to-run noise of two paths on a shared machine, or JS the facade adds (rule screening, the VM\'s state)',
      })
    }
  } else {
    t.push({ name: "Replace one VM's rules", goal: '≤ 0.5 ms, ≥ 8× nft -f, ≥ 100× spawn', measured: '–', status: 'not measured', by: '–' })
  }

  const bulk = largest(results, 'bulk')
  if (bulk) {
    for (const p of libPaths(bulk)) {
      const r = bulk.vsNftF[p]
      if (r === undefined) continue
      t.push({
        name: `Bulk load ${bulk.sizeLabel}: ${PATH_LABEL[p]} vs nft -f (text)`,
        goal: '≥ 1× (at least as fast)',
        measured: `${fmtMs(med(bulk, p))} vs ${fmtMs(med(bulk, 'nft-f'))} (${fmtRatio(r)})`,
        status: r >= 1 ? 'met' : 'missed',
        by: r >= 1 ? `${((r - 1) * 100).toFixed(1)}% faster` : `${((1 / r - 1) * 100).toFixed(1)}% slower${r > 0.97 ? ' (a tie within noise)' : ''}`,
        why:
          r >= 1
            ? undefined
            : p === 'vmfw'
              ? `VmFirewall.sync validates and compiles every VM in JavaScript (~0.2-0.3 s for 1000 VMs here), then sends one text batch whose libnftables parse and kernel commit cost what nft -f of the same text costs; the compile is what nft -f does not pay. Fix: a cheaper compile (shared rule bodies), or a bulk write without libnftables.`
              : p === 'lib-json'
                ? 'libnftables parses JSON (jansson) much more slowly than nft text (~2.6× on 50k rules per the facts file), plus JSON.stringify of the document on the calling thread. Fix: bulk loads in text syntax generated from the same model, or chunked JSON.'
              : 'the same libnftables parse and commit as nft -f (one process start is nothing next to seconds of parsing), so the two tie within run-to-run noise.',
      })
    }
  }

  // Issue 14: the same ruleset on both sides (the listing of what sync leaves, loaded by nft -f).
  const bs = largest(results, 'bulk-sync')
  const bsr = bs?.vsNftF.vmfw
  if (bs && bsr !== undefined) {
    t.push({
      name: `VmFirewall.sync from empty ${bs.sizeLabel} vs nft -f of the same ruleset`,
      goal: '≥ 1× (at least as fast)',
      measured: `${fmtMs(med(bs, 'vmfw'))} vs ${fmtMs(med(bs, 'nft-f'))} (${fmtRatio(bsr)})`,
      status: bsr >= 1 ? 'met' : 'missed',
      by: bsr >= 1 ? `${((bsr - 1) * 100).toFixed(1)}% faster` : `${((1 / bsr - 1) * 100).toFixed(1)}% slower${bsr > 0.97 ? ' (a tie within noise)' : ''}`,
      why: bsr >= 1 ? undefined : 'sync validates and compiles every VM in JavaScript before its one text batch, whose libnftables parse and kernel commit cost what nft -f of the same ruleset costs: the compile (~0.2-0.3 s for 1000 VMs) is the difference',
    })
  }

  const dp = results.dataplane
  if (dp) {
    for (const [name, c] of Object.entries(dp.configs)) {
      if (!name.startsWith('vmap')) continue
      t.push({
        name: `Data plane, ${dp.vms} VMs × ${dp.rulesPerVm} rules, ${name}: TCP throughput / empty`,
        goal: '≥ 0.9',
        measured: `${c.ratioToEmpty.toFixed(3)} (paired per round; medians ${c.medianGbps.toFixed(2)} vs ${dp.configs.empty!.medianGbps.toFixed(2)} Gbit/s)`,
        status: c.ratioToEmpty >= 0.9 ? 'met' : 'missed',
        by: c.ratioToEmpty >= 0.9 ? `+${(c.ratioToEmpty - 0.9).toFixed(3)}` : `${(0.9 - c.ratioToEmpty).toFixed(3)} short${c.ratioToEmpty > 0.85 ? ' (within run-to-run noise)' : ''}`,
        why:
          c.ratioToEmpty >= 0.9
            ? undefined
            : `${name.includes('VmFirewall') ? `VmFirewall's frames also pass the shared identity guard (prerouting at priority ${BASE_PRIORITY}: the MAC check, then a protocol dispatch to guard_ip's 6 rules; postrouting: 4 inbound checks), each identity check a set lookup, two for a VM without identity (the tap's set too); ${dp.configs['vmap (raw)'] ? `the raw vmap ruleset reaches ${dp.configs['vmap (raw)'].ratioToEmpty.toFixed(2)} in the same run. ` : ''}\`--only anatomy\` measures each piece. ` : ''}the empty ruleset registers no hook at all; here every frame runs two base chains (prerouting + postrouting), two map lookups and all ${dp.rulesPerVm} rules of the two VMs (no rule matches the test traffic, the worst case), with a counter on the last. Dispatch itself is O(1) (linear jumps: ${(dp.configs['linear jumps']?.ratioToEmpty ?? NaN).toFixed(2)}). Fix: fewer lookups per frame in the guard (its per-field checks cost more than the VMs' own rules: the anatomy's "no guard" row), e.g. one positive identity lookup per protocol for identified VMs.`,
      })
    }
  }

  const lag = results.lag
  if (lag) {
    const idle = lag.variants.find((x) => x.name.startsWith('idle'))
    const own = lag.variants.find((x) => x.name.includes('own work'))
    for (const v of lag.variants.filter((x) => x.name.startsWith('async'))) {
      t.push({
        name: `Event-loop lag while bulk loading ${lag.vms}×${lag.rules}, ${v.name}`,
        goal: '≤ 10 ms (max)',
        measured: `max ${fmtMs(v.lagMaxMs)} (worst round ${fmtMs(v.lagWorstMs)}, p99 ${fmtMs(v.lagP99Ms)}; idle control ${fmtMs(idle?.lagMaxMs)}) during ${fmtMs(v.ms)}`,
        status: v.lagMaxMs <= 10 ? 'met' : 'missed',
        by: v.lagMaxMs <= 10 ? `${fmtMs(10 - v.lagMaxMs)} of headroom` : `${fmtMs(v.lagMaxMs - 10)} over`,
        why:
          v.lagMaxMs <= 10
            ? undefined
            : v.name.includes('own work')
              ? `runJson's own work on the calling thread (serialising the document in 2 ms slices, one per event-loop turn, and handing the pieces over) still held the loop ${fmtMs(v.lagMaxMs)}${idle ? ` (idle control: ${fmtMs(idle.lagMaxMs)})` : ''}: a slice plus a garbage collection or the machine's other processes. Fix to try: smaller slices or pieces, fewer allocations per piece; re-measure on an idle machine.`
              : v.name.includes('runJson') && own && own.lagMaxMs <= 10
                ? `not the call's own work: serialising and handing over the document holds the loop at most ${fmtMs(own.lagMaxMs)} (the closed-instance row); the rest is the loop waiting for CPU or memory locks while the instance thread parses and commits (2 cores${idle ? `; idle control ${fmtMs(idle.lagMaxMs)}, worst idle round ${fmtMs(idle.lagWorstMs)}` : ''}). Re-measure on an idle machine.`
                : v.name.includes('runJson') && !own && v.lagMaxMs > 3 * Math.max(idle?.lagMaxMs ?? 0, 10)
                  ? `runJson(object) serialised the whole document on the calling thread (${lag.vms}×${lag.rules} rules: tens of MB), which blocks the loop for about that long${idle ? ` (idle control: ${fmtMs(idle.lagMaxMs)})` : ''} (a run from before runJson serialised in slices).`
                  : idle && idle.lagMaxMs > 10
                    ? `the idle control (no call at all) already shows ${fmtMs(idle.lagMaxMs)}: other processes on the 2 cores delay the loop; the call adds ${fmtMs(v.lagMaxMs - idle.lagMaxMs)} on top, not isolated: the calling thread only hands the input over (in pieces above 1 MB), the rest is the loop waiting for CPU or memory locks while the instance thread parses and commits. Re-measure on an idle machine.`
                    : `not isolated. The calling thread only hands the input over (in pieces, one per event-loop turn, above 1 MB${v.name.includes('runJson') ? '; the document is serialised in 2 ms slices' : ''}); the rest of the delay is the process waiting for CPU or memory locks while the instance thread parses and commits (2 cores; the idle control shows the machine alone). Re-measure on an idle machine.`,
      })
    }
  }
  return t
}

// ---------------------------------------------------------------------------------------------

function table(head: string[], rows: string[][]): string {
  return [`| ${head.join(' | ')} |`, `| ${head.map(() => '---').join(' | ')} |`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n')
}

export function buildMarkdown(r: BenchResults, chartName = r.mode === 'quick' ? 'quick.svg' : 'latest.svg'): string {
  const m = r.machine
  const out: string[] = []
  out.push(`# Benchmark: @infinibay/nftables-node vs the nft CLI and python3-nftables (${r.mode})`)
  out.push('')
  out.push(`Run ${r.startedAt} (${r.durationS} s). Machine: ${m.cpu}, ${m.cores} cores, ${m.memoryGb} GiB; ${m.os}; kernel ${m.kernel}; libnftables ${m.libnftables} (${m.nft}); python3-nftables ${m.python3Nftables}; Node ${m.node}.`)
  out.push('')
  out.push(
    'Everything runs in throwaway network namespaces. Times are medians over rounds; in each round every path does the operation once on the same ruleset (order rotated), ' +
      'and ratios are the median of the per-round ratios (time of spawn or nft -f ÷ time of the path; > 1 means the path is faster). ' +
      'spawn = `nft` spawned per command with an argv array from Node (no shell); nft -f = one `nft -f -` per transaction; ' +
      'Nft = this library (async API, persistent context); python3-nftables = in-process, timed inside Python.',
  )
  out.push('')
  out.push(`VmFirewall: ${r.vmFirewall.note}`)
  out.push('')
  for (const n of r.notes ?? []) {
    out.push(`Note: ${n}`)
    out.push('')
  }
  if (r.targets.length) {
    out.push('## Targets (issue 5)')
    out.push('')
    out.push(table(['target', 'goal', 'measured', 'status', 'by'], r.targets.map((t) => [t.name, t.goal, t.measured, t.status === 'met' ? '**met**' : t.status === 'missed' ? '**missed**' : t.status, t.by])))
    out.push('')
    const whys = r.targets.filter((t) => t.why)
    if (whys.length) {
      out.push('Why the missed ones are missed:')
      out.push('')
      const seen = new Set<string>()
      for (const t of whys) {
        if (seen.has(t.why!)) continue
        seen.add(t.why!)
        out.push(`- ${t.name}: ${t.why}`)
      }
      out.push('')
    }
  }
  if (r.workloads.length) {
    const present = ORDER.filter((p) => r.workloads.some((w) => w.paths[p]))
    out.push('## Control plane: median wall time per operation')
    out.push('')
    out.push(
      table(
        ['workload', 'rounds', ...present.map((p) => PATH_LABEL[p])],
        r.workloads.map((w) => [
          w.title,
          String(w.rounds),
          ...present.map((p) => {
            const pr = w.paths[p]
            if (!pr) return '–'
            return fmtMs(pr.summary.median) + (pr.extrapolated ? ' *' : '')
          }),
        ]),
      ),
    )
    out.push('')
    out.push('\\* spawn per command for the bulk load is measured on a few VMs and scaled linearly (tens of thousands of processes would not fit the time budget).')
    out.push('')
    const fast = present.filter((p) => p !== 'spawn' && p !== 'nft-f')
    out.push('## Speed-up: times faster than spawn per command / than nft -f (per-round ratios, median)')
    out.push('')
    out.push(
      table(
        ['workload', ...fast.map((p) => PATH_LABEL[p])],
        r.workloads
          .filter((w) => w.paths.spawn || w.paths['nft-f'])
          .map((w) => [w.title, ...fast.map((p) => (w.paths[p] ? `${fmtRatio(w.vsSpawn[p])} / ${fmtRatio(w.vsNftF[p])}` : '–'))]),
      ),
    )
    out.push('')
    const notes = r.workloads.filter((w) => w.notes.length)
    if (notes.length) {
      out.push('Workload notes:')
      out.push('')
      for (const w of notes) out.push(`- ${w.title}: ${w.notes.join('; ')}`)
      out.push('')
    }
    out.push(`![cost versus ruleset size per path](${chartName})`)
    out.push('')
  }
  if (r.lag) {
    out.push(`## Event-loop lag and peak RSS (fresh Node process, bulk load ${r.lag.vms} VMs × ${r.lag.rules} rules, ${r.lag.rounds} rounds)`)
    out.push('')
    out.push(
      table(
        ['call', 'wall time', 'lag max (median of rounds)', 'lag max (worst round)', 'lag p99', 'lag mean'],
        r.lag.variants.map((v) => [v.name, fmtMs(v.ms), fmtMs(v.lagMaxMs), fmtMs(v.lagWorstMs), fmtMs(v.lagP99Ms), fmtMs(v.lagMeanMs)]),
      ),
    )
    out.push('')
    out.push(
      `Peak RSS (VmHWM of the fresh process): ${r.lag.maxRssStartMb !== undefined ? `${r.lag.maxRssStartMb.toFixed(0)} MB with the library loaded and a context open, ` : ''}${r.lag.maxRssBeforeMb.toFixed(0)} MB after generating the input (text + JSON object of the whole ruleset), ${r.lag.maxRssAfterTextMb !== undefined ? `${r.lag.maxRssAfterTextMb.toFixed(0)} MB after the text loads, ${(r.lag.maxRssAfterJsonMb ?? NaN).toFixed(0)} MB after the JSON loads (JSON.stringify's string plus libnftables' parsed JSON tree), ` : ''}${r.lag.maxRssAfterMb.toFixed(0)} MB at the end${r.lag.resourceUsageMaxRssMb !== undefined ? ` (process.resourceUsage().maxRSS says ${r.lag.resourceUsageMaxRssMb.toFixed(0)} MB: on Linux a forked child inherits its parent's high-water mark, here the benchmark process's)` : ''}. ${r.lag.note ?? ''}`,
    )
    out.push('')
  }
  if (r.dataplane) out.push(...dataplaneMarkdown(`Data plane: iperf3 across a bridge, ${r.dataplane.vms} VMs × ${r.dataplane.rulesPerVm} rules`, r.dataplane))
  if (r.anatomy) out.push(...dataplaneMarkdown(`Data plane anatomy: VmFirewall's table taken apart, ${r.anatomy.vms} VMs × ${r.anatomy.rulesPerVm} rules`, r.anatomy))
  if (r.anatomyUplink) out.push(...dataplaneMarkdown(`Data plane anatomy, from an uplink port to a VM, ${r.anatomyUplink.vms} VMs × ${r.anatomyUplink.rulesPerVm} rules`, r.anatomyUplink))
  if (r.levers) out.push(...leversMarkdown(r.levers))
  if (r.errors.length) {
    out.push('## Errors')
    out.push('')
    for (const e of r.errors) out.push(`- ${e.replace(/\n/g, ' ')}`)
    out.push('')
  }
  return out.join('\n')
}

// ---------------------------------------------------------------------------------------------

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')

interface Panel {
  title: string
  xLabels: string[]
  series: { path: PathId; points: (number | undefined)[] }[]
}

function panels(r: BenchResults): Panel[] {
  const groups = [...new Set(r.workloads.map((w) => w.group))].filter((g) => g.startsWith('add-rule/') || g === 'apply-vm')
  return groups.map((g) => {
    const ws = r.workloads.filter((w) => w.group === g).sort((a, b) => a.size - b.size)
    const paths = ORDER.filter((p) => ws.some((w) => w.paths[p]))
    const title =
      g === 'apply-vm'
        ? `Replace one VM's rules vs VMs loaded`
        : g === 'add-rule/one-chain'
          ? 'Add one rule vs rules loaded (one chain)'
          : `Add one rule vs rules loaded (${g.split('/')[1]!.replace('-', ' ')})`
    return {
      title,
      xLabels: ws.map((w) => (g === 'apply-vm' ? String(w.size) : w.size >= 1000 ? `${w.size / 1000}k` : String(w.size))),
      series: paths.map((p) => ({ path: p, points: ws.map((w) => w.paths[p]?.summary.median) })),
    }
  })
}

/** Hand-written SVG: one log-scale panel per series group (ms per operation vs ruleset size), one line per path. */
export function buildSvg(r: BenchResults): string {
  const ps = panels(r)
  const pw = 340
  const ph = 260
  const ml = 52
  const mt = 40
  const gap = 24
  const legendH = 56
  const width = Math.max(1, ps.length) * (pw + gap) + ml
  const height = mt + ph + 50 + legendH
  const parts: string[] = []
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`)
  parts.push(`<rect width="100%" height="100%" fill="#fff"/>`)
  parts.push(`<text x="${ml}" y="16" font-size="13" font-weight="bold">${esc(`Median ms per operation (log scale) — ${r.machine.cpu}, ${r.machine.cores} cores, kernel ${r.machine.kernel}, libnftables ${r.machine.libnftables}`)}</text>`)
  const all = ps.flatMap((p) => p.series.flatMap((s) => s.points)).filter((x): x is number => x !== undefined && x > 0)
  const lo = all.length ? Math.pow(10, Math.floor(Math.log10(Math.min(...all)))) : 0.01
  const hi = all.length ? Math.pow(10, Math.ceil(Math.log10(Math.max(...all)))) : 1000
  const ly = (v: number) => (Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))
  ps.forEach((panel, i) => {
    const x0 = ml + i * (pw + gap)
    const y0 = mt
    parts.push(`<text x="${x0 + pw / 2}" y="${y0 - 8}" text-anchor="middle" font-weight="bold">${esc(panel.title)}</text>`)
    parts.push(`<rect x="${x0}" y="${y0}" width="${pw}" height="${ph}" fill="none" stroke="#888"/>`)
    for (let e = Math.log10(lo); e <= Math.log10(hi) + 1e-9; e++) {
      const v = Math.pow(10, e)
      const y = y0 + ph - ly(v) * ph
      parts.push(`<line x1="${x0}" x2="${x0 + pw}" y1="${y.toFixed(1)}" y2="${y.toFixed(1)}" stroke="#e5e5e5"/>`)
      if (i === 0) parts.push(`<text x="${x0 - 4}" y="${(y + 4).toFixed(1)}" text-anchor="end">${esc(v >= 1 ? `${v} ms` : `${v.toPrecision(1)} ms`)}</text>`)
    }
    const n = panel.xLabels.length
    const xAt = (k: number) => x0 + (n === 1 ? pw / 2 : 20 + (k * (pw - 40)) / (n - 1))
    panel.xLabels.forEach((lab, k) => {
      parts.push(`<text x="${xAt(k).toFixed(1)}" y="${y0 + ph + 16}" text-anchor="middle">${esc(lab)}</text>`)
    })
    parts.push(`<text x="${x0 + pw / 2}" y="${y0 + ph + 32}" text-anchor="middle" fill="#555">${esc(panel.title.includes('VMs') ? 'VMs loaded' : 'rules loaded')}</text>`)
    for (const s of panel.series) {
      const pts = s.points
        .map((v, k) => (v !== undefined && v > 0 ? `${xAt(k).toFixed(1)},${(y0 + ph - ly(v) * ph).toFixed(1)}` : null))
        .filter((x): x is string => x !== null)
      if (pts.length > 1) parts.push(`<polyline fill="none" stroke="${COLORS[s.path]}" stroke-width="2" points="${pts.join(' ')}"/>`)
      for (const p of pts) {
        const [cx, cy] = p.split(',')
        parts.push(`<circle cx="${cx}" cy="${cy}" r="3" fill="${COLORS[s.path]}"/>`)
      }
    }
  })
  const used = ORDER.filter((p) => ps.some((panel) => panel.series.some((s) => s.path === p)))
  used.forEach((p, k) => {
    const col = k % 4
    const row = Math.floor(k / 4)
    const x = ml + col * 230
    const y = mt + ph + 50 + row * 18
    parts.push(`<line x1="${x}" x2="${x + 18}" y1="${y}" y2="${y}" stroke="${COLORS[p]}" stroke-width="3"/>`)
    parts.push(`<text x="${x + 24}" y="${y + 4}">${esc(PATH_LABEL[p])}</text>`)
  })
  parts.push('</svg>')
  return parts.join('\n') + '\n'
}

// ---------------------------------------------------------------------------------------------
// Commit cost levers (issue 15): tables and a conclusion computed from the numbers.

const LEVER_PATHS: [LeverPath, string][] = [
  ['nft-f', 'nft -f'],
  ['lib-text', 'Nft.run'],
  ['floor', 'kernel floor'],
]

const cellMed = (c: LeverCell | undefined, p: LeverPath): number | undefined => c?.paths[p]?.summary.median

/** Largest data-plane loss of 64-byte UDP packets/s (ratio points vs B) accepted for a shard count. */
export const SHARD_UDP_BUDGET = 0.05

/** The N the conclusion reads: 1000 when measured, else the largest. */
export function leverReferenceVms(l: LeversResult): number | undefined {
  const ns = [...new Set(l.cells.map((c) => c.vms))]
  return ns.includes(1000) ? 1000 : ns.sort((a, b) => b - a)[0]
}

function dpRatios(l: LeversResult, label: string): { tcp?: number; udp?: number } {
  return { tcp: l.dataplane?.configs[label]?.ratioToEmpty, udp: l.dataplane?.udp?.[label]?.ratioToEmpty }
}

const f2 = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? '–' : x.toFixed(2))

/** Conclusion lines, every figure taken from `l`. */
export function leversConclusion(l: LeversResult): string[] {
  const n = leverReferenceVms(l)
  if (n === undefined) return ['No lever was measured.']
  const at = l.cells.filter((c) => c.vms === n)
  const a = at.find((c) => c.variant === 'A')
  const b = at.find((c) => c.variant === 'B')
  const shards = at.filter((c) => c.variant === 'C')
  const out: string[] = []
  const hasFloor = l.floor.available
  const dpA = a ? dpRatios(l, a.label) : {}
  const dpB = b ? dpRatios(l, b.label) : {}
  if (a && b) {
    out.push(
      `**Lever 1, shared identity sets (B vs A) at ${n} VMs:** a replace adds ${b.replaceRules} rules instead of ${a.replaceRules} and the commit re-validates ${b.validatedRules} rules instead of ${a.validatedRules}. ` +
        `Nft.run ${fmtMs(cellMed(a, 'lib-text'))} → ${fmtMs(cellMed(b, 'lib-text'))} (${fmtRatio(b.vsA['lib-text'])} faster, paired), nft -f ${fmtMs(cellMed(a, 'nft-f'))} → ${fmtMs(cellMed(b, 'nft-f'))}` +
        (hasFloor ? `, kernel floor ${fmtMs(cellMed(a, 'floor'))} → ${fmtMs(cellMed(b, 'floor'))} (${fmtRatio(b.vsA.floor)})` : '') +
        '. ' +
        (l.dataplane ? `Data plane: TCP ${f2(dpA.tcp)} → ${f2(dpB.tcp)} of empty, 64-byte UDP ${f2(dpA.udp)} → ${f2(dpB.udp)}${dpA.udp !== undefined && dpB.udp !== undefined ? ` (${dpB.udp >= dpA.udp ? '+' : '−'}${Math.abs((dpB.udp - dpA.udp) * 100).toFixed(0)} points)` : ''}.` : 'Data plane not measured.'),
    )
  }
  let chosen: LeverCell | undefined = b
  if (b && shards.length) {
    const key: LeverPath = hasFloor ? 'floor' : 'lib-text'
    const base = cellMed(b, key)!
    const rows = shards.map((c) => {
      const gain = base / cellMed(c, key)!
      const dp = dpRatios(l, c.label)
      const loss = dpB.udp !== undefined && dp.udp !== undefined ? dpB.udp - dp.udp : undefined
      return { c, gain, dp, loss }
    })
    const fastLib = [b, ...shards].sort((x, y) => (cellMed(x, 'lib-text') ?? Infinity) - (cellMed(y, 'lib-text') ?? Infinity))[0]!
    out.push(
      `**Lever 2, shards (C vs B) at ${n} VMs:** ` +
        rows
          .map(
            ({ c, gain, dp, loss }) =>
              `K=${c.shards}: Nft.run ${fmtMs(cellMed(c, 'lib-text'))}${hasFloor ? `, floor ${fmtMs(cellMed(c, 'floor'))}, libnftables' own ${fmtMs(cellMed(c, 'lib-text')! - cellMed(c, 'floor')!)}` : ''} (${fmtRatio(gain)} of B's ${hasFloor ? 'floor' : 'Nft.run'}), UDP ${f2(dp.udp)}${loss !== undefined ? ` (${loss >= 0 ? '−' : '+'}${Math.abs(loss * 100).toFixed(0)} points vs B)` : ''}, TCP ${f2(dp.tcp)}`,
          )
          .join('; ') +
        `. B's Nft.run is ${fmtMs(cellMed(b, 'lib-text'))}${hasFloor ? ` of which the kernel floor is ${fmtMs(base)} (libnftables' own part, Nft.run − floor: ${fmtMs(cellMed(b, 'lib-text')! - base)})` : ''}` +
        `; through Nft.run the fastest layout is ${fastLib.label} (${fmtMs(cellMed(fastLib, 'lib-text'))}).`,
    )
    const ok = rows.filter((r) => r.loss !== undefined && r.loss <= SHARD_UDP_BUDGET && r.gain > 1.2)
    const best = ok.sort((x, y) => y.gain - x.gain)[0]
    if (!l.dataplane?.udp) out.push('Shard count: no 64-byte UDP data plane measured, so no choice is made from these numbers.')
    else if (best) {
      chosen = best.c
      out.push(
        `**Shard count:** K=${best.c.shards} buys the most commit time (${fmtRatio(best.gain)} vs one table) within ${(SHARD_UDP_BUDGET * 100).toFixed(0)} points of B's 64-byte UDP rate (criterion: largest ${hasFloor ? 'floor' : 'Nft.run'} gain > 1.2× at ≤ ${(SHARD_UDP_BUDGET * 100).toFixed(0)} points lost; run-to-run noise of the UDP ratio is a few points).`,
      )
    } else {
      out.push(
        `**Shard count:** no K > 1 gains > 1.2× commit time at ≤ ${(SHARD_UDP_BUDGET * 100).toFixed(0)} points of B's 64-byte UDP rate: one table (B) — the validation walk it saves is smaller than the per-frame cost of K base chains, or libnftables dominates the replace.`,
      )
    }
  }
  // The issue's targets, judged on what was measured.
  const t: string[] = []
  const lib = (c?: LeverCell) => cellMed(c, 'lib-text')
  if (a || b) {
    const bestLib = at.reduce<LeverCell | undefined>((m, c) => (m === undefined || (lib(c) ?? Infinity) < (lib(m) ?? Infinity) ? c : m), undefined)
    t.push(`replace one VM at ${n} VMs through libnftables ≤ 1.5 ms: ${at.map((c) => `${c.label} ${fmtMs(lib(c))}`).join(', ')} → ${bestLib && lib(bestLib)! <= 1.5 ? `met by ${bestLib.label}` : 'missed by every variant'}`)
    if (hasFloor) {
      const best = at.reduce<LeverCell | undefined>((m, c) => (m === undefined || (cellMed(c, 'floor') ?? Infinity) < (cellMed(m, 'floor') ?? Infinity) ? c : m), undefined)
      // An element-only replace (E, F, G) has no rule batch, so no floor here: its kernel time is measured apart.
      const noFloor = at.filter((c) => c.replaceRules === 0).map((c) => c.label)
      t.push(`≤ 0.5 ms with all levers (a lean path can reach at best the kernel floor): lowest floor ${fmtMs(cellMed(best, 'floor'))} (${best?.label}) → ${cellMed(best, 'floor')! <= 0.5 ? 'reachable' : 'out of reach with these rule batches'}${noFloor.length ? ` (${noFloor.join(', ')}: elements only, no rule batch to floor)` : ''}`)
    }
    const ns = [...new Set(l.cells.map((c) => c.vms))].sort((x, y) => x - y)
    if (ns.length > 1) {
      const lo = ns[0]!
      const hi = ns[ns.length - 1]!
      const labels = [...new Set(l.cells.filter((c) => c.vms === hi).map((c) => c.label))]
      const parts = labels.map((lb) => {
        const own = l.cells.filter((c) => c.label === lb).sort((x, y) => x.vms - y.vms)
        const first = own[0]!
        const last = own[own.length - 1]!
        const g = (p: LeverPath) => (cellMed(last, p) ?? NaN) / (cellMed(first, p) ?? NaN)
        return `${lb}${first.vms !== lo ? ` (from ${first.vms})` : ''} Nft.run ${fmtRatio(g('lib-text'))}${hasFloor ? `, floor ${fmtRatio(g('floor'))}` : ''}`
      })
      t.push(`flat within 2× from ${lo} to ${hi} VMs (time at ${hi} / time at ${lo}): ${parts.join('; ')}`)
    }
  }
  if (l.dataplane?.udp) {
    const d = l.dataplane
    const names = Object.keys(d.configs).filter((x) => x !== 'empty')
    t.push(`data plane TCP ≥ 0.90 / 64-byte UDP ≥ 0.85 of empty: ${names.map((x) => `${x} ${f2(d.configs[x]!.ratioToEmpty)} / ${f2(d.udp![x]?.ratioToEmpty)}${d.configs[x]!.ratioToEmpty >= 0.9 && (d.udp![x]?.ratioToEmpty ?? 0) >= 0.85 ? ' (met)' : ''}`).join('; ')}`)
  }
  if (t.length) out.push('Issue 15 targets on these rulesets: ' + t.join('; ') + '.')
  out.push(...leverShapeLines(l))
  if (a && b) {
    const key: LeverPath = hasFloor ? 'floor' : 'lib-text'
    const gain = b.vsA[key] ?? NaN
    const cost = dpA.udp !== undefined && dpB.udp !== undefined ? dpA.udp - dpB.udp : undefined
    const pays = gain > 1.2 && (cost === undefined || cost <= SHARD_UDP_BUDGET)
    const own = chosen ? (cellMed(chosen, 'lib-text') ?? NaN) - (cellMed(chosen, 'floor') ?? NaN) : NaN
    out.push(
      `Reading: lever 1 ${pays ? 'pays' : 'does not pay by this criterion'} (${fmtRatio(gain)} ${hasFloor ? 'kernel' : 'Nft.run'} commit time, ${fmtRatio(b.vsA['lib-text'])} through Nft.run, ${cost === undefined ? 'data plane not measured' : `${cost >= 0 ? `${(cost * 100).toFixed(0)} points of 64-byte UDP lost` : `${(-cost * 100).toFixed(0)} points of 64-byte UDP gained`} vs A`})` +
        `; ${chosen && chosen.variant === 'C' ? `shards: K=${chosen.shards} on top` : 'shards: none (one table)'}` +
        (hasFloor && Number.isFinite(own) ? `; what remains through libnftables above the floor (${fmtMs(own)} at ${n} VMs for ${chosen!.label}) is lever 3's to remove (a lean commit path), no table layout touches it.` : '.'),
    )
  }
  return out
}

/**
 * Lever 1's shapes (B, B2, B3, E, F, G vs A at the reference N): commit gain, data plane, element-only identity change,
 * and the shape to build: among those with > 1.2× kernel (else Nft.run) commit gain and at most SHARD_UDP_BUDGET
 * of 64-byte UDP lost vs A, the best 64-byte UDP ratio (TCP breaks ties within a point). An element-only replace
 * (E, F, G) has no floor, so its gain is Nft.run's.
 */
export function leverShapeLines(l: LeversResult): string[] {
  const n = leverReferenceVms(l)
  const at = l.cells.filter((c) => c.vms === n)
  const a = at.find((c) => c.variant === 'A')
  const shapes = at.filter((c) => c.variant !== 'A' && c.variant !== 'C')
  if (!a || !shapes.length) return []
  const key: LeverPath = l.floor.available ? 'floor' : 'lib-text'
  const dpA = dpRatios(l, a.label)
  const pts = (x?: number, y?: number) => (x === undefined || y === undefined ? '' : ` (${x >= y ? '+' : '−'}${Math.abs((x - y) * 100).toFixed(0)} points vs A)`)
  const keyOf = (c: LeverCell): LeverPath => (c.replaceRules === 0 ? 'lib-text' : key)
  const what = (k: LeverPath) => (k === 'floor' ? 'floor' : 'Nft.run')
  const rows = shapes.map((c) => ({ c, key: keyOf(c), gain: c.vsA[keyOf(c)] ?? NaN, dp: dpRatios(l, c.label) }))
  const out: string[] = [
    `**Lever 1 shapes at ${n} VMs (vs A, paired):** ` +
      rows
        .map(
          ({ c, key: k, gain, dp }) =>
            `${c.label}: ${what(k)} ${fmtMs(cellMed(a, k))} → ${fmtMs(cellMed(c, k))} (${fmtRatio(gain)})${k === key ? '' : ' (elements only: no floor)'}${k === 'lib-text' ? '' : `, Nft.run ${fmtRatio(c.vsA['lib-text'])}`}, ${c.validatedRules} rules validated; ` +
            `TCP ${f2(dp.tcp)}${pts(dp.tcp, dpA.tcp)}, 64-byte UDP ${f2(dp.udp)}${pts(dp.udp, dpA.udp)}`,
        )
        .join('; ') +
      `. A: TCP ${f2(dpA.tcp)}, 64-byte UDP ${f2(dpA.udp)}.`,
  ]
  const idA = a.identity
  const idRows = shapes.filter((c) => c.identity)
  if (idA && idRows.length) {
    const floorA = cellMed(a, 'floor')
    const withFloor = shapes.find((c) => cellMed(c, 'floor') !== undefined)
    out.push(
      `**Identity change at ${n} VMs:** A re-adds the out chain (${idA.rules} rules): Nft.run ${fmtMs(idA.paths['lib-text']?.summary.median)}${idA.paths.floor ? `, floor ${fmtMs(idA.paths.floor.summary.median)}` : ''}; ` +
        idRows
          .map((c) => `${c.label} swaps ${c.identity!.elements} elements, no rule: Nft.run ${fmtMs(c.identity!.paths['lib-text']?.summary.median)} (${fmtRatio(c.identity!.vsA['lib-text'])} faster than A's), nft -f ${fmtMs(c.identity!.paths['nft-f']?.summary.median)}`)
          .join('; ') +
        (floorA !== undefined && withFloor ? `; for scale, the kernel floor of a rule batch at this N is ${fmtMs(floorA)} (A's replace) and ${fmtMs(cellMed(withFloor, 'floor'))} (${withFloor.label}'s), most of it the validation walk of the table.` : '.'),
    )
  }
  if (l.dataplane?.udp && dpA.udp !== undefined) {
    const ok = rows.filter((r) => r.gain > 1.2 && r.dp.udp !== undefined && dpA.udp! - r.dp.udp <= SHARD_UDP_BUDGET)
    const best = ok.sort((x, y) => (Math.abs(y.dp.udp! - x.dp.udp!) < 0.01 ? (y.dp.tcp ?? 0) - (x.dp.tcp ?? 0) : y.dp.udp! - x.dp.udp!))[0]
    out.push(
      best
        ? `**Shape to build:** ${best.c.label} — ${fmtRatio(best.gain)} ${best.key === 'floor' ? 'kernel' : 'Nft.run'} commit time vs A at ${f2(best.dp.udp)} of empty 64-byte UDP (A ${f2(dpA.udp)}), TCP ${f2(best.dp.tcp)} (A ${f2(dpA.tcp)}) (criterion: > 1.2× commit gain, ≤ ${(SHARD_UDP_BUDGET * 100).toFixed(0)} points of UDP lost vs A, then the best UDP ratio)${best.c.replaceRules === 0 ? `; it holds only rules whose keys its maps can spell, so a VM with any other rule keeps its chains` : ''}.`
        : `**Shape to build:** none of ${rows.map((r) => r.c.label).join(', ')} gains > 1.2× commit time within ${(SHARD_UDP_BUDGET * 100).toFixed(0)} points of A's 64-byte UDP rate.`,
    )
  }
  return out
}

export function leversMarkdown(l: LeversResult): string[] {
  const out: string[] = []
  out.push(`## Commit cost levers (issue 15)`)
  out.push('')
  out.push(
    `Replace one VM (flush its two chains, add its rules; B/C also swap its identity elements) in one transaction, at ${l.vmCounts.join(', ')} VMs; ${l.rounds} rounds, in each round every path runs on every variant (orders rotated), so the ratios are paired. ` +
      `Each VM has ${l.userRulesPerChain} user rules + a default per chain. A = identity rules in each VM's chains (today's shape); B = identity checks as shared base-chain rules over concatenated sets, VMs contribute elements; C = B over K tables (VM i in table i mod K); B2 = B's sets behind an \`ether type vmap\` dispatch to one guard chain per protocol (MAC checked once per frame); B3 = B2 with one positive \`iifname . ether saddr . ip saddr\` lookup per protocol in front of the per-field checks; E = B2 with no VM chains: each VM rule is an accept/drop element of a verdict map per rule shape (\`iifname . ip saddr . meta l4proto . th dport vmap @out_s4\`, intervals in the kernel's pipapo sets), looked up after the guard, then a per-VM default map; its replace swaps elements only (no rule added and no element that jumps: the kernel validates nothing, and there is no rule batch for the floor); F = E with exact keys in hash maps (a port range spelled as its ports, one address for the prefix); G = F with a lookup for every one of the 14 shapes of exact-rules.ts's catalogue, the 11 its rules do not use in empty maps. ${l.floor.note}.`,
  )
  out.push('')
  const byVariant = [...new Set(l.cells.map((c) => c.label))]
  out.push(
    table(
      ['variant', 'VMs', 'rules added', 'rules validated', ...LEVER_PATHS.map(([, n]) => `${n} (median)`), 'Nft.run vs nft -f', 'floor vs nft -f', 'Nft.run vs A', 'floor vs A'],
      l.cells.map((c) => [
        c.label,
        String(c.vms),
        String(c.replaceRules),
        String(c.validatedRules),
        ...LEVER_PATHS.map(([p]) => fmtMs(cellMed(c, p))),
        fmtRatio(c.vsNftF['lib-text']),
        fmtRatio(c.vsNftF.floor),
        c.variant === 'A' ? '1' : fmtRatio(c.vsA['lib-text']),
        c.variant === 'A' ? '1' : fmtRatio(c.vsA.floor),
      ]),
    ),
  )
  out.push('')
  const ns = [...new Set(l.cells.map((c) => c.vms))].sort((x, y) => x - y)
  out.push('Curve: replace one VM, Nft.run median (kernel floor) in ms, by VMs loaded:')
  out.push('')
  out.push(
    table(
      ['variant', ...ns.map((x) => `${x} VMs`)],
      byVariant.map((lb) => [
        lb,
        ...ns.map((x) => {
          const c = l.cells.find((y) => y.vms === x && y.label === lb)
          if (!c) return '–'
          return `${fmtMs(cellMed(c, 'lib-text'))}${c.paths.floor ? ` (${fmtMs(cellMed(c, 'floor'))})` : ''}`
        }),
      ]),
    ),
  )
  out.push('')
  const ids = l.cells.filter((c) => c.identity)
  if (ids.length) {
    out.push(`Identity change: the VM's MAC/IPv4/IPv6 change, its user rules do not (A: flush and re-add its out chain; B/B2/B3/E/F: delete its old identity elements, add the new ones, no rule), one transaction; same rounds, paired with A:`)
    out.push('')
    out.push(
      table(
        ['variant', 'VMs', 'rules added', 'elements (each way)', ...LEVER_PATHS.map(([, n]) => `${n} (median)`), 'Nft.run vs A', 'Nft.run vs this variant\'s replace'],
        ids.map((c) => [
          c.label,
          String(c.vms),
          String(c.identity!.rules),
          String(c.identity!.elements),
          ...LEVER_PATHS.map(([p]) => fmtMs(c.identity!.paths[p]?.summary.median)),
          c.variant === 'A' ? '1' : fmtRatio(c.identity!.vsA['lib-text']),
          fmtRatio((cellMed(c, 'lib-text') ?? NaN) / (c.identity!.paths['lib-text']?.summary.median ?? NaN)),
        ]),
      ),
    )
    out.push('')
  }
  const d = l.dataplane
  if (d) {
    out.push(`Data plane per variant: iperf3 across a bridge, ${d.vms} VMs, ${d.seconds} s runs × ${d.rounds} rounds, ratios paired per round against the empty ruleset (worst case: no rule matches, two VMs' chains in the middle of the ruleset):`)
    out.push('')
    out.push(
      table(
        ['ruleset', 'TCP Gbit/s', 'TCP / empty', ...(d.udp ? ['UDP 64 B kpps', 'UDP / empty'] : [])],
        Object.entries(d.configs).map(([name, c]) => [
          name,
          c.medianGbps.toFixed(2),
          c.ratioToEmpty.toFixed(3),
          ...(d.udp ? [d.udp[name] ? d.udp[name]!.medianKpps.toFixed(0) : '–', d.udp[name] ? d.udp[name]!.ratioToEmpty.toFixed(3) : '–'] : []),
        ]),
      ),
    )
    out.push('')
    for (const x of d.notes) out.push(`- ${x}`)
    out.push('')
  }
  out.push('Conclusion (computed from the tables above):')
  out.push('')
  for (const x of leversConclusion(l)) out.push(`- ${x}`)
  out.push('')
  if (l.notes.length) {
    out.push('Notes:')
    out.push('')
    for (const x of l.notes) out.push(`- ${x}`)
    out.push('')
  }
  return out
}

/** One data-plane table: every configuration against the empty ruleset, TCP and (if measured) 64-byte UDP. */
function dataplaneMarkdown(title: string, d: DataplaneResult): string[] {
  const out: string[] = [`## ${title} (${d.seconds} s runs × ${d.rounds} rounds)`, '']
  const names = Object.keys(d.configs)
  out.push(
    table(
      ['ruleset', 'TCP Gbit/s (median)', 'TCP rounds (min–max)', 'ratio to empty', ...(d.udp ? ['UDP 64 B kpps', 'ratio to empty'] : [])],
      names.map((n) => [
        n,
        d.configs[n]!.medianGbps.toFixed(2),
        `${Math.min(...d.configs[n]!.samples).toFixed(1)}–${Math.max(...d.configs[n]!.samples).toFixed(1)}`,
        d.configs[n]!.ratioToEmpty.toFixed(2),
        ...(d.udp ? [d.udp[n]!.medianKpps.toFixed(0), d.udp[n]!.ratioToEmpty.toFixed(2)] : []),
      ]),
    ),
  )
  out.push('')
  out.push('Ratios are paired: each configuration against the empty ruleset in the same round, median over rounds. On a shared 2-core machine single iperf3 runs vary by tens of percent; compare the ratios, not the absolute rates.')
  out.push('')
  for (const n of d.notes) out.push(`- ${n}`)
  out.push('')
  return out
}
