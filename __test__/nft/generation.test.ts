// Nft.generation() (the namespace's ruleset generation id) and Nft.runEcho() (JSON echo of a text batch).
import { beforeEach, describe, expect, it } from 'vitest'
import { Nft, type NftablesJson } from '../../ts/index.js'
import { distEntry, ensureDist, runNode } from '../support/child.js'
import { rejection } from '../support/errors.js'
import { createNetns, type Netns } from '../support/netns.js'
import { useNetnsNft } from '../support/netns-nft.js'

let ns: Netns
let nft: Nft
useNetnsNft((n, f) => ([ns, nft] = [n, f]))

// Each test starts from a namespace holding one table with one base chain.
beforeEach(async () => {
  await nft.run('flush ruleset\nadd table bridge t\nadd chain bridge t c { type filter hook forward priority 0; policy accept; }')
})

describe('generation()', () => {
  it('is a 32-bit id that each committed batch moves on by one, whatever it holds', async () => {
    const before = await nft.generation()
    expect(Number.isInteger(before) && before > 0 && before <= 0xffffffff).toBe(true)
    expect(nft.generationSync()).toBe(before)
    await nft.run('add chain bridge t a\nadd chain bridge t b\nadd rule bridge t a accept')
    expect(await nft.generation()).toBe(before + 1)
    await nft.runJson({ nftables: [{ add: { chain: { family: 'bridge', table: 't', name: 'j' } } }] })
    expect(nft.generationSync()).toBe(before + 2)
  })

  it('moves on for commits by anyone in the namespace: another instance, the nft CLI', async () => {
    const other = new Nft({ netns: ns.name })
    try {
      const before = await nft.generation()
      await other.run('add chain bridge t other')
      const afterOther = await nft.generation()
      expect(afterOther).not.toBe(before)
      ns.exec('nft', ['add chain bridge t cli'])
      const afterCli = await nft.generation()
      expect(afterCli).not.toBe(afterOther)
      expect(await other.generation()).toBe(afterCli)
    } finally {
      other.close()
    }
  })

  it('does not move for listings or dry runs', async () => {
    const dry = new Nft({ netns: ns.name, dryRun: true })
    try {
      const before = await nft.generation()
      await nft.run('list ruleset')
      await nft.listRuleset()
      await nft.listChain('bridge', 't', 'c')
      await nft.check('add chain bridge t checked\nadd rule bridge t c drop')
      await nft.checkJson({ nftables: [{ add: { chain: { family: 'bridge', table: 't', name: 'checked' } } }] })
      await dry.run('add chain bridge t dry')
      expect(await nft.generation()).toBe(before)
      expect(ns.ruleset()).not.toMatch(/checked|dry|drop/)
    } finally {
      dry.close()
    }
  })

  it('does not move for a failed batch: the kernel aborts it (text and JSON)', async () => {
    const before = await nft.generation()
    const ruleset = ns.ruleset()
    // The first command is valid; the kernel refuses the second, so the whole batch is aborted.
    const text = await rejection(nft.run('add chain bridge t fresh\ncreate table bridge t'))
    expect([text.code, text.line]).toEqual(['EEXIST', 2])
    const json = await rejection(
      nft.runJson({
        nftables: [{ add: { chain: { family: 'bridge', table: 't', name: 'fresh' } } }, { create: { table: { family: 'bridge', name: 't' } } }],
      }),
    )
    expect([json.code, json.index]).toEqual(['EEXIST', 1])
    // Refused by libnftables before anything reaches the kernel.
    expect((await rejection(nft.run('add chain bridge t fresh\nadd rule bridge t nosuch accept'))).code).toBe('ENOENT')
    expect(await nft.generation()).toBe(before)
    expect(ns.ruleset()).toBe(ruleset)
  })

  it('moves only when the kernel has a transaction to commit: re-adding a table has none, a chain has one', async () => {
    const before = await nft.generation()
    await nft.run('add table bridge t')
    expect(await nft.generation()).toBe(before)
    // An existing chain is "updated" (a transaction, even though nothing differs).
    await nft.run('add chain bridge t c')
    expect(await nft.generation()).toBe(before + 1)
  })

  it("belongs to the instance's namespace: other namespaces' commits do not move it", async () => {
    const other = createNetns()
    const there = new Nft({ netns: other.name })
    try {
      const here = await nft.generation()
      const before = await there.generation()
      await there.run('add table bridge elsewhere')
      other.exec('nft', ['add table bridge cli'])
      expect(await there.generation()).toBe(before + 2)
      expect(await nft.generation()).toBe(here)
      await nft.run('add chain bridge t here')
      expect(await nft.generation()).toBe(here + 1)
      expect(await there.generation()).toBe(before + 2)
    } finally {
      there.close()
      other.delete()
    }
  })

  it('is read after the calls queued before it', async () => {
    const before = await nft.generation()
    const commits = [nft.run('add chain bridge t q1'), nft.run('add chain bridge t q2')]
    const read = nft.generation()
    await Promise.all(commits)
    expect(await read).toBe(before + 2)
  })

  it('fails with CLOSED after close()', async () => {
    const closing = new Nft({ netns: ns.name })
    closing.close()
    expect((await rejection(closing.generation())).code).toBe('CLOSED')
    expect(() => closing.generationSync()).toThrow(expect.objectContaining({ code: 'CLOSED' }))
  })

  it('fails with EPERM without CAP_NET_ADMIN', () => {
    ensureDist()
    const script = `
      const { Nft } = require(${JSON.stringify(distEntry)})
      const nft = new Nft()
      const codes = []
      try { codes.push(nft.generationSync()) } catch (e) { codes.push(e.code + ':' + e.errno) }
      nft.generation().then((g) => codes.push(g), (e) => codes.push(e.code + ':' + e.errno)).then(() => {
        nft.close()
        console.log(JSON.stringify(codes))
      })
    `
    // As in threads.test.ts: in the test namespace, without capabilities over it.
    expect(runNode(script, ['ip', 'netns', 'exec', ns.name, 'unshare', '--user'])).toEqual(['EPERM:1', 'EPERM:1'])
  })

  it('costs well under a millisecond per call, thread hop included', async () => {
    const calls = 2000
    let started = performance.now()
    for (let i = 0; i < calls; i++) nft.generationSync()
    const sync = (performance.now() - started) / calls
    started = performance.now()
    for (let i = 0; i < calls; i++) await nft.generation()
    const async = (performance.now() - started) / calls
    // The target is ~0.01-0.05 ms; the bound leaves room for a loaded 2-core machine.
    expect({ sync: sync < 0.5, async: async < 0.5 }).toEqual({ sync: true, async: true })
  })
})

type Rule = { family: string; table: string; chain: string; handle: number; expr: unknown[] }

function added(doc: NftablesJson): Record<string, Record<string, unknown>>[] {
  return doc.nftables.map((command) => {
    expect(Object.keys(command)).toEqual(['add'])
    return (command as { add: Record<string, Record<string, unknown>> }).add
  })
}

async function listedRules(): Promise<Rule[]> {
  return (await nft.listChain('bridge', 't', 'c')).nftables.flatMap((o) => ('rule' in o ? [o.rule as Rule] : []))
}

describe('runEcho()', () => {
  it("returns the JSON echo of a text batch: each rule with its handle and expr as listChain lists it", async () => {
    const echo = await nft.runEcho('add rule bridge t c ether type arp counter accept\nadd rule bridge t c ip saddr 10.0.0.1 drop')
    const rules = added(echo).map((a) => {
      expect(Object.keys(a)).toEqual(['rule'])
      return a.rule as Rule
    })
    const listed = await listedRules()
    expect(rules).toHaveLength(2)
    expect(listed).toHaveLength(2)
    for (const [i, rule] of rules.entries()) {
      expect(rule).toMatchObject({ family: 'bridge', table: 't', chain: 'c', handle: listed[i]!.handle })
      expect(rule.expr).toEqual(listed[i]!.expr)
    }
    expect(rules[0]!.expr).toContainEqual({ accept: null })
  })

  it('echoes every kind of created object, with handles', () => {
    const echo = nft.runEchoSync(
      'add table bridge e\nadd chain bridge e c\nadd set bridge e s { type ether_addr; }\nadd element bridge e s { 02:00:00:00:00:01 }',
    )
    const [table, chain, set, element] = added(echo)
    expect(table?.table).toMatchObject({ family: 'bridge', name: 'e', handle: expect.any(Number) })
    expect(chain?.chain).toMatchObject({ table: 'e', name: 'c', handle: expect.any(Number) })
    expect(set?.set).toMatchObject({ table: 'e', name: 's', type: 'ether_addr', handle: expect.any(Number) })
    expect(element?.element).toMatchObject({ table: 'e', name: 's', elem: { set: ['02:00:00:00:00:01'] } })
  })

  it('is per call: run() on the same instance still prints nothing for an add', async () => {
    expect(added(await nft.runEcho('add rule bridge t c accept'))).toHaveLength(1)
    expect(await nft.run('add rule bridge t c drop')).toBe('')
    expect(added(await nft.runEcho('add rule bridge t c accept'))).toHaveLength(1)
    expect(nft.options.echo).toBeUndefined()
  })

  it('returns an empty document when nothing is created, and what a list prints comes first', async () => {
    expect(await nft.runEcho('flush chain bridge t c')).toEqual({ nftables: [] })
    await nft.run('add rule bridge t c counter')
    const echo = await nft.runEcho('add rule bridge t c accept\nlist chain bridge t c\nadd rule bridge t c drop')
    // The listing shows the chain as it was before the batch: only the rule that existed.
    const kinds = echo.nftables.map((o) => Object.keys(o)[0])
    expect(kinds).toEqual(['metainfo', 'chain', 'rule', 'add', 'add'])
    expect(added({ nftables: echo.nftables.slice(3) })).toHaveLength(2)
  })

  it('fails like run(): a typed error, and nothing is committed', async () => {
    const before = await nft.generation()
    const ruleset = ns.ruleset()
    const e = await rejection(nft.runEcho('add rule bridge t c accept\nadd rule bridge t nosuch accept'))
    expect(e.code).toBe('ENOENT')
    const syntax = await rejection(nft.runEcho('add rule bridge t c accept\nadd rule bridge t c acept'))
    expect(syntax.code).toBe('SYNTAX')
    expect(() => nft.runEchoSync('add rule bridge t c accept\ncreate table bridge t')).toThrow(expect.objectContaining({ code: 'EEXIST' }))
    expect(await nft.generation()).toBe(before)
    expect(ns.ruleset()).toBe(ruleset)
  })

  it('on a dry-run instance validates, creates nothing and echoes nothing', async () => {
    const dry = new Nft({ netns: ns.name, dryRun: true })
    try {
      const before = await nft.generation()
      expect(await dry.runEcho('add rule bridge t c accept')).toEqual({ nftables: [] })
      expect((await rejection(dry.runEcho('add rule bridge t nosuch accept'))).code).toBe('ENOENT')
      expect(await listedRules()).toEqual([])
      expect(await nft.generation()).toBe(before)
    } finally {
      dry.close()
    }
  })
})
