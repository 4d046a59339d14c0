// Hostile input, property-based (fast-check): quotes, newlines, NULs, unicode, overlong names, `;`/`{}`/nft
// keywords in names and comments, bad CIDRs/ports/MACs, huge priorities. Invalid input is rejected with a
// FirewallValidationError naming the field (checked against an independent oracle); valid input compiles
// (plan(), pure) to commands that only touch the library's table, and a sample applied for real in a
// namespace never meets a libnftables SYNTAX error, never creates anything outside `table bridge infinization`,
// and survives an exportRuleset() -> restoreRuleset() round trip.
import { isIPv4, isIPv6 } from 'node:net'
import fc from 'fast-check'
import { expect, it } from 'vitest'
import { Nft, NftError } from '../../ts/index.js'
import { FirewallValidationError, VmFirewall, planVm, type FirewallRuleInput, type VmSpec } from '../../ts/firewall/index.js'
import { type Netns } from '../support/netns.js'
import { useNetnsNft } from '../support/netns-nft.js'
import { report, size } from '../support/stress.js'
import { tables } from '../support/stress-fw.js'

const seed = Number(process.env.STRESS_SEED ?? 20261123)
const planner = { plan: (spec: VmSpec) => planVm(spec, { capabilities: { bridgeConntrack: false, bridgeReject: false } }) }
const statefulPlanner = { plan: (spec: VmSpec) => planVm(spec, { capabilities: { bridgeConntrack: true, bridgeReject: true } }) }

let ns: Netns
let nft: Nft
useNetnsNft((n, f) => {
  ns = n
  nft = f
})

// ---- hostile values ----

const NASTY = [
  '"', "'", '`', '\n', '\r', '\0', '\\', ';', '{', '}', '#', '$', '@', '*', ' ', '\t', '\x7f', '\u0085', '\u2028', '\u202e', '\ufeff',
  'é', 'ß', 'İ', '😀', '\ud800', '中文', 'table', 'flush ruleset', 'delete table bridge other', 'add table inet evil', '} ; add table ip x {',
  'comment', 'jump', 'goto', 'accept', 'drop', 'counter', 'include "/etc/passwd"', '$(reboot)', '%s%n', '../', 'vnet0', 'vm_0', '@from_vm',
]
const nastyString = fc.oneof(
  { weight: 4, arbitrary: fc.array(fc.oneof(fc.constantFrom(...NASTY), fc.string({ maxLength: 6 }), fc.string({ unit: 'binary', maxLength: 4 })), { maxLength: 10 }).map((a) => a.join('')) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 300 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 80 }) },
  { weight: 1, arbitrary: fc.integer({ min: 60, max: 5000 }).map((n) => 'x'.repeat(n)) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 300 }).map((n) => 'é'.repeat(n)) },
)
const nastyNumber = fc.oneof(
  fc.integer(),
  fc.integer({ min: -70000, max: 70000 }),
  fc.double(),
  fc.constantFrom(0, -0, -1, 1, 65535, 65536, 1e6, 1e6 + 1, -1e6, -1e6 - 1, 2 ** 31, 2 ** 53, Number.MAX_SAFE_INTEGER, Number.MAX_VALUE, NaN, Infinity, -Infinity, 1.5, 32, 33, 128, 129),
)
const nastyValue: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 5, arbitrary: nastyString },
  { weight: 3, arbitrary: nastyNumber },
  { weight: 1, arbitrary: fc.constantFrom(null, undefined, true, false, '', [], {}, ['10.0.0.1'], { established: true }) },
  { weight: 1, arbitrary: fc.oneof(fc.ipV4(), fc.ipV4Extended(), fc.ipV6()).chain((ip) => fc.oneof(fc.constant(ip), fc.integer({ min: -1, max: 140 }).map((l) => `${ip}/${l}`), fc.constant(` ${ip} `), fc.constant(`${ip}%eth0`))) },
  { weight: 1, arbitrary: fc.tuple(fc.array(fc.integer({ min: 0, max: 300 }), { minLength: 5, maxLength: 7 }), fc.constantFrom(':', '-', '.')).map(([b, sep]) => b.map((x) => x.toString(16).padStart(2, '0')).join(sep)) },
  { weight: 1, arbitrary: fc.constantFrom('ACCEPT', 'DROP', 'REJECT', 'accept', 'drop', 'IN', 'OUT', 'INOUT', 'tcp', 'UDP', 'Icmp', 'all', 'sctp', '255.255.255.0', '255.0.255.0', '24', ' 24 ') },
  // Keys named like Object.prototype members ('constructor', 'toString', '__proto__') are accepted as
  // connection states today (known bug, see firewall-bugs.pending.ts), so they are not generated here.
  { weight: 1, arbitrary: fc.dictionary(fc.constantFrom('established', 'new', 'related', 'invalid', 'foo', 'ESTABLISHED', ''), fc.oneof(fc.boolean(), fc.constant(null), nastyString), { maxKeys: 4 }) },
)

// ---- oracle: the documented validation rules, re-implemented independently ----

const SAFE = /^[\x21\x23-\x5b\x5d-\x7e]+$/
const isNil = (v: unknown) => v === undefined || v === null
const bytes = (s: string) => Buffer.byteLength(s, 'utf8')
const token = (max: number) => (v: unknown) => typeof v === 'string' && v.length >= 1 && v.length <= max && SAFE.test(v)
const text = (max: number, optional: boolean) => (v: unknown) =>
  isNil(v) ? optional : typeof v === 'string' && (optional || v.length > 0) && bytes(v) <= max && !/[\x00-\x1f\x7f]/.test(v)
const oneOf = (xs: string[]) => (v: unknown) => isNil(v) || xs.includes(v as string)
const port = (v: unknown) => isNil(v) || (typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 65535)
const strictV6 = (s: string) => isIPv6(s) && !s.includes('%')
function cidr(v: unknown): boolean {
  if (v === undefined || v === null || v === '') return true
  if (typeof v !== 'string') return false
  const [addr, len, ...rest] = v.trim().split('/')
  if (rest.length) return false
  const max = isIPv4(addr!) ? 32 : strictV6(addr!) ? 128 : -1
  if (max < 0) return false
  return len === undefined || (/^\d{1,3}$/.test(len) && Number(len) <= max)
}
function v4mask(v: unknown): boolean {
  if (v === undefined || v === null || v === '') return true
  if (typeof v === 'number') return Number.isInteger(v) && v >= 0 && v <= 32
  if (typeof v !== 'string') return false
  const m = v.trim()
  if (/^\d{1,3}$/.test(m)) return Number(m) <= 32
  if (!isIPv4(m)) return false
  const bits = m.split('.').map((x) => Number(x).toString(2).padStart(8, '0')).join('')
  return /^1*0*$/.test(bits)
}
function connState(v: unknown): boolean {
  if (isNil(v)) return true
  if (typeof v !== 'object') return false
  return Object.entries(v as object).every(([k, x]) => ['established', 'new', 'related', 'invalid'].includes(k) && (isNil(x) || typeof x === 'boolean'))
}
// A leading '@' would be read as a set reference by libnftables' JSON parser, so it is refused.
const ifname = (v: unknown) =>
  typeof v === 'string' && v.length > 0 && bytes(v) <= 15 && v !== '.' && v !== '..' && !v.startsWith('@') && /^[A-Za-z0-9_.+@-]+$/.test(v)
const mac = (v: unknown) => isNil(v) || (typeof v === 'string' && /^[0-9a-fA-F]{2}([:-][0-9a-fA-F]{2}){5}$/.test(v) && (parseInt(v.slice(0, 2), 16) & 1) === 0)
const addrList = (ok: (s: string) => boolean) => (v: unknown) => isNil(v) || (Array.isArray(v) && v.every((a) => typeof a === 'string' && ok(a)))

interface Slot {
  field: string
  /** Field names the error may carry for this slot. */
  names: (f: string) => boolean
  valid: (v: unknown) => boolean
  /** Adjusts the (valid) base so that the slot alone decides validity. */
  prepare?: (o: Record<string, unknown>) => void
}
const exact = (field: string) => (f: string) => f === field
const noPorts = (r: Record<string, unknown>) => {
  delete r.srcPortStart, delete r.srcPortEnd, delete r.dstPortStart, delete r.dstPortEnd
}

const RULE_SLOTS: Slot[] = [
  { field: 'id', names: exact('id'), valid: token(64) },
  { field: 'name', names: exact('name'), valid: text(255, false) },
  { field: 'description', names: exact('description'), valid: text(4096, true) },
  { field: 'action', names: exact('action'), valid: oneOf(['ACCEPT', 'DROP', 'REJECT']) },
  { field: 'direction', names: exact('direction'), valid: oneOf(['IN', 'OUT', 'INOUT']) },
  { field: 'priority', names: exact('priority'), valid: (v) => isNil(v) || (typeof v === 'number' && Number.isInteger(v) && Math.abs(v) <= 1e6) },
  { field: 'protocol', names: exact('protocol'), valid: (v) => isNil(v) || (typeof v === 'string' && ['tcp', 'udp', 'icmp', 'all'].includes(v.toLowerCase())), prepare: noPorts },
  ...(['srcPortStart', 'dstPortStart'] as const).map(
    (field): Slot => ({ field, names: exact(field), valid: port, prepare: (r) => (noPorts(r), (r.protocol = 'tcp')) }),
  ),
  { field: 'dstPortEnd', names: exact('dstPortEnd'), valid: port, prepare: (r) => (noPorts(r), (r.protocol = 'udp'), (r.dstPortStart = 1)) },
  ...(['srcIpAddr', 'dstIpAddr'] as const).map(
    (field): Slot => ({ field, names: exact(field), valid: cidr, prepare: (r) => ((r.srcIpAddr = r.dstIpAddr = r.srcIpMask = r.dstIpMask = null), undefined) }),
  ),
  { field: 'srcIpMask', names: exact('srcIpMask'), valid: v4mask, prepare: (r) => ((r.srcIpAddr = '10.1.2.0'), (r.dstIpAddr = r.srcIpMask = r.dstIpMask = null)) },
  { field: 'connectionState', names: (f) => f.startsWith('connectionState'), valid: connState },
  { field: 'overridesDept', names: exact('overridesDept'), valid: (v) => isNil(v) || typeof v === 'boolean' },
]
const VM_SLOTS: Slot[] = [
  { field: 'vmId', names: exact('vmId'), valid: token(96) },
  { field: 'tap', names: exact('tap'), valid: ifname },
  { field: 'mac', names: exact('mac'), valid: mac },
  { field: 'ipv4', names: (f) => /^ipv4(\[\d+\])?$/.test(f), valid: addrList(isIPv4) },
  { field: 'ipv6', names: (f) => /^ipv6(\[\d+\])?$/.test(f), valid: addrList(strictV6) },
  { field: 'defaultAction', names: exact('defaultAction'), valid: (v) => isNil(v) || v === 'accept' || v === 'drop' },
  { field: 'antiSpoofing', names: exact('antiSpoofing'), valid: (v) => v === undefined || typeof v === 'boolean' },
  { field: 'dhcp', names: exact('dhcp'), valid: (v) => v === undefined || typeof v === 'boolean' },
]

// ---- valid (but hostile-looking) specs ----

const SAFE_CHARS = [...Array.from({ length: 0x7e - 0x21 + 1 }, (_, i) => String.fromCharCode(0x21 + i))].filter((c) => c !== '"' && c !== '\\')
const safeToken = (max: number) =>
  fc.oneof(
    fc.array(fc.constantFrom(...SAFE_CHARS), { minLength: 1, maxLength: max }).map((a) => a.join('')),
    fc.constantFrom(';', '{}', '};flush', "'", '#x', '$v', '@from_vm', 'jump', 'vm_0', 'x'.repeat(max), 'a;b{c}d', "it's"),
  )
const validName = fc.oneof(
  nastyString.filter((s) => text(255, false)(s)),
  fc.constantFrom('"; flush ruleset; "', '} } table ip evil {', 'comment "x"', "it's", 'é'.repeat(127), 'x'.repeat(255), '😀 emoji', '\u202eRTL'),
)
const v4 = fc.ipV4()
const v6 = fc.ipV6()
const validRule = (idArb: fc.Arbitrary<string>): fc.Arbitrary<FirewallRuleInput> =>
  fc
    .record(
      {
        id: idArb,
        name: validName,
        description: fc.oneof(fc.constant(null), validName),
        action: fc.constantFrom('ACCEPT', 'DROP', 'REJECT') as fc.Arbitrary<FirewallRuleInput['action']>,
        direction: fc.constantFrom('IN', 'OUT', 'INOUT') as fc.Arbitrary<FirewallRuleInput['direction']>,
        priority: fc.integer({ min: -1e6, max: 1e6 }),
        protocol: fc.constantFrom('tcp', 'udp', 'icmp', 'all', 'TCP', 'Udp', 'ICMP'),
        port: fc.option(fc.tuple(fc.integer({ min: 1, max: 65535 }), fc.integer({ min: 0, max: 1000 }), fc.boolean())),
        family: fc.constantFrom(0, 4, 6),
        src: fc.option(fc.tuple(fc.oneof(v4, v6), fc.integer({ min: 0, max: 128 }))),
        dst: fc.option(fc.tuple(fc.oneof(v4, v6), fc.integer({ min: 0, max: 128 }))),
        cs: fc.option(fc.record({ established: fc.boolean(), new: fc.boolean(), related: fc.boolean(), invalid: fc.boolean() }, { requiredKeys: [] })),
        overridesDept: fc.option(fc.boolean()),
      },
      { requiredKeys: ['id', 'name'] },
    )
    .map((g) => {
      const r: FirewallRuleInput = { id: g.id, name: g.name, description: g.description, action: g.action, direction: g.direction, priority: g.priority, protocol: g.protocol }
      const tcpudp = ['tcp', 'udp'].includes(String(g.protocol).toLowerCase())
      if (g.port && tcpudp) {
        const [start, span, src] = g.port
        r[src ? 'srcPortStart' : 'dstPortStart'] = start
        r[src ? 'srcPortEnd' : 'dstPortEnd'] = Math.min(65535, start + span)
      }
      // Same family on both sides (mixing is invalid): take the family of src, or a forced one.
      const fix = (t: [string, number] | null | undefined, want: 0 | 4 | 6): [string, number] | undefined => {
        if (!t) return undefined
        const [ip, len] = t
        const fam = ip.includes(':') ? 6 : 4
        if (want && fam !== want) return undefined
        return [ip, Math.min(len, fam === 4 ? 32 : 128)]
      }
      const s = fix(g.src, g.family as 0 | 4 | 6)
      const d = fix(g.dst, s ? (s[0].includes(':') ? 6 : 4) : (g.family as 0 | 4 | 6))
      if (s) (r.srcIpAddr = s[0]), (r.srcIpMask = s[0].includes(':') ? s[1] : String(s[1]))
      if (d) r.dstIpAddr = `${d[0]}/${d[1]}`
      if (g.cs) r.connectionState = g.cs
      if (g.overridesDept !== undefined && g.overridesDept !== null) r.overridesDept = g.overridesDept
      return r
    })

const tapArb = fc.oneof(
  fc.array(fc.constantFrom(...'abcXYZ019_.+@-'.split('')), { minLength: 1, maxLength: 15 }).map((a) => a.join('')).filter((t) => t !== '.' && t !== '..' && !t.startsWith('@')),
  fc.constantFrom('vnet0', '+', '-', '-1', '.x', 'a.b', 'x'.repeat(15), 'tap@0', 'x@', '0'),
)
const macArb = fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 6, maxLength: 6 }).map((b) => ((b[0] = b[0]! & 0xfe), b.map((x) => x.toString(16).padStart(2, '0')).join(':')))
const uniqueIds = <T extends { id: string }>(rules: T[]) => rules.filter((r, i) => rules.findIndex((x) => x.id === r.id) === i)
const validSpec: fc.Arbitrary<VmSpec> = fc
  .record(
    {
      vmId: safeToken(96),
      tap: tapArb,
      mac: fc.option(macArb),
      ipv4: fc.option(fc.array(v4, { maxLength: 3 })),
      ipv6: fc.option(fc.array(v6, { maxLength: 3 })),
      defaultAction: fc.constantFrom('accept', 'drop') as fc.Arbitrary<'accept' | 'drop'>,
      antiSpoofing: fc.boolean(),
      dhcp: fc.boolean(),
      rules: fc.array(validRule(safeToken(64)), { maxLength: 6 }).map(uniqueIds),
      departmentRules: fc.array(validRule(safeToken(64)), { maxLength: 3 }).map(uniqueIds),
    },
    { requiredKeys: ['vmId', 'tap'] },
  )
  .map((s) => s as VmSpec)

// ---- plan() checks ----

function fail(message: string): never {
  throw new Error(message)
}

/** plan() plus checks on what it would send (plain checks: `expect` is too slow for ~10^6 of them). */
function checkPlan(spec: VmSpec, stateful: boolean): number {
  const p = (stateful ? statefulPlanner : planner).plan(spec)
  for (const cmd of p.commands.nftables) {
    const [verb, body] = Object.entries(cmd)[0]! as [string, Record<string, Record<string, unknown>>]
    if (!['add', 'flush', 'delete'].includes(verb)) fail(`unexpected verb ${verb}`)
    const [kind, obj] = Object.entries(body)[0]!
    if (!['chain', 'rule', 'element'].includes(kind)) fail(`unexpected object ${kind}`)
    if (obj!.family !== 'bridge' || obj!.table !== 'infinization') fail(`command outside the own table: ${JSON.stringify(cmd)}`)
    if (kind === 'rule') {
      const comment = obj!.comment as string
      if (bytes(comment) > 128) fail(`comment longer than 128 bytes: ${comment}`)
      if (!/^[rmbd]:[0-9a-f]{8}:[\x21\x23-\x5b\x5d-\x7e]+$/.test(comment)) fail(`unsafe comment ${JSON.stringify(comment)}`)
      if (!/^vm_[0-9a-f]{24}_[oi]$/.test(String(obj!.chain))) fail(`rule in foreign chain ${String(obj!.chain)}`)
    }
  }
  if (p.text.includes('\0')) fail('NUL in plan text')
  return p.commands.nftables.length
}

/** Describes any value, even ones String() cannot convert. */
function describe(v: unknown): string {
  try {
    return typeof v === 'string' ? JSON.stringify(v) : typeof v === 'bigint' ? `${v}n` : (JSON.stringify(v) ?? String(v))
  } catch {
    return Object.prototype.toString.call(v)
  }
}

let counters = { slotInvalid: 0, slotValid: 0, rules: 0, specs: 0, junk: 0, junkValid: 0, commands: 0 }
const sampleForKernel: VmSpec[] = []

it('one hostile field at a time: invalid -> FirewallValidationError naming it, valid -> plan()', { timeout: size(90_000, 1_800_000) }, () => {
  const runs = size(3000, 60_000)
  const slots = [...RULE_SLOTS.map((s) => ({ ...s, rule: true })), ...VM_SLOTS.map((s) => ({ ...s, rule: false }))]
  fc.assert(
    fc.property(validSpec, validRule(fc.constant('target')), fc.nat({ max: slots.length - 1 }), nastyValue, fc.boolean(), (spec, target, slotIndex, value, dept) => {
      const slot = slots[slotIndex]!
      const s = structuredClone(spec) as unknown as Record<string, unknown>
      const list = dept ? 'departmentRules' : 'rules'
      let where: Record<string, unknown> = s
      if (slot.rule) {
        const r = structuredClone(target) as unknown as Record<string, unknown>
        const rules = ((s[list] as unknown[] | undefined) ?? []).filter((x) => (x as { id: string }).id !== 'target' && (x as { id: string }).id !== value)
        rules.splice(Math.floor(rules.length / 2), 0, r)
        s[list] = rules
        where = r
      }
      slot.prepare?.(where)
      where[slot.field] = value
      counters.rules += ((s.rules as unknown[]) ?? []).length + ((s.departmentRules as unknown[]) ?? []).length
      counters.specs++
      const valid = slot.valid(value)
      let error: unknown
      try {
        counters.commands += checkPlan(s as unknown as VmSpec, false)
      } catch (e) {
        error = e
      }
      const what = `slot ${slot.field} = ${describe(value)}`
      if (valid) {
        counters.slotValid++
        expect(error, `${what}: valid per the oracle but rejected: ${String(error)}`).toBeUndefined()
      } else {
        counters.slotInvalid++
        expect(error, `${what}: invalid per the oracle but accepted`).toBeInstanceOf(FirewallValidationError)
        const e = error as FirewallValidationError
        expect(slot.names(e.field), `${what}: error names ${e.field}`).toBe(true)
        if (slot.rule && slot.field !== 'id') expect(e.ruleId, what).toBe('target')
      }
    }),
    { numRuns: runs, seed },
  )
})

it('valid hostile-looking specs (quotes, ;, {}, keywords, unicode in names; odd ids and taps) compile to commands on the own table only', { timeout: size(90_000, 1_800_000) }, () => {
  const runs = size(2000, 30_000)
  const every = Math.max(1, Math.floor(runs / size(200, 2000)))
  let n = 0
  fc.assert(
    fc.property(validSpec, fc.boolean(), (spec, stateful) => {
      counters.specs++
      counters.rules += (spec.rules?.length ?? 0) + (spec.departmentRules?.length ?? 0)
      counters.commands += checkPlan(spec, stateful)
      if (n++ % every === 0) sampleForKernel.push(spec)
    }),
    { numRuns: runs, seed: seed + 1 },
  )
})

it('arbitrary junk as a spec or a rule never escapes as anything but FirewallValidationError', { timeout: size(90_000, 1_800_000) }, () => {
  const runs = size(1500, 20_000)
  const junkRule = fc.dictionary(fc.constantFrom('id', 'name', 'description', 'action', 'direction', 'priority', 'protocol', 'srcPortStart', 'srcPortEnd', 'dstPortStart', 'dstPortEnd', 'srcIpAddr', 'srcIpMask', 'dstIpAddr', 'dstIpMask', 'connectionState', 'overridesDept'), nastyValue, { maxKeys: 17 })
  const junkSpec = fc.oneof(
    fc.dictionary(fc.constantFrom('vmId', 'tap', 'mac', 'ipv4', 'ipv6', 'rules', 'departmentRules', 'defaultAction', 'antiSpoofing', 'dhcp'), fc.oneof(nastyValue, fc.array(fc.oneof(junkRule, nastyValue), { maxLength: 4 })), { maxKeys: 10 }),
    fc.record({ vmId: safeToken(96), tap: tapArb, rules: fc.array(junkRule, { maxLength: 4 }) }),
    fc.anything(),
  )
  fc.assert(
    fc.property(junkSpec, (spec) => {
      counters.junk++
      try {
        checkPlan(spec as VmSpec, false)
        counters.junkValid++
      } catch (e) {
        if (!(e instanceof FirewallValidationError)) throw e
        expect(typeof e.field).toBe('string')
      }
    }),
    { numRuns: runs, seed: seed + 2 },
  )
  report(
    'firewall/hostile (generated)',
    `${counters.specs + counters.junk} specs (${counters.rules} rules) generated: ${counters.slotInvalid} with one invalid field, all rejected naming it; ` +
      `${counters.slotValid} hostile-but-valid values accepted as the oracle predicts; ${counters.junk} junk objects (${counters.junkValid} valid), never an untyped error; ` +
      `${counters.commands} planned commands, all on table bridge infinization`,
  )
})

it('a sample of the valid specs applied for real: no SYNTAX error, nothing outside the own table, export/restore round trip', { timeout: size(90_000, 1_800_000) }, async () => {
  expect(sampleForKernel.length).toBeGreaterThan(0)
  const fw = new VmFirewall(nft)
  ns.exec('nft', ['add table bridge other; add chain bridge other c; add rule bridge other c counter accept'])
  const other = ns.exec('nft', ['list', 'table', 'bridge', 'other'])
  let applied = 0
  let roundTrips = 0
  for (let i = 0; i < sampleForKernel.length; i++) {
    const spec = sampleForKernel[i]!
    try {
      await fw.applyVm(spec)
      applied++
    } catch (e) {
      // Valid input must apply; a SYNTAX error would mean a value reached libnftables unescaped.
      throw new Error(`valid spec ${i} failed (${(e as NftError).code}): ${String(e)}\n${JSON.stringify(spec)}`)
    }
    if (i % 20 === 19 || i === sampleForKernel.length - 1) {
      expect(tables(ns)).toEqual(['table bridge infinization', 'table bridge other'])
      const exported = await fw.exportRuleset()
      const listing = ns.exec('nft', ['list', 'table', 'bridge', 'infinization'])
      await fw.restoreRuleset(exported).catch((e: unknown) => {
        throw new Error(`restoreRuleset of an exportRuleset failed (${(e as NftError).code}): ${String(e)}\n${exported}`)
      })
      expect(ns.exec('nft', ['list', 'table', 'bridge', 'infinization'])).toBe(listing)
      roundTrips++
    }
    if (i % 20 === 19) await fw.sync([])
  }
  expect(ns.exec('nft', ['list', 'table', 'bridge', 'other'])).toBe(other)
  report('firewall/hostile (kernel)', `${applied} valid hostile specs applied in a namespace: 0 errors (no SYNTAX), only table bridge infinization created; ${roundTrips} export/restore round trips identical`)
})
