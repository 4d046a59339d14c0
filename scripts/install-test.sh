#!/usr/bin/env bash
# The install a user does, end to end, against a local npm registry:
#   1. stage the main package (`npm pack`) and the platform packages (the host's with the built addon;
#      the other targets as manifests only, so npm's os/cpu/libc selection is exercised too);
#   2. start verdaccio on 127.0.0.1 (installed into a temp dir from the npm registry) and publish them;
#      it serves @infinibay/* only from what this test published and proxies every other package
#      (the main package's own dependencies) to the registry npm is configured with;
#   3. in an empty directory outside the repository, with no Rust toolchain on PATH:
#      `npm install @infinibay/nftables-node --registry http://127.0.0.1:PORT`, then typescript and
#      @types/node;
#   4. import the package and its `/compat` entry from ESM and CommonJS, type-check consumer files of
#      both with tsc (NodeNext and Node16 ESM and CJS, bundler, node10, Infinization's own compiler
#      options), and apply a ruleset inside a throwaway network namespace;
#   5. print the installed sizes and the load time.
# Everything (registry process, namespace, temp dirs) is removed on exit.
#
#   scripts/install-test.sh                  # needs root (network namespace), a built addon and dist/
#   scripts/install-test.sh --update-readme  # also writes the figures into README.md
#
# Environment: VERDACCIO_VERSION (default 6.8.0, the last release that runs on Node 20),
# INSTALL_TEST_KEEP=1 keeps the temp dir for inspection.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

UPDATE_README=0
for arg in "$@"; do
  case "$arg" in
    --update-readme) UPDATE_README=1 ;;
    *) echo "usage: $0 [--update-readme]" >&2; exit 2 ;;
  esac
done

VERDACCIO_VERSION=${VERDACCIO_VERSION:-6.8.0}
log() { printf '\n== install-test: %s\n' "$*"; }
die() { printf 'install-test: FAIL: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "needs root: the last step applies rules inside a throwaway network namespace"
for cmd in node npm ip nft tar; do command -v "$cmd" >/dev/null || die "$cmd is required"; done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/nftables-node-install.XXXXXX")
NS="nftn-install-$$"
REG_PID=""
cleanup() {
  local rc=$?
  set +e
  if [ -n "$REG_PID" ] && kill -0 "$REG_PID" 2>/dev/null; then
    kill "$REG_PID" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$REG_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$REG_PID" 2>/dev/null
    wait "$REG_PID" 2>/dev/null
  fi
  ip netns delete "$NS" 2>/dev/null
  if [ "${INSTALL_TEST_KEEP:-0}" = 1 ]; then echo "install-test: kept $WORK"; else rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# ---------------------------------------------------------------------------------------------
log "staging packages"
if [ ! -f dist/index.mjs ] || ! ls nftables-node.*.node >/dev/null 2>&1; then
  log "no build found; running npm run build"
  npm run build
fi
node scripts/stage-packages.mjs "$WORK/stage" >"$WORK/stage.json"
HOST=$(node -p "require('$WORK/stage.json').host")
VERSION=$(node -p "require('$WORK/stage.json').version")
MAIN_PKG=@infinibay/nftables-node
PLATFORM_PKG="$MAIN_PKG-$HOST"
echo "host platform package: $PLATFORM_PKG@$VERSION"

# ---------------------------------------------------------------------------------------------
log "starting verdaccio $VERDACCIO_VERSION on 127.0.0.1"
VDIR="$WORK/verdaccio"
mkdir -p "$VDIR/storage"
# verdaccio-audit asks for node-fetch@cjs, a dist-tag npm no longer resolves; pin what it meant.
cat >"$VDIR/package.json" <<EOF
{ "private": true, "dependencies": { "verdaccio": "$VERDACCIO_VERSION" }, "overrides": { "node-fetch": "2.7.0" } }
EOF
(cd "$VDIR" && npm install --no-package-lock --ignore-scripts --no-audit --no-fund --loglevel=error >"$VDIR/npm-install.log" 2>&1) \
  || { cat "$VDIR/npm-install.log" >&2; die "could not install verdaccio"; }

PORT=$(node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
REGISTRY="http://127.0.0.1:$PORT/"
UPSTREAM=$(npm config get registry 2>/dev/null | tail -1)
case "$UPSTREAM" in http://127.0.0.1:*|http://localhost:*|"") UPSTREAM=https://registry.npmjs.org/ ;; esac
# verdaccio is a Node process: give it the CA bundle npm is configured with (TLS-intercepting proxies).
CAFILE=$(npm config get cafile 2>/dev/null | tail -1)
VERDACCIO_ENV=()
if [ -n "$CAFILE" ] && [ "$CAFILE" != null ] && [ -f "$CAFILE" ]; then VERDACCIO_ENV+=("NODE_EXTRA_CA_CERTS=$CAFILE"); fi
cat >"$VDIR/config.yaml" <<EOF
storage: $VDIR/storage
auth:
  htpasswd:
    file: $VDIR/htpasswd
    max_users: 10
# @infinibay/* comes only from what this test publishes (no proxy: a version on the public registry
# must not stand in for the one under test); everything else is proxied to npm's registry.
uplinks:
  upstream:
    url: $UPSTREAM
    timeout: 60s
    max_fails: 5
packages:
  '@infinibay/*':
    access: \$all
    publish: \$all
    unpublish: \$all
  '**':
    access: \$all
    publish: \$all
    proxy: upstream
web:
  enable: false
log: { type: stdout, format: pretty, level: warn }
EOF
env "${VERDACCIO_ENV[@]}" node "$VDIR/node_modules/verdaccio/bin/verdaccio" --config "$VDIR/config.yaml" --listen "127.0.0.1:$PORT" \
  >"$VDIR/verdaccio.log" 2>&1 </dev/null &
REG_PID=$!
for i in $(seq 100); do
  kill -0 "$REG_PID" 2>/dev/null || { cat "$VDIR/verdaccio.log" >&2; die "verdaccio exited"; }
  if node -e "fetch('${REGISTRY}-/ping').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"; then break; fi
  [ "$i" -eq 100 ] && { cat "$VDIR/verdaccio.log" >&2; die "verdaccio did not answer on $REGISTRY"; }
  sleep 0.2
done
echo "registry: $REGISTRY (pid $REG_PID), other packages proxied to $UPSTREAM"

# npm publish needs credentials even where the registry allows anonymous publishing: create a
# throwaway user (the legacy `npm adduser` request) and use its token.
TOKEN=$(node -e "
  fetch('${REGISTRY}-/user/org.couchdb.user:ci', { method: 'PUT', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'ci', password: 'install-test-$$' }) })
    .then(async (r) => { const b = await r.json(); if (!b.token) throw new Error(JSON.stringify(b)); console.log(b.token) })
    .catch((e) => { console.error(e); process.exit(1) })")
PUBLISH_RC="$WORK/publish.npmrc"
printf '//127.0.0.1:%s/:_authToken=%s\n' "$PORT" "$TOKEN" >"$PUBLISH_RC"

log "publishing to the local registry"
publish() {
  npm publish "$1" --registry "$REGISTRY" --userconfig "$PUBLISH_RC" --provenance=false --ignore-scripts \
    --access public --loglevel=warn 2>&1 | grep -v 'Unknown user config' || true
  # npm publish exits 0 on success; check the registry instead of piping status through grep.
}
node -e "for (const p of require('$WORK/stage.json').platforms) console.log(p.dir)" >"$WORK/platform-dirs"
while read -r dir; do publish "$dir"; done <"$WORK/platform-dirs"
publish "$WORK/stage/main"
for name in "$MAIN_PKG" $(node -e "for (const p of require('$WORK/stage.json').platforms) console.log(p.name)"); do
  got=$(npm view "$name@$VERSION" version --registry "$REGISTRY" --userconfig "$PUBLISH_RC" 2>/dev/null || true)
  [ "$got" = "$VERSION" ] || die "$name@$VERSION is not on the local registry"
done
echo "published $MAIN_PKG@$VERSION and its platform packages"

# ---------------------------------------------------------------------------------------------
log "installing into an empty project with no Rust toolchain on PATH"
CONSUMER="$WORK/consumer"
mkdir -p "$CONSUMER" "$WORK/home"
# A PATH of system directories (plus node's), without any that holds cargo or rustc.
CLEAN_PATH=""
for d in "$(dirname "$(command -v node)")" /usr/local/sbin /usr/local/bin /usr/sbin /usr/bin /sbin /bin; do
  [ -d "$d" ] || continue
  [ -e "$d/cargo" ] || [ -e "$d/rustc" ] || [ -e "$d/rustup" ] && continue
  case ":$CLEAN_PATH:" in *":$d:"*) ;; *) CLEAN_PATH="${CLEAN_PATH:+$CLEAN_PATH:}$d" ;; esac
done
NPM_CACHE=$(npm config get cache 2>/dev/null | tail -1)
# Only what npm and the tests need; no CARGO_HOME, RUSTUP_HOME, npm_config_* from the caller.
clean_env=(env -i HOME="$WORK/home" PATH="$CLEAN_PATH" TMPDIR="$WORK" CI="${CI:-true}" npm_config_cache="$NPM_CACHE"
  npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false)
# The registry and CA bundle npm is configured with, for the packages that do not come from ours.
clean_env+=(npm_config_registry="$UPSTREAM")
if [ ${#VERDACCIO_ENV[@]} -gt 0 ]; then clean_env+=(npm_config_cafile="$CAFILE"); fi
for v in HTTP_PROXY HTTPS_PROXY NO_PROXY http_proxy https_proxy no_proxy NODE_EXTRA_CA_CERTS; do
  if [ -n "${!v:-}" ]; then clean_env+=("$v=${!v}"); fi
done
if "${clean_env[@]}" sh -c 'command -v cargo || command -v rustc' >/dev/null; then
  die "a Rust toolchain is still on the consumer PATH ($CLEAN_PATH)"
fi
cd "$CONSUMER"
cat >package.json <<'EOF'
{ "name": "consumer", "version": "1.0.0", "private": true }
EOF
# Later installs (typescript) must still find our scope on the local registry.
printf '@infinibay:registry=%s\n' "$REGISTRY" >.npmrc
"${clean_env[@]}" npm install "$MAIN_PKG" --registry "$REGISTRY" --loglevel=error
TS_VERSION=$(node -p "require('$ROOT/node_modules/typescript/package.json').version")
"${clean_env[@]}" npm install --save-dev "typescript@$TS_VERSION" "@types/node@20" --loglevel=error

[ -f "node_modules/$PLATFORM_PKG/nftables-node.$HOST.node" ] || die "$PLATFORM_PKG was not installed with its addon"
installed=""
for dir in node_modules/@infinibay/*; do
  name=${dir#node_modules/}
  installed="$installed $name"
  case "$name" in "$MAIN_PKG" | "$PLATFORM_PKG") ;; *) die "npm installed a package for another platform: $name" ;; esac
done
echo "installed:$installed"
for f in compat/package.json dist/compat/index.js dist/compat/index.d.ts; do
  [ -f "node_modules/$MAIN_PKG/$f" ] || die "the installed package lacks $f (the /compat entry)"
done

# ---------------------------------------------------------------------------------------------
log "ESM and CommonJS imports, a ruleset in network namespace $NS"
ip netns add "$NS"
ip -n "$NS" link set lo up

cat >esm.mjs <<'EOF'
import { createRequire } from 'node:module'
import pkg, { Nft, NftError, isNftError } from '@infinibay/nftables-node'

const [netns] = process.argv.slice(2)
const cjs = createRequire(import.meta.url)('@infinibay/nftables-node')
if (cjs.Nft !== Nft || pkg.Nft !== Nft || cjs.NftError !== NftError) throw new Error('ESM and CJS see different classes')
const nft = new Nft({ netns })
await nft.run('add table bridge t\nadd chain bridge t vmfwd { type filter hook forward priority 0; policy accept; }')
await nft.run('add rule bridge t vmfwd iifname "vnet0" ether type ip counter accept')
const tables = await nft.run('list tables')
nft.close()
try {
  new Nft({ netns: `${netns}-missing` })
  throw new Error('a missing namespace did not throw')
} catch (e) {
  if (!isNftError(e, 'NETNS')) throw e
}
console.log(`esm: ok (${tables.trim()})`)
EOF
cat >cjs.cjs <<'EOF'
const { Nft, NftError } = require('@infinibay/nftables-node')
const [netns] = process.argv.slice(2)
const nft = new Nft({ netns })
const ruleset = nft.listRulesetSync()
const rules = ruleset.nftables.filter((o) => 'rule' in o)
if (!ruleset.nftables.some((o) => 'table' in o && o.table.family === 'bridge' && o.table.name === 't')) {
  throw new Error('table bridge t not found: ' + JSON.stringify(ruleset))
}
try {
  nft.runSync('add rule bridge t nosuchchain accept')
  throw new Error('a bad rule did not throw')
} catch (e) {
  if (!(e instanceof NftError) || e.code !== 'ENOENT') throw e
}
nft.close()
console.log(`cjs: ok (${rules.length} rule)`)
EOF
cat >compat-esm.mjs <<'EOF'
// The Infinization facade through the subpath export, from ESM, in the namespace.
import { NftablesService, SUPPORTED_PROTOCOLS, generateVMChainName } from '@infinibay/nftables-node/compat'
const [netns] = process.argv.slice(2)
const svc = new NftablesService({ netns, table: 'compat_esm', bridgeConntrackMode: 'degrade' })
await svc.initialize()
const ssh = { id: 'ssh', name: 'ssh', protocol: 'tcp', dstPortStart: 22, direction: 'IN' }
const res = await svc.applyRules('vm-1', 'vnet-1', [], [ssh], 'drop')
if (res.chainName !== generateVMChainName('vm-1') || res.appliedRules !== 1) throw new Error(JSON.stringify(res))
await svc.removeVMChain('vm-1')
svc.close()
console.log(`compat esm: ok (${SUPPORTED_PROTOCOLS.join(',')})`)
EOF
cat >compat-cjs.cjs <<'EOF'
const { NftablesService, NftablesError } = require('@infinibay/nftables-node/compat')
const [netns] = process.argv.slice(2)
const svc = new NftablesService({ netns, table: 'compat_cjs', bridgeConntrackMode: 'degrade' })
svc
  .initialize()
  .then(async () => {
    const chains = await svc.listChains()
    svc.close()
    if (!(new NftablesError('RULE_INVALID', 'x') instanceof Error)) throw new Error('NftablesError is not an Error')
    console.log(`compat cjs: ok (${chains.join(',')})`)
  })
  .catch((e) => {
    console.error(e)
    process.exit(1)
  })
EOF
"${clean_env[@]}" node esm.mjs "$NS"
"${clean_env[@]}" node cjs.cjs "$NS"
"${clean_env[@]}" node compat-esm.mjs "$NS"
"${clean_env[@]}" node compat-cjs.cjs "$NS"
ip netns exec "$NS" nft list tables | tee "$WORK/tables.txt"
grep -qx 'table bridge t' "$WORK/tables.txt" || die "nft list tables in $NS does not show table bridge t"
chain=$(ip netns exec "$NS" nft list chain bridge t vmfwd)
grep -q 'iifname "vnet0" ether type ip counter packets 0 bytes 0 accept' <<<"$chain" \
  || die "the rule is not in the namespace's ruleset: $chain"

# ---------------------------------------------------------------------------------------------
log "type-checking consumer files with tsc"
mkdir -p types
cat >types/esm.mts <<'EOF'
import { Nft, NftError, isNftError, type NftOptions, type NftablesJson } from '@infinibay/nftables-node'
import pkg from '@infinibay/nftables-node'

const options: NftOptions = { netns: 'lab', dryRun: true }
export async function apply(): Promise<NftablesJson> {
  const nft = new Nft(options)
  try {
    await nft.run('add table bridge t')
    return await nft.listRuleset()
  } catch (e) {
    if (isNftError(e, 'ENOENT')) console.log(e.line, e.command)
    throw e
  } finally {
    nft.close()
  }
}
export const same: boolean = pkg.NftError === NftError
// @ts-expect-error netns is a string
new Nft({ netns: 42 })
EOF
cat >types/cjs.cts <<'EOF'
import nftables = require('@infinibay/nftables-node')
const nft: nftables.Nft = new nftables.Nft({ handles: true })
const code: nftables.NftErrorCode = 'EEXIST'
export const closed: boolean = nft.closed && code.length > 0
// @ts-expect-error run takes a string
void nft.run(42)
EOF
cat >types/bundler.ts <<'EOF'
import { Nft, type NftablesJson } from '@infinibay/nftables-node'
export const list = (nft: Nft): Promise<NftablesJson> => nft.listRuleset()
// @ts-expect-error no such method
new Nft().nosuch()
EOF
# A consumer of the Infinization facade, written the way Infinization's callers use it (Infinization,
# VMLifecycle, HealthMonitor, EventHandler; the backend's FirewallValidationService).
cat >types/compat.ts <<'EOF'
import {
  NftablesService,
  NftablesError,
  NftablesErrorCode,
  SUPPORTED_PROTOCOLS,
  VM_CHAIN_PREFIX,
  generateVMChainName,
  type FirewallApplyResult,
  type FirewallDefaultAction,
  type FirewallRuleInput,
} from '@infinibay/nftables-node/compat'

export class Lifecycle {
  private readonly nftables = new NftablesService()
  async start(vmId: string, tap: string, dept: FirewallRuleInput[], vm: FirewallRuleInput[], action: FirewallDefaultAction): Promise<boolean> {
    await this.nftables.ensureVMChain(vmId)
    await this.nftables.attachJumpRules(vmId, tap)
    const { changed, result } = await this.nftables.applyRulesIfChanged(vmId, tap, dept, vm, action)
    const r: FirewallApplyResult | undefined = result
    return changed && (r?.failures.every((f) => f.ruleName.length > 0) ?? true)
  }
}
export const main = new NftablesService({ bridgeConntrackMode: 'degrade' })
export const isProtocol = (p: string): boolean => (SUPPORTED_PROTOCOLS as readonly string[]).includes(p.toLowerCase())
export const isOurs = (chain: string): boolean => chain.startsWith(VM_CHAIN_PREFIX) && chain === generateVMChainName('x')
export const notFound = (e: unknown): boolean => e instanceof NftablesError && e.code === NftablesErrorCode.CHAIN_NOT_FOUND
// @ts-expect-error the mode is 'fail' | 'degrade'
new NftablesService({ bridgeConntrackMode: 'off' })
EOF
cp types/compat.ts types/compat.mts
cp types/compat.ts types/compat.cts
tsconfig() { # module moduleResolution files...
  local module=$1 resolution=$2; shift 2
  printf '{ "compilerOptions": { "target": "ES2022", "module": "%s", "moduleResolution": "%s", "strict": true, "noEmit": true, "types": ["node"], "esModuleInterop": true, "skipLibCheck": false }, "files": [%s] }\n' \
    "$module" "$resolution" "$(printf '"%s",' "$@" | sed 's/,$//')"
}
tsconfig NodeNext NodeNext types/esm.mts types/cjs.cts types/compat.mts types/compat.cts >tsconfig.nodenext.json
tsconfig Node16 Node16 types/esm.mts types/cjs.cts types/compat.mts types/compat.cts >tsconfig.node16.json
tsconfig ESNext Bundler types/bundler.ts types/compat.ts >tsconfig.bundler.json
tsconfig CommonJS Node10 types/bundler.ts types/compat.ts >tsconfig.node10.json
# Infinization's own compiler options (its tsconfig.json: es2016, commonjs, moduleResolution "node").
printf '%s\n' '{ "compilerOptions": { "target": "es2016", "module": "commonjs", "moduleResolution": "node", "esModuleInterop": true,' \
  '"forceConsistentCasingInFileNames": true, "strict": true, "skipLibCheck": true, "noEmit": true, "types": ["node"] }, "files": ["types/compat.ts"] }' \
  >tsconfig.infinization.json
for cfg in nodenext node16 bundler node10 infinization; do
  "${clean_env[@]}" node node_modules/typescript/bin/tsc -p "tsconfig.$cfg.json" || die "tsc ($cfg) failed"
  echo "tsc ($cfg): ok"
done

# ---------------------------------------------------------------------------------------------
log "sizes and load time"
cat >load-time.cjs <<'EOF'
const { performance } = require('node:perf_hooks')
const t0 = performance.now()
const { Nft } = require('@infinibay/nftables-node')
const t1 = performance.now()
const nft = new Nft({ netns: process.argv[2] })
const t2 = performance.now()
nft.close()
console.log(JSON.stringify({ require: t1 - t0, construct: t2 - t1, total: t2 - t0 }))
EOF
for _ in 1 2 3 4 5 6 7; do "${clean_env[@]}" node load-time.cjs "$NS"; done >"$WORK/load.jsonl"
kib() { du -sk --apparent-size "$1" | cut -f1; }
MAIN_KIB=$(kib "node_modules/$MAIN_PKG")
PLATFORM_KIB=$(kib "node_modules/$PLATFORM_PKG")
ADDON_KIB=$(kib "node_modules/$PLATFORM_PKG/nftables-node.$HOST.node")
MAIN_TGZ_KIB=$(( ($(stat -c %s "$WORK"/stage/pack/*.tgz) + 1023) / 1024 ))
read -r REQUIRE_MS CONSTRUCT_MS TOTAL_MS < <(node -e "
  const rows = require('fs').readFileSync('$WORK/load.jsonl', 'utf8').trim().split('\n').map(JSON.parse)
  const med = (k) => { const v = rows.map((r) => r[k]).sort((a, b) => a - b); return v[v.length >> 1].toFixed(1) }
  console.log(med('require'), med('construct'), med('total'))")
NODE_VERSION=$(node -v)
CORES=$(nproc)
LOADAVG=$(cut -d' ' -f1 /proc/loadavg)
LIBNFT=$(dpkg-query -W -f '${Version}' libnftables1 2>/dev/null || echo unknown)
cat <<EOF

Installed size (apparent, as npm unpacks it):
  $MAIN_PKG: ${MAIN_KIB} KiB (tarball ${MAIN_TGZ_KIB} KiB)
  $PLATFORM_PKG: ${PLATFORM_KIB} KiB (the addon ${ADDON_KIB} KiB)
Load time, median of 7 fresh processes (Node $NODE_VERSION, libnftables $LIBNFT, $CORES cores, load average $LOADAVG):
  require('$MAIN_PKG'): ${REQUIRE_MS} ms
  first new Nft({ netns }): ${CONSTRUCT_MS} ms (loads the addon and libnftables, enters the namespace)
  together: ${TOTAL_MS} ms
EOF

if [ "$UPDATE_README" = 1 ]; then
  cd "$ROOT"
  SECTION="$WORK/section.md"
  cat >"$SECTION" <<EOF
## Package size and load time

Measured by \`scripts/install-test.sh --update-readme\`, which installs the packed packages from a local
registry into an empty project ($(uname -m), ${HOST##*-}, $CORES cores at load average $LOADAVG, Node $NODE_VERSION,
libnftables $LIBNFT, $(date -u +%Y-%m-%d)):

| package | installed size |
| --- | --- |
| \`$MAIN_PKG\` (TypeScript layer, types, loader) | ${MAIN_KIB} KiB (tarball ${MAIN_TGZ_KIB} KiB) |
| \`$PLATFORM_PKG\` (the addon, stripped, LTO) | ${PLATFORM_KIB} KiB |

npm installs only the platform package that matches the machine (os, cpu, libc). Importing the package
does not load the addon; the first \`new Nft()\` does. Median of 7 fresh processes: \`require()\` takes
${REQUIRE_MS} ms and the first \`new Nft({ netns })\` ${CONSTRUCT_MS} ms (loading the addon and libnftables,
starting the worker thread and entering the namespace), ${TOTAL_MS} ms together. How the addon is found,
the override variables (\`NFTABLES_NODE_NATIVE_PATH\`, \`NAPI_RS_NATIVE_LIBRARY_PATH\`) and the errors on
unsupported platforms: [docs/install.md](docs/install.md).
EOF
  node -e "
    const fs = require('fs')
    const section = fs.readFileSync('$SECTION', 'utf8')
    const file = 'README.md'
    if (!fs.existsSync(file)) { console.error('install-test: README.md does not exist'); process.exit(1) }
    let text = fs.readFileSync(file, 'utf8')
    const start = text.search(/^## Package size and load time\s*$/m)
    if (start === -1) {
      text = text.replace(/\s*$/, '\n\n') + section
    } else {
      const rest = text.slice(start + 1)
      const next = rest.search(/^## /m)
      text = text.slice(0, start) + section + (next === -1 ? '' : '\n' + rest.slice(next))
    }
    fs.writeFileSync(file, text)"
  echo "install-test: wrote the figures to README.md"
fi

log "ok"
