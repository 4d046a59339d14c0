// Pure helpers of the benchmark harness (bench/lib): statistics, ratios, formatting, generators.
// No timing is asserted anywhere.
import { describe, expect, it } from 'vitest'
import { argvOf, batch, fullRulesetCmds, removeVmCmds, replaceVmCmds, vmNames } from '../../bench/lib/gen.js'
import { fmtMs, fmtRatio, median, pairedRatio, quantile, rotate, summarize } from '../../bench/lib/stats.js'

describe('median / quantile / summarize', () => {
  it('takes the middle value, or the mean of the two middle ones', () => {
    expect(median([3, 1, 2])).toBe(2)
    expect(median([4, 1, 3, 2])).toBe(2.5)
    expect(median([])).toBeNaN()
  })

  it('ignores non-finite samples', () => {
    expect(median([1, Number.NaN, 3, Number.POSITIVE_INFINITY])).toBe(2)
  })

  it('interpolates quantiles', () => {
    expect(quantile([0, 10], 0.5)).toBe(5)
    expect(quantile([1, 2, 3, 4, 5], 0)).toBe(1)
    expect(quantile([1, 2, 3, 4, 5], 1)).toBe(5)
    expect(quantile([1, 2, 3, 4, 5], 0.9)).toBeCloseTo(4.6)
  })

  it('summarizes', () => {
    expect(summarize([5, 1, 3])).toEqual({ n: 3, median: 3, p10: 1.4, p90: 4.6, min: 1, max: 5 })
    expect(summarize([]).n).toBe(0)
  })
})

describe('pairedRatio', () => {
  it('is the median of round-by-round ratios, not the ratio of medians', () => {
    // Round 2 is slow for both paths (machine noise): per-round ratios stay 10, 10, 10.
    expect(pairedRatio([10, 100, 20], [1, 10, 2])).toBe(10)
  })

  it('skips rounds where a side is missing or not positive', () => {
    expect(pairedRatio([10, undefined, 30, 5], [2, 1, 3, 0])).toBe(7.5)
    expect(pairedRatio([], [])).toBeNaN()
  })

  it('is > 1 when the second series is faster', () => {
    expect(pairedRatio([8, 8], [2, 4])).toBeGreaterThan(1)
  })
})

describe('rotate and formatting', () => {
  it('rotates by k, wrapping and accepting negative k', () => {
    expect(rotate([1, 2, 3], 1)).toEqual([2, 3, 1])
    expect(rotate([1, 2, 3], 4)).toEqual([2, 3, 1])
    expect(rotate([1, 2, 3], -1)).toEqual([3, 1, 2])
    expect(rotate([], 3)).toEqual([])
  })

  it('formats milliseconds and ratios', () => {
    expect(fmtMs(0.1234)).toBe('0.123 ms')
    expect(fmtMs(12.34)).toBe('12.3 ms')
    expect(fmtMs(1234)).toBe('1.23 s')
    expect(fmtMs(undefined)).toBe('–')
    expect(fmtRatio(123.4)).toBe('123×')
    expect(fmtRatio(12.34)).toBe('12.3×')
    expect(fmtRatio(0.5)).toBe('0.50×')
    expect(fmtRatio(Number.NaN)).toBe('–')
  })
})

describe('generators: every path runs the same commands', () => {
  it('gives one text line, one JSON command and one argv per command', () => {
    const b = batch(fullRulesetCmds('t', 3, 20))
    expect(b.text.trim().split('\n')).toHaveLength(b.commands)
    expect(b.json.nftables).toHaveLength(b.commands)
    expect(b.argvs).toHaveLength(b.commands)
    for (const [i, line] of b.text.trim().split('\n').entries()) expect(b.argvs[i]!.join(' ')).toBe(line.replace(/\s+/g, ' '))
  })

  it('splits argv on whitespace without a shell (quotes stay literal)', () => {
    expect(argvOf('add element bridge t m { "vnet-1" : jump c }')).toEqual(['add', 'element', 'bridge', 't', 'm', '{', '"vnet-1"', ':', 'jump', 'c', '}'])
  })

  it('replaces a VM with 2 flushes + its rules, removes it with 4 commands', () => {
    const vm = vmNames(7)
    expect(replaceVmCmds('t', vm, 20, 1)).toHaveLength(22)
    expect(removeVmCmds('t', vm)).toHaveLength(4)
    expect(vm.tap.length).toBeLessThanOrEqual(15)
  })

  it('changes the rules between variants', () => {
    const vm = vmNames(1)
    expect(batch(replaceVmCmds('t', vm, 20, 1)).text).not.toBe(batch(replaceVmCmds('t', vm, 20, 2)).text)
  })
})
