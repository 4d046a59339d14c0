// Pure tests of exact-placement.ts and exact-state.ts: the batches that put VMs into the exact table and take
// them out, and the snapshot bookkeeping after them. The property that holds everything together: once a
// batch's change is applied to the snapshot, the same placement again is an empty batch. The kernel side is in
// vm-firewall-exact.wire.test.ts.
import { describe, expect, it } from 'vitest'
import { vmIdentity } from '../../ts/firewall/compile.js'
import { chainTableLeaving, exactLeaving, exactTableBatch, type ExactHolding } from '../../ts/firewall/exact-placement.js'
import { exactPolicy, type ExactPolicy } from '../../ts/firewall/exact-rules.js'
import { applyExactChange, exactInventoryOf, exactSnapshotOf, type ExactSnapshot } from '../../ts/firewall/exact-state.js'
import { tableElementsOf } from '../../ts/firewall/exact-table.js'
import { exactVerify } from '../../ts/firewall/exact-reconcile.js'
import { MAP_FROM_VM, MAP_TO_VM } from '../../ts/firewall/layout.js'
import type { FirewallRuleInput } from '../../ts/firewall/model.js'
import { normalizeVm } from '../../ts/firewall/validate.js'

const T = { table: 'fw', exactTable: 'fw_exact', stateful: true }
const ssh: FirewallRuleInput = { id: 'ssh', name: 'ssh', direction: 'IN', protocol: 'tcp', dstPortStart: 22 }
const dns: FirewallRuleInput = { id: 'dns', name: 'dns', direction: 'OUT', protocol: 'udp', dstPortStart: 53, dstIpAddr: '10.0.0.53' }

function holding(vmId: string, tap: string, rules: FirewallRuleInput[], action: 'accept' | 'drop' = 'drop'): ExactHolding & { policy: ExactPolicy } {
  const vm = normalizeVm({ vmId, tap, mac: '52:54:00:00:00:01', ipv4: ['10.0.0.5'], defaultAction: action, rules })
  const policy = exactPolicy(vm, { capabilities: { bridgeConntrack: true, bridgeReject: false }, conntrack: 'auto' })
  if ('reason' in policy) throw new Error(policy.reason)
  return { vmId, tap, identity: vmIdentity(vm), elements: tableElementsOf(vmId, policy), shapes: policy.shapes, policy }
}
const empty = (): ExactSnapshot => exactSnapshotOf(undefined, 'fw_exact', 1)
const kinds = (cmds: unknown[]) => cmds.map((c) => { const [verb, body] = Object.entries(c as object)[0]!; return `${verb} ${Object.keys(body as object)[0]}` })

describe('exactTableBatch', () => {
  it('creates the table with the shapes in use, then holds each VM exactly; the same placement again is empty', () => {
    const snap = empty()
    const a = holding('vm-a', 'tap-a', [ssh])
    const b = holding('vm-b', 'tap-b', [dns], 'accept')
    const first = exactTableBatch(T, snap, [a, b], [])
    expect(kinds(first.commands)).toContain('add table')
    expect(first.change.shapes).toEqual({ out: new Set(['d4lp']), in: new Set(['lp']) })
    applyExactChange(snap, first.change)
    expect(snap.owners).toEqual(new Map([['vm-a', 'tap-a'], ['vm-b', 'tap-b']]))
    expect(exactTableBatch(T, snap, [a, b], []).commands).toEqual([])
    expect(exactInventoryOf(snap).map((e) => [e.vmId, e.taps, e.elements, e.defaultAction])).toEqual([
      ['vm-a', ['tap-a'], 3, 'drop'],
      ['vm-b', ['tap-b'], 3, 'accept'],
    ])
    // A shape the table does not look up yet: the base chains are rewritten (not created) in the same batch.
    const a2 = holding('vm-a', 'tap-a', [ssh, { ...dns, id: 'dns2', direction: 'IN', dstIpAddr: undefined, srcIpAddr: '10.0.0.9' }])
    const grow = exactTableBatch(T, snap, [a2], [])
    expect(kinds(grow.commands)).toContain('flush chain')
    expect(grow.change.shapes!.in).toEqual(new Set(['lp', 's4lp']))
    applyExactChange(snap, grow.change)
    expect(exactTableBatch(T, snap, [a2], []).commands).toEqual([])
  })

  it('moves a VM to another tap, takes a tap over, prunes, and deletes each element once', () => {
    const snap = empty()
    const a = holding('vm-a', 'tap-a', [ssh])
    const b = holding('vm-b', 'tap-b', [dns])
    applyExactChange(snap, exactTableBatch(T, snap, [a, b], []).change)
    // vm-b moves to tap-a, vm-a to tap-c, in one batch: tap-a's elements change from a's to b's, tap-b empties.
    const moved = [{ ...b, tap: 'tap-a' }, { ...a, tap: 'tap-c' }]
    const batch = exactTableBatch(T, snap, moved, ['tap-b'])
    const deletes = batch.commands.flatMap((c) => {
      const el = (c as { delete?: { element: { name: string; elem: unknown[] } } }).delete?.element
      return el ? el.elem.map((e) => `${el.name} ${JSON.stringify(e)}`) : []
    })
    expect(deletes.length).toBeGreaterThan(0)
    expect(new Set(deletes).size).toBe(deletes.length)
    applyExactChange(snap, batch.change)
    expect(snap.owners).toEqual(new Map([['vm-b', 'tap-a'], ['vm-a', 'tap-c']]))
    expect([...snap.taps.keys()].sort()).toEqual(['tap-a', 'tap-c'])
    expect(exactTableBatch(T, snap, moved, []).commands).toEqual([])
    // prune: only vm-a stays.
    const pruned = exactTableBatch(T, snap, [moved[1]!], [], { prune: true })
    applyExactChange(snap, pruned.change)
    expect([...snap.taps.keys()]).toEqual(['tap-c'])
    expect([...snap.sets!.values()].flatMap((k) => [...k]).every((k) => k.startsWith('tap-c'))).toBe(true)
    // And out entirely.
    applyExactChange(snap, exactLeaving(T, snap, ['tap-c']).change)
    expect(snap.taps.size + snap.owners.size).toBe(0)
    expect([...snap.sets!.values()].every((k) => k.size === 0)).toBe(true)
  })
})

describe('chainTableLeaving', () => {
  it("deletes the VMs' chains and dispatch, and other VMs' dispatch from their taps, except interfaces kept", () => {
    const maps = {
      [MAP_FROM_VM]: new Map([['tap-a', 'vm_a_o'], ['tap-x', 'vm_a_o'], ['tap-k', 'vm_a_o'], ['tap-b', 'vm_o_o']]),
      [MAP_TO_VM]: new Map([['tap-a', 'vm_a_i'], ['tap-b', 'vm_o_i']]),
    }
    const cmds = chainTableLeaving(T, { maps, sets: new Map([['b_arp', new Set(['tap-a', 'tap-b'])]]), chains: new Set(['vm_a_o', 'vm_a_i']) }, [
      { chains: { out: 'vm_a_o', in: 'vm_a_i' }, tap: 'tap-b' },
    ], new Set(['tap-k']))
    const deleted = cmds.filter((c) => 'delete' in c && 'element' in (c as { delete: object }).delete).map((c) => JSON.stringify((c as { delete: { element: { name: string; elem: unknown[] } } }).delete.element))
    expect(deleted.join('\n')).toContain('"tap-x"')
    expect(deleted.join('\n')).not.toContain('"tap-k"')
    expect(deleted.filter((d) => d.includes('"b_arp"'))).toEqual(['{"family":"bridge","table":"fw","name":"b_arp","elem":["tap-a","tap-b"]}'])
    expect(kinds(cmds).filter((k) => k === 'delete chain')).toHaveLength(2)
  })
})

describe('exactVerify', () => {
  it('reports missing and extra elements and guard elements, and VMs nobody expects', () => {
    const snap = empty()
    const a = holding('vm-a', 'tap-a', [ssh])
    const b = holding('vm-b', 'tap-b', [dns])
    applyExactChange(snap, exactTableBatch(T, snap, [a, b], []).change)
    const expected = [{ ...a, chains: { out: 'x_o', in: 'x_i' }, attached: true, policy: holding('vm-a', 'tap-a', [{ ...ssh, dstPortStart: 23 }]).policy }]
    const v = exactVerify(snap, expected, undefined, { stateful: true })
    expect(v.vms[0]).toMatchObject({ vmId: 'vm-a', status: 'changed', missing: ['element:in_lp tcp . 23'], extra: ['element:in_lp tcp . 22'] })
    expect(v.orphans).toEqual([{ vmId: 'vm-b', chains: [], elements: 3 }])
    // Without listed chains every base chain is a problem of the table's shape.
    expect(v.table.length).toBeGreaterThan(0)
    const detached = exactVerify(snap, [{ ...expected[0]!, attached: false }], undefined, { stateful: true }).vms[0]!
    expect(detached.status).toBe('changed')
    expect(detached.extra).toContain('guard:id_mac:tap-a . 52:54:00:00:00:01')
  })
})
