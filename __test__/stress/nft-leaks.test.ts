// Memory stays bounded over many operations and many instances.
import { afterAll, beforeAll, expect, it } from 'vitest'
import { Nft } from '../../ts/index.js'
import { createNetns, type Netns } from '../support/netns.js'
import { report, size } from '../support/stress.js'

let ns: Netns
beforeAll(() => {
  ns = createNetns()
})
afterAll(() => ns.delete())

const mib = (bytes: number) => (bytes / 1048576).toFixed(1)

async function settle(): Promise<number> {
  for (let i = 0; i < 3; i++) {
    globalThis.gc?.()
    await new Promise((r) => setTimeout(r, 20))
  }
  return process.memoryUsage().rss
}

it('RSS stays bounded over many operations on one instance', async () => {
  const nft = new Nft({ netns: ns.name })
  try {
    await nft.run('add table bridge t\nadd chain bridge t c')
    const ops = size(10_000, 100_000)
    const cycle = async (i: number) => {
      await nft.run(`add rule bridge t c meta mark ${i} accept`)
      await nft.runJson({ nftables: [{ flush: { chain: { family: 'bridge', table: 't', name: 'c' } } }] })
      await nft.listChain('bridge', 't', 'c')
      // Failed batches cost the kernel ~10 ms each (its abort path), so only every 50th cycle.
      if (i % 50 === 0) await nft.check('add rule bridge t nope accept').catch(() => undefined)
    }
    for (let i = 0; i < 500; i++) await cycle(i) // warm-up: allocator and JIT reach steady state
    const start = await settle()
    for (let i = 0; i < ops / 3; i++) await cycle(i)
    const growth = (await settle()) - start
    report('leaks/operations', `${ops} operations (run, runJson flush, list; a failing check every 50 cycles): RSS growth ${mib(growth)} MiB`)
    expect(growth).toBeLessThan(64 * 1048576)
  } finally {
    nft.close()
  }
})

it('RSS stays bounded over many instances created and closed', async () => {
  const instances = size(1000, 10_000)
  const once = async () => {
    const nft = new Nft({ netns: ns.name })
    await nft.run('list tables')
    nft.close()
  }
  for (let i = 0; i < 200; i++) await once()
  const start = await settle()
  for (let i = 0; i < instances; i++) await once()
  const growth = (await settle()) - start
  report('leaks/instances', `${instances} instances created, used and closed: RSS growth ${mib(growth)} MiB`)
  expect(growth).toBeLessThan(64 * 1048576)
})
