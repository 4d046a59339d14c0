// The built package (dist/) imports without the native addon, and creating an `Nft` without one
// fails with an error that says what is missing and how to fix it. Each case runs in a fresh Node
// process so the module cache, the environment and the loaded shared objects are its own.
import { execFileSync } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

const root = resolve(__dirname, '..', '..')
const missing = '/nonexistent/nftables-node.linux-x64-gnu.node'

interface Outcome {
  exports: string[]
  /** Shared objects mapped into the process after the import (addon, libnftables). */
  mappedAfterImport: string[]
  error?: { name: string; code: string; message: string; isNftError: boolean }
  closed?: boolean
}

// Imports the package, records what got mapped, then tries `new Nft()`.
const body = (platform?: string, arch?: string) => `
  const maps = () => [...new Set(require('node:fs').readFileSync('/proc/self/maps', 'utf8').split('\\n')
    .map((l) => l.split(/\\s+/)[5] || '').filter((f) => /\\.node$|libnftables/.test(f)))]
  const out = { exports: Object.keys(m).sort(), mappedAfterImport: maps() }
  ${platform ? `Object.defineProperty(process, 'platform', { value: ${JSON.stringify(platform)} })` : ''}
  ${arch ? `Object.defineProperty(process, 'arch', { value: ${JSON.stringify(arch)} })` : ''}
  try {
    const nft = new m.Nft()
    out.closed = nft.closed
    nft.close()
  } catch (e) {
    out.error = { name: e.name, code: e.code, message: e.message, isNftError: e instanceof m.NftError }
  }
  console.log(JSON.stringify(out))
`

function runCjs(
  entry: string,
  env: NodeJS.ProcessEnv,
  opts: { platform?: string; arch?: string; cwd?: string } = {},
): Outcome {
  const code = `const m = require(${JSON.stringify(entry)});${body(opts.platform, opts.arch)}`
  return JSON.parse(execFileSync(process.execPath, ['-e', code], { env, cwd: opts.cwd ?? root, encoding: 'utf8' }))
}

function runEsm(entry: string, env: NodeJS.ProcessEnv): Outcome {
  const code = `import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);
    const m = await import(${JSON.stringify(entry)});${body()}`
  return JSON.parse(
    execFileSync(process.execPath, ['--input-type=module', '-e', code], { env, cwd: root, encoding: 'utf8' }),
  )
}

function envWith(vars: Record<string, string | undefined>): NodeJS.ProcessEnv {
  const env = { ...process.env }
  delete env.NAPI_RS_NATIVE_LIBRARY_PATH
  delete env.NFTABLES_NODE_NATIVE_PATH
  for (const [k, v] of Object.entries(vars)) if (v !== undefined) env[k] = v
  return env
}

beforeAll(() => {
  if (!existsSync(join(root, 'dist', 'index.js')) || !existsSync(join(root, 'dist', 'index.mjs'))) {
    throw new Error('dist/ is not built: run `npm run build` first')
  }
})

describe('importing the package does not load the addon', () => {
  const env = envWith({ NAPI_RS_NATIVE_LIBRARY_PATH: missing })

  it('CommonJS: import works, new Nft() says the override path is wrong', () => {
    const out = runCjs(join(root, 'dist', 'index.js'), env)
    expect(out.exports).toEqual(expect.arrayContaining(['Nft', 'NftError', 'isNftError']))
    expect(out.mappedAfterImport).toEqual([])
    expect(out.error).toMatchObject({ name: 'NftError', code: 'NATIVE_BINDING_UNAVAILABLE', isNftError: true })
    expect(out.error?.message).toContain(`NAPI_RS_NATIVE_LIBRARY_PATH is set to ${missing}`)
    expect(out.error?.message).toContain(`Cannot find module '${missing}'`)
  })

  it('ESM: import works, new Nft() says the override path is wrong', () => {
    const out = runEsm(join(root, 'dist', 'index.mjs'), env)
    expect(out.exports).toEqual(expect.arrayContaining(['Nft', 'NftError', 'isNftError', 'default']))
    expect(out.mappedAfterImport).toEqual([])
    expect(out.error).toMatchObject({ code: 'NATIVE_BINDING_UNAVAILABLE', isNftError: true })
    expect(out.error?.message).toContain('NAPI_RS_NATIVE_LIBRARY_PATH')
  })

  it('the package name resolves through the exports map, both ways', () => {
    expect(runCjs('@infinibay/nftables-node', env).mappedAfterImport).toEqual([])
    expect(runEsm('@infinibay/nftables-node', env).exports).toContain('Nft')
  })
})

describe('clear errors where the addon cannot load', () => {
  it('macOS: UNSUPPORTED_PLATFORM, and the message says what still works', () => {
    const out = runCjs(join(root, 'dist', 'index.js'), envWith({}), { platform: 'darwin' })
    expect(out.mappedAfterImport).toEqual([])
    expect(out.error).toMatchObject({ code: 'UNSUPPORTED_PLATFORM', isNftError: true })
    expect(out.error?.message).toMatch(/only for Linux/)
    expect(out.error?.message).toMatch(/darwin/)
  })

  it('Windows: UNSUPPORTED_PLATFORM', () => {
    const out = runCjs(join(root, 'dist', 'index.js'), envWith({}), { platform: 'win32' })
    expect(out.error).toMatchObject({ code: 'UNSUPPORTED_PLATFORM' })
  })

  it('a Linux CPU without a prebuilt binary: UNSUPPORTED_PLATFORM, and how to build one', () => {
    const out = runCjs(join(root, 'dist', 'index.js'), envWith({}), { arch: 'riscv64' })
    expect(out.error).toMatchObject({ code: 'UNSUPPORTED_PLATFORM', isNftError: true })
    expect(out.error?.message).toContain('linux/riscv64')
    expect(out.error?.message).toContain('NFTABLES_NODE_NATIVE_PATH')
  })

  describe('missing optional dependency', () => {
    let dir: string
    beforeAll(() => {
      // The package as npm would install it with `--omit=optional`: no platform package, no local .node.
      dir = mkdtempSync(join(tmpdir(), 'nftables-node-lazy-'))
      for (const f of ['dist', 'binding.js', 'binding.d.ts', 'package.json']) cpSync(join(root, f), join(dir, f), { recursive: true })
    })
    afterAll(() => rmSync(dir, { recursive: true, force: true }))

    it('names the platform package and how to install it', () => {
      const out = runCjs(join(dir, 'dist', 'index.js'), envWith({}), { cwd: dir })
      expect(out.exports).toContain('Nft')
      expect(out.error).toMatchObject({ code: 'NATIVE_BINDING_UNAVAILABLE', isNftError: true })
      const report = process.report.getReport() as { header?: { glibcVersionRuntime?: string } }
      const triple = `linux-${process.arch}-${report.header?.glibcVersionRuntime ? 'gnu' : 'musl'}`
      const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }
      expect(out.error?.message).toContain(`@infinibay/nftables-node-${triple} is not installed`)
      expect(out.error?.message).toContain(`npm install @infinibay/nftables-node-${triple}@${version}`)
      expect(out.error?.message).toContain('NFTABLES_NODE_NATIVE_PATH')
    })

    it('says when the platform package is there but its addon does not load', () => {
      const report = process.report.getReport() as { header?: { glibcVersionRuntime?: string } }
      const triple = `linux-${process.arch}-${report.header?.glibcVersionRuntime ? 'gnu' : 'musl'}`
      const pkg = join(dir, 'node_modules', '@infinibay', `nftables-node-${triple}`)
      mkdirSync(pkg, { recursive: true })
      cpSync(join(root, 'npm', triple, 'package.json'), join(pkg, 'package.json'))
      writeFileSync(join(pkg, `nftables-node.${triple}.node`), 'not an ELF file')
      try {
        const out = runCjs(join(dir, 'dist', 'index.js'), envWith({}), { cwd: dir })
        expect(out.error).toMatchObject({ code: 'NATIVE_BINDING_UNAVAILABLE', isNftError: true })
        expect(out.error?.message).toContain(`@infinibay/nftables-node-${triple} is installed`)
        expect(out.error?.message).toContain('failed to load')
      } finally {
        rmSync(join(dir, 'node_modules'), { recursive: true, force: true })
      }
    })
  })
})

describe('the override paths', () => {
  const built = readdirSync(root).find((f) => /^nftables-node\..+\.node$/.test(f))

  it.runIf(built !== undefined)('loads it from an absolute path', () => {
    const out = runCjs(join(root, 'dist', 'index.js'), envWith({ NAPI_RS_NATIVE_LIBRARY_PATH: join(root, built!) }))
    expect(out.error).toBeUndefined()
    expect(out.closed).toBe(false)
  })

  it('NFTABLES_NODE_NATIVE_PATH pointing at nothing: the error names it', () => {
    const out = runCjs(join(root, 'dist', 'index.js'), envWith({ NFTABLES_NODE_NATIVE_PATH: missing }))
    expect(out.mappedAfterImport).toEqual([])
    expect(out.error).toMatchObject({ code: 'NATIVE_BINDING_UNAVAILABLE', isNftError: true })
    expect(out.error?.message).toContain(`NFTABLES_NODE_NATIVE_PATH is set to ${missing}`)
  })

  it.runIf(built !== undefined)('NFTABLES_NODE_NATIVE_PATH loads a built addon', () => {
    const out = runCjs(join(root, 'dist', 'index.js'), envWith({ NFTABLES_NODE_NATIVE_PATH: join(root, built!) }))
    expect(out.error).toBeUndefined()
    expect(out.closed).toBe(false)
  })

  it.runIf(built !== undefined)('loads it from a path relative to the current directory', () => {
    const dir = mkdtempSync(join(tmpdir(), 'nftables-node-rel-'))
    try {
      cpSync(join(root, built!), join(dir, built!))
      const out = runCjs(join(root, 'dist', 'index.js'), envWith({ NAPI_RS_NATIVE_LIBRARY_PATH: `./${built}` }), { cwd: dir })
      expect(out.error).toBeUndefined()
      expect(out.closed).toBe(false)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
