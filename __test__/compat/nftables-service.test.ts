// The Infinization-compatible facade against the real kernel, in throwaway namespaces: the behaviours
// Infinization's own unit tests expect from a mocked `nft` (idempotent attach, cache invalidation when a
// chain vanished, scoped DHCP, terminal drop/accept, one transaction per apply, conntrack fail/degrade),
// plus the holes the facade closes. The `nft` CLI inside the namespace is the test-side oracle.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { Nft, NftError, type NftablesJson } from '../../ts/index.js'
import {
  CONNTRACK_MODE_ENV,
  INFINIZATION_TABLE_FAMILY,
  INFINIZATION_TABLE_NAME,
  MAX_CHAIN_NAME_LENGTH,
  NftablesError,
  NftablesService,
  VM_CHAIN_PREFIX,
  generateVMChainName,
  type FirewallRuleInput,
} from '../../ts/compat/index.js'
import { createNetns, type Netns } from '../support/netns.js'
import { countWrites, failWrites } from '../support/nft-writes.js'
import { baseGuardRules, GUARD_CHAINS } from '../../ts/firewall/layout.js'

let ns: Netns
let nft: Nft
let svc: NftablesService
const extra: NftablesService[] = []

beforeEach(() => {
  ns = createNetns('cmpt')
  nft = new Nft({ netns: ns.name })
  svc = new NftablesService({ nft, bridgeConntrackMode: 'degrade' })
})
afterEach(() => {
  vi.restoreAllMocks()
  for (const s of extra.splice(0)) s.close()
  svc.close()
  nft.close()
  ns.delete()
})

const T = INFINIZATION_TABLE_NAME
const base = (vmId: string) => generateVMChainName(vmId)
const cli = (args: string[], input?: string): string => ns.exec('nft', args, input === undefined ? {} : { input })
const cliJson = (args: string[]): NftablesJson => JSON.parse(cli(['-j', ...args])) as NftablesJson

/** Dispatch entries of a map as [interface, target chain]. */
function entries(map: 'from_vm' | 'to_vm', table = T): [string, string][] {
  const doc = cliJson(['list', 'map', 'bridge', table, map])
  const out: [string, string][] = []
  for (const o of doc.nftables) {
    if (!('map' in o)) continue
    for (const e of ((o.map as { elem?: unknown[] }).elem ?? []) as [string, { jump: { target: string } }][]) out.push([e[0], e[1].jump.target])
  }
  return out.sort()
}

interface CliRule {
  comment: string
  verdict: string
  text: string
}
/** Rules of a chain as the CLI lists them; undefined when the chain does not exist. */
function rules(chain: string, table = T): CliRule[] | undefined {
  let doc: NftablesJson
  try {
    doc = cliJson(['list', 'chain', 'bridge', table, chain])
  } catch {
    return undefined
  }
  return doc.nftables
    .filter((o) => 'rule' in o)
    .map((o) => {
      const r = o.rule as { comment?: string; expr: Record<string, unknown>[] }
      const last = r.expr[r.expr.length - 1]!
      return { comment: r.comment ?? '', verdict: Object.keys(last)[0]!, text: JSON.stringify(r.expr) }
    })
}
const comments = (chain: string) => (rules(chain) ?? []).map((r) => r.comment)
const kinds = (chain: string) => comments(chain).map((c) => c.split(':')[0])

/** Deletes a VM's chains (and dispatch entries) behind the service's back, with the CLI. */
function deleteBehindBack(vmId: string, tap?: string): void {
  const b = base(vmId)
  const lines = [
    ...(tap ? [`delete element bridge ${T} from_vm { "${tap}" }`, `delete element bridge ${T} to_vm { "${tap}" }`] : []),
    `delete chain bridge ${T} ${b}_o`,
    `delete chain bridge ${T} ${b}_i`,
  ]
  cli(['-f', '-'], lines.join('\n') + '\n')
}

let n = 0
const rule = (r: Partial<FirewallRuleInput>): FirewallRuleInput => ({ id: `r${++n}`, name: `rule ${n}`, ...r })
const ssh = (): FirewallRuleInput => ({ id: 'ssh', name: 'ssh in', direction: 'IN', protocol: 'tcp', dstPortStart: 22, action: 'ACCEPT', priority: 100 })

describe('exports', () => {
  it('chain naming, constants and the error class are Infinization-compatible', () => {
    const id = '5f9b1c2d-0000-4aaa-8bbb-1234567890ab'
    expect(generateVMChainName(id)).toBe(generateVMChainName(id))
    expect(generateVMChainName(id)).toMatch(/^vm_[0-9a-f]{24}$/)
    expect(generateVMChainName(id).startsWith(VM_CHAIN_PREFIX)).toBe(true)
    expect(generateVMChainName(id).length).toBeLessThanOrEqual(MAX_CHAIN_NAME_LENGTH)
    expect(generateVMChainName('aaaaaaaa-1111-4111-8111-111111111111')).not.toBe(generateVMChainName('aaaaaaaa-2222-4222-8222-222222222222'))
    expect(INFINIZATION_TABLE_NAME).toBe('infinization')
    expect(INFINIZATION_TABLE_FAMILY).toBe('bridge')
    expect(new NftablesError('CHAIN_NOT_FOUND', 'x')).toBeInstanceOf(Error)
  })
})

describe('initialize', () => {
  it('creates the table once; calling it again keeps VM chains and dispatch', async () => {
    await svc.initialize()
    await svc.createVMChain('vm-1', 'vnet-1')
    await svc.initialize()
    expect(await svc.listChains()).toEqual([...GUARD_CHAINS, 'prerouting', 'postrouting', base('vm-1')])
    expect(entries('from_vm')).toEqual([['vnet-1', `${base('vm-1')}_o`]])
  })
})

describe('attach / detach (Infinization L90)', () => {
  it('attaching twice yields exactly one entry per direction', async () => {
    await svc.initialize()
    await svc.ensureVMChain('vm-1')
    await svc.attachJumpRules('vm-1', 'vnet-abc12345')
    await svc.attachJumpRules('vm-1', 'vnet-abc12345')
    expect(entries('from_vm')).toEqual([['vnet-abc12345', `${base('vm-1')}_o`]])
    expect(entries('to_vm')).toEqual([['vnet-abc12345', `${base('vm-1')}_i`]])
  })

  it('createVMChain followed by attachJumpRules does not duplicate dispatch', async () => {
    expect(await svc.createVMChain('vm-2', 'vnet-def67890')).toBe(base('vm-2'))
    await svc.attachJumpRules('vm-2', 'vnet-def67890')
    expect(entries('from_vm')).toEqual([['vnet-def67890', `${base('vm-2')}_o`]])
    expect(entries('to_vm')).toEqual([['vnet-def67890', `${base('vm-2')}_i`]])
  })

  it('a prefix-colliding TAP name (vnet-abc vs vnet-abc1) neither suppresses nor removes the other VM', async () => {
    await svc.attachJumpRules('vm-a', 'vnet-abc')
    await svc.attachJumpRules('vm-b', 'vnet-abc1')
    expect(entries('from_vm')).toEqual([
      ['vnet-abc', `${base('vm-a')}_o`],
      ['vnet-abc1', `${base('vm-b')}_o`],
    ])
    await svc.detachJumpRules('vm-a')
    expect(entries('from_vm')).toEqual([['vnet-abc1', `${base('vm-b')}_o`]])
    expect(entries('to_vm')).toEqual([['vnet-abc1', `${base('vm-b')}_i`]])
  })

  it('a VM attached before any rule is applied is closed (default drop), never an empty chain', async () => {
    await svc.attachJumpRules('vm-1', 'vnet-1')
    for (const side of ['_o', '_i']) {
      const r = rules(base('vm-1') + side)!
      expect(r.at(-1)).toMatchObject({ verdict: 'drop', comment: expect.stringMatching(/^d:[0-9a-f]{8}:vm-1$/) })
      expect(kinds(base('vm-1') + side)).not.toContain('r')
    }
  })

  it('detach keeps chains and rules; detaching twice is fine', async () => {
    await svc.applyRules('vm-1', 'vnet-1', [], [ssh()])
    await svc.detachJumpRules('vm-1')
    await svc.detachJumpRules('vm-1')
    expect(entries('from_vm')).toEqual([])
    expect(entries('to_vm')).toEqual([])
    expect(await svc.chainExists(base('vm-1'))).toBe(true)
    expect(comments(`${base('vm-1')}_i`).some((c) => c.endsWith(':ssh'))).toBe(true)
  })
})

describe('applyRules', () => {
  it('one write transaction per apply (new VM and existing VM), and the result shape', async () => {
    await svc.initialize()
    const c = countWrites(nft)
    const res = await svc.applyRules('vm-1', 'vnet-1', [rule({ direction: 'OUT', protocol: 'udp', dstPortStart: 53 })], [ssh()], 'drop')
    expect(c.writes()).toBe(1)
    expect(res).toMatchObject({ totalRules: 2, appliedRules: 2, failedRules: 0, chainName: base('vm-1'), failures: [], attached: true })
    await svc.applyRules('vm-1', 'vnet-1', [], [ssh(), rule({ protocol: 'icmp' })], 'drop')
    expect(c.writes()).toBe(2)
  })

  it('terminal drop / accept is the last rule of both chains; drop when no default is given', async () => {
    for (const [action, want] of [
      ['accept', 'accept'],
      ['drop', 'drop'],
      [undefined, 'drop'],
    ] as const) {
      await svc.applyRules('vm-1', 'vnet-1', [], [ssh()], action)
      for (const side of ['_o', '_i']) {
        expect(rules(base('vm-1') + side)!.at(-1)).toMatchObject({ verdict: want, comment: expect.stringMatching(/^d:[0-9a-f]{8}:vm-1$/) })
      }
    }
  })

  it('a rule that fails validation is reported with a code and left out; the rest and the terminal drop apply', async () => {
    const res = await svc.applyRules(
      'vm-1',
      'vnet-1',
      [{ id: 'b', name: 'bad', action: 'ACCEPT', direction: 'IN', protocol: 'igmp', priority: 100 } as FirewallRuleInput],
      [ssh(), rule({ name: 'bad port', protocol: 'tcp', dstPortStart: 70000 }), rule({ name: 'bad ip', srcIpAddr: '300.1.1.1' }), rule({ name: 'bad mask', srcIpAddr: '10.0.0.0', srcIpMask: '255.0.255.0' })],
    )
    expect(res.failedRules).toBe(4)
    expect(res.totalRules).toBe(5)
    expect(res.appliedRules).toBe(1)
    expect(res.failures.map((f) => [f.ruleName, f.code])).toEqual([
      ['bad', 'UNSUPPORTED_PROTOCOL'],
      ['bad port', 'INVALID_PORT_RANGE'],
      ['bad ip', 'INVALID_IP_ADDRESS'],
      ['bad mask', 'INVALID_SUBNET_MASK'],
    ])
    expect(comments(`${base('vm-1')}_i`).some((c) => c.endsWith(':ssh'))).toBe(true)
    expect(rules(`${base('vm-1')}_i`)!.at(-1)!.verdict).toBe('drop')
  })

  it('REJECT no longer breaks the apply: it is dropped where the kernel cannot reject, and reported', async () => {
    const res = await svc.applyRules('vm-1', 'vnet-1', [], [rule({ direction: 'INOUT', protocol: 'tcp', dstPortStart: 23, action: 'REJECT' })])
    expect(res.failedRules).toBe(0)
    expect(res.details!.degradations.map((d) => d.kind)).toContain('reject-to-drop')
    expect(res.details!.rules[0]!.effective.in).toBe('drop')
  })

  it('a failed transaction throws an NftablesError with the kernel code and leaves the previous rules (fail-closed)', async () => {
    await svc.applyRules('vm-1', 'vnet-1', [], [ssh()])
    const before = comments(`${base('vm-1')}_i`)
    failWrites(nft, () => new NftError('EBUSY', 'EBUSY: simulated'))
    const err = await svc.applyRules('vm-1', 'vnet-1', [], [rule({ protocol: 'icmp' })]).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(NftablesError)
    expect(err).toMatchObject({ code: 'COMMAND_FAILED', context: { command: 'applyRules', nftCode: 'EBUSY' } })
    expect(comments(`${base('vm-1')}_i`)).toEqual(before)
  })

  it('a stopped (detached) VM stays detached when its rules are re-applied', async () => {
    await svc.applyRules('vm-1', 'vnet-1', [], [ssh()])
    await svc.detachJumpRules('vm-1')
    const c = countWrites(nft)
    const res = await svc.applyRules('vm-1', 'vnet-1', [], [ssh(), rule({ id: 'web', protocol: 'tcp', dstPortStart: 80, direction: 'IN' })], 'accept')
    expect(c.writes()).toBe(1)
    expect(res.attached).toBe(false)
    expect(entries('from_vm')).toEqual([])
    expect(entries('to_vm')).toEqual([])
    expect(comments(`${base('vm-1')}_i`).some((c) => c.endsWith(':web'))).toBe(true)
    expect(rules(`${base('vm-1')}_i`)!.at(-1)!.verdict).toBe('accept')
  })

  it('a bad identity from vmIdentity is refused by code before the kernel is touched', async () => {
    const s = new NftablesService({ nft, bridgeConntrackMode: 'degrade', vmIdentity: () => ({ mac: 'not-a-mac' }) })
    extra.push(s)
    await expect(s.applyRules('vm-1', 'vnet-1', [], [])).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', context: { field: 'mac' } })
    expect(cli(['list', 'tables']).trim()).toBe('')
  })

  it('errors carry codes, never only text', async () => {
    await expect(svc.applyRules('vm 1', 'vnet-1', [], [])).rejects.toMatchObject({ name: 'NftablesError', code: 'INVALID_ARGUMENT', context: { field: 'vmId' } })
    await expect(svc.applyRules('vm-1', 'bad/tap', [], [])).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', context: { field: 'tap' } })
    await expect(svc.applyRules('vm-1', 'vnet-1', [], [], 'reject' as 'drop')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' })
    await expect(svc.removeVMChainByName('forward')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' })
    await expect(svc.exportRuleset()).rejects.toMatchObject({ code: 'TABLE_NOT_FOUND', context: { nftCode: 'ENOENT' } })
  })
})

describe('applyRulesIfChanged (Infinization L86: decided against the kernel)', () => {
  it('skips an unchanged policy without writing; re-applies when the chain vanished behind its back', async () => {
    const c = countWrites(nft)
    const first = await svc.applyRulesIfChanged('vm-1', 'vnet-1', [], [ssh()], 'drop')
    expect(first.changed).toBe(true)
    expect(first.result?.chainName).toBe(base('vm-1'))
    const writes = c.writes()
    expect(await svc.applyRulesIfChanged('vm-1', 'vnet-1', [], [ssh()], 'drop')).toEqual({ changed: false })
    expect(c.writes()).toBe(writes)

    deleteBehindBack('vm-1', 'vnet-1')
    const third = await svc.applyRulesIfChanged('vm-1', 'vnet-1', [], [ssh()], 'drop')
    expect(third.changed).toBe(true)
    expect(rules(`${base('vm-1')}_i`)!.at(-1)!.verdict).toBe('drop')
    expect(comments(`${base('vm-1')}_i`).some((x) => x.endsWith(':ssh'))).toBe(true)
  })

  it('a chain edited behind its back, or a new default action, counts as changed', async () => {
    await svc.applyRulesIfChanged('vm-1', 'vnet-1', [], [ssh()], 'drop')
    cli(['flush', 'chain', 'bridge', T, `${base('vm-1')}_i`])
    expect((await svc.applyRulesIfChanged('vm-1', 'vnet-1', [], [ssh()], 'drop')).changed).toBe(true)
    expect((await svc.applyRulesIfChanged('vm-1', 'vnet-1', [], [ssh()], 'drop')).changed).toBe(false)
    expect((await svc.applyRulesIfChanged('vm-1', 'vnet-1', [], [ssh()], 'accept')).changed).toBe(true)
  })

  it('ensureVMChain recreating a vanished chain (closed, default drop) forces the next apply', async () => {
    await svc.applyRulesIfChanged('vm-1', 'vnet-1', [], [ssh()], 'drop')
    await svc.detachJumpRules('vm-1')
    deleteBehindBack('vm-1')
    expect(await svc.chainExists(base('vm-1'))).toBe(false)
    await svc.ensureVMChain('vm-1')
    expect(await svc.chainExists(base('vm-1'))).toBe(true)
    expect(kinds(`${base('vm-1')}_i`)).not.toContain('r')
    expect(rules(`${base('vm-1')}_i`)!.at(-1)!.verdict).toBe('drop')
    expect(entries('from_vm')).toEqual([])
    await svc.attachJumpRules('vm-1', 'vnet-1')
    const res = await svc.applyRulesIfChanged('vm-1', 'vnet-1', [], [ssh()], 'drop')
    expect(res.changed).toBe(true)
    expect(comments(`${base('vm-1')}_i`).some((x) => x.endsWith(':ssh'))).toBe(true)
  })

  it('rules that fail validation always count as changed (as Infinization never cached a partial apply)', async () => {
    const bad = [ssh(), rule({ name: 'bad', protocol: 'gre' })]
    expect((await svc.applyRulesIfChanged('vm-1', 'vnet-1', [], bad)).result?.failedRules).toBe(1)
    const again = await svc.applyRulesIfChanged('vm-1', 'vnet-1', [], bad)
    expect(again.changed).toBe(true)
    expect(again.result?.failures[0]).toMatchObject({ ruleName: 'bad', code: 'UNSUPPORTED_PROTOCOL' })
  })

  it('a new service instance (process restart) trusts the kernel, not an empty cache', async () => {
    await svc.applyRulesIfChanged('vm-1', 'vnet-1', [], [ssh()], 'drop')
    const fresh = new NftablesService({ nft, bridgeConntrackMode: 'degrade' })
    extra.push(fresh)
    expect(await fresh.applyRulesIfChanged('vm-1', 'vnet-1', [], [ssh()], 'drop')).toEqual({ changed: false })
  })

  it('a broken base chain counts as changed and is repaired', async () => {
    await svc.applyRulesIfChanged('vm-1', 'vnet-1', [], [ssh()], 'drop')
    cli(['flush', 'chain', 'bridge', T, 'prerouting'])
    expect((await svc.applyRulesIfChanged('vm-1', 'vnet-1', [], [ssh()], 'drop')).changed).toBe(true)
    // The shared guard's rules (issue 15) and the dispatch rule.
    expect(rules('prerouting')).toHaveLength(baseGuardRules('prerouting').length + 1)
    expect((await svc.applyRulesIfChanged('vm-1', 'vnet-1', [], [ssh()], 'drop')).changed).toBe(false)
  })
})

describe('DHCP (Infinization L98: scoped to the VM taps)', () => {
  it('lives in the shared guard, scoped to the VM taps (each rule looks up its tap last), with the exact client/server flow', async () => {
    await svc.initialize()
    await svc.applyRules('vm-1', 'vnet-1', [], [], 'drop')
    // Issue 15: the VM chains hold no built-in; the guard's DHCP rules apply to the taps in their sets only.
    for (const side of ['_o', '_i']) expect(rules(`${base('vm-1')}${side}`)!.some((r) => /:dhcp/.test(r.comment))).toBe(false)
    const out = rules('guard_ip')!
    const inn = rules('postrouting')!
    const client = out.find((r) => r.comment.endsWith(':dhcp-client'))!
    expect(client.verdict).toBe('accept')
    expect(client.text).toContain('"sport"}},"right":68')
    expect(client.text).toContain('"dport"}},"right":67')
    expect(client.text).toContain('"right":"@b_dhcp_client"')
    expect(out.find((r) => r.comment.endsWith(':dhcp-server-from-vm'))!.verdict).toBe('drop')
    const reply = inn.find((r) => r.comment.endsWith(':dhcp-reply'))!
    expect(reply.text).toContain('"sport"}},"right":67')
    expect(reply.text).toContain('"dport"}},"right":68')
    expect(reply.text).toContain('"right":"@b_dhcp_reply_in"')
    for (const set of ['b_dhcp_client', 'b_dhcp_server_from_vm', 'b_dhcp_reply_in']) expect(cli(['list', 'set', 'bridge', T, set])).toContain('"vnet-1"')
    // Every rule of the guard and the base chains that matches ports also looks its tap up (scoped to VM taps).
    for (const chain of ['prerouting', 'postrouting', 'guard_ip', 'guard_ip6']) {
      for (const r of rules(chain)!) if (/"(sport|dport)"/.test(r.text)) expect(r.text, `${chain} ${r.comment}`).toMatch(/"right":"@b_[a-z0-9_]+"/)
    }
  })

  it('can be turned off (dhcp: false)', async () => {
    const s = new NftablesService({ nft, bridgeConntrackMode: 'degrade', dhcp: false })
    extra.push(s)
    await s.applyRules('vm-1', 'vnet-1', [], [])
    expect(comments(`${base('vm-1')}_o`).some((c) => c.includes('dhcp'))).toBe(false)
  })
})

describe('flushVMRules (no longer fails open)', () => {
  it('leaves only the default action in force (and the builtins), dispatch unchanged', async () => {
    await svc.applyRules('vm-1', 'vnet-1', [], [ssh(), rule({ protocol: 'icmp' })], 'drop')
    await svc.flushVMRules('vm-1')
    for (const side of ['_o', '_i']) {
      expect(kinds(base('vm-1') + side)).not.toContain('r')
      expect(kinds(base('vm-1') + side)).not.toContain('m')
      expect(rules(base('vm-1') + side)!.at(-1)!.verdict).toBe('drop')
    }
    expect(entries('from_vm')).toEqual([['vnet-1', `${base('vm-1')}_o`]])
    // An ALLOW_ALL VM keeps its accept posture; a detached VM stays detached.
    await svc.applyRules('vm-2', 'vnet-2', [], [ssh()], 'accept')
    await svc.detachJumpRules('vm-2')
    await svc.flushVMRules('vm-2')
    expect(rules(`${base('vm-2')}_i`)!.at(-1)!.verdict).toBe('accept')
    expect(entries('from_vm')).toEqual([['vnet-1', `${base('vm-1')}_o`]])
  })

  it('is a no-op for a VM without chains', async () => {
    await svc.flushVMRules('nobody')
    expect(await svc.listChains()).toEqual([])
  })
})

describe('listChains / chainExists / removeVMChain*', () => {
  it('lists each VM once by base name; chainExists takes the base name', async () => {
    expect(await svc.listChains()).toEqual([])
    await svc.applyRules('vm-1', 'vnet-1', [], [])
    await svc.applyRules('vm-2', 'vnet-2', [], [])
    expect((await svc.listChains()).sort()).toEqual([...GUARD_CHAINS, 'postrouting', 'prerouting', base('vm-1'), base('vm-2')].sort())
    expect(await svc.chainExists(base('vm-1'))).toBe(true)
    expect(await svc.chainExists('prerouting')).toBe(true)
    expect(await svc.chainExists(base('vm-3'))).toBe(false)
    expect(await svc.chainExists('')).toBe(false)
    // Half a VM is not a VM.
    await svc.detachJumpRules('vm-2')
    cli(['delete', 'chain', 'bridge', T, `${base('vm-2')}_i`])
    expect(await svc.chainExists(base('vm-2'))).toBe(false)
  })

  it('removeVMChain removes chains and dispatch in one transaction and is idempotent', async () => {
    await svc.applyRules('vm-1', 'vnet-1', [], [ssh()])
    await svc.applyRules('vm-2', 'vnet-2', [], [ssh()])
    const c = countWrites(nft)
    await svc.removeVMChain('vm-1')
    expect(c.writes()).toBe(1)
    await svc.removeVMChain('vm-1')
    await svc.removeVMChain('never-existed')
    expect(rules(`${base('vm-1')}_o`)).toBeUndefined()
    expect(rules(`${base('vm-1')}_i`)).toBeUndefined()
    expect(entries('from_vm')).toEqual([['vnet-2', `${base('vm-2')}_o`]])
    expect(entries('to_vm')).toEqual([['vnet-2', `${base('vm-2')}_i`]])
  })

  it('removeVMChainByName reads the VM id from the kernel; without it, still removes everything by name', async () => {
    await svc.applyRules('vm-1', 'vnet-1', [], [ssh()])
    await svc.applyRules('vm-2', 'vnet-2', [], [ssh()])
    await svc.removeVMChainByName(base('vm-1'))
    expect(await svc.listChains()).not.toContain(base('vm-1'))
    expect(entries('from_vm')).toEqual([['vnet-2', `${base('vm-2')}_o`]])
    // VM id unreadable: both chains emptied behind our back, still attached.
    cli(['flush', 'chain', 'bridge', T, `${base('vm-2')}_o`])
    cli(['flush', 'chain', 'bridge', T, `${base('vm-2')}_i`])
    await svc.removeVMChainByName(`${base('vm-2')}_o`)
    expect(await svc.listChains()).toEqual([...GUARD_CHAINS, 'prerouting', 'postrouting'])
    expect(entries('from_vm')).toEqual([])
    expect(entries('to_vm')).toEqual([])
    await svc.removeVMChainByName(base('vm-2'))
  })

  it('without a table: listChains is empty, removals and detach are no-ops', async () => {
    expect(await svc.listChains()).toEqual([])
    expect(await svc.chainExists(base('vm-1'))).toBe(false)
    await svc.removeVMChain('vm-1')
    await svc.removeVMChainByName(base('vm-1'))
    await svc.detachJumpRules('vm-1')
    expect(cli(['list', 'tables']).trim()).toBe('')
  })
})

describe('conntrack modes', () => {
  it("'fail' refuses at initialize (before creating anything) and on the first apply of an uninitialized instance", async () => {
    // Another table: svc fixed 'degrade' for the default one (one configuration per table).
    const fail = new NftablesService({ nft, bridgeConntrackMode: 'fail', table: 'tfail' })
    extra.push(fail)
    const caps = await fail.capabilities()
    if (caps.bridgeConntrack) {
      await fail.initialize() // a kernel with bridge conntrack: nothing to refuse
      return
    }
    const err = await fail.initialize().catch((e: unknown) => e)
    expect(err).toBeInstanceOf(NftablesError)
    expect(err).toMatchObject({ code: 'CONNTRACK_UNAVAILABLE', context: { args: ['br_netfilter', 'nf_conntrack_bridge'] } })
    expect((err as Error).message).toMatch(/br_netfilter|nf_conntrack_bridge/)
    expect(cli(['list', 'tables']).trim()).toBe('')
    const other = new NftablesService({ nft, table: 'tfail' }) // takes the table's 'fail'
    extra.push(other)
    await expect(other.applyRules('vm-1', 'vnet-1', [], [])).rejects.toMatchObject({ code: 'CONNTRACK_UNAVAILABLE' })
    await expect(other.applyRulesIfChanged('vm-1', 'vnet-1', [], [])).rejects.toMatchObject({ code: 'CONNTRACK_UNAVAILABLE' })
    expect(cli(['list', 'tables']).trim()).toBe('')
  })

  it("'degrade' starts stateless, reports it, writes no ct state, keeps the terminal drop", async () => {
    await svc.initialize()
    const res = await svc.applyRules('vm-1', 'vnet-1', [], [ssh()], 'drop')
    if (!(await svc.capabilities()).bridgeConntrack) {
      expect(res.details!.stateful).toBe(false)
      expect(res.details!.degradations.map((d) => d.kind)).toContain('stateless')
      expect(ns.ruleset()).not.toContain('ct state')
    }
    expect(rules(`${base('vm-1')}_i`)!.at(-1)!.verdict).toBe('drop')
  })

  it(`the mode comes from ${CONNTRACK_MODE_ENV} unless given explicitly`, () => {
    const saved = process.env[CONNTRACK_MODE_ENV]
    // Each on its own table: a table's configuration is fixed while a facade on it is open.
    const fresh = (table: string, c: { bridgeConntrackMode?: 'fail' | 'degrade' } = {}) => {
      const s = new NftablesService({ nft, table, ...c })
      extra.push(s)
      return s.bridgeConntrackMode
    }
    try {
      process.env[CONNTRACK_MODE_ENV] = 'degrade'
      expect(fresh('e1')).toBe('degrade')
      expect(fresh('e2', { bridgeConntrackMode: 'fail' })).toBe('fail')
      process.env[CONNTRACK_MODE_ENV] = 'anything'
      expect(fresh('e3')).toBe('fail')
      delete process.env[CONNTRACK_MODE_ENV]
      expect(fresh('e4')).toBe('fail')
      expect(() => new NftablesService({ nft, table: 'e5', bridgeConntrackMode: 'off' as 'fail' })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }))
    } finally {
      if (saved === undefined) delete process.env[CONNTRACK_MODE_ENV]
      else process.env[CONNTRACK_MODE_ENV] = saved
    }
  })
})

describe('sharing', () => {
  it('facades without an Nft share one engine per namespace and table; concurrent calls on one VM serialize', async () => {
    const a = new NftablesService({ netns: ns.name, bridgeConntrackMode: 'degrade' })
    const b = new NftablesService({ netns: ns.name, bridgeConntrackMode: 'degrade' })
    extra.push(a, b)
    expect(a.firewall).toBe(b.firewall)
    await a.initialize()
    await Promise.all([
      ...Array.from({ length: 4 }, (_, i) => (i % 2 ? a : b).attachJumpRules('vm-1', 'vnet-1')),
      a.applyRules('vm-1', 'vnet-1', [], [ssh()]),
      b.ensureVMChain('vm-1'),
      svc.attachJumpRules('vm-1', 'vnet-1'),
      b.applyRulesIfChanged('vm-1', 'vnet-1', [], [ssh()]),
    ])
    expect(entries('from_vm')).toEqual([['vnet-1', `${base('vm-1')}_o`]])
    expect(entries('to_vm')).toEqual([['vnet-1', `${base('vm-1')}_i`]])
    expect(comments(`${base('vm-1')}_i`).some((c) => c.endsWith(':ssh'))).toBe(true)
    a.close()
    expect(b.nft.closed).toBe(false)
  })
})

describe('persistence and side by side', () => {
  it('exportRuleset() restores the exact state with `nft -f`, twice in a row, and the next start is a no-op', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cmpt-'))
    try {
      const file = join(dir, 'infinization.nft')
      const persisted = new NftablesService({ nft, bridgeConntrackMode: 'degrade', enablePersistence: true, persistencePath: file })
      extra.push(persisted)
      await persisted.initialize()
      await persisted.applyRules('vm-1', 'vnet-1', [], [ssh()], 'drop')
      await persisted.applyRules('vm-2', 'vnet-2', [], [], 'accept')
      await persisted.detachJumpRules('vm-2')
      expect(persisted.lastPersistError).toBeUndefined()
      const saved = readFileSync(file, 'utf8')
      expect(saved).toBe(await persisted.exportRuleset())
      const before = cli(['-s', 'list', 'table', 'bridge', T])
      cli(['delete', 'table', 'bridge', T])
      cli(['-f', file]) // what the systemd oneshot runs at boot
      cli(['-f', file]) // idempotent: a second run replaces, never duplicates
      expect(cli(['-s', 'list', 'table', 'bridge', T])).toBe(before)
      expect(await svc.applyRulesIfChanged('vm-1', 'vnet-1', [], [ssh()], 'drop')).toEqual({ changed: false })
      // restoreRuleset() does the same in-process.
      cli(['delete', 'table', 'bridge', T])
      await svc.restoreRuleset(saved)
      expect(cli(['-s', 'list', 'table', 'bridge', T])).toBe(before)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('runs next to the old service: a different table, the old table untouched', async () => {
    // The old layout (Infinization's CLI service): forward base chain, one chain per VM, linear jumps.
    const old = base('vm-1')
    cli(
      ['-f', '-'],
      [
        `add table bridge ${T}`,
        `add chain bridge ${T} forward { type filter hook forward priority 0; policy accept; }`,
        `add chain bridge ${T} ${old}`,
        `add rule bridge ${T} ${old} drop comment "infinization-default-drop"`,
        `add rule bridge ${T} forward oifname "vnet-1" jump ${old}`,
        `add rule bridge ${T} forward iifname "vnet-1" jump ${old}`,
      ].join('\n') + '\n',
    )
    const oldTable = cli(['-s', 'list', 'table', 'bridge', T])
    const next = new NftablesService({ nft, bridgeConntrackMode: 'degrade', table: 'infinization_next' })
    extra.push(next)
    await next.initialize()
    await next.applyRules('vm-1', 'vnet-1', [], [ssh()])
    await next.flushVMRules('vm-1')
    await next.removeVMChain('vm-1')
    await next.applyRules('vm-2', 'vnet-2', [], [])
    expect(await next.listChains()).toEqual([...GUARD_CHAINS, 'prerouting', 'postrouting', base('vm-2')])
    expect(cli(['-s', 'list', 'table', 'bridge', T])).toBe(oldTable)
    expect(entries('from_vm', 'infinization_next')).toEqual([['vnet-2', `${base('vm-2')}_o`]])
  })
})
