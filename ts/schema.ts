// Types of the libnftables JSON schema (libnftables-json(5)). Placeholder, to be completed.
export const NFT_FAMILIES = ['ip', 'ip6', 'inet', 'arp', 'bridge', 'netdev'] as const
export type NftFamily = (typeof NFT_FAMILIES)[number]
export type NftObject = Record<string, unknown>
export interface NftablesJson {
  nftables: NftObject[]
}
