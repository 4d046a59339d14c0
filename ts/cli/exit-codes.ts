// Exit codes of the `nftables-node` command, stable for scripts.
export const EXIT = {
  OK: 0,
  /** libnftables or the kernel refused (the NftError code is printed). */
  FAILED: 1,
  /** Bad command line. */
  USAGE: 2,
  /** The spec file is invalid or conflicting (FirewallValidationError), or a restore file is not an export of
   *  the table (RestoreValidationError); nothing was applied. */
  INVALID: 3,
  /** `verify` found drift. */
  DRIFT: 4,
  /** Not root / no CAP_NET_ADMIN. */
  PERMISSION: 5,
  /** The kernel lacks a feature the options require (e.g. --conntrack require). */
  UNSUPPORTED: 6,
} as const
