// Data plane: iperf3 TCP (and, in full mode, 64-byte UDP) between two namespaces across a bridge in a
// third one, with the bridge namespace holding: nothing; the per-VM ruleset with vmap dispatch (raw
// equivalent, and VmFirewall's own when available); the same ruleset with a linear jump list.
// The two bridge ports are named as the taps of two VMs in the middle of the ruleset, so their packets
// walk those VMs' full chains (no rule matches the test traffic; the last rule accepts).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { Nft } from '../../ts/index.js'
import { batch, deleteTableCmd, fullRulesetCmds, vmNames, vmRuleFields } from './gen.js'
import { counterSum, defaultChain, deleteLeverTablesText, leverRulesetText, leverSpecs, specLabel, spoofChains, tableOf, type Identities, type LeverVariant } from './levers-gen.js'
import { defaultOnly, dhcpBehindPortSet, groupedByProtocol, guardForVmPortsOnly, hooksOnly, withoutGuard } from './dataplane-anatomy.js'
import { createNetns, deleteNetns, killChild, sh, trackChild } from './netns.js'
import { FW_TABLE } from './vmfirewall.js'
import { median, pairedRatio, rotate } from './stats.js'
import type { DataplaneResult } from './types.js'
import type { Ctx } from './workloads.js'

const TABLE = 'bench_dp'
const A = '10.99.0.1'
const B = '10.99.0.2'
const SPOOF = '10.99.0.77'
const MAC_A = '02:99:00:00:00:01'
const MAC_B = '02:99:00:00:00:02'

export interface DataplaneOptions {
  vms: number
  rulesPerVm: number
  seconds: number
  rounds: number
  udp: boolean
  /** Instead of the raw/VmFirewall/linear rulesets: the lever variants of issue 15 (A, B, C with these shard counts). */
  levers?: number[]
  /** With `levers`: the one-table variants besides A (default all). */
  leverVariants?: LeverVariant[]
  /** Instead: VmFirewall's table taken apart and reshaped (dataplane-anatomy.ts); needs the firewall. */
  anatomy?: boolean
  /** With `anatomy`: the sending port is not a VM's tap but an uplink (traffic from outside to a VM). */
  uplink?: boolean
}

/** The bridge port of the sending namespace when it stands for the uplink rather than a VM. */
const UPLINK = 'uplink0'

/** A TCP connection attempt from `ns` to B's `port`, where nothing listens: refused (B answered) or not (dropped). */
function refused(ns: string, port: number): boolean {
  const r = spawnSync('ip', ['netns', 'exec', ns, 'nc', '-z', '-v', '-w', '1', B, String(port)], { encoding: 'utf8' })
  return /refused/i.test(r.stderr)
}

function ping(ns: string, from: string): boolean {
  try {
    sh('ip', ['netns', 'exec', ns, 'ping', '-n', '-q', '-c', '2', '-i', '0.2', '-W', '1', '-I', from, B])
    return true
  } catch {
    return false
  }
}

function iperf(ns: string, args: string[], timeoutMs: number): Promise<Record<string, any>> {
  return new Promise((resolve, reject) => {
    const c = spawn('ip', ['netns', 'exec', ns, 'iperf3', '-c', B, '-B', A, '-J', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    trackChild(c)
    let out = ''
    let err = ''
    c.stdout.on('data', (d) => (out += d))
    c.stderr.on('data', (d) => (err += d))
    const timer = setTimeout(() => killChild(c), timeoutMs)
    c.on('close', () => {
      clearTimeout(timer)
      try {
        const j = JSON.parse(out) as Record<string, any>
        if (j.error) reject(new Error(`iperf3: ${j.error}`))
        else resolve(j)
      } catch {
        reject(new Error(`iperf3 output not JSON: ${(out + err).slice(0, 500)}`))
      }
    })
  })
}

async function retry<T>(f: () => Promise<T>, tries = 3): Promise<T> {
  let last: unknown
  for (let i = 0; i < tries; i++) {
    try {
      return await f()
    } catch (e) {
      last = e
      await new Promise((r) => setTimeout(r, 300))
    }
  }
  throw last
}

export async function dataplaneWorkload(ctx: Ctx, o: DataplaneOptions): Promise<DataplaneResult> {
  try {
    sh('iperf3', ['--version'])
  } catch {
    throw new Error('iperf3 is not installed')
  }
  const br = createNetns('dpbr')
  const h1 = createNetns('dph1')
  const h2 = createNetns('dph2')
  let server: ChildProcess | undefined
  const nft = new Nft({ netns: br })
  const notes: string[] = []
  try {
    const ia = Math.floor(o.vms / 2)
    const ib = Math.min(ia + 1, o.vms - 1)
    const va = vmNames(ia)
    const vb = vmNames(ib)
    sh('ip', ['-n', br, 'link', 'add', 'br0', 'type', 'bridge'])
    sh('ip', ['-n', br, 'link', 'set', 'br0', 'up'])
    for (const [port, host, addr] of [
      [o.uplink ? UPLINK : va.tap, h1, A],
      [vb.tap, h2, B],
    ] as const) {
      sh('ip', ['-n', br, 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', host])
      sh('ip', ['-n', br, 'link', 'set', port, 'master', 'br0'])
      sh('ip', ['-n', br, 'link', 'set', port, 'up'])
      sh('ip', ['-n', host, 'link', 'set', 'eth0', 'address', host === h1 ? MAC_A : MAC_B])
      sh('ip', ['-n', host, 'addr', 'add', `${addr}/24`, 'dev', 'eth0'])
      sh('ip', ['-n', host, 'link', 'set', 'eth0', 'up'])
    }
    server = spawn('ip', ['netns', 'exec', h2, 'iperf3', '-s', '-B', B], { stdio: 'ignore' })
    trackChild(server)
    await new Promise((r) => setTimeout(r, 500))

    const configs: Record<string, { setup: () => Promise<void>; teardown: () => Promise<void>; verify?: () => Promise<void> }> = {
      empty: { setup: async () => {}, teardown: async () => {} },
    }
    const verifyDefault = async (table: string, label: string, chain = va.out) => {
      const pk = counterSum(await nft.run(`list chain bridge ${table} ${chain}`), 'comment "default"')
      notes.push(pk > 0 ? `verified (${label}): ${pk} packets reached the default rule of ${chain} (the test traffic walks the VM's rules)` : `WARNING (${label}): the test traffic did not reach the default rule of ${chain}`)
    }
    // Production VMs are known by MAC and address: their frames pass each identity check at its first lookup.
    const identities = { [ia]: { mac: MAC_A, ipv4: A }, [ib]: { mac: MAC_B, ipv4: B } }
    const vmChainsOfTaps = async (): Promise<string[]> => {
      const listed = (await nft.run(`list map bridge ${FW_TABLE} from_vm`)) + (await nft.run(`list map bridge ${FW_TABLE} to_vm`))
      return [va.tap, vb.tap].flatMap((tap) => [...listed.matchAll(new RegExp(`"${tap}" : jump (\\w+)`, 'g'))].map((m) => m[1]!))
    }
    const listChain = (chain: string) => nft.run(`list chain bridge ${FW_TABLE} ${chain}`)
    if (o.anatomy) {
      if (!ctx.firewall) throw new Error('the data-plane anatomy needs VmFirewall (ts/firewall)')
      const fw = ctx.firewall
      let h: { clear(): Promise<void> } | undefined
      const reshaped = (ids: boolean, reshape?: () => Promise<string | undefined>, label = '') => ({
        setup: async () => {
          h = await fw.loadForDataplane(br, o.vms, o.rulesPerVm, { [ia]: va.tap, [ib]: vb.tap }, ids ? identities : {})
          const text = reshape && (await reshape())
          if (reshape && text === undefined) throw new Error(`${label}: the table does not have the form this reshaping expects`)
          if (text) await nft.run(text)
        },
        teardown: async () => void (await h?.clear()),
        // The reshaped table still carries the test traffic through the sender's chain to its default rule
        // (except with the hooks empty: nothing is dispatched).
        verify: async () => {
          if (label === 'hooks') return
          // The sender's out chain, or with an uplink sender the receiver's in chain.
          const chain = o.uplink ? (await vmChainsOfTaps()).at(-1) : (await vmChainsOfTaps())[0]
          const pk = counterSum(await listChain(chain!), '"d:')
          notes.push(pk > 0 ? `verified (${label || 'as loaded'}${ids ? ', identified' : ''}): ${pk} packets reached the default rule of ${chain}` : `WARNING (${label}): the test traffic did not reach the default rule of ${chain}`)
        },
      })
      const eachVmChain = (f: (chain: string, listing: string) => string | undefined) => async () => {
        const parts: (string | undefined)[] = []
        for (const chain of await vmChainsOfTaps()) parts.push(f(chain, await listChain(chain)))
        return parts.some((p) => p === undefined) ? undefined : parts.join('\n')
      }
      const guardForVms = async () => guardForVmPortsOnly(FW_TABLE, { prerouting: await listChain('prerouting'), postrouting: await listChain('postrouting') })
      if (o.uplink) {
        // Outside to a VM: the VMs identified as in production; the sender's port is no VM's.
        configs['VmFirewall, identified VMs'] = reshaped(true)
        configs['no guard (dispatch + VM chains)'] = reshaped(true, async () => withoutGuard(FW_TABLE), 'no guard')
        configs['prototype: guard for VM ports only'] = reshaped(true, guardForVms, 'guard for VM ports only')
      } else {
        configs['VmFirewall'] = reshaped(false)
        configs['VmFirewall, identified VMs'] = reshaped(true)
        configs['hooks only (base chains empty)'] = reshaped(false, async () => hooksOnly(FW_TABLE), 'hooks')
        configs['no guard (dispatch + VM chains)'] = reshaped(false, async () => withoutGuard(FW_TABLE), 'no guard')
        configs['no user rules (guard + dispatch + defaults)'] = reshaped(false, eachVmChain((c, l) => defaultOnly(FW_TABLE, c, l)), 'no user rules')
        configs['prototype: user rules by L4 protocol'] = reshaped(false, eachVmChain((c, l) => groupedByProtocol(FW_TABLE, c, l)), 'by L4 protocol')
        configs['prototype: DHCP checks behind a port set'] = reshaped(
          false,
          async () => dhcpBehindPortSet(FW_TABLE, { guardIp: await listChain('guard_ip'), guardIp6: await listChain('guard_ip6'), postrouting: await listChain('postrouting') }),
          'DHCP behind a port set',
        )
        configs['prototype: guard for VM ports only'] = reshaped(false, guardForVms, 'guard for VM ports only')
      }
    } else if (o.levers) {
      // The two VMs' identities are the hosts' real addresses, so their traffic passes the identity checks.
      const ids: Identities = { [ia]: { mac: MAC_A, ipv4: A, ipv6: '2001:db8:99::1' }, [ib]: { mac: MAC_B, ipv4: B, ipv6: '2001:db8:99::2' } }
      for (const spec of leverSpecs(o.vms, o.levers, o.leverVariants)) {
        const text = leverRulesetText(spec, o.vms, ids)
        const label = specLabel(spec)
        configs[label] = {
          setup: async () => void (await nft.run(text)),
          teardown: async () => void (await nft.run(deleteLeverTablesText(spec))),
          verify: async () => {
            await verifyDefault(tableOf(spec, ia), label, defaultChain(spec, ia))
            // The VMs' rules hold: gen.ts's third rule drops TCP to a port range (both VMs, both directions); the
            // port below it is refused by B itself.
            const { port } = vmRuleFields(2)
            const dropped = !refused(h1, port + 1)
            const open = refused(h1, port - 1)
            notes.push(
              dropped && open
                ? `verified (${label}): TCP to B:${port + 1} is dropped by the VMs' rule \`tcp dport ${port}-${port + 5} drop\`, TCP to B:${port - 1} reaches B (refused)`
                : `WARNING (${label}): VM rule check: TCP to B:${port + 1} ${dropped ? 'dropped' : 'reached B'}, to B:${port - 1} ${open ? 'reached B' : 'dropped'}`,
            )
            // Identity checks work: the real address passes, a second (spoofed) address of the same host is dropped:
            // first its ARP (arp-ip-spoof), then, with the peer's MAC as a static neighbour, its IPv4 packets (ip-spoof).
            const legit = ping(h1, A)
            sh('ip', ['-n', h1, 'addr', 'add', `${SPOOF}/24`, 'dev', 'eth0'])
            let spoofed: boolean
            let spoofedIp: boolean
            try {
              spoofed = ping(h1, SPOOF)
              sh('ip', ['-n', h1, 'neigh', 'replace', B, 'lladdr', MAC_B, 'dev', 'eth0', 'nud', 'permanent'])
              spoofedIp = ping(h1, SPOOF)
            } finally {
              sh('ip', ['-n', h1, 'neigh', 'del', B, 'dev', 'eth0'])
              sh('ip', ['-n', h1, 'addr', 'del', `${SPOOF}/24`, 'dev', 'eth0'])
            }
            let listing = ''
            for (const chain of spoofChains(spec, ia)) listing += await nft.run(`list chain bridge ${tableOf(spec, ia)} ${chain}`)
            const arpDrops = counterSum(listing, 'arp-ip-spoof"')
            const ipDrops = counterSum(listing, '"b:ip-spoof"')
            notes.push(
              legit && !spoofed && !spoofedIp && ipDrops > 0
                ? `verified (${label}): ping from ${A} passes, from ${SPOOF} (not the VM's address) is dropped by ip-spoof (${ipDrops} packets; ${arpDrops} of its ARP by arp-ip-spoof: the peer's MAC is already in the neighbour cache), also with the peer as a static neighbour`
                : `WARNING (${label}): identity check: ping from ${A} ${legit ? 'passed' : 'failed'}, from ${SPOOF} ${spoofed ? 'passed' : 'failed'} (ARP) / ${spoofedIp ? 'passed' : 'failed'} (static neighbour), arp-ip-spoof drops ${arpDrops}, ip-spoof drops ${ipDrops}`,
            )
          },
        }
      }
    } else {
      const vmap = batch(fullRulesetCmds(TABLE, o.vms, o.rulesPerVm, 'vmap')).text
      const linear = batch(fullRulesetCmds(TABLE, o.vms, o.rulesPerVm, 'linear')).text
      configs['vmap (raw)'] = {
        setup: async () => void (await nft.run(vmap)),
        teardown: async () => void (await nft.run(deleteTableCmd(TABLE).text)),
        verify: () => verifyDefault(TABLE, 'vmap (raw)'),
      }
      configs['linear jumps'] = { setup: async () => void (await nft.run(linear)), teardown: async () => void (await nft.run(deleteTableCmd(TABLE).text)) }
      if (ctx.firewall) {
        let h: { clear(): Promise<void> } | undefined
        configs['vmap (VmFirewall)'] = {
          setup: async () => {
            h = await ctx.firewall!.loadForDataplane(br, o.vms, o.rulesPerVm, { [ia]: va.tap, [ib]: vb.tap })
          },
          teardown: async () => {
            await h?.clear()
          },
        }
        configs['vmap (VmFirewall, identified VMs)'] = {
          setup: async () => {
            h = await ctx.firewall!.loadForDataplane(br, o.vms, o.rulesPerVm, { [ia]: va.tap, [ib]: vb.tap }, identities)
          },
          teardown: async () => {
            await h?.clear()
          },
        }
      }
    }
    const names = Object.keys(configs)
    const tcp: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]))
    const udp: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]))
    // Warm-up (ARP, TCP slow start paths), untimed.
    await retry(() => iperf(h1, ['-t', '1'], 20_000))
    const verified = new Set<string>()
    for (let r = 0; r < o.rounds; r++) {
      for (const name of rotate(names, r)) {
        const c = configs[name]!
        await c.setup()
        try {
          const j = await retry(() => iperf(h1, ['-t', String(o.seconds)], (o.seconds + 15) * 1000))
          tcp[name]!.push(Number(j.end?.sum_received?.bits_per_second) / 1e9)
          if (o.udp) {
            const us = Math.max(1, Math.floor(o.seconds / 2))
            const u = await retry(() => iperf(h1, ['-u', '-l', '64', '-b', '0', '-t', String(us)], (us + 15) * 1000))
            const s = u.end?.sum ?? {}
            udp[name]!.push((Number(s.packets) - Number(s.lost_packets ?? 0)) / Number(s.seconds) / 1e3)
          }
          if (c.verify && !verified.has(name)) {
            verified.add(name)
            await c.verify()
          }
        } finally {
          await c.teardown()
        }
      }
    }
    if (!o.uplink) notes.push(`bridge ports are the taps of VMs #${ia} and #${ib} of ${o.vms}${o.levers || o.anatomy ? '' : ` (linear list: ~${ia} non-matching jump rules before theirs)`}`)
    if (o.levers) notes.push(`C K shards: VM i in table i mod K, so the two VMs sit in different tables (K > 1) and every frame passes all K tables' prerouting and postrouting chains; tables without the frame's port leave at their first rule (\`iifname != @vm_taps accept\`)`)
    if (o.anatomy && o.uplink) {
      notes.push(`the sending port is ${UPLINK}, no VM's tap (the uplink, or the host): traffic from outside to VM #${ib}, identified by its host's MAC and IPv4; the rows reshape VmFirewall's table by nft text after loading it (bench/lib/dataplane-anatomy.ts)`)
    } else if (o.anatomy) {
      notes.push('VmFirewall: its table as the bench loads it (the VMs have no MAC or address: every identity check of the guard also looks the tap up in its set); identified VMs: the two test VMs with their hosts\' MAC and IPv4 (a production VM: each check stops at its identity lookup)')
      notes.push('the other rows reshape that table by nft text after loading it (bench/lib/dataplane-anatomy.ts): pieces removed to show what each costs, or two prototypes of a cheaper layout; the VMs of the prototypes have no identity, as in the first row')
    }
    notes.push('bridge conntrack is not used (stateless rules); iperf3 server bound to the namespace address only')
    const res: DataplaneResult = {
      vms: o.vms,
      rulesPerVm: o.rulesPerVm,
      seconds: o.seconds,
      rounds: o.rounds,
      // Ratios are paired: config / empty within the same round (median over rounds), like the control plane.
      configs: Object.fromEntries(names.map((n) => [n, { samples: tcp[n]!, medianGbps: median(tcp[n]!), ratioToEmpty: n === 'empty' ? 1 : pairedRatio(tcp[n]!, tcp.empty!) }])),
      notes,
    }
    if (o.udp) {
      res.udp = Object.fromEntries(names.map((n) => [n, { samples: udp[n]!, medianKpps: median(udp[n]!), ratioToEmpty: n === 'empty' ? 1 : pairedRatio(udp[n]!, udp.empty!) }]))
    }
    return res
  } finally {
    if (server) killChild(server)
    nft.close()
    await new Promise((r) => setTimeout(r, 100))
    deleteNetns(h1)
    deleteNetns(h2)
    deleteNetns(br)
  }
}
