// Nft.commitBatch(): nf_tables messages committed without libnftables, checked by the binding before sending.
import { beforeEach, describe, expect, it } from 'vitest'
import { Nft } from '../../ts/index.js'
import { rejection, thrown } from '../support/errors.js'
import type { Netns } from '../support/netns.js'
import { useNetnsNft } from '../support/netns-nft.js'

let ns: Netns
let nft: Nft
useNetnsNft((n, f) => ([ns, nft] = [n, f]))

beforeEach(async () => {
  await nft.run('flush ruleset\nadd table bridge t\nadd table bridge other')
})

const NEWTABLE = 0x0a00
const NEWCHAIN = 0x0a03
const NEWSET = 0x0a09
const DELRULE = 0x0a08
const NLM_F_CREATE = 0x400

function attr(type: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(4)
  head.writeUInt16LE(4 + payload.length, 0)
  head.writeUInt16LE(type, 2)
  const pad = Buffer.alloc((4 - (payload.length % 4)) % 4)
  return Buffer.concat([head, payload, pad])
}
const str = (s: string): Buffer => Buffer.from(`${s}\0`)
const be32 = (n: number): Buffer => {
  const b = Buffer.alloc(4)
  b.writeInt32BE(n, 0)
  return b
}

/** One nf_tables message: header (host order), nfgenmsg (family), attributes. */
function message(type: number, flags: number, attrs: Buffer[], family = 7): Buffer {
  const body = Buffer.concat([Buffer.from([family, 0, 0, 0]), ...attrs])
  const head = Buffer.alloc(16)
  head.writeUInt32LE(16 + body.length, 0)
  head.writeUInt16LE(type, 4)
  head.writeUInt16LE(flags, 6)
  return Buffer.concat([head, body])
}
const addChain = (table: string, name: string, flags = NLM_F_CREATE): Buffer => message(NEWCHAIN, flags, [attr(1, str(table)), attr(3, str(name))])
/** A set of inet_proto (type 12, 1 byte) keys. */
const newSet = (table: string, name: string): Buffer =>
  message(NEWSET, NLM_F_CREATE, [attr(1, str(table)), attr(2, str(name)), attr(3, be32(0)), attr(4, be32(12)), attr(5, be32(1)), attr(10, be32(1))])
const flush = (table: string, chain: string): Buffer => message(DELRULE, 0, [attr(1, str(table)), attr(2, str(chain))])

const chains = (): string => ns.exec('nft', ['list', 'chains', 'bridge'])

describe('commitBatch()', () => {
  it('commits its messages as one batch: one generation step, every message applied', async () => {
    const g = await nft.generation()
    await nft.commitBatch('t', Buffer.concat([addChain('t', 'a'), addChain('t', 'b'), flush('t', 'a')]))
    expect(await nft.generation()).toBe(g + 1)
    expect(chains()).toMatch(/table bridge t \{\n\s+chain a \{\n\s+\}\n\s+chain b \{/)
    nft.commitBatchSync('t', addChain('t', 'c'))
    expect(nft.generationSync()).toBe(g + 2)
    expect(chains()).toContain('chain c')
  })

  it('resolves to the generation just before and after; with expectGeneration it sends only while that holds', async () => {
    const g = await nft.generation()
    expect(await nft.commitBatch('t', addChain('t', 'a'))).toEqual({ before: g, after: g + 1 })
    expect(await nft.commitBatch('t', addChain('t', 'b'), { expectGeneration: g + 1 })).toEqual({ before: g + 1, after: g + 2 })
    // Someone else commits (here the CLI): a batch expecting the older generation is not sent.
    ns.exec('nft', ['add', 'chain', 'bridge', 'other', 'x'])
    const moved = await rejection(nft.commitBatch('t', addChain('t', 'c'), { expectGeneration: g + 2 }))
    expect(moved.code).toBe('GENERATION_MOVED')
    expect(thrown(() => nft.commitBatchSync('t', addChain('t', 'c'), { expectGeneration: g + 2 })).code).toBe('GENERATION_MOVED')
    expect(chains()).not.toContain('chain c')
    expect(await nft.generation()).toBe(g + 3)
    expect(nft.commitBatchSync('t', addChain('t', 'c'), { expectGeneration: g + 3 })).toEqual({ before: g + 3, after: g + 4 })
    for (const bad of [-1, 1.5, 2 ** 32, Number.NaN]) expect((await rejection(nft.commitBatch('t', addChain('t', 'd'), { expectGeneration: bad }))).code).toBe('EINVAL')
    expect(chains()).not.toContain('chain d')
    // A dry run commits nothing: the generation stays.
    const dry = new Nft({ netns: ns.name, dryRun: true })
    try {
      expect(await dry.commitBatch('t', addChain('t', 'e'))).toEqual({ before: g + 4, after: g + 4 })
    } finally {
      dry.close()
    }
  })

  it('a refused message fails the whole batch with its errno code and its index; nothing is committed', async () => {
    const g = await nft.generation()
    const e = await rejection(nft.commitBatch('t', Buffer.concat([addChain('t', 'a'), flush('t', 'nosuch'), addChain('t', 'b')])))
    expect([e.code, e.errno, e.index]).toEqual(['ENOENT', 2, 1])
    await nft.run('add chain bridge t x')
    const exists = await rejection(nft.commitBatch('t', Buffer.concat([addChain('t', 'y'), addChain('t', 'x', NLM_F_CREATE | 0x200)])))
    expect([exists.code, exists.index]).toEqual(['EEXIST', 1])
    expect(chains()).not.toMatch(/chain [aby] /)
    expect(await nft.generation()).toBe(g + 1)
    const missing = await rejection(nft.commitBatch('gone', addChain('gone', 'a')))
    expect([missing.code, missing.index]).toEqual(['ENOENT', 0])
  })

  it('refuses, before sending anything, a message naming another table, another family, or another kind', async () => {
    const g = await nft.generation()
    const other = await rejection(nft.commitBatch('t', Buffer.concat([addChain('t', 'a'), addChain('other', 'a')])))
    expect(other.code).toBe('BATCH_REFUSED')
    expect(other.message).toContain('message 1')
    expect((await rejection(nft.commitBatch('t', message(NEWCHAIN, NLM_F_CREATE, [attr(1, str('t')), attr(3, str('a'))], 1)))).code).toBe('BATCH_REFUSED')
    const delTable = message(0x0a02, 0, [attr(1, str('t'))])
    expect((await rejection(nft.commitBatch('t', delTable))).code).toBe('BATCH_REFUSED')
    // Issue 14: a base chain, a set, a table may be created, but only of the caller's table, and the table without flags.
    const hook = Buffer.concat([attr(1, be32(0)), attr(2, be32(-150))])
    const baseChain = (table: string) => message(NEWCHAIN, NLM_F_CREATE, [attr(1, str(table)), attr(3, str('h')), attr(7, str('filter')), attr(5, be32(1)), attr(4 | 0x8000, hook)])
    expect((await rejection(nft.commitBatch('t', Buffer.concat([addChain('t', 'a'), baseChain('other')])))).code).toBe('BATCH_REFUSED')
    expect((await rejection(nft.commitBatch('t', newSet('other', 's')))).code).toBe('BATCH_REFUSED')
    expect((await rejection(nft.commitBatch('t', message(NEWTABLE, NLM_F_CREATE, [attr(1, str('t')), attr(2, be32(1))])))).code).toBe('BATCH_REFUSED')
    expect(thrown(() => nft.commitBatchSync('t', addChain('other', 'a'))).code).toBe('BATCH_REFUSED')
    expect(await nft.generation()).toBe(g)
    expect(chains()).not.toMatch(/chain/)
  })

  it("creates the caller's table, its base chains and its sets (issue 14: a sync into an absent table)", async () => {
    await nft.run('delete table bridge t')
    const g = await nft.generation()
    const hook = Buffer.concat([attr(1, be32(0)), attr(2, be32(-150))])
    await nft.commitBatch(
      't',
      Buffer.concat([
        message(NEWTABLE, NLM_F_CREATE, [attr(1, str('t')), attr(2, be32(0))]),
        message(NEWCHAIN, NLM_F_CREATE, [attr(1, str('t')), attr(3, str('pre')), attr(7, str('filter')), attr(5, be32(1)), attr(4 | 0x8000, hook)]),
        newSet('t', 'protos'),
      ]),
    )
    expect(await nft.generation()).toBe(g + 1)
    const listed = ns.exec('nft', ['list', 'table', 'bridge', 't'])
    expect(listed).toContain('type filter hook prerouting priority -150; policy accept;')
    expect(listed).toMatch(/set protos \{\n\s+type inet_proto/)
  })

  it('refuses malformed buffers', async () => {
    const good = addChain('t', 'a')
    const cases: Buffer[] = [
      Buffer.alloc(0),
      good.subarray(0, 12),
      Buffer.concat([good, Buffer.from([1, 2, 3, 4, 5])]),
      (() => {
        const b = Buffer.from(good)
        b.writeUInt32LE(good.length + 64, 0)
        return b
      })(),
      (() => {
        const b = Buffer.from(good)
        b.writeUInt16LE(200, 20) // the first attribute runs past the message
        return b
      })(),
      (() => {
        const b = Buffer.from(good)
        b.writeUInt16LE(0x300, 6) // NLM_F_DUMP
        return b
      })(),
    ]
    for (const b of cases) expect((await rejection(nft.commitBatch('t', b))).code).toBe('BATCH_REFUSED')
    expect((await rejection(nft.commitBatch('', good))).code).toBe('EINVAL')
    expect(chains()).not.toMatch(/chain/)
  })

  it('a dry run checks the batch and commits nothing', async () => {
    const dry = new Nft({ netns: ns.name, dryRun: true })
    try {
      const g = await nft.generation()
      await dry.commitBatch('t', addChain('t', 'a'))
      expect((await rejection(dry.commitBatch('t', flush('t', 'nosuch')))).code).toBe('ENOENT')
      expect(await nft.generation()).toBe(g)
      expect(chains()).not.toMatch(/chain/)
    } finally {
      dry.close()
    }
  })
})
