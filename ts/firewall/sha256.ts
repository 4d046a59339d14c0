// The SHA-256 hex digest the layout's names and the rules' comments carry. `crypto.hash` (Node 20.12+) is the
// one-shot form, about twice as fast as a Hash object per call; the same digest either way.
import * as crypto from 'node:crypto'

const oneShot: ((algorithm: string, data: string, encoding: 'hex') => string) | undefined = (crypto as { hash?: (a: string, d: string, e: 'hex') => string }).hash

export function sha256Hex(data: string): string {
  return oneShot ? oneShot('sha256', data, 'hex') : crypto.createHash('sha256').update(data).digest('hex')
}
