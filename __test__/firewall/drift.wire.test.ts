// applyVmIfChanged / verifyVm / detached apply: per-VM comparison with the kernel without a table listing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { VmFirewall, vmChainNames, type FirewallRuleInput } from '../../ts/firewall/index.js'
import { buildWorld, type Vm, type World } from '../support/world.js'

let w: World
let A: Vm, B: Vm
let fw: VmFirewall
beforeAll(async () => {
  w = await buildWorld({ subnet: 75, vms: 3 })
  ;[A, B] = w.vms as [Vm, Vm]
  fw = new VmFirewall(w.nft)
  await fw.init()
})
afterAll(async () => {
  await w?.destroy()
})
const passes = async (probe: () => Promise<boolean>): Promise<boolean> => (await probe()) || (await probe())
const allowPing: FirewallRuleInput[] = [{ id: 'ping', name: 'ping', protocol: 'icmp', direction: 'INOUT', action: 'ACCEPT', priority: 500 }]

describe('per-VM drift', () => {
  it('applyVmIfChanged writes nothing when the kernel already matches, and repairs outside edits', async () => {
    const spec = { vmId: B.vmId, tap: B.tap, mac: B.mac, ipv4: [B.ipv4], defaultAction: 'drop' as const, rules: allowPing }
    expect((await fw.applyVmIfChanged(spec)).changed).toBe(true)
    // Rule handles say whether anything was rewritten (counters move with traffic such as NDP: ignored).
    const handles = () => w.hostNft(['-a', '-s', 'list', 'chain', 'bridge', 'infinization', vmChainNames(B.vmId).in])
    const before = handles()
    const again = await fw.applyVmIfChanged(spec)
    expect(again.changed).toBe(false)
    expect(again.drift.status).toBe('ok')
    expect(handles()).toBe(before)
    w.hostNft(['add', 'rule', 'bridge', 'infinization', vmChainNames(B.vmId).in, 'accept'])
    expect((await fw.verifyVm(spec)).extra).toEqual([`rule:${vmChainNames(B.vmId).in}:(no comment)`])
    expect((await fw.applyVmIfChanged(spec)).changed).toBe(true)
    expect((await fw.verifyVm(spec)).status).toBe('ok')
    // Detached apply: chains written, nothing dispatched.
    await fw.applyVm(spec, { attach: false })
    expect(w.hostNft(['list', 'map', 'bridge', 'infinization', 'to_vm'])).not.toContain(B.tap)
    expect((await fw.verifyVm(spec, { attach: false })).status).toBe('ok')
    // Its dispatch entries and its guard elements (issue 15: part of its dispatch) are missing.
    const missing = (await fw.verifyVm(spec)).missing
    expect(missing.slice(0, 2)).toEqual([`dispatch:from_vm:${B.tap}`, `dispatch:to_vm:${B.tap}`])
    expect(missing).toContain(`dispatch:id_mac:${B.tap} . ${B.mac}`)
    expect(missing).toContain(`dispatch:b_ip_spoof:${B.tap}`)
    expect(missing.every((m) => m.startsWith('dispatch:'))).toBe(true)
  })

  it('every rule form the compiler emits reads back from the kernel as unchanged (no false drift)', async () => {
    const rules: FirewallRuleInput[] = []
    let n = 0
    for (const protocol of ['tcp', 'udp', 'icmp', 'all'])
      for (const direction of ['IN', 'OUT', 'INOUT'] as const)
        for (const addr of [undefined, '10.0.0.0/8', 'fd00::/16', '0.0.0.0/0', '::/0', '10.1.2.3', 'fd00::1'])
          for (const ports of protocol === 'tcp' || protocol === 'udp' ? [{}, { dstPortStart: 80 }, { srcPortStart: 1, srcPortEnd: 1024, dstPortStart: 443 }] : [{}])
            for (const action of ['ACCEPT', 'DROP', 'REJECT'] as const) {
              rules.push({ id: `r${n++}`, name: 'x', protocol, direction, action, ...(n % 2 ? { srcIpAddr: addr } : { dstIpAddr: addr }), ...ports })
            }
    rules.push({ id: 'cs-new', name: 'x', protocol: 'tcp', connectionState: { new: true } })
    const spec = { vmId: 'forms', tap: 'vnet-forms', mac: '52:54:00:00:00:77', ipv4: ['10.9.0.2', '10.9.0.3'], ipv6: ['fd00::2'], defaultAction: 'drop' as const, rules }
    const r = await fw.applyVm(spec, { attach: false })
    expect(r.rules.length).toBeGreaterThan(400)
    expect(await fw.verifyVm(spec, { attach: false })).toMatchObject({ status: 'ok', missing: [], extra: [], changed: [] })
    await fw.removeVm('forms')
  })

  it('a detached apply filters nothing until attached; then the policy holds on the wire', async () => {
    const spec = { vmId: A.vmId, tap: A.tap, mac: A.mac, ipv4: [A.ipv4], defaultAction: 'drop' as const, rules: allowPing }
    await fw.applyVm(spec, { attach: false })
    expect(await passes(() => w.tcp(A, B.ipv4, 80))).toBe(true)
    await fw.attachVm(A.vmId, A.tap)
    expect(await w.tcp(A, B.ipv4, 80)).toBe(false)
    expect(await passes(() => w.ping(A, B.ipv4))).toBe(true)
    expect(await fw.hasVm(A.vmId)).toBe(true)
    await fw.removeVmByChain(vmChainNames(A.vmId).in)
    expect(await fw.hasVm(A.vmId)).toBe(false)
    expect(await passes(() => w.tcp(A, B.ipv4, 80))).toBe(true)
  })
})
