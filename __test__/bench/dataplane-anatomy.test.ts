// The data-plane anatomy's reshapings of VmFirewall's table (bench/lib/dataplane-anatomy.ts), from listings
// as libnftables prints them. No kernel.
import { describe, expect, it } from 'vitest'
import { chainRuleLines, defaultOnly, dhcpBehindPortSet, groupedByProtocol, guardForVmPortsOnly, withoutGuard } from '../../bench/lib/dataplane-anatomy.js'

const listing = (name: string, rules: string[], base = false) =>
  ['table bridge t {', `\tchain ${name} {`, ...(base ? ['\t\ttype filter hook postrouting priority -150; policy accept;'] : []), ...rules.map((r) => `\t\t${r}`), '\t}', '}', ''].join('\n')

const VM_CHAIN = listing('vm_x_o', [
  'ip saddr 198.51.100.1 tcp dport 1000 counter packets 5 bytes 300 drop comment "r:91f37fad:r0"',
  'udp dport 1148 counter packets 0 bytes 0 drop comment "r:a9799da0:r4"',
  'tcp dport 1074-1079 counter packets 0 bytes 0 drop comment "r:b0512962:r2"',
  'counter packets 9 bytes 900 accept comment "d:b118f6fd:vm-x"',
])

const DHCP_FROM_VM = [
  'udp sport 67 iifname @b_dhcp_server_from_vm drop comment "b:cc992fc4:dhcp-server-from-vm"',
  'udp sport 547 iifname @b_dhcp6_server_from_vm drop comment "b:e972eb76:dhcp6-server-from-vm"',
  'udp sport 68 udp dport 67 iifname @b_dhcp_client accept comment "b:fa2338bd:dhcp-client"',
  'udp sport 546 udp dport 547 iifname @b_dhcp6_client accept comment "b:cfd27d56:dhcp6-client"',
]
const GUARD = {
  guardIp: listing('guard_ip', ['ip saddr 0.0.0.0 udp sport 68 udp dport 67 iifname @b_dhcp_discover accept comment "b:71982e80:dhcp-discover"', 'iifname . ip saddr != @id_ipv4 iifname @b_ip_spoof drop comment "b:4a4f574c:ip-spoof"', ...DHCP_FROM_VM]),
  guardIp6: listing('guard_ip6', ['iifname . ip6 saddr != @id_ipv6 iifname @b_ip6_spoof drop comment "b:0154d553:ip6-spoof"', ...DHCP_FROM_VM, 'icmpv6 type @ndp_from_vm iifname @b_ndp accept comment "b:daeb1633:ndp"']),
  postrouting: listing(
    'postrouting',
    [
      'ether type arp oifname @b_arp_in accept comment "b:8990a3d5:arp"',
      'udp sport 67 udp dport 68 oifname @b_dhcp_reply_in accept comment "b:a02efa57:dhcp-reply"',
      'udp sport 547 udp dport 546 oifname @b_dhcp6_reply_in accept comment "b:18c8b977:dhcp6-reply"',
      'oifname vmap @to_vm',
    ],
    true,
  ),
}

describe('data-plane anatomy', () => {
  it('reads a chain back as addable rules (no counter values, no base chain header)', () => {
    expect(chainRuleLines(VM_CHAIN)[0]).toBe('ip saddr 198.51.100.1 tcp dport 1000 counter drop comment "r:91f37fad:r0"')
    expect(chainRuleLines(GUARD.postrouting)).toHaveLength(4)
    expect(defaultOnly('t', 'vm_x_o', VM_CHAIN).split('\n')).toEqual(['flush chain bridge t vm_x_o', 'add rule bridge t vm_x_o counter accept comment "d:b118f6fd:vm-x"'])
    expect(withoutGuard('t')).toContain('add rule bridge t prerouting iifname vmap @from_vm')
  })

  it('groups a chain by L4 protocol, each group in its order, the default last', () => {
    expect(groupedByProtocol('t', 'vm_x_o', VM_CHAIN)!.split('\n')).toEqual([
      'flush chain bridge t vm_x_o',
      'add chain bridge t vm_x_o_tcp',
      'add rule bridge t vm_x_o_tcp ip saddr 198.51.100.1 tcp dport 1000 counter drop comment "r:91f37fad:r0"',
      'add rule bridge t vm_x_o_tcp tcp dport 1074-1079 counter drop comment "r:b0512962:r2"',
      'add chain bridge t vm_x_o_udp',
      'add rule bridge t vm_x_o_udp udp dport 1148 counter drop comment "r:a9799da0:r4"',
      'add rule bridge t vm_x_o meta l4proto tcp jump vm_x_o_tcp',
      'add rule bridge t vm_x_o meta l4proto udp jump vm_x_o_udp',
      'add rule bridge t vm_x_o counter accept comment "d:b118f6fd:vm-x"',
    ])
    // A rule for any protocol would have to keep its place between the others: no grouping.
    const mixed = listing('vm_x_o', ['ip saddr 198.51.100.1 counter drop comment "r:1:a"', 'udp dport 1 counter drop comment "r:2:b"', 'counter accept comment "d:3:c"'])
    expect(groupedByProtocol('t', 'vm_x_o', mixed)).toBeUndefined()
  })

  it('puts the DHCP checks behind one port-set jump where the first one was', () => {
    const text = dhcpBehindPortSet('t', GUARD)!.split('\n')
    const rulesOf = (chain: string) => text.filter((l) => l.startsWith(`add rule bridge t ${chain} `)).map((l) => l.slice(`add rule bridge t ${chain} `.length))
    expect(rulesOf('guard_dhcp')).toEqual(DHCP_FROM_VM)
    expect(rulesOf('guard_ip').map((r) => r.split(' comment')[0]!.slice(0, 20))).toEqual(['ip saddr 0.0.0.0 udp', 'iifname . ip saddr !', 'udp sport { 67, 68, '])
    expect(rulesOf('guard_ip6').at(-1)).toContain('"b:daeb1633:ndp"')
    expect(rulesOf('guard_ip6')[1]).toBe('udp sport { 67, 68, 546, 547 } jump guard_dhcp')
    expect(rulesOf('postrouting')).toEqual(['ether type arp oifname @b_arp_in accept comment "b:8990a3d5:arp"', 'udp sport { 67, 547 } jump guard_dhcp_in', 'oifname vmap @to_vm'])
    expect(dhcpBehindPortSet('t', { ...GUARD, postrouting: listing('postrouting', ['oifname vmap @to_vm'], true) })).toBeUndefined()
  })
  it('puts the guard behind one tap-set lookup each way, the dispatch last', () => {
    const prerouting = listing(
      'prerouting',
      ['iifname . ether saddr != @id_mac iifname @b_mac_spoof drop comment "b:11e956ba:mac-spoof"', 'ether type vmap { ip : jump guard_ip } comment "b:c22df4f2:guard"', 'iifname vmap @from_vm'],
      true,
    )
    const text = guardForVmPortsOnly('t', { prerouting, postrouting: GUARD.postrouting })!.split('\n')
    expect(text.filter((l) => l.startsWith('add rule bridge t prerouting '))).toEqual(['add rule bridge t prerouting iifname @b_arp jump guard_from_vm', 'add rule bridge t prerouting iifname vmap @from_vm'])
    expect(text.filter((l) => l.startsWith('add rule bridge t guard_from_vm '))).toHaveLength(2)
    expect(text.filter((l) => l.startsWith('add rule bridge t guard_to_vm '))).toHaveLength(3)
    expect(text.filter((l) => l.startsWith('add rule bridge t postrouting ')).at(-1)).toBe('add rule bridge t postrouting oifname vmap @to_vm')
    expect(guardForVmPortsOnly('t', { prerouting: listing('prerouting', ['iifname vmap @from_vm'], true), postrouting: GUARD.postrouting })).toBeUndefined()
  })
})
