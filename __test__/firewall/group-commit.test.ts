// GroupCommit without a kernel: grouping, splitting, and items whose decision no longer holds (issue 14).
import { describe, expect, it } from 'vitest'
import { GroupCommit, StaleDecision } from '../../ts/firewall/group-commit.js'

/** A group commit over a numbered view; `fail` decides which batches the fake kernel refuses. */
function harness(fail: (commands: unknown[], attempt: number) => Error | undefined = () => undefined) {
  const batches: { commands: unknown[]; view: number; attempt: number }[] = []
  let view = 1
  const g = new GroupCommit<number>(
    (attempt) => (attempt === 1 ? view : ++view),
    async (commands, v, attempt) => {
      const e = fail(commands, attempt)
      if (e) throw e
      batches.push({ commands, view: v, attempt })
    },
    (e) => (e as { code?: string }).code === 'GENERATION_MOVED',
    3,
  )
  return { g, batches }
}

const conflict = () => Object.assign(new Error('moved'), { code: 'GENERATION_MOVED' })

describe('GroupCommit', () => {
  it('an item decided in a view that no longer holds is taken out unsent; the others of its group still commit', async () => {
    // A first write in flight, so that "a" and "b" queue behind it and go out as one group. That group's first
    // attempt is refused (someone else committed); the retry's view (2) is not the one "a" was decided in (1):
    // "a" gets StaleDecision and is in no batch, "b" (no decision) commits from view 2.
    const { g, batches } = harness((commands, attempt) => (commands.includes('a') && attempt === 1 ? conflict() : undefined))
    const first = g.submit({ keys: ['f'], build: () => ['f'] })
    const a = g.submit({ keys: ['a'], build: () => ['a'], valid: (v) => v === 1 })
    const b = g.submit({ keys: ['b'], build: (v) => [`b@${v}`] })
    const [rf, ra, rb] = await Promise.allSettled([first, a, b])
    expect(rf.status).toBe('fulfilled')
    expect(ra.status === 'rejected' && ra.reason).toBeInstanceOf(StaleDecision)
    expect(rb.status).toBe('fulfilled')
    expect(batches).toEqual([
      { commands: ['f'], view: 1, attempt: 1 },
      { commands: ['b@2'], view: 2, attempt: 2 },
    ])
  })

  it('an item whose view still holds is sent as built; a failing group is split so each gets its own outcome', async () => {
    const bad = new Error('EINVAL')
    const { g, batches } = harness((commands) => (commands.includes('x') ? bad : undefined))
    const first = g.submit({ keys: ['k0'], build: () => ['first'], valid: (v) => v === 1 })
    // Queued while the first is in flight: grouped, then split when "x" fails.
    const x = g.submit({ keys: ['k1'], build: () => ['x'] })
    const y = g.submit({ keys: ['k2'], build: () => ['y'], valid: (v) => v === 1 })
    const r = await Promise.allSettled([first, x, y])
    expect(r.map((s) => s.status)).toEqual(['fulfilled', 'rejected', 'fulfilled'])
    expect(r[1]!.status === 'rejected' && r[1]!.reason).toBe(bad)
    expect(batches.map((b) => b.commands)).toEqual([['first'], ['y']])
  })
})
