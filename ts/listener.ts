// A native netlink listener (NativeListener): nf_tables change notifications or an nfnetlink_log group,
// read by a thread in a network namespace. Loads the addon on first use, like `Nft`, so modules that import
// this one still import fine without it.
import type { NativeListener, NativeListenerOptions } from '../binding.js'
import { NftError } from './errors.js'
import { loadNative } from './native.js'

export type { NativeBatch, NativeEvent, NativeListener } from '../binding.js'

/** Starts a listener; throws its start error (NETNS, EPERM, ...) as an NftError. */
export function openListener(options: NativeListenerOptions): NativeListener {
  const { NativeListener } = loadNative()
  const listener = new NativeListener(options)
  const e = listener.startError
  if (e) throw new NftError(e.code, `${e.code}: ${e.message}`, { errno: e.errno ?? undefined, detail: e.detail })
  return listener
}
