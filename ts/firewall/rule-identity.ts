// How a compiled rule is known again: by the hash of its body that its comment carries (how the engine finds
// its own rules, and a rule rewritten in place, in a listing), and, within this process, by interning: VMs share
// most rule bodies, so equal rules are one frozen object, hashed and rendered once, and a VM's chains compare
// by the identities of their rules instead of by their JSON (issue 14: ~0.3 s of a 1000-VM sync went there).
import { sha256Hex } from './sha256.js'
import type { CompiledRule } from './compile.js'

// Bounded: at most this many rules (and hashes) are remembered, a few MB; a larger working set of distinct rules
// only starts over (ids are never reused, so nothing compares equal by mistake).
const CACHE_MAX = 10_000

const HASHES = new Map<string, string>()

/** The 8 hex digits of a rule body's hash in its comment (of the body's JSON). */
export function bodyHash(json: string): string {
  let h = HASHES.get(json)
  if (h === undefined) {
    if (HASHES.size >= CACHE_MAX) HASHES.clear()
    h = sha256Hex(json).slice(0, 8)
    HASHES.set(json, h)
  }
  return h
}

/** `<kind>:<hash8 of the rule's body>:<tag>`: r = a user rule (tag: rule id), m = its reply or REJECT answer
 *  rule, b = a built-in rule (tag: its name), d = the VM's default action (tag: vmId), l = a drop's log rule
 *  (log-drops.ts). layout.ts parses it back. */
export function ruleComment(kind: string, body: unknown, tag: string): string {
  return commentOf(kind, bodyHash(JSON.stringify(body)), tag)
}

const commentOf = (kind: string, hash: string, tag: string): string => `${kind}:${hash}:${tag}`

const INTERNED = new Map<string, CompiledRule>()
const IDS = new WeakMap<CompiledRule, number>()
let nextId = 1

function freeze<T>(v: T): T {
  if (v !== null && typeof v === 'object' && !Object.isFrozen(v)) {
    for (const x of Object.values(v)) freeze(x)
    Object.freeze(v)
  }
  return v
}

/**
 * The one compiled rule with this comment kind, tag and body (`make` builds it the first time, given its
 * comment). Frozen: it is shared by every VM that has it. Ids are never reused, so two rules with the same id
 * are the same rule.
 */
export function internRule(kind: string, tag: string, body: readonly unknown[], make: (comment: string) => CompiledRule): CompiledRule {
  const json = JSON.stringify(body)
  const key = `${kind}\u0000${tag}\u0000${json}`
  let r = INTERNED.get(key)
  if (r === undefined) {
    if (INTERNED.size >= CACHE_MAX) INTERNED.clear()
    r = freeze(make(commentOf(kind, bodyHash(json), tag)))
    INTERNED.set(key, r)
    IDS.set(r, nextId++)
  }
  return r
}

/** Equal for two rule lists exactly when they hold the same rules in the same order. */
export function rulesFingerprint(...lists: readonly (readonly CompiledRule[])[]): string {
  return lists.map((l) => l.map((r) => IDS.get(r) ?? JSON.stringify(r)).join(',')).join('|')
}

/**
 * A value derived from a rule's expression list (its nft text, its netlink encoding, its drift key), kept for
 * frozen lists only: interned rules are frozen and shared by every VM that has them, and nothing can change
 * them, so each is derived once per process. Other lists (a caller's, a listing's) are derived every time.
 */
export class FrozenListMemo<T> {
  readonly #memo = new WeakMap<readonly unknown[], T>()

  get(list: readonly unknown[]): T | undefined {
    return this.#memo.get(list)
  }

  /** Returns `value`, remembered for `list` if it is frozen. */
  keep(list: readonly unknown[], value: T): T {
    if (Object.isFrozen(list)) this.#memo.set(list, value)
    return value
  }
}
