# Shared by the benchmarks in scripts/bench/: timing without a process per
# timestamp ($EPOCHREALTIME), medians, and ratios. Source it; needs $dir.

# timed NAME CMD...: runs CMD (output to a file, no subshell, so only CMD's
# own process is timed), appends its wall time in microseconds to
# $dir/times.NAME; a failure stops the benchmark.
timed() {
  local name=$1 t0 t1
  shift
  t0=$EPOCHREALTIME
  "$@" >"$dir/out" 2>&1 || { echo "bench: $name failed: $(cat "$dir/out")" >&2; exit 1; }
  t1=$EPOCHREALTIME
  echo $(( ${t1/./} - ${t0/./} )) >>"$dir/times.$name"
}

# timed_any NAME CMD...: as timed, whatever CMD's exit status.
timed_any() {
  local name=$1 t0 t1
  shift
  t0=$EPOCHREALTIME
  "$@" >/dev/null 2>&1 || true
  t1=$EPOCHREALTIME
  echo $(( ${t1/./} - ${t0/./} )) >>"$dir/times.$name"
}

# median NAME [FIRST LAST]: median in ms of the times of NAME (or of lines FIRST..LAST).
median() {
  local lines
  if [ $# -eq 3 ]; then lines=$(sed -n "$2,$3p" "$dir/times.$1"); else lines=$(cat "$dir/times.$1"); fi
  sort -n <<<"$lines" | awk '{a[NR]=$1} END {m = (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2; printf "%.2f", m / 1000}'
}

# ratio A B: A / B with two decimals.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "n/a" }'; }

# peak_rss_kb CMD...: the peak resident set of CMD in KiB (GNU time).
peak_rss_kb() {
  local f="$dir/rss.$$"
  /usr/bin/time -f %M -o "$f" "$@" >/dev/null 2>&1 || { echo "bench: $* failed" >&2; exit 1; }
  cat "$f"
}

# new_netns PATH: a network namespace bound to PATH.
new_netns() { touch "$1"; unshare --net="$1" true; }
