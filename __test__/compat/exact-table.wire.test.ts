// The facade with `exactTable` (issue 15): Infinization's lifecycle (create, apply, apply-if-changed, flush,
// stop, start, destroy) with the VMs whose policies fit held as elements of `<table>_exact`, checked with real
// packets. With bridge conntrack (the distro-kernel runner) the VMs live there, and listChains/chainExists
// still name them by their base chain; without (the CI host) every VM stays in chains and the exact table is
// never created: the same packets, the same answers.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { NftablesService, NftablesErrorCode, generateVMChainName, type FirewallRuleInput } from '../../ts/compat/index.js'
import { exactTableName, lookupComment } from '../../ts/firewall/exact-table.js'
import { buildWorld, passes, type Vm, type World } from '../support/world.js'

const TABLE = 'compat_exact'
let w: World
let svc: NftablesService
let stateful: boolean
let A: Vm, B: Vm
beforeAll(async () => {
  w = await buildWorld({ vms: 2, subnet: 79 })
  ;[A, B] = w.vms as [Vm, Vm]
  svc = new NftablesService({ nft: w.nft, table: TABLE, bridgeConntrackMode: 'degrade', exactTable: true })
  stateful = (await svc.capabilities()).bridgeConntrack
})
afterAll(async () => {
  svc?.close()
  await w?.destroy()
})

const web: FirewallRuleInput = { id: 'web', name: 'web in', action: 'ACCEPT', direction: 'IN', protocol: 'tcp', dstPortStart: 80, priority: 100 }
const ssh: FirewallRuleInput = { id: 'ssh', name: 'ssh in', action: 'ACCEPT', direction: 'IN', protocol: 'tcp', dstPortStart: 22, priority: 100 }
const pingOut: FirewallRuleInput = { id: 'ping-out', name: 'ping out', action: 'ACCEPT', direction: 'OUT', protocol: 'icmp', priority: 100 }
const exactTableExists = () => w.hostNft(['list', 'tables', 'bridge']).includes(`table bridge ${exactTableName(TABLE)}`)
/** Where the kernel holds A: its elements in the exact table (stateful kernels), else its two chains. */
async function expectAHeld(): Promise<void> {
  const base = generateVMChainName(A.vmId)
  expect(await svc.firewall.exactVms()).toEqual(stateful ? expect.arrayContaining([A.vmId]) : [])
  const chains = await svc.firewall.chainNames()
  expect(chains.includes(`${base}_o`) || chains.includes(`${base}_i`)).toBe(!stateful)
  expect(await svc.chainExists(base)).toBe(true)
  expect(await svc.listChains()).toContain(base)
}
async function aAllowsWebOnly(): Promise<void> {
  expect(await passes(() => w.tcp(B, A.ipv4, 80))).toBe(true)
  expect(await w.tcp(B, A.ipv4, 22)).toBe(false)
}

describe('NftablesService with exactTable', () => {
  it('runs the lifecycle with the VMs held as elements where the kernel allows it', async () => {
    await svc.initialize()
    await svc.createVMChain(A.vmId, A.tap)
    expect(await svc.applyRules(A.vmId, A.tap, [], [web, pingOut], 'drop')).toMatchObject({ totalRules: 2, appliedRules: 2, failedRules: 0, attached: true })
    await svc.createVMChain(B.vmId, B.tap)
    await svc.applyRules(B.vmId, B.tap, [], [], 'accept')
    expect(exactTableExists()).toBe(stateful)
    await expectAHeld()
    await aAllowsWebOnly()
    expect(await passes(() => w.ping(A, B.ipv4))).toBe(true)

    // Nothing changed: nothing written (compared with the exact table, not with chains it does not have).
    const gen = await w.nft.generation()
    expect(await svc.applyRulesIfChanged(A.vmId, A.tap, [], [web, pingOut], 'drop')).toEqual({ changed: false })
    expect(await w.nft.generation()).toBe(gen)
    // A new rule: written, still where it was.
    expect((await svc.applyRulesIfChanged(A.vmId, A.tap, [], [web, ssh, pingOut], 'drop')).changed).toBe(true)
    expect(await passes(() => w.tcp(B, A.ipv4, 22))).toBe(true)
    await expectAHeld()

    // Flush: only the default action (drop) left, never open.
    await svc.flushVMRules(A.vmId)
    expect(await w.tcp(B, A.ipv4, 80)).toBe(false)
    await expectAHeld()
    await svc.applyRules(A.vmId, A.tap, [], [web, pingOut], 'drop')
    await aAllowsWebOnly()

    // ensureVMChain and createVMChain on a VM that has its policy in force write nothing.
    const before = await w.nft.generation()
    await svc.ensureVMChain(A.vmId)
    await svc.createVMChain(A.vmId, A.tap)
    expect(await w.nft.generation()).toBe(before)

    // Stop: A unfiltered (the veth stays up here). Start: filtered again, ending where it was.
    await svc.detachJumpRules(A.vmId)
    expect(await passes(() => w.tcp(B, A.ipv4, 22))).toBe(true)
    await svc.ensureVMChain(A.vmId)
    await svc.attachJumpRules(A.vmId, A.tap)
    // A stopped VM of the exact table held nothing: its start closes it and puts its rules back (changed).
    expect(await svc.applyRulesIfChanged(A.vmId, A.tap, [], [web, pingOut], 'drop')).toMatchObject({ changed: stateful })
    await aAllowsWebOnly()
    await expectAHeld()
    expect(await svc.verify()).toMatchObject({ ok: true })
    expect((await svc.firewall.verify()).ok).toBe(true)

    // Someone else deletes the exact table's default lookup, and A's traffic passes unfiltered: verify names it,
    // and the next applyRulesIfChanged (the facade checks the table) rewrites the shape in its transaction.
    if (stateful) {
      const post = () => w.hostNft(['-a', 'list', 'chain', 'bridge', exactTableName(TABLE), 'postrouting'])
      const handle = new RegExp(`"${lookupComment('in', 'default')}" # handle (\\d+)`).exec(post())![1]!
      w.hostNft(['delete', 'rule', 'bridge', exactTableName(TABLE), 'postrouting', 'handle', handle])
      expect(await passes(() => w.tcp(B, A.ipv4, 22))).toBe(true)
      const v = await svc.verify()
      expect(v.ok).toBe(false)
      expect(v.problems).toContainEqual(expect.stringMatching(/^exact table: /))
      expect(await svc.applyRulesIfChanged(A.vmId, A.tap, [], [web, pingOut], 'drop')).toMatchObject({ changed: true })
      expect(post()).toContain(lookupComment('in', 'default'))
      await aAllowsWebOnly()
      expect(await svc.verify()).toMatchObject({ ok: true })
      const g = await w.nft.generation()
      expect(await svc.applyRulesIfChanged(A.vmId, A.tap, [], [web, pingOut], 'drop')).toEqual({ changed: false })
      expect(await w.nft.generation()).toBe(g)
    } else expect(exactTableExists()).toBe(false)

    // Destroy: gone from both tables, by either name.
    await svc.removeVMChain(A.vmId)
    expect(await svc.chainExists(generateVMChainName(A.vmId))).toBe(false)
    expect(await svc.listChains()).not.toContain(generateVMChainName(A.vmId))
    expect(await svc.firewall.exactVms()).not.toContain(A.vmId)
    await svc.removeVMChainByName(generateVMChainName(B.vmId))
    expect(await svc.firewall.exactVms()).toEqual([])
    expect(await svc.listChains()).not.toContain(generateVMChainName(B.vmId))
  })

  it('fixes exactTable per table: a facade asking for the other value is refused', () => {
    expect(() => new NftablesService({ nft: w.nft, table: TABLE, exactTable: false })).toThrow(expect.objectContaining({ code: NftablesErrorCode.CONFIG_CONFLICT }))
    expect(() => new NftablesService({ nft: w.nft, table: TABLE, exactTable: 'yes' as unknown as boolean })).toThrow(expect.objectContaining({ code: NftablesErrorCode.INVALID_ARGUMENT }))
    // Leaving it out takes the table's.
    const other = new NftablesService({ nft: w.nft, table: TABLE })
    other.close()
  })

  it('fixes exactTable once an engine runs on the table, even where nobody passed it', async () => {
    const plain = new NftablesService({ nft: w.nft, table: 'compat_exact2' })
    try {
      await plain.capabilities() // the engine exists now, with exactTable off
      expect(() => new NftablesService({ nft: w.nft, table: 'compat_exact2', exactTable: true })).toThrow(expect.objectContaining({ code: NftablesErrorCode.CONFIG_CONFLICT }))
      new NftablesService({ nft: w.nft, table: 'compat_exact2', exactTable: false }).close()
    } finally {
      plain.close()
    }
  })
})
