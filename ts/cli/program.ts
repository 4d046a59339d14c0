// The `nftables-node` command: operator subcommands over VmFirewall, plus the sandbox demo.
import { readFileSync, writeFileSync } from 'node:fs'
import { Command, CommanderError, Option } from 'commander'
import { NftError } from '../errors.js'
import { FirewallCapabilityError, FirewallError, FirewallValidationError, RestoreValidationError, VmFirewall, planVm, type VmSpec } from '../firewall/index.js'
import { Nft } from '../nft.js'
import { checkSpecConflicts, findTakeovers, refuseTakeovers, takenFrom } from './conflicts.js'
import { EXIT } from './exit-codes.js'
import { printJson, progress, table } from './output.js'
import { registerWatch } from './watch.js'

interface GlobalOptions {
  netns?: string
  table?: string
  conntrack: 'auto' | 'require' | 'off'
  json?: boolean
}

/** Reads a spec file: one VmSpec, an array of them, or `{ "vms": [...] }`. */
export function readSpecs(path: string): VmSpec[] {
  let doc: unknown
  try {
    doc = JSON.parse(readFileSync(path, 'utf8'))
  } catch (e) {
    throw new FirewallValidationError('file', `${path}: ${(e as Error).message}`)
  }
  const list = Array.isArray(doc) ? doc : doc && typeof doc === 'object' && Array.isArray((doc as { vms?: unknown }).vms) ? (doc as { vms: unknown[] }).vms : [doc]
  return list as VmSpec[]
}

function open(opts: GlobalOptions, dryRun = false): { nft: Nft; fw: VmFirewall } {
  const nft = new Nft({ netns: opts.netns, dryRun })
  return { nft, fw: new VmFirewall(nft, { table: opts.table, conntrack: opts.conntrack }) }
}

/** Runs `fn` with a firewall and always closes the context. */
async function withFirewall<T>(opts: GlobalOptions, fn: (fw: VmFirewall) => Promise<T>, dryRun = false): Promise<T> {
  const { nft, fw } = open(opts, dryRun)
  try {
    return await fn(fw)
  } finally {
    nft.close()
  }
}

export function buildProgram(): Command {
  const program = new Command('nftables-node')
    .description('Per-VM nftables bridge firewalls through libnftables (no nft processes).')
    .option('--netns <name>', 'network namespace to work in (name under /var/run/netns, or a path)')
    .option('--table <name>', 'bridge table owned by the firewall', 'infinization')
    .addOption(new Option('--conntrack <mode>', 'stateful filtering').choices(['auto', 'require', 'off']).default('auto'))
    .option('--json', 'machine-readable output')
    .showHelpAfterError()
    .exitOverride()

  const globals = (cmd: Command) => cmd.optsWithGlobals() as GlobalOptions & Record<string, unknown>

  program
    .command('apply')
    .description('create or replace the firewall of the VMs in a spec file (one transaction per VM)')
    .argument('<spec.json>', 'a VmSpec, an array of them, or { "vms": [...] }')
    .option('--dry-run', 'validate everything against the kernel, commit nothing')
    .option('--takeover', 'allow moving a tap that another VM in the kernel dispatches now (that VM is detached)')
    .action(async (file: string, _o: unknown, cmd: Command) => {
      const opts = globals(cmd)
      const specs = readSpecs(file)
      const { results, takeovers } = await withFirewall(
        opts,
        async (fw) => {
          // Validate every VM before the kernel sees anything: a bad spec changes nothing.
          for (const spec of specs) fw.plan(spec)
          // Conflicts within the file, then with the VMs in the kernel: refused before anything is applied.
          checkSpecConflicts(specs)
          const takeovers = findTakeovers(specs, await fw.inventory())
          if (opts.takeover !== true) refuseTakeovers(takeovers)
          await fw.init()
          const bar = progress('applying', specs.length)
          const out = []
          for (const spec of specs) {
            out.push(await fw.applyVm(spec))
            bar.tick()
          }
          bar.done()
          return { results: out, takeovers }
        },
        opts.dryRun === true,
      )
      if (opts.json) {
        return printJson(
          results.map((r) => {
            const taken = takeovers.filter((t) => t.vmId === r.vmId).map(({ tap, fromVmId, fromChains }) => ({ tap, fromVmId, fromChains }))
            return taken.length > 0 ? { ...r, takeover: taken } : r
          }),
        )
      }
      console.log(
        table(
          ['VM', 'TAP', 'RULES', 'APPLIED', 'STATEFUL', 'DEFAULT'],
          results.map((r) => [r.vmId, r.tap, r.totalRules, r.appliedRules, r.stateful ? 'yes' : 'no', r.defaultAction]),
        ),
      )
      for (const t of takeovers) console.log(`takeover: tap ${t.tap} moved from ${takenFrom(t)} (now detached) to VM ${JSON.stringify(t.vmId)}${opts.dryRun ? ' (dry run)' : ''}`)
      for (const r of results) for (const d of r.degradations) console.log(`note: ${r.vmId}${d.ruleId ? ` rule ${d.ruleId}` : ''}: ${d.message}`)
      if (opts.dryRun) console.log('dry run: nothing was committed')
    })

  program
    .command('plan')
    .description('print the nftables commands a spec compiles to, without touching the kernel')
    .argument('<spec.json>')
    .option('--with-conntrack', 'compile for a kernel with bridge conntrack')
    .option('--with-reject', 'compile for a kernel with bridge reject')
    .action((file: string, _o: unknown, cmd: Command) => {
      const opts = globals(cmd)
      const capabilities = { bridgeConntrack: opts.withConntrack === true, bridgeReject: opts.withReject === true }
      // planVm is pure: no context is opened, so it works without root or libnftables.
      const plans = readSpecs(file).map((spec) => planVm(spec, { table: opts.table, conntrack: opts.conntrack, capabilities }))
      if (opts.json) return printJson(plans.map((p) => ({ commands: p.commands, result: p.result })))
      for (const p of plans) {
        console.log(`# VM ${p.result.vmId} (${p.result.tap})`)
        console.log(p.text)
        for (const d of p.result.degradations) console.log(`# note: ${d.message}`)
      }
    })

  program
    .command('status')
    .description('VMs in the kernel with their rule counts, shared-guard elements, counters and the packets each VM dropped')
    .action(async (_o: unknown, cmd: Command) => {
      const opts = globals(cmd)
      const vms = await withFirewall(opts, async (fw) => {
        const inventory = await fw.inventory()
        return Promise.all(inventory.map(async (vm) => ({ ...vm, stats: vm.vmId ? await fw.stats(vm.vmId) : undefined })))
      })
      if (opts.json) return printJson(vms)
      if (vms.length === 0) return console.log(`no VMs in table bridge ${opts.table ?? 'infinization'}`)
      const sum = (s: Record<string, { packets: number }> | undefined) => Object.values(s ?? {}).reduce((n, c) => n + c.packets, 0)
      console.log(
        table(
          ['VM', 'TAPS', 'NFT RULES', 'GUARD ELEMS', 'RULE PKTS', 'DEFAULT PKTS', 'BUILTIN PKTS', 'DROPPED (OUT/IN)'],
          vms.map((vm) => [
            vm.vmId ?? '(unknown)',
            vm.taps.join(',') || '(detached)',
            vm.rules,
            vm.guardElements ?? 0,
            sum(vm.stats?.rules),
            vm.stats?.default.packets ?? 0,
            sum(vm.stats?.builtin),
            vm.stats ? `${vm.stats.dropped.packets} (${vm.stats.dropped.out.packets}/${vm.stats.dropped.in.packets})` : '-',
          ]),
        ),
      )
    })

  registerWatch(program, readSpecs)

  program
    .command('verify')
    .description('compare the kernel with the desired VMs of a spec file; exit 4 on drift')
    .argument('<spec.json>')
    .action(async (file: string, _o: unknown, cmd: Command) => {
      const opts = globals(cmd)
      const specs = readSpecs(file)
      const report = await withFirewall(opts, (fw) => fw.verify(specs))
      if (opts.json) printJson(report)
      else {
        for (const vm of report.vms) {
          console.log(`${vm.status === 'ok' ? 'ok     ' : vm.status.padEnd(7)} ${vm.vmId}`)
          for (const m of vm.missing) console.log(`  missing ${m}`)
          for (const x of vm.extra) console.log(`  extra   ${x}`)
          for (const c of vm.changed) console.log(`  changed ${c}`)
        }
        for (const o of report.orphans) console.log(`orphan  ${o.vmId ?? '(unknown VM)'}: ${o.chains.join(', ')}`)
        for (const t of report.table) console.log(`table   ${t}`)
        console.log(report.ok ? 'no drift' : 'drift found')
      }
      if (!report.ok) process.exitCode = EXIT.DRIFT
    })

  program
    .command('export')
    .description('write an idempotent nft script of the firewall table (for nft -f or restore at boot)')
    .argument('[file]', 'output file (default: stdout)')
    .action(async (file: string | undefined, _o: unknown, cmd: Command) => {
      const text = await withFirewall(globals(cmd), (fw) => fw.exportRuleset())
      if (file) writeFileSync(file, text, { mode: 0o600 })
      else process.stdout.write(text)
    })

  program
    .command('restore')
    .description('apply a file written by export, in one transaction (only an export of the table is accepted; exit 3 otherwise)')
    .argument('<file>')
    .action(async (file: string, _o: unknown, cmd: Command) => {
      const text = readFileSync(file, 'utf8')
      // restoreRuleset checks the file (an export of this table, nothing else) before libnftables sees it.
      await withFirewall(globals(cmd), (fw) => fw.restoreRuleset(text))
      if (!globals(cmd).json) console.log(`restored ${file}`)
    })

  program
    .command('remove')
    .description("delete VMs' chains and dispatch entries (idempotent)")
    .argument('<vmId...>')
    .action(async (vmIds: string[], _o: unknown, cmd: Command) => {
      await withFirewall(globals(cmd), async (fw) => {
        for (const id of vmIds) await fw.removeVm(id)
      })
      if (!globals(cmd).json) console.log(`removed ${vmIds.join(', ')}`)
    })

  program
    .command('demo')
    .description('build a sandbox of namespaces (host + 3 VMs on a bridge), apply an example policy, probe it with real traffic, clean up')
    .option('--keep', 'leave the sandbox in place for inspection (delete later with the printed command)')
    .action(async (_o: unknown, cmd: Command) => {
      const { runDemo } = await import('./demo/run.js')
      process.exitCode = await runDemo({ keep: globals(cmd).keep === true, json: globals(cmd).json === true })
    })

  return program
}

/** Maps an error to a message and an exit code. */
export function explain(e: unknown): { code: number; message: string } {
  if (e instanceof CommanderError) return { code: e.exitCode === 0 ? EXIT.OK : EXIT.USAGE, message: '' }
  if (e instanceof RestoreValidationError) return { code: EXIT.INVALID, message: `refused restore file (nothing changed): ${e.message}` }
  if (e instanceof FirewallValidationError) return { code: EXIT.INVALID, message: `invalid spec: ${e.message}` }
  if (e instanceof FirewallCapabilityError) return { code: EXIT.UNSUPPORTED, message: e.message }
  if (e instanceof NftError) {
    if (e.code === 'EPERM') return { code: EXIT.PERMISSION, message: 'permission denied: run as root (CAP_NET_ADMIN is needed in the target network namespace)' }
    if (e.code === 'NETNS') return { code: EXIT.FAILED, message: `${e.message}${process.getuid?.() !== 0 ? ' (entering a namespace needs root)' : ''}` }
    return { code: EXIT.FAILED, message: `${e.message}\n${e.detail}` }
  }
  if (e instanceof FirewallError) return { code: EXIT.FAILED, message: e.message }
  return { code: EXIT.FAILED, message: (e as Error)?.stack ?? String(e) }
}
