// Does a table where some VMs keep their chains cost the element-only VMs anything? F's layout for N - M VMs,
// plus M VMs with B2's kind of chains (10 rules + a default each way) behind `iifname vmap @from_vm` /
// `oifname vmap @to_vm`, in one table. Kernel time (the batch's sendmsg, strace) of replacing an element VM's
// rules and a chain VM's rules, at N = 1000 for several M.
// npx tsx bench/results/issue-15-exact-key-elements/mixed-table-time.ts [N] [M,M,...]
import { execFileSync } from 'node:child_process'
import { FAMILY, vmNames, vmRule } from '../../lib/gen.js'
import { batchKernelMs } from '../../lib/kernel-time.js'
import { leverReplaceText, leverRulesetText, USER_RULES_PER_CHAIN, type LeverSpec } from '../../lib/levers-gen.js'
import { median } from '../../lib/stats.js'

const n = Number(process.argv[2] ?? 1000)
const ms = (process.argv[3] ?? '0,10,100,500').split(',').map(Number)
const F: LeverSpec = { variant: 'F', shards: 1 }
const T = 'bench_lv_s0'
const ns = 'probeMixed'
const sh = (c: string, a: string[], input?: string) => execFileSync(c, a, { input, encoding: 'utf8', maxBuffer: 1 << 28 })
const chainRules = (variant: number) => [...Array.from({ length: USER_RULES_PER_CHAIN }, (_, i) => vmRule(i, variant).text), 'counter accept comment "default"']

/** M chain VMs (indices from `first`): their dispatch maps and rules, and each VM's chains. */
function chainVmsText(first: number, m: number): string {
  const l = [`add map ${FAMILY} ${T} from_vm { type ifname : verdict ; }`, `add map ${FAMILY} ${T} to_vm { type ifname : verdict ; }`]
  l.push(`add rule ${FAMILY} ${T} pre iifname vmap @from_vm`, `add rule ${FAMILY} ${T} post oifname vmap @to_vm`)
  for (let i = first; i < first + m; i++) {
    const vm = vmNames(i)
    for (const c of [vm.out, vm.in]) {
      l.push(`add chain ${FAMILY} ${T} ${c}`)
      for (const r of chainRules(0)) l.push(`add rule ${FAMILY} ${T} ${c} ${r}`)
    }
    l.push(`add element ${FAMILY} ${T} from_vm { "${vm.tap}" : jump ${vm.out} }`, `add element ${FAMILY} ${T} to_vm { "${vm.tap}" : jump ${vm.in} }`)
  }
  return l.join('\n') + '\n'
}

function chainReplaceText(index: number, variant: number): string {
  const vm = vmNames(index)
  return [vm.out, vm.in].flatMap((c) => [`flush chain ${FAMILY} ${T} ${c}`, ...chainRules(variant).map((r) => `add rule ${FAMILY} ${T} ${c} ${r}`)]).join('\n') + '\n'
}

for (const m of ms) {
  sh('ip', ['netns', 'add', ns])
  try {
    sh('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], leverRulesetText(F, n - m) + (m ? chainVmsText(n - m, m) : ''))
    const el: number[] = []
    const ch: number[] = []
    for (let v = 0; v < 9; v++) {
      el.push(batchKernelMs(ns, leverReplaceText(F, (n - m) >> 1, v, v + 1)))
      if (m) ch.push(batchKernelMs(ns, chainReplaceText(n - m + (m >> 1), v + 1)))
    }
    console.log(`${n} VMs, ${m} with chains: replace an element VM ${median(el).toFixed(3)} ms, a chain VM ${m ? `${median(ch).toFixed(3)} ms` : '-'} (kernel, batch sendmsg, median of 9)`)
  } finally {
    sh('ip', ['netns', 'del', ns])
  }
}
