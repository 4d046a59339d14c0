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
  // The first apply goes out alone; the failing one and the five behind it queue up as one group.
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
