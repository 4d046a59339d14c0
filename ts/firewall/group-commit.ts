// Group commit: writes that arrive while a transaction is in flight wait for it and then go out together, as
// one transaction (one libnftables cache refresh, one kernel commit and validation of the table). A failed
// group is split, so each caller still gets exactly its own result or error, and nothing partial.

export interface GroupItem<V> {
  /** What the item touches that another item of the same group must not (e.g. interface names). */
  keys: readonly string[]
  /** Its commands against the current view. */
  build: (view: V) => unknown[]
  /** Whether what the item was decided from still holds in this attempt's view (undefined: always). An item for
   *  which it does not is taken out of the group, unsent, and rejected with {@link StaleDecision}. */
  valid?: (view: V) => boolean
}

/** An item's decision was made from a view that no longer holds: decide again and resubmit (never a caller's
 *  error: the engine's last attempt submits without `valid`). */
export class StaleDecision extends Error {
  constructor() {
    super('decided from a view that no longer holds')
    this.name = 'StaleDecision'
  }
}

interface Pending<V> {
  item: GroupItem<V>
  resolve: () => void
  reject: (e: unknown) => void
}

export class GroupCommit<V> {
  readonly #queue: Pending<V>[] = []
  #running = false

  /**
   * @param view reads the current view before each attempt (numbered from 1)
   * @param commit commits one group's commands built from `view` in that attempt; throws the kernel's error
   * @param retryable an error that means "the view was stale": rebuild from a fresh view and try again
   * @param attempts how many times a group is built and sent before it is split
   */
  constructor(
    private readonly view: (attempt: number) => V | Promise<V>,
    private readonly commit: (commands: unknown[], view: V, attempt: number) => Promise<void>,
    private readonly retryable: (e: unknown) => boolean,
    private readonly attempts: number,
  ) {}

  submit(item: GroupItem<V>): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({ item, resolve, reject })
      if (!this.#running) void this.#drain()
    })
  }

  async #drain(): Promise<void> {
    this.#running = true
    try {
      while (this.#queue.length > 0) {
        // Take everything queued whose keys do not collide with an earlier item of the group; the rest waits.
        const group: Pending<V>[] = []
        const taken = new Set<string>()
        for (let i = 0; i < this.#queue.length; ) {
          const p = this.#queue[i]!
          if (p.item.keys.some((k) => taken.has(k))) {
            i++
            continue
          }
          for (const k of p.item.keys) taken.add(k)
          group.push(p)
          this.#queue.splice(i, 1)
        }
        await this.#run(group)
      }
    } finally {
      this.#running = false
    }
  }

  async #run(all: Pending<V>[]): Promise<void> {
    let group = all
    for (let attempt = 1; ; attempt++) {
      try {
        const view = await this.view(attempt)
        const stale = group.filter((p) => p.item.valid?.(view) === false)
        if (stale.length > 0) {
          for (const p of stale) p.reject(new StaleDecision())
          group = group.filter((p) => !stale.includes(p))
          if (group.length === 0) return
        }
        await this.commit(
          group.flatMap((p) => p.item.build(view)),
          view,
          attempt,
        )
        for (const p of group) p.resolve()
        return
      } catch (e) {
        if (attempt < this.attempts && this.retryable(e)) continue
        if (group.length === 1) return group[0]!.reject(e)
        // Split: each item alone, so the failing one gets the error and the others their own outcome.
        for (const p of group) await this.#run([p])
        return
      }
    }
  }
}
