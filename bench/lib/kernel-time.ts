// The kernel's time for one nft batch: `nft -f` of it in namespace `ns` under strace, and the duration of its
// largest sendmsg (the batch; the others are the cache dumps' requests). For the results scripts that take a
// commit apart; the benchmark's own kernel floor sends its batch without libnftables (levers.ts).
import { spawnSync } from 'node:child_process'
import { rmSync, writeFileSync } from 'node:fs'

/** `text`: nft text, or a JSON document (`nft -j -f`). */
export function batchKernelMs(ns: string, text: string, file = `/tmp/kernel-time-${process.pid}.nft`, json = false): number {
  writeFileSync(file, text)
  const p = spawnSync('ip', ['netns', 'exec', ns, 'strace', '-T', '-e', 'trace=sendmsg', 'nft', ...(json ? ['-j'] : []), '-f', file], { encoding: 'utf8' })
  rmSync(file, { force: true })
  if (p.status !== 0) throw new Error(p.stderr)
  let best = { bytes: 0, s: 0 }
  for (const m of p.stderr.matchAll(/^sendmsg\(.*\) = (\d+) <([\d.]+)>/gm)) if (Number(m[1]) > best.bytes) best = { bytes: Number(m[1]), s: Number(m[2]) }
  return best.s * 1000
}
