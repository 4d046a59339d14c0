// VmFirewall operations, when ts/firewall exports a VmFirewall. Loaded dynamically so the benchmark still
// runs (and says so in the report) on a tree where the firewall layer is missing or broken.
import { existsSync } from 'node:fs'
import path from 'node:path'
import { Nft } from '../../ts/index.js'
import { vmNames } from './gen.js'

export interface FirewallHandle {
  applyOne(index: number, variant: number): Promise<number>
  /** The same policy through the compat facade (`NftablesService.applyRules`) on an equally loaded table in
   *  its own namespace; undefined when the facade is not available. */
  applyRulesOne?(index: number, variant: number): Promise<number>
  removeOne(index: number): Promise<number>
  restoreOne(index: number): Promise<void>
  syncChanged(indices: number[], variant: number): Promise<number>
  close(): Promise<void>
}

export interface FirewallBulk {
  load(): Promise<number>
  clear(): Promise<void>
  /** The table `load()` leaves, as nft text (loaded and listed untimed, then cleared): what `nft -f -` loads
   *  for the same-ruleset comparison. */
  listing(): Promise<string>
}

export interface FirewallAdapter {
  open(netns: string, vms: number, rulesPerVm: number): Promise<FirewallHandle>
  bulk(netns: string, vms: number, rulesPerVm: number): Promise<FirewallBulk>
  /** Loads `vms` VMs through VmFirewall.sync, with the taps of the given indices replaced (data plane), and
   *  those in `identities` with that MAC and IPv4 address (anti-spoofing on, as for a production VM). */
  loadForDataplane(netns: string, vms: number, rulesPerVm: number, taps: Record<number, string>, identities?: Record<number, DataplaneIdentity>): Promise<{ clear(): Promise<void> }>
}

export const FW_TABLE = 'bench_fw'

export interface DataplaneIdentity {
  mac: string
  ipv4: string
}

// Minimal structural types, so this file compiles whatever the firewall module's exact types are.
interface Spec {
  vmId: string
  tap: string
  rules: Record<string, unknown>[]
  defaultAction: 'accept' | 'drop'
  mac?: string
  ipv4?: string[]
}
interface VmFirewallLike {
  applyVm(spec: Spec): Promise<unknown>
  removeVm(vmId: string): Promise<unknown>
  sync(specs: Spec[]): Promise<unknown>
  capabilities(): Promise<unknown>
}
type VmFirewallCtor = new (nft: Nft, options?: { table?: string }) => VmFirewallLike

/**
 * The VM's rules in the backend's model: half OUT, half IN, all DROP on ports/addresses the data-plane
 * traffic never uses, default action accept (so the test traffic walks every rule). VmFirewall adds a
 * default rule to each chain; its built-ins (ARP, NDP, DHCP, anti-spoofing) are the shared guard's.
 */
export function specRules(rulesPerVm: number, variant: number): Record<string, unknown>[] {
  return Array.from({ length: rulesPerVm }, (_, i) => {
    const port = 1000 + ((i * 37 + variant * 101) % 3000)
    return {
      id: `r${i}`,
      name: `bench rule ${i}`,
      action: 'DROP',
      direction: i % 2 ? 'IN' : 'OUT',
      priority: 100 + i,
      protocol: i % 3 === 1 ? 'udp' : 'tcp',
      dstPortStart: port,
      dstPortEnd: i % 3 === 2 ? port + 5 : port,
      srcIpAddr: i % 3 === 0 ? `198.51.100.${1 + ((i + variant) % 250)}` : null,
    }
  })
}

export function vmSpec(index: number, rulesPerVm: number, variant = 0, tap?: string): Spec {
  const n = vmNames(index)
  return { vmId: n.vmId, tap: tap ?? n.tap, rules: specRules(rulesPerVm, variant), defaultAction: 'accept' }
}

const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6

interface FacadeLike {
  initialize(): Promise<void>
  applyRules(vmId: string, tap: string, dept: unknown[], rules: unknown[], action: 'accept' | 'drop'): Promise<{ applied: boolean }>
  close(): void
}
type FacadeCtor = new (config: { nft: Nft; table: string; bridgeConntrackMode: 'degrade'; dhcp: boolean }) => FacadeLike

/** The compat facade on its own namespace, loaded like VmFirewall's table (same specs, DHCP off as there). */
async function openFacade(specs: Spec[]): Promise<{ applyOne(index: number, variant: number): Promise<number>; close(): void } | undefined> {
  let Service: FacadeCtor | undefined
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    Service = (require('../../ts/compat/index.js') as { NftablesService?: FacadeCtor }).NftablesService
  } catch {
    return undefined
  }
  if (typeof Service !== 'function') return undefined
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { createNetns, deleteNetns } = require('./netns.js') as typeof import('./netns.js')
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { VmFirewall } = require('../../ts/firewall/index.js') as { VmFirewall: VmFirewallCtor }
  const ns = createNetns('compat')
  const nft = new Nft({ netns: ns })
  // Loaded by another engine (as a previous process would have), then the facade's engine re-reads once.
  await new VmFirewall(nft, { table: FW_TABLE }).sync(specs)
  const svc = new Service({ nft, table: FW_TABLE, bridgeConntrackMode: 'degrade', dhcp: false })
  await svc.initialize()
  const first = vmSpec(0, specs[0]?.rules.length ?? 0)
  await svc.applyRules(first.vmId, first.tap, [], first.rules, 'accept')
  return {
    async applyOne(index, variant) {
      const s = vmSpec(index, specs[0]?.rules.length ?? 0, variant)
      const t0 = process.hrtime.bigint()
      await svc.applyRules(s.vmId, s.tap, [], s.rules, s.defaultAction)
      return ms(t0)
    },
    close() {
      svc.close()
      nft.close()
      deleteNetns(ns)
    },
  }
}

function makeAdapter(VmFirewall: VmFirewallCtor): FirewallAdapter {
  const open = (netns: string) => {
    const nft = new Nft({ netns })
    return { nft, fw: new VmFirewall(nft, { table: FW_TABLE }) }
  }
  return {
    async open(netns, vms, rulesPerVm) {
      const { nft, fw } = open(netns)
      const specs = Array.from({ length: vms }, (_, k) => vmSpec(k, rulesPerVm))
      await fw.sync(specs)
      const facade = await openFacade(specs)
      return {
        ...(facade ? { applyRulesOne: facade.applyOne } : {}),
        async applyOne(index, variant) {
          const s = vmSpec(index, rulesPerVm, variant)
          const t0 = process.hrtime.bigint()
          await fw.applyVm(s)
          return ms(t0)
        },
        async removeOne(index) {
          const id = vmNames(index).vmId
          const t0 = process.hrtime.bigint()
          await fw.removeVm(id)
          return ms(t0)
        },
        async restoreOne(index) {
          await fw.applyVm(vmSpec(index, rulesPerVm, 0))
        },
        async syncChanged(indices, variant) {
          const set = new Set(indices)
          const next = specs.map((s, k) => (set.has(k) ? vmSpec(k, rulesPerVm, variant) : s))
          const t0 = process.hrtime.bigint()
          await fw.sync(next)
          const t = ms(t0)
          for (const k of indices) specs[k] = next[k]!
          return t
        },
        async close() {
          facade?.close()
          nft.close()
        },
      }
    },
    async bulk(netns, vms, rulesPerVm) {
      const { nft, fw } = open(netns)
      await fw.capabilities()
      const specs = Array.from({ length: vms }, (_, k) => vmSpec(k, rulesPerVm))
      return {
        async load() {
          const t0 = process.hrtime.bigint()
          await fw.sync(specs)
          return ms(t0)
        },
        async clear() {
          await nft.run(`delete table bridge ${FW_TABLE}`)
        },
        async listing() {
          await fw.sync(specs)
          const text = await nft.run(`list table bridge ${FW_TABLE}`)
          await nft.run(`delete table bridge ${FW_TABLE}`)
          return text
        },
      }
    },
    async loadForDataplane(netns, vms, rulesPerVm, taps, identities = {}) {
      const { nft, fw } = open(netns)
      const identified = (k: number, s: Spec): Spec => (identities[k] ? { ...s, mac: identities[k].mac, ipv4: [identities[k].ipv4] } : s)
      await fw.sync(Array.from({ length: vms }, (_, k) => identified(k, vmSpec(k, rulesPerVm, 0, taps[k]))))
      return {
        async clear() {
          try {
            await nft.run(`delete table bridge ${FW_TABLE}`)
          } finally {
            nft.close()
          }
        },
      }
    },
  }
}

export function loadFirewall(): { adapter?: FirewallAdapter; note: string } {
  const dir = path.join(__dirname, '../../ts/firewall')
  if (!existsSync(path.join(dir, 'index.ts'))) {
    return { note: 'ts/firewall does not exist: VmFirewall was not measured (raw equivalent rulesets only).' }
  }
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const mod = require('../../ts/firewall/index.js') as { VmFirewall?: VmFirewallCtor }
    if (typeof mod.VmFirewall !== 'function') return { note: 'ts/firewall does not export VmFirewall: VmFirewall was not measured.' }
    return {
      adapter: makeAdapter(mod.VmFirewall),
      note:
        'measured (table `bench_fw`, stateless on kernels without bridge conntrack). Each VM: the given number of backend rules (DROP, half OUT/half IN, default accept); VmFirewall adds a default rule per chain, and its shared guard chains (ARP, NDP, DHCP and anti-spoofing built-ins over per-VM set elements) run before the dispatch. applyVm lists nothing while nobody else commits (its view of the dispatch maps is checked against the ruleset generation); sync lists the whole table unless nothing was committed since its own last full sync.',
    }
  } catch (e) {
    return { note: `ts/firewall failed to load (${e instanceof Error ? e.message.split('\n')[0] : String(e)}): VmFirewall was not measured.` }
  }
}
