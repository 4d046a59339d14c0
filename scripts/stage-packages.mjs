#!/usr/bin/env node
// Stages the packages a release publishes, as directories ready for `npm publish`, into OUT_DIR:
//   OUT_DIR/main            @infinibay/nftables-node, from `npm pack` of the repository, with the
//                           `optionalDependencies` that `napi pre-publish` adds at release time
//   OUT_DIR/<platform>      @infinibay/nftables-node-<platform> for every napi target, from npm/<platform>;
//                           the host's gets the built .node file, the others are staged without a
//                           binary (they cannot be built here) unless --only-host is given.
// Prints a JSON summary on stdout. Used by scripts/install-test.sh.
//
//   node scripts/stage-packages.mjs OUT_DIR [--only-host]
import { execFileSync } from 'node:child_process'
import { copyFileSync, cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseTriple, readNapiConfig } from '@napi-rs/cli'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const [outArg, ...flags] = process.argv.slice(2)
if (!outArg) {
  console.error('usage: stage-packages.mjs OUT_DIR [--only-host]')
  process.exit(2)
}
const out = resolve(outArg)
const onlyHost = flags.includes('--only-host')

const fail = (msg) => {
  console.error(`stage-packages: ${msg}`)
  process.exit(1)
}

const { packageJson, targets, packageName, binaryName } = await readNapiConfig(join(root, 'package.json'))
const version = packageJson.version

const report = process.report.getReport()
const host = `linux-${process.arch}-${report.header?.glibcVersionRuntime ? 'gnu' : 'musl'}`
if (process.platform !== 'linux') fail(`the host is ${process.platform}; only Linux packages exist`)

mkdirSync(out, { recursive: true })

// Platform packages, versions in lockstep with the main package (`napi version` keeps them so).
const platforms = []
for (const triple of targets.map((t) => t.triple)) {
  const { platformArchABI: abi } = parseTriple(triple)
  const src = join(root, 'npm', abi)
  const manifestPath = join(src, 'package.json')
  if (!existsSync(manifestPath)) fail(`npm/${abi}/package.json is missing (run \`napi create-npm-dirs\`)`)
  const manifest = JSON.parse(readFileSync(manifestPath, 'utf8'))
  if (manifest.name !== `${packageName}-${abi}`) fail(`npm/${abi}: name ${manifest.name}, expected ${packageName}-${abi}`)
  if (manifest.version !== version) {
    fail(`npm/${abi} is at version ${manifest.version} but the main package at ${version}; run \`npx napi version\``)
  }
  const binary = `${binaryName}.${abi}.node`
  if (manifest.main !== binary) fail(`npm/${abi}: main is ${manifest.main}, expected ${binary}`)
  const isHost = abi === host
  if (onlyHost && !isHost) continue
  const dir = join(out, abi)
  rmSync(dir, { recursive: true, force: true })
  cpSync(src, dir, { recursive: true })
  if (isHost) {
    const built = join(root, binary)
    if (!existsSync(built)) fail(`${binary} is not built (run \`npm run build\`)`)
    copyFileSync(built, join(dir, binary))
  }
  platforms.push({ abi, name: manifest.name, dir, hasBinary: isHost })
}
if (!platforms.some((p) => p.abi === host)) fail(`no napi target matches this host (${host})`)

// The main package exactly as `npm pack` makes it, plus the optionalDependencies.
const packDir = join(out, 'pack')
rmSync(packDir, { recursive: true, force: true })
mkdirSync(packDir)
const [packed] = JSON.parse(
  execFileSync('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', packDir], {
    cwd: root,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  }),
)
const files = packed.files.map((f) => f.path)
const required = ['package.json', 'binding.js', 'binding.d.ts', 'dist/index.js', 'dist/index.d.ts', 'dist/index.mjs', 'dist/index.d.mts']
const absent = required.filter((f) => !files.includes(f))
if (absent.length) fail(`the packed main package lacks ${absent.join(', ')}`)
// The generated napi-rs loader is binding.js; a root index.js/index.d.ts would be a stale one from before
// the rename, shadowing nothing but confusing anyone who opens the package.
const stale = ['index.js', 'index.d.ts'].filter((f) => files.includes(f))
if (stale.length) fail(`the packed main package has a stale root ${stale.join(', ')} (the generated loader is binding.js)`)
const binaries = files.filter((f) => f.endsWith('.node'))
if (binaries.length) fail(`the main package must not ship binaries: ${binaries.join(', ')}`)
const tests = files.filter((f) => /(^|\/)(__test__|tests|bench|src|npm)\//.test(f))
if (tests.length) fail(`the main package ships files it should not: ${tests.slice(0, 5).join(', ')}`)

const mainDir = join(out, 'main')
rmSync(mainDir, { recursive: true, force: true })
mkdirSync(mainDir)
execFileSync('tar', ['xzf', join(packDir, packed.filename), '-C', mainDir, '--strip-components=1'])
const mainManifestPath = join(mainDir, 'package.json')
const mainManifest = JSON.parse(readFileSync(mainManifestPath, 'utf8'))
const optionalDependencies = { ...(mainManifest.optionalDependencies ?? {}) }
for (const triple of targets.map((t) => t.triple)) {
  optionalDependencies[`${packageName}-${parseTriple(triple).platformArchABI}`] = version
}
mainManifest.optionalDependencies = optionalDependencies
writeFileSync(mainManifestPath, `${JSON.stringify(mainManifest, null, 2)}\n`)

console.log(
  JSON.stringify(
    { version, host, main: { name: packageName, dir: mainDir, files: files.length, packedSize: packed.size }, platforms },
    null,
    2,
  ),
)
