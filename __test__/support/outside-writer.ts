// Another process writing a namespace's ruleset, already running and with libnftables loaded (python3-nftables),
// so a test can time what follows a commit from the commit itself: `nft` started per command spends most of its
// time before the commit (start-up, parse, cache refresh; ~1 s per command under the emulator).
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { createInterface } from 'node:readline'

/** Reads one command per line, runs it, answers `ok <CLOCK_MONOTONIC ns>` (taken when the kernel acknowledged the
 *  batch, which is after it sent its notifications) or `err <message>`. */
const SCRIPT = `
import json, sys, time, nftables
n = nftables.Nftables()
for line in sys.stdin:
    rc, _, err = n.cmd(json.loads(line))
    t = time.monotonic_ns()
    print(('ok %d' % t) if rc == 0 else ('err ' + err.strip().replace('\\n', ' ')), flush=True)
`

export interface OutsideWriter {
  /** Runs `command` (nft syntax) in that process; resolves with the monotonic time (ns, comparable with
   *  `process.hrtime.bigint()`) at which its commit was acknowledged; rejects with nft's error. */
  run(command: string): Promise<bigint>
  close(): Promise<void>
}

/** Starts a writer in `netns`; its task name (as the kernel reports the committer) is `python3`. */
export function outsideWriter(netns: string): OutsideWriter {
  const child: ChildProcessWithoutNullStreams = spawn('ip', ['netns', 'exec', netns, '/usr/bin/python3', '-c', SCRIPT], { stdio: 'pipe' })
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
  const waiting: { resolve: (t: bigint) => void; reject: (e: Error) => void }[] = []
  let dead = false
  const gone = (): Error => new Error(`outside writer exited: ${stderr.trim()}`)
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()))
  void exited.then(() => {
    dead = true
    for (const w of waiting.splice(0)) w.reject(gone())
  })
  createInterface({ input: child.stdout }).on('line', (line) => {
    const w = waiting.shift()
    if (!w) return
    if (line.startsWith('ok ')) w.resolve(BigInt(line.slice(3)))
    else w.reject(new Error(`outside writer: ${line.replace(/^err /, '')}`))
  })
  return {
    run: (command) =>
      new Promise<bigint>((resolve, reject) => {
        if (dead) return reject(gone())
        waiting.push({ resolve, reject })
        child.stdin.write(`${JSON.stringify(command)}\n`)
      }),
    close: async () => {
      child.stdin.end()
      await exited
    },
  }
}
