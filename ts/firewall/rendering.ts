// How the kernel lists our rules back, learned from the kernel itself.
//
// libnftables lists a rule in its own words, and those differ between versions and kernels: `tcp flags &
// (syn|ack)` reads back as a bitwise expression on 1.1.x, `reject` as `icmpx port-unreachable`, a
// one-element `ct state` as a plain string, implied `meta l4proto` dependencies disappear. Instead of
// chasing each listing quirk, drift comparison uses the kernel's own rendering of the rules we want: they are
// added to a scratch chain of our table in one transaction that also deletes it (nothing stays, nothing is
// dispatched to it), with echo on (`Nft.runEcho`), and libnftables prints each one exactly as a listing would.
// libnftables 1.0.x fills its whole cache for an echo (tens of ms at 1000 VMs): learning happens once per
// distinct rule, on the verify/sync/ifChanged paths, never in applyVm.
import type { NftablesJson } from '../schema.js'
import type { NftExpr } from './compile.js'
import type { FirewallKernel } from './kernel.js'
import { FAMILY, RENDER_CHAIN } from './layout.js'
import { renderCommands } from './render.js'
import { FrozenListMemo } from './rule-identity.js'

/** Keeps memory bounded when many distinct rules pass through one long-lived instance. */
const CACHE_LIMIT = 200_000

const counterless = (expr: readonly unknown[]): unknown[] =>
  expr.map((st) => {
    const o = st as Record<string, unknown>
    return o && typeof o === 'object' && 'counter' in o ? { counter: null } : st
  })

const KEYS = new FrozenListMemo<string>()

/** A rule's statements as compared for drift: counter values are state, not policy. */
export function ruleKey(expr: readonly unknown[]): string {
  return KEYS.get(expr) ?? KEYS.keep(expr, JSON.stringify(counterless(expr)))
}

export class KernelRendering {
  readonly #cache = new Map<string, string>()

  constructor(readonly kernel: FirewallKernel) {}

  /** What was learned: `ruleKey` of a compiled rule -> `ruleKey` of the kernel's rendering (fixtures, tests). */
  entries(): [string, string][] {
    return [...this.#cache]
  }

  /** The kernel's rendering of `expr` (as `ruleKey` of the listed rule), if learned. */
  lookup(expr: readonly unknown[]): string | undefined {
    return this.#cache.get(ruleKey(expr))
  }

  /**
   * Learns the renderings of the given compiled rules in one transaction. Does nothing when the instance
   * cannot commit (dry run) or the kernel refuses the batch (for example, the table's shared sets are gone):
   * callers then compare with the compiled form.
   */
  async learn(rules: readonly NftExpr[][]): Promise<void> {
    const todo = new Map<string, NftExpr[]>()
    for (const expr of rules) {
      const key = ruleKey(expr)
      if (!this.#cache.has(key) && !todo.has(key)) todo.set(key, expr)
    }
    if (todo.size === 0) return
    // A dry-run instance commits nothing and echoes nothing: callers compare with the compiled form.
    if (this.kernel.dryRun) return
    const f = FAMILY
    const table = this.kernel.table
    const chain = RENDER_CHAIN
    const text = renderCommands([
      { add: { chain: { family: f, table, name: chain } } },
      ...[...todo.values()].map((expr) => ({ add: { rule: { family: f, table, chain, expr } } })),
      { flush: { chain: { family: f, table, name: chain } } },
      { delete: { chain: { family: f, table, name: chain } } },
    ])
    let out: NftablesJson
    try {
      // Text in, JSON out, echo on: libnftables prints what the kernel created, as its listing would.
      out = await this.kernel.writeEcho(text)
    } catch {
      // Refused (e.g. a shared set was deleted outside: drift that verify reports anyway): no reference.
      return
    }
    const rendered = out.nftables.flatMap((o) => {
      const r = (o as { add?: { rule?: { chain?: string; expr?: unknown[] } } }).add?.rule
      return r && r.chain === chain ? [r.expr ?? []] : []
    })
    if (rendered.length !== todo.size) return
    if (this.#cache.size + todo.size > CACHE_LIMIT) this.#cache.clear()
    let i = 0
    for (const key of todo.keys()) this.#cache.set(key, ruleKey(rendered[i++]!))
  }
}
