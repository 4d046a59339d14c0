// Loads the compiled addon on first use, so the pure TypeScript parts (validation, rule
// compilation, `plan`) import fine on machines without the native part: nothing here runs at import
// time, and `require('../binding.js')` (the napi-rs loader, which picks the `.node` file) only runs
// when the first `Nft` is created.
//
// Which binary is loaded:
//   1. `$NFTABLES_NODE_NATIVE_PATH` or `$NAPI_RS_NATIVE_LIBRARY_PATH`, when set: the path of a
//      `nftables-node.*.node` file (relative paths are taken from the current directory). The first
//      is this package's own; the second is napi-rs' generic one, which every napi-rs addon in the
//      process obeys (bundlers and test runners often load some), so prefer the first;
//   2. `nftables-node.<platform>.node` next to `binding.js` (a local `npm run build:native`);
//   3. the platform package `@infinibay/nftables-node-linux-<arch>-<gnu|musl>`, an optional
//      dependency that npm installs only on the matching os/cpu/libc.
// When none of them loads, `loadNative` throws an `NftError` that says what is missing and how to
// fix it (code `UNSUPPORTED_PLATFORM` or `NATIVE_BINDING_UNAVAILABLE`).
import { isAbsolute, resolve } from 'node:path'
import type * as Binding from '../binding.js'
import { NftError } from './errors.js'

let binding: typeof Binding | undefined

const PACKAGE = '@infinibay/nftables-node'
const BINARY = 'nftables-node'
const OVERRIDE_ENV = 'NAPI_RS_NATIVE_LIBRARY_PATH'
const OWN_OVERRIDE_ENV = 'NFTABLES_NODE_NATIVE_PATH'
/** Architectures with a prebuilt binary (both glibc and musl). */
const PREBUILT_ARCHES = ['x64', 'arm64']

export function loadNative(): typeof Binding {
  if (binding) return binding
  const own = process.env[OWN_OVERRIDE_ENV]
  if (own) {
    const path = resolve(own)
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      binding = require(path) as typeof Binding
    } catch (cause) {
      throw loadError(nativeTarget(), { env: OWN_OVERRIDE_ENV, path }, cause)
    }
    return binding
  }
  const override = overridePath()
  const { platform, arch } = process
  if (!override && platform !== 'linux') {
    throw new NftError(
      'UNSUPPORTED_PLATFORM',
      `UNSUPPORTED_PLATFORM: ${PACKAGE} cannot create an Nft on ${platform}/${arch}: nftables is part of the ` +
        'Linux kernel, so the native addon exists only for Linux (x64 and arm64, glibc and musl). Importing the ' +
        'package, validation and rule compilation (plan) work everywhere; run the code that applies rules on a ' +
        'Linux host, VM or container.',
    )
  }
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    binding = require('../binding.js') as typeof Binding
  } catch (cause) {
    if (!override && !PREBUILT_ARCHES.includes(arch)) {
      // Another CPU: only a locally built addon (next to binding.js, or the override) could have loaded.
      const error = new NftError(
        'UNSUPPORTED_PLATFORM',
        `UNSUPPORTED_PLATFORM: ${PACKAGE} has no prebuilt native addon for linux/${arch} (prebuilt: linux x64 and ` +
          `arm64, glibc and musl). Build it from a clone of the repository with Rust (npm run build:native) and set ` +
          `${OWN_OVERRIDE_ENV} to the path of the ${BINARY}.*.node file it writes.`,
        { detail: errorText(cause) },
      )
      ;(error as { cause?: unknown }).cause = cause
      throw error
    }
    throw loadError(nativeTarget(), override ? { env: OVERRIDE_ENV, path: override } : undefined, cause)
  }
  return binding
}

interface NativeTarget {
  os: string
  arch: string
  libc?: 'gnu' | 'musl'
  /** e.g. `linux-x64-gnu`, the suffix of the platform package and of the `.node` file. */
  triple: string
}

function nativeTarget(): NativeTarget {
  const os = process.platform
  const arch = process.arch
  if (os !== 'linux') return { os, arch, triple: `${os}-${arch}` }
  const libc = isMusl() ? 'musl' : 'gnu'
  return { os, arch, libc, triple: `${os}-${arch}-${libc}` }
}

function isMusl(): boolean {
  // Same signal as the napi-rs loader: a glibc runtime version in the process report means glibc.
  // Only computed for an error message: a process report takes a few milliseconds.
  try {
    const report = process.report as (NodeJS.ProcessReport & { excludeNetwork?: boolean }) | undefined
    if (report) report.excludeNetwork = true
    const header = (report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header
    return !header?.glibcVersionRuntime
  } catch {
    return false
  }
}

/** The override path, made absolute when it was given relative to the current directory. */
function overridePath(): string | undefined {
  const value = process.env[OVERRIDE_ENV]
  if (!value) return undefined
  if (!isAbsolute(value) && /^\.\.?[\\/]/.test(value)) {
    // The generated loader `require`s the value from its own directory; resolve it against the cwd.
    process.env[OVERRIDE_ENV] = resolve(value)
  }
  return process.env[OVERRIDE_ENV]
}

function packageVersion(): string | undefined {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return (require('../package.json') as { version?: string }).version
  } catch {
    return undefined
  }
}

function loadError(
  target: NativeTarget,
  override: { env: string; path: string } | undefined,
  cause: unknown,
): NftError {
  // The package builds no WASI flavour; the loader's WASI fallbacks are noise here.
  const tried = causeMessages(cause).filter((m) => !/wasi/i.test(m))
  // The most telling attempt: one that found a file but could not load it, else the first one.
  const reason = tried.find((m) => !/^Cannot find module/.test(m)) ?? tried[0] ?? firstLine(cause)
  const details = tried.length ? `\nWhat the loader tried:\n${tried.map((m) => `  - ${m}`).join('\n')}` : ''
  const extra = { detail: `${errorText(cause)}${details}` }
  let message: string
  if (override) {
    message =
      `NATIVE_BINDING_UNAVAILABLE: ${override.env} is set to ${override.path}, but the native addon could not be ` +
      `loaded from there (${reason}). Point ${override.env} at an existing ${BINARY}.${target.triple}.node ` +
      `built for this platform, or unset it to use the prebuilt ${PACKAGE}-${target.triple} package.`
  } else {
    const platformPackage = `${PACKAGE}-${target.triple}`
    const version = packageVersion()
    const spec = version ? `${platformPackage}@${version}` : platformPackage
    const installedAt = resolvePackage(platformPackage)
    if (installedAt) {
      message =
        `NATIVE_BINDING_UNAVAILABLE: ${platformPackage} is installed (${installedAt}) but its native addon failed to ` +
        `load: ${reason}. Make sure its version matches ${PACKAGE}${version ? ` ${version}` : ''} and that ` +
        `node_modules was installed on this machine (not copied from another OS or libc); reinstall with ` +
        `\`npm install ${spec}\`.`
    } else {
      message =
        `NATIVE_BINDING_UNAVAILABLE: the native addon for ${target.triple} is missing: ${platformPackage} is not ` +
        `installed. It is an optional dependency that npm installs only on a matching os/cpu/libc, so it is skipped ` +
        `by \`--omit=optional\`/\`--no-optional\`, by a lockfile written on another platform ` +
        `(https://github.com/npm/cli/issues/4828), or when node_modules was copied from another machine. ` +
        `Fix: \`npm install ${spec}\` (or delete node_modules and package-lock.json and run \`npm install\` again), ` +
        `or set ${OWN_OVERRIDE_ENV} to the path of a ${BINARY}.${target.triple}.node file.`
    }
  }
  const error = new NftError('NATIVE_BINDING_UNAVAILABLE', message, extra)
  ;(error as { cause?: unknown }).cause = cause
  return error
}

function resolvePackage(name: string): string | undefined {
  try {
    return require.resolve(`${name}/package.json`).replace(/[\\/]package\.json$/, '')
  } catch {
    return undefined
  }
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e)
}

function firstLine(e: unknown): string {
  return errorText(e).split('\n')[0] ?? ''
}

/** The napi-rs loader chains one error per attempt through `cause`; collect their first lines. */
function causeMessages(e: unknown): string[] {
  const out: string[] = []
  let current = e instanceof Error ? (e as { cause?: unknown }).cause : undefined
  while (current !== undefined && current !== null && out.length < 8) {
    out.push(firstLine(current))
    current = current instanceof Error ? (current as { cause?: unknown }).cause : undefined
  }
  return out.reverse()
}
