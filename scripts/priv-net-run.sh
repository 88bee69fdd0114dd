#!/usr/bin/env bash
# priv-net-run.sh CMD [ARGS...]: runs CMD in a fresh network namespace that
# is attached to every configured network, then detaches it and removes the
# namespace, also when CMD fails or the script is interrupted. Needs root.
#
# Networks: NETCONFPATH if set, else /etc/cni/net.d when it holds any
# configuration, else the suite's default in testdata/default (a bridge
# cni-default0 with host-local on 10.207.41.0/24 and masquerade, and lo).
# Plugins: CNI_PATH if set, else this checkout's release build (built here
# by scripts/build.sh).
# cnitool: the one in CNI_PATH, else the checkout's. A network made only of
# loopback gets lo; the others get eth0, eth1, ... in the order cnitool
# lists them. CMD's exit code is the script's.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
me=priv-net-run.sh
[ $# -gt 0 ] || { echo "usage: $me CMD [ARGS...]" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "$me: needs root (try sudo)" >&2; exit 1; }

"$top/scripts/install-deps.sh"
if [ -z "${CNI_PATH:-}" ]; then
  if [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then
    # Under sudo, build as the user (their toolchain, their target/).
    CNI_PATH=$(sudo -u "$SUDO_USER" -H bash -lc 'cd "$1" && scripts/build.sh' build "$top")
  else
    command -v cargo >/dev/null || { echo "$me: cargo not found; build with scripts/build.sh and set CNI_PATH" >&2; exit 1; }
    CNI_PATH=$("$top/scripts/build.sh")
  fi
fi
export CNI_PATH
cnitool=""
IFS=: read -ra dirs <<< "$CNI_PATH"
for d in "${dirs[@]}"; do [ -x "$d/cnitool" ] && { cnitool="$d/cnitool"; break; }; done
[ -n "$cnitool" ] || { echo "$me: cnitool not found in CNI_PATH $CNI_PATH" >&2; exit 1; }

default_net=0
if [ -z "${NETCONFPATH:-}" ]; then
  NETCONFPATH=/etc/cni/net.d
  if ! compgen -G "$NETCONFPATH/*.conf" >/dev/null && ! compgen -G "$NETCONFPATH/*.conflist" >/dev/null \
    && ! compgen -G "$NETCONFPATH/*.json" >/dev/null; then
    NETCONFPATH="$top/testdata/default"
  fi
fi
[ "$NETCONFPATH" = "$top/testdata/default" ] && default_net=1
export NETCONFPATH

# Read the networks before making anything: a broken configuration stops here.
networks=$("$cnitool" list) || exit 1
[ -n "$networks" ] || { echo "$me: no network configuration in $NETCONFPATH" >&2; exit 1; }

# What the default network makes on the host beyond the attachment (its
# bridge, forwarding, host-local's directory) goes again afterwards if it
# was not there before, so the machine is left as it was found.
bridge_existed=1 forward_was=1 ipam_existed=1 results_existed=1 cni_existed=1
nat_existed=1 netns_dir_existed=1
if [ "$default_net" = 1 ]; then
  ip link show cni-default0 >/dev/null 2>&1 || bridge_existed=0
  forward_was=$(cat /proc/sys/net/ipv4/ip_forward)
  [ -e /var/lib/cni/networks/cni-default ] || ipam_existed=0
  [ -e /var/lib/cni/results ] || results_existed=0
  [ -e /var/lib/cni ] || cni_existed=0
  # iptables-nft makes the nat table for the masquerade rule; DEL removes
  # the rule and leaves the empty table.
  if command -v nft >/dev/null && ! nft list table ip nat >/dev/null 2>&1; then nat_existed=0; fi
fi
[ -e /run/netns ] || netns_dir_existed=0

netns="cni-$$-$RANDOM"
nspath="/run/netns/$netns"
ip netns add "$netns"
attached=()

cleanup() {
  local status=$? i name ifname
  trap - EXIT INT TERM
  for ((i = ${#attached[@]} - 1; i >= 0; i--)); do
    read -r name ifname <<< "${attached[$i]}"
    CNI_IFNAME=$ifname "$cnitool" del "$name" "$nspath" || status=1
  done
  ip netns del "$netns" || status=1
  # `ip netns add` made /run/netns a mount point of its own.
  if [ "$netns_dir_existed" = 0 ] && [ -z "$(ls -A /run/netns 2>/dev/null)" ]; then
    umount /run/netns 2>/dev/null || true
    rmdir /run/netns 2>/dev/null || true
  fi
  if [ "$default_net" = 1 ]; then
    if [ "$bridge_existed" = 0 ] && [ -z "$(ip link show master cni-default0 2>/dev/null)" ]; then
      ip link del cni-default0 2>/dev/null || true
      echo "$forward_was" > /proc/sys/net/ipv4/ip_forward
    fi
    if [ "$ipam_existed" = 0 ] && ! compgen -G "/var/lib/cni/networks/cni-default/[0-9a-f]*[.:]*" >/dev/null; then
      rm -rf /var/lib/cni/networks/cni-default
      rmdir /var/lib/cni/networks 2>/dev/null || true
    fi
    if [ "$nat_existed" = 0 ] && ! nft list table ip nat 2>/dev/null | grep -qvE '^\s*(table|chain|type|\}|$)'; then
      nft delete table ip nat 2>/dev/null || true
    fi
    [ "$results_existed" = 1 ] || rmdir /var/lib/cni/results 2>/dev/null || true
    [ "$cni_existed" = 1 ] || rmdir /var/lib/cni 2>/dev/null || true
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

eth=0
while IFS=$'\t' read -r name types _file; do
  if [ "$types" = loopback ]; then ifname=lo; else ifname="eth$eth"; eth=$((eth + 1)); fi
  CNI_IFNAME=$ifname "$cnitool" add "$name" "$nspath" >/dev/null
  attached+=("$name $ifname")
done <<< "$networks"

# CMD runs in the background so that a signal to this script is handled at
# once (bash runs traps only between foreground commands); stdin stays CMD's.
ip netns exec "$netns" "$@" <&0 &
child=$!
trap 'kill -INT "$child" 2>/dev/null; wait "$child"; exit 130' INT
trap 'kill -TERM "$child" 2>/dev/null; wait "$child"; exit 143' TERM
status=0
wait "$child" || status=$?
exit "$status"
