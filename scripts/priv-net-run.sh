#!/usr/bin/env bash
# priv-net-run.sh CMD [ARGS...]: runs CMD in a fresh network namespace that
# is attached to every configured network, then detaches it and removes the
# namespace, also when CMD fails or the script gets INT or TERM. Needs root.
# CMD's exit code is the script's.
#
# Networks: NETCONFPATH if set, else /etc/cni/net.d when it holds any
# configuration, else the suite's default in testdata/default (a bridge
# cni-default0 with host-local on 10.207.41.0/24 and masquerade, and lo);
# what the default network makes on the host goes afterwards.
# Plugins and cnitool: CNI_PATH if set, else this checkout's release build
# (built here by scripts/build.sh). A network made only of loopback acts on
# lo; the others get eth0, eth1, ... in the order `cnitool list` shows.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
me=priv-net-run.sh
[ $# -gt 0 ] || { echo "usage: $me CMD [ARGS...]" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "$me: needs root (try sudo)" >&2; exit 1; }
. "$top/scripts/lib/cni-net.sh"

"$top/scripts/install-deps.sh"
cni_net_setup
netns_dir_existed=1
[ -e /run/netns ] || netns_dir_existed=0
netns="cni-$$-$RANDOM"
nspath="/run/netns/$netns"

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  cni_net_detach "$nspath" || status=1
  ip netns del "$netns" 2>/dev/null || true
  # `ip netns add` made /run/netns a mount point of its own.
  if [ "$netns_dir_existed" = 0 ] && [ -z "$(ls -A /run/netns 2>/dev/null)" ]; then
    umount /run/netns 2>/dev/null || true
    rmdir /run/netns 2>/dev/null || true
  fi
  cni_net_restore
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ip netns add "$netns"
cni_net_attach "$nspath"
cni_net_run ip netns exec "$netns" "$@"
