// The event streams of the firewall (watch.ts: drift, blocked.ts: dropped packets): an EventEmitter that is
// also an async iterator, fed by draining a native listener thread's batches until the listener ends.
import { EventEmitter } from 'node:events'
import { NftError } from '../errors.js'
import type { NativeBatch, NativeEvent, NativeListener } from '../listener.js'

/** The native listener's end as a typed error. */
function endError(e: NonNullable<NativeBatch['ended']>): NftError {
  return new NftError(e.code, `${e.code}: ${e.message}`, { errno: e.errno ?? undefined, detail: e.detail })
}

/**
 * A base class for the two event streams: EventEmitter (typed events, plus 'event' for each) and async
 * iterator (for await ... of: every event until 'end', which is the last value). Events are kept for the
 * iterator only while one is iterating (start it before awaiting anything else), and at most `limit` of them
 * between two reads: past that the oldest are dropped, so a slow reader costs bounded memory.
 */
export class EventStream<E extends { type: string }> extends EventEmitter {
  #buffer: E[] = []
  #wake?: () => void
  #done = false
  #iterators = 0
  readonly #limit: number

  constructor(limit = 10_000) {
    super()
    this.#limit = limit
  }

  protected deliver(e: E): void {
    if (this.#done) return
    if (this.#iterators > 0 || e.type === 'end') this.#buffer.push(e)
    if (this.#buffer.length > this.#limit) this.#buffer.shift()
    if (e.type === 'end') this.#done = true
    this.#wake?.()
    this.emit(e.type, e)
    this.emit('event', e)
  }

  [Symbol.asyncIterator](): AsyncGenerator<E, void, undefined> {
    this.#iterators++
    return this.#iterate()
  }

  async *#iterate(): AsyncGenerator<E, void, undefined> {
    try {
      yield* this.#events()
    } finally {
      this.#iterators--
    }
  }

  async *#events(): AsyncGenerator<E, void, undefined> {
    for (;;) {
      const e = this.#buffer.shift()
      if (e) {
        yield e
        if (e.type === 'end') return
        continue
      }
      if (this.#done) return
      await new Promise<void>((resolve) => (this.#wake = resolve))
      this.#wake = undefined
    }
  }
}

/** How a listener stream ended: 'stopped' (stop() or the listener closed), 'netns', 'error', or a reason of
 *  the stream's own (watch: 'table-deleted'). */
interface EndEvent {
  type: 'end'
  reason: string
  error?: NftError
}

/**
 * An EventStream fed by a native listener: one loop drains its batches, hands each batch's events and losses
 * to the stream, and ends the stream when the listener ends (or stop() is called). A subclass sets up its own
 * state, then calls `listen()` with the listener it opened.
 */
export abstract class ListenerStream<E extends { type: string }, End extends E & EndEvent> extends EventStream<E> {
  /** Resolves with the end event. */
  readonly ended: Promise<End>
  #native?: NativeListener
  #stopping = false
  #ended = false

  constructor() {
    super()
    this.ended = new Promise((resolve) => this.once('end', resolve))
  }

  /** Ends the stream: the native thread exits and closes its socket (see `beforeEnd` for what waits). */
  async stop(): Promise<void> {
    this.#stopping = true
    this.#native?.close()
    await this.ended
  }

  /** stop() was called. */
  protected get stopping(): boolean {
    return this.#stopping
  }

  /** Starts draining `native` (the subclass constructor's last step). */
  protected listen(native: NativeListener): void {
    this.#native = native
    void this.#drain()
  }

  /** One batch's events, in order. */
  protected abstract onEvents(events: NativeEvent[]): void | Promise<void>

  /** Events the native queue could not hold. */
  protected abstract onLost(count: number): void

  /** Runs once the listener is closed, before the end event (a promise: the end waits for it). */
  protected beforeEnd(): void | Promise<void> {}

  /** Closes the listener and delivers the end event (once). */
  protected async end(reason: End['reason'], error?: NftError): Promise<void> {
    if (this.#ended) return
    this.#ended = true
    this.#native?.close()
    const pending = this.beforeEnd()
    if (pending) await pending
    this.deliver({ type: 'end', reason, ...(error ? { error } : {}) } as End)
  }

  async #drain(): Promise<void> {
    for (;;) {
      let batch: NativeBatch
      try {
        batch = await this.#native!.next()
      } catch (e) {
        return this.end('error', e instanceof NftError ? e : new NftError('INTERNAL', String(e)))
      }
      const handled = this.onEvents(batch.events)
      if (handled) await handled
      if (batch.dropped > 0) this.onLost(batch.dropped)
      if (batch.ended) {
        if (batch.ended.code === 'CLOSED' || this.#stopping) return this.end('stopped')
        return this.end(batch.ended.code === 'NETNS' ? 'netns' : 'error', endError(batch.ended))
      }
      if (this.#ended) return
    }
  }
}
