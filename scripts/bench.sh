#!/usr/bin/env bash
# Benchmarks: runs our plugins and the reference plugins (Debian package
# containernetworking-plugins, /usr/lib/cni) in the same run and prints
# ratios. Like the tests, it runs inside a private user + network + mount
# namespace, so it never touches the host's network.
#
#   scripts/bench.sh [NAME...]     # NAME: a file scripts/bench/NAME.sh; default all
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
BIN=$(scripts/build.sh)
export BIN REF=/usr/lib/cni

names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  for f in scripts/bench/*.sh; do names+=("$(basename "$f" .sh)"); done
fi
export TMPDIR="$PWD/target/bench-tmp"
# /run (xtables lock, named netns) is private too, unless the checkout lives there.
export private_run=1
case "$PWD/" in /run/*) private_run=0 ;; esac
mkdir -p "$TMPDIR"
for name in "${names[@]}"; do
  [ -f "scripts/bench/$name.sh" ] || { echo "bench.sh: no benchmark $name (scripts/bench/$name.sh)" >&2; exit 2; }
  echo "== $name"
  unshare --user --map-root-user --net --mount --propagation private --fork -- \
    bash -euo pipefail -c 'mount -t tmpfs tmpfs "$TMPDIR"; [ "$private_run" = 0 ] || mount -t tmpfs -o mode=755 tmpfs /run; ip link set lo up; exec bash "$0"' "scripts/bench/$name.sh"
done
