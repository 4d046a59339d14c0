#!/bin/bash
# Stage 2 of the kernel-matrix guest, started by init.c as the host's bash in an overlay of the host's root.
# Sets up the pseudo filesystems, the distro kernel's modules and kmod, runs the command (cmd.sh) with its
# stdout/stderr on two virtio-serial ports, and leaves its exit status in /.km/rc for the host.
set -u
# shellcheck source=/dev/null
. /.km/env.sh

note() { echo "km-stage2: $*" >/dev/kmsg 2>/dev/null || echo "km-stage2: $*" >&2; }

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null || true
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o mode=1777 shm /dev/shm
# A fresh /run: the guest's /run/netns starts empty whatever the host has there.
mount -t tmpfs -o mode=0755 run /run
mkdir -p /run/netns /run/lock
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null || true
ln -sfn /proc/self/fd /dev/fd
ln -sfn /proc/self/fd/0 /dev/stdin
ln -sfn /proc/self/fd/1 /dev/stdout
ln -sfn /proc/self/fd/2 /dev/stderr
hostname km-guest

# The distro kernel's modules (extracted on the host, seen through the overlay) and kmod's tools. Setting the
# kernel's modprobe path makes module autoload work too (e.g. nft_meta_bridge on first use).
mkdir -p /usr/lib/modules
ln -sfn "$KM_MODDIR" "/usr/lib/modules/$KM_KVER"
for t in modprobe insmod rmmod lsmod depmod modinfo; do ln -sfn "$KM_KMOD" "/usr/sbin/$t"; done
echo /usr/sbin/modprobe >/proc/sys/kernel/modprobe

out=/dev/null err=/dev/null
for p in /sys/class/virtio-ports/*; do
  case "$(cat "$p/name" 2>/dev/null)" in
    km.out) out=/dev/${p##*/} ;;
    km.err) err=/dev/${p##*/} ;;
  esac
done

fail() {
  note "$*"
  echo "run-in-kernel (guest): $*" >"$err"
  echo 125 >/.km/rc
  sync
  exit 0
}

for m in $KM_MODULES; do
  modprobe "$m" 2>>/.km/modprobe.log || fail "modprobe $m failed: $(tail -n1 /.km/modprobe.log)"
done
ip link set lo up

# Keep the kernel's receive-timestamp static key (netstamp_needed_key) switched on for the whole run. Every
# ping opens a socket with SO_TIMESTAMP, and the first/last one flips that key, which rewrites the receive
# path's code with int3 patching; under multi-threaded TCG a vCPU can still run the old int3 after the patch
# completed ("Oops: int3" in netif_rx_internal / __netif_receive_skb_core / ip_local_deliver_finish, then a
# panic; reproduced in seconds with a TCP stream and pings through a bridge, no nftables involved). One ping
# holding a timestamping socket from here to the end means the tests' pings never flip it.
ping -q -n -i 86400 127.0.0.1 >/dev/null 2>&1 &
stamp_pin=$!

# Host paths shared read-write (--rw), mounted over their overlay view.
i=0
for d in $KM_RW; do
  mount -t 9p -o "trans=virtio,version=9p2000.L,msize=512000,cache=none" "kmrw$i" "$d" || fail "mount --rw $d failed"
  i=$((i + 1))
done

lsmod >/.km/lsmod.txt 2>&1
date +%s.%N >/.km/t-start
/bin/bash /.km/cmd.sh </dev/null >"$out" 2>"$err"
rc=$?
date +%s.%N >/.km/t-end
kill "$stamp_pin" 2>/dev/null

# Nothing may be left behind by the command (the guest's /run/netns is its own, so these are all its own).
left=$(find /run/netns -mindepth 1 -maxdepth 1 -printf '%f ' 2>/dev/null)
if [ -n "$left" ]; then
  echo "run-in-kernel (guest): network namespaces left behind: $left" >"$err"
  [ "$rc" -eq 0 ] && [ -z "$KM_LEFTOVER_OK" ] && rc=123
fi
echo "$rc" >/.km/rc
sync
exit 0
