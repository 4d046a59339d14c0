// Issue 15, lever 3: replacing one VM's two chains (and its dispatch elements) in a loaded table, paired round by
// round: the lean netlink write (firewall/netlink-batch.ts + Nft.commitBatch) against the same commands through
// libnftables as text (Nft.run) and through the nft CLI (`nft -f`), and VmFirewall.applyVm with the lean write
// against applyVm with `leanWrites: false`: three equally loaded tables in three namespaces (raw paths, lean engine,
// libnftables engine), so that no engine's view is made stale by another path's commits.
//   npx tsx bench/lean-replace.ts [--vms 1000] [--rules 20] [--rounds 9]
import { execFileSync } from 'node:child_process'
import { rmSync, writeFileSync } from 'node:fs'
import { Nft } from '../ts/index.js'
import { VmFirewall, type VmSpec } from '../ts/firewall/index.js'
import { compileVm } from '../ts/firewall/compile.js'
import { vmApplyCommands } from '../ts/firewall/layout.js'
import { encodeBatch } from '../ts/firewall/netlink-batch.js'
import { batchText } from '../ts/firewall/render.js'
import { normalizeVm } from '../ts/firewall/validate.js'
import { numberArg as arg } from './lib/args.js'
import { median, pairedRatio, rotate } from './lib/stats.js'
import { vmSpec } from './lib/vmfirewall.js'

const VMS = arg('vms', 1000)
const RULES = arg('rules', 20)
const ROUNDS = arg('rounds', 9)
const TABLE = 'bench_lean'
const ms = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e6

async function main(): Promise<void> {
const names = [`lean-raw-${process.pid}`, `lean-a-${process.pid}`, `lean-b-${process.pid}`]
for (const n of names) execFileSync('ip', ['netns', 'add', n])
const file = `/tmp/lean-replace-${process.pid}.nft`
const nfts = names.map((n) => new Nft({ netns: n }))
try {
  const [raw, lean, off] = [new VmFirewall(nfts[0]!, { table: TABLE }), new VmFirewall(nfts[1]!, { table: TABLE }), new VmFirewall(nfts[2]!, { table: TABLE, leanWrites: false })]
  const spec = (i: number, variant = 0) => vmSpec(i, RULES, variant) as unknown as VmSpec
  const specs = Array.from({ length: VMS }, (_, i) => spec(i))
  const t0 = process.hrtime.bigint()
  await Promise.all([raw.sync(specs), lean.sync(specs), off.sync(specs)])
  console.log(`loaded ${VMS} VMs x ${RULES} rules in three namespaces: ${ms(t0).toFixed(0)} ms`)
  const caps = await lean.capabilities()
  const target = Math.floor(VMS / 2)
  const compiled = (variant: number) => compileVm(normalizeVm(spec(target, variant)), { capabilities: caps as never, conntrack: 'auto' })
  const commands = (variant: number) => vmApplyCommands(TABLE, compiled(variant), [])
  const rules = compiled(0).out.length + compiled(0).in.length
  const paths: Record<string, (variant: number) => Promise<void>> = {
    lean: async (v) => void (await nfts[0]!.commitBatch(TABLE, encodeBatch(TABLE, commands(v))!)),
    'lib-text': async (v) => void (await nfts[0]!.run(batchText(commands(v))!)),
    'nft-f': async (v) => {
      writeFileSync(file, batchText(commands(v))!)
      execFileSync('ip', ['netns', 'exec', names[0]!, 'nft', '-f', file])
    },
    'applyVm lean': async (v) => void (await lean.applyVm(spec(target, v))),
    'applyVm libnftables': async (v) => void (await off.applyVm(spec(target, v))),
  }
  const ids = Object.keys(paths)
  const samples: Record<string, number[]> = Object.fromEntries(ids.map((p) => [p, []]))
  let variant = 1
  for (let r = 0; r <= ROUNDS; r++) {
    for (const p of rotate(ids, r)) {
      const t = process.hrtime.bigint()
      await paths[p]!(variant++)
      if (r > 0) samples[p]!.push(ms(t))
    }
  }
  console.log(`replace one VM (${rules} rules in 2 chains + 2 dispatch elements) at ${VMS} VMs x ${RULES} rules, ${ROUNDS} rounds, medians:`)
  for (const p of ids) {
    const vsLean = p === 'lean' ? '' : `  (${pairedRatio(samples[p]!, samples.lean!).toFixed(2)}x lean)`
    console.log(`  ${p.padEnd(20)} ${median(samples[p]!).toFixed(2).padStart(7)} ms${vsLean}`)
  }
  console.log(`  applyVm libnftables / applyVm lean: ${pairedRatio(samples['applyVm libnftables']!, samples['applyVm lean']!).toFixed(2)}x`)
  console.log(`  nft -f / applyVm lean: ${pairedRatio(samples['nft-f']!, samples['applyVm lean']!).toFixed(2)}x`)
} finally {
  for (const n of nfts) n.close()
  for (const n of names) execFileSync('ip', ['netns', 'delete', n])
  rmSync(file, { force: true })
}
}

void main()
