// Helpers for the VmFirewall reliability suite: deterministic spec generators, the kernel state of the
// firewall table read with the nft CLI (an oracle independent of the library), and the state a set of
// specs compiles to (via the library's pure compiler), so tests can compare the two.
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { compileVm, normalizeVm, type FirewallRuleInput, type VmSpec } from '../../ts/firewall/index.js'
import { BASE_PRIORITY } from '../../ts/firewall/compile.js'
import { baseGuardRules, guardChainRules, identityElements, VM_SETS } from '../../ts/firewall/layout.js'
import { ensureDist, repoRoot } from './child.js'
import type { Netns } from './netns.js'

/** The built firewall entry point (dist/index.js only exports the raw binding). */
export const distFirewall = join(repoRoot, 'dist', 'firewall', 'index.js')
export const distCompat = join(repoRoot, 'dist', 'compat', 'index.js')

export function ensureDistFirewall(): void {
  ensureDist()
  for (const f of [distFirewall, distCompat]) if (!existsSync(f)) throw new Error(`${f} missing: run npx tsc -p tsconfig.build.json`)
}

// ---- deterministic valid specs ----

const pick = <T>(rand: () => number, xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!
const int = (rand: () => number, lo: number, hi: number): number => lo + Math.floor(rand() * (hi - lo + 1))

/** A random valid rule (deterministic from `rand`). */
export function randomRule(rand: () => number, id: string): FirewallRuleInput {
  const protocol = pick(rand, ['tcp', 'udp', 'icmp', 'all'] as const)
  const r: FirewallRuleInput = {
    id,
    name: `rule ${id}`,
    action: pick(rand, ['ACCEPT', 'DROP', 'REJECT'] as const),
    direction: pick(rand, ['IN', 'OUT', 'INOUT'] as const),
    priority: int(rand, 0, 1000),
    protocol,
  }
  if ((protocol === 'tcp' || protocol === 'udp') && rand() < 0.7) {
    r.dstPortStart = int(rand, 1, 60000)
    if (rand() < 0.3) r.dstPortEnd = r.dstPortStart + int(rand, 0, 100)
  }
  if ((protocol === 'tcp' || protocol === 'udp') && rand() < 0.2) r.srcPortStart = int(rand, 1024, 65535)
  const fam = rand()
  if (fam < 0.35) {
    r.srcIpAddr = `10.${int(rand, 0, 255)}.${int(rand, 0, 255)}.0`
    r.srcIpMask = String(pick(rand, [8, 16, 24, 32]))
  } else if (fam < 0.5) {
    r.dstIpAddr = `fd00:${int(rand, 0, 0xffff).toString(16)}::/${pick(rand, [48, 64, 128])}`
  }
  if (rand() < 0.1) r.connectionState = { established: true, related: rand() < 0.5, new: rand() < 0.5 }
  return r
}

/** A random valid spec for VM `i` (tap and vmId fixed per `i`, so versions of one VM share its tap). */
export function randomSpec(rand: () => number, i: number, version: number, prefix = 'vm'): VmSpec {
  const identified = rand() < 0.7
  const spec: VmSpec = {
    vmId: `${prefix}-${i}`,
    tap: `${prefix.slice(0, 6)}t${i}`,
    defaultAction: rand() < 0.5 ? 'drop' : 'accept',
    rules: Array.from({ length: int(rand, 0, 5) }, (_, k) => randomRule(rand, `r${version}-${k}`)),
  }
  if (identified) {
    spec.mac = `52:54:00:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}:${int(rand, 0, 255).toString(16).padStart(2, '0')}`
    spec.ipv4 = [`10.99.${i >> 8}.${(i & 0xff) + 1}`]
    if (rand() < 0.5) spec.ipv6 = [`fd00:99::${(i + 1).toString(16)}`]
  }
  if (rand() < 0.3) spec.departmentRules = [randomRule(rand, `d${version}`)]
  return spec
}

// ---- kernel state (nft CLI) and expected state (compiler) ----

/** What matters of the firewall table: each chain's rule comments in order, the dispatch maps, the base chains. */
export interface FwState {
  exists: boolean
  chains: Record<string, string[]>
  from_vm: Record<string, string>
  to_vm: Record<string, string>
  /** Base chains with their rules: the shared guard's by comment, then the dispatch rule's statements. */
  base: string[]
  /** Issue 15: the guard chains' rule comments, and the per-VM sets' element keys (`tap`, `tap . value`), sorted. */
  guard: Record<string, string[]>
  sets: Record<string, string[]>
}

type Json = Record<string, unknown>

function elems(map: Json): Record<string, string> {
  const out: Record<string, string> = {}
  for (const e of (map.elem as unknown[] | undefined) ?? []) {
    const pair = (e && typeof e === 'object' && !Array.isArray(e) && 'elem' in e ? (e as Json).elem : e) as [string, Json]
    const v = pair[1] as { jump?: { target: string }; goto?: { target: string } }
    out[pair[0]] = v.jump ? v.jump.target : `goto:${v.goto?.target}`
  }
  return out
}

/** Parses `nft -j list table bridge <table>` output. */
export function parseFwState(jsonText: string | undefined): FwState {
  const s: FwState = { exists: false, chains: {}, from_vm: {}, to_vm: {}, base: [], guard: {}, sets: {} }
  if (jsonText === undefined) return s
  s.exists = true
  const doc = JSON.parse(jsonText) as { nftables: Json[] }
  const hooks: Record<string, string> = {}
  const baseRules: Record<string, string[]> = {}
  for (const o of doc.nftables) {
    if (o.chain) {
      const c = o.chain as Json
      if (c.hook) {
        hooks[c.name as string] = `${c.hook as string}/${c.prio as number}/${c.policy as string}`
        baseRules[c.name as string] = []
      } else if (/^(guard|glog)_/.test(c.name as string)) s.guard[c.name as string] = []
      else s.chains[c.name as string] = []
    } else if (o.set && VM_SETS.includes((o.set as Json).name as string)) {
      // An element as the CLI lists it: "tap", { concat: [tap, value] }, or either wrapped with its counter.
      const key = (e: unknown): string => {
        const v = e && typeof e === 'object' && 'elem' in e ? ((e as Json).elem as Json).val : e
        return typeof v === 'string' ? v : ((v as Json).concat as string[]).join(' . ')
      }
      s.sets[(o.set as Json).name as string] = (((o.set as Json).elem as unknown[] | undefined) ?? []).map(key).sort()
    } else if (o.map) {
      const m = o.map as Json
      if (m.name === 'from_vm') s.from_vm = elems(m)
      else if (m.name === 'to_vm') s.to_vm = elems(m)
      else s.base.push(`map:${m.name as string}`)
    } else if (o.rule) {
      const r = o.rule as Json
      const chain = r.chain as string
      if (chain in baseRules) baseRules[chain]!.push((r.comment as string | undefined) ?? JSON.stringify(r.expr))
      else if (chain in s.guard) s.guard[chain]!.push((r.comment as string | undefined) ?? '(no comment)')
      else (s.chains[chain] ??= []).push((r.comment as string | undefined) ?? '(no comment)')
    }
  }
  for (const [name, hook] of Object.entries(hooks).sort()) s.base.push(`${name}:${hook}:${baseRules[name]!.join('|')}`)
  return s
}

/** The firewall table as the kernel has it now, read with the nft CLI inside the namespace. */
export function kernelFwState(ns: Netns, table = 'infinization'): FwState {
  let text: string | undefined
  try {
    text = ns.exec('nft', ['-j', 'list', 'table', 'bridge', table])
  } catch (e) {
    if (!/No such file or directory/.test(String((e as { stderr?: string }).stderr ?? e))) throw e
  }
  return parseFwState(text)
}

const BASE = [
  `postrouting:postrouting/${BASE_PRIORITY}/accept:${[...baseGuardRules('postrouting').map((r) => r.comment), '[{"vmap":{"key":{"meta":{"key":"oifname"}},"data":"@to_vm"}}]'].join('|')}`,
  `prerouting:prerouting/${BASE_PRIORITY}/accept:${[...baseGuardRules('prerouting').map((r) => r.comment), '[{"vmap":{"key":{"meta":{"key":"iifname"}},"data":"@from_vm"}}]'].join('|')}`,
]
const GUARD = Object.fromEntries(guardChainRules().map(([name, rules]) => [name, rules.map((r) => r.comment)]))

/** The pure compiler to predict with: the sources by default, or dist/ when a child process runs dist/. */
export interface Compiler {
  compileVm: typeof compileVm
  normalizeVm: typeof normalizeVm
}

/** The state a set of applied VMs compiles to (stateless kernel: no bridge conntrack, no bridge reject).
 *  `detached` VMs have chains but no dispatch entries. */
export function expectedFwState(specs: VmSpec[], detached: ReadonlySet<string> = new Set(), lib: Compiler = { compileVm, normalizeVm }): FwState {
  const s: FwState = { exists: true, chains: {}, from_vm: {}, to_vm: {}, base: [...BASE], guard: structuredClone(GUARD), sets: Object.fromEntries(VM_SETS.map((n) => [n, []])) }
  for (const spec of specs) {
    const c = lib.compileVm(lib.normalizeVm(spec), { capabilities: { bridgeConntrack: false, bridgeReject: false }, conntrack: 'auto' })
    s.chains[c.chains.out] = c.out.map((r) => r.comment)
    s.chains[c.chains.in] = c.in.map((r) => r.comment)
    if (!detached.has(spec.vmId)) {
      s.from_vm[c.tap] = c.chains.out
      s.to_vm[c.tap] = c.chains.in
      for (const e of identityElements(c.identity, c.tap)) s.sets[e.set]!.push(e.key)
    }
  }
  for (const k of Object.keys(s.sets)) s.sets[k]!.sort()
  return s
}

/** A canonical string for comparing states (key order independent). */
export function canonical(s: FwState): string {
  const sortObj = (o: Record<string, unknown>) => Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
  return JSON.stringify({
    exists: s.exists,
    chains: sortObj(s.chains),
    from_vm: sortObj(s.from_vm),
    to_vm: sortObj(s.to_vm),
    base: [...s.base].sort(),
    guard: sortObj(s.guard),
    sets: sortObj(s.sets),
  })
}

/** Structural invariants every committed state satisfies: complete VM chains (last rule is the
 *  default-action rule, both chains of a VM present), dispatch entries pointing at existing chains. */
export function structuralProblems(s: FwState): string[] {
  const p: string[] = []
  if (!s.exists) return p
  for (const [name, comments] of Object.entries(s.chains)) {
    if (!/^vm_[0-9a-f]{24}_[oi]$/.test(name)) {
      p.push(`foreign chain ${name}`)
      continue
    }
    const last = comments[comments.length - 1]
    if (!last?.startsWith('d:')) p.push(`chain ${name} incomplete: last rule ${last ?? '(none)'}`)
    const twin = name.slice(0, -1) + (name.endsWith('_o') ? 'i' : 'o')
    if (!(twin in s.chains)) p.push(`chain ${name} without ${twin}`)
  }
  for (const map of ['from_vm', 'to_vm'] as const) {
    for (const [key, target] of Object.entries(s[map])) if (!(target in s.chains)) p.push(`${map}[${key}] -> missing ${target}`)
  }
  if (JSON.stringify([...s.base].sort()) !== JSON.stringify(BASE)) p.push(`base chains: ${JSON.stringify(s.base)}`)
  // Issue 15: the shared guard is constant, and its elements belong to dispatched interfaces only.
  for (const [name, comments] of Object.entries(GUARD)) if (JSON.stringify(s.guard[name]) !== JSON.stringify(comments)) p.push(`guard chain ${name}: ${JSON.stringify(s.guard[name])}`)
  for (const [set, keys] of Object.entries(s.sets)) {
    for (const key of keys) if (!(key.split(' . ')[0]! in s.from_vm)) p.push(`guard element ${set}:${key} of an undispatched interface`)
  }
  return p
}

/** Table headers in a namespace (`table bridge infinization`, ...), sorted. */
export function tables(ns: Netns): string[] {
  return ns
    .exec('nft', ['list', 'tables'])
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .sort()
}

/** Like runNode (child.ts) but asynchronous and with a caller-chosen timeout: runs `node -e script`
 *  and parses the JSON it prints last. */
export function runNodeAsync(script: string, timeoutMs: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', script], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`child timed out after ${timeoutMs} ms (deadlock?): ${err}`))
    }, timeoutMs)
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    child.stderr.on('data', (d: Buffer) => (err += d.toString()))
    child.on('error', reject)
    child.on('close', (code, signal) => {
      if (code === null) err += ` [signal ${String(signal)}]` // e.g. SIGABRT: an assertion in a native library
      clearTimeout(timer)
      if (code !== 0) return reject(new Error(`child failed (${code}): ${err}`))
      const lines = out.trim().split('\n')
      try {
        resolve(JSON.parse(lines[lines.length - 1]!))
      } catch (e) {
        reject(new Error(`child printed no JSON: ${out} ${err} ${String(e)}`))
      }
    })
  })
}
