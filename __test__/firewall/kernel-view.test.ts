// The engine's view of its table (kernel-view.ts) against a fake kernel: exact after its own writes without a
// re-read, updated in place, re-read after anyone else's commit or a failed batch. No kernel.
import { describe, expect, it } from 'vitest'
import type { NftCommand } from '../../ts/schema.js'
import type { FirewallKernel } from '../../ts/firewall/kernel.js'
import { KernelView, isConflict } from '../../ts/firewall/kernel-view.js'
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
    writes: 0,
    write: async (commands: NftCommand[], options: { expect?: number } = {}) => {
      if (k.fail) throw Object.assign(new Error('refused'), { code: 'ENOENT' })
      if (options.expect !== undefined && options.expect !== k.gen) throw Object.assign(new Error('moved'), { code: 'GENERATION_MOVED' })
      k.writes++
      const before = k.gen
      for (const c of commands) {
        const el = (c as { add?: { element?: { name: string; elem: [string, { jump: { target: string } }][] } } }).add?.element
        for (const [key, v] of el?.elem ?? []) k.maps[el!.name as typeof MAP_FROM_VM].set(key, v.jump.target)
        const del = (c as { delete?: { element?: { name: string; elem: string[] } } }).delete?.element
        for (const key of del?.elem ?? []) k.maps[del!.name as typeof MAP_FROM_VM].delete(key)
      }
      k.gen++
      return { output: { nftables: [] }, before, after: k.gen }
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

  it('known() is the snapshot without a generation read; a write expecting its generation goes out only while it holds', async () => {
    const k = fakeKernel()
    const view = viewOf(k)
    expect(view.known()).toBeUndefined()
    await view.maps()
    const snap = view.known()!
    expect(snap.generation).toBe(k.gen)
    let gens = 0
    const generation = k.generation
    k.generation = async () => (gens++, generation())
    await view.write([elementAdd('t', MAP_FROM_VM, 'tap1', 'vm_1_o')], { expect: snap.generation })
    // The kernel reported the generations around the batch: no read of its own, and the view is still exact.
    expect(gens).toBe(0)
    expect(view.known()!.generation).toBe(k.gen)
    expect(view.known()!.maps![MAP_FROM_VM].get('tap1')).toBe('vm_1_o')
    // Someone else commits: a batch built from the old snapshot is not sent, and the view is dropped.
    const stale = view.known()!.generation
    k.gen++
    const epoch = view.epoch
    await expect(view.write([elementAdd('t', MAP_FROM_VM, 'tap2', 'vm_2_o')], { expect: stale })).rejects.toMatchObject({ code: 'GENERATION_MOVED' })
    expect(k.writes).toBe(1)
    expect(k.maps[MAP_FROM_VM].has('tap2')).toBe(false)
    expect(view.known()).toBeUndefined()
    expect(view.epoch).toBe(epoch + 1)
    expect(isConflict(Object.assign(new Error('moved'), { code: 'GENERATION_MOVED' }))).toBe(true)
  })

  it('an empty batch expecting a generation confirms it: "nothing to do" from a stale snapshot is a conflict', async () => {
    const k = fakeKernel()
    const view = viewOf(k)
    await view.maps()
    const snap = view.known()!
    expect((await view.write([], { expect: snap.generation })).after).toBe(k.gen)
    expect(view.known()).toBe(snap)
    k.gen++ // someone else commits
    await expect(view.write([], { expect: snap.generation })).rejects.toMatchObject({ code: 'GENERATION_MOVED' })
    expect(view.known()).toBeUndefined()
    expect(k.writes).toBe(0)
    // Without `expect` (a view just read) nothing is checked.
    expect((await view.write([])).after).toBe(k.gen)
  })
})
