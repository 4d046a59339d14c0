// The kernel's expressions of a chain as libnftnl prints them (`nft --debug=netlink list chain`), for comparing
// what two writers (libnftables, the lean netlink path) left in two tables of one namespace.
import type { Netns } from './netns.js'

/** Chain `chain` of bridge table `table`, with the table's name and the rule handles taken out, and a
 *  libnftables 1.1 `range` spelt as 1.0.6's two compares. */
export function kernelDump(ns: Netns, table: string, chain: string): string {
  return ns
    .exec('nft', ['--debug=netlink', 'list', 'chain', 'bridge', table, chain])
    .split('\n')
    .filter((l) => l.startsWith('bridge ') || l.startsWith('  ['))
    .map((l) => l.replace(`bridge ${table} `, 'bridge T '))
    // A rule's header carries its handle and the previous rule's: numbers of the table, not of the rule.
    .map((l) => l.replace(/^(bridge T \S+)( \d+)+$/, '$1'))
    .map((l) => l.replace(/^ {2}\[ range eq reg (\d+) (\S+) (\S+) \]$/, '  [ cmp gte reg $1 $2 ]\n  [ cmp lte reg $1 $3 ]'))
    .join('\n')
}
