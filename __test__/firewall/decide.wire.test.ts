// Engine options for callers that decide per VM (issue 14): attach 'keep', prepare() in the VM's turn,
// create-or-redecide against another writer, and the answers the engine gives from its own view
// (hasVm, vmState, applyVmIfChanged) — correct when someone else writes the table.
import { afterEach, beforeEach, expect, it, vi } from 'vitest'
import { Nft } from '../../ts/index.js'
import { VmFirewall, type VmSpec, type VmState } from '../../ts/firewall/index.js'
import { createNetns, type Netns } from '../support/netns.js'

let ns: Netns
let nft: Nft
let fw: VmFirewall
beforeEach(async () => {
  ns = createNetns('fwdc')
  nft = new Nft({ netns: ns.name })
  fw = new VmFirewall(nft)
  await fw.init()
})
afterEach(() => {
  vi.restoreAllMocks()
  nft.close()
  ns.delete()
})

const spec = (vmId: string, tap: string, port = 22, defaultAction: 'accept' | 'drop' = 'drop'): VmSpec => ({
  vmId,
  tap,
  defaultAction,
  rules: [{ id: 'ssh', name: 'ssh', protocol: 'tcp', direction: 'IN', dstPortStart: port }],
})
const cli = (...args: string[]) => ns.exec('nft', args)
const map = (name: string) => cli('list', 'map', 'bridge', 'infinization', name)
/** Calls (libnftables, and lean writes: commitBatch; not generation reads) made through `nft` while `fn` runs. */
async function calls(fn: () => Promise<unknown>): Promise<number> {
  let n = 0
  const spies = (['run', 'runJson', 'commitBatch', 'runEcho', 'listChain', 'listTable'] as const).map((m) => {
    const orig = (nft[m] as (...a: unknown[]) => Promise<unknown>).bind(nft)
    return vi.spyOn(nft, m).mockImplementation(((...a: unknown[]) => (n++, orig(...a))) as never)
  })
  try {
    await fn()
  } finally {
    for (const s of spies) s.mockRestore()
  }
  return n
}

it("attach 'keep' rewrites the chains and leaves the dispatch exactly as it is (attached from its tap, or not at all)", async () => {
  await fw.applyVm(spec('a', 'ta'))
  await fw.applyVm(spec('a', 'other-label', 80), { attach: 'keep' })
  expect(map('from_vm')).toMatch(/"ta" : jump vm_\w+_o/)
  expect(map('from_vm')).not.toContain('other-label')
  expect(cli('list', 'table', 'bridge', 'infinization')).toContain('tcp dport 80')
  await fw.detachVm('a')
  await fw.applyVm(spec('a', 'ta', 81), { attach: 'keep' })
  expect(map('from_vm')).not.toContain('"ta"')
  // A new VM under 'keep' gets chains and no dispatch.
  await fw.applyVm(spec('n', 'tn'), { attach: 'keep' })
  expect(await fw.hasVm('n')).toBe(true)
  expect(map('to_vm')).not.toContain('"tn"')
  expect((await fw.verifyVm(spec('n', 'tn'), { attach: 'keep' })).status).toBe('ok')
})

it('prepare() sees the VM as the engine does and can skip, attach or add commands; a bad attach is refused', async () => {
  const seen: { out: boolean; taps: string[] }[] = []
  const prepare = (st: VmState) => {
    seen.push({ out: st.outExists, taps: st.dispatch.from })
    return st.outExists ? { skip: true } : { attach: false }
  }
  await fw.applyVm(spec('p', 'tp'), { prepare })
  await fw.applyVm(spec('p', 'tp', 99), { prepare })
  expect(seen).toEqual([{ out: false, taps: [] }, { out: true, taps: [] }])
  expect(cli('list', 'table', 'bridge', 'infinization')).not.toContain('dport 99') // skipped
  await expect(fw.applyVm(spec('p', 'tp'), { attach: 'sometimes' as never })).rejects.toMatchObject({ name: 'FirewallValidationError', field: 'attach' })
  await expect(fw.applyVm(spec('p', 'tp'), { prepare: () => ({ spec: spec('q', 'tq') }) })).rejects.toMatchObject({ field: 'vmId' })
})

it('create: a closed default written for a VM the caller believed new never replaces what another writer created meanwhile', async () => {
  const otherNft = new Nft({ netns: ns.name })
  const other = new VmFirewall(otherNft)
  let decisions = 0
  try {
    await fw.applyVm(spec('r', 'tr', 22, 'drop'), {
      prepare: async (st) => {
        decisions++
        if (st.outExists && st.inExists) return { skip: true }
        // Another process creates the VM with its policy between our decision and our write.
        if (decisions === 1) await other.applyVm(spec('r', 'tr', 4242, 'accept'))
        return { attach: true, create: true }
      },
    })
  } finally {
    otherNft.close()
  }
  expect(decisions).toBe(2)
  expect(cli('list', 'table', 'bridge', 'infinization')).toContain('tcp dport 4242')
})

it('hasVm, vmState and an unchanged applyVmIfChanged list nothing while nobody else commits, and see outside edits', async () => {
  await fw.applyVm(spec('v', 'tv'))
  await fw.applyVm(spec('w', 'tw'))
  // The chain names are read once after the view was last re-read (one `list chains`), then kept up to date.
  expect(await calls(async () => expect(await fw.hasVm('w')).toBe(true))).toBeLessThanOrEqual(1)
  expect(await calls(async () => expect(await fw.hasVm('v')).toBe(true))).toBe(0)
  expect(await calls(async () => expect((await fw.vmState('v')).dispatch.to).toEqual(['tv']))).toBe(0)
  expect(await calls(async () => expect((await fw.applyVmIfChanged(spec('v', 'tv'))).changed).toBe(false))).toBe(0) // it wrote them
  // A changed policy is known to differ without listing: one write.
  expect(await calls(async () => expect((await fw.applyVmIfChanged(spec('v', 'tv', 2222))).changed).toBe(true))).toBe(1)
  // Someone else deletes the VM's chains: the generation moves, the engine re-reads and sees it.
  ns.exec('nft', ['-f', '-'], { input: 'delete element bridge infinization from_vm { "tv" }\ndelete element bridge infinization to_vm { "tv" }\ndelete chain bridge infinization ' + `${(await fw.vmState('v')).chains.out}\n` })
  expect(await fw.hasVm('v')).toBe(true) // the _i chain is still there
  const r = await fw.applyVmIfChanged(spec('v', 'tv', 2222))
  expect(r.changed).toBe(true)
  expect(r.drift.missing).toEqual(expect.arrayContaining([expect.stringMatching(/^chain:/)]))
  expect((await fw.verify()).ok).toBe(true)
  // Someone else edits a rule in place (same comments, same count): seen too.
  const inChain = (await fw.vmState('v')).chains.in
  const listing = ns.exec('nft', ['-a', 'list', 'chain', 'bridge', 'infinization', inChain])
  const handle = /tcp dport 2222 .*# handle (\d+)/.exec(listing)![1]!
  const comment = /tcp dport 2222 .*comment "([^"]+)"/.exec(listing)![1]!
  cli('replace', 'rule', 'bridge', 'infinization', inChain, 'handle', handle, 'tcp', 'dport', '2223', 'accept', 'comment', `"${comment}"`)
  expect((await fw.applyVmIfChanged(spec('v', 'tv', 2222))).changed).toBe(true)
  expect(ns.exec('nft', ['list', 'chain', 'bridge', 'infinization', inChain])).toContain('dport 2222')
  await fw.removeVm('v')
  // The names were not read since the outside edit: once, then kept up to date by our own writes.
  expect(await calls(async () => expect(await fw.hasVm('v')).toBe(false))).toBeLessThanOrEqual(1)
  await fw.applyVm(spec('x', 'tx'))
  expect(await calls(async () => expect(await fw.hasVm('x')).toBe(true))).toBe(0)
  await fw.removeVm('x')
  expect(await calls(async () => expect(await fw.hasVm('x')).toBe(false))).toBe(0)
  expect((await fw.applyVmIfChanged(spec('v', 'tv', 2222))).changed).toBe(true)
})

it('an idempotent write that finds nothing to do in the view as last known confirms it first: a VM another writer attached or created meanwhile is still detached or removed', async () => {
  const otherNft = new Nft({ netns: ns.name })
  const other = new VmFirewall(otherNft)
  try {
    await fw.applyVm(spec('s', 'ts'))
    await fw.detachVm('s') // our view: detached
    await other.applyVm(spec('s', 'ts')) // another process starts it again
    expect(map('from_vm')).toContain('"ts"')
    await fw.detachVm('s')
    expect(map('from_vm')).not.toContain('"ts"')
    expect(map('to_vm')).not.toContain('"ts"')
    // The same for a removal: our view says it is gone, another writer made it again.
    await fw.removeVm('s')
    await other.applyVm(spec('s', 'ts'))
    await fw.removeVm('s')
    expect(cli('list', 'table', 'bridge', 'infinization')).not.toMatch(/chain vm_/)
    expect(await other.hasVm('s')).toBe(false)
  } finally {
    otherNft.close()
  }
})
