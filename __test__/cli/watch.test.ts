// `nftables-node watch` against a throwaway namespace: JSON lines of drift and repair.
import { spawn } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { vmChainNames } from '../../ts/firewall/index.js'
import { ensureDist, repoRoot } from '../support/child.js'
import { createNetns, type Netns } from '../support/netns.js'

const cli = join(repoRoot, 'dist', 'cli', 'main.js')
let ns: Netns
let dir: string
beforeAll(() => {
  ensureDist()
  ns = createNetns('nftwc')
  dir = mkdtempSync(join(tmpdir(), 'nftables-node-watch-'))
})
afterAll(() => ns.delete())

describe('nftables-node watch', () => {
  it('--repair syncs the spec, prints an outside change as a JSON line and repairs it', async () => {
    const file = join(dir, 'spec.json')
    writeFileSync(file, JSON.stringify({ vmId: 'w1', tap: 'vnet-w1', ipv4: ['10.2.0.2'], defaultAction: 'drop', rules: [] }))
    const child = spawn(process.execPath, [cli, '--netns', ns.name, '--json', 'watch', '--no-drops', '--repair', file, '--duration', '4'], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve))
    // Ready once the spec is in the kernel (the watch starts right after the sync).
    const chain = vmChainNames('w1').out
    for (let i = 0; i < 100 && !ns.exec('nft', ['list', 'tables']).includes('infinization'); i++) await new Promise((r) => setTimeout(r, 50))
    await new Promise((r) => setTimeout(r, 500))
    ns.exec('nft', ['flush', 'chain', 'bridge', 'infinization', chain])
    expect(await exited).toBe(0)
    const events = stdout.trim().split('\n').map((l) => JSON.parse(l) as { type: string; vms?: string[]; result?: { vms: string[] } })
    expect(events.map((e) => e.type)).toEqual(['drift', 'repaired', 'end'])
    expect(events[0]!.vms).toEqual(['w1'])
    expect(events[1]!.result!.vms).toEqual(['w1'])
    expect(ns.exec('nft', ['list', 'chain', 'bridge', 'infinization', chain])).toContain('comment "d:')
  })

  it('the demo shows the blocked probes by VM and rule, and a drift repaired live', async () => {
    const r = await new Promise<{ code: number | null; stdout: string }>((resolve) => {
      const child = spawn(process.execPath, [cli, '--json', 'demo'], { stdio: ['ignore', 'pipe', 'inherit'] })
      let stdout = ''
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
      child.on('exit', (code) => resolve({ code, stdout }))
    })
    expect(r.code).toBe(0)
    const out = JSON.parse(r.stdout) as { blocked: { vmId?: string; rule: string; dstPort?: number }[]; drift: { type: string; vms?: string[] }[]; verified: boolean }
    expect(out.blocked).toContainEqual(expect.objectContaining({ vmId: 'web', rule: 'web-no-telnet', dstPort: 23 }))
    expect(out.blocked).toContainEqual(expect.objectContaining({ vmId: 'client', rule: 'builtin:ip-spoof' }))
    expect(out.drift.map((e) => e.type)).toEqual(['drift', 'repaired', 'end'])
    expect(out.verified).toBe(true)
  })
})
