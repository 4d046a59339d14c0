// Kernel time of swapping one VM's elements in one map of variant E (interval maps: the kernel's pipapo sets) and in a
// hash twin of one of them (same exact keys, no `flags interval`): the batch's sendmsg, timed by strace.
// npx tsx bench/results/issue-15-rules-as-elements/kernel-element-time.ts [VMs]
import { execFileSync } from 'node:child_process'
import { batchKernelMs } from '../../lib/kernel-time.js'
import { median } from '../../lib/stats.js'
import { leverRulesetText, policyElements } from '../../lib/levers-gen.js'
import { vmNames } from '../../lib/gen.js'
const vms = Number(process.argv[2] ?? 1000)
const sh = (c: string, a: string[], input?: string) => execFileSync(c, a, { input, encoding: 'utf8', maxBuffer: 1 << 28 })
const ns = 'probeE'
sh('ip', ['netns', 'add', ns])
const T = 'bench_lv_s0'
const E = { variant: 'E', shards: 1 } as const
try {
  sh('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], leverRulesetText(E, vms))
  // hash twin of out_s4 (exact keys only), filled with the same elements
  sh('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], `add map bridge ${T} h_s4 { type ifname . ipv4_addr . inet_proto . inet_service : verdict ; }\nadd rule bridge ${T} pre iifname . ip saddr . meta l4proto . th dport vmap @h_s4\n` +
    Array.from({ length: vms }, (_, i) => `add element bridge ${T} h_s4 { ${policyElements(E, vmNames(i).tap, 0).get('out_s4')!.join(', ')} }`).join('\n') + '\n')
  const tap = vmNames(vms >> 1).tap
  for (const map of ['out_s4', 'h_s4', 'out_p', 'out_d4']) {
    const src = map === 'h_s4' ? 'out_s4' : map
    const res: number[] = []
    let v = 0
    for (let r = 0; r < 7; r++) {
      const del = policyElements(E, tap, v).get(src)!.join(', ')
      const add = policyElements(E, tap, v + 1).get(src)!.join(', ')
      res.push(batchKernelMs(ns, `delete element bridge ${T} ${map} { ${del} }\nadd element bridge ${T} ${map} { ${add} }\n`))
      v++
    }
    console.log(`${vms} VMs: swap one VM's ${policyElements(E, tap, 0).get(src)!.length} elements of ${map}: kernel (batch sendmsg) median ${median(res).toFixed(3)} ms`)
  }
} finally {
  sh('ip', ['netns', 'del', ns])
}
