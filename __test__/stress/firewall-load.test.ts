// Load: thousands of concurrent async operations (applyVm/detachVm/attachVm/stats) over 50 VMs on one
// instance, then the same from several worker_threads (each with its own Nft, disjoint VMs) on one
// namespace: no crash, no deadlock, and the final table is the last write issued for every VM.
import { createRequire } from 'node:module'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { Nft } from '../../ts/index.js'
import { VmFirewall, type VmSpec } from '../../ts/firewall/index.js'
import { distEntry } from '../support/child.js'
import { createNetns, type Netns } from '../support/netns.js'
import { prng, report, size } from '../support/stress.js'
import { canonical, type Compiler, distFirewall, ensureDistFirewall, expectedFwState, kernelFwState, randomSpec, runNodeAsync, structuralProblems } from '../support/stress-fw.js'

let ns: Netns
beforeAll(() => {
  ensureDistFirewall()
  ns = createNetns()
})
afterAll(() => ns?.delete())

const seed = Number(process.env.STRESS_SEED ?? 20261123)
const VMS = 50

/** Rejects if `p` takes longer than `ms` (a deadlock shows up as a timeout, not a hung test run). */
function deadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<T>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not finished after ${ms} ms (deadlock?)`)), ms)
  })
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer))
}

it('concurrent applyVm/detachVm/attachVm/stats on one instance: final state is the last write per VM', { timeout: size(90_000, 1_800_000) }, async () => {
  const rand = prng(seed)
  const total = size(800, 10_000)
  const nft = new Nft({ netns: ns.name })
  try {
    const fw = new VmFirewall(nft)
    const last = new Map<string, VmSpec>()
    const detached = new Set<string>()
    await Promise.all(
      Array.from({ length: VMS }, (_, i) => {
        const s = randomSpec(rand, i, 0)
        last.set(s.vmId, s)
        return fw.applyVm(s)
      }),
    )
    const kinds = { apply: 0, detach: 0, attach: 0, stats: 0 }
    const started = Date.now()
    const ops: Promise<unknown>[] = []
    for (let k = 0; k < total; k++) {
      const i = Math.floor(rand() * VMS)
      const vmId = `vm-${i}`
      const x = rand()
      if (x < 0.4) {
        const s = randomSpec(rand, i, k + 1)
        last.set(vmId, s)
        detached.delete(vmId)
        kinds.apply++
        ops.push(fw.applyVm(s))
      } else if (x < 0.6) {
        detached.add(vmId)
        kinds.detach++
        ops.push(fw.detachVm(vmId))
      } else if (x < 0.8) {
        detached.delete(vmId)
        kinds.attach++
        ops.push(fw.attachVm(vmId, last.get(vmId)!.tap))
      } else {
        kinds.stats++
        ops.push(fw.stats(vmId))
      }
    }
    const results = await deadline(Promise.allSettled(ops), size(80_000, 1_500_000), `${total} concurrent operations`)
    const elapsed = Date.now() - started
    const failed = results.filter((r) => r.status === 'rejected') as PromiseRejectedResult[]
    expect(failed.map((f) => String(f.reason)).slice(0, 5)).toEqual([])
    const state = kernelFwState(ns)
    expect(structuralProblems(state)).toEqual([])
    expect(canonical(state), 'kernel table differs from the last write per VM').toBe(canonical(expectedFwState([...last.values()], detached)))
    const v = await fw.verify()
    expect(v.ok, JSON.stringify(v.vms.filter((d) => d.status !== 'ok'))).toBe(true)
    report(
      'firewall/load (one instance)',
      `${total} concurrent operations over ${VMS} VMs (${kinds.apply} applyVm, ${kinds.detach} detachVm, ${kinds.attach} attachVm, ${kinds.stats} stats) ` +
        `in ${(elapsed / 1000).toFixed(1)} s (${Math.round(total / (elapsed / 1000))}/s): 0 failures, no deadlock, final table = last write for all ${VMS} VMs, verify() ok`,
    )
  } finally {
    nft.close()
  }
})

it('the same from worker_threads, each with its own Nft on the same namespace and its own VMs', { timeout: size(90_000, 1_800_000) }, async () => {
  const workers = 4
  const perWorker = size(150, 2500)
  const vmsPerWorker = Math.ceil(VMS / workers)
  const init = new Nft({ netns: ns.name })
  await new VmFirewall(init).sync([])
  init.close()
  // Worker code: plain JS against dist/. Specs are derived from (worker, vm, version) and returned.
  const script = `
    const { Worker } = require('node:worker_threads')
    const src = \`
      const { parentPort, workerData: d } = require('node:worker_threads')
      const { Nft } = require(d.entry)
      const { VmFirewall } = require(d.fw)
      let s = d.seed >>> 0
      const rand = () => { s = (s + 0x6d2b79f5) >>> 0; let t = s; t = Math.imul(t ^ (t >>> 15), t | 1); t ^= t + Math.imul(t ^ (t >>> 7), t | 61); return ((t ^ (t >>> 14)) >>> 0) / 4294967296 }
      const spec = (i, v) => ({
        vmId: 'w' + d.w + '-vm' + i, tap: 'w' + d.w + 't' + i, mac: '52:54:00:0' + d.w + ':00:' + (16 + i).toString(16),
        ipv4: ['10.7' + d.w + '.0.' + (i + 2)], defaultAction: v % 2 ? 'accept' : 'drop',
        rules: Array.from({ length: v % 4 }, (_, k) => ({ id: 'r' + v + '-' + k, name: 'n', protocol: k % 2 ? 'tcp' : 'udp', dstPortStart: 1 + ((v * 7 + k) % 60000), direction: ['IN', 'OUT', 'INOUT'][k % 3] })),
      })
      ;(async () => {
        const nft = new Nft({ netns: d.ns })
        const fw = new VmFirewall(nft)
        const last = {}
        const detached = {}
        await Promise.all(Array.from({ length: d.vms }, (_, i) => { last[i] = spec(i, 0); return fw.applyVm(last[i]) }))
        const ops = []
        for (let k = 0; k < d.ops; k++) {
          const i = Math.floor(rand() * d.vms)
          const x = rand()
          if (x < 0.4) { last[i] = spec(i, k + 1); detached[i] = false; ops.push(fw.applyVm(last[i])) }
          else if (x < 0.6) { detached[i] = true; ops.push(fw.detachVm(last[i].vmId)) }
          else if (x < 0.8) { detached[i] = false; ops.push(fw.attachVm(last[i].vmId, last[i].tap)) }
          else ops.push(fw.stats(last[i].vmId))
        }
        const res = await Promise.allSettled(ops)
        const errors = res.filter((r) => r.status === 'rejected').map((r) => String(r.reason))
        const v = await fw.verify()
        nft.close()
        parentPort.postMessage({ errors, specs: Object.values(last), detached: Object.keys(detached).filter((i) => detached[i]).map((i) => last[i].vmId),
          notOk: v.vms.filter((x) => x.status !== 'ok'), table: v.table })
      })().catch((e) => parentPort.postMessage({ errors: [String(e && e.stack)] }))
    \`
    const started = Date.now()
    const runs = Array.from({ length: ${workers} }, (_, w) => new Promise((resolve, reject) => {
      const worker = new Worker(src, { eval: true, workerData: { entry: ${JSON.stringify(distEntry)}, fw: ${JSON.stringify(distFirewall)}, ns: ${JSON.stringify(ns.name)},
        w, seed: ${seed} + w, vms: ${vmsPerWorker}, ops: ${perWorker} } })
      worker.once('message', resolve)
      worker.once('error', reject)
    }))
    Promise.all(runs).then((r) => console.log(JSON.stringify({ elapsed: Date.now() - started, workers: r })))
  `
  const out = (await runNodeAsync(script, size(80_000, 1_700_000))) as {
    elapsed: number
    workers: { errors: string[]; specs: VmSpec[]; detached: string[]; notOk: unknown[]; table: string[] }[]
  }
  for (const w of out.workers) {
    expect(w.errors.slice(0, 5)).toEqual([])
    expect(w.notOk).toEqual([])
    expect(w.table).toEqual([])
  }
  // The whole table, predicted with dist/'s compiler (what the workers ran).
  const dist = createRequire(__filename)(distFirewall) as Compiler
  const specs = out.workers.flatMap((w) => w.specs)
  const detached = new Set(out.workers.flatMap((w) => w.detached))
  const state = kernelFwState(ns)
  expect(structuralProblems(state)).toEqual([])
  expect(canonical(state), 'kernel table differs from the last write per VM').toBe(canonical(expectedFwState(specs, detached, dist)))
  const total = workers * perWorker
  report(
    'firewall/load (worker_threads)',
    `${workers} worker_threads x ${perWorker} concurrent operations (${total} in all) over ${specs.length} VMs, one Nft each on one namespace, ` +
      `in ${(out.elapsed / 1000).toFixed(1)} s: 0 failures, no deadlock, final table = last write for every VM`,
  )
})
