// The lean write of the exact table's elements (issue 15, firewall/netlink-batch.ts): one VM's policy added for
// one tap through libnftables and for another as netlink messages built here must list the same (keys of every
// shape, verdicts, comments, per-element counters), and deleting them both ways must leave the table as it was.
// The table itself, created lean, lists (and dumps, expression by expression) as libnftables creates it.
import { beforeAll, describe, expect, it } from 'vitest'
import { Nft } from '../../ts/index.js'
import type { NftCommand } from '../../ts/schema.js'
import { VmFirewall, type FirewallRuleInput } from '../../ts/firewall/index.js'
import { EXACT_SHAPES, exactPolicy, type ExactPolicy } from '../../ts/firewall/exact-rules.js'
import { exactChanges, listedAsTableElements } from '../../ts/firewall/exact-reconcile.js'
import { exactElementCommands, exactTableCommands, exactTableOfText, shapesOf, tableElementsOf } from '../../ts/firewall/exact-table.js'
import { encodeBatch } from '../../ts/firewall/netlink-batch.js'
import { normalizeVm } from '../../ts/firewall/validate.js'
import { rejection } from '../support/errors.js'
import type { Netns } from '../support/netns.js'
import { useNetnsNft } from '../support/netns-nft.js'

let ns: Netns
let nft: Nft
useNetnsNft((n, f) => ([ns, nft] = [n, f]))

const T = 'exact_lean'
const LIB = 'tapLib'
const LEAN = 'tapLean'

/** One rule per shape, in the catalogue's order (so no overlap of different verdicts is order-dependent), both
 *  directions: hosts of both families as source and destination with protocol and port, with protocol only, alone;
 *  then protocol and port (a range), protocol alone (ICMP of both families, UDP). */
const RULES: FirewallRuleInput[] = [
  { id: 's4lp', name: 's4lp', protocol: 'tcp', srcIpAddr: '10.0.0.1', dstPortStart: 22 },
  { id: 'd4lp', name: 'd4lp', action: 'DROP', protocol: 'udp', dstIpAddr: '10.0.0.2', dstPortStart: 53 },
  { id: 's6lp', name: 's6lp', protocol: 'tcp', srcIpAddr: '2001:db8::1', dstPortStart: 443 },
  { id: 'd6lp', name: 'd6lp', action: 'DROP', protocol: 'udp', dstIpAddr: '2001:db8::2', dstPortStart: 123 },
  { id: 's4l', name: 's4l', protocol: 'icmp', srcIpAddr: '10.0.0.3' },
  { id: 'd4l', name: 'd4l', action: 'DROP', protocol: 'tcp', dstIpAddr: '10.0.0.4' },
  { id: 's6l', name: 's6l', protocol: 'icmp', srcIpAddr: '2001:db8::3' },
  { id: 'd6l', name: 'd6l', protocol: 'udp', dstIpAddr: '2001:db8::4' },
  { id: 's4', name: 's4', action: 'DROP', srcIpAddr: '10.0.0.5' },
  { id: 'd4', name: 'd4', dstIpAddr: '10.0.0.6' },
  { id: 's6', name: 's6', srcIpAddr: '2001:db8::5' },
  { id: 'd6', name: 'd6', action: 'DROP', protocol: 'all', dstIpAddr: '2001:db8::6' },
  { id: 'lp', name: 'lp', protocol: 'tcp', dstPortStart: 8000, dstPortEnd: 8003 },
  { id: 'l', name: 'l', protocol: 'icmp' },
  { id: 'l-udp', name: 'l-udp', action: 'DROP', protocol: 'udp' },
]

function policyOf(tap: string): ExactPolicy {
  const vm = normalizeVm({ vmId: 'vm-exact', tap, defaultAction: 'drop', rules: RULES })
  const p = exactPolicy(vm, { capabilities: { bridgeConntrack: true, bridgeReject: false }, conntrack: 'auto' })
  if ('reason' in p) throw new Error(`${p.reason}: ${p.message}`)
  return p
}
const POLICY = policyOf(LIB)
const commands = (verb: 'add' | 'delete', tap: string): NftCommand[] => exactElementCommands(T, verb, tap, 'vm-exact', POLICY)

const tableText = (): string => ns.exec('nft', ['list', 'table', 'bridge', T])
/** The listing's elements of `tap`, one per line (the printer's `elements = {`, `,` and `}` aside), each after
 *  its map's name, the tap's name left out. */
function elementLines(text: string, tap: string): string[] {
  let map = ''
  const out: string[] = []
  for (const line of text.split('\n')) {
    map = /^\s*map (\S+) \{/.exec(line)?.[1] ?? map
    const e = line.trim().replace(/^elements = \{ /, '').replace(/( \}|,)$/, '')
    if (e.startsWith(`"${tap}"`)) out.push(`${map} ${e.replace(`"${tap}"`, '"TAP"')}`)
  }
  return out.sort()
}

async function lean(cmds: NftCommand[], table = T): Promise<void> {
  const messages = encodeBatch(table, cmds)
  expect(messages, 'every command is encoded').toBeDefined()
  await nft.commitBatch(table, messages!)
}

let empty: string
beforeAll(async () => {
  await nft.runJson({ nftables: exactTableCommands(T, { shapes: shapesOf([POLICY]), stateful: false, fresh: true }) })
  empty = tableText()
})

describe('the exact table: elements written lean', () => {
  it('the policy uses every shape on both sides', () => {
    const all = EXACT_SHAPES.map((s) => s.name)
    expect([...POLICY.shapes.out].sort()).toEqual([...all].sort())
    expect([...POLICY.shapes.in].sort()).toEqual([...all].sort())
  })

  for (const stateful of [false, true]) {
    it(`creates the table as libnftables does: every map and lookup, both sides (${stateful ? 'stateful' : 'stateless'})`, async () => {
      const create = (t: string): NftCommand[] => exactTableCommands(t, { shapes: shapesOf([POLICY]), stateful, fresh: true })
      const [viaLib, viaLean] = ['exact_by_lib', 'exact_by_lean']
      // The listing, and libnftables' netlink debug of it: each rule's expressions with their registers, each
      // map's key type and flags, read back from the kernel.
      // A hash set's dump order follows its random seed: each set's element lines are compared sorted.
      const listed = (t: string): string[] =>
        [ns.exec('nft', ['list', 'table', 'bridge', t]), ns.exec('nft', ['--debug=netlink', 'list', 'table', 'bridge', t])].map((x) =>
          x.replaceAll(t, 'TABLE').replace(/(?:^\telement .*\n)+/gm, (run) => run.split('\n').filter(Boolean).sort().join('\n') + '\n'),
        )
      const messages = encodeBatch(viaLean, create(viaLean))
      expect(messages, 'every command is encoded').toBeDefined()
      try {
        if (stateful && !(await new VmFirewall(nft).capabilities()).bridgeConntrack) {
          // No bridge conntrack here (the distro-kernel runner has it): `ct state` is refused either way, alike.
          const [byLib, byLean] = [await rejection(nft.runJson({ nftables: create(viaLib) })), await rejection(nft.commitBatch(viaLean, messages!))]
          expect(byLean.code).toBe(byLib.code)
          expect(ns.exec('nft', ['list', 'tables', 'bridge'])).not.toMatch(/exact_by_/)
          return
        }
        await nft.runJson({ nftables: create(viaLib) })
        await nft.commitBatch(viaLean, messages!)
        const [byLib, byLean] = [listed(viaLib), listed(viaLean)]
        expect(byLib[0]).toMatch(/map in_d6lp \{\n\s+type ifname \. ipv6_addr \. inet_proto \. inet_service : verdict\n\s+counter/)
        expect(byLib[1]).toContain('[ lookup reg 1 set out_s6lp dreg 0 0x0 ]')
        if (stateful) expect(byLib[0]).toContain('ct state established,related accept')
        expect(byLean).toEqual(byLib)
        // Both hold the same elements, every shape's: the maps' keys are laid out alike.
        await nft.runJson({ nftables: exactElementCommands(viaLib, 'add', LIB, 'vm-exact', POLICY) })
        await lean(exactElementCommands(viaLean, 'add', LIB, 'vm-exact', POLICY), viaLean)
        expect(listed(viaLean)).toEqual(listed(viaLib))
      } finally {
        await nft.run(`destroy table bridge ${viaLib}; destroy table bridge ${viaLean}`).catch(() => nft.run(`delete table bridge ${viaLib}; delete table bridge ${viaLean}`).catch(() => undefined))
      }
    })
  }

  it('adds and deletes the same elements as libnftables', async () => {
    await nft.runJson({ nftables: commands('add', LIB) })
    await lean(commands('add', LEAN))
    const text = tableText()
    const [lib, viaLean] = [elementLines(text, LIB), elementLines(text, LEAN)]
    // Every element (each shape's and both defaults) on a line of its own, with its counter and comment.
    expect(lib).toHaveLength(POLICY.elements.length + 2)
    for (const l of lib) expect(l).toMatch(/^(out|in)_\w+ "TAP"( \. \S+)* counter packets 0 bytes 0 comment "[rd]:[^"]+" : (accept|drop)$/)
    expect(viaLean).toEqual(lib)
    // The same read back by the table's reader: maps, keys, verdicts, comments, counters.
    const view = exactTableOfText(text)
    expect(view.elements.get(LEAN)).toEqual(view.elements.get(LIB))
    expect(new Set(view.elements.get(LEAN)!.map((e) => e.map)).size).toBe(2 * (EXACT_SHAPES.length + 1))
    // And what the kernel lists is what was compiled, key by key, in every shape (addresses as the kernel prints them).
    expect(exactChanges(listedAsTableElements(view.elements.get(LEAN)!), tableElementsOf('vm-exact', POLICY))).toEqual({ missing: [], extra: [], changed: [], del: [], add: [] })

    await lean(commands('delete', LEAN))
    await nft.runJson({ nftables: commands('delete', LIB) })
    const after = tableText()
    expect(elementLines(after, LEAN)).toEqual([])
    expect(elementLines(after, LIB)).toEqual([])
    expect(after).toBe(empty)
  })

  it('deleting an element that is not there fails as libnftables fails', async () => {
    for (const cmd of [commands('delete', 'tapNone')[0]!, commands('delete', 'tapNone').at(-1)!]) {
      const viaLib = await rejection(nft.runJson({ nftables: [cmd] }))
      const viaLean = await rejection(nft.commitBatch(T, encodeBatch(T, [cmd])!))
      expect(viaLib.code).toBe('ENOENT')
      expect([viaLean.code, viaLean.index], JSON.stringify(cmd)).toEqual([viaLib.code, 0])
    }
    expect(tableText()).toBe(empty)
  })
})

describe('forms outside the encoder', () => {
  /** An add of one element of `map` (out_s4lp's key by default), changed by `edit`. */
  const add = (map: string, val: unknown, comment: unknown = 'r:x', verdict: unknown = { accept: null }) => [
    { add: { element: { family: 'bridge', table: T, name: map, elem: [[{ elem: { val, comment } }, verdict]] } } },
  ]
  const del = (map: string, val: unknown) => [{ delete: { element: { family: 'bridge', table: T, name: map, elem: [val] } } }]
  const key = (...k: unknown[]) => ({ concat: ['tap0', ...k] })

  it('the forms spelt are encoded', () => {
    expect(encodeBatch(T, add('out_s4lp', key('10.0.0.1', 'tcp', 22)))).toBeDefined()
    expect(encodeBatch(T, add('in_d6l', key('2001:db8::1', 'ipv6-icmp'), 'r:x', { drop: null }))).toBeDefined()
    expect(encodeBatch(T, add('in_default', 'tap0', 'd:vm'))).toBeDefined()
    expect(encodeBatch(T, del('out_lp', key('udp', 65535)))).toBeDefined()
  })

  it('are not encoded (the caller writes through libnftables)', () => {
    for (const cmds of [
      add('out_s4lp', key('10.0.0.1', 'tcp', 22), 'r:'.padEnd(200, 'x')), // a comment too long
      add('out_s4lp', key('10.0.0.1', 'tcp', 22), 'has "quotes"'),
      add('out_s4lp', key('10.0.0.1', 'tcp', 22), null), // no comment
      add('out_zz', key('10.0.0.1')), // unknown maps
      add('fwd_default', 'tap0'),
      del('out_s4', key('10.0.0.1')).map((c) => ({ delete: { element: { ...c.delete.element, name: 'out_s5' } } })),
      add('out_s4', key('10.0.0.256')), // bad addresses
      add('out_s4', key('2001:db8::1')),
      add('out_s6', key('10.0.0.1')),
      add('out_d6', key('::ffff:10.0.0.1')),
      del('in_d4', key('10.0.0')),
      add('out_lp', key('tcp', '22')), // a port that is no number
      add('out_lp', key('tcp', 65536)),
      del('out_lp', key('tcp', 2.5)),
      add('out_l', key('sctp')), // a protocol outside inet_proto's names here
      add('out_l', key(6)),
      add('out_s4lp', key('10.0.0.1', 'tcp')), // the key of another shape
      add('out_s4', '10.0.0.1'),
      add('out_default', key('10.0.0.1')),
      del('out_s4', 'tap0'),
      add('out_s4', key('10.0.0.1'), 'r:x', { jump: { target: 'c' } }), // a verdict other than accept/drop
      add('out_s4', key('10.0.0.1'), 'r:x', { accept: 1 }),
      [{ add: { element: { family: 'bridge', table: T, name: 'out_s4', elem: [[key('10.0.0.1'), { accept: null }]] } } }], // no elem wrapper
      [{ add: { element: { family: 'bridge', table: T, name: 'out_s4', elem: [[{ elem: { val: key('10.0.0.1'), comment: 'r:x', timeout: 5 } }, { accept: null }]] } } }],
      [{ create: { element: { family: 'bridge', table: T, name: 'out_default', elem: [[{ elem: { val: 'tap0', comment: 'd:x' } }, { accept: null }]] } } }],
    ]) {
      expect(encodeBatch(T, cmds), JSON.stringify(cmds)).toBeUndefined()
    }
  })
})
