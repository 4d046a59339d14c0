// The `nftables-node` command against a throwaway namespace.
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ensureDist, repoRoot } from '../support/child.js'
import { createNetns, type Netns } from '../support/netns.js'

const cli = join(repoRoot, 'dist', 'cli', 'main.js')
let ns: Netns
let dir: string

function nftnode(...args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 30_000 })
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr }
}

const spec = (vmId: string, tap: string, port = 80) => ({
  vmId,
  tap,
  mac: '52:54:00:aa:bb:01',
  ipv4: ['10.1.0.10'],
  defaultAction: 'drop',
  rules: [{ id: `${vmId}-http`, name: 'http', action: 'ACCEPT', direction: 'IN', priority: 100, protocol: 'tcp', dstPortStart: port, dstPortEnd: port }],
})

function writeSpec(name: string, content: unknown): string {
  const file = join(dir, name)
  writeFileSync(file, JSON.stringify(content))
  return file
}

beforeAll(() => {
  ensureDist()
  ns = createNetns()
  dir = mkdtempSync(join(tmpdir(), 'nftables-node-cli-'))
})
afterAll(() => ns.delete())

describe('nftables-node CLI', () => {
  it('--help lists the subcommands; each has its own help', () => {
    const help = nftnode('--help')
    expect(help.code).toBe(0)
    for (const sub of ['apply', 'plan', 'status', 'verify', 'export', 'restore', 'remove', 'demo']) expect(help.stdout).toContain(sub)
    const applyHelp = nftnode('apply', '--help')
    expect(applyHelp.code).toBe(0)
    expect(applyHelp.stdout).toContain('--dry-run')
  })

  it('a usage error exits 2', () => {
    expect(nftnode('apply').code).toBe(2)
    expect(nftnode('frobnicate').code).toBe(2)
    expect(nftnode('--conntrack', 'maybe', 'status').code).toBe(2)
  })

  it('plan prints the compiled commands without touching the kernel', () => {
    const file = writeSpec('plan.json', spec('vm-plan', 'vnet-plan0'))
    const before = ns.ruleset()
    const text = nftnode('plan', file)
    expect(text.code).toBe(0)
    expect(text.stdout).toContain('tcp dport 80')
    expect(text.stdout).toContain('vnet-plan0')
    const json = nftnode('--json', 'plan', file)
    const plans = JSON.parse(json.stdout) as { commands: { nftables: unknown[] }; result: { vmId: string } }[]
    expect(plans[0]!.result.vmId).toBe('vm-plan')
    expect(plans[0]!.commands.nftables.length).toBeGreaterThan(3)
    expect(ns.ruleset()).toBe(before)
  })

  it('an invalid spec exits 3, names the field, and changes nothing', () => {
    const bad = spec('vm-bad', 'vnet-bad0', 70000)
    const r = nftnode('--netns', ns.name, 'apply', writeSpec('bad.json', bad))
    expect(r.code).toBe(3)
    expect(r.stderr).toContain('dstPort')
    expect(r.stderr).toContain('vm-bad-http')
    expect(ns.ruleset()).toBe('')
  })

  it('apply --dry-run commits nothing; apply commits; --json gives the results', () => {
    const file = writeSpec('vms.json', { vms: [spec('vm-a', 'vnet-a0'), spec('vm-b', 'vnet-b0', 443)] })
    const dry = nftnode('--netns', ns.name, 'apply', '--dry-run', file)
    expect(dry.code).toBe(0)
    expect(dry.stdout).toContain('dry run')
    expect(ns.ruleset()).toBe('')
    const real = nftnode('--netns', ns.name, '--json', 'apply', file)
    expect(real.code).toBe(0)
    const results = JSON.parse(real.stdout) as { vmId: string; appliedRules: number }[]
    expect(results.map((r) => r.vmId)).toEqual(['vm-a', 'vm-b'])
    expect(ns.ruleset()).toContain('tcp dport 443')
  })

  it('status lists the VMs in the kernel with taps and counters', () => {
    const text = nftnode('--netns', ns.name, 'status')
    expect(text.code).toBe(0)
    expect(text.stdout).toMatch(/vm-a\s+vnet-a0/)
    expect(text.stdout).toMatch(/vm-b\s+vnet-b0/)
    expect(text.stdout).toContain('DROPPED (OUT/IN)')
    expect(text.stdout).toContain('GUARD ELEMS')
    const json = JSON.parse(nftnode('--netns', ns.name, '--json', 'status').stdout) as { vmId: string; taps: string[]; guardElements: number; stats: { dropped: { packets: number } } }[]
    expect(json.map((v) => v.vmId).sort()).toEqual(['vm-a', 'vm-b'])
    // Issue 15: each VM's built-ins are elements of the shared guard (ARP and NDP at least, both ways).
    expect(json.every((v) => v.guardElements >= 4)).toBe(true)
    expect(json.every((v) => typeof v.stats.dropped.packets === 'number')).toBe(true)
  })

  it('verify exits 0 without drift and 4 after an outside change', () => {
    const file = join(dir, 'vms.json')
    expect(nftnode('--netns', ns.name, 'verify', file).code).toBe(0)
    const chain = ns.ruleset().match(/chain (vm_[0-9a-f]{24}_i)/)![1]!
    ns.exec('nft', ['flush', 'chain', 'bridge', 'infinization', chain])
    const drift = nftnode('--netns', ns.name, 'verify', file)
    expect(drift.code).toBe(4)
    expect(drift.stdout).toContain('drift found')
    // apply repairs it
    expect(nftnode('--netns', ns.name, 'apply', file).code).toBe(0)
    expect(nftnode('--netns', ns.name, 'verify', file).code).toBe(0)
  })

  it('export writes an idempotent file that restore applies (twice gives the same ruleset)', () => {
    const file = join(dir, 'export.nft')
    expect(nftnode('--netns', ns.name, 'export', file).code).toBe(0)
    const before = ns.ruleset()
    expect(nftnode('--netns', ns.name, 'restore', file).code).toBe(0)
    expect(nftnode('--netns', ns.name, 'restore', file).code).toBe(0)
    expect(ns.ruleset()).toBe(before)
    expect(readFileSync(file, 'utf8')).toContain('table bridge infinization')
  })

  it('restore refuses anything but an export of the table (exit 3, the line named, nothing changed, no file contents)', () => {
    const exported = readFileSync(join(dir, 'export.nft'), 'utf8')
    ns.exec('nft', ['add table inet other; add chain inet other input { type filter hook input priority 0; policy accept; }'])
    const before = ns.ruleset()
    const lines = exported.split('\n')
    const hostile: [string, string, number][] = [
      ['flush.nft', `${lines[0]}\nflush ruleset\n${lines.slice(1).join('\n')}`, 2],
      ['other.nft', `${exported}delete table inet other\n`, lines.length],
      ['include.nft', `include "/etc/passwd"\n${exported}`, 1],
    ]
    for (const [name, text, line] of hostile) {
      const file = join(dir, name)
      writeFileSync(file, text)
      const r = nftnode('--netns', ns.name, 'restore', file)
      expect(r.code, `${name}: ${r.stderr}`).toBe(3)
      expect(r.stderr).toContain(`line ${line}:`)
      expect(r.stderr).toContain('nothing changed')
      expect(r.stderr).not.toMatch(/root:.*:0:0:/)
      expect(r.stdout).not.toContain('restored')
      expect(ns.ruleset()).toBe(before)
    }
    ns.exec('nft', ['delete', 'table', 'inet', 'other'])
  })

  it('remove deletes a VM and is idempotent', () => {
    expect(nftnode('--netns', ns.name, 'remove', 'vm-b').code).toBe(0)
    expect(nftnode('--netns', ns.name, 'remove', 'vm-b').code).toBe(0)
    expect(ns.ruleset()).not.toContain('tcp dport 443')
    expect(ns.ruleset()).toContain('tcp dport 80')
  })

  it('a missing namespace is a clear failure (exit 1)', () => {
    const r = nftnode('--netns', 'nftables-node-no-such-ns', 'export')
    expect(r.code).toBe(1)
    expect(r.stderr).toContain('NETNS')
  })
})

describe('nftables-node apply with conflicting specs', () => {
  let ns2: Netns
  beforeAll(() => {
    ns2 = createNetns()
  })
  afterAll(() => ns2.delete())
  const apply = (...args: string[]) => nftnode('--netns', ns2.name, ...args)

  it('the same vmId twice in one file: exit 3, both entries named, nothing applied', () => {
    const file = writeSpec('dup-id.json', [spec('vm-x', 'vnet-x0'), spec('vm-y', 'vnet-y0'), spec('vm-x', 'vnet-x1', 443)])
    const r = apply('apply', file)
    expect(r.code).toBe(3)
    expect(r.stderr).toContain('entries 1 and 3')
    expect(r.stderr).toContain('"vm-x"')
    expect(ns2.ruleset()).toBe('')
  })

  it('one tap on two VMs: exit 3, both entries named, nothing applied', () => {
    const file = writeSpec('dup-tap.json', { vms: [spec('vm-x', 'vnet-s0'), spec('vm-y', 'vnet-y0'), spec('vm-z', 'vnet-s0')] })
    const r = apply('apply', file)
    expect(r.code).toBe(3)
    expect(r.stderr).toContain('entries 1 (vmId "vm-x") and 3 (vmId "vm-z")')
    expect(r.stderr).toContain('"vnet-s0"')
    expect(ns2.ruleset()).toBe('')
    expect(apply('apply', '--dry-run', file).code).toBe(3)
  })

  it('a tap another VM in the kernel uses needs --takeover; the takeover is reported in text and --json', () => {
    expect(apply('apply', writeSpec('old.json', spec('vm-old', 'vnet-t0'))).code).toBe(0)
    const before = ns2.ruleset()
    const file = writeSpec('new.json', [spec('vm-keep', 'vnet-k0'), spec('vm-new', 'vnet-t0', 443)])
    for (const args of [['apply', file], ['apply', '--dry-run', file]]) {
      const r = apply(...args)
      expect(r.code, args.join(' ')).toBe(3)
      expect(r.stderr).toContain('tap "vnet-t0" of VM "vm-new" is used by VM "vm-old"')
      expect(r.stderr).toContain('--takeover')
      expect(ns2.ruleset()).toBe(before)
    }
    const dry = apply('apply', '--dry-run', '--takeover', file)
    expect(dry.code).toBe(0)
    expect(dry.stdout).toContain('takeover: tap vnet-t0 moved from VM "vm-old" (now detached) to VM "vm-new" (dry run)')
    expect(ns2.ruleset()).toBe(before)
    const json = apply('--json', 'apply', '--takeover', file)
    expect(json.code).toBe(0)
    const results = JSON.parse(json.stdout) as { vmId: string; takeover?: { tap: string; fromVmId?: string }[] }[]
    expect(results.map((x) => [x.vmId, x.takeover?.map((t) => [t.tap, t.fromVmId])])).toEqual([
      ['vm-keep', undefined],
      ['vm-new', [['vnet-t0', 'vm-old']]],
    ])
    const status = JSON.parse(apply('--json', 'status').stdout) as { vmId: string; taps: string[] }[]
    expect(Object.fromEntries(status.map((v) => [v.vmId, v.taps]))).toEqual({ 'vm-old': [], 'vm-keep': ['vnet-k0'], 'vm-new': ['vnet-t0'] })
    // Back again, in text.
    const text = apply('apply', '--takeover', writeSpec('old.json', spec('vm-old', 'vnet-t0')))
    expect(text.code).toBe(0)
    expect(text.stdout).toContain('takeover: tap vnet-t0 moved from VM "vm-new" (now detached) to VM "vm-old"')
  })

  it('re-applying a VM on its own tap, or moving taps within one file, is no takeover', () => {
    const same = apply('apply', writeSpec('same.json', spec('vm-old', 'vnet-t0', 8080)))
    expect(same.code).toBe(0)
    expect(same.stdout).not.toContain('takeover')
    // vm-old leaves vnet-t0 for vnet-t1 in the same file, so vm-new may have vnet-t0.
    const swap = apply('apply', writeSpec('swap.json', [spec('vm-new', 'vnet-t0'), spec('vm-old', 'vnet-t1')]))
    expect(swap.code, swap.stderr).toBe(0)
    expect(swap.stdout).not.toContain('takeover')
    const status = JSON.parse(apply('--json', 'status').stdout) as { vmId: string; taps: string[] }[]
    expect(Object.fromEntries(status.map((v) => [v.vmId, v.taps]))).toEqual({ 'vm-old': ['vnet-t1'], 'vm-keep': ['vnet-k0'], 'vm-new': ['vnet-t0'] })
  })
})
