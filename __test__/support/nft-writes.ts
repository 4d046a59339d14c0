// Counting (and failing) the write transactions an Nft sends. The firewall writes nft text through `run()`
// when its writer knows every command of a batch, JSON through `runJson()` otherwise, and a VM's chains as
// netlink messages through `commitBatch()` (issue 15), so a count of writes looks at all three; a `run`/`runJson`
// batch is a write when it holds anything but `list` commands, a `commitBatch` always.
import { vi } from 'vitest'
import type { Nft, NftablesJson } from '../../ts/index.js'

/** Whether a `run`/`runJson` call with this argument commits something (not only `list` commands). */
export function isWriteCall(method: 'run' | 'runJson', arg: unknown): boolean {
  if (method === 'runJson') {
    const cmds = typeof arg === 'string' ? (JSON.parse(arg) as NftablesJson).nftables : (arg as NftablesJson).nftables
    return cmds.some((c) => !('list' in c) && !('metainfo' in c))
  }
  return String(arg)
    .split('\n')
    .map((l) => l.trim())
    .some((l) => l !== '' && !l.startsWith('#') && !/^list\s/.test(l))
}

/** Wraps `run`, `runJson` and `commitBatch` of `nft`: `onWrite` sees each write before it is sent (it may
 *  throw instead). */
function wrapWrites(nft: Nft, onWrite: (method: 'run' | 'runJson' | 'commitBatch') => void): () => void {
  const spies = (['run', 'runJson', 'commitBatch'] as const).map((m) => {
    const orig = (nft[m] as (...a: unknown[]) => Promise<unknown>).bind(nft)
    return vi.spyOn(nft, m).mockImplementation((async (...args: unknown[]) => {
      if (m === 'commitBatch' || isWriteCall(m, args[0])) onWrite(m)
      return orig(...args)
    }) as never)
  })
  return () => spies.forEach((s) => s.mockRestore())
}

/** Counts write transactions sent through `nft` from now on (until `restore()`, or vi.restoreAllMocks). */
export function countWrites(nft: Nft): { writes: () => number; restore: () => void } {
  let writes = 0
  const restore = wrapWrites(nft, () => writes++)
  return { writes: () => writes, restore }
}

/** Write transactions sent through `nft` while `fn` runs. */
export async function writesDuring(nft: Nft, fn: () => Promise<unknown>): Promise<number> {
  const c = countWrites(nft)
  try {
    await fn()
  } finally {
    c.restore()
  }
  return c.writes()
}

/** Every write through `nft` throws `error()` instead of reaching libnftables (reads still go through). */
export function failWrites(nft: Nft, error: () => Error): () => void {
  return wrapWrites(nft, () => {
    throw error()
  })
}
