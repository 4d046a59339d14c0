import { execFile } from 'node:child_process'
import path from 'node:path'
import { createNetns, deleteNetns, trackChild } from './netns.js'
import type { LagResult } from './types.js'

/** Event-loop lag and peak RSS of a fresh Node process bulk loading through the async API. */
export async function lagWorkload(vms: number, rules: number, rounds: number): Promise<LagResult> {
  const ns = createNetns('lag')
  try {
    const script = path.join(__dirname, '../child/lag.ts')
    const out = await new Promise<string>((resolve, reject) => {
      const child = execFile(
        process.execPath,
        ['--expose-gc', '--import', 'tsx', script, ns, String(vms), String(rules), String(rounds)],
        { cwd: path.join(__dirname, '../..'), maxBuffer: 16 << 20, timeout: 300_000 },
        (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout)),
      )
      trackChild(child)
    })
    const r = JSON.parse(out.trim().split('\n').pop()!) as LagResult
    r.note =
      'lag max is the median over rounds of the largest event-loop delay seen during one call (worst round in its own column); the idle control is the same wait with no call, i.e. what the machine alone does to the loop. Peak RSS is that of a fresh process: Node and tsx baseline + the generated input (text and JSON object) + libnftables buffers.'
    return r
  } finally {
    deleteNetns(ns)
  }
}
