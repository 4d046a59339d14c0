// libnftables calls per facade operation (every Nft method that reaches libnftables; `generation()`, a
// netlink GETGEN of ~20 µs, is not one). The facade translates only: the engine decides and reads, and on
// the hot path (nobody else committed since the engine's last look) it reads nothing.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { Nft } from '../../ts/index.js'
import { NftablesService, generateVMChainName, type FirewallRuleInput } from '../../ts/compat/index.js'
import { createNetns, type Netns } from '../support/netns.js'
import { isWriteCall } from '../support/nft-writes.js'

const CALLS = ['run', 'runJson', 'commitBatch', 'runEcho', 'check', 'checkJson', 'listRuleset', 'listTable', 'listChain'] as const

let ns: Netns
let nft: Nft
let svc: NftablesService
let calls: string[]

beforeEach(() => {
  ns = createNetns('ccnt')
  nft = new Nft({ netns: ns.name })
  svc = new NftablesService({ nft, bridgeConntrackMode: 'degrade' })
  calls = []
  let depth = 0
  for (const m of CALLS) {
    const orig = (nft[m] as (...a: unknown[]) => Promise<unknown>).bind(nft)
    vi.spyOn(nft, m).mockImplementation((async (...args: unknown[]) => {
      // A write is `write` whether it goes out as text (run), JSON (runJson) or netlink (commitBatch); JSON reads
      // are `runJson:list`, text reads (the guard's sets, issue 15) `run:list`.
      const write = m === 'commitBatch' || ((m === 'run' || m === 'runJson') && isWriteCall(m, args[0]))
      const at = depth === 0 ? calls.push(write ? 'write' : m === 'runJson' ? 'runJson:list' : m === 'run' ? 'run:list' : m) - 1 : -1
      depth++
      try {
        return await orig(...args)
      } catch (e) {
        // A batch built from a view that no longer held: refused on the instance's thread, nothing sent.
        if (at >= 0 && (e as { code?: string }).code === 'GENERATION_MOVED') calls[at] = 'unsent'
        throw e
      } finally {
        depth--
      }
    }) as never)
  }
})
afterEach(() => {
  vi.restoreAllMocks()
  svc.close()
  nft.close()
  ns.delete()
})

const ssh = (port = 22): FirewallRuleInput => ({ id: 'ssh', name: 'ssh in', direction: 'IN', protocol: 'tcp', dstPortStart: port, action: 'ACCEPT', priority: 100 })
const cli = (args: string[], input?: string): string => ns.exec('nft', args, input === undefined ? {} : { input })

/** Calls made by `fn`. */
async function count(fn: () => Promise<unknown>): Promise<string[]> {
  calls = []
  await fn()
  return calls
}

describe('libnftables calls per facade operation', () => {
  it('applyRules on a loaded table: one call (the write) when nobody else committed', async () => {
    await svc.initialize()
    for (let i = 0; i < 5; i++) await svc.applyRules(`vm-${i}`, `vnet-${i}`, [], [ssh()])
    // Steady state: a new VM, a changed policy, a repeated one: one transaction each, nothing listed.
    expect(await count(() => svc.applyRules('vm-new', 'vnet-new', [], [ssh()]))).toEqual(['write'])
    expect(await count(() => svc.applyRules('vm-1', 'vnet-1', [], [ssh(2222)]))).toEqual(['write'])
    expect(await count(() => svc.applyRules('vm-1', 'vnet-1', [], [ssh(2222)]))).toEqual(['write'])
    // Someone else committed: the batch decided and built from the view as last known is refused unsent (its
    // generation moved); the engine re-reads its view once (the maps, the guard's sets, the chain names), decides
    // again and writes.
    cli(['add', 'table', 'bridge', 'other'])
    const after = await count(() => svc.applyRules('vm-2', 'vnet-2', [], [ssh(2222)]))
    expect(after.filter((c) => !c.startsWith('runJson:list') && c !== 'run:list')).toEqual(['unsent', 'write'])
    expect(after.length).toBeLessThanOrEqual(5)
    expect(await count(() => svc.applyRules('vm-3', 'vnet-3', [], [ssh(2222)]))).toEqual(['write'])
  })

  it('applyRules decides from the view as last known (no generation read); a VM another writer stopped meanwhile stays stopped', async () => {
    await svc.initialize()
    await svc.applyRules('vm-1', 'vnet-1', [], [ssh()])
    await svc.applyRules('vm-2', 'vnet-2', [], [ssh()])
    const generation = vi.spyOn(nft, 'generation')
    // Nobody else committed: the facade's decision (is the VM known, dispatched, on the old layout?) and the
    // engine's batch both come from the view; the batch's own thread checks the generation (one round trip).
    expect(await count(() => svc.applyRules('vm-1', 'vnet-1', [], [ssh(2222)]))).toEqual(['write'])
    expect(generation).not.toHaveBeenCalled()
    // Another process stops vm-1 (its dispatch removed). The decision made from the older view ("dispatched:
    // attach it") is not sent; made again from a fresh read, the stopped VM stays stopped, as the facade promises.
    const other = new NftablesService({ nft: new Nft({ netns: ns.name }), bridgeConntrackMode: 'degrade', table: 'infinization' })
    try {
      await other.detachJumpRules('vm-1')
    } finally {
      other.close()
    }
    const c = await count(() => svc.applyRules('vm-1', 'vnet-1', [], [ssh(2200)]))
    expect(c.filter((x) => !x.startsWith('runJson:list') && x !== 'run:list')).toEqual(['unsent', 'write'])
    expect(cli(['list', 'map', 'bridge', 'infinization', 'from_vm'])).not.toContain('"vnet-1"')
    expect(cli(['list', 'chain', 'bridge', 'infinization', `${generateVMChainName('vm-1')}_i`])).toContain('dport 2200')
    expect(cli(['list', 'map', 'bridge', 'infinization', 'from_vm'])).toContain('"vnet-2"')
  })

  it('applyRulesIfChanged decides from the view as last known: one generation read; a VM stopped by another writer stays stopped', async () => {
    await svc.initialize()
    await svc.applyRules('vm-1', 'vnet-1', [], [ssh()])
    await svc.applyRules('vm-2', 'vnet-2', [], [ssh()])
    expect(await svc.applyRulesIfChanged('vm-1', 'vnet-1', [], [ssh()])).toEqual({ changed: false })
    const generation = vi.spyOn(nft, 'generation')
    // Unchanged, nobody else committed: the comparison's one read of the generation also confirms the decision.
    expect(await count(async () => expect(await svc.applyRulesIfChanged('vm-1', 'vnet-1', [], [ssh()])).toEqual({ changed: false }))).toEqual([])
    expect(generation).toHaveBeenCalledTimes(1)
    // Another process stops vm-1: decided from the older view, the facade would call the missing dispatch a change
    // and re-attach the VM; decided again from the fresh read, the stopped VM is unchanged and stays stopped.
    const other = new NftablesService({ nft: new Nft({ netns: ns.name }), bridgeConntrackMode: 'degrade', table: 'infinization' })
    try {
      await other.detachJumpRules('vm-1')
    } finally {
      other.close()
    }
    expect(await svc.applyRulesIfChanged('vm-1', 'vnet-1', [], [ssh()])).toEqual({ changed: false })
    expect(cli(['list', 'map', 'bridge', 'infinization', 'from_vm'])).not.toContain('"vnet-1"')
    expect(cli(['list', 'map', 'bridge', 'infinization', 'from_vm'])).toContain('"vnet-2"')
  })

  it('applyRulesIfChanged with nothing changed: no call while nobody else commits; reads only once someone did', async () => {
    const reads = (c: string[]) => c.every((x) => x === 'listChain' || x === 'runEcho' || x === 'run:list' || x.startsWith('runJson:list'))
    const unchanged = () => svc.applyRulesIfChanged('vm-1', 'vnet-1', [], [ssh()])
    await svc.initialize()
    await svc.applyRules('vm-1', 'vnet-1', [], [ssh()])
    await svc.applyRules('vm-2', 'vnet-2', [], [ssh()])
    // First check: the VM's two chains, the base chains (and, once per rule shape, the kernel's rendering).
    const first = await count(async () => expect(await unchanged()).toEqual({ changed: false }))
    expect(reads(first) && first.length <= 8).toBe(true)
    const second = await count(async () => expect(await unchanged()).toEqual({ changed: false }))
    expect(second.length <= 1 && reads(second)).toBe(true) // the chain names, if the view was re-read
    expect(await count(async () => expect(await unchanged()).toEqual({ changed: false }))).toEqual([])
    // Our own writes to other VMs do not make it list again (the engine knows they did not touch vm-1).
    await svc.applyRules('vm-2', 'vnet-2', [], [ssh(2222)])
    await svc.detachJumpRules('vm-2')
    expect(await count(async () => expect(await unchanged()).toEqual({ changed: false }))).toEqual([])
    // Another writer commits elsewhere: the view is re-read (two maps), the chains listed again (VM, base).
    cli(['add', 'table', 'bridge', 'other'])
    const moved = await count(async () => expect(await unchanged()).toEqual({ changed: false }))
    // Re-read once: the two maps (one `list maps`), the guard's sets (one `list sets`, as text: issue 15) and the
    // chain names (the view), the VM's two chains and the two base chains (plus, the first time the VM's rules
    // are compared with a listing, the kernel's rendering of them).
    expect(moved.filter((c) => c !== 'runEcho').sort()).toEqual(['listChain', 'listChain', 'listChain', 'listChain', 'run:list', 'runJson:list', 'runJson:list'])
    expect(moved.filter((c) => c === 'runEcho').length).toBeLessThanOrEqual(1)
    expect(await count(async () => expect(await unchanged()).toEqual({ changed: false }))).toEqual([])
    // Another writer edits the VM's chain, or its dispatch, or a base chain: seen (the generation moved), repaired.
    const chain = `${generateVMChainName('vm-1')}_i`
    cli(['insert', 'rule', 'bridge', 'infinization', chain, 'accept'])
    expect((await unchanged()).changed).toBe(true)
    expect(cli(['list', 'chain', 'bridge', 'infinization', chain])).not.toMatch(/^\s*accept\s*$/m)
    expect(await unchanged()).toEqual({ changed: false })
    cli(['delete', 'element', 'bridge', 'infinization', 'to_vm', '{ "vnet-1" }'])
    expect((await unchanged()).changed).toBe(true)
    expect(cli(['list', 'map', 'bridge', 'infinization', 'to_vm'])).toContain('"vnet-1"')
    cli(['flush', 'chain', 'bridge', 'infinization', 'prerouting'])
    expect((await unchanged()).changed).toBe(true)
    expect(cli(['list', 'chain', 'bridge', 'infinization', 'prerouting'])).toContain('vmap @from_vm')
    expect(await count(async () => expect(await unchanged()).toEqual({ changed: false }))).toEqual([])
  })

  it('createVMChain, attach, detach, ensure, flush and remove of a known VM list nothing; one transaction at most', async () => {
    await svc.initialize()
    await svc.applyRules('vm-1', 'vnet-1', [], [ssh()])
    for (const [name, fn] of [
      ['detachJumpRules', () => svc.detachJumpRules('vm-1')],
      ['attachJumpRules', () => svc.attachJumpRules('vm-1', 'vnet-1')],
      ['createVMChain', () => svc.createVMChain('vm-1', 'vnet-1')],
      ['ensureVMChain', () => svc.ensureVMChain('vm-1')],
      ['flushVMRules', () => svc.flushVMRules('vm-1')],
      ['removeVMChain', () => svc.removeVMChain('vm-1')],
    ] as const) {
      if (name === 'flushVMRules') expect(await svc.applyRules('vm-1', 'vnet-1', [], [ssh()], 'accept')).toMatchObject({ applied: true })
      const generation = vi.spyOn(nft, 'generation')
      const c = await count(fn)
      // VM stop and destroy: one transaction decided from the view as last known, the old layout's part included
      // (no read of the generation of its own: the batch's thread checks it).
      if (name === 'detachJumpRules' || name === 'removeVMChain') expect(generation, name).not.toHaveBeenCalled()
      generation.mockRestore()
      // One transaction at most (none when there is nothing to change: creating or ensuring an existing VM).
      expect(c.filter((x) => x !== 'listChain' && !x.startsWith('runJson:list')).length, name).toBe(name === 'createVMChain' || name === 'ensureVMChain' ? 0 : 1)
      // flushVMRules keeps the default action in force: known to the engine (it wrote it; nobody committed since).
      expect(c.filter((x) => x === 'listChain' || x.startsWith('runJson:list')), name).toEqual([])
    }
    expect(await svc.chainExists(generateVMChainName('vm-1'))).toBe(false)
  })

  it('flushVMRules keeps the default in force even when someone else rewrote it (read from the kernel then)', async () => {
    await svc.initialize()
    await svc.applyRules('vm-1', 'vnet-1', [], [ssh()], 'drop')
    const out = `${generateVMChainName('vm-1')}_o`
    const inn = `${generateVMChainName('vm-1')}_i`
    // Another writer rewrites the VM as default accept (the facade of another process, say).
    const other = new NftablesService({ nft: new Nft({ netns: ns.name }), bridgeConntrackMode: 'degrade', table: 'infinization' })
    try {
      await other.applyRules('vm-1', 'vnet-1', [], [ssh()], 'accept')
    } finally {
      other.close()
    }
    const c = await count(() => svc.flushVMRules('vm-1'))
    expect(c).toContain('listChain')
    for (const chain of [out, inn]) expect(cli(['list', 'chain', 'bridge', 'infinization', chain])).toMatch(/accept comment "d:/)
  })
})
