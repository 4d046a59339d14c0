// One configuration per process and table (Infinization's static mode, probe and lock): Infinization
// passes `bridgeConntrackMode` to one `new NftablesService({...})`; VMLifecycle, HealthMonitor and
// EventHandler build bare `new NftablesService()` instances. In-process checks in a throwaway
// namespace, then Infinization's lifecycle run by child processes whose facades are literally bare
// (inside the world's host namespace, the environment variable unset), checked with real packets.
import { spawnSync } from 'node:child_process'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { CONNTRACK_MODE_ENV, NftablesService, generateVMChainName, type FirewallRuleInput } from '../../ts/compat/index.js'
import { contextOf } from '../../ts/compat/engine.js'
import { repoRoot } from '../support/child.js'
import { createNetns, type Netns } from '../support/netns.js'
import { buildWorld, type Vm, type World } from '../support/world.js'
import { GUARD_CHAINS } from '../../ts/firewall/layout.js'

const savedEnv = process.env[CONNTRACK_MODE_ENV]
beforeAll(() => {
  delete process.env[CONNTRACK_MODE_ENV]
})
afterAll(() => {
  if (savedEnv !== undefined) process.env[CONNTRACK_MODE_ENV] = savedEnv
})

describe('in process', () => {
  let ns: Netns
  const open: NftablesService[] = []
  const svc = (c: ConstructorParameters<typeof NftablesService>[0] = {}) => {
    const s = new NftablesService({ netns: ns.name, ...c })
    open.push(s)
    return s
  }
  beforeAll(() => {
    ns = createNetns('cshr')
  })
  afterEach(() => {
    for (const s of open.splice(0)) s.close()
  })
  afterAll(() => ns?.delete())

  it('bare instances, created before or after the configured one, get its mode and share one engine', async () => {
    const before = svc() // HealthMonitor is built before Infinization's own instance
    expect(before.bridgeConntrackMode).toBe('fail') // nothing fixed yet: the environment's default
    const main = svc({ bridgeConntrackMode: 'degrade' })
    const after = [svc(), svc(), svc()] // VMLifecycle, EventHandler, ...
    for (const s of [before, ...after]) expect(s.bridgeConntrackMode).toBe('degrade')
    await main.initialize()
    // One Nft, one VmFirewall (hence one scheduler) for the table.
    for (const s of [before, ...after]) {
      expect(s.firewall).toBe(main.firewall)
      expect(s.nft).toBe(main.nft)
    }
    expect(contextOf(ns.name, 'infinization')?.sharedEngine?.reader).toBe(main.firewall)
    // A bare instance applies statelessly on this kernel instead of throwing CONNTRACK_UNAVAILABLE.
    const res = await after[0]!.applyRules('vm-1', 'vnet-1', [], [{ id: 'ssh', name: 'ssh', protocol: 'tcp', dstPortStart: 22, direction: 'IN' }])
    expect(res.applied).toBe(true)
    if (!(await main.capabilities()).bridgeConntrack) expect(res.details!.stateful).toBe(false)
    await before.removeVMChain('vm-1')
  })

  it('a second instance asking for a different value is refused with CONFIG_CONFLICT and changes nothing', async () => {
    const main = svc({ bridgeConntrackMode: 'degrade', dhcp: true })
    const refs = contextOf(ns.name, 'infinization')!.refs
    expect(() => svc({ bridgeConntrackMode: 'fail' })).toThrow(expect.objectContaining({ name: 'NftablesError', code: 'CONFIG_CONFLICT', context: expect.objectContaining({ field: 'bridgeConntrackMode' }) }))
    // All or nothing: a conflict on one option does not fix the other options it carried.
    expect(() => svc({ enablePersistence: true, persistencePath: '/nonexistent/x.nft', dhcp: false })).toThrow(expect.objectContaining({ code: 'CONFIG_CONFLICT' }))
    expect(main.persistencePath).toBeUndefined()
    expect(contextOf(ns.name, 'infinization')!.refs).toBe(refs)
    expect(main.bridgeConntrackMode).toBe('degrade')
    // The same value, or leaving it out, is fine.
    expect(svc({ bridgeConntrackMode: 'degrade' }).bridgeConntrackMode).toBe('degrade')
    expect(() => svc({ bridgeConntrackMode: 'off' as 'fail' })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }))
    // Another table has its own configuration.
    expect(svc({ table: 'other', bridgeConntrackMode: 'fail' }).bridgeConntrackMode).toBe('fail')
  })

  it('the configuration lives while one instance is open; the last close forgets it and closes the engine', async () => {
    const main = svc({ bridgeConntrackMode: 'degrade' })
    const bare = svc()
    const nft = bare.nft
    main.close()
    expect(bare.bridgeConntrackMode).toBe('degrade')
    expect(nft.closed).toBe(false)
    bare.close()
    expect(nft.closed).toBe(true)
    expect(contextOf(ns.name, 'infinization')).toBeUndefined()
    const next = svc()
    expect(next.bridgeConntrackMode).toBe('fail')
    const caps = await next.capabilities()
    if (!caps.bridgeConntrack) await expect(next.applyRules('vm-1', 'vnet-1', [], [])).rejects.toMatchObject({ code: 'CONNTRACK_UNAVAILABLE' })
  })
})

// ---- Infinization's lifecycle, bare facades in child processes ----

// Runs in the world's host namespace: the facades' "own" namespace. `configured` builds Infinization's
// instance (with the mode) between the bare ones, as Infinization.ts does after HealthMonitor.
/** One child's limit; the lifecycle test's is six of them (it starts six). */
const CHILD_LIMIT_MS = 90_000
const CHILD = `
const { NftablesService } = require(${JSON.stringify(`${repoRoot}/ts/compat/index.ts`)})
const [step, vmId, tap, rulesJson, action, configured] = process.argv.slice(1)
;(async () => {
  const healthMonitor = new NftablesService()
  let main
  if (configured === 'yes') {
    main = new NftablesService({ bridgeConntrackMode: 'degrade' })
    await main.initialize()
  }
  const vmLifecycle = new NftablesService()
  const eventHandler = new NftablesService()
  const rules = JSON.parse(rulesJson)
  const out = { modes: [healthMonitor, vmLifecycle, eventHandler].map((s) => s.bridgeConntrackMode) }
  out.oneEngine = vmLifecycle.firewall === healthMonitor.firewall && eventHandler.firewall === vmLifecycle.firewall
  try {
    if (step === 'create') {
      await vmLifecycle.createVMChain(vmId, tap)
      out.result = await vmLifecycle.applyRules(vmId, tap, [], rules, action)
    } else if (step === 'stop') {
      await eventHandler.detachJumpRules(vmId)
    } else if (step === 'start') {
      await vmLifecycle.ensureVMChain(vmId)
      await vmLifecycle.attachJumpRules(vmId, tap)
      out.result = await vmLifecycle.applyRulesIfChanged(vmId, tap, [], rules, action)
    } else if (step === 'destroy') {
      await vmLifecycle.removeVMChain(vmId)
      out.chains = await healthMonitor.listChains()
    }
  } catch (e) {
    out.error = { code: e.code, message: e.message }
  }
  console.log(JSON.stringify(out))
})().catch((e) => { console.error(e); process.exit(1) })
`

interface ChildOut {
  modes: string[]
  oneEngine: boolean
  result?: { applied?: boolean; changed?: boolean; appliedRules?: number }
  chains?: string[]
  error?: { code: string; message: string }
}

describe('Infinization lifecycle with bare facades (child processes, real packets)', () => {
  let w: World
  let A: Vm, B: Vm
  beforeAll(async () => {
    w = await buildWorld({ vms: 2, subnet: 71 })
    ;[A, B] = w.vms as [Vm, Vm]
  })
  afterAll(async () => {
    await w?.destroy()
  })

  // Each child is a node process compiling the facade's sources with tsx: ~1 s here, 10-30 s under TCG (the
  // distro-kernel guest), where six of them outlasted the default 60 s test limit.
  const child = (step: string, vm: Vm, rules: FirewallRuleInput[], action: 'accept' | 'drop', configured = true): ChildOut => {
    const env = { ...process.env }
    delete env[CONNTRACK_MODE_ENV]
    const r = spawnSync(
      'ip',
      ['netns', 'exec', w.host.ns.name, process.execPath, '--import', 'tsx', '-e', CHILD, step, vm.vmId, vm.tap, JSON.stringify(rules), action, configured ? 'yes' : 'no'],
      { encoding: 'utf8', cwd: repoRoot, env, timeout: CHILD_LIMIT_MS },
    )
    if (r.status !== 0) throw new Error(`child ${step} failed (${r.status}): ${r.stderr}`)
    return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as ChildOut
  }
  const passes = async (probe: () => Promise<boolean>): Promise<boolean> => (await probe()) || (await probe())
  const web: FirewallRuleInput[] = [{ id: 'web', name: 'web in', action: 'ACCEPT', direction: 'IN', protocol: 'tcp', dstPortStart: 80, priority: 100 }]

  it('create -> start -> stop -> start -> destroy with the mode given only to Infinization\'s instance', async () => {
    const probe = new NftablesService({ nft: w.nft, table: 'probe' })
    const caps = await probe.capabilities()
    probe.close()
    if (!caps.bridgeConntrack) {
      // Control: without the configured instance, bare facades fall back to 'fail' and VM create throws.
      const bare = child('create', A, web, 'drop', false)
      expect(bare.modes).toEqual(['fail', 'fail', 'fail'])
      expect(bare.error?.code).toBe('CONNTRACK_UNAVAILABLE')
    }

    const created = child('create', A, web, 'drop')
    expect(created.error).toBeUndefined()
    expect(created.modes).toEqual(['degrade', 'degrade', 'degrade'])
    expect(created.oneEngine).toBe(true)
    expect(created.result).toMatchObject({ applied: true, appliedRules: 1 })
    expect(child('create', B, [], 'accept').error).toBeUndefined()
    expect(await passes(() => w.tcp(B, A.ipv4, 80))).toBe(true)
    expect(await w.tcp(B, A.ipv4, 22)).toBe(false)

    // First start right after create: nothing to rewrite.
    const first = child('start', A, web, 'drop')
    expect(first.error).toBeUndefined()
    expect(first.result).toEqual({ changed: false })
    expect(await w.tcp(B, A.ipv4, 22)).toBe(false)

    expect(child('stop', A, web, 'drop').error).toBeUndefined()
    expect(await passes(() => w.tcp(B, A.ipv4, 22))).toBe(true) // detached (the veth stays: unfiltered)

    const started = child('start', A, web, 'drop')
    expect(started.error).toBeUndefined()
    expect(started.result).toEqual({ changed: false })
    expect(await w.tcp(B, A.ipv4, 22)).toBe(false)
    expect(await passes(() => w.tcp(B, A.ipv4, 80))).toBe(true)

    const destroyed = child('destroy', A, [], 'drop')
    expect(destroyed.error).toBeUndefined()
    expect(destroyed.chains).toEqual([...GUARD_CHAINS, 'prerouting', 'postrouting', generateVMChainName(B.vmId)])
    expect(await passes(() => w.tcp(B, A.ipv4, 22))).toBe(true)
  }, 6 * CHILD_LIMIT_MS)
})
