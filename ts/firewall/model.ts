// The input model (Infinization's Prisma `FirewallRule`, plus IPv6) and the results VmFirewall returns.

export type FirewallAction = 'ACCEPT' | 'DROP' | 'REJECT'
export type FirewallDirection = 'IN' | 'OUT' | 'INOUT'
export type FirewallProtocol = 'tcp' | 'udp' | 'icmp' | 'all'
export type FirewallDefaultAction = 'accept' | 'drop'
export type ConntrackMode = 'auto' | 'require' | 'off'

export interface ConnectionStateInput {
  established?: boolean | null
  new?: boolean | null
  related?: boolean | null
  invalid?: boolean | null
}

/** One rule exactly as Infinibay's backend stores it (Prisma `FirewallRule`); addresses may be IPv4 or IPv6. */
export interface FirewallRuleInput {
  id: string
  name: string
  description?: string | null
  /** Default ACCEPT. */
  action?: FirewallAction
  /** IN = to the VM, OUT = from the VM. Default INOUT. */
  direction?: FirewallDirection
  /** Ascending: lower runs first. Default 500. */
  priority?: number
  /** 'tcp' | 'udp' | 'icmp' | 'all' (default 'all'). 'icmp' means ICMP and/or ICMPv6 as the addresses imply. */
  protocol?: string
  srcPortStart?: number | null
  srcPortEnd?: number | null
  dstPortStart?: number | null
  dstPortEnd?: number | null
  /** IPv4/IPv6 address, or CIDR (then no mask). */
  srcIpAddr?: string | null
  /** CIDR length ("24", 24) or IPv4 dotted decimal ("255.255.255.0"). */
  srcIpMask?: string | number | null
  dstIpAddr?: string | null
  dstIpMask?: string | number | null
  connectionState?: ConnectionStateInput | null
  overridesDept?: boolean | null
  /** DROP/REJECT rules: log the packets this rule blocks (rate-limited, read with `blocked()`) even when the
   *  firewall's `logDrops` does not select it (true), or never (false). Default: as `logDrops` says. */
  log?: boolean | null
}

/** Everything the firewall needs to know about one VM. */
export interface VmSpec {
  vmId: string
  /** Host-side interface of the VM (TAP or veth), 1-15 bytes. */
  tap: string
  /** The VM's MAC address (anti-spoofing; EUI-64 link-local). */
  mac?: string | null
  /** The VM's own IPv4 addresses (anti-spoofing). */
  ipv4?: string[] | null
  /** The VM's own IPv6 addresses (anti-spoofing; the MAC-derived fe80:: is added automatically). */
  ipv6?: string[] | null
  rules?: FirewallRuleInput[] | null
  departmentRules?: FirewallRuleInput[] | null
  /** Last word of both VM chains. Default 'drop'. */
  defaultAction?: FirewallDefaultAction
  /** Source MAC/IP and ARP sender checks. Default: on when `mac` or addresses are given. */
  antiSpoofing?: boolean
  /** Allow DHCP/DHCPv6 client traffic, drop DHCP/DHCPv6 server replies and router advertisements sent by the VM.
   *  Default: on when `mac` or addresses are given. */
  dhcp?: boolean
}

export interface FirewallCapabilities {
  /** `ct state` works in a bridge table (nf_conntrack_bridge). */
  bridgeConntrack: boolean
  /** `reject` works in a bridge prerouting chain (nft_reject_bridge). */
  bridgeReject: boolean
}

export type DegradationKind =
  | 'stateless' // no bridge conntrack: the stateless policy replaces `ct state established,related accept`
  | 'reject-to-drop' // REJECT compiled as drop
  | 'connection-state-ignored' // the rule's connectionState cannot be matched without conntrack; matched statelessly
  | 'rule-skipped' // the rule matches only established/related/invalid traffic: the stateless reply rules stand in

export interface Degradation {
  kind: DegradationKind
  ruleId?: string
  message: string
}

export interface AppliedRule {
  id: string
  name: string
  source: 'department' | 'vm'
  priority: number
  /** False when the rule was overridden by a VM rule or skipped (see `degradations`). */
  applied: boolean
  /** Why it was not applied: 'overridden' | 'skipped'. */
  reason?: 'overridden' | 'skipped'
  requestedAction: FirewallAction
  /** What the kernel does for this rule, per chain it was compiled into. */
  effective: { out?: 'accept' | 'drop' | 'reject'; in?: 'accept' | 'drop' | 'reject' }
  /** nftables rules generated for it (including stateless reply rules). */
  nftRules: number
}

export interface VmApplyResult {
  vmId: string
  tap: string
  chains: { out: string; in: string }
  stateful: boolean
  defaultAction: FirewallDefaultAction
  rules: AppliedRule[]
  degradations: Degradation[]
  /** Compat with Infinization's FirewallApplyResult. */
  totalRules: number
  appliedRules: number
  /** Issue 15, with the `exactTable` option: 'exact' when the VM's policy went into the exact table as
   *  elements (it then has no chains; `chains` names the ones it would have), 'chains' otherwise. */
  placement?: 'exact' | 'chains'
}

export interface SyncResult {
  added: string[]
  changed: string[]
  removed: string[]
  /** VMs whose chains matched exactly but whose dispatch (tap) needed fixing. */
  reattached: string[]
  unchanged: string[]
  /** Orphan chains removed whose VM id could not be read from the kernel. */
  removedChains: string[]
  results: Record<string, VmApplyResult>
}

export interface VmDrift {
  vmId: string
  chains: { out: string; in: string }
  status: 'ok' | 'missing' | 'changed'
  /** What differs: 'chain:<name>', 'rule:<comment>', 'dispatch:<map>' … */
  missing: string[]
  extra: string[]
  changed: string[]
}

export interface VerifyResult {
  ok: boolean
  vms: VmDrift[]
  /** VM chains in the kernel that no known VM owns (vmId when readable, else chain name); issue 15: also the
   *  elements of an unknown VM in the exact table (`elements`, its default's count included; `chains` empty). */
  orphans: { vmId?: string; chains: string[]; elements?: number }[]
  /** Problems with the table itself (missing base chains, maps, dispatch rules). */
  table: string[]
}

export interface RuleCounters {
  packets: number
  bytes: number
  out: { packets: number; bytes: number }
  in: { packets: number; bytes: number }
}

export interface VmStats {
  vmId: string
  /** Keyed by rule id (stateless reply rules count toward their rule). */
  rules: Record<string, RuleCounters>
  /** Packets that reached the default action. */
  default: RuleCounters
  /** Anti-spoofing / builtin rules, keyed by builtin name. */
  builtin: Record<string, RuleCounters>
  /** Everything the VM's chains dropped or rejected (default drop, DROP/REJECT rules, anti-spoofing), since
   *  the chains were last written. */
  dropped: RuleCounters
}

/** One VM as found in the kernel (inventory()): read from the table, not from what this instance applied. */
export interface VmInventoryEntry {
  /** From the comment of the chains' default rule; undefined if unreadable (not written by this library). */
  vmId?: string
  /** The VM's chains present in the kernel. */
  chains: string[]
  /** Interfaces dispatching to those chains (empty: detached). */
  taps: string[]
  /** nftables rules in the VM's chains. */
  rules: number
  /** Issue 15: elements of the shared guard's sets held for its taps (its identities and the built-ins that
   *  apply to it); 0 when detached. */
  guardElements?: number
  /** The action of the last rule ('accept'/'drop') when it is the library's default rule. */
  defaultAction?: 'accept' | 'drop'
  /** Issue 15: the elements the VM holds in the exact table (its rules' and its defaults'; absent: a VM with
   *  chains). */
  elements?: number
}
