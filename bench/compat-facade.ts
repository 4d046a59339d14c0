// The compat facade against the engine at scale: calls into the binding per NftablesService operation
// (libnftables, the lean netlink batch, and apart from them the ruleset generation reads), and
// `applyRules` timed against `VmFirewall.applyVm` on equally loaded tables (each in its own namespace).
// Usage: npx tsx bench/compat-facade.ts [vms=1000] [rulesPerVm=20] [iterations=40]
import { Nft } from '../ts/index.js'
import { VmFirewall, type VmSpec } from '../ts/firewall/index.js'
import { NftablesService } from '../ts/compat/index.js'
import { createNetns, deleteNetns } from './lib/netns.js'
import { vmSpec } from './lib/vmfirewall.js'

const [vms = 1000, rulesPerVm = 20, iterations = 40] = process.argv.slice(2).map(Number)
const TABLE = 'bench_fw'
const CALLS = ['run', 'runJson', 'commitBatch', 'runEcho', 'check', 'checkJson', 'listRuleset', 'listTable', 'listChain'] as const


const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
const p90 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length * 0.9)]!

async function main(): Promise<void> {
  const nsE = createNetns('cfe')
  const nsF = createNetns('cff')
  const nftE = new Nft({ netns: nsE })
  const nftF = new Nft({ netns: nsF })
  try {
    const fw = new VmFirewall(nftE, { table: TABLE })
    const svc = new NftablesService({ nft: nftF, table: TABLE, bridgeConntrackMode: 'degrade', dhcp: false })
    const specs = Array.from({ length: vms }, (_, k) => vmSpec(k, rulesPerVm)) as unknown as VmSpec[]
    await fw.sync(specs)
    // The facade's table, loaded by another engine (its own view is then stale once: a real re-read).
    await new VmFirewall(nftF, { table: TABLE }).sync(specs.map((s) => ({ ...s, dhcp: false })))
    await svc.initialize()
    let calls = 0
    let names: string[] = []
    // Issue 14: a generation read is one round trip to the instance's thread (~20 µs in the kernel, more with the hop).
    let generations = 0
    for (const nft of [nftE, nftF]) {
      const generation = nft.generation.bind(nft)
      nft.generation = () => (generations++, generation())
      for (const m of CALLS) {
        const orig = (nft[m] as (...a: unknown[]) => unknown).bind(nft)
        ;(nft as unknown as Record<string, unknown>)[m] = (...a: unknown[]) => {
          calls++
          names.push(m === 'runJson' ? `runJson:${Object.keys((a[0] as { nftables: object[] }).nftables[0] ?? {})[0]}` : m)
          return orig(...a)
        }
      }
    }
    const count = async (fn: () => Promise<unknown>): Promise<string> => {
      calls = 0
      names = []
      generations = 0
      await fn()
      return `${calls}${calls ? `  (${names.join(', ')})` : ''}; generation reads ${generations}`
    }
    const k = Math.floor(vms / 2)
    const s = (variant: number) => vmSpec(k, rulesPerVm, variant) as unknown as VmSpec
    await svc.applyRules(s(0).vmId, s(0).tap, [], s(0).rules as never, 'accept')
    await fw.applyVm(s(0))
    const perOp: Record<string, string> = {}
    perOp['applyVm (engine)'] = await count(() => fw.applyVm(s(1)))
    perOp.applyRules = await count(() => svc.applyRules(s(2).vmId, s(2).tap, [], s(2).rules as never, 'accept'))
    perOp['applyRulesIfChanged, unchanged'] = await count(() => svc.applyRulesIfChanged(s(2).vmId, s(2).tap, [], s(2).rules as never, 'accept'))
    perOp['applyRulesIfChanged, unchanged again'] = await count(() => svc.applyRulesIfChanged(s(2).vmId, s(2).tap, [], s(2).rules as never, 'accept'))
    perOp['applyRulesIfChanged, changed'] = await count(() => svc.applyRulesIfChanged(s(3).vmId, s(3).tap, [], s(3).rules as never, 'accept'))
    perOp.detachJumpRules = await count(() => svc.detachJumpRules(s(3).vmId))
    perOp.attachJumpRules = await count(() => svc.attachJumpRules(s(3).vmId, s(3).tap))
    perOp.createVMChain = await count(() => svc.createVMChain(s(3).vmId, s(3).tap))
    perOp.ensureVMChain = await count(() => svc.ensureVMChain(s(3).vmId))
    perOp.chainExists = await count(() => svc.chainExists(`${s(3).vmId}`))
    perOp.flushVMRules = await count(() => svc.flushVMRules(s(3).vmId))
    perOp.removeVMChain = await count(() => svc.removeVMChain(s(3).vmId))
    perOp['applyRules (new VM)'] = await count(() => svc.applyRules(s(4).vmId, s(4).tap, [], s(4).rules as never, 'accept'))
    console.log('binding calls per operation (%d VMs x %d rules):', vms, rulesPerVm)
    for (const [op, n] of Object.entries(perOp)) console.log(`  ${op.padEnd(40)} ${n}`)

    // Timing: engine and facade in pairs (order alternating), each changing its VM's policy every time (a real
    // rewrite); then each alone in a hot loop. The paired difference is what the facade adds.
    const te: number[] = []
    const tf: number[] = []
    const diff: number[] = []
    const engine = async (sp: VmSpec) => {
      const t0 = process.hrtime.bigint()
      await fw.applyVm(sp)
      return ms(t0)
    }
    const facade = async (sp: VmSpec) => {
      const t0 = process.hrtime.bigint()
      await svc.applyRules(sp.vmId, sp.tap, [], sp.rules as never, 'accept')
      return ms(t0)
    }
    for (let i = 0; i < iterations; i++) {
      const sp = s(10 + i)
      // Alternate which goes first, so neither always pays for the other's cache effects.
      let e: number
      let f: number
      if (i % 2) {
        e = await engine(sp)
        f = await facade(sp)
      } else {
        f = await facade(sp)
        e = await engine(sp)
      }
      te.push(e)
      tf.push(f)
      diff.push(f - e)
    }
    const hotE: number[] = []
    const hotF: number[] = []
    for (let i = 0; i < iterations; i++) hotE.push(await engine(s(10_000 + i)))
    for (let i = 0; i < iterations; i++) hotF.push(await facade(s(10_000 + i)))
    const f2 = (x: number) => x.toFixed(2)
    console.log(`timing, ${iterations} pairs (ms)            median   p90`)
    console.log(`  applyVm (engine)                  ${f2(median(te))}   ${f2(p90(te))}`)
    console.log(`  applyRules (facade)               ${f2(median(tf))}   ${f2(p90(tf))}`)
    console.log(`  facade - engine, paired           ${f2(median(diff))}`)
    console.log(`  hot loop applyVm                  ${f2(median(hotE))}   ${f2(p90(hotE))}`)
    console.log(`  hot loop applyRules               ${f2(median(hotF))}   ${f2(p90(hotF))}`)
    svc.close()
  } finally {
    nftE.close()
    nftF.close()
    deleteNetns(nsE)
    deleteNetns(nsF)
  }
}

void main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e)
    process.exit(1)
  },
)
