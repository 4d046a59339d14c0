// Opt-in logging of blocked traffic: before each drop path of a compiled VM (its default drop, its DROP
// and REJECT rules, and optionally the built-in anti-spoofing drops) a rule with the same matches sends the
// packet's headers to an nfnetlink_log group at a limited rate, then evaluation continues into the drop.
// The limit sits on the log rule only: over the rate the packet is still dropped, just not logged. The log
// prefix names the VM's chain, the path and the rule, so `blocked()` events say which rule blocked what.
// Pure: no I/O.
import type { NftStatement } from '../schema.js'
import { internRule } from './rule-identity.js'
import type { CompiledRule, CompiledVm } from './compile.js'
import { FirewallValidationError } from './errors.js'

export interface LogDropsOptions {
  /** nfnetlink_log group the log rules send to (0-65535, default 16). `blocked()` binds the same group. */
  group?: number
  /** Logged packets per `per` and per drop path (default 10 per second); over it packets are dropped unlogged. */
  rate?: number
  per?: 'second' | 'minute' | 'hour'
  /** Packets logged in a burst above the rate (default 20). */
  burst?: number
  /** Log the default drop (default true). */
  default?: boolean
  /** Log DROP/REJECT rules: all (true, default), none (false), or only these rule ids. A rule's own `log`
   *  (FirewallRuleInput) wins: `log: true` is logged even without `logDrops`, `log: false` never. */
  rules?: boolean | string[]
  /** Log the built-in anti-spoofing and DHCP-server drops (default true). */
  builtins?: boolean
}

export type ResolvedLogDrops = Required<Omit<LogDropsOptions, 'rules'>> & { rules: boolean | ReadonlySet<string> }

export const DEFAULT_LOG_GROUP = 16
/** Bytes of the kernel's log prefix (NF_LOG_PREFIXLEN, with its NUL). */
const PREFIX_MAX = 127
const PREFIX_TAG = 'nn'

/** Validates `logDrops` (a VmFirewall option). `false`/undefined: no logging. */
export function resolveLogDrops(input: boolean | LogDropsOptions | undefined): ResolvedLogDrops | undefined {
  if (input === undefined || input === false) return undefined
  const o: LogDropsOptions = input === true ? {} : input
  if (typeof o !== 'object' || o === null) throw new FirewallValidationError('logDrops', 'must be a boolean or an options object')
  const int = (v: unknown, field: string, min: number, max: number, dflt: number): number => {
    if (v === undefined) return dflt
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      throw new FirewallValidationError(`logDrops.${field}`, `must be an integer ${min}-${max}`)
    }
    return v
  }
  const per = o.per ?? 'second'
  if (!['second', 'minute', 'hour'].includes(per)) throw new FirewallValidationError('logDrops.per', "must be 'second', 'minute' or 'hour'")
  let rules: boolean | ReadonlySet<string> = true
  if (Array.isArray(o.rules)) {
    if (!o.rules.every((r) => typeof r === 'string')) throw new FirewallValidationError('logDrops.rules', 'must be a boolean or an array of rule ids')
    rules = new Set(o.rules)
  } else if (o.rules !== undefined) {
    if (typeof o.rules !== 'boolean') throw new FirewallValidationError('logDrops.rules', 'must be a boolean or an array of rule ids')
    rules = o.rules
  }
  return {
    group: int(o.group, 'group', 0, 65535, DEFAULT_LOG_GROUP),
    rate: int(o.rate, 'rate', 1, 1_000_000_000, 10),
    per,
    burst: int(o.burst, 'burst', 0, 1_000_000_000, 20),
    default: o.default ?? true,
    rules,
    builtins: o.builtins ?? true,
  }
}

/** What a log prefix says: the VM chain's stem (`vm_<24 hex>`), the direction, the kind of path and its tag
 *  (a rule id, a built-in's name, or the vmId for the default drop). */
export interface LogPrefix {
  stem: string
  direction: 'out' | 'in'
  kind: 'r' | 'd' | 'b'
  tag: string
}

export function logPrefix(chain: string, kind: 'r' | 'd' | 'b', tag: string): string {
  const stem = chain.slice(0, -2)
  const head = `${PREFIX_TAG}:${stem}:${chain.endsWith('_o') ? 'o' : 'i'}:${kind}:`
  // Cut the tag to fit, on a character boundary (a truncated tag still names the rule in most cases).
  let t = tag
  while (Buffer.byteLength(head + t) > PREFIX_MAX) t = t.slice(0, -1)
  return head + t
}

/** The prefix of a built-in drop of the shared guard (issue 15): its stem is `guard`, the VM is the frame's
 *  interface (blocked.ts). */
export function guardLogPrefix(tag: string): string {
  return `${PREFIX_TAG}:${GUARD_STEM}:o:b:${tag}`
}
export const GUARD_STEM = 'guard'

/** The guard's log settings for `logDrops` (undefined: its built-in drops are not logged). */
export function guardLogOf(o: ResolvedLogDrops | undefined): { group: number; rate: number; burst: number; per: string } | undefined {
  return o && o.builtins ? { group: o.group, rate: o.rate, burst: o.burst, per: o.per } : undefined
}

export function parseLogPrefix(prefix: string): LogPrefix | undefined {
  const m = /^nn:(vm_[0-9a-f]{24}|guard):([oi]):([rdb]):(.*)$/s.exec(prefix)
  if (!m) return undefined
  return { stem: m[1]!, direction: m[2] === 'o' ? 'out' : 'in', kind: m[3] as LogPrefix['kind'], tag: m[4]! }
}

/** Rules that choose for themselves (`log: true/false`), by id. */
export function ruleLogChoices(rules: readonly { id: string; log?: boolean }[]): Map<string, boolean> {
  const m = new Map<string, boolean>()
  for (const r of rules) if (r.log !== undefined) m.set(r.id, r.log)
  return m
}

/** Only the rules that ask for it (`log: true`) when the firewall has no `logDrops`. */
const RULES_THAT_ASK: ResolvedLogDrops = { ...resolveLogDrops(true)!, default: false, builtins: false, rules: false }

const isDrop = (st: NftStatement | undefined): boolean => !!st && typeof st === 'object' && ('drop' in st || 'reject' in st)

function logRule(chain: string, r: CompiledRule, o: ResolvedLogDrops, choices: ReadonlyMap<string, boolean>): CompiledRule | undefined {
  const m = /^([rdb]):[0-9a-f]{8}:(.+)$/.exec(r.comment)
  if (!m) return undefined
  const kind = m[1] as 'r' | 'd' | 'b'
  const tag = m[2]!
  if (!isDrop(r.expr[r.expr.length - 1])) return undefined
  if (kind === 'd' && !o.default) return undefined
  if (kind === 'b' && !o.builtins) return undefined
  if (kind === 'r' && !(choices.get(tag) ?? (o.rules === true || (o.rules !== false && o.rules.has(tag))))) return undefined
  // The drop rule's matches: everything before its counter and verdict.
  const matches = r.expr.filter((st) => !(typeof st === 'object' && st !== null && ('counter' in st || 'drop' in st || 'reject' in st)))
  const expr: NftStatement[] = [
    ...matches,
    // Key order as libnftables lists it, so that the compiled form compares equal even unrendered (dry run).
    { limit: { rate: o.rate, burst: o.burst, per: o.per } },
    { log: { prefix: logPrefix(chain, kind, tag), group: o.group } },
  ]
  return internRule('l', tag, expr, (comment) => ({ comment, expr }))
}

/** The compiled VM with a log rule in front of each drop path `o` (or, without it, a rule's own `log: true`)
 *  selects; a rule's `log` wins over `o.rules`. */
export function addDropLogging(c: CompiledVm, logDrops: ResolvedLogDrops | undefined, choices: ReadonlyMap<string, boolean> = new Map()): CompiledVm {
  const o = logDrops ?? RULES_THAT_ASK
  const withLogs = (chain: string, rules: CompiledRule[]): CompiledRule[] =>
    rules.flatMap((r) => {
      const l = logRule(chain, r, o, choices)
      return l ? [l, r] : [r]
    })
  return { ...c, out: withLogs(c.chains.out, c.out), in: withLogs(c.chains.in, c.in) }
}
