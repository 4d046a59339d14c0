// Atomicity of raw Nft batches: one invalid command anywhere leaves the ruleset byte-identical.
import { afterAll, beforeAll, expect, it } from 'vitest'
import { Nft, NftError, type NftObject, type NftStatement } from '../../ts/index.js'
import { createNetns, type Netns } from '../support/netns.js'
import { prng, report, size } from '../support/stress.js'

let ns: Netns
let nft: Nft
beforeAll(async () => {
  ns = createNetns()
  nft = new Nft({ netns: ns.name })
  await nft.run('add table bridge t\nadd chain bridge t base { type filter hook forward priority 0; policy accept; }\nadd rule bridge t base counter accept')
})
afterAll(() => {
  nft.close()
  ns.delete()
})

const seed = Number(process.env.STRESS_SEED ?? 20261123)

/** Invalid commands of every kind libnftables or the kernel rejects. */
const invalid: ((i: number) => NftObject)[] = [
  (i) => ({ add: { rule: { family: 'bridge', table: 't', chain: `missing${i}`, expr: [{ accept: null }] } } }),
  (i) => ({ add: { chain: { family: 'bridge', table: `missing${i}`, name: 'c' } } }),
  () => ({ create: { table: { family: 'bridge', name: 't' } } }),
  () => ({ add: { rule: { family: 'bridge', table: 't', chain: 'base', expr: [{ bogus: null } as unknown as NftStatement] } } }),
  () => ({ delete: { chain: { family: 'bridge', table: 't', name: 'base2' } } }),
]

function validCommand(rand: () => number, batch: number, i: number): NftObject {
  const chain = `c${batch}_${i}`
  return rand() < 0.5
    ? { add: { chain: { family: 'bridge', table: 't', name: chain } } }
    : { add: { rule: { family: 'bridge', table: 't', chain: 'base', expr: [{ match: { op: '==', left: { meta: { key: 'iifname' } }, right: `v${batch}x${i}` } }, { drop: null }] } } }
}

it('batches with one invalid command at a random position change nothing, every time', async () => {
  const rand = prng(seed)
  const batches = size(200, 1000)
  const before = ns.ruleset()
  let located = 0
  for (let b = 0; b < batches; b++) {
    const length = 2 + Math.floor(rand() * 30)
    const bad = Math.floor(rand() * length)
    const commands = Array.from({ length }, (_, i) => validCommand(rand, b, i))
    commands[bad] = invalid[Math.floor(rand() * invalid.length)]!(b)
    const error = await nft.runJson({ nftables: commands }).then(
      () => undefined,
      (e: unknown) => e,
    )
    expect(error, `batch ${b} (seed ${seed}) was accepted`).toBeInstanceOf(NftError)
    if ((error as NftError).index === bad) located++
    // Text path too, every 4th batch: same commands as nft syntax with a missing chain.
    if (b % 4 === 0) {
      await expect(nft.run(`add chain bridge t ok${b}\nadd rule bridge t missing${b} accept\nadd chain bridge t ok${b}b`)).rejects.toMatchObject({ line: 2 })
    }
    expect(ns.ruleset(), `batch ${b} (seed ${seed}) changed the ruleset`).toBe(before)
  }
  report('atomicity', `${batches} JSON batches + ${Math.ceil(batches / 4)} text batches, ruleset byte-identical after each; failing command located in ${located}/${batches}`)
  expect(located).toBe(batches)
}, size(60_000, 900_000))
