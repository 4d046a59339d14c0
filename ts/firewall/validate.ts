// Validation of everything before the kernel sees it. Produces the normalized rule model the compiler uses.
import { parseAddress, parseMac, parseMask, parseIPv4, parseIPv6, toCidr, formatIPv6, formatIPv4, type Cidr } from './address.js'
import { FirewallValidationError, show } from './errors.js'
import type { FirewallAction, FirewallDirection, FirewallProtocol, FirewallRuleInput, VmSpec, FirewallDefaultAction } from './model.js'

export const PRIORITY_MIN = -1_000_000
export const PRIORITY_MAX = 1_000_000
export const ID_MAX = 64
export const VMID_MAX = 96
export const NAME_MAX = 255
export const DESCRIPTION_MAX = 4096

export interface NormalizedConnState {
  established: boolean
  new: boolean
  related: boolean
  invalid: boolean
}

export interface NormalizedRule {
  id: string
  name: string
  source: 'department' | 'vm'
  action: FirewallAction
  direction: FirewallDirection
  priority: number
  protocol: FirewallProtocol
  srcPorts?: [number, number]
  dstPorts?: [number, number]
  src?: Cidr
  dst?: Cidr
  /** IP family implied by the addresses (undefined: both). */
  family?: 4 | 6
  /** Only when at least one state is true. */
  connectionState?: NormalizedConnState
  overridesDept: boolean
  /** Per-rule drop logging (see FirewallRuleInput.log); undefined: as the firewall's logDrops says. */
  log?: boolean
}

export interface NormalizedVm {
  vmId: string
  tap: string
  mac?: string
  ipv4: string[]
  ipv6: string[]
  defaultAction: FirewallDefaultAction
  antiSpoofing: boolean
  dhcp: boolean
  rules: NormalizedRule[]
  departmentRules: NormalizedRule[]
}

/** JSON text of a value for an error message; never throws (BigInt, circular objects, symbols). */

// Printable ASCII without quote, backslash and whitespace: safe in nft comments and in `nft list` output.
const SAFE_TOKEN = /^[\x21\x23-\x5b\x5d-\x7e]+$/
// eslint-disable-next-line no-control-regex
const CONTROL = /[\x00-\x1f\x7f]/

/** An identifier (rule id, vmId) that ends up inside an nft comment. */
export function checkToken(value: unknown, field: string, max: number, where: { ruleId?: string; vmId?: string }): string {
  if (typeof value !== 'string' || value.length === 0) throw new FirewallValidationError(field, 'must be a non-empty string', where)
  if (value.length > max) throw new FirewallValidationError(field, `longer than ${max} characters`, where)
  if (!SAFE_TOKEN.test(value)) {
    throw new FirewallValidationError(field, 'only printable ASCII without spaces, quotes or backslashes is allowed', where)
  }
  return value
}

function checkText(value: unknown, field: string, max: number, where: { ruleId?: string }, optional: boolean): string | undefined {
  if (value === undefined || value === null) {
    if (optional) return undefined
    throw new FirewallValidationError(field, 'is required', where)
  }
  if (typeof value !== 'string') throw new FirewallValidationError(field, 'must be a string', where)
  if (!optional && value.length === 0) throw new FirewallValidationError(field, 'must not be empty', where)
  if (Buffer.byteLength(value, 'utf8') > max) throw new FirewallValidationError(field, `longer than ${max} bytes`, where)
  if (CONTROL.test(value)) throw new FirewallValidationError(field, 'contains control characters', where)
  return value
}

/** Interface names: 1-15 bytes; letters, digits and `_ . - + @` (a safe subset of what the kernel accepts), not
 *  starting with `@` (libnftables JSON reads "@name" as a set reference); no `*` (an interface wildcard). */
export function checkIfname(value: unknown, field = 'tap', where: { vmId?: string } = {}): string {
  if (typeof value !== 'string' || value.length === 0) throw new FirewallValidationError(field, 'must be a non-empty interface name', where)
  if (Buffer.byteLength(value, 'utf8') > 15) throw new FirewallValidationError(field, 'longer than 15 bytes (IFNAMSIZ)', where)
  if (value === '.' || value === '..') throw new FirewallValidationError(field, `"${value}" is not a valid interface name`, where)
  if (!/^[A-Za-z0-9_.+@-]+$/.test(value)) {
    throw new FirewallValidationError(field, 'only letters, digits and _ . - + @ are allowed (no "/", ":", "*", whitespace, quotes or NUL)', where)
  }
  if (value.startsWith('@')) {
    throw new FirewallValidationError(field, 'must not start with "@" (libnftables JSON reads it as a set reference)', where)
  }
  return value
}

export function checkTableName(value: unknown): string {
  if (typeof value !== 'string' || !/^[A-Za-z_][A-Za-z0-9_]{0,30}$/.test(value)) {
    throw new FirewallValidationError('table', 'must match [A-Za-z_][A-Za-z0-9_]* and be at most 31 characters')
  }
  return value
}

function checkPort(value: unknown, field: string, where: { ruleId: string }): number | undefined {
  if (value === undefined || value === null) return undefined
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 65535) {
    throw new FirewallValidationError(field, 'must be an integer port 1-65535', where)
  }
  return value
}

function portRange(start: unknown, end: unknown, prefix: 'src' | 'dst', where: { ruleId: string }): [number, number] | undefined {
  const s = checkPort(start, `${prefix}PortStart`, where)
  const e = checkPort(end, `${prefix}PortEnd`, where)
  if (s === undefined && e === undefined) return undefined
  if (s === undefined) throw new FirewallValidationError(`${prefix}PortStart`, `required when ${prefix}PortEnd is set`, where)
  const last = e ?? s
  if (last < s) throw new FirewallValidationError(`${prefix}PortEnd`, `${last} is below ${prefix}PortStart ${s}`, where)
  return [s, last]
}

function address(addr: unknown, mask: unknown, prefix: 'src' | 'dst', where: { ruleId: string }): Cidr | undefined {
  const aField = `${prefix}IpAddr`
  const mField = `${prefix}IpMask`
  if (addr === undefined || addr === null || addr === '') {
    if (mask !== undefined && mask !== null && mask !== '') throw new FirewallValidationError(mField, `set without ${aField}`, where)
    return undefined
  }
  if (typeof addr !== 'string') throw new FirewallValidationError(aField, 'must be a string', where)
  const parsed = parseAddress(addr.trim())
  if (!parsed) throw new FirewallValidationError(aField, `${show(addr)} is not an IPv4/IPv6 address or CIDR`, where)
  let len = parsed.len
  if (mask !== undefined && mask !== null && mask !== '') {
    if (len !== undefined) throw new FirewallValidationError(mField, `${aField} already has a prefix length`, where)
    if (typeof mask !== 'string' && typeof mask !== 'number') throw new FirewallValidationError(mField, 'must be a string or number', where)
    len = parseMask(typeof mask === 'string' ? mask.trim() : mask, parsed.family)
    if (len === undefined) {
      throw new FirewallValidationError(
        mField,
        `${show(mask)} is not a valid ${parsed.family === 4 ? 'IPv4 mask (0-32 or dotted decimal)' : 'IPv6 prefix length (0-128)'}`,
        where,
      )
    }
  }
  return toCidr(parsed.family, parsed.bytes, len ?? (parsed.family === 4 ? 32 : 128))
}

const CT_STATE_KEYS = ['established', 'new', 'related', 'invalid'] as const
const ACTIONS: FirewallAction[] = ['ACCEPT', 'DROP', 'REJECT']
const DIRECTIONS: FirewallDirection[] = ['IN', 'OUT', 'INOUT']
const PROTOCOLS: FirewallProtocol[] = ['tcp', 'udp', 'icmp', 'all']

export function normalizeRule(input: FirewallRuleInput, source: 'department' | 'vm', field = 'rules'): NormalizedRule {
  if (input === null || typeof input !== 'object') throw new FirewallValidationError(field, 'each rule must be an object')
  const id = checkToken(input.id, 'id', ID_MAX, typeof input.id === 'string' ? { ruleId: input.id } : {})
  const where = { ruleId: id }
  const name = checkText(input.name, 'name', NAME_MAX, where, false)!
  checkText(input.description, 'description', DESCRIPTION_MAX, where, true)
  const action = (input.action ?? 'ACCEPT') as FirewallAction
  if (!ACTIONS.includes(action)) throw new FirewallValidationError('action', `must be one of ${ACTIONS.join(', ')}`, where)
  const direction = (input.direction ?? 'INOUT') as FirewallDirection
  if (!DIRECTIONS.includes(direction)) throw new FirewallValidationError('direction', `must be one of ${DIRECTIONS.join(', ')}`, where)
  const priority = input.priority ?? 500
  if (typeof priority !== 'number' || !Number.isInteger(priority) || priority < PRIORITY_MIN || priority > PRIORITY_MAX) {
    throw new FirewallValidationError('priority', `must be an integer between ${PRIORITY_MIN} and ${PRIORITY_MAX}`, where)
  }
  const protoRaw = input.protocol ?? 'all'
  const protocol = (typeof protoRaw === 'string' ? protoRaw.toLowerCase() : protoRaw) as FirewallProtocol
  if (!PROTOCOLS.includes(protocol)) throw new FirewallValidationError('protocol', `must be one of ${PROTOCOLS.join(', ')}`, where)
  const srcPorts = portRange(input.srcPortStart, input.srcPortEnd, 'src', where)
  const dstPorts = portRange(input.dstPortStart, input.dstPortEnd, 'dst', where)
  if ((srcPorts || dstPorts) && protocol !== 'tcp' && protocol !== 'udp') {
    throw new FirewallValidationError(srcPorts ? 'srcPortStart' : 'dstPortStart', `ports need protocol tcp or udp (not ${protocol})`, where)
  }
  const src = address(input.srcIpAddr, input.srcIpMask, 'src', where)
  const dst = address(input.dstIpAddr, input.dstIpMask, 'dst', where)
  if (src && dst && src.family !== dst.family) {
    throw new FirewallValidationError('dstIpAddr', 'source and destination must be the same IP family', where)
  }
  let connectionState: NormalizedConnState | undefined
  const cs = input.connectionState
  if (cs !== undefined && cs !== null) {
    if (typeof cs !== 'object') throw new FirewallValidationError('connectionState', 'must be an object', where)
    const out: NormalizedConnState = { established: false, new: false, related: false, invalid: false }
    for (const [k, v] of Object.entries(cs)) {
      if (!(CT_STATE_KEYS as readonly string[]).includes(k)) throw new FirewallValidationError('connectionState', `unknown state ${show(k)}`, where)
      if (v !== undefined && v !== null && typeof v !== 'boolean') {
        throw new FirewallValidationError(`connectionState.${k}`, 'must be a boolean', where)
      }
      out[k as keyof NormalizedConnState] = v === true
    }
    if (out.established || out.new || out.related || out.invalid) connectionState = out
  }
  const od = input.overridesDept
  if (od !== undefined && od !== null && typeof od !== 'boolean') throw new FirewallValidationError('overridesDept', 'must be a boolean', where)
  const rule: NormalizedRule = { id, name, source, action, direction, priority, protocol, overridesDept: od === true }
  const log = input.log
  if (log !== undefined && log !== null && typeof log !== 'boolean') throw new FirewallValidationError('log', 'must be a boolean', where)
  if (typeof log === 'boolean') rule.log = log
  if (srcPorts) rule.srcPorts = srcPorts
  if (dstPorts) rule.dstPorts = dstPorts
  if (src) rule.src = src
  if (dst) rule.dst = dst
  const family = src?.family ?? dst?.family
  if (family) rule.family = family
  if (connectionState) rule.connectionState = connectionState
  return rule
}

function ruleList(list: unknown, field: string, source: 'department' | 'vm', vmId: string): NormalizedRule[] {
  if (list === undefined || list === null) return []
  if (!Array.isArray(list)) throw new FirewallValidationError(field, 'must be an array', { vmId })
  const rules = list.map((r) => normalizeRule(r as FirewallRuleInput, source, field))
  const seen = new Set<string>()
  for (const r of rules) {
    if (seen.has(r.id)) throw new FirewallValidationError('id', `duplicate rule id in ${field}`, { ruleId: r.id })
    seen.add(r.id)
  }
  return rules
}

/** Validates a whole VmSpec; throws FirewallValidationError on the first problem. */
export function normalizeVm(spec: VmSpec): NormalizedVm {
  if (spec === null || typeof spec !== 'object') throw new FirewallValidationError('spec', 'must be an object')
  const vmId = checkToken(spec.vmId, 'vmId', VMID_MAX, {})
  const where = { vmId }
  const tap = checkIfname(spec.tap, 'tap', where)
  let mac: string | undefined
  if (spec.mac !== undefined && spec.mac !== null) {
    if (typeof spec.mac !== 'string' || !(mac = parseMac(spec.mac))) throw new FirewallValidationError('mac', `${show(spec.mac)} is not a MAC address`, where)
    if (parseInt(mac.slice(0, 2), 16) & 1) throw new FirewallValidationError('mac', 'is a multicast address', where)
  }
  const addrs = (list: unknown, field: 'ipv4' | 'ipv6'): string[] => {
    if (list === undefined || list === null) return []
    if (!Array.isArray(list)) throw new FirewallValidationError(field, 'must be an array of addresses', where)
    return [
      ...new Set(
        list.map((a, i) => {
          const b = typeof a === 'string' ? (field === 'ipv4' ? parseIPv4(a) : parseIPv6(a)) : undefined
          if (!b) throw new FirewallValidationError(`${field}[${i}]`, `${show(a)} is not an ${field === 'ipv4' ? 'IPv4' : 'IPv6'} address`, where)
          return field === 'ipv4' ? formatIPv4(b) : formatIPv6(b)
        }),
      ),
    ]
  }
  const ipv4 = addrs(spec.ipv4, 'ipv4')
  const ipv6 = addrs(spec.ipv6, 'ipv6')
  const defaultAction = spec.defaultAction ?? 'drop'
  if (defaultAction !== 'accept' && defaultAction !== 'drop') throw new FirewallValidationError('defaultAction', "must be 'accept' or 'drop'", where)
  const identified = mac !== undefined || ipv4.length > 0 || ipv6.length > 0
  for (const k of ['antiSpoofing', 'dhcp'] as const) {
    if (spec[k] !== undefined && typeof spec[k] !== 'boolean') throw new FirewallValidationError(k, 'must be a boolean', where)
  }
  return {
    vmId,
    tap,
    ...(mac ? { mac } : {}),
    ipv4,
    ipv6,
    defaultAction,
    antiSpoofing: spec.antiSpoofing ?? identified,
    dhcp: spec.dhcp ?? identified,
    rules: ruleList(spec.rules, 'rules', 'vm', vmId),
    departmentRules: ruleList(spec.departmentRules, 'departmentRules', 'department', vmId),
  }
}

export { FirewallValidationError }
