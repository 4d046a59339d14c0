// One throwaway namespace and one Nft inside it, for a whole test file.
import { afterAll, beforeAll } from 'vitest'
import { Nft } from '../../ts/index.js'
import { createNetns, type Netns } from './netns.js'

/** Creates both in beforeAll (handing them to `bind`), closes and deletes them in afterAll. */
export function useNetnsNft(bind: (ns: Netns, nft: Nft) => void): void {
  let ns: Netns | undefined
  let nft: Nft | undefined
  beforeAll(() => {
    ns = createNetns()
    nft = new Nft({ netns: ns.name })
    bind(ns, nft)
  })
  afterAll(() => {
    nft?.close()
    ns?.delete()
  })
}
