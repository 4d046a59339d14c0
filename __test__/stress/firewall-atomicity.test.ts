// Atomicity of VmFirewall: applyVm/sync calls whose spec carries one invalid element at a random
// position fail with a FirewallValidationError naming that field, and the ruleset stays byte-identical.
// Also calls that pass validation but fail in the kernel (capabilities claimed that the kernel lacks).
import { afterAll, beforeAll, expect, it } from 'vitest'
import { Nft, NftError } from '../../ts/index.js'
import { FirewallValidationError, VmFirewall, type FirewallRuleInput, type VmSpec } from '../../ts/firewall/index.js'
import { createNetns, type Netns } from '../support/netns.js'
import { prng, report, size } from '../support/stress.js'
import { randomRule, randomSpec } from '../support/stress-fw.js'

let ns: Netns
let nft: Nft
let fw: VmFirewall
let baseline: VmSpec[]
const seed = Number(process.env.STRESS_SEED ?? 20261123)

beforeAll(async () => {
  ns = createNetns()
  nft = new Nft({ netns: ns.name })
  fw = new VmFirewall(nft)
  const rand = prng(seed ^ 0x5eed)
  baseline = Array.from({ length: 4 }, (_, i) => randomSpec(rand, i, 0))
  await fw.sync(baseline)
  // Another table that must never change either.
  ns.exec('nft', ['add table inet keep; add chain inet keep c { type filter hook input priority 0; }; add rule inet keep c tcp dport 22 accept'])
})
afterAll(() => {
  nft?.close()
  ns?.delete()
})

interface Expected {
  field: string | RegExp
  ruleId?: string
  kind: string
}

type Rand = () => number
const pick = <T>(rand: Rand, xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!
const clone = <T>(x: T): T => structuredClone(x)

/** Mutations of one rule: each makes exactly that rule invalid in exactly one field. */
const ruleMutations: ((r: FirewallRuleInput, rand: Rand, others: FirewallRuleInput[]) => Expected)[] = [
  (r, rand) => {
    r.protocol = 'tcp'
    delete r.srcPortStart, delete r.srcPortEnd, delete r.dstPortEnd
    const field = pick(rand, ['srcPortStart', 'dstPortStart', 'dstPortEnd'] as const)
    if (field === 'dstPortEnd') r.dstPortStart = 80
    ;(r as unknown as Record<string, unknown>)[field] = pick(rand, [0, 65536, -1, 1.5, '80', NaN, 1e12])
    return { field, ruleId: r.id, kind: 'bad port' }
  },
  (r) => {
    r.protocol = 'udp'
    delete r.srcPortStart, delete r.srcPortEnd
    r.dstPortStart = 1000
    r.dstPortEnd = 999
    return { field: 'dstPortEnd', ruleId: r.id, kind: 'port range reversed' }
  },
  (r) => {
    r.protocol = 'icmp'
    delete r.srcPortStart, delete r.srcPortEnd
    r.dstPortStart = 80
    return { field: 'dstPortStart', ruleId: r.id, kind: 'port without tcp/udp' }
  },
  (r, rand) => {
    const side = pick(rand, ['src', 'dst'] as const)
    delete r.srcIpMask, delete r.dstIpMask
    r[`${side}IpAddr`] = pick(rand, ['10.0.0.0/33', 'fd00::/129', '1.2.3', '256.1.1.1', '01.2.3.4', 'fe80::1%eth0', ':::1', '10.0.0.0/8; flush ruleset', '10.0.0.0/-1', 'any', '10.0.0.0/08x'])
    return { field: `${side}IpAddr`, ruleId: r.id, kind: 'bad CIDR' }
  },
  (r, rand) => {
    r.srcIpAddr = '10.1.0.0'
    r.dstIpAddr = null
    r.dstIpMask = null
    r.srcIpMask = pick(rand, ['33', '255.0.255.0', 'abc', -1, 1.5, '0x18', '24;'])
    return { field: 'srcIpMask', ruleId: r.id, kind: 'bad mask' }
  },
  (r) => {
    r.dstIpAddr = null
    r.dstIpMask = '24'
    return { field: 'dstIpMask', ruleId: r.id, kind: 'mask without address' }
  },
  (r) => {
    r.srcIpAddr = '10.0.0.1'
    r.srcIpMask = null
    r.dstIpAddr = 'fd00::1'
    r.dstIpMask = null
    return { field: 'dstIpAddr', ruleId: r.id, kind: 'mixed families' }
  },
  (r, rand) => {
    r.protocol = pick(rand, ['sctp', 'tcp;', '', 'tcp udp', 'ICMPv6', 6 as unknown as string, 'ip'])
    delete r.srcPortStart, delete r.srcPortEnd, delete r.dstPortStart, delete r.dstPortEnd
    return { field: 'protocol', ruleId: r.id, kind: 'bad protocol' }
  },
  (r, rand) => {
    r.action = pick(rand, ['allow', 'accept', 'DROP;', 'REJECT ', 1]) as FirewallRuleInput['action']
    return { field: 'action', ruleId: r.id, kind: 'bad action' }
  },
  (r, rand) => {
    r.direction = pick(rand, ['BOTH', 'in', '', 'IN OUT']) as FirewallRuleInput['direction']
    return { field: 'direction', ruleId: r.id, kind: 'bad direction' }
  },
  (r, rand) => {
    r.priority = pick(rand, [1e9, -1e9, 1.5, NaN, Infinity, '10' as unknown as number, 2 ** 53, 1_000_001])
    return { field: 'priority', ruleId: r.id, kind: 'huge/bad priority' }
  },
  (r, rand) => {
    r.name = pick(rand, ['', 'x'.repeat(256), 'é'.repeat(128), 'a\nb', 'nul\0', 'tab\there', 'del\x7f', 42 as unknown as string, null as unknown as string])
    return { field: 'name', ruleId: r.id, kind: 'bad/overlong name' }
  },
  (r, rand) => {
    r.description = pick(rand, ['line\nbreak', 'x'.repeat(4097), 7 as unknown as string, '"; flush ruleset\n'])
    return { field: 'description', ruleId: r.id, kind: 'bad description' }
  },
  (r, rand) => {
    const id = pick(rand, ['', 'x'.repeat(65), 'a b', 'a"b', 'a\\b', 'é', 'a\0', 'new\nline', 42 as unknown as string])
    r.id = id
    return { field: 'id', ...(typeof id === 'string' ? { ruleId: id } : {}), kind: 'bad/overlong id' }
  },
  (r, rand, others) => {
    const other = others.find((o) => o !== r)
    if (!other) {
      r.overridesDept = 'yes' as unknown as boolean
      return { field: 'overridesDept', ruleId: r.id, kind: 'bad overridesDept' }
    }
    r.id = other.id
    return { field: 'id', ruleId: other.id, kind: 'duplicate rule id' }
  },
  (r, rand) => {
    const [cs, field] = pick(rand, [
      [{ foo: true }, 'connectionState'],
      [{ established: 'yes' }, 'connectionState.established'],
      ['established', 'connectionState'],
      [1, 'connectionState'],
    ] as const)
    r.connectionState = cs as FirewallRuleInput['connectionState']
    return { field, ruleId: r.id, kind: 'bad connectionState' }
  },
]

/** Mutations of the VM itself. */
const vmMutations: ((s: VmSpec, rand: Rand) => Expected)[] = [
  (s, rand) => {
    s.vmId = pick(rand, ['', 'x'.repeat(97), 'a b', 'vm"1', 'vm\\1', 'vm\n1', 42 as unknown as string, null as unknown as string])
    return { field: 'vmId', kind: 'bad/overlong vmId' }
  },
  (s, rand) => {
    s.tap = pick(rand, ['', 'x'.repeat(16), 'a/b', 'a:b', 'a b', '..', 'é'.repeat(8), 'tap;', 'tap"', 'tap\0', 'vnet*'])
    return { field: 'tap', kind: 'bad tap' }
  },
  (s, rand) => {
    s.mac = pick(rand, ['zz:00:00:00:00:00', '01:00:5e:00:00:01', '52:54:00:00:00', '52:54:00:00:00:01:02', '52:54:00:00:00:01;', 5 as unknown as string])
    return { field: 'mac', kind: 'bad/multicast MAC' }
  },
  (s, rand) => {
    const list = [...(s.ipv4 ?? []), '10.98.0.1', '10.98.0.2']
    const j = Math.floor(rand() * list.length)
    list[j] = pick(rand, ['10.0.0.256', '10.0.0.1/24', 'fd00::1', '', ' 10.0.0.1'])
    s.ipv4 = list
    return { field: `ipv4[${j}]`, kind: 'bad ipv4 address' }
  },
  (s, rand) => {
    const list = [...(s.ipv6 ?? []), 'fd00:98::1']
    const j = Math.floor(rand() * list.length)
    list[j] = pick(rand, ['10.0.0.1', 'fd00::g', 'fe80::1%eth0', ':::', 'fd00::/64'])
    s.ipv6 = list
    return { field: `ipv6[${j}]`, kind: 'bad ipv6 address' }
  },
  (s, rand) => {
    s.defaultAction = pick(rand, ['reject', 'ACCEPT', '', 0]) as VmSpec['defaultAction']
    return { field: 'defaultAction', kind: 'bad defaultAction' }
  },
  (s, rand) => {
    const k = pick(rand, ['antiSpoofing', 'dhcp'] as const)
    s[k] = pick(rand, ['yes', 1]) as unknown as boolean
    return { field: k, kind: 'non-boolean flag' }
  },
  (s, rand) => {
    const k = pick(rand, ['rules', 'departmentRules'] as const)
    s[k] = { length: 1 } as unknown as FirewallRuleInput[]
    return { field: k, kind: 'rules not an array' }
  },
  (s, rand) => {
    const k = pick(rand, ['rules', 'departmentRules'] as const)
    const list = [...(s[k] ?? [])]
    list.splice(Math.floor(rand() * (list.length + 1)), 0, pick(rand, [null, 'rule', 3]) as unknown as FirewallRuleInput)
    s[k] = list
    return { field: k, kind: 'rule not an object' }
  },
]

/** Makes `spec` invalid in exactly one place (a random rule field, or a VM field). */
function corrupt(spec: VmSpec, rand: Rand): Expected {
  if (rand() < 0.6) {
    const list = rand() < 0.75 ? 'rules' : 'departmentRules'
    const rules = (spec[list] ??= [])
    while (rules.length < 2) rules.push(randomRule(rand, `${list[0]}x${rules.length}`))
    const target = rules[Math.floor(rand() * rules.length)]!
    return pick(rand, ruleMutations)(target, rand, rules)
  }
  return pick(rand, vmMutations)(spec, rand)
}

/** Runs `fn`, capturing a synchronous throw or a rejection. */
async function failure(fn: () => Promise<unknown>): Promise<{ error: unknown; synchronous: boolean }> {
  let p: Promise<unknown>
  try {
    p = fn()
  } catch (error) {
    return { error, synchronous: true }
  }
  return p.then(
    () => ({ error: undefined, synchronous: false }),
    (error: unknown) => ({ error, synchronous: false }),
  )
}

it('applyVm/sync with one invalid element at a random position: typed error naming the field, ruleset byte-identical', { timeout: size(90_000, 1_800_000) }, async () => {
  const rand = prng(seed)
  const calls = size(100, 1000)
  const before = ns.ruleset()
  const kinds = new Map<string, number>()
  let syncCalls = 0
  let synchronousThrows = 0
  for (let n = 0; n < calls; n++) {
    const useSync = rand() < 0.5
    let expected: Expected
    let fn: () => Promise<unknown>
    if (useSync) {
      syncCalls++
      // A desired set of 1-6 VMs, new versions of the baseline ones plus new ones; one of them corrupted.
      const specs = Array.from({ length: 1 + Math.floor(rand() * 6) }, (_, i) => randomSpec(rand, i, n + 1))
      const at = Math.floor(rand() * (specs.length + (specs.length > 1 ? 1 : 0)))
      if (at === specs.length) {
        // Set-level problem: a duplicate vmId or tap.
        const dup = clone(specs[0]!)
        if (rand() < 0.5) {
          dup.tap = 'dup-tap'
          specs[specs.length - 1]!.vmId = dup.vmId
          expected = { field: 'vmId', kind: 'sync: duplicate vmId' }
        } else {
          dup.vmId = 'dup-vm'
          expected = { field: 'tap', kind: 'sync: duplicate tap' }
        }
        specs.splice(Math.floor(rand() * specs.length), 0, dup)
      } else {
        expected = corrupt(specs[at]!, rand)
      }
      fn = () => fw.sync(specs)
    } else {
      const spec = randomSpec(rand, Math.floor(rand() * 6), n + 1)
      expected = corrupt(spec, rand)
      fn = () => fw.applyVm(spec)
    }
    const { error, synchronous } = await failure(fn)
    if (synchronous) synchronousThrows++
    const what = `call ${n} (${useSync ? 'sync' : 'applyVm'}, ${expected.kind}, seed ${seed})`
    expect(error, `${what} was accepted`).toBeInstanceOf(FirewallValidationError)
    const e = error as FirewallValidationError
    if (typeof expected.field === 'string') expect(e.field, what).toBe(expected.field)
    else expect(e.field, what).toMatch(expected.field)
    if (expected.ruleId !== undefined) expect(e.ruleId, what).toBe(expected.ruleId)
    expect(ns.ruleset(), `${what} changed the ruleset`).toBe(before)
    kinds.set(expected.kind, (kinds.get(expected.kind) ?? 0) + 1)
  }
  expect((await fw.verify()).ok).toBe(true)
  report(
    'firewall/atomicity (validation)',
    `${calls} calls (${calls - syncCalls} applyVm, ${syncCalls} sync) with one invalid element, ${kinds.size} kinds of defect; ` +
      `FirewallValidationError naming the field and ruleset byte-identical every time` +
      (synchronousThrows ? ` (sync() threw synchronously in ${synchronousThrows}; applyVm rejected)` : ''),
  )
})

it('calls that pass validation but fail in the kernel change nothing either (capabilities the kernel lacks)', { timeout: size(90_000, 1_800_000) }, async () => {
  // Claiming bridge conntrack/reject on a kernel without them compiles `ct state` / `reject` rules that
  // only the kernel refuses: the failure happens inside the transaction, after the earlier commands.
  // `ct state` lands first in every chain; a lone `reject` lands at a random position of one VM's chain.
  const ctLiar = new VmFirewall(nft, { capabilities: { bridgeConntrack: true, bridgeReject: true } })
  const rejectLiar = new VmFirewall(nft, { capabilities: { bridgeConntrack: false, bridgeReject: true } })
  const rand = prng(seed + 1)
  const calls = size(12, 100)
  const before = ns.ruleset()
  const codes = new Map<string, number>()
  for (let n = 0; n < calls; n++) {
    const specs = Array.from({ length: 1 + Math.floor(rand() * 4) }, (_, i) => randomSpec(rand, i + (n % 3), 1000 + n))
    const liar = n % 4 < 2 ? ctLiar : rejectLiar
    if (liar === rejectLiar) {
      for (const s of specs) for (const r of [...(s.rules ?? []), ...(s.departmentRules ?? [])]) if (r.action === 'REJECT') r.action = 'DROP'
      const victim = specs[Math.floor(rand() * specs.length)]!
      const rules = (victim.rules ??= [])
      rules.splice(Math.floor(rand() * (rules.length + 1)), 0, { ...randomRule(rand, `reject${n}`), action: 'REJECT', direction: 'OUT', priority: Math.floor(rand() * 1000) })
      if (n % 2 === 1) specs.unshift(victim)
    }
    const op = n % 2 === 0 ? () => liar.sync(specs) : () => liar.applyVm(specs[0]!)
    const { error } = await failure(op)
    expect(error, `call ${n} was accepted`).toBeInstanceOf(NftError)
    expect((error as NftError).code).not.toBe('SYNTAX')
    codes.set((error as NftError).code, (codes.get((error as NftError).code) ?? 0) + 1)
    expect(ns.ruleset(), `kernel-failing call ${n} changed the ruleset`).toBe(before)
  }
  // Taps starting with '@': libnftables' JSON parser reads such a map key as a set reference. They used
  // to pass validation and fail in the kernel (ENOENT/EINVAL); validation now refuses them. Either way
  // the call must fail as a whole and change nothing.
  let atRefused = 0
  const atTaps = ['@', '@x', '@from_vm', '@to_vm']
  for (const [k, tap] of atTaps.entries()) {
    const specs = [randomSpec(rand, 1, 5000 + k), { ...randomSpec(rand, 7, 5000 + k), tap }, randomSpec(rand, 2, 5000 + k)]
    for (const op of [() => fw.applyVm(specs[1]!), () => fw.sync(specs)]) {
      const { error } = await failure(op)
      if (error instanceof FirewallValidationError) {
        expect(error.field).toBe('tap')
        atRefused++
      } else {
        expect(error, `tap ${tap} was accepted`).toBeInstanceOf(NftError)
        expect((error as NftError).code).not.toBe('SYNTAX')
        codes.set((error as NftError).code, (codes.get((error as NftError).code) ?? 0) + 1)
      }
      expect(ns.ruleset(), `tap ${tap}: failing call changed the ruleset`).toBe(before)
    }
  }
  expect((await fw.verify()).ok).toBe(true)
  report(
    'firewall/atomicity (kernel)',
    `${calls + 2 * atTaps.length - atRefused} valid calls refused by the kernel (claimed conntrack/reject` +
      `${atRefused < 2 * atTaps.length ? ", taps starting with '@'" : ''}: ${[...codes].map(([c, k]) => `${c}×${k}`).join(', ')}), ruleset byte-identical every time` +
      (atRefused ? `; ${atRefused} calls with taps starting with '@' refused by validation` : ''),
  )
})
