// logDrops: where the log rules go, what their prefixes say, and which options are refused. Pure.
import { describe, expect, it } from 'vitest'
import { compileVm, vmChainNames } from '../../ts/firewall/compile.js'
import { guardLogOf, logPrefix, parseLogPrefix, resolveLogDrops } from '../../ts/firewall/log-drops.js'
import { guardChainRules, guardLogChainRules } from '../../ts/firewall/layout.js'
import { FirewallValidationError, VmFirewall, normalizeVm, type VmSpec } from '../../ts/firewall/index.js'
import type { Nft } from '../../ts/nft.js'

const spec: VmSpec = {
  vmId: 'vm-1',
  tap: 'vnet1',
  mac: '52:54:00:00:00:01',
  ipv4: ['10.0.0.2'],
  defaultAction: 'drop',
  rules: [
    { id: 'ssh', name: 'ssh', protocol: 'tcp', action: 'ACCEPT', dstPortStart: 22, direction: 'IN' },
    { id: 'smtp', name: 'smtp', protocol: 'tcp', action: 'DROP', dstPortStart: 25, direction: 'OUT' },
    { id: 'telnet', name: 'telnet', protocol: 'tcp', action: 'REJECT', dstPortStart: 23, direction: 'OUT' },
  ],
}
const caps = { bridgeConntrack: false, bridgeReject: true }
const compile = (logDrops: Parameters<typeof resolveLogDrops>[0]) =>
  compileVm(normalizeVm(spec), { capabilities: caps, conntrack: 'auto', logDrops: resolveLogDrops(logDrops) })

describe('logDrops', () => {
  it('puts a rate-limited log rule with the same matches right before each drop path', () => {
    const plain = compile(false)
    const c = compile({ group: 7, rate: 5, burst: 2, builtins: false })
    const logs = c.out.filter((r) => r.comment.startsWith('l:'))
    expect(logs.map((r) => r.comment.split(':')[2])).toEqual(['smtp', 'telnet', 'vm-1'])
    for (const l of logs) {
      const i = c.out.indexOf(l)
      const drop = c.out[i + 1]!
      expect(drop.comment.split(':')[2]).toBe(l.comment.split(':')[2])
      // Same matches as the drop, then limit and log, and no verdict: evaluation continues into the drop.
      expect(l.expr.slice(0, -2)).toEqual(drop.expr.slice(0, -2))
      expect(l.expr.at(-2)).toEqual({ limit: { rate: 5, burst: 2, per: 'second' } })
      expect(l.expr.at(-1)).toMatchObject({ log: { group: 7 } })
    }
    // Everything else is unchanged.
    expect(c.out.filter((r) => !r.comment.startsWith('l:'))).toEqual(plain.out)
    expect(c.in.filter((r) => !r.comment.startsWith('l:'))).toEqual(plain.in)
    expect(c.in.filter((r) => r.comment.startsWith('l:')).map((r) => r.comment.split(':')[2])).toEqual(['vm-1'])
  })

  it('selects paths: rule ids only, no default, builtins', () => {
    const only = compile({ rules: ['telnet'], default: false, builtins: false })
    expect(only.out.filter((r) => r.comment.startsWith('l:')).map((r) => r.comment.split(':')[2])).toEqual(['telnet'])
    // The built-in drops live in the shared guard (issue 15): with `builtins`, each jumps to a log chain of its own.
    const log = guardLogOf(resolveLogDrops({ rules: false, default: false, group: 9, rate: 4, burst: 1 }))!
    expect(log).toEqual({ group: 9, rate: 4, burst: 1, per: 'second' })
    expect(guardLogOf(resolveLogDrops({ builtins: false }))).toBeUndefined()
    const chains = new Map(guardLogChainRules(log))
    expect(chains.get('glog_ip_spoof')!.map((r) => r.expr)).toEqual([
      [{ limit: { rate: 4, burst: 1, per: 'second' } }, { log: { prefix: 'nn:guard:o:b:ip-spoof', group: 9 } }],
      [{ drop: null }],
    ])
    expect(parseLogPrefix('nn:guard:o:b:ip-spoof')).toEqual({ stem: 'guard', direction: 'out', kind: 'b', tag: 'ip-spoof' })
    const ipGuard = new Map(guardChainRules(log)).get('guard_ip')!
    expect(ipGuard.find((r) => r.comment.endsWith(':ip-spoof'))!.expr.at(-1)).toEqual({ jump: { target: 'glog_ip_spoof' } })
    expect(ipGuard.find((r) => r.comment.endsWith(':dhcp-client'))!.expr.at(-1)).toEqual({ accept: null })
    expect(new Map(guardChainRules()).get('guard_ip')!.find((r) => r.comment.endsWith(':ip-spoof'))!.expr.at(-1)).toEqual({ drop: null })
    const spoof = compile({ rules: false, default: false })
    expect(spoof.out.filter((r) => r.comment.startsWith('l:'))).toEqual([])
    expect(compileVm(normalizeVm({ ...spec, defaultAction: 'accept' }), { capabilities: caps, conntrack: 'auto', logDrops: resolveLogDrops({ rules: false, builtins: false }) }).out.some((r) => r.comment.startsWith('l:'))).toBe(false)
  })

  it("a rule's own log flag wins: logged without logDrops, or never", () => {
    const withFlags = (logDrops: Parameters<typeof resolveLogDrops>[0]) =>
      compileVm(
        normalizeVm({ ...spec, rules: spec.rules!.map((r) => (r.id === 'smtp' ? { ...r, log: true } : r.id === 'telnet' ? { ...r, log: false } : r)) }),
        { capabilities: caps, conntrack: 'auto', logDrops: resolveLogDrops(logDrops) },
      )
    const tags = (c: ReturnType<typeof withFlags>) => [...c.out, ...c.in].filter((r) => r.comment.startsWith('l:')).map((r) => r.comment.split(':')[2])
    expect(tags(withFlags(undefined))).toEqual(['smtp'])
    expect(tags(withFlags({ builtins: false }))).toEqual(['smtp', 'vm-1', 'vm-1'])
    expect(() => normalizeVm({ ...spec, rules: [{ ...spec.rules![0]!, log: 'yes' as never }] })).toThrow(FirewallValidationError)
  })

  it('prefixes name chain, direction, path and tag, cut to the kernel limit', () => {
    const { out, in: inn } = vmChainNames('vm-1')
    expect(parseLogPrefix(logPrefix(out, 'r', 'smtp'))).toEqual({ stem: out.slice(0, -2), direction: 'out', kind: 'r', tag: 'smtp' })
    expect(parseLogPrefix(logPrefix(inn, 'd', 'vm-1'))).toMatchObject({ direction: 'in', kind: 'd', tag: 'vm-1' })
    const long = logPrefix(out, 'r', 'é'.repeat(100))
    expect(Buffer.byteLength(long)).toBeLessThanOrEqual(127)
    expect(parseLogPrefix(long)?.tag).toMatch(/^é+$/)
    expect(parseLogPrefix('something else')).toBeUndefined()
  })

  it('renders as nft text libnftables parses back (plan, kernel rendering)', () => {
    const fw = new VmFirewall({} as Nft, { logDrops: { group: 9 }, capabilities: caps })
    const text = fw.plan(spec).text
    expect(text).toContain(`meta l4proto tcp tcp dport 25 limit rate 10/second burst 20 packets log prefix "nn:${vmChainNames('vm-1').out.slice(0, -2)}:o:r:smtp" group 9 comment "l:`)
  })

  it('refuses invalid options', () => {
    for (const bad of [{ group: 70000 }, { group: -1 }, { rate: 0 }, { per: 'day' }, { rules: [1] }, { burst: 1.5 }]) {
      expect(() => resolveLogDrops(bad as never)).toThrow(FirewallValidationError)
    }
    expect(resolveLogDrops(undefined)).toBeUndefined()
    expect(resolveLogDrops(true)).toMatchObject({ group: 16, rate: 10, per: 'second', burst: 20, default: true, rules: true, builtins: true })
  })
})
