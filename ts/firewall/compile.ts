// Rule model -> nftables JSON commands. Pure: no I/O, no native addon.
import type { NftExpression, NftOperator, NftStatement } from '../schema.js'
import type { Cidr } from './address.js'
import { eui64LinkLocal } from './address.js'
import { FirewallCapabilityError } from './errors.js'
import { addDropLogging, ruleLogChoices, type ResolvedLogDrops } from './log-drops.js'
import { mergeRules } from './merge.js'
import type { AppliedRule, ConntrackMode, Degradation, FirewallCapabilities, VmApplyResult } from './model.js'
import type { NormalizedRule, NormalizedVm } from './validate.js'
import { vmChainNames, type RuleKind, type VmIdentity } from './layout.js'
import { internRule } from './rule-identity.js'

// The layout's names and writers, for callers that know them from here.
export * from './layout.js'

export type NftExpr = NftStatement

export type Side = 'out' | 'in'

export interface CompiledRule {
  /** `r:<hash>:<ruleId>`, `m:<hash>:<ruleId>` (reply rules: the stateless reply of an ACCEPT, the answer of a
   *  REJECT), `b:<hash>:<builtin>`, `d:<hash>:<vmId>`. */
  comment: string
  expr: NftExpr[]
}

export interface CompiledVm {
  vmId: string
  tap: string
  chains: { out: string; in: string }
  out: CompiledRule[]
  in: CompiledRule[]
  /** The VM's built-ins and identities: elements of the shared guard's sets for its tap (issue 15). */
  identity: VmIdentity
  result: VmApplyResult
}

export interface CompileOptions {
  capabilities: FirewallCapabilities
  conntrack: ConntrackMode
  /** Log rules in front of the drop paths (see log-drops.ts); undefined: none. */
  logDrops?: ResolvedLogDrops
}

// ---- expression helpers ----
const match = (left: NftExpression, right: NftExpression, op: NftOperator = '=='): NftStatement => ({ match: { op, left, right } })
const payload = (protocol: string, field: string): NftExpression => ({ payload: { protocol, field } })
const meta = (key: 'l4proto' | 'protocol' | 'iifname' | 'oifname'): NftExpression => ({ meta: { key } })
const COUNTER: NftStatement = { counter: { packets: 0, bytes: 0 } }
/** `left != a`, `left != b`, ...: "not one of" without an anonymous set (see SHARED_SETS for why). */
const noneOf = (left: NftExpression, items: string[]): NftStatement[] => items.map((i) => match(left, i, '!='))

/** A rule's comment hashes its body: its matches and verdict, without the counter. */
function rule(kind: RuleKind, tag: string, expr: NftExpr[], verdict: NftExpr): CompiledRule {
  return internRule(kind, tag, [...expr, verdict], (comment) => ({ comment, expr: [...expr, COUNTER, verdict] }))
}

function addrMatch(c: Cidr, dir: 'saddr' | 'daddr'): NftExpr {
  const proto = c.family === 4 ? 'ip' : 'ip6'
  const max = c.family === 4 ? 32 : 128
  if (c.len === 0) return match(meta('protocol'), proto)
  return match(payload(proto, dir), c.len === max ? c.addr : { prefix: { addr: c.addr, len: c.len } })
}

const portMatch = (proto: string, field: 'sport' | 'dport', p: [number, number]): NftExpr =>
  match(payload(proto, field), p[0] === p[1] ? p[0] : { range: [p[0], p[1]] })

interface Traffic {
  protocol: NormalizedRule['protocol']
  family?: 4 | 6
  src?: Cidr
  dst?: Cidr
  srcPorts?: [number, number]
  dstPorts?: [number, number]
}

/** Match expressions for the traffic a rule describes (one list per nft rule: icmp without family needs none extra). */
function trafficMatch(t: Traffic): NftExpr[] {
  const e: NftExpr[] = []
  if (t.src) e.push(addrMatch(t.src, 'saddr'))
  if (t.dst) e.push(addrMatch(t.dst, 'daddr'))
  if (t.protocol === 'tcp' || t.protocol === 'udp') {
    e.push(match(meta('l4proto'), t.protocol))
    if (t.srcPorts) e.push(portMatch(t.protocol, 'sport', t.srcPorts))
    if (t.dstPorts) e.push(portMatch(t.protocol, 'dport', t.dstPorts))
  } else if (t.protocol === 'icmp') {
    e.push(match(meta('l4proto'), t.family === 4 ? 'icmp' : t.family === 6 ? 'ipv6-icmp' : '@icmp_protos'))
  }
  return e
}


/** Stateless stand-in for "established": the reply direction of an ACCEPT rule, addresses and ports swapped. */
function replyMatches(t: Traffic): NftExpr[][] {
  const src = t.dst
  const dst = t.src
  const addrs: NftExpr[] = []
  if (src) addrs.push(addrMatch(src, 'saddr'))
  if (dst) addrs.push(addrMatch(dst, 'daddr'))
  const tcp = (): NftExpr[] => [
    ...addrs,
    match(meta('l4proto'), 'tcp'),
    ...(t.dstPorts ? [portMatch('tcp', 'sport', t.dstPorts)] : []),
    ...(t.srcPorts ? [portMatch('tcp', 'dport', t.srcPorts)] : []),
    // Never a connection opening: a bare SYN is refused, SYN+ACK and everything else pass.
    match({ '&': [payload('tcp', 'flags'), ['syn', 'ack']] }, 'syn', '!='),
  ]
  const udp = (): NftExpr[] => [
    ...addrs,
    match(meta('l4proto'), 'udp'),
    ...(t.dstPorts ? [portMatch('udp', 'sport', t.dstPorts)] : []),
    ...(t.srcPorts ? [portMatch('udp', 'dport', t.srcPorts)] : []),
  ]
  const icmp = (): NftExpr[][] => {
    const out: NftExpr[][] = []
    if (t.family !== 6) out.push([...addrs, match(payload('icmp', 'type'), '@icmp_reply')])
    if (t.family !== 4) out.push([...addrs, match(payload('icmpv6', 'type'), '@icmpv6_reply')])
    return out
  }
  switch (t.protocol) {
    case 'tcp':
      return [tcp()]
    case 'udp':
      return [udp()]
    case 'icmp':
      return icmp()
    default:
      return [tcp(), udp(), ...icmp()]
  }
}

/**
 * The answers the bridge sends back to the VM for one of its own REJECTs (a TCP RST, an ICMP/ICMPv6
 * port-unreachable), admitted on the VM's inbound side. The kernel sends them out of the VM's tap without a
 * conntrack entry, so neither `established` nor the VM's rules would let them in and its default drop would
 * turn "connection refused" into a timeout. Bounded to the rejected flow reversed (addresses, ports) and to
 * RST / port-unreachable: such a packet can only end a connection that the REJECT itself forbids.
 */
function rejectAnswers(t: Traffic): NftExpr[][] {
  const addrs: NftExpr[] = []
  if (t.dst) addrs.push(addrMatch(t.dst, 'saddr'))
  if (t.src) addrs.push(addrMatch(t.src, 'daddr'))
  if (t.protocol === 'tcp') {
    return [
      [
        ...addrs,
        match(meta('l4proto'), 'tcp'),
        ...(t.dstPorts ? [portMatch('tcp', 'sport', t.dstPorts)] : []),
        ...(t.srcPorts ? [portMatch('tcp', 'dport', t.srcPorts)] : []),
        match({ '&': [payload('tcp', 'flags'), 'rst'] }, 'rst'),
      ],
    ]
  }
  const out: NftExpr[][] = []
  if (t.family !== 6) out.push([...addrs, match(payload('icmp', 'type'), 'destination-unreachable'), match(payload('icmp', 'code'), 3)])
  if (t.family !== 4) out.push([...addrs, match(payload('icmpv6', 'type'), 'destination-unreachable'), match(payload('icmpv6', 'code'), 4)])
  return out
}

const ACCEPT: NftStatement = { accept: null }
const DROP: NftStatement = { drop: null }


/**
 * What the VM puts into the shared guard (layout.ts): the built-ins that apply to it and the identities they
 * compare with, decided by the same conditions as when each VM carried them as rules of its own chains.
 */
export function vmIdentity(vm: NormalizedVm): VmIdentity {
  const spoof = vm.antiSpoofing
  const out: string[] = []
  const id: VmIdentity = { ipv4: [], ipv6: [], out, in: [] }
  if (spoof && vm.mac) {
    id.mac = vm.mac
    out.push('mac-spoof', 'arp-mac-spoof')
  }
  // VLAN-tagged frames would carry IP/ARP headers the checks never see.
  if (spoof) out.push('vlan-from-vm')
  // 0.0.0.0: ARP probes (RFC 5227) while the VM checks its address (the guard rule exempts it).
  if (spoof && vm.ipv4.length > 0) out.push('arp-ip-spoof')
  out.push('arp')
  if (vm.dhcp) out.push('dhcp-discover')
  if (spoof && vm.ipv4.length > 0) {
    out.push('ip-spoof')
    id.ipv4 = [...new Set(vm.ipv4)]
  }
  if (spoof && vm.ipv6.length > 0) {
    // The unspecified address is only legitimate for duplicate address detection and MLD.
    out.push('ip6-unspecified', 'ip6-spoof')
    id.ipv6 = [...new Set([...(vm.mac ? [eui64LinkLocal(vm.mac)] : []), ...vm.ipv6])]
  }
  if (vm.dhcp || spoof) out.push('ra-from-vm')
  if (vm.dhcp) out.push('dhcp-server-from-vm', 'dhcp6-server-from-vm', 'dhcp-client', 'dhcp6-client')
  out.push('ndp')
  id.in.push('arp', 'ndp', ...(vm.dhcp ? ['dhcp-reply', 'dhcp6-reply'] : []))
  return id
}

const CT_STATES = ['established', 'related', 'new', 'invalid'] as const

/** Compiles one validated VM into its two chains. Pure. */
export function compileVm(vm: NormalizedVm, opts: CompileOptions): CompiledVm {
  const chains = vmChainNames(vm.vmId)
  const stateful = opts.conntrack !== 'off' && opts.capabilities.bridgeConntrack
  const degradations: Degradation[] = []
  if (opts.conntrack === 'require' && !opts.capabilities.bridgeConntrack) {
    throw new FirewallCapabilityError(
      'conntrack: "require" but this kernel has no bridge connection tracking (load nf_conntrack_bridge, CONFIG_NF_CONNTRACK_BRIDGE)',
    )
  }
  if (!stateful && opts.conntrack === 'auto') {
    degradations.push({
      kind: 'stateless',
      message: 'no bridge conntrack on this kernel: stateless policy (reply rules mirror each ACCEPT rule) replaces "ct state established,related accept"',
    })
  }
  const { rules: merged, overridden } = mergeRules(vm.departmentRules, vm.rules)
  const established: Record<Side, CompiledRule[]> = { out: [], in: [] }
  if (stateful) {
    for (const side of ['out', 'in'] as const) {
      established[side].push(
        rule('b', 'established', [match({ ct: { key: 'state' } }, ['established', 'related'], 'in')], ACCEPT),
      )
    }
  }
  const user: Record<Side, CompiledRule[]> = { out: [], in: [] }
  const report: AppliedRule[] = []

  for (const r of merged) {
    const applied: AppliedRule = {
      id: r.id,
      name: r.name,
      source: r.source,
      priority: r.priority,
      applied: true,
      requestedAction: r.action,
      effective: {},
      nftRules: 0,
    }
    report.push(applied)
    const sides: Side[] = r.direction === 'OUT' ? ['out'] : r.direction === 'IN' ? ['in'] : ['out', 'in']
    const ct: NftExpr[] = []
    if (r.connectionState) {
      const states = CT_STATES.filter((s) => r.connectionState![s])
      if (stateful) {
        ct.push(match({ ct: { key: 'state' } }, states, 'in'))
      } else if (!r.connectionState.new) {
        applied.applied = false
        applied.reason = 'skipped'
        degradations.push({
          kind: 'rule-skipped',
          ruleId: r.id,
          message: `matches only ${states.join(',')} connections, which cannot be tracked here; the stateless reply rules stand in for it`,
        })
        continue
      } else if (states.length < 4) {
        degradations.push({
          kind: 'connection-state-ignored',
          ruleId: r.id,
          message: `connectionState ${states.join(',')} cannot be matched without conntrack; the rule matches regardless of state`,
        })
      }
    }
    const t: Traffic = { protocol: r.protocol, family: r.family, src: r.src, dst: r.dst, srcPorts: r.srcPorts, dstPorts: r.dstPorts }
    for (const side of sides) {
      let verdict: NftExpr
      if (r.action === 'ACCEPT') {
        verdict = ACCEPT
        applied.effective[side] = 'accept'
      } else if (r.action === 'DROP') {
        verdict = DROP
        applied.effective[side] = 'drop'
      } else if (side === 'out' && opts.capabilities.bridgeReject) {
        verdict = { reject: r.protocol === 'tcp' ? { type: 'tcp reset' } : null }
        applied.effective[side] = 'reject'
        for (const m of rejectAnswers(t)) {
          established.in.push(rule('m', r.id, m, ACCEPT))
          applied.nftRules++
        }
      } else {
        verdict = DROP
        applied.effective[side] = 'drop'
        degradations.push({
          kind: 'reject-to-drop',
          ruleId: r.id,
          message:
            side === 'in'
              ? 'REJECT on traffic to the VM (bridge postrouting) is not allowed by the kernel; dropped instead'
              : 'this kernel has no bridge reject support; dropped instead',
        })
      }
      user[side].push(rule('r', r.id, [...ct, ...trafficMatch(t)], verdict))
      applied.nftRules++
      if (!stateful && r.action === 'ACCEPT') {
        const other: Side = side === 'out' ? 'in' : 'out'
        for (const m of replyMatches(t)) {
          established[other].push(rule('m', r.id, m, ACCEPT))
          applied.nftRules++
        }
      }
    }
  }
  for (const o of overridden) {
    report.push({
      id: o.rule.id,
      name: o.rule.name,
      source: 'department',
      priority: o.rule.priority,
      applied: false,
      reason: 'overridden',
      requestedAction: o.rule.action,
      effective: {},
      nftRules: 0,
    })
  }
  const dflt = vm.defaultAction === 'accept' ? ACCEPT : DROP
  const final = rule('d', vm.vmId, [], dflt)
  const result: VmApplyResult = {
    vmId: vm.vmId,
    tap: vm.tap,
    chains,
    stateful,
    defaultAction: vm.defaultAction,
    rules: report,
    degradations,
    totalRules: report.length,
    appliedRules: report.filter((r) => r.applied).length,
  }
  const compiled: CompiledVm = {
    vmId: vm.vmId,
    tap: vm.tap,
    chains,
    out: [...established.out, ...user.out, final],
    in: [...established.in, ...user.in, final],
    identity: vmIdentity(vm),
    result,
  }
  const choices = ruleLogChoices(merged)
  return opts.logDrops || choices.size > 0 ? addDropLogging(compiled, opts.logDrops, choices) : compiled
}

// ---- commands ----

