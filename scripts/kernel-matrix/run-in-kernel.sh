#!/usr/bin/env bash
# run-in-kernel.sh [options] <dir> <command...>
# run-in-kernel.sh [--kernel SUITE] --prepare
#
# Runs <command> with cwd=<dir> inside a qemu guest booting a stock Debian kernel with its own modules
# (bridge conntrack, bridge reject: the path this machine's kernel cannot run), on this machine's root
# filesystem (9p, read-only, under a RAM overlay: the guest may write anywhere, only --rw paths reach the
# host). Also Ubuntu's: noble's linux-image-generic (6.8, the kernel of the LTS most hosts run). The command's stdout/stderr stream live; the script exits with the command's status. The kernel is
# fetched with `apt-get download` and unpacked with `dpkg -x` (never installed) into a cache on first use.
#
# Options:
#   --kernel bookworm|trixie|noble  the suite whose stock kernel to boot: Debian's linux-image-amd64 or
#                              Ubuntu 24.04's linux-image-generic (default: $NFTN_KERNEL or trixie)
#   --cpus N                   vCPUs (default 2)          --mem MB       guest memory (default 4096)
#   --accel auto|kvm|tcg       auto = KVM only if kvm_intel/kvm_amd is loaded, else TCG (default auto)
#   --timeout S                kill the guest after S seconds (default 3600)
#   --modules "m1 m2 ..."      modules to modprobe before the command (default: the netfilter/bridge set below)
#   --env NAME[=VALUE]         pass a variable (repeatable); PATH HOME LANG TERM CI STRESS NFTABLES_NODE_*
#                              VITEST_* are passed; PATH gets /usr/sbin:/usr/bin:/sbin:/bin in front
#   --rw PATH                  share host PATH read-write (repeatable)
#   --console                  print the guest's kernel console log to stderr afterwards
#   --prepare                  only fetch and unpack the kernel and build the initramfs, then exit
# Exit status: the command's; 123 the command succeeded but left network namespaces behind
# (NFTN_LEFTOVER_OK=1: ignore); 124 timeout; 125 the guest failed before or around the command (the
# console's tail is shown); 2 usage.
# Environment: NFTN_CACHE (default /var/cache/nftables-node/kernels), NFTN_MIRROR (Debian mirror; default:
# this machine's apt mirror on Debian, else deb.debian.org), NFTN_UBUNTU_MIRROR (default archive.ubuntu.com),
# NFTN_REFRESH=1 (fetch the suite's newest kernel).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SUITE=${NFTN_KERNEL:-trixie} CPUS=2 MEM=4096 ACCEL=auto TIMEOUT=3600 CONSOLE=0 PREPARE_ONLY=0
MODULES="nf_tables nf_conntrack nf_conntrack_bridge nft_reject_bridge nft_ct br_netfilter bridge veth tun"
ENVS=(PATH HOME LANG TERM CI STRESS)
RW=()
CACHE=${NFTN_CACHE:-/var/cache/nftables-node/kernels}

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
log() { echo "run-in-kernel: $*" >&2; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --kernel) SUITE=$2; shift 2 ;;
    --cpus) CPUS=$2; shift 2 ;;
    --mem) MEM=$2; shift 2 ;;
    --accel) ACCEL=$2; shift 2 ;;
    --timeout) TIMEOUT=$2; shift 2 ;;
    --modules) MODULES=$2; shift 2 ;;
    --env) ENVS+=("$2"); shift 2 ;;
    --rw) RW+=("$(realpath -e "$2")"); shift 2 ;;
    --console) CONSOLE=1; shift ;;
    --prepare) PREPARE_ONLY=1; shift ;;
    -h | --help) usage ;;
    --) shift; break ;;
    -*) log "unknown option $1"; usage ;;
    *) break ;;
  esac
done
case "$SUITE" in bookworm | trixie | noble) ;; *) log "--kernel must be bookworm, trixie or noble"; exit 2 ;; esac
[[ $PREPARE_ONLY -eq 1 || $# -ge 2 ]] || usage
[[ $(id -u) -eq 0 ]] || { log "needs root (cache in $CACHE, apt-get download)"; exit 125; }

QEMU=$(command -v qemu-system-x86_64) || { log "qemu-system-x86_64 missing (apt-get install --no-install-recommends qemu-system-x86)"; exit 125; }
for t in gcc python3 dpkg apt-get xz zstd flock; do command -v $t >/dev/null || { log "$t missing"; exit 125; }; done

# ---------------------------------------------------------------- kernel cache (first use only)
mirror() {
  if [[ -n "${NFTN_MIRROR:-}" ]]; then echo "$NFTN_MIRROR"; return; fi
  local u=
  # Only a Debian host's own mirror is a Debian mirror (an Ubuntu CI runner's is not).
  if grep -qx 'ID=debian' /etc/os-release 2>/dev/null; then
    u=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/{for(i=2;i<=NF;i++) if ($i !~ /security/) {print $i; exit}}')
    [[ -n "$u" ]] || u=$(awk '$1=="deb" && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  fi
  echo "${u:-http://deb.debian.org/debian}"
}

# Unpacks the suite's newest kernel image (and, on Ubuntu, its separate modules package) and this machine's
# kmod into $CACHE/<suite>-<kver>/ and sets KDIR.
prepare_kernel() {
  local cur="$CACHE/$SUITE.current"
  if [[ -z "${NFTN_REFRESH:-}" && -e "$cur/.ready" ]]; then KDIR=$(readlink -f "$cur"); return; fi
  log "preparing the $SUITE kernel in $CACHE (first use)"
  local apt="$CACHE/apt-$SUITE"
  local dl="$CACHE/dl"
  rm -rf "$dl" && mkdir -p "$apt/lists/partial" "$dl"
  local kr signed= meta
  if [[ $SUITE == noble ]]; then
    # Ubuntu's archive key from its pinned keyring package; the kernel updates are in noble-updates.
    local um=${NFTN_UBUNTU_MIRROR:-http://archive.ubuntu.com/ubuntu}
    kr=$(bash "$HERE/../ubuntu-keyring.sh" "$CACHE/ubuntu-keyring" "$um") || { log "no Ubuntu archive key"; exit 125; }
    printf 'deb [signed-by=%s] %s noble main\ndeb [signed-by=%s] %s noble-updates main\n' "$kr" "$um" "$kr" "$um" >"$apt/sources.list"
    meta=linux-image-generic
  else
    # Debian's keyring by path: on a non-Debian host (an Ubuntu CI runner) apt trusts no Debian key by default.
    kr=/usr/share/keyrings/debian-archive-keyring.gpg
    [[ -r $kr ]] && signed="[signed-by=$kr] "
    echo "deb $signed$(mirror) $SUITE main" >"$apt/sources.list"
    meta=linux-image-amd64
  fi
  # A private sources list and lists dir: the host's apt state is neither read nor changed.
  local o=(-qq -oDir::Etc::SourceList="$apt/sources.list" -oDir::Etc::SourceParts=/dev/null -oDir::State::Lists="$apt/lists"
    -oAPT::Sandbox::User=root -oAPT::Architecture=amd64)
  apt-get "${o[@]}" update >&2
  local pkg
  pkg=$(apt-cache "${o[@]}" depends "$meta" | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
  [[ -n "$pkg" ]] || { log "cannot resolve $meta in $SUITE"; exit 125; }
  local kver=${pkg#linux-image-}
  KDIR="$CACHE/$SUITE-$kver"
  if [[ ! -e "$KDIR/.ready" ]]; then
    rm -rf "$KDIR" && mkdir -p "$KDIR"
    local pkgs=("$pkg") p
    # Ubuntu ships the modules apart (netfilter's are in linux-modules-<kver>, not in -extra).
    [[ $SUITE == noble ]] && pkgs+=("linux-modules-$kver")
    (cd "$dl" && apt-get "${o[@]}" download "${pkgs[@]}" >&2)
    # kmod from the host's own apt sources: it must run on the host's libc (depmod here, modprobe in the guest).
    (cd "$dl" && apt-get -qq -oAPT::Sandbox::User=root download kmod >&2)
    for p in "${pkgs[@]}"; do dpkg -x "$dl/${p}"_*.deb "$KDIR/root"; done
    dpkg -x "$dl"/kmod_*.deb "$KDIR/kmod"
    [[ -e "$KDIR/root/lib" ]] || ln -sfn usr/lib "$KDIR/root/lib" # trixie ships usr/lib/modules, bookworm lib/modules
    local km="$KDIR/kmod/bin" t
    for t in depmod modprobe; do ln -sfn kmod "$km/$t"; done
    "$km/depmod" -b "$KDIR/root" "$kver"
    echo "$kver" >"$KDIR/kver"
    cp "$KDIR/root/boot/vmlinuz-$kver" "$KDIR/vmlinuz"
    touch "$KDIR/.ready"
    rm -rf "$dl"
  fi
  ln -sfn "$(basename "$KDIR")" "$cur"
}

# The initramfs (~2.5 MB, uncompressed): init.c built statically plus the decompressed modules needed to reach
# the root (virtio, 9p, overlay) in dependency order. Keyed by the sources, so editing init.c takes effect.
prepare_initrd() {
  local key
  key=$(cat "$HERE/init.c" "$HERE/mkcpio.py" | sha256sum | cut -c1-12)
  INITRD="$KDIR/initrd-$key.cpio"
  [[ -s "$INITRD" ]] && return
  local ird="$KDIR/initrd.d" km="$KDIR/kmod/bin" kver m f b
  kver=$(cat "$KDIR/kver")
  rm -rf "$ird" && mkdir -p "$ird/modules"
  gcc -static -Os -o "$ird/init" "$HERE/init.c"
  : >"$ird/modules/order"
  for m in virtio_pci virtio_console 9pnet_virtio 9p overlay; do # virtio_pci/console: modules in 6.1, built in since
    while read -r f; do
      b=$(basename "$f"); b=${b%.xz}; b=${b%.zst}
      grep -qx "$b" "$ird/modules/order" && continue
      case "$f" in *.xz) xz -dc "$f" >"$ird/modules/$b" ;; *.zst) zstd -qdc "$f" >"$ird/modules/$b" ;; *) cp "$f" "$ird/modules/$b" ;; esac
      echo "$b" >>"$ird/modules/order"
    done < <("$km/modprobe" -d "$KDIR/root" -S "$kver" --show-depends "$m" | awk '$1=="insmod"{print $2}')
  done
  python3 "$HERE/mkcpio.py" "$ird" >"$INITRD.tmp"
  mv "$INITRD.tmp" "$INITRD"
  rm -rf "$ird"
}

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9 # concurrent first uses share one download
T_PREP=$(date +%s.%N)
prepare_kernel
prepare_initrd
exec 9>&-
KVER=$(cat "$KDIR/kver")
if [[ $PREPARE_ONLY -eq 1 ]]; then
  awk -v t0="$T_PREP" -v t1="$(date +%s.%N)" -v k="$KVER" -v d="$KDIR" \
    'BEGIN{printf "run-in-kernel: kernel %s ready in %s (%.1fs)\n", k, d, t1-t0}' >&2
  exit 0
fi
WORKDIR=$(realpath -e "$1")
shift

# ---------------------------------------------------------------- one run
RUN=$(mktemp -d "${TMPDIR:-/tmp}/nftn-km.XXXXXX")
QPID='' RELAYS=()
# shellcheck disable=SC2317  # (run by the EXIT trap)
cleanup() {
  if [[ -n "$QPID" ]] && kill -0 "$QPID" 2>/dev/null; then kill "$QPID" 2>/dev/null || true; wait "$QPID" 2>/dev/null || true; fi
  local p
  for p in "${RELAYS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$RUN"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cp "$HERE/guest-stage2.sh" "$RUN/stage2.sh"
printf 'KM_KVER=%q\nKM_MODDIR=%q\nKM_KMOD=%q\nKM_MODULES=%q\nKM_RW=%q\nKM_LEFTOVER_OK=%q\n' \
  "$KVER" "$KDIR/root/lib/modules/$KVER" "$KDIR/kmod/bin/kmod" "$MODULES" "${RW[*]:-}" "${NFTN_LEFTOVER_OK:-}" >"$RUN/env.sh"
# Under TCG a pyenv/asdf shim costs ~9 s per start (python3 -> bash -> pyenv -> python); the tests run
# `timeout 3 python3 ...`, so the distribution's binaries must come first.
GUEST_PATH=/usr/sbin:/usr/bin:/sbin:/bin:${PATH:-}
mapfile -t prefixed < <(compgen -e | grep -E '^(NFTABLES_NODE_|VITEST_)' || true)
{
  for e in "${ENVS[@]}" "${prefixed[@]}"; do
    if [[ "$e" == PATH ]]; then printf 'export PATH=%q\n' "$GUEST_PATH"
    elif [[ "$e" == *=* ]]; then printf 'export %q\n' "$e"
    elif [[ -n "${!e+x}" ]]; then printf 'export %s=%q\n' "$e" "${!e}"; fi
  done
  printf 'cd -- %q || exit 126\nexec' "$WORKDIR"
  printf ' %q' "$@"
  echo
} >"$RUN/cmd.sh"

args=(-nodefaults -no-user-config -display none -no-reboot -machine q35 -smp "$CPUS" -m "$MEM"
  -kernel "$KDIR/vmlinuz" -initrd "$INITRD"
  -append "console=ttyS0 quiet loglevel=4 panic=-1 rdinit=/init"
  -serial "file:$RUN/console.log"
  -virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap"
  -virtfs "local,path=$RUN,mount_tag=kmrun,security_model=none,multidevs=remap"
  -device virtio-serial-pci
  -chardev "pipe,id=kmout,path=$RUN/out" -device "virtserialport,chardev=kmout,name=km.out"
  -chardev "pipe,id=kmerr,path=$RUN/err" -device "virtserialport,chardev=kmerr,name=km.err")
i=0
for d in "${RW[@]}"; do
  args+=(-virtfs "local,path=$d,mount_tag=kmrw$i,security_model=none,multidevs=remap")
  i=$((i + 1))
done
case "$ACCEL" in
  kvm) args+=(-accel kvm -cpu host) ;;
  tcg) args+=(-accel "tcg,thread=multi" -cpu max) ;;
  auto) # A PVM-only /dev/kvm (nested in a microVM) opens, but the guest dies with "KVM internal error ...
    # emulation failure" and qemu hangs instead of exiting: use KVM only with a hardware backend.
    if [[ -w /dev/kvm && (-d /sys/module/kvm_intel || -d /sys/module/kvm_amd) ]]; then args+=(-accel kvm -cpu host)
    else args+=(-accel "tcg,thread=multi" -cpu max); fi ;;
  *) log "--accel must be auto, kvm or tcg"; exit 2 ;;
esac

# The guest's stdout/stderr ports are qemu pipe chardevs on FIFOs (NAME.in / NAME.out), relayed by cat onto
# this script's own descriptors: live, and appended at the caller's offset (qemu re-opening /proc/self/fd/1
# would overwrite a regular file from offset 0).
# A guest that dies before the command starts (no t-start: an int3 oops while the kernel patches its
# own text under multi-threaded TCG has been seen here) ran nothing: boot it again, at most 3 times.
for boot in 1 2 3; do
  rm -f "$RUN/out.in" "$RUN/out.out" "$RUN/err.in" "$RUN/err.out" "$RUN/t-start" "$RUN/rc"
  mkfifo "$RUN/out.in" "$RUN/out.out" "$RUN/err.in" "$RUN/err.out"
  cat "$RUN/out.out" &
  RELAYS+=($!)
  cat "$RUN/err.out" >&2 &
  RELAYS+=($!)
  T0=$(date +%s.%N)
  timeout -k 10 "$TIMEOUT" "$QEMU" "${args[@]}" </dev/null &
  QPID=$!
  set +e
  wait "$QPID"
  qrc=$?
  set -e
  QPID=''
  T1=$(date +%s.%N)
  # Give each relay an EOF even if qemu never opened its FIFO (an O_RDWR open of a FIFO never blocks).
  for f in out err; do exec 3<>"$RUN/$f.out"; exec 3>&-; done
  wait "${RELAYS[@]}" 2>/dev/null || true
  RELAYS=()
  [[ -s "$RUN/rc" || -e "$RUN/t-start" || $qrc -eq 124 || $boot -eq 3 ]] && break
  log "the guest died while booting (qemu exit $qrc; boot $boot of 3), booting again"
  sed -n "$(grep -n -m1 -E 'Oops:|BUG:|Kernel panic' "$RUN/console.log" 2>/dev/null | cut -d: -f1 || echo 1),+3p" "$RUN/console.log" >&2 || true
done

if [[ -s "$RUN/rc" ]]; then
  rc=$(cat "$RUN/rc")
else
  rc=125
  if [[ $qrc -eq 124 ]]; then rc=124; log "timeout after ${TIMEOUT}s"; fi
  # The console from the first oops on (its header names the fault: the tail alone shows only the panic),
  # else its last lines.
  first=$(grep -n -m1 -E 'Oops:|BUG:|cut here|general protection|Kernel panic' "$RUN/console.log" 2>/dev/null | cut -d: -f1 || true)
  log "the guest left no exit status (qemu exit $qrc); its console${first:+ from the first fault}:"
  if [[ -n $first && $CONSOLE -eq 0 ]]; then sed -n "${first},$((first + 150))p" "$RUN/console.log" >&2
  elif [[ $CONSOLE -eq 0 ]]; then tail -n 40 "$RUN/console.log" >&2 || true; fi
fi
if [[ $CONSOLE -eq 1 ]]; then log "guest console:"; cat "$RUN/console.log" >&2; fi
awk -v t0="$T0" -v t1="$T1" -v s="$(cat "$RUN/t-start" 2>/dev/null || echo "$T1")" -v e="$(cat "$RUN/t-end" 2>/dev/null || echo "$T1")" \
  -v k="$KVER" -v rc="$rc" 'BEGIN{printf "run-in-kernel: kernel %s, exit %s; boot %.1fs, command %.1fs, total %.1fs\n", k, rc, s-t0, e-s, t1-t0}' >&2
exit "$rc"
