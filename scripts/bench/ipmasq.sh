#!/usr/bin/env bash
# Masquerade setup and teardown for one attachment, IPv4 and dual stack:
# ours (the ipmasq plugin's ADD and DEL, iptables and nftables backends)
# against the reference's, measured as the reference bridge + host-local
# ADD (DEL) with ipMasq minus the same without it, in the same run,
# interleaved. Ours is shown whole (process included) and minus our own
# process doing nothing, the way the bridge without ipMasq is subtracted
# from the reference. Run by scripts/bench.sh inside a private namespace.
#
#   ROUNDS=50 scripts/bench.sh ipmasq
set -euo pipefail
: "${BIN:?run through scripts/bench.sh}" "${REF:?run through scripts/bench.sh}"
rounds=${ROUNDS:-50}
dir=$(mktemp -d)
# shellcheck source=lib/timing.sh
. "$(dirname "$0")/lib/timing.sh"
ctr="$dir/ctr"
new_netns "$ctr"
export CNI_CONTAINERID=bench1 CNI_NETNS="$ctr" CNI_IFNAME=eth0 CNI_PATH="$REF"

ref_conf() { # IPMASQ RANGES
  printf '{"cniVersion":"1.0.0","name":"benchref","type":"bridge","bridge":"cni0","isGateway":true,"ipMasq":%s,"ipam":{"type":"host-local","ranges":%s,"dataDir":"%s"}}' \
    "$1" "$2" "$dir/ipam"
}
ours_conf() { # BACKEND IPS
  printf '{"cniVersion":"1.0.0","name":"benchours","type":"ipmasq","backend":"%s","prevResult":{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"%s"}],"ips":%s}}' \
    "$1" "$ctr" "$2"
}
# Our process with nothing to do: ADD refuses a prevResult without
# addresses before it touches netfilter.
ours_base='{"cniVersion":"1.0.0","name":"benchours","type":"ipmasq","prevResult":{"cniVersion":"1.0.0","ips":[]}}'

# $dir/times.NAME.VERB: one line per call, in microseconds. The "base"
# call fails on purpose (no addresses), the others must not.
call() { # NAME VERB BINARY CONF
  local f=timed
  [ "$1" = base ] && f=timed_any
  CNI_COMMAND=$2 $f "$1.$2" "$3" <<<"$4"
}
minus() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a - b}'; }

bench() { # LABEL RANGES IPS
  local ref_masq ref_plain ours_ipt ours_nft
  ref_masq=$(ref_conf true "$2"); ref_plain=$(ref_conf false "$2")
  ours_ipt=$(ours_conf iptables "$3"); ours_nft=$(ours_conf nftables "$3")
  round() {
    call ref_masq ADD "$REF/bridge" "$ref_masq"
    call ref_masq DEL "$REF/bridge" "$ref_masq"
    call ref_plain ADD "$REF/bridge" "$ref_plain"
    call ref_plain DEL "$REF/bridge" "$ref_plain"
    call ours_ipt ADD "$BIN/ipmasq" "$ours_ipt"
    call ours_ipt DEL "$BIN/ipmasq" "$ours_ipt"
    call ours_nft ADD "$BIN/ipmasq" "$ours_nft"
    call ours_nft DEL "$BIN/ipmasq" "$ours_nft"
    call base ADD "$BIN/ipmasq" "$ours_base"
  }
  for _ in 1 2 3; do round; done # warm up: the bridge exists, caches are hot
  rm -f "$dir"/times.*
  for _ in $(seq "$rounds"); do round; done

  # Nothing may be left behind by any of them.
  if { iptables-save -t nat; ip6tables-save -t nat; } | grep -q -- '-j CNI-' ||
    nft list table inet cni_plugins_masquerade 2>/dev/null | grep -q 'masquerade comment'; then
    echo "ipmasq bench: rules left behind" >&2; exit 1
  fi

  local base verb what with without cost t
  base=$(median base.ADD)
  for verb in ADD DEL; do
    what=setup; [ "$verb" = DEL ] && what=teardown
    with=$(median "ref_masq.$verb"); without=$(median "ref_plain.$verb")
    cost=$(minus "$with" "$without")
    echo "masquerade $what, one $1 attachment, median of $rounds, ms:"
    printf '  %-50s %8s\n' "reference bridge $verb with ipMasq" "$with" \
      "reference bridge $verb without ipMasq" "$without" \
      "reference masquerade $what (difference)" "$cost" \
      "ours: ipmasq process with nothing to do" "$base"
    for backend in ipt:iptables nft:nftables; do
      t=$(median "ours_${backend%%:*}.$verb")
      printf '  %-50s %8s   %s of the reference\n' \
        "ours: ipmasq $verb, ${backend#*:}, whole process" "$t" "$(ratio "$t" "$cost")" \
        "ours: ipmasq $verb, ${backend#*:}, minus process" "$(minus "$t" "$base")" "$(ratio "$(minus "$t" "$base")" "$cost")"
    done
  done
}

bench IPv4 '[[{"subnet":"10.22.0.0/24"}]]' '[{"interface":0,"address":"10.23.0.2/24"}]'
bench "dual-stack" '[[{"subnet":"10.22.0.0/24"}],[{"subnet":"fd00:22::/64"}]]' \
  '[{"interface":0,"address":"10.23.0.2/24"},{"interface":0,"address":"fd00:23::2/64"}]'

umount "$ctr" 2>/dev/null || true
rm -rf "$dir"
