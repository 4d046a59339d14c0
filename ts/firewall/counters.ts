// Adding packet counters into the per-rule buckets `stats` reports (VmStats), the VM-chain table's rules and
// the exact table's elements alike. Pure.
import type { RuleCounters } from './model.js'

export const zeroCounters = (): RuleCounters => ({ packets: 0, bytes: 0, out: { packets: 0, bytes: 0 }, in: { packets: 0, bytes: 0 } })

/** Adds one counter, seen on `side`, to every bucket (a rule's, and the VM's dropped total when it drops). */
export function countInto(buckets: readonly RuleCounters[], side: 'out' | 'in', c: { packets: number; bytes: number }): void {
  for (const b of buckets) {
    b.packets += c.packets
    b.bytes += c.bytes
    b[side].packets += c.packets
    b[side].bytes += c.bytes
  }
}
