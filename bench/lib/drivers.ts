// The paths compared, each able to run the same batch of commands inside one namespace:
//   spawn    - `nft` spawned with an argv array per command (Infinization's executor)
//   nft-f    - `nft -f -` once per transaction, script on stdin
//   lib-text - this library, Nft.run(text)
//   lib-json - this library, Nft.runJson(doc)      (JSON.stringify of the document included)
//   py-text  - python3-nftables Nftables.cmd(text)  (in-process, timed inside Python)
//   py-json  - python3-nftables Nftables.json_cmd(doc)
//   vmfw     - VmFirewall operations (when ts/firewall provides it)
import { existsSync } from 'node:fs'
import path from 'node:path'
import { Nft } from '../../ts/index.js'
import type { Batch } from './gen.js'
import { LineProcess } from './lineproc.js'

export { PATHS, PATH_LABEL, type PathId } from './paths.js'
import type { PathId } from './paths.js'

export const PYTHON = process.env.BENCH_PYTHON ?? '/usr/bin/python3'
const here = __dirname

export function now(): bigint {
  return process.hrtime.bigint()
}
export function msSince(t0: bigint): number {
  return Number(process.hrtime.bigint() - t0) / 1e6
}

/** Every driver bound to one namespace. */
export class Drivers {
  readonly nft: Nft
  readonly cli: LineProcess
  py?: LineProcess
  pyError?: string

  private constructor(readonly netns: string) {
    this.nft = new Nft({ netns })
    this.cli = new LineProcess('ip', ['netns', 'exec', netns, process.execPath, path.join(here, '../drivers/cli-driver.mjs')])
  }

  static async open(netns: string, opts: { python: boolean }): Promise<Drivers> {
    const d = new Drivers(netns)
    const ready = await d.cli.next(30_000)
    if (ready.ready !== true) throw new Error(`CLI driver did not start: ${JSON.stringify(ready)}`)
    if (opts.python) {
      if (!existsSync(PYTHON)) {
        d.pyError = `${PYTHON} not found`
      } else {
        d.py = new LineProcess('ip', ['netns', 'exec', netns, PYTHON, path.join(here, '../drivers/py-driver.py')])
        const r = await d.py.next(30_000)
        if (r.ready !== true) {
          d.pyError = String(r.error ?? 'python driver did not start')
          d.py.close()
          d.py = undefined
        }
      }
    }
    return d
  }

  close(): void {
    this.nft.close()
    this.cli.close()
    this.py?.close()
  }

  /** Untimed: lets the kernel finish deferred nf_tables frees (see runRounds). An empty input as a file, not
   *  `-f /dev/null`: nft 1.0.7-1.0.9 refuses a device ("Not a regular file"). */
  async settle(): Promise<void> {
    await this.nftF('')
  }

  async spawnArgv(argvs: string[][], flags: string[] = []): Promise<number> {
    const r = await this.cli.request({ mode: 'argv', argvs, flags }, 600_000)
    if (r.ok !== true) throw new Error(`spawn path failed: ${String(r.error)}`)
    return r.ms as number
  }

  async nftF(text: string, flags: string[] = []): Promise<number> {
    const r = await this.cli.request({ mode: 'stdin', text, flags }, 600_000)
    if (r.ok !== true) throw new Error(`nft -f path failed: ${String(r.error)}`)
    return r.ms as number
  }

  async libText(text: string): Promise<number> {
    const t0 = now()
    await this.nft.run(text)
    return msSince(t0)
  }

  async libJson(doc: object): Promise<number> {
    const t0 = now()
    await this.nft.runJson(doc as never)
    return msSince(t0)
  }

  async pyText(text: string): Promise<number> {
    if (!this.py) throw new Error(`python3-nftables unavailable: ${this.pyError}`)
    const r = await this.py.request({ mode: 'text', text, reps: 1 }, 600_000)
    if (r.ok !== true) throw new Error(`python text path failed: ${String(r.error)}`)
    return r.median as number
  }

  async pyJson(doc: object): Promise<number> {
    if (!this.py) throw new Error(`python3-nftables unavailable: ${this.pyError}`)
    const r = await this.py.request({ mode: 'json', doc, reps: 1 }, 600_000)
    if (r.ok !== true) throw new Error(`python json path failed: ${String(r.error)}`)
    return r.median as number
  }

  /** Runs `b` through path `p` once and returns the wall time in ms. */
  async runBatch(p: PathId, b: Batch): Promise<number> {
    switch (p) {
      case 'spawn':
        return this.spawnArgv(b.argvs)
      case 'nft-f':
        return this.nftF(b.text)
      case 'lib-text':
        return this.libText(b.text)
      case 'lib-json':
        return this.libJson(b.json)
      case 'py-text':
        return this.pyText(b.text)
      case 'py-json':
        return this.pyJson(b.json)
      default:
        throw new Error(`path ${p} cannot run a raw batch`)
    }
  }
}
