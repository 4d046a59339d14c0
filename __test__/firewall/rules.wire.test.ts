// Rule semantics on the wire: real packets between namespaces through the bridge.
// Each test asserts what the probed capabilities imply: the stateless policy and REJECT -> drop on a kernel
// without bridge conntrack/reject (the CI host), established replies and real rejects on a distro kernel.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { VmFirewall, type FirewallCapabilities, type FirewallRuleInput, type VmSpec } from '../../ts/firewall/index.js'
import { buildWorld, passes, vmSpec, type Vm, type World } from '../support/world.js'

let w: World
let fw: VmFirewall
let caps: FirewallCapabilities
let A: Vm, B: Vm, C: Vm
beforeAll(async () => {
  w = await buildWorld({ subnet: 71 })
  ;[A, B, C] = w.vms as [Vm, Vm, Vm]
  fw = new VmFirewall(w.nft)
  caps = await fw.capabilities()
  await fw.init()
})
afterAll(async () => {
  await w?.destroy()
})

let n = 0
const rule = (r: Partial<FirewallRuleInput>): FirewallRuleInput => ({ id: `r${++n}`, name: `rule ${n}`, ...r })
const spec = vmSpec
/** Applies the whole desired set (one sync transaction). */
async function setup(a: VmSpec, b: VmSpec, c: VmSpec = spec(C, 'accept')) {
  return fw.sync([a, b, c])
}

describe('default actions', () => {
  it('drop blocks everything both ways (v4, v6, host path); accept lets it through', async () => {
    await setup(spec(A, 'drop'), spec(B, 'accept'))
    expect(await w.ping(A, B.ipv4)).toBe(false)
    expect(await w.ping(B, A.ipv6)).toBe(false)
    expect(await w.ping(A, w.host.ipv4)).toBe(false)
    expect(await w.ping(w.host, A.ipv4)).toBe(false)
    expect(await w.tcp(B, A.ipv4, 22)).toBe(false)
    expect(await passes(() => w.ping(B, C.ipv4))).toBe(true)
    await setup(spec(A, 'accept'), spec(B, 'accept'))
    expect(await passes(() => w.ping(A, B.ipv4))).toBe(true)
    expect(await passes(() => w.ping(A, B.ipv6))).toBe(true)
    expect(await passes(() => w.ping(w.host, A.ipv4))).toBe(true)
    expect(await passes(() => w.tcp(B, A.ipv6, 22))).toBe(true)
  })
})

describe('rule fields', () => {
  it('protocol + destination port (tcp), IPv4 and IPv6', async () => {
    const res = await setup(spec(A, 'accept'), spec(B, 'drop', [rule({ direction: 'IN', protocol: 'tcp', dstPortStart: 80 })]))
    expect(res.results[B.vmId]!.degradations.map((d) => d.kind).includes('stateless')).toBe(!caps.bridgeConntrack)
    expect(await passes(() => w.tcp(A, B.ipv4, 80))).toBe(true)
    expect(await passes(() => w.tcp(A, B.ipv6, 80))).toBe(true)
    expect(await w.tcp(A, B.ipv4, 22)).toBe(false)
    expect(await w.udp(B, B.ipv4, 5000, A)).toBe(false)
    expect(await w.ping(A, B.ipv4)).toBe(false)
  })

  it('port ranges (tcp and udp) and a one-port range', async () => {
    await setup(
      spec(A, 'accept'),
      spec(B, 'drop', [
        rule({ direction: 'IN', protocol: 'tcp', dstPortStart: 8000, dstPortEnd: 9000 }),
        rule({ direction: 'IN', protocol: 'udp', dstPortStart: 5000, dstPortEnd: 5000 }),
      ]),
    )
    expect(await passes(() => w.tcp(A, B.ipv4, 8080))).toBe(true)
    expect(await passes(() => w.tcp(A, B.ipv6, 9000))).toBe(true)
    expect(await w.tcp(A, B.ipv4, 443)).toBe(false)
    expect(await passes(() => w.udp(B, B.ipv4, 5000, A))).toBe(true)
    expect(await passes(() => w.udp(B, B.ipv6, 5000, A))).toBe(true)
    expect(await w.udp(B, B.ipv4, 5001, A)).toBe(false)
  })

  it('source port', async () => {
    await setup(spec(A, 'accept'), spec(B, 'drop', [rule({ direction: 'IN', protocol: 'udp', srcPortStart: 4000, srcPortEnd: 4010 })]))
    expect(await passes(() => w.udp(B, B.ipv4, 5000, A, { sourcePort: 4005 }))).toBe(true)
    expect(await w.udp(B, B.ipv4, 5000, A, { sourcePort: 4011 })).toBe(false)
  })

  it('source address: host, CIDR number, dotted mask, IPv6 prefix', async () => {
    // A = .11 / ::11, B = .12, C = .13 / ::13
    await setup(
      spec(A, 'accept'),
      spec(B, 'drop', [
        rule({ direction: 'IN', protocol: 'tcp', dstPortStart: 22, srcIpAddr: A.ipv4 }),
        rule({ direction: 'IN', protocol: 'tcp', dstPortStart: 80, srcIpAddr: '10.71.0.12', srcIpMask: '30' }), // .12-.15: C
        rule({ direction: 'IN', protocol: 'tcp', dstPortStart: 443, srcIpAddr: '10.71.0.8', srcIpMask: '255.255.255.252' }), // .8-.11: A
        rule({ direction: 'IN', protocol: 'tcp', dstPortStart: 8080, srcIpAddr: 'fd00:71::12/127' }), // ::12-::13: C
      ]),
    )
    expect(await passes(() => w.tcp(A, B.ipv4, 22))).toBe(true)
    expect(await w.tcp(C, B.ipv4, 22)).toBe(false)
    expect(await passes(() => w.tcp(C, B.ipv4, 80))).toBe(true)
    expect(await w.tcp(A, B.ipv4, 80)).toBe(false)
    expect(await passes(() => w.tcp(A, B.ipv4, 443))).toBe(true)
    expect(await w.tcp(C, B.ipv4, 443)).toBe(false)
    expect(await passes(() => w.tcp(C, B.ipv6, 8080))).toBe(true)
    expect(await w.tcp(A, B.ipv6, 8080)).toBe(false)
    // An IPv4 address makes the rule IPv4-only.
    expect(await w.tcp(A, B.ipv6, 22)).toBe(false)
  })

  it('destination address; icmp follows the address family', async () => {
    await setup(
      spec(A, 'drop', [rule({ direction: 'OUT', protocol: 'icmp', dstIpAddr: B.ipv4 }), rule({ direction: 'OUT', protocol: 'icmp', dstIpAddr: `${C.ipv6}/128` })]),
      spec(B, 'accept'),
    )
    expect(await passes(() => w.ping(A, B.ipv4))).toBe(true)
    expect(await w.ping(A, B.ipv6)).toBe(false)
    expect(await w.ping(A, C.ipv4)).toBe(false)
    expect(await passes(() => w.ping(A, C.ipv6))).toBe(true)
  })

  it('icmp without address covers ICMP and ICMPv6', async () => {
    await setup(spec(A, 'accept'), spec(B, 'drop', [rule({ direction: 'IN', protocol: 'icmp' })]))
    expect(await passes(() => w.ping(A, B.ipv4))).toBe(true)
    expect(await passes(() => w.ping(A, B.ipv6))).toBe(true)
    expect(await w.tcp(A, B.ipv4, 22)).toBe(false)
  })

  it('protocol all + DROP rule above a default accept', async () => {
    await setup(spec(A, 'accept'), spec(B, 'accept', [rule({ direction: 'IN', protocol: 'all', srcIpAddr: A.ipv4, action: 'DROP' })]))
    expect(await w.ping(A, B.ipv4)).toBe(false)
    expect(await w.tcp(A, B.ipv4, 80)).toBe(false)
    expect(await passes(() => w.ping(C, B.ipv4))).toBe(true)
    expect(await passes(() => w.ping(A, B.ipv6))).toBe(true)
  })
})

describe('paths and endpoints', () => {
  it("both endpoints' policies apply: A's OUT allows, B's IN drops -> blocked", async () => {
    await setup(
      spec(A, 'drop', [rule({ direction: 'OUT', protocol: 'all', action: 'ACCEPT' })]),
      spec(B, 'accept', [rule({ direction: 'IN', protocol: 'tcp', dstPortStart: 80, action: 'DROP' })]),
    )
    expect(await w.tcp(A, B.ipv4, 80)).toBe(false)
    expect(await passes(() => w.tcp(A, B.ipv4, 22))).toBe(true)
  })

  it('the host path (bridge address: gateway/DNS) is filtered both ways', async () => {
    await setup(
      spec(A, 'accept', [
        rule({ direction: 'OUT', protocol: 'all', dstIpAddr: w.host.ipv4, action: 'DROP' }),
        rule({ direction: 'IN', protocol: 'tcp', srcIpAddr: w.host.ipv6, dstPortStart: 22, action: 'DROP' }),
      ]),
      spec(B, 'drop', [rule({ direction: 'OUT', protocol: 'udp', dstIpAddr: w.host.ipv4, dstPortStart: 53 })]),
    )
    expect(await w.ping(A, w.host.ipv4)).toBe(false)
    expect(await w.udp(w.host, w.host.ipv4, 53, A)).toBe(false)
    expect(await passes(() => w.ping(A, w.host.ipv6))).toBe(true)
    expect(await w.tcp(w.host, A.ipv6, 22)).toBe(false)
    expect(await passes(() => w.tcp(w.host, A.ipv6, 80))).toBe(true)
    // B (default drop) may only reach the host's DNS port.
    expect(await passes(() => w.udp(w.host, w.host.ipv4, 53, B))).toBe(true)
    expect(await w.udp(w.host, w.host.ipv4, 5000, B)).toBe(false)
    expect(await w.ping(B, w.host.ipv4)).toBe(false)
  })
})

describe('uplink path', () => {
  it('VM <-> a machine behind an uplink port is filtered by the VM policy, both ways', async () => {
    const up = w.uplink
    await setup(spec(A, 'drop', [rule({ direction: 'OUT', protocol: 'all', dstIpAddr: up.ipv4 })]), spec(B, 'drop'))
    expect(await passes(() => w.ping(A, up.ipv4))).toBe(true) // reply through the stateless reply rules
    expect(await passes(() => w.tcp(A, up.ipv4, 443))).toBe(true)
    expect(await w.ping(A, up.ipv6)).toBe(false)
    expect(await w.ping(up, A.ipv4)).toBe(false)
    expect(await w.tcp(up, A.ipv4, 22)).toBe(false)
    expect(await w.ping(B, up.ipv4)).toBe(false)
    expect(await w.ping(up, B.ipv6)).toBe(false)
    expect(await passes(() => w.ping(up, C.ipv4))).toBe(true)
  })
})

describe('department + VM merge', () => {
  const deptDrop80 = (): FirewallRuleInput => ({ id: 'dept-no-web', name: 'no web', direction: 'IN', protocol: 'tcp', dstPortStart: 80, action: 'DROP', priority: 100 })
  it('a department DROP wins over a later VM ACCEPT', async () => {
    const res = await setup(
      spec(A, 'accept'),
      spec(B, 'accept', [rule({ direction: 'IN', protocol: 'tcp', dstPortStart: 80, priority: 500 })], { departmentRules: [deptDrop80()] }),
    )
    expect(res.results[B.vmId]!.rules.map((r) => [r.id, r.applied])).toEqual([
      ['dept-no-web', true],
      [expect.any(String), true],
    ])
    expect(await w.tcp(A, B.ipv4, 80)).toBe(false)
  })

  it('overridesDept replaces the department rule for the same traffic', async () => {
    const res = await setup(
      spec(A, 'accept'),
      spec(B, 'accept', [rule({ id: 'vm-web', direction: 'IN', protocol: 'tcp', dstPortStart: 80, priority: 500, overridesDept: true })], {
        departmentRules: [deptDrop80(), { id: 'dept-no-ssh', name: 'no ssh', direction: 'IN', protocol: 'tcp', dstPortStart: 22, action: 'DROP' }],
      }),
    )
    const byId = Object.fromEntries(res.results[B.vmId]!.rules.map((r) => [r.id, r]))
    expect(byId['dept-no-web']).toMatchObject({ applied: false, reason: 'overridden' })
    expect(byId['vm-web']).toMatchObject({ applied: true })
    expect(await passes(() => w.tcp(A, B.ipv4, 80))).toBe(true)
    expect(await w.tcp(A, B.ipv4, 22)).toBe(false)
  })

  it('a VM rule with a lower priority runs before the department rule', async () => {
    await setup(
      spec(A, 'accept'),
      spec(B, 'accept', [rule({ direction: 'IN', protocol: 'tcp', dstPortStart: 80, priority: 50 })], { departmentRules: [deptDrop80()] }),
    )
    expect(await passes(() => w.tcp(A, B.ipv4, 80))).toBe(true)
  })
})

describe('REJECT', () => {
  it('rejects from the VM where the kernel can (else drops), drops towards it, reports each; the apply succeeds', async () => {
    const res = await setup(
      spec(A, 'accept', [rule({ id: 'rej-out', direction: 'OUT', protocol: 'tcp', dstPortStart: 443, action: 'REJECT' })]),
      spec(B, 'accept', [rule({ id: 'rej-in', direction: 'IN', protocol: 'tcp', dstPortStart: 80, action: 'REJECT' })]),
    )
    const degr = [...res.results[A.vmId]!.degradations, ...res.results[B.vmId]!.degradations].filter((d) => d.kind === 'reject-to-drop')
    // Traffic to a VM passes bridge postrouting, where the kernel allows no reject: always a drop.
    expect(degr.map((d) => d.ruleId).sort()).toEqual(caps.bridgeReject ? ['rej-in'] : ['rej-in', 'rej-out'])
    expect(res.results[B.vmId]!.rules[0]!.effective).toEqual({ in: 'drop' })
    expect(res.results[A.vmId]!.rules[0]!.effective).toEqual({ out: caps.bridgeReject ? 'reject' : 'drop' })
    expect(await w.connect(A, B.ipv4, 80, 'tcp')).toBe('timeout')
    expect(await w.connect(A, C.ipv4, 443, 'tcp')).toBe(caps.bridgeReject ? 'refused' : 'timeout')
    expect(await passes(() => w.tcp(A, B.ipv4, 22))).toBe(true)
  })
})

describe('replies under a default drop', () => {
  it('an OUT ACCEPT rule works: replies come back (established, or the stateless reply rules), new connections in do not', async () => {
    const res = await setup(
      spec(A, 'drop', [
        rule({ direction: 'OUT', protocol: 'tcp', dstPortStart: 80 }),
        rule({ direction: 'OUT', protocol: 'udp', dstPortStart: 7 }),
        rule({ direction: 'OUT', protocol: 'icmp' }),
        rule({ id: 'est', direction: 'IN', protocol: 'all', connectionState: { established: true, related: true } }),
      ]),
      spec(B, 'accept'),
    )
    const r = res.results[A.vmId]!
    expect(r.stateful).toBe(caps.bridgeConntrack)
    if (caps.bridgeConntrack) {
      expect(r.degradations).toEqual([])
      expect(r.rules.find((x) => x.id === 'est')).toMatchObject({ applied: true })
    } else {
      expect(r.degradations.map((d) => d.kind)).toEqual(expect.arrayContaining(['stateless', 'rule-skipped']))
      expect(r.rules.find((x) => x.id === 'est')).toMatchObject({ applied: false, reason: 'skipped' })
    }
    // A's connections out, and their replies
    expect(await passes(() => w.tcp(A, B.ipv4, 80))).toBe(true)
    expect(await passes(() => w.tcp(A, B.ipv6, 80))).toBe(true)
    expect(await passes(() => w.udpEcho(A, B.ipv4))).toBe(true)
    expect(await passes(() => w.udpEcho(A, B.ipv6))).toBe(true)
    expect(await passes(() => w.ping(A, B.ipv4))).toBe(true)
    expect(await passes(() => w.ping(A, B.ipv6))).toBe(true)
    // Nothing new comes in: other ports, pings to A, and a SYN from B's port 80 (the reply rule refuses bare SYNs)
    expect(await w.tcp(A, B.ipv4, 22)).toBe(false)
    expect(await w.tcp(B, A.ipv4, 22)).toBe(false)
    expect(await w.tcp(B, A.ipv4, 22, { sourcePort: 80 })).toBe(false)
    expect(await w.ping(B, A.ipv4)).toBe(false)
    expect(await w.udp(A, A.ipv4, 5000, B)).toBe(false)
  })
})
