import { createHash } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { sha256Hex } from '../../ts/firewall/sha256.js'

describe('sha256Hex', () => {
  it('is the SHA-256 hex digest of the UTF-8 string (names and comments written before keep matching)', () => {
    for (const s of ['', 'vm-1', '[{"match":{"op":"==","left":{"payload":{"protocol":"tcp","field":"dport"}},"right":22}},{"accept":null}]', 'ü→€']) {
      expect(sha256Hex(s)).toBe(createHash('sha256').update(s).digest('hex'))
    }
    expect(sha256Hex('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad')
  })
})
