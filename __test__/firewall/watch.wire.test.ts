// watch(): outside changes to the table reported within 100 ms and repaired; our own applies are silent.
// blocked(): packets dropped by a VM's rules reported with the VM and rule; a flood stays bounded.
import { execFile } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Nft } from '../../ts/index.js'
import { VmFirewall, vmChainNames, type BlockedEvent, type DriftEvent, type FirewallRuleInput, type WatchEvent } from '../../ts/firewall/index.js'
import { openListener } from '../../ts/listener.js'
import { createNetns } from '../support/netns.js'
import { outsideWriter } from '../support/outside-writer.js'
import { buildWorld, token, udp4Frame, type Vm, type World } from '../support/world.js'

const FULL = process.env.STRESS === 'full'
let w: World
let A: Vm, B: Vm
beforeAll(async () => {
  w = await buildWorld({ subnet: 86, vms: 2 })
  ;[A, B] = w.vms as [Vm, Vm]
})
afterAll(async () => {
  await w?.destroy()
})

/** Listener threads of this process (thread names are cut to 15 characters). */
const listenerThreads = (): number =>
  readdirSync('/proc/self/task').filter((t) => {
    try {
      return readFileSync(`/proc/self/task/${t}/comm`, 'utf8').startsWith('nftables-node-l')
    } catch {
      return false
    }
  }).length
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
/** The first event of `type` (with `pred`) the stream emits within `ms`, or undefined. */
function next<T extends { type: string }>(s: NodeJS.EventEmitter, type: string, ms: number, pred: (e: T) => boolean = () => true): Promise<T | undefined> {
  return new Promise((resolve) => {
    const t = setTimeout(() => {
      s.off(type, on)
      resolve(undefined)
    }, ms)
    const on = (e: T): void => {
      if (!pred(e)) return
      clearTimeout(t)
      s.off(type, on)
      resolve(e)
    }
    s.on(type, on)
  })
}

const rules: FirewallRuleInput[] = [
  { id: 'ping', name: 'ping', protocol: 'icmp', direction: 'INOUT', action: 'ACCEPT', priority: 100 },
  { id: 'no-ssh', name: 'no ssh out', protocol: 'tcp', direction: 'OUT', action: 'DROP', dstPortStart: 22, priority: 200 },
  { id: 'web-out', name: 'web', protocol: 'tcp', direction: 'OUT', action: 'ACCEPT', dstPortStart: 80, priority: 300 },
]
const specOf = (vm: Vm) => ({ vmId: vm.vmId, tap: vm.tap, mac: vm.mac, ipv4: [vm.ipv4], ipv6: [vm.ipv6], defaultAction: 'drop' as const, rules })

describe('watch', () => {
  it('reports an outside change within 100 ms, repairs it in one transaction, and stays silent for our own applies', async () => {
    const fw = new VmFirewall(w.nft)
    await fw.init()
    await fw.sync([specOf(A), specOf(B)])
    // A small native queue: our own batches (hundreds of notifications) must not even reach it.
    const threads = listenerThreads()
    const watch = fw.watch({ repair: true, debounceMs: 20, queueLimit: 64 })
    expect(listenerThreads()).toBe(threads + 1)
    const events: WatchEvent[] = []
    watch.on('event', (e) => events.push(e))
    const outside = outsideWriter(w.host.ns.name)
    try {
      // Our own writes: no drift.
      await fw.applyVm({ ...specOf(A), rules: [...rules, { id: 'extra', name: 'x', protocol: 'udp', action: 'ACCEPT', dstPortStart: 53 }] })
      await fw.applyVm(specOf(A))
      const fakes = Array.from({ length: 10 }, (_, i) => ({ vmId: `fake-${i}`, tap: `vnet-f${i}`, ipv4: [`10.86.9.${i + 2}`], defaultAction: 'drop' as const, rules }))
      await fw.sync([specOf(A), specOf(B), ...fakes])
      await fw.sync([specOf(A), specOf(B)])
      await sleep(300)
      expect(events).toEqual([])

      // Someone flushes A's outbound chain: A is unfiltered until repaired. The latency is timed from the commit:
      // the writer is a process already running with libnftables loaded, which reports when the kernel
      // acknowledged its batch (after the kernel sent the notifications the watch reads).
      const drift = next<DriftEvent>(watch, 'drift', 10_000)
      const repaired = next<WatchEvent>(watch, 'repaired', 20_000)
      let reportedAt: bigint | undefined
      watch.once('drift', () => (reportedAt = process.hrtime.bigint()))
      await outside.run(`list tables`) // started, libnftables loaded
      const committedAt = await outside.run(`flush chain bridge infinization ${vmChainNames(A.vmId).out}`)
      const d = await drift
      const latency = Number(reportedAt! - committedAt) / 1e6
      console.log(`drift reported ${latency.toFixed(1)} ms after the outside commit was acknowledged`)
      expect(d).toBeDefined()
      expect(latency).toBeLessThan(100)
      expect(d!.vms).toEqual([A.vmId])
      expect(d!.process).toBe('python3')
      expect(d!.changes.every((c) => c.change === 'delrule' && c.vmId === A.vmId)).toBe(true)
      const r = await repaired
      expect(r).toMatchObject({ type: 'repaired', result: { ok: false, table: false, vms: [A.vmId] } })
      expect((await fw.verify()).ok).toBe(true)
      expect(await w.connect(A, w.host.ipv4, 22, 'tcp')).toBe('timeout')

      // Base damage: the dispatch rule and a map entry go; both come back.
      const base = next<DriftEvent>(watch, 'drift', 10_000)
      const again = next<WatchEvent>(watch, 'repaired', 20_000)
      await outside.run(`flush chain bridge infinization prerouting; delete element bridge infinization to_vm { ${B.tap} }`)
      const bd = await base
      expect(bd!.base).toContain('prerouting')
      expect(bd!.vms).toEqual([B.vmId])
      expect(await again).toMatchObject({ result: { table: true, vms: [B.vmId] } })
      expect((await fw.verify()).ok).toBe(true)

      // The table deleted outright: rebuilt with every VM.
      const gone = next<DriftEvent>(watch, 'drift', 10_000)
      const rebuilt = next<WatchEvent>(watch, 'repaired', 20_000)
      await outside.run('delete table bridge infinization')
      expect((await gone)!.tableDeleted).toBe(true)
      expect(await rebuilt).toMatchObject({ result: { table: true } })
      expect((await fw.verify()).ok).toBe(true)
      // Other tables are not ours.
      await outside.run('add table bridge other; add chain bridge other c')
      await sleep(200)
      expect(events.filter((e) => e.type === 'drift')).toHaveLength(3)
      await outside.run('delete table bridge other')
    } finally {
      await outside.close()
      await watch.stop()
    }
    expect(events.at(-1)).toEqual({ type: 'end', reason: 'stopped' })
    // Stopping released the thread (and with it the socket) within a receive timeout.
    await sleep(250)
    expect(listenerThreads()).toBe(threads)
    expect(events.filter((e) => e.type === 'repair-failed')).toEqual([])
  })

  it('does not fight: repairs stop when something keeps undoing them', async () => {
    const fw = new VmFirewall(w.nft)
    await fw.sync([specOf(A), specOf(B)])
    // A window far longer than the test takes, even under the emulator: the three repairs always fall in it.
    const watch = fw.watch({ repair: true, debounceMs: 5, maxRepairs: 3, repairWindowMs: 600_000 })
    const outside = outsideWriter(w.host.ns.name)
    try {
      const outcomes: string[] = []
      // Undo each repair as soon as it is made, until the watch gives up (bounded).
      for (let i = 0; i < 6 && outcomes.at(-1) !== 'repair-suspended'; i++) {
        const outcome = next<WatchEvent>(watch, 'event', 20_000, (e) => e.type === 'repaired' || e.type === 'repair-suspended')
        await outside.run(`flush chain bridge infinization ${vmChainNames(B.vmId).in}`)
        const e = await outcome
        outcomes.push(e?.type ?? 'nothing')
        if (e?.type === 'repair-suspended') expect(e).toMatchObject({ repairs: 3 })
      }
      expect(outcomes).toEqual(['repaired', 'repaired', 'repaired', 'repair-suspended'])
      // Suspended: the chain stays as the other writer left it.
      await sleep(200)
      const rulesLeft = w.hostNft(['list', 'chain', 'bridge', 'infinization', vmChainNames(B.vmId).in]).split('\n').filter((l) => l.startsWith('\t\t'))
      expect(rulesLeft).toEqual([])
    } finally {
      await outside.close()
      await watch.stop()
    }
    await fw.sync([specOf(A), specOf(B)])
  })

  it('the native listener keeps changes of the tables it names (the exact table beside the firewall\'s), in their family', async () => {
    const ns = createNetns('nftw')
    const listener = openListener({ kind: 'nftables', netns: ns.name, tables: ['fw_a', 'fw_a_exact'], family: 7 })
    try {
      // One outside batch touching both named tables, a third one, and a same-named table of another family;
      // then a marker batch: the notifications come in commit order, so by the marker all of the first are in.
      ns.exec('nft', ['add table bridge fw_a; add chain bridge fw_a c; add table bridge fw_a_exact; add table bridge fw_b; add chain bridge fw_b c; add table inet fw_a; add chain inet fw_a c'])
      ns.exec('nft', ['add chain bridge fw_a_exact marker'])
      const seen: string[] = []
      while (!seen.includes('newchain bridge fw_a_exact marker')) {
        const batch = await listener.next()
        expect(batch.ended).toBeUndefined()
        for (const e of batch.events) if (e.type === 'change') seen.push(`${e.change} ${e.family === 7 ? 'bridge' : e.family} ${e.table}${e.chain ? ` ${e.chain}` : ''}`)
      }
      expect(seen).toEqual(['newtable bridge fw_a', 'newchain bridge fw_a c', 'newtable bridge fw_a_exact', 'newchain bridge fw_a_exact marker'])
    } finally {
      listener.close()
      ns.delete()
    }
  })

  it('without repair, a deleted table ends the watch; a deleted namespace ends it too', async () => {
    const ns = createNetns('nftw')
    const nft = new Nft({ netns: ns.name })
    try {
      const fw = new VmFirewall(nft)
      await fw.init()
      const watch = fw.watch()
      const seen: WatchEvent[] = []
      watch.on('event', (e) => seen.push(e))
      ns.exec('nft', ['delete', 'table', 'bridge', 'infinization'])
      expect(await watch.ended).toEqual({ type: 'end', reason: 'table-deleted' })
      expect(seen.map((e) => e.type)).toEqual(['drift', 'end'])

      await fw.init()
      const second = fw.watch()
      const iterated: string[] = []
      const done = (async () => {
        for await (const e of second) iterated.push(e.type)
      })()
      ns.delete()
      const end = await second.ended
      expect(end.reason).toBe('netns')
      expect(end.error?.code).toBe('NETNS')
      await done
      expect(iterated).toEqual(['end'])
    } finally {
      nft.close()
      ns.delete()
    }
  })
})

describe('blocked', () => {
  it('names the VM and the rule that dropped a probe, and the default drop', async () => {
    const fw = new VmFirewall(w.nft, { logDrops: { group: 23 } })
    await fw.sync([specOf(A), specOf(B)])
    // The log rules read back from the kernel as written: no false drift.
    expect((await fw.verify()).ok).toBe(true)
    const stream = fw.blocked()
    try {
      const ssh = next<BlockedEvent>(stream, 'blocked', 5000, (e) => e.rule === 'no-ssh')
      expect(await w.connect(A, w.host.ipv4, 22, 'tcp')).toBe('timeout')
      expect(await ssh).toMatchObject({
        vmId: A.vmId,
        rule: 'no-ssh',
        direction: 'out',
        chain: vmChainNames(A.vmId).out,
        protocol: 'tcp',
        family: 4,
        src: A.ipv4,
        dst: w.host.ipv4,
        dstPort: 22,
        inInterface: A.tap,
      })
      const dflt = next<BlockedEvent>(stream, 'blocked', 5000, (e) => e.rule === 'default' && e.direction === 'in')
      expect(await w.connect(w.host, B.ipv4, 8080, 'tcp')).toBe('timeout')
      const d = await dflt
      expect(d).toMatchObject({ vmId: B.vmId, protocol: 'tcp', dst: B.ipv4, dstPort: 8080, outInterface: B.tap })
      expect(Math.abs(d!.time.getTime() - Date.now())).toBeLessThan(10_000)
      // Issue 15: a built-in drop of the shared guard names the VM by the frame's interface; the VM's counter of it
      // counts each frame once (the log sits in a chain of its own behind the one tap-set lookup).
      const before = (await fw.stats(A.vmId)).builtin['ip-spoof']?.out.packets ?? 0
      const spoof = next<BlockedEvent>(stream, 'blocked', 5000, (e) => e.rule === 'builtin:ip-spoof')
      const forged = udp4Frame({ srcMac: A.mac, dstMac: B.mac, src: '10.99.0.1', dst: B.ipv4, sport: 1, dport: 5000, payload: token() })
      await w.sendFrame(A, forged)
      await w.sendFrame(A, forged)
      expect(await spoof).toMatchObject({ vmId: A.vmId, chain: vmChainNames(A.vmId).out, direction: 'out', src: '10.99.0.1', inInterface: A.tap })
      expect((await fw.stats(A.vmId)).builtin['ip-spoof']!.out.packets).toBe(before + 2)
      // A second reader of the same group in the namespace is refused (the kernel lets one socket own it).
      expect(() => fw.blocked()).toThrow(expect.objectContaining({ code: 'EPERM' }))
    } finally {
      await stream.stop()
    }
    await sleep(250)
    expect(listenerThreads()).toBe(0)
    // The group is free again: another reader can bind it.
    await fw.blocked().stop()
    // Without logDrops nothing is logged: the chains have no log rules.
    await new VmFirewall(w.nft).sync([specOf(A), specOf(B)])
    expect(w.hostNft(['list', 'chain', 'bridge', 'infinization', vmChainNames(A.vmId).out])).not.toContain('log')
    expect(w.hostNft(['list', 'table', 'bridge', 'infinization'])).not.toContain('glog_')
  })

  it(`a flood of ${FULL ? '1M' : '100k'} blocked packets: memory bounded, event loop responsive`, async () => {
    const total = FULL ? 1_000_000 : 100_000
    const fw = new VmFirewall(w.nft, { logDrops: { group: 24, rate: 1_000_000_000, burst: 1_000_000 } })
    await fw.sync([specOf(A), specOf(B)])
    const stream = fw.blocked({ queueLimit: 1024 })
    let delivered = 0
    let lost = 0
    stream.on('blocked', () => delivered++)
    stream.on('lost', (e) => (lost += e.count))
    let lag = 0
    let last = performance.now()
    const tick = setInterval(() => {
      const now = performance.now()
      lag = Math.max(lag, now - last - 5)
      last = now
    }, 5)
    global.gc?.()
    const rss0 = process.memoryUsage().rss
    let rssMax = rss0
    const sample = setInterval(() => (rssMax = Math.max(rssMax, process.memoryUsage().rss)), 20)
    try {
      const t0 = performance.now()
      // A slow reader: 300 ms into the flood the event loop is busy for 300 ms. The native queue fills up and
      // counts the rest instead of growing.
      const stall = sleep(300).then(() => {
        const until = performance.now() + 300
        while (performance.now() < until);
        last = performance.now() // the stall itself is not event-loop lag of the library's making
      })
      // UDP to a port the VM's policy drops (default drop outbound), from inside the VM.
      // Asynchronously: the event loop keeps running (and reading events) while the flood is sent.
      await promisify(execFile)('ip', [
        'netns',
        'exec',
        A.ns.name,
        'python3',
        '-c',
        `import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nfor i in range(${total}): s.sendto(b'x',('${w.host.ipv4}',9999))`,
      ])
      const sent = performance.now() - t0
      await stall
      await sleep(500)
      const counted = Number(/packets (\d+)/.exec(w.hostNft(['list', 'chain', 'bridge', 'infinization', vmChainNames(A.vmId).out]).split('\n').find((l) => l.includes('comment "d:'))!)![1])
      console.log(
        `flood: ${total} packets sent in ${sent.toFixed(0)} ms, ${counted} dropped by the default rule; ` +
          `${delivered} events delivered, ${lost} counted as lost; RSS +${((rssMax - rss0) / 2 ** 20).toFixed(1)} MiB; max event-loop lag ${lag.toFixed(1)} ms`,
      )
      expect(counted).toBeGreaterThanOrEqual(total * 0.9)
      expect(delivered).toBeGreaterThan(0)
      expect(lost).toBeGreaterThan(0)
      // Everything the kernel logged was either delivered or counted (the socket itself may overrun too,
      // which the kernel counts; delivered + lost can then be below the dropped count, never above).
      expect(delivered + lost).toBeLessThanOrEqual(counted)
      expect(rssMax - rss0).toBeLessThan(128 * 2 ** 20)
      // No block of the event loop beyond 250 ms, or a tenth of the flood on a machine that takes longer to send
      // it (under the emulator the whole machine is ~8x slower: the flood 5.7 s, the worst block 279 ms; here
      // 0.7 s and 7-12 ms).
      expect(lag).toBeLessThan(Math.max(250, sent / 10))
    } finally {
      clearInterval(tick)
      clearInterval(sample)
      await stream.stop()
    }
  })
})
