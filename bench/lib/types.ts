import type { PathId } from './paths.js'
import type { Summary } from './stats.js'

export interface PathResult {
  /** Per-round wall times in ms (index = round; undefined where the path did not run that round). */
  samples: (number | undefined)[]
  summary: Summary
  /** Set when the figure is scaled from a smaller sample (e.g. spawn-per-command bulk load). */
  extrapolated?: string
}

export interface WorkloadResult {
  /** Stable id, e.g. `add-rule/one-chain/10000`. */
  id: string
  /** Series the chart groups by, e.g. `add-rule/one-chain`. */
  group: string
  title: string
  /** X value of the chart (ruleset size). */
  size: number
  sizeLabel: string
  rounds: number
  paths: Partial<Record<PathId, PathResult>>
  /** Median of per-round ratios: time(spawn)/time(path) and time(nft -f)/time(path). >1 = path faster. */
  vsSpawn: Partial<Record<PathId, number>>
  vsNftF: Partial<Record<PathId, number>>
  notes: string[]
}

export interface LagResult {
  vms: number
  rules: number
  rounds: number
  variants: {
    name: string
    /** Wall time of the call (median over rounds). */
    ms: number
    /** Median over rounds of the largest delay in a round. */
    lagMaxMs: number
    /** Largest delay in any round. */
    lagWorstMs: number
    lagP99Ms: number
    lagMeanMs: number
  }[]
  /** maxRSS with the library loaded and one context open, before generating the input. */
  maxRssStartMb?: number
  maxRssBeforeMb: number
  /** After the async text loads, then after the async JSON loads. */
  maxRssAfterTextMb?: number
  maxRssAfterJsonMb?: number
  maxRssAfterMb: number
  /** process.resourceUsage().maxRSS at the end (inherits the parent's high-water mark at fork; see lag.ts). */
  resourceUsageMaxRssMb?: number
  note?: string
}

export interface DataplaneResult {
  vms: number
  rulesPerVm: number
  seconds: number
  rounds: number
  /** Gbit/s per configuration, per round. */
  configs: Record<string, { samples: number[]; medianGbps: number; ratioToEmpty: number }>
  udp?: Record<string, { samples: number[]; medianKpps: number; ratioToEmpty: number }>
  notes: string[]
}

/** The commit-cost levers of issue 15 (`--only levers`). */
export type LeverPath = 'nft-f' | 'lib-text' | 'floor'

export interface LeverCell {
  /** 'A' identity rules per VM, 'B' shared identity sets, 'B2' B behind a protocol dispatch, 'B3' B2 with positive lookups, 'C' B over `shards` tables, 'E' the VMs' rules as elements of interval maps, 'F' of hash maps (exact keys), 'G' F with the empty maps of a full shape catalogue. */
  variant: 'A' | 'B' | 'B2' | 'B3' | 'C' | 'E' | 'F' | 'G'
  shards: number
  label: string
  vms: number
  /** Rules one replace adds, and rules the kernel re-validates in the target's table. */
  replaceRules: number
  validatedRules: number
  paths: Partial<Record<LeverPath, PathResult>>
  /** Median of per-round ratios time(nft -f) / time(path). */
  vsNftF: Partial<Record<LeverPath, number>>
  /** Median of per-round ratios time(path in variant A) / time(path here), same N, same round. */
  vsA: Partial<Record<LeverPath, number>>
  /** Change the VM's identity only (A: re-add its out chain; B*: swap its identity elements, no rule). */
  identity?: LeverIdentityCell
}

export interface LeverIdentityCell {
  /** Rules the change adds, identity elements it deletes and adds. */
  rules: number
  elements: number
  paths: Partial<Record<LeverPath, PathResult>>
  /** Median of per-round ratios time(A's identity change) / time(this one), same path, same round. */
  vsA: Partial<Record<LeverPath, number>>
}

export interface LeversResult {
  vmCounts: number[]
  shards: number[]
  rounds: number
  userRulesPerChain: number
  floor: { available: boolean; note: string; iterations: number }
  cells: LeverCell[]
  /** Configs 'empty', then one per variant (labels of the cells). */
  dataplane?: DataplaneResult
  notes: string[]
}

export interface Machine {
  cpu: string
  cores: number
  kernel: string
  os: string
  node: string
  libnftables: string
  nft: string
  python3Nftables: string
  memoryGb: number
}

export interface Target {
  name: string
  goal: string
  measured: string
  status: 'met' | 'missed' | 'not measured'
  by: string
  why?: string
}

export interface BenchResults {
  version: 1
  startedAt: string
  finishedAt: string
  durationS: number
  mode: 'quick' | 'full'
  config: Record<string, unknown>
  machine: Machine
  vmFirewall: { available: boolean; note: string }
  workloads: WorkloadResult[]
  lag?: LagResult
  dataplane?: DataplaneResult
  /** Issue 15: VmFirewall's table taken apart and reshaped (`--only anatomy`). */
  anatomy?: DataplaneResult
  /** The same with the sending port an uplink (no VM's tap): traffic from outside to a VM. */
  anatomyUplink?: DataplaneResult
  levers?: LeversResult
  targets: Target[]
  errors: string[]
  notes?: string[]
}
