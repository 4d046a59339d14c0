// IPv4/IPv6 parsing, masking and formatting. Pure; no dependencies.

export interface Cidr {
  family: 4 | 6
  /** Network address with host bits cleared, canonical text. */
  addr: string
  len: number
}

/** Parses dotted-quad IPv4 (no leading zeros); undefined if invalid. */
export function parseIPv4(s: string): number[] | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s)
  if (!m) return undefined
  const out: number[] = []
  for (const part of m.slice(1)) {
    if (part.length > 1 && part.startsWith('0')) return undefined
    const n = Number(part)
    if (n > 255) return undefined
    out.push(n)
  }
  return out
}

/** Parses IPv6 text (with optional embedded IPv4, no zone id) into 16 bytes; undefined if invalid. */
export function parseIPv6(s: string): number[] | undefined {
  if (s.length < 2 || s.length > 45 || !/^[0-9a-fA-F:.]+$/.test(s)) return undefined
  let tail: number[] = []
  let text = s
  const lastColon = s.lastIndexOf(':')
  if (s.includes('.')) {
    const v4 = parseIPv4(s.slice(lastColon + 1))
    if (!v4) return undefined
    tail = [(v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!]
    // "::1.2.3.4" -> "::" + tail; "a:b::c:1.2.3.4" -> "a:b::c" + tail
    text = s.slice(0, lastColon + 1)
    if (!text.endsWith('::')) text = text.slice(0, -1)
  }
  const halves = text.split('::')
  if (halves.length > 2) return undefined
  const parseGroups = (h: string): number[] | undefined => {
    if (h === '') return []
    const groups = h.split(':')
    const out: number[] = []
    for (const g of groups) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined
      out.push(parseInt(g, 16))
    }
    return out
  }
  let groups: number[]
  if (halves.length === 2) {
    const a = parseGroups(halves[0]!)
    const b = parseGroups(halves[1]!)
    if (!a || !b) return undefined
    const missing = 8 - a.length - b.length - tail.length
    if (missing < 1) return undefined
    groups = [...a, ...new Array<number>(missing).fill(0), ...b, ...tail]
  } else {
    const a = parseGroups(halves[0]!)
    if (!a) return undefined
    groups = [...a, ...tail]
    if (groups.length !== 8) return undefined
  }
  if (groups.length !== 8) return undefined
  return groups.flatMap((g) => [g >> 8, g & 0xff])
}

export function formatIPv4(b: number[]): string {
  return b.join('.')
}

/** RFC 5952 canonical text. */
export function formatIPv6(b: number[]): string {
  const groups: number[] = []
  for (let i = 0; i < 16; i += 2) groups.push((b[i]! << 8) | b[i + 1]!)
  let bestStart = -1
  let bestLen = 0
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++
      continue
    }
    let j = i
    while (j < 8 && groups[j] === 0) j++
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i
      bestLen = j - i
    }
    i = j
  }
  const hex = groups.map((g) => g.toString(16))
  if (bestStart < 0) return hex.join(':')
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`
}

function maskBytes(b: number[], len: number): number[] {
  return b.map((byte, i) => {
    const bits = Math.max(0, Math.min(8, len - i * 8))
    return bits === 0 ? 0 : byte & ((0xff << (8 - bits)) & 0xff)
  })
}

/** Parses an address (optionally "addr/len"); returns family, canonical network address and length. */
export function parseAddress(s: string): { family: 4 | 6; bytes: number[]; len?: number } | undefined {
  const slash = s.indexOf('/')
  const addr = slash >= 0 ? s.slice(0, slash) : s
  let len: number | undefined
  if (slash >= 0) {
    const l = s.slice(slash + 1)
    if (!/^\d{1,3}$/.test(l)) return undefined
    len = Number(l)
  }
  const v4 = parseIPv4(addr)
  if (v4) {
    if (len !== undefined && len > 32) return undefined
    return { family: 4, bytes: v4, len }
  }
  const v6 = parseIPv6(addr)
  if (v6) {
    if (len !== undefined && len > 128) return undefined
    return { family: 6, bytes: v6, len }
  }
  return undefined
}

/** Parses a mask: CIDR length (number or numeric string) or IPv4 dotted decimal (contiguous). */
export function parseMask(mask: string | number, family: 4 | 6): number | undefined {
  const max = family === 4 ? 32 : 128
  if (typeof mask === 'number') return Number.isInteger(mask) && mask >= 0 && mask <= max ? mask : undefined
  if (/^\d{1,3}$/.test(mask)) {
    const n = Number(mask)
    return n <= max ? n : undefined
  }
  if (family !== 4) return undefined
  const b = parseIPv4(mask)
  if (!b) return undefined
  const bits = b.map((x) => x.toString(2).padStart(8, '0')).join('')
  if (!/^1*0*$/.test(bits)) return undefined
  return bits.indexOf('0') < 0 ? 32 : bits.indexOf('0')
}

export function toCidr(family: 4 | 6, bytes: number[], len: number): Cidr {
  const masked = maskBytes(bytes, len)
  return { family, addr: family === 4 ? formatIPv4(masked) : formatIPv6(masked), len }
}

/** MAC "aa:bb:cc:dd:ee:ff" (or '-' separated), normalized to lower-case ':' form. */
export function parseMac(s: string): string | undefined {
  if (!/^[0-9a-fA-F]{2}([:-][0-9a-fA-F]{2}){5}$/.test(s)) return undefined
  return s.toLowerCase().replace(/-/g, ':')
}

/** The modified EUI-64 link-local address of a MAC (fe80::/64). */
export function eui64LinkLocal(mac: string): string {
  const m = mac.split(':').map((x) => parseInt(x, 16))
  const b = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, m[0]! ^ 0x02, m[1]!, m[2]!, 0xff, 0xfe, m[3]!, m[4]!, m[5]!]
  return formatIPv6(b)
}
