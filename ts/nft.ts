// The public `Nft` class: libnftables through one persistent context per instance.
import type { NativeGeneration, NativeInput, NativeNft, NativeOptions, NativeResponse } from '../binding.js'
import { NftError } from './errors.js'
import { JsonWriter } from './json-writer.js'
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

/** Longest stretch of work an async call does on the calling thread before yielding to the event loop. */
const SLICE_MS = 2
/** Text inputs longer than this (UTF-16 code units) are converted to UTF-8 in pieces, not in one go. */
export const TEXT_IN_ONE_GO = 1024 * 1024
/** Size of those pieces: a few hundred microseconds of conversion each. */
export const TEXT_PIECE = 256 * 1024

/** A call waiting for the calls before it to be handed to the native side, in call order. */
interface Queued {
  /** Prepares more of its input until `performance.now()` reaches `deadline`; true once it can be sent. */
  advance(deadline: number): boolean
  /** Sends it (or settles its promise with what went wrong preparing its input). Never throws. */
  send(): void
}

/**
 * libnftables for Node. Each instance owns one libnftables context on its own thread: async calls
 * never block the event loop, calls on one instance run in order, instances are independent.
 * Every call is one libnftables batch, which the kernel applies all-or-nothing.
 */
export class Nft {
  readonly options: Readonly<NftOptions>
  readonly #native: NativeNft
  /**
   * Calls not yet handed to the native side because a call before them is still preparing a large
   * input (serialising a document, converting text) a slice per event-loop turn. While it is not
   * empty every async call joins it, so calls reach the instance's thread in call order; a sync call
   * first finishes and sends everything in it.
   */
  readonly #queue: Queued[] = []
  #pumping = false
  #closing = false

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
    return this.#closing || this.#native.closed
  }

  /**
   * Runs nft text syntax (one or more commands, one transaction) and returns libnftables' output.
   * Text over a million characters is handed to the instance's thread in pieces, one per event-loop
   * turn, so converting it never holds the loop for long.
   */
  async run(commands: string): Promise<string> {
    const input = text(commands)
    return this.#text(input, await this.#sendText(input, false, this.#dryRun(false)))
  }

  runSync(commands: string): string {
    const input = text(commands)
    this.#drain()
    return this.#text(input, this.#native.runSync(input, false, this.#dryRun(false)))
  }

  /**
   * Runs a libnftables JSON document (object or string) as one transaction; returns the parsed output.
   * An object is serialised here, a few milliseconds per event-loop turn: a small document (hundreds
   * of commands) within this call, a large one over the next turns, so a megabyte document never
   * holds the event loop for the whole JSON.stringify. Until the promise settles, do not modify a
   * large document (it is read while it is written); later calls still run after this one.
   */
  async runJson(doc: JsonInput): Promise<NftablesJson> {
    return this.#runJson(doc, this.#dryRun(false))
  }

  /** Same as `runJson`, blocking: the document is serialised in one go (one JSON.stringify). */
  runJsonSync(doc: JsonInput): NftablesJson {
    const input = jsonText(doc)
    this.#drain()
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
    const dryRun = this.#dryRun(false)
    return this.#echo(input, await this.#send(() => this.#native.runEcho(input, dryRun)))
  }

  runEchoSync(commands: string): NftablesJson {
    const input = text(commands)
    this.#drain()
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
    return generationOf(await this.#send(() => this.#native.generation()))
  }

  generationSync(): number {
    this.#drain()
    return generationOf(this.#native.generationSync())
  }

  /**
   * Commits nf_tables netlink messages as one transaction, without libnftables: `messages` holds
   * complete netlink messages (each a header, `nfgenmsg` and attributes), bridge family, each naming
   * table `table` (sequence numbers, port and the ACK flag are set by the binding; the batch's begin and
   * end are added by it). Only regular chains (NEWCHAIN), chain flushes (DELRULE) and deletes (DELCHAIN), rules
   * (NEWRULE), set elements (NEWSETELEM/DELSETELEM), and the table's own creation (NEWTABLE without flags,
   * base chains, NEWSET) are accepted: any other message (no table or set is ever deleted), another family
   * or table, or a
   * malformed buffer throws `BATCH_REFUSED` before anything is sent. A kernel refusal throws the errno's
   * code (`ENOENT`, `EEXIST`, ...) with `index`, the refused message. A dry run checks without committing.
   * Resolves to the namespace's generation just before and just after the batch, read on the instance's
   * thread (`after - before === 1`: nobody else committed in between). `expectGeneration`: send only while
   * the generation is still this one, else throw `GENERATION_MOVED` with nothing sent (an optimistic writer's
   * check that what it computed the batch from still holds, without a round trip of its own).
   * The firewall's encoder (firewall/netlink-batch.ts) writes such messages; this is its transport.
   */
  async commitBatch(table: string, messages: Uint8Array, options: CommitBatchOptions = {}): Promise<BatchGenerations> {
    const buffer = bufferOf(messages)
    const dryRun = this.#dryRun(false)
    const expect = expectedGeneration(options)
    return generationsOf(this.#text('', await this.#send(() => this.#native.commitBatch(name_('table', table), buffer, dryRun, expect))))
  }

  commitBatchSync(table: string, messages: Uint8Array, options: CommitBatchOptions = {}): BatchGenerations {
    const buffer = bufferOf(messages)
    const expect = expectedGeneration(options)
    this.#drain()
    return generationsOf(this.#text('', this.#native.commitBatchSync(name_('table', table), buffer, this.#dryRun(false), expect)))
  }

  /** Validates nft text against the kernel without changing anything; throws `NftError` if invalid. */
  async check(commands: string): Promise<void> {
    const input = text(commands)
    this.#text(input, await this.#sendText(input, false, true))
  }

  checkSync(commands: string): void {
    const input = text(commands)
    this.#drain()
    this.#text(input, this.#native.runSync(input, false, true))
  }

  /** Validates a JSON document against the kernel without changing anything (serialised as by `runJson`). */
  async checkJson(doc: JsonInput): Promise<void> {
    await this.#runJson(doc, true)
  }

  checkJsonSync(doc: JsonInput): void {
    const input = jsonText(doc)
    this.#drain()
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
    this.#closing = true
    if (this.#queue.length === 0) this.#native.close()
    else this.#queue.push({ advance: () => true, send: () => this.#native.close() })
  }

  [disposeSymbol](): void {
    this.close()
  }

  // Listing is never a dry run: a dry-run context answers listings with nothing.
  #list(what: Record<string, unknown>): Promise<NftablesJson>
  #list(what: Record<string, unknown>, sync: true): NftablesJson
  #list(what: Record<string, unknown>, sync?: true): Promise<NftablesJson> | NftablesJson {
    const input = JSON.stringify({ nftables: [{ list: what }] })
    if (sync) {
      this.#drain()
      return this.#json(input, this.#native.runSync(input, true, false))
    }
    return this.#send(() => this.#native.run(input, true, false)).then((r) => this.#json(input, r))
  }

  async #runJson(doc: JsonInput, dryRun: boolean): Promise<NftablesJson> {
    if (typeof doc === 'string') return this.#json(doc, await this.#sendText(doc, true, dryRun))
    checkDocument(doc)
    // The first slice now: a small document is written whole here, as one JSON.stringify would.
    const writer = new JsonWriter(doc)
    const deadline = performance.now() + SLICE_MS
    const first: string[] = []
    let done = false
    for (;;) {
      const piece = writer.next()
      if (piece === undefined) {
        done = true
        break
      }
      first.push(piece)
      if (performance.now() >= deadline) break
    }
    if (done) {
      const input = first.join('')
      return this.#json(input, await this.#send(() => this.#native.run(input, true, dryRun)))
    }
    // A large document: the rest is written a slice per event-loop turn. The commands are kept to
    // name the failing one in an error (the text is never whole on this thread).
    const commands = doc.nftables.slice()
    const response = await this.#sendPieces(() => writer.next(), first, true, dryRun)
    if (response.error) throw NftError.fromNative(response.error, { commands })
    return parseJsonOutput(response)
  }

  /** Sends text (nft syntax or JSON) as it is, or in pieces when it is long. */
  #sendText(input: string, json: boolean, dryRun: boolean): Promise<NativeResponse> {
    if (input.length <= TEXT_IN_ONE_GO) return this.#send(() => this.#native.run(input, json, dryRun))
    let at = 0
    const next = (): string | undefined => {
      if (at >= input.length) return undefined
      let end = Math.min(at + TEXT_PIECE, input.length)
      // Never between the halves of a surrogate pair: each piece is converted to UTF-8 on its own.
      const last = input.charCodeAt(end - 1)
      if (end < input.length && last >= 0xd800 && last <= 0xdbff) end--
      const piece = input.slice(at, end)
      at = end
      return piece
    }
    return this.#sendPieces(next, [], json, dryRun)
  }

  /** A call whose input is produced by `next()` and handed over piece by piece, in call order. */
  #sendPieces(next: () => string | undefined, first: readonly string[], json: boolean, dryRun: boolean): Promise<NativeResponse> {
    return new Promise<NativeResponse>((resolve, reject) => {
      let input: NativeInput | undefined
      let failure: { error: unknown } | undefined
      this.#queue.push({
        advance: (deadline) => {
          if (failure) return true
          try {
            if (!input) {
              input = new (loadNative().NativeInput)()
              for (const piece of first) input.push(piece)
            }
            for (;;) {
              const piece = next()
              if (piece === undefined) return true
              input.push(piece)
              if (performance.now() >= deadline) return false
            }
          } catch (error) {
            failure = { error }
            return true
          }
        },
        send: () => {
          if (failure) return reject(failure.error)
          try {
            this.#native.runInput(input!, json, dryRun).then(resolve, reject)
          } catch (error) {
            reject(error)
          }
        },
      })
      void this.#pump()
    })
  }

  /** Sends a call whose input is ready: now, or behind the calls still preparing theirs. */
  #send<T>(send: () => Promise<T>): Promise<T> {
    if (this.#queue.length === 0) return send()
    return new Promise<T>((resolve, reject) => {
      this.#queue.push({
        advance: () => true,
        send: () => {
          try {
            send().then(resolve, reject)
          } catch (error) {
            reject(error)
          }
        },
      })
    })
  }

  /**
   * Prepares and sends queued calls in order, at most SLICE_MS of work per event-loop turn, starting
   * on the next turn (the call that queued the first one has had its slice).
   */
  async #pump(): Promise<void> {
    if (this.#pumping) return
    this.#pumping = true
    try {
      while (this.#queue.length > 0) {
        await new Promise<void>((resolve) => setImmediate(resolve))
        const deadline = performance.now() + SLICE_MS
        while (this.#queue.length > 0 && this.#queue[0]!.advance(deadline)) this.#queue.shift()!.send()
      }
    } finally {
      this.#pumping = false
    }
  }

  /** Before a sync call: finishes and sends every queued call, so the sync one runs after them. */
  #drain(): void {
    while (this.#queue.length > 0) {
      const queued = this.#queue.shift()!
      queued.advance(Infinity)
      queued.send()
    }
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
    return parseJsonOutput(response)
  }
}

function parseJsonOutput(response: NativeResponse): NftablesJson {
  const output = response.output?.trim()
  return output ? (JSON.parse(output) as NftablesJson) : { nftables: [] }
}

function bufferOf(messages: unknown): Buffer {
  if (!(messages instanceof Uint8Array)) throw new NftError('EINVAL', 'EINVAL: messages must be a Buffer or Uint8Array')
  return Buffer.isBuffer(messages) ? messages : Buffer.from(messages.buffer, messages.byteOffset, messages.byteLength)
}

/** Options of `commitBatch`. */
export interface CommitBatchOptions {
  /** Send only while the namespace's generation is this one (else `GENERATION_MOVED`, nothing sent). */
  expectGeneration?: number
}

/** The namespace's generation just before and just after a `commitBatch`. */
export interface BatchGenerations {
  before: number
  after: number
}

function expectedGeneration(options: CommitBatchOptions): number | undefined {
  const g = options.expectGeneration
  if (g === undefined) return undefined
  if (!Number.isInteger(g) || g < 0 || g > 0xffffffff) throw new NftError('EINVAL', 'EINVAL: expectGeneration must be an integer from 0 to 2^32 - 1')
  return g
}

function generationsOf(output: string): BatchGenerations {
  const [before, after] = output.split(' ').map(Number)
  if (!Number.isInteger(before) || !Number.isInteger(after)) throw new NftError('INTERNAL', 'INTERNAL: no generations from the batch')
  return { before: before!, after: after! }
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
  checkDocument(doc)
  return JSON.stringify(doc)
}

function checkDocument(doc: unknown): asserts doc is NftablesJson {
  if (doc === null || typeof doc !== 'object' || !Array.isArray((doc as NftablesJson).nftables)) {
    throw new NftError('EINVAL', 'EINVAL: a libnftables JSON document is an object with an `nftables` array')
  }
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
