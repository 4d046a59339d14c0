// VmFirewall with the exact table (issue 15, the `exactTable` option), judged by real packets between VMs in
// a throwaway namespace. With bridge conntrack (the distro-kernel runner) a VM whose policy fits lives in
// `<table>_exact` as elements, moves to chains and back in one transaction when its policy changes, and every
// operation sees it there; without (the CI host) exact-rules.ts refuses every VM, so everything stays in chains
// and the exact table is never created: the same packets, the same answers.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { VmFirewall, type DriftEvent, type FirewallRuleInput, type WatchEvent } from '../../ts/firewall/index.js'
import { exactTableName } from '../../ts/firewall/exact-table.js'
import { vmChainNames } from '../../ts/firewall/layout.js'
import { buildWorld, passes, vmSpec, type Vm, type World } from '../support/world.js'

const TABLE = 'fw_exact_wire'
const EXACT = exactTableName(TABLE)
let w: World
let fw: VmFirewall
let stateful: boolean
let A: Vm, B: Vm, C: Vm, D: Vm
beforeAll(async () => {
  w = await buildWorld({ vms: 4, subnet: 78 })
  ;[A, B, C, D] = w.vms as [Vm, Vm, Vm, Vm]
  fw = new VmFirewall(w.nft, { table: TABLE, exactTable: true })
  stateful = (await fw.capabilities()).bridgeConntrack
})
afterAll(async () => {
  await w?.destroy()
})

const tables = () => w.hostNft(['list', 'tables', 'bridge'])
const exactText = () => (tables().includes(`table bridge ${EXACT}`) ? w.hostNft(['list', 'table', 'bridge', EXACT]) : '')
const chainsOf = async (vm: Vm) => {
  const names = await fw.chainNames()
  const c = vmChainNames(vm.vmId)
  return names.filter((n) => n === c.out || n === c.in)
}
const placement = () => (stateful ? 'exact' : 'chains')

// B: web and ping to it, nothing from C (ahead of the rest); A, C, D accept everything.
const web: FirewallRuleInput = { id: 'web', name: 'web', direction: 'IN', protocol: 'tcp', dstPortStart: 80 }
const bRules = (): FirewallRuleInput[] => [
  { id: 'blk', name: 'block C', direction: 'IN', action: 'DROP', srcIpAddr: C.ipv4, priority: 1 },
  web,
  { id: 'ping', name: 'ping', protocol: 'icmp' },
]
// A range wider than the exact table spells out: B needs chains.
const wide: FirewallRuleInput = { id: 'wide', name: 'wide', direction: 'IN', protocol: 'tcp', dstPortStart: 1, dstPortEnd: 9000 }

async function bAllowsWebOnly(): Promise<void> {
  expect(await passes(() => w.tcp(A, B.ipv4, 80))).toBe(true)
  expect(await w.tcp(A, B.ipv4, 22)).toBe(false)
  expect(await passes(() => w.ping(A, B.ipv4))).toBe(true)
  expect(await w.ping(C, B.ipv4)).toBe(false)
  expect(await w.tcp(C, B.ipv4, 80)).toBe(false)
}

describe('VmFirewall with the exact table', () => {
  it('places VMs whose policies fit as elements (stateful kernels), the rest in chains, judged alike', async () => {
    for (const vm of [A, C, D]) expect((await fw.applyVm(vmSpec(vm, 'accept'))).placement).toBe(placement())
    const r = await fw.applyVm(vmSpec(B, 'drop', bRules()))
    expect(r.placement).toBe(placement())
    expect(await fw.hasVm(B.vmId)).toBe(true)
    if (stateful) {
      // No chains: B's rules are elements of the exact table, each named by its rule.
      expect(await chainsOf(B)).toEqual([])
      expect(exactText()).toContain('comment "r:web"')
      expect(exactText()).toContain(`comment "d:${B.vmId}"`)
    } else {
      expect(await chainsOf(B)).toHaveLength(2)
      expect(tables()).not.toContain(EXACT)
    }
    await bAllowsWebOnly()
    // D's policy is accept: anything to it passes, spoofed sources from it do not (the guard, in either table).
    expect(await passes(() => w.tcp(A, D.ipv4, 22))).toBe(true)
    const v = await fw.verify()
    expect(v).toMatchObject({ ok: true, orphans: [], table: [] })
    const inv = (await fw.inventory()).find((e) => e.vmId === B.vmId)!
    expect(inv.taps).toEqual([B.tap])
    if (stateful) expect(inv).toMatchObject({ chains: [], rules: 0, defaultAction: 'drop' })
    if (stateful) expect(inv.elements).toBeGreaterThan(4)
    else expect(inv.chains).toHaveLength(2)
  })

  it('counts per rule in either placement', async () => {
    await passes(() => w.tcp(A, B.ipv4, 80))
    await w.ping(C, B.ipv4)
    const s = await fw.stats(B.vmId)
    expect(s.rules.web!.packets).toBeGreaterThan(0)
    expect(s.rules.blk!.packets).toBeGreaterThan(0)
    expect(s.dropped.packets).toBeGreaterThanOrEqual(s.rules.blk!.packets)
  })

  it('moves a VM to chains and back in one transaction when its policy changes', async () => {
    const r = await fw.applyVm(vmSpec(B, 'drop', [...bRules(), wide]))
    expect(r.placement).toBe('chains')
    expect(await chainsOf(B)).toHaveLength(2)
    expect(exactText()).not.toContain(`d:${B.vmId}`)
    expect(await passes(() => w.tcp(A, B.ipv4, 22))).toBe(true) // the wide range
    expect(await w.tcp(C, B.ipv4, 22)).toBe(false) // C still blocked first
    expect((await fw.verify()).ok).toBe(true)
    const back = await fw.applyVm(vmSpec(B, 'drop', bRules()))
    expect(back.placement).toBe(placement())
    if (stateful) expect(await chainsOf(B)).toEqual([])
    await bAllowsWebOnly()
    expect(await fw.verify()).toMatchObject({ ok: true, orphans: [], table: [] })
  })

  it('reports someone else deleting an element as drift, and a re-apply puts it back', async () => {
    if (!stateful) return void expect(tables()).not.toContain(EXACT)
    w.hostNft(['delete', 'element', 'bridge', EXACT, 'in_lp', `{ "${B.tap}" . tcp . 80 }`])
    expect(await w.tcp(A, B.ipv4, 80)).toBe(false)
    const v = await fw.verify()
    expect(v.ok).toBe(false)
    expect(v.vms.find((d) => d.vmId === B.vmId)!.missing).toEqual([`element:in_lp tcp . 80`])
    await fw.applyVm(vmSpec(B, 'drop', bRules()))
    expect(await passes(() => w.tcp(A, B.ipv4, 80))).toBe(true)
    expect((await fw.verify()).ok).toBe(true)
  })

  it('applyVmIfChanged and verifyVm compare a VM of the exact table with its elements, and write only on drift', async () => {
    const spec = vmSpec(B, 'drop', bRules())
    expect(await fw.verifyVm(spec)).toMatchObject({ status: 'ok', missing: [], extra: [], changed: [] })
    const gen = await w.nft.generation()
    const same = await fw.applyVmIfChanged(spec)
    expect(same).toMatchObject({ changed: false, result: { placement: placement() } })
    expect(await w.nft.generation()).toBe(gen)
    // Someone else deletes one of its elements (or, stateless, one of its chains' rules): drift, rewritten in place.
    if (stateful) w.hostNft(['delete', 'element', 'bridge', EXACT, 'in_lp', `{ "${B.tap}" . tcp . 80 }`])
    else w.hostNft(['flush', 'chain', 'bridge', TABLE, vmChainNames(B.vmId).in])
    expect((await fw.verifyVm(spec)).status).not.toBe('ok')
    const fixed = await fw.applyVmIfChanged(spec)
    expect(fixed).toMatchObject({ changed: true, result: { placement: placement() } })
    if (stateful) expect(await chainsOf(B)).toEqual([])
    await bAllowsWebOnly()
    expect(await fw.verifyVm(spec)).toMatchObject({ status: 'ok' })
    // A different policy that still fits: changed, and it stays where it is.
    const more = vmSpec(B, 'drop', [...bRules(), { id: 'ssh', name: 'ssh', direction: 'IN', protocol: 'tcp', dstPortStart: 22 }])
    expect(await fw.applyVmIfChanged(more)).toMatchObject({ changed: true, result: { placement: placement() } })
    expect(await passes(() => w.tcp(A, B.ipv4, 22))).toBe(true)
    expect(await fw.applyVmIfChanged(spec)).toMatchObject({ changed: true })
    expect(await w.tcp(A, B.ipv4, 22)).toBe(false)
    expect((await fw.verify()).ok).toBe(true)
  })

  it('repair puts back what someone else changed in the exact table: an element, a lookup rule', async () => {
    if (!stateful) return void expect(tables()).not.toContain(EXACT)
    w.hostNft(['delete', 'element', 'bridge', EXACT, 'in_lp', `{ "${B.tap}" . tcp . 80 }`])
    const handle = /"x:in_s4" # handle (\d+)/.exec(w.hostNft(['-a', 'list', 'chain', 'bridge', EXACT, 'postrouting']))![1]!
    w.hostNft(['delete', 'rule', 'bridge', EXACT, 'postrouting', 'handle', handle])
    expect(await w.tcp(A, B.ipv4, 80)).toBe(false) // web's element is gone
    expect(await passes(() => w.ping(C, B.ipv4))).toBe(true) // the block of C is gone with its lookup
    const v = await fw.verify()
    expect(v.table.some((p) => p.startsWith('exact table:'))).toBe(true)
    expect(await fw.repair()).toMatchObject({ ok: false, table: true, vms: [B.vmId] })
    await bAllowsWebOnly()
    expect(await fw.verify()).toMatchObject({ ok: true, orphans: [], table: [] })
    expect(await fw.repair()).toMatchObject({ ok: true })
  })

  it('watch sees the exact table: our own moves are silent, an outside element delete names the VM and is repaired', async () => {
    const watch = fw.watch({ repair: true, debounceMs: 20 })
    const events: WatchEvent[] = []
    watch.on('event', (e) => events.push(e))
    const first = <T extends WatchEvent>(type: T['type'], ms: number): Promise<T | undefined> =>
      new Promise((resolve) => {
        const t = setTimeout(() => resolve(undefined), ms)
        watch.once(type, (e: T) => (clearTimeout(t), resolve(e)))
      })
    try {
      // B to chains and back: both tables written by this process, no drift.
      await fw.applyVm(vmSpec(B, 'drop', [...bRules(), wide]))
      await fw.applyVm(vmSpec(B, 'drop', bRules()))
      await new Promise((r) => setTimeout(r, 300))
      expect(events).toEqual([])
      if (!stateful) return void expect(tables()).not.toContain(EXACT)
      const drift = first<DriftEvent>('drift', 10_000)
      const repaired = first<WatchEvent>('repaired', 20_000)
      w.hostNft(['delete', 'element', 'bridge', EXACT, 'in_lp', `{ "${B.tap}" . tcp . 80 }`])
      const d = await drift
      expect(d).toBeDefined()
      expect(d!.vms).toEqual([B.vmId])
      expect(d!.tableDeleted).toBe(false)
      expect(d!.changes).toContainEqual(expect.objectContaining({ change: 'delsetelem', table: EXACT, name: 'in_lp', vmId: B.vmId }))
      expect(await repaired).toMatchObject({ type: 'repaired', result: { vms: [B.vmId] } })
      await bAllowsWebOnly()
      expect(await fw.verify()).toMatchObject({ ok: true, orphans: [], table: [] })
    } finally {
      await watch.stop()
    }
  })

  it('detaches and attaches, takes a tap over, and removes, leaving nothing behind', async () => {
    await fw.detachVm(B.vmId)
    // Detached: B's tap is judged by nobody (as a stopped VM's would be).
    expect(await passes(() => w.tcp(C, B.ipv4, 22))).toBe(true)
    if (stateful) expect(exactText()).not.toContain(B.tap)
    await fw.attachVm(B.vmId, B.tap)
    await bAllowsWebOnly()
    expect((await fw.verify()).ok).toBe(true)
    // A VM with chains takes C's tap from an exact VM (and back): each time one table judges it.
    await fw.applyVm(vmSpec(C, 'drop', [wide], { vmId: 'vm-c2' }))
    expect(await passes(() => w.tcp(A, C.ipv4, 22))).toBe(true)
    expect(await w.tcp(A, C.ipv4, 9999)).toBe(false)
    if (stateful) expect(exactText()).not.toContain(C.tap)
    await fw.removeVm('vm-c2')
    await fw.applyVm(vmSpec(C, 'accept'))
    await fw.removeVm(B.vmId)
    expect(await fw.hasVm(B.vmId)).toBe(false)
    expect(exactText()).not.toContain(B.tap)
    expect(await chainsOf(B)).toEqual([])
    expect(await passes(() => w.tcp(C, B.ipv4, 22))).toBe(true)
    await fw.removeVm(B.vmId) // idempotent
    expect(await fw.verify()).toMatchObject({ ok: true, orphans: [], table: [] })
  })

  it('coalesces concurrent applies of many VMs, new shapes included, into a few transactions', async () => {
    // Taps that do not exist: elements and dispatch are keyed by name. Each VM brings its own shape mix.
    const shapes: FirewallRuleInput[][] = [
      [web],
      [{ id: 'dns', name: 'dns', direction: 'OUT', protocol: 'udp', dstIpAddr: '10.78.9.53', dstPortStart: 53 }],
      [{ id: 'h', name: 'h', direction: 'IN', srcIpAddr: 'fd00:78::99' }],
      [{ id: 'p', name: 'p', direction: 'OUT', protocol: 'icmp' }],
    ]
    const specs = Array.from({ length: 24 }, (_, i) => ({ vmId: `cc-${i}`, tap: `cct${i}`, defaultAction: 'drop' as const, rules: shapes[i % shapes.length]! }))
    const before = await w.nft.generation()
    const results = await Promise.all(specs.map((s) => fw.applyVm(s)))
    const commits = (await w.nft.generation()) - before
    expect(results.map((r) => r.placement)).toEqual(specs.map(() => placement()))
    expect(commits).toBeGreaterThan(0)
    expect(commits).toBeLessThan(specs.length / 2)
    expect(await fw.verify()).toMatchObject({ ok: true, orphans: [], table: [] })
    if (stateful) for (const s of specs) expect(exactText()).toContain(`d:${s.vmId}`)
    await Promise.all(specs.map((s) => fw.removeVm(s.vmId)))
    if (stateful) expect(exactText()).not.toContain('cct')
    expect(await fw.verify()).toMatchObject({ ok: true, orphans: [], table: [] })
  })

  it('syncs both tables as one firewall', async () => {
    const set = [vmSpec(A, 'accept'), vmSpec(B, 'drop', bRules()), vmSpec(C, 'drop', [wide])]
    const r = await fw.sync(set)
    expect(r.results[B.vmId]!.placement).toBe(placement())
    expect(r.results[C.vmId]!.placement).toBe('chains')
    expect(r.removed).toEqual([D.vmId])
    await bAllowsWebOnly()
    expect(await passes(() => w.tcp(A, C.ipv4, 22))).toBe(true)
    expect(await w.tcp(A, C.ipv4, 9999)).toBe(false)
    expect(await fw.verify(set)).toMatchObject({ ok: true, orphans: [], table: [] })
    // Nothing differs: nothing changes.
    const again = await fw.sync(set)
    expect(again).toMatchObject({ added: [], changed: [], removed: [] })
    // prune 'all' to A alone: B and C leave their tables.
    await fw.sync([vmSpec(A, 'accept')])
    expect(exactText()).not.toContain(B.tap)
    expect(await chainsOf(C)).toEqual([])
    expect(await passes(() => w.tcp(A, B.ipv4, 22))).toBe(true)
    expect(await fw.verify()).toMatchObject({ ok: true, orphans: [], table: [] })
  })

  it('migrates a firewall written without the option in place: one sync, one transaction, filtered throughout', async () => {
    const TABLE2 = 'fw_exact_migrate'
    const set = [vmSpec(A, 'accept'), vmSpec(B, 'drop', bRules()), vmSpec(C, 'drop', [wide])]
    const old = new VmFirewall(w.nft, { table: TABLE2 })
    const fresh = new VmFirewall(w.nft, { table: TABLE2, exactTable: true })
    // The first firewall's VMs leave its table first (one table per tap judges a frame once).
    await fw.sync([])
    try {
      await old.sync(set)
      expect((await old.chainNames()).filter((n) => n.startsWith('vm_'))).toHaveLength(6)
      await bAllowsWebOnly()
      // verify first: the new instance learns how the kernel lists these rules (scratch commits of its own),
      // and sees the VMs that fit still in chains.
      expect((await fresh.verify(set)).ok).toBe(!stateful)
      const g0 = await w.nft.generation()
      const r = await fresh.sync(set)
      // One commit where VMs fit: their chains leave as their elements arrive; where none fits, verify found
      // nothing to move and the sync writes nothing.
      expect((await w.nft.generation()) - g0).toBe(stateful ? 1 : 0)
      expect(r.results[B.vmId]!.placement).toBe(placement())
      expect(r.results[C.vmId]!.placement).toBe('chains')
      const left = (await fresh.chainNames()).filter((n) => n.startsWith('vm_'))
      expect(left).toHaveLength(stateful ? 2 : 6) // C's two chains stay where its policy needs them
      expect(tables().split('\n').includes(`table bridge ${exactTableName(TABLE2)}`)).toBe(stateful)
      await bAllowsWebOnly()
      expect(await passes(() => w.tcp(A, C.ipv4, 22))).toBe(true)
      expect(await w.tcp(A, C.ipv4, 9999)).toBe(false)
      expect(await fresh.verify(set)).toMatchObject({ ok: true, orphans: [], table: [] })
    } finally {
      const listed = tables().split('\n')
      for (const t of [TABLE2, exactTableName(TABLE2)]) if (listed.includes(`table bridge ${t}`)) w.hostNft(['delete', 'table', 'bridge', t])
      await fw.sync(set)
    }
  })

  it('exports both tables and restores them in one transaction', async () => {
    const set = [vmSpec(A, 'accept'), vmSpec(B, 'drop', bRules()), vmSpec(C, 'drop', [wide])]
    await fw.sync(set)
    const file = await fw.exportRuleset()
    expect(file).toContain(`delete table bridge ${EXACT}`)
    if (stateful) expect(file).toContain('comment "r:web"')
    await fw.removeVm(B.vmId)
    await fw.removeVm(C.vmId)
    expect(await passes(() => w.tcp(A, B.ipv4, 22))).toBe(true)
    await fw.restoreRuleset(file)
    await bAllowsWebOnly()
    expect(await w.tcp(A, C.ipv4, 9999)).toBe(false)
    expect(await fw.verify(set)).toMatchObject({ ok: true, orphans: [], table: [] })
  })
})
