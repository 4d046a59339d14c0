// restoreRuleset() accepts only an export of the firewall's own table (issue 12, item 1). Each attack runs in
// a throwaway namespace holding a second table with a base chain, rules and a set: the guard refuses it with
// a RestoreValidationError naming the line, the other table is untouched, our table unchanged, and no error
// quotes a line of another file.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Nft } from '../../ts/index.js'
import { RestoreValidationError, VmFirewall, type VmSpec } from '../../ts/firewall/index.js'
import { type Netns } from '../support/netns.js'
import { useNetnsNft } from '../support/netns-nft.js'

let ns: Netns
let nft: Nft
useNetnsNft((n, f) => {
  ns = n
  nft = f
})

const SECRET = `restore-secret-${process.pid}-${Math.random().toString(36).slice(2)}`
let dir: string
let secretFile: string
let fw: VmFirewall
let genuine: string

const OTHER = [
  'add table inet other',
  'add chain inet other input { type filter hook input priority 0; policy accept; }',
  'add rule inet other input tcp dport 22 counter accept',
  'add set inet other allowed { type ipv4_addr; elements = { 10.0.0.1, 10.0.0.2 }; }',
  'add table ip keep',
  'add chain ip keep c',
  'add rule ip keep c counter drop',
].join('\n')

const specs: VmSpec[] = [
  {
    vmId: 'vm-r1',
    tap: 'vnetr1',
    mac: '52:54:00:10:00:01',
    ipv4: ['10.7.0.1'],
    defaultAction: 'drop',
    rules: [{ id: 'ssh#1', name: 'ssh', action: 'ACCEPT', direction: 'IN', priority: 10, protocol: 'tcp', dstPortStart: 22 }],
  },
  { vmId: 'vm-r2;{}', tap: 'vnetr2', defaultAction: 'accept', rules: [] },
]

/** Everything but our table, and our table, as the nft CLI lists them (an oracle independent of the library). */
const others = (): string => ns.ruleset().replace(/table bridge infinization \{[\s\S]*?\n\}\n?/, '')
const ours = (): string => ns.exec('nft', ['-s', 'list', 'table', 'bridge', 'infinization'])

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'nftables-node-restore-'))
  secretFile = join(dir, 'secret.nft')
  writeFileSync(secretFile, `${SECRET} line one\nflush ruleset # ${SECRET}\n`)
  ns.exec('nft', ['-f', '-'], { input: OTHER })
  fw = new VmFirewall(nft)
  for (const s of specs) await fw.applyVm(s)
  genuine = await fw.exportRuleset()
})
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true })
})

const lines = () => genuine.split('\n')
const header = () => lines()[0]!
const body = () => lines().slice(1).join('\n')
/** The genuine export with `extra` inserted as a new line before line `at` (1-based). */
const insertAt = (at: number, extra: string) => [...lines().slice(0, at - 1), extra, ...lines().slice(at - 1)].join('\n')
const lineOf = (needle: string) => lines().findIndex((l) => l.includes(needle)) + 1
/** The comment of the shared guard's ARP built-in (issue 15: its hash is that of the guard rule). */
const arpComment = () => /comment "b:[0-9a-f]{8}:arp"/.exec(genuine)![0]

const ATTACKS: { name: string; script: () => string; line: () => number; says?: RegExp }[] = [
  { name: 'flush ruleset alone', script: () => 'flush ruleset\n', line: () => 1 },
  { name: 'flush ruleset after the genuine header', script: () => `${header()}\nflush ruleset\n${body()}`, line: () => 2 },
  { name: 'flush ruleset after the genuine export', script: () => `${genuine}flush ruleset\n`, line: () => lines().length },
  {
    name: 'flush ruleset after 40 MB of comments',
    script: () => `${header()}\n${`# ${'x'.repeat(78)}\n`.repeat(500_000)}flush ruleset\n${body()}`,
    line: () => 500_002,
  },
  { name: 'flush ruleset inside a chain', script: () => insertAt(lineOf('chain prerouting') + 1, '\t\tflush ruleset'), line: () => lineOf('chain prerouting') + 1, says: /"flush"/ },
  { name: 'delete table inet other', script: () => `${genuine}delete table inet other\n`, line: () => lines().length },
  { name: 'delete table inet other before the table block', script: () => insertAt(4, 'delete table inet other'), line: () => 4 },
  { name: 'a rule added to another table', script: () => `${genuine}add rule inet other input drop\n`, line: () => lines().length },
  {
    name: 'a new base chain with policy drop in another table',
    script: () => `${genuine}table inet other {\n\tchain evil {\n\t\ttype filter hook input priority -10; policy drop;\n\t}\n}\n`,
    line: () => lines().length,
  },
  {
    name: 'another table after closing ours early (braces in a rule)',
    script: () => genuine.replace('iifname vmap @from_vm', 'iifname vmap @from_vm } } table ip evil { chain c { type filter hook input priority 0; policy drop; }'),
    line: () => lineOf('iifname vmap @from_vm'),
  },
  { name: 'another family under our name', script: () => genuine.replace(/table bridge infinization/g, 'table inet infinization'), line: () => 2 },
  { name: 'another table of our family', script: () => genuine.replace(/table bridge infinization/g, 'table bridge keep'), line: () => 2 },
  { name: 'include "/etc/passwd" first', script: () => `include "/etc/passwd"\n${genuine}`, line: () => 1 },
  { name: 'include "/etc/passwd" inside a chain', script: () => insertAt(lineOf('chain postrouting') + 1, '\t\tinclude "/etc/passwd"'), line: () => lineOf('chain postrouting') + 1, says: /"include"/ },
  { name: 'include of a file holding commands', script: () => insertAt(lineOf('chain postrouting') + 1, `include "${secretFile}"`), line: () => lineOf('chain postrouting') + 1 },
  { name: 'define and a variable', script: () => insertAt(lineOf('chain postrouting') + 1, '\t\tdefine t = inet').replace('oifname vmap @to_vm', 'oifname vmap @to_vm; $t'), line: () => lineOf('chain postrouting') + 1 },
  {
    name: 'a string spanning lines that hides a command',
    script: () => genuine.replace(arpComment(), 'comment "x\n}}\nflush ruleset\n"'),
    line: () => lineOf(arpComment()),
    says: /unterminated string/,
  },
  { name: 'a line continuation', script: () => genuine.replace('iifname vmap @from_vm', 'iifname vmap @from_vm \\\n\t\tdrop'), line: () => lineOf('iifname vmap @from_vm'), says: /backslash/ },
  { name: 'commands after ;', script: () => genuine.replace('oifname vmap @to_vm', 'oifname vmap @to_vm; flush ruleset'), line: () => lineOf('oifname vmap @to_vm') },
  { name: 'a NUL byte (libnftables would stop reading there)', script: () => genuine.replace('oifname vmap @to_vm', 'oifname vmap @to_vm\0'), line: () => lineOf('oifname vmap @to_vm') },
  // libnftables 1.0.9 (Ubuntu 24.04) ends the process on this one (a set with elements under a datatype it does not know).
  { name: 'a set type libnftables does not know', script: () => genuine.replace('type ifname . ether_addr', 'type ifk->ame . ether_addr'), line: () => lineOf('type ifname . ether_addr'), says: /is not a datatype/ },
]

describe('restoreRuleset refuses everything but an export of its own table', () => {
  it('the namespace has our table and two others', () => {
    expect(ns.exec('nft', ['list', 'tables']).trim().split('\n').sort()).toEqual(['table bridge infinization', 'table inet other', 'table ip keep'])
  })

  for (const attack of ATTACKS) {
    it(attack.name, async () => {
      const before = { others: others(), ours: ours() }
      const script = attack.script()
      const err = await fw.restoreRuleset(script).then(
        () => undefined,
        (e: unknown) => e,
      )
      expect(err, 'the script was accepted').toBeInstanceOf(RestoreValidationError)
      const e = err as RestoreValidationError
      expect(e.code).toBe('VALIDATION')
      expect(e.line).toBe(attack.line())
      expect(e.message).toContain(`line ${attack.line()}:`)
      if (attack.says) expect(e.message).toMatch(attack.says)
      // Never more than the offending line: bounded, no other file's content.
      expect(e.message.length).toBeLessThan(300)
      expect(e.message).not.toContain(SECRET)
      expect(e.message).not.toMatch(/root:.*:0:0:/)
      expect(others()).toBe(before.others)
      expect(ours()).toBe(before.ours)
    })
  }

  it('without the guard the same kernel oracle sees the damage (the attacks are real)', async () => {
    const before = others()
    await nft.run(`${header()}\n${body()}delete table ip keep\n`)
    expect(others()).not.toBe(before)
    ns.exec('nft', ['-f', '-'], { input: 'add table ip keep\nadd chain ip keep c\nadd rule ip keep c counter drop' })
    expect(others()).toBe(before)
  })

  it('a table name other than the firewall\'s is refused even when the file is a genuine export of it', async () => {
    const mine = new VmFirewall(nft, { table: 'mine' })
    await expect(mine.restoreRuleset(genuine)).rejects.toMatchObject({ name: 'FirewallValidationError', line: 2 })
    expect(ns.exec('nft', ['list', 'tables'])).not.toContain('mine')
  })
})

describe('a genuine export still restores', () => {
  it('round-trips through restoreRuleset and `nft -f`, also when the table is gone (boot)', async () => {
    const before = { others: others(), ours: ours() }
    await fw.restoreRuleset(genuine)
    expect(ours()).toBe(before.ours)
    const file = join(dir, 'export.nft')
    writeFileSync(file, genuine)
    ns.exec('nft', ['-f', file])
    expect(ours()).toBe(before.ours)
    ns.exec('nft', ['delete', 'table', 'bridge', 'infinization'])
    await fw.restoreRuleset(readFileSync(file, 'utf8'))
    expect(ours()).toBe(before.ours)
    expect(others()).toBe(before.others)
    // And again after more changes: the export of the current table restores to itself.
    await fw.applyVm({ ...specs[0]!, rules: [] })
    const again = await fw.exportRuleset()
    const now = ours()
    await fw.restoreRuleset(again)
    expect(ours()).toBe(now)
  })

  it('comments, blank lines and `;` separators in a genuine export are fine', async () => {
    const current = await fw.exportRuleset()
    const before = ours()
    const edited = current
      .replace('chain prerouting {', '# the dispatch chains\n\n\tchain prerouting { # inbound from VMs')
      .replace('iifname vmap @from_vm', 'iifname vmap @from_vm # "quoted" # } flush ruleset')
      .replace(/\n\t\toifname vmap @to_vm/, '; oifname vmap @to_vm;')
    expect(edited).not.toBe(current)
    await fw.restoreRuleset(edited)
    expect(ours()).toBe(before)
  })
})
