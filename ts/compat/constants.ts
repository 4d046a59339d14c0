// Names and constants Infinization exports, with the same values.
import { sha256Hex } from '../firewall/sha256.js'
import { DEFAULT_TABLE, FAMILY, VM_CHAIN_PREFIX, generateVMChainName } from '../firewall/compile.js'
import type { FirewallProtocol } from '../firewall/model.js'

export { VM_CHAIN_PREFIX, generateVMChainName }

/** Table all VM firewalls live in (Infinization's default; `table` option to change it). */
export const INFINIZATION_TABLE_NAME: string = DEFAULT_TABLE
/** Address family of that table. */
export const INFINIZATION_TABLE_FAMILY = FAMILY
/** Protocols a `FirewallRuleInput` may name (Infinization's list; the backend's FirewallValidationService
 *  checks rules against it). Matched case-insensitively by the engine; anything else is UNSUPPORTED_PROTOCOL. */
export const SUPPORTED_PROTOCOLS = ['tcp', 'udp', 'icmp', 'all'] as const satisfies readonly FirewallProtocol[]
/** Keys of `connectionState` (Infinization's list). */
export const CONNECTION_STATES = ['established', 'new', 'related', 'invalid'] as const
/** nftables' limit on chain names (generateVMChainName gives 27 characters). */
export const MAX_CHAIN_NAME_LENGTH = 31
/** Environment variable Infinization reads for the conntrack mode (`degrade`; anything else means `fail`). */
export const CONNTRACK_MODE_ENV = 'INFINIZATION_BRIDGE_CONNTRACK_MODE'
/** Infinization's persistence file (used when `enablePersistence` is on and no `persistencePath` is given). */
export const NFTABLES_PERSISTENCE_DIR = '/etc/infinization/nftables'
export const NFTABLES_MAIN_FILE = `${NFTABLES_PERSISTENCE_DIR}/infinization.nft`

/** A base chain name as the facade reports it: `vm_` + 24 hex. */
export const BASE_CHAIN_RE = /^vm_[0-9a-f]{24}$/

/** Infinization's TAP naming (`vnet-` + first 10 hex of sha256(vmId)): the label of a VM built while
 *  detached (ensureVMChain, flushVMRules on a stopped VM); nothing is dispatched from it. */
export function generateTapName(vmId: string): string {
  return `vnet-${sha256Hex(vmId).slice(0, 10)}`
}
