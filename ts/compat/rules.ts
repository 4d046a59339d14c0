// Per-rule screening (Infinization skipped an untranslatable rule and counted it in `failedRules`; the
// engine validates a whole VM at once) and the translation of the engine's result into Infinization's.
import type { FirewallRuleInput, VmApplyResult } from '../firewall/model.js'
import { normalizeRule } from '../firewall/validate.js'
import { NftablesError, NftablesErrorCode, validationCode } from './errors.js'
import type { FirewallApplyFailure, FirewallApplyResult } from './types.js'

export interface ScreenedRules {
  departmentRules: FirewallRuleInput[]
  rules: FirewallRuleInput[]
  failures: FirewallApplyFailure[]
}

function ruleLabel(r: unknown): string {
  const o = (r ?? {}) as { name?: unknown; id?: unknown }
  if (typeof o.name === 'string' && o.name !== '') return o.name
  if (typeof o.id === 'string' && o.id !== '') return o.id
  return '(unnamed rule)'
}

function screenList(list: unknown, source: 'department' | 'vm', argName: string, failures: FirewallApplyFailure[]): FirewallRuleInput[] {
  if (list === undefined || list === null) return []
  if (!Array.isArray(list)) {
    throw new NftablesError(NftablesErrorCode.INVALID_ARGUMENT, `${argName} must be an array of FirewallRuleInput`, { field: argName })
  }
  const kept: FirewallRuleInput[] = []
  const ids = new Set<string>()
  for (const r of list as FirewallRuleInput[]) {
    try {
      const n = normalizeRule(r, source, argName)
      if (ids.has(n.id)) {
        failures.push({ ruleName: ruleLabel(r), ruleId: n.id, error: `duplicate rule id ${JSON.stringify(n.id)} in ${argName}`, code: NftablesErrorCode.RULE_INVALID, field: 'id' })
        continue
      }
      ids.add(n.id)
      kept.push(r)
    } catch (e) {
      const f: FirewallApplyFailure = { ruleName: ruleLabel(r), error: e instanceof Error ? e.message : String(e), code: validationCode(e) }
      const v = e as { ruleId?: unknown; field?: unknown }
      if (typeof v.ruleId === 'string') f.ruleId = v.ruleId
      if (typeof v.field === 'string') f.field = v.field
      failures.push(f)
    }
  }
  return kept
}

/** Splits valid rules from refused ones (each refused rule becomes a `failures` entry with a code). */
export function screenRules(departmentRules: unknown, vmRules: unknown): ScreenedRules {
  const failures: FirewallApplyFailure[] = []
  const d = screenList(departmentRules, 'department', 'departmentRules', failures)
  const v = screenList(vmRules, 'vm', 'vmRules', failures)
  return { departmentRules: d, rules: v, failures }
}

export function toApplyResult(details: VmApplyResult, screened: ScreenedRules, chainName: string, tap: string, attached: boolean): FirewallApplyResult {
  const considered = details.rules.filter((r) => r.reason !== 'overridden').length
  const totalRules = considered + screened.failures.length
  return {
    totalRules,
    appliedRules: considered,
    failedRules: screened.failures.length,
    chainName,
    failures: screened.failures,
    attached,
    details: { ...details, tap },
  }
}
