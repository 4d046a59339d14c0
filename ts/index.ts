export { Nft, type NftOptions, type JsonInput, type CommitBatchOptions, type BatchGenerations } from './nft.js'
export { NftError, isNftError, type NftErrorCode } from './errors.js'
export * from './schema.js'
export * from './firewall/index.js'
