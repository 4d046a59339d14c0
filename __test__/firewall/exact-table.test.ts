// Pure tests of exact-table.ts: the writer's commands and the reader of a listing. The wire test
// (exact-table.wire.test.ts) reads back what a kernel lists; these pin the edges.
import { describe, expect, it } from 'vitest'
import { exactPolicy, type ExactPolicy } from '../../ts/firewall/exact-rules.js'
import { exactCounters, exactElementCommands, exactTableCommands, exactTableOfText, shapesOf } from '../../ts/firewall/exact-table.js'
import { normalizeVm } from '../../ts/firewall/validate.js'
import type { FirewallRuleInput } from '../../ts/firewall/model.js'

const policyOf = (rules: FirewallRuleInput[], vmId = 'vm-1', tap = 'vnet-a0'): ExactPolicy => {
  const p = exactPolicy(normalizeVm({ vmId, tap, rules }), { capabilities: { bridgeConntrack: true, bridgeReject: false }, conntrack: 'auto' })
  if ('reason' in p) throw new Error(p.reason)
  return p
}
const comments = (cmds: unknown[], chain: string) =>
  cmds.flatMap((c) => {
    const r = (c as { add?: { rule?: { chain: string; comment?: string } } }).add?.rule
    return r && r.chain === chain ? [r.comment ?? '(none)'] : []
  })

describe('exactTableCommands', () => {
  it('looks up only the shapes in use, in the catalogue order, after the guard and the established rule', () => {
    const a = policyOf([{ id: 'ssh', name: 'ssh', direction: 'IN', protocol: 'tcp', dstPortStart: 22 }])
    const b = policyOf([{ id: 'blk', name: 'blk', direction: 'IN', action: 'DROP', srcIpAddr: '192.0.2.1' }], 'vm-2', 'vnet-b0')
    const cmds = exactTableCommands('t_exact', { shapes: shapesOf([a, b]), stateful: true })
    expect(comments(cmds, 'postrouting').slice(-4)).toEqual(['x:established', 'x:in_s4', 'x:in_lp', 'x:in_default'])
    expect(comments(cmds, 'prerouting').slice(-2)).toEqual(['x:established', 'x:out_default'])
    const maps = cmds.flatMap((c) => ((c as { add?: { map?: { name: string } } }).add?.map ? [(c as { add: { map: { name: string } } }).add.map.name] : []))
    expect(maps).toEqual(['out_default', 'in_s4', 'in_lp', 'in_default'])
    expect(comments(exactTableCommands('t_exact', { shapes: shapesOf([a]), stateful: false }), 'postrouting').slice(-2)).toEqual(['x:in_lp', 'x:in_default'])
  })
})

describe('exactElementCommands', () => {
  it('adds elements with verdicts and comments, deletes by key, one command per map', () => {
    const p = policyOf([
      { id: 'web', name: 'web', direction: 'IN', protocol: 'tcp', dstPortStart: 80, dstPortEnd: 81 },
      { id: 'dns', name: 'dns', direction: 'OUT', protocol: 'udp', dstPortStart: 53, dstIpAddr: '2001:db8::53' },
    ])
    expect(exactElementCommands('t', 'add', 'vnet-a0', 'vm-1', p)).toEqual([
      { add: { element: { family: 'bridge', table: 't', name: 'out_d6lp', elem: [[{ elem: { val: { concat: ['vnet-a0', '2001:db8::53', 'udp', 53] }, comment: 'r:dns' } }, { accept: null }]] } } },
      { add: { element: { family: 'bridge', table: 't', name: 'out_default', elem: [[{ elem: { val: 'vnet-a0', comment: 'd:vm-1' } }, { drop: null }]] } } },
      {
        add: {
          element: {
            family: 'bridge',
            table: 't',
            name: 'in_lp',
            elem: [80, 81].map((port) => [{ elem: { val: { concat: ['vnet-a0', 'tcp', port] }, comment: 'r:web' } }, { accept: null }]),
          },
        },
      },
      { add: { element: { family: 'bridge', table: 't', name: 'in_default', elem: [[{ elem: { val: 'vnet-a0', comment: 'd:vm-1' } }, { drop: null }]] } } },
    ])
    expect(exactElementCommands('t', 'delete', 'vnet-a0', 'vm-1', p).map((c) => (c as { delete: { element: { name: string; elem: unknown[] } } }).delete.element)).toEqual([
      { family: 'bridge', table: 't', name: 'out_d6lp', elem: [{ concat: ['vnet-a0', '2001:db8::53', 'udp', 53] }] },
      { family: 'bridge', table: 't', name: 'out_default', elem: ['vnet-a0'] },
      { family: 'bridge', table: 't', name: 'in_lp', elem: [{ concat: ['vnet-a0', 'tcp', 80] }, { concat: ['vnet-a0', 'tcp', 81] }] },
      { family: 'bridge', table: 't', name: 'in_default', elem: ['vnet-a0'] },
    ])
  })
})

describe('exactTableOfText', () => {
  it('reads keys, verdicts, comments and counters, with commas, braces and colons inside comments', () => {
    // As libnftables 1.0.6 lists them (elements wrapped over lines), rule ids as validate.ts allows them.
    const text = [
      'table bridge t_exact {',
      '\tmap in_s6lp {',
      '\t\ttype ifname . ipv6_addr . inet_proto . inet_service : verdict',
      '\t\tcounter',
      '\t\telements = { "vnet-a0" . 2001:db8::1 . tcp . 22 counter packets 3 bytes 180 comment "r:a,b}c" : accept,',
      '\t\t\t     "vnet-b0" . fe80::1 . udp . 53 counter packets 0 bytes 0 comment "r:x:y{" : drop }',
      '\t}',
      '',
      '\tmap in_lp {',
      '\t\ttype ifname . inet_proto . inet_service : verdict',
      '\t\tcounter',
      '\t}',
      '',
      '\tmap in_default {',
      '\t\ttype ifname : verdict',
      '\t\tcounter',
      '\t\telements = { "vnet-a0" counter packets 7 bytes 420 comment "d:vm-1" : drop }',
      '\t}',
      '}',
    ].join('\n')
    const v = exactTableOfText(text)
    expect([...v.maps]).toEqual(['in_s6lp', 'in_lp', 'in_default'])
    expect(v.elements.get('vnet-a0')).toEqual([
      { map: 'in_s6lp', key: ['2001:db8::1', 'tcp', '22'], verdict: 'accept', comment: 'r:a,b}c', packets: 3, bytes: 180 },
      { map: 'in_default', key: [], verdict: 'drop', comment: 'd:vm-1', packets: 7, bytes: 420 },
    ])
    expect(v.elements.get('vnet-b0')).toEqual([{ map: 'in_s6lp', key: ['fe80::1', 'udp', '53'], verdict: 'drop', comment: 'r:x:y{', packets: 0, bytes: 0 }])
    // The counters as stats reports them: per rule, the default, and what was dropped, per side.
    const none = { packets: 0, bytes: 0 }
    expect(exactCounters(v.elements.get('vnet-a0')!)).toEqual({
      rules: { 'a,b}c': { packets: 3, bytes: 180, out: none, in: { packets: 3, bytes: 180 } } },
      default: { packets: 7, bytes: 420, out: none, in: { packets: 7, bytes: 420 } },
      dropped: { packets: 7, bytes: 420, out: none, in: { packets: 7, bytes: 420 } },
    })
  })
})
