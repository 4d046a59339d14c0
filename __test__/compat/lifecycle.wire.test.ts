// Infinization's VM lifecycle driven through the facade, checked with real packets between namespaces:
// create (createVMChain + applyRules), stop (detachJumpRules), start (ensureVMChain + attachJumpRules +
// applyRulesIfChanged), a start after the chains vanished, destroy (removeVMChain).
// This kernel has neither bridge conntrack nor bridge reject: the facade runs in 'degrade' mode.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { NftablesService, generateVMChainName, type FirewallRuleInput } from '../../ts/compat/index.js'
import { buildWorld, type Vm, type World } from '../support/world.js'
import { GUARD_CHAINS } from '../../ts/firewall/layout.js'

let w: World
let svc: NftablesService
let A: Vm, B: Vm
beforeAll(async () => {
  w = await buildWorld({ vms: 2, subnet: 74 })
  ;[A, B] = w.vms as [Vm, Vm]
  svc = new NftablesService({ nft: w.nft, bridgeConntrackMode: 'degrade' })
})
afterAll(async () => {
  svc?.close()
  await w?.destroy()
})

// A positive probe may lose its first packet to neighbour discovery: one retry. Negative probes never retry.
const passes = async (probe: () => Promise<boolean>): Promise<boolean> => (await probe()) || (await probe())

// A: department blocks telnet with REJECT (this kernel cannot reject: dropped, and the apply still works),
// the VM allows web in and ping out; default drop (department BLOCK_ALL). B: default accept (ALLOW_ALL).
const deptA: FirewallRuleInput[] = [{ id: 'no-telnet', name: 'no telnet', action: 'REJECT', direction: 'IN', protocol: 'tcp', dstPortStart: 23, priority: 50 }]
const rulesA: FirewallRuleInput[] = [
  { id: 'web', name: 'web in', action: 'ACCEPT', direction: 'IN', protocol: 'tcp', dstPortStart: 80, priority: 100 },
  { id: 'ping-out', name: 'ping out', action: 'ACCEPT', direction: 'OUT', protocol: 'icmp', priority: 100 },
]

async function start(vm: Vm, dept: FirewallRuleInput[], rules: FirewallRuleInput[], action: 'accept' | 'drop') {
  await svc.ensureVMChain(vm.vmId)
  await svc.attachJumpRules(vm.vmId, vm.tap)
  return svc.applyRulesIfChanged(vm.vmId, vm.tap, dept, rules, action)
}

describe('VM lifecycle through the facade, on the wire', () => {
  it('create, stop, start, start after the chains vanished, destroy', async () => {
    await svc.initialize()

    // create
    expect(await svc.createVMChain(A.vmId, A.tap)).toBe(generateVMChainName(A.vmId))
    const created = await svc.applyRules(A.vmId, A.tap, deptA, rulesA, 'drop')
    expect(created).toMatchObject({ totalRules: 3, appliedRules: 3, failedRules: 0, attached: true })
    await svc.createVMChain(B.vmId, B.tap)
    await svc.applyRules(B.vmId, B.tap, [], [], 'accept')

    expect(await passes(() => w.tcp(B, A.ipv4, 80))).toBe(true)
    // B accepts everything, yet A's policy still applies to B -> A (no "first jump wins").
    expect(await w.tcp(B, A.ipv4, 22)).toBe(false)
    // Host <-> VM traffic is filtered too (it never crosses the bridge forward hook).
    expect(await w.ping(w.host, A.ipv4)).toBe(false)
    expect(await w.tcp(A, w.host.ipv4, 22)).toBe(false)
    // Ping out works, replies come back (stateless reply rules).
    expect(await passes(() => w.ping(A, B.ipv4))).toBe(true)
    // DHCP client flow to the host passes under default drop; other UDP to port 67 does not.
    expect(await passes(() => w.udp(w.host, w.host.ipv4, 67, A, { sourcePort: 68 }))).toBe(true)
    expect(await w.udp(w.host, w.host.ipv4, 67, A)).toBe(false)

    // stop: dispatch detached, chains kept (here the veth stays, so A's traffic is unfiltered).
    await svc.detachJumpRules(A.vmId)
    expect(await svc.chainExists(generateVMChainName(A.vmId))).toBe(true)
    expect(await passes(() => w.tcp(B, A.ipv4, 22))).toBe(true)

    // start: nothing changed, nothing rewritten, filtering back.
    expect(await start(A, deptA, rulesA, 'drop')).toEqual({ changed: false })
    expect(await w.tcp(B, A.ipv4, 22)).toBe(false)
    expect(await passes(() => w.tcp(B, A.ipv4, 80))).toBe(true)

    // stop, chains deleted behind the service's back, start again.
    await svc.detachJumpRules(A.vmId)
    const b = generateVMChainName(A.vmId)
    w.hostNft(['delete', 'chain', 'bridge', 'infinization', `${b}_o`])
    w.hostNft(['delete', 'chain', 'bridge', 'infinization', `${b}_i`])
    await svc.ensureVMChain(A.vmId)
    await svc.attachJumpRules(A.vmId, A.tap)
    // Between attach and apply the VM is closed (default drop), not open.
    expect(await w.tcp(B, A.ipv4, 80)).toBe(false)
    const restarted = await svc.applyRulesIfChanged(A.vmId, A.tap, deptA, rulesA, 'drop')
    expect(restarted.changed).toBe(true)
    expect(await passes(() => w.tcp(B, A.ipv4, 80))).toBe(true)
    expect(await w.tcp(B, A.ipv4, 22)).toBe(false)

    // destroy: everything of A gone, idempotent; B untouched.
    await svc.removeVMChain(A.vmId)
    await svc.removeVMChain(A.vmId)
    expect(await svc.chainExists(b)).toBe(false)
    expect(await svc.listChains()).toEqual([...GUARD_CHAINS, 'prerouting', 'postrouting', generateVMChainName(B.vmId)])
    expect(await passes(() => w.tcp(B, A.ipv4, 22))).toBe(true)
  })
})

describe('anti-spoofing through the facade (vmIdentity)', () => {
  it("drops traffic from an address that is not the VM's, when the VM's identity is known", async () => {
    const guarded = new NftablesService({
      nft: w.nft,
      bridgeConntrackMode: 'degrade',
      vmIdentity: (vmId) => (vmId === A.vmId ? { mac: A.mac, ipv4: [A.ipv4], ipv6: [A.ipv6] } : undefined),
    })
    try {
      const res = await guarded.applyRules(A.vmId, A.tap, [], [], 'accept')
      expect(res.details!.rules).toEqual([])
      expect(await passes(() => w.tcp(A, B.ipv4, 80))).toBe(true)
      A.ns.exec('ip', ['addr', 'add', '10.74.0.99/24', 'dev', 'eth0'])
      try {
        expect(await w.tcp(A, B.ipv4, 80, { bind: '10.74.0.99' })).toBe(false)
        expect((await guarded.firewall.stats(A.vmId)).builtin['ip-spoof']?.packets).toBeGreaterThan(0)
      } finally {
        A.ns.exec('ip', ['addr', 'del', '10.74.0.99/24', 'dev', 'eth0'])
      }
      await guarded.removeVMChain(A.vmId)
    } finally {
      guarded.close()
    }
  })
})
