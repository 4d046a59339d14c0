// JsonWriter writes exactly what JSON.stringify returns, in pieces (no kernel needed).
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { JsonWriter, PIECE_CHARS, writeAll } from '../../ts/json-writer.js'

const pieces = (value: object): string[] => {
  const writer = new JsonWriter(value)
  const out: string[] = []
  for (let piece = writer.next(); piece !== undefined; piece = writer.next()) out.push(piece)
  return out
}

// Values JSON.stringify treats specially, mixed into arbitrary JSON: undefined and functions (left out
// of objects, null in arrays), Dates and other toJSON objects, boxed primitives, class instances.
class Point {
  constructor(
    readonly x: number,
    readonly y: number,
  ) {}
}
const odd = fc.oneof(
  fc.constant(undefined),
  fc.constant(() => 1),
  fc.date({ noInvalidDate: true }),
  fc.constant({ toJSON: (key: string) => `key:${key}` }),
  fc.constant(Object(7) as object),
  fc.constant(new Point(1, 2)),
  fc.constant(Object.assign(Array.from({ length: 80 }, () => [1]), { toJSON: (key: string) => `long array under ${key}` })),
  fc.constant(Object.create(null, { a: { value: 1, enumerable: true } }) as object),
  fc.double(),
)
const { value } = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    fc.jsonValue({ maxDepth: 1 }),
    odd,
    // Long arrays (past the 64 elements above which the writer walks them) at any depth.
    fc.array(tie('value'), { maxLength: 150 }),
    fc.dictionary(fc.string(), tie('value'), { maxKeys: 6 }),
  ),
}))

describe('JsonWriter', () => {
  it('writes what JSON.stringify writes, for arbitrary values', () => {
    fc.assert(
      fc.property(fc.array(value, { maxLength: 300 }), fc.dictionary(fc.string(), value, { maxKeys: 4 }), (list, extra) => {
        const doc = { ...extra, nftables: list }
        expect(writeAll(doc)).toBe(JSON.stringify(doc))
        expect(writeAll(list)).toBe(JSON.stringify(list))
      }),
      { numRuns: 300 },
    )
  })

  it('hands a large document over in pieces of about PIECE_CHARS', () => {
    const rule = (i: number) => ({ add: { rule: { family: 'bridge', table: 't', chain: `c${i % 7}`, expr: [{ counter: null }, { accept: null }] } } })
    const doc = { nftables: Array.from({ length: 20_000 }, (_, i) => rule(i)) }
    const out = pieces(doc)
    expect(out.join('')).toBe(JSON.stringify(doc))
    expect(out.length).toBeGreaterThan(10)
    expect(Math.max(...out.map((p) => p.length))).toBeLessThan(PIECE_CHARS + 200)
  })

  it('walks into one huge command too (a set of 100k elements)', () => {
    const elem = Array.from({ length: 100_000 }, (_, i) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`)
    const doc = { nftables: [{ add: { element: { family: 'ip', table: 't', name: 's', elem } } }] }
    const out = pieces(doc)
    expect(out.join('')).toBe(JSON.stringify(doc))
    expect(out.length).toBeGreaterThan(10)
  })

  it('gives toJSON the property name, as JSON.stringify does', () => {
    const seen: string[] = []
    const spy = { toJSON: (key: string) => (seen.push(key), key) }
    const doc = { nftables: [...Array.from({ length: 70 }, () => 0), spy], k: spy }
    expect(writeAll(doc)).toBe(JSON.stringify(doc))
    expect(seen).toEqual(['70', 'k', '70', 'k'])
  })

  it('throws what JSON.stringify throws: a cycle, a BigInt', () => {
    const cyclic: unknown[] = Array.from({ length: 100 }, () => 1)
    cyclic.push(cyclic)
    expect(() => JSON.stringify({ nftables: cyclic })).toThrow(TypeError)
    expect(() => writeAll({ nftables: cyclic })).toThrow(TypeError)
    const big = { nftables: [...Array.from({ length: 100 }, () => ({})), { n: 1n }] }
    expect(() => writeAll(big)).toThrow(TypeError)
    // A walked container seen again lower down (not a cycle) is fine, as in JSON.stringify.
    const shared = Array.from({ length: 100 }, (_, i) => i)
    expect(writeAll({ nftables: [shared, shared] })).toBe(JSON.stringify({ nftables: [shared, shared] }))
  })
})
