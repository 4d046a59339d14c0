// Privilege: without CAP_NET_ADMIN (a child in the namespace under `unshare --user`) every VmFirewall
// operation that touches the kernel fails with NftError EPERM, and nothing changes.
import { afterAll, beforeAll, expect, it } from 'vitest'
import { Nft } from '../../ts/index.js'
import { VmFirewall } from '../../ts/firewall/index.js'
import { distEntry, runNode } from '../support/child.js'
import { createNetns, type Netns } from '../support/netns.js'
import { prng, report } from '../support/stress.js'
import { distFirewall, ensureDistFirewall, randomSpec } from '../support/stress-fw.js'

let ns: Netns
beforeAll(async () => {
  ensureDistFirewall()
  ns = createNetns()
  // Existing state the unprivileged child must not be able to read or change.
  const nft = new Nft({ netns: ns.name })
  const rand = prng(7)
  await new VmFirewall(nft).sync([0, 1, 2].map((i) => randomSpec(rand, i, 0)))
  await new VmFirewall(nft).detachVm('vm-2')
  nft.close()
  ns.exec('nft', ['add table inet other; add chain inet other c { type filter hook input priority 0; }'])
})
afterAll(() => ns?.delete())

it('every operation fails with EPERM without CAP_NET_ADMIN, and the ruleset is unchanged', () => {
  const before = ns.ruleset()
  const script = `
    const { Nft } = require(${JSON.stringify(distEntry)})
    const { VmFirewall } = require(${JSON.stringify(distFirewall)})
    const spec = { vmId: 'vm-0', tap: 'vmt0', mac: '52:54:00:00:00:42', ipv4: ['10.99.0.1'], rules: [{ id: 'x', name: 'x', protocol: 'tcp', dstPortStart: 22 }] }
    const fresh = { vmId: 'vm-9', tap: 'vmt9' }
    const ops = {
      capabilities: (fw) => fw.capabilities(),
      init: (fw) => fw.init(),
      applyVm: (fw) => fw.applyVm(spec),
      applyVmNew: (fw) => fw.applyVm(fresh),
      removeVm: (fw) => fw.removeVm('vm-1'),
      detachVm: (fw) => fw.detachVm('vm-0'),
      attachVm: (fw) => fw.attachVm('vm-2', 'vmt2'),
      sync: (fw) => fw.sync([spec]),
      syncEmpty: (fw) => fw.sync([]),
      verify: (fw) => fw.verify(),
      stats: (fw) => fw.stats('vm-0'),
      exportRuleset: (fw) => fw.exportRuleset(),
      restoreRuleset: (fw) => fw.restoreRuleset('table bridge infinization {}\\ndelete table bridge infinization\\ntable bridge infinization {\\n}\\n'),
    }
    ;(async () => {
      const out = {}
      // Twice: probing the kernel (default), and with capabilities given (so no probe stands in front).
      for (const [label, opts] of [['probe', {}], ['given', { capabilities: { bridgeConntrack: false, bridgeReject: false } }]]) {
        const nft = new Nft()
        for (const [name, op] of Object.entries(ops)) {
          if (label === 'given' && name === 'capabilities') continue
          const fw = new VmFirewall(nft, opts)
          try { await op(fw); out[label + ':' + name] = 'ok' } catch (e) { out[label + ':' + name] = e.name + ':' + e.code }
        }
        nft.close()
      }
      console.log(JSON.stringify(out))
    })()
  `
  const out = runNode(script, ['ip', 'netns', 'exec', ns.name, 'unshare', '--user']) as Record<string, string>
  const ops = Object.keys(out)
  expect(ops.length).toBe(25)
  for (const op of ops) expect(`${op} -> ${out[op]}`).toBe(`${op} -> NftError:EPERM`)
  expect(ns.ruleset()).toBe(before)
  report('firewall/privilege', `${ops.length} VmFirewall operations without CAP_NET_ADMIN (init, applyVm, removeVm, detachVm, attachVm, sync, verify, stats, exportRuleset, restoreRuleset, capabilities; probing and with given capabilities): all NftError EPERM, ruleset unchanged`)
})
