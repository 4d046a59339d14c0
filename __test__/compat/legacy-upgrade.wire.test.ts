// In-place upgrade from Infinization's old layout (same table `bridge infinization`): the old service's
// `forward` base chain with its DHCP rules and per-VM jumps, one `vm_<24hex>` chain per VM, written here
// with the CLI exactly as the old service wrote them. VMs keep running on it throughout; each moves to the
// new layout in the same transaction as its first apply. A prober keeps sending what the policy forbids
// from the first old rule to the end: it must never get through.
import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { NftablesJson } from '../../ts/index.js'
import { NftablesService, generateVMChainName, type FirewallRuleInput } from '../../ts/compat/index.js'
import { writesDuring as countWritesDuring } from '../support/nft-writes.js'
import { buildWorld, type Vm, type World } from '../support/world.js'

let w: World
let svc: NftablesService
let A: Vm, B: Vm, C: Vm
const T = 'infinization'
beforeAll(async () => {
  w = await buildWorld({ vms: 3, subnet: 73 })
  ;[A, B, C] = w.vms as [Vm, Vm, Vm]
})
afterAll(async () => {
  svc?.close()
  await w?.destroy()
})

const passes = async (probe: () => Promise<boolean>): Promise<boolean> => (await probe()) || (await probe())
const cli = (script: string[]): void => {
  w.host.ns.exec('nft', ['-f', '-'], { input: script.join('\n') + '\n' })
}
const chains = (): string[] =>
  (JSON.parse(w.hostNft(['-j', 'list', 'chains', 'bridge'])) as NftablesJson).nftables
    .filter((o) => 'chain' in o)
    .map((o) => (o.chain as { name: string }).name)
const forwardRules = (): string => {
  try {
    return w.hostNft(['list', 'chain', 'bridge', T, 'forward'])
  } catch {
    return ''
  }
}
const writesDuring = (fn: () => Promise<unknown>): Promise<number> => countWritesDuring(w.nft, fn)

/** The old service's table: its initialize() (forward + DHCP), then createVMChain + applyRules per VM. */
function oldLayout(vms: { vm: Vm; body: string[]; terminal: 'drop' | 'accept'; attached?: boolean }[], withBase = true): void {
  const lines: string[] = []
  if (withBase) {
    lines.push(
      `add table bridge ${T}`,
      `add chain bridge ${T} forward { type filter hook forward priority 0; policy accept; }`,
      `insert rule bridge ${T} forward iifname "vnet-*" udp sport 68 udp dport 67 accept comment "infinization-dhcp-client-to-server"`,
      `insert rule bridge ${T} forward oifname "vnet-*" udp sport 67 udp dport 68 accept comment "infinization-dhcp-server-to-client"`,
    )
  }
  for (const { vm, body, terminal, attached = true } of vms) {
    const c = generateVMChainName(vm.vmId)
    lines.push(`add chain bridge ${T} ${c}`)
    if (attached) lines.push(`add rule bridge ${T} forward oifname "${vm.tap}" jump ${c}`, `add rule bridge ${T} forward iifname "${vm.tap}" jump ${c}`)
    lines.push(`add chain bridge ${T} ${c}`, `flush chain bridge ${T} ${c}`)
    for (const b of body) lines.push(`add rule bridge ${T} ${c} ${b}`)
    lines.push(`add rule bridge ${T} ${c} ${terminal} comment "infinization-default-${terminal}"`)
  }
  cli(lines)
}

// Connects to addr:port every ~20 ms (100 ms timeout each: a veth answers in well under a millisecond)
// until stdin closes; prints "ready" once running, then attempts and successes.
const PROBER = [
  'import socket,sys,select,json,time',
  'a,p,gap=sys.argv[1],int(sys.argv[2]),float(sys.argv[3])',
  'n=ok=0',
  'print("ready",flush=True)',
  'while not select.select([sys.stdin],[],[],0)[0]:',
  '  s=socket.socket(); s.settimeout(0.1); n+=1',
  '  try:',
  '    s.connect((a,p)); ok+=1',
  '  except OSError:',
  '    pass',
  '  s.close(); time.sleep(gap)',
  'print(json.dumps({"sent":n,"leaks":ok}),flush=True)',
].join('\n')

interface Prober {
  ready: Promise<void>
  stop: () => Promise<{ sent: number; leaks: number }>
}
/** A process in `from` trying `to:port` all along (every `gap` s); stop() returns how many tries got through.
 *  Every accepted try forks the listener's greeter, so probes of an open port go slower: under emulation (the
 *  distro-kernel runner) a fast stream of forks starves the other probes of the test. */
function prober(from: Vm, to: string, port: number, gap = 0.02): Prober {
  const child = spawn('ip', ['netns', 'exec', from.ns.name, 'python3', '-c', PROBER, to, String(port), String(gap)], { stdio: ['pipe', 'pipe', 'inherit'] })
  let out = ''
  let onReady: () => void = () => undefined
  const ready = new Promise<void>((resolve) => (onReady = resolve))
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString()
    if (out.startsWith('ready\n')) onReady()
  })
  const done = new Promise<void>((resolve) => child.on('close', () => resolve()))
  return {
    ready,
    stop: async () => {
      child.stdin.end('x\n')
      await done
      return JSON.parse(out.trim().split('\n').at(-1)!) as { sent: number; leaks: number }
    },
  }
}

const web: FirewallRuleInput = { id: 'web', name: 'web in', action: 'ACCEPT', direction: 'IN', protocol: 'tcp', dstPortStart: 80, priority: 100 }
const noSsh: FirewallRuleInput = { id: 'no-ssh', name: 'no ssh', action: 'DROP', direction: 'IN', protocol: 'tcp', dstPortStart: 22, priority: 100 }

describe('in-place upgrade from the old layout', () => {
  it('running VMs stay filtered at every moment; each moves with its first apply, atomically; the last takes forward with it', async () => {
    // A: BLOCK_ALL with ARP and web allowed in (stateless replies: this kernel has no bridge conntrack).
    // C: ALLOW_ALL with ssh dropped. B: a client, not managed.
    oldLayout([
      { vm: A, body: ['ether type arp accept comment "arp"', `oifname "${A.tap}" tcp dport 80 accept comment "web in"`, `iifname "${A.tap}" tcp sport 80 accept comment "web replies"`], terminal: 'drop' },
      { vm: C, body: [`oifname "${C.tap}" tcp dport 22 drop comment "no ssh"`], terminal: 'accept' },
    ])
    expect(await passes(() => w.tcp(B, A.ipv4, 80))).toBe(true)
    expect(await passes(() => w.tcp(B, C.ipv4, 80))).toBe(true)
    const sshToA = prober(B, A.ipv4, 22)
    const sshToC = prober(B, C.ipv4, 22)
    const webToA = prober(B, A.ipv4, 80, 0.1) // the prober itself works: allowed traffic gets through all along
    await Promise.all([sshToA.ready, sshToC.ready, webToA.ready])
    try {
      // Infinization restarts on the new package: initialize() recognises the old layout and keeps it.
      svc = new NftablesService({ nft: w.nft, bridgeConntrackMode: 'degrade' })
      await svc.initialize()
      const status = await svc.migrationStatus()
      expect(status).toMatchObject({ complete: false, forwardChain: true, dhcpRules: 2, foreignRules: 0 })
      expect(status.legacyVms).toEqual(
        [
          { chainName: generateVMChainName(A.vmId), chainExists: true, taps: [A.tap], attached: true, defaultAction: 'drop' },
          { chainName: generateVMChainName(C.vmId), chainExists: true, taps: [C.tap], attached: true, defaultAction: 'accept' },
        ].sort((x, y) => x.chainName.localeCompare(y.chainName)),
      )
      const v = await svc.verify()
      expect(v.ok).toBe(false)
      expect(v.problems.some((p) => p.includes(generateVMChainName(A.vmId)) && p.includes('not migrated'))).toBe(true)
      expect(await svc.listChains()).toEqual(expect.arrayContaining(['forward', 'prerouting', 'postrouting', generateVMChainName(A.vmId), generateVMChainName(C.vmId)]))
      expect(await svc.chainExists(generateVMChainName(A.vmId))).toBe(true)
      expect(await passes(() => w.tcp(B, A.ipv4, 80))).toBe(true)

      // A rule update that would widen access is refused: A keeps its old chain.
      const refused = await svc.applyRules(A.vmId, A.tap, [], [{ ...noSsh, srcIpAddr: '10.73.0.0', srcIpMask: '255.0.255.0' }, web], 'accept')
      expect(refused).toMatchObject({ applied: false, notApplied: { kept: 'previous' } })
      expect(chains()).toContain(generateVMChainName(A.vmId))

      // A is restarted by Infinization's start path: ensure, attach, apply-if-changed.
      await svc.ensureVMChain(A.vmId) // new chains (closed, not dispatched); the old chain still filters
      expect(await passes(() => w.tcp(B, A.ipv4, 80))).toBe(true)
      await svc.attachJumpRules(A.vmId, A.tap) // still on the old chain: its policy stays in force
      expect(await passes(() => w.tcp(B, A.ipv4, 80))).toBe(true)
      let moved!: Awaited<ReturnType<NftablesService['applyRulesIfChanged']>>
      expect(
        await writesDuring(async () => {
          moved = await svc.applyRulesIfChanged(A.vmId, A.tap, [], [web], 'drop')
        }),
      ).toBe(1) // the new chains, the dispatch, the old jumps and chain: one transaction
      expect(moved).toMatchObject({ changed: true, result: { applied: true, attached: true } })
      expect(chains()).not.toContain(generateVMChainName(A.vmId))
      expect(forwardRules()).not.toContain(A.tap)
      expect(forwardRules()).toContain(C.tap)
      expect(await passes(() => w.tcp(B, A.ipv4, 80))).toBe(true)
      expect(await w.ping(w.host, A.ipv4)).toBe(false) // the new layout also filters host traffic
      expect(await svc.applyRulesIfChanged(A.vmId, A.tap, [], [web], 'drop')).toEqual({ changed: false })

      // C gets a rule update from the backend while running (applyRules): it moves, and was the last one.
      expect(
        await writesDuring(async () => {
          expect((await svc.applyRules(C.vmId, C.tap, [], [noSsh], 'accept')).applied).toBe(true)
        }),
      ).toBe(1)
      expect(chains()).not.toContain('forward')
      expect(chains()).not.toContain(generateVMChainName(C.vmId))
      expect(await passes(() => w.tcp(B, C.ipv4, 80))).toBe(true)
      expect(await svc.migrationStatus()).toEqual({ complete: true, forwardChain: false, dhcpRules: 0, foreignRules: 0, legacyVms: [] })
      expect((await svc.verify()).ok).toBe(true)
    } finally {
      const a = await sshToA.stop()
      const c = await sshToC.stop()
      const web80 = await webToA.stop()
      expect(web80.leaks).toBeGreaterThan(web80.sent * 0.8)
      expect(a.sent).toBeGreaterThan(10)
      expect(c.sent).toBeGreaterThan(10)
      expect(web80.sent).toBeGreaterThan(5)
      expect([a.leaks, c.leaks]).toEqual([0, 0])
    }
    await svc.removeVMChain(A.vmId)
    await svc.removeVMChain(C.vmId)
  })

  it('stop, destroy and orphan cleanup reach old-layout VMs; initialize() removes a forward chain with no VM left', async () => {
    oldLayout(
      [
        { vm: B, body: ['ether type arp accept comment "arp"'], terminal: 'drop' },
        { vm: C, body: [], terminal: 'drop', attached: false },
      ],
      true,
    )
    expect(await w.tcp(A, B.ipv4, 80)).toBe(false)
    // Stop (HealthMonitor / EventHandler): jumps go, the old chain stays, as Infinization did.
    await svc.detachJumpRules(B.vmId)
    expect(forwardRules()).not.toContain(B.tap)
    expect(chains()).toContain(generateVMChainName(B.vmId))
    expect((await svc.migrationStatus()).legacyVms.find((v) => v.chainName === generateVMChainName(B.vmId))).toMatchObject({ attached: false, taps: [] })
    // Orphan cleanup by name (listChains -> removeVMChainByName) removes old chains.
    await svc.removeVMChainByName(generateVMChainName(C.vmId))
    expect(chains()).not.toContain(generateVMChainName(C.vmId))
    // Destroy by id; B was the last old VM: forward goes in the same transaction.
    expect(chains()).toContain('forward')
    await svc.removeVMChain(B.vmId)
    expect(chains()).not.toContain(generateVMChainName(B.vmId))
    expect(chains()).not.toContain('forward')
    // A forward chain with only its DHCP rules (the old boot file restored it): removed by initialize().
    oldLayout([], true)
    expect(chains()).toContain('forward')
    await svc.initialize()
    expect(chains()).not.toContain('forward')
    expect((await svc.migrationStatus()).complete).toBe(true)
    expect(await passes(() => w.tcp(A, B.ipv4, 80))).toBe(true)
  })
})

describe('the old boot file and flushVMRules during the upgrade', () => {
  it('with persistence on, initialize() rewrites the boot file; restoring it mid-upgrade brings the mixed table back, still filtered', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cmpt-up-'))
    const file = join(dir, 'infinization.nft')
    const persisted = new NftablesService({ nft: w.nft, table: 'upg', bridgeConntrackMode: 'degrade', enablePersistence: true, persistencePath: file })
    try {
      // The old service's dump (what its oneshot restores at boot): B on the old layout, default drop.
      const old = (table: string) => {
        const c = generateVMChainName(B.vmId)
        cli([
          `add table bridge ${table}`,
          `add chain bridge ${table} forward { type filter hook forward priority 0; policy accept; }`,
          `add rule bridge ${table} forward iifname "vnet-*" udp sport 68 udp dport 67 accept comment "infinization-dhcp-client-to-server"`,
          `add chain bridge ${table} ${c}`,
          `add rule bridge ${table} forward oifname "${B.tap}" jump ${c}`,
          `add rule bridge ${table} forward iifname "${B.tap}" jump ${c}`,
          `add rule bridge ${table} ${c} ether type arp accept comment "arp"`,
          `add rule bridge ${table} ${c} drop comment "infinization-default-drop"`,
        ])
      }
      old('upg')
      expect(await w.tcp(A, B.ipv4, 80)).toBe(false)
      await persisted.initialize()
      expect(persisted.lastPersistError).toBeUndefined()
      const saved = readFileSync(file, 'utf8')
      expect(saved).toContain(`chain ${generateVMChainName(B.vmId)} {`)
      expect(saved).toContain('chain prerouting {')
      // A reboot in the middle of the upgrade: the unit runs `nft -f` on the file (twice: idempotent).
      const before = w.hostNft(['-s', 'list', 'table', 'bridge', 'upg'])
      w.hostNft(['delete', 'table', 'bridge', 'upg'])
      w.hostNft(['-f', file])
      w.hostNft(['-f', file])
      expect(w.hostNft(['-s', 'list', 'table', 'bridge', 'upg'])).toBe(before)
      expect(await w.tcp(A, B.ipv4, 80)).toBe(false)
      expect((await persisted.migrationStatus()).legacyVms.map((v) => v.chainName)).toEqual([generateVMChainName(B.vmId)])

      // flushVMRules on a VM still on the old layout moves it with its old default action, same TAP.
      await persisted.flushVMRules(B.vmId)
      expect((await persisted.migrationStatus()).complete).toBe(true)
      expect(await persisted.chainExists(generateVMChainName(B.vmId))).toBe(true)
      expect(w.hostNft(['list', 'map', 'bridge', 'upg', 'to_vm'])).toContain(`"${B.tap}" : jump ${generateVMChainName(B.vmId)}_i`)
      expect(await w.tcp(A, B.ipv4, 80)).toBe(false)
      expect(readFileSync(file, 'utf8')).not.toContain('chain forward')
    } finally {
      await persisted.removeVMChain(B.vmId).catch(() => undefined)
      persisted.close()
      try {
        w.hostNft(['delete', 'table', 'bridge', 'upg'])
      } catch {
        // gone
      }
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
