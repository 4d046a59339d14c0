// Several processes writing one firewall table at once, each with its own VMs plus VMs they all share:
// every operation must succeed (a lost race is re-read and retried inside the library, idempotent operations
// never fail because their target is already gone), and the end state must be each writer's last word.
// Each writer also drives one VM of its own through the compat facade (issue 14: its decisions are made from
// the engine's view as last known, which the other writers keep making stale, so most are made again): no
// error, and a stopped VM stays stopped and a running one running across applyRules. (A decision made stale by
// a change to the VM itself is compat/call-count.wire.test.ts's.)
import { afterAll, beforeAll, expect, it } from 'vitest'
import { Nft } from '../../ts/index.js'
import { VmFirewall, type VmSpec } from '../../ts/firewall/index.js'
import { createNetns, type Netns } from '../support/netns.js'
import { distCompat, distFirewall, ensureDistFirewall, kernelFwState, runNodeAsync, structuralProblems } from '../support/stress-fw.js'
import { distEntry } from '../support/child.js'
import { report, size } from '../support/stress.js'

let ns: Netns
beforeAll(() => {
  ensureDistFirewall()
  ns = createNetns('fwwr')
})
afterAll(() => ns?.delete())

const WRITERS = size(3, 4)
const SECONDS = size(6, 60)
const OWN = 3
const SHARED = 2

interface WriterReport {
  ops: number
  facadeOps: number
  errors: string[]
  own: VmSpec[]
  shared: VmSpec[]
}

/** One writer process: random operations for `seconds`, then its own VMs applied once more, attached. */
function writerScript(w: number, seed: number): string {
  return `
    const { Nft } = require(${JSON.stringify(distEntry)})
    const { VmFirewall } = require(${JSON.stringify(distFirewall)})
    const { NftablesService } = require(${JSON.stringify(distCompat)})
    let s = ${seed} >>> 0
    const rand = () => { s = (s + 0x6d2b79f5) >>> 0; let t = s; t = Math.imul(t ^ (t >>> 15), t | 1); t ^= t + Math.imul(t ^ (t >>> 7), t | 61); return ((t ^ (t >>> 14)) >>> 0) / 4294967296 }
    const pick = (xs) => xs[Math.floor(rand() * xs.length)]
    let version = 0
    const spec = (vmId, tap) => ({
      vmId, tap, defaultAction: rand() < 0.5 ? 'drop' : 'accept',
      rules: Array.from({ length: 1 + Math.floor(rand() * 4) }, (_, k) => ({ id: 'w${w}v' + (++version) + 'r' + k, name: 'r', protocol: 'tcp', direction: pick(['IN', 'OUT', 'INOUT']), action: pick(['ACCEPT', 'DROP']), dstPortStart: 1 + Math.floor(rand() * 60000) })),
    })
    const own = Array.from({ length: ${OWN} }, (_, i) => ({ vmId: 'w${w}-vm' + i, tap: 'w${w}t' + i }))
    const shared = Array.from({ length: ${SHARED} }, (_, i) => ({ vmId: 'shared-' + i, tap: 'sht' + i }))
    const last = new Map()
    const removed = new Set(own.map((v) => v.vmId))
    const sharedWritten = []
    const errors = []
    let ops = 0
    const fw = new VmFirewall(new Nft({ netns: ${JSON.stringify(ns.name)} }))
    const svc = new NftablesService({ nft: new Nft({ netns: ${JSON.stringify(ns.name)} }), bridgeConntrackMode: 'degrade' })
    const fa = { vmId: 'w${w}-fa', tap: 'w${w}fa' }
    let faState // undefined: not created yet; true: running (dispatched); false: stopped
    let facadeOps = 0
    const facadeStep = async () => {
      const r = rand()
      if (faState === undefined || r < 0.6) {
        const rules = [{ id: 'fa' + (++version), name: 'fa', direction: 'IN', protocol: 'tcp', dstPortStart: 1 + Math.floor(rand() * 60000), action: pick(['ACCEPT', 'DROP']), priority: 100 }]
        const res = await svc.applyRules(fa.vmId, fa.tap, [], rules, 'accept')
        const expected = faState === undefined ? true : faState
        if (res.attached !== expected) errors.push('facade: applyRules left ' + (res.attached ? 'running' : 'stopped') + ' a VM that was ' + (expected ? 'running' : 'stopped'))
        faState = expected
      } else if (r < 0.8) { await svc.detachJumpRules(fa.vmId); faState = false }
      else { await svc.attachJumpRules(fa.vmId, fa.tap); faState = true }
      facadeOps++
    }
    const deadline = Date.now() + ${SECONDS * 1000}
    const step = async (o) => {
      const sh = pick(shared)
      const r = rand()
      if (r < 0.3 || removed.has(o.vmId)) {
        const sp = spec(o.vmId, o.tap); await fw.applyVm(sp, { attach: rand() < 0.8 }); last.set(o.vmId, sp); removed.delete(o.vmId)
      } else if (r < 0.45) { const sp = spec(sh.vmId, sh.tap); await fw.applyVm(sp); sharedWritten.push(sp) }
      else if (r < 0.55) { await fw.detachVm(o.vmId) }
      else if (r < 0.65) { await fw.attachVm(o.vmId, o.tap) }
      else if (r < 0.72) { await fw.detachVm(sh.vmId) }
      else if (r < 0.8) { await fw.removeVm(o.vmId); removed.add(o.vmId) }
      else if (r < 0.85) { await fw.removeVm('never-applied-' + Math.floor(rand() * 3)) }
      else if (r < 0.95) {
        const specs = own.filter((v) => !removed.has(v.vmId)).map((v) => last.get(v.vmId))
        await fw.sync(specs, { prune: 'none' })
      } else { await fw.stats(o.vmId).catch((e) => { if (e.code !== 'VM_NOT_FOUND' || !removed.has(o.vmId)) throw e }) }
    }
    ;(async () => {
      while (Date.now() < deadline) {
        // A few operations in flight at once, as a VM manager would issue them (on different own VMs: one VM's
        // operations are ordered by the caller, as a VM's lifecycle is).
        const first = Math.floor(rand() * own.length)
        const batch = Array.from({ length: 1 + Math.floor(rand() * 3) }, (_, k) => step(own[(first + k) % own.length]).then(() => { ops++ }, (e) => errors.push(String(e && e.message || e))))
        await Promise.all([...batch, facadeStep().catch((e) => errors.push('facade: ' + String(e && e.message || e)))])
      }
      for (const o of own) {
        const sp = spec(o.vmId, o.tap)
        try { await fw.applyVm(sp); last.set(o.vmId, sp) } catch (e) { errors.push('final: ' + String(e && e.message || e)) }
      }
      svc.close()
      console.log(JSON.stringify({ ops, facadeOps, errors: errors.slice(0, 20), own: own.map((o) => last.get(o.vmId)), shared: sharedWritten }))
    })().catch((e) => { console.log(JSON.stringify({ ops, facadeOps, errors: ['fatal: ' + String(e)], own: [], shared: [] })) })
  `
}

it(
  `${WRITERS} processes x ${SECONDS} s on one table (own and shared VMs): no spurious error, each writer's last word stands, verify clean`,
  { timeout: (SECONDS + 60) * 1000 },
  async () => {
    const reports = (await Promise.all(
      Array.from({ length: WRITERS }, (_, w) => runNodeAsync(writerScript(w, 1000 + w), (SECONDS + 50) * 1000)),
    )) as WriterReport[]
    const ops = reports.reduce((n, r) => n + r.ops, 0)
    const errors = reports.flatMap((r) => r.errors)
    const facadeOps = reports.reduce((n, r) => n + r.facadeOps, 0)
    report('firewall/writers', `${WRITERS} processes, ${SECONDS} s, ${ops} operations (+ ${facadeOps} through the facade), ${errors.length} errors`)
    expect(errors.slice(0, 10)).toEqual([])
    expect(ops).toBeGreaterThan(WRITERS * 10)
    expect(facadeOps).toBeGreaterThan(WRITERS * 5)
    expect(structuralProblems(kernelFwState(ns))).toEqual([])

    const nft = new Nft({ netns: ns.name })
    try {
      const fw = new VmFirewall(nft)
      // Each writer's own VMs: exactly its last apply.
      for (const r of reports) for (const spec of r.own) expect((await fw.verifyVm(spec)).status, spec.vmId).toBe('ok')
      // A shared VM: one writer's version, whole (chains and dispatch), never a mix.
      for (const vmId of ['shared-0', 'shared-1']) {
        const versions = reports.flatMap((r) => r.shared).filter((s) => s.vmId === vmId)
        if (versions.length === 0) continue
        const statuses = await Promise.all(versions.map(async (s) => (await fw.verifyVm(s, { attach: false })).changed.length === 0 && (await fw.verifyVm(s, { attach: false })).missing.length === 0))
        expect(statuses.some(Boolean), vmId).toBe(true)
      }
    } finally {
      nft.close()
    }
  },
)
