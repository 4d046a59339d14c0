// `nftables-node watch`: live drift of the firewall table and, when the VMs were applied with logDrops, the
// packets their drop paths log. Text lines for people, one JSON object per line with --json.
import type { Command } from 'commander'
import { Option } from 'commander'
import { DEFAULT_LOG_GROUP, VmFirewall, type BlockedStreamEvent, type WatchEvent } from '../firewall/index.js'
import { Nft } from '../nft.js'

interface WatchCliOptions {
  netns?: string
  table?: string
  conntrack: 'auto' | 'require' | 'off'
  json?: boolean
  drops: boolean
  drift: boolean
  group: string
  repair?: string
  duration?: string
}

const time = (d: Date): string => d.toISOString().slice(11, 23)

export function driftLine(e: WatchEvent): string {
  switch (e.type) {
    case 'drift': {
      const who = e.process ? `${e.process}${e.pid ? ` (pid ${e.pid})` : ''}` : 'unknown process'
      const what = [...e.vms.map((v) => `VM ${v}`), ...e.base.map((b) => `base ${b}`)]
      const kinds = [...new Set(e.changes.map((c) => c.change))].join(',')
      return `${time(e.time)} drift  gen ${e.generation} by ${who}: ${e.tableDeleted ? 'TABLE DELETED; ' : ''}${what.join(', ') || e.chains.join(', ') || 'table'} [${kinds}${e.omitted ? ` +${e.omitted} more` : ''}]`
    }
    case 'repaired':
      return `${time(new Date())} repair ${e.result.ok ? 'nothing to do' : `${e.result.table ? 'table rebuilt; ' : ''}VMs ${e.result.vms.join(', ') || '(none)'}`} in ${e.durationMs.toFixed(1)} ms (gen ${e.result.generation ?? '-'})`
    case 'repair-failed':
      return `${time(new Date())} repair FAILED: ${(e.error as Error)?.message ?? String(e.error)}`
    case 'repair-suspended':
      return `${time(new Date())} repair suspended until ${time(e.until)}: ${e.repairs} repairs were undone in a row (another writer?)`
    case 'lost':
      return `${time(e.time)} lost   ${e.count} notifications (overrun): run verify`
    case 'end':
      return `${time(new Date())} end    drift watch: ${e.reason}${e.error ? ` (${e.error.message})` : ''}`
  }
}

export function blockedLine(e: BlockedStreamEvent): string {
  switch (e.type) {
    case 'blocked': {
      const port = (p: number | undefined) => (p !== undefined ? `:${p}` : '')
      const addr = (a: string | undefined, p: number | undefined) => (a ? (a.includes(':') && p !== undefined ? `[${a}]${port(p)}` : `${a}${port(p)}`) : '?')
      const icmp = e.icmpType !== undefined ? ` type ${e.icmpType}/${e.icmpCode ?? 0}` : ''
      return `${time(e.time)} BLOCK  VM ${e.vmId ?? `(chain ${e.chain})`} ${e.direction === 'out' ? 'from VM' : 'to VM  '} rule ${e.rule}: ${e.protocol ?? `ethertype 0x${e.ethertype.toString(16)}`} ${addr(e.src, e.srcPort)} -> ${addr(e.dst, e.dstPort)}${icmp}`
    }
    case 'lost':
      return `${time(e.time)} lost   ${e.count} logged packets (reader too slow)`
    case 'end':
      return `${time(new Date())} end    drop log: ${e.reason}${e.error ? ` (${e.error.message})` : ''}`
  }
}

export function registerWatch(program: Command, readSpecs: (path: string) => import('../firewall/index.js').VmSpec[]): void {
  program
    .command('watch')
    .description('print changes others make to the firewall table as they happen, and packets blocked by logDrops rules')
    .option('--no-drift', 'do not watch the table')
    .option('--no-drops', 'do not read the blocked-traffic log')
    .option('--group <n>', 'nfnetlink_log group of the logDrops rules', String(DEFAULT_LOG_GROUP))
    .option('--repair <spec.json>', 'sync these VMs now, then repair every outside change back to them')
    .addOption(new Option('--duration <seconds>', 'stop after this long (default: until interrupted)'))
    .action(async (_o: unknown, cmd: Command) => {
      const opts = cmd.optsWithGlobals() as WatchCliOptions
      const nft = new Nft({ netns: opts.netns })
      const group = Number(opts.group)
      const fw = new VmFirewall(nft, { table: opts.table, conntrack: opts.conntrack, logDrops: { group } })
      const print = (line: string, event: object): void => {
        process.stdout.write(opts.json ? `${JSON.stringify({ source: line, ...event })}\n` : `${line}\n`)
      }
      const stops: (() => Promise<void>)[] = []
      try {
        if (opts.repair) await fw.sync(readSpecs(opts.repair))
        const ended: Promise<unknown>[] = []
        if (opts.drift) {
          const w = fw.watch({ repair: opts.repair !== undefined })
          w.on('event', (e: WatchEvent) => print(opts.json ? 'drift' : driftLine(e), opts.json ? e : {}))
          stops.push(() => w.stop())
          ended.push(w.ended)
        }
        if (opts.drops) {
          const b = fw.blocked({ group })
          b.on('event', (e: BlockedStreamEvent) => print(opts.json ? 'drops' : blockedLine(e), opts.json ? e : {}))
          stops.push(() => b.stop())
          ended.push(b.ended)
        }
        if (!opts.json) process.stderr.write(`watching table bridge ${fw.table}${opts.netns ? ` in ${opts.netns}` : ''}${opts.repair ? ' (repairing)' : ''}; Ctrl-C to stop\n`)
        let stopTimer: NodeJS.Timeout | undefined
        const stopAll = (): void => {
          clearTimeout(stopTimer)
          for (const s of stops) void s()
        }
        process.once('SIGINT', stopAll)
        process.once('SIGTERM', stopAll)
        if (opts.duration !== undefined) stopTimer = setTimeout(stopAll, Number(opts.duration) * 1000)
        await Promise.all(ended)
        clearTimeout(stopTimer)
        process.off('SIGINT', stopAll)
        process.off('SIGTERM', stopAll)
      } finally {
        await Promise.all(stops.map((s) => s()))
        nft.close()
      }
    })
}
