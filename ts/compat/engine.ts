// The VmFirewall (and Nft) behind a facade. Facades created without an `nft` share one engine per
// namespace, table and conntrack mode, the way Infinization's many `new NftablesService()` shared one
// process-wide lock: the engine's per-VM scheduling then covers all of them.
import { Nft } from '../nft.js'
import { VmFirewall } from '../firewall/vm-firewall.js'
import type { ConntrackMode } from '../firewall/model.js'

export interface Engine {
  nft: Nft
  fw: VmFirewall
  release(): void
}

interface Shared {
  nft: Nft
  fw: VmFirewall
  refs: number
}

const shared = new Map<string, Shared>()

export function acquireEngine(opts: { nft?: Nft; netns?: string; table: string; conntrack: ConntrackMode }): Engine {
  if (opts.nft) {
    const fw = new VmFirewall(opts.nft, { table: opts.table, conntrack: opts.conntrack })
    return { nft: opts.nft, fw, release: () => undefined }
  }
  const key = `${opts.netns ?? ''}\0${opts.table}\0${opts.conntrack}`
  let s = shared.get(key)
  if (!s || s.nft.closed) {
    const nft = new Nft(opts.netns !== undefined ? { netns: opts.netns } : {})
    s = { nft, fw: new VmFirewall(nft, { table: opts.table, conntrack: opts.conntrack }), refs: 0 }
    shared.set(key, s)
  }
  s.refs++
  const entry = s
  let released = false
  return {
    nft: entry.nft,
    fw: entry.fw,
    release: () => {
      if (released) return
      released = true
      if (--entry.refs === 0) {
        if (shared.get(key) === entry) shared.delete(key)
        entry.nft.close()
      }
    },
  }
}
