// One throwaway namespace and one Nft inside it, for a whole test file (or, with `each`, for each test).
import { afterAll, afterEach, beforeAll, beforeEach } from 'vitest'
import { Nft } from '../../ts/index.js'
import { createNetns, type Netns } from './netns.js'

/** Creates both in beforeAll (beforeEach with `each`), handing them to `bind`; closes and deletes them in
 *  afterAll (afterEach). Call it at the level (file or describe) the pair is for. */
export function useNetnsNft(bind: (ns: Netns, nft: Nft) => void, options: { each?: boolean } = {}): void {
  const [setUp, tearDown] = options.each ? [beforeEach, afterEach] : [beforeAll, afterAll]
  let ns: Netns | undefined
  let nft: Nft | undefined
  setUp(() => {
    ns = createNetns()
    nft = new Nft({ netns: ns.name })
    bind(ns, nft)
  })
  tearDown(() => {
    nft?.close()
    ns?.delete()
  })
}
