#!/usr/bin/env bash
# Masquerade setup and teardown for one attachment (one IPv4 address):
# ours (the ipmasq plugin's ADD and DEL, iptables and nftables backends)
# against the reference's, measured as the reference bridge + host-local
# ADD (DEL) with ipMasq minus the same without it, in the same run.
# Run by scripts/bench.sh inside a private namespace; needs BIN and REF.
#
#   ROUNDS=50 scripts/bench.sh ipmasq
set -euo pipefail
: "${BIN:?run through scripts/bench.sh}" "${REF:?run through scripts/bench.sh}"
rounds=${ROUNDS:-50}
dir=$(mktemp -d)
ctr="$dir/ctr"
touch "$ctr"
unshare --net="$ctr" true

export CNI_CONTAINERID=bench1 CNI_NETNS="$ctr" CNI_IFNAME=eth0 CNI_PATH="$REF"

ref_conf() {
  printf '{"cniVersion":"1.0.0","name":"benchref","type":"bridge","bridge":"cni0","isGateway":true,"ipMasq":%s,"ipam":{"type":"host-local","subnet":"10.22.0.0/24","dataDir":"%s"}}' "$1" "$dir/ipam"
}
ours_conf() {
  printf '{"cniVersion":"1.0.0","name":"benchours","type":"ipmasq","backend":"%s","prevResult":{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"%s"}],"ips":[{"interface":0,"address":"10.23.0.2/24","gateway":"10.23.0.1"}]}}' "$1" "$ctr"
}
ref_masq=$(ref_conf true)
ref_plain=$(ref_conf false)
ours_ipt=$(ours_conf iptables)
ours_nft=$(ours_conf nftables)
# Our process with nothing to do (ADD refuses a prevResult without
# addresses before touching netfilter): subtracted from ours as the
# bridge without ipMasq is subtracted from the reference.
ours_base='{"cniVersion":"1.0.0","name":"benchours","type":"ipmasq","prevResult":{"cniVersion":"1.0.0","ips":[]}}'

# times.NAME: one line per call, in microseconds.
call() { # NAME VERB BINARY CONF
  local t0 t1 out rc=0
  t0=$EPOCHREALTIME
  out=$(CNI_COMMAND=$2 "$3" <<<"$4") || rc=$?
  t1=$EPOCHREALTIME
  # The baseline is meant to fail (no addresses): it is the process alone.
  if [ $rc != 0 ] && [ "$1" != ours_base ]; then echo "ipmasq bench: $1 $2 failed: $out" >&2; exit 1; fi
  echo $(( (${t1/./} - ${t0/./}) )) >>"$dir/times.$1.$2"
}
round() {
  call ref_masq ADD "$REF/bridge" "$ref_masq"
  call ref_masq DEL "$REF/bridge" "$ref_masq"
  call ref_plain ADD "$REF/bridge" "$ref_plain"
  call ref_plain DEL "$REF/bridge" "$ref_plain"
  call ours_ipt ADD "$BIN/ipmasq" "$ours_ipt"
  call ours_ipt DEL "$BIN/ipmasq" "$ours_ipt"
  call ours_nft ADD "$BIN/ipmasq" "$ours_nft"
  call ours_nft DEL "$BIN/ipmasq" "$ours_nft"
  call ours_base ADD "$BIN/ipmasq" "$ours_base"
}

for _ in 1 2 3; do round; done # warm up: the bridge exists, caches are hot
rm -f "$dir"/times.*
for _ in $(seq "$rounds"); do round; done

# Nothing may be left behind by any of them.
if iptables-save -t nat | grep -q -- '-j CNI-'; then echo "ipmasq bench: iptables rules left behind" >&2; exit 1; fi

median() { sort -n "$dir/times.$1.$2" | awk '{a[NR]=$1} END {m = (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2; printf "%.2f", m / 1000}'; }
base=$(median ours_base ADD)
for verb in ADD DEL; do
  what=setup; [ "$verb" = DEL ] && what=teardown
  rm_=$(median ref_masq "$verb"); rp=$(median ref_plain "$verb")
  oi=$(median ours_ipt "$verb"); on=$(median ours_nft "$verb")
  cost=$(awk -v a="$rm_" -v b="$rp" 'BEGIN {printf "%.2f", a - b}')
  net() { awk -v a="$1" -v b="$base" 'BEGIN {printf "%.2f", a - b}'; }
  ratio() { awk -v o="$1" -v r="$cost" 'BEGIN { if (r > 0) printf "%.2fx", o / r; else print "n/a" }'; }
  echo "masquerade $what, one IPv4 attachment, median of $rounds, ms:"
  printf '  %-52s %8s\n' "reference bridge $verb with ipMasq" "$rm_" \
    "reference bridge $verb without ipMasq" "$rp" \
    "reference masquerade $what (difference)" "$cost" \
    "ours: ipmasq process with nothing to do (baseline)" "$base"
  for pair in "iptables:$oi" "nftables:$on"; do
    label=${pair%:*}; t=${pair##*:}
    printf '  %-52s %8s   %s of the reference\n' \
      "ours: ipmasq $verb, $label (whole process)" "$t" "$(ratio "$t")" \
      "ours: ipmasq $verb, $label (minus baseline)" "$(net "$t")" "$(ratio "$(net "$t")")"
  done
done
umount "$ctr" 2>/dev/null || true
rm -rf "$dir"
