#!/usr/bin/env bash
# host-local: ours against the reference's (/usr/lib/cni/host-local), in the
# same run, each with its own data directory on the same tmpfs:
#   - median ADD and median DEL of one container, timed as a runtime makes the
#     call (spawn with the configuration on stdin, wait), by the example
#     plugins/host-local/examples/exec_time.rs; before each timed call the DEL
#     (or ADD) that puts the state back runs untimed;
#   - peak RSS of an ADD (the largest ru_maxrss of the timed ADDs);
#   - median ADD when 1, 1000 and 10000 addresses are already held in a /16
#     (files written in the reference's format, last_reserved_ip.0 at the
#     last of them, so neither implementation has to search far);
#   - the ratios, ours / reference, and ADD with 10000 held / ADD with 1 held;
#   - for scale, the cost of spawning /bin/true the same way.
# Run by scripts/bench.sh inside a private namespace; needs BIN and REF.
#
#   RUNS=300 HELD_RUNS=50 scripts/bench.sh host-local
set -euo pipefail
: "${BIN:?run through scripts/bench.sh}" "${REF:?run through scripts/bench.sh}"
runs=${RUNS:-300}
held_runs=${HELD_RUNS:-50}
cargo build --release --quiet --offline -p host-local --example exec_time
timer="${CARGO_TARGET_DIR:-$PWD/target}/release/examples/exec_time"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
export CNI_CONTAINERID=bench CNI_NETNS=/run/netns/unused CNI_IFNAME=eth0 CNI_PATH="$REF"
declare -A plugin=([ours]="$BIN/host-local" [ref]="$REF/host-local")

conf() { # FILE DATADIR SUBNET
  printf '{"cniVersion":"1.0.0","name":"bench","type":"host-local","ipam":{"type":"host-local","subnet":"%s","dataDir":"%s"}}' \
    "$3" "$2" >"$1"
}

# Prints "MEDIAN_MS PEAK_RSS_KIB" of RUNS timed calls.
timed() { "$timer" "$5" "$1" "$2" "$3" "$4"; } # TIMED_VERB RESTORING_VERB BINARY CONF RUNS

# Fills DIR/bench with N address files in 10.200.0.0/16 (from 10.200.0.2 on).
populate() { # DIR N
  local d="$1/bench" i n ip=""
  mkdir -p "$d"
  : >"$d/lock"
  for ((i = 0; i < $2; i++)); do
    n=$((i + 2))
    ip="10.200.$((n / 256)).$((n % 256))"
    printf 'held%d\r\neth0' "$i" >"$d/$ip"
  done
  printf '%s' "$ip" >"$d/last_reserved_ip.0"
}

declare -A result
for impl in ours ref; do
  bin=${plugin[$impl]}
  [ -x "$bin" ] || { echo "host-local bench: $bin is missing" >&2; exit 1; }
  data="$dir/$impl"
  conf "$dir/$impl.json" "$data" 10.100.0.0/16
  c="$dir/$impl.json"

  read -r result[$impl.add] result[$impl.rss] < <(timed ADD DEL "$bin" "$c" "$runs")
  CNI_COMMAND=DEL "$bin" <"$c" >/dev/null
  read -r result[$impl.del] _ < <(timed DEL ADD "$bin" "$c" "$runs")

  for n in 1 1000 10000; do
    populate "$data-$n" "$n"
    conf "$dir/$impl.$n.json" "$data-$n" 10.200.0.0/16
    read -r result[$impl.held$n] _ < <(timed ADD DEL "$bin" "$dir/$impl.$n.json" "$held_runs")
  done
done

# For scale: what spawning a small (dynamically linked) program costs here.
read -r floor _ < <(timed X X /bin/true "$dir/ours.json" "$runs")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", a / b }'; }
row() { # LABEL KEY UNIT
  printf '%-28s %12s %12s %8s\n' "$1" "${result[ours.$2]} $3" "${result[ref.$2]} $3" \
    "$(ratio "${result[ours.$2]}" "${result[ref.$2]}")"
}
echo "host-local: ours ($BIN/host-local) vs reference ($REF/host-local); $runs runs per median, $held_runs with addresses held"
printf '%-28s %12s %12s %8s\n' "" ours reference "ours/ref"
row "median ADD" add ms
row "median DEL" del ms
row "peak RSS of an ADD" rss KiB
row "ADD, 1 held in a /16" held1 ms
row "ADD, 1000 held in a /16" held1000 ms
row "ADD, 10000 held in a /16" held10000 ms
printf '%-28s %12s   (dynamically linked; for scale)\n' "spawning /bin/true" "$floor ms"
printf '%-28s %12s %12s\n' "ADD 10000 held / 1 held" \
  "$(ratio "${result[ours.held10000]}" "${result[ours.held1]}")" \
  "$(ratio "${result[ref.held10000]}" "${result[ref.held1]}")"
echo "targets: ours/ref median ADD and DEL <= 0.40x; ours ADD 10000 held / 1 held <= 2x"
