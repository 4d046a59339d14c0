// Ruleset generators: every command exists as nft text, as libnftables JSON, and as an argv array
// (for the spawn-per-command path), so every path runs exactly the same commands.
import { sha256Hex } from '../../ts/firewall/sha256.js'

export const FAMILY = 'bridge'

export interface Cmd {
  /** One nft command in text syntax (no newline). Quoted strings never contain spaces, so `argv` is a split. */
  text: string
  /** The same command as one element of a libnftables JSON `nftables` array. */
  json: Record<string, unknown>
}

/** A batch of commands: text script, JSON document and per-command argv arrays. */
export interface Batch {
  text: string
  json: { nftables: Record<string, unknown>[] }
  argvs: string[][]
  commands: number
}

export function batch(cmds: readonly Cmd[]): Batch {
  return {
    text: cmds.map((c) => c.text).join('\n') + '\n',
    json: { nftables: cmds.map((c) => c.json) },
    argvs: cmds.map((c) => argvOf(c.text)),
    commands: cmds.length,
  }
}

/** The argv array for one command (what Infinization's executor passes to `nft`, no shell). */
export function argvOf(text: string): string[] {
  return text.split(/\s+/).filter(Boolean)
}

// ---------------------------------------------------------------------------------------------
// Per-VM firewall, raw equivalent of what VmFirewall compiles: one table, two dispatch maps
// (`iifname vmap` in prerouting for traffic from a VM, `oifname vmap` in postrouting for traffic to
// a VM), two regular chains per VM (out, in) holding the VM's rules, the last one being the default.

export interface VmNames {
  index: number
  vmId: string
  tap: string
  out: string
  in: string
}

export function vmNames(index: number): VmNames {
  const vmId = `bench-vm-${index}`
  const h = sha256Hex(vmId)
  return { index, vmId, tap: `vnet-${h.slice(0, 10)}`, out: `vm_${h.slice(0, 12)}_out`, in: `vm_${h.slice(0, 12)}_in` }
}

const payload = (protocol: string, field: string) => ({ payload: { protocol, field } })
const eq = (left: unknown, right: unknown) => ({ match: { op: '==', left, right } })
const counter = { counter: { packets: 0, bytes: 0 } }

interface RuleBody {
  text: string
  expr: unknown[]
  comment: string
}

/** What rule `i` of `variant` matches: `ip saddr addr tcp dport port drop`, `ip daddr 203.0.113.0/24 udp dport
 *  port accept`, or `tcp dport port-(port+5) drop` (by `i % 3`). The one source of the rules' values. */
export function vmRuleFields(i: number, variant = 0): { shape: 'saddr-port' | 'daddr-prefix-port' | 'port-range'; port: number; addr: string } {
  const port = 1000 + ((i * 37 + variant * 101) % 3000)
  const shape = (['saddr-port', 'daddr-prefix-port', 'port-range'] as const)[i % 3]!
  return { shape, port, addr: `198.51.100.${1 + ((i + variant) % 250)}` }
}

/**
 * Rule `i` of a VM chain. None of them matches the data-plane test traffic (TCP port 5201 and the
 * client's ephemeral ports between 10.99.0.1 and 10.99.0.2), so every packet walks the whole chain.
 * `variant` changes ports/addresses so successive replaces really change the rules.
 */
export function vmRule(i: number, variant = 0): RuleBody {
  const { shape, port, addr } = vmRuleFields(i, variant)
  const comment = `r${i}v${variant}`
  switch (shape) {
    case 'saddr-port':
      return {
        text: `ip saddr ${addr} tcp dport ${port} counter drop comment "${comment}"`,
        expr: [eq(payload('ip', 'saddr'), addr), eq(payload('tcp', 'dport'), port), counter, { drop: null }],
        comment,
      }
    case 'daddr-prefix-port':
      return {
        text: `ip daddr 203.0.113.0/24 udp dport ${port} counter accept comment "${comment}"`,
        expr: [eq(payload('ip', 'daddr'), { prefix: { addr: '203.0.113.0', len: 24 } }), eq(payload('udp', 'dport'), port), counter, { accept: null }],
        comment,
      }
    case 'port-range':
      return {
        text: `tcp dport ${port}-${port + 5} counter drop comment "${comment}"`,
        expr: [eq(payload('tcp', 'dport'), { range: [port, port + 5] }), counter, { drop: null }],
        comment,
      }
  }
}

const defaultRule: RuleBody = { text: 'counter accept comment "default"', expr: [counter, { accept: null }], comment: 'default' }

function addRule(table: string, chain: string, body: RuleBody): Cmd {
  return {
    text: `add rule ${FAMILY} ${table} ${chain} ${body.text}`,
    json: { add: { rule: { family: FAMILY, table, chain, expr: body.expr, comment: body.comment } } },
  }
}

const chainCmd = (verb: 'add' | 'flush' | 'delete', table: string, name: string): Cmd => ({
  text: `${verb} chain ${FAMILY} ${table} ${name}`,
  json: { [verb]: { chain: { family: FAMILY, table, name } } },
})

/** The rules of one VM: `rules` in total, half in each chain, each chain ending with the default. */
function vmRuleCmds(table: string, vm: VmNames, rules: number, variant: number): Cmd[] {
  const perChain = Math.max(1, Math.floor(rules / 2))
  const cmds: Cmd[] = []
  for (const chain of [vm.out, vm.in]) {
    for (let i = 0; i < perChain - 1; i++) cmds.push(addRule(table, chain, vmRule(i, variant)))
    cmds.push(addRule(table, chain, defaultRule))
  }
  return cmds
}

export type Dispatch = 'vmap' | 'linear' | 'none'

/** Table, dispatch maps, and (unless `dispatch` is 'none') the hooked base chains. */
export function tableCmds(table: string, dispatch: Dispatch = 'vmap'): Cmd[] {
  const cmds: Cmd[] = [
    { text: `add table ${FAMILY} ${table}`, json: { add: { table: { family: FAMILY, name: table } } } },
    ...(['from_vm', 'to_vm'] as const).map((name) => ({
      text: `add map ${FAMILY} ${table} ${name} { type ifname : verdict ; }`,
      json: { add: { map: { family: FAMILY, table, name, type: 'ifname', map: 'verdict' } } },
    })),
  ]
  if (dispatch !== 'none') cmds.push(...baseChainCmds(table))
  if (dispatch === 'vmap') cmds.push(...vmapDispatchCmds(table))
  return cmds
}

export function baseChainCmds(table: string): Cmd[] {
  return (
    [
      ['pre', 'prerouting'],
      ['post', 'postrouting'],
    ] as const
  ).map(([name, hook]) => ({
    text: `add chain ${FAMILY} ${table} ${name} { type filter hook ${hook} priority 0 ; policy accept ; }`,
    json: { add: { chain: { family: FAMILY, table, name, type: 'filter', hook, prio: 0, policy: 'accept' } } },
  }))
}

export function vmapDispatchCmds(table: string): Cmd[] {
  return (
    [
      ['pre', 'iifname', 'from_vm'],
      ['post', 'oifname', 'to_vm'],
    ] as const
  ).map(([chain, key, map]) => ({
    text: `add rule ${FAMILY} ${table} ${chain} ${key} vmap @${map}`,
    json: { add: { rule: { family: FAMILY, table, chain, expr: [{ vmap: { key: { meta: { key } }, data: `@${map}` } }] } } },
  }))
}

/** Infinization-style linear dispatch: one `iifname … jump` and one `oifname … jump` rule per VM. */
export function linearDispatchCmds(table: string, vms: readonly VmNames[]): Cmd[] {
  const cmds: Cmd[] = []
  for (const vm of vms) {
    cmds.push({
      text: `add rule ${FAMILY} ${table} pre iifname "${vm.tap}" jump ${vm.out}`,
      json: { add: { rule: { family: FAMILY, table, chain: 'pre', expr: [eq({ meta: { key: 'iifname' } }, vm.tap), { jump: { target: vm.out } }] } } },
    })
    cmds.push({
      text: `add rule ${FAMILY} ${table} post oifname "${vm.tap}" jump ${vm.in}`,
      json: { add: { rule: { family: FAMILY, table, chain: 'post', expr: [eq({ meta: { key: 'oifname' } }, vm.tap), { jump: { target: vm.in } }] } } },
    })
  }
  return cmds
}

function elementCmd(verb: 'add' | 'delete', table: string, map: string, tap: string, target: string): Cmd {
  return verb === 'add'
    ? {
        text: `add element ${FAMILY} ${table} ${map} { "${tap}" : jump ${target} }`,
        json: { add: { element: { family: FAMILY, table, name: map, elem: [[tap, { jump: { target } }]] } } },
      }
    : {
        text: `delete element ${FAMILY} ${table} ${map} { "${tap}" }`,
        json: { delete: { element: { family: FAMILY, table, name: map, elem: [tap] } } },
      }
}

/** Create one VM: chains, rules, then its dispatch entries (unless `dispatch` is false). */
export function addVmCmds(table: string, vm: VmNames, rules: number, variant = 0, dispatch = true): Cmd[] {
  const cmds = [chainCmd('add', table, vm.out), chainCmd('add', table, vm.in), ...vmRuleCmds(table, vm, rules, variant)]
  if (dispatch) cmds.push(elementCmd('add', table, 'from_vm', vm.tap, vm.out), elementCmd('add', table, 'to_vm', vm.tap, vm.in))
  return cmds
}

/** Replace one VM's rules: flush both chains and add the new rules (one transaction). */
export function replaceVmCmds(table: string, vm: VmNames, rules: number, variant: number): Cmd[] {
  return [chainCmd('flush', table, vm.out), chainCmd('flush', table, vm.in), ...vmRuleCmds(table, vm, rules, variant)]
}

/** Remove one VM: its dispatch entries, then its chains (with their rules). */
export function removeVmCmds(table: string, vm: VmNames): Cmd[] {
  return [
    elementCmd('delete', table, 'from_vm', vm.tap, vm.out),
    elementCmd('delete', table, 'to_vm', vm.tap, vm.in),
    chainCmd('delete', table, vm.out),
    chainCmd('delete', table, vm.in),
  ]
}

/** A whole per-VM ruleset from empty: table, dispatch, `vms` VMs of `rules` rules each. */
export function fullRulesetCmds(table: string, vms: number, rules: number, dispatch: Dispatch = 'vmap'): Cmd[] {
  const cmds = tableCmds(table, dispatch)
  const names: VmNames[] = []
  for (let k = 0; k < vms; k++) {
    const vm = vmNames(k)
    names.push(vm)
    cmds.push(...addVmCmds(table, vm, rules, 0, dispatch !== 'linear'))
  }
  if (dispatch === 'linear') cmds.push(...linearDispatchCmds(table, names))
  return cmds
}

export const deleteTableCmd = (table: string): Cmd => ({
  text: `delete table ${FAMILY} ${table}`,
  json: { delete: { table: { family: FAMILY, name: table } } },
})

// ---------------------------------------------------------------------------------------------
// "Add one rule" workload: `rules` rules loaded, in one chain or spread over `chains` chains.

export const ADD_TABLE = 'bench_add'

export function addChainName(i: number): string {
  return `c${i}`
}

/** Preload script (text only; loaded untimed through the library). */
export function preloadAddText(rules: number, chains: number): string {
  const lines = [`add table ${FAMILY} ${ADD_TABLE}`]
  for (let c = 0; c < chains; c++) lines.push(`add chain ${FAMILY} ${ADD_TABLE} ${addChainName(c)}`)
  for (let r = 0; r < rules; r++) {
    const c = r % chains
    lines.push(`add rule ${FAMILY} ${ADD_TABLE} ${addChainName(c)} ip saddr 10.${(r >> 16) & 255}.${(r >> 8) & 255}.${r & 255} tcp dport ${1 + (r % 60000)} drop`)
  }
  return lines.join('\n') + '\n'
}

/** The rule the workload adds (the chain in the middle of the spread). */
export function probeRuleCmd(chain: string, seq: number): Cmd {
  const port = 1 + (seq % 60000)
  return {
    text: `add rule ${FAMILY} ${ADD_TABLE} ${chain} ip saddr 192.0.2.1 tcp dport ${port} drop`,
    json: {
      add: { rule: { family: FAMILY, table: ADD_TABLE, chain, expr: [eq(payload('ip', 'saddr'), '192.0.2.1'), eq(payload('tcp', 'dport'), port), { drop: null }] } },
    },
  }
}
