// The one error class the binding throws. Callers branch on `code`, never on message text.
import type { NativeError } from '../binding.js'

/** Stable error codes. Errno names come from the kernel/libnftables; the rest are the binding's own. */
export type NftErrorCode =
  | 'ENOENT'
  | 'EEXIST'
  | 'EBUSY'
  | 'EPERM'
  | 'EINVAL'
  | 'EOPNOTSUPP'
  | 'EPROTO'
  | 'ENOSPC'
  | 'ENOMEM'
  | 'ENOBUFS'
  | 'EMFILE'
  | 'ENFILE'
  | 'SYNTAX'
  | 'BATCH_REFUSED'
  | 'GENERATION_MOVED'
  | 'LIBNFTABLES_UNAVAILABLE'
  | 'UNSUPPORTED_PLATFORM'
  | 'NATIVE_BINDING_UNAVAILABLE'
  | 'NETNS'
  | 'CLOSED'
  | 'INTERNAL'
  | (string & {})

export class NftError extends Error {
  override readonly name = 'NftError'
  /** Stable code, e.g. `ENOENT`, `SYNTAX`, `LIBNFTABLES_UNAVAILABLE`. */
  readonly code: NftErrorCode
  /** Kernel errno behind the failure, when there is one. */
  readonly errno?: number
  /** Everything libnftables printed: messages, the offending input line, the caret marker. For nft
   *  text this is exactly what `nft -f -` prints for the same input on stderr. */
  readonly detail: string
  /** 1-based line of the failing command (nft text input). */
  readonly line?: number
  /** 1-based column where the marked span starts (nft text input). */
  readonly column?: number
  /** Index of the failing command in the `nftables` array (JSON input). */
  readonly index?: number
  /** The failing command: the input line (text) or the JSON command object (JSON). */
  readonly command?: unknown

  constructor(code: NftErrorCode, message: string, extra: Partial<Pick<NftError, 'errno' | 'detail' | 'line' | 'column' | 'index' | 'command'>> = {}) {
    super(message)
    this.code = code
    this.detail = extra.detail ?? message
    if (extra.errno !== undefined) this.errno = extra.errno
    if (extra.line !== undefined) this.line = extra.line
    if (extra.column !== undefined) this.column = extra.column
    if (extra.index !== undefined) this.index = extra.index
    if (extra.command !== undefined) this.command = extra.command
  }

  /** Builds the error from the native layer's report; `commands` locates the failing command. */
  static fromNative(native: NativeError, input?: { text?: string; commands?: unknown[] }): NftError {
    const command =
      native.line !== undefined && input?.text !== undefined
        ? input.text.split('\n')[native.line - 1]
        : native.index !== undefined
          ? input?.commands?.[native.index]
          : undefined
    const where =
      native.line !== undefined ? ` (line ${native.line})` : native.index !== undefined ? ` (command ${native.index})` : ''
    return new NftError(native.code, `${native.code}: ${native.message}${where}`, {
      errno: native.errno ?? undefined,
      detail: native.detail,
      line: native.line ?? undefined,
      column: native.column ?? undefined,
      index: native.index ?? undefined,
      command,
    })
  }
}

export function isNftError(e: unknown, code?: NftErrorCode): e is NftError {
  return e instanceof NftError && (code === undefined || e.code === code)
}
