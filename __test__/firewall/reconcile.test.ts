// The pure reconciler against real listings, without a kernel: each fixture is a table as one environment
// (libnftables 1.0.6 on the CI host, 1.1.3 in Debian 13, a stock kernel with bridge conntrack and reject)
// listed it right after a sync of fixtures/listings/specs.json, with that environment's renderings of the
// compiled rules (scripts/capture-listing.mjs). A clean listing must show no drift; each outside edit must
// be found, and planSync must repair exactly it.
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { compileVm, type CompiledVm } from '../../ts/firewall/compile.js'
import { BASE_PRIORITY, parseTable, type KernelTable } from '../../ts/firewall/layout.js'
import type { FirewallCapabilities, VmSpec } from '../../ts/firewall/model.js'
import { planSync, verifyTable, type Renderings } from '../../ts/firewall/reconcile.js'
import { normalizeVm } from '../../ts/firewall/validate.js'
import type { NftablesJson } from '../../ts/schema.js'

const dir = join(__dirname, '..', 'fixtures', 'listings')
const specs = JSON.parse(readFileSync(join(dir, 'specs.json'), 'utf8')) as VmSpec[]
interface Fixture {
  name: string
  version: string
  capabilities: FirewallCapabilities
  listing: NftablesJson
  renderings: [string, string][]
}
const fixtures = readdirSync(dir)
  .filter((f) => f !== 'specs.json' && f.endsWith('.json'))
  .map((f) => JSON.parse(readFileSync(join(dir, f), 'utf8')) as Fixture)

it('has a fixture for each environment of the test matrix', () => {
  expect(fixtures.map((f) => f.name).sort()).toEqual(['conntrack-linux-6.12', 'libnftables-1.0.6', 'libnftables-1.1.3'])
})

type Rule = { chain: string; comment?: string; expr: unknown[]; handle?: number }
const rulesOf = (doc: NftablesJson, chain: string): Rule[] =>
  doc.nftables.flatMap((o) => ('rule' in o && (o.rule as Rule).chain === chain ? [o.rule as Rule] : []))

for (const fx of fixtures) {
  describe(`${fx.name} (libnftables ${fx.version})`, () => {
    const compiled: CompiledVm[] = specs.map((s) => compileVm(normalizeVm(s), { capabilities: fx.capabilities, conntrack: 'auto' }))
    const learned = new Map(fx.renderings)
    const renderings: Renderings = { lookup: (expr) => learned.get(JSON.stringify(expr.map((st) => ((st as object) && 'counter' in (st as object) ? { counter: null } : st)))) }
    const desired = compiled.map((c) => ({ compiled: c, attached: true }))
    const a = compiled[0]!
    /** The fixture's listing, edited: `edit` changes a deep copy. */
    const listing = (edit?: (doc: NftablesJson) => void): KernelTable => {
      const doc = structuredClone(fx.listing)
      edit?.(doc)
      return parseTable(doc)
    }
    const plan = (k: KernelTable, prune: 'all' | 'none' = 'all') => planSync(k, compiled, { table: 'infinization', prune, renderings })

    it('a clean listing: no drift, and sync plans nothing', () => {
      expect(verifyTable(listing(), desired, renderings)).toEqual({ ok: true, vms: expect.any(Array), orphans: [], table: [] })
      expect(verifyTable(listing(), desired, renderings).vms.map((v) => v.status)).toEqual(['ok', 'ok'])
      const p = plan(listing())
      expect(p.commands).toEqual([])
      expect(p.result.unchanged.sort()).toEqual(['fix-a', 'fix-b'])
    })

    it('every rule the compiler emitted was compared against a rendering of this environment', () => {
      for (const c of compiled) for (const r of [...c.out, ...c.in]) expect(renderings.lookup(r.expr), r.comment).toBeDefined()
    })

    it('a rule rewritten in place with its comment (default drop -> accept) is changed, and only that VM is rewritten', () => {
      const k = listing((doc) => {
        const d = rulesOf(doc, a.chains.in).find((r) => r.comment?.startsWith('d:'))!
        d.expr = d.expr.map((st) => ('drop' in (st as object) ? { accept: null } : st))
      })
      const v = verifyTable(k, desired, renderings)
      expect(v.ok).toBe(false)
      expect(v.vms[0]!.changed).toEqual([`rule:${a.chains.in}:${a.in.at(-1)!.comment}`])
      expect(v.vms[1]!.status).toBe('ok')
      const p = plan(k)
      expect(p.result.changed).toEqual(['fix-a'])
      expect(p.commands.some((c) => JSON.stringify(c).includes(a.chains.in))).toBe(true)
      expect(p.commands.some((c) => JSON.stringify(c).includes(compiled[1]!.chains.in))).toBe(false)
    })

    it('a deleted rule is missing, a foreign rule extra, swapped rules out of order', () => {
      const deleted = verifyTable(
        listing((doc) => {
          const i = doc.nftables.findIndex((o) => 'rule' in o && (o.rule as Rule).chain === a.chains.out && (o.rule as Rule).comment?.startsWith('r:'))
          doc.nftables.splice(i, 1)
        }),
        desired,
        renderings,
      )
      expect(deleted.vms[0]!.missing).toHaveLength(1)
      const foreign = verifyTable(
        listing((doc) => {
          doc.nftables.push({ rule: { family: 'bridge', table: 'infinization', chain: a.chains.in, handle: 9999, expr: [{ accept: null }] } } as never)
        }),
        desired,
        renderings,
      )
      expect(foreign.vms[0]!.extra).toEqual([`rule:${a.chains.in}:(no comment)`])
      const swapped = verifyTable(
        listing((doc) => {
          const idx = doc.nftables.flatMap((o, i) => ('rule' in o && (o.rule as Rule).chain === a.chains.out ? [i] : []))
          const [i, j] = [idx[0]!, idx[1]!]
          ;[doc.nftables[i], doc.nftables[j]] = [doc.nftables[j]!, doc.nftables[i]!]
        }),
        desired,
        renderings,
      )
      expect(swapped.vms[0]!.changed).toEqual([`order:${a.chains.out}`])
    })

    it('a missing dispatch entry is drift that sync re-adds without rewriting the chains', () => {
      const k = listing((doc) => {
        for (const o of doc.nftables) {
          const m = (o as { map?: { name: string; elem?: unknown[] } }).map
          if (m?.name === 'to_vm') m.elem = (m.elem ?? []).filter((e) => !JSON.stringify(e).includes('vnet-fa'))
        }
      })
      expect(verifyTable(k, desired, renderings).vms[0]!.missing).toEqual(['dispatch:to_vm:vnet-fa'])
      const p = plan(k)
      expect(p.result.reattached).toEqual(['fix-a'])
      expect(p.commands).toEqual([{ add: { element: { family: 'bridge', table: 'infinization', name: 'to_vm', elem: [['vnet-fa', { jump: { target: a.chains.in } }]] } } }])
    })

    // Issue 15: the shared guard's set elements, as listed by this environment (concatenations, element counters).
    const setOf = (doc: NftablesJson, name: string) => (doc.nftables.find((o) => 'set' in o && (o.set as { name: string }).name === name) as { set: { elem?: unknown[] } }).set
    it("the guard's elements are read back as written: each VM's identities and built-ins, counters included", () => {
      const k = listing()
      expect([...k.sets.get('id_mac')!]).toEqual(expect.arrayContaining(['vnet-fa . 52:54:00:00:00:0a']))
      expect([...k.sets.get('id_ipv6')!]).toEqual(expect.arrayContaining(['vnet-fa . fe80::5054:ff:fe00:a', 'vnet-fa . fd00::2']))
      expect(k.sets.get('b_ip_spoof')!.has('vnet-fa')).toBe(true)
      expect(k.setCounters.get('b_ip_spoof')!.get('vnet-fa')).toEqual({ packets: 0, bytes: 0 })
    })

    it('a missing guard element is dispatch drift that sync re-adds alone; a foreign one is extra and deleted', () => {
      const missing = listing((doc) => {
        const st = setOf(doc, 'id_mac')
        st.elem = st.elem!.filter((e) => !JSON.stringify(e).includes('vnet-fa'))
      })
      expect(verifyTable(missing, desired, renderings).vms[0]!.missing).toEqual(['dispatch:id_mac:vnet-fa . 52:54:00:00:00:0a'])
      const p = plan(missing)
      expect(p.result.reattached).toEqual(['fix-a'])
      expect(p.commands).toEqual([{ add: { element: { family: 'bridge', table: 'infinization', name: 'id_mac', elem: [{ concat: ['vnet-fa', '52:54:00:00:00:0a'] }] } } }])
      const foreign = listing((doc) => setOf(doc, 'id_ipv4').elem!.push({ concat: ['vnet-fa', '10.9.0.99'] }))
      expect(verifyTable(foreign, desired, renderings).vms[0]!.extra).toEqual(['dispatch:id_ipv4:vnet-fa . 10.9.0.99'])
      expect(plan(foreign).commands).toEqual([{ delete: { element: { family: 'bridge', table: 'infinization', name: 'id_ipv4', elem: [{ concat: ['vnet-fa', '10.9.0.99'] }] } } }])
    })

    it("elements of an interface no VM is dispatched from are a table problem; sync removes them with prune 'all' only", () => {
      const k = listing((doc) => setOf(doc, 'b_mac_spoof').elem!.push({ elem: { val: 'vnet-gone', counter: { packets: 4, bytes: 240 } } }))
      expect(verifyTable(k, desired, renderings).table).toEqual(['guard elements of undispatched interfaces: b_mac_spoof:vnet-gone'])
      expect(plan(k).commands).toEqual([{ delete: { element: { family: 'bridge', table: 'infinization', name: 'b_mac_spoof', elem: ['vnet-gone'] } } }])
      expect(plan(k, 'none').commands).toEqual([])
    })

    it('a guard chain edited or missing is a table problem that sync rewrites with the whole layout', () => {
      const k = listing((doc) => {
        doc.nftables = doc.nftables.filter((o) => !('rule' in o && (o.rule as Rule).chain === 'guard_ip' && (o.rule as Rule).comment?.endsWith(':ip-spoof')))
      })
      expect(verifyTable(k, desired, renderings).table).toEqual(['guard chain guard_ip changed'])
      const text = JSON.stringify(plan(k).commands)
      expect(text).toContain('"flush":{"chain":{"family":"bridge","table":"infinization","name":"guard_ip"}}')
      expect(text).toContain('@id_ipv4')
    })

    it(`a base chain at another priority (-200, tied with conntrack) is a table problem; sync recreates it at ${BASE_PRIORITY}`, () => {
      const k = listing((doc) => {
        for (const o of doc.nftables) {
          const c = (o as { chain?: { name: string; prio?: number } }).chain
          if (c?.name === 'prerouting') c.prio = -200
        }
      })
      expect(verifyTable(k, desired, renderings).table).toEqual(['base chain prerouting changed (type filter hook prerouting priority -200)'])
      const p = plan(k)
      expect(p.commands.slice(0, 2)).toEqual([
        { flush: { chain: { family: 'bridge', table: 'infinization', name: 'prerouting' } } },
        { delete: { chain: { family: 'bridge', table: 'infinization', name: 'prerouting' } } },
      ])
      expect(JSON.stringify(p.commands)).toContain(`"prio":${BASE_PRIORITY}`)
    })

    it("an orphan VM chain is reported; sync removes it with prune 'all' and keeps it with prune 'none'", () => {
      const k = listing((doc) => {
        doc.nftables.push({ chain: { family: 'bridge', table: 'infinization', name: 'vm_0123456789abcdef01234567_o', handle: 9998 } } as never)
        doc.nftables.push({ rule: { family: 'bridge', table: 'infinization', chain: 'vm_0123456789abcdef01234567_o', handle: 9997, comment: 'd:00000000:ghost', expr: [{ accept: null }] } } as never)
      })
      expect(verifyTable(k, desired, renderings).orphans).toEqual([{ vmId: 'ghost', chains: ['vm_0123456789abcdef01234567_o'] }])
      expect(plan(k).result.removed).toEqual(['ghost'])
      expect(plan(k, 'none').commands).toEqual([])
    })
  })
}
