// nft text for the JSON subset compile.ts produces. Pure. Used for `plan()` (humans) and to let the kernel
// render our rules (rendering.ts); every value in it was validated before compile.
import type { NftCommand, NftStatement } from '../schema.js'

type Loose = Record<string, unknown>

const q = (s: string): string => `"${s}"`

function value(v: unknown): string {
  if (v === null || v === undefined) return ''
  if (typeof v === 'string' || typeof v === 'number') return String(v)
  if (Array.isArray(v)) return v.map(value).join(', ')
  const o = v as Record<string, unknown>
  if ('set' in o) return `{ ${(o.set as unknown[]).map(value).join(', ')} }`
  if ('prefix' in o) {
    const p = o.prefix as { addr: string; len: number }
    return `${p.addr}/${p.len}`
  }
  if ('range' in o) {
    const r = o.range as [unknown, unknown]
    return `${value(r[0])}-${value(r[1])}`
  }
  if ('payload' in o) {
    const p = o.payload as { protocol: string; field: string }
    return `${p.protocol} ${p.field}`
  }
  if ('meta' in o) {
    const key = (o.meta as { key: string }).key
    return key === 'iifname' || key === 'oifname' ? key : `meta ${key}`
  }
  if ('ct' in o) return `ct ${(o.ct as { key: string }).key}`
  if ('&' in o) {
    const [l, r] = o['&'] as [unknown, unknown]
    return `${value(l)} & (${Array.isArray(r) ? r.map(value).join(' | ') : value(r)})`
  }
  return JSON.stringify(v)
}

function statement(st: NftStatement): string {
  const s = st as Loose
  if ('match' in s) {
    const m = s.match as { op: string; left: unknown; right: unknown }
    // `tcp flags & (syn | ack) == syn`: after a binary operation the operator must be spelled out.
    const binop = typeof m.left === 'object' && m.left !== null && '&' in m.left
    const op = (m.op === '==' || m.op === 'in') && !binop ? '' : `${m.op} `
    const right = Array.isArray(m.right) ? m.right.map(value).join(',') : value(m.right)
    return `${value(m.left)} ${op}${right}`
  }
  if ('counter' in s) return 'counter'
  if ('accept' in s) return 'accept'
  if ('drop' in s) return 'drop'
  if ('reject' in s) {
    const r = s.reject as { type?: string } | null
    return r?.type ? `reject with ${r.type}` : 'reject'
  }
  if ('limit' in s) {
    const l = s.limit as { rate: number; per: string; burst?: number }
    return `limit rate ${l.rate}/${l.per}${l.burst !== undefined ? ` burst ${l.burst} packets` : ''}`
  }
  if ('log' in s) {
    const l = (s.log ?? {}) as { prefix?: string; group?: number }
    return ['log', ...(l.prefix !== undefined ? [`prefix ${q(l.prefix)}`] : []), ...(l.group !== undefined ? [`group ${l.group}`] : [])].join(' ')
  }
  if ('jump' in s) return `jump ${(s.jump as { target: string }).target}`
  if ('vmap' in s) {
    const v = s.vmap as { key: unknown; data: unknown }
    return `${value(v.key)} vmap ${value(v.data)}`
  }
  return JSON.stringify(s)
}

/** Renders a JSON command list as nft text (one command per line). */
export function renderCommands(commands: NftCommand[]): string {
  const lines: string[] = []
  for (const cmd of commands) {
    const [verb, body] = Object.entries(cmd)[0] as [string, Record<string, Record<string, unknown>>]
    const [kind, o] = Object.entries(body)[0] as [string, Record<string, unknown>]
    const where = `${o.family} ${o.table ?? o.name}`
    switch (kind) {
      case 'table':
        lines.push(`${verb} table ${o.family} ${o.name}`)
        break
      case 'set':
        lines.push(`${verb} set ${where} ${o.name} { type ${o.type}; elements = { ${(o.elem as unknown[]).map(value).join(', ')} }; }`)
        break
      case 'map':
        lines.push(`${verb} map ${where} ${o.name} { type ${o.type} : ${o.map}; }`)
        break
      case 'chain': {
        const base = o.hook ? ` { type ${o.type} hook ${o.hook} priority ${o.prio}; policy ${o.policy}; }` : ''
        lines.push(`${verb} chain ${where} ${o.name}${base}`)
        break
      }
      case 'rule': {
        const stmts = (o.expr as NftStatement[]).map(statement).join(' ')
        const comment = typeof o.comment === 'string' ? ` comment ${q(o.comment)}` : ''
        lines.push(`${verb} rule ${where} ${o.chain} ${stmts}${comment}`)
        break
      }
      case 'element': {
        const elems = (o.elem as unknown[]).map((e) => (Array.isArray(e) ? `${q(String(e[0]))} : ${statement(e[1] as NftStatement)}` : q(String(e))))
        lines.push(`${verb} element ${where} ${o.name} { ${elems.join(', ')} }`)
        break
      }
      default:
        lines.push(`# ${JSON.stringify(cmd)}`)
    }
  }
  return lines.join('\n') + '\n'
}
