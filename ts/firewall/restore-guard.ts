// The check a restore file passes before libnftables sees it: it must be an export of the firewall's own table
// (what exportRuleset() writes), nothing else. An allow-list of the structure `nft list table` prints, read with
// the same lexical rules as nft's scanner for the subset it accepts (anything outside that subset is refused).
import { FirewallValidationError, RestoreValidationError } from './errors.js'

export { RestoreValidationError }

type Tok =
  | { kind: 'word'; text: string; line: number }
  | { kind: 'str'; text: string; line: number }
  | { kind: '{' | '}' | 'sep'; text: string; line: number }
  | { kind: 'eof'; text: ''; line: number }

// Characters of unquoted words: what nft prints in a table listing (names, numbers, addresses, operators,
// `@set` references, ranges, `syn,ack`, `[`...`]` in vmap keys). `$`, `\`, quotes other than `"`, and all
// control and non-ASCII characters are refused outside comments.
const WORD_CHAR = /[A-Za-z0-9_./:\-!=<>&|^,@*[\]()+]/
// NUL ends libnftables' buffer early (it would see less than we checked); CR, vertical tab, form feed and the
// other controls have no place in an export. Tab and newline are the only control characters allowed.
// eslint-disable-next-line no-control-regex
const BAD_CONTROL = /[\x00-\x08\x0b-\x1f\x7f]/
/** nft's `string` token: what a chain, set, map or counter name may be. */
const NAME = /^[A-Za-z_.][A-Za-z0-9/_.-]*$/
/** Words that must never appear outside a quoted string: directives (files, variables), commands, other
 *  families, flowtables, devices, and expressions that make libnftables look at the filesystem or the user
 *  database (`osf` reads a fingerprint file, `socket cgroupv2` stats a path, `skuid`/`skgid` resolve names,
 *  `xt`). Checked on every alphanumeric piece of every word, which refuses more than nft would read as these
 *  keywords. */
const FORBIDDEN = new Set([
  'include', 'define', 'redefine', 'undefine', 'describe',
  'table', 'ruleset', 'flush', 'insert', 'replace', 'create', 'destroy', 'list', 'rename', 'import', 'export', 'monitor',
  'inet', 'netdev', 'flowtable', 'flowtables', 'device', 'devices', 'hook',
  'osf', 'socket', 'cgroupv2', 'skuid', 'skgid', 'xt',
])
/** Set statements (`add @s { ... }`, `update @s`, `delete @s`): allowed only right before a set reference. */
const SET_STATEMENT = new Set(['add', 'update', 'delete'])
const BASE_HOOKS = new Set(['prerouting', 'input', 'forward', 'output', 'postrouting'])
/** A bridge chain priority as nft prints it: a number, or a standard name with an optional offset. */
const PRIORITY = /^(-?\d+|(filter|out|dstnat|srcnat|raw|mangle|security)( ?[+-] ?\d+)?)$/
/**
 * What a set's or map's `type` / `typeof` may name. libnftables 1.0.9 (Ubuntu 24.04) crashes the process
 * (CLI and library alike) on a set or map that lists elements under a key or data it cannot evaluate: an
 * unknown datatype (`type ifk->ame`), an object type as a key (`type counter`), an unknown field
 * (`typeof ip foo`, `typeof meta foo`). So both are checked against what libnftables knows, word by word.
 */
const DATATYPES = new Set([
  'arp_op', 'bitmask', 'boolean', 'cgroupsv2', 'classid', 'ct_dir', 'ct_event', 'ct_label', 'ct_state', 'ct_status',
  'dccp_pkttype', 'devgroup', 'dscp', 'ecn', 'ether_addr', 'ether_type', 'fib_addrtype', 'gid',
  'icmp_code', 'icmp_type', 'icmpv6_code', 'icmpv6_type', 'icmpx_code', 'iface_index', 'iface_type', 'ifname',
  'igmp_type', 'inet_proto', 'inet_service', 'integer', 'ipv4_addr', 'ipv6_addr', 'll_addr', 'mark', 'mh_type',
  'nf_proto', 'pkt_type', 'realm', 'string', 'tcp_flag', 'time', 'uid',
])
/** Map data that is not a datatype: verdicts and stateful objects. */
const MAP_DATA = new Set(['verdict', 'counter', 'quota', 'limit', 'secmark', 'synproxy'])
/** `typeof` expressions: payload fields by protocol, meta keys (also bare, as nft lists some), ct keys. */
const TYPEOF_FIELDS: Record<string, readonly string[]> = {
  ether: ['saddr', 'daddr', 'type'],
  vlan: ['id', 'pcp', 'cfi', 'dei', 'type'],
  arp: ['htype', 'ptype', 'hlen', 'plen', 'operation'],
  ip: ['version', 'hdrlength', 'dscp', 'ecn', 'length', 'id', 'ttl', 'protocol', 'checksum', 'saddr', 'daddr'],
  ip6: ['version', 'dscp', 'ecn', 'flowlabel', 'length', 'nexthdr', 'hoplimit', 'saddr', 'daddr'],
  tcp: ['sport', 'dport', 'sequence', 'ackseq', 'doff', 'flags', 'window', 'checksum', 'urgptr'],
  udp: ['sport', 'dport', 'length', 'checksum'],
  th: ['sport', 'dport'],
  icmp: ['type', 'code', 'checksum', 'id', 'sequence', 'mtu'],
  icmpv6: ['type', 'code', 'checksum', 'id', 'sequence', 'mtu'],
  meta: ['length', 'protocol', 'nfproto', 'l4proto', 'priority', 'mark', 'iif', 'iifname', 'iiftype', 'oif', 'oifname', 'oiftype', 'pkttype', 'iifgroup', 'oifgroup', 'ibrname', 'obrname', 'ibrpvid', 'ibrvproto', 'cpu'],
  ct: ['state', 'direction', 'status', 'mark', 'expiration', 'l3proto', 'protocol', 'zone'],
}
const BARE_META = new Set(['mark', 'iif', 'iifname', 'iiftype', 'oif', 'oifname', 'oiftype', 'pkttype', 'iifgroup', 'oifgroup', 'ibrname', 'obrname'])

/** Why a set's (`map` false) or map's key declaration (`type ...` / `typeof ...`, its words) is refused, or undefined. */
function setTypeProblem(kind: 'type' | 'typeof', words: readonly string[], map: boolean): string | undefined {
  const colon = words.indexOf(':')
  if (map ? colon < 1 || colon !== words.lastIndexOf(':') || colon === words.length - 1 : colon >= 0) {
    return map ? 'a map type is "<key> : <data>"' : 'a set type has no ":" (that is a map)'
  }
  const key = map ? words.slice(0, colon) : words
  const data = map ? words.slice(colon + 1) : undefined
  const parts = (ws: readonly string[]): string[][] => {
    const out: string[][] = [[]]
    for (const w of ws) w === '.' ? out.push([]) : out[out.length - 1]!.push(w)
    return out
  }
  const known = (p: string[], dataSide: boolean): boolean => {
    if (kind === 'type') return p.length === 1 && (DATATYPES.has(p[0]!) || (dataSide && MAP_DATA.has(p[0]!)))
    if (dataSide && p.length === 1 && MAP_DATA.has(p[0]!)) return true
    if (p.length === 1) return BARE_META.has(p[0]!)
    return p.length === 2 && (TYPEOF_FIELDS[p[0]!]?.includes(p[1]!) ?? false)
  }
  for (const p of parts(key)) if (!known(p, false)) return `"${p.join(' ')}" is not a ${kind === 'type' ? 'datatype' : 'key expression'} this check knows`
  // Data: one datatype, a verdict or an object type (no concatenation: listed as such only for typeof).
  if (data && !(data.length > 0 && parts(data).every((p) => known(p, true)) && (kind === 'typeof' || data.length === 1))) {
    return `"${data.join(' ')}" is not map data this check knows`
  }
  return undefined
}
const SET_PROPERTIES = new Set(['type', 'typeof', 'flags', 'elements', 'size', 'timeout', 'gc-interval', 'policy', 'auto-merge', 'comment', 'counter'])

export interface CheckedRestore {
  /** The script libnftables is given: the input with its comments removed (line numbers unchanged). */
  script: string
}

/**
 * Checks that `text` is an export of `table bridge <table>` as exportRuleset() writes it:
 * `table bridge <t> {}`, `delete table bridge <t>`, then one `table bridge <t> { ... }` block holding only
 * chains (an optional base-chain declaration, rules, comments), sets and maps (their properties and
 * elements), named counters and comments. Throws a RestoreValidationError naming the first offending line.
 * `more` (issue 15: the exact table): tables whose sections may follow, in this order, each the same three
 * statements, the last optional (an export of a firewall without that table deletes it).
 */
export function checkRestore(text: unknown, table: string, family = 'bridge', more: readonly string[] = []): CheckedRestore {
  if (typeof text !== 'string' || text.trim() === '') throw new FirewallValidationError('text', 'must be a non-empty nft script')
  const lexer = new Lexer(text)
  new Parser(text, lexer, table, family, more).file()
  return { script: lexer.script() }
}

// ---- lexer ----

/** Reads tokens on demand, so that the first offending line is the one reported, lexical or structural. */
class Lexer {
  readonly #text: string
  #i = 0
  #line = 1
  #copied = 0
  readonly #out: string[] = []
  constructor(text: string) {
    this.#text = text
  }

  /** The input without its comments, once every token has been read. */
  script(): string {
    return this.#out.join('') + this.#text.slice(this.#copied)
  }

  next(): Tok {
    const text = this.#text
    const n = text.length
    while (this.#i < n) {
      const i = this.#i
      const line = this.#line
      const c = text[i]!
      if (c === '\n') {
        this.#line++
        this.#i++
        return { kind: 'sep', text: '\n', line }
      }
      if (c === ' ' || c === '\t') {
        this.#i++
        continue
      }
      if (c === '#') {
        // A comment runs to the end of the line (nft: `#.*$`); it is not passed on.
        const nl = text.indexOf('\n', i)
        const end = nl < 0 ? n : nl
        const bad = BAD_CONTROL.exec(text.slice(i, end))
        if (bad) fail(text, line, controlMessage(bad[0]))
        this.#out.push(text.slice(this.#copied, i))
        this.#i = this.#copied = end
        continue
      }
      if (c === '"') {
        // nft's quoted string is `"[^"]*"`: no escapes, and it may span lines. Refuse the multi-line form.
        let j = i + 1
        while (j < n && text[j] !== '"' && text[j] !== '\n') j++
        if (j >= n || text[j] !== '"') fail(text, line, 'unterminated string (strings end on the line they start)')
        const body = text.slice(i + 1, j)
        const odd = /[^\x20-\x7e]|\\/.exec(body)
        if (odd) fail(text, line, `character ${describeChar(odd[0])} is not allowed in a string`)
        this.#i = j + 1
        return { kind: 'str', text: body, line }
      }
      if (c === '{' || c === '}') {
        this.#i++
        return { kind: c, text: c, line }
      }
      if (c === ';') {
        this.#i++
        return { kind: 'sep', text: ';', line }
      }
      if (WORD_CHAR.test(c)) {
        let j = i + 1
        while (j < n && WORD_CHAR.test(text[j]!)) j++
        this.#i = j
        return { kind: 'word', text: text.slice(i, j), line }
      }
      if (c === '$') fail(text, line, 'variables ($name) are not allowed')
      if (c === '\\') fail(text, line, 'backslashes (line continuations, escapes) are not allowed')
      if (BAD_CONTROL.test(c)) fail(text, line, controlMessage(c))
      fail(text, line, `character ${describeChar(c)} is not allowed`)
    }
    return { kind: 'eof', text: '', line: this.#line }
  }
}

function controlMessage(c: string): string {
  const code = c.charCodeAt(0)
  return `control character 0x${code.toString(16).padStart(2, '0')}${code === 0x0d ? ' (carriage return)' : code === 0 ? ' (NUL)' : ''} is not allowed`
}

function describeChar(c: string): string {
  const code = c.codePointAt(0)!
  return code >= 0x21 && code <= 0x7e ? `"${c}"` : `U+${code.toString(16).toUpperCase().padStart(4, '0')}`
}

/** The offending line, shortened: the only part of the input an error ever quotes. */
function excerpt(text: string, line: number): string {
  let start = 0
  for (let l = 1; l < line; l++) {
    const nl = text.indexOf('\n', start)
    if (nl < 0) return ''
    start = nl + 1
  }
  const end = text.indexOf('\n', start)
  const raw = text.slice(start, end < 0 ? Math.min(text.length, start + 200) : Math.min(end, start + 200)).trim()
  // Printable ASCII only (a control character or a lone surrogate could garble a terminal).
  const safe = raw.replace(/[^\x20-\x7e]/g, '?')
  return safe.length > 80 ? `${safe.slice(0, 77)}...` : safe
}

function fail(text: string, line: number, message: string): never {
  const ex = excerpt(text, line)
  throw new RestoreValidationError(line, ex ? `${message}: ${ex}` : message)
}

// ---- parser (allow-list of the export's structure) ----

class Parser {
  readonly #buf: Tok[] = []
  #own: string
  #table: string
  constructor(
    readonly text: string,
    readonly lexer: Lexer,
    table: string,
    readonly family: string,
    readonly more: readonly string[] = [],
  ) {
    this.#table = table
    this.#own = `table ${family} ${table}`
  }

  file(): void {
    this.#section(false)
    for (const table of this.more) {
      this.#skipSeps()
      if (this.#peek().kind === 'eof') return
      this.#table = table
      this.#own = `table ${this.family} ${table}`
      this.#section(true)
    }
    this.#skipSeps()
    const end = this.#peek()
    if (end.kind !== 'eof') this.#unexpected(end, `nothing may follow the ${this.#own} block`)
  }

  /** One table's three statements; `optionalBody`: the recreating block may be missing. */
  #section(optionalBody: boolean): void {
    // 1. `table bridge <t> {}` (creates the table when absent, so that the delete cannot fail)
    this.#skipSeps()
    this.#tableHeader('the export starts with')
    this.#expect('{', `"${this.#own} {}"`)
    this.#skipSeps()
    this.#expect('}', `"${this.#own} {}" (an empty block)`)
    this.#endOfStatement()
    // 2. `delete table bridge <t>`
    this.#skipSeps()
    const del = this.#peek()
    if (!(del.kind === 'word' && del.text === 'delete')) this.#unexpected(del, `expected "delete ${this.#own}"`)
    this.#next()
    this.#tableHeader('the export deletes')
    this.#endOfStatement()
    // 3. `table bridge <t> { ... }`
    this.#skipSeps()
    if (optionalBody && !this.#nextIsOwnTable()) return
    this.#tableHeader('the export recreates')
    this.#expect('{', `"${this.#own} {"`)
    this.#tableBody()
    this.#endOfStatement()
  }

  /** Whether the next tokens are `table <family> <this section's table>` (read ahead, nothing consumed). */
  #nextIsOwnTable(): boolean {
    const t = this.#peek()
    if (!(t.kind === 'word' && t.text === 'table')) return false
    while (this.#buf.length < 3) this.#buf.push(this.lexer.next())
    const [, fam, name] = this.#buf
    return fam!.kind === 'word' && fam!.text === this.family && name!.kind === 'word' && name!.text === this.#table
  }

  #tableHeader(what: string): void {
    const t = this.#peek()
    if (!(t.kind === 'word' && t.text === 'table')) this.#unexpected(t, `${what} "${this.#own}"; only that table may be restored`)
    this.#next()
    const fam = this.#next()
    const name = this.#next()
    if (fam.kind !== 'word' || name.kind !== 'word' || fam.text !== this.family || name.text !== this.#table) {
      const shown = fam.kind === 'word' && name.kind === 'word' ? `table ${fam.text} ${name.text}` : `"table" followed by ${describeTok(fam.kind === 'word' ? name : fam)}`
      this.#fail(t.line, `only ${this.#own} may be restored, not ${shown}`)
    }
  }

  #tableBody(): void {
    for (;;) {
      this.#skipSeps()
      const t = this.#next()
      if (t.kind === '}') return
      if (t.kind !== 'word') this.#unexpected(t, 'expected a chain, set, map, counter or comment')
      switch (t.text) {
        case 'chain':
          this.#name(t)
          this.#expect('{', 'a "{" after the chain name')
          this.#chainBody()
          break
        case 'set':
        case 'map':
          this.#name(t)
          this.#expect('{', `a "{" after the ${t.text} name`)
          this.#setBody(t.text)
          break
        case 'counter':
          this.#name(t)
          this.#expect('{', 'a "{" after the counter name')
          this.#counterBody()
          break
        case 'comment':
          this.#string(t)
          break
        default:
          this.#fail(t.line, `"${t.text}" is not allowed in the table (only chains, sets, maps, counters and comments)`)
      }
      this.#endOfStatement()
    }
  }

  #chainBody(): void {
    let first = true
    let base = false
    for (;;) {
      const stmt = this.#statement()
      if (stmt === undefined) return
      if (stmt.length === 0) continue
      const head = stmt[0]!
      if (head.kind === 'word' && head.text === 'type') {
        // `type filter hook prerouting priority filter` (bridge base chain), first in the chain.
        const w = stmt.map((x) => (x.kind === 'word' ? x.text : `"${x.text}"`))
        const ok =
          first &&
          w.length >= 6 &&
          w[1] === 'filter' &&
          w[2] === 'hook' &&
          BASE_HOOKS.has(w[3] ?? '') &&
          w[4] === 'priority' &&
          stmt.slice(5).every((x) => x.kind === 'word') &&
          PRIORITY.test(w.slice(5).join(' '))
        if (!ok) this.#fail(head.line, 'a base chain must be declared first, as "type filter hook <bridge hook> priority <priority>"')
        base = true
      } else if (head.kind === 'word' && head.text === 'policy') {
        if (!base || stmt.length !== 2 || !(stmt[1]!.kind === 'word' && ['accept', 'drop'].includes(stmt[1]!.text))) {
          this.#fail(head.line, 'a chain policy must follow its base-chain declaration and be accept or drop')
        }
      } else if (head.kind === 'word' && head.text === 'comment' && stmt.length === 2 && stmt[1]!.kind === 'str') {
        continue // the chain's comment (nft lists it before the base-chain declaration)
      } else {
        this.#words(stmt)
      }
      first = false
    }
  }

  #setBody(kind: string): void {
    for (;;) {
      const stmt = this.#statement()
      if (stmt === undefined) return
      if (stmt.length === 0) continue
      const head = stmt[0]!
      if (head.kind !== 'word' || !SET_PROPERTIES.has(head.text)) {
        this.#fail(head.line, `${describeTok(head)} is not allowed in a ${kind} (only type, typeof, flags, elements, size, timeout, gc-interval, policy, auto-merge, counter, comment)`)
      }
      if (head.text === 'type' || head.text === 'typeof') {
        const rest = stmt.slice(1)
        const problem = rest.every((x) => x.kind === 'word')
          ? setTypeProblem(head.text, rest.map((x) => x.text), kind === 'map')
          : 'quoted strings have no place in a type'
        if (problem) this.#fail(head.line, `${kind} ${head.text}: ${problem}`)
      }
      this.#words(stmt)
    }
  }

  #counterBody(): void {
    for (;;) {
      const stmt = this.#statement()
      if (stmt === undefined) return
      if (stmt.length === 0) continue
      const w = stmt.map((x) => (x.kind === 'word' ? x.text : undefined))
      const ok = (w.length === 4 && w[0] === 'packets' && /^\d+$/.test(w[1] ?? '') && w[2] === 'bytes' && /^\d+$/.test(w[3] ?? '')) || (w[0] === 'comment' && stmt.length === 2 && stmt[1]!.kind === 'str')
      if (!ok) this.#fail(stmt[0]!.line, 'a named counter holds only "packets <n> bytes <n>" and a comment')
    }
  }

  /** The tokens of one statement inside a block (up to `;`, a newline or the block's `}`), with balanced
   *  braces (anonymous sets, element lists) inside; undefined at the closing `}`. */
  #statement(): Tok[] | undefined {
    const first = this.#peek()
    if (first.kind === '}') {
      this.#next()
      return undefined
    }
    const out: Tok[] = []
    let depth = 0
    for (;;) {
      const t = this.#peek()
      if (t.kind === 'eof') this.#fail(t.line, 'unexpected end of file: a block is not closed')
      if (depth === 0 && (t.kind === 'sep' || t.kind === '}')) {
        if (t.kind === 'sep') this.#next()
        return out
      }
      this.#next()
      if (t.kind === '{') depth++
      else if (t.kind === '}') depth--
      else if (t.kind === 'sep') {
        if (t.text === ';') this.#fail(t.line, '";" inside braces is not allowed')
        continue // newlines inside an element list
      }
      out.push(t)
    }
  }

  /** Words of a rule or a property: no directive, command, other family or file-reading keyword. */
  #words(stmt: Tok[]): void {
    stmt.forEach((t, k) => {
      if (t.kind !== 'word') return
      for (const piece of t.text.split(/[^A-Za-z0-9_]+/)) {
        if (FORBIDDEN.has(piece.toLowerCase())) this.#fail(t.line, `"${piece}" is not allowed inside the table`)
        if (piece.toLowerCase() === 'reset' && !(piece === t.text && stmt[k - 1]?.text === 'tcp' && stmt[k - 2]?.text === 'with')) {
          this.#fail(t.line, '"reset" is allowed only in "reject with tcp reset"')
        }
        if (SET_STATEMENT.has(piece.toLowerCase())) {
          const nextTok = stmt[k + 1]
          if (piece !== t.text || !(nextTok?.kind === 'word' && nextTok.text.startsWith('@'))) {
            this.#fail(t.line, `"${piece}" is allowed in a rule only as a set statement ("${piece} @set ...")`)
          }
        }
      }
    })
  }

  #name(kw: Tok): void {
    const t = this.#next()
    if (t.kind !== 'word' || !NAME.test(t.text) || FORBIDDEN.has(t.text.toLowerCase())) {
      this.#fail(kw.line, `${kw.text} name must be a plain identifier`)
    }
  }

  #string(kw: Tok): void {
    const t = this.#next()
    if (t.kind !== 'str') this.#fail(kw.line, `${kw.text} must be followed by a quoted string`)
  }

  #endOfStatement(): void {
    const t = this.#peek()
    if (t.kind === 'sep' || t.kind === 'eof' || t.kind === '}') return
    this.#unexpected(t, 'expected the end of the statement')
  }

  #expect(kind: '{' | '}', what: string): void {
    const t = this.#next()
    if (t.kind !== kind) this.#unexpected(t, `expected ${what}`)
  }

  #skipSeps(): void {
    while (this.#peek().kind === 'sep') this.#next()
  }

  #peek(): Tok {
    if (this.#buf.length === 0) this.#buf.push(this.lexer.next())
    return this.#buf[0]!
  }

  #next(): Tok {
    const t = this.#peek()
    if (t.kind !== 'eof') this.#buf.shift()
    return t
  }

  #unexpected(t: Tok, expected: string): never {
    this.#fail(t.line, t.kind === 'eof' ? `unexpected end of file; ${expected}` : `${expected}`)
  }

  #fail(line: number, message: string): never {
    fail(this.text, line, message)
  }
}

function describeTok(t: Tok): string {
  if (t.kind === 'str') return 'a string'
  if (t.kind === 'eof') return 'the end of the file'
  if (t.kind === 'sep') return t.text === ';' ? '";"' : 'the end of the line'
  return `"${t.text.length > 40 ? `${t.text.slice(0, 37)}...` : t.text}"`
}
