// The firewall writes nft text (render.ts `batchText`) where it used to write JSON: for every rule form the
// compiler emits, the kernel must end up with exactly what the JSON batch makes, and failures must carry the
// same codes. Each batch is loaded both ways into a throwaway namespace and the listings compared.
import { describe, expect, it } from 'vitest'
import { compileVm, type CompiledVm } from '../../ts/firewall/compile.js'
import { probeCapabilities } from '../../ts/firewall/capabilities.js'
import { parseTable, tableCommands, vmApplyCommands, elementDelete, MAP_FROM_VM } from '../../ts/firewall/layout.js'
import { resolveLogDrops } from '../../ts/firewall/log-drops.js'
import { planSync } from '../../ts/firewall/reconcile.js'
import { batchText } from '../../ts/firewall/render.js'
import { normalizeVm, type FirewallCapabilities, type VmSpec } from '../../ts/firewall/index.js'
import type { Nft, NftablesJson, NftCommand } from '../../ts/index.js'
import { useNetnsNft } from '../support/netns-nft.js'

const T = 'fw_text'
let nft: Nft
useNetnsNft((_ns, n) => (nft = n))

const rules: VmSpec['rules'] = [
  { id: 'ssh', name: 'ssh', protocol: 'tcp', action: 'ACCEPT', direction: 'IN', dstPortStart: 22, srcIpAddr: '10.0.0.0', srcIpMask: 8 },
  { id: 'web', name: 'web', protocol: 'tcp', action: 'ACCEPT', direction: 'INOUT', dstPortStart: 8000, dstPortEnd: 8080, srcPortStart: 1024, srcPortEnd: 65535 },
  { id: 'dns', name: 'dns', protocol: 'udp', action: 'ACCEPT', direction: 'OUT', dstPortStart: 53, dstIpAddr: '192.0.2.53' },
  { id: 'v6', name: 'v6', protocol: 'tcp', action: 'DROP', direction: 'IN', srcIpAddr: '2001:db8::', srcIpMask: 32 },
  { id: 'v6host', name: 'v6host', protocol: 'udp', action: 'DROP', direction: 'OUT', dstIpAddr: '2001:db8::1' },
  { id: 'ping', name: 'ping', protocol: 'icmp', action: 'ACCEPT', direction: 'INOUT' },
  { id: 'ping4', name: 'ping4', protocol: 'icmp', action: 'ACCEPT', direction: 'OUT', dstIpAddr: '198.51.100.0', dstIpMask: 24 },
  { id: 'any', name: 'any', protocol: 'all', action: 'ACCEPT', direction: 'IN', srcIpAddr: '0.0.0.0', srcIpMask: 0 },
  { id: 'telnet', name: 'telnet', protocol: 'tcp', action: 'REJECT', direction: 'OUT', dstPortStart: 23, log: true },
  { id: 'snmp', name: 'snmp', protocol: 'udp', action: 'REJECT', direction: 'INOUT', dstPortStart: 161 },
  { id: 'est', name: 'est', protocol: 'tcp', action: 'ACCEPT', direction: 'IN', dstPortStart: 443, connectionState: { established: true, related: true, new: true } },
]
const specs: VmSpec[] = [
  // Anti-spoofing with MAC, IPv4 and IPv6 (the `!=` chains, ARP fields, the VLAN set), DHCP built-ins.
  { vmId: 'vm-a', tap: 'vnet-a', mac: '52:54:00:00:00:0a', ipv4: ['10.0.0.2', '10.0.0.3'], ipv6: ['2001:db8::2'], antiSpoofing: true, dhcp: true, defaultAction: 'drop', rules },
  { vmId: 'vm-b', tap: 'vnet-b', defaultAction: 'accept', rules: rules.slice(0, 3) },
]
const logDrops = resolveLogDrops({ group: 3, rate: 10, burst: 5 })

/** The table's listing without handles (they depend on allocation order, not on what was written). */
async function listing(): Promise<unknown> {
  const doc = await nft.listTable('bridge', T)
  return JSON.parse(JSON.stringify(doc.nftables.filter((o) => !('metainfo' in o))), (k, v: unknown) => (k === 'handle' ? undefined : v))
}

/** Runs `setup` then `commands` as JSON, lists, deletes the table, does the same with the text, lists. */
async function both(commands: NftCommand[], setup: NftCommand[] = []): Promise<{ json: unknown; text: unknown; script: string }> {
  const script = batchText(commands)
  expect(script, 'the writer knows every command').toBeDefined()
  const load = async (send: () => Promise<unknown>) => {
    if (setup.length) await nft.runJson({ nftables: setup })
    await send()
    const l = await listing()
    await nft.run(`delete table bridge ${T}`)
    return l
  }
  const json = await load(() => nft.runJson({ nftables: commands }))
  const text = await load(() => nft.run(script!))
  return { json, text, script: script! }
}

let caps: FirewallCapabilities
const compileAll = async (): Promise<CompiledVm[]> => {
  caps ??= await probeCapabilities(nft)
  // Every form the compiler has, whatever the kernel: stateful (ct state) and reject forms only where the
  // kernel takes them (a batch it refuses proves nothing about the text).
  const variants: FirewallCapabilities[] = [{ bridgeConntrack: false, bridgeReject: false }, caps]
  return variants.flatMap((c, i) =>
    specs.map((s) => compileVm(normalizeVm({ ...s, vmId: `${s.vmId}-${i}`, tap: `${s.tap}-${i}` }), { capabilities: c, conntrack: 'auto', logDrops })),
  )
}

const kinds = (cmds: NftCommand[]) => new Set(cmds.flatMap((c) => Object.values(c).flatMap((b) => Object.keys(b as object))))
const statements = (c: CompiledVm[]) => new Set(c.flatMap((v) => [...v.out, ...v.in]).flatMap((r) => r.expr.flatMap((s) => Object.keys(s))))

describe('batch text and JSON make the same table', () => {
  it('a sync from empty (one table block, fresh chains, element lists)', async () => {
    const compiled = await compileAll()
    // The forms exercised, so that a compiler change that drops one is noticed here.
    expect([...statements(compiled)].sort()).toEqual(expect.arrayContaining(['accept', 'counter', 'drop', 'limit', 'log', 'match']))
    const { commands } = planSync(parseTable(undefined), compiled, { table: T, prune: 'all', renderings: { lookup: () => undefined } })
    const { json, text, script } = await both(commands)
    expect(script.match(/^table /gm)).toHaveLength(1)
    expect(text).toEqual(json)
    // Every VM rule, and the base and guard chains' rules (issue 15: the guard's built-ins and the dispatch rules).
    const layoutRules = tableCommands(T).filter((c) => 'add' in c && 'rule' in (c.add as object)).length
    expect((json as unknown[]).filter((o) => 'rule' in (o as object)).length).toBe(compiled.reduce((n, c) => n + c.out.length + c.in.length, layoutRules))
  })

  it('applies on an existing table: flushes, stale element deletes, create chain, a rule delete by handle', async () => {
    const compiled = await compileAll()
    const [a, b] = compiled
    const setup = [
      ...tableCommands(T),
      ...vmApplyCommands(T, a!, []),
      { add: { chain: { family: 'bridge', table: T, name: 'old' } } } as NftCommand,
      { add: { rule: { family: 'bridge', table: T, chain: 'old', expr: [{ drop: null }] } } } as NftCommand,
    ]
    // The handle the setup gives that rule (the same on every load: allocated in order, per table).
    await nft.runJson({ nftables: setup })
    const handle = ((await nft.listChain('bridge', T, 'old')).nftables.find((o) => 'rule' in o) as { rule: { handle: number } }).rule.handle
    await nft.run(`delete table bridge ${T}`)
    const commands: NftCommand[] = [
      { delete: { rule: { family: 'bridge', table: T, chain: 'old', handle } } } as NftCommand,
      ...vmApplyCommands(T, { ...a!, tap: 'vnet-moved' }, [{ map: MAP_FROM_VM, key: a!.tap }, { map: 'to_vm', key: a!.tap }]),
      ...vmApplyCommands(T, b!, [], false).map((c) =>
        'add' in c && 'chain' in (c.add as object) ? ({ create: { chain: (c.add as { chain: unknown }).chain } } as NftCommand) : c,
      ),
      { add: { rule: { family: 'bridge', table: T, chain: 'old', expr: [{ counter: null }, { jump: { target: b!.chains.out } }] } } } as NftCommand,
    ]
    expect([...kinds(commands)].sort()).toEqual(['chain', 'element', 'rule'])
    const { json, text, script } = await both(commands, setup)
    expect(script).toMatch(/^create chain /m)
    expect(script).toMatch(new RegExp(`^delete rule bridge ${T} old handle ${handle}$`, 'm'))
    expect(script).toMatch(/^delete element .* \{ "vnet-a-0" \}$/m)
    expect(text).toEqual(json)
  })

  it('a failed batch carries the same error code as text and as JSON', async () => {
    const [a] = await compileAll()
    await nft.runJson({ nftables: [...tableCommands(T), ...vmApplyCommands(T, a!, [])] })
    const cases: NftCommand[][] = [
      // EEXIST: create of an existing chain.
      [{ create: { chain: { family: 'bridge', table: T, name: a!.chains.out } } } as NftCommand],
      // ENOENT: deleting a dispatch entry that is not there.
      [elementDelete(T, MAP_FROM_VM, 'vnet-none')],
      // ENOENT: a rule for a chain that does not exist (a chain block would create it).
      [{ add: { rule: { family: 'bridge', table: T, chain: 'nochain', expr: [{ accept: null }] } } } as NftCommand],
      // ENOENT: a chain in a table that does not exist (a table block would create it).
      [{ add: { chain: { family: 'bridge', table: `${T}_none`, name: 'x' } } } as NftCommand],
    ]
    try {
      for (const cmds of cases) {
        const viaJson = await nft.runJson({ nftables: cmds }).then(() => undefined, (e: { code?: string }) => e.code)
        const viaText = await nft.run(batchText(cmds)!).then(() => undefined, (e: { code?: string }) => e.code)
        expect(viaJson).toMatch(/^E[A-Z]+$/)
        expect(viaText).toBe(viaJson)
      }
    } finally {
      await nft.run(`delete table bridge ${T}`)
    }
  })
})

describe('batchText refuses what it cannot spell exactly', () => {
  const rule = (expr: unknown[], comment?: string): NftCommand =>
    ({ add: { rule: { family: 'bridge', table: T, chain: 'c', expr, ...(comment === undefined ? {} : { comment }) } } }) as NftCommand
  it('quotes that would break, unknown statements and operators: undefined (the caller sends JSON)', () => {
    expect(batchText([rule([{ accept: null }], 'ok')])).toContain('accept comment "ok"')
    expect(batchText([rule([{ accept: null }], 'a"b')])).toBeUndefined()
    expect(batchText([rule([{ accept: null }], 'a\nb')])).toBeUndefined()
    expect(batchText([rule([{ match: { op: '==', left: { meta: { key: 'iifname' } }, right: 'x" accept' } }, { drop: null }])])).toBeUndefined()
    expect(batchText([rule([{ match: { op: '==', left: { payload: { protocol: 'ip', field: 'saddr' } }, right: '1.2.3.4 accept' } }, { drop: null }])])).toBeUndefined()
    expect(batchText([rule([{ queue: { num: 1 } }])])).toBeUndefined()
    expect(batchText([rule([{ match: { op: '~', left: { meta: { key: 'mark' } }, right: 1 } }, { drop: null }])])).toBeUndefined()
    expect(batchText([{ replace: { rule: { family: 'bridge', table: T, chain: 'c', handle: 3, expr: [{ accept: null }] } } } as unknown as NftCommand])).toBeUndefined()
  })
  it('interface names are always quoted', () => {
    const t = batchText([rule([{ match: { op: '==', left: { meta: { key: 'iifname' } }, right: 'vnet-1' } }, { drop: null }])])
    expect(t).toContain('iifname "vnet-1" drop')
  })
})
