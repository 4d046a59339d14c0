// Bulk load: VmFirewall.sync of N VMs into absent tables, with the `exactTable` option on and off (lean
// path and libnftables), against `nft -f -` of the very ruleset that sync leaves (the kernel's listing of
// its tables, captured untimed), in the same namespace, paired per round as the main harness's bulk-sync
// row. The VMs are apply-time.ts's (gen.ts's 10 rules per direction in exact form), so on a kernel with
// bridge conntrack the exact table holds them all.
// npx tsx bench/results/issue-15-vmfirewall-exact/sync-time.ts [VMs,VMs,...] [rounds]
import { Nft } from '../../../ts/index.js'
import { VmFirewall, type VmSpec } from '../../../ts/firewall/index.js'
import { Drivers } from '../../lib/drivers.js'
import { vmNames } from '../../lib/gen.js'
import { exactRuleInputs, identity } from '../../lib/levers-gen.js'
import { createNetns, deleteNetns } from '../../lib/netns.js'
import { median } from '../../lib/stats.js'

const counts = (process.argv[2] ?? '1000').split(',').map(Number)
const rounds = Number(process.argv[3] ?? 3)
const TABLE = 'bench_fw'

function spec(index: number): VmSpec {
  const n = vmNames(index)
  const id = identity(index)
  return { vmId: n.vmId, tap: n.tap, mac: id.mac, ipv4: [id.ipv4], ipv6: [id.ipv6], defaultAction: 'accept', rules: exactRuleInputs(0) }
}

const ms = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e6

interface Config {
  label: string
  exactTable: boolean
  leanWrites: boolean
}
const CONFIGS: Config[] = [
  { label: 'exactTable, lean', exactTable: true, leanWrites: true },
  { label: 'exactTable, libnftables', exactTable: true, leanWrites: false },
  { label: 'chains, lean', exactTable: false, leanWrites: true },
  { label: 'chains, libnftables', exactTable: false, leanWrites: false },
]

/** Per config: the medians of sync and of nft -f of its listing, and the median of the per-round ratios. */
async function syncTimes(n: number, c: Config): Promise<{ sync: number; cli: number; ratio: number; placed: string; mb: number }> {
  const ns = createNetns('fws')
  const nft = new Nft({ netns: ns })
  const d = await Drivers.open(ns, { python: false })
  const specs = Array.from({ length: n }, (_, i) => spec(i))
  // The tables sync made (no exact table where no VM fits).
  let tables: string[] = []
  const clear = async (): Promise<void> => {
    for (const t of tables) await nft.run(`delete table bridge ${t}`)
  }
  try {
    const fw = () => new VmFirewall(nft, { table: TABLE, exactTable: c.exactTable, leanWrites: c.leanWrites })
    // Untimed: the listing of what sync leaves, and where it placed the VMs.
    const probe = fw()
    await probe.sync(specs)
    const placed = c.exactTable ? `${(await probe.applyVm(specs[0]!)).placement}` : 'chains'
    tables = [...(await nft.run('list tables bridge')).matchAll(/^table bridge (\S+)$/gm)].map((m) => m[1]!)
    let text = ''
    for (const t of tables) text += await nft.run(`list table bridge ${t}`)
    await clear()
    const syncs: number[] = []
    const clis: number[] = []
    const ratios: number[] = []
    for (let r = 0; r < rounds; r++) {
      // Order rotated per round, as runRounds does; the kernel settles before each timed call.
      const one = async (path: 'sync' | 'cli'): Promise<number> => {
        await d.settle()
        if (path === 'cli') return d.nftF(text)
        const f = fw()
        const t0 = process.hrtime.bigint()
        await f.sync(specs)
        return ms(t0)
      }
      const order: ('sync' | 'cli')[] = r % 2 === 0 ? ['sync', 'cli'] : ['cli', 'sync']
      const got: Record<string, number> = {}
      for (const p of order) {
        got[p] = await one(p)
        await clear()
      }
      syncs.push(got.sync!)
      clis.push(got.cli!)
      ratios.push(got.cli! / got.sync!)
    }
    return { sync: median(syncs), cli: median(clis), ratio: median(ratios), placed, mb: text.length / 1e6 }
  } finally {
    d.close()
    nft.close()
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
  console.log(`kernel ${(await import('node:os')).release()}; sync from empty vs nft -f of the same ruleset (median of ${rounds} paired rounds)`)
  // V8 warm-up: every configuration once at 10 VMs, unmeasured.
  for (const c of CONFIGS) await syncTimes(10, { ...c })
  for (const n of counts) {
    for (const c of CONFIGS) {
      const r = await syncTimes(n, c)
      console.log(`${n} VMs, ${c.label} (placed: ${r.placed}): sync ${r.sync.toFixed(0)} ms, nft -f of its listing (${r.mb.toFixed(1)} MB) ${r.cli.toFixed(0)} ms: ${r.ratio.toFixed(2)}x nft -f`)
    }
  }
}

main().catch((e: unknown) => {
  console.error(e)
  process.exitCode = 1
})
