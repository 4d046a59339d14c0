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

const NEWCHAIN = 0x0a03
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
    // A base chain (NFTA_CHAIN_HOOK) is not a VM chain.
    const hook = Buffer.concat([attr(1 | 0x8000, Buffer.from([0, 0, 0, 0])), attr(2 | 0x8000, Buffer.from([0, 0, 0, 0]))])
    expect((await rejection(nft.commitBatch('t', message(NEWCHAIN, NLM_F_CREATE, [attr(1, str('t')), attr(3, str('h')), attr(4 | 0x8000, hook)])))).code).toBe(
      'BATCH_REFUSED',
    )
    expect(thrown(() => nft.commitBatchSync('t', addChain('other', 'a'))).code).toBe('BATCH_REFUSED')
    expect(await nft.generation()).toBe(g)
    expect(chains()).not.toMatch(/chain/)
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
