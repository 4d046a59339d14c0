// Issue 14: a sync into an absent table written as one lean batch (firewall/netlink-batch.ts: the table, its base
// chains, shared sets with their elements, the guard's identity and tap sets, the dispatch maps, the guard's rules
// with their anonymous verdict map, every VM's chains, rules and elements) leaves what libnftables leaves for the
// same commands. Proof by listing two tables of a throwaway namespace, one written each way: `nft -j list table`
// (handles, table names and the order of hash-set elements aside) and the kernel's own expression dump of every
// chain. Then the failure path (one transaction: nothing is left) and VmFirewall.sync's use of it.
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { Nft } from '../../ts/index.js'
import { VmFirewall, type FirewallCapabilities, type FirewallRuleInput, type VmSpec } from '../../ts/firewall/index.js'
import { compileVm, type CompiledVm } from '../../ts/firewall/compile.js'
import { FirewallKernel } from '../../ts/firewall/kernel.js'
import { MAP_FROM_VM, parseTable, tableCommands } from '../../ts/firewall/layout.js'
import { guardLogOf, resolveLogDrops, type LogDropsOptions } from '../../ts/firewall/log-drops.js'
import { encodeBatch } from '../../ts/firewall/netlink-batch.js'
import { planSync } from '../../ts/firewall/reconcile.js'
import { normalizeVm } from '../../ts/firewall/validate.js'
import { rejection } from '../support/errors.js'
import { kernelDumps, tableListing, type Listed } from '../support/kernel-dump.js'
import type { Netns } from '../support/netns.js'
import { useNetnsNft } from '../support/netns-nft.js'

let ns: Netns
let nft: Nft
let caps: FirewallCapabilities
useNetnsNft((n, f) => ([ns, nft] = [n, f]))

beforeAll(async () => {
  caps = await new FirewallKernel(nft, 'probe').capabilities()
})
afterEach(() => {
  vi.restoreAllMocks()
})

let n = 0
const rule = (r: Partial<FirewallRuleInput>): FirewallRuleInput => ({ id: `r${++n}`, name: `rule ${n}`, ...r })
const RULES: FirewallRuleInput[] = [
  rule({ direction: 'IN', protocol: 'tcp', dstPortStart: 22 }),
  rule({ direction: 'OUT', protocol: 'udp', srcPortStart: 1000, srcPortEnd: 2000, dstPortStart: 53 }),
  rule({ direction: 'INOUT', protocol: 'tcp', dstPortStart: 1024, dstPortEnd: 65535, dstIpAddr: '10.1.0.0', dstIpMask: 16 }),
  rule({ direction: 'IN', protocol: 'icmp', srcIpAddr: '192.168.7.0/24' }),
  rule({ direction: 'OUT', protocol: 'all', dstIpAddr: '2001:db8::/127' }),
  rule({ direction: 'IN', action: 'DROP', protocol: 'tcp', dstIpAddr: '2001:db8::5', dstPortStart: 8080, log: true }),
  rule({ direction: 'OUT', action: 'REJECT', protocol: 'udp', dstPortStart: 69 }),
]

/** Several VMs: full identities, IPv4 only without DHCP, none at all, anti-spoofing off; user rules; default drop
 *  and accept. */
const SPECS: VmSpec[] = [
  { vmId: 'vm-a', tap: 'tapa', mac: '52:54:00:00:00:0a', ipv4: ['10.0.0.10', '10.0.0.11'], ipv6: ['2001:db8::a'], rules: RULES, defaultAction: 'drop' },
  { vmId: 'vm-b', tap: 'tapb', ipv4: ['10.0.0.12'], dhcp: false, rules: RULES.slice(0, 3), defaultAction: 'accept' },
  { vmId: 'vm-c', tap: 'tapc', defaultAction: 'drop' },
  { vmId: 'vm-d', tap: 'tapd', mac: '52:54:00:00:00:0d', antiSpoofing: false, rules: RULES.slice(3) },
  { vmId: 'vm-e', tap: 'tape', mac: '52:54:00:00:00:0e', ipv4: ['10.0.0.14'], ipv6: ['2001:db8::e', '2001:db8:1::e'] },
]

function compiled(logDrops: boolean | LogDropsOptions | undefined): CompiledVm[] {
  return SPECS.map((s) => compileVm(normalizeVm(s), { capabilities: caps, conntrack: 'auto', logDrops: resolveLogDrops(logDrops) }))
}

/** What sync() writes into an absent table `table`. */
function syncCommands(table: string, logDrops?: boolean | LogDropsOptions) {
  const vms = compiled(logDrops)
  const log = guardLogOf(resolveLogDrops(logDrops))
  return planSync(parseTable(undefined, log), vms, { table, prune: 'all', renderings: { lookup: () => undefined }, log }).commands
}

type Obj = Listed

const listing = (table: string): unknown[] => tableListing(ns, table)

function chains(table: string): string[] {
  return listing(table).flatMap((o) => ('chain' in (o as Obj) ? [(o as Obj).chain!.name as string] : []))
}

/** The table written both ways: `lib` through libnftables (the engine's text batch), `lean` as one netlink batch. */
async function writeBoth(lib: string, lean: string, logDrops?: boolean | LogDropsOptions): Promise<void> {
  await new FirewallKernel(nft, lib).write(syncCommands(lib, logDrops))
  const messages = encodeBatch(lean, syncCommands(lean, logDrops))
  expect(messages, 'every command of the sync is encoded').toBeDefined()
  const g = await nft.generation()
  await nft.commitBatch(lean, messages!)
  expect(await nft.generation(), 'one transaction').toBe(g + 1)
}

function expectSame(lib: string, lean: string): void {
  const have = listing(lean)
  expect(have).toEqual(listing(lib))
  const names = chains(lib)
  // The layout's chains are all there: guard, base, and both chains of every VM.
  expect(names.length).toBeGreaterThanOrEqual(6 + 2 * SPECS.length)
  const [leanDump, libDump] = [kernelDumps(ns, lean), kernelDumps(ns, lib)]
  expect([...leanDump.keys()].sort()).toEqual([...libDump.keys()].sort())
  for (const chain of names) expect(leanDump.get(chain), chain).toBe(libDump.get(chain))
}

describe('a sync into an absent table, as one lean batch, leaves what libnftables leaves', () => {
  it('guard without logging, several VMs with identities and user rules', async () => {
    await writeBoth('lib1', 'lean1')
    expectSame('lib1', 'lean1')
    // Elements were written: the dispatch maps and identity sets hold every VM.
    const from = listing('lean1').find((o) => 'map' in (o as Obj) && (o as Obj).map!.name === MAP_FROM_VM) as Obj
    expect(from.map!.elem).toHaveLength(SPECS.length)
  })

  it('log drops on (built-ins included): the guard jumps to its log chains', async () => {
    await writeBoth('lib2', 'lean2', true)
    expectSame('lib2', 'lean2')
    expect(chains('lean2').some((c) => c.startsWith('glog_'))).toBe(true)
  })

  it('log drops with a group, a rate per minute and a burst', async () => {
    await writeBoth('lib3', 'lean3', { group: 4, rate: 2, per: 'minute', burst: 9 })
    expectSame('lib3', 'lean3')
  })

  it('element lists longer than one message holds are split (one transaction still)', async () => {
    // 3000 taps in one identity set and one tap set: each list is over 64 KiB, the attribute's limit.
    const taps = Array.from({ length: 3000 }, (_, i) => `t${i}`)
    const add = (table: string) => [
      ...tableCommands(table, true),
      { add: { element: { family: 'bridge', table, name: 'id_ipv4', elem: taps.map((t, i) => ({ concat: [t, `10.${i >> 8}.${i & 255}.1`] })) } } },
      { add: { element: { family: 'bridge', table, name: 'b_arp', elem: taps } } },
    ]
    await new FirewallKernel(nft, 'lib4').write(add('lib4') as never)
    const messages = encodeBatch('lean4', add('lean4'))!
    await nft.commitBatch('lean4', messages)
    expect(listing('lean4')).toEqual(listing('lib4'))
    const ids = listing('lean4').find((o) => 'set' in (o as Obj) && (o as Obj).set!.name === 'id_ipv4') as Obj
    expect(ids.set!.elem).toHaveLength(3000)
  })
})

describe('failures of the bulk batch', () => {
  it('a batch the kernel refuses at its last message leaves no table (one transaction)', async () => {
    const cmds = [...syncCommands('gone'), { add: { element: { family: 'bridge', table: 'gone', name: MAP_FROM_VM, elem: [['tapz', { jump: { target: 'nosuch' } }]] } } }]
    const messages = encodeBatch('gone', cmds)!
    const g = await nft.generation()
    const e = await rejection(nft.commitBatch('gone', messages))
    // The same code libnftables gives for the same commands.
    const viaLib = await rejection(new FirewallKernel(nft, 'gone').write(cmds as never))
    expect(e.code).toBe(viaLib.code)
    expect(e.code).toBe('ENOENT')
    // The refused message is the last one (the binding numbers the messages it was given).
    let count = 0
    for (let at = 0; at < messages.length; count++) at += (messages.readUInt32LE(at) + 3) & ~3
    expect(e.index).toBe(count - 1)
    expect(await nft.generation()).toBe(g)
    expect(() => ns.exec('nft', ['list', 'table', 'bridge', 'gone'])).toThrow()
  })

  it('a batch naming another table anywhere is refused before anything is sent', async () => {
    const messages = Buffer.concat([encodeBatch('mine', syncCommands('mine'))!, encodeBatch('theirs', tableCommands('theirs', true))!])
    const g = await nft.generation()
    expect((await rejection(nft.commitBatch('mine', messages))).code).toBe('BATCH_REFUSED')
    expect(await nft.generation()).toBe(g)
    expect(() => ns.exec('nft', ['list', 'table', 'bridge', 'mine'])).toThrow()
  })

  it('forms outside the encoder are not encoded: the caller falls back to libnftables', () => {
    const t = 'x'
    for (const cmd of [
      { add: { table: { family: 'bridge', name: 'other' } } },
      { add: { table: { family: 'bridge', name: t, flags: ['dormant'] } } },
      { add: { chain: { family: 'bridge', table: t, name: 'b', type: 'nat', hook: 'prerouting', prio: 0, policy: 'accept' } } },
      { add: { chain: { family: 'bridge', table: t, name: 'b', type: 'filter', hook: 'ingress', prio: 0, policy: 'accept' } } },
      { add: { set: { family: 'bridge', table: t, name: 's', type: 'ipv4_addr' } } },
      { add: { set: { family: 'bridge', table: t, name: 's', type: 'icmp_type', elem: ['no-such-type'] } } },
      { add: { set: { family: 'bridge', table: t, name: 's', type: 'ifname', stmt: [{ counter: { packets: 1, bytes: 1 } }] } } },
      { add: { set: { family: 'bridge', table: t, name: 's', type: ['ifname', 'inet_proto'] } } },
      { add: { map: { family: 'bridge', table: t, name: 'm', type: 'ipv4_addr', map: 'verdict' } } },
      { add: { rule: { family: 'bridge', table: t, chain: 'c', expr: [{ vmap: { key: { meta: { key: 'iifname' } }, data: '@other' } }] } } },
      { add: { rule: { family: 'bridge', table: t, chain: 'c', expr: [{ match: { op: '==', left: { meta: { key: 'iifname' } }, right: '@icmp_reply' } }, { accept: null }] } } },
      {
        add: {
          rule: {
            family: 'bridge',
            table: t,
            chain: 'c',
            expr: [{ match: { op: '!=', left: { concat: [{ meta: { key: 'iifname' } }, { payload: { protocol: 'ip', field: 'saddr' } }] }, right: '@id_mac' } }, { drop: null }],
          },
        },
      },
    ]) {
      expect(encodeBatch(t, [cmd]), JSON.stringify(cmd)).toBeUndefined()
    }
  })
})

describe('VmFirewall.sync into an absent table', () => {
  it('writes the whole table as one lean batch; the result is what libnftables writes, and stays in use', async () => {
    const lean = vi.spyOn(nft, 'commitBatch')
    const fw = new VmFirewall(nft, { table: 'fw_lean', logDrops: true })
    const res = await fw.sync(SPECS)
    expect(res.added.sort()).toEqual(SPECS.map((s) => s.vmId).sort())
    expect(lean).toHaveBeenCalledTimes(1)
    // The engine's view of the table it wrote is exact: a VM apply right after takes the lean path too.
    const changed = SPECS.map((s, i) => (i === 1 ? { ...s, defaultAction: 'drop' as const } : s))
    await fw.applyVm(changed[1]!)
    expect(lean).toHaveBeenCalledTimes(2)
    // leanWrites: false writes the same sync through libnftables.
    const off = new VmFirewall(nft, { table: 'fw_lib', logDrops: true, leanWrites: false })
    await off.sync(changed)
    expect(lean).toHaveBeenCalledTimes(2)
    expectSame('fw_lib', 'fw_lean')
    // Another instance finds no drift in the lean table.
    const verify = await new VmFirewall(nft, { table: 'fw_lean', logDrops: true }).verify(changed)
    expect(verify.vms.filter((v) => v.status !== 'ok')).toEqual([])
    expect(verify.ok).toBe(true)
    // A second sync over the existing table goes through libnftables (the lean bulk path is for an absent table).
    await fw.sync(changed.slice(0, 2))
    expect(lean).toHaveBeenCalledTimes(2)
    expect((await new VmFirewall(nft, { table: 'fw_lean', logDrops: true }).verify(changed.slice(0, 2))).ok).toBe(true)
  })
})
