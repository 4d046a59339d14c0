// Conflicts between the VMs of a spec file, and with the VMs already in the kernel, found before `apply`
// changes anything: the same vmId twice, one tap on two VMs, a tap another VM in the kernel dispatches.
import { FirewallValidationError, normalizeVm, type VmInventoryEntry, type VmSpec } from '../firewall/index.js'

/** A tap of the spec file that another VM in the kernel has now (applied with --takeover). */
export interface Takeover {
  tap: string
  /** The VM that gets the tap. */
  vmId: string
  /** The VM in the kernel that had it (undefined: chains whose vmId is unknown), now detached. */
  fromVmId?: string
  /** Its chains. */
  fromChains: string[]
}

/** Refuses a file in which two entries have the same vmId or the same tap (1-based entry positions). */
export function checkSpecConflicts(specs: VmSpec[]): void {
  const vms = specs.map(normalizeVm)
  const byId = new Map<string, number>()
  const byTap = new Map<string, number>()
  vms.forEach((vm, i) => {
    const first = byId.get(vm.vmId)
    if (first !== undefined) {
      throw new FirewallValidationError('vmId', `entries ${first + 1} and ${i + 1} both have vmId ${JSON.stringify(vm.vmId)} (the file must list each VM once)`)
    }
    byId.set(vm.vmId, i)
  })
  vms.forEach((vm, i) => {
    const first = byTap.get(vm.tap)
    if (first !== undefined) {
      throw new FirewallValidationError(
        'tap',
        `entries ${first + 1} (vmId ${JSON.stringify(vms[first]!.vmId)}) and ${i + 1} (vmId ${JSON.stringify(vm.vmId)}) both use tap ${JSON.stringify(vm.tap)}`,
      )
    }
    byTap.set(vm.tap, i)
  })
}

/**
 * Taps of the file that a VM in the kernel with another vmId dispatches now. A VM that is itself in the file
 * (moving to another tap) gives its tap up, so taking that tap is not a takeover.
 */
export function findTakeovers(specs: VmSpec[], inventory: VmInventoryEntry[]): Takeover[] {
  const vms = specs.map(normalizeVm)
  const inFile = new Map(vms.map((vm) => [vm.vmId, vm.tap]))
  const out: Takeover[] = []
  for (const vm of vms) {
    for (const entry of inventory) {
      if (!entry.taps.includes(vm.tap) || entry.vmId === vm.vmId) continue
      const moves = entry.vmId !== undefined && inFile.has(entry.vmId) && inFile.get(entry.vmId) !== vm.tap
      if (moves) continue
      out.push({ tap: vm.tap, vmId: vm.vmId, ...(entry.vmId !== undefined ? { fromVmId: entry.vmId } : {}), fromChains: entry.chains })
    }
  }
  return out
}

/** The VM a takeover takes the tap from, for messages. */
export function takenFrom(t: Takeover): string {
  return t.fromVmId !== undefined ? `VM ${JSON.stringify(t.fromVmId)}` : `an unknown VM (chains ${t.fromChains.join(', ')})`
}

/** Refuses takeovers that were not asked for (`--takeover`). */
export function refuseTakeovers(takeovers: Takeover[]): void {
  if (takeovers.length === 0) return
  const list = takeovers.map((t) => `tap ${JSON.stringify(t.tap)} of VM ${JSON.stringify(t.vmId)} is used by ${takenFrom(t)} in the kernel`).join('; ')
  throw new FirewallValidationError('tap', `${list}: pass --takeover to move it (the other VM is then detached)`)
}
