// Pure tests: validation, merge, compiler, renderer, plan, scheduler. No kernel, no native addon.
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import type { Nft } from '../../ts/nft.js'
import type { NftStatement } from '../../ts/schema.js'
import { eui64LinkLocal, parseAddress, parseIPv6, formatIPv6, parseMask } from '../../ts/firewall/address.js'
import { compileVm, type CompiledRule } from '../../ts/firewall/compile.js'
import {
  FirewallCapabilityError,
  FirewallValidationError,
  VmFirewall,
  generateVMChainName,
  mergeRules,
  normalizeRule,
  normalizeVm,
  parseComment,
  vmChainNames,
  type FirewallRuleInput,
  type VmSpec,
} from '../../ts/firewall/index.js'
import { Scheduler } from '../../ts/firewall/scheduler.js'
import { canonicalExpr } from '../../ts/firewall/reconcile.js'
import { BASE_PRIORITY, baseChainProblems, baseGuardRules, identityElements, parseTable, setContentsOfText } from '../../ts/firewall/layout.js'
import { thrown } from '../support/errors.js'

const NO_CAPS = { bridgeConntrack: false, bridgeReject: false }
const ALL_CAPS = { bridgeConntrack: true, bridgeReject: true }
const vmSpec = (extra: Partial<VmSpec> = {}): VmSpec => ({
  vmId: 'vm-1',
  tap: 'vnet-a0',
  mac: '52:54:00:12:34:56',
  ipv4: ['10.0.0.5'],
  ipv6: ['fd00::5'],
  defaultAction: 'drop',
  ...extra,
})
const compile = (extra: Partial<VmSpec> = {}, caps = NO_CAPS, conntrack: 'auto' | 'require' | 'off' = 'auto') =>
  compileVm(normalizeVm(vmSpec(extra)), { capabilities: caps, conntrack })
const tags = (rules: CompiledRule[]): string[] => rules.map((r) => `${r.comment[0]}:${parseComment(r.comment)!.tag}`)
const json = (x: unknown): string => JSON.stringify(x)

const validationError = (fn: () => unknown): FirewallValidationError => thrown(fn, FirewallValidationError)

describe('addresses', () => {
  it('parses and canonicalizes IPv4/IPv6, CIDRs and masks', () => {
    expect(parseAddress('10.1.2.3/8')).toMatchObject({ family: 4, len: 8 })
    expect(parseAddress('010.1.2.3')).toBeUndefined()
    expect(parseAddress('256.1.1.1')).toBeUndefined()
    expect(formatIPv6(parseIPv6('2001:DB8:0:0:0:0:0:1')!)).toBe('2001:db8::1')
    expect(formatIPv6(parseIPv6('::ffff:10.0.0.1')!)).toBe('::ffff:a00:1')
    expect(formatIPv6(parseIPv6('1::2:3:4')!)).toBe('1::2:3:4')
    expect(parseIPv6('1::2::3')).toBeUndefined()
    expect(parseIPv6('fe80::1%eth0')).toBeUndefined()
    expect(parseMask('255.255.255.0', 4)).toBe(24)
    expect(parseMask('255.0.255.0', 4)).toBeUndefined()
    expect(parseMask('64', 6)).toBe(64)
    expect(parseMask('255.255.0.0', 6)).toBeUndefined()
    expect(eui64LinkLocal('52:54:00:12:34:56')).toBe('fe80::5054:ff:fe12:3456')
  })
})

describe('validation', () => {
  const base: FirewallRuleInput = { id: 'r1', name: 'r' }
  const cases: [Partial<FirewallRuleInput>, string][] = [
    [{ protocol: 'gre' }, 'protocol'],
    [{ action: 'ALLOW' as never }, 'action'],
    [{ direction: 'BOTH' as never }, 'direction'],
    [{ priority: 1.5 }, 'priority'],
    [{ priority: 10_000_000 }, 'priority'],
    [{ protocol: 'tcp', dstPortStart: 0 }, 'dstPortStart'],
    [{ protocol: 'tcp', dstPortStart: 65536 }, 'dstPortStart'],
    [{ protocol: 'udp', srcPortStart: 10, srcPortEnd: 5 }, 'srcPortEnd'],
    [{ protocol: 'udp', srcPortEnd: 5 }, 'srcPortStart'],
    [{ protocol: 'icmp', dstPortStart: 22 }, 'dstPortStart'],
    [{ protocol: 'all', srcPortStart: 22 }, 'srcPortStart'],
    [{ srcIpAddr: '10.0.0.300' }, 'srcIpAddr'],
    [{ srcIpAddr: '10.0.0.0', srcIpMask: '255.0.255.0' }, 'srcIpMask'],
    [{ srcIpAddr: '10.0.0.0', srcIpMask: 33 }, 'srcIpMask'],
    [{ dstIpAddr: 'fd00::/129' }, 'dstIpAddr'],
    [{ dstIpAddr: 'fd00::1', dstIpMask: '255.255.255.0' }, 'dstIpMask'],
    [{ dstIpAddr: '10.0.0.0/8', dstIpMask: '8' }, 'dstIpMask'],
    [{ dstIpMask: '8' }, 'dstIpMask'],
    [{ srcIpAddr: '10.0.0.1', dstIpAddr: 'fd00::1' }, 'dstIpAddr'],
    [{ dstIpAddr: '10.0.0.1; flush ruleset' }, 'dstIpAddr'],
    [{ name: '' }, 'name'],
    [{ name: 'a\nb' }, 'name'],
    [{ description: 'x\u0000' }, 'description'],
    [{ connectionState: { established: 'yes' as never } }, 'connectionState.established'],
    [{ connectionState: { bogus: true } as never }, 'connectionState'],
    [{ overridesDept: 'true' as never }, 'overridesDept'],
  ]
  it.each(cases)('%j -> field %s, naming the rule', (patch, field) => {
    const e = validationError(() => normalizeRule({ ...base, ...patch }, 'vm'))
    expect(e.code).toBe('VALIDATION')
    expect(e.field).toBe(field)
    expect(e.ruleId).toBe('r1')
  })

  it('never lets junk escape as anything but FirewallValidationError (prototype keys, BigInt, cycles)', () => {
    for (const cs of [{ constructor: true }, { toString: true }, JSON.parse('{"__proto__": true}') as object]) {
      expect(validationError(() => normalizeRule({ id: 'r', name: 'n', connectionState: cs as never }, 'vm')).field).toBe('connectionState')
    }
    const circular: Record<string, unknown> = {}
    circular.self = circular
    expect(validationError(() => normalizeVm(vmSpec({ mac: 10n as never }))).field).toBe('mac')
    expect(validationError(() => normalizeVm(vmSpec({ mac: circular as never }))).field).toBe('mac')
    expect(validationError(() => normalizeVm(vmSpec({ ipv4: [10n as never] }))).field).toBe('ipv4[0]')
    expect(validationError(() => normalizeVm(vmSpec({ ipv6: [circular as never] }))).field).toBe('ipv6[0]')
    expect(validationError(() => normalizeRule({ id: 'r', name: 'n', srcIpAddr: '1.2.3.4', srcIpMask: 5n as never }, 'vm')).field).toBe('srcIpMask')
  })

  it('rejects ids and vmIds that could break nft comments or listings', () => {
    for (const id of ['', 'a"b', 'a b', 'a\\b', 'x'.repeat(65), 'é']) {
      expect(validationError(() => normalizeRule({ id, name: 'n' }, 'vm')).field).toBe('id')
    }
    expect(validationError(() => normalizeVm(vmSpec({ vmId: 'vm"1' }))).field).toBe('vmId')
  })

  it('checks interface names, MAC and the VM address lists', () => {
    for (const tap of ['', 'a'.repeat(16), 'eth/0', 'eth 0', 'eth:0', '.', '..', 'a"b', 'tap\u0000', '@from_vm', '@', 'eth*']) {
      expect(validationError(() => normalizeVm(vmSpec({ tap }))).field).toBe('tap')
    }
    expect(normalizeVm(vmSpec({ tap: 'vnet-0123456789' })).tap).toBe('vnet-0123456789')
    expect(normalizeVm(vmSpec({ tap: 'tap@0' })).tap).toBe('tap@0')
    expect(validationError(() => normalizeVm(vmSpec({ mac: '52:54:00:12:34' }))).field).toBe('mac')
    expect(validationError(() => normalizeVm(vmSpec({ mac: '01:00:5e:00:00:01' }))).field).toBe('mac')
    expect(validationError(() => normalizeVm(vmSpec({ ipv4: ['fd00::1'] }))).field).toBe('ipv4[0]')
    expect(validationError(() => normalizeVm(vmSpec({ ipv6: ['10.0.0.1'] }))).field).toBe('ipv6[0]')
    expect(validationError(() => normalizeVm(vmSpec({ defaultAction: 'reject' as never }))).field).toBe('defaultAction')
    const dup = validationError(() => normalizeVm(vmSpec({ rules: [{ id: 'x', name: 'a' }, { id: 'x', name: 'b' }] })))
    expect(dup).toMatchObject({ field: 'id', ruleId: 'x' })
  })

  it('normalizes Prisma defaults, masks and CIDRs', () => {
    const r = normalizeRule({ id: 'r', name: 'n', srcIpAddr: '10.1.2.3', srcIpMask: '255.255.0.0', dstIpAddr: '10.9.9.9' }, 'vm')
    expect(r).toMatchObject({ action: 'ACCEPT', direction: 'INOUT', priority: 500, protocol: 'all', family: 4 })
    expect(r.src).toEqual({ family: 4, addr: '10.1.0.0', len: 16 })
    expect(r.dst).toEqual({ family: 4, addr: '10.9.9.9', len: 32 })
    const t = normalizeRule({ id: 'r', name: 'n', protocol: 'TCP', dstPortStart: 80, dstPortEnd: 80, srcIpAddr: 'FD00::1', srcIpMask: 64 }, 'vm')
    expect(t.dstPorts).toEqual([80, 80])
    expect(t.src).toEqual({ family: 6, addr: 'fd00::', len: 64 })
    expect(normalizeRule({ id: 'r', name: 'n', connectionState: { new: false } }, 'vm').connectionState).toBeUndefined()
  })

  it('anti-spoofing and DHCP default to on only when the VM is identified', () => {
    expect(normalizeVm({ vmId: 'v', tap: 't' })).toMatchObject({ antiSpoofing: false, dhcp: false, defaultAction: 'drop' })
    expect(normalizeVm({ vmId: 'v', tap: 't', mac: '52:54:00:00:00:01' })).toMatchObject({ antiSpoofing: true, dhcp: true })
    expect(normalizeVm({ vmId: 'v', tap: 't', ipv4: ['10.0.0.1'], dhcp: false })).toMatchObject({ antiSpoofing: true, dhcp: false })
  })
})

describe('merge', () => {
  const R = (p: Partial<FirewallRuleInput> & { id: string }, source: 'department' | 'vm') => normalizeRule({ name: p.id, ...p }, source)
  it('sorts by ascending priority; ties keep department rules first, then input order', () => {
    const { rules } = mergeRules(
      [R({ id: 'd1', priority: 500 }, 'department'), R({ id: 'd2', priority: 100 }, 'department')],
      [R({ id: 'v1', priority: 500 }, 'vm'), R({ id: 'v2', priority: 50 }, 'vm'), R({ id: 'v3', priority: 500 }, 'vm')],
    )
    expect(rules.map((r) => r.id)).toEqual(['v2', 'd2', 'd1', 'v1', 'v3'])
  })

  it('overridesDept drops department rules for the same traffic only', () => {
    const dept = [
      R({ id: 'web-in', protocol: 'tcp', direction: 'IN', dstPortStart: 80, action: 'DROP' }, 'department'),
      R({ id: 'web-inout', protocol: 'tcp', direction: 'INOUT', dstPortStart: 80, action: 'DROP' }, 'department'),
      R({ id: 'web-out', protocol: 'tcp', direction: 'OUT', dstPortStart: 80, action: 'DROP' }, 'department'),
      R({ id: 'web-src', protocol: 'tcp', direction: 'IN', dstPortStart: 80, srcIpAddr: '10.0.0.0/8' }, 'department'),
      R({ id: 'ssh', protocol: 'tcp', direction: 'IN', dstPortStart: 22 }, 'department'),
    ]
    const vm = [R({ id: 'vm-web', protocol: 'tcp', direction: 'IN', dstPortStart: 80, overridesDept: true }, 'vm')]
    const { rules, overridden } = mergeRules(dept, vm)
    expect(overridden.map((o) => [o.rule.id, o.by])).toEqual([
      ['web-in', 'vm-web'],
      ['web-inout', 'vm-web'],
    ])
    expect(rules.map((r) => r.id)).toEqual(['web-out', 'web-src', 'ssh', 'vm-web'])
    // Without overridesDept nothing is dropped.
    expect(mergeRules(dept, [{ ...vm[0]!, overridesDept: false }]).overridden).toEqual([])
  })
})

describe('compiler', () => {
  it('derives Infinization chain names (sha256, <= 31 chars)', () => {
    expect(generateVMChainName('vm-1')).toMatch(/^vm_[0-9a-f]{24}$/)
    const c = vmChainNames('vm-1')
    expect(c.out).toBe(`${generateVMChainName('vm-1')}_o`)
    expect(c.in.length).toBeLessThanOrEqual(31)
  })

  it('orders each chain: reply rules, user rules, default last; the built-ins go to the shared guard', () => {
    const c = compile({
      rules: [
        { id: 'web', name: 'web', protocol: 'tcp', direction: 'IN', dstPortStart: 80 },
        { id: 'dns', name: 'dns', protocol: 'udp', direction: 'OUT', dstPortStart: 53, action: 'DROP' },
      ],
    })
    expect(tags(c.out)).toEqual(['m:web', 'r:dns', 'd:vm-1'])
    expect(tags(c.in)).toEqual(['r:web', 'd:vm-1'])
    // Issue 15: the built-ins that apply to the VM, in the order its chains held them, and its identities.
    expect(c.identity.out).toEqual([
      'mac-spoof',
      'arp-mac-spoof',
      'vlan-from-vm',
      'arp-ip-spoof',
      'arp',
      'dhcp-discover',
      'ip-spoof',
      'ip6-unspecified',
      'ip6-spoof',
      'ra-from-vm',
      'dhcp-server-from-vm',
      'dhcp6-server-from-vm',
      'dhcp-client',
      'dhcp6-client',
      'ndp',
    ])
    expect(c.identity.in).toEqual(['arp', 'ndp', 'dhcp-reply', 'dhcp6-reply'])
    for (const chain of [c.out, c.in]) {
      expect(chain.at(-1)!.expr).toEqual([{ counter: { packets: 0, bytes: 0 } }, { drop: null }])
      for (const r of chain) expect(r.expr.some((s) => 'counter' in s)).toBe(true)
    }
    // The IPv6 allow-list includes the MAC-derived link-local.
    expect(c.identity).toMatchObject({ mac: '52:54:00:12:34:56', ipv6: ['fe80::5054:ff:fe12:3456', 'fd00::5'] })
    expect(identityElements(c.identity, 'tap0')).toContainEqual({ set: 'id_ipv6', key: 'tap0 . fe80::5054:ff:fe12:3456' })
    expect(identityElements(c.identity, 'tap0')).toContainEqual({ set: 'b_ip6_spoof', key: 'tap0' })
    expect(identityElements(c.identity, 'tap0')).toContainEqual({ set: 'b_dhcp_reply_in', key: 'tap0' })
    // No anonymous sets anywhere (they slow every libnftables call down): constant lists are named sets.
    expect(json([...c.out, ...c.in])).not.toContain('"set"')
    expect(c.result.degradations).toEqual([expect.objectContaining({ kind: 'stateless' })])
  })

  it('without mac/IPs: no anti-spoofing, no DHCP rules, but ARP and NDP still accepted', () => {
    const c = compileVm(normalizeVm({ vmId: 'v', tap: 't', defaultAction: 'accept' }), { capabilities: NO_CAPS, conntrack: 'auto' })
    expect(tags(c.out)).toEqual(['d:v'])
    expect(c.identity).toEqual({ ipv4: [], ipv6: [], out: ['arp', 'ndp'], in: ['arp', 'ndp'] })
    expect(c.out.at(-1)!.expr.at(-1)).toEqual({ accept: null })
  })

  it('compiles matches: ports, ranges, prefixes, icmp per family', () => {
    const c = compile({
      antiSpoofing: false,
      dhcp: false,
      rules: [
        { id: 'a', name: 'a', direction: 'OUT', protocol: 'tcp', srcPortStart: 1000, srcPortEnd: 2000, dstPortStart: 443, dstIpAddr: '192.168.1.7', dstIpMask: '255.255.255.0' },
        { id: 'b', name: 'b', direction: 'OUT', protocol: 'icmp', dstIpAddr: 'fd00::/8', action: 'DROP' },
        { id: 'c', name: 'c', direction: 'OUT', protocol: 'icmp', action: 'DROP' },
      ],
    })
    const byTag = (tag: string) => c.out.find((r) => r.comment.startsWith('r:') && r.comment.endsWith(`:${tag}`))!.expr as NftStatement[]
    expect(byTag('a')).toEqual([
      { match: { op: '==', left: { payload: { protocol: 'ip', field: 'daddr' } }, right: { prefix: { addr: '192.168.1.0', len: 24 } } } },
      { match: { op: '==', left: { meta: { key: 'l4proto' } }, right: 'tcp' } },
      { match: { op: '==', left: { payload: { protocol: 'tcp', field: 'sport' } }, right: { range: [1000, 2000] } } },
      { match: { op: '==', left: { payload: { protocol: 'tcp', field: 'dport' } }, right: 443 } },
      { counter: { packets: 0, bytes: 0 } },
      { accept: null },
    ])
    expect(json(byTag('b'))).toContain('"right":"ipv6-icmp"')
    expect(json(byTag('c'))).toContain('"right":"@icmp_protos"')
  })

  it('stateless reply rules swap addresses and ports; TCP replies refuse bare SYNs', () => {
    const c = compile({
      rules: [{ id: 'web', name: 'w', direction: 'OUT', protocol: 'tcp', srcIpAddr: '10.0.0.5', dstIpAddr: '10.0.0.9', dstPortStart: 80 }],
    })
    const reply = c.in.find((r) => r.comment.startsWith('m:'))!
    expect(reply.expr).toEqual([
      { match: { op: '==', left: { payload: { protocol: 'ip', field: 'saddr' } }, right: '10.0.0.9' } },
      { match: { op: '==', left: { payload: { protocol: 'ip', field: 'daddr' } }, right: '10.0.0.5' } },
      { match: { op: '==', left: { meta: { key: 'l4proto' } }, right: 'tcp' } },
      { match: { op: '==', left: { payload: { protocol: 'tcp', field: 'sport' } }, right: 80 } },
      { match: { op: '!=', left: { '&': [{ payload: { protocol: 'tcp', field: 'flags' } }, ['syn', 'ack']] }, right: 'syn' } },
      { counter: { packets: 0, bytes: 0 } },
      { accept: null },
    ])
    // Reply rules sit where "ct state established" would: before the user rules.
    expect(tags(c.in).indexOf('m:web')).toBeLessThan(tags(c.in).indexOf('d:vm-1'))
    // 'all' gets tcp + udp + icmp + icmpv6 replies; DROP rules get none.
    const all = compile({ rules: [{ id: 'x', name: 'x', direction: 'OUT' }, { id: 'y', name: 'y', direction: 'OUT', action: 'DROP' }] })
    expect(tags(all.in).filter((t) => t === 'm:x')).toHaveLength(4)
    expect(tags(all.in)).not.toContain('m:y')
  })

  it('REJECT: reject only in the prerouting (out) chain when the kernel can, else drop + degradation', () => {
    const rules: FirewallRuleInput[] = [{ id: 'rej', name: 'r', protocol: 'tcp', action: 'REJECT' }]
    const can = compile({ rules }, ALL_CAPS)
    expect(can.out.find((r) => r.comment.startsWith('r:') && r.comment.endsWith(':rej'))!.expr.at(-1)).toEqual({ reject: { type: 'tcp reset' } })
    expect(can.in.find((r) => r.comment.startsWith('r:') && r.comment.endsWith(':rej'))!.expr.at(-1)).toEqual({ drop: null })
    expect(can.result.rules[0]!.effective).toEqual({ out: 'reject', in: 'drop' })
    expect(can.result.degradations.map((d) => d.kind)).toEqual(['reject-to-drop'])
    const cannot = compile({ rules }, NO_CAPS)
    expect(cannot.result.rules[0]!.effective).toEqual({ out: 'drop', in: 'drop' })
    expect(cannot.result.degradations.filter((d) => d.kind === 'reject-to-drop')).toHaveLength(2)
    const udp = compile({ rules: [{ id: 'u', name: 'u', protocol: 'udp', direction: 'OUT', action: 'REJECT' }] }, ALL_CAPS)
    expect(udp.out.find((r) => r.comment.endsWith(':u'))!.expr.at(-1)).toEqual({ reject: null })
  })

  it("REJECT's own answers (RST, port-unreachable) are admitted inbound, bounded to the rejected flow reversed", () => {
    const rules: FirewallRuleInput[] = [
      { id: 'smtp', name: 's', protocol: 'tcp', direction: 'OUT', action: 'REJECT', dstIpAddr: '10.0.0.9', dstPortStart: 25 },
      { id: 'dns', name: 'd', protocol: 'udp', direction: 'OUT', action: 'REJECT', dstPortStart: 53 },
    ]
    const c = compile({ rules, defaultAction: 'drop' }, ALL_CAPS)
    const answers = c.in.filter((r) => r.comment.startsWith('m:'))
    expect(tags(answers)).toEqual(['m:smtp', 'm:dns', 'm:dns'])
    // Before the user rules and the default drop, after established.
    expect(tags(c.in).indexOf('m:smtp')).toBeGreaterThan(tags(c.in).indexOf('b:established'))
    expect(tags(c.in).indexOf('m:dns')).toBeLessThan(tags(c.in).indexOf('d:vm-1'))
    expect(json(answers[0]!.expr)).toBe(
      json([
        { match: { op: '==', left: { payload: { protocol: 'ip', field: 'saddr' } }, right: '10.0.0.9' } },
        { match: { op: '==', left: { meta: { key: 'l4proto' } }, right: 'tcp' } },
        { match: { op: '==', left: { payload: { protocol: 'tcp', field: 'sport' } }, right: 25 } },
        { match: { op: '==', left: { '&': [{ payload: { protocol: 'tcp', field: 'flags' } }, 'rst'] }, right: 'rst' } },
        { counter: { packets: 0, bytes: 0 } },
        { accept: null },
      ]),
    )
    expect(answers.slice(1).map((r) => json(r.expr.slice(0, 2)))).toEqual([
      json([
        { match: { op: '==', left: { payload: { protocol: 'icmp', field: 'type' } }, right: 'destination-unreachable' } },
        { match: { op: '==', left: { payload: { protocol: 'icmp', field: 'code' } }, right: 3 } },
      ]),
      json([
        { match: { op: '==', left: { payload: { protocol: 'icmpv6', field: 'type' } }, right: 'destination-unreachable' } },
        { match: { op: '==', left: { payload: { protocol: 'icmpv6', field: 'code' } }, right: 4 } },
      ]),
    ])
    // Without reject support the REJECT is a drop: nothing answers, nothing is admitted.
    expect(compile({ rules }, NO_CAPS).in.some((r) => r.comment.startsWith('m:'))).toBe(false)
  })

  it('stateful with bridge conntrack: established/related first, connectionState matched, no reply rules', () => {
    const c = compile(
      { rules: [{ id: 'n', name: 'n', direction: 'IN', protocol: 'tcp', dstPortStart: 22, connectionState: { new: true } }] },
      ALL_CAPS,
    )
    expect(c.result.stateful).toBe(true)
    expect(c.result.degradations).toEqual([])
    expect(tags(c.in)).toEqual(['b:established', 'r:n', 'd:vm-1'])
    expect(json(c.in.find((r) => r.comment.endsWith(':n'))!.expr[0])).toBe('{"match":{"op":"in","left":{"ct":{"key":"state"}},"right":["new"]}}')
    expect(tags(c.out).some((t) => t.startsWith('m:'))).toBe(false)
  })

  it("conntrack modes: 'require' throws without the capability; 'off' is stateless without a degradation", () => {
    expect(() => compile({}, NO_CAPS, 'require')).toThrow(FirewallCapabilityError)
    expect(compile({}, ALL_CAPS, 'require').result.stateful).toBe(true)
    const off = compile({}, ALL_CAPS, 'off')
    expect(off.result.stateful).toBe(false)
    expect(off.result.degradations).toEqual([])
  })

  it('stateless: connectionState rules are skipped (reply-only) or matched regardless of state (with new)', () => {
    const c = compile({
      rules: [
        { id: 'est', name: 'e', connectionState: { established: true, related: true } },
        { id: 'new', name: 'n', protocol: 'tcp', dstPortStart: 22, connectionState: { new: true } },
      ],
    })
    const byId = Object.fromEntries(c.result.rules.map((r) => [r.id, r]))
    expect(byId['est']).toMatchObject({ applied: false, reason: 'skipped', nftRules: 0 })
    expect(byId['new']).toMatchObject({ applied: true })
    expect(c.result.degradations.map((d) => [d.kind, d.ruleId])).toEqual([
      ['stateless', undefined],
      ['rule-skipped', 'est'],
      ['connection-state-ignored', 'new'],
    ])
    expect(c.result).toMatchObject({ totalRules: 2, appliedRules: 1 })
  })

  it('comments carry a content hash: same input -> same comments; different match -> different comment', () => {
    const a = compile({ rules: [{ id: 'x', name: 'x', protocol: 'tcp', dstPortStart: 80 }] })
    const b = compile({ rules: [{ id: 'x', name: 'renamed', protocol: 'tcp', dstPortStart: 80 }] })
    const c = compile({ rules: [{ id: 'x', name: 'x', protocol: 'tcp', dstPortStart: 81 }] })
    expect(a.out.map((r) => r.comment)).toEqual(b.out.map((r) => r.comment))
    expect(a.out.map((r) => r.comment)).not.toEqual(c.out.map((r) => r.comment))
    for (const r of a.out) expect(Buffer.byteLength(r.comment)).toBeLessThanOrEqual(128)
  })
})

describe('canonical rule comparison (verify)', () => {
  it('ignores counter values and the l4proto dependency libnftables lists implicitly, nothing else', () => {
    const sent = [
      { match: { op: '==', left: { meta: { key: 'l4proto' } }, right: 'tcp' } },
      { match: { op: '==', left: { payload: { protocol: 'tcp', field: 'dport' } }, right: 22 } },
      { counter: { packets: 0, bytes: 0 } },
      { drop: null },
    ]
    const listed = [sent[1], { counter: { packets: 7, bytes: 420 } }, sent[3]]
    expect(canonicalExpr(listed)).toBe(canonicalExpr(sent))
    expect(canonicalExpr([sent[1], sent[2], { accept: null }])).not.toBe(canonicalExpr(sent))
    // The dependency is implied by any tcp header read, e.g. the flags test of a stateless reply rule.
    const flags = { match: { op: '!=', left: { '&': [{ payload: { protocol: 'tcp', field: 'flags' } }, ['syn', 'ack']] }, right: 'syn' } }
    expect(canonicalExpr([sent[0], flags, { accept: null }])).toBe(canonicalExpr([flags, { accept: null }]))
    // Without a port match the l4proto match is the rule's meaning: kept.
    expect(canonicalExpr([sent[0], sent[3]])).not.toBe(canonicalExpr([sent[3]]))
  })
})

describe('plan', () => {
  it('returns JSON and nft text without the native addon or a kernel', () => {
    const fw = new VmFirewall({} as Nft, { table: 'fw_test' })
    const p = fw.plan(vmSpec({ rules: [{ id: 'ssh', name: 'ssh', protocol: 'tcp', direction: 'IN', dstPortStart: 22, srcIpAddr: '10.0.0.0/8' }] }))
    const chains = vmChainNames('vm-1')
    expect(p.commands.nftables[0]).toEqual({ add: { chain: { family: 'bridge', table: 'fw_test', name: chains.out } } })
    expect(p.text).toContain(`add element bridge fw_test b_ndp { "vnet-a0" }`)
    expect(p.text).toContain(`add element bridge fw_test id_mac { "vnet-a0" . `)
    expect(p.text).toContain(`add rule bridge fw_test ${chains.in} ip saddr 10.0.0.0/8 meta l4proto tcp tcp dport 22 counter accept comment "r:`)
    expect(p.text).toContain(`add element bridge fw_test from_vm { "vnet-a0" : jump ${chains.out} }`)
    expect(p.text).toContain('tcp flags & (syn | ack) != syn')
    expect(p.result.rules[0]).toMatchObject({ id: 'ssh', applied: true, effective: { in: 'accept' } })
    expect(() => fw.plan(vmSpec({ tap: 'x/y' }))).toThrow(FirewallValidationError)
  })

  it('nothing in ts/firewall loads the native addon at import time (type-only imports of Nft)', () => {
    const dir = join(__dirname, '../../ts/firewall')
    let checked = 0
    for (const f of readdirSync(dir).filter((n) => n.endsWith('.ts'))) {
      const src = readFileSync(join(dir, f), 'utf8')
      for (const m of src.matchAll(/^(?:import|export) (type )?(?:(?!^(?:import|export) )[\s\S])*? from '([^']+)'/gm)) {
        if (/^\.\.\/(nft|native|index)\.js$/.test(m[2]!)) {
          expect(m[1], `${f}: ${m[0]}`).toBe('type ')
          checked++
        }
      }
    }
    expect(checked).toBeGreaterThanOrEqual(2)
  })

  it('validates options', () => {
    expect(() => new VmFirewall({} as Nft, { table: 'bad table' })).toThrow(FirewallValidationError)
    expect(() => new VmFirewall({} as Nft, { conntrack: 'maybe' as never })).toThrow(FirewallValidationError)
  })
})

describe('scheduler', () => {
  const tick = () => new Promise((r) => setTimeout(r, 5))
  it('serializes one VM, overlaps different VMs, and runs exclusive work alone', async () => {
    const s = new Scheduler()
    const log: string[] = []
    let running = 0
    let maxRunning = 0
    const job = (name: string) => async () => {
      running++
      maxRunning = Math.max(maxRunning, running)
      log.push(`${name}+`)
      await tick()
      log.push(`${name}-`)
      running--
      return name
    }
    const p = [
      s.vm('a', job('a1')),
      s.vm('b', job('b1')),
      s.vm('a', job('a2')),
      s.exclusive(async () => {
        log.push(`X running=${running}`)
        return 'x'
      }),
      s.vm('a', job('a3')),
    ]
    expect(await Promise.all(p)).toEqual(['a1', 'b1', 'a2', 'x', 'a3'])
    expect(log.indexOf('a1-')).toBeLessThan(log.indexOf('a2+'))
    expect(log.indexOf('b1+')).toBeLessThan(log.indexOf('a1-')) // a and b overlapped
    expect(maxRunning).toBe(2)
    expect(log).toContain('X running=0')
    expect(log.indexOf('X running=0')).toBeLessThan(log.indexOf('a3+'))
  })

  it('a failing call does not block the next one', async () => {
    const s = new Scheduler()
    await expect(s.vm('a', async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom')
    expect(await s.vm('a', async () => 1)).toBe(1)
    await expect(s.exclusive(async () => Promise.reject(new Error('x')))).rejects.toThrow('x')
    expect(await s.vm('a', async () => 2)).toBe(2)
  })
})

describe('base chain check (parseTable and tableProblems judge alike)', () => {
  const dispatch = [...baseGuardRules('prerouting'), { expr: [{ vmap: { key: { meta: { key: 'iifname' } }, data: '@from_vm' } }] }]
  const healthy = { name: 'prerouting', type: 'filter', hook: 'prerouting', prio: BASE_PRIORITY, policy: 'accept' }

  it('healthy, missing, regular, changed and a wrong policy', () => {
    expect(baseChainProblems('prerouting', healthy, dispatch)).toEqual({ problems: [], recreate: false })
    expect(baseChainProblems('prerouting', undefined, [])).toEqual({ problems: ['base chain prerouting missing'], recreate: false })
    expect(baseChainProblems('prerouting', { name: 'prerouting' }, dispatch)).toEqual({ problems: ['base chain prerouting is a regular chain'], recreate: true })
    expect(baseChainProblems('prerouting', { ...healthy, prio: -200, policy: 'drop' }, [])).toEqual({
      problems: [
        'base chain prerouting changed (type filter hook prerouting priority -200)',
        'base chain prerouting policy drop (expected accept)',
        'guard rules in prerouting missing or changed',
        'dispatch rule in prerouting missing or changed',
      ],
      recreate: true,
    })
    // Issue 15: the layout before the guard (the dispatch rule alone) is a problem sync repairs.
    expect(baseChainProblems('prerouting', healthy, dispatch.slice(-1)).problems).toEqual(['guard rules in prerouting missing or changed'])
    // An intact guard with a rule more, or less, after it: the dispatch's problem only.
    const extra = { expr: [{ accept: null }] }
    expect(baseChainProblems('prerouting', healthy, [...dispatch.slice(0, -1), extra, ...dispatch.slice(-1)]).problems).toEqual(['dispatch rule in prerouting missing or changed'])
    expect(baseChainProblems('prerouting', healthy, dispatch.slice(0, -1)).problems).toEqual(['dispatch rule in prerouting missing or changed'])
  })

  it('parseTable reports the same for its base chains', () => {
    const t = parseTable({
      nftables: [
        { chain: { family: 'bridge', table: 't', handle: 1, ...healthy, prio: -200 } },
        ...dispatch.map((r, i) => ({ rule: { family: 'bridge', table: 't', chain: 'prerouting', handle: 2 + i, ...r } })),
        { chain: { family: 'bridge', table: 't', handle: 9, name: 'postrouting' } },
      ],
    } as never)
    expect(t.problems).toEqual([
      'dispatch maps missing',
      expect.stringMatching(/^shared sets missing: /),
      expect.stringMatching(/^guard sets missing: id_mac, id_ipv4, id_ipv6, b_mac_spoof, /),
      'guard chain guard_ip missing',
      'guard chain guard_ip6 missing',
      'guard chain guard_arp missing',
      'guard chain guard_vlan missing',
      'base chain prerouting changed (type filter hook prerouting priority -200)',
      'base chain postrouting is a regular chain',
    ])
    expect(t.recreate).toEqual(['prerouting', 'postrouting'])
  })
})

describe("the guard's sets read from `list sets` text (issue 15: libnftables 1.0.6's JSON set printer is not thread-safe)", () => {
  it('reads only this table, elements across lines, concatenations and element counters; reports missing sets', () => {
    const text = [
      'table bridge other {',
      '\tset id_mac {',
      '\t\ttype ifname . ether_addr',
      '\t\telements = { "x" . 02:00:00:00:00:09 }',
      '\t}',
      '}',
      'table bridge t {',
      '\tset icmp_protos {',
      '\t\ttype inet_proto',
      '\t\telements = { icmp, ipv6-icmp }',
      '\t}',
      '\tset id_mac {',
      '\t\ttype ifname . ether_addr',
      '\t\telements = { "vnet0" . 52:54:00:aa:bb:01,',
      '\t\t\t     "vnet1" . 52:54:00:aa:bb:02 }',
      '\t}',
      '\tset id_ipv6 {',
      '\t\ttype ifname . ipv6_addr',
      '\t}',
      '\tset b_ip_spoof {',
      '\t\ttype ifname',
      '\t\tcounter',
      '\t\telements = { "vnet0" counter packets 3 bytes 180,',
      '\t\t\t     "vnet1" counter packets 0 bytes 0 }',
      '\t}',
      '}',
    ].join('\n')
    const r = setContentsOfText(text, 't')
    expect([...r.contents.get('id_mac')!]).toEqual(['vnet0 . 52:54:00:aa:bb:01', 'vnet1 . 52:54:00:aa:bb:02'])
    expect([...r.contents.get('id_ipv6')!]).toEqual([])
    expect(r.counters.get('b_ip_spoof')!.get('vnet0')).toEqual({ packets: 3, bytes: 180 })
    expect(r.contents.has('icmp_protos')).toBe(false)
    expect(r.missing).toContain('id_ipv4')
    expect(r.missing).not.toContain('id_mac')
  })
})
