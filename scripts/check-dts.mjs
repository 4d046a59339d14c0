#!/usr/bin/env node
// Fails when the committed binding.d.ts / binding.js are stale: regenerates both from the Rust code
// (and its `///` doc comments) with the same `napi build` flags as `npm run build:native`, into a
// temporary directory, and compares. Shares cargo's target dir, so after a build it takes seconds.
//
//   npm run check:dts            # check
//   npm run build:native         # regenerate the committed files when the check fails
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const out = mkdtempSync(join(tmpdir(), 'nftables-node-dts-'))
const napi = join(root, 'node_modules', '@napi-rs', 'cli', 'dist', 'cli.js')

let failed = false
try {
  const build = spawnSync(
    process.execPath,
    [napi, 'build', '--platform', '--release', '--output-dir', out, '--js', 'binding.js', '--dts', 'binding.d.ts'],
    { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] },
  )
  if (build.status !== 0) {
    console.error(`check:dts: napi build failed (exit ${build.status ?? build.signal})`)
    process.exit(1)
  }
  for (const file of ['binding.d.ts', 'binding.js']) {
    const fresh = readFileSync(join(out, file), 'utf8')
    let committed
    try {
      committed = readFileSync(join(root, file), 'utf8')
    } catch {
      committed = undefined
    }
    if (committed !== fresh) {
      failed = true
      console.error(`check:dts: ${file} is stale: it differs from what napi generates from the Rust sources.`)
      const diff = spawnSync('diff', ['-u', join(root, file), join(out, file)], { encoding: 'utf8' })
      if (diff.stdout) console.error(diff.stdout.split('\n').slice(0, 60).join('\n'))
    }
  }
} finally {
  rmSync(out, { recursive: true, force: true })
}
if (failed) {
  console.error('check:dts: run `npm run build:native` and commit binding.d.ts and binding.js.')
  process.exit(1)
}
console.log('check:dts: binding.d.ts and binding.js match the Rust sources')
