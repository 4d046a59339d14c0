// The paths compared (pure: no native addon, no I/O).
export const PATHS = ['spawn', 'nft-f', 'lib-text', 'lib-json', 'py-text', 'py-json', 'vmfw', 'compat'] as const
export type PathId = (typeof PATHS)[number]

export const PATH_LABEL: Record<PathId, string> = {
  spawn: 'spawn per command',
  'nft-f': 'nft -f - per transaction',
  'lib-text': 'Nft.run (text)',
  'lib-json': 'Nft.runJson (JSON)',
  'py-text': 'python3-nftables cmd (text)',
  'py-json': 'python3-nftables json_cmd (JSON)',
  vmfw: 'VmFirewall',
  compat: 'NftablesService.applyRules (compat)',
}

