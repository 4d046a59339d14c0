// The apply command's conflict checks without a kernel: within a file, and against an inventory.
import { describe, expect, it } from 'vitest'
import { checkSpecConflicts, findTakeovers, refuseTakeovers } from '../../ts/cli/conflicts.js'
import { FirewallValidationError, type VmInventoryEntry, type VmSpec } from '../../ts/firewall/index.js'

const vm = (vmId: string, tap: string): VmSpec => ({ vmId, tap })
const entry = (vmId: string | undefined, taps: string[], stem = 'vm_000000000000000000000001'): VmInventoryEntry => ({
  ...(vmId !== undefined ? { vmId } : {}),
  chains: [`${stem}_i`, `${stem}_o`],
  taps,
  rules: 3,
})

describe('checkSpecConflicts', () => {
  it('names both entries of a duplicate vmId and of a shared tap', () => {
    expect(() => checkSpecConflicts([vm('a', 't0'), vm('b', 't1'), vm('a', 't2')])).toThrow(/entries 1 and 3 both have vmId "a"/)
    expect(() => checkSpecConflicts([vm('a', 't0'), vm('b', 't1'), vm('c', 't1')])).toThrow(/entries 2 \(vmId "b"\) and 3 \(vmId "c"\) both use tap "t1"/)
    expect(() => checkSpecConflicts([vm('a', 't0'), vm('a', 't0')])).toThrow(FirewallValidationError)
    expect(() => checkSpecConflicts([vm('a', 't0'), vm('b', 't1')])).not.toThrow()
  })
})

describe('findTakeovers', () => {
  it('a tap another VM (known or unknown) dispatches now is a takeover; the same VM or a VM moving away is not', () => {
    const inv = [entry('old', ['t0']), entry(undefined, ['t9'], 'vm_00000000000000000000000f'), entry('same', ['t5']), entry('mover', ['t7'])]
    expect(findTakeovers([vm('new', 't0')], inv)).toEqual([{ tap: 't0', vmId: 'new', fromVmId: 'old', fromChains: ['vm_000000000000000000000001_i', 'vm_000000000000000000000001_o'] }])
    expect(findTakeovers([vm('new', 't9')], inv)).toEqual([{ tap: 't9', vmId: 'new', fromChains: ['vm_00000000000000000000000f_i', 'vm_00000000000000000000000f_o'] }])
    expect(findTakeovers([vm('same', 't5')], inv)).toEqual([])
    expect(findTakeovers([vm('new', 't7'), vm('mover', 't8')], inv)).toEqual([])
    expect(findTakeovers([vm('new', 't7'), vm('other', 't8')], inv)).toHaveLength(1)
  })

  it('refuseTakeovers names the tap, both VMs and the flag', () => {
    expect(() => refuseTakeovers(findTakeovers([vm('new', 't9')], [entry(undefined, ['t9'])]))).toThrow(
      /tap "t9" of VM "new" is used by an unknown VM \(chains vm_000000000000000000000001_i, vm_000000000000000000000001_o\) in the kernel: pass --takeover/,
    )
    expect(() => refuseTakeovers([])).not.toThrow()
  })
})
