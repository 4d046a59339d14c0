// The engine's view of its table (kernel-view.ts) against a fake kernel: exact after its own writes without a
// re-read, updated in place, re-read after anyone else's commit or a failed batch. No kernel.
import { describe, expect, it } from 'vitest'
import type { NftCommand } from '../../ts/schema.js'
import type { FirewallKernel } from '../../ts/firewall/kernel.js'
import { KernelView } from '../../ts/firewall/kernel-view.js'
import { MAP_FROM_VM, MAP_TO_VM, VM_SETS, elementAdd, elementDelete } from '../../ts/firewall/layout.js'

/** A kernel holding only what the view reads: the generation, the dispatch maps, the guard's sets, chain names. */
function fakeKernel() {
  const k = {
    gen: 10,
    maps: { [MAP_FROM_VM]: new Map([['tap0', 'vm_0_o']]), [MAP_TO_VM]: new Map([['tap0', 'vm_0_i']]) },
    reads: 0,
    fail: false,
    dryRun: false,
    table: 't',
    generation: async () => k.gen,
    dispatchMaps: async () => {
      k.reads++
      return { [MAP_FROM_VM]: new Map(k.maps[MAP_FROM_VM]), [MAP_TO_VM]: new Map(k.maps[MAP_TO_VM]) }
    },
    sets: async () => ({ contents: new Map(VM_SETS.map((n) => [n, new Set<string>()])), counters: new Map(), missing: [] }),
    chainNames: async () => new Set(['prerouting', 'vm_0_o', 'vm_0_i']),
    write: async (commands: NftCommand[]) => {
      if (k.fail) throw Object.assign(new Error('refused'), { code: 'ENOENT' })
      for (const c of commands) {
        const el = (c as { add?: { element?: { name: string; elem: [string, { jump: { target: string } }][] } } }).add?.element
        for (const [key, v] of el?.elem ?? []) k.maps[el!.name as typeof MAP_FROM_VM].set(key, v.jump.target)
        const del = (c as { delete?: { element?: { name: string; elem: string[] } } }).delete?.element
        for (const key of del?.elem ?? []) k.maps[del!.name as typeof MAP_FROM_VM].delete(key)
      }
      k.gen++
      return { nftables: [] }
    },
  }
  return k
}

const viewOf = (k: ReturnType<typeof fakeKernel>) => new KernelView(k as unknown as FirewallKernel)

describe('KernelView', () => {
  it('after its own write the maps are exact without a re-read, and updated in place', async () => {
    const k = fakeKernel()
    const view = viewOf(k)
    const first = await view.maps()
    expect(k.reads).toBe(1)
    await view.write([elementAdd('t', MAP_FROM_VM, 'tap1', 'vm_1_o'), elementDelete('t', MAP_TO_VM, 'tap0')])
    const after = await view.maps()
    expect(k.reads).toBe(1)
    expect(after).toBe(first)
    expect([...after![MAP_FROM_VM]]).toEqual([...k.maps[MAP_FROM_VM]])
    expect([...after![MAP_TO_VM]]).toEqual([])
  })

  it('the chain names follow its own chain adds and deletes', async () => {
    const k = fakeKernel()
    const view = viewOf(k)
    await view.chainNames()
    await view.write([{ add: { chain: { family: 'bridge', table: 't', name: 'vm_1_o' } } }, { delete: { chain: { family: 'bridge', table: 't', name: 'vm_0_i' } } }] as NftCommand[])
    expect([...(await view.chainNames())].sort()).toEqual(['prerouting', 'vm_0_o', 'vm_1_o'])
  })

  it("re-reads after someone else's commit, and after a failed batch", async () => {
    const k = fakeKernel()
    const view = viewOf(k)
    await view.maps()
    k.gen++ // another process committed
    await view.write([elementAdd('t', MAP_FROM_VM, 'tap1', 'vm_1_o')])
    await view.maps()
    expect(k.reads).toBe(2)
    k.fail = true
    await expect(view.write([elementAdd('t', MAP_FROM_VM, 'tap2', 'vm_2_o')])).rejects.toThrow('refused')
    k.fail = false
    expect((await view.maps())![MAP_FROM_VM].has('tap2')).toBe(false)
    expect(k.reads).toBe(3)
  })

  it('adopted maps are copied: later writes do not change the caller’s', async () => {
    const k = fakeKernel()
    const view = viewOf(k)
    const mine = { [MAP_FROM_VM]: new Map([['tap0', 'vm_0_o']]), [MAP_TO_VM]: new Map([['tap0', 'vm_0_i']]) }
    view.adopt(k.gen, mine, true)
    await view.write([elementAdd('t', MAP_FROM_VM, 'tap1', 'vm_1_o')])
    expect([...mine[MAP_FROM_VM].keys()]).toEqual(['tap0'])
    expect((await view.maps())![MAP_FROM_VM].get('tap1')).toBe('vm_1_o')
    expect(k.reads).toBe(0)
  })
})
