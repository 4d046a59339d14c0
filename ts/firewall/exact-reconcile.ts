// Reconciling one VM's elements in the exact table (issue 15): what the tap holds (listed, or what the engine
// wrote) against what its policy wants, as drift and as the element changes that make it so. Only what
// differs is deleted and added, so a one-rule change of a VM touches that rule's elements, and every element
// left alone keeps its counter. Pure: no I/O.
import type { NftCommand } from '../schema.js'
import type { ExactPolicy } from './exact-rules.js'
import { elementCommands, shapesOf, type ExactShapes, type ExactTableElement, type ListedExactElement } from './exact-table.js'

/** An element's identity in its map: the map and the key (a port listed as text and one compiled as a number
 *  are the same key). */
const idOf = (e: { map: string; key: readonly (string | number)[] }): string => `${e.map} ${e.key.join(' . ')}`
const valueOf = (e: { verdict: string; comment?: string }): string => `${e.verdict} ${e.comment ?? ''}`

/** The listed elements of one tap as the table elements they are. */
export const listedAsTableElements = (listed: readonly ListedExactElement[]): ExactTableElement[] =>
  listed.map((e) => ({ map: e.map, key: e.key, verdict: e.verdict, comment: e.comment ?? '' }))

export interface ExactDrift {
  /** `<map> <key>` wanted and not held. */
  missing: string[]
  /** Held and not wanted. */
  extra: string[]
  /** Held with another verdict or comment. */
  changed: string[]
}

export interface ExactChanges extends ExactDrift {
  del: ExactTableElement[]
  add: ExactTableElement[]
}

/** What differs between what a tap holds and what it should, and the deletes and adds that close the gap (a
 *  changed element is deleted and added again in the same transaction: an element's verdict cannot be updated). */
export function exactChanges(have: readonly ExactTableElement[], want: readonly ExactTableElement[]): ExactChanges {
  const held = new Map(have.map((e) => [idOf(e), e]))
  const wanted = new Map(want.map((e) => [idOf(e), e]))
  const out: ExactChanges = { missing: [], extra: [], changed: [], del: [], add: [] }
  for (const [id, e] of held) {
    const w = wanted.get(id)
    if (!w) {
      out.extra.push(id)
      out.del.push(e)
    } else if (valueOf(w) !== valueOf(e)) {
      out.changed.push(id)
      out.del.push(e)
      out.add.push(w)
    }
  }
  for (const [id, w] of wanted) {
    if (!held.has(id)) {
      out.missing.push(id)
      out.add.push(w)
    }
  }
  return out
}

/** The commands of `changes` for `tap` in `table`: deletes first (a changed key is free again for its add). */
export function exactChangeCommands(table: string, tap: string, changes: Pick<ExactChanges, 'del' | 'add'>): NftCommand[] {
  return [...(changes.del.length ? elementCommands(table, 'delete', tap, changes.del) : []), ...(changes.add.length ? elementCommands(table, 'add', tap, changes.add) : [])]
}

/** The shapes `policy` needs that the table does not look up yet (undefined: none), and the table's shapes with
 *  them: a table rewrite (exactTableCommands) has to come first, in the same transaction. */
export function shapesMissing(table: ExactShapes, policy: ExactPolicy): ExactShapes | undefined {
  const all = shapesOf([{ shapes: table }, policy])
  return all.out.size === table.out.size && all.in.size === table.in.size ? undefined : all
}
