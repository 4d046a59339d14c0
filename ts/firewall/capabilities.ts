// Kernel feature probes by dry-run: nothing is created, the kernel only validates the batch.
import type { Nft } from '../nft.js'
import type { NftablesJson, NftStatement } from '../schema.js'
import { FirewallCapabilityError, FirewallError } from './errors.js'
import type { FirewallCapabilities } from './model.js'

export { FirewallCapabilityError, FirewallError }

const SCRATCH = '__nftnode_probe'

function probeDoc(stmt: NftStatement[]): NftablesJson {
  const family = 'bridge'
  return {
    nftables: [
      { add: { table: { family, name: SCRATCH } } },
      { add: { chain: { family, table: SCRATCH, name: 'pre', type: 'filter', hook: 'prerouting', prio: -200, policy: 'accept' } } },
      { add: { rule: { family, table: SCRATCH, chain: 'pre', expr: stmt } } },
    ],
  }
}

async function works(nft: Nft, stmt: NftStatement[]): Promise<boolean> {
  try {
    await nft.checkJson(probeDoc(stmt))
    return true
  } catch (e) {
    // A missing feature shows up as EPROTO/ENOENT/EOPNOTSUPP; anything else (e.g. no permission) is real.
    const code = (e as { code?: string }).code
    if (code === 'EPROTO' || code === 'ENOENT' || code === 'EOPNOTSUPP' || code === 'EINVAL') return false
    throw e
  }
}

/** Probes bridge conntrack and bridge reject with check-mode batches in a scratch table (never committed). */
export async function probeCapabilities(nft: Nft): Promise<FirewallCapabilities> {
  const bridgeConntrack = await works(nft, [
    { match: { op: 'in', left: { ct: { key: 'state' } }, right: ['established', 'related'] } },
    { accept: null },
  ])
  const bridgeReject =
    (await works(nft, [{ reject: null }])) &&
    (await works(nft, [{ match: { op: '==', left: { meta: { key: 'l4proto' } }, right: 'tcp' } }, { reject: { type: 'tcp reset' } }]))
  return { bridgeConntrack, bridgeReject }
}
