// VmFirewall.applyVm replacing one VM's policy at N VMs, with the `exactTable` option (the VM's policy as
// elements of `<table>_exact`) against the VM-chain layout (exactTable off), each through the lean path
// (default) and through libnftables (leanWrites: false). The same engine calls a user makes, nothing written
// by hand. Needs a kernel with bridge conntrack (exact-rules.ts refuses stateless kernels), so it runs under
// scripts/kernel-matrix/run-in-kernel.sh; elsewhere it says so and places every VM in chains.
// Each VM: gen.ts's 10 rules per direction in exact form (replace-time.ts next door); a replace moves the
// VM's rules to the next variant, so every element of its rules changes.
// The CLI path it replaces, in the same run: `nft -f -` (a process per transaction, as the consumer spawns
// it) flushing one VM's two chains and adding its 20 rules, in a raw table of as many VMs (gen.ts, the main
// harness's apply-vm row).
// npx tsx bench/results/issue-15-vmfirewall-exact/apply-time.ts [VMs,VMs,...] [rounds]
import { Nft } from '../../../ts/index.js'
import { VmFirewall, type VmSpec } from '../../../ts/firewall/index.js'
import { Drivers } from '../../lib/drivers.js'
import { batch, fullRulesetCmds, replaceVmCmds, vmNames } from '../../lib/gen.js'
import { exactRuleInputs, identity, USER_RULES_PER_CHAIN } from '../../lib/levers-gen.js'
import { createNetns, deleteNetns } from '../../lib/netns.js'
import { median } from '../../lib/stats.js'

const counts = (process.argv[2] ?? '10,1000').split(',').map(Number)
const rounds = Number(process.argv[3] ?? 21)
const WARMUP = 5


function spec(index: number, variant: number): VmSpec {
  const n = vmNames(index)
  const id = identity(index)
  return { vmId: n.vmId, tap: n.tap, mac: id.mac, ipv4: [id.ipv4], ipv6: [id.ipv6], defaultAction: 'accept', rules: exactRuleInputs(variant) }
}

/** Median ms of applyVm replacing VM ⌊n/2⌋ in a firewall of n VMs; and where the VM was placed. */
async function applyTime(n: number, exactTable: boolean, leanWrites: boolean): Promise<{ ms: number; placement: string; syncMs: number }> {
  const ns = createNetns('fwx')
  const nft = new Nft({ netns: ns })
  try {
    const fw = new VmFirewall(nft, { table: 'bench_fw', exactTable, leanWrites })
    const t0 = process.hrtime.bigint()
    await fw.sync(Array.from({ length: n }, (_, i) => spec(i, 0)))
    const syncMs = Number(process.hrtime.bigint() - t0) / 1e6
    const target = n >> 1
    const times: number[] = []
    let placement = ''
    for (let r = -WARMUP, variant = 0; r < rounds; r++) {
      const s = spec(target, ++variant)
      const t = process.hrtime.bigint()
      const res = await fw.applyVm(s)
      if (r >= 0) times.push(Number(process.hrtime.bigint() - t) / 1e6)
      placement = res.placement ?? ''
    }
    if (!(await fw.verify()).ok) throw new Error(`verify after the replaces is not clean (${n} VMs, exactTable ${exactTable})`)
    return { ms: median(times), placement, syncMs }
  } finally {
    nft.close()
    deleteNetns(ns)
  }
}

/** Median ms of `nft -f -` replacing VM ⌊n/2⌋'s 20 rules in a raw table of n VMs. */
async function nftFTime(n: number): Promise<number> {
  const ns = createNetns('fwf')
  const d = await Drivers.open(ns, { python: false })
  try {
    const rules = 2 * USER_RULES_PER_CHAIN
    await d.nft.run(batch(fullRulesetCmds('bench_vm', n, rules)).text)
    const target = vmNames(n >> 1)
    const times: number[] = []
    for (let r = -WARMUP, variant = 0; r < rounds; r++) {
      await d.settle()
      const ms = await d.runBatch('nft-f', batch(replaceVmCmds('bench_vm', target, rules, ++variant)))
      if (r >= 0) times.push(ms)
    }
    return median(times)
  } finally {
    d.close()
    deleteNetns(ns)
  }
}

async function main(): Promise<void> {
  const ns = createNetns('caps')
  const nft = new Nft({ netns: ns })
  const caps = await new VmFirewall(nft).capabilities()
  nft.close()
  deleteNetns(ns)
  if (!caps.bridgeConntrack) console.log('no bridge conntrack on this kernel: the exact table places no VM (every row is chains); run under scripts/kernel-matrix/run-in-kernel.sh')
  console.log(`kernel ${(await import('node:os')).release()}; applyVm replacing one VM (median of ${rounds}, after ${WARMUP} warm-up rounds)`)
  // V8 warm-up: one unmeasured pass of every configuration at 10 VMs. Without it the first configuration
  // measured carries the compile time of the code paths (under TCG, 3x its later figure at 10 VMs).
  for (const exactTable of [true, false]) for (const leanWrites of [true, false]) await applyTime(10, exactTable, leanWrites)
  for (const n of counts) {
    const cli = await nftFTime(n)
    console.log(`${n} VMs, nft -f - (CLI path, raw table): ${cli.toFixed(3)} ms`)
    for (const exactTable of [true, false]) {
      for (const leanWrites of [true, false]) {
        const r = await applyTime(n, exactTable, leanWrites)
        console.log(`${n} VMs, exactTable ${exactTable}, leanWrites ${leanWrites}: applyVm ${r.ms.toFixed(3)} ms (placed: ${r.placement || 'chains'}; ${(cli / r.ms).toFixed(2)}x nft -f); sync of all ${r.syncMs.toFixed(0)} ms`)
      }
    }
  }
}

main().catch((e: unknown) => {
  console.error(e)
  process.exitCode = 1
})
