// A child process speaking one JSON object per line each way (the CLI and Python drivers).
import { spawn, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { killChild, trackChild } from './netns.js'

export class LineProcess {
  readonly child: ChildProcess
  #waiters: ((msg: Record<string, unknown>) => void)[] = []
  #queue: Record<string, unknown>[] = []
  #stderr = ''
  #exited = false
  #nextId = 1

  constructor(cmd: string, args: string[]) {
    this.child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] })
    trackChild(this.child)
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      let msg: Record<string, unknown>
      try {
        msg = JSON.parse(line) as Record<string, unknown>
      } catch {
        return
      }
      const w = this.#waiters.shift()
      if (w) w(msg)
      else this.#queue.push(msg)
    })
    this.child.stderr!.on('data', (d: Buffer) => {
      this.#stderr = (this.#stderr + d.toString()).slice(-4000)
    })
    this.child.on('exit', () => {
      this.#exited = true
      for (const w of this.#waiters.splice(0)) w({ ok: false, error: `driver exited: ${this.#stderr.trim()}` })
    })
  }

  /** Next message (the first one is the driver's `ready`). */
  next(timeoutMs = 120_000): Promise<Record<string, unknown>> {
    const queued = this.#queue.shift()
    if (queued) return Promise.resolve(queued)
    if (this.#exited) return Promise.resolve({ ok: false, error: `driver exited: ${this.#stderr.trim()}` })
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        const i = this.#waiters.indexOf(done)
        if (i >= 0) this.#waiters.splice(i, 1)
        resolve({ ok: false, error: `driver timeout after ${timeoutMs} ms` })
      }, timeoutMs)
      const done = (m: Record<string, unknown>) => {
        clearTimeout(timer)
        resolve(m)
      }
      this.#waiters.push(done)
    })
  }

  async request(req: Record<string, unknown>, timeoutMs?: number): Promise<Record<string, unknown>> {
    const id = this.#nextId++
    this.child.stdin!.write(JSON.stringify({ ...req, id }) + '\n')
    return this.next(timeoutMs)
  }

  close(): void {
    try {
      this.child.stdin!.end()
    } catch {
      // ignore
    }
    const c = this.child
    setTimeout(() => killChild(c), 2000).unref()
  }
}
