// Reading a verdict map's elements from libnftables' JSON listing.

/** Elements of a listed verdict map as key (interface name) -> jump/goto target chain. */
export function mapElements(map: Record<string, unknown> | undefined): Map<string, string> {
  const out = new Map<string, string>()
  for (const e of (map?.elem as unknown[] | undefined) ?? []) {
    // An element is `[key, verdict]`, or `{ elem: [key, verdict] }` when it carries options.
    let pair = e
    if (pair && typeof pair === 'object' && !Array.isArray(pair) && 'elem' in pair) pair = (pair as { elem: unknown }).elem
    if (!Array.isArray(pair)) continue
    const [key, verdict] = pair as [unknown, { jump?: { target?: string }; goto?: { target?: string } }]
    const target = verdict?.jump?.target ?? verdict?.goto?.target
    if (typeof key === 'string' && typeof target === 'string') out.set(key, target)
  }
  return out
}
