// Does a table where some VMs keep their chains cost the element-only VMs anything? F's layout for N - M VMs,
// plus M VMs with B2's chains (10 rules + a default each way) behind `iifname vmap @from_vm` /
// `oifname vmap @to_vm`, in one table. Kernel time (the batch's sendmsg, strace) of replacing an element VM's
// rules and a chain VM's rules, at N = 1000 for several M.
// npx tsx bench/results/issue-15-exact-key-elements/mixed-table-time.ts [N] [M,M,...]
import { execFileSync } from 'node:child_process'
import { batchKernelMs } from '../../lib/kernel-time.js'
import { chainVmsText, leverReplaceText, leverRulesetText, tableOf, type LeverSpec } from '../../lib/levers-gen.js'
import { median } from '../../lib/stats.js'

const n = Number(process.argv[2] ?? 1000)
const ms = (process.argv[3] ?? '0,10,100,500').split(',').map(Number)
const F: LeverSpec = { variant: 'F', shards: 1 }
const B2: LeverSpec = { variant: 'B2', shards: 1 }
const ns = 'probeMixed'
const sh = (c: string, a: string[], input?: string) => execFileSync(c, a, { input, encoding: 'utf8', maxBuffer: 1 << 28 })

for (const m of ms) {
  sh('ip', ['netns', 'add', ns])
  try {
    sh('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], leverRulesetText(F, n - m) + (m ? chainVmsText(tableOf(F, 0), n - m, m) : ''))
    const el: number[] = []
    const ch: number[] = []
    for (let v = 0; v < 9; v++) {
      el.push(batchKernelMs(ns, leverReplaceText(F, (n - m) >> 1, v, v + 1)))
      if (m) ch.push(batchKernelMs(ns, leverReplaceText(B2, n - m + (m >> 1), v, v + 1)))
    }
    console.log(`${n} VMs, ${m} with chains: replace an element VM ${median(el).toFixed(3)} ms, a chain VM ${m ? `${median(ch).toFixed(3)} ms` : '-'} (kernel, batch sendmsg, median of 9)`)
  } finally {
    sh('ip', ['netns', 'del', ns])
  }
}
