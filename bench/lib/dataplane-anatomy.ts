// Where a frame's time goes in VmFirewall's ruleset (issue 15, data plane): VmFirewall's table as loaded, then
// taken apart or reshaped by nft text in the bench namespace, one piece at a time. Pure: each function maps
// listings (`list chain` text) to the commands that reshape the table; dataplane.ts measures the results.
//   hooks only            the base chains stay, empty: the cost of the two hooks
//   no guard              the base chains hold only their dispatch rules: hooks, maps and the VMs' chains
//   no user rules         the two VMs' chains hold only their default rule: hooks, maps and the shared guard
//   by L4 protocol        prototype: each VM chain's TCP and UDP rules in a chain of their own, behind one
//                         `meta l4proto <p> jump` rule each (a UDP frame walks no TCP rule)
//   DHCP behind a port set  prototype: the guard's DHCP checks in one chain behind `udp sport { ... } jump`
//                         (an IPv4 frame walks 3 guard_ip rules instead of 6)
//   guard for VM ports only  prototype: the guard's base-chain rules behind one tap-set lookup each way (a frame
//                         from the uplink skips the guard)

const FAMILY = 'bridge'

/** The rules of one listed chain, as nft text (counter values dropped, so each can be added again). */
export function chainRuleLines(listing: string): string[] {
  const lines = listing.split('\n').map((l) => l.trim())
  const start = lines.findIndex((l) => l.startsWith('chain '))
  const out: string[] = []
  for (const l of lines.slice(start + 1)) {
    if (l === '}') break
    if (!l || l.startsWith('type ')) continue
    out.push(l.replace(/counter packets \d+ bytes \d+/, 'counter'))
  }
  return out
}

const add = (table: string, chain: string, rules: readonly string[]) => rules.map((r) => `add rule ${FAMILY} ${table} ${chain} ${r}`)
const flush = (table: string, chain: string) => `flush chain ${FAMILY} ${table} ${chain}`

/** Both base chains emptied. */
export function hooksOnly(table: string): string {
  return [flush(table, 'prerouting'), flush(table, 'postrouting')].join('\n')
}

/** Both base chains hold only their dispatch rule (no guard). */
export function withoutGuard(table: string): string {
  return [flush(table, 'prerouting'), flush(table, 'postrouting'), ...add(table, 'prerouting', ['iifname vmap @from_vm']), ...add(table, 'postrouting', ['oifname vmap @to_vm'])].join('\n')
}

/** A VM chain with only its last (default) rule. */
export function defaultOnly(table: string, chain: string, listing: string): string {
  return [flush(table, chain), ...add(table, chain, chainRuleLines(listing).slice(-1))].join('\n')
}

/** The L4 protocol a listed rule requires (`tcp dport ...`, `udp ...`), if any. */
const protocolOf = (rule: string): 'tcp' | 'udp' | undefined => (/\btcp (dport|sport|flags)\b/.test(rule) ? 'tcp' : /\budp (dport|sport)\b/.test(rule) ? 'udp' : undefined)

/**
 * Prototype: a VM chain's rules grouped by L4 protocol. Only when every rule but the last (default) requires
 * TCP or UDP: rules of different protocols never match the same frame, so their order relative to each other
 * does not matter, and each group keeps its own order. Undefined when the chain does not have that form.
 */
export function groupedByProtocol(table: string, chain: string, listing: string): string | undefined {
  const rules = chainRuleLines(listing)
  const last = rules.pop()
  const groups = { tcp: [] as string[], udp: [] as string[] }
  for (const r of rules) {
    const p = protocolOf(r)
    if (!p) return undefined
    groups[p].push(r)
  }
  if (last === undefined) return undefined
  const out = [flush(table, chain)]
  for (const p of ['tcp', 'udp'] as const) {
    if (groups[p].length === 0) continue
    out.push(`add chain ${FAMILY} ${table} ${chain}_${p}`, ...add(table, `${chain}_${p}`, groups[p]))
  }
  out.push(...add(table, chain, [...(['tcp', 'udp'] as const).filter((p) => groups[p].length > 0).map((p) => `meta l4proto ${p} jump ${chain}_${p}`), last]))
  return out.join('\n')
}

const DHCP_FROM_VM = /"b:[0-9a-f]{8}:dhcp6?-(server-from-vm|client)"/
const DHCP_TO_VM = /"b:[0-9a-f]{8}:dhcp6?-reply"/

/**
 * Prototype: the guard's DHCP checks (4 rules in guard_ip and guard_ip6, 2 in postrouting) in one chain each
 * way, reached by one port-set lookup; every other rule stays where it was. Undefined when the chains do not
 * hold the checks.
 */
export function dhcpBehindPortSet(table: string, listings: { guardIp: string; guardIp6: string; postrouting: string }): string | undefined {
  const ip = chainRuleLines(listings.guardIp)
  const ip6 = chainRuleLines(listings.guardIp6)
  const post = chainRuleLines(listings.postrouting)
  const fromVm = ip.filter((r) => DHCP_FROM_VM.test(r))
  const toVm = post.filter((r) => DHCP_TO_VM.test(r))
  if (fromVm.length !== 4 || toVm.length !== 2 || ip6.filter((r) => DHCP_FROM_VM.test(r)).length !== 4) return undefined
  // The jump sits where the first DHCP check was, so every rule before and after keeps its order.
  const gated = (rules: string[], re: RegExp, jump: string) => {
    const at = rules.findIndex((r) => re.test(r))
    return [...rules.slice(0, at), jump, ...rules.slice(at).filter((r) => !re.test(r))]
  }
  return [
    `add chain ${FAMILY} ${table} guard_dhcp`,
    ...add(table, 'guard_dhcp', fromVm),
    `add chain ${FAMILY} ${table} guard_dhcp_in`,
    ...add(table, 'guard_dhcp_in', toVm),
    flush(table, 'guard_ip'),
    ...add(table, 'guard_ip', gated(ip, DHCP_FROM_VM, 'udp sport { 67, 68, 546, 547 } jump guard_dhcp')),
    flush(table, 'guard_ip6'),
    ...add(table, 'guard_ip6', gated(ip6, DHCP_FROM_VM, 'udp sport { 67, 68, 546, 547 } jump guard_dhcp')),
    flush(table, 'postrouting'),
    ...add(table, 'postrouting', gated(post, DHCP_TO_VM, 'udp sport { 67, 547 } jump guard_dhcp_in')),
  ].join('\n')
}

/**
 * Prototype: the guard only for VM ports. Its base-chain rules move into a chain of their own each way, entered
 * by `iifname @b_arp` / `oifname @b_arp_in` (every VM's tap is in those sets: its ARP built-in always applies),
 * so a frame from or to another port (the uplink, the host) skips the guard; the dispatch rule stays last.
 * Undefined when the base chains do not have the guard's form (its rules, then one dispatch rule).
 */
export function guardForVmPortsOnly(table: string, listings: { prerouting: string; postrouting: string }): string | undefined {
  const pre = chainRuleLines(listings.prerouting)
  const post = chainRuleLines(listings.postrouting)
  const [preDispatch, postDispatch] = [pre.pop(), post.pop()]
  if (preDispatch !== 'iifname vmap @from_vm' || postDispatch !== 'oifname vmap @to_vm' || pre.length === 0 || post.length === 0) return undefined
  return [
    `add chain ${FAMILY} ${table} guard_from_vm`,
    ...add(table, 'guard_from_vm', pre),
    `add chain ${FAMILY} ${table} guard_to_vm`,
    ...add(table, 'guard_to_vm', post),
    flush(table, 'prerouting'),
    ...add(table, 'prerouting', ['iifname @b_arp jump guard_from_vm', preDispatch]),
    flush(table, 'postrouting'),
    ...add(table, 'postrouting', ['oifname @b_arp_in jump guard_to_vm', postDispatch]),
  ].join('\n')
}
