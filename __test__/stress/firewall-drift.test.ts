// Drift: outside `nft` commands delete or alter the library's chains, rules, map elements and base chains.
// verify() reports each one against the affected VM (or the table), sync() repairs it, and tables the
// library does not own (`table bridge other`, `table inet filter`, even `table inet infinization`) are
// never touched.
import { afterAll, beforeAll, expect, it } from 'vitest'
import { Nft } from '../../ts/index.js'
import { VmFirewall, vmChainNames, type VerifyResult, type VmSpec } from '../../ts/firewall/index.js'
import { createNetns, type Netns } from '../support/netns.js'
import { report } from '../support/stress.js'
import { canonical, expectedFwState, kernelFwState } from '../support/stress-fw.js'

let ns: Netns
let nft: Nft
let fw: VmFirewall
const T = 'infinization'

const spec = (n: string, i: number): VmSpec => ({
  vmId: `vm-${n}`,
  tap: `tap${n}`,
  mac: `52:54:00:00:00:0${i}`,
  ipv4: [`10.5.0.${i}`],
  defaultAction: 'drop',
  rules: [
    { id: `${n}-ssh`, name: 'ssh', protocol: 'tcp', dstPortStart: 22, direction: 'IN' },
    { id: `${n}-dns`, name: 'dns', protocol: 'udp', dstPortStart: 53, direction: 'OUT' },
  ],
})
const specs = [spec('a', 1), spec('b', 2), spec('c', 3)]
const [A, B] = specs.map((s) => ({ ...s, chains: vmChainNames(s.vmId) })) as [VmSpec & { chains: { out: string; in: string } }, VmSpec & { chains: { out: string; in: string } }]

const OTHERS = [
  ['bridge', 'other'],
  ['inet', 'filter'],
  ['inet', T],
] as const
const others = (): string => OTHERS.map(([f, t]) => ns.exec('nft', ['-a', 'list', 'table', f, t])).join('\n')

beforeAll(async () => {
  ns = createNetns()
  ns.exec('nft', ['-f', '-'], {
    input: [
      'table bridge other {',
      '  map m { type ifname : verdict; elements = { "tapa" : accept }; }',
      '  chain pre { type filter hook prerouting priority -300; policy accept; iifname vmap @m; }',
      '  chain vm_000000000000000000000000_o { counter drop comment "d:00000000:not-ours"; }',
      '}',
      'table inet filter {',
      '  chain input { type filter hook input priority 0; policy accept; tcp dport 22 accept; }',
      '}',
      `table inet ${T} {`,
      '  chain prerouting { type filter hook prerouting priority 0; policy accept; }',
      '}',
    ].join('\n'),
  })
  nft = new Nft({ netns: ns.name })
  fw = new VmFirewall(nft)
  await fw.sync(specs)
})
afterAll(() => {
  nft?.close()
  ns?.delete()
})

function nftIn(script: string): void {
  ns.exec('nft', ['-f', '-'], { input: script })
}

/** Handle and comment of each rule of a chain (nft -a -j). */
function rulesOf(chain: string): { handle: number; comment?: string }[] {
  const doc = JSON.parse(ns.exec('nft', ['-a', '-j', 'list', 'chain', 'bridge', T, chain])) as { nftables: { rule?: { handle: number; comment?: string } }[] }
  return doc.nftables.flatMap((o) => (o.rule ? [o.rule] : []))
}

const vmOf = (v: VerifyResult, vmId: string) => v.vms.find((x) => x.vmId === vmId)!
const flat = (d: { missing: string[]; extra: string[]; changed: string[] }) => [...d.missing.map((x) => `-${x}`), ...d.extra.map((x) => `+${x}`), ...d.changed.map((x) => `~${x}`)]

interface Case {
  name: string
  drift: () => void
  /** Checks verify()'s report of the drift. */
  expectReport: (v: VerifyResult) => void
}

/** Only `vmId` is blamed (other VMs stay ok), with these findings among its report. */
const blames = (vmId: string, status: 'changed' | 'missing', findings: (string | RegExp)[]) => (v: VerifyResult) => {
  expect(v.ok).toBe(false)
  const d = vmOf(v, vmId)
  expect(d.status).toBe(status)
  const all = flat(d)
  for (const f of findings) expect(all.some((x) => (typeof f === 'string' ? x === f : f.test(x))), `${JSON.stringify(all)} lacks ${String(f)}`).toBe(true)
  for (const other of v.vms) if (other.vmId !== vmId) expect(other.status, `${other.vmId} blamed too`).toBe('ok')
}

const cases: Case[] = [
  {
    name: "delete one of a VM's chains (with its dispatch entry, which pins it)",
    drift: () => nftIn(`delete element bridge ${T} from_vm { "tapa" }\nflush chain bridge ${T} ${A.chains.out}\ndelete chain bridge ${T} ${A.chains.out}`),
    expectReport: blames('vm-a', 'changed', [`-chain:${A.chains.out}`, '-dispatch:from_vm:tapa']),
  },
  {
    name: "delete both of a VM's chains",
    drift: () =>
      nftIn(
        `delete element bridge ${T} from_vm { "tapb" }\ndelete element bridge ${T} to_vm { "tapb" }\n` +
          `flush chain bridge ${T} ${B.chains.out}\ndelete chain bridge ${T} ${B.chains.out}\nflush chain bridge ${T} ${B.chains.in}\ndelete chain bridge ${T} ${B.chains.in}`,
      ),
    expectReport: blames('vm-b', 'missing', [`-chain:${B.chains.out}`, `-chain:${B.chains.in}`]),
  },
  {
    name: 'delete a rule by handle',
    drift: () => {
      const r = rulesOf(A.chains.in).find((x) => x.comment?.startsWith('r:'))!
      nftIn(`delete rule bridge ${T} ${A.chains.in} handle ${r.handle}`)
    },
    expectReport: blames('vm-a', 'changed', [new RegExp(`^-rule:${A.chains.in}:r:[0-9a-f]{8}:a-ssh$`)]),
  },
  {
    name: 'delete the default-action rule by handle',
    drift: () => {
      const r = rulesOf(B.chains.out).find((x) => x.comment?.startsWith('d:'))!
      nftIn(`delete rule bridge ${T} ${B.chains.out} handle ${r.handle}`)
    },
    expectReport: blames('vm-b', 'changed', [new RegExp(`^-rule:${B.chains.out}:d:[0-9a-f]{8}:vm-b$`)]),
  },
  {
    name: 'add a rule at the end of a VM chain',
    drift: () => nftIn(`add rule bridge ${T} ${A.chains.out} ip saddr 6.6.6.6 accept`),
    expectReport: blames('vm-a', 'changed', [`+rule:${A.chains.out}:(no comment)`]),
  },
  {
    name: 'insert an accept-all at the top of a VM chain',
    drift: () => nftIn(`insert rule bridge ${T} ${B.chains.in} counter accept comment "evil"`),
    expectReport: blames('vm-b', 'changed', [`+rule:${B.chains.in}:evil`]),
  },
  {
    name: "insert a rule that forges an existing rule's comment",
    drift: () => {
      const d = rulesOf(A.chains.in).find((x) => x.comment?.startsWith('d:'))!
      nftIn(`insert rule bridge ${T} ${A.chains.in} accept comment "${d.comment}"`)
    },
    expectReport: blames('vm-a', 'changed', [`~order:${A.chains.in}`]),
  },
  {
    name: 'delete a map element',
    drift: () => nftIn(`delete element bridge ${T} to_vm { "tapb" }`),
    expectReport: blames('vm-b', 'changed', ['-dispatch:to_vm:tapb']),
  },
  {
    name: "redirect a tap to another VM's chain",
    drift: () => nftIn(`delete element bridge ${T} from_vm { "tapa" }\nadd element bridge ${T} from_vm { "tapa" : jump ${B.chains.out} }`),
    expectReport: (v) => {
      expect(v.ok).toBe(false)
      expect(flat(vmOf(v, 'vm-a'))).toContain('-dispatch:from_vm:tapa')
      expect(flat(vmOf(v, 'vm-b'))).toContain('+dispatch:from_vm:tapa')
    },
  },
  {
    name: "add a foreign tap dispatching to a VM's chain",
    drift: () => nftIn(`add element bridge ${T} to_vm { "evil0" : jump ${A.chains.in} }`),
    expectReport: blames('vm-a', 'changed', ['+dispatch:to_vm:evil0']),
  },
  {
    name: 'flush a base chain',
    drift: () => nftIn(`flush chain bridge ${T} prerouting`),
    expectReport: (v) => {
      expect(v.ok).toBe(false)
      expect(v.table).toContain('dispatch rule in prerouting missing or changed')
    },
  },
  {
    name: 'flush both base chains and add a rule to one',
    drift: () => nftIn(`flush chain bridge ${T} prerouting\nflush chain bridge ${T} postrouting\nadd rule bridge ${T} postrouting accept`),
    expectReport: (v) => {
      expect(v.table).toEqual(expect.arrayContaining(['dispatch rule in prerouting missing or changed', 'dispatch rule in postrouting missing or changed']))
    },
  },
  {
    name: 'add an orphan VM chain',
    drift: () => nftIn(`add chain bridge ${T} vm_0123456789abcdef01234567_o\nadd rule bridge ${T} vm_0123456789abcdef01234567_o accept comment "d:00000000:ghost"`),
    expectReport: (v) => {
      expect(v.ok).toBe(false)
      expect(v.orphans).toContainEqual({ vmId: 'ghost', chains: ['vm_0123456789abcdef01234567_o'] })
    },
  },
  {
    name: 'delete the whole table',
    drift: () => nftIn(`delete table bridge ${T}`),
    expectReport: (v) => {
      expect(v.table).toEqual(['table missing'])
      for (const d of v.vms) expect(d.status).toBe('missing')
    },
  },
]

it('verify() reports each outside change against the affected VM or the table, sync() repairs it, other tables untouched', async () => {
  const othersBefore = others()
  const want = canonical(expectedFwState(specs))
  expect(canonical(kernelFwState(ns))).toBe(want)
  expect((await fw.verify()).ok).toBe(true)
  for (const c of cases) {
    c.drift()
    const v = await fw.verify()
    try {
      c.expectReport(v)
    } catch (e) {
      throw new Error(`${c.name}: ${(e as Error).message}\nverify: ${JSON.stringify(v)}`)
    }
    await fw.sync(specs)
    const after = await fw.verify()
    expect(after.ok, `${c.name}: verify after sync: ${JSON.stringify(after)}`).toBe(true)
    expect(canonical(kernelFwState(ns)), `${c.name}: kernel after sync`).toBe(want)
    expect(others(), `${c.name}: another table changed`).toBe(othersBefore)
  }
  report('firewall/drift', `${cases.length} kinds of outside change (chains, rules by handle, added/forged rules, map elements, base chains, orphans, whole table): each reported by verify() against the right VM/table, repaired by one sync(); 3 other tables (incl. inet ${T}) byte-identical`)
})
