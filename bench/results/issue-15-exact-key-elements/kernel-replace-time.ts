// Kernel time of one replace of variant F (the VM's rules as exact-key elements of hash maps), against B2's
// (flush the VM's chains, add their rules), at N VMs: the batch's sendmsg, timed by strace. What a lean path
// that skips libnftables could reach at best.
// npx tsx bench/results/issue-15-exact-key-elements/kernel-replace-time.ts [VMs,VMs,...]
import { execFileSync } from 'node:child_process'
import { batchKernelMs } from '../../lib/kernel-time.js'
import { median } from '../../lib/stats.js'
import { leverReplaceText, leverRulesetText, specLabel, tableOf, type LeverSpec } from '../../lib/levers-gen.js'
const counts = (process.argv[2] ?? '10,1000,2000').split(',').map(Number)
const sh = (c: string, a: string[], input?: string) => execFileSync(c, a, { input, encoding: 'utf8', maxBuffer: 1 << 28 })
const ns = 'probeF'
const specs: LeverSpec[] = [{ variant: 'B2', shards: 1 }, { variant: 'F', shards: 1 }]
for (const vms of counts) {
  for (const s of specs) {
    sh('ip', ['netns', 'add', ns])
    try {
      sh('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], leverRulesetText(s, vms))
      const target = vms >> 1
      const res: number[] = []
      for (let v = 0; v < 9; v++) res.push(batchKernelMs(ns, leverReplaceText(s, target, v, v + 1)))
      console.log(`${vms} VMs, ${specLabel(s)} (${tableOf(s, target)}): replace VM #${target}, kernel (batch sendmsg) median of 9: ${median(res).toFixed(3)} ms`)
    } finally {
      sh('ip', ['netns', 'del', ns])
    }
  }
}
