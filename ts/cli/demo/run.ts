// `nftables-node demo`: sandbox -> example policy through VmFirewall -> real probes -> matrix -> cleanup.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { BlockedEvent, FirewallRuleInput, FirewallDefaultAction, VmSpec, WatchEvent } from '../../firewall/index.js'
import { VmFirewall } from '../../firewall/index.js'
import { Nft } from '../../nft.js'
import { EXIT } from '../exit-codes.js'
import { printJson, table } from '../output.js'
import { blockedLine, driftLine } from '../watch.js'
import { createSandbox, type Sandbox } from './sandbox.js'

interface Probe {
  from: string
  to: string
  what: 'ping' | 'tcp' | 'spoofed-ping'
  port?: number
  family: 4 | 6
  /** 'refused': a REJECT the client sees (RST / port-unreachable); where the kernel cannot reject, the
   *  firewall drops instead and the probe expects 'blocked'. */
  expect: Outcome
  why: string
}

type Outcome = 'allowed' | 'blocked' | 'refused'

interface DemoPolicy {
  departmentRules: FirewallRuleInput[]
  vms: Record<string, { defaultAction: FirewallDefaultAction; department: boolean; rules: FirewallRuleInput[] }>
  probes: Probe[]
}

const SPOOFED_SOURCE = '10.99.0.99'

export const DEMO_POLICY = join(__dirname, '..', '..', '..', 'examples', 'demo-policy.json')

function probe(sb: Sandbox, p: Probe): Outcome {
  const from = sb.vms.find((v) => v.name === p.from)!
  const target = p.to === 'host' ? sb.host : sb.vms.find((v) => v.name === p.to)!
  const addr = p.family === 6 ? target.ipv6 : target.ipv4
  if (p.what === 'tcp') {
    const r = sb.exec(from.netns, 'nc', [`-${p.family}`, '-v', '-z', '-w', '1', addr, String(p.port)])
    return r.ok ? 'allowed' : /Connection refused/.test(r.output) ? 'refused' : 'blocked'
  }
  return reached(sb, from, p, addr) ? 'allowed' : 'blocked'
}

function reached(sb: Sandbox, from: Sandbox['vms'][number], p: Probe, addr: string): boolean {
  if (p.what === 'spoofed-ping') {
    // The forged address really is on the VM's interface, so the kernel sends the packet and only
    // the firewall can stop it.
    sb.exec(from.netns, 'ip', ['addr', 'add', `${SPOOFED_SOURCE}/24`, 'dev', 'eth0'])
    try {
      return sb.exec(from.netns, 'ping', ['-c', '1', '-W', '1', '-I', SPOOFED_SOURCE, addr]).ok
    } finally {
      sb.exec(from.netns, 'ip', ['addr', 'del', `${SPOOFED_SOURCE}/24`, 'dev', 'eth0'])
    }
  }
  return sb.exec(from.netns, 'ping', [`-${p.family}`, '-c', '1', '-W', '1', addr]).ok
}

export async function runDemo(opts: { keep: boolean; json: boolean; policyFile?: string }): Promise<number> {
  if (process.getuid?.() !== 0) {
    console.error('nftables-node demo: needs root — it creates network namespaces, veth pairs and a bridge (nothing outside them is touched). Try: sudo npx nftables-node demo')
    return EXIT.PERMISSION
  }
  const policy = JSON.parse(readFileSync(opts.policyFile ?? DEMO_POLICY, 'utf8')) as DemoPolicy
  const names = Object.keys(policy.vms)
  const log = (s: string) => !opts.json && console.log(s)
  log(`building the sandbox: host namespace with bridge br0 (10.99.0.1/24, fd99::1/64) and VMs ${names.join(', ')}`)
  const sb = createSandbox('nftdemo', names)
  const cleanup = () => {
    if (!opts.keep) sb.destroy()
  }
  const onSignal = () => {
    sb.destroy()
    process.exit(130)
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  const nft = new Nft({ netns: sb.host.netns })
  try {
    // logDrops: every drop path also logs (rate-limited) to an nfnetlink_log group that blocked() reads.
    const fw = new VmFirewall(nft, { logDrops: true })
    const caps = await fw.capabilities()
    log(`kernel: bridge conntrack ${caps.bridgeConntrack ? 'yes' : 'no'}, bridge reject ${caps.bridgeReject ? 'yes' : 'no'}`)
    await fw.init()
    const specs: VmSpec[] = sb.vms.map((vm) => ({
      vmId: vm.name,
      tap: vm.tap,
      mac: vm.mac,
      ipv4: [vm.ipv4],
      ipv6: [vm.ipv6],
      defaultAction: policy.vms[vm.name]!.defaultAction,
      departmentRules: policy.vms[vm.name]!.department ? policy.departmentRules : [],
      rules: policy.vms[vm.name]!.rules,
    }))
    const results = []
    for (const spec of specs) results.push(await fw.applyVm(spec))
    const blocked: BlockedEvent[] = []
    const drops = fw.blocked()
    drops.on('blocked', (e) => blocked.push(e))
    for (const vm of sb.vms) for (const port of [22, 23, 80, 8080]) sb.listen(vm.netns, port)
    sb.listen(sb.host.netns, 23)
    await new Promise((r) => setTimeout(r, 300)) // listeners up
    log('\n== compiled ruleset (table bridge infinization) ==')
    log((await nft.run('list table bridge infinization')).trimEnd())
    for (const r of results) for (const d of r.degradations) log(`note: ${r.vmId}${d.ruleId ? ` rule ${d.ruleId}` : ''}: ${d.message}`)
    const rows = policy.probes.map((p) => {
      const expect: Outcome = p.expect === 'refused' && !caps.bridgeReject ? 'blocked' : p.expect
      const got = probe(sb, p)
      return { ...p, expect, got, ok: got === expect }
    })
    await new Promise((r) => setTimeout(r, 200)) // the last probes' log records
    await drops.stop()
    // Drift, live: someone flushes a VM's chain with nft; watch() reports it and repairs it.
    const watch = fw.watch({ repair: true })
    const drift: WatchEvent[] = []
    watch.on('event', (e) => drift.push(e))
    const repaired = new Promise<void>((resolve) => watch.once('repaired', () => resolve()))
    const victim = results[0]!
    const flushed = sb.exec(sb.host.netns, 'nft', ['flush', 'chain', 'bridge', 'infinization', victim.chains.out])
    await Promise.race([repaired, new Promise((r) => setTimeout(r, 3000))])
    await watch.stop()
    const verified = await fw.verify()
    if (opts.json) printJson({ capabilities: caps, results, probes: rows, blocked, drift, verified: verified.ok })
    else {
      log('\n== probes (real packets) ==')
      log(
        table(
          ['FROM', 'TO', 'PROBE', 'EXPECTED', 'GOT', '', 'WHY'],
          rows.map((r) => [r.from, r.to, `${r.what}${r.port ? ` ${r.port}` : ''} v${r.family}`, r.expect, r.got, r.ok ? 'ok' : 'MISMATCH', r.why]),
        ),
      )
      log('\n== blocked-traffic log (logDrops + blocked(), read from nfnetlink_log) ==')
      for (const e of blocked.slice(0, 30)) log(blockedLine(e))
      if (blocked.length > 30) log(`... ${blocked.length - 30} more`)
      log(`\n== live drift: nft flush chain bridge infinization ${victim.chains.out} (VM ${victim.vmId}) ==`)
      if (!flushed.ok) log(`(nft failed: ${flushed.output.trim()})`)
      for (const e of drift) log(driftLine(e))
      log(verified.ok ? 'verify after the repair: no drift' : 'verify after the repair: DRIFT REMAINS')
      const bad = rows.filter((r) => !r.ok).length
      log(bad === 0 ? `\nall ${rows.length} probes behaved as expected` : `\n${bad} of ${rows.length} probes did not behave as expected`)
      if (opts.keep) log(`\nsandbox kept: ip netns list | grep nftdemo; remove with: for n in $(ip netns list | awk '/^nftdemo/{print $1}'); do ip netns del $n; done`)
    }
    const driftOk = verified.ok && drift.some((e) => e.type === 'drift') && drift.some((e) => e.type === 'repaired')
    return rows.every((r) => r.ok) && driftOk ? EXIT.OK : EXIT.FAILED
  } finally {
    nft.close()
    cleanup()
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
}
