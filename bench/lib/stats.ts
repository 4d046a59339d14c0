// Pure statistics helpers for the benchmark (no I/O, unit-tested in __test__/bench).

/** Median of a list of numbers (mean of the two middle values for an even count); NaN when empty. */
export function median(xs: readonly number[]): number {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b)
  if (v.length === 0) return Number.NaN
  const mid = v.length >> 1
  return v.length % 2 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2
}

/** Linear-interpolated quantile (q in [0, 1]); NaN when empty. */
export function quantile(xs: readonly number[], q: number): number {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b)
  if (v.length === 0) return Number.NaN
  const pos = Math.min(Math.max(q, 0), 1) * (v.length - 1)
  const lo = Math.floor(pos)
  const hi = Math.ceil(pos)
  return v[lo]! + (v[hi]! - v[lo]!) * (pos - lo)
}

export interface Summary {
  n: number
  median: number
  p10: number
  p90: number
  min: number
  max: number
}

export function summarize(xs: readonly number[]): Summary {
  const v = xs.filter((x) => Number.isFinite(x))
  return {
    n: v.length,
    median: median(v),
    p10: quantile(v, 0.1),
    p90: quantile(v, 0.9),
    min: v.length ? Math.min(...v) : Number.NaN,
    max: v.length ? Math.max(...v) : Number.NaN,
  }
}

/**
 * Pairwise ratio of two sample series taken in the same rounds (round i of `slow` against round i of
 * `fast`): the median of slow[i] / fast[i]. Rounds where either side is missing or not positive are skipped.
 * A value > 1 means `fast` is that many times faster than `slow`.
 */
export function pairedRatio(slow: readonly (number | undefined)[], fast: readonly (number | undefined)[]): number {
  const ratios: number[] = []
  const n = Math.min(slow.length, fast.length)
  for (let i = 0; i < n; i++) {
    const s = slow[i]
    const f = fast[i]
    if (s === undefined || f === undefined || !(s > 0) || !(f > 0) || !Number.isFinite(s) || !Number.isFinite(f)) continue
    ratios.push(s / f)
  }
  return median(ratios)
}

/** Rotates a list by `k` places (used to vary which path goes first in each round). */
export function rotate<T>(xs: readonly T[], k: number): T[] {
  if (xs.length === 0) return []
  const s = ((k % xs.length) + xs.length) % xs.length
  return [...xs.slice(s), ...xs.slice(0, s)]
}

/** Formats a duration in milliseconds with 2-3 significant digits ("0.123 ms", "12.3 ms", "1.23 s"). */
export function fmtMs(ms: number | undefined): string {
  if (ms === undefined || !Number.isFinite(ms)) return '–'
  if (ms >= 1000) return `${(ms / 1000).toPrecision(3)} s`
  if (ms >= 100) return `${ms.toFixed(0)} ms`
  if (ms >= 10) return `${ms.toFixed(1)} ms`
  if (ms >= 1) return `${ms.toFixed(2)} ms`
  return `${ms.toFixed(3)} ms`
}

/** Formats a ratio ("12×", "1.4×", "0.62×"); '–' when not finite. */
export function fmtRatio(r: number | undefined): string {
  if (r === undefined || !Number.isFinite(r)) return '–'
  if (r >= 100) return `${r.toFixed(0)}×`
  if (r >= 10) return `${r.toFixed(1)}×`
  return `${r.toFixed(2)}×`
}
