#!/usr/bin/env bash
# The kernel paths for raw IP against ESP-in-UDP's, without crypto (bench/raw-ip-paths.c): two
# namespaces joined by a veth pair, one sender and one receiver per case, cases round-robin.
# AF_XDP ("xdp") is in copy mode both ways: veth has no zero-copy.
#
#   bash bench/raw-ip-paths.sh [ROUNDS=3] [SECONDS=4]
#
# Prints one line per sample ("tx→rx gbps kpps", with the ICMP unreachables the receiver's stack
# sent if any: a case should take all of its ESP) and the medians. Needs root.
set -euo pipefail
rounds=${1:-3}
secs=${2:-4}
here=$(cd "$(dirname "$0")" && pwd)
tag="rip$$"
a="${tag}a"
b="${tag}b"
bin=$(mktemp -d)
cleanup() {
    ip netns del "$a" 2>/dev/null || true
    ip netns del "$b" 2>/dev/null || true
    rm -rf "$bin"
}
trap cleanup EXIT
gcc -O2 -Wall -o "$bin/raw-ip-paths" "$here/raw-ip-paths.c"

ip netns add "$a"
ip netns add "$b"
ip link add "${tag}x" netns "$a" type veth peer "${tag}y" netns "$b"
ip -n "$a" addr add 10.231.0.1/24 dev "${tag}x"
ip -n "$b" addr add 10.231.0.2/24 dev "${tag}y"
ip -n "$a" link set "${tag}x" up
ip -n "$b" link set "${tag}y" up
ip -n "$a" link set lo up
ip -n "$b" link set lo up
mac=$(ip -n "$b" -o link show "${tag}y" | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p')
# The kernel senders need the neighbour; the AF_PACKET and AF_XDP ones are given its address.
ip -n "$a" neigh replace 10.231.0.2 lladdr "$mac" dev "${tag}x" nud permanent
# The xdp receiver's program on ${tag}y is all native XDP on veth needs here: redirecting into an
# AF_XDP socket asks nothing of the peer (no program, no GRO), and with one real queue per end
# everything arrives on queue 0, the one the socket is bound to.
unreach() {
    ip netns exec "$b" awk '$1 == "Icmp:" {
        if (!col) { for (i = 2; i <= NF; i++) if ($i == "OutDestUnreachs") col = i }
        else { print $col; exit }
    }' /proc/net/snmp
}

cases=("raw raw" "packet raw" "ring raw" "raw packet" "packet packet" "ring packet" "xdp raw" "packet xdp"
    "xdp xdp" "udp-gso udp-gro")
declare -A samples
for ((r = 1; r <= rounds; r++)); do
    for c in "${cases[@]}"; do
        read -r txm rxm <<<"$c"
        out=$(mktemp -p "$bin")
        icmp0=$(unreach)
        ip netns exec "$b" "$bin/raw-ip-paths" rx "$rxm" "${tag}y" $((secs + 2)) >"$out" &
        rx_pid=$!
        sleep 0.5
        # ESP sent before the receiver is set up (the xdp one takes longest) would draw ICMP.
        for ((w = 0; w < 100; w++)); do grep -qx ready "$out" && break; sleep 0.05; done
        ip netns exec "$a" "$bin/raw-ip-paths" tx "$txm" "${tag}x" 10.231.0.2 "$mac" "$secs"
        wait "$rx_pid"
        read -r _ _ _ _ gbps kpps < <(tail -n 1 "$out")
        icmp=$(($(unreach) - icmp0))
        note=""
        if ((icmp > 0)); then note=" ($icmp ICMP unreachable sent by the receiver)"; fi
        echo "round $r $txm→$rxm $gbps Gbit/s $kpps kpps$note"
        samples["$txm→$rxm"]+="$gbps "
    done
done
echo "median Gbit/s (load average $(cut -d' ' -f1-3 /proc/loadavg)):"
for c in "${cases[@]}"; do
    read -r txm rxm <<<"$c"
    med=$(tr ' ' '\n' <<<"${samples["$txm→$rxm"]}" | grep . | sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}')
    echo "  $txm→$rxm $med"
done
