// Serialization: calls for one VM run one at a time, different VMs run independently, table-wide
// operations (init, sync, verify, export, restore) run alone.

const settle = (p: Promise<unknown>): Promise<void> => p.then(
  () => undefined,
  () => undefined,
)

export class Scheduler {
  #exclusive: Promise<void> = Promise.resolve()
  readonly #perVm = new Map<string, Promise<void>>()
  readonly #inflight = new Set<Promise<void>>()

  /** Runs `fn` after earlier calls for the same VM and after any table-wide operation queued before it. */
  vm<T>(vmId: string, fn: () => Promise<T>): Promise<T> {
    const before = [this.#perVm.get(vmId) ?? Promise.resolve(), this.#exclusive]
    const p = Promise.all(before).then(fn)
    const done = settle(p)
    this.#perVm.set(vmId, done)
    this.#inflight.add(done)
    void done.then(() => {
      this.#inflight.delete(done)
      if (this.#perVm.get(vmId) === done) this.#perVm.delete(vmId)
    })
    return p
  }

  /** Runs `fn` once everything queued before it finished; later calls wait for it. */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const before = [this.#exclusive, ...this.#inflight]
    const p = Promise.all(before).then(fn)
    this.#exclusive = settle(p)
    return p
  }
}
