// Throwaway network namespaces for kernel tests. Test code may spawn `ip`; the library never does.
import { execFileSync } from 'node:child_process'

let counter = 0

/** Runs a command and returns its stdout; throws with stderr on failure. */
export function sh(cmd: string, args: string[], opts: { input?: string } = {}): string {
  return execFileSync(cmd, args, { encoding: 'utf8', input: opts.input, stdio: ['pipe', 'pipe', 'pipe'] })
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
