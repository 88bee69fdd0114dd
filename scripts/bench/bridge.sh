#!/usr/bin/env bash
# bridge + host-local, ours against the reference's, in the same run:
# ADD and DEL medians without and with ipMasq, the kernel's floor for DEL
# (`ip link del` of the same kind of veth), peak memory, and the ADD of the
# 500th container on one bridge against the first.
# Run by scripts/bench.sh inside a private namespace; needs BIN and REF.
#
#   ROUNDS=30 SCALE=500 scripts/bench.sh bridge
set -euo pipefail
: "${BIN:?run through scripts/bench.sh}" "${REF:?run through scripts/bench.sh}"
rounds=${ROUNDS:-30}
scale=${SCALE:-500}
dir=$(mktemp -d)
# shellcheck source=lib/timing.sh
. "$(dirname "$0")/lib/timing.sh"
ctr="$dir/ctr"
new_netns "$ctr"
export CNI_CONTAINERID=bench1 CNI_NETNS="$ctr" CNI_IFNAME=eth0

conf() { # IMPL MASQ SUBNET
  printf '{"cniVersion":"1.0.0","name":"bench-%s","type":"bridge","bridge":"br-%s","isGateway":true,"ipMasq":%s,"ipam":{"type":"host-local","subnet":"%s","dataDir":"%s/ipam"}}' \
    "$1" "$1" "$2" "$3" "$dir"
}
run() { # BINDIR VERB CONF
  CNI_PATH=$1 CNI_COMMAND=$2 "$1/bridge" <<<"$3"
}
declare -A dirs=([ours]=$BIN [ref]=$REF)
declare -A subnet=([ours]=10.31.0.0/24 [ref]=10.32.0.0/24)

round() {
  for impl in ours ref; do
    for masq in false true; do
      c=$(conf "$impl" "$masq" "${subnet[$impl]}")
      timed "$impl.$masq.ADD" run "${dirs[$impl]}" ADD "$c"
      timed "$impl.$masq.DEL" run "${dirs[$impl]}" DEL "$c"
    done
  done
  ip link add bench-floor type veth peer name eth0 netns "$ctr"
  timed floor ip link del bench-floor
}

for _ in 1 2 3; do round; done # warm up: bridges exist, caches are hot
rm -f "$dir"/times.*
for _ in $(seq "$rounds"); do round; done

# Peak memory of one ADD (the DEL after it is not measured).
declare -A rss
for impl in ours ref; do
  c=$(conf "$impl" true "${subnet[$impl]}")
  rss[$impl]=$(CNI_PATH=${dirs[$impl]} CNI_COMMAND=ADD peak_rss_kb "${dirs[$impl]}/bridge" <<<"$c")
  run "${dirs[$impl]}" DEL "$c" >/dev/null
done

# Nothing may be left behind.
if iptables-save -t nat | grep -q -- '-j CNI-'; then echo "bridge bench: NAT rules left behind" >&2; exit 1; fi
if ip -o link | grep -q ' veth'; then echo "bridge bench: veths left behind" >&2; exit 1; fi

echo "bridge + host-local, median of $rounds, ms (ours / reference):"
for masq in false true; do
  label=plain; [ "$masq" = true ] && label="ipMasq"
  for verb in ADD DEL; do
    o=$(median "ours.$masq.$verb"); r=$(median "ref.$masq.$verb")
    printf '  %-6s %-7s ours %7s   reference %7s   %s\n' "$verb" "$label" "$o" "$r" "$(ratio "$o" "$r")"
  done
done
floor=$(median floor)
printf '  DEL floor: ip link del of a veth %s ms; our DEL %s of it, with ipMasq %s\n' "$floor" \
  "$(ratio "$(median ours.false.DEL)" "$floor")" "$(ratio "$(median ours.true.DEL)" "$floor")"
printf '  peak RSS of one ADD with ipMasq: ours %s KiB, reference %s KiB, %s\n' "${rss[ours]}" "${rss[ref]}" \
  "$(ratio "${rss[ours]}" "${rss[ref]}")"

# The n-th container on one bridge: ADD time of containers 1-10 against the last 10.
scale_run() { # IMPL
  local impl=$1 c i
  c=$(printf '{"cniVersion":"1.0.0","name":"scale-%s","type":"bridge","bridge":"brs-%s","isGateway":true,"ipam":{"type":"host-local","subnet":"10.4%s.0.0/16","dataDir":"%s/ipam"}}' \
    "$impl" "$impl" "$([ "$impl" = ours ] && echo 0 || echo 1)" "$dir")
  for i in $(seq "$scale"); do
    new_netns "$dir/s-$impl-$i"
    CNI_CONTAINERID="s$i" CNI_NETNS="$dir/s-$impl-$i" timed "scale.$impl" run "${dirs[$impl]}" ADD "$c"
  done
  for i in $(seq "$scale"); do
    CNI_CONTAINERID="s$i" CNI_NETNS="$dir/s-$impl-$i" run "${dirs[$impl]}" DEL "$c" >/dev/null
    umount "$dir/s-$impl-$i" 2>/dev/null || true
  done
}
for impl in ours ref; do
  scale_run "$impl"
  first=$(median "scale.$impl" 1 10); last=$(median "scale.$impl" $((scale - 9)) "$scale")
  printf '  %-4s container %d on one bridge: %s ms against %s ms for the first 10 (%s)\n' "$impl" "$scale" "$last" "$first" "$(ratio "$last" "$first")"
done
umount "$ctr"
rm -rf "$dir"
