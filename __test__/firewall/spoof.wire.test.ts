// Anti-spoofing, DHCP and NDP on the wire: forged frames sent from inside a VM namespace.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { VmFirewall, vmChainNames, type VmSpec } from '../../ts/firewall/index.js'
import { compileVm } from '../../ts/firewall/compile.js'
import { BASE_PRIORITY, MAP_FROM_VM, MAP_TO_VM, SHARED_SETS, chainReplaceCommands, elementAdd } from '../../ts/firewall/layout.js'
import { normalizeVm } from '../../ts/firewall/validate.js'
import { builtinRulesIn, identityRulesOut } from '../../bench/lib/levers-gen.js'
import { arpFrame, buildWorld, routerAdvertFrame, token, udp4Frame, vmSpec, type Vm, type World } from '../support/world.js'

let w: World
let fw: VmFirewall
let A: Vm, B: Vm, C: Vm
beforeAll(async () => {
  w = await buildWorld({ subnet: 72 })
  ;[A, B, C] = w.vms as [Vm, Vm, Vm]
  fw = new VmFirewall(w.nft)
})
afterAll(async () => {
  await w?.destroy()
})
beforeEach(() => {
  w.host.ns.exec('ip', ['neigh', 'flush', 'dev', 'br0'])
})

const spec = (vm: Vm, defaultAction: 'accept' | 'drop', extra: Partial<VmSpec> = {}): VmSpec => vmSpec(vm, defaultAction, [], extra)
const passes = async (probe: () => Promise<boolean>): Promise<boolean> => (await probe()) || (await probe())
const hostNeigh = (ip: string): string => w.host.ns.exec('ip', ['neigh', 'show', ip, 'dev', 'br0'])
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

describe('anti-spoofing', () => {
  it('drops frames with a forged source MAC (and allows them when anti-spoofing is off)', async () => {
    await fw.sync([spec(A, 'accept'), spec(B, 'accept'), spec(C, 'accept')])
    expect(await passes(() => w.ping(A, B.ipv4))).toBe(true)
    A.ns.exec('ip', ['link', 'set', 'eth0', 'address', '02:00:00:00:aa:01'])
    try {
      expect(await w.ping(A, B.ipv4)).toBe(false)
      expect(await w.ping(A, w.host.ipv6)).toBe(false)
      await fw.applyVm(spec(A, 'accept', { antiSpoofing: false }))
      expect(await passes(() => w.ping(A, B.ipv4))).toBe(true)
    } finally {
      A.ns.exec('ip', ['link', 'set', 'eth0', 'address', A.mac])
    }
  })

  it('drops a forged IPv4 / IPv6 source address, and the ARP that would announce it', async () => {
    await fw.sync([spec(A, 'accept'), spec(B, 'accept'), spec(C, 'accept')])
    const fake4 = '10.72.0.99'
    const fake6 = 'fd00:72::99'
    A.ns.exec('ip', ['addr', 'add', `${fake4}/24`, 'dev', 'eth0'])
    A.ns.exec('ip', ['addr', 'add', `${fake6}/64`, 'dev', 'eth0', 'nodad'])
    try {
      expect(await passes(() => w.tcp(A, B.ipv4, 80, { bind: A.ipv4 }))).toBe(true)
      expect(await w.tcp(A, B.ipv4, 80, { bind: fake4 })).toBe(false)
      expect(await w.tcp(A, w.host.ipv4, 80, { bind: fake4 })).toBe(false)
      expect(await w.udp(B, B.ipv4, 5000, A, { bind: fake4 })).toBe(false)
      expect(await w.tcp(A, B.ipv6, 80, { bind: fake6 })).toBe(false)
      expect(await passes(() => w.tcp(A, B.ipv6, 80, { bind: A.ipv6 }))).toBe(true)
      // Nobody learned the fake address from A's ARP requests.
      expect(B.ns.exec('ip', ['neigh', 'show', fake4])).not.toContain('lladdr')
      expect(hostNeigh(fake4)).not.toContain('lladdr')
      // Control: the same forgeries pass without anti-spoofing.
      await fw.applyVm(spec(A, 'accept', { antiSpoofing: false }))
      expect(await passes(() => w.tcp(A, B.ipv4, 80, { bind: fake4 }))).toBe(true)
      expect(await passes(() => w.tcp(A, B.ipv6, 80, { bind: fake6 }))).toBe(true)
    } finally {
      A.ns.exec('ip', ['addr', 'del', `${fake4}/24`, 'dev', 'eth0'])
      A.ns.exec('ip', ['addr', 'del', `${fake6}/64`, 'dev', 'eth0'])
    }
  })

  it('drops VLAN-tagged frames from a VM (their IP headers would escape the checks)', async () => {
    // This kernel has no 8021q module for a VLAN interface: send a tagged frame raw and read the drop counter.
    await fw.sync([spec(A, 'accept'), spec(B, 'accept'), spec(C, 'accept')])
    const inner = udp4Frame({ srcMac: A.mac, dstMac: B.mac, src: B.ipv4, dst: C.ipv4, sport: 1, dport: 5000, payload: token() })
    const tagged = inner.slice(0, 24) + '8100' + '0005' + inner.slice(24)
    const before = (await fw.stats(A.vmId)).builtin['vlan-from-vm']?.packets ?? 0
    await w.sendFrame(A, tagged)
    await w.sendFrame(A, tagged)
    expect((await fw.stats(A.vmId)).builtin['vlan-from-vm']!.out.packets).toBe(before + 2)
  })

  it("drops forged ARP: another VM's IP, or a foreign sender MAC (ARP poisoning of the host)", async () => {
    const poison = () =>
      w.sendFrame(A, arpFrame({ srcMac: A.mac, senderMac: A.mac, senderIp: B.ipv4, targetIp: w.host.ipv4 }))
    const foreignSender = () =>
      w.sendFrame(A, arpFrame({ srcMac: A.mac, senderMac: '02:00:00:00:bb:02', senderIp: A.ipv4, targetIp: w.host.ipv4 }))
    // Control: without anti-spoofing, the host believes the forgery.
    await fw.sync([spec(A, 'accept', { antiSpoofing: false }), spec(B, 'accept'), spec(C, 'accept')])
    expect(await passes(() => w.ping(w.host, B.ipv4))).toBe(true)
    await poison()
    await sleep(100)
    expect(hostNeigh(B.ipv4)).toContain(A.mac)
    w.host.ns.exec('ip', ['neigh', 'flush', 'dev', 'br0'])
    // With anti-spoofing, it does not.
    await fw.applyVm(spec(A, 'accept'))
    expect(await passes(() => w.ping(w.host, B.ipv4))).toBe(true)
    await poison()
    await foreignSender()
    await sleep(100)
    expect(hostNeigh(B.ipv4)).toContain(B.mac)
    expect(hostNeigh(A.ipv4)).not.toContain('02:00:00:00:bb:02')
    // Genuine ARP from A still works.
    expect(await passes(() => w.ping(w.host, A.ipv4))).toBe(true)
    expect(hostNeigh(A.ipv4)).toContain(A.mac)
  })
})

describe('the shared identity guard (issue 15)', () => {
  /** Handles of the rules of a VM's two chains (the kernel's identity of each rule). */
  const handles = (vm: Vm): string => {
    const c = vmChainNames(vm.vmId)
    return [c.out, c.in].map((ch) => w.hostNft(['-a', 'list', 'chain', 'bridge', 'infinization', ch]).match(/# handle \d+/g)!.join(',')).join('|')
  }
  const elements = (set: string): string => w.hostNft(['list', 'set', 'bridge', 'infinization', set])

  it('an identity change is element-only: the VM chains keep every rule, the new address passes, the old is dropped', async () => {
    await fw.sync([spec(A, 'accept'), spec(B, 'accept'), spec(C, 'accept')])
    const fake4 = '10.72.0.98'
    A.ns.exec('ip', ['addr', 'add', `${fake4}/24`, 'dev', 'eth0'])
    try {
      expect(await passes(() => w.tcp(A, B.ipv4, 80, { bind: A.ipv4 }))).toBe(true)
      expect(await w.tcp(A, B.ipv4, 80, { bind: fake4 })).toBe(false)
      const before = handles(A)
      const gen = w.nft.generation()
      await fw.applyVm(spec(A, 'accept', { ipv4: [fake4] }))
      expect(await gen).toBeLessThan(await w.nft.generation())
      expect(handles(A)).toBe(before)
      expect(elements('id_ipv4')).toContain(`"${A.tap}" . ${fake4}`)
      expect(elements('id_ipv4')).not.toContain(`"${A.tap}" . ${A.ipv4}`)
      expect(await passes(() => w.tcp(A, B.ipv4, 80, { bind: fake4 }))).toBe(true)
      const dropped = (await fw.stats(A.vmId)).builtin['ip-spoof']!.out.packets
      expect(await w.tcp(A, B.ipv4, 80, { bind: A.ipv4 })).toBe(false)
      expect((await fw.stats(A.vmId)).builtin['ip-spoof']!.out.packets).toBeGreaterThan(dropped)
      // B, untouched, keeps its own identity and its counters.
      expect(elements('id_ipv4')).toContain(`"${B.tap}" . ${B.ipv4}`)
    } finally {
      await fw.applyVm(spec(A, 'accept'))
      A.ns.exec('ip', ['addr', 'del', `${fake4}/24`, 'dev', 'eth0'])
    }
    expect(await passes(() => w.tcp(A, B.ipv4, 80, { bind: A.ipv4 }))).toBe(true)
  })

  it("a tap moving to another VM takes that VM's identity with it; the VM it left holds none", async () => {
    await fw.sync([spec(A, 'accept'), spec(B, 'accept'), spec(C, 'accept')])
    const other = { ...spec(A, 'accept'), vmId: `${A.vmId}-next`, ipv4: ['10.72.0.97'] }
    await fw.applyVm(other)
    try {
      // A's frames from its tap are now judged by the other VM's identity: A's own address is a spoof there.
      expect(await w.tcp(A, B.ipv4, 80, { bind: A.ipv4 })).toBe(false)
      expect(elements('id_ipv4')).toContain(`"${A.tap}" . 10.72.0.97`)
      expect(elements('id_ipv4')).not.toContain(`"${A.tap}" . ${A.ipv4}`)
      expect((await fw.stats(other.vmId)).builtin['ip-spoof']!.out.packets).toBeGreaterThan(0)
      // A holds no element of the guard any more: no guard built-in counts for it (its own chains may still count
      // `established`, where the kernel has bridge conntrack).
      expect(Object.keys((await fw.stats(A.vmId)).builtin).filter((t) => t !== 'established')).toEqual([])
      expect((await fw.verify()).vms.every((v) => v.status === 'ok')).toBe(true)
    } finally {
      await fw.removeVm(other.vmId)
      await fw.applyVm(spec(A, 'accept'))
    }
    expect(await passes(() => w.tcp(A, B.ipv4, 80, { bind: A.ipv4 }))).toBe(true)
    expect(elements('id_ipv4')).not.toContain('10.72.0.97')
  })

  it('a table of the layout before the guard is upgraded in place: guard first, old built-ins kept until sync, never open', async () => {
    // Today's layout before issue 15: each VM's chains begin with its own built-ins (bench/lib/levers-gen.ts
    // spells them as compile.ts did), the base chains hold the dispatch rule alone.
    const T = 'infinization'
    w.hostNft(['add', 'table', 'bridge', T])
    w.hostNft(['delete', 'table', 'bridge', T])
    const vms = [spec(A, 'accept'), spec(B, 'accept'), spec(C, 'accept')]
    const compiled = vms.map((v) => compileVm(normalizeVm(v), { capabilities: { bridgeConntrack: false, bridgeReject: false }, conntrack: 'off' }))
    await w.nft.runJson({
      nftables: [
        { add: { table: { family: 'bridge', name: T } } },
        ...SHARED_SETS.map((x) => ({ add: { set: { family: 'bridge' as const, table: T, name: x.name, type: x.type, elem: x.elem } } })),
        { add: { map: { family: 'bridge', table: T, name: MAP_FROM_VM, type: 'ifname', map: 'verdict' } } },
        { add: { map: { family: 'bridge', table: T, name: MAP_TO_VM, type: 'ifname', map: 'verdict' } } },
        { add: { chain: { family: 'bridge', table: T, name: 'prerouting', type: 'filter', hook: 'prerouting', prio: BASE_PRIORITY, policy: 'accept' } } },
        { add: { chain: { family: 'bridge', table: T, name: 'postrouting', type: 'filter', hook: 'postrouting', prio: BASE_PRIORITY, policy: 'accept' } } },
        { add: { rule: { family: 'bridge', table: T, chain: 'prerouting', expr: [{ vmap: { key: { meta: { key: 'iifname' } }, data: `@${MAP_FROM_VM}` } }] } } },
        { add: { rule: { family: 'bridge', table: T, chain: 'postrouting', expr: [{ vmap: { key: { meta: { key: 'oifname' } }, data: `@${MAP_TO_VM}` } }] } } },
        ...compiled.flatMap((c) => [
          { add: { chain: { family: 'bridge', table: T, name: c.chains.out } } },
          { add: { chain: { family: 'bridge', table: T, name: c.chains.in } } },
          elementAdd(T, MAP_FROM_VM, c.tap, c.chains.out),
          elementAdd(T, MAP_TO_VM, c.tap, c.chains.in),
        ]),
      ] as never,
    })
    await w.nft.run(
      compiled
        .flatMap((c, i) => {
          const v = [A, B, C][i]!
          return [
            ...identityRulesOut({ mac: v.mac, ipv4: v.ipv4, ipv6: v.ipv6 }).map((r) => `add rule bridge ${T} ${c.chains.out} ${r}`),
            ...builtinRulesIn().map((r) => `add rule bridge ${T} ${c.chains.in} ${r}`),
          ]
        })
        .join('\n') + '\n',
    )
    // Then each VM's own rules, appended (the chains exist: no flush).
    await w.nft.runJson({ nftables: compiled.flatMap((c) => [...chainReplaceCommands(T, c.chains.out, c.out, true), ...chainReplaceCommands(T, c.chains.in, c.in, true)]) as never })
    const fake4 = '10.72.0.95'
    A.ns.exec('ip', ['addr', 'add', `${fake4}/24`, 'dev', 'eth0'])
    try {
      const spoofDropped = async () => !(await w.tcp(A, B.ipv4, 80, { bind: fake4 }))
      expect(await passes(() => w.tcp(A, B.ipv4, 80, { bind: A.ipv4 }))).toBe(true)
      expect(await spoofDropped()).toBe(true)
      const oldHandles = handles(A)
      // init: the guard goes in first (one transaction); the VM chains keep their built-ins: both checks apply.
      const next = new VmFirewall(w.nft)
      await next.init()
      expect(handles(A)).toBe(oldHandles)
      expect(elements('b_ip_spoof')).not.toContain(`"${A.tap}"`)
      expect(await spoofDropped()).toBe(true)
      expect(await passes(() => w.tcp(A, B.ipv4, 80, { bind: A.ipv4 }))).toBe(true)
      // verify: every VM is drift (its chains still hold built-ins, its guard elements are missing) until sync.
      const drift = await next.verify(vms)
      expect(drift.table).toEqual([])
      expect(drift.vms.map((v) => v.status)).toEqual(['changed', 'changed', 'changed'])
      // (The bench spells the old built-ins' comments without their hash: extra rules either way.)
      expect(drift.vms[0]!.extra).toContain(`rule:${compiled[0]!.chains.out}:b:mac-spoof`)
      expect(drift.vms[0]!.missing).toContain(`dispatch:b_ip_spoof:${A.tap}`)
      const res = await next.sync(vms)
      expect(res.changed.sort()).toEqual([A.vmId, B.vmId, C.vmId].sort())
      expect((await next.verify(vms)).ok).toBe(true)
      expect(w.hostNft(['list', 'chain', 'bridge', T, compiled[0]!.chains.out])).not.toContain('spoof')
      expect(await spoofDropped()).toBe(true)
      expect(await passes(() => w.tcp(A, B.ipv4, 80, { bind: A.ipv4 }))).toBe(true)
      expect((await next.stats(A.vmId)).builtin['ip-spoof']!.out.packets).toBeGreaterThan(0)
    } finally {
      A.ns.exec('ip', ['addr', 'del', `${fake4}/24`, 'dev', 'eth0'])
      await fw.sync([spec(A, 'accept'), spec(B, 'accept'), spec(C, 'accept')])
    }
  })

  it('detach removes the VM from the guard (its tap is no VM then), attach puts it back', async () => {
    await fw.sync([spec(A, 'accept'), spec(B, 'accept'), spec(C, 'accept')])
    await fw.detachVm(A.vmId)
    expect(elements('b_ip_spoof')).not.toContain(`"${A.tap}"`)
    expect(elements('id_mac')).not.toContain(`"${A.tap}"`)
    await fw.attachVm(A.vmId, A.tap)
    expect(elements('b_ip_spoof')).toContain(`"${A.tap}"`)
    expect(await w.tcp(A, B.ipv4, 80, { bind: '10.72.0.96' }).catch(() => false)).toBe(false)
    expect(await passes(() => w.tcp(A, B.ipv4, 80, { bind: A.ipv4 }))).toBe(true)
  })
})

describe('DHCP', () => {
  it('allows the DHCP client (broadcast from 0.0.0.0, unicast renewal) under default drop', async () => {
    await fw.sync([spec(A, 'drop'), spec(B, 'accept'), spec(C, 'accept')])
    const t = token()
    await w.sendFrame(
      A,
      udp4Frame({ srcMac: A.mac, dstMac: 'ff:ff:ff:ff:ff:ff', src: '0.0.0.0', dst: '255.255.255.255', sport: 68, dport: 67, payload: t }),
    )
    expect(await w.received(w.host, 67, t)).toBe(true)
    expect(await passes(() => w.udp(w.host, w.host.ipv4, 67, A, { sourcePort: 68 }))).toBe(true)
    // Other traffic to the server port is still subject to the default action.
    expect(await w.udp(w.host, w.host.ipv4, 67, A, { sourcePort: 5555 })).toBe(false)
  })

  it('drops DHCP server replies (udp sport 67) sent by a VM; the real server still reaches VMs', async () => {
    await fw.sync([spec(A, 'accept'), spec(B, 'accept'), spec(C, 'accept')])
    expect(await w.udp(A, A.ipv4, 68, B, { sourcePort: 67 })).toBe(false)
    expect(await passes(() => w.udp(A, A.ipv4, 68, B, { sourcePort: 6767 }))).toBe(true)
    expect(await passes(() => w.udp(A, A.ipv4, 68, w.host, { sourcePort: 67 }))).toBe(true)
  })
})

describe('IPv6 router advertisements and NDP', () => {
  const hostDefault6 = () => w.host.ns.exec('ip', ['-6', 'route', 'show', 'default'])
  it('drops router advertisements sent by a VM (control: accepted without the protection)', async () => {
    w.host.ns.exec('sysctl', ['-qw', 'net.ipv6.conf.br0.accept_ra=2'])
    await fw.sync([spec(A, 'accept', { antiSpoofing: false, dhcp: false }), spec(B, 'accept'), spec(C, 'accept')])
    await w.sendFrame(A, routerAdvertFrame({ srcMac: A.mac, srcLinkLocal: A.linkLocal }))
    await sleep(200)
    expect(hostDefault6()).toContain(A.linkLocal)
    w.host.ns.exec('ip', ['-6', 'route', 'flush', 'default'])
    await fw.applyVm(spec(A, 'accept'))
    await w.sendFrame(A, routerAdvertFrame({ srcMac: A.mac, srcLinkLocal: A.linkLocal }))
    await sleep(200)
    expect(hostDefault6()).toBe('')
  })

  it('ARP and NDP keep working under default drop', async () => {
    await fw.sync([spec(A, 'drop'), spec(B, 'drop'), spec(C, 'accept')])
    A.ns.exec('ip', ['neigh', 'flush', 'dev', 'eth0'])
    expect(await w.ping(A, B.ipv4)).toBe(false)
    expect(await w.ping(A, B.ipv6)).toBe(false)
    expect(A.ns.exec('ip', ['neigh', 'show', B.ipv4])).toContain(B.mac)
    expect(A.ns.exec('ip', ['-6', 'neigh', 'show', B.ipv6])).toContain(B.mac)
    expect(await w.ping(A, `${B.linkLocal}%eth0`)).toBe(false)
    expect(A.ns.exec('ip', ['-6', 'neigh', 'show', B.linkLocal])).toContain(B.mac)
  })
})
