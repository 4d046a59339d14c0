// Interned compiled rules (rule-identity.ts): shared and frozen, compared by identity. No kernel.
import { describe, expect, it } from 'vitest'
import { compileVm } from '../../ts/firewall/compile.js'
import { normalizeVm, parseComment, type VmSpec } from '../../ts/firewall/index.js'
import { resolveLogDrops } from '../../ts/firewall/log-drops.js'
import { bodyHash, FrozenListMemo, internRule, rulesFingerprint } from '../../ts/firewall/rule-identity.js'
import { ruleKey } from '../../ts/firewall/rendering.js'
import { vmApplyCommands } from '../../ts/firewall/layout.js'
import { encodeBatch } from '../../ts/firewall/netlink-batch.js'
import { batchText } from '../../ts/firewall/render.js'

const CAPS = { capabilities: { bridgeConntrack: false, bridgeReject: false }, conntrack: 'auto' as const }
const spec = (vmId: string, port: number): VmSpec => ({
  vmId,
  tap: `tap-${vmId}`,
  defaultAction: 'drop',
  rules: [{ id: 'web', name: 'web', priority: 100, action: 'ACCEPT', direction: 'IN', protocol: 'tcp', dstPortStart: port }],
})
const compile = (s: VmSpec, logDrops = resolveLogDrops(true)) => compileVm(normalizeVm(s), { ...CAPS, logDrops })

describe('interned rules', () => {
  it('two VMs with the same rule share one frozen object; a different rule is another', () => {
    const a = compile(spec('a', 80))
    const b = compile(spec('b', 80))
    const c = compile(spec('c', 443))
    const web = (x: typeof a) => x.in.find((r) => parseComment(r.comment)?.tag === 'web')!
    expect(web(a)).toBe(web(b))
    expect(web(c)).not.toBe(web(a))
    expect(Object.isFrozen(web(a)) && Object.isFrozen(web(a).expr) && Object.isFrozen(web(a).expr[0])).toBe(true)
    expect(() => (web(a).expr as unknown[]).push({ drop: null })).toThrow(TypeError)
    // The log rules of drop paths (log-drops.ts) are interned too.
    const logA = a.in.filter((r) => r.comment.startsWith('l:'))
    expect(logA.length).toBeGreaterThan(0)
  })

  it('fingerprints are equal exactly for the same rules in the same order', () => {
    const a = compile(spec('a', 80))
    const a2 = compile(spec('a', 80))
    const other = compile(spec('a', 81))
    expect(rulesFingerprint(a.out, a.in)).toBe(rulesFingerprint(a2.out, a2.in))
    expect(rulesFingerprint(a.out, a.in)).not.toBe(rulesFingerprint(other.out, other.in))
    expect(rulesFingerprint(a.in, a.out)).not.toBe(rulesFingerprint(a.out, a.in))
    expect(rulesFingerprint([...a.in].reverse())).not.toBe(rulesFingerprint(a.in))
    // Rules from elsewhere (not interned) compare by their JSON.
    expect(rulesFingerprint([{ comment: 'x', expr: [] }])).toBe(rulesFingerprint([{ comment: 'x', expr: [] }]))
  })

  it('the comment carries the hash of the body, the same as before interning', () => {
    const r = internRule('r', 'id1', [{ accept: null }], (comment) => ({ comment, expr: [{ accept: null }] }))
    expect(r.comment).toBe(`r:${bodyHash(JSON.stringify([{ accept: null }]))}:id1`)
    // sha256 of the body's JSON, its first 8 hex digits: what every table written so far carries.
    expect(bodyHash('[{"accept":null}]')).toBe('b118f6fd')
  })

  it('shared rules are written once as text and as netlink, and byte for byte as unshared copies are', () => {
    const vms = ['a', 'b', 'c'].map((id) => compile(spec(id, 80)))
    const commands = vms.flatMap((c) => vmApplyCommands('t', c, [], true, false))
    // Copies are not frozen: neither writer keeps anything of them.
    const copies = structuredClone(commands)
    for (let round = 0; round < 2; round++) {
      expect(encodeBatch('t', commands)!.equals(encodeBatch('t', copies)!)).toBe(true)
      expect(batchText(commands)).toBe(batchText(copies))
    }
  })
  it('values derived from a list are kept for frozen lists only (a mutable list is derived again)', () => {
    const memo = new FrozenListMemo<string>()
    const frozen = Object.freeze([{ accept: null }])
    const mutable: unknown[] = [{ accept: null }]
    expect(memo.keep(frozen, 'a')).toBe('a')
    expect(memo.keep(mutable, 'b')).toBe('b')
    expect(memo.get(frozen)).toBe('a')
    expect(memo.get(mutable)).toBeUndefined()
    // The drift key of a listed (mutable) rule follows its changes.
    expect(ruleKey(mutable)).toBe('[{"accept":null}]')
    mutable[0] = { drop: null }
    expect(ruleKey(mutable)).toBe('[{"drop":null}]')
    expect(ruleKey(Object.freeze([{ counter: { packets: 3, bytes: 9 } }]))).toBe('[{"counter":null}]')
  })
})
