// Report builders of the benchmark harness: targets, Markdown and the hand-written SVG (pure functions).
import { describe, expect, it } from 'vitest'
import { buildMarkdown, buildSvg, evaluateTargets, pairedDifference } from '../../bench/lib/report.js'
import { summarize } from '../../bench/lib/stats.js'
import type { BenchResults, WorkloadResult } from '../../bench/lib/types.js'
import type { PathId } from '../../bench/lib/paths.js'

function workload(id: string, group: string, size: number, medians: Partial<Record<PathId, number>>): WorkloadResult {
  const paths: WorkloadResult['paths'] = {}
  for (const [p, m] of Object.entries(medians)) paths[p as PathId] = { samples: [m, m, m], summary: summarize([m, m, m]) }
  const vsSpawn: WorkloadResult['vsSpawn'] = {}
  const vsNftF: WorkloadResult['vsNftF'] = {}
  for (const [p, m] of Object.entries(medians)) {
    if (medians.spawn && p !== 'spawn') vsSpawn[p as PathId] = medians.spawn / m
    if (medians['nft-f'] && p !== 'nft-f') vsNftF[p as PathId] = medians['nft-f'] / m
  }
  return { id, group, title: `${group} <${size}> & co`, size, sizeLabel: String(size), rounds: 3, paths, vsSpawn, vsNftF, notes: ['spawn: 22 processes'] }
}

function results(): BenchResults {
  return {
    version: 1,
    startedAt: '2026-01-01T00:00:00.000Z',
    finishedAt: '2026-01-01T00:01:00.000Z',
    durationS: 60,
    mode: 'full',
    config: {},
    machine: { cpu: 'Test CPU', cores: 2, kernel: '6.1', os: 'Debian', node: 'v20', libnftables: '1.0.6', nft: 'nftables v1.0.6', python3Nftables: '1.0.6', memoryGb: 8 },
    vmFirewall: { available: false, note: 'not measured' },
    workloads: [
      workload('add-rule/one-chain/0', 'add-rule/one-chain', 0, { spawn: 5, 'nft-f': 5, 'lib-text': 0.2, 'lib-json': 0.25 }),
      workload('add-rule/one-chain/1000', 'add-rule/one-chain', 1000, { spawn: 6, 'nft-f': 6, 'lib-text': 0.4, 'lib-json': 0.45 }),
      workload('apply-vm/1', 'apply-vm', 1, { spawn: 100, 'nft-f': 10, 'lib-text': 0.4, 'lib-json': 1 }),
      workload('apply-vm/1000', 'apply-vm', 1000, { spawn: 200, 'nft-f': 12, 'lib-text': 0.45, 'lib-json': 2 }),
      workload('bulk/1000x50', 'bulk', 50000, { 'nft-f': 1300, 'lib-text': 1250, 'lib-json': 3200 }),
    ],
    dataplane: {
      vms: 1000,
      rulesPerVm: 20,
      seconds: 3,
      rounds: 1,
      configs: {
        empty: { samples: [10], medianGbps: 10, ratioToEmpty: 1 },
        'vmap (raw)': { samples: [9.5], medianGbps: 9.5, ratioToEmpty: 0.95 },
        'linear jumps': { samples: [2], medianGbps: 2, ratioToEmpty: 0.2 },
      },
      notes: [],
    },
    lag: {
      vms: 1000,
      rules: 50,
      rounds: 3,
      variants: [
        { name: 'idle control (no call)', ms: 1000, lagMaxMs: 1.2, lagWorstMs: 2, lagP99Ms: 1.1, lagMeanMs: 1 },
        { name: 'async run (text)', ms: 1000, lagMaxMs: 3, lagWorstMs: 4, lagP99Ms: 1.1, lagMeanMs: 1 },
        { name: 'async runJson (object)', ms: 3000, lagMaxMs: 80, lagWorstMs: 90, lagP99Ms: 1.1, lagMeanMs: 1 },
        { name: 'async runJson (object), own work only (closed instance)', ms: 150, lagMaxMs: 6, lagWorstMs: 9, lagP99Ms: 5, lagMeanMs: 1 },
      ],
      maxRssBeforeMb: 100,
      maxRssAfterMb: 200,
    },
    targets: [],
    errors: [],
  }
}

describe('evaluateTargets', () => {
  const t = evaluateTargets(results())
  const find = (s: string) => t.filter((x) => x.name.includes(s))

  it('judges the replace target at the largest VM count, per library path', () => {
    const m = find("(1000 VMs): median")
    expect(m.map((x) => [x.measured, x.status])).toEqual([
      ['0.450 ms', 'met'],
      ['2.00 ms', 'missed'],
    ])
    expect(m[1]!.why).toMatch(/cache/)
  })

  it('judges the ratios against nft -f and spawn', () => {
    expect(find('vs nft -f, Nft.run (text)')[0]!.status).toBe('met') // 12 / 0.45 = 26.7
    expect(find('vs nft -f, Nft.runJson')[0]!.status).toBe('missed') // 6
    expect(find('vs spawn per rule, Nft.run (text)')[0]!.status).toBe('met') // 444
  })

  it('judges bulk load, data plane and event-loop lag', () => {
    expect(find('Bulk load 50000: Nft.run (text)')[0]!.status).toBe('met')
    expect(find('Bulk load 50000: Nft.runJson')[0]!.status).toBe('missed')
    expect(find('Data plane')[0]!.status).toBe('met')
    expect(find('async run (text)')[0]!.status).toBe('met')
    expect(find('async runJson (object)')[0]!.status).toBe('missed')
    // The closed-instance row isolates the call's own work: met, and it tells the other row's cause.
    expect(find('own work only')[0]!.status).toBe('met')
    expect(find('async runJson (object)')[0]!.why).toContain("not the call's own work")
    expect(find('async runJson (object)')[0]!.why).toContain('6.00 ms')
  })
})

describe('buildMarkdown', () => {
  it('has the machine, the targets and one row per workload', () => {
    const r = results()
    r.targets = evaluateTargets(r)
    const md = buildMarkdown(r)
    expect(md).toContain('Test CPU, 2 cores')
    expect(md).toContain('libnftables 1.0.6')
    expect(md).toContain('## Targets')
    for (const w of r.workloads) expect(md).toContain(`| ${w.title} |`)
    expect(md).toContain('![cost versus ruleset size per path](latest.svg)')
  })
})

describe('buildSvg', () => {
  it('is a self-contained SVG with one panel per series and escaped text', () => {
    const svg = buildSvg(results())
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true)
    expect(svg.trim().endsWith('</svg>')).toBe(true)
    expect(svg).not.toMatch(/NaN|undefined/)
    // Panels for add-rule/one-chain and apply-vm; one polyline per path with ≥ 2 points in each.
    expect(svg.match(/<polyline/g)?.length).toBe(8)
    expect(svg).toContain('Replace one VM')
    // Opening and closing tags balance (well-formed enough for a browser and GitHub).
    const opened = (svg.match(/<(text|svg)\b/g) ?? []).length
    const closed = (svg.match(/<\/(text|svg)>/g) ?? []).length
    expect(opened).toBe(closed)
  })

  it('draws an empty chart without data', () => {
    const r = results()
    r.workloads = []
    const svg = buildSvg(r)
    expect(svg).toContain('</svg>')
    expect(svg).not.toMatch(/NaN/)
  })
})

describe('paired facade difference', () => {
  it('is the median of per-pair differences, not the difference of medians', () => {
    const w = workload('apply-vm-paired/1000', 'apply-vm-paired', 1000, {})
    // Pairs drift with the machine; each facade call is 0.1 ms over its pair's engine call.
    w.paths.vmfw = { samples: [1, 5, 9, undefined], summary: summarize([1, 5, 9]) }
    w.paths.compat = { samples: [1.1, 5.1, 9.1, 3], summary: summarize([1.1, 5.1, 9.1, 3]) }
    expect(pairedDifference(w)).toBeCloseTo(0.1)
    const r = results()
    r.workloads.push({ ...workload('apply-vm/1000', 'apply-vm', 1000, { vmfw: 5, compat: 9 }), id: 'apply-vm/1000' }, w)
    const row = evaluateTargets(r).find((t) => t.name.includes('in pairs'))!
    expect(row.status).toBe('met')
    expect(row.measured).toContain('+0.10 ms, median of 3 paired differences')
  })
})
