export {
  VmFirewall,
  type VmFirewallOptions,
  type VmPlan,
  type ApplyOptions,
  type SyncOptions,
  type VmState,
  type ApplyDecision,
  type IfChangedOptions,
} from './vm-firewall.js'
export * from './model.js'
export { FirewallValidationError, FirewallCapabilityError, FirewallError, isNotFound } from './errors.js'
export { normalizeVm, normalizeRule, type NormalizedRule, type NormalizedVm } from './validate.js'
export { probeCapabilities } from './capabilities.js'
export { mergeRules, sameTraffic } from './merge.js'
export {
  compileVm,
  generateVMChainName,
  vmChainNames,
  tableCommands,
  vmApplyCommands,
  parseComment,
  VM_CHAIN_PREFIX,
  DEFAULT_TABLE,
  type CompiledVm,
  type CompiledRule,
} from './compile.js'
export { renderCommands } from './render.js'
export { RestoreValidationError, checkRestore, type CheckedRestore } from './restore-guard.js'
