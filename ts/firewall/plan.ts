// What applyVm would write for one VM, as a pure function of the spec and the kernel's capabilities: no
// instance, no addon, no I/O (the CLI's `plan`, tests, and callers that review a change before applying it).
import type { NftablesJson } from '../schema.js'
import { compileVm } from './compile.js'
import { DEFAULT_TABLE, vmApplyCommands } from './layout.js'
import type { ResolvedLogDrops } from './log-drops.js'
import type { ConntrackMode, FirewallCapabilities, VmApplyResult, VmSpec } from './model.js'
import { renderCommands } from './render.js'
import { checkTableName, normalizeVm } from './validate.js'

export interface VmPlan {
  /** The VM's part of the transaction applyVm would run: its chains, rules and dispatch entries. applyVm also
   *  (re)adds the table and its shared sets when it does not know them to exist, and deletes stale dispatch
   *  entries found at apply time. */
  commands: NftablesJson
  /** The same as nft text, for humans. */
  text: string
  result: VmApplyResult
}

export interface PlanOptions {
  /** Default 'infinization'. */
  table?: string
  /** Default 'auto'. */
  conntrack?: ConntrackMode
  /** What the kernel can do (see VmFirewall.capabilities()); the plan follows it exactly. */
  capabilities: FirewallCapabilities
  /** Log rules ahead of the drops (see VmFirewall's `logDrops`), resolved. */
  logDrops?: ResolvedLogDrops
}

/** Validates and compiles one VM spec: the commands applyVm would send for it, and its result. Throws
 *  FirewallValidationError / FirewallCapabilityError as applyVm would. */
export function planVm(spec: VmSpec, options: PlanOptions): VmPlan {
  const table = checkTableName(options.table ?? DEFAULT_TABLE)
  const compiled = compileVm(normalizeVm(spec), {
    capabilities: options.capabilities,
    conntrack: options.conntrack ?? 'auto',
    logDrops: options.logDrops,
  })
  const commands = vmApplyCommands(table, compiled, [])
  return { commands: { nftables: commands }, text: renderCommands(commands), result: compiled.result }
}
