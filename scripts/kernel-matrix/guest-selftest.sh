#!/bin/bash
# guest-selftest.sh [SECONDS]: run inside the kernel-matrix guest (run-in-kernel.sh . bash <this>).
# Proves the guest itself is stable before any firewall test runs in it: a TCP stream through a bridge while
# pings start and stop in other namespaces, no nftables at all. Each ping's SO_TIMESTAMP socket can flip the
# kernel's receive-timestamp static key; without the pin in guest-stage2.sh this panicked the 6.12 guest
# under multi-threaded TCG within seconds ("Oops: int3"), which a firewall test would report as its own crash.
# Exit 0: the guest survived SECONDS (default 30) of it.
set -u
dur=${1:-30}
ns=(kmst-br kmst-a kmst-b)
cleanup() { for n in "${ns[@]}"; do ip netns del "$n" 2>/dev/null; done; }
trap cleanup EXIT
for n in "${ns[@]}"; do ip netns add "$n" || exit 1; done
ip -n kmst-br link add br0 type bridge forward_delay 0 stp_state 0
ip -n kmst-br addr add 10.9.0.1/24 dev br0
ip -n kmst-br link set br0 up
for side in a b; do
  ip -n kmst-br link add "t$side" type veth peer name eth0 netns "kmst-$side"
  ip -n kmst-br link set "t$side" master br0 up
  ip -n "kmst-$side" link set lo up
  ip -n "kmst-$side" link set eth0 up
done
ip -n kmst-a addr add 10.9.0.2/24 dev eth0
ip -n kmst-b addr add 10.9.0.3/24 dev eth0
ip netns exec kmst-b iperf3 -s -1 -D || exit 1
sleep 1
end=$((SECONDS + dur))
( while [ $SECONDS -lt $end ]; do ip netns exec kmst-a ping -n -q -c1 -W1 10.9.0.3 >/dev/null; done ) &
( while [ $SECONDS -lt $end ]; do ip netns exec kmst-br ping -n -q -c1 -W1 10.9.0.2 >/dev/null; done ) &
ip netns exec kmst-a iperf3 -c 10.9.0.3 -t "$dur" >/dev/null || { echo "guest-selftest: the TCP stream failed" >&2; exit 1; }
wait
echo "guest-selftest: a TCP stream and pings through a bridge for ${dur}s: the guest kernel stayed up"
