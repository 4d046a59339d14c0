// Hostile restore files, property-based (fast-check): mutations of a genuine exportRuleset() file with
// injected commands (flush ruleset, other tables and families, base chains with policy drop), includes of
// files holding commands or secrets, defines and variables, quoting tricks (quotes, `#` in strings, `\`
// continuations, multi-line strings, `;`), NUL/CR, padding, and random character edits.
// Validation alone (no kernel) for the bulk: every mutant carrying an injection is refused with a
// RestoreValidationError whose message is one bounded line that quotes no other file; mutants without an
// injection never fail with anything else. Then a sample, including every mutant the guard accepted, goes
// through restoreRuleset() in a namespace with two other tables: those never change, and a refused file
// leaves our table as it was.
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { Nft, NftError } from '../../ts/index.js'
import { checkRestore, FirewallValidationError, RestoreValidationError, VmFirewall, type VmSpec } from '../../ts/firewall/index.js'
import { type Netns } from '../support/netns.js'
import { useNetnsNft } from '../support/netns-nft.js'
import { report, size } from '../support/stress.js'

const seed = Number(process.env.STRESS_SEED ?? 20261201)
const T = 'infinization'

let ns: Netns
let nft: Nft
useNetnsNft((n, f) => {
  ns = n
  nft = f
})

const SECRET = `restore-fuzz-secret-${process.pid}`
let dir: string
let secretFile: string
let passwdLines: string[]
let fw: VmFirewall
let genuine: string
let lines: string[]

const OTHER = [
  'add table inet other',
  'add chain inet other input { type filter hook input priority 0; policy accept; }',
  'add rule inet other input tcp dport 22 counter accept',
  'add set inet other allowed { type ipv4_addr; flags interval; elements = { 10.0.0.0/8, 192.168.1.1 }; }',
  'add table bridge keep',
  'add chain bridge keep c { type filter hook forward priority 0; policy accept; }',
  'add rule bridge keep c counter accept',
].join('\n')

const specs: VmSpec[] = [
  {
    vmId: "vm#1;{}$v'x",
    tap: 'vnetf1',
    mac: '52:54:00:20:00:01',
    ipv4: ['10.8.0.1'],
    ipv6: ['fd00:8::1'],
    defaultAction: 'drop',
    rules: [
      { id: 'ssh#in', name: 'ssh', action: 'ACCEPT', direction: 'IN', priority: 10, protocol: 'tcp', dstPortStart: 22, dstPortEnd: 23 },
      { id: 'dns;out', name: 'dns', action: 'DROP', direction: 'OUT', priority: 20, protocol: 'udp', dstPortStart: 53, dstIpAddr: 'fd00::/64' },
    ],
  },
  { vmId: 'vm-2', tap: 'vnetf2', defaultAction: 'accept', rules: [{ id: 'icmp', name: 'icmp', action: 'ACCEPT', direction: 'INOUT', priority: 5, protocol: 'icmp' }] },
]

const others = (): string => ns.ruleset().replace(/table bridge infinization \{[\s\S]*?\n\}\n?/, '')
const ours = (): string => ns.exec('nft', ['-s', 'list', 'table', 'bridge', T])

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'nftables-node-restore-fuzz-'))
  secretFile = join(dir, 'secret.nft')
  writeFileSync(secretFile, `${SECRET} first line\nflush ruleset # ${SECRET}\n`)
  mkdirSync(join(dir, 'glob'))
  writeFileSync(join(dir, 'glob', 'a.nft'), `delete table inet other # ${SECRET}\n`)
  passwdLines = readFileSync('/etc/passwd', 'utf8').split('\n').filter((l) => l.length >= 8)
  ns.exec('nft', ['-f', '-'], { input: OTHER })
  fw = new VmFirewall(nft)
  for (const s of specs) await fw.applyVm(s)
  // More of what `nft list table` prints: an interval set, a named counter, a chain comment.
  ns.exec('nft', ['-f', '-'], {
    input: [
      `add set bridge ${T} extra { type ipv4_addr; flags interval; elements = { 10.0.0.0/8, 192.168.1.1 }; comment "a#b;c{}"; }`,
      `add counter bridge ${T} hits`,
      `add chain bridge ${T} side { comment "side#chain"; }`,
      `add rule bridge ${T} side ip saddr @extra counter name "hits" accept`,
    ].join('\n'),
  })
  genuine = await fw.exportRuleset()
  lines = genuine.split('\n')
  // Strings of the export hold no spaces, so a space is always outside a string (the space mode relies on it).
  expect(genuine.match(/"[^"\n]*"/g)!.every((s) => !s.includes(' '))).toBe(true)
})
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true })
})

// ---- generators ----

/** Injections: each is refused wherever it lands outside a comment or a string. */
const INJECTIONS = (): string[] => [
  'flush ruleset',
  'flush table inet other',
  'delete table inet other',
  'delete table bridge keep',
  'add table ip evil',
  'add rule inet other input drop',
  'insert rule bridge keep c drop',
  'add chain inet other evil { type filter hook input priority -10; policy drop; }',
  'table inet other { chain evil { type filter hook input priority -10; policy drop; } }',
  'table bridge keep { chain c { drop } }',
  'table ip infinization { }',
  'delete table bridge infinization',
  'add element bridge infinization from_vm { "evil" : drop }',
  'list ruleset',
  'reset counters',
  'rename chain bridge keep c d',
  'monitor',
  'describe tcp dport',
  'export json',
  'flowtable ft { hook ingress priority 0; devices = { lo }; }',
  'include "/etc/passwd"',
  `include "${secretFile}"`,
  `include "${dir}/glob/*"`,
  'include "secret.nft"',
  'define evil = inet',
  'redefine x = 1',
  'undefine x',
  '$evil',
  'tcp dport $port accept',
  'ip saddr @$set drop',
  '} } flush ruleset',
  '}\nflush ruleset',
  '} ; } ; delete table inet other',
  'drop \\\nflush ruleset',
  '"unterminated\nflush ruleset',
  '"x" } } table inet other { chain c { policy drop; } }',
  'osf name "Linux" drop',
  'meta iif lo dup to 10.0.0.1 device "lo"',
  'FLUSH RULESET',
  'Include "/etc/passwd"',
  '\u0000flush ruleset',
  '\r\nflush ruleset',
  '\ufb02ush ruleset',
  'flush\u00a0ruleset',
]

/** Tricks inside an existing string of the export: each closes the string and injects. */
const STRING_TRICKS = [
  '" ; flush ruleset ; "',
  '" } } flush ruleset #',
  '"\nflush ruleset\n"',
  '\\" ; flush ruleset ; \\"',
  '" include "/etc/passwd" "',
  '" $x "',
  '"; delete table inet other; "',
]

/** Tricks that stay inside the string (nft has no escapes and no single quotes): harmless, may be accepted. */
const BENIGN_STRING_TRICKS = ["' ; flush ruleset ; '", '#', '#;{}', 'include', '$x', '@from_vm']

type Mutant = { kind: string; text: string; hostile: boolean; accepted?: boolean }

const lineIndex = () => fc.nat({ max: 10_000 })
const padding = fc.oneof({ weight: 4, arbitrary: fc.constant('') }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 2000 }).map((n) => `# ${'p'.repeat(78)}\n`.repeat(n)) })

function injectAt(text: string[], at: number, mode: string, payload: string, pad: string): string {
  const out = [...text]
  const i = at % (out.length + 1)
  if (mode === 'line' || i === out.length) out.splice(i, 0, pad + payload)
  else {
    const line = out[i]!
    if (line.trimStart().startsWith('#')) out.splice(i, 0, pad + payload) // inside a comment it would be inert
    else if (mode === 'semicolon') out[i] = `${line}; ${payload}`
    else {
      const spaces = [...line.matchAll(/ /g)].map((m) => m.index!)
      const cut = spaces.length > 0 ? spaces[at % spaces.length]! : line.length
      out[i] = `${line.slice(0, cut)} ${payload} ${line.slice(cut)}`
    }
  }
  return out.join('\n')
}

const HEADER_SWAPS = [
  'table inet infinization',
  'table ip infinization',
  'table netdev infinization',
  'table bridge other',
  'table bridge keep',
  'table bridge infinization2',
  'table Bridge infinization',
  'table bridge "infinization"',
  'table bridge infinization;flush ruleset;table bridge infinization',
  'table bridge $t',
  'table bridge infinization \\\n',
]

const mutant: fc.Arbitrary<Mutant> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc
      .tuple(lineIndex(), fc.constantFrom('line', 'semicolon', 'space'), fc.nat({ max: 1000 }), padding)
      .map(([at, mode, p, pad]) => {
        const inj = INJECTIONS()
        return { kind: `inject/${mode}`, text: injectAt(lines, at, mode, inj[p % inj.length]!, pad), hostile: true }
      }),
  },
  {
    weight: 2,
    arbitrary: fc.tuple(fc.nat({ max: 2 }), fc.constantFrom(...HEADER_SWAPS)).map(([k, swap]) => {
      let n = 0
      const text = genuine.replace(/^(delete )?table bridge infinization/gm, (m, del: string | undefined) => (n++ === k ? `${del ?? ''}${swap}` : m))
      expect(text).not.toBe(genuine)
      return { kind: 'header', text, hostile: true }
    }),
  },
  {
    weight: 1,
    arbitrary: fc.nat({ max: 1 }).map((k) => {
      // Drop `table bridge <t> {}` or the delete: not the export's shape.
      const text = lines.filter((l, i) => i !== k + 1).join('\n')
      return { kind: 'shape', text, hostile: true }
    }),
  },
  {
    weight: 2,
    arbitrary: fc.tuple(fc.nat({ max: 10_000 }), fc.nat({ max: 40 }), fc.boolean()).map(([which, off, benign]) => {
      const strings = [...genuine.matchAll(/"[^"\n]*"/g)]
      const m = strings[which % strings.length]!
      const inner = m[0].length - 2
      const at = m.index! + 1 + (inner > 0 ? off % inner : 0)
      const tricks = benign ? BENIGN_STRING_TRICKS : STRING_TRICKS
      const trick = tricks[(which + off) % tricks.length]!
      return { kind: benign ? 'string/benign' : 'string', text: genuine.slice(0, at) + trick + genuine.slice(at), hostile: !benign }
    }),
  },
  {
    weight: 3,
    // Random edits: outcome unknown (often refused, sometimes a harmless change); checked by the kernel sample.
    arbitrary: fc
      .array(
        fc.tuple(
          fc.nat({ max: 1_000_000 }),
          fc.oneof(
            fc.constantFrom('"', '{', '}', ';', '#', '\\', '$', '\n', ' ', '@', '=', ',', "'", 'table', 'inet', 'flush', 'ruleset', 'delete', 'include', 'define', 'chain', 'drop', 'accept', 'jump', '*', '\t'),
            fc.string({ maxLength: 4 }),
          ),
          fc.nat({ max: 3 }),
        ),
        { minLength: 1, maxLength: 4 },
      )
      .map((edits) => {
        let text = genuine
        for (const [pos, ins, del] of edits) {
          const at = pos % (text.length + 1)
          text = text.slice(0, at) + ins + text.slice(at + del)
        }
        return { kind: 'random', text, hostile: false }
      }),
  },
)

// ---- checks ----

/** Where a mutant differs from the genuine export (for failure messages). */
function diff(text: string): string {
  let a = 0
  while (a < text.length && text[a] === genuine[a]) a++
  let b = 0
  while (b < text.length - a && text[text.length - 1 - b] === genuine[genuine.length - 1 - b]) b++
  return `at ${a}: ${text.slice(Math.max(0, a - 40), text.length - b + 40)}`
}

function leaks(message: string): string | undefined {
  if (message.includes(SECRET)) return 'secret file content'
  const p = passwdLines.find((l) => message.includes(l))
  return p !== undefined ? '/etc/passwd content' : undefined
}

const counters = { total: 0, hostile: 0, refused: 0, accepted: 0, byKind: {} as Record<string, [number, number]> }
const forKernel: Mutant[] = []

it('validation: every injected mutant is refused with one bounded line, no file contents; nothing else escapes', { timeout: size(90_000, 1_800_000) }, () => {
  const runs = size(4000, 60_000)
  const kernelRefused = size(20, 500)
  const every = Math.max(1, Math.floor(runs / kernelRefused))
  let n = 0
  fc.assert(
    fc.property(mutant, (m) => {
      counters.total++
      if (m.hostile) counters.hostile++
      const k = (counters.byKind[m.kind] ??= [0, 0])
      k[0]++
      let error: unknown
      try {
        checkRestore(m.text, T)
      } catch (e) {
        error = e
      }
      if (error === undefined) {
        counters.accepted++
        if (m.hostile) throw new Error(`${m.kind}: a hostile mutant was accepted: ${JSON.stringify(diff(m.text))}`)
        forKernel.push({ ...m, accepted: true })
        return
      }
      counters.refused++
      k[1]++
      if (!(error instanceof RestoreValidationError)) throw new Error(`${m.kind}: not a RestoreValidationError: ${String(error)}`)
      if (!(error instanceof FirewallValidationError) || error.code !== 'VALIDATION') throw new Error('not a FirewallValidationError')
      const msg = error.message
      if (!/^[\x20-\x7e]{1,300}$/.test(msg)) throw new Error(`${m.kind}: message not one bounded line of printable ASCII: ${JSON.stringify(msg)}`)
      if (!Number.isInteger(error.line) || error.line < 1) throw new Error(`bad line ${error.line}`)
      if (!msg.includes(`line ${error.line}:`)) throw new Error(`message does not name line ${error.line}: ${msg}`)
      const leak = leaks(msg)
      if (leak) throw new Error(`${m.kind}: ${leak} in the error: ${msg}`)
      if (n++ % every === 0) forKernel.push(m)
    }),
    { numRuns: runs, seed },
  )
  expect(counters.hostile).toBeGreaterThan(runs / 2)
  expect(counters.refused).toBeGreaterThanOrEqual(counters.hostile)
})

it('kernel: a sample of accepted and refused mutants through restoreRuleset never changes another table', { timeout: size(90_000, 1_800_000) }, async () => {
  const before = { others: others(), ours: ours() }
  // Mutants the guard accepted (the ones libnftables runs) and a spread of refused ones.
  const accepted = forKernel.filter((m) => m.accepted).slice(0, size(40, 1500))
  const refusedSample = forKernel.filter((m) => !m.accepted).slice(0, size(20, 500))
  const sample = [...accepted, ...refusedSample]
  expect(accepted.length).toBeGreaterThan(10)
  expect(refusedSample.length).toBeGreaterThan(10)
  let refused = 0
  let nftFailed = 0
  let applied = 0
  for (const m of sample) {
    let error: unknown
    try {
      await fw.restoreRuleset(m.text)
    } catch (e) {
      error = e
    }
    if (error instanceof RestoreValidationError) refused++
    else if (error instanceof NftError) {
      nftFailed++
      const leak = leaks(`${error.message}\n${error.detail ?? ''}`)
      if (leak) throw new Error(`${m.kind}: ${leak} in a libnftables error`)
    } else if (error !== undefined) throw new Error(`${m.kind}: unexpected ${String(error)}`)
    else applied++
    expect(others(), `${m.kind} changed another table: ${JSON.stringify(diff(m.text))}`).toBe(before.others)
    if (error !== undefined) expect(ours(), `${m.kind}: a refused file changed our table`).toBe(before.ours)
    else await fw.restoreRuleset(genuine) // back to the genuine table for the next one
  }
  expect(ours()).toBe(before.ours)
  const kinds = Object.entries(counters.byKind)
    .sort()
    .map(([k, [all, ref]]) => `${k} ${ref}/${all}`)
    .join(', ')
  report(
    'firewall/restore (generated)',
    `${counters.total} generated restore files (${counters.hostile} with an injected command, include, define, variable or quoting trick: all refused; refused/generated by kind: ${kinds}); ` +
      `0 errors quoting another file, every error one line naming its line number; ${counters.accepted} edits inside strings or random edits accepted`,
  )
  report(
    'firewall/restore (kernel)',
    `${sample.length} through restoreRuleset with two other tables present (${accepted.length} the guard accepted, ${refusedSample.length} it refused): ${refused} refused by the guard, ${nftFailed} refused by libnftables, ${applied} applied; other tables byte-identical every time, our table unchanged after every refusal`,
  )
})
