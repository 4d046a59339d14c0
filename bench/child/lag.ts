// Runs in a fresh Node process (so peak RSS is this library's, not the benchmark's): bulk loads through
// the async API while perf_hooks.monitorEventLoopDelay samples the event loop; an idle period of the same
// length is the control (what the machine alone does to the loop); one runSync load shows the contrast.
// The closed-instance variant is runJson's own work on this thread alone: it serialises the document
// and hands it to the native side, which answers CLOSED at once (no libnftables thread competing for
// the CPU), so it tells the call's share of the lag from the machine's.
// Prints one JSON object on stdout. Usage: lag.ts NETNS VMS RULES ROUNDS
import { readFileSync } from 'node:fs'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { Nft } from '../../ts/index.js'
import { batch, deleteTableCmd, fullRulesetCmds } from '../lib/gen.js'
import { median } from '../lib/stats.js'

declare const gc: (() => void) | undefined

const TABLE = 'bench_lag'
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

interface One {
  ms: number
  max: number
  p99: number
  mean: number
}

async function main(): Promise<void> {
  const [netns, vmsArg, rulesArg, roundsArg] = process.argv.slice(2)
  const vms = Number(vmsArg)
  const rules = Number(rulesArg)
  const rounds = Number(roundsArg ?? 3)
  const nft = new Nft({ netns })
  // Peak RSS of this process image: VmHWM (reset at exec). process.resourceUsage().maxRSS is reported too,
  // but on Linux a fork+exec child inherits the parent's high-water mark from the moment of the fork, so
  // it shows the benchmark process's size, not this one's.
  const rss = () => Number(/VmHWM:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? NaN) / 1024
  await nft.run('list ruleset') // warm the context
  const maxRssStartMb = rss()
  // Input generated up front and garbage collected before measuring: the lag measured is the call's, not
  // the benchmark's generator's.
  const b = batch(fullRulesetCmds(TABLE, vms, rules))
  const text = b.text
  const doc = b.json
  ;(b as { argvs?: unknown }).argvs = undefined
  const maxRssBeforeMb = rss()

  const measure = async (f: () => Promise<unknown> | unknown, cleanup: boolean): Promise<One> => {
    if (typeof gc === 'function') gc()
    await sleep(20)
    const h = monitorEventLoopDelay({ resolution: 1 })
    h.enable()
    await sleep(20) // first samples, so a loop blocked right at the start is recorded
    const t0 = process.hrtime.bigint()
    await f()
    const ms = Number(process.hrtime.bigint() - t0) / 1e6
    await sleep(5)
    h.disable()
    if (cleanup) await nft.run(deleteTableCmd(TABLE).text)
    return { ms, max: h.max / 1e6, p99: h.percentile(99) / 1e6, mean: h.mean / 1e6 }
  }

  const OWN = 'async runJson (object), own work only (closed instance)'
  const series: Record<string, One[]> = { 'idle control (no call)': [], 'async run (text)': [], 'async runJson (object)': [], [OWN]: [] }
  // Text first, then JSON, so the peak RSS of each can be read (VmHWM only grows).
  for (let r = 0; r < rounds; r++) series['async run (text)']!.push(await measure(() => nft.run(text), true))
  const maxRssAfterTextMb = rss()
  for (let r = 0; r < rounds; r++) series['async runJson (object)']!.push(await measure(() => nft.runJson(doc as never), true))
  const maxRssAfterJsonMb = rss()
  const closed = new Nft({ netns })
  closed.close()
  const ownWork = () => closed.runJson(doc as never).then(
    () => {
      throw new Error('a closed instance ran a call')
    },
    (e: unknown) => {
      if ((e as { code?: string }).code !== 'CLOSED') throw e
    },
  )
  for (let r = 0; r < rounds; r++) series[OWN]!.push(await measure(ownWork, false))
  const typical = median(series['async run (text)']!.map((x) => x.ms))
  for (let r = 0; r < rounds; r++) series['idle control (no call)']!.push(await measure(() => sleep(typical), false))
  const sync = await measure(() => nft.runSync(text), true)
  const maxRssAfterMb = rss()
  nft.close()
  const variants = Object.entries(series).map(([name, xs]) => ({
    name,
    ms: median(xs.map((x) => x.ms)),
    lagMaxMs: median(xs.map((x) => x.max)),
    lagWorstMs: Math.max(...xs.map((x) => x.max)),
    lagP99Ms: median(xs.map((x) => x.p99)),
    lagMeanMs: median(xs.map((x) => x.mean)),
  }))
  variants.push({ name: 'runSync (text), for contrast', ms: sync.ms, lagMaxMs: sync.max, lagWorstMs: sync.max, lagP99Ms: sync.p99, lagMeanMs: sync.mean })
  process.stdout.write(JSON.stringify({ vms, rules, rounds, variants, maxRssStartMb, maxRssBeforeMb, maxRssAfterTextMb, maxRssAfterJsonMb, maxRssAfterMb, resourceUsageMaxRssMb: process.resourceUsage().maxRSS / 1024 }) + '\n')
}

main().catch((e) => {
  process.stderr.write(String(e instanceof Error ? e.stack : e) + '\n')
  process.exit(1)
})
