// Issue 15: applyVm's hot path writes a VM's chains and dispatch elements without libnftables when the table and its
// sets are known, and through libnftables otherwise; the kernel ends up the same either way, and the engine's view
// stays exact (nothing is re-read after our own lean write).
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { Nft } from '../../ts/index.js'
import { VmFirewall, type VmSpec } from '../../ts/firewall/index.js'
import { createNetns, type Netns } from '../support/netns.js'

let ns: Netns
let nft: Nft
beforeEach(() => {
  ns = createNetns('lean')
  nft = new Nft({ netns: ns.name })
})
afterEach(() => {
  vi.restoreAllMocks()
  nft.close()
  ns.delete()
})

const spec = (i: number, extra: Partial<VmSpec> = {}): VmSpec => ({
  vmId: `vm${i}`,
  tap: `tap${i}`,
  mac: `52:54:00:00:00:0${i}`,
  ipv4: [`10.0.0.${i}`],
  rules: [{ id: 'ssh', name: 'ssh', direction: 'IN', protocol: 'tcp', dstPortStart: 22 }],
  ...extra,
})

/** Calls of each kind the firewall makes from now on. */
function spy(): { lean: () => number; lib: () => number; listings: () => number } {
  const lean = vi.spyOn(nft, 'commitBatch')
  const run = vi.spyOn(nft, 'run')
  const json = vi.spyOn(nft, 'runJson')
  // Text listings (the guard's sets, issue 15) are reads, not libnftables writes.
  const reads = () => run.mock.calls.filter(([t]) => String(t).startsWith('list ')).length
  return { lean: () => lean.mock.calls.length, lib: () => run.mock.calls.length - reads(), listings: () => json.mock.calls.length + reads() }
}

describe('applyVm through the lean write', () => {
  it('replaces a VM without libnftables once the table is known, and the kernel matches what was compiled', async () => {
    const fw = new VmFirewall(nft)
    await fw.init()
    await fw.applyVm(spec(1)) // learns that the table's sets exist (re-added once, through libnftables)
    const calls = spy()
    await fw.applyVm(spec(1, { defaultAction: 'accept' }))
    await fw.applyVm(spec(2))
    expect([calls.lean(), calls.lib(), calls.listings()]).toEqual([2, 0, 0])
    // Another instance, which knows nothing, finds exactly the compiled VMs (and their dispatch).
    const other = new VmFirewall(nft)
    expect((await other.applyVmIfChanged(spec(1, { defaultAction: 'accept' }))).changed).toBe(false)
    expect((await other.applyVmIfChanged(spec(2))).changed).toBe(false)
    const map = ns.exec('nft', ['list', 'map', 'bridge', 'infinization', 'from_vm'])
    expect(map).toMatch(/"tap1" : jump vm_[0-9a-f]{24}_o/)
    expect(map).toMatch(/"tap2" : jump vm_[0-9a-f]{24}_o/)
  })

  it('a tap moving between VMs: the stale dispatch is deleted in the same lean batch', async () => {
    const fw = new VmFirewall(nft)
    await fw.init()
    await fw.applyVm(spec(1))
    const calls = spy()
    await fw.applyVm(spec(2, { tap: 'tap1' }))
    expect(calls.lean()).toBe(1)
    const map = ns.exec('nft', ['list', 'map', 'bridge', 'infinization', 'to_vm'])
    expect(map.match(/"tap1"/g)?.length).toBe(1)
    expect((await new VmFirewall(nft).applyVmIfChanged(spec(2, { tap: 'tap1' }))).changed).toBe(false)
  })

  it('removeVm goes lean too: dispatch, guard elements and chains gone in one batch, idempotent, nothing listed', async () => {
    const fw = new VmFirewall(nft)
    await fw.init()
    await fw.applyVm(spec(1))
    await fw.applyVm(spec(2))
    const calls = spy()
    await fw.removeVm('vm1')
    await fw.removeVm('vm1') // already gone: still one batch, still no error
    expect([calls.lean(), calls.lib(), calls.listings()]).toEqual([2, 0, 0])
    const table = ns.exec('nft', ['list', 'table', 'bridge', 'infinization'])
    expect(table).not.toMatch(/"tap1"/)
    expect(table.match(/chain vm_[0-9a-f]{24}_[oi] /g)).toHaveLength(2)
    expect(await fw.hasVm('vm1')).toBe(false)
    // Another instance finds vm2 exactly as applied and nothing left of vm1.
    const other = new VmFirewall(nft)
    expect((await other.applyVmIfChanged(spec(2))).changed).toBe(false)
    expect(await other.hasVm('vm1')).toBe(false)
  })

  it('falls back to libnftables: before the table is known, for commands it does not spell, and when turned off', async () => {
    const fw = new VmFirewall(nft)
    const calls = spy()
    await fw.applyVm(spec(1)) // no init: the batch creates the table and its sets
    expect([calls.lean(), calls.lib()]).toEqual([0, 1])
    // `also` commands outside the encoder (here an idempotent add of a set of a type the layout has none of) send the
    // whole batch the old way.
    await fw.applyVm(spec(1), { also: [{ add: { set: { family: 'bridge', table: 'infinization', name: 'extra', type: 'ipv4_addr' } } }] })
    expect([calls.lean(), calls.lib()]).toEqual([0, 2])
    await fw.applyVm(spec(1))
    expect([calls.lean(), calls.lib()]).toEqual([1, 2])
    const off = new VmFirewall(nft, { leanWrites: false })
    await off.init()
    const before = calls.lean()
    await off.applyVm(spec(3))
    expect(calls.lean()).toBe(before)
    expect((await new VmFirewall(nft).applyVmIfChanged(spec(3))).changed).toBe(false)
  })

  it('a lean write refused by the kernel keeps the error codes of the libnftables path and drops the view', async () => {
    const fw = new VmFirewall(nft)
    await fw.init()
    await fw.applyVm(spec(1))
    // The view is current; the kernel refuses the lean batch (ENOENT, a conflict): the engine retries from a fresh
    // view, which then finds the table gone and recreates it through libnftables.
    await fw.applyVm(spec(1))
    const calls = spy()
    let refused: unknown
    vi.spyOn(nft, 'commitBatch').mockImplementation(async (table, messages) => {
      // Someone deletes the table between our view and our commit (the view cannot see it: same generation read).
      ns.exec('nft', ['delete', 'table', 'bridge', 'infinization'])
      try {
        return await Nft.prototype.commitBatch.call(nft, table, messages)
      } catch (e) {
        refused = e
        throw e
      }
    })
    await fw.applyVm(spec(1))
    expect((refused as { code?: string }).code).toBe('ENOENT')
    expect(calls.lib()).toBe(1)
    expect((await new VmFirewall(nft).applyVmIfChanged(spec(1))).changed).toBe(false)
  })
})
