#!/usr/bin/env node
// Captures, in the environment it runs in (kernel x libnftables), what the pure reconciler is tested against:
// the listing of a firewall table right after a sync of a fixed set of VMs, and the kernel's renderings of
// the compiled rules. Run as root from a built checkout; writes __test__/fixtures/listings/<name>.json.
//   node scripts/capture-listing.mjs <name>      (e.g. libnftables-1.0.6, libnftables-1.1.3, conntrack-6.12)
// Everything happens in a throwaway network namespace.
import { execFileSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'

const require = createRequire(import.meta.url)
const root = join(import.meta.dirname, '..')
const { Nft } = require(join(root, 'dist', 'index.js'))
const { VmFirewall } = require(join(root, 'dist', 'firewall', 'index.js'))
const { KernelRendering } = require(join(root, 'dist', 'firewall', 'rendering.js'))
const { FirewallKernel } = require(join(root, 'dist', 'firewall', 'kernel.js'))
const FIXTURE_SPECS = JSON.parse(readFileSync(join(root, '__test__', 'fixtures', 'listings', 'specs.json'), 'utf8'))

const name = process.argv[2]
if (!name || !/^[a-z0-9.-]+$/.test(name)) throw new Error('usage: capture-listing.mjs <name>')
const ns = `nftfix-${process.pid}`
execFileSync('ip', ['netns', 'add', ns])
const nft = new Nft({ netns: ns })
try {
  const fw = new VmFirewall(nft)
  const capabilities = await fw.capabilities()
  await fw.sync(FIXTURE_SPECS)
  const listing = await nft.listTable('bridge', 'infinization')
  const rendering = new KernelRendering(new FirewallKernel(nft, 'infinization'))
  const compiled = FIXTURE_SPECS.map((s) => fw.plan(s).commands.nftables.flatMap((c) => (c.add?.rule ? [c.add.rule.expr] : [])))
  await rendering.learn(compiled.flat())
  const version = listing.nftables[0]?.metainfo?.version
  const out = { name, version, kernel: execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim(), capabilities, listing, renderings: rendering.entries() }
  writeFileSync(join(root, '__test__', 'fixtures', 'listings', `${name}.json`), JSON.stringify(out, null, 1) + '\n')
  console.log(`captured ${name}: libnftables ${version}, kernel ${out.kernel}, ${out.renderings.length} renderings`)
} finally {
  nft.close()
  execFileSync('ip', ['netns', 'del', ns])
}
