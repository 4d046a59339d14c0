// Issue 15, lever 1 (the shared identity guard): VmFirewall.applyVm on VMs that carry an identity (MAC, IPv4,
// IPv6, anti-spoofing and DHCP on: every built-in applies), in a table of `--vms` such VMs. Per round, on one VM:
//   replace   its user rules change (its chains are rewritten; its guard elements stay)
//   identity  only its addresses change (set elements only: no rule, no verdict, no validation walk)
// Median over the rounds, wall time of the applyVm call (libnftables or the lean netlink path, as the engine
// picks). One namespace of its own.
//   npx tsx bench/identity-apply.ts [--vms 1000] [--rules 20] [--rounds 9]
// Measured (2 shared cores, kernel 6.18, libnftables 1.0.6, 1000 VMs x 20 rules, 9 rounds): replace 9.82 ms,
// identity change 2.00 ms median; the identity change's netlink commit itself 0.25-0.4 ms, the rest is the
// engine's user-space work (compile, view).
import { execFileSync } from 'node:child_process'
import { Nft } from '../ts/index.js'
import { VmFirewall, type VmSpec } from '../ts/firewall/index.js'
import { numberArg as arg } from './lib/args.js'
import { median } from './lib/stats.js'
import { vmSpec } from './lib/vmfirewall.js'

const VMS = arg('vms', 1000)
const RULES = arg('rules', 20)
const ROUNDS = arg('rounds', 9)
const ms = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e6
const hex = (n: number) => (n & 0xff).toString(16).padStart(2, '0')

/** VM `i` with identity variant `v` (MAC and addresses differ per variant). */
function identified(i: number, v: number, ruleVariant = 0): VmSpec {
  return {
    ...(vmSpec(i, RULES, ruleVariant) as unknown as VmSpec),
    mac: `02:${hex(v)}:00:${hex(i >> 8)}:${hex(i)}:01`,
    ipv4: [`10.${100 + (v % 100)}.${(i >> 8) & 255}.${i & 255}`],
    ipv6: [`2001:db8:${v.toString(16)}::${i.toString(16)}`],
    defaultAction: 'drop',
  }
}

async function main(): Promise<void> {
  const ns = `ident-${process.pid}`
  execFileSync('ip', ['netns', 'add', ns])
  const nft = new Nft({ netns: ns })
  try {
    const fw = new VmFirewall(nft, { table: 'bench_ident' })
    const t0 = process.hrtime.bigint()
    await fw.sync(Array.from({ length: VMS }, (_, i) => identified(i, 0)))
    console.log(`loaded ${VMS} identified VMs x ${RULES} rules: ${ms(t0).toFixed(0)} ms`)
    const target = VMS >> 1
    await fw.applyVm(identified(target, 0)) // the engine now knows the VM's chains as written
    const replace: number[] = []
    const identity: number[] = []
    for (let r = 1; r <= ROUNDS; r++) {
      let t = process.hrtime.bigint()
      await fw.applyVm(identified(target, r - 1, r)) // user rules change, identity as before
      replace.push(ms(t))
      t = process.hrtime.bigint()
      await fw.applyVm(identified(target, r, r)) // identity changes, rules as before
      identity.push(ms(t))
    }
    const drift = await fw.verify()
    console.log(`replace (rules change): median ${median(replace).toFixed(2)} ms  [${replace.map((x) => x.toFixed(2)).join(' ')}]`)
    console.log(`identity change (elements only): median ${median(identity).toFixed(2)} ms  [${identity.map((x) => x.toFixed(2)).join(' ')}]`)
    console.log(`verify after the rounds: ${drift.ok ? 'no drift' : 'DRIFT'}`)
  } finally {
    nft.close()
    execFileSync('ip', ['netns', 'del', ns])
  }
}

void main()
