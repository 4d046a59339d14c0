// The restore guard without a kernel: what an export may contain, what is refused, and how refusals read.
import { describe, expect, it } from 'vitest'
import { checkRestore, FirewallValidationError, RestoreValidationError } from '../../ts/firewall/index.js'

const T = 'infinization'
const HEAD = `# @infinibay/nftables-node VmFirewall export: replaces table bridge ${T} atomically\ntable bridge ${T} {}\ndelete table bridge ${T}\n`
const exportOf = (body: string) => `${HEAD}table bridge ${T} {\n${body}\n}\n`

const BODY = [
  '\tcounter hits {',
  '\t\tpackets 12 bytes 3400',
  '\t}',
  '',
  '\tset extra {',
  '\t\ttype ipv4_addr',
  '\t\tflags interval',
  '\t\tcomment "a#b;c{}"',
  '\t\telements = { 10.0.0.0/8,',
  '\t\t\t     192.168.1.1 }',
  '\t}',
  '',
  '\tmap from_vm {',
  '\t\ttype ifname : verdict',
  '\t\telements = { "vnet0" : jump vm_114128759890a931d6d3fd39_o }',
  '\t}',
  '',
  '\tchain prerouting {',
  '\t\ttype filter hook prerouting priority filter; policy accept;',
  '\t\tiifname vmap @from_vm',
  '\t}',
  '',
  '\tchain vm_114128759890a931d6d3fd39_o {',
  '\t\tcomment "side#chain"',
  '\t\tether saddr != 52:54:00:aa:bb:01 counter packets 0 bytes 0 drop comment "b:9c1c80dc:mac-spoof"',
  '\t\ttcp sport 80-90 tcp flags != syn / syn,ack counter packets 0 bytes 0 accept comment "m:b5ab2284:r#1"',
  '\t\tip6 daddr fd00::/64 meta l4proto ipv6-icmp counter packets 0 bytes 0 drop comment "r:13c7ee70:r2"',
  '\t\tct state established,related accept comment "b:00000000:ct"',
  '\t\ttcp dport { 22, 80 } reject with tcp reset comment "r:00000000:rej"',
  '\t\tmeta l4proto udp reject with icmpx admin-prohibited comment "r:00000001:rej"',
  '\t\tadd @extra { ip saddr } counter',
  '\t\tcounter packets 0 bytes 0 drop comment "d:bbf11fbd:vm-a;#x{}$v\'x"',
  '\t}',
].join('\n')

function refusal(text: string, table = T): RestoreValidationError {
  try {
    checkRestore(text, table)
  } catch (e) {
    expect(e).toBeInstanceOf(RestoreValidationError)
    expect(e).toBeInstanceOf(FirewallValidationError)
    return e as RestoreValidationError
  }
  throw new Error('accepted')
}

describe('checkRestore accepts exports', () => {
  it('of the table with counters, sets, maps, base and regular chains, rules with strings holding # ; { } $', () => {
    const text = exportOf(BODY)
    const { script } = checkRestore(text, T)
    // Comments are not passed on; the line structure is kept (libnftables errors keep their line numbers).
    expect(script).not.toContain('@infinibay/nftables-node VmFirewall export')
    expect(script.split('\n').length).toBe(text.split('\n').length)
    expect(script).toContain('comment "m:b5ab2284:r#1"')
  })

  it('of an empty table, with comments, blank lines and ; separators', () => {
    expect(() => checkRestore(`${HEAD}\n# note\n\ntable bridge ${T} { # ours\n}\n`, T)).not.toThrow()
    expect(() => checkRestore(`table bridge ${T} {}; delete table bridge ${T}; table bridge ${T} { chain c { counter; drop } }`, T)).not.toThrow()
  })

  it('of base chains with the priorities nft prints', () => {
    for (const prio of ['filter', 'filter - 5', 'filter + 5', '100', '-300', '0', 'out + 10']) {
      expect(() => checkRestore(exportOf(`\tchain c {\n\t\ttype filter hook input priority ${prio}; policy drop;\n\t}`), T), prio).not.toThrow()
    }
  })

  it('of a base chain with a comment (listed before its declaration)', () => {
    expect(() => checkRestore(exportOf('\tchain a {\n\t\tcomment "hi"\n\t\ttype filter hook input priority 0; policy drop;\n\t\tcounter\n\t}'), T)).not.toThrow()
    expect(refusal(exportOf('\tchain a {\n\t\tcounter\n\t\ttype filter hook input priority 0; policy drop;\n\t}')).line).toBe(7)
  })

  it('of a table holding more than the firewall writes, exactly as nft 1.0.6 lists it', () => {
    // `nft list table bridge rich` of a hand-made table: named counter, dynamic/timeout/interval/concatenated
    // sets, typeof maps, interval vmap with a wildcard key, log/limit/numgen/raw payload/set-update rules.
    const listing = `table bridge rich {
	counter c1 {
		comment "cnt"
		packets 0 bytes 0
	}

	set s1 {
		type ipv4_addr
		size 1024
		flags dynamic,timeout
		timeout 1h
	}

	set s2 {
		type ether_addr . ifname
		elements = { 52:54:00:00:00:01 . "vnet0" comment "x#y" }
	}

	set s3 {
		typeof ip saddr
		flags interval
		auto-merge
		elements = { 10.0.0.0/8 }
	}

	map m1 {
		type ifname : verdict
		flags interval
		elements = { "tap*" : drop,
			     "vnet0" : jump c }
	}

	map m2 {
		typeof vlan id : meta mark
		elements = { 10 : 0x00000001 }
	}

	chain c {
		comment "side"
	}

	chain pre {
		type filter hook prerouting priority filter - 5; policy accept;
		vlan id 10 ether type ip counter packets 0 bytes 0
		meta mark set 0x00000010 limit rate 10/second log prefix "x: " level info accept
		ip saddr @s3 update @s1 { ip saddr timeout 5m } counter name "c1"
		ether saddr . iifname @s2 accept
		iifname vmap @m1
		meta pkttype broadcast meta l4proto { tcp, udp } th dport { 53, 67-68 } accept
		ip6 nexthdr ipv6-icmp icmpv6 type nd-neighbor-solicit accept
		ip dscp cs1 ip ttl < 5 drop
		tcp flags syn / syn,ack counter packets 0 bytes 0 drop
		@nh,8,8 0x1 drop
		meta mark set numgen inc mod 2
		ether type 8021q drop
		ip6 saddr fe80::/10 drop
	}
}
`
    expect(() => checkRestore(`table bridge rich {}\ndelete table bridge rich\n${listing}`, 'rich')).not.toThrow()
  })

  it("of the shared identity guard (issue 15) exactly as nft 1.0.6 lists it: concatenated sets, element counters, the protocol dispatch", () => {
    const guard = [
      '\tset id_mac {',
      '\t\ttype ifname . ether_addr',
      '\t\telements = { "vnet0" . 52:54:00:aa:bb:01,',
      '\t\t\t     "vnet1" . 52:54:00:aa:bb:02 }',
      '\t}',
      '',
      '\tset id_ipv6 {',
      '\t\ttype ifname . ipv6_addr',
      '\t\telements = { "vnet0" . fe80::5054:ff:feaa:bb01,',
      '\t\t\t     "vnet0" . fd00::5 }',
      '\t}',
      '',
      '\tset b_ip_spoof {',
      '\t\ttype ifname',
      '\t\tcounter',
      '\t\telements = { "vnet0" counter packets 3 bytes 180,',
      '\t\t\t     "vnet1" counter packets 0 bytes 0 }',
      '\t}',
      '',
      '\tset b_arp_in {',
      '\t\ttype ifname',
      '\t\tcounter',
      '\t}',
      '',
      '\tchain glog_ip_spoof {',
      '\t\tlimit rate 10/second burst 20 packets log prefix "nn:guard:o:b:ip-spoof" group 16 comment "b:0badf00d:ip-spoof-log"',
      '\t\tdrop comment "b:0badf00d:ip-spoof"',
      '\t}',
      '',
      '\tchain guard_ip {',
      '\t\tip saddr 0.0.0.0 udp sport 68 udp dport 67 iifname @b_dhcp_discover accept comment "b:12345678:dhcp-discover"',
      '\t\tiifname . ip saddr != @id_ipv4 iifname @b_ip_spoof jump glog_ip_spoof comment "b:12345678:ip-spoof"',
      '\t}',
      '',
      '\tchain guard_arp {',
      '\t\tiifname . arp saddr ether != @id_mac iifname @b_arp_mac_spoof drop comment "b:12345678:arp-mac-spoof"',
      '\t\tarp saddr ip != 0.0.0.0 iifname . arp saddr ip != @id_ipv4 iifname @b_arp_ip_spoof drop comment "b:12345678:arp-ip-spoof"',
      '\t}',
      '',
      '\tchain prerouting {',
      '\t\ttype filter hook prerouting priority -150; policy accept;',
      '\t\tiifname . ether saddr != @id_mac iifname @b_mac_spoof drop comment "b:12345678:mac-spoof"',
      '\t\tether type vmap { ip : jump guard_ip, arp : jump guard_arp, ip6 : jump guard_ip6, 8021q : jump guard_vlan, 8021ad : jump guard_vlan } comment "b:12345678:guard"',
      '\t\tiifname vmap @from_vm',
      '\t}',
    ].join('\n')
    expect(checkRestore(exportOf(guard), T).script).toContain('"vnet0" counter packets 3 bytes 180')
  })

  it('of sets and maps over every key form the check knows', () => {
    const body = [
      '\tset a {\n\t\ttype ifname . ipv4_addr . inet_service\n\t}',
      '\tset b {\n\t\ttypeof iifname . ether saddr . meta l4proto\n\t}',
      '\tmap c {\n\t\ttype ifname : counter\n\t}',
      '\tmap d {\n\t\ttypeof ip saddr . th dport : ct mark\n\t}',
      '\tmap e {\n\t\ttype ether_type : verdict\n\t}',
    ].join('\n\n')
    expect(() => checkRestore(exportOf(body), T)).not.toThrow()
  })

  it('of another table name when the firewall has that name', () => {
    expect(() => checkRestore(exportOf(BODY).replaceAll(`bridge ${T}`, 'bridge mine'), 'mine')).not.toThrow()
  })
})

describe('checkRestore refuses', () => {
  const cases: [string, string, number, RegExp][] = [
    ['an empty file', '   \n', 0, /non-empty/],
    ['flush ruleset', 'flush ruleset\n', 1, /only that table may be restored/],
    ['a second table block', `${exportOf('')}table bridge ${T} {\n}\n`, 7, /nothing may follow/],
    ['a missing delete', `table bridge ${T} {}\ntable bridge ${T} {\n}\n`, 2, /delete table bridge infinization/],
    ['another family', exportOf('').replaceAll('table bridge', 'table inet'), 2, /not table inet infinization/],
    ['a table header cut short', `table\nbridge ${T} {}\n`, 1, /only table bridge infinization may be restored, not "table" followed by the end of the line/],
    ['flags in the table', exportOf('\tflags dormant'), 5, /"flags" is not allowed in the table/],
    ['a flowtable', exportOf('\tflowtable ft {\n\t}'), 5, /"flowtable" is not allowed/],
    ['an include in a chain', exportOf('\tchain c {\n\t\tinclude "/etc/passwd"\n\t}'), 6, /"include"/],
    ['a define in a set', exportOf('\tset s {\n\t\tdefine x = 1\n\t}'), 6, /"define" is not allowed in a set/],
    ['a variable', exportOf('\tchain c {\n\t\ttcp dport $p accept\n\t}'), 6, /variables/],
    ['an osf match', exportOf('\tchain c {\n\t\tosf name "Linux" drop\n\t}'), 6, /"osf"/],
    ['a cgroup path lookup', exportOf('\tchain c {\n\t\tsocket cgroupv2 level 1 "../../etc" drop\n\t}'), 6, /"socket"/],
    ['a user name lookup', exportOf('\tchain c {\n\t\tmeta skuid root drop\n\t}'), 6, /"skuid"/],
    ['reset after tcp outside reject', exportOf('\tchain c {\n\t\ttcp sport 22 tcp reset counters drop\n\t}'), 6, /"reset" is allowed only in "reject with tcp reset"/],
    ['a command inside a chain', exportOf('\tchain c {\n\t\tdelete table inet other\n\t}'), 6, /"delete" is allowed in a rule only as a set statement/],
    ['reset outside reject', exportOf('\tchain c {\n\t\treset counters\n\t}'), 6, /"reset" is allowed only in "reject with tcp reset"/],
    ['a hook other than a bridge hook', exportOf('\tchain c {\n\t\ttype filter hook ingress priority 0; policy accept;\n\t}'), 6, /base chain/],
    ['words hidden in a priority', exportOf('\tchain c {\n\t\ttype filter hook input priority flush ruleset filter; policy accept;\n\t}'), 6, /base chain/],
    ['a policy without a base chain', exportOf('\tchain c {\n\t\tpolicy drop\n\t}'), 6, /policy/],
    ['a device', exportOf('\tchain c {\n\t\ttype filter hook prerouting device "lo" priority 0;\n\t}'), 6, /base chain/],
    ['an unclosed block', `${HEAD}table bridge ${T} {\n\tchain c {\n`, 6, /not closed/],
    ['a quoted name', exportOf('\tchain "c" {\n\t}'), 5, /plain identifier/],
    ['a multi-line string', exportOf('\tchain c {\n\t\tcounter comment "a\n}}\nflush ruleset\n"\n\t}'), 6, /unterminated string/],
    ['a backslash in a string', exportOf('\tchain c {\n\t\tcounter comment "a\\"\n\t}'), 6, /"\\" is not allowed in a string/],
    ['a line continuation', exportOf('\tchain c {\n\t\tcounter \\\n\t\tdrop\n\t}'), 6, /backslashes/],
    ['a carriage return', exportOf('').replace('\n', '\r\n'), 1, /carriage return/],
    ['a NUL in a comment', `# \0\n${exportOf('')}`, 1, /NUL/],
    ['a command after a concatenated element', exportOf('\tset s {\n\t\ttype ifname . ether_addr\n\t\telements = { "v" . 52:54:00:aa:bb:01 } ; flush ruleset\n\t}'), 7, /"flush"/],
    ['a command in an element counter', exportOf('\tset s {\n\t\ttype ifname\n\t\tcounter\n\t\telements = { "v" counter packets 1 bytes 1 delete table inet other }\n\t}'), 8, /"table"|"delete"/],
    ['a non-ASCII lookalike', exportOf('\tchain c {\n\t\t\ufb02ush ruleset\n\t}'), 6, /U\+FB02/],
    // Each of these, with elements, ends the process inside libnftables 1.0.9 (CLI and library).
    ['an unknown datatype', exportOf('\tset s {\n\t\ttype ifk->ame\n\t\telements = { "a" }\n\t}'), 6, /set type: "ifk->ame" is not a datatype/],
    ['an object type as a set key', exportOf('\tset s {\n\t\ttype counter\n\t}'), 6, /"counter" is not a datatype/],
    ['an unknown datatype in a concatenation', exportOf('\tset s {\n\t\ttype ifname . foo\n\t}'), 6, /"foo" is not a datatype/],
    ['unknown map data', exportOf('\tmap m {\n\t\ttype ifname : foo\n\t}'), 6, /map type: "foo" is not map data/],
    ['an object type as a map key', exportOf('\tmap m {\n\t\ttype counter : ifname\n\t}'), 6, /"counter" is not a datatype/],
    ['a map type without data', exportOf('\tmap m {\n\t\ttype ifname\n\t}'), 6, /"<key> : <data>"/],
    ['a set type with data', exportOf('\tset s {\n\t\ttype ifname : verdict\n\t}'), 6, /that is a map/],
    ['an unknown payload field', exportOf('\tset s {\n\t\ttypeof ip foo\n\t}'), 6, /set typeof: "ip foo" is not a key expression/],
    ['an unknown meta key', exportOf('\tset s {\n\t\ttypeof meta foo\n\t}'), 6, /"meta foo"/],
    ['an unknown expression as map data', exportOf('\tmap m {\n\t\ttypeof ip saddr : meta foo\n\t}'), 6, /"meta foo" is not map data/],
  ]
  for (const [name, text, line, says] of cases) {
    it(name, () => {
      if (line === 0) {
        expect(() => checkRestore(text, T)).toThrow(says)
        return
      }
      const e = refusal(text)
      expect(e.line).toBe(line)
      expect(e.field).toBe('restore')
      expect(e.message).toMatch(says)
      expect(e.message).toContain(`line ${line}:`)
    })
  }

  it('the first offending line, lexical or structural', () => {
    const e = refusal(exportOf('\tchain c {\n\t\tdefine t = 1\n\t\ttcp dport $t accept\n\t}'))
    expect(e.line).toBe(6)
  })

  it('quotes at most the offending line, shortened', () => {
    const e = refusal(`${HEAD}table bridge ${T} {\n\tchain c {\n\t\tinclude "/etc/${'x'.repeat(500)}"\n\t}\n}\nsecond line ${'y'.repeat(50)}`)
    expect(e.message.length).toBeLessThan(200)
    expect(e.message).not.toContain('second line')
    expect(e.message).not.toContain('\n')
  })
})

describe('the exact table (issue 15) in an export', () => {
  const X = `${T}_exact`
  const exact = [
    `table bridge ${X} {}`,
    `delete table bridge ${X}`,
    `table bridge ${X} {`,
    '\tmap in_s4lp {',
    '\t\ttype ifname . ipv4_addr . inet_proto . inet_service : verdict',
    '\t\tcounter',
    '\t\telements = { "vnet0" . 10.0.0.9 . tcp . 22 counter packets 3 bytes 180 comment "r:ssh" : accept }',
    '\t}',
    '\tchain postrouting {',
    '\t\ttype filter hook postrouting priority filter; policy accept;',
    '\t\toifname . ip saddr . meta l4proto . th dport vmap @in_s4lp comment "x:in_s4lp"',
    '\t}',
    '}',
  ].join('\n')
  const both = `${exportOf(BODY)}${exact}\n`

  it('follows the VM-chain table when the firewall has one', () => {
    expect(() => checkRestore(both, T, 'bridge', [X])).not.toThrow()
    // Deleted only (an export of a firewall whose exact table is empty of VMs, or absent).
    expect(() => checkRestore(`${exportOf('')}table bridge ${X} {}\ndelete table bridge ${X}\n`, T, 'bridge', [X])).not.toThrow()
  })

  it('is refused where the firewall has none, and no other table may take its place', () => {
    expect(refusal(both).message).toMatch(/nothing may follow the table bridge infinization block/)
    let e: unknown
    try {
      checkRestore(both.replaceAll(X, 'other'), T, 'bridge', [X])
    } catch (x) {
      e = x
    }
    expect(e).toBeInstanceOf(RestoreValidationError)
    expect((e as Error).message).toMatch(/only table bridge infinization_exact may be restored, not table bridge other/)
  })
})
