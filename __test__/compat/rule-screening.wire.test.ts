// Rules through the facade as the backend sends them: names cleaned as Infinization's translator did
// (control characters, length) and applied; and a rule that still cannot be applied never widens access
// (a refused DROP/REJECT keeps the VM's previous rules, or a new VM closed). Checked with real packets.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { NftablesJson } from '../../ts/index.js'
import { NftablesService, generateVMChainName, type FirewallRuleInput } from '../../ts/compat/index.js'
import { cleanText, screenRules, wideningRefusals } from '../../ts/compat/rules.js'
import { writesDuring as countWritesDuring } from '../support/nft-writes.js'
import { buildWorld, type Vm, type World } from '../support/world.js'

let w: World
let svc: NftablesService
let A: Vm, B: Vm, C: Vm
beforeAll(async () => {
  w = await buildWorld({ vms: 3, subnet: 72 })
  ;[A, B, C] = w.vms as [Vm, Vm, Vm]
  svc = new NftablesService({ nft: w.nft, bridgeConntrackMode: 'degrade' })
  await svc.initialize()
  await svc.applyRules(B.vmId, B.tap, [], [], 'accept')
})
afterAll(async () => {
  svc?.close()
  await w?.destroy()
})

const passes = async (probe: () => Promise<boolean>): Promise<boolean> => (await probe()) || (await probe())
const comments = (vm: Vm, side: '_o' | '_i'): string[] =>
  (JSON.parse(w.hostNft(['-j', 'list', 'chain', 'bridge', 'infinization', generateVMChainName(vm.vmId) + side])) as NftablesJson).nftables
    .filter((o) => 'rule' in o)
    .map((o) => (o.rule as { comment?: string }).comment ?? '')
/** Counts write transactions sent through the world's Nft while `fn` runs. */
const writesDuring = (fn: () => Promise<unknown>): Promise<number> => countWritesDuring(w.nft, fn)

const tcpIn = (id: string, port: number, action: FirewallRuleInput['action'], extra: Partial<FirewallRuleInput> = {}): FirewallRuleInput => ({
  id,
  name: id,
  action,
  direction: 'IN',
  protocol: 'tcp',
  dstPortStart: port,
  priority: 100,
  ...extra,
})

describe('rule names are cleaned, not refused', () => {
  it('cleanText: control characters become spaces; cut to the byte limit on a character boundary', () => {
    expect(cleanText(' a\nb\tc\r\x00d ', 255)).toBe('a b c  d')
    const long = 'ñ'.repeat(200) // 400 bytes
    const cut = cleanText(long, 255)
    expect(Buffer.byteLength(cut)).toBeLessThanOrEqual(255)
    expect(cut).toBe('ñ'.repeat(127))
    expect(cleanText('\n\t', 255)).toBe('')
  })

  it('names with newlines and tabs, names over 255 bytes, blank and missing names all apply; the rule id stays in the comment', async () => {
    const rules: FirewallRuleInput[] = [
      tcpIn('web', 80, 'ACCEPT', { name: 'Allow\nweb\tin' }),
      tcpIn('alt', 8080, 'ACCEPT', { name: `long ${'é'.repeat(300)}`, description: 'multi\nline\ndescription' }),
      tcpIn('tls', 443, 'ACCEPT', { name: ' \n ' }),
      { ...tcpIn('dns', 53, 'ACCEPT'), protocol: 'udp', name: undefined as unknown as string },
    ]
    const res = await svc.applyRules(A.vmId, A.tap, [], rules, 'drop')
    expect(res).toMatchObject({ applied: true, failedRules: 0, appliedRules: 4, failures: [] })
    const names = Object.fromEntries(res.details!.rules.map((r) => [r.id, r.name]))
    expect(names.web).toBe('Allow web in')
    expect(Buffer.byteLength(names.alt!)).toBeLessThanOrEqual(255)
    expect(names.alt!.startsWith('long éé')).toBe(true)
    expect(names.tls).toBe('tls')
    expect(names.dns).toBe('dns')
    const inComments = comments(A, '_i')
    for (const id of ['web', 'alt', 'tls', 'dns']) expect(inComments.some((c) => new RegExp(`^r:[0-9a-f]{8}:${id}$`).test(c))).toBe(true)
    expect(await passes(() => w.tcp(B, A.ipv4, 80))).toBe(true)
    expect(await passes(() => w.tcp(B, A.ipv4, 8080))).toBe(true)
    expect(await w.tcp(B, A.ipv4, 22)).toBe(false)
    await svc.removeVMChain(A.vmId)
  })
})

describe('a refused rule never widens access', () => {
  // A bad mask is refused by validation whatever the name (dotted masks must be contiguous).
  const badMask = { srcIpAddr: '10.72.0.0', srcIpMask: '255.0.255.0' }

  it('ALLOW_ALL VM: a refused DROP keeps the previous rules (no write), reported; the valid rest is not applied', async () => {
    await svc.applyRules(A.vmId, A.tap, [], [tcpIn('no-ssh', 22, 'DROP')], 'accept')
    expect(await w.tcp(B, A.ipv4, 22)).toBe(false)
    expect(await passes(() => w.tcp(B, A.ipv4, 80))).toBe(true)

    // The backend now sends the same DROP with a field the engine refuses, plus a new valid DROP of 80.
    let res!: Awaited<ReturnType<NftablesService['applyRules']>>
    const writes = await writesDuring(async () => {
      res = await svc.applyRules(A.vmId, A.tap, [], [tcpIn('no-ssh', 22, 'DROP', badMask), tcpIn('no-web', 80, 'DROP')], 'accept')
    })
    expect(writes).toBe(0)
    expect(res).toMatchObject({ applied: false, appliedRules: 0, failedRules: 1, attached: true, notApplied: { code: 'POLICY_NOT_APPLIED', kept: 'previous' } })
    expect(res.failures).toEqual([expect.objectContaining({ ruleId: 'no-ssh', code: 'INVALID_SUBNET_MASK', blocksApply: true })])
    expect(res.details).toBeUndefined()
    // SSH is still blocked (applying the rest would have opened it); the previous policy is in force.
    expect(await w.tcp(B, A.ipv4, 22)).toBe(false)
    expect(await passes(() => w.tcp(B, A.ipv4, 80))).toBe(true)

    // applyRulesIfChanged: same refusal, nothing written, reported as not changed.
    const again = await svc.applyRulesIfChanged(A.vmId, A.tap, [], [tcpIn('no-ssh', 22, 'REJECT', badMask)], 'accept')
    expect(again).toMatchObject({ changed: false, result: { applied: false, notApplied: { kept: 'previous' } } })
    expect(await w.tcp(B, A.ipv4, 22)).toBe(false)
    await svc.removeVMChain(A.vmId)
  })

  it('a new VM whose first policy is refused is closed (default drop only), and opens once a policy applies', async () => {
    const res = await svc.applyRules(C.vmId, C.tap, [], [{ ...tcpIn('no-ssh', 22, 'DROP'), protocol: 'gre' }], 'accept')
    expect(res).toMatchObject({ applied: false, attached: true, notApplied: { kept: 'closed' } })
    expect(res.failures[0]).toMatchObject({ code: 'UNSUPPORTED_PROTOCOL', blocksApply: true })
    expect(await w.tcp(B, C.ipv4, 80)).toBe(false)
    expect(await w.ping(B, C.ipv4)).toBe(false)
    const ok = await svc.applyRules(C.vmId, C.tap, [], [tcpIn('no-ssh', 22, 'DROP')], 'accept')
    expect(ok.applied).toBe(true)
    expect(await passes(() => w.tcp(B, C.ipv4, 80))).toBe(true)
    expect(await w.tcp(B, C.ipv4, 22)).toBe(false)
    await svc.removeVMChain(C.vmId)
  })

  it('BLOCK_ALL VM: a refused DROP ahead of an ACCEPT blocks the apply; one after every ACCEPT, or a refused ACCEPT, does not', async () => {
    // DROP ssh from one subnet at priority 10, ACCEPT ssh at 100: without the DROP, ssh would open to all.
    const before = await svc.applyRules(A.vmId, A.tap, [], [tcpIn('web', 80, 'ACCEPT')], 'drop')
    expect(before.applied).toBe(true)
    const refused = await svc.applyRules(A.vmId, A.tap, [], [tcpIn('no-ssh-from', 22, 'DROP', { ...badMask, priority: 10 }), tcpIn('ssh', 22, 'ACCEPT')], 'drop')
    expect(refused).toMatchObject({ applied: false, notApplied: { kept: 'previous' } })
    expect(await w.tcp(B, A.ipv4, 22)).toBe(false)
    expect(await passes(() => w.tcp(B, A.ipv4, 80))).toBe(true)

    // The refused DROP comes after every ACCEPT (priority 900): leaving it out changes nothing under drop.
    const late = await svc.applyRules(A.vmId, A.tap, [], [tcpIn('late-drop', 9000, 'DROP', { ...badMask, priority: 900 }), tcpIn('ssh', 22, 'ACCEPT')], 'drop')
    expect(late).toMatchObject({ applied: true, failedRules: 1, appliedRules: 1 })
    expect(late.failures[0]!.blocksApply).toBeUndefined()
    expect(await passes(() => w.tcp(B, A.ipv4, 22))).toBe(true)
    expect(await w.tcp(B, A.ipv4, 80)).toBe(false)

    // A refused ACCEPT only narrows: the rest applies (Infinization's behaviour).
    const narrow = await svc.applyRules(A.vmId, A.tap, [], [tcpIn('web', 80, 'ACCEPT', badMask), tcpIn('ssh', 22, 'ACCEPT')], 'drop')
    expect(narrow).toMatchObject({ applied: true, failedRules: 1 })
    expect(await w.tcp(B, A.ipv4, 80)).toBe(false)
    expect(await passes(() => w.tcp(B, A.ipv4, 22))).toBe(true)
    await svc.removeVMChain(A.vmId)
  })
})

describe('wideningRefusals (which refusals block the apply)', () => {
  const r = (o: Record<string, unknown>): FirewallRuleInput => ({ id: `x${Math.random().toString(36).slice(2, 8)}`, name: 'n', ...o }) as FirewallRuleInput
  const bad = { protocol: 'gre' }
  const blocks = (dept: FirewallRuleInput[], vm: FirewallRuleInput[], action: 'accept' | 'drop') => wideningRefusals(screenRules(dept, vm), action).length > 0

  it('DROP/REJECT (any case) or an unreadable action under default accept', () => {
    expect(blocks([], [r({ ...bad, action: 'DROP' })], 'accept')).toBe(true)
    expect(blocks([], [r({ ...bad, action: 'reject' })], 'accept')).toBe(true)
    expect(blocks([], [r({ ...bad, action: 42 })], 'accept')).toBe(true)
    expect(blocks([r({ ...bad, action: 'DROP' })], [], 'accept')).toBe(true)
    // ACCEPT (also by default, no action given) only narrows.
    expect(blocks([], [r({ ...bad, action: 'ACCEPT' }), r({ ...bad })], 'accept')).toBe(false)
  })

  it('under default drop: only ahead of (or tied with) an applied ACCEPT; an unreadable priority counts as ahead', () => {
    const accept100 = r({ action: 'ACCEPT', protocol: 'tcp', dstPortStart: 22, priority: 100 })
    expect(blocks([], [r({ ...bad, action: 'DROP', priority: 50 }), accept100], 'drop')).toBe(true)
    expect(blocks([], [r({ ...bad, action: 'DROP', priority: 100 }), accept100], 'drop')).toBe(true)
    expect(blocks([], [r({ ...bad, action: 'DROP', priority: 101 }), accept100], 'drop')).toBe(false)
    expect(blocks([], [r({ ...bad, action: 'DROP', priority: 'high' }), accept100], 'drop')).toBe(true)
    expect(blocks([], [r({ ...bad, action: 'DROP' })], 'drop')).toBe(false) // nothing to shadow
    // the default priority (500) on both sides
    expect(blocks([], [r({ ...bad, action: 'DROP' }), r({ action: 'ACCEPT', protocol: 'icmp' })], 'drop')).toBe(true)
  })

  it('a refused VM rule overriding department rules, while department rules apply', () => {
    const dept = [r({ action: 'ACCEPT', protocol: 'tcp', dstPortStart: 22 })]
    expect(blocks(dept, [r({ ...bad, action: 'ACCEPT', overridesDept: true })], 'drop')).toBe(true)
    expect(blocks([], [r({ ...bad, action: 'ACCEPT', overridesDept: true })], 'drop')).toBe(false)
  })
})
