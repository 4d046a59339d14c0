// Serializes the facade's read-decide-write sequences per VM chain. One per namespace and table (in its
// Context), shared by every facade instance on it (Infinization's lock was process-wide for the same reason).

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
