// Throwaway network namespaces for kernel tests. Test code may spawn `ip`; the library never does.
import { execFileSync, spawnSync, type SpawnSyncReturns } from 'node:child_process'
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

let counter = 0

/**
 * `input` as a child's stdin through a file: Node hands `input` to a child over a socket, and nft 1.0.7-1.0.9
 * (Ubuntu 24.04) refuses `nft -f -` when its stdin is a socket ("Not a regular file: /dev/stdin").
 */
export function withStdinFile<T>(input: string | undefined, run: (stdin: number | 'pipe') => T): T {
  if (input === undefined) return run('pipe')
  const dir = mkdtempSync(join(tmpdir(), 'nftn-stdin-'))
  const path = join(dir, 'input')
  writeFileSync(path, input)
  const fd = openSync(path, 'r')
  rmSync(dir, { recursive: true })
  try {
    return run(fd)
  } finally {
    closeSync(fd)
  }
}

/** Runs a command and returns its stdout; throws with stderr on failure. */
export function sh(cmd: string, args: string[], opts: { input?: string } = {}): string {
  return withStdinFile(opts.input, (stdin) => execFileSync(cmd, args, { encoding: 'utf8', stdio: [stdin, 'pipe', 'pipe'] }))
}

/** spawnSync with `input` on stdin as `withStdinFile` gives it (its status and output, never a throw). */
export function spawnWithInput(cmd: string, args: string[], input: string): SpawnSyncReturns<string> {
  return withStdinFile(input, (stdin) => spawnSync(cmd, args, { encoding: 'utf8', stdio: [stdin, 'pipe', 'pipe'] }))
}

export interface Netns {
  /** Name under /var/run/netns, usable as `new Nft({ netns: name })`. */
  readonly name: string
  /** Runs a program inside the namespace (`ip netns exec`). */
  exec(cmd: string, args?: string[], opts?: { input?: string }): string
  /** The namespace's ruleset as `nft list ruleset` prints it (test-side oracle, not the library). */
  ruleset(): string
  delete(): void
}

/** Creates a fresh, uniquely named namespace with loopback up. Delete it in `afterEach`/`finally`. */
export function createNetns(prefix = 'nftn'): Netns {
  const name = `${prefix}-${process.pid}-${++counter}-${Math.random().toString(36).slice(2, 6)}`
  sh('ip', ['netns', 'add', name])
  sh('ip', ['-n', name, 'link', 'set', 'lo', 'up'])
  return {
    name,
    exec: (cmd, args = [], opts = {}) => sh('ip', ['netns', 'exec', name, cmd, ...args], opts),
    ruleset: () => sh('ip', ['netns', 'exec', name, 'nft', 'list', 'ruleset']),
    delete: () => {
      try {
        sh('ip', ['netns', 'delete', name])
      } catch {
        // already gone
      }
    },
  }
}

/** Names of namespaces that currently exist (to check that tests leave nothing behind). */
export function listNetns(): string[] {
  return sh('ip', ['netns', 'list'])
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter(Boolean)
}
