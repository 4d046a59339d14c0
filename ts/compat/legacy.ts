// The layout Infinization's CLI service left in `bridge infinization`, read so an in-place upgrade never
// has a fail-open window: a base chain `forward` (hook forward, policy accept) holding two scoped DHCP
// accepts and, per attached VM, `oifname "<tap>" jump vm_<24hex>` and `iifname "<tap>" jump vm_<24hex>`;
// one regular chain `vm_<24hex>` per VM ending in `drop|accept comment "infinization-default-drop|accept"`.
// The new layout never creates a chain named `forward` or `vm_<24hex>` (its VM chains end in `_o`/`_i`),
// so both live in one table: a VM is filtered by its old chain until it moves, in one transaction.
import type { Nft } from '../nft.js'
import type { NftCommand, NftablesJson } from '../schema.js'
import { FAMILY, chainDeleteCommands } from '../firewall/compile.js'
import type { FirewallDefaultAction } from '../firewall/model.js'
import { BASE_CHAIN_RE } from './constants.js'
import { isNotFound } from '../firewall/errors.js'

export const LEGACY_FORWARD_CHAIN = 'forward'
export const LEGACY_DHCP_COMMENTS = ['infinization-dhcp-client-to-server', 'infinization-dhcp-server-to-client'] as const

export interface LegacyJump {
  handle: number
  /** `oifname` (to the VM) or `iifname` (from the VM). */
  key: 'iifname' | 'oifname'
  tap: string
  chain: string
}

export interface LegacyLayout {
  /** The old base chain `forward` exists. */
  forward: boolean
  jumps: LegacyJump[]
  /** Handles of the two DHCP rules in `forward`. */
  dhcp: number[]
  /** Handles of rules in `forward` that are neither (left alone; they keep `forward` in place). */
  other: number[]
  /** Old per-VM chains (`vm_` + 24 hex, no suffix) present in the table. */
  chains: string[]
}

/** One VM's part of the old layout. */
export interface LegacyVm {
  chain: string
  /** The old chain exists. */
  exists: boolean
  /** Interfaces dispatched to it from `forward` (empty: detached, i.e. the VM was stopped). */
  taps: string[]
  jumps: LegacyJump[]
}


export function hasLegacy(l: LegacyLayout): boolean {
  return l.forward || l.chains.length > 0
}

interface ListedRule {
  handle?: number
  comment?: string
  expr?: Record<string, unknown>[]
}

function parseJump(r: ListedRule): Omit<LegacyJump, 'handle'> | undefined {
  const expr = r.expr ?? []
  if (expr.length !== 2) return undefined
  const [m, j] = expr as [{ match?: { op?: string; left?: { meta?: { key?: string } }; right?: unknown } }, { jump?: { target?: unknown } }]
  const key = m.match?.left?.meta?.key
  const tap = m.match?.right
  const chain = j.jump?.target
  if ((key !== 'iifname' && key !== 'oifname') || typeof tap !== 'string' || typeof chain !== 'string') return undefined
  if (m.match?.op !== '==' || !BASE_CHAIN_RE.test(chain)) return undefined
  return { key, tap, chain }
}

/**
 * Reads the old layout: the `forward` chain's rules (with handles) and the old VM chain names. With
 * `vmChain`, a quick look for one VM: when neither `forward` nor that chain exists, nothing else is listed.
 */
export async function readLegacy(nft: Nft, table: string, opts: { vmChain?: string; chainNames?: () => Promise<string[]> }): Promise<LegacyLayout> {
  const layout: LegacyLayout = { forward: false, jumps: [], dhcp: [], other: [], chains: [] }
  let doc: NftablesJson | undefined
  try {
    doc = await nft.listChain(FAMILY, table, LEGACY_FORWARD_CHAIN)
  } catch (e) {
    if (!isNotFound(e)) throw e
  }
  if (!doc && opts.vmChain !== undefined && !(await listable(nft, table, opts.vmChain))) return layout
  if (opts.chainNames) layout.chains = (await opts.chainNames()).filter((n) => BASE_CHAIN_RE.test(n))
  if (!doc) return layout
  layout.forward = true
  for (const o of doc.nftables) {
    if (!('rule' in o)) continue
    const r = o.rule as ListedRule
    if (typeof r.handle !== 'number') continue
    const jump = parseJump(r)
    if (jump) layout.jumps.push({ handle: r.handle, ...jump })
    else if ((LEGACY_DHCP_COMMENTS as readonly string[]).includes(r.comment ?? '')) layout.dhcp.push(r.handle)
    else layout.other.push(r.handle)
  }
  return layout
}

async function listable(nft: Nft, table: string, chain: string): Promise<boolean> {
  try {
    await nft.listChain(FAMILY, table, chain)
    return true
  } catch (e) {
    if (isNotFound(e)) return false
    throw e
  }
}

export function legacyVm(l: LegacyLayout, chain: string): LegacyVm {
  const jumps = l.jumps.filter((j) => j.chain === chain)
  return { chain, exists: l.chains.includes(chain), taps: [...new Set(jumps.map((j) => j.tap))], jumps }
}

export function isLegacyVm(v: LegacyVm): boolean {
  return v.exists || v.jumps.length > 0
}

/** After removing `chain`'s part, nothing of the old layout filters: `forward` holds only DHCP rules. */
function lastOne(l: LegacyLayout, chain: string): boolean {
  return l.forward && l.other.length === 0 && l.jumps.every((j) => j.chain === chain) && l.chains.every((c) => c === chain)
}

/**
 * Commands deleting one VM's part of the old layout: its jumps (by handle), its chain, and, when it was
 * the last old VM, the `forward` chain itself (its DHCP accepts and policy accept only served old VMs).
 * To be run in the same transaction as the write that takes over the VM's filtering.
 */
export function legacyRemovalCommands(table: string, l: LegacyLayout, v: LegacyVm): NftCommand[] {
  const cmds: NftCommand[] = []
  if (lastOne(l, v.chain)) {
    cmds.push({ flush: { chain: { family: FAMILY, table, name: LEGACY_FORWARD_CHAIN } } })
    cmds.push({ delete: { chain: { family: FAMILY, table, name: LEGACY_FORWARD_CHAIN } } })
  } else {
    for (const j of v.jumps) cmds.push({ delete: { rule: { family: FAMILY, table, chain: LEGACY_FORWARD_CHAIN, handle: j.handle } } } as NftCommand)
  }
  if (v.exists) cmds.push(...chainDeleteCommands(table, v.chain))
  return cmds
}

/** Only a VM's jumps (stopping a VM: Infinization's detach removed them and kept the chain). */
export function legacyDetachCommands(table: string, v: LegacyVm): NftCommand[] {
  return v.jumps.map((j) => ({ delete: { rule: { family: FAMILY, table, chain: LEGACY_FORWARD_CHAIN, handle: j.handle } } }) as NftCommand)
}

/** `forward` with nothing left to filter (no old VM, no foreign rule): deleted by initialize(). */
export function legacyLeftoverCommands(table: string, l: LegacyLayout): NftCommand[] {
  if (!l.forward || l.jumps.length > 0 || l.chains.length > 0 || l.other.length > 0) return []
  return [
    { flush: { chain: { family: FAMILY, table, name: LEGACY_FORWARD_CHAIN } } },
    { delete: { chain: { family: FAMILY, table, name: LEGACY_FORWARD_CHAIN } } },
  ]
}

/** The terminal verdict of an old VM chain (`infinization-default-drop|accept`), if readable. */
export async function legacyDefault(nft: Nft, table: string, chain: string): Promise<FirewallDefaultAction | undefined> {
  let doc: NftablesJson
  try {
    doc = await nft.listChain(FAMILY, table, chain)
  } catch (e) {
    if (isNotFound(e)) return undefined
    throw e
  }
  const rules = doc.nftables.filter((o) => 'rule' in o).map((o) => o.rule as ListedRule)
  const c = rules.at(-1)?.comment
  return c === 'infinization-default-drop' ? 'drop' : c === 'infinization-default-accept' ? 'accept' : undefined
}
