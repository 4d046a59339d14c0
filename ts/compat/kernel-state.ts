// Read-only views of the kernel the facade decides on: one VM's chains and dispatch entries, the list of
// chains, the health of the base chains. Small listings only (`list chain`, `list map`, `list chains`),
// never the whole table, so the cost does not grow with the rules of other VMs.
import { NftError } from '../errors.js'
import type { Nft } from '../nft.js'
import type { NftablesJson } from '../schema.js'
import { CHAIN_POSTROUTING, CHAIN_PREROUTING, FAMILY, MAP_FROM_VM, MAP_TO_VM, parseComment } from '../firewall/compile.js'
import type { FirewallDefaultAction } from '../firewall/model.js'
import { mapElements } from '../firewall/map-elements.js'
import { realChains } from './constants.js'

export function isEnoent(e: unknown): boolean {
  return e instanceof NftError && e.code === 'ENOENT'
}

interface KernelRule {
  comment?: string
  expr: unknown[]
}

export interface VmKernelState {
  base: string
  chains: { out: string; in: string }
  outExists: boolean
  inExists: boolean
  /** VM id read from the comment of the default rule (`d:<hash>:<vmId>`), when readable. */
  vmId?: string
  /** Verdict of the default rule, when readable. */
  defaultAction?: FirewallDefaultAction
  /** Interfaces whose dispatch entry points at the VM's chains. */
  dispatch: { from: string[]; to: string[] }
  /** The dispatch maps exist (the table was initialized). */
  mapsExist: boolean
}

async function listRules(nft: Nft, table: string, chain: string): Promise<KernelRule[] | undefined> {
  let doc: NftablesJson
  try {
    doc = await nft.listChain(FAMILY, table, chain)
  } catch (e) {
    if (isEnoent(e)) return undefined
    throw e
  }
  const rules: KernelRule[] = []
  for (const o of doc.nftables) {
    if (!('rule' in o)) continue
    const r = o.rule as { comment?: string; expr?: unknown[] }
    rules.push({ ...(r.comment !== undefined ? { comment: r.comment } : {}), expr: r.expr ?? [] })
  }
  return rules
}

/** Elements of a verdict map as key -> jump target; undefined when the map (or table) is missing. */
export async function readMap(nft: Nft, table: string, name: string): Promise<Map<string, string> | undefined> {
  let doc: NftablesJson
  try {
    // One map per call: libnftables 1.0.6 fails the second `list map` of a JSON batch.
    doc = await nft.runJson({ nftables: [{ list: { map: { family: FAMILY, table, name } } }] })
  } catch (e) {
    if (isEnoent(e)) return undefined
    throw e
  }
  const listed = doc.nftables.find((o) => 'map' in o)
  return mapElements(listed && 'map' in listed ? (listed.map as unknown as Record<string, unknown>) : undefined)
}

function defaultOf(rules: KernelRule[] | undefined): { vmId?: string; action?: FirewallDefaultAction } {
  const last = rules?.[rules.length - 1]
  const parsed = parseComment(last?.comment)
  if (!last || parsed?.kind !== 'd') return {}
  const verdict = last.expr[last.expr.length - 1] as Record<string, unknown> | undefined
  const action = verdict && 'accept' in verdict ? 'accept' : verdict && 'drop' in verdict ? 'drop' : undefined
  return { vmId: parsed.tag, ...(action ? { action } : {}) }
}

/** Everything the facade needs to know about one VM (by base chain name), read now. */
export async function readVm(nft: Nft, table: string, base: string): Promise<VmKernelState> {
  const chains = realChains(base)
  const out = await listRules(nft, table, chains.out)
  const inn = await listRules(nft, table, chains.in)
  const from = await readMap(nft, table, MAP_FROM_VM)
  const to = await readMap(nft, table, MAP_TO_VM)
  const keysTo = (m: Map<string, string> | undefined, chain: string) => [...(m ?? [])].filter(([, t]) => t === chain).map(([k]) => k)
  const d = defaultOf(out)
  const di = defaultOf(inn)
  const vmId = d.vmId ?? di.vmId
  const defaultAction = d.action ?? di.action
  return {
    base,
    chains,
    outExists: out !== undefined,
    inExists: inn !== undefined,
    ...(vmId !== undefined ? { vmId } : {}),
    ...(defaultAction !== undefined ? { defaultAction } : {}),
    dispatch: { from: keysTo(from, chains.out), to: keysTo(to, chains.in) },
    mapsExist: from !== undefined && to !== undefined,
  }
}

/** Names of the chains of `table` (one `list chains` of the family: no rules are listed). */
export async function listChainNames(nft: Nft, table: string): Promise<string[]> {
  const doc = await nft.runJson({ nftables: [{ list: { chains: { family: FAMILY } } }] })
  const names: string[] = []
  for (const o of doc.nftables) {
    if (!('chain' in o)) continue
    const c = o.chain as { table?: string; name?: string }
    if (c.table === table && typeof c.name === 'string') names.push(c.name)
  }
  return names
}

export async function chainPresent(nft: Nft, table: string, chain: string): Promise<boolean> {
  return (await listRules(nft, table, chain)) !== undefined
}

/** Problems with the base chains and their dispatch rules (empty when healthy). */
export async function baseProblems(nft: Nft, table: string): Promise<string[]> {
  const problems: string[] = []
  for (const [chain, key, map] of [
    [CHAIN_PREROUTING, 'iifname', MAP_FROM_VM],
    [CHAIN_POSTROUTING, 'oifname', MAP_TO_VM],
  ] as const) {
    const rules = await listRules(nft, table, chain)
    if (!rules) {
      problems.push(`base chain ${chain} missing`)
      continue
    }
    const want = JSON.stringify([{ vmap: { key: { meta: { key } }, data: `@${map}` } }])
    if (rules.length !== 1 || JSON.stringify(rules[0]!.expr) !== want) problems.push(`dispatch rule in ${chain} missing or changed`)
  }
  return problems
}
