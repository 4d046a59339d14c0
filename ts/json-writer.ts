// JSON.stringify in slices: `JsonWriter` writes exactly the text `JSON.stringify(value)` returns, a
// few milliseconds at a time, so `runJson` of a megabyte document never holds the event loop for
// the whole serialisation (a 1000 VMs × 50 rules document is 16 MB and ~100-250 ms of JSON.stringify).
//
// The value is walked only where it is large: an array of more than DESCEND_LENGTH elements, or a
// plain object or small array on the way to one (looked for DESCEND_DEPTH levels down), is written
// element by element; every other value is one JSON.stringify call (a rule: a few microseconds).
// Values with a `toJSON` method, boxed primitives and class instances are never walked. The one
// difference from JSON.stringify: a getter on a walked path may be read more than once.

/** Arrays longer than this are written one element at a time. */
const DESCEND_LENGTH = 64
/** How deep below a value to look for such an array. */
const DESCEND_DEPTH = 4
/** Size of the pieces `next()` returns, in UTF-16 code units (~64 KiB: well under a millisecond). */
export const PIECE_CHARS = 64 * 1024

export class JsonWriter {
  readonly #parts: Generator<string, void, undefined>
  #done = false

  constructor(value: object) {
    this.#parts = writeRoot(value)
  }

  /**
   * The next piece of the text, about PIECE_CHARS long (the last one may be shorter), or
   * `undefined` once everything has been returned. Throws what JSON.stringify would (a `TypeError`
   * for a BigInt or a cycle, whatever a getter or `toJSON` throws); the writer is done after that.
   */
  next(): string | undefined {
    if (this.#done) return undefined
    const parts: string[] = []
    let length = 0
    try {
      while (length < PIECE_CHARS) {
        const part = this.#parts.next()
        if (part.done) {
          this.#done = true
          break
        }
        parts.push(part.value)
        length += part.value.length
      }
    } catch (e) {
      this.#done = true
      throw e
    }
    if (parts.length === 0) return undefined
    return parts.length === 1 ? parts[0]! : parts.join('')
  }
}

/** The whole text at once: what JSON.stringify returns (`undefined` where it does). */
export function writeAll(value: object): string | undefined {
  const writer = new JsonWriter(value)
  const pieces: string[] = []
  for (let piece = writer.next(); piece !== undefined; piece = writer.next()) pieces.push(piece)
  return pieces.length === 0 ? undefined : pieces.join('')
}

function* writeRoot(value: object): Generator<string, void, undefined> {
  if (walkable(value)) {
    yield* writeContainer(value, [])
    return
  }
  const text = JSON.stringify(value) as string | undefined
  if (text !== undefined) yield text
}

/** Arrays and plain objects without `toJSON`: what JSON.stringify serialises by enumerating them. */
function walkable(value: unknown): value is object {
  if (value === null || typeof value !== 'object') return false
  if (typeof (value as { toJSON?: unknown }).toJSON === 'function') return false
  if (Array.isArray(value)) return true
  const proto: unknown = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

/** Whether `value` is, or holds within `depth` levels, an array long enough to write in pieces. */
function large(value: unknown, depth: number): boolean {
  if (!walkable(value)) return false
  if (Array.isArray(value)) {
    if (value.length > DESCEND_LENGTH) return true
    if (depth === 0) return false
    for (let i = 0; i < value.length; i++) if (large(value[i], depth - 1)) return true
    return false
  }
  if (depth === 0) return false
  for (const key in value) {
    if (Object.prototype.hasOwnProperty.call(value, key) && large((value as Record<string, unknown>)[key], depth - 1)) return true
  }
  return false
}

/** JSON.stringify's text of `holder[key]` when it is not walked; `undefined` where it writes nothing. */
function leaf(value: unknown, key: string): string | undefined {
  if (value !== null && typeof value === 'object' && typeof (value as { toJSON?: unknown }).toJSON === 'function') {
    // toJSON receives the property name: serialise it under its own key, then cut the wrapper off.
    const wrapped = JSON.stringify({ [key]: value }) as string
    return wrapped === '{}' ? undefined : wrapped.slice(JSON.stringify(key).length + 2, -1)
  }
  return JSON.stringify(value) as string | undefined
}

function* writeContainer(value: object, ancestors: object[]): Generator<string, void, undefined> {
  if (ancestors.includes(value)) throw new TypeError('Converting circular structure to JSON')
  ancestors.push(value)
  if (Array.isArray(value)) {
    const items = value as unknown[]
    let out = '['
    for (let i = 0; i < items.length; i++) {
      const item = items[i]
      if (i > 0) out += ','
      if (large(item, DESCEND_DEPTH)) {
        yield out
        out = ''
        yield* writeContainer(item as object, ancestors)
      } else {
        out += leaf(item, String(i)) ?? 'null'
        yield out
        out = ''
      }
    }
    yield out + ']'
  } else {
    const record = value as Record<string, unknown>
    let out = '{'
    let first = true
    for (const key of Object.keys(record)) {
      const item = record[key]
      if (large(item, DESCEND_DEPTH)) {
        yield `${out}${first ? '' : ','}${JSON.stringify(key)}:`
        out = ''
        first = false
        yield* writeContainer(item as object, ancestors)
      } else {
        const text = leaf(item, key)
        if (text === undefined) continue
        out += `${first ? '' : ','}${JSON.stringify(key)}:${text}`
        first = false
        yield out
        out = ''
      }
    }
    yield out + '}'
  }
  ancestors.pop()
}
