// Pure tests of exact-rules.ts: which VMs' policies become exact-key elements, the elements, and that the
// elements decide every packet as compileVm's chains do. No kernel.
import { describe, expect, it } from 'vitest'
import { compileVm, type CompiledRule, type CompileOptions } from '../../ts/firewall/compile.js'
import { EXACT_RANGE_MAX, EXACT_SHAPES, exactPolicy, type ExactPolicy, type ExactRefusal } from '../../ts/firewall/exact-rules.js'
import { resolveLogDrops } from '../../ts/firewall/log-drops.js'
import type { FirewallRuleInput, VmSpec } from '../../ts/firewall/model.js'
import { normalizeVm } from '../../ts/firewall/validate.js'

const STATEFUL: CompileOptions = { capabilities: { bridgeConntrack: true, bridgeReject: true }, conntrack: 'auto' }
const NO_REJECT: CompileOptions = { capabilities: { bridgeConntrack: true, bridgeReject: false }, conntrack: 'auto' }
const spec = (rules: FirewallRuleInput[], extra: Partial<VmSpec> = {}): VmSpec => ({ vmId: 'vm-1', tap: 'vnet-a0', mac: '52:54:00:12:34:56', ipv4: ['10.0.0.5'], rules, ...extra })
const policy = (rules: FirewallRuleInput[], opts = STATEFUL, extra: Partial<VmSpec> = {}) => exactPolicy(normalizeVm(spec(rules, extra)), opts)
const elementsOf = (p: ExactPolicy | ExactRefusal): string[] => {
  if ('reason' in p) throw new Error(`refused: ${p.reason} (${p.message})`)
  return p.elements.map((e) => `${e.side} ${e.shape} ${e.key.join(' . ')} : ${e.verdict} (${e.ruleId})`)
}
const reasonOf = (p: ExactPolicy | ExactRefusal): string | undefined => ('reason' in p ? `${p.reason}${p.ruleId ? ` ${p.ruleId}` : ''}` : undefined)

// Infinization's shapes: the shared "Allow Established" rule, services by port, one host.
const ESTABLISHED: FirewallRuleInput = { id: 'est', name: 'Allow Established', priority: 50, connectionState: { established: true, related: true } }

describe('exactPolicy: which VMs fit', () => {
  it('turns a preset of services into one element per port and side, the established rule into none', () => {
    const p = policy([
      ESTABLISHED,
      { id: 'ssh', name: 'SSH', direction: 'IN', protocol: 'tcp', dstPortStart: 22, dstPortEnd: 22, priority: 100 },
      { id: 'dns', name: 'DNS', direction: 'OUT', protocol: 'udp', dstPortStart: 53, dstPortEnd: 53, dstIpAddr: '10.0.0.1', priority: 100 },
      { id: 'ping', name: 'Ping', direction: 'INOUT', protocol: 'icmp', priority: 200 },
      { id: 'smb', name: 'No SMB', direction: 'IN', action: 'DROP', protocol: 'tcp', dstPortStart: 445, priority: 10 },
    ])
    expect(elementsOf(p)).toEqual([
      'out d4lp 10.0.0.1 . udp . 53 : accept (dns)',
      'out l icmp : accept (ping)',
      'out l ipv6-icmp : accept (ping)',
      'in lp tcp . 445 : drop (smb)',
      'in lp tcp . 22 : accept (ssh)',
      'in l icmp : accept (ping)',
      'in l ipv6-icmp : accept (ping)',
    ])
    expect(p).toMatchObject({ defaultAction: 'drop', stateful: true, shapes: { out: new Set(['d4lp', 'l']), in: new Set(['lp', 'l']) } })
  })

  it('spells a short port range as its ports and refuses a wide one', () => {
    expect(elementsOf(policy([{ id: 'r', name: 'r', direction: 'OUT', protocol: 'tcp', dstPortStart: 9200, dstPortEnd: 9203 }]))).toEqual(
      [9200, 9201, 9202, 9203].map((p) => `out lp tcp . ${p} : accept (r)`),
    )
    const wide = policy([{ id: 'w', name: 'w', protocol: 'tcp', dstPortStart: 8000, dstPortEnd: 8000 + EXACT_RANGE_MAX }])
    expect(reasonOf(wide)).toBe('port-range w')
  })

  it('takes a host (/32, /128) but not a network, and not two hosts', () => {
    expect(elementsOf(policy([{ id: 'h', name: 'h', direction: 'IN', srcIpAddr: '2001:db8::7', srcIpMask: 128, action: 'DROP' }]))).toEqual(['in s6 2001:db8::7 : drop (h)'])
    expect(reasonOf(policy([{ id: 'n', name: 'n', srcIpAddr: '10.1.0.0', srcIpMask: '255.255.0.0' }]))).toBe('prefix n')
    expect(reasonOf(policy([{ id: 't', name: 't', srcIpAddr: '10.1.0.1', dstIpAddr: '10.1.0.2' }]))).toBe('two-hosts t')
    expect(reasonOf(policy([{ id: 's', name: 's', protocol: 'udp', srcPortStart: 68 }]))).toBe('source-port s')
    expect(reasonOf(policy([{ id: 'a', name: 'a', action: 'DROP' }]))).toBe('match-all a')
  })

  it('keeps the chains for what an element cannot do: stateless kernels, logging, REJECT that answers, other states', () => {
    const ssh: FirewallRuleInput = { id: 'ssh', name: 'ssh', protocol: 'tcp', dstPortStart: 22 }
    expect(reasonOf(policy([ssh], { ...STATEFUL, capabilities: { bridgeConntrack: false, bridgeReject: false } }))).toBe('stateless')
    expect(reasonOf(policy([ssh], { ...STATEFUL, conntrack: 'off' }))).toBe('stateless')
    expect(reasonOf(policy([ssh], { ...STATEFUL, logDrops: resolveLogDrops(true) }))).toBe('logged')
    expect(reasonOf(policy([{ ...ssh, action: 'DROP', log: true }]))).toBe('logged ssh')
    expect(elementsOf(policy([{ ...ssh, log: true }]))).toHaveLength(2) // an ACCEPT logs nothing
    expect(reasonOf(policy([{ ...ssh, action: 'REJECT' }]))).toBe('reject ssh')
    // Inbound, or without bridge reject, compileVm drops a REJECT: so do the elements.
    expect(elementsOf(policy([{ ...ssh, action: 'REJECT', direction: 'IN' }]))).toEqual(['in lp tcp . 22 : drop (ssh)'])
    expect(elementsOf(policy([{ ...ssh, action: 'REJECT' }], NO_REJECT))).toEqual(['out lp tcp . 22 : drop (ssh)', 'in lp tcp . 22 : drop (ssh)'])
    expect(reasonOf(policy([{ ...ssh, connectionState: { new: true } }]))).toBe('connection-state ssh')
    expect(reasonOf(policy([{ ...ssh, action: 'DROP', connectionState: { established: true } }]))).toBe('connection-state ssh')
  })

  it('takes overlapping rules of different verdicts only when the lookup order agrees with theirs', () => {
    const blockHost: FirewallRuleInput = { id: 'block', name: 'block', direction: 'IN', action: 'DROP', srcIpAddr: '192.0.2.9' }
    const web: FirewallRuleInput = { id: 'web', name: 'web', direction: 'IN', protocol: 'tcp', dstPortStart: 80 }
    // Hosts are looked up before ports: a host block ahead of a service is exact ...
    expect(elementsOf(policy([{ ...blockHost, priority: 10 }, { ...web, priority: 20 }]))).toEqual(['in s4 192.0.2.9 : drop (block)', 'in lp tcp . 80 : accept (web)'])
    // ... a service ahead of a host block is not (192.0.2.9 may reach port 80 in the chain) ...
    expect(reasonOf(policy([{ ...web, priority: 10 }, { ...blockHost, priority: 20 }]))).toBe('order-dependent block')
    // ... unless they cannot overlap (another protocol), or agree.
    expect(elementsOf(policy([{ ...web, priority: 10 }, { ...blockHost, protocol: 'udp', priority: 20 }]))).toEqual(['in lp tcp . 80 : accept (web)', 'in s4l 192.0.2.9 . udp : drop (block)'])
    expect(elementsOf(policy([{ ...web, priority: 10 }, { ...blockHost, action: 'ACCEPT', priority: 20 }]))).toHaveLength(2)
  })

  it('gives each key of a shape the verdict of the first rule that matches it', () => {
    const p = policy([
      { id: 'deny', name: 'deny', direction: 'OUT', action: 'DROP', protocol: 'tcp', dstPortStart: 1000, dstPortEnd: 1002, priority: 1 },
      { id: 'allow', name: 'allow', direction: 'OUT', protocol: 'tcp', dstPortStart: 1001, dstPortEnd: 1004, priority: 2 },
    ])
    expect(elementsOf(p)).toEqual(['out lp tcp . 1000 : drop (deny)', 'out lp tcp . 1001 : drop (deny)', 'out lp tcp . 1002 : drop (deny)', 'out lp tcp . 1003 : accept (allow)', 'out lp tcp . 1004 : accept (allow)'])
  })
})

// ---- the chains' semantics, read from compileVm's output ----

interface Packet {
  family: 4 | 6
  saddr: string
  daddr: string
  l4: 'tcp' | 'udp' | 'icmp' | 'ipv6-icmp'
  dport?: number
}

const ADDRS4 = ['10.0.0.1', '10.0.0.2']
const ADDRS6 = ['2001:db8::1']
const PORTS = [22, 80, 81, 82]

/** Every packet of the test's domain: the hosts and ports the random rules use, and one of neither. */
function packets(): Packet[] {
  const out: Packet[] = []
  for (const [family, addrs] of [[4, [...ADDRS4, '10.9.9.9']], [6, [...ADDRS6, '2001:db8::99']]] as const) {
    for (const saddr of addrs) {
      for (const daddr of addrs) {
        for (const l4 of ['tcp', 'udp'] as const) for (const dport of [...PORTS, 9]) out.push({ family, saddr, daddr, l4, dport })
        out.push({ family, saddr, daddr, l4: family === 4 ? 'icmp' : 'ipv6-icmp' })
      }
    }
  }
  return out
}

const inPrefix = (addr: string, p: { addr: string; len: number }) => (p.len === 32 || p.len === 128 ? addr === p.addr : (() => { throw new Error('prefix in test domain') })())

/** Whether one compiled match holds for a new (untracked by `ct`) packet. */
function holds(m: { op: string; left: Record<string, Record<string, string>>; right: unknown }, pk: Packet): boolean {
  const { left, right } = m
  let v: unknown
  if (left.payload) {
    const { protocol, field } = left.payload
    if ((protocol === 'ip' && pk.family !== 4) || (protocol === 'ip6' && pk.family !== 6)) return false
    if ((protocol === 'tcp' || protocol === 'udp') && pk.l4 !== protocol) return false
    v = field === 'saddr' ? pk.saddr : field === 'daddr' ? pk.daddr : field === 'dport' ? pk.dport : undefined
  } else if (left.meta?.key === 'l4proto') v = pk.l4
  else if (left.ct) return false // a new packet: `ct state established,related` does not hold
  else throw new Error(`unexpected match ${JSON.stringify(m)}`)
  let eq: boolean
  if (right === '@icmp_protos') eq = v === 'icmp' || v === 'ipv6-icmp'
  else if (typeof right === 'object' && right && 'range' in right) eq = (v as number) >= (right as { range: number[] }).range[0]! && (v as number) <= (right as { range: number[] }).range[1]!
  else if (typeof right === 'object' && right && 'prefix' in right) eq = inPrefix(v as string, (right as { prefix: { addr: string; len: number } }).prefix)
  else eq = v === right
  return m.op === '!=' ? !eq : eq
}

/** The verdict of a compiled chain for the packet: its first rule whose matches all hold. */
function chainVerdict(rules: CompiledRule[], pk: Packet): string {
  for (const r of rules) {
    let all = true
    let verdict: string | undefined
    for (const st of r.expr as Record<string, unknown>[]) {
      if ('match' in st) all &&= holds(st.match as never, pk)
      else if ('accept' in st) verdict = 'accept'
      else if ('drop' in st) verdict = 'drop'
      else if ('reject' in st) verdict = 'reject'
    }
    if (all && verdict) return verdict
  }
  throw new Error('no rule decided: the default rule is missing')
}

/** The verdict of the elements for the packet: the shapes in lookup order, then the default. */
function elementVerdict(p: ExactPolicy, side: 'out' | 'in', pk: Packet): string {
  for (const shape of EXACT_SHAPES) {
    if (!p.shapes[side].has(shape.name)) continue
    const key: (string | number)[] = []
    let keyed = true
    for (const f of shape.fields) {
      if (f === 'l4proto') key.push(pk.l4)
      else if (f === 'dport') {
        if (pk.dport === undefined) keyed = false
        else key.push(pk.dport)
      } else {
        if (pk.family !== Number(f[f.length - 1])) keyed = false
        key.push(f.startsWith('s') ? pk.saddr : pk.daddr)
      }
    }
    if (!keyed) continue
    const hit = p.elements.find((e) => e.side === side && e.shape === shape.name && e.key.join() === key.join())
    if (hit) return hit.verdict
  }
  return p.defaultAction
}

/** A small deterministic generator (the test must fail the same way twice). */
function lcg(seed: number): () => number {
  let s = seed >>> 0
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32)
}

describe('exactPolicy: the elements decide as the chains do', () => {
  it('for every packet of the domain, on random policies of up to 6 rules', () => {
    const rnd = lcg(15)
    const pick = <T,>(l: readonly T[]): T => l[Math.floor(rnd() * l.length)]!
    const all = packets()
    let exact = 0
    let refusedOrder = 0
    for (let n = 0; n < 1500; n++) {
      const rules: FirewallRuleInput[] = []
      for (let i = 0, k = 1 + Math.floor(rnd() * 6); i < k; i++) {
        const protocol = pick(['tcp', 'udp', 'icmp', 'all'] as const)
        const r: FirewallRuleInput = { id: `r${i}`, name: `r${i}`, protocol, action: pick(['ACCEPT', 'DROP', 'REJECT'] as const), direction: pick(['IN', 'OUT', 'INOUT'] as const), priority: Math.floor(rnd() * 4) }
        const host = rnd() < 0.5 ? pick([...ADDRS4, ...ADDRS4, ...ADDRS6]) : undefined
        if (host) r[rnd() < 0.5 ? 'srcIpAddr' : 'dstIpAddr'] = host
        if ((protocol === 'tcp' || protocol === 'udp') && rnd() < 0.8) {
          const a = pick(PORTS)
          r.dstPortStart = a
          r.dstPortEnd = rnd() < 0.3 ? Math.min(a + 1, 82) : a
        }
        rules.push(r)
      }
      const vm = normalizeVm(spec(rules, { defaultAction: rnd() < 0.5 ? 'accept' : 'drop' }))
      const opts = rnd() < 0.5 ? STATEFUL : NO_REJECT
      const p = exactPolicy(vm, opts)
      if ('reason' in p) {
        if (p.reason === 'order-dependent') refusedOrder++
        continue
      }
      exact++
      const chains = compileVm(vm, opts)
      for (const side of ['out', 'in'] as const) {
        for (const pk of all) {
          expect(elementVerdict(p, side, pk), `${side} ${JSON.stringify(pk)} of ${JSON.stringify(rules)}`).toBe(chainVerdict(chains[side], pk))
        }
      }
    }
    // The property is only worth something if both kinds of policy occur often.
    expect(exact).toBeGreaterThan(300)
    expect(refusedOrder).toBeGreaterThan(100)
  })
})
