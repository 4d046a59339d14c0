// A throwaway L2 world for firewall wire tests: one "host" namespace with bridge br0 (IPv4 + IPv6
// addresses, like a hypervisor's bridge), and N "VM" namespaces joined to it by veth pairs whose host
// ends play the TAP role (vnet-a0, vnet-a1, ...). Probes send real packets with short timeouts.
// Test code may spawn processes; the library never does.
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { promisify } from 'node:util'
import { Nft } from '../../ts/index.js'
import { eui64LinkLocal } from '../../ts/firewall/address.js'
import type { FirewallRuleInput, VmSpec } from '../../ts/firewall/model.js'
import { createNetns, sh, type Netns } from './netns.js'

const execFileP = promisify(execFile)

export const TCP_PORTS = [22, 80, 443, 8080, 9000] as const
export const UDP_PORTS = [53, 68, 5000, 5001] as const

export interface Node {
  /** Label: 'host' or 'vm0', 'vm1', ... */
  readonly label: string
  readonly ns: Netns
  /** IPv4 / IPv6 address (no prefix). */
  readonly ipv4: string
  readonly ipv6: string
  /** Interface carrying the address ('br0' on the host, 'eth0' in VMs). */
  readonly dev: string
  /** MAC address of `dev`. */
  readonly mac: string
  /** IPv6 link-local address of `dev` (EUI-64 from the MAC). */
  readonly linkLocal: string
}

export interface Vm extends Node {
  /** Host-side interface name (the "TAP"). */
  readonly tap: string
  readonly vmId: string
}

export interface World {
  readonly host: Node
  /** A machine behind an uplink port of br0 (the host's physical NIC side): not a VM, never filtered itself. */
  readonly uplink: Node
  readonly vms: Vm[]
  /** Nft bound to the host namespace. */
  readonly nft: Nft
  /** `ip netns exec host nft ...` (the test-side oracle). */
  hostNft(args: string[]): string
  ping(from: Node, to: string): Promise<boolean>
  /** TCP connect + read the listener's greeting ("ok") back: needs both directions to pass. */
  tcp(from: Node, to: string, port: number, opts?: { sourcePort?: number; bind?: string }): Promise<boolean>
  /** One datagram; true when the listener on `to` received it. */
  udp(to: Node, addr: string, port: number, from: Node, opts?: { sourcePort?: number; bind?: string }): Promise<boolean>
  /** What a client sees: 'open' (TCP connected / UDP answer), 'refused' (TCP RST or ICMP port-unreachable
   *  came back: a REJECT), or 'timeout' (nothing came back: a drop, or UDP to a silent receiver). */
  connect(from: Node, to: string, port: number, proto: 'tcp' | 'udp'): Promise<'open' | 'refused' | 'timeout'>
  /** UDP request/response: a datagram to `to`'s echo service (port 7) and the reply back. */
  udpEcho(from: Node, to: string): Promise<boolean>
  /** Sends one raw Ethernet frame (hex) from a VM's eth0. */
  sendFrame(from: Vm, frameHex: string): Promise<void>
  /** Waits until a datagram containing `token` reached UDP `port` of `node` (false after timeout). */
  received(node: Node, port: number, token: string, timeoutMs?: number): Promise<boolean>
  /** Adds a real TAP device (no process attached, carrier down) to br0 in the host namespace. */
  addTap(name: string): void
  destroy(): Promise<void>
}

// A client that tells a refusal (RST, ICMP port-unreachable) from silence.
const CONNECT_CLIENT = [
  'import socket,sys',
  'a,p,proto=sys.argv[1],int(sys.argv[2]),sys.argv[3]',
  's=socket.socket(socket.AF_INET6 if ":" in a else socket.AF_INET,socket.SOCK_STREAM if proto=="tcp" else socket.SOCK_DGRAM)',
  's.settimeout(1.5)',
  'try:',
  '  s.connect((a,p))',
  '  if proto=="udp":',
  "    s.send(b'x')",
  '    s.recv(100)',
  "  print('open')",
  'except ConnectionRefusedError:',
  "  print('refused')",
  'except OSError:',
  "  print('timeout')",
].join('\n')

// A UDP echo service on port 7 (dual stack) and its client: one request, the reply or nothing within 1 s.
const UDP_ECHO_SERVER = [
  'import socket',
  's=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM)',
  's.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_V6ONLY,0)',
  "s.bind(('::',7))",
  'while True:',
  '  d,a=s.recvfrom(2048)',
  "  s.sendto(b'pong '+d,a)",
].join('\n')
const UDP_ECHO_CLIENT = [
  'import socket,sys',
  'a=sys.argv[1]',
  's=socket.socket(socket.AF_INET6 if ":" in a else socket.AF_INET,socket.SOCK_DGRAM)',
  's.settimeout(1)',
  "s.sendto(b'ping',(a,7))",
  'try:',
  '  print(s.recv(2048).decode())',
  'except socket.timeout:',
  '  pass',
].join('\n')

let tokenCounter = 0
/** A VM's spec with its identity (tap, MAC, both addresses), as a VM manager sends it. */
export const vmSpec = (vm: Vm, defaultAction: 'accept' | 'drop', rules: FirewallRuleInput[] = [], extra: Partial<VmSpec> = {}): VmSpec => ({
  vmId: vm.vmId,
  tap: vm.tap,
  mac: vm.mac,
  ipv4: [vm.ipv4],
  ipv6: [vm.ipv6],
  defaultAction,
  rules,
  ...extra,
})

/** A positive probe may lose its first packet to neighbour discovery: one retry. Negative probes never retry. */
export const passes = async (probe: () => Promise<boolean>): Promise<boolean> => (await probe()) || (await probe())

export const token = (): string => `tok${process.pid}x${++tokenCounter}x${Math.random().toString(36).slice(2, 8)}`

function linkInfo(ns: Netns, dev: string): { mac: string; linkLocal: string } {
  const link = JSON.parse(ns.exec('ip', ['-j', 'link', 'show', dev])) as { address: string }[]
  const mac = link[0]!.address
  // addr_gen_mode eui64 (the default): the kernel derives the link-local from the MAC.
  return { mac, linkLocal: eui64LinkLocal(mac) }
}

function noDad(ns: Netns): void {
  for (const k of ['all', 'default']) {
    ns.exec('sysctl', ['-qw', `net.ipv6.conf.${k}.accept_dad=0`, `net.ipv6.conf.${k}.dad_transmits=0`])
  }
}

/** Builds the world. `vms` >= 3 recommended. Always call destroy() (afterAll). */
export async function buildWorld(opts: { vms?: number; subnet?: number } = {}): Promise<World> {
  const count = opts.vms ?? 3
  const sub = opts.subnet ?? 77
  const children: ChildProcess[] = []
  const namespaces: Netns[] = []
  const udpLog = new Map<string, string>() // `${ns}:${port}` -> received text
  let nft: Nft | undefined
  const destroy = async (): Promise<void> => {
    nft?.close()
    for (const c of children) {
      if (c.exitCode === null && c.pid) {
        try {
          process.kill(c.pid, 'SIGKILL')
        } catch {
          // gone
        }
      }
    }
    for (const n of namespaces) n.delete()
  }
  try {
    const hostNs = createNetns('fwh')
    namespaces.push(hostNs)
    noDad(hostNs)
    hostNs.exec('ip', ['link', 'add', 'br0', 'type', 'bridge', 'forward_delay', '0', 'stp_state', '0', 'mcast_snooping', '0'])
    hostNs.exec('ip', ['addr', 'add', `10.${sub}.0.1/24`, 'dev', 'br0'])
    hostNs.exec('ip', ['addr', 'add', `fd00:${sub}::1/64`, 'dev', 'br0', 'nodad'])
    hostNs.exec('ip', ['link', 'set', 'br0', 'up'])
    const vms: Vm[] = []
    for (let i = 0; i < count; i++) {
      const ns = createNetns('fwv')
      namespaces.push(ns)
      noDad(ns)
      const tap = `vnet-a${i}`
      hostNs.exec('ip', ['link', 'add', tap, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns.name])
      hostNs.exec('ip', ['link', 'set', tap, 'master', 'br0', 'up'])
      const ipv4 = `10.${sub}.0.${11 + i}`
      const ipv6 = `fd00:${sub}::${11 + i}`
      ns.exec('ip', ['addr', 'add', `${ipv4}/24`, 'dev', 'eth0'])
      ns.exec('ip', ['addr', 'add', `${ipv6}/64`, 'dev', 'eth0', 'nodad'])
      ns.exec('ip', ['link', 'set', 'eth0', 'up'])
      vms.push({ label: `vm${i}`, ns, ipv4, ipv6, dev: 'eth0', tap, vmId: `vm-${i}`, ...linkInfo(ns, 'eth0') })
    }
    const host: Node = { label: 'host', ns: hostNs, ipv4: `10.${sub}.0.1`, ipv6: `fd00:${sub}::1`, dev: 'br0', ...linkInfo(hostNs, 'br0') }
    const upNs = createNetns('fwu')
    namespaces.push(upNs)
    noDad(upNs)
    hostNs.exec('ip', ['link', 'add', 'uplink0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', upNs.name])
    hostNs.exec('ip', ['link', 'set', 'uplink0', 'master', 'br0', 'up'])
    upNs.exec('ip', ['addr', 'add', `10.${sub}.0.254/24`, 'dev', 'eth0'])
    upNs.exec('ip', ['addr', 'add', `fd00:${sub}::254/64`, 'dev', 'eth0', 'nodad'])
    upNs.exec('ip', ['link', 'set', 'eth0', 'up'])
    const uplink: Node = { label: 'uplink', ns: upNs, ipv4: `10.${sub}.0.254`, ipv6: `fd00:${sub}::254`, dev: 'eth0', ...linkInfo(upNs, 'eth0') }

    // Listeners on every node: TCP greeters, UDP receivers (logged in memory), a UDP echo on port 7.
    for (const node of [host, uplink, ...vms]) {
      for (const port of TCP_PORTS) {
        children.push(
          spawn('ip', ['netns', 'exec', node.ns.name, 'socat', `TCP6-LISTEN:${port},fork,reuseaddr,ipv6only=0`, 'SYSTEM:echo ok'], {
            stdio: 'ignore',
          }),
        )
      }
      for (const port of [...UDP_PORTS, 67]) {
        const child = spawn('ip', ['netns', 'exec', node.ns.name, 'socat', '-u', `UDP6-RECV:${port},ipv6only=0,reuseaddr`, '-'], {
          stdio: ['ignore', 'pipe', 'ignore'],
        })
        const key = `${node.ns.name}:${port}`
        udpLog.set(key, '')
        child.stdout!.on('data', (d: Buffer) => udpLog.set(key, udpLog.get(key)! + d.toString()))
        children.push(child)
      }
      children.push(spawn('ip', ['netns', 'exec', node.ns.name, 'python3', '-c', UDP_ECHO_SERVER], { stdio: 'ignore' }))
    }
    // Wait until every listener is bound.
    const want = TCP_PORTS.length + UDP_PORTS.length + 2
    for (const node of [host, uplink, ...vms]) {
      for (let tries = 0; ; tries++) {
        const out = node.ns.exec('ss', ['-Hlntu'])
        if (out.trim().split('\n').filter(Boolean).length >= want) break
        if (tries > 100) throw new Error(`listeners did not start in ${node.label}`)
        await new Promise((r) => setTimeout(r, 50))
      }
    }
    nft = new Nft({ netns: hostNs.name })

    const run = async (node: Node, cmd: string, args: string[], input?: string, limit = 3): Promise<{ ok: boolean; out: string }> => {
      try {
        const p = execFileP('ip', ['netns', 'exec', node.ns.name, 'timeout', String(limit), cmd, ...args], { encoding: 'utf8' })
        if (input !== undefined) {
          p.child.stdin?.end(input)
        }
        const { stdout } = await p
        return { ok: true, out: stdout }
      } catch (e) {
        return { ok: false, out: String((e as { stdout?: string }).stdout ?? '') }
      }
    }
    const sockAddr = (proto: 'TCP' | 'UDP', addr: string, port: number): string =>
      addr.includes(':') ? `${proto}6:[${addr}]:${port}` : `${proto}4:${addr}:${port}`
    const srcOpts = (o?: { sourcePort?: number; bind?: string }): string =>
      (o?.sourcePort ? `,sourceport=${o.sourcePort},reuseaddr` : '') + (o?.bind ? `,bind=${o.bind.includes(':') ? `[${o.bind}]` : o.bind}` : '')

    const world: World = {
      host,
      uplink,
      vms,
      nft,
      hostNft: (args) => hostNs.exec('nft', args),
      ping: async (from, to) => (await run(from, 'ping', ['-n', '-q', '-c1', '-W1', to])).ok,
      tcp: async (from, to, port, o) => {
        const r = await run(from, 'socat', ['-T1', '-u', `${sockAddr('TCP', to, port)},connect-timeout=1${srcOpts(o)}`, '-'])
        return r.out.includes('ok')
      },
      udp: async (to, addr, port, from, o) => {
        const t = token()
        await run(from, 'socat', ['-u', '-', `${sockAddr('UDP', addr, port)}${srcOpts(o)}`], `${t}\n`)
        return world.received(to, port, t)
      },
      connect: async (from, to, port, proto) => {
        // The client's own 1.5 s decides 'timeout'; the outer limit only covers interpreter start-up (slow
        // under emulation).
        const out = (await run(from, 'python3', ['-c', CONNECT_CLIENT, to, String(port), proto], undefined, 10)).out.trim()
        if (out === 'open' || out === 'refused' || out === 'timeout') return out
        throw new Error(`connect probe failed: ${JSON.stringify(out)}`)
      },
      udpEcho: async (from, to) => (await run(from, 'python3', ['-c', UDP_ECHO_CLIENT, to])).out.includes('pong'),
      sendFrame: async (from, frameHex) => {
        const py = [
          'import socket,sys',
          's=socket.socket(socket.AF_PACKET,socket.SOCK_RAW)',
          "s.bind(('eth0',0))",
          's.send(bytes.fromhex(sys.argv[1]))',
        ].join('\n')
        const r = await run(from, 'python3', ['-c', py, frameHex])
        if (!r.ok) throw new Error('sendFrame failed')
      },
      received: async (node, port, t, timeoutMs = 1000) => {
        const key = `${node.ns.name}:${port}`
        const deadline = Date.now() + timeoutMs
        for (;;) {
          if ((udpLog.get(key) ?? '').includes(t)) return true
          if (Date.now() > deadline) return false
          await new Promise((r) => setTimeout(r, 25))
        }
      },
      addTap: (name) => {
        hostNs.exec('ip', ['tuntap', 'add', 'dev', name, 'mode', 'tap'])
        hostNs.exec('ip', ['link', 'set', name, 'master', 'br0', 'up'])
      },
      destroy,
    }
    return world
  } catch (e) {
    await destroy()
    throw e
  }
}

// ---- raw frames (for forged traffic) ----

const hex = (bytes: number[]): string => bytes.map((b) => b.toString(16).padStart(2, '0')).join('')
const macBytes = (mac: string): number[] => mac.split(':').map((x) => parseInt(x, 16))
const ipBytes = (ip: string): number[] => ip.split('.').map(Number)

function checksum(bytes: number[]): number {
  let sum = 0
  for (let i = 0; i < bytes.length; i += 2) sum += (bytes[i]! << 8) | (bytes[i + 1] ?? 0)
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16)
  return ~sum & 0xffff
}

/** An ARP frame (request or reply) with arbitrary sender MAC/IP. */
export function arpFrame(o: { srcMac: string; senderMac: string; senderIp: string; targetIp: string; reply?: boolean; dstMac?: string }): string {
  const dst = o.dstMac ?? 'ff:ff:ff:ff:ff:ff'
  return hex([
    ...macBytes(dst),
    ...macBytes(o.srcMac),
    0x08, 0x06, // ARP
    0x00, 0x01, 0x08, 0x00, 6, 4,
    0x00, o.reply ? 2 : 1,
    ...macBytes(o.senderMac),
    ...ipBytes(o.senderIp),
    ...(o.reply ? macBytes(dst) : [0, 0, 0, 0, 0, 0]),
    ...ipBytes(o.targetIp),
  ])
}

/** An Ethernet + IPv4 + UDP frame (UDP checksum 0 = none). */
export function udp4Frame(o: { srcMac: string; dstMac: string; src: string; dst: string; sport: number; dport: number; payload: string }): string {
  const data = [...Buffer.from(o.payload)]
  const udpLen = 8 + data.length
  const udp = [o.sport >> 8, o.sport & 0xff, o.dport >> 8, o.dport & 0xff, udpLen >> 8, udpLen & 0xff, 0, 0, ...data]
  const totalLen = 20 + udp.length
  const ip = [0x45, 0, totalLen >> 8, totalLen & 0xff, 0, 1, 0, 0, 64, 17, 0, 0, ...ipBytes(o.src), ...ipBytes(o.dst)]
  const c = checksum(ip)
  ip[10] = c >> 8
  ip[11] = c & 0xff
  return hex([...macBytes(o.dstMac), ...macBytes(o.srcMac), 0x08, 0x00, ...ip, ...udp])
}

/** An Ethernet + IPv6 + ICMPv6 router advertisement (lifetime 1800 s, no options). */
export function routerAdvertFrame(o: { srcMac: string; srcLinkLocal: string }): string {
  const src = v6Bytes(o.srcLinkLocal)
  const dst = v6Bytes('ff02::1')
  const icmp = [134, 0, 0, 0, 64, 0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0]
  const pseudo = [...src, ...dst, 0, 0, 0, icmp.length, 0, 0, 0, 58]
  const c = checksum([...pseudo, ...icmp])
  icmp[2] = c >> 8
  icmp[3] = c & 0xff
  const ip6 = [0x60, 0, 0, 0, 0, icmp.length, 58, 255, ...src, ...dst]
  return hex([0x33, 0x33, 0, 0, 0, 1, ...macBytes(o.srcMac), 0x86, 0xdd, ...ip6, ...icmp])
}

function v6Bytes(addr: string): number[] {
  const [head, tail] = addr.split('::') as [string, string | undefined]
  const h = head ? head.split(':') : []
  const t = tail ? tail.split(':') : []
  const groups = tail === undefined ? h : [...h, ...new Array<string>(8 - h.length - t.length).fill('0'), ...t]
  return groups.flatMap((g) => {
    const v = parseInt(g, 16)
    return [v >> 8, v & 0xff]
  })
}
