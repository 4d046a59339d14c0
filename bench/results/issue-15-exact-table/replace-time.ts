// Replacing one VM in the exact table as the library writes it (ts/firewall/exact-table.ts: the guard, the
// lookups of the shapes in use, per-element counters and comments), at N VMs: through Nft.runJson, the
// kernel's share of the same batch (strace of `nft -j -f`'s batch sendmsg), and the lean path (encodeBatch +
// Nft.commitBatch and its sync form, no libnftables).
// Each VM: gen.ts's 10 rules, exact (`ip saddr H tcp dport P drop`, `ip daddr 203.0.113.1 udp dport P accept`,
// `tcp dport P-(P+5) drop`), both directions; a replace moves the VM's rules to the next variant.
// npx tsx bench/results/issue-15-exact-table/replace-time.ts [VMs,VMs,...] [rounds]
import { spawnSync } from 'node:child_process'
import { Nft } from '../../../ts/index.js'
import { vmIdentity } from '../../../ts/firewall/compile.js'
import { exactPolicy, type ExactPolicy } from '../../../ts/firewall/exact-rules.js'
import { exactElementCommands, exactTableCommands, exactTableName, shapesOf } from '../../../ts/firewall/exact-table.js'
import { identityElements, setElementCommands } from '../../../ts/firewall/layout.js'
import { encodeBatch } from '../../../ts/firewall/netlink-batch.js'
import { normalizeVm, type NormalizedVm } from '../../../ts/firewall/validate.js'
import { vmNames } from '../../lib/gen.js'
import { batchKernelMs } from '../../lib/kernel-time.js'
import { exactRuleInputs, identity } from '../../lib/levers-gen.js'
import { createNetns, deleteNetns } from '../../lib/netns.js'
import { median } from '../../lib/stats.js'

const counts = (process.argv[2] ?? '10,1000,2000').split(',').map(Number)
const rounds = Number(process.argv[3] ?? 15)
const hasStrace = spawnSync('strace', ['-V']).status === 0
const T = exactTableName('bench_x')
const CAPS = { capabilities: { bridgeConntrack: true, bridgeReject: false }, conntrack: 'auto' as const }


function vm(index: number, variant: number): { vm: NormalizedVm; policy: ExactPolicy } {
  const n = vmNames(index)
  const id = identity(index)
  const v = normalizeVm({ vmId: n.vmId, tap: n.tap, mac: id.mac, ipv4: [id.ipv4], ipv6: [id.ipv6], defaultAction: 'accept', rules: exactRuleInputs(variant) })
  const policy = exactPolicy(v, CAPS)
  if ('reason' in policy) throw new Error(`${policy.reason}: ${policy.message}`)
  return { vm: v, policy }
}

const replace = (index: number, from: number, to: number) => {
  const a = vm(index, from)
  const b = vm(index, to)
  return [...exactElementCommands(T, 'delete', a.vm.tap, a.vm.vmId, a.policy), ...exactElementCommands(T, 'add', b.vm.tap, b.vm.vmId, b.policy)]
}

// Stateless here (no bridge conntrack on this kernel): the table has no established rule, which a replace never touches.
const stateful = false
async function main(): Promise<void> {
for (const n of counts) {
  const ns = createNetns('exact')
  const nft = new Nft({ netns: ns })
  try {
    const vms = Array.from({ length: n }, (_, i) => vm(i, 0))
    await nft.runJson({ nftables: exactTableCommands(T, { shapes: shapesOf(vms.map((v) => v.policy)), stateful, fresh: true }) })
    for (let i = 0; i < n; i += 200) {
      await nft.runJson({ nftables: vms.slice(i, i + 200).flatMap((v) => [...setElementCommands(T, 'add', identityElements(vmIdentity(v.vm), v.vm.tap)), ...exactElementCommands(T, 'add', v.vm.tap, v.vm.vmId, v.policy)]) })
    }
    const target = n >> 1
    const lib: number[] = []
    const kernel: number[] = []
    const lean: number[] = []
    const leanSync: number[] = []
    let variant = 0
    const next = () => replace(target, variant, ++variant)
    const WARMUP = 5
    for (let r = -WARMUP; r < rounds; r++) {
      if (r === 0) for (const l of [lib, lean, leanSync]) l.length = 0 // the warm-up rounds are not kept
      const c1 = next()
      const t0 = process.hrtime.bigint()
      await nft.runJson({ nftables: c1 })
      lib.push(Number(process.hrtime.bigint() - t0) / 1e6)
      // The lean path in both forms, in an order that alternates per round; the batches are committed in the
      // order they were encoded.
      const forms = (r + WARMUP) % 2 === 0 ? (['async', 'sync'] as const) : (['sync', 'async'] as const)
      for (const form of forms) {
        const buf = encodeBatch(T, next())
        if (!buf) throw new Error('netlink-batch.ts did not encode the replace')
        const t2 = process.hrtime.bigint()
        if (form === 'async') await nft.commitBatch(T, buf)
        else nft.commitBatchSync(T, buf)
        ;(form === 'async' ? lean : leanSync).push(Number(process.hrtime.bigint() - t2) / 1e6)
      }
    }
    // The kernel's share, apart: a spawned `nft` leaves the caches cold for whatever runs next.
    if (hasStrace) for (let r = 0; r < rounds; r++) kernel.push(batchKernelMs(ns, JSON.stringify({ nftables: next() }), undefined, true))
    const elements = vm(target, 0).policy.elements.length
    const f = (l: number[]) => `${median(l).toFixed(3)} ms`
    console.log(
      `${n} VMs (${elements} elements + 2 defaults per VM; a replace deletes and adds ${elements} each): Nft.runJson ${f(lib)}, kernel ${kernel.length ? f(kernel) : 'n/a (no strace)'}, lean ${f(lean)} (sync ${f(leanSync)}) (median of ${rounds}, after ${WARMUP} warm-up rounds)`,
    )
  } finally {
    nft.close()
    deleteNetns(ns)
  }
}
}

main().catch((e: unknown) => {
  console.error(e)
  process.exitCode = 1
})
