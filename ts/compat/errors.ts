// The facade's one error class, `NftablesError`, with Infinization's codes plus the few new ones the
// engine needs. Callers branch on `code` (and `context.nftCode` for the binding's errno name), never on
// the message text.
import { NftError } from '../errors.js'
import { FirewallCapabilityError, FirewallError, FirewallValidationError, isNotFound } from '../firewall/errors.js'
import { CONNTRACK_MODE_ENV } from './constants.js'

/** Infinization's `NftablesErrorCode` values, plus the codes the new engine adds (marked "new"). */
export const NftablesErrorCode = {
  TABLE_NOT_FOUND: 'TABLE_NOT_FOUND',
  TABLE_EXISTS: 'TABLE_EXISTS',
  CHAIN_NOT_FOUND: 'CHAIN_NOT_FOUND',
  CHAIN_EXISTS: 'CHAIN_EXISTS',
  RULE_INVALID: 'RULE_INVALID',
  COMMAND_FAILED: 'COMMAND_FAILED',
  PERMISSION_DENIED: 'PERMISSION_DENIED',
  INVALID_IP_ADDRESS: 'INVALID_IP_ADDRESS',
  INVALID_SUBNET_MASK: 'INVALID_SUBNET_MASK',
  INVALID_PORT_RANGE: 'INVALID_PORT_RANGE',
  UNSUPPORTED_PROTOCOL: 'UNSUPPORTED_PROTOCOL',
  /** new: `bridgeConntrackMode: 'fail'` on a kernel without bridge connection tracking. */
  CONNTRACK_UNAVAILABLE: 'CONNTRACK_UNAVAILABLE',
  /** new: a vmId, TAP name, chain name or option the engine refuses before touching the kernel. */
  INVALID_ARGUMENT: 'INVALID_ARGUMENT',
  /** new: libnftables.so.1 could not be loaded (package `libnftables1`). */
  LIBNFTABLES_UNAVAILABLE: 'LIBNFTABLES_UNAVAILABLE',
  /** new: a facade asked for an option different from the one already fixed for its table in this process. */
  CONFIG_CONFLICT: 'CONFIG_CONFLICT',
  /** new: applyRules refused a rule whose absence would widen access; the VM keeps its previous rules. */
  POLICY_NOT_APPLIED: 'POLICY_NOT_APPLIED',
} as const
export type NftablesErrorCode = (typeof NftablesErrorCode)[keyof typeof NftablesErrorCode]

export interface NftablesErrorContext {
  /** The facade method or step that failed, e.g. `applyRules`. */
  command?: string
  /** Its arguments that matter (vmId, TAP, chain; the modules to load for CONNTRACK_UNAVAILABLE). */
  args?: string[]
  /** The binding's code when the kernel or libnftables refused (`ENOENT`, `EPERM`, `EBUSY`, `SYNTAX` …). */
  nftCode?: string
  /** For validation failures: the offending field (`dstPortStart`, `tap` …) and rule id. */
  field?: string
  ruleId?: string
}

/** Structured error of the facade (Infinization's `NftablesError`, now a class). */
export class NftablesError extends Error {
  override readonly name = 'NftablesError'
  readonly code: NftablesErrorCode
  readonly context?: NftablesErrorContext

  constructor(code: NftablesErrorCode, message: string, context?: NftablesErrorContext, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
    if (context) this.context = context
  }
}

export function isNftablesError(e: unknown, code?: NftablesErrorCode): e is NftablesError {
  return e instanceof NftablesError && (code === undefined || e.code === code)
}

const CONNTRACK_MODULES = ['br_netfilter', 'nf_conntrack_bridge']

export function conntrackUnavailable(command: string, cause?: unknown): NftablesError {
  return new NftablesError(
    NftablesErrorCode.CONNTRACK_UNAVAILABLE,
    'Bridge-family conntrack is unavailable: this kernel refuses `ct state` in a bridge table, and ' +
      "bridgeConntrackMode is 'fail'. Load the modules on the host (`modprobe br_netfilter nf_conntrack_bridge`, " +
      `and list them in /etc/modules-load.d/), or set ${CONNTRACK_MODE_ENV}=degrade to run stateless.`,
    { command, args: CONNTRACK_MODULES },
    { cause },
  )
}

/** Maps a validation field of the engine to Infinization's code for it. */
function codeForField(field: string): NftablesErrorCode {
  const f = field.replace(/^.*\./, '').replace(/\[\d+\]$/, '')
  if (/^(src|dst)IpAddr$/.test(f)) return NftablesErrorCode.INVALID_IP_ADDRESS
  if (/^(src|dst)IpMask$/.test(f)) return NftablesErrorCode.INVALID_SUBNET_MASK
  if (/Port(Start|End)$/.test(f)) return NftablesErrorCode.INVALID_PORT_RANGE
  if (f === 'protocol') return NftablesErrorCode.UNSUPPORTED_PROTOCOL
  if (['vmId', 'tap', 'table', 'defaultAction', 'spec', 'conntrack', 'chainName', 'text', 'mac', 'ipv4', 'ipv6', 'antiSpoofing', 'dhcp'].includes(f)) {
    return NftablesErrorCode.INVALID_ARGUMENT
  }
  return NftablesErrorCode.RULE_INVALID
}

/** The code a per-rule validation failure gets in `FirewallApplyResult.failures`. */
export function validationCode(e: unknown): NftablesErrorCode {
  return e instanceof FirewallValidationError ? codeForField(e.field) : NftablesErrorCode.RULE_INVALID
}

/**
 * Wraps anything the engine or the binding throws, by class (`instanceof`) and `code`, never by name or
 * message. `notFound` is the code a not-found (the engine's isNotFound) maps to for this call (a missing
 * table or chain); everything keeps the original error as `cause`.
 */
export function toNftablesError(e: unknown, command: string, args: string[] = [], notFound?: NftablesErrorCode): NftablesError {
  if (e instanceof NftablesError) return e
  const message = e instanceof Error ? e.message : String(e)
  if (e instanceof FirewallCapabilityError) return conntrackUnavailable(command, e)
  if (e instanceof FirewallValidationError) {
    const context: NftablesErrorContext = { command, args, field: e.field }
    if (e.ruleId !== undefined) context.ruleId = e.ruleId
    return new NftablesError(codeForField(e.field), message, context, { cause: e })
  }
  if (e instanceof FirewallError && e.code === 'VM_NOT_FOUND') {
    return new NftablesError(NftablesErrorCode.CHAIN_NOT_FOUND, message, { command, args }, { cause: e })
  }
  if (e instanceof NftError) {
    const nftCode = String(e.code)
    const code: NftablesErrorCode =
      nftCode === 'EPERM'
        ? NftablesErrorCode.PERMISSION_DENIED
        : isNotFound(e) && notFound
          ? notFound
          : nftCode === 'LIBNFTABLES_UNAVAILABLE'
            ? NftablesErrorCode.LIBNFTABLES_UNAVAILABLE
            : NftablesErrorCode.COMMAND_FAILED
    return new NftablesError(code, message, { command, args, nftCode }, { cause: e })
  }
  return new NftablesError(NftablesErrorCode.COMMAND_FAILED, message, { command, args }, { cause: e })
}
