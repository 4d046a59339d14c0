// Kernel time of one transaction: the sendmsg carrying the batch (nfnetlink processes it in the sender's context).
import { execFileSync, spawnSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { leverRulesetText, leverIdentityText, leverReplaceText } from '../../lib/levers-gen.js'
const vms = Number(process.argv[2] ?? 1000)
const variants = (process.argv[3] ?? 'A,B2').split(',') as ('A' | 'B' | 'B2' | 'B3')[]
const sh = (c: string, a: string[], input?: string) => execFileSync(c, a, { input, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'], maxBuffer: 1 << 28 })
const med = (x: number[]) => [...x].sort((a, b) => a - b)[Math.floor(x.length / 2)]!
for (const v of variants) {
  const ns = `h4k${v}`
  sh('ip', ['netns', 'add', ns])
  try {
    const spec = { variant: v, shards: 1 }
    sh('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], leverRulesetText(spec, vms))
    let cur = 0
    const res: Record<string, number[]> = { identity: [], replace: [] }
    for (let r = 0; r < 11; r++) {
      for (const op of ['identity', 'replace']) {
        const text = op === 'identity' ? leverIdentityText(spec, vms >> 1, cur, cur + 1) : leverReplaceText(spec, vms >> 1, cur, cur + 1)
        cur++
        writeFileSync('/tmp/h4k.nft', text)
        const p = spawnSync('ip', ['netns', 'exec', ns, 'strace', '-T', '-e', 'trace=sendmsg', 'nft', '-f', '/tmp/h4k.nft'], { encoding: 'utf8' })
        if (p.status !== 0) throw new Error(p.stderr)
        let best = { bytes: 0, s: 0 }
        for (const m of p.stderr.matchAll(/^sendmsg\(.*\) = (\d+) <([\d.]+)>/gm)) if (Number(m[1]) > best.bytes) best = { bytes: Number(m[1]), s: Number(m[2]) }
        if (r > 0) res[op]!.push(best.s * 1000)
      }
    }
    console.log(`${vms} VMs ${v}: batch sendmsg (kernel) median identity change ${med(res.identity!).toFixed(3)} ms, replace ${med(res.replace!).toFixed(3)} ms`)
  } finally {
    sh('ip', ['netns', 'del', ns])
  }
}
