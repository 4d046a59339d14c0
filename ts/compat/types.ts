// Infinization's public types, as the facade accepts and returns them.
import type { Nft } from '../nft.js'
import type { FirewallRuleInput, FirewallDefaultAction, VmApplyResult, VmSpec } from '../firewall/model.js'
import type { NftablesErrorCode } from './errors.js'

// The engine's rule model is Infinization's (a superset: optional fields default as the backend does,
// masks may be numbers, addresses may be IPv6).
export type { FirewallRuleInput, FirewallDefaultAction }

/** Infinization's `ConnectionStateConfig`. */
export interface ConnectionStateConfig {
  established?: boolean
  new?: boolean
  related?: boolean
  invalid?: boolean
}

/** `fail`: refuse to run without bridge conntrack. `degrade`: run stateless (reported per apply). */
export type BridgeConntrackMode = 'fail' | 'degrade'

export interface FirewallApplyFailure {
  ruleName: string
  /** Human-readable; branch on `code`. */
  error: string
  code: NftablesErrorCode
  ruleId?: string
  /** The offending field, e.g. `dstPortStart`. */
  field?: string
  /** Set on a refused rule whose absence would widen access: the whole apply was refused for it. */
  blocksApply?: true
}

/** Infinization's `FirewallApplyResult`, plus what the engine reports. */
export interface FirewallApplyResult {
  /**
   * false: the new policy was not applied at all, because a refused rule is DROP/REJECT (or overrides
   * department rules) and leaving it out would widen access; `notApplied` says what is in force instead.
   */
  applied: boolean
  notApplied?: {
    code: 'POLICY_NOT_APPLIED'
    /** `previous`: the VM's earlier rules are untouched. `closed`: a VM that had no chains got only its
     *  closed default (drop), dispatched as applyRules would have. */
    kept: 'previous' | 'closed'
    message: string
  }
  /** Rules considered after the department/VM merge (overridden department rules are not counted). */
  totalRules: number
  /** Rules in force (a rule whose connection-state match is replaced by stateless reply rules counts). */
  appliedRules: number
  /** Rules refused by validation; they are left out and the rest is applied, unless `applied` is false. */
  failedRules: number
  /** Base chain name: `vm_` + 24 hex of sha256(vmId). */
  chainName: string
  failures: FirewallApplyFailure[]
  /** Whether the VM's TAP dispatches to its chains after the call (false for a stopped, detached VM). */
  attached: boolean
  /** Everything the engine reports: per-rule effect, stateful or not, degradations (REJECT -> drop …).
   *  Absent when `applied` is false. */
  details?: VmApplyResult
}

/**
 * Options of a facade. `bridgeConntrackMode`, `enablePersistence`/`persistencePath`, `dhcp` and
 * `vmIdentity` describe the table, so they are one per process, namespace and table: the first facade
 * that passes one fixes it, facades that leave it out (a bare `new NftablesService()`) use it, and a
 * facade that passes a different value throws `CONFIG_CONFLICT` (see docs/migrating-from-infinization.md).
 */
export interface NftablesServiceConfig {
  /** Write `exportRuleset()` to `persistencePath` after each change (default false). */
  enablePersistence?: boolean
  /** Default `/etc/infinization/nftables/infinization.nft`. */
  persistencePath?: string
  /** Default from `INFINIZATION_BRIDGE_CONNTRACK_MODE` (`degrade`), else `fail`. */
  bridgeConntrackMode?: BridgeConntrackMode
  /** Bridge table (default `infinization`). Use another name to run next to the old service. */
  table?: string
  /** Network namespace to work in (default: the process's own). Ignored when `nft` is given. */
  netns?: string
  /** An `Nft` instance to use (tests, custom library path). Default: one shared per namespace and table. */
  nft?: Nft
  /** Allow DHCP/DHCPv6 client traffic of each VM and drop DHCP server replies it sends (default true). */
  dhcp?: boolean
  /**
   * The VM's MAC and addresses, looked up whenever the facade builds a VM's chains: turns on MAC, IP and
   * ARP anti-spoofing, which Infinization's method signatures have no room for. Default: none (off).
   */
  vmIdentity?: (vmId: string) => VmIdentity | undefined | Promise<VmIdentity | undefined>
  /**
   * Put each VM whose policy fits into the exact table `<table>_exact` as verdict-map elements instead of
   * chains (VmFirewall's `exactTable`; only on kernels with bridge conntrack): its commits cost the same at
   * 10 VMs and at 2000. Default false. Such a VM has no chains: listChains() and chainExists() name it by its
   * base chain name all the same. Stopped (detachJumpRules), it holds nothing in the kernel; its next start
   * (ensureVMChain, attachJumpRules, applyRulesIfChanged) closes it first and then puts its rules back.
   */
  exactTable?: boolean
}

/** What `vmIdentity` returns (fields of the engine's VmSpec). */
export type VmIdentity = Pick<VmSpec, 'mac' | 'ipv4' | 'ipv6' | 'antiSpoofing'>

/** `migrationStatus()`: what is left of Infinization's old layout in the table. */
export interface MigrationStatus {
  /** Nothing of the old layout is left. */
  complete: boolean
  /** The old base chain `forward` exists. */
  forwardChain: boolean
  /** Its two DHCP rules still present (0-2). */
  dhcpRules: number
  /** Rules in `forward` the old service did not write (they keep `forward` in place). */
  foreignRules: number
  /** VMs still filtered (or held, when detached) by their old chain. */
  legacyVms: {
    chainName: string
    chainExists: boolean
    /** Interfaces dispatched to the old chain from `forward`. */
    taps: string[]
    attached: boolean
    /** The old chain's terminal verdict, when readable. */
    defaultAction?: FirewallDefaultAction
  }[]
}

/** `verify()`: problems found in the table (base chains, old layout still in place). */
export interface ServiceVerifyResult {
  ok: boolean
  problems: string[]
  migration: MigrationStatus
}
