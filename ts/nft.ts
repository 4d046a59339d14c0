// The public `Nft` class: libnftables through one persistent context per instance.
import type { NativeGeneration, NativeNft, NativeOptions, NativeResponse } from '../binding.js'
import { NftError } from './errors.js'
import { loadNative } from './native.js'
import { NFT_FAMILIES, type NftFamily, type NftablesJson } from './schema.js'

/**
 * Options of `new Nft(options)`. Those the native context takes are declared once, with their docs, on
 * the Rust side (`NativeOptions` in src/nft.rs, generated into binding.d.ts) and passed through as they
 * are; only the options the TypeScript layer handles itself are declared here.
 */
export interface NftOptions extends NativeOptions {
  /** Validate every command against the kernel but never commit (like `nft --check`). */
  dryRun?: boolean
}

export type JsonInput = NftablesJson | string

const disposeSymbol: typeof Symbol.dispose = Symbol.dispose ?? Symbol.for('nodejs.dispose')

/**
 * libnftables for Node. Each instance owns one libnftables context on its own thread: async calls
 * never block the event loop, calls on one instance run in order, instances are independent.
 * Every call is one libnftables batch, which the kernel applies all-or-nothing.
 */
export class Nft {
  readonly options: Readonly<NftOptions>
  readonly #native: NativeNft

  constructor(options: NftOptions = {}) {
    if (options.netns !== undefined && (typeof options.netns !== 'string' || options.netns === '')) {
      throw new NftError('NETNS', 'NETNS: netns must be a non-empty string')
    }
    const { NativeNft } = loadNative()
    this.options = Object.freeze({ ...options })
    // Everything but the TypeScript-only options goes to the native side, which reads the fields of
    // `NativeOptions` and ignores any other key.
    const { dryRun: _dryRun, ...native } = options
    this.#native = new NativeNft(native)
    const startError = this.#native.startError
    if (startError) throw NftError.fromNative(startError)
  }

  /** Whether `close()` has been called. */
  get closed(): boolean {
    return this.#native.closed
  }

  /** Runs nft text syntax (one or more commands, one transaction) and returns libnftables' output. */
  async run(commands: string): Promise<string> {
    return this.#text(commands, await this.#native.run(text(commands), false, this.#dryRun(false)))
  }

  runSync(commands: string): string {
    return this.#text(commands, this.#native.runSync(text(commands), false, this.#dryRun(false)))
  }

  /** Runs a libnftables JSON document (object or string) as one transaction; returns the parsed output. */
  async runJson(doc: JsonInput): Promise<NftablesJson> {
    const input = jsonText(doc)
    return this.#json(input, await this.#native.run(input, true, this.#dryRun(false)))
  }

  runJsonSync(doc: JsonInput): NftablesJson {
    const input = jsonText(doc)
    return this.#json(input, this.#native.runSync(input, true, this.#dryRun(false)))
  }

  /**
   * Runs nft text syntax as one transaction and returns libnftables' JSON echo of what the kernel
   * created (`nft -j -e`): an `{ add: { table | chain | rule | set | element | ...: {...} } }` command
   * per created object, written as its listing shows it and with its `handle`, so a caller learns the
   * handles of new rules without listing the chain. Echo and JSON output apply to this call only.
   * Errors carry the same codes as `run()`'s (the line is not always known: libnftables reads the input
   * from a buffer here). What a `list` command in the batch prints comes
   * first, in the same array. Nothing is created (and `{ nftables: [] }` returned) in a dry run. A
   * string that is a JSON document runs as JSON (libnftables tries JSON first when output is JSON).
   * Cost: with echo on, libnftables 1.0.x reads the whole ruleset into its cache before an add
   * (measured ~35 ms against 0.7 ms for `run()` with 1000 chains of 5 rules); keep it off hot paths.
   */
  async runEcho(commands: string): Promise<NftablesJson> {
    const input = text(commands)
    return this.#echo(input, await this.#native.runEcho(input, this.#dryRun(false)))
  }

  runEchoSync(commands: string): NftablesJson {
    const input = text(commands)
    return this.#echo(input, this.#native.runEchoSync(input, this.#dryRun(false)))
  }

  /**
   * The ruleset generation id of this instance's network namespace (netlink `NFT_MSG_GETGEN`). The
   * kernel changes it on every committed batch in that namespace, whoever commits; listings, dry
   * runs and failed batches leave it unchanged. It is read on the instance's thread after the calls
   * queued before it (so after `await nft.run(...)` it includes that commit) with one netlink round
   * trip: compare two reads to learn whether anything was committed in between. Throws `NftError`
   * with the errno's code (`EPERM` without CAP_NET_ADMIN), or `CLOSED` after `close()`.
   */
  async generation(): Promise<number> {
    return generationOf(await this.#native.generation())
  }

  generationSync(): number {
    return generationOf(this.#native.generationSync())
  }

  /** Validates nft text against the kernel without changing anything; throws `NftError` if invalid. */
  async check(commands: string): Promise<void> {
    this.#text(commands, await this.#native.run(text(commands), false, true))
  }

  checkSync(commands: string): void {
    this.#text(commands, this.#native.runSync(text(commands), false, true))
  }

  /** Validates a JSON document against the kernel without changing anything. */
  async checkJson(doc: JsonInput): Promise<void> {
    const input = jsonText(doc)
    this.#json(input, await this.#native.run(input, true, true))
  }

  checkJsonSync(doc: JsonInput): void {
    const input = jsonText(doc)
    this.#json(input, this.#native.runSync(input, true, true))
  }

  /** The whole ruleset of this instance's namespace, as JSON. */
  async listRuleset(): Promise<NftablesJson> {
    return this.#list({ ruleset: null })
  }

  listRulesetSync(): NftablesJson {
    return this.#list({ ruleset: null }, true)
  }

  /** One table and everything in it. Throws `NftError` `ENOENT` if it does not exist. */
  async listTable(family: NftFamily, name: string): Promise<NftablesJson> {
    return this.#list({ table: { family: family_(family), name: name_('table', name) } })
  }

  listTableSync(family: NftFamily, name: string): NftablesJson {
    return this.#list({ table: { family: family_(family), name: name_('table', name) } }, true)
  }

  /** One chain and its rules. Throws `NftError` `ENOENT` if it does not exist. */
  async listChain(family: NftFamily, table: string, chain: string): Promise<NftablesJson> {
    return this.#list({ chain: { family: family_(family), table: name_('table', table), name: name_('chain', chain) } })
  }

  listChainSync(family: NftFamily, table: string, chain: string): NftablesJson {
    return this.#list({ chain: { family: family_(family), table: name_('table', table), name: name_('chain', chain) } }, true)
  }

  /** Releases the context once queued calls finish. Later calls fail with `CLOSED`. Idempotent. */
  close(): void {
    this.#native.close()
  }

  [disposeSymbol](): void {
    this.close()
  }

  // Listing is never a dry run: a dry-run context answers listings with nothing.
  #list(what: Record<string, unknown>): Promise<NftablesJson>
  #list(what: Record<string, unknown>, sync: true): NftablesJson
  #list(what: Record<string, unknown>, sync?: true): Promise<NftablesJson> | NftablesJson {
    const input = JSON.stringify({ nftables: [{ list: what }] })
    if (sync) return this.#json(input, this.#native.runSync(input, true, false))
    return this.#native.run(input, true, false).then((r) => this.#json(input, r))
  }

  #dryRun(explicit: boolean): boolean {
    return explicit || this.options.dryRun === true
  }

  #text(input: string, response: NativeResponse): string {
    if (response.error) throw NftError.fromNative(response.error, { text: input })
    return response.output ?? ''
  }

  // A `list` in the batch prints its own document before the echo: one document per line, merged.
  #echo(input: string, response: NativeResponse): NftablesJson {
    const documents = this.#text(input, response)
      .split('\n')
      .filter((line) => line.trim() !== '')
      .map((line) => JSON.parse(line) as NftablesJson)
    return { nftables: documents.flatMap((d) => d.nftables) }
  }

  #json(input: string, response: NativeResponse): NftablesJson {
    if (response.error) throw NftError.fromNative(response.error, { commands: commandsOf(input) })
    const output = response.output?.trim()
    return output ? (JSON.parse(output) as NftablesJson) : { nftables: [] }
  }
}

function generationOf(response: NativeGeneration): number {
  if (response.error) throw NftError.fromNative(response.error)
  if (response.id === undefined || response.id === null) throw new NftError('INTERNAL', 'INTERNAL: no generation id')
  return response.id
}

function text(commands: unknown): string {
  if (typeof commands !== 'string') throw new NftError('EINVAL', 'EINVAL: commands must be a string of nft syntax')
  return commands
}

function jsonText(doc: unknown): string {
  if (typeof doc === 'string') return doc
  if (doc === null || typeof doc !== 'object' || !Array.isArray((doc as NftablesJson).nftables)) {
    throw new NftError('EINVAL', 'EINVAL: a libnftables JSON document is an object with an `nftables` array')
  }
  return JSON.stringify(doc)
}

/** The commands of a JSON input, to name the failing one in an error (only parsed on failure). */
function commandsOf(input: string): unknown[] | undefined {
  try {
    const doc = JSON.parse(input) as { nftables?: unknown }
    return Array.isArray(doc.nftables) ? doc.nftables : undefined
  } catch {
    return undefined
  }
}

function family_(family: unknown): NftFamily {
  if (!NFT_FAMILIES.includes(family as NftFamily)) {
    throw new NftError('EINVAL', `EINVAL: unknown family ${JSON.stringify(family)} (expected one of ${NFT_FAMILIES.join(', ')})`)
  }
  return family as NftFamily
}

function name_(what: string, name: unknown): string {
  if (typeof name !== 'string' || name.length === 0 || name.length > 255 || name.includes('\0')) {
    throw new NftError('EINVAL', `EINVAL: invalid ${what} name ${JSON.stringify(name)}`)
  }
  return name
}
