// Loads the compiled addon on first use, so the pure TypeScript parts (validation, rule
// compilation, `plan`) import fine on machines without the native part.
import type * as Binding from '../index.js'

let binding: typeof Binding | undefined

export function loadNative(): typeof Binding {
  if (binding) return binding
  if (process.platform !== 'linux') {
    throw new Error(
      `@infinibay/nftables-node: nftables exists only on Linux (this is ${process.platform}/${process.arch}). ` +
        'The rule compiler (VmFirewall.plan, validation) works everywhere; applying rules needs a Linux host.',
    )
  }
  // The napi-rs loader picks the platform package (or NAPI_RS_NATIVE_LIBRARY_PATH) and explains
  // what it tried when nothing fits.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  binding = require('../index.js') as typeof Binding
  return binding
}
