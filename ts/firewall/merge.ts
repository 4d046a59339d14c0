// Department + VM rule merge, exactly as Infinization's backend does it (see docs/firewall.md).
import type { Cidr } from './address.js'
import type { NormalizedRule } from './validate.js'

export interface MergeResult {
  /** Rules in evaluation order: ascending priority, ties keep department rules first, then input order. */
  rules: NormalizedRule[]
  /** Department rules replaced by a VM rule with `overridesDept`, with the id of the VM rule. */
  overridden: { rule: NormalizedRule; by: string }[]
}

const cidrKey = (c?: Cidr): string => (c ? `${c.addr}/${c.len}` : '')
const portKey = (p?: [number, number]): string => (p ? `${p[0]}-${p[1]}` : '')

/** Whether a VM rule with overridesDept targets the same traffic as a department rule. */
export function sameTraffic(vm: NormalizedRule, dept: NormalizedRule): boolean {
  return (
    vm.protocol === dept.protocol &&
    (vm.direction === dept.direction || vm.direction === 'INOUT' || dept.direction === 'INOUT') &&
    portKey(vm.srcPorts) === portKey(dept.srcPorts) &&
    portKey(vm.dstPorts) === portKey(dept.dstPorts) &&
    cidrKey(vm.src) === cidrKey(dept.src) &&
    cidrKey(vm.dst) === cidrKey(dept.dst)
  )
}

export function mergeRules(departmentRules: NormalizedRule[], vmRules: NormalizedRule[]): MergeResult {
  const overriding = vmRules.filter((r) => r.overridesDept)
  const overridden: MergeResult['overridden'] = []
  const kept = departmentRules.filter((d) => {
    const by = overriding.find((v) => sameTraffic(v, d))
    if (by) overridden.push({ rule: d, by: by.id })
    return !by
  })
  // Array.prototype.sort is stable: department rules come first in the input, so they win ties.
  const rules = [...kept, ...vmRules].sort((a, b) => a.priority - b.priority)
  return { rules, overridden }
}
