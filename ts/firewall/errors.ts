// Every error class of the firewall layer, and the one test for "the kernel object is not there".
// Callers branch on `instanceof` or `code`, never on messages.

/** A value formatted for an error message (bounded; never throws on BigInt or cycles). */
export function show(value: unknown): string {
  try {
    const text = JSON.stringify(value)
    if (text !== undefined) return text.length > 80 ? `${text.slice(0, 77)}...` : text
  } catch {
    // fall through
  }
  return `(${typeof value})`
}

export class FirewallValidationError extends Error {
  override readonly name = 'FirewallValidationError'
  readonly code = 'VALIDATION' as const
  /** Id of the offending rule (when the problem is in a rule). */
  readonly ruleId?: string
  /** The offending field, e.g. `dstPortStart`, `tap`, `rules[3].srcIpAddr`. */
  readonly field: string
  readonly vmId?: string
  constructor(field: string, message: string, where: { ruleId?: string; vmId?: string } = {}) {
    const who = where.ruleId !== undefined ? `rule ${show(where.ruleId)}: ` : where.vmId !== undefined ? `vm ${show(where.vmId)}: ` : ''
    super(`VALIDATION: ${who}${field}: ${message}`)
    this.field = field
    if (where.ruleId !== undefined) this.ruleId = where.ruleId
    if (where.vmId !== undefined) this.vmId = where.vmId
  }
}

/** Thrown when `conntrack: 'require'` meets a kernel without bridge conntrack. */
export class FirewallCapabilityError extends Error {
  override readonly name = 'FirewallCapabilityError'
  readonly code = 'CONNTRACK_UNAVAILABLE' as const
  constructor(message: string) {
    super(`CONNTRACK_UNAVAILABLE: ${message}`)
  }
}

/** Other failures of VmFirewall that are not kernel errors (e.g. attaching a VM that has no chains). */
export class FirewallError extends Error {
  override readonly name = 'FirewallError'
  constructor(
    readonly code: 'VM_NOT_FOUND' | 'TAP_CONFLICT',
    message: string,
    readonly vmId?: string,
  ) {
    super(`${code}: ${message}`)
  }
}

/** A restore file that is not an export of the firewall's own table. `line` is 1-based. */
export class RestoreValidationError extends FirewallValidationError {
  readonly line: number
  constructor(line: number, message: string) {
    super('restore', `line ${line}: ${message}`)
    this.line = line
  }
}

/** The kernel (or libnftables) says the table, chain, map or element does not exist. */
export function isNotFound(e: unknown): boolean {
  return (e as { code?: string })?.code === 'ENOENT'
}
