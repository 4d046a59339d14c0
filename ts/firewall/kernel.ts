// The firewall's only door to the kernel: every libnftables call of the firewall layer goes through here, all
// of them about this firewall's own table. Reads come back parsed into the layout's shapes; a missing object
// is `undefined`, never an error (the one not-found check of the layer).
import { NftError } from '../errors.js'
import type { Nft } from '../nft.js'
import type { NftablesJson, NftCommand } from '../schema.js'
import { probeCapabilities } from './capabilities.js'
import { isNotFound } from './errors.js'
import { commandTable, FAMILY, MAP_FROM_VM, MAP_TO_VM, parseTable, setContentsOfText, type GuardLog, type KernelTable, type SetContents, type SetCounters } from './layout.js'
import { mapElements } from './map-elements.js'
import type { FirewallCapabilities } from './model.js'
import { encodeBatch } from './netlink-batch.js'
import { batchText } from './render.js'
import { exactTableName } from './exact-table.js'

/** A write's output and the namespace's generation just before and just after it. */
export interface KernelWrite {
  output: NftablesJson
  before: number
  after: number
}

/** The generation moved away from the one a batch was computed at: nothing was sent (the binding's code). */
export const generationMoved = (expected: number, found: number) =>
  new NftError('GENERATION_MOVED', `GENERATION_MOVED: the ruleset generation moved from ${expected} to ${found}: batch not sent`)

/** A rule as listed: its comment and statements (counters included). */
export interface ListedRule {
  comment?: string
  expr: unknown[]
}

export class FirewallKernel {
  constructor(
    readonly nft: Nft,
    readonly table: string,
    /** The guard's log chains the table should have (its listing is judged with them). */
    readonly guardLog?: GuardLog,
  ) {}

  /** This instance cannot commit (a dry-run `Nft`): writes validate only, echoes nothing. */
  get dryRun(): boolean {
    return this.nft.options.dryRun === true
  }

  /** Whether listings omit set contents (`nft -t`): an export would lose the dispatch maps. */
  get terse(): boolean {
    return this.nft.options.terse === true
  }

  /** The namespace's ruleset generation id (moves by one per committed batch, whoever commits). */
  generation(): Promise<number> {
    return this.nft.generation()
  }

  /** Kernel features, by dry-run batches in a scratch table (nothing is committed). */
  capabilities(): Promise<FirewallCapabilities> {
    return probeCapabilities(this.nft)
  }

  /** One transaction of commands for this table, sent as nft text when the writer knows every command (it
   *  then spells exactly the same batch), else as JSON. Text because libnftables 1.0.6 parses it faster (see
   *  render.ts); errors carry the same errno-based codes either way. The output of a write is never read.
   *  Returns the generation just before and just after the transaction; `expect`: only while the generation
   *  is still this one, else `GENERATION_MOVED` and nothing is sent. */
  async write(commands: NftCommand[], options: { lean?: boolean; expect?: number } = {}): Promise<KernelWrite> {
    // Issue 15: `lean` (the caller knows the table and its sets exist, or issue 14: the batch creates them, a sync
    // into an absent table): a batch the netlink encoder spells exactly (a VM's chains, rules and dispatch
    // elements; the table, its sets and guard) goes to the kernel without libnftables. Same kernel errors, same
    // errno codes; anything else (or a dry run) takes libnftables. The lean batch's thread checks and reads the
    // generations around it (one round trip in all); through libnftables they are two reads of their own.
    // Issue 15: a batch of the exact table alone (a VM's elements) is encoded for that table; a batch that spans
    // both tables (a VM moving between them) takes libnftables.
    const table = options.lean && !this.dryRun ? soleTable(commands) : undefined
    if (table === this.table || (table !== undefined && table === exactTableName(this.table))) {
      const messages = encodeBatch(table, commands)
      if (messages) {
        const g = await this.nft.commitBatch(table, messages, options.expect === undefined ? {} : { expectGeneration: options.expect })
        return { output: { nftables: [] }, ...g }
      }
    }
    const before = await this.nft.generation()
    if (options.expect !== undefined && before !== options.expect) throw generationMoved(options.expect, before)
    const text = batchText(commands)
    const output = text === undefined ? await this.nft.runJson({ nftables: commands }) : (await this.nft.run(text), { nftables: [] })
    return { output, before, after: await this.nft.generation() }
  }

  /** One transaction of nft text, with libnftables' JSON echo of what it created. */
  writeEcho(text: string): Promise<NftablesJson> {
    return this.nft.runEcho(text)
  }

  /** nft text (an export's listing, a checked restore file). */
  runText(text: string): Promise<string> {
    return this.nft.run(text)
  }

  /** The table's text listing (`list table`), undefined without the table. */
  listText(): Promise<string | undefined> {
    return this.#missingAsUndefined(this.nft.run(`list table ${FAMILY} ${this.table}`))
  }

  /** The table's chains (their JSON objects) and rules per chain, in order; undefined without the table. */
  async chainsAndRules(): Promise<{ chains: Map<string, Record<string, unknown>>; rules: Map<string, ListedRule[]> } | undefined> {
    const doc = await this.#missingAsUndefined(this.nft.listTable(FAMILY, this.table))
    if (!doc) return undefined
    const chains = new Map<string, Record<string, unknown>>()
    const rules = new Map<string, ListedRule[]>()
    for (const o of doc.nftables as Record<string, Record<string, unknown>>[]) {
      if (o.chain?.table === this.table) chains.set(o.chain.name as string, o.chain)
      const r = o.rule as { table?: string; chain?: string; expr?: unknown[]; comment?: string } | undefined
      if (r?.table === this.table && typeof r.chain === 'string') (rules.get(r.chain) ?? rules.set(r.chain, []).get(r.chain)!).push({ comment: r.comment, expr: r.expr ?? [] })
    }
    return { chains, rules }
  }

  /** The whole table, parsed (a missing table parses as such). */
  async listTable(): Promise<KernelTable> {
    return parseTable(await this.#missingAsUndefined(this.nft.listTable(FAMILY, this.table)), this.guardLog)
  }

  /** One chain of the table: its own object (base chains: type, hook, priority) and its rules; undefined if absent. */
  async chain(name: string): Promise<{ chain: Record<string, unknown>; rules: ListedRule[] } | undefined> {
    const doc = await this.#missingAsUndefined(this.nft.listChain(FAMILY, this.table, name))
    if (!doc) return undefined
    const chain = (doc.nftables.find((o) => 'chain' in o) as { chain?: Record<string, unknown> } | undefined)?.chain ?? {}
    const rules = doc.nftables.flatMap((o) => {
      const r = (o as { rule?: { comment?: string; expr?: unknown[] } }).rule
      return r ? [{ comment: r.comment, expr: r.expr ?? [] }] : []
    })
    return { chain, rules }
  }

  /** Names of the table's chains (one `list chains`: names only, no rules); empty without the table. */
  async chainNames(): Promise<Set<string>> {
    const names = new Set<string>()
    const doc = await this.#missingAsUndefined(this.nft.runJson({ nftables: [{ list: { chains: { family: FAMILY } } }] }))
    for (const o of doc?.nftables ?? []) {
      if ('chain' in o && o.chain.table === this.table && typeof o.chain.name === 'string') names.add(o.chain.name)
    }
    return names
  }

  /** A verdict map's elements (key -> jump target); undefined if the map (or table) is absent. */
  async map(name: string): Promise<Map<string, string> | undefined> {
    const doc = await this.#missingAsUndefined(this.nft.runJson({ nftables: [{ list: { map: { family: FAMILY, table: this.table, name } } }] }))
    if (!doc) return undefined
    const m = doc.nftables.find((o) => 'map' in o && (o.map as { name?: string }).name === name) as { map?: Record<string, unknown> } | undefined
    return mapElements(m?.map)
  }

  /** Both dispatch maps of this table (one `list maps`: every bridge map with its elements); undefined unless
   *  both exist. */
  async dispatchMaps(): Promise<{ [MAP_FROM_VM]: Map<string, string>; [MAP_TO_VM]: Map<string, string> } | undefined> {
    const doc = await this.#missingAsUndefined(this.nft.runJson({ nftables: [{ list: { maps: { family: FAMILY } } }] } as never))
    const mine = (name: string) =>
      doc?.nftables.find((o) => 'map' in o && (o.map as { table?: string; name?: string }).table === this.table && (o.map as { name?: string }).name === name) as
        | { map: Record<string, unknown> }
        | undefined
    const from = mine(MAP_FROM_VM)
    const to = mine(MAP_TO_VM)
    return from && to ? { [MAP_FROM_VM]: mapElements(from.map), [MAP_TO_VM]: mapElements(to.map) } : undefined
  }

  /** The guard's per-VM sets of this table (one `list sets`: every bridge set with its elements), their element
   *  counters and the names of those missing; undefined without the table. */
  async sets(): Promise<{ contents: SetContents; counters: SetCounters; missing: string[] } | undefined> {
    // Text, not JSON: see setContentsOfText (libnftables 1.0.6's JSON set printer is not thread-safe).
    const text = await this.#missingAsUndefined(this.nft.run(`list sets ${FAMILY}`))
    if (text === undefined || !text.includes(`table ${FAMILY} ${this.table} {`)) return undefined
    return setContentsOfText(text, this.table)
  }

  async #missingAsUndefined<T>(p: Promise<T>): Promise<T | undefined> {
    try {
      return await p
    } catch (e) {
      if (isNotFound(e)) return undefined
      throw e
    }
  }
}

/** The one table every command names (undefined: none, or several). */
export function soleTable(commands: readonly NftCommand[]): string | undefined {
  const tables = new Set(commands.map(commandTable))
  return tables.size === 1 ? [...tables][0] : undefined
}
