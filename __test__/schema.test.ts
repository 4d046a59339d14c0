// The JSON fixtures under __test__/fixtures/json: their shape against the schema types (at type-check
// time), and the kernel's acceptance of each one in a throwaway network namespace (at run time).
// The same fixtures are deserialized into the Rust `nftables` crate by tests/schema_fixtures.rs.
import { readdirSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest'
import { Nft, type NftablesJson } from '../ts/index.js'
import bridgeBaseChains from './fixtures/json/bridge-base-chains.json'
import bridgeTeardown from './fixtures/json/bridge-teardown.json'
import bridgeVmRules from './fixtures/json/bridge-vm-rules.json'
import bridgeVmapIfname from './fixtures/json/bridge-vmap-ifname.json'
import inetHost from './fixtures/json/inet-host.json'
import ipNat from './fixtures/json/ip-nat.json'
import listRuleset from './fixtures/json/list-ruleset.json'
import miscExpressions from './fixtures/json/misc-expressions.json'
import { createNetns, listNetns, type Netns } from './support/netns.js'

/**
 * `T` as TypeScript infers it for an imported JSON file: string, number and boolean literals widened,
 * tuples turned into arrays. Checking a fixture against `Widen<NftablesJson>` catches wrong property
 * types, missing required properties and misplaced structure; only literal values (a misspelled
 * family or operator) need the fully typed constants at the end of this file.
 */
type Widen<T> = T extends string
  ? string
  : T extends number
    ? number
    : T extends boolean
      ? boolean
      : T extends null | undefined
        ? T
        : T extends readonly (infer E)[]
          ? Widen<E>[]
          : { [K in keyof T]: Widen<T[K]> }

/** The typed loader: the fixture's imported type must fit the schema; at run time it is the document. */
function fixture(doc: Widen<NftablesJson>): NftablesJson {
  return doc as NftablesJson
}

const fixtures: Record<string, NftablesJson> = {
  'bridge-base-chains.json': fixture(bridgeBaseChains),
  'bridge-teardown.json': fixture(bridgeTeardown),
  'bridge-vm-rules.json': fixture(bridgeVmRules),
  'bridge-vmap-ifname.json': fixture(bridgeVmapIfname),
  'inet-host.json': fixture(inetHost),
  'ip-nat.json': fixture(ipNat),
  'list-ruleset.json': fixture(listRuleset),
  'misc-expressions.json': fixture(miscExpressions),
}

const fixtureDir = join(__dirname, 'fixtures', 'json')

/** Tables and chains ("family table" / "family table chain") a document leaves behind when applied to an empty ruleset. */
function declared(doc: NftablesJson): { tables: string[]; chains: string[] } {
  const tables = new Set<string>()
  const chains = new Set<string>()
  const dropTable = (key: string) => {
    for (const c of chains) if (c.startsWith(`${key} `)) chains.delete(c)
  }
  for (const o of doc.nftables) {
    // A list object without a command is added, like `add`.
    const added = 'add' in o ? o.add : 'create' in o ? o.create : o
    if ('table' in added) tables.add(`${added.table.family} ${added.table.name}`)
    if ('chain' in added) chains.add(`${added.chain.family} ${added.chain.table} ${added.chain.name}`)
    if ('delete' in o && 'table' in o.delete) {
      const key = `${o.delete.table.family} ${o.delete.table.name}`
      tables.delete(key)
      dropTable(key)
    }
    if ('delete' in o && 'chain' in o.delete) chains.delete(`${o.delete.chain.family} ${o.delete.chain.table} ${o.delete.chain.name}`)
    if ('flush' in o && 'table' in o.flush) dropTable(`${o.flush.table.family} ${o.flush.table.name}`)
    if ('flush' in o && 'ruleset' in o.flush) {
      tables.clear()
      chains.clear()
    }
  }
  return { tables: [...tables].sort(), chains: [...chains].sort() }
}

/** Tables and chains of a listing, in the same notation. */
function listed(doc: NftablesJson): { tables: string[]; chains: string[] } {
  const tables: string[] = []
  const chains: string[] = []
  for (const o of doc.nftables) {
    if ('table' in o) tables.push(`${o.table.family} ${o.table.name}`)
    if ('chain' in o) chains.push(`${o.chain.family} ${o.chain.table} ${o.chain.name}`)
  }
  return { tables: tables.sort(), chains: chains.sort() }
}

/** A copy without `handle` properties, which the kernel assigns anew on every load. */
function withoutHandles(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutHandles)
  if (value === null || typeof value !== 'object') return value
  return Object.fromEntries(Object.entries(value).filter(([k]) => k !== 'handle').map(([k, v]) => [k, withoutHandles(v)]))
}

const created: string[] = []

afterAll(() => {
  const left = listNetns().filter((n) => created.includes(n))
  expect(left).toEqual([])
})

describe('fixtures', () => {
  it('every JSON file in fixtures/json is typed and tested here', () => {
    const files = readdirSync(fixtureDir).filter((f) => f.endsWith('.json'))
    expect(Object.keys(fixtures).sort()).toEqual(files.sort())
  })

  it('the typed constants are the fixtures', () => {
    expect(bridgeBaseChainsTyped).toEqual(fixtures['bridge-base-chains.json'])
    expect(bridgeVmapIfnameTyped).toEqual(fixtures['bridge-vmap-ifname.json'])
    expect(bridgeTeardownTyped).toEqual(fixtures['bridge-teardown.json'])
  })

  it('bridge fixtures use neither conntrack nor reject (no bridge conntrack / reject on this kernel)', () => {
    for (const [name, doc] of Object.entries(fixtures)) {
      for (const o of doc.nftables) {
        const text = JSON.stringify(o)
        if (!text.includes('"family":"bridge"')) continue
        expect(text, name).not.toMatch(/"(ct|reject|ct count|ct helper)":/)
      }
    }
  })
})

describe.each(Object.keys(fixtures))('kernel accepts %s', (name) => {
  const doc = fixtures[name]!
  let ns: Netns
  let nft: Nft
  beforeEach(() => {
    ns = createNetns('nftschema')
    created.push(ns.name)
    nft = new Nft({ netns: ns.name })
  })
  afterEach(() => {
    nft.close()
    ns.delete()
  })

  it('checkJson validates without committing, runJson commits, listRuleset shows what it declared', async () => {
    // Same instance on purpose: the dry run must not leave checked objects in its cache.
    await nft.checkJson(doc)
    expect(ns.ruleset()).toBe('')
    await nft.runJson(doc)
    const listing = await nft.listRuleset()
    const want = declared(doc)
    expect(want.tables.length).toBeGreaterThan(0)
    expect(listed(listing)).toEqual(want)
  })

  if (name === 'list-ruleset.json') {
    it('a listing replayed as input lists the same again (handles aside)', async () => {
      await nft.runJson(doc)
      const listing = await nft.listRuleset()
      const version = (o: NftablesJson) => (o.nftables[0] as { metainfo?: { version?: string } }).metainfo?.version
      // The fixture is a 1.0.6 listing; other versions order and spell some objects their own way, so there the
      // check is that their own listing is a fixed point.
      if (version(listing) === version(doc as NftablesJson)) expect(withoutHandles(listing)).toEqual(withoutHandles(doc))
      const again = createNetns('nftschema')
      created.push(again.name)
      const other = new Nft({ netns: again.name })
      try {
        await other.runJson(listing)
        expect(withoutHandles(await other.listRuleset())).toEqual(withoutHandles(listing))
      } finally {
        other.close()
        again.delete()
      }
    })
  }
})

describe('commands that need committed state', () => {
  let ns: Netns
  let nft: Nft
  beforeEach(() => {
    ns = createNetns('nftschema')
    created.push(ns.name)
    nft = new Nft({ netns: ns.name })
  })
  afterEach(() => {
    nft.close()
    ns.delete()
  })

  it('replace and delete by handle, reset, rename, list', async () => {
    const t = { family: 'bridge', table: 'vmfw' } as const
    await nft.runJson({
      nftables: [
        { add: { table: { family: 'bridge', name: 'vmfw' } } },
        { add: { chain: { ...t, name: 'vm_spare' } } },
        { add: { counter: { ...t, name: 'spare_pkts', packets: 5, bytes: 500 } } },
        { add: { rule: { ...t, chain: 'vm_spare', expr: [{ counter: 'spare_pkts' }, { accept: null }] } } },
      ],
    } satisfies NftablesJson)
    const rule = (await nft.listRuleset()).nftables.find((o) => 'rule' in o)
    const handle = rule && 'rule' in rule ? rule.rule.handle : undefined
    if (handle === undefined) throw new Error('the listing has no rule handle')

    await nft.runJson({
      nftables: [
        { replace: { rule: { ...t, chain: 'vm_spare', handle, expr: [{ counter: 'spare_pkts' }, { drop: null }] } } },
        { rename: { chain: { ...t, name: 'vm_spare', newname: 'vm_renamed' } } },
      ],
    } satisfies NftablesJson)
    // `reset` in a call of its own: libnftables 1.1.x does not apply the writes that follow a reset in one batch.
    await nft.runJson({ nftables: [{ reset: { counter: { ...t, name: 'spare_pkts' } } }] } satisfies NftablesJson)
    const after = await nft.runJson({ nftables: [{ list: { table: { family: 'bridge', name: 'vmfw' } } }] } satisfies NftablesJson)
    expect(after.nftables).toContainEqual({ counter: expect.objectContaining({ name: 'spare_pkts', packets: 0, bytes: 0 }) })
    expect(after.nftables).toContainEqual({ chain: expect.objectContaining({ name: 'vm_renamed' }) })
    expect(after.nftables).toContainEqual({
      rule: expect.objectContaining({ chain: 'vm_renamed', handle, expr: [{ counter: 'spare_pkts' }, { drop: null }] }),
    })

    await nft.runJson({ nftables: [{ delete: { rule: { ...t, chain: 'vm_renamed', handle } } }] } satisfies NftablesJson)
    expect((await nft.listRuleset()).nftables.some((o) => 'rule' in o)).toBe(false)
  })
})

// Three fixtures again as typed constants: literal values (families, hooks, operators, verdicts)
// are checked here by the compiler, and the test above proves they equal the JSON files.

const infinibay = { family: 'bridge', table: 'infinibay' } as const

const bridgeBaseChainsTyped = {
  nftables: [
    { add: { table: { family: 'bridge', name: 'infinibay' } } },
    { add: { chain: { ...infinibay, name: 'prerouting', type: 'filter', hook: 'prerouting', prio: -300, policy: 'accept' } } },
    { add: { chain: { ...infinibay, name: 'forward', type: 'filter', hook: 'forward', prio: 0, policy: 'drop' } } },
    { add: { chain: { ...infinibay, name: 'output', type: 'filter', hook: 'output', prio: 100, policy: 'accept' } } },
    { add: { chain: { ...infinibay, name: 'postrouting', type: 'filter', hook: 'postrouting', prio: 300, policy: 'accept' } } },
    {
      add: {
        rule: {
          ...infinibay,
          chain: 'prerouting',
          comment: 'no STP/LLDP from guests',
          expr: [
            {
              match: {
                op: '==',
                left: { payload: { protocol: 'ether', field: 'daddr' } },
                right: { set: ['01:80:c2:00:00:00', '01:80:c2:00:00:0e'] },
              },
            },
            { counter: { packets: 0, bytes: 0 } },
            { drop: null },
          ],
        },
      },
    },
    {
      add: {
        rule: {
          ...infinibay,
          chain: 'prerouting',
          comment: 'guests may not tag',
          expr: [
            { match: { op: '==', left: { payload: { protocol: 'ether', field: 'type' } }, right: '8021q' } },
            { match: { op: '==', left: { payload: { protocol: 'vlan', field: 'id' } }, right: { range: [1, 4094] } } },
            { drop: null },
          ],
        },
      },
    },
    {
      add: {
        rule: {
          ...infinibay,
          chain: 'forward',
          expr: [{ match: { op: '==', left: { payload: { protocol: 'ether', field: 'type' } }, right: 'arp' } }, { accept: null }],
        },
      },
    },
    {
      add: {
        rule: {
          ...infinibay,
          chain: 'forward',
          expr: [
            {
              match: {
                op: '==',
                left: { payload: { protocol: 'icmpv6', field: 'type' } },
                right: { set: ['nd-neighbor-solicit', 'nd-neighbor-advert', 'nd-router-advert'] },
              },
            },
            { accept: null },
          ],
        },
      },
    },
    {
      add: {
        rule: {
          ...infinibay,
          chain: 'forward',
          comment: 'routed traffic',
          expr: [
            { match: { op: '==', left: { payload: { protocol: 'ether', field: 'type' } }, right: { set: ['ip', 'ip6'] } } },
            { counter: { packets: 0, bytes: 0 } },
            { accept: null },
          ],
        },
      },
    },
    {
      add: {
        rule: {
          ...infinibay,
          chain: 'output',
          expr: [
            { match: { op: '==', left: { meta: { key: 'pkttype' } }, right: 'broadcast' } },
            { limit: { rate: 100, per: 'second' } },
            { accept: null },
          ],
        },
      },
    },
    {
      add: {
        rule: {
          ...infinibay,
          chain: 'postrouting',
          expr: [{ match: { op: '==', left: { meta: { key: 'oifname' } }, right: 'vnet*' } }, { counter: { packets: 0, bytes: 0 } }],
        },
      },
    },
    {
      add: {
        rule: {
          ...infinibay,
          chain: 'postrouting',
          expr: [
            { match: { op: '==', left: { meta: { key: 'pkttype' } }, right: { set: ['broadcast', 'multicast'] } } },
            { limit: { rate: 1000, per: 'second', burst: 200 } },
            { accept: null },
          ],
        },
      },
    },
  ],
} satisfies NftablesJson

const bridgeVmapIfnameTyped = {
  nftables: [
    { add: { table: { family: 'bridge', name: 'infinibay' } } },
    { add: { chain: { ...infinibay, name: 'forward', type: 'filter', hook: 'forward', prio: 0, policy: 'drop' } } },
    { add: { chain: { ...infinibay, name: 'vm_web01_in' } } },
    { add: { chain: { ...infinibay, name: 'vm_web01_out' } } },
    { add: { chain: { ...infinibay, name: 'vm_db01_in' } } },
    { add: { chain: { ...infinibay, name: 'vm_db01_out' } } },
    {
      add: {
        rule: {
          ...infinibay,
          chain: 'forward',
          expr: [{ match: { op: '==', left: { payload: { protocol: 'ether', field: 'type' } }, right: 'arp' } }, { accept: null }],
        },
      },
    },
    {
      add: {
        rule: {
          ...infinibay,
          chain: 'forward',
          comment: 'from VMs',
          expr: [
            {
              vmap: {
                key: { meta: { key: 'iifname' } },
                data: { set: [['vnet0', { jump: { target: 'vm_web01_out' } }], ['vnet1', { jump: { target: 'vm_db01_out' } }]] },
              },
            },
          ],
        },
      },
    },
    {
      add: {
        rule: {
          ...infinibay,
          chain: 'forward',
          comment: 'to VMs',
          expr: [
            { counter: { packets: 0, bytes: 0 } },
            {
              vmap: {
                key: { meta: { key: 'oifname' } },
                data: { set: [['vnet0', { jump: { target: 'vm_web01_in' } }], ['vnet1', { goto: { target: 'vm_db01_in' } }]] },
              },
            },
          ],
        },
      },
    },
    {
      add: {
        rule: {
          ...infinibay,
          chain: 'forward',
          expr: [
            {
              vmap: {
                key: { payload: { protocol: 'ether', field: 'type' } },
                data: { set: [['8021q', { drop: null }], ['ip', { continue: null }], ['ip6', { continue: null }]] },
              },
            },
          ],
        },
      },
    },
    {
      add: {
        rule: {
          ...infinibay,
          chain: 'vm_web01_out',
          comment: 'MAC anti-spoofing',
          expr: [
            { match: { op: '!=', left: { payload: { protocol: 'ether', field: 'saddr' } }, right: '52:54:00:12:34:01' } },
            { drop: null },
          ],
        },
      },
    },
    {
      add: {
        rule: {
          ...infinibay,
          chain: 'vm_web01_out',
          comment: 'IPv4 anti-spoofing',
          expr: [{ match: { op: '!=', left: { payload: { protocol: 'ip', field: 'saddr' } }, right: '10.0.0.11' } }, { drop: null }],
        },
      },
    },
    { add: { rule: { ...infinibay, chain: 'vm_web01_out', expr: [{ return: null }] } } },
    {
      add: {
        rule: {
          ...infinibay,
          chain: 'vm_web01_in',
          expr: [
            { match: { op: '==', left: { payload: { protocol: 'tcp', field: 'dport' } }, right: { set: [80, 443] } } },
            { accept: null },
          ],
        },
      },
    },
    {
      add: {
        rule: {
          ...infinibay,
          chain: 'vm_web01_in',
          expr: [{ match: { op: '==', left: { payload: { protocol: 'ether', field: 'type' } }, right: 'arp' } }, { accept: null }],
        },
      },
    },
    { add: { rule: { ...infinibay, chain: 'vm_web01_in', expr: [{ drop: null }] } } },
    {
      add: {
        rule: {
          ...infinibay,
          chain: 'vm_db01_out',
          expr: [
            { match: { op: '!=', left: { payload: { protocol: 'ether', field: 'saddr' } }, right: '52:54:00:12:34:02' } },
            { drop: null },
          ],
        },
      },
    },
    { add: { rule: { ...infinibay, chain: 'vm_db01_out', expr: [{ accept: null }] } } },
    {
      add: {
        rule: {
          ...infinibay,
          chain: 'vm_db01_in',
          expr: [
            { match: { op: '==', left: { payload: { protocol: 'ip', field: 'saddr' } }, right: '10.0.0.11' } },
            { match: { op: '==', left: { payload: { protocol: 'tcp', field: 'dport' } }, right: 5432 } },
            { accept: null },
          ],
        },
      },
    },
    { add: { rule: { ...infinibay, chain: 'vm_db01_in', expr: [{ drop: null }] } } },
  ],
} satisfies NftablesJson

const bridgeTeardownTyped = {
  nftables: [
    { flush: { ruleset: null } },
    { add: { table: { family: 'bridge', name: 'infinibay' } } },
    { add: { chain: { ...infinibay, name: 'forward', type: 'filter', hook: 'forward', prio: 0, policy: 'drop' } } },
    { add: { chain: { ...infinibay, name: 'vm_old_in' } } },
    { add: { chain: { ...infinibay, name: 'vm_old_out' } } },
    { add: { chain: { ...infinibay, name: 'vm_new_in' } } },
    { add: { set: { ...infinibay, name: 'old_allowed', type: 'ipv4_addr', elem: ['10.0.0.21', '10.0.0.22'] } } },
    { add: { counter: { ...infinibay, name: 'old_in', comment: 'retired VM' } } },
    {
      add: {
        rule: {
          ...infinibay,
          chain: 'vm_old_in',
          expr: [
            { match: { op: '==', left: { payload: { protocol: 'ip', field: 'saddr' } }, right: '@old_allowed' } },
            { counter: 'old_in' },
            { accept: null },
          ],
        },
      },
    },
    {
      add: {
        rule: {
          ...infinibay,
          chain: 'vm_new_in',
          expr: [{ match: { op: '==', left: { payload: { protocol: 'tcp', field: 'dport' } }, right: 22 } }, { accept: null }],
        },
      },
    },
    { insert: { rule: { ...infinibay, chain: 'vm_new_in', expr: [{ drop: null }] } } },
    { insert: { rule: { ...infinibay, chain: 'vm_new_in', index: 0, expr: [{ counter: { packets: 0, bytes: 0 } }] } } },
    {
      add: {
        rule: {
          ...infinibay,
          chain: 'forward',
          expr: [{ vmap: { key: { meta: { key: 'oifname' } }, data: { set: [['vnet5', { jump: { target: 'vm_new_in' } }]] } } }],
        },
      },
    },
    { add: { element: { ...infinibay, name: 'old_allowed', elem: ['10.0.0.23'] } } },
    { delete: { element: { ...infinibay, name: 'old_allowed', elem: ['10.0.0.21'] } } },
    { flush: { chain: { ...infinibay, name: 'vm_old_in' } } },
    { delete: { chain: { ...infinibay, name: 'vm_old_in' } } },
    { delete: { chain: { ...infinibay, name: 'vm_old_out' } } },
    { delete: { set: { ...infinibay, name: 'old_allowed', type: 'ipv4_addr' } } },
    { delete: { counter: { ...infinibay, name: 'old_in' } } },
    { create: { table: { family: 'bridge', name: 'scratch' } } },
    { add: { chain: { family: 'bridge', table: 'scratch', name: 'tmp' } } },
    { flush: { table: { family: 'bridge', name: 'scratch' } } },
    { delete: { table: { family: 'bridge', name: 'scratch' } } },
  ],
} satisfies NftablesJson
