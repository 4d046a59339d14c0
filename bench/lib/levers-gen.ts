// Rulesets of the "commit cost levers" workload (issue 15), as nft text (pure: no I/O, unit-tested).
//   A  identity rules per VM: each VM's out chain carries its own identity rules (MAC/ARP/IPv4/IPv6
//      anti-spoofing, VLAN, DHCP, RA, NDP: the list of builtinsOut in ts/firewall/compile.ts), its in chain
//      the inbound builtins, both then the VM's user rules and a default. One table.
//   B  shared identity sets: those checks are a few rules in the base chains over concatenated-set
//      lookups (`iifname . ether saddr != @vm_mac`, ...); each VM contributes set elements only, its chains
//      keep the user rules and the default.
//   C  B spread over K tables ("shards"), each with its own base chains at the same hook and priority, its
//      own dispatch maps and sets; VM i lives in shard i mod K. B is C with K = 1.
// Every rule of a VM chain comes from gen.ts (`vmRule`): none matches the data-plane test traffic.
import { eui64LinkLocal } from '../../ts/firewall/address.js'
import { FAMILY, vmNames, vmRule, type VmNames } from './gen.js'

/** User rules per VM chain (each chain then ends with the default rule). */
export const USER_RULES_PER_CHAIN = 10

export interface LeverSpec {
  /** 'A': identity rules in each VM's chains; 'B': shared identity rules over sets (C when shards > 1). */
  variant: 'A' | 'B'
  /** Tables the VMs are spread over (1 for A). */
  shards: number
}

export interface Identity {
  mac: string
  ipv4: string
  /** Global address; the EUI-64 link-local of `mac` is allowed too. */
  ipv6: string
}

export type Identities = Readonly<Record<number, Identity>>

const hex2 = (n: number) => (n & 0xff).toString(16).padStart(2, '0')

/** The identity of VM `index` in `variant` (a replace moves a VM to a new variant: its rules and identity change). */
export function identity(index: number, variant = 0, overrides?: Identities): Identity {
  const o = variant === 0 ? overrides?.[index] : undefined
  if (o) return o
  return {
    mac: `02:${hex2(variant)}:${hex2(index >> 16)}:${hex2(index >> 8)}:${hex2(index)}:01`,
    ipv4: `10.${100 + (variant % 100)}.${(index >> 8) & 255}.${index & 255}`,
    ipv6: `2001:db8:${(variant & 0xffff).toString(16)}::${(index & 0xffff).toString(16)}`,
  }
}

/** The specs measured at `vms` VMs: A, B, then C for each shard count 1 < K ≤ vms. */
export function leverSpecs(vms: number, shards: number[]): LeverSpec[] {
  return [{ variant: 'A', shards: 1 }, { variant: 'B', shards: 1 }, ...[...new Set(shards)].filter((k) => k > 1 && k <= vms).sort((a, b) => a - b).map((k) => ({ variant: 'B' as const, shards: k }))]
}

export function specLabel(s: LeverSpec): string {
  return s.variant === 'A' ? 'A identity rules' : s.shards === 1 ? 'B shared sets' : `C ${s.shards} shards`
}

export function shardOf(index: number, shards: number): number {
  return index % shards
}

export function leverTable(s: LeverSpec, shard = 0): string {
  return s.variant === 'A' ? 'bench_lv' : `bench_lv_s${shard}`
}

/** The table holding VM `index`. */
export function tableOf(s: LeverSpec, index: number): string {
  return leverTable(s, s.variant === 'A' ? 0 : shardOf(index, s.shards))
}

/** VMs of shard `shard` when `vms` VMs are spread over `shards` tables. */
export function vmsInShard(vms: number, shards: number, shard: number): number {
  return shard < vms % shards ? Math.ceil(vms / shards) : Math.floor(vms / shards)
}

const CONST_SETS: [string, string, string[]][] = [
  ['vlan_types', 'ether_type', ['8021q', '8021ad']],
  ['dad_mld', 'icmpv6_type', ['nd-neighbor-solicit', 'mld-listener-report', 'mld2-listener-report']],
  ['ra_redirect', 'icmpv6_type', ['nd-router-advert', 'nd-redirect']],
  ['ndp_from_vm', 'icmpv6_type', ['nd-router-solicit', 'nd-neighbor-solicit', 'nd-neighbor-advert', 'mld-listener-query', 'mld-listener-report', 'mld-listener-done', 'mld2-listener-report']],
  ['ndp_to_vm', 'icmpv6_type', ['nd-router-solicit', 'nd-router-advert', 'nd-neighbor-solicit', 'nd-neighbor-advert', 'mld-listener-query', 'mld-listener-report', 'mld-listener-done', 'mld2-listener-report']],
]

/** Per-VM membership sets of variant B (which taps each shared check applies to). */
const TAP_SETS = ['vm_taps', 'spoof_taps', 'spoof4_taps', 'spoof6_taps', 'dhcp_taps'] as const
/** Per-VM identity sets of variant B: name, type. */
const ID_SETS: [string, string][] = [
  ['vm_mac', 'ifname . ether_addr'],
  ['vm_ipv4', 'ifname . ipv4_addr'],
  ['vm_ipv6', 'ifname . ipv6_addr'],
]

const dhcpOut = (guard: string): string[] => [
  `${guard}meta l4proto udp udp sport 67 counter drop comment "b:dhcp-server-from-vm"`,
  `${guard}meta l4proto udp udp sport 547 counter drop comment "b:dhcp6-server-from-vm"`,
  `${guard}meta l4proto udp udp sport 68 udp dport 67 counter accept comment "b:dhcp-client"`,
  `${guard}meta l4proto udp udp sport 546 udp dport 547 counter accept comment "b:dhcp6-client"`,
]

/** Variant A: the outbound identity rules of one VM (the order and forms of compile.ts builtinsOut). */
export function identityRulesOut(id: Identity): string[] {
  const ll = eui64LinkLocal(id.mac)
  return [
    `ether saddr != ${id.mac} counter drop comment "b:mac-spoof"`,
    `arp saddr ether != ${id.mac} counter drop comment "b:arp-mac-spoof"`,
    `ether type @vlan_types counter drop comment "b:vlan-from-vm"`,
    `arp saddr ip != 0.0.0.0 arp saddr ip != ${id.ipv4} counter drop comment "b:arp-ip-spoof"`,
    `ether type arp counter accept comment "b:arp"`,
    `ip saddr 0.0.0.0 meta l4proto udp udp sport 68 udp dport 67 counter accept comment "b:dhcp-discover"`,
    `ip saddr != ${id.ipv4} counter drop comment "b:ip-spoof"`,
    `ip6 saddr :: icmpv6 type @dad_mld counter accept comment "b:ip6-unspecified"`,
    `ip6 saddr != ${ll} ip6 saddr != ${id.ipv6} counter drop comment "b:ip6-spoof"`,
    `icmpv6 type @ra_redirect counter drop comment "b:ra-from-vm"`,
    ...dhcpOut(''),
    `icmpv6 type @ndp_from_vm counter accept comment "b:ndp"`,
  ]
}

/** Inbound builtins of one VM (compile.ts builtinsIn); `dhcpGuard` prefixes the DHCP replies (variant B). */
export function builtinRulesIn(dhcpGuard = ''): string[] {
  return [
    `ether type arp counter accept comment "b:arp"`,
    `icmpv6 type @ndp_to_vm counter accept comment "b:ndp"`,
    `${dhcpGuard}meta l4proto udp udp sport 67 udp dport 68 counter accept comment "b:dhcp-reply"`,
    `${dhcpGuard}meta l4proto udp udp sport 547 udp dport 546 counter accept comment "b:dhcp6-reply"`,
  ]
}

/**
 * Variant B: the shared rules of a table's prerouting base chain (traffic from a VM), in the order of A's
 * per-VM rules, then the dispatch. The first rule lets frames from ports that have no VM in this table leave
 * the table's chain at once (with shards, a frame passes every table's base chains: one lookup each instead
 * of all the shared rules).
 */
export function sharedRulesPre(): string[] {
  return [
    `iifname != @vm_taps accept comment "b:not-here"`,
    `iifname @spoof_taps iifname . ether saddr != @vm_mac counter drop comment "b:mac-spoof"`,
    `iifname @spoof_taps iifname . arp saddr ether != @vm_mac counter drop comment "b:arp-mac-spoof"`,
    `iifname @spoof_taps ether type @vlan_types counter drop comment "b:vlan-from-vm"`,
    `iifname @spoof4_taps arp saddr ip != 0.0.0.0 iifname . arp saddr ip != @vm_ipv4 counter drop comment "b:arp-ip-spoof"`,
    `ether type arp counter accept comment "b:arp"`,
    `iifname @dhcp_taps ip saddr 0.0.0.0 meta l4proto udp udp sport 68 udp dport 67 counter accept comment "b:dhcp-discover"`,
    `iifname @spoof4_taps iifname . ip saddr != @vm_ipv4 counter drop comment "b:ip-spoof"`,
    `iifname @spoof6_taps ip6 saddr :: icmpv6 type @dad_mld counter accept comment "b:ip6-unspecified"`,
    `iifname @spoof6_taps iifname . ip6 saddr != @vm_ipv6 counter drop comment "b:ip6-spoof"`,
    `iifname @spoof_taps icmpv6 type @ra_redirect counter drop comment "b:ra-from-vm"`,
    ...dhcpOut('iifname @dhcp_taps '),
    `icmpv6 type @ndp_from_vm counter accept comment "b:ndp"`,
    `iifname vmap @from_vm`,
  ]
}

/** Variant B: the shared rules of the postrouting base chain (traffic to a VM), then the dispatch. */
export function sharedRulesPost(): string[] {
  return [`oifname != @vm_taps accept comment "b:not-here"`, ...builtinRulesIn('oifname @dhcp_taps '), `oifname vmap @to_vm`]
}

function userRules(variant: number): string[] {
  const r: string[] = []
  for (let i = 0; i < USER_RULES_PER_CHAIN; i++) r.push(vmRule(i, variant).text)
  r.push('counter accept comment "default"')
  return r
}

const rule = (table: string, chain: string, body: string) => `add rule ${FAMILY} ${table} ${chain} ${body}`

/** Rules in VM `vm`'s out and in chains. */
function vmChainRules(s: LeverSpec, id: Identity, variant: number): { out: string[]; in: string[] } {
  const u = userRules(variant)
  return s.variant === 'A' ? { out: [...identityRulesOut(id), ...u], in: [...builtinRulesIn(), ...u] } : { out: u, in: u }
}

/** Variant B: the identity elements of one VM, one command per set. */
function identityElements(verb: 'add' | 'delete', table: string, tap: string, id: Identity): string[] {
  const ll = eui64LinkLocal(id.mac)
  return [
    `${verb} element ${FAMILY} ${table} vm_mac { "${tap}" . ${id.mac} }`,
    `${verb} element ${FAMILY} ${table} vm_ipv4 { "${tap}" . ${id.ipv4} }`,
    `${verb} element ${FAMILY} ${table} vm_ipv6 { "${tap}" . ${ll}, "${tap}" . ${id.ipv6} }`,
  ]
}

function tableText(s: LeverSpec, table: string): string[] {
  const l = [`add table ${FAMILY} ${table}`]
  for (const [name, type, elem] of CONST_SETS) l.push(`add set ${FAMILY} ${table} ${name} { type ${type} ; elements = { ${elem.join(', ')} } ; }`)
  if (s.variant === 'B') {
    for (const name of TAP_SETS) l.push(`add set ${FAMILY} ${table} ${name} { type ifname ; }`)
    for (const [name, type] of ID_SETS) l.push(`add set ${FAMILY} ${table} ${name} { type ${type} ; }`)
  }
  l.push(`add map ${FAMILY} ${table} from_vm { type ifname : verdict ; }`, `add map ${FAMILY} ${table} to_vm { type ifname : verdict ; }`)
  l.push(`add chain ${FAMILY} ${table} pre { type filter hook prerouting priority 0 ; policy accept ; }`)
  l.push(`add chain ${FAMILY} ${table} post { type filter hook postrouting priority 0 ; policy accept ; }`)
  if (s.variant === 'B') {
    for (const r of sharedRulesPre()) l.push(rule(table, 'pre', r))
    for (const r of sharedRulesPost()) l.push(rule(table, 'post', r))
  } else {
    l.push(rule(table, 'pre', 'iifname vmap @from_vm'), rule(table, 'post', 'oifname vmap @to_vm'))
  }
  return l
}

function vmText(s: LeverSpec, table: string, vm: VmNames, id: Identity): string[] {
  const l = [`add chain ${FAMILY} ${table} ${vm.out}`, `add chain ${FAMILY} ${table} ${vm.in}`]
  const r = vmChainRules(s, id, 0)
  for (const x of r.out) l.push(rule(table, vm.out, x))
  for (const x of r.in) l.push(rule(table, vm.in, x))
  if (s.variant === 'B') {
    for (const set of TAP_SETS) l.push(`add element ${FAMILY} ${table} ${set} { "${vm.tap}" }`)
    l.push(...identityElements('add', table, vm.tap, id))
  }
  l.push(`add element ${FAMILY} ${table} from_vm { "${vm.tap}" : jump ${vm.out} }`, `add element ${FAMILY} ${table} to_vm { "${vm.tap}" : jump ${vm.in} }`)
  return l
}

/** The whole ruleset (every table of the spec) with `vms` VMs; `ids` overrides the identity of some VMs. */
export function leverRulesetText(s: LeverSpec, vms: number, ids?: Identities): string {
  const shards = s.variant === 'A' ? 1 : s.shards
  const l: string[] = []
  for (let k = 0; k < shards; k++) l.push(...tableText(s, leverTable(s, k)))
  for (let i = 0; i < vms; i++) l.push(...vmText(s, tableOf(s, i), vmNames(i), identity(i, 0, ids)))
  return l.join('\n') + '\n'
}

export function deleteLeverTablesText(s: LeverSpec): string {
  const shards = s.variant === 'A' ? 1 : s.shards
  return Array.from({ length: shards }, (_, k) => `delete table ${FAMILY} ${leverTable(s, k)}`).join('\n') + '\n'
}

/**
 * Replace VM `index` (one transaction): flush both its chains, add its rules of variant `to`; in B/C also
 * swap its identity elements from those of variant `from` to those of `to`.
 */
export function leverReplaceText(s: LeverSpec, index: number, from: number, to: number): string {
  const vm = vmNames(index)
  const table = tableOf(s, index)
  const l = [`flush chain ${FAMILY} ${table} ${vm.out}`, `flush chain ${FAMILY} ${table} ${vm.in}`]
  const r = vmChainRules(s, identity(index, to), to)
  for (const x of r.out) l.push(rule(table, vm.out, x))
  for (const x of r.in) l.push(rule(table, vm.in, x))
  if (s.variant === 'B') l.push(...identityElements('delete', table, vm.tap, identity(index, from)), ...identityElements('add', table, vm.tap, identity(index, to)))
  return l.join('\n') + '\n'
}

/** Rules one replace adds (what the kernel floor sends). */
export function replaceRuleCount(s: LeverSpec): number {
  const r = vmChainRules(s, identity(0), 0)
  return r.out.length + r.in.length
}

/** Rules the kernel re-validates on a commit in the table holding VM `index` (all reachable from its base chains). */
export function validatedRules(s: LeverSpec, vms: number, index: number): number {
  if (s.variant === 'A') return vms * replaceRuleCount(s) + 2
  return vmsInShard(vms, s.shards, shardOf(index, s.shards)) * replaceRuleCount(s) + sharedRulesPre().length + sharedRulesPost().length
}

/** Lines of `listing` (rules of a chain) compared with the rules as written; counters are zeroed first. */
export function roundTrip(written: string[], listing: string): { exact: number; differ: [string, string][] } {
  const listed = listing
    .split('\n')
    .map((l) => l.trim().replace(/counter packets \d+ bytes \d+/, 'counter'))
    .filter((l) => l && !l.startsWith('type ') && !l.startsWith('chain ') && !l.startsWith('table ') && l !== '}')
  let exact = 0
  const differ: [string, string][] = []
  written.forEach((w, i) => {
    if (listed[i] === w) exact++
    else differ.push([w, listed[i] ?? '(missing)'])
  })
  return { exact, differ }
}

/** Sum of the counters of the rules whose comment contains `tag`, in a chain listing. */
export function counterSum(listing: string, tag: string): number {
  let n = 0
  for (const line of listing.split('\n')) {
    if (!line.includes(tag)) continue
    const m = /counter packets (\d+)/.exec(line)
    if (m) n += Number(m[1])
  }
  return n
}
