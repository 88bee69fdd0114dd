#!/usr/bin/env bash
# priv-net-run.sh CMD...: runs CMD in a fresh network namespace attached to
# the suite's networks, then detaches and removes the namespace, also when
# CMD fails or is interrupted. Needs root (it makes a named namespace).
#
# For now the namespace gets the loopback network (testdata/loopback.conf);
# the default bridge network and cnitool come with the runtime-side work.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
[ $# -gt 0 ] || { echo "usage: priv-net-run.sh CMD [ARGS...]" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "priv-net-run.sh: needs root (try sudo)" >&2; exit 1; }

"$top/scripts/install-deps.sh"
if [ -z "${CNI_PATH:-}" ]; then
  (cd "$top" && cargo build --release --quiet --workspace --bins)
  CNI_PATH="$top/target/release"
fi
export CNI_PATH

conf="$top/testdata/loopback.conf"
netns="cni-$$-$RANDOM"
nspath="/run/netns/$netns"
ip netns add "$netns"

plugin() { # VERB
  CNI_COMMAND=$1 CNI_CONTAINERID="$netns" CNI_NETNS="$nspath" CNI_IFNAME=lo \
    "$CNI_PATH/loopback" < "$conf"
}
cleanup() {
  plugin DEL || echo "priv-net-run.sh: DEL failed for $netns" >&2
  ip netns del "$netns"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

plugin ADD >/dev/null
status=0
ip netns exec "$netns" "$@" || status=$?
exit "$status"
