// Serializes the facade's read-decide-write sequences per VM chain. Shared by every facade instance
// working on the same namespace and table (Infinization's lock was process-wide for the same reason).

export class KeyedMutex {
  readonly #tails = new Map<string, Promise<void>>()

  run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const before = this.#tails.get(key) ?? Promise.resolve()
    const p = before.then(fn)
    const tail = p.then(
      () => undefined,
      () => undefined,
    )
    this.#tails.set(key, tail)
    void tail.then(() => {
      if (this.#tails.get(key) === tail) this.#tails.delete(key)
    })
    return p
  }
}

const locks = new Map<string, KeyedMutex>()

/** The lock for one (namespace, table). */
export function sharedLock(netns: string | undefined, table: string): KeyedMutex {
  const key = `${netns ?? ''}\0${table}`
  let m = locks.get(key)
  if (!m) {
    m = new KeyedMutex()
    locks.set(key, m)
  }
  return m
}
