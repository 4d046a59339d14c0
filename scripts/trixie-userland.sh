#!/usr/bin/env bash
# trixie-userland.sh <project dir> <command...>
# trixie-userland.sh --prepare
#
# Runs <command...> as root with cwd = <project dir> in a Debian 13 (trixie) root: trixie's glibc, node,
# libnftables1 and nft 1.1.3, iproute2, python3-nftables. Nothing is loaded across glibc versions (trixie's
# libnftables needs glibc >= 2.38, bookworm has 2.36); the addon built on the host needs at most GLIBC_2.34
# and loads there as it is. The host's kernel is used as it is.
#
# - The root is made once with debootstrap (minbase) + apt-get and cached in $NFTN_TRIXIE_ROOT (default
#   /var/cache/nftables-node/trixie-root). It is built in <root>.tmp and renamed only when complete, under a
#   lock, so a half-made root is never used. NFTN_TRIXIE_REBUILD=1 rebuilds it. --prepare only does this.
# - Everything is mounted in a private mount namespace whose root is then pivot_root'ed to the trixie tree:
#   nothing shows on the host, and the kernel drops every mount (and the netns bound under the tree's own
#   tmpfs /run/netns) when the command's last process ends, however it ends.
# - Environment: a clean one (PATH, HOME=/root, LANG=C.UTF-8, TERM) plus CI, STRESS, NFTABLES_NODE_*,
#   VITEST_* and the variables named in $NFTN_TRIXIE_PASS_ENV.
# Exit status: the command's; 123 the command succeeded but left network namespaces behind
# (NFTN_LEFTOVER_OK=1: ignore); 125 the root could not be made or entered; 2 usage.
set -euo pipefail

ROOT=${NFTN_TRIXIE_ROOT:-/var/cache/nftables-node/trixie-root}
MIRROR=${NFTN_MIRROR:-http://deb.debian.org/debian}
# The test suite's tools (those .ci/run installs on the host) plus node; no npm (it pulls ~340 node-*
# packages): run vitest as node_modules/.bin/vitest. procps for sysctl.
PKGS="nodejs libnftables1 nftables iproute2 iputils-ping netcat-openbsd socat iperf3 python3 python3-nftables procps"

log() { echo "trixie-userland: $*" >&2; }
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
  log "debootstrap --variant=minbase trixie $tmp $MIRROR"
  debootstrap --variant=minbase trixie "$tmp" "$MIRROR" >"$ROOT.debootstrap.log" 2>&1 \
    || { tail -20 "$ROOT.debootstrap.log" >&2; log "debootstrap failed (log: $ROOT.debootstrap.log)"; exit 125; }
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
    || { tail -20 "$ROOT.apt.log" >&2; log "apt-get in the trixie root failed (log: $ROOT.apt.log)"; exit 125; }
  t2=$(date +%s)
  # shellcheck disable=SC2016  # (a dpkg-query format)
  chroot "$tmp" /usr/bin/dpkg-query -W -f '${Package} ${Version}\n' libc6 nodejs libnftables1 nftables iproute2 \
    >"$tmp/etc/nftables-node-trixie.versions"
  rm -rf --one-file-system -- "$ROOT"
  mv -- "$tmp" "$ROOT"
  log "trixie root ready in $((t2 - t0)) s (debootstrap $((t1 - t0)) s, apt $((t2 - t1)) s)"
}

mkdir -p "$(dirname "$ROOT")"
exec 9>"$ROOT.lock"
flock 9
if [[ -n "${NFTN_TRIXIE_REBUILD:-}" || ! -s "$ROOT/etc/nftables-node-trixie.versions" ]]; then
  create_root
fi
flock -u 9 # concurrent runs may share the root; only making it is serialised
if [[ $PREPARE_ONLY -eq 1 ]]; then
  log "root $ROOT: $(tr '\n' ' ' <"$ROOT/etc/nftables-node-trixie.versions")"
  exit 0
fi
PROJ=$(realpath -e -- "$1") || { log "no such directory: $1"; exit 2; }
[[ -d "$PROJ" ]] || { log "not a directory: $PROJ"; exit 2; }
shift
case "$PROJ" in / | /proc | /proc/* | /sys | /sys/* | /dev | /dev/* | /run | /run/*) log "refusing to bind $PROJ"; exit 2 ;; esac

# ---- 2. environment inside ------------------------------------------------------------------------------
envs=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "TERM=${TERM:-dumb}")
read -ra extra <<<"${NFTN_TRIXIE_PASS_ENV:-}"
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
fail() { echo "trixie-userland: $*" >&2; exit 125; }
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
  echo "trixie-userland: network namespaces left behind: $left" >&2
  [ "$rc" -eq 0 ] && [ -z "$leftover_ok" ] && rc=123
fi
exit $rc
'
# No trap and no ignored signals here: an ignored SIGINT would be inherited by the tests' children.
set +e
unshare -m --propagation private -- /bin/bash -c "$inner" inner "$ROOT" "$PROJ" "${NFTN_LEFTOVER_OK:-}" \
  -- "${envs[@]}" -- "$@"
exit $?
