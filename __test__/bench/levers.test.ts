// The commit-cost levers workload (issue 15): its ruleset generators and its report section. Pure; no
// timing is asserted.
import { describe, expect, it } from 'vitest'
import { vmNames } from '../../bench/lib/gen.js'
import {
  counterSum,
  defaultChain,
  deleteLeverTablesText,
  guardChains,
  guardRulesPost,
  guardRulesPre,
  identity,
  identityElementCount,
  identityRuleCount,
  identityRulesOut,
  leverIdentityText,
  leverReplaceText,
  leverRulesetText,
  leverSpecs,
  policyRules,
  replaceElementCount,
  replaceRuleCount,
  roundTrip,
  shardOf,
  sharedRuleCount,
  sharedRulesPre,
  specLabel,
  spoofChains,
  tableOf,
  validatedRules,
  vmsInShard,
  type LeverSpec,
} from '../../bench/lib/levers-gen.js'
import { buildMarkdown, leverShapeLines, leversConclusion, leversMarkdown } from '../../bench/lib/report.js'
import { summarize } from '../../bench/lib/stats.js'
import { EXACT_SHAPES } from '../../ts/firewall/exact-rules.js'
import type { BenchResults, LeverCell, LeverPath, LeversResult } from '../../bench/lib/types.js'

const A: LeverSpec = { variant: 'A', shards: 1 }
const B: LeverSpec = { variant: 'B', shards: 1 }
const C4: LeverSpec = { variant: 'B', shards: 4 }
const B2: LeverSpec = { variant: 'B2', shards: 1 }
const B3: LeverSpec = { variant: 'B3', shards: 1 }
const E: LeverSpec = { variant: 'E', shards: 1 }
const F: LeverSpec = { variant: 'F', shards: 1 }
const lines = (t: string) => t.trim().split('\n')
const count = (t: string, re: RegExp) => lines(t).filter((l) => re.test(l)).length

describe('lever rulesets', () => {
  it('gives every VM a distinct identity per variant, with overrides for variant 0 only', () => {
    expect(identity(3)).toEqual(identity(3))
    expect(identity(3).mac).not.toBe(identity(4).mac)
    expect(identity(3, 1).ipv4).not.toBe(identity(3, 0).ipv4)
    const o = { 3: { mac: '02:99:00:00:00:01', ipv4: '10.99.0.1', ipv6: '2001:db8:99::1' } }
    expect(identity(3, 0, o).ipv4).toBe('10.99.0.1')
    expect(identity(3, 1, o).ipv4).not.toBe('10.99.0.1')
  })

  it('A: identity rules in each VM chain, one table', () => {
    const t = leverRulesetText(A, 5)
    expect(count(t, /^add table /)).toBe(1)
    expect(count(t, /^add rule bridge bench_lv vm_/)).toBe(5 * replaceRuleCount(A))
    expect(replaceRuleCount(A)).toBe(15 + 4 + 2 * 11)
    expect(t).toContain(`ether saddr != ${identity(0).mac} counter drop`)
    expect(t).not.toContain('@vm_mac')
  })

  it('B: identity checks as shared base-chain rules over concatenated sets; VMs add elements', () => {
    const t = leverRulesetText(B, 5)
    expect(replaceRuleCount(B)).toBe(22)
    expect(count(t, /^add rule bridge bench_lv_s0 vm_/)).toBe(5 * 22)
    expect(count(t, /^add rule bridge bench_lv_s0 pre /)).toBe(sharedRulesPre().length)
    expect(t).toContain('iifname @spoof_taps iifname . ether saddr != @vm_mac counter drop')
    expect(count(t, /^add element bridge bench_lv_s0 vm_mac /)).toBe(5)
    expect(lines(t).filter((l) => /^add rule .* vm_/.test(l)).some((l) => l.includes('saddr !='))).toBe(false)
  })

  it('C: VM i in table i mod K, every table with its own base chains, sets and maps', () => {
    const t = leverRulesetText(C4, 10)
    expect(count(t, /^add table /)).toBe(4)
    expect(count(t, /hook prerouting/)).toBe(4)
    expect(shardOf(6, 4)).toBe(2)
    expect(tableOf(C4, 6)).toBe('bench_lv_s2')
    expect(t).toContain(`add element bridge bench_lv_s2 from_vm { "${vmNames(6).tap}" : jump ${vmNames(6).out} }`)
    expect([0, 1, 2, 3].map((k) => vmsInShard(10, 4, k))).toEqual([3, 3, 2, 2])
    expect(lines(deleteLeverTablesText(C4))).toHaveLength(4)
  })

  it('a replace flushes the two chains, adds the rules, and in B swaps the identity elements', () => {
    const ra = leverReplaceText(A, 2, 0, 1)
    expect(count(ra, /^flush chain /)).toBe(2)
    expect(count(ra, /^add rule /)).toBe(replaceRuleCount(A))
    expect(ra).toContain(identity(2, 1).mac)
    const rb = leverReplaceText(C4, 6, 1, 2)
    expect(count(rb, /^add rule bridge bench_lv_s2 /)).toBe(22)
    expect(count(rb, /^delete element bridge bench_lv_s2 /)).toBe(3)
    expect(rb).toContain(`delete element bridge bench_lv_s2 vm_mac { "${vmNames(6).tap}" . ${identity(6, 1).mac} }`)
    expect(rb).toContain(`add element bridge bench_lv_s2 vm_ipv4 { "${vmNames(6).tap}" . ${identity(6, 2).ipv4} }`)
  })

  it('counts the rules a commit re-validates and lists the specs per N', () => {
    expect(validatedRules(A, 100, 50)).toBe(100 * 41 + 2)
    expect(validatedRules(C4, 100, 50)).toBe(25 * 22 + validatedRules(B, 0, 0))
    expect(leverSpecs(10, [1, 2, 16, 4, 2]).map(specLabel)).toEqual(['A identity rules', 'B shared sets', 'B2 protocol guard', 'B3 positive lookup', 'E rules as elements', 'F exact-key elements', 'G F + empty shapes', 'C 2 shards', 'C 4 shards'])
  })

  it("G is F with a lookup (and a map) for every shape of exact-rules.ts's catalogue, the same elements", () => {
    const G: LeverSpec = { variant: 'G', shards: 1 }
    const text = leverRulesetText(G, 3)
    for (const dir of ['out', 'in'] as const) expect(policyRules(G, dir)).toHaveLength(EXACT_SHAPES.length + 1)
    expect(count(text, /^add map bridge bench_lv_s0 (out|in)_/)).toBe(2 * (EXACT_SHAPES.length + 1))
    expect(leverReplaceText(G, 1, 0, 1)).toBe(leverReplaceText(F, 1, 0, 1))
    expect(replaceElementCount(G)).toBe(replaceElementCount(F))
  })

  const tag = (r: string) => /comment "b:([^"]+)"/.exec(r)?.[1]
  const verdictTags = (rules: string[], verdict: 'accept' | 'drop') => [...new Set(rules.filter((r) => new RegExp(` ${verdict} comment`).test(r)).map(tag))].sort()
  const guardRules = (s: LeverSpec) => [...guardRulesPre(s), ...guardChains(s).flatMap(([, r]) => r)]

  it('B2/B3: the same accepts and drops as A, in guard chains behind one protocol dispatch', () => {
    const out = identityRulesOut(identity(0))
    for (const s of [B2, B3]) {
      const g = guardRules(s)
      expect(verdictTags(g, 'accept')).toEqual(verdictTags(out, 'accept'))
      expect(verdictTags(g, 'drop')).toEqual(verdictTags(out, 'drop'))
      // Every drop but the VLAN one is gated on a membership lookup placed last (cheap matches first).
      for (const r of g.filter((x) => / drop comment/.test(x) && !x.includes('vlan'))) expect(r).toMatch(/[io]ifname @\w+_taps counter drop/)
      const t = leverRulesetText(s, 5)
      expect(count(t, /^add rule bridge bench_lv_s0 vm_/)).toBe(5 * 22)
      expect(lines(t).filter((l) => /^add rule .* vm_/.test(l)).some((l) => l.includes('saddr !=') || l.includes('@vm_'))).toBe(false)
      // The VM dispatch is one rule; each guard chain is reached from one rule only (validated once per commit).
      expect(count(t, /@from_vm$/)).toBe(1)
      // (B3's tail chains: from the two exits of their own guard chain.)
      for (const [name] of guardChains(s)) {
        const from = lines(t).filter((l) => new RegExp(`(jump|goto) ${name}( |,|$)`).test(l)).map((l) => l.split(' ')[4])
        expect(from).toEqual(name.endsWith('_tail') ? [name.replace('_tail', ''), name.replace('_tail', '')] : ['pre'])
      }
      expect(count(t, new RegExp(`^add chain bridge bench_lv_s0 guard_`))).toBe(guardChains(s).length)
      expect(validatedRules(s, 10, 5)).toBe(10 * 22 + sharedRuleCount(s))
    }
    expect(guardRulesPre(B2)[0]).toContain('iifname . ether saddr != @vm_mac')
    expect(guardRulesPre(B2)[1]).toMatch(/^ether type vmap \{ ip : jump guard_ip, ip6 : jump guard_ip6, arp : jump guard_arp, 8021q : jump guard_vlan/)
    expect(spoofChains(B2, 3)).toEqual(['guard_ip', 'guard_arp'])
    expect(spoofChains(A, 3)).toEqual([vmNames(3).out])
  })

  it('B3: one positive MAC . address lookup per protocol skips the per-field checks', () => {
    const g = new Map(guardChains(B3))
    expect(g.get('guard_ip')![0]).toBe('iifname . ether saddr . ip saddr @vm_id4 goto guard_ip_tail comment "b:id4"')
    expect(g.get('guard_ip')!.at(-1)).toBe('goto guard_ip_tail')
    expect(g.get('guard_ip6')![0]).toContain('@vm_id6 goto guard_ip6_tail')
    // Frames of the protocols with a guard chain have their MAC checked there; the others in the base chain.
    expect(g.get('guard_arp')![0]).toContain('iifname . ether saddr != @vm_mac')
    expect(guardRulesPre(B3)[1]).toMatch(/^ether type != \{ ip, ip6, arp, 8021q, 8021ad \} iifname . ether saddr != @vm_mac/)
    const t = leverRulesetText(B3, 3)
    expect(t).toContain(`add element bridge bench_lv_s0 vm_id4 { "${vmNames(1).tap}" . ${identity(1).mac} . ${identity(1).ipv4} }`)
    expect(identityElementCount(B3)).toBe(7)
    expect(identityElementCount(B2)).toBe(4)
  })

  it('an identity change: A re-adds the out chain, B shapes swap elements only (no rule, no verdict)', () => {
    const ia = leverIdentityText(A, 2, 0, 1)
    expect(lines(ia)[0]).toBe(`flush chain bridge bench_lv ${vmNames(2).out}`)
    expect(count(ia, /^add rule /)).toBe(identityRuleCount(A))
    expect(identityRuleCount(A)).toBe(26)
    expect(ia).toContain(`ether saddr != ${identity(2, 1).mac}`)
    for (const s of [B, B2, B3]) {
      const t = leverIdentityText(s, 2, 3, 4)
      expect(identityRuleCount(s)).toBe(0)
      expect(lines(t).every((l) => /^(add|delete) element /.test(l))).toBe(true)
      expect(t).not.toMatch(/jump|goto|accept|drop/)
      expect(count(t, /^delete /)).toBe(count(t, /^add /))
      expect(t).toContain(identity(2, 3).ipv4)
      expect(t).toContain(identity(2, 4).ipv4)
    }
    expect(leverSpecs(10, [1, 4], ['B2']).map(specLabel)).toEqual(['A identity rules', 'B2 protocol guard', 'C 4 shards'])
  })

  it('E: no VM chains; each VM rule is an accept/drop element of its shape\'s map, so a replace adds no rule and no jump', () => {
    const t = leverRulesetText(E, 3)
    expect(t).not.toMatch(/add chain bridge bench_lv_s0 vm_/)
    expect(t).not.toMatch(/ (from_vm|to_vm) |@from_vm|@to_vm|jump vm_/)
    // B2's guard, then the policy lookups and the default, in both base chains.
    expect(guardRulesPre(E).slice(0, 2)).toEqual(guardRulesPre(B2).slice(0, 2))
    expect(guardRulesPre(E).slice(2)).toEqual([
      'iifname . ip saddr . meta l4proto . th dport vmap @out_s4',
      'iifname . ip daddr . meta l4proto . th dport vmap @out_d4',
      'iifname . meta l4proto . th dport vmap @out_p',
      'counter iifname vmap @out_default comment "default"',
    ])
    expect(t).toContain('add rule bridge bench_lv_s0 post oifname . meta l4proto . th dport vmap @in_p')
    expect(t).toContain('add map bridge bench_lv_s0 out_s4 { type ifname . ipv4_addr . inet_proto . inet_service : verdict ; flags interval ; }')
    // VM 1's ten outbound rules of gen.ts, by shape: 0, 3, 6, 9 (ip saddr, tcp), 1, 4, 7 (udp to a prefix), 2, 5, 8 (tcp ranges).
    const tap = vmNames(1).tap
    const out = (map: string) => lines(t).find((l) => l.startsWith(`add element bridge bench_lv_s0 ${map} { "${tap}"`))!
    expect(out('out_s4').split(' : drop').length - 1).toBe(4)
    expect(out('out_d4')).toContain(`"${tap}" . 203.0.113.0/24 . udp . 1037 : accept`)
    expect(out('out_p')).toContain(`"${tap}" . tcp . 1074-1079 : drop`)
    expect(lines(t).filter((l) => l.startsWith('add element') && l.includes('_default {'))).toHaveLength(6) // 3 VMs, both directions
    const r = leverReplaceText(E, 1, 0, 1)
    expect(replaceRuleCount(E)).toBe(0)
    expect(r).not.toMatch(/add rule|flush|chain|jump|goto|_default/)
    expect(count(r, /^delete element /)).toBe(count(r, /^add element /))
    const elements = (verb: string) => lines(r).filter((l) => l.startsWith(`${verb} element`) && / (out|in)_/.test(l)).reduce((n, l) => n + l.split(' : ').length - 1, 0)
    expect(elements('delete')).toBe(replaceElementCount(E))
    expect(elements('add')).toBe(replaceElementCount(E))
    expect(r).toContain(identity(1, 1).ipv4)
    // After an identity change (variant 1 -> 2), the next replace deletes the rules of variant 1, not 2.
    const after = leverReplaceText(E, 1, 2, 3, 1)
    expect(after).toContain(lines(leverReplaceText(E, 1, 0, 1)).find((l) => l.startsWith('add element bridge bench_lv_s0 out_p'))!.replace(/^add/, 'delete'))
    expect(after).toContain(identity(1, 2).ipv4)
    expect(defaultChain(E, 1)).toBe('pre')
    expect(defaultChain(B2, 1)).toBe(vmNames(1).out)
    expect(validatedRules(E, 1000, 500)).toBe(0)
  })

  it('F: E with exact keys in hash maps: a port range is its ports, the prefix one address', () => {
    const t = leverRulesetText(F, 3)
    expect(t).not.toMatch(/flags interval|\/24|\d-\d/)
    expect(t).toContain('add map bridge bench_lv_s0 out_s4 { type ifname . ipv4_addr . inet_proto . inet_service : verdict ; }')
    expect(guardRulesPre(F)).toEqual(guardRulesPre(E))
    expect(guardRulesPost(F)).toEqual(guardRulesPost(E))
    const tap = vmNames(1).tap
    const out = (map: string) => lines(t).find((l) => l.startsWith(`add element bridge bench_lv_s0 ${map} { "${tap}"`))!
    expect(out('out_d4')).toContain(`"${tap}" . 203.0.113.1 . udp . 1037 : accept`)
    // tcp dport 1074-1079 drop: six elements.
    for (let p = 1074; p <= 1079; p++) expect(out('out_p')).toContain(`"${tap}" . tcp . ${p} : drop`)
    expect(out('out_p').split(' : drop').length - 1).toBe(3 * 6)
    // Per direction: 4 (saddr) + 3 (daddr) + 3 × 6 (ranges).
    expect(replaceElementCount(F)).toBe(2 * 25)
    expect(replaceElementCount(E)).toBe(2 * 10)
    const r = leverReplaceText(F, 1, 0, 1)
    expect(r).not.toMatch(/add rule|flush|chain|jump|goto|_default/)
    const elements = (verb: string) => lines(r).filter((l) => l.startsWith(`${verb} element`) && / (out|in)_/.test(l)).reduce((n, l) => n + l.split(' : ').length - 1, 0)
    expect(elements('delete')).toBe(replaceElementCount(F))
    expect(elements('add')).toBe(replaceElementCount(F))
    expect(replaceRuleCount(F)).toBe(0)
    expect(validatedRules(F, 1000, 500)).toBe(0)
    expect(defaultChain(F, 1)).toBe('pre')
  })

  it('compares a chain listing with the rules as written, and sums tagged counters', () => {
    const listing = 'table bridge t {\n\tchain pre {\n\t\ttype filter hook prerouting priority 0; policy accept;\n\t\tx counter packets 5 bytes 9 drop comment "b:ip-spoof"\n\t\ty\n\t}\n}'
    expect(roundTrip(['x counter drop comment "b:ip-spoof"', 'z'], listing)).toEqual({ exact: 1, differ: [['z', 'y']] })
    expect(counterSum(listing, 'ip-spoof"')).toBe(5)
  })
})

// ---------------------------------------------------------------------------------------------

function cell(label: string, vms: number, med: Partial<Record<LeverPath, number>>, a?: Partial<Record<LeverPath, number>>): LeverCell {
  const variant = label.startsWith('A') ? 'A' : label.startsWith('B2') ? 'B2' : label.startsWith('B3') ? 'B3' : label.startsWith('B') ? 'B' : label.startsWith('F') ? 'F' : 'C'
  const paths: LeverCell['paths'] = {}
  const vsNftF: LeverCell['vsNftF'] = {}
  const vsA: LeverCell['vsA'] = {}
  for (const [p, m] of Object.entries(med) as [LeverPath, number][]) {
    paths[p] = { samples: [m, m, m], summary: summarize([m, m, m]) }
    if (p !== 'nft-f') vsNftF[p] = med['nft-f']! / m
    if (a && variant !== 'A') vsA[p] = a[p]! / m
  }
  return { variant, shards: variant === 'C' ? Number(/C (\d+)/.exec(label)![1]) : 1, label, vms, replaceRules: variant === 'A' ? 41 : variant === 'F' ? 0 : 22, validatedRules: 1000, paths, vsNftF, vsA }
}

function levers(udp: Record<string, number>): LeversResult {
  const a10 = { 'nft-f': 10, 'lib-text': 1.5, floor: 0.7 }
  const a1000 = { 'nft-f': 20, 'lib-text': 8, floor: 5 }
  const dp = (x: number) => ({ samples: [x], medianGbps: 10 * x, ratioToEmpty: x })
  return {
    vmCounts: [10, 1000],
    shards: [1, 4, 16],
    rounds: 3,
    userRulesPerChain: 10,
    floor: { available: true, note: 'kernel floor: built', iterations: 3 },
    cells: [
      cell('A identity rules', 10, a10),
      cell('B shared sets', 10, { 'nft-f': 9, 'lib-text': 1.2, floor: 0.4 }, a10),
      cell('A identity rules', 1000, a1000),
      cell('B shared sets', 1000, { 'nft-f': 15, 'lib-text': 4, floor: 2 }, a1000),
      cell('C 4 shards', 1000, { 'nft-f': 14, 'lib-text': 2.5, floor: 0.6 }, a1000),
      cell('C 16 shards', 1000, { 'nft-f': 14, 'lib-text': 2.2, floor: 0.3 }, a1000),
    ],
    dataplane: {
      vms: 1000,
      rulesPerVm: 22,
      seconds: 3,
      rounds: 1,
      configs: Object.fromEntries(Object.keys(udp).map((k) => [k, dp(k === 'empty' ? 1 : 0.95)])),
      udp: Object.fromEntries(Object.entries(udp).map(([k, v]) => [k, { samples: [v], medianKpps: 100 * v, ratioToEmpty: v }])),
      notes: ['verified'],
    },
    notes: ['a note'],
  }
}

describe('commit cost levers report', () => {
  const l = levers({ empty: 1, 'A identity rules': 0.75, 'B shared sets': 0.74, 'C 4 shards': 0.71, 'C 16 shards': 0.45 })

  it('has both tables, the curve and the notes', () => {
    const md = leversMarkdown(l).join('\n')
    expect(md).toContain('## Commit cost levers')
    expect(md).toContain('| B shared sets | 1000 | 22 | 1000 | 15.0 ms | 4.00 ms | 2.00 ms | 3.75× | 7.50× | 2.00× | 2.50× |')
    expect(md).toContain('| A identity rules | 1.50 ms (0.700 ms) | 8.00 ms (5.00 ms) |')
    expect(md).toContain('| C 16 shards | 9.50 | 0.950 | 45 | 0.450 |')
    expect(md).toContain('- a note')
  })

  it('derives the conclusion from the numbers: lever 1 pays, K within the UDP budget', () => {
    const c = leversConclusion(l).join('\n')
    expect(c).toContain('Nft.run 8.00 ms → 4.00 ms (2.00× faster, paired)')
    expect(c).toContain('K=4 buys the most commit time (3.33× vs one table)')
    expect(c).toContain('Reading: lever 1 pays')
    expect(c).toMatch(/≤ 1.5 ms: .* → missed by every variant/)
    expect(c).toMatch(/lowest floor 0.300 ms \(C 16 shards\) → reachable/)
    expect(c).toContain('B shared sets Nft.run 3.33×, floor 5.00×; C 4 shards (from 1000) Nft.run 1.00×')
  })

  it('chooses one table when every shard count costs too much small-packet throughput', () => {
    const c = leversConclusion(levers({ empty: 1, 'A identity rules': 0.75, 'B shared sets': 0.74, 'C 4 shards': 0.6, 'C 16 shards': 0.45 })).join('\n')
    expect(c).toContain('no K > 1 gains')
    expect(c).toContain('shards: none (one table)')
  })

  it('says when lever 1 costs more data plane than allowed', () => {
    const c = leversConclusion(levers({ empty: 1, 'A identity rules': 0.8, 'B shared sets': 0.6, 'C 4 shards': 0.6, 'C 16 shards': 0.45 })).join('\n')
    expect(c).toContain('lever 1 does not pay by this criterion')
    expect(c).toContain('20 points of 64-byte UDP lost vs A')
  })

  it('is part of the harness report', () => {
    const r = { version: 1, startedAt: '', finishedAt: '', durationS: 1, mode: 'full', config: {}, machine: { cpu: '', cores: 2, kernel: '', os: '', node: '', libnftables: '', nft: '', python3Nftables: '', memoryGb: 1 }, vmFirewall: { available: false, note: '' }, workloads: [], levers: l, targets: [], errors: [] } satisfies BenchResults
    expect(buildMarkdown(r)).toContain('## Commit cost levers')
  })
})

describe('lever 1 shapes in the report', () => {
  const id = (rules: number, elements: number, lib: number, vsA?: number): LeverCell['identity'] => ({
    rules,
    elements,
    paths: { 'nft-f': { samples: [20], summary: summarize([20]) }, 'lib-text': { samples: [lib], summary: summarize([lib]) } },
    vsA: vsA === undefined ? {} : { 'lib-text': vsA },
  })
  const a = { 'nft-f': 30, 'lib-text': 15, floor: 12 }
  const withShapes = (udp: Record<string, number>): LeversResult => {
    const l = levers(udp)
    const cA = cell('A identity rules', 1000, a)
    cA.identity = id(26, 0, 14)
    const cB = cell('B shared sets', 1000, { 'nft-f': 25, 'lib-text': 8, floor: 6 }, a)
    cB.identity = id(0, 4, 2, 7)
    const cB2 = cell('B2 protocol guard', 1000, { 'nft-f': 24, 'lib-text': 8, floor: 6 }, a)
    cB2.identity = id(0, 4, 2, 7)
    l.cells = [cA, cB, cB2]
    return l
  }

  it('has the identity-change table and a line per shape', () => {
    const l = withShapes({ empty: 1, 'A identity rules': 0.74, 'B shared sets': 0.63, 'B2 protocol guard': 0.75 })
    const md = leversMarkdown(l).join('\n')
    expect(md).toContain('| B2 protocol guard | 1000 | 0 | 4 | 20.0 ms | 2.00 ms | – | 7.00× | 4.00× |')
    expect(md).toContain('| A identity rules | 1000 | 26 | 0 | 20.0 ms | 14.0 ms | – | 1 | 1.07× |')
    const c = leverShapeLines(l).join('\n')
    expect(c).toContain('B2 protocol guard: floor 12.0 ms → 6.00 ms (2.00×)')
    expect(c).toContain('64-byte UDP 0.75 (+1 points vs A)')
    expect(c).toContain('64-byte UDP 0.63 (−11 points vs A)')
    expect(c).toContain('**Shape to build:** B2 protocol guard')
  })

  it('weighs an element-only shape by its Nft.run time (it has no floor) and says what it cannot hold', () => {
    const l = withShapes({ empty: 1, 'A identity rules': 0.74, 'B shared sets': 0.63, 'B2 protocol guard': 0.73, 'F exact-key elements': 0.75 })
    const cF = cell('F exact-key elements', 1000, { 'nft-f': 20, 'lib-text': 1.5 }, a)
    cF.identity = id(0, 4, 0.9, 15.6)
    l.cells.push(cF)
    const c = leverShapeLines(l).join('\n')
    expect(c).toContain('F exact-key elements: Nft.run 15.0 ms → 1.50 ms (10.0×) (elements only: no floor), 1000 rules validated')
    expect(c).toContain('**Shape to build:** F exact-key elements — 10.0× Nft.run commit time vs A')
    expect(c).toContain('so a VM with any other rule keeps its chains')
    // The identity line's floor for scale is that of the first shape with one.
    expect(c).toContain("and 6.00 ms (B shared sets's)")
  })

  it('builds no shape when each costs too much data plane', () => {
    const c = leverShapeLines(withShapes({ empty: 1, 'A identity rules': 0.74, 'B shared sets': 0.63, 'B2 protocol guard': 0.6 })).join('\n')
    expect(c).toContain('**Shape to build:** none of B shared sets, B2 protocol guard')
  })
})
