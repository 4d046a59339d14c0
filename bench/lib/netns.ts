// Throwaway network namespaces and child processes for the benchmark, with cleanup on exit, error and
// signals. Only namespaces this process created are deleted (plus, at start, `nftb-<pid>-*` ones left by a
// benchmark process that no longer exists). Children are ended by their own pid.
import { execFileSync, type ChildProcess } from 'node:child_process'

export const NS_PREFIX = 'nftb'

const namespaces = new Set<string>()
const children = new Set<ChildProcess>()
let counter = 0
let installed = false

export function sh(cmd: string, args: string[], input?: string): string {
  return execFileSync(cmd, args, { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'], maxBuffer: 256 << 20 })
}

/** Creates a namespace `nftb-<pid>-<n>-<tag>` with loopback up and registers it for cleanup. */
export function createNetns(tag: string): string {
  installCleanup()
  const name = `${NS_PREFIX}-${process.pid}-${++counter}-${tag}`.slice(0, 60)
  sh('ip', ['netns', 'add', name])
  namespaces.add(name)
  sh('ip', ['-n', name, 'link', 'set', 'lo', 'up'])
  return name
}

export function deleteNetns(name: string): void {
  if (!namespaces.delete(name)) return
  try {
    sh('ip', ['netns', 'delete', name])
  } catch {
    // already gone
  }
}

export function trackChild(child: ChildProcess): void {
  installCleanup()
  children.add(child)
  child.once('exit', () => children.delete(child))
}

export function killChild(child: ChildProcess): void {
  children.delete(child)
  if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
    try {
      process.kill(child.pid, 'SIGTERM')
    } catch {
      // gone
    }
  }
}

/** Synchronous cleanup (safe in 'exit' handlers). */
export function cleanupAll(): void {
  for (const c of [...children]) killChild(c)
  for (const ns of [...namespaces]) deleteNetns(ns)
}

/** Deletes `nftb-<pid>-…` namespaces whose benchmark process is gone (left by a killed run). */
export function removeStaleNamespaces(): string[] {
  const removed: string[] = []
  let list = ''
  try {
    list = sh('ip', ['netns', 'list'])
  } catch {
    return removed
  }
  for (const line of list.split('\n')) {
    const name = line.split(' ')[0] ?? ''
    const m = /^nftb-(\d+)-/.exec(name)
    if (!m) continue
    const pid = Number(m[1])
    if (pid === process.pid) continue
    let alive = true
    try {
      process.kill(pid, 0)
    } catch {
      alive = false
    }
    if (alive) continue
    try {
      sh('ip', ['netns', 'delete', name])
      removed.push(name)
    } catch {
      // ignore
    }
  }
  return removed
}

function installCleanup(): void {
  if (installed) return
  installed = true
  process.on('exit', cleanupAll)
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      process.stderr.write(`\nbench: ${sig}, deleting namespaces\n`)
      cleanupAll()
      process.exit(130)
    })
  }
  process.on('uncaughtException', (e) => {
    process.stderr.write(`bench: uncaught ${e instanceof Error ? e.stack : String(e)}\n`)
    cleanupAll()
    process.exit(1)
  })
  process.on('unhandledRejection', (e) => {
    process.stderr.write(`bench: unhandled rejection ${e instanceof Error ? e.stack : String(e)}\n`)
    cleanupAll()
    process.exit(1)
  })
}
