// Drop-in for Infinization's firewall service: `import { NftablesService } from '@infinibay/nftables-node/compat'`
// (or this module's path) instead of Infinization's. See docs/migrating-from-infinization.md.
export { NftablesService } from './nftables-service.js'
export {
  INFINIZATION_TABLE_NAME,
  INFINIZATION_TABLE_FAMILY,
  MAX_CHAIN_NAME_LENGTH,
  SUPPORTED_PROTOCOLS,
  CONNECTION_STATES,
  VM_CHAIN_PREFIX,
  CONNTRACK_MODE_ENV,
  NFTABLES_PERSISTENCE_DIR,
  NFTABLES_MAIN_FILE,
  generateVMChainName,
  generateTapName,
} from './constants.js'
export { NftablesError, NftablesErrorCode, isNftablesError, type NftablesErrorContext } from './errors.js'
export type { PersistResult } from './persistence.js'
export type { FirewallReader } from './engine.js'
export type {
  BridgeConntrackMode,
  ConnectionStateConfig,
  FirewallApplyFailure,
  FirewallApplyResult,
  FirewallDefaultAction,
  FirewallRuleInput,
  NftablesServiceConfig,
  VmIdentity,
} from './types.js'
