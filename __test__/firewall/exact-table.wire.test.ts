// The exact table on the wire (issue 15): VMs whose policies are exact-key elements (exact-rules.ts) in a table
// of their own (exact-table.ts), written with Nft in a throwaway namespace, judged by real packets between VMs.
// The table follows the probed capabilities: with bridge conntrack (a distro kernel) its established rule lets
// replies back; without (the CI host) it has none, and exact-rules.ts refuses such VMs (asserted below), so the
// tests here compile the policies as a stateful kernel would and give replies their own rules.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { vmIdentity } from '../../ts/firewall/compile.js'
import { exactPolicy, type ExactPolicy } from '../../ts/firewall/exact-rules.js'
import { elementComment, exactCounters, exactElementCommands, exactMapName, exactTableCommands, exactTableName, exactTableOfText, exactTableProblems, shapesOf } from '../../ts/firewall/exact-table.js'
import { identityElements, setElementCommands } from '../../ts/firewall/layout.js'
import { VmFirewall, type FirewallCapabilities, type FirewallRuleInput } from '../../ts/firewall/index.js'
import type { NftCommand } from '../../ts/schema.js'
import { normalizeVm, type NormalizedVm } from '../../ts/firewall/validate.js'
import { buildWorld, passes, vmSpec, type Vm, type World } from '../support/world.js'

const TABLE = exactTableName('exact_wire')
let w: World
let caps: FirewallCapabilities
let A: Vm, B: Vm, C: Vm, D: Vm
beforeAll(async () => {
  w = await buildWorld({ vms: 4, subnet: 76 })
  ;[A, B, C, D] = w.vms as [Vm, Vm, Vm, Vm]
  caps = await new VmFirewall(w.nft).capabilities()
})
afterAll(async () => {
  await w?.destroy()
})

/** The policy as a stateful kernel compiles it (exact-rules.ts refuses stateless kernels). */
function compiled(vm: Vm, defaultAction: 'accept' | 'drop', rules: FirewallRuleInput[]): { vm: NormalizedVm; policy: ExactPolicy } {
  const n = normalizeVm(vmSpec(vm, defaultAction, rules))
  const policy = exactPolicy(n, { capabilities: { bridgeConntrack: true, bridgeReject: false }, conntrack: 'auto' })
  if ('reason' in policy) throw new Error(`${vm.label}: ${policy.reason}: ${policy.message}`)
  return { vm: n, policy }
}

const vmCommands = (verb: 'add' | 'delete', c: { vm: NormalizedVm; policy: ExactPolicy }): NftCommand[] => [
  ...setElementCommands(TABLE, verb, identityElements(vmIdentity(c.vm), c.vm.tap)),
  ...exactElementCommands(TABLE, verb, c.vm.tap, c.vm.vmId, c.policy),
]

const listed = () => exactTableOfText(w.hostNft(['list', 'table', 'bridge', TABLE]))
const elementTexts = (p: ExactPolicy) => p.elements.map((e) => `${exactMapName(e.side, e.shape)} ${e.key.join(' . ')} : ${e.verdict} ${elementComment(e)}`).sort()

// B: web and ping to it, never anything from C; replies out by their own rules (stateless kernels need them).
const web: FirewallRuleInput = { id: 'web', name: 'web', direction: 'IN', protocol: 'tcp', dstPortStart: 80 }
const bRules = (): FirewallRuleInput[] => [
  { id: 'blk', name: 'block C', direction: 'IN', action: 'DROP', srcIpAddr: C.ipv4, priority: 1 },
  web,
  { id: 'ping', name: 'ping', protocol: 'icmp' },
  { id: 'replyA', name: 'replies to A', direction: 'OUT', protocol: 'tcp', dstIpAddr: A.ipv4 },
]

describe('the exact table', () => {
  it('is refused on a kernel without bridge conntrack, taken with it', () => {
    const p = exactPolicy(normalizeVm(vmSpec(B, 'drop', [web])), { capabilities: caps, conntrack: 'auto' })
    expect('reason' in p ? p.reason : 'exact').toBe(caps.bridgeConntrack ? 'exact' : 'stateless')
  })

  it('judges its own taps by their elements, and nobody else', async () => {
    const a = compiled(A, 'accept', [])
    const b = compiled(B, 'drop', bRules())
    const c = compiled(C, 'accept', [])
    await w.nft.runJson({
      nftables: [...exactTableCommands(TABLE, { shapes: shapesOf([a.policy, b.policy, c.policy]), stateful: caps.bridgeConntrack, fresh: true }), ...vmCommands('add', a), ...vmCommands('add', b), ...vmCommands('add', c)],
    })
    expect(await passes(() => w.tcp(A, B.ipv4, 80))).toBe(true)
    expect(await w.tcp(A, B.ipv4, 22)).toBe(false)
    expect(await passes(() => w.ping(A, B.ipv4))).toBe(true)
    expect(await passes(() => w.ping(A, B.ipv6))).toBe(true)
    // C is blocked ahead of the ping and web rules: the host shape is looked up first.
    expect(await w.ping(C, B.ipv4)).toBe(false)
    expect(await w.tcp(C, B.ipv4, 80)).toBe(false)
    // D is not in the table: its frames pass whatever B's policy is.
    expect(await passes(() => w.ping(D, A.ipv4))).toBe(true)
    expect(await passes(() => w.tcp(D, C.ipv4, 22))).toBe(true)
    // The listing reads back exactly what was written, and each element counted its own packets.
    const view = listed()
    const back = (view.elements.get(B.tap) ?? []).filter((e) => !e.map.endsWith('_default'))
    expect(back.map((e) => `${e.map} ${e.key.join(' . ')} : ${e.verdict} ${e.comment}`).sort()).toEqual(elementTexts(b.policy))
    const count = (comment: string) => back.filter((e) => e.comment === comment).reduce((n, e) => n + e.packets, 0)
    expect(count('r:web')).toBeGreaterThan(0)
    expect(count('r:blk')).toBeGreaterThan(0)
    expect(count('r:ping')).toBeGreaterThan(0)
    // As stats reports them: B's web and ping rules counted what they let in, its block what it dropped.
    const stats = exactCounters(view.elements.get(B.tap)!)
    expect(stats.rules.web!.in.packets).toBeGreaterThan(0)
    expect(stats.rules.blk!.in.packets).toBe(stats.rules.blk!.packets)
    expect(stats.dropped.packets).toBe(stats.rules.blk!.packets + stats.default.packets)
    expect(stats.rules.blk!.packets).toBe(count('r:blk'))
    expect(view.elements.get(D.tap)).toBeUndefined()
    expect((view.elements.get(B.tap) ?? []).filter((e) => e.map.endsWith('_default')).map((e) => `${e.verdict} ${e.comment}`)).toEqual([`drop d:${B.vmId}`, `drop d:${B.vmId}`])
  })

  it('reads back as written, and a changed base chain is reported and rewritten in place', async () => {
    const shapes = shapesOf([compiled(A, 'accept', []).policy, compiled(B, 'drop', bRules()).policy])
    const problems = async (s = shapes) => {
      const doc = await w.nft.listTable('bridge', TABLE)
      const chains = new Map<string, Record<string, unknown>>()
      const rules = new Map<string, { expr: unknown[]; comment?: string; handle: number }[]>()
      for (const o of doc.nftables as Record<string, Record<string, unknown>>[]) {
        if (o.chain) chains.set(o.chain.name as string, o.chain)
        if (o.rule) {
          const r = o.rule as { chain: string; expr: unknown[]; comment?: string; handle: number }
          ;(rules.get(r.chain) ?? rules.set(r.chain, []).get(r.chain)!).push(r)
        }
      }
      return { list: exactTableProblems({ chains, rules, maps: listed().maps }, { shapes: s, stateful: caps.bridgeConntrack }), rules }
    }
    expect((await problems()).list).toEqual([])
    // Expecting a shape the table does not look up: its lookup and its map are missing.
    expect((await problems({ out: new Set([...shapes.out, 'lp']), in: shapes.in })).list).toEqual(['dispatch rule in prerouting missing or changed', 'map out_lp missing'])
    // Someone deletes a lookup rule: reported; the table's own commands put it back, elements and counters intact.
    const lookup = (await problems()).rules.get('postrouting')!.find((r) => r.comment === 'x:in_s4')!
    w.hostNft(['delete', 'rule', 'bridge', TABLE, 'postrouting', 'handle', String(lookup.handle)])
    expect((await problems()).list).toEqual(['dispatch rule in postrouting missing or changed'])
    expect(await passes(() => w.ping(C, B.ipv4))).toBe(true) // the block is gone with its lookup (ping to B is allowed)
    const before = listed().elements.get(B.tap)
    await w.nft.runJson({ nftables: exactTableCommands(TABLE, { shapes, stateful: caps.bridgeConntrack }) })
    expect((await problems()).list).toEqual([])
    expect(listed().elements.get(B.tap)).toEqual(before)
    expect(await w.ping(C, B.ipv4)).toBe(false)
  })

  it('replaces a VM by swapping its elements in one transaction, without touching the table', async () => {
    const before = compiled(B, 'drop', bRules())
    const after = compiled(B, 'drop', bRules().map((r) => (r.id === 'web' ? { ...r, dstPortStart: 22 } : r)))
    const chains = w.hostNft(['list', 'chain', 'bridge', TABLE, 'postrouting'])
    await w.nft.runJson({ nftables: [...exactElementCommands(TABLE, 'delete', B.tap, B.vmId, before.policy), ...exactElementCommands(TABLE, 'add', B.tap, B.vmId, after.policy)] })
    expect(await passes(() => w.tcp(A, B.ipv4, 22))).toBe(true)
    expect(await w.tcp(A, B.ipv4, 80)).toBe(false)
    expect(w.hostNft(['list', 'chain', 'bridge', TABLE, 'postrouting']).replace(/packets \d+ bytes \d+/g, '')).toBe(chains.replace(/packets \d+ bytes \d+/g, ''))
  })

  it('lets replies back by conntrack where the kernel has it, and only by rules where it does not', async () => {
    const prev = compiled(B, 'drop', bRules().map((r) => (r.id === 'web' ? { ...r, dstPortStart: 22 } : r)))
    const bare = compiled(B, 'drop', [web])
    await w.nft.runJson({ nftables: [...vmCommands('delete', prev), ...vmCommands('add', bare)] })
    // B may not send TCP now: only an established flow's replies leave it.
    expect(await passes(() => w.tcp(A, B.ipv4, 80))).toBe(caps.bridgeConntrack)
    expect(await w.tcp(B, A.ipv4, 80)).toBe(false)
  })
})
