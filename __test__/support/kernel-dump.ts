// The kernel's expressions of a table's rules as libnftnl prints them (`nft --debug=netlink list table`), for
// comparing what two writers (libnftables, the lean netlink path) left in two tables of one namespace. One
// listing per table: under TCG (the distro-kernel guest) every nft start costs ~0.5 s.
import type { Netns } from './netns.js'

/** Every chain's rules of bridge table `table`, by chain name, with the table's name and the rule handles taken
 *  out, and a libnftables 1.1 `range` spelt as 1.0.6's two compares. A chain without rules is absent. */
export function kernelDumps(ns: Netns, table: string): Map<string, string> {
  const chains = new Map<string, string[]>()
  let rule: string[] | undefined
  for (const l of ns.exec('nft', ['--debug=netlink', 'list', 'table', 'bridge', table]).split('\n')) {
    // A rule's header: `bridge <table> <chain> <handle> [<previous handle>]` (a set's is `bridge <table> @<set>`).
    const head = /^bridge (\S+) ([^@\s]\S*)( \d+)+$/.exec(l)
    if (head && head[1] === table) {
      const chain = head[2]!
      if (!chains.has(chain)) chains.set(chain, [])
      rule = chains.get(chain)!
      rule.push(`bridge T ${chain}`)
    } else if (l.startsWith('  [') && rule) {
      rule.push(l.replace(/^ {2}\[ range eq reg (\d+) (\S+) (\S+) \]$/, '  [ cmp gte reg $1 $2 ]\n  [ cmp lte reg $1 $3 ]'))
    } else {
      rule = undefined
    }
  }
  return new Map([...chains].map(([c, lines]) => [c, lines.join('\n')]))
}

export type Listed = Record<string, Record<string, unknown>>

/** `nft -j list table bridge <table>` (one nft start) with what differs by table: handles, the table's name, and
 *  the order in which a hash set lists its elements (the kernel seeds each set's hash at random). */
export function tableListing(ns: Netns, table: string): Listed[] {
  const doc = JSON.parse(ns.exec('nft', ['-j', 'list', 'table', 'bridge', table])) as { nftables: Listed[] }
  return doc.nftables
    .filter((o) => !('metainfo' in o))
    .map((o) => {
      const [[kind, body]] = Object.entries(o) as [[string, Record<string, unknown>]]
      const { handle: _h, table: _t, ...rest } = body
      if (kind === 'table') delete rest.name
      if (Array.isArray(rest.elem)) rest.elem = [...rest.elem].map((e) => JSON.stringify(e)).sort()
      return { [kind]: rest }
    })
}
