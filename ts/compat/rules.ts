// Per-rule screening (Infinization skipped an untranslatable rule and counted it in `failedRules`; the
// engine validates a whole VM at once) and the translation of the engine's result into Infinization's.
import { FirewallValidationError } from '../firewall/errors.js'
import type { FirewallRuleInput, VmApplyResult } from '../firewall/model.js'
import { NAME_MAX, normalizeRule } from '../firewall/validate.js'
import { NftablesError, NftablesErrorCode, validationCode } from './errors.js'
import type { FirewallApplyFailure, FirewallApplyResult } from './types.js'

export interface ScreenedRules {
  departmentRules: FirewallRuleInput[]
  rules: FirewallRuleInput[]
  failures: FirewallApplyFailure[]
  /** The refused rules as given (cleaned), to decide whether leaving them out widens access. */
  refused: { rule: unknown; source: 'department' | 'vm' }[]
}

// ---- cleaning (what Infinization's translator did to a name before it became an nft comment) ----

// eslint-disable-next-line no-control-regex
const CONTROLS = /[\x00-\x1f\x7f]/g

/** Control characters (newline, tab, …) become spaces, then trimmed and cut to `maxBytes` of UTF-8 on a
 *  character boundary. Infinization also cut at 64 characters and swapped quotes and backslashes, because
 *  the name was the nft comment; here the comment is `r:<hash>:<rule id>` and the name is only reported. */
export function cleanText(text: string, maxBytes: number): string {
  let t = text.replace(CONTROLS, ' ').trim()
  if (Buffer.byteLength(t, 'utf8') > maxBytes) {
    let bytes = 0
    let cut = ''
    for (const ch of t) {
      const n = Buffer.byteLength(ch, 'utf8')
      if (bytes + n > maxBytes) break
      bytes += n
      cut += ch
    }
    t = cut.trimEnd()
  }
  return t
}

/**
 * The rule as Infinization would have taken it: the name cleaned (a missing or blank name becomes the
 * rule id), `description` dropped (Infinization never used it). Anything else is left for validation.
 */
function cleanRule(r: unknown): unknown {
  if (r === null || typeof r !== 'object' || Array.isArray(r)) return r
  const { description: _description, ...rest } = r as FirewallRuleInput & Record<string, unknown>
  const out: Record<string, unknown> = rest
  if (typeof rest.name === 'string') {
    const name = cleanText(rest.name, NAME_MAX)
    out.name = name !== '' ? name : rest.id
  } else if (rest.name === undefined || rest.name === null) {
    out.name = rest.id
  }
  return out
}

function ruleLabel(r: unknown): string {
  const o = (r ?? {}) as { name?: unknown; id?: unknown }
  if (typeof o.name === 'string' && o.name !== '') return o.name
  if (typeof o.id === 'string' && o.id !== '') return o.id
  return '(unnamed rule)'
}

function screenList(
  list: unknown,
  source: 'department' | 'vm',
  argName: string,
  failures: FirewallApplyFailure[],
  refused: ScreenedRules['refused'],
): FirewallRuleInput[] {
  if (list === undefined || list === null) return []
  if (!Array.isArray(list)) {
    throw new NftablesError(NftablesErrorCode.INVALID_ARGUMENT, `${argName} must be an array of FirewallRuleInput`, { field: argName })
  }
  const kept: FirewallRuleInput[] = []
  const ids = new Set<string>()
  for (const raw of list as unknown[]) {
    const r = cleanRule(raw) as FirewallRuleInput
    try {
      const n = normalizeRule(r, source, argName)
      if (ids.has(n.id)) {
        failures.push({ ruleName: ruleLabel(r), ruleId: n.id, error: `duplicate rule id ${JSON.stringify(n.id)} in ${argName}`, code: NftablesErrorCode.RULE_INVALID, field: 'id' })
        refused.push({ rule: r, source })
        continue
      }
      ids.add(n.id)
      kept.push(r)
    } catch (e) {
      const f: FirewallApplyFailure = { ruleName: ruleLabel(r), error: e instanceof Error ? e.message : String(e), code: validationCode(e) }
      if (e instanceof FirewallValidationError) {
        if (e.ruleId !== undefined) f.ruleId = e.ruleId
        f.field = e.field
      }
      failures.push(f)
      refused.push({ rule: r, source })
    }
  }
  return kept
}

/** Splits valid rules from refused ones (each refused rule becomes a `failures` entry with a code). */
export function screenRules(departmentRules: unknown, vmRules: unknown): ScreenedRules {
  const failures: FirewallApplyFailure[] = []
  const refused: ScreenedRules['refused'] = []
  const d = screenList(departmentRules, 'department', 'departmentRules', failures, refused)
  const v = screenList(vmRules, 'vm', 'vmRules', failures, refused)
  return { departmentRules: d, rules: v, failures, refused }
}

// ---- would leaving the refused rules out widen access? ----

/**
 * The refused rules whose absence could let through traffic the intended policy blocks:
 * - a DROP or REJECT rule (or one whose action cannot be read) under a default `accept`, or under a
 *   default `drop` when an applied ACCEPT rule comes at or after its priority (the refused rule would have
 *   been evaluated first; any direction, as stateless reply rules accept in the other one);
 * - a VM rule with `overridesDept` when department rules are applied (they would come back in its place).
 * A refused ACCEPT rule only narrows access and never blocks the apply (Infinization's behaviour).
 */
export function wideningRefusals(screened: ScreenedRules, defaultAction: 'accept' | 'drop'): { rule: unknown; reason: string }[] {
  const accepts = [...screened.departmentRules, ...screened.rules]
    .filter((r) => (r.action ?? 'ACCEPT') === 'ACCEPT')
    .map((r) => r.priority ?? 500)
  const out: { rule: unknown; reason: string }[] = []
  for (const { rule, source } of screened.refused) {
    const o = (rule ?? {}) as Record<string, unknown>
    const action = o.action === undefined || o.action === null ? 'ACCEPT' : typeof o.action === 'string' ? o.action.toUpperCase() : '?'
    if (action !== 'ACCEPT') {
      if (defaultAction === 'accept') {
        out.push({ rule, reason: `a ${action === '?' ? 'blocking' : action} rule under default accept` })
        continue
      }
      const prio = typeof o.priority === 'number' && Number.isFinite(o.priority) ? o.priority : o.priority === undefined || o.priority === null ? 500 : undefined
      const shadowed = accepts.some((p) => prio === undefined || p >= prio)
      if (shadowed) out.push({ rule, reason: `a ${action === '?' ? 'blocking' : action} rule ahead of an ACCEPT rule` })
      continue
    }
    if (source === 'vm' && o.overridesDept === true && screened.departmentRules.length > 0) {
      out.push({ rule, reason: 'a VM rule overriding department rules' })
    }
  }
  return out
}

export function toApplyResult(details: VmApplyResult, screened: ScreenedRules, chainName: string, tap: string, attached: boolean): FirewallApplyResult {
  const considered = details.rules.filter((r) => r.reason !== 'overridden').length
  const totalRules = considered + screened.failures.length
  return {
    applied: true,
    totalRules,
    appliedRules: considered,
    failedRules: screened.failures.length,
    chainName,
    failures: screened.failures,
    attached,
    details: { ...details, tap },
  }
}

/** The result of an apply refused as a whole: nothing of the new policy is in force. */
export function notAppliedResult(
  screened: ScreenedRules,
  widening: { rule: unknown; reason: string }[],
  chainName: string,
  attached: boolean,
  kept: 'previous' | 'closed',
): FirewallApplyResult {
  const blocking = new Set(widening.map((w) => w.rule))
  const failures = screened.failures.map((f, i) => (blocking.has(screened.refused[i]?.rule) ? { ...f, blocksApply: true as const } : f))
  const names = widening.map((w) => `${ruleLabel(w.rule)} (${w.reason})`).join(', ')
  return {
    applied: false,
    notApplied: {
      code: NftablesErrorCode.POLICY_NOT_APPLIED,
      kept,
      message:
        `policy not applied: leaving out ${names} would widen access; ` +
        (kept === 'previous' ? "the VM's previous rules stay in force" : 'the VM is closed (default drop only) until a policy applies'),
    },
    totalRules: screened.departmentRules.length + screened.rules.length + screened.failures.length,
    appliedRules: 0,
    failedRules: screened.failures.length,
    chainName,
    failures,
    attached,
  }
}
