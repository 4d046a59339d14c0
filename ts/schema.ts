// Types of the libnftables JSON schema (libnftables-json(5)) as spoken by libnftables 1.0.x.
// Kept consistent with the Rust `nftables` crate 0.6 (schema.rs, expr.rs, stmt.rs, types.rs), which
// the fixtures are checked against; where libnftables accepts or prints more than the crate models,
// these types follow libnftables and say so. Types only: nothing here runs or validates anything.

// ---------------------------------------------------------------------------------------------
// Document
// ---------------------------------------------------------------------------------------------

/** Address families of nftables tables. */
export const NFT_FAMILIES = ['ip', 'ip6', 'inet', 'arp', 'bridge', 'netdev'] as const
/** An address family of a table. */
export type NftFamily = (typeof NFT_FAMILIES)[number]

/** One entry of the `nftables` array: a command (input) or a listed ruleset element (output, or an implicit `add` on input). */
export type NftObject = NftCommand | NftListObject

/** A whole libnftables JSON document. */
export type NftablesJson = {
  nftables: NftObject[]
}

// ---------------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------------

/** A command object: exactly one property naming the command. */
export type NftCommand =
  | NftAddCommand
  | NftCreateCommand
  | NftInsertCommand
  | NftReplaceCommand
  | NftDeleteCommand
  | NftListCommand
  | NftResetCommand
  | NftFlushCommand
  | NftRenameCommand

/** `add`: create an element, or do nothing if it exists (rules are appended). */
export type NftAddCommand = {
  add: NftAddObject
}

/** `create`: like `add`, but fails if the element already exists. */
export type NftCreateCommand = {
  create: NftAddObject
}

/** `insert`: prepend a rule, or insert it before the rule given by `handle` or `index`. */
export type NftInsertCommand = {
  insert: { rule: NftRule }
}

/** `replace`: replace the rule identified by `handle`. (The crate models it without the `rule` wrapper.) */
export type NftReplaceCommand = {
  replace: { rule: NftRule & { handle: number } }
}

/** `delete`: remove an element, identified by name or handle (rules by handle). */
export type NftDeleteCommand = {
  delete: NftDeleteObject
}

/** `list`: print ruleset elements; the answer is a document of list objects. */
export type NftListCommand = {
  list: NftListTarget
}

/** `reset`: zero stateful objects (counters, quotas). Not transactional: the objects must already exist. Send it
 *  in a call of its own: libnftables 1.1.x silently drops the writes that follow a reset in the same batch. */
export type NftResetCommand = {
  reset: NftResetTarget
}

/** `flush`: empty a table, chain, set, map or meter, or the whole ruleset. */
export type NftFlushCommand = {
  flush: NftFlushTarget
}

/** `rename`: rename a chain to `newname`. (The crate models it without the `chain` wrapper.) */
export type NftRenameCommand = {
  rename: { chain: NftChainRef & { newname: string } }
}

/** What `add` and `create` accept. */
export type NftAddObject =
  | { table: NftTable }
  | { chain: NftChain }
  | { rule: NftRule }
  | { set: NftSet }
  | { map: NftMap }
  | { element: NftElement }
  | { flowtable: NftFlowtable }
  | { counter: NftCounter }
  | { quota: NftQuota }
  | { limit: NftLimit }
  | { 'ct helper': NftCtHelper }
  | { 'ct timeout': NftCtTimeout }
  | { 'ct expectation': NftCtExpectation }
  | { synproxy: NftSynproxy }

/** What `delete` accepts: the minimum that identifies an element. */
export type NftDeleteObject =
  | { table: NftTableRef }
  | { chain: NftChainRef }
  | { rule: NftRuleRef }
  | { set: NftSetRef }
  | { map: NftSetRef }
  | { element: NftElement }
  | { flowtable: NftNamedRef }
  | { counter: NftNamedRef }
  | { quota: NftNamedRef }
  | { limit: NftNamedRef }
  | { 'ct helper': NftNamedRef }
  | { 'ct timeout': NftNamedRef }
  | { 'ct expectation': NftNamedRef }
  | { synproxy: NftNamedRef }

/** Filter of a plural `list` (all of a kind, optionally in one family / table). `null` lists everything. */
export type NftListFilter = null | { family?: NftFamily; table?: string }

/** What `list` accepts: one element, or all elements of a kind. */
export type NftListTarget =
  | { ruleset: null }
  | { table: NftTableRef }
  | { tables: NftListFilter }
  | { chain: NftChainRef }
  | { chains: NftListFilter }
  | { set: NftSetRef }
  | { sets: NftListFilter }
  | { map: NftSetRef }
  | { maps: NftListFilter }
  | { element: NftElement }
  | { flowtable: NftNamedRef }
  | { flowtables: NftListFilter }
  | { counter: NftNamedRef }
  | { counters: NftListFilter }
  | { quota: NftNamedRef }
  | { quotas: NftListFilter }
  | { limit: NftNamedRef }
  | { limits: NftListFilter }
  | { 'ct helper': NftNamedRef }
  | { 'ct helpers': NftListFilter }
  | { 'ct timeout': NftNamedRef }
  | { 'ct expectation': NftNamedRef }
  | { meter: NftNamedRef }
  | { meters: NftListFilter }

/** What `reset` accepts. (The crate models the plural forms as arrays of objects.) */
export type NftResetTarget =
  | { counter: NftNamedRef }
  | { counters: NftListFilter }
  | { quota: NftNamedRef }
  | { quotas: NftListFilter }

/** What `flush` accepts. */
export type NftFlushTarget =
  | { ruleset: null }
  | { table: NftTableRef }
  | { chain: NftChainRef }
  | { set: NftSetRef }
  | { map: NftSetRef }
  | { meter: NftNamedRef }

// ---------------------------------------------------------------------------------------------
// Ruleset elements (list objects)
// ---------------------------------------------------------------------------------------------

/** A listed ruleset element; as a command-less input object it is added. */
export type NftListObject = NftAddObject | { metainfo: NftMetainfo }

/** The first object of every listing: library version and schema version. */
export type NftMetainfo = {
  version?: string
  release_name?: string
  /** Input with a higher schema version than the library's is rejected. */
  json_schema_version?: number
}

/** A table. */
export type NftTable = {
  family: NftFamily
  name: string
  handle?: number
  /** Table flags, e.g. `dormant` (libnftables prints a single flag as a string). */
  flags?: string | string[]
  /** Ignored on input and not printed by libnftables 1.0.6. */
  comment?: string
}

/** A table identified by name or handle. */
export type NftTableRef = {
  family: NftFamily
  name?: string
  handle?: number
}

/** Hooks a base chain or flowtable attaches to. */
export type NftHook = 'ingress' | 'prerouting' | 'forward' | 'input' | 'output' | 'postrouting' | 'egress'
/** Base chain types. */
export type NftChainType = 'filter' | 'route' | 'nat'
/** Base chain policies. */
export type NftChainPolicy = 'accept' | 'drop'

/** A chain; `type`, `hook`, `prio` (and `dev` for netdev ingress/egress) make it a base chain. */
export type NftChain = {
  family: NftFamily
  table: string
  name: string
  /** Only for `rename`. */
  newname?: string
  handle?: number
  type?: NftChainType
  hook?: NftHook
  /** Numeric priority: named ones are printed resolved (`filter` is 0, or -200 in bridge tables). */
  prio?: number
  /** Device of a netdev base chain (a list in newer libnftables). */
  dev?: string | string[]
  policy?: NftChainPolicy
  /** Ignored on input and not printed by libnftables 1.0.6. */
  comment?: string
}

/** A chain identified by name or handle. */
export type NftChainRef = {
  family: NftFamily
  table: string
  name?: string
  handle?: number
}

/** A rule: a list of statements. */
export type NftRule = {
  family: NftFamily
  table: string
  chain: string
  expr: NftStatement[]
  /** Identifies the rule for delete/replace; for add/insert, the rule to place this one after/before. */
  handle?: number
  /** Position for add/insert, as an alternative to `handle`. */
  index?: number
  comment?: string
}

/** A rule identified by handle (for `delete`). The crate requires `expr` here too. */
export type NftRuleRef = {
  family: NftFamily
  table: string
  chain: string
  handle: number
}

/**
 * A set element data type name, or for concatenations, an array of them. The crate models only
 * ipv4_addr, ipv6_addr, ether_addr, inet_proto, inet_service, mark and ifname.
 */
export type NftDataType =
  | 'ipv4_addr'
  | 'ipv6_addr'
  | 'ether_addr'
  | 'ether_type'
  | 'inet_proto'
  | 'inet_service'
  | 'mark'
  | 'ifname'
  | 'iface_index'
  | 'icmp_type'
  | 'icmpv6_type'
  | 'arp_op'
  | 'ct_state'
  | 'verdict'
  | (string & {})
/** A set's key (or a map's value) type: one data type or a concatenation. */
export type NftSetTypeValue = NftDataType | NftDataType[]
/** Set lookup policy. */
export type NftSetPolicy = 'performance' | 'memory'
/** Set flags. `dynamic` is undocumented and rejected in JSON input by libnftables 1.0.6 (the crate models it). */
export type NftSetFlag = 'constant' | 'interval' | 'timeout' | 'dynamic'

/** A named set. */
export type NftSet = {
  family: NftFamily
  table: string
  name: string
  handle?: number
  type: NftSetTypeValue
  policy?: NftSetPolicy
  flags?: NftSetFlag | NftSetFlag[]
  /** Initial elements (one expression or several). */
  elem?: NftExpression | NftExpression[]
  /** Element timeout, seconds. */
  timeout?: number
  'gc-interval'?: number
  size?: number
  /** Statements attached to every element, e.g. `[{ counter: null }]`. Not modelled by the crate. */
  stmt?: NftStatement[]
  comment?: string
}

/** A named map: a set whose elements are `[key, value]` pairs. */
export type NftMap = NftSet & {
  /** Value type; `verdict` for verdict maps (the crate cannot express `verdict`). */
  map: NftSetTypeValue
}

/** A set or map identified by name or handle. The crate requires `type` here too, so include it when the crate must read it. */
export type NftSetRef = {
  family: NftFamily
  table: string
  name?: string
  handle?: number
  type?: NftSetTypeValue
  map?: NftSetTypeValue
}

/** Elements to add to / delete from a named set or map. */
export type NftElement = {
  family: NftFamily
  table: string
  name: string
  elem: NftExpression | NftExpression[]
}

/** A flowtable (fast path offload). */
export type NftFlowtable = {
  family: NftFamily
  table: string
  name: string
  handle?: number
  hook?: NftHook
  prio?: number
  dev?: string | string[]
}

/** A named object (counter, quota, limit, ct helper, ...) identified by name or handle. */
export type NftNamedRef = {
  family: NftFamily
  table: string
  name?: string
  handle?: number
}

/** A named counter. */
export type NftCounter = {
  family: NftFamily
  table: string
  name: string
  handle?: number
  packets?: number
  bytes?: number
  comment?: string
}

/** A named quota. */
export type NftQuota = {
  family: NftFamily
  table: string
  name: string
  handle?: number
  /** Threshold in bytes. */
  bytes?: number
  used?: number
  /** Match once the quota is exceeded (`over`). */
  inv?: boolean
  comment?: string
}

/** Time units of limits. */
export type NftTimeUnit = 'second' | 'minute' | 'hour' | 'day' | 'week'

/** A named limit. */
export type NftLimit = {
  family: NftFamily
  table: string
  name: string
  handle?: number
  rate?: number
  per?: NftTimeUnit
  burst?: number
  unit?: 'packets' | 'bytes'
  /** Printed for byte limits, e.g. `mbytes`. */
  rate_unit?: string
  burst_unit?: string
  /** Match when the limit is exceeded (`over`). */
  inv?: boolean
  comment?: string
}

/** Layer 4 protocols of ct helpers, timeouts and expectations. */
export type NftCtProto = 'tcp' | 'udp' | 'dccp' | 'sctp' | 'gre' | 'icmpv6' | 'icmp' | 'generic'

/** A named conntrack helper. */
export type NftCtHelper = {
  family: NftFamily
  table: string
  name: string
  handle?: number
  /** Helper type, e.g. `ftp`. */
  type: string
  protocol?: NftCtProto
  l3proto?: string
}

/** A named conntrack timeout policy. (The crate names it `cttimeout` and cannot read `ct timeout`.) */
export type NftCtTimeout = {
  family: NftFamily
  table: string
  name: string
  handle?: number
  protocol?: NftCtProto
  state?: string
  value?: number
  l3proto?: string
  /** State name to timeout (seconds); libnftables 1.0.6 prints `null`. */
  policy?: Record<string, number> | null
}

/** A named conntrack expectation. */
export type NftCtExpectation = {
  family: NftFamily
  table: string
  name: string
  handle?: number
  l3proto?: string
  protocol?: NftCtProto
  dport?: number
  /** Milliseconds. */
  timeout?: number
  size?: number
}

/** SYN proxy flags. */
export type NftSynproxyFlag = 'timestamp' | 'sack-perm'

/** A named SYN proxy. libnftables 1.0.6 prints these but does not accept them in JSON input. */
export type NftSynproxy = {
  family: NftFamily
  table: string
  name: string
  handle?: number
  mss?: number
  wscale?: number
  flags?: NftSynproxyFlag | NftSynproxyFlag[]
}

// ---------------------------------------------------------------------------------------------
// Expressions
// ---------------------------------------------------------------------------------------------

/**
 * An expression. Immediates are strings (`"@name"` references a named set, `"*"` is a wildcard,
 * `"eth*"` an interface prefix), numbers and booleans; an array is a list (e.g. flags).
 */
export type NftExpression =
  | string
  | number
  | boolean
  | NftExpression[]
  | NftConcatExpr
  | NftSetExpr
  | NftMapExpr
  | NftPrefixExpr
  | NftRangeExpr
  | NftPayloadExpr
  | NftExthdrExpr
  | NftTcpOptionExpr
  | NftSctpChunkExpr
  | NftMetaExpr
  | NftRtExpr
  | NftCtExpr
  | NftNumgenExpr
  | NftJhashExpr
  | NftSymhashExpr
  | NftFibExpr
  | NftBinaryOpExpr
  | NftElemExpr
  | NftSocketExpr
  | NftOsfExpr
  | NftVerdict

/** Concatenation of expressions, e.g. `ip saddr . tcp dport`. */
export type NftConcatExpr = {
  concat: NftExpression[]
}

/** An anonymous set; for maps and verdict maps, elements are `[key, value]` pairs. The crate reads only the array form. */
export type NftSetExpr = {
  set: NftExpression | NftExpression[]
}

/** A map lookup: `key` looked up in `data` (an anonymous set of pairs or `"@map"`). */
export type NftMapExpr = {
  map: { key: NftExpression; data: NftExpression }
}

/** An address prefix, e.g. 10.0.0.0/8. */
export type NftPrefixExpr = {
  prefix: { addr: NftExpression; len: number }
}

/** An inclusive range [low, high]. */
export type NftRangeExpr = {
  range: [NftExpression, NftExpression]
}

/** Raw payload bases: link, network, transport, inner header. */
export type NftPayloadBase = 'll' | 'nh' | 'th' | 'ih'

/** A packet header field by name (`{ protocol: 'tcp', field: 'dport' }`) or raw bytes at an offset. */
export type NftPayloadExpr = {
  payload: { protocol: string; field: string } | { base: NftPayloadBase; offset: number; len: number }
}

/** An IPv6 extension header field; without `field`, an existence check against a boolean. */
export type NftExthdrExpr = {
  exthdr: { name: string; field?: string; offset?: number }
}

/** A TCP option field; without `field`, an existence check against a boolean. */
export type NftTcpOptionExpr = {
  'tcp option': { name: string; field?: string }
}

/** An SCTP chunk field; without `field`, an existence check. */
export type NftSctpChunkExpr = {
  'sctp chunk': { name: string; field?: string }
}

/**
 * Meta keys. The crate models the documented ones (length ... secpath, with `ibridgename`/`obridgename`);
 * libnftables 1.0.6 also prints `ibrname`, `obrname`, `iifkind`, `oifkind`, `time`, `day`, `hour`, ...
 */
export type NftMetaKey =
  | 'length'
  | 'protocol'
  | 'priority'
  | 'random'
  | 'mark'
  | 'iif'
  | 'iifname'
  | 'iiftype'
  | 'iifkind'
  | 'iifgroup'
  | 'oif'
  | 'oifname'
  | 'oiftype'
  | 'oifkind'
  | 'oifgroup'
  | 'skuid'
  | 'skgid'
  | 'nftrace'
  | 'rtclassid'
  | 'ibriport'
  | 'obriport'
  | 'ibridgename'
  | 'obridgename'
  | 'ibrname'
  | 'obrname'
  | 'ibrpvid'
  | 'ibrvproto'
  | 'pkttype'
  | 'cpu'
  | 'cgroup'
  | 'nfproto'
  | 'l4proto'
  | 'secpath'
  | 'ipsec'
  | 'secmark'
  | 'time'
  | 'day'
  | 'hour'
  | 'sdif'
  | 'sdifname'
  | 'broute'

/** Packet meta data. */
export type NftMetaExpr = {
  meta: { key: NftMetaKey }
}

/** Routing data. */
export type NftRtExpr = {
  rt: { key: 'classid' | 'nexthop' | 'mtu'; family?: 'ip' | 'ip6' }
}

/** Conntrack keys (some take `dir`, address keys may take `family`). */
export type NftCtKey =
  | 'state'
  | 'direction'
  | 'status'
  | 'mark'
  | 'expiration'
  | 'helper'
  | 'label'
  | 'l3proto'
  | 'protocol'
  | 'saddr'
  | 'daddr'
  | 'proto-src'
  | 'proto-dst'
  | 'ip saddr'
  | 'ip daddr'
  | 'ip6 saddr'
  | 'ip6 daddr'
  | 'bytes'
  | 'packets'
  | 'avgpkt'
  | 'zone'
  | 'event'
  | 'secmark'
  | 'id'

/** Conntrack data of the packet's connection. Not usable in the bridge family without bridge conntrack. */
export type NftCtExpr = {
  ct: { key: NftCtKey; family?: 'ip' | 'ip6'; dir?: 'original' | 'reply' }
}

/** Number generator. */
export type NftNumgenExpr = {
  numgen: { mode: 'inc' | 'random'; mod: number; offset?: number }
}

/** Jenkins hash of an expression. */
export type NftJhashExpr = {
  jhash: { mod: number; offset?: number; expr: NftExpression; seed?: number }
}

/** Symmetric hash of the flow. */
export type NftSymhashExpr = {
  symhash: { mod: number; offset?: number }
}

/** FIB lookup flags. */
export type NftFibFlag = 'saddr' | 'daddr' | 'mark' | 'iif' | 'oif'

/** Forwarding information base lookup. */
export type NftFibExpr = {
  fib: { result: 'oif' | 'oifname' | 'type'; flags: NftFibFlag | NftFibFlag[] }
}

/** Binary operations: `[left, right]`. */
export type NftBinaryOpExpr =
  | { '&': [NftExpression, NftExpression] }
  | { '|': [NftExpression, NftExpression] }
  | { '^': [NftExpression, NftExpression] }
  | { '<<': [NftExpression, NftExpression] }
  | { '>>': [NftExpression, NftExpression] }

/** A set element with properties (timeout/expires in seconds). */
export type NftElemExpr = {
  elem: {
    val: NftExpression
    timeout?: number
    expires?: number
    comment?: string
    /** Per-element counter of sets declared with `counter`. */
    counter?: NftCounterStmtValue
  }
}

/** Socket lookup. */
export type NftSocketExpr = {
  socket: { key: 'transparent' | 'mark' | 'wildcard' | 'cgroupv2' }
}

/** Passive OS fingerprint. */
export type NftOsfExpr = {
  osf: { key: 'name' | 'version'; ttl?: 'loose' | 'skip' }
}

// ---------------------------------------------------------------------------------------------
// Verdicts and statements
// ---------------------------------------------------------------------------------------------

/** A verdict (a statement, or an expression in verdict maps). */
export type NftVerdict =
  | { accept: null }
  | { drop: null }
  | { continue: null }
  | { return: null }
  | { jump: { target: string } }
  | { goto: { target: string } }

/** Match operators. */
export type NftOperator = '&' | '|' | '^' | '<<' | '>>' | '==' | '!=' | '<' | '>' | '<=' | '>=' | 'in'

/** A statement: one element of a rule's `expr`. */
export type NftStatement =
  | NftVerdict
  | NftMatchStmt
  | NftCounterStmt
  | NftMangleStmt
  | NftQuotaStmt
  | NftLimitStmt
  | NftLastStmt
  | NftFwdStmt
  | NftNotrackStmt
  | NftDupStmt
  | NftNatStmt
  | NftRejectStmt
  | NftSetStmt
  | NftMapStmt
  | NftLogStmt
  | NftCtHelperStmt
  | NftCtTimeoutStmt
  | NftCtExpectationStmt
  | NftCtCountStmt
  | NftMeterStmt
  | NftQueueStmt
  | NftVmapStmt
  | NftFlowStmt
  | NftSynproxyStmt
  | NftTproxyStmt
  | NftXtStmt

/** Continue with the next statement only if `left op right`. */
export type NftMatchStmt = {
  match: { op: NftOperator; left: NftExpression; right: NftExpression }
}

/** Value of a counter statement: anonymous (optional initial values), `null`, or a named counter. */
export type NftCounterStmtValue = null | { packets?: number; bytes?: number } | string

/** Count packets and bytes. */
export type NftCounterStmt = {
  counter: NftCounterStmtValue
}

/** Set packet data or meta data (`meta mark set ...`, `ct mark set ...`). */
export type NftMangleStmt = {
  mangle: { key: NftExpression; value: NftExpression }
}

/** An anonymous quota, or a reference to a named quota. */
export type NftQuotaStmt = {
  quota: { val: number; val_unit?: string; used?: number; used_unit?: string; inv?: boolean } | string
}

/** An anonymous limit, or a reference to a named limit (the crate cannot read the reference form). */
export type NftLimitStmt = {
  limit:
    | { rate: number; rate_unit?: string; per?: string; burst?: number; burst_unit?: string; inv?: boolean }
    | string
}

/** Record when the rule last matched (not modelled by the crate). */
export type NftLastStmt = {
  last: null | { used?: number }
}

/** Forward the packet (netdev ingress). */
export type NftFwdStmt = {
  fwd: { dev?: NftExpression; family?: 'ip' | 'ip6'; addr?: NftExpression }
}

/** Disable connection tracking for the packet. */
export type NftNotrackStmt = {
  notrack: null
}

/** Duplicate the packet. */
export type NftDupStmt = {
  dup: { addr: NftExpression; dev?: NftExpression }
}

/** NAT flags. The crate accepts only the array form (libnftables prints a single flag as a string). */
export type NftNatFlag = 'random' | 'fully-random' | 'persistent'

/** NAT parameters (all optional). */
export type NftNat = {
  addr?: NftExpression
  /** Family of `addr`; required in inet tables. */
  family?: 'ip' | 'ip6'
  port?: NftExpression
  flags?: NftNatFlag | NftNatFlag[]
  type_flags?: string | string[]
}

/** Network address translation. */
export type NftNatStmt =
  | { snat: NftNat | null }
  | { dnat: NftNat | null }
  | { masquerade: Pick<NftNat, 'port' | 'flags'> | null }
  | { redirect: Pick<NftNat, 'port' | 'flags'> | null }

/** Reject codes. */
export type NftRejectCode =
  | 'admin-prohibited'
  | 'port-unreachable'
  | 'no-route'
  | 'host-unreachable'
  | 'net-unreachable'
  | 'prot-unreachable'
  | 'net-prohibited'
  | 'host-prohibited'
  | 'addr-unreachable'

/** Reject the packet with an error reply. Not usable in the bridge family on kernels without bridge reject. */
export type NftRejectStmt = {
  reject: null | { type?: 'tcp reset' | 'icmpx' | 'icmp' | 'icmpv6'; expr?: NftRejectCode }
}

/** Add or update an element of a named set from the packet (`set` is `"@name"`). */
export type NftSetStmt = {
  set: { op: 'add' | 'update' | 'delete'; elem: NftExpression; set: string }
}

/** Add or update an element of a named map (not modelled by the crate). */
export type NftMapStmt = {
  map: { op: 'add' | 'update' | 'delete'; elem: NftExpression; data: NftExpression; map: string }
}

/** Log levels. */
export type NftLogLevel = 'emerg' | 'alert' | 'crit' | 'err' | 'warn' | 'notice' | 'info' | 'debug' | 'audit'
/** Log flags. */
export type NftLogFlag = 'tcp sequence' | 'tcp options' | 'ip options' | 'skuid' | 'ether' | 'all'

/** Log the packet. */
export type NftLogStmt = {
  log: null | {
    prefix?: string
    group?: number
    snaplen?: number
    'queue-threshold'?: number
    level?: NftLogLevel
    flags?: NftLogFlag | NftLogFlag[]
  }
}

/** Assign a named ct helper. */
export type NftCtHelperStmt = {
  'ct helper': NftExpression
}

/** Assign a named ct timeout policy. */
export type NftCtTimeoutStmt = {
  'ct timeout': NftExpression
}

/** Assign a named ct expectation. */
export type NftCtExpectationStmt = {
  'ct expectation': NftExpression
}

/** Match on the number of connections (`inv`: over). */
export type NftCtCountStmt = {
  'ct count': { val: number; inv?: boolean }
}

/** Apply a statement per key (a dynamic set). */
export type NftMeterStmt = {
  meter: { name: string; key: NftExpression; stmt: NftStatement; size?: number }
}

/** Queue flags. */
export type NftQueueFlag = 'bypass' | 'fanout'

/** Queue the packet to userspace. */
export type NftQueueStmt = {
  queue: { num: NftExpression; flags?: NftQueueFlag | NftQueueFlag[] }
}

/** Verdict map: look `key` up in `data` (pairs of value and verdict, or `"@map"`) and apply the verdict. */
export type NftVmapStmt = {
  vmap: { key: NftExpression; data: NftExpression }
}

/** Offload the flow to a flowtable (`flowtable` is `"@name"`). */
export type NftFlowStmt = {
  flow: { op: 'add'; flowtable: string }
}

/** SYN proxy. */
export type NftSynproxyStmt = {
  synproxy: { mss?: number; wscale?: number; flags?: NftSynproxyFlag | NftSynproxyFlag[] } | string
}

/** Transparent proxy. */
export type NftTproxyStmt = {
  tproxy: { family?: 'ip' | 'ip6'; addr?: string; port: number }
}

/** An xtables (iptables-nft) match/target; printed only, never restored by libnftables. */
export type NftXtStmt = {
  xt: null | { type: 'match' | 'target' | 'watcher'; name: string }
}
