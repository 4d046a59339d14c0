// Group commit: applies of different VMs that arrive while a transaction is in flight share the next one;
// a group that fails is split so that each caller gets exactly its own outcome.
import { afterAll, beforeAll, expect, it } from 'vitest'
import { Nft } from '../../ts/index.js'
import { VmFirewall, type VmSpec } from '../../ts/firewall/index.js'
import { createNetns, type Netns } from '../support/netns.js'

let ns: Netns
let nft: Nft
beforeAll(() => {
  ns = createNetns('fwgc')
  nft = new Nft({ netns: ns.name })
})
afterAll(() => {
  nft?.close()
  ns?.delete()
})

const spec = (i: number, port = 22): VmSpec => ({
  vmId: `gc-${i}`,
  tap: `gct${i}`,
  defaultAction: 'drop',
  rules: [{ id: 'ssh', name: 'ssh', protocol: 'tcp', direction: 'IN', dstPortStart: port }],
})

it('100 concurrent applies commit in a few transactions, each VM exactly as applied, verify clean', async () => {
  const fw = new VmFirewall(nft)
  await fw.init()
  const before = await nft.generation()
  const results = await Promise.all(Array.from({ length: 100 }, (_, i) => fw.applyVm(spec(i, 1000 + i))))
  const commits = (await nft.generation()) - before
  expect(results.map((r) => r.vmId)).toEqual(Array.from({ length: 100 }, (_, i) => `gc-${i}`))
  // The first apply goes alone; the ones queued behind it share the next transaction(s).
  expect(commits).toBeGreaterThan(0)
  expect(commits).toBeLessThan(10)
  expect((await fw.verify()).ok).toBe(true)
  const listing = ns.exec('nft', ['list', 'table', 'bridge', 'infinization'])
  for (const i of [0, 42, 99]) expect(listing).toContain(`tcp dport ${1000 + i} counter`)
})

it('a group with one failing apply: that caller gets the kernel error, the others are applied, nothing partial', async () => {
  const fw = new VmFirewall(nft)
  await fw.init()
  // The view is current (an apply reads it), so the seven applies below reach the group without any I/O:
  // the first goes out alone; the failing one and the five behind it queue up as one group.
  await fw.applyVm(spec(198))
  const before = await nft.generation()
  const first = fw.applyVm(spec(199))
  const failing = fw.applyVm(spec(200), {
    // A command of our own table that the kernel refuses (the chain does not exist).
    also: [{ delete: { chain: { family: 'bridge', table: 'infinization', name: 'no_such_chain' } } }],
  })
  const others = Array.from({ length: 5 }, (_, i) => fw.applyVm(spec(201 + i, 2000 + i)))
  const outcomes = await Promise.allSettled([failing, ...others])
  await first
  // Grouped, refused, then split: the five others commit one by one (the failing one commits nothing).
  expect((await nft.generation()) - before).toBe(1 + 5)
  expect(outcomes[0]).toMatchObject({ status: 'rejected', reason: expect.objectContaining({ code: 'ENOENT' }) })
  expect(outcomes.slice(1).every((o) => o.status === 'fulfilled')).toBe(true)
  expect(await fw.hasVm('gc-200')).toBe(false)
  for (let i = 0; i < 5; i++) expect((await fw.verifyVm(spec(201 + i, 2000 + i))).status).toBe('ok')
})

it('`also` commands may only touch the firewall’s own table', async () => {
  const fw = new VmFirewall(nft)
  await expect(fw.applyVm(spec(300), { also: [{ add: { table: { family: 'inet', name: 'other' } } }] })).rejects.toMatchObject({
    code: 'VALIDATION',
  })
  expect(ns.exec('nft', ['list', 'tables'])).not.toContain('other')
})

it('an apply builds from the view as last known; a commit by someone else since makes it re-read, not fail', async () => {
  const fw = new VmFirewall(nft)
  await fw.init()
  await fw.applyVm(spec(300))
  // Count the batches the binding refuses as stale (sent nowhere) and the generation reads of the engine's own.
  const commit = nft.commitBatch.bind(nft)
  const generation = nft.generation.bind(nft)
  const codes: string[] = []
  let reads = 0
  nft.commitBatch = async (...a: Parameters<Nft['commitBatch']>) => {
    try {
      return await commit(...a)
    } catch (e) {
      codes.push((e as { code: string }).code)
      throw e
    }
  }
  nft.generation = async () => (reads++, generation())
  try {
    // Nobody else committed: one lean batch, no generation read before it (the batch's thread checks it).
    await fw.applyVm(spec(301, 2301))
    expect([codes, reads]).toEqual([[], 0])
    // Another writer takes tap gct302 for its VM: the next apply's batch, built from the older view, is not
    // sent; the engine re-reads and moves the tap (its stale entry deleted), in the same call.
    const other = new VmFirewall(nft)
    await other.applyVm({ ...spec(399), tap: 'gct302' })
    await fw.applyVm(spec(302, 2302))
    expect(codes).toEqual(['GENERATION_MOVED'])
    // Its chains and its tap's dispatch and identity are exactly as applied (the other VM's entry is gone).
    expect((await fw.verifyVm(spec(302, 2302))).status).toBe('ok')
    expect(ns.exec('nft', ['list', 'map', 'bridge', 'infinization', 'from_vm']).match(/"gct302"/g)).toHaveLength(1)
  } finally {
    nft.commitBatch = commit
    nft.generation = generation
  }
})
