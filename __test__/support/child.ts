// Runs a snippet against the built package (dist/) in a separate Node process, e.g. without
// privileges or inside a worker. Test-only: the library itself never spawns anything.
import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'

export const repoRoot = join(__dirname, '..', '..')
export const distEntry = join(repoRoot, 'dist', 'index.js')

/** Makes sure dist/ exists (npm test builds it; a lone `vitest run` may not have). */
export function ensureDist(): void {
  if (!existsSync(distEntry)) execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: repoRoot })
}

/** Runs `node -e script` under `prefix` (e.g. ['unshare', '--user']) and parses the JSON it prints last. */
export function runNode(script: string, prefix: string[] = []): unknown {
  const argv = [...prefix, process.execPath, '-e', script]
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', cwd: repoRoot, timeout: 30_000 })
  if (r.status !== 0) throw new Error(`child failed (${r.status}): ${r.stderr}`)
  const lines = r.stdout.trim().split('\n')
  return JSON.parse(lines[lines.length - 1]!)
}
