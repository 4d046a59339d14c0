// A throwaway network of namespaces for the demo: a "host" with a bridge and gateway addresses, and
// "VMs" joined to it by veth pairs whose host ends play the TAP role. Building it needs `ip`, and
// probing it needs `ping`/`nc`/`socat`: this file (demo only) spawns them; the library never does.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'

export interface SandboxVm {
  name: string
  /** Namespace of the VM. */
  netns: string
  /** Host-side interface (the "TAP"). */
  tap: string
  mac: string
  ipv4: string
  ipv6: string
}

export interface Sandbox {
  host: { netns: string; bridge: string; ipv4: string; ipv6: string }
  vms: SandboxVm[]
  exec(netns: string, cmd: string, args: string[]): { ok: boolean; output: string }
  /** Starts a dual-stack TCP listener in a namespace (stopped by destroy()). */
  listen(netns: string, port: number): void
  destroy(): void
}

const run = (args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'pipe', 'pipe'] })

export function createSandbox(prefix: string, vmNames: string[]): Sandbox {
  const id = `${prefix}${process.pid % 10000}`
  const host = { netns: `${id}-host`, bridge: 'br0', ipv4: '10.99.0.1', ipv6: 'fd99::1' }
  const vms: SandboxVm[] = vmNames.map((name, i) => ({
    name,
    netns: `${id}-${name}`,
    tap: `vnet-${id.slice(-4)}${i}`.slice(0, 15),
    mac: `52:54:00:99:00:${(0x10 + i).toString(16)}`,
    ipv4: `10.99.0.${10 + i}`,
    ipv6: `fd99::${10 + i}`,
  }))
  const listeners: ChildProcess[] = []
  const created: string[] = []
  const sandbox: Sandbox = {
    host,
    vms,
    exec(netns, cmd, args) {
      try {
        return { ok: true, output: execFileSync('ip', ['netns', 'exec', netns, cmd, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 5000 }) }
      } catch (e) {
        return { ok: false, output: String((e as { stderr?: string }).stderr ?? e) }
      }
    },
    listen(netns, port) {
      const p = spawn('ip', ['netns', 'exec', netns, 'socat', `TCP6-LISTEN:${port},ipv6only=0,fork,reuseaddr`, 'EXEC:/bin/true'], { stdio: 'ignore' })
      listeners.push(p)
    },
    destroy() {
      for (const p of listeners) p.kill('SIGKILL')
      for (const ns of created.reverse()) {
        try {
          run(['netns', 'delete', ns])
        } catch {
          // already gone
        }
      }
      created.length = 0
    },
  }
  try {
    const addNs = (ns: string) => {
      run(['netns', 'add', ns])
      created.push(ns)
      run(['-n', ns, 'link', 'set', 'lo', 'up'])
      // No DAD and no router solicitations: addresses are usable at once and the demo stays quiet.
      for (const k of ['net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0']) execFileSync('ip', ['netns', 'exec', ns, 'sysctl', '-qw', k])
    }
    addNs(host.netns)
    run(['-n', host.netns, 'link', 'add', host.bridge, 'type', 'bridge'])
    run(['-n', host.netns, 'addr', 'add', `${host.ipv4}/24`, 'dev', host.bridge])
    run(['-n', host.netns, 'addr', 'add', `${host.ipv6}/64`, 'dev', host.bridge, 'nodad'])
    run(['-n', host.netns, 'link', 'set', host.bridge, 'up'])
    for (const vm of vms) {
      addNs(vm.netns)
      run(['-n', host.netns, 'link', 'add', vm.tap, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', vm.netns])
      run(['-n', host.netns, 'link', 'set', vm.tap, 'master', host.bridge, 'up'])
      run(['-n', vm.netns, 'link', 'set', 'eth0', 'address', vm.mac])
      run(['-n', vm.netns, 'addr', 'add', `${vm.ipv4}/24`, 'dev', 'eth0'])
      run(['-n', vm.netns, 'addr', 'add', `${vm.ipv6}/64`, 'dev', 'eth0', 'nodad'])
      run(['-n', vm.netns, 'link', 'set', 'eth0', 'up'])
      run(['-n', vm.netns, 'route', 'add', 'default', 'via', host.ipv4])
    }
  } catch (e) {
    sandbox.destroy()
    throw e
  }
  return sandbox
}
