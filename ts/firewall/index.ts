export {
  VmFirewall,
  type VmFirewallOptions,
  type ApplyOptions,
  type SyncOptions,
  type VmState,
  type AlsoCommands,
  type ApplyDecision,
  type IfChangedOptions,
  type VmIdentitySpec,
} from './vm-firewall.js'
export { planVm, type PlanOptions, type VmPlan } from './plan.js'
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
export { EventStream } from './event-stream.js'
export {
  FirewallWatch,
  type WatchOptions,
  type WatchEvent,
  type WatchEvents,
  type DriftEvent,
  type LostEvent,
  type RepairResult,
  type RepairedEvent,
  type RepairFailedEvent,
  type RepairSuspendedEvent,
  type WatchEndEvent,
  type TableChange,
  type TableObject,
} from './watch.js'
export {
  BlockedStream,
  type BlockedOptions,
  type BlockedEvent,
  type BlockedLostEvent,
  type BlockedEndEvent,
  type BlockedStreamEvent,
  type BlockedEvents,
} from './blocked.js'
export { resolveLogDrops, parseLogPrefix, logPrefix, DEFAULT_LOG_GROUP, type LogDropsOptions, type LogPrefix } from './log-drops.js'
