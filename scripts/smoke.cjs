#!/usr/bin/env node
// Smallest end-to-end check of a built addon, for machines where the full test suite cannot run
// (the release workflow's musl containers): loads the package, applies a table inside a throwaway
// network namespace and checks it with the `nft` CLI. Needs root, `ip` and `nft`.
//
//   node scripts/smoke.cjs [package-dir]     # default: this repository (dist/ and a built .node)
'use strict'
const { execFileSync } = require('node:child_process')
const { resolve } = require('node:path')

const pkgDir = resolve(process.argv[2] || resolve(__dirname, '..'))
const ns = `nftn-smoke-${process.pid}`
const sh = (cmd, args) => execFileSync(cmd, args, { encoding: 'utf8' })

const t0 = performance.now()
const { Nft, NftError } = require(pkgDir)
sh('ip', ['netns', 'add', ns])
try {
  const nft = new Nft({ netns: ns })
  const t1 = performance.now()
  nft.runSync('add table bridge smoke\nadd chain bridge smoke fw { type filter hook forward priority 0; }')
  try {
    nft.runSync('add rule bridge smoke nochain accept')
    throw new Error('a rule in a missing chain was accepted')
  } catch (e) {
    if (!(e instanceof NftError) || e.code !== 'ENOENT') throw e
  }
  nft.close()
  const tables = sh('ip', ['netns', 'exec', ns, 'nft', 'list', 'tables'])
  if (!/^table bridge smoke$/m.test(tables)) throw new Error(`table not found in ${ns}: ${tables}`)
  console.log(`smoke: ok (${process.platform}-${process.arch}, load + new Nft ${(t1 - t0).toFixed(1)} ms)`)
} finally {
  try {
    sh('ip', ['netns', 'delete', ns])
  } catch {
    // already gone
  }
}
