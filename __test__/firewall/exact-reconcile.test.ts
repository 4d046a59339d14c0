// Pure tests of exact-reconcile.ts: drift and element changes of one VM in the exact table. The wire test of
// the lean write (netlink-exact.wire.test.ts) reads a kernel's listing back through the same functions.
import { describe, expect, it } from 'vitest'
import { exactChangeCommands, exactChanges, listedAsTableElements, shapesMissing } from '../../ts/firewall/exact-reconcile.js'
import { exactPolicy, type ExactPolicy } from '../../ts/firewall/exact-rules.js'
import { exactTableOfText, shapesOf, shapesOfView, tableElementsOf } from '../../ts/firewall/exact-table.js'
import type { FirewallRuleInput } from '../../ts/firewall/model.js'
import { normalizeVm } from '../../ts/firewall/validate.js'

const policyOf = (rules: FirewallRuleInput[], defaultAction: 'accept' | 'drop' = 'drop'): ExactPolicy => {
  const p = exactPolicy(normalizeVm({ vmId: 'vm-1', tap: 'vnet-a0', defaultAction, rules }), { capabilities: { bridgeConntrack: true, bridgeReject: false }, conntrack: 'auto' })
  if ('reason' in p) throw new Error(p.reason)
  return p
}
const ssh: FirewallRuleInput = { id: 'ssh', name: 'ssh', direction: 'IN', protocol: 'tcp', dstPortStart: 22 }
const web: FirewallRuleInput = { id: 'web', name: 'web', direction: 'IN', protocol: 'tcp', dstPortStart: 80, dstPortEnd: 81 }

describe('exactChanges', () => {
  it('touches only what differs: a rule added, one removed, a default changed', () => {
    const before = tableElementsOf('vm-1', policyOf([ssh, web]))
    const after = tableElementsOf('vm-1', policyOf([web, { ...ssh, id: 'ssh2', dstPortStart: 2222 }], 'accept'))
    const c = exactChanges(before, after)
    expect(c.missing).toEqual(['in_lp tcp . 2222'])
    expect(c.extra).toEqual(['in_lp tcp . 22'])
    expect(c.changed).toEqual(['out_default ', 'in_default '])
    // web's two elements are left alone (their counters go on).
    expect(c.del.map((e) => `${e.map} ${e.key.join(' . ')} ${e.verdict}`)).toEqual(['in_lp tcp . 22 accept', 'out_default  drop', 'in_default  drop'])
    expect(c.add.map((e) => `${e.map} ${e.key.join(' . ')} ${e.verdict}`)).toEqual(['out_default  accept', 'in_default  accept', 'in_lp tcp . 2222 accept'])
    const cmds = exactChangeCommands('t', 'vnet-a0', c)
    expect(cmds.map((x) => Object.keys(x)[0])).toEqual(['delete', 'delete', 'delete', 'add', 'add', 'add'])
    expect(exactChanges(after, after)).toEqual({ missing: [], extra: [], changed: [], del: [], add: [] })
    expect(exactChangeCommands('t', 'vnet-a0', exactChanges(after, after))).toEqual([])
  })

  it('a rule that moves to another id changes its elements (their comment names the rule stats counts them for)', () => {
    const c = exactChanges(tableElementsOf('vm-1', policyOf([ssh])), tableElementsOf('vm-1', policyOf([{ ...ssh, id: 'ssh-new' }])))
    expect(c.changed).toEqual(['in_lp tcp . 22'])
  })

  it('reads a listing as the same elements (ports as text are the same keys)', () => {
    const listed = exactTableOfText(
      [
        'table bridge t {',
        '\tmap in_lp {',
        '\t\ttype ifname . inet_proto . inet_service : verdict',
        '\t\tcounter',
        '\t\telements = { "vnet-a0" . tcp . 22 counter packets 9 bytes 540 comment "r:ssh" : accept }',
        '\t}',
        '\tmap out_default {',
        '\t\ttype ifname : verdict',
        '\t\tcounter',
        '\t\telements = { "vnet-a0" counter packets 0 bytes 0 comment "d:vm-1" : drop }',
        '\t}',
        '\tmap in_default {',
        '\t\ttype ifname : verdict',
        '\t\tcounter',
        '\t\telements = { "vnet-a0" counter packets 0 bytes 0 comment "d:vm-1" : drop }',
        '\t}',
        '}',
      ].join('\n'),
    )
    const have = listedAsTableElements(listed.elements.get('vnet-a0')!)
    expect(exactChanges(have, tableElementsOf('vm-1', policyOf([ssh])))).toMatchObject({ missing: [], extra: [], changed: [] })
    expect(shapesOfView(listed)).toEqual({ out: new Set(), in: new Set(['lp']) })
  })
})

describe('shapesMissing', () => {
  it('names the table a VM needs when it brings a shape the table does not look up', () => {
    const table = shapesOf([policyOf([ssh])])
    expect(shapesMissing(table, policyOf([web]))).toBeUndefined()
    const host = policyOf([{ id: 'h', name: 'h', direction: 'OUT', dstIpAddr: '192.0.2.1', action: 'DROP' }])
    expect(shapesMissing(table, host)).toEqual({ out: new Set(['d4']), in: new Set(['lp']) })
  })
})
