// nft text for the JSON subset compile.ts and layout.ts produce. Pure. Used for `plan()` (humans), to let the
// kernel render our rules (rendering.ts), and as the wire form of the firewall's writes (`batchText`, kernel.ts):
// libnftables 1.0.6 parses text ~1.5x faster than the same commands as JSON. The writer is strict: a form it
// does not know, or a string it cannot quote safely, makes `batchText` return undefined and the caller sends
// the JSON instead, so text is only ever an exact spelling of the JSON.
import type { NftCommand, NftStatement } from '../schema.js'
import { FrozenListMemo } from './rule-identity.js'

type Loose = Record<string, unknown>

/** A command or value outside the subset the writer knows exactly. */
class Unrenderable extends Error {}
const fail = (): never => {
  throw new Unrenderable()
}

/** The one key of a command, body or statement object (none or several: not ours). */
function only(o: unknown): string {
  if (o === null || typeof o !== 'object') return fail()
  let key: string | undefined
  for (const k in o) {
    if (key !== undefined) return fail()
    key = k
  }
  return key ?? fail()
}

/** Bare words: names, symbolic constants (`echo-reply`, `8021q`), addresses (IPv6, MAC), `@set` references. */
const BARE = /^[A-Za-z0-9_.:@/-]+$/
/** Quoted strings (ifnames, comments, log prefixes): nft has no escapes inside quotes, so no `"` or `\`, no
 *  control characters, nothing that could end the string or the line. */
const QUOTABLE = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/

const bare = (s: unknown): string => (typeof s === 'string' && BARE.test(s) ? s : fail())
const q = (s: unknown): string => (typeof s === 'string' && QUOTABLE.test(s) ? `"${s}"` : fail())
const int = (n: unknown): string => (typeof n === 'number' && Number.isSafeInteger(n) ? String(n) : fail())

/** A right-hand value; `quoted`: a string compared with an interface name (always quoted). */
function value(v: unknown, quoted = false): string {
  // `iifname @b_arp`: a reference to one of the layout's tap sets stays bare (layout.ts builtinSet names them).
  if (typeof v === 'string') return quoted && !/^@b_[a-z0-9_]+$/.test(v) ? q(v) : bare(v)
  if (typeof v === 'number') return int(v)
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return fail()
  const o = v as Loose
  if ('prefix' in o) {
    const p = o.prefix as { addr: unknown; len: unknown }
    return `${bare(p.addr)}/${int(p.len)}`
  }
  if ('range' in o) {
    const r = o.range as unknown[]
    if (!Array.isArray(r) || r.length !== 2) return fail()
    return `${value(r[0])}-${value(r[1])}`
  }
  if ('set' in o && Array.isArray(o.set)) return `{ ${(o.set as unknown[]).map((x) => value(x, quoted)).join(', ')} }`
  return left(v)
}

/** A left-hand (key) expression. */
function left(v: unknown): string {
  const o = (v ?? fail()) as Loose
  if ('payload' in o) {
    const p = o.payload as { protocol: unknown; field: unknown }
    // `arp saddr ether`, `arp saddr ip`: fields of two words, each a bare word.
    const field = typeof p.field === 'string' ? p.field.split(' ').map(bare).join(' ') : fail()
    return `${bare(p.protocol)} ${field}`
  }
  if ('meta' in o) {
    const key = bare((o.meta as { key: unknown }).key)
    return key === 'iifname' || key === 'oifname' ? key : `meta ${key}`
  }
  if ('ct' in o) return `ct ${bare((o.ct as { key: unknown }).key)}`
  // `iifname . ether saddr`: a concatenation of keys (issue 15's identity lookups).
  if ('concat' in o && Array.isArray(o.concat) && o.concat.length > 1) return (o.concat as unknown[]).map(left).join(' . ')
  if ('&' in o) {
    const [l, r] = o['&'] as [unknown, unknown]
    return `${left(l)} & (${Array.isArray(r) ? r.map((x) => value(x)).join(' | ') : value(r)})`
  }
  return fail()
}

const IFNAME = (l: unknown): boolean => {
  const key = (l as { meta?: { key?: unknown } } | null)?.meta?.key
  return key === 'iifname' || key === 'oifname'
}

const OPS = new Set(['==', '!=', '<', '>', '<=', '>=', 'in'])

function statement(st: NftStatement): string {
  const s = st as Loose
  const kind = only(s)
  if (kind === 'match') {
    const m = s.match as { op: string; left: unknown; right: unknown }
    if (!OPS.has(m.op)) return fail()
    // `tcp flags & (syn | ack) == syn`: after a binary operation the operator must be spelled out.
    const binop = typeof m.left === 'object' && m.left !== null && '&' in m.left
    const op = (m.op === '==' || m.op === 'in') && !binop ? '' : `${m.op} `
    const quoted = IFNAME(m.left)
    // A list on the right (`ct state established,related`): comma-separated, as a listing writes it.
    const right = Array.isArray(m.right) ? m.right.map((x) => value(x, quoted)).join(',') : value(m.right, quoted)
    return `${left(m.left)} ${op}${right}`
  }
  if (kind === 'counter') return 'counter'
  if (kind === 'accept' && s.accept === null) return 'accept'
  if (kind === 'drop' && s.drop === null) return 'drop'
  if (kind === 'reject') {
    const r = s.reject as { type?: unknown } | null
    if (r === null) return 'reject'
    if (r.type === 'tcp reset' && Object.keys(r).length === 1) return 'reject with tcp reset'
    return fail()
  }
  if (kind === 'limit') {
    const l = s.limit as { rate: unknown; per: unknown; burst?: unknown }
    return `limit rate ${int(l.rate)}/${bare(l.per)}${l.burst !== undefined ? ` burst ${int(l.burst)} packets` : ''}`
  }
  if (kind === 'log') {
    const l = (s.log ?? {}) as { prefix?: unknown; group?: unknown }
    return ['log', ...(l.prefix !== undefined ? [`prefix ${q(l.prefix)}`] : []), ...(l.group !== undefined ? [`group ${int(l.group)}`] : [])].join(' ')
  }
  if (kind === 'jump') return `jump ${bare((s.jump as { target: unknown }).target)}`
  if (kind === 'goto') return `goto ${bare((s.goto as { target: unknown }).target)}`
  if (kind === 'vmap') {
    const v = s.vmap as { key: unknown; data: unknown }
    // An anonymous verdict map (`ether type vmap { ip : jump guard_ip, ... }`) or a named one (`@from_vm`).
    const d = v.data as { set?: unknown } | null
    if (d !== null && typeof d === 'object' && Array.isArray(d.set)) {
      const pairs = (d.set as unknown[]).map((e) => (Array.isArray(e) && e.length === 2 ? `${bare(e[0])} : ${statement(e[1] as NftStatement)}` : fail()))
      return `${left(v.key)} vmap { ${pairs.join(', ')} }`
    }
    return `${left(v.key)} vmap ${bare(v.data)}`
  }
  return fail()
}

/** A rule's statements and comment, as written after `add rule <family> <table> <chain>` or inside a chain block. */
function ruleBody(o: Loose): string {
  if (!Array.isArray(o.expr) || o.expr.length === 0) return fail()
  const text = statements(o.expr as NftStatement[])
  return o.comment === undefined ? text : `${text} comment ${q(o.comment)}`
}

/** Statements already written (interned rules' lists; see FrozenListMemo). */
const WRITTEN = new FrozenListMemo<string>()

function statements(expr: readonly NftStatement[]): string {
  const known = WRITTEN.get(expr)
  if (known !== undefined) return known
  let text = ''
  for (const st of expr) text += (text ? ' ' : '') + statement(st)
  return WRITTEN.keep(expr, text)
}

function elements(o: Loose): string[] {
  if (!Array.isArray(o.elem)) return fail()
  return (o.elem as unknown[]).map((e) => {
    if (Array.isArray(e) && e.length === 2) return `${q(e[0])} : ${statement(e[1] as NftStatement)}`
    // `"tap" . 02:00:00:00:00:01`: a concatenated key, an interface name first (issue 15's identity sets).
    const c = (e as { concat?: unknown } | null)?.concat
    if (Array.isArray(c) && c.length === 2 && Object.keys(e as object).length === 1) return `${q(c[0])} . ${bare(c[1])}`
    return q(e)
  })
}

/** One command as one line (strict). */
function commandLine(cmd: NftCommand): string {
  const verb = only(cmd)
  if (verb !== 'add' && verb !== 'create' && verb !== 'delete' && verb !== 'flush') return fail()
  const body = (cmd as unknown as Record<string, Record<string, Loose>>)[verb]!
  const kind = only(body)
  const o = body[kind]!
  const where = `${bare(o.family)} ${bare(kind === 'table' ? o.name : o.table)}`
  switch (kind) {
    case 'table':
      return `${verb} table ${where}`
    case 'set':
      if (verb !== 'add' && verb !== 'create') return `${verb} set ${where} ${bare(o.name)}`
      return `${verb} set ${where} ${bare(o.name)} { ${setSpec(o)} }`
    case 'map':
      if (verb !== 'add' && verb !== 'create') return `${verb} map ${where} ${bare(o.name)}`
      return `${verb} map ${where} ${bare(o.name)} { ${mapSpec(o)} }`
    case 'chain':
      return `${verb} chain ${where} ${bare(o.name)}${o.hook !== undefined && (verb === 'add' || verb === 'create') ? ` { ${chainSpec(o)} }` : ''}`
    case 'rule':
      // `delete rule ... handle N` (the compat facade removes the old layout's jumps by handle).
      if (verb === 'delete' && o.expr === undefined) return `delete rule ${where} ${bare(o.chain)} handle ${int(o.handle)}`
      if (verb !== 'add' || o.handle !== undefined || o.position !== undefined || o.index !== undefined) return fail()
      return `add rule ${where} ${bare(o.chain)} ${ruleBody(o)}`
    case 'element':
      return `${verb} element ${where} ${bare(o.name)} { ${elements(o).join(', ')} }`
    default:
      return fail()
  }
}

/** A set's type (`ifname . ether_addr` for a concatenation) and its `counter` statement, the only one written. */
function setHead(o: Loose): string {
  const type = Array.isArray(o.type) && o.type.length > 1 ? o.type.map(bare).join(' . ') : bare(o.type)
  if (o.stmt === undefined) return `type ${type};`
  const st = o.stmt
  if (!Array.isArray(st) || st.length !== 1 || JSON.stringify(st[0]) !== '{"counter":null}') return fail()
  return `type ${type}; counter;`
}
const setSpec = (o: Loose): string =>
  `${setHead(o)}${Array.isArray(o.elem) && o.elem.length > 0 ? ` elements = { ${(o.elem as unknown[]).map((x) => value(x)).join(', ')} };` : ''}`
const mapSpec = (o: Loose): string => `type ${bare(o.type)} : ${bare(o.map)};`
const chainSpec = (o: Loose): string => `type ${bare(o.type)} hook ${bare(o.hook)} priority ${int(o.prio)}; policy ${bare(o.policy)};`

/** Renders a JSON command list as nft text (one command per line); a command outside the known subset is
 *  written as a `#` comment holding its JSON (for humans: `plan()`). */
export function renderCommands(commands: NftCommand[]): string {
  const lines: string[] = []
  for (const cmd of commands) {
    try {
      lines.push(commandLine(cmd))
    } catch (e) {
      if (!(e instanceof Unrenderable)) throw e
      lines.push(`# ${JSON.stringify(cmd)}`)
    }
  }
  return lines.join('\n') + '\n'
}

/**
 * The batch as nft text that libnftables turns into exactly the same netlink messages, in the same order, or
 * undefined when a command is outside the known subset (send the JSON then). Runs of `add`s to one table are
 * written as a `table { ... }` block, rules inside `chain { ... }` blocks, when one block holds the whole
 * batch: libnftables parses a block ~15% faster than the same `add rule` lines (1000 VMs x 26 rules, 1.0.6:
 * 0.22 s vs 0.36 s user time), which is how `nft list` writes a ruleset. Consecutive element adds to one map become one command. Anything else (flush,
 * delete, create) is a line of its own at its place, so the order of operations is the batch's.
 */
export function batchText(commands: readonly NftCommand[]): string | undefined {
  try {
    // Each `table { }` block is a table update for the kernel, and those cost more the larger the table (10 VMs
    // synced into 1000 as ~40 blocks: +180 ms): a batch that would need several blocks is written as lines.
    const blocks = writeBatch(commands, true)
    return blocks.blocks <= 1 ? blocks.text : writeBatch(commands, false).text
  } catch (e) {
    if (e instanceof Unrenderable) return undefined
    throw e
  }
}

function writeBatch(commands: readonly NftCommand[], useBlocks: boolean): { text: string; blocks: number } {
  const out: string[] = []
  let blocks = 0
  let block: string | undefined // `family table` of the open table block
  let chain: string | undefined // open chain block inside it
  let elems: { head: string; items: string[] } | undefined
  /** `family table` of tables and `family table chain` of chains this batch adds. */
  const added = new Set<string>()
  const closeChain = () => {
    if (chain !== undefined) out.push('\t}')
    chain = undefined
  }
  const closeBlock = () => {
    closeChain()
    if (block !== undefined) out.push('}')
    block = undefined
  }
  const flushElems = () => {
    if (elems) out.push(`${elems.head} { ${elems.items.join(', ')} }`)
    elems = undefined
  }
  const open = (where: string) => {
    if (block === where) return
    closeBlock()
    out.push(`table ${where} {`)
    block = where
    blocks++
  }
  for (const cmd of commands) {
    const verb = only(cmd)
    const body = (cmd as unknown as Record<string, Record<string, Loose>>)[verb]!
    const kind = only(body)
    const o = body[kind]!
    if (verb === 'add' && kind === 'element') {
      const head = `add element ${bare(o.family)} ${bare(o.table)} ${bare(o.name)}`
      if (elems?.head !== head) {
        flushElems()
        closeBlock()
        elems = { head, items: [] }
      }
      elems.items.push(...elements(o))
      continue
    }
    flushElems()
    if (verb !== 'add' || kind === 'element' || !useBlocks) {
      closeBlock()
      out.push(commandLine(cmd))
      continue
    }
    // `add` of a table, set, map, chain or rule: inside the table's block, but only where the block creates
    // nothing the JSON would not: a block creates its table and its chains when they are missing, while a JSON
    // `add chain` to a missing table or `add rule` to a missing chain fails (ENOENT). So only a table added by
    // this batch is opened as a block, and only rules of a chain added by it go inside a chain block.
    const where = `${bare(o.family)} ${bare(kind === 'table' ? o.name : o.table)}`
    if (kind === 'table') added.add(where)
    else if (kind === 'chain' && added.has(where)) added.add(`${where} ${String(o.name)}`)
    if (!added.has(kind === 'rule' ? `${where} ${String(o.chain)}` : where)) {
      closeBlock()
      out.push(commandLine(cmd))
      continue
    }
    switch (kind) {
      case 'table':
        open(where)
        break
      case 'set':
        open(where)
        closeChain()
        out.push(`\tset ${bare(o.name)} { ${setSpec(o)} }`)
        break
      case 'map':
        open(where)
        closeChain()
        out.push(`\tmap ${bare(o.name)} { ${mapSpec(o)} }`)
        break
      case 'chain':
        open(where)
        closeChain()
        if (o.hook !== undefined) out.push(`\tchain ${bare(o.name)} { ${chainSpec(o)} }`)
        else {
          out.push(`\tchain ${bare(o.name)} {`)
          chain = o.name as string
        }
        break
      case 'rule': {
        if (o.handle !== undefined || o.position !== undefined || o.index !== undefined) fail()
        const line = ruleBody(o)
        open(where)
        if (chain !== o.chain) {
          closeChain()
          out.push(`\tchain ${bare(o.chain)} {`)
          chain = o.chain as string
        }
        out.push(`\t\t${line}`)
        break
      }
      default:
        fail()
    }
  }
  flushElems()
  closeBlock()
  return { text: out.join('\n') + '\n', blocks }
}
