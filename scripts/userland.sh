#!/usr/bin/env bash
# userland.sh [--release trixie|noble] <project dir> <command...>
# userland.sh [--release trixie|noble] --prepare
#
# Runs <command...> as root with cwd = <project dir> in another distribution's root, with its glibc,
# libnftables1, nft, iproute2 and python3-nftables. Nothing is loaded across glibc versions; the addon built
# on the host needs at most GLIBC_2.34 and loads there as it is. The host's kernel is used as it is.
#   trixie (default)  Debian 13: libnftables 1.1.3, trixie's node
#   noble             Ubuntu 24.04 LTS: libnftables 1.0.9 (noble-updates), the host's node (noble ships node 18
#                     and the package needs >= 20; users there install node 20+ the same way)
#
# - The root is made once with debootstrap (minbase) + apt-get and cached in $NFTN_USERLAND_ROOT (default
#   /var/cache/nftables-node/<release>-root). It is built in <root>.tmp and renamed only when complete, under a
#   lock, so a half-made root is never used. NFTN_USERLAND_REBUILD=1 rebuilds it. --prepare only does this.
#   Ubuntu's archive key comes from its ubuntu-keyring package (ubuntu-keyring.sh pins its SHA-256).
# - Everything is mounted in a private mount namespace whose root is then pivot_root'ed to the tree:
#   nothing shows on the host, and the kernel drops every mount (and the netns bound under the tree's own
#   tmpfs /run/netns) when the command's last process ends, however it ends.
# - Environment: a clean one (PATH, HOME=/root, LANG=C.UTF-8, TERM) plus CI, STRESS, NFTABLES_NODE_*,
#   VITEST_* and the variables named in $NFTN_USERLAND_PASS_ENV.
# Exit status: the command's; 123 the command succeeded but left network namespaces behind
# (NFTN_LEFTOVER_OK=1: ignore); 125 the root could not be made or entered; 2 usage.
set -euo pipefail

RELEASE=trixie
if [[ "${1:-}" == --release ]]; then
  RELEASE=${2:-}
  shift 2 || true
fi
# The test suite's tools (those .ci/run installs on the host); no npm (it pulls ~340 node-* packages): run
# vitest as node_modules/.bin/vitest. procps for sysctl.
TOOLS="libnftables1 nftables iproute2 iputils-ping netcat-openbsd socat iperf3 python3 python3-nftables procps"
case "$RELEASE" in
  trixie)
    MIRROR=${NFTN_DEBIAN_MIRROR:-http://deb.debian.org/debian}
    PKGS="nodejs $TOOLS" COMPONENTS=main SCRIPT='' KEYRING='' SOURCES=''
    ;;
  noble)
    MIRROR=${NFTN_UBUNTU_MIRROR:-http://archive.ubuntu.com/ubuntu}
    PKGS=$TOOLS COMPONENTS=main,universe SCRIPT=/usr/share/debootstrap/scripts/gutsy
    KEYRING=ubuntu
    # libnftables 1.0.9-1ubuntu0.1 is in noble-updates.
    SOURCES="deb $MIRROR noble main universe
deb $MIRROR noble-updates main universe
deb $MIRROR noble-security main universe"
    ;;
  *)
    echo "userland: unknown release '$RELEASE' (trixie or noble)" >&2
    exit 2
    ;;
esac
ROOT=${NFTN_USERLAND_ROOT:-/var/cache/nftables-node/$RELEASE-root}
VERSIONS=/etc/nftables-node-userland.versions

log() { echo "userland ($RELEASE): $*" >&2; }
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
PREPARE_ONLY=0
case "${1:-}" in
  --prepare) PREPARE_ONLY=1 ;;
  -h | --help | '') usage ;;
  *) [[ $# -ge 2 ]] || usage ;;
esac
[[ $(id -u) -eq 0 ]] || { log "needs root (debootstrap, mounts, network namespaces)"; exit 125; }

# ---- 1. the cached root (made once, under a lock) --------------------------------------------------------
create_root() {
  local tmp=$ROOT.tmp t0 t1 t2
  rm -rf --one-file-system -- "$tmp"
  mkdir -p "$(dirname "$ROOT")"
  command -v debootstrap >/dev/null || { log "debootstrap missing (apt-get install debootstrap)"; exit 125; }
  t0=$(date +%s)
  local dbs=(--variant=minbase --components="$COMPONENTS")
  if [[ $KEYRING == ubuntu ]]; then
    # The distribution's archive key, from its keyring package (pinned): debootstrap checks the Release file.
    local kr
    kr=$(bash "$(dirname "${BASH_SOURCE[0]}")/ubuntu-keyring.sh" "$ROOT.keyring" "$MIRROR") || { log "no Ubuntu archive key"; exit 125; }
    dbs+=(--keyring="$kr")
  fi
  log "debootstrap ${dbs[*]} $RELEASE $tmp $MIRROR $SCRIPT"
  # shellcheck disable=SC2086  # ($SCRIPT: empty or one path)
  debootstrap "${dbs[@]}" "$RELEASE" "$tmp" "$MIRROR" $SCRIPT >"$ROOT.debootstrap.log" 2>&1 \
    || { tail -20 "$ROOT.debootstrap.log" >&2; log "debootstrap failed (log: $ROOT.debootstrap.log)"; exit 125; }
  [[ -n "$SOURCES" ]] && printf '%s\n' "$SOURCES" >"$tmp/etc/apt/sources.list"
  t1=$(date +%s)
  # No service may start inside the tree while packages are installed.
  printf '#!/bin/sh\nexit 101\n' >"$tmp/usr/sbin/policy-rc.d"
  chmod +x "$tmp/usr/sbin/policy-rc.d"
  log "apt-get install $PKGS"
  # shellcheck disable=SC2016  # (expanded by the inner shell)
  unshare -m -- /bin/sh -euc '
    r=$1; shift
    mount -t proc proc "$r/proc"; mount --rbind /sys "$r/sys"; mount --rbind /dev "$r/dev"
    mount -t tmpfs tmpfs "$r/run"; mount -t tmpfs tmpfs "$r/tmp"
    cp -L /etc/resolv.conf "$r/etc/resolv.conf"
    chroot "$r" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 \
      /bin/sh -euc "apt-get update -qq && apt-get install -y -qq --no-install-recommends $* && apt-get clean"
  ' sh "$tmp" "$PKGS" >"$ROOT.apt.log" 2>&1 \
    || { tail -20 "$ROOT.apt.log" >&2; log "apt-get in the root failed (log: $ROOT.apt.log)"; exit 125; }
  if [[ " $PKGS " != *" nodejs "* ]]; then
    local node
    node=$(command -v node) || { log "no node on the host to copy into the root"; exit 125; }
    install -m 755 "$(realpath "$node")" "$tmp/usr/local/bin/node"
  fi
  t2=$(date +%s)
  {
    # shellcheck disable=SC2016  # (a dpkg-query format)
    chroot "$tmp" /usr/bin/dpkg-query -W -f '${Package} ${Version}\n' libc6 libnftables1 nftables iproute2
    echo "node $(chroot "$tmp" /usr/bin/env PATH=/usr/local/bin:/usr/bin node --version)"
  } >"$tmp$VERSIONS" || { log "the root's versions cannot be read"; exit 125; }
  rm -rf --one-file-system -- "$ROOT"
  mv -- "$tmp" "$ROOT"
  log "root ready in $((t2 - t0)) s (debootstrap $((t1 - t0)) s, apt $((t2 - t1)) s)"
}

mkdir -p "$(dirname "$ROOT")"
exec 9>"$ROOT.lock"
flock 9
if [[ -n "${NFTN_USERLAND_REBUILD:-}" || ! -s "$ROOT$VERSIONS" ]]; then
  create_root
fi
flock -u 9 # concurrent runs may share the root; only making it is serialised
if [[ $PREPARE_ONLY -eq 1 ]]; then
  log "root $ROOT: $(tr '\n' ' ' <"$ROOT$VERSIONS")"
  exit 0
fi
PROJ=$(realpath -e -- "$1") || { log "no such directory: $1"; exit 2; }
[[ -d "$PROJ" ]] || { log "not a directory: $PROJ"; exit 2; }
shift
case "$PROJ" in / | /proc | /proc/* | /sys | /sys/* | /dev | /dev/* | /run | /run/*) log "refusing to bind $PROJ"; exit 2 ;; esac

# ---- 2. environment inside ------------------------------------------------------------------------------
envs=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "TERM=${TERM:-dumb}")
read -ra extra <<<"${NFTN_USERLAND_PASS_ENV:-}"
mapfile -t prefixed < <(compgen -e | grep -E '^(NFTABLES_NODE_|VITEST_)' || true)
for v in CI STRESS "${extra[@]}" "${prefixed[@]}"; do
  [[ -n "${!v+x}" ]] && envs+=("$v=${!v}")
done

# ---- 3. mount, pivot_root, run (inside a private mount namespace) -------------------------------------------
# pivot_root, not chroot: the kernel refuses unshare(CLONE_NEWUSER) to a chrooted process (EPERM), and the
# suite runs children under `unshare --user`. The new root must be a mount point (pivot_root, and
# `ip netns exec` runs `mount --make-rslave /`). A fresh tmpfs /run gives the tree its own /run/netns.
# Inner script: $1 root, $2 project, $3 leftover_ok, then "--", env assignments, "--", command.
# shellcheck disable=SC2016  # (expanded by the inner shell)
inner='
set -u
r=$1 proj=$2 leftover_ok=$3; shift 3
[ "$1" = -- ] && shift
envs=(); while [ "$1" != -- ]; do envs+=("$1"); shift; done; shift
fail() { echo "userland: $*" >&2; exit 125; }
mount --make-rprivate / || fail "make-rprivate /"
mount --bind "$r" "$r" || fail "bind $r"
mount -t proc proc "$r/proc" || fail "proc"
mount --rbind /sys "$r/sys" || fail "sys"
mount --rbind /dev "$r/dev" || fail "dev"
mount -t tmpfs -o mode=755 tmpfs "$r/run" || fail "run"
mount -t tmpfs -o mode=1777 tmpfs "$r/tmp" || fail "tmp"
mkdir -p "$r$proj" "$r/.oldroot" || fail "mkdir"
mount --bind "$proj" "$r$proj" || fail "bind $proj"
cd "$r" && pivot_root . .oldroot || fail "pivot_root"
cd / && umount -l /.oldroot || fail "umount old root"
/usr/bin/env -i "${envs[@]}" /bin/bash -c "cd \"\$0\" && exec \"\$@\"" "$proj" "$@"
rc=$?
left=$(find /run/netns -mindepth 1 -maxdepth 1 -printf "%f " 2>/dev/null)
if [ -n "$left" ]; then
  echo "userland: network namespaces left behind: $left" >&2
  [ "$rc" -eq 0 ] && [ -z "$leftover_ok" ] && rc=123
fi
exit $rc
'
# No trap and no ignored signals here: an ignored SIGINT would be inherited by the tests' children.
set +e
unshare -m --propagation private -- /bin/bash -c "$inner" inner "$ROOT" "$PROJ" "${NFTN_LEFTOVER_OK:-}" \
  -- "${envs[@]}" -- "$@"
exit $?
