// The error a call fails with (the test fails when it does not, or with another kind of error).
import { expect } from 'vitest'
import { NftError } from '../../ts/index.js'

/** The NftError `p` rejects with. */
export async function rejection(p: Promise<unknown>): Promise<NftError> {
  try {
    await p
  } catch (e) {
    expect(e).toBeInstanceOf(NftError)
    return e as NftError
  }
  throw new Error('expected the call to fail')
}

/** The error `fn` throws, of class `type` (default NftError). */
export function thrown<E extends Error = NftError>(fn: () => unknown, type: abstract new (...args: never[]) => E = NftError as never): E {
  try {
    fn()
  } catch (e) {
    expect(e).toBeInstanceOf(type)
    return e as E
  }
  throw new Error(`expected a ${type.name}`)
}
