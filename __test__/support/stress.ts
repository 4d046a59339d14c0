// Sizes for the reliability suite: quick in `npm test`, full with `npm run test:stress` (STRESS=full).
export const fullStress = process.env.STRESS === 'full'

export function size(quick: number, full: number): number {
  return fullStress ? full : quick
}

/** Prints a figure the way the README's reliability table quotes it. */
export function report(name: string, figure: string): void {
  console.log(`[stress] ${name}: ${figure}`)
}

/** Small deterministic PRNG so a failing run can be replayed with the same seed. */
export function prng(seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (s + 0x6d2b79f5) >>> 0
    let t = s
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
