// Rulesets of the "commit cost levers" workload (issue 15), as nft text (pure: no I/O, unit-tested).
//   A  identity rules per VM: each VM's out chain carries its own identity rules (MAC/ARP/IPv4/IPv6
//      anti-spoofing, VLAN, DHCP, RA, NDP: the list of builtinsOut in ts/firewall/compile.ts), its in chain
//      the inbound builtins, both then the VM's user rules and a default. One table.
//   B  shared identity sets: those checks are a few rules in the base chains over concatenated-set
//      lookups (`iifname . ether saddr != @vm_mac`, ...); each VM contributes set elements only, its chains
//      keep the user rules and the default.
//   C  B spread over K tables ("shards"), each with its own base chains at the same hook and priority, its
//      own dispatch maps and sets; VM i lives in shard i mod K. B is C with K = 1.
//   B2 B's sets, protocol-dispatched guard: the prerouting chain checks the MAC once, then
//      `ether type vmap { ip : jump guard_ip, ... }` sends a frame to the guard chain of its protocol only
//      (regular chains, each referenced once), which returns to the `iifname vmap @from_vm` dispatch.
//   B3 B2 with a positive identity lookup per protocol: `iifname . ether saddr . ip saddr @vm_id4` (MAC and
//      address in one lookup) jumps past the negated per-field checks, which only frames failing it walk.
//   E  B2's guard, and the VMs' rules as elements too: no VM chains; after the guard, one verdict-map lookup per
//      rule shape (`iifname . ip saddr . meta l4proto . th dport vmap @out_s4`, ...; intervals: the kernel's
//      pipapo sets) and a per-VM default (`iifname vmap @out_default`), the same in postrouting by oifname. A
//      VM's rules are elements whose verdicts are accept/drop, never a jump: a replace adds no rule and no
//      chain-reaching element, so the kernel validates nothing. Exact only for policies whose rules of
//      different shapes do not overlap (shapes are looked up in a fixed order, not in the rules' order), as
//      gen.ts's are.
//   Every shared rule puts its cheap matches and its identity lookup before the tap-membership lookup
//   (`iifname . ether saddr != @vm_mac iifname @spoof_taps`), so a frame that passes walks one lookup per check.
// Every rule of a VM chain comes from gen.ts (`vmRule`): none matches the data-plane test traffic.
import { eui64LinkLocal } from '../../ts/firewall/address.js'
import type { FirewallRuleInput } from '../../ts/firewall/model.js'
import { FAMILY, vmNames, vmRule, vmRuleFields, type VmNames } from './gen.js'

/** User rules per VM chain (each chain then ends with the default rule). */
export const USER_RULES_PER_CHAIN = 10

/** gen.ts's user rules of one variant as VmFirewall rule inputs, both directions, in a form the exact table
 *  takes (`ip saddr H tcp dport P drop`, `ip daddr 203.0.113.1 udp dport P accept`, `tcp dport P-(P+5) drop`). */
export function exactRuleInputs(variant: number): FirewallRuleInput[] {
  return Array.from({ length: USER_RULES_PER_CHAIN }, (_, i) => {
    const { shape, port, addr } = vmRuleFields(i, variant)
    const r: FirewallRuleInput = { id: `r${i}`, name: `r${i}`, direction: 'INOUT', priority: i }
    if (shape === 'saddr-port') return { ...r, action: 'DROP', protocol: 'tcp', srcIpAddr: addr, dstPortStart: port }
    if (shape === 'daddr-prefix-port') return { ...r, action: 'ACCEPT', protocol: 'udp', dstIpAddr: '203.0.113.1', dstPortStart: port }
    return { ...r, action: 'DROP', protocol: 'tcp', dstPortStart: port, dstPortEnd: port + 5 }
  })
}

export type LeverVariant = 'A' | 'B' | 'B2' | 'B3' | 'E' | 'F' | 'G'

export interface LeverSpec {
  /**
   * 'A': identity rules in each VM's chains; 'B': shared identity rules over sets (C when shards > 1);
   * 'B2': B's sets behind a protocol dispatch to guard chains; 'B3': B2 with one positive identity lookup per protocol;
   * 'E': B2 with the VMs' rules as verdict-map elements (no VM chains); 'F': E with exact keys in hash maps
   * (no intervals: a port range is spelled as its ports, the prefix rule matches one address); 'G': F with a lookup
   * for every shape of a compiler's catalogue, the shapes F's rules do not use looking up empty maps.
   */
  variant: LeverVariant
  /** Tables the VMs are spread over (1 except for B). */
  shards: number
}

/** What a variant is made of: every special case of the generator reads it here. */
interface VariantTraits {
  /** Identity checks: rules in each VM's chains (A), or shared rules over per-VM set elements. */
  identity: 'per-vm' | 'shared'
  /** The shared identity rules: B's flat list, B2's protocol dispatch to guard chains, B3's guards with a
   *  positive lookup first. */
  guard: 'none' | 'flat' | 'protocol' | 'positive'
  /** A VM's rules: in its chains, or elements of interval (E) / hash (F) verdict maps. */
  rules: 'chains' | 'interval-elements' | 'exact-elements'
  /** E, F, G: the rule shapes looked up: those of gen.ts's rules, or the whole catalogue (G). */
  shapes?: 'used' | 'catalogue'
}

const TRAITS: Record<LeverVariant, VariantTraits> = {
  A: { identity: 'per-vm', guard: 'none', rules: 'chains' },
  B: { identity: 'shared', guard: 'flat', rules: 'chains' },
  B2: { identity: 'shared', guard: 'protocol', rules: 'chains' },
  B3: { identity: 'shared', guard: 'positive', rules: 'chains' },
  E: { identity: 'shared', guard: 'protocol', rules: 'interval-elements', shapes: 'used' },
  F: { identity: 'shared', guard: 'protocol', rules: 'exact-elements', shapes: 'used' },
  G: { identity: 'shared', guard: 'protocol', rules: 'exact-elements', shapes: 'catalogue' },
}

const traits = (s: LeverSpec): VariantTraits => TRAITS[s.variant]

/** Identity checks over shared sets (every variant but A). */
export const sharedIdentity = (s: LeverSpec): boolean => traits(s).identity === 'shared'

/** The VMs' rules as verdict-map elements, no VM chains (E, F, G). */
export const rulesAsElements = (s: LeverSpec): boolean => traits(s).rules !== 'chains'

/** Guard chains behind a protocol dispatch (B2, B3, E, F, G). */
const guarded = (s: LeverSpec): boolean => traits(s).guard === 'protocol' || traits(s).guard === 'positive'
/** B3's positive lookups of MAC and address together. */
const positive = (s: LeverSpec): boolean => traits(s).guard === 'positive'

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

export const LEVER_VARIANTS: readonly LeverVariant[] = ['A', 'B', 'B2', 'B3', 'E', 'F', 'G']

/** The specs measured at `vms` VMs: A, B, B2, B3, E, F, G (those of `variants`), then C for each shard count 1 < K ≤ vms. */
export function leverSpecs(vms: number, shards: number[], variants: readonly LeverVariant[] = LEVER_VARIANTS): LeverSpec[] {
  const one = LEVER_VARIANTS.filter((v) => v === 'A' || variants.includes(v)).map((variant) => ({ variant, shards: 1 }))
  return [...one, ...[...new Set(shards)].filter((k) => k > 1 && k <= vms).sort((a, b) => a - b).map((k) => ({ variant: 'B' as const, shards: k }))]
}

export function specLabel(s: LeverSpec): string {
  switch (s.variant) {
    case 'A':
      return 'A identity rules'
    case 'B2':
      return 'B2 protocol guard'
    case 'B3':
      return 'B3 positive lookup'
    case 'E':
      return 'E rules as elements'
    case 'F':
      return 'F exact-key elements'
    case 'G':
      return 'G F + empty shapes'
    default:
      return s.shards === 1 ? 'B shared sets' : `C ${s.shards} shards`
  }
}

export function shardOf(index: number, shards: number): number {
  return index % shards
}

export function leverTable(s: LeverSpec, shard = 0): string {
  return sharedIdentity(s) ? `bench_lv_s${shard}` : 'bench_lv'
}

const shardCount = (s: LeverSpec) => (traits(s).guard === 'flat' ? s.shards : 1)

/** The table holding VM `index`. */
export function tableOf(s: LeverSpec, index: number): string {
  return leverTable(s, shardOf(index, shardCount(s)))
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
/** B3 adds one set per protocol holding MAC and address together. */
const ID_SETS_B3: [string, string][] = [
  ['vm_id4', 'ifname . ether_addr . ipv4_addr'],
  ['vm_id6', 'ifname . ether_addr . ipv6_addr'],
]
const idSets = (s: LeverSpec) => (positive(s) ? [...ID_SETS, ...ID_SETS_B3] : ID_SETS)

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

/** B2/B3: the DHCP guards from a VM, membership lookup last (every frame of a VM's protocol walks the four cheap matches only). */
const dhcpOutLast = (): string[] => [
  `meta l4proto udp udp sport 67 iifname @dhcp_taps counter drop comment "b:dhcp-server-from-vm"`,
  `meta l4proto udp udp sport 547 iifname @dhcp_taps counter drop comment "b:dhcp6-server-from-vm"`,
  `meta l4proto udp udp sport 68 udp dport 67 iifname @dhcp_taps counter accept comment "b:dhcp-client"`,
  `meta l4proto udp udp sport 546 udp dport 547 iifname @dhcp_taps counter accept comment "b:dhcp6-client"`,
]
const MAC_CHECK = `iifname . ether saddr != @vm_mac iifname @spoof_taps counter drop comment "b:mac-spoof"`
/** B2/B3: the protocol dispatch of the prerouting chain (a constant anonymous verdict map, validated once). */
export const GUARD_DISPATCH = 'ether type vmap { ip : jump guard_ip, ip6 : jump guard_ip6, arp : jump guard_arp, 8021q : jump guard_vlan, 8021ad : jump guard_vlan }'

/**
 * B2/B3: the regular chains the protocol dispatch jumps to, name → rules, in the order of A's per-VM rules for
 * that protocol (A's accepts stay accepts, everything else falls off the end and returns to the base chain).
 * B3's guard_ip/guard_ip6 start with one positive lookup of MAC and address together; a frame it finds goes to
 * the `_tail` chain (goto: its end still returns to the base chain), the others walk the per-field checks first.
 */
export function guardChains(s: LeverSpec): [string, string[]][] {
  const b3 = positive(s)
  const ip = [
    ...(b3 ? [MAC_CHECK] : []),
    `ip saddr 0.0.0.0 meta l4proto udp udp sport 68 udp dport 67 iifname @dhcp_taps counter accept comment "b:dhcp-discover"`,
    `iifname . ip saddr != @vm_ipv4 iifname @spoof4_taps counter drop comment "b:ip-spoof"`,
  ]
  const ip6 = [
    ...(b3 ? [MAC_CHECK] : []),
    `ip6 saddr :: icmpv6 type @dad_mld iifname @spoof6_taps counter accept comment "b:ip6-unspecified"`,
    `iifname . ip6 saddr != @vm_ipv6 iifname @spoof6_taps counter drop comment "b:ip6-spoof"`,
  ]
  const ip6Tail = [`icmpv6 type @ra_redirect iifname @spoof_taps counter drop comment "b:ra-from-vm"`, ...dhcpOutLast(), `icmpv6 type @ndp_from_vm counter accept comment "b:ndp"`]
  const arp = [
    ...(b3 ? [MAC_CHECK] : []),
    `iifname . arp saddr ether != @vm_mac iifname @spoof_taps counter drop comment "b:arp-mac-spoof"`,
    `arp saddr ip != 0.0.0.0 iifname . arp saddr ip != @vm_ipv4 iifname @spoof4_taps counter drop comment "b:arp-ip-spoof"`,
    `counter accept comment "b:arp"`,
  ]
  const vlan = [`iifname @spoof_taps counter drop comment "b:vlan-from-vm"`]
  if (!b3) return [['guard_ip', [...ip, ...dhcpOutLast()]], ['guard_ip6', [...ip6, ...ip6Tail]], ['guard_arp', arp], ['guard_vlan', vlan]]
  return [
    ['guard_ip', [`iifname . ether saddr . ip saddr @vm_id4 goto guard_ip_tail comment "b:id4"`, ...ip, 'goto guard_ip_tail']],
    ['guard_ip_tail', dhcpOutLast()],
    ['guard_ip6', [`iifname . ether saddr . ip6 saddr @vm_id6 goto guard_ip6_tail comment "b:id6"`, ...ip6, 'goto guard_ip6_tail']],
    ['guard_ip6_tail', ip6Tail],
    ['guard_arp', arp],
    ['guard_vlan', vlan],
  ]
}

/**
 * B2/B3: the prerouting base chain. B2 checks the MAC of every frame once, then dispatches on the protocol;
 * B3 checks it inside the guards (its positive lookups include the MAC) and here only for the other protocols.
 * No `not-here` rule: in one table the guards' membership lookups come last, so frames of other ports pay
 * them only where an identity lookup fails.
 */
export function guardRulesPre(s: LeverSpec): string[] {
  if (positive(s)) return [GUARD_DISPATCH, `ether type != { ip, ip6, arp, 8021q, 8021ad } ${MAC_CHECK}`, 'iifname vmap @from_vm']
  return [MAC_CHECK, GUARD_DISPATCH, ...(rulesAsElements(s) ? policyRules(s, 'out') : ['iifname vmap @from_vm'])]
}

/** B2/B3: the postrouting base chain: A's inbound builtins (membership lookup last), then the dispatch. */
export function guardRulesPost(s?: LeverSpec): string[] {
  return [
    `ether type arp counter accept comment "b:arp"`,
    `icmpv6 type @ndp_to_vm counter accept comment "b:ndp"`,
    `meta l4proto udp udp sport 67 udp dport 68 oifname @dhcp_taps counter accept comment "b:dhcp-reply"`,
    `meta l4proto udp udp sport 547 udp dport 546 oifname @dhcp_taps counter accept comment "b:dhcp6-reply"`,
    ...(s && rulesAsElements(s) ? policyRules(s, 'in') : ['oifname vmap @to_vm']),
  ]
}

/** E, F, G: the rule shapes of gen.ts's `vmRule` (by `i % 3`), each a verdict map keyed by the port and the rule's fields. */
const POLICY_SHAPES = [
  { name: 's4', key: 'ip saddr . meta l4proto . th dport', type: 'ipv4_addr . inet_proto . inet_service' },
  { name: 'd4', key: 'ip daddr . meta l4proto . th dport', type: 'ipv4_addr . inet_proto . inet_service' },
  { name: 'p', key: 'meta l4proto . th dport', type: 'inet_proto . inet_service' },
] as const

/**
 * G: the other shapes a compiler of exact rules needs (one protocol, at most one port, at most one host, either
 * family; 14 shapes), which no rule of gen.ts uses: each frame looks them up in empty maps. Measures what a fixed
 * catalogue costs the data plane against looking up only the shapes in use.
 */
const CATALOGUE_SHAPES = [
  { name: 's6', key: 'ip6 saddr . meta l4proto . th dport', type: 'ipv6_addr . inet_proto . inet_service' },
  { name: 'd6', key: 'ip6 daddr . meta l4proto . th dport', type: 'ipv6_addr . inet_proto . inet_service' },
  { name: 'l', key: 'meta l4proto', type: 'inet_proto' },
  { name: 's4l', key: 'ip saddr . meta l4proto', type: 'ipv4_addr . inet_proto' },
  { name: 'd4l', key: 'ip daddr . meta l4proto', type: 'ipv4_addr . inet_proto' },
  { name: 's6l', key: 'ip6 saddr . meta l4proto', type: 'ipv6_addr . inet_proto' },
  { name: 'd6l', key: 'ip6 daddr . meta l4proto', type: 'ipv6_addr . inet_proto' },
  { name: 'h4s', key: 'ip saddr', type: 'ipv4_addr' },
  { name: 'h4d', key: 'ip daddr', type: 'ipv4_addr' },
  { name: 'h6s', key: 'ip6 saddr', type: 'ipv6_addr' },
  { name: 'h6d', key: 'ip6 daddr', type: 'ipv6_addr' },
] as const

const shapesOf = (s: LeverSpec) => (traits(s).shapes === 'catalogue' ? [...POLICY_SHAPES, ...CATALOGUE_SHAPES] : POLICY_SHAPES)

const portOf = (dir: 'out' | 'in') => (dir === 'out' ? 'iifname' : 'oifname')

/** E, F, G: one lookup per rule shape, then the VM's default (counted: the data-plane check that traffic got here). */
export function policyRules(s: LeverSpec, dir: 'out' | 'in'): string[] {
  const port = portOf(dir)
  return [...shapesOf(s).map((sh) => `${port} . ${sh.key} vmap @${dir}_${sh.name}`), `counter ${port} vmap @${dir}_default comment "default"`]
}

/** E, F, G: the maps of the policy lookups (name, declaration body); E's are interval maps (pipapo), F's and G's hash maps. */
function policyMaps(s: LeverSpec): [string, string][] {
  const flags = traits(s).rules === 'interval-elements' ? ' flags interval ;' : ''
  return (['out', 'in'] as const).flatMap((dir) => [
    ...shapesOf(s).map((sh): [string, string] => [`${dir}_${sh.name}`, `type ifname . ${sh.type} : verdict ;${flags}`]),
    [`${dir}_default`, 'type ifname : verdict ;'] as [string, string],
  ])
}

/**
 * E, F, G: VM `tap`'s rules of `variant` as map elements (`map` → elements), both directions, the default included.
 * F has exact keys only: `tcp dport P-(P+5)` becomes six elements, and `ip daddr 203.0.113.0/24` becomes the one
 * address 203.0.113.1 (a hash map cannot hold a prefix; that rule matches less than gen.ts's, no test traffic either way).
 */
export function policyElements(s: LeverSpec, tap: string, variant: number): Map<string, string[]> {
  const exact = traits(s).rules === 'exact-elements'
  const m = new Map<string, string[]>()
  const push = (map: string, e: string) => (m.get(map) ?? m.set(map, []).get(map)!).push(e)
  for (const dir of ['out', 'in'] as const) {
    for (let i = 0; i < USER_RULES_PER_CHAIN; i++) {
      const { shape, port, addr } = vmRuleFields(i, variant)
      if (shape === 'saddr-port') push(`${dir}_s4`, `"${tap}" . ${addr} . tcp . ${port} : drop`)
      else if (shape === 'daddr-prefix-port') push(`${dir}_d4`, `"${tap}" . ${exact ? '203.0.113.1' : '203.0.113.0/24'} . udp . ${port} : accept`)
      else if (!exact) push(`${dir}_p`, `"${tap}" . tcp . ${port}-${port + 5} : drop`)
      else for (let p = port; p <= port + 5; p++) push(`${dir}_p`, `"${tap}" . tcp . ${p} : drop`)
    }
    push(`${dir}_default`, `"${tap}" : accept`)
  }
  return m
}

function policyElementText(s: LeverSpec, verb: 'add' | 'delete', table: string, tap: string, variant: number, withDefault = true): string[] {
  return [...policyElements(s, tap, variant)].filter(([map]) => withDefault || !map.endsWith('_default')).map(([map, e]) => `${verb} element ${FAMILY} ${table} ${map} { ${e.join(', ')} }`)
}

/** Elements one replace deletes and adds (E, F, G; the default stays). */
export function replaceElementCount(s: LeverSpec): number {
  if (!rulesAsElements(s)) return 0
  return [...policyElements(s, 'x', 0)].filter(([map]) => !map.endsWith('_default')).reduce((n, [, e]) => n + e.length, 0)
}

/** Rules of the base and guard chains of a table (all but the VM chains). */
export function sharedRuleCount(s: LeverSpec): number {
  if (!sharedIdentity(s)) return 2
  if (!guarded(s)) return sharedRulesPre().length + sharedRulesPost().length
  return guardRulesPre(s).length + guardRulesPost(s).length + guardChains(s).reduce((n, [, r]) => n + r.length, 0)
}

/** Chains whose counters tagged `ip-spoof"` count the spoofed frames VM `index` sends (the data-plane check). */
export function spoofChains(s: LeverSpec, index: number): string[] {
  if (!sharedIdentity(s)) return [vmNames(index).out]
  if (!guarded(s)) return ['pre']
  return ['guard_ip', 'guard_arp']
}

/** The chain whose rule tagged `comment "default"` counts the frames of VM `index` that reached its default. */
export function defaultChain(s: LeverSpec, index: number): string {
  return rulesAsElements(s) ? 'pre' : vmNames(index).out
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
  if (rulesAsElements(s)) return { out: [], in: [] }
  const u = userRules(variant)
  return !sharedIdentity(s) ? { out: [...identityRulesOut(id), ...u], in: [...builtinRulesIn(), ...u] } : { out: u, in: u }
}

/** Variants B*: the identity elements of one VM, one command per set (B3 also fills its MAC . address sets). */
export function identityElements(s: LeverSpec, verb: 'add' | 'delete', table: string, tap: string, id: Identity): string[] {
  const ll = eui64LinkLocal(id.mac)
  const l = [
    `${verb} element ${FAMILY} ${table} vm_mac { "${tap}" . ${id.mac} }`,
    `${verb} element ${FAMILY} ${table} vm_ipv4 { "${tap}" . ${id.ipv4} }`,
    `${verb} element ${FAMILY} ${table} vm_ipv6 { "${tap}" . ${ll}, "${tap}" . ${id.ipv6} }`,
  ]
  if (positive(s)) {
    l.push(
      `${verb} element ${FAMILY} ${table} vm_id4 { "${tap}" . ${id.mac} . ${id.ipv4} }`,
      `${verb} element ${FAMILY} ${table} vm_id6 { "${tap}" . ${id.mac} . ${ll}, "${tap}" . ${id.mac} . ${id.ipv6} }`,
    )
  }
  return l
}

/** Identity elements one VM holds (a concatenation per element). */
export function identityElementCount(s: LeverSpec): number {
  return !sharedIdentity(s) ? 0 : positive(s) ? 7 : 4
}

function tableText(s: LeverSpec, table: string): string[] {
  const l = [`add table ${FAMILY} ${table}`]
  for (const [name, type, elem] of CONST_SETS) l.push(`add set ${FAMILY} ${table} ${name} { type ${type} ; elements = { ${elem.join(', ')} } ; }`)
  if (sharedIdentity(s)) {
    for (const name of TAP_SETS) l.push(`add set ${FAMILY} ${table} ${name} { type ifname ; }`)
    for (const [name, type] of idSets(s)) l.push(`add set ${FAMILY} ${table} ${name} { type ${type} ; }`)
  }
  if (rulesAsElements(s)) for (const [name, body] of policyMaps(s)) l.push(`add map ${FAMILY} ${table} ${name} { ${body} }`)
  else l.push(`add map ${FAMILY} ${table} from_vm { type ifname : verdict ; }`, `add map ${FAMILY} ${table} to_vm { type ifname : verdict ; }`)
  const guards = guarded(s) ? guardChains(s) : []
  for (const [name] of guards) l.push(`add chain ${FAMILY} ${table} ${name}`)
  l.push(`add chain ${FAMILY} ${table} pre { type filter hook prerouting priority 0 ; policy accept ; }`)
  l.push(`add chain ${FAMILY} ${table} post { type filter hook postrouting priority 0 ; policy accept ; }`)
  if (traits(s).guard === 'flat') {
    for (const r of sharedRulesPre()) l.push(rule(table, 'pre', r))
    for (const r of sharedRulesPost()) l.push(rule(table, 'post', r))
  } else if (guards.length) {
    for (const [name, rules] of guards) for (const r of rules) l.push(rule(table, name, r))
    for (const r of guardRulesPre(s)) l.push(rule(table, 'pre', r))
    for (const r of guardRulesPost(s)) l.push(rule(table, 'post', r))
  } else {
    l.push(rule(table, 'pre', 'iifname vmap @from_vm'), rule(table, 'post', 'oifname vmap @to_vm'))
  }
  return l
}

function vmText(s: LeverSpec, table: string, vm: VmNames, id: Identity): string[] {
  if (rulesAsElements(s)) return [...TAP_SETS.map((set) => `add element ${FAMILY} ${table} ${set} { "${vm.tap}" }`), ...identityElements(s, 'add', table, vm.tap, id), ...policyElementText(s, 'add', table, vm.tap, 0)]
  const l = [`add chain ${FAMILY} ${table} ${vm.out}`, `add chain ${FAMILY} ${table} ${vm.in}`]
  const r = vmChainRules(s, id, 0)
  for (const x of r.out) l.push(rule(table, vm.out, x))
  for (const x of r.in) l.push(rule(table, vm.in, x))
  if (sharedIdentity(s)) {
    for (const set of TAP_SETS) l.push(`add element ${FAMILY} ${table} ${set} { "${vm.tap}" }`)
    l.push(...identityElements(s, 'add', table, vm.tap, id))
  }
  l.push(`add element ${FAMILY} ${table} from_vm { "${vm.tap}" : jump ${vm.out} }`, `add element ${FAMILY} ${table} to_vm { "${vm.tap}" : jump ${vm.in} }`)
  return l
}

/**
 * VMs `first` to `first + count - 1` as B2 writes them (chains, identity elements), with the `from_vm` / `to_vm`
 * dispatch maps and rules, for a table loaded with an element variant's layout (the mixed table of
 * results/issue-15-exact-key-elements/mixed-table-time.ts; B2's `leverReplaceText` replaces one of them).
 */
export function chainVmsText(table: string, first: number, count: number): string {
  const b2: LeverSpec = { variant: 'B2', shards: 1 }
  const l = [`add map ${FAMILY} ${table} from_vm { type ifname : verdict ; }`, `add map ${FAMILY} ${table} to_vm { type ifname : verdict ; }`]
  l.push(rule(table, 'pre', 'iifname vmap @from_vm'), rule(table, 'post', 'oifname vmap @to_vm'))
  for (let i = first; i < first + count; i++) l.push(...vmText(b2, table, vmNames(i), identity(i)))
  return l.join('\n') + '\n'
}

/** The whole ruleset (every table of the spec) with `vms` VMs; `ids` overrides the identity of some VMs. */
export function leverRulesetText(s: LeverSpec, vms: number, ids?: Identities): string {
  const shards = shardCount(s)
  const l: string[] = []
  for (let k = 0; k < shards; k++) l.push(...tableText(s, leverTable(s, k)))
  for (let i = 0; i < vms; i++) l.push(...vmText(s, tableOf(s, i), vmNames(i), identity(i, 0, ids)))
  return l.join('\n') + '\n'
}

export function deleteLeverTablesText(s: LeverSpec): string {
  const shards = shardCount(s)
  return Array.from({ length: shards }, (_, k) => `delete table ${FAMILY} ${leverTable(s, k)}`).join('\n') + '\n'
}

/**
 * Replace VM `index` (one transaction): flush both its chains, add its rules of variant `to`; in B/C also
 * swap its identity elements from those of variant `from` to those of `to`.
 */
export function leverReplaceText(s: LeverSpec, index: number, from: number, to: number, rulesFrom = from): string {
  const vm = vmNames(index)
  const table = tableOf(s, index)
  const swapIdentity = () => [...identityElements(s, 'delete', table, vm.tap, identity(index, from)), ...identityElements(s, 'add', table, vm.tap, identity(index, to))]
  // E, F and G delete their rule elements by value: those of the variant its rules are at (an identity change since the
  // last replace moved the identity on, not the rules).
  if (rulesAsElements(s)) return [...policyElementText(s, 'delete', table, vm.tap, rulesFrom, false), ...policyElementText(s, 'add', table, vm.tap, to, false), ...swapIdentity()].join('\n') + '\n'
  const l = [`flush chain ${FAMILY} ${table} ${vm.out}`, `flush chain ${FAMILY} ${table} ${vm.in}`]
  const r = vmChainRules(s, identity(index, to), to)
  for (const x of r.out) l.push(rule(table, vm.out, x))
  for (const x of r.in) l.push(rule(table, vm.in, x))
  if (sharedIdentity(s)) l.push(...swapIdentity())
  return l.join('\n') + '\n'
}

/**
 * Change VM `index`'s identity from that of variant `from` to `to` (one transaction), its user rules unchanged.
 * A: flush its out chain and add it again with the new identity rules (what a per-VM chain shape must do).
 * B*: delete the old identity elements, add the new ones; no rule, and no element with a verdict.
 */
export function leverIdentityText(s: LeverSpec, index: number, from: number, to: number): string {
  const vm = vmNames(index)
  const table = tableOf(s, index)
  if (sharedIdentity(s)) return [...identityElements(s, 'delete', table, vm.tap, identity(index, from)), ...identityElements(s, 'add', table, vm.tap, identity(index, to))].join('\n') + '\n'
  return [`flush chain ${FAMILY} ${table} ${vm.out}`, ...[...identityRulesOut(identity(index, to)), ...userRules(0)].map((x) => rule(table, vm.out, x))].join('\n') + '\n'
}

/** Rules one identity change adds (A: the whole out chain; B*: none). */
export function identityRuleCount(s: LeverSpec): number {
  return sharedIdentity(s) ? 0 : identityRulesOut(identity(0)).length + USER_RULES_PER_CHAIN + 1
}

/** Rules one replace adds (what the kernel floor sends). */
export function replaceRuleCount(s: LeverSpec): number {
  const r = vmChainRules(s, identity(0), 0)
  return r.out.length + r.in.length
}

/** Rules the kernel re-validates on a commit in the table holding VM `index` (all reachable from its base chains). */
export function validatedRules(s: LeverSpec, vms: number, index: number): number {
  // E's and F's replace adds no rule and no jump/goto element: the kernel does not validate the table at all.
  if (rulesAsElements(s)) return 0
  if (!sharedIdentity(s)) return vms * replaceRuleCount(s) + 2
  return vmsInShard(vms, shardCount(s), shardOf(index, shardCount(s))) * replaceRuleCount(s) + sharedRuleCount(s)
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
