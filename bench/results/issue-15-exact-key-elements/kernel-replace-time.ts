// Kernel time of one replace of variant F (the VM's rules as exact-key elements of hash maps), against B2's
// (flush the VM's chains, add their rules), at N VMs: the batch's sendmsg, timed by strace. What a lean path
// that skips libnftables could reach at best.
// npx tsx bench/results/issue-15-exact-key-elements/kernel-replace-time.ts [VMs,VMs,...]
import { execFileSync, spawnSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { leverReplaceText, leverRulesetText, specLabel, tableOf, type LeverSpec } from '../../lib/levers-gen.js'
const counts = (process.argv[2] ?? '10,1000,2000').split(',').map(Number)
const sh = (c: string, a: string[], input?: string) => execFileSync(c, a, { input, encoding: 'utf8', maxBuffer: 1 << 28 })
const med = (x: number[]) => [...x].sort((a, b) => a - b)[Math.floor(x.length / 2)]!
const ns = 'probeF'
const specs: LeverSpec[] = [{ variant: 'B2', shards: 1 }, { variant: 'F', shards: 1 }]
/** The batch's commit: the longest sendmsg of the run (the batch; the others are cache dumps' requests). */
function kernelMs(text: string): number {
  writeFileSync('/tmp/probeF.nft', text)
  const p = spawnSync('ip', ['netns', 'exec', ns, 'strace', '-T', '-e', 'trace=sendmsg', 'nft', '-f', '/tmp/probeF.nft'], { encoding: 'utf8' })
  if (p.status !== 0) throw new Error(p.stderr)
  let best = { bytes: 0, s: 0 }
  for (const m of p.stderr.matchAll(/^sendmsg\(.*\) = (\d+) <([\d.]+)>/gm)) if (Number(m[1]) > best.bytes) best = { bytes: Number(m[1]), s: Number(m[2]) }
  return best.s * 1000
}
for (const vms of counts) {
  for (const s of specs) {
    sh('ip', ['netns', 'add', ns])
    try {
      sh('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], leverRulesetText(s, vms))
      const target = vms >> 1
      const res: number[] = []
      for (let v = 0; v < 9; v++) res.push(kernelMs(leverReplaceText(s, target, v, v + 1)))
      console.log(`${vms} VMs, ${specLabel(s)} (${tableOf(s, target)}): replace VM #${target}, kernel (batch sendmsg) median of 9: ${med(res).toFixed(3)} ms`)
    } finally {
      sh('ip', ['netns', 'del', ns])
    }
  }
}
