// Missing kernel features (this kernel has neither bridge conntrack nor bridge reject): the documented
// policy holds and is reported in results. 'auto' degrades to the stateless policy and says so; 'require'
// fails with a typed error and applies nothing; REJECT is reported as dropped; never a crash or a
// half-applied VM.
import { expect, it } from 'vitest'
import { Nft, NftError } from '../../ts/index.js'
import { FirewallCapabilityError, VmFirewall, type FirewallRuleInput, type VmApplyResult, type VmSpec } from '../../ts/firewall/index.js'
import { createNetns, type Netns } from '../support/netns.js'
import { useNetnsNft } from '../support/netns-nft.js'
import { prng, report, size } from '../support/stress.js'
import { kernelFwState, randomSpec, structuralProblems } from '../support/stress-fw.js'

let ns: Netns
let nft: Nft
useNetnsNft((n, f) => {
  ns = n
  nft = f
})

const table = () => {
  try {
    return ns.exec('nft', ['list', 'table', 'bridge', 'infinization'])
  } catch {
    return ''
  }
}

/** What the result must say about `spec` on a kernel without bridge conntrack and bridge reject. */
function checkDegradations(spec: VmSpec, res: VmApplyResult, mode: 'auto' | 'off'): void {
  expect(res.stateful).toBe(false)
  const kinds = res.degradations.map((d) => d.kind)
  expect(kinds.filter((k) => k === 'stateless')).toHaveLength(mode === 'auto' ? 1 : 0)
  const rules = [...(spec.rules ?? []), ...(spec.departmentRules ?? [])]
  for (const r of res.rules) {
    if (r.reason === 'overridden') continue
    const input = rules.find((x) => x.id === r.id)!
    const cs = input.connectionState
    const only = cs && !cs.new && (cs.established || cs.related || cs.invalid)
    if (only) {
      expect(r.applied).toBe(false)
      expect(r.reason).toBe('skipped')
      expect(res.degradations).toContainEqual(expect.objectContaining({ kind: 'rule-skipped', ruleId: r.id }))
      continue
    }
    expect(r.applied).toBe(true)
    if (cs?.new && !(cs.established && cs.related && cs.invalid)) {
      expect(res.degradations).toContainEqual(expect.objectContaining({ kind: 'connection-state-ignored', ruleId: r.id }))
    }
    const dir = input.direction ?? 'INOUT'
    const sides = dir === 'IN' ? ['in'] : dir === 'OUT' ? ['out'] : ['out', 'in']
    expect(Object.keys(r.effective).sort()).toEqual([...sides].sort())
    if ((input.action ?? 'ACCEPT') === 'REJECT') {
      expect(r.requestedAction).toBe('REJECT')
      for (const side of sides) expect(r.effective[side as 'in' | 'out']).toBe('drop')
      expect(res.degradations.filter((d) => d.kind === 'reject-to-drop' && d.ruleId === r.id)).toHaveLength(sides.length)
    }
  }
}

const rule = (id: string, r: Partial<FirewallRuleInput>): FirewallRuleInput => ({ id, name: id, ...r })
const showcase: VmSpec = {
  vmId: 'vm-show',
  tap: 'tapshow',
  mac: '52:54:00:aa:00:01',
  ipv4: ['10.6.0.2'],
  rules: [
    rule('rej-in', { action: 'REJECT', direction: 'IN', protocol: 'tcp', dstPortStart: 25 }),
    rule('rej-out', { action: 'REJECT', direction: 'OUT', protocol: 'udp', dstPortStart: 53 }),
    rule('rej-both', { action: 'REJECT', protocol: 'icmp' }),
    rule('est-only', { connectionState: { established: true, related: true } }),
    rule('new-est', { protocol: 'tcp', dstPortStart: 22, direction: 'IN', connectionState: { new: true, established: true } }),
    rule('plain', { protocol: 'tcp', dstPortStart: 80, direction: 'IN' }),
  ],
}

it("'auto': stateless policy and REJECT->drop reported, nothing stateful or reject in the kernel, chains complete", { timeout: size(90_000, 1_800_000) }, async () => {
  const fw = new VmFirewall(nft, { conntrack: 'auto' })
  expect(await fw.capabilities()).toEqual({ bridgeConntrack: false, bridgeReject: false })
  const res = await fw.applyVm(showcase)
  checkDegradations(showcase, res, 'auto')
  expect(res.degradations.map((d) => d.kind).sort()).toEqual(
    ['stateless', 'reject-to-drop', 'reject-to-drop', 'reject-to-drop', 'reject-to-drop', 'rule-skipped', 'connection-state-ignored'].sort(),
  )
  const listing = table()
  expect(listing).not.toMatch(/\bct\b|reject/)
  expect(structuralProblems(kernelFwState(ns))).toEqual([])
  expect((await fw.verify()).ok).toBe(true)

  // Random specs (REJECT and connection states everywhere), through applyVm and sync, in both modes.
  const rand = prng(Number(process.env.STRESS_SEED ?? 20261123))
  const rounds = size(30, 300)
  let degradations = 0
  for (let n = 0; n < rounds; n++) {
    const mode = n % 3 === 2 ? 'off' : 'auto'
    const f = new VmFirewall(nft, { conntrack: mode, capabilities: { bridgeConntrack: false, bridgeReject: false } })
    const specs = Array.from({ length: 1 + Math.floor(rand() * 3) }, (_, i) => randomSpec(rand, i, n))
    for (const s of specs) for (const r of s.rules ?? []) if (rand() < 0.3) r.connectionState = { established: rand() < 0.7, new: rand() < 0.5, related: rand() < 0.5 }
    if (n % 2 === 0) {
      const r = await f.sync(specs)
      for (const s of specs) checkDegradations(s, r.results[s.vmId]!, mode), (degradations += r.results[s.vmId]!.degradations.length)
    } else {
      for (const s of specs) {
        const r = await f.applyVm(s)
        checkDegradations(s, r, mode)
        degradations += r.degradations.length
      }
    }
    const state = kernelFwState(ns)
    expect(structuralProblems(state)).toEqual([])
    expect(table()).not.toMatch(/\bct\b|reject/)
    // A fresh instance knows only what it applied; VMs left by earlier rounds are its orphans.
    const v = await f.verify()
    expect(v.table).toEqual([])
    expect(v.vms.filter((d) => d.status !== 'ok')).toEqual([])
  }
  report('firewall/missing features (auto/off)', `${rounds + 1} applies/syncs with REJECT and connection states on a kernel without bridge conntrack/reject: ${degradations + res.degradations.length} degradations reported as documented, no ct/reject reached the kernel, every VM complete`)
})

it("'require': typed CONNTRACK_UNAVAILABLE error and nothing applied, with or without an existing table", async () => {
  const fresh = createNetns()
  const nft2 = new Nft({ netns: fresh.name })
  try {
    let n = 0
    for (const [space, nftx] of [
      [fresh, nft2],
      [ns, nft],
    ] as const) {
      const fw = new VmFirewall(nftx, { conntrack: 'require' })
      const before = space.ruleset()
      for (const op of [() => fw.applyVm(showcase), () => fw.sync([showcase]), () => fw.sync([{ vmId: 'vm-x', tap: 'tapx' }])]) {
        const e = await op().then(
          () => undefined,
          (err: unknown) => err,
        )
        expect(e).toBeInstanceOf(FirewallCapabilityError)
        expect((e as FirewallCapabilityError).code).toBe('CONNTRACK_UNAVAILABLE')
        expect(space.ruleset()).toBe(before)
        n++
      }
    }
    report('firewall/missing features (require)', `${n} applyVm/sync calls with conntrack 'require': FirewallCapabilityError CONNTRACK_UNAVAILABLE, ruleset byte-identical (empty namespace and existing table)`)
  } finally {
    nft2.close()
    fresh.delete()
  }
})

it('capabilities claimed but absent: the kernel refuses, typed NftError, no half-applied VM', async () => {
  const before = ns.ruleset()
  for (const caps of [
    { bridgeConntrack: true, bridgeReject: false },
    { bridgeConntrack: false, bridgeReject: true },
  ]) {
    const fw = new VmFirewall(nft, { capabilities: caps })
    const e = await fw.applyVm(showcase).then(
      () => undefined,
      (err: unknown) => err,
    )
    expect(e).toBeInstanceOf(NftError)
    expect(['EPROTO', 'ENOENT', 'EOPNOTSUPP']).toContain((e as NftError).code)
    expect(ns.ruleset()).toBe(before)
  }
})
