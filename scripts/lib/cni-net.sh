# Sourced by priv-net-run.sh and docker-run.sh (bash, set -euo pipefail,
# with `me` and `top` set): finds cnitool and the networks, attaches a
# namespace to every network and detaches it, and puts back what the
# suite's default network made on the host.

# Sets CNI_PATH (building the checkout when unset), cnitool, NETCONFPATH,
# default_net and networks (`cnitool list` output); exits on a broken
# configuration before anything is made.
cni_net_setup() {
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
  local dirs d
  IFS=: read -ra dirs <<< "$CNI_PATH"
  for d in "${dirs[@]}"; do [ -x "$d/cnitool" ] && { cnitool="$d/cnitool"; break; }; done
  [ -n "$cnitool" ] || { echo "$me: cnitool not found in CNI_PATH $CNI_PATH" >&2; exit 1; }

  if [ -z "${NETCONFPATH:-}" ]; then
    NETCONFPATH=/etc/cni/net.d
    if ! compgen -G "$NETCONFPATH/*.conf" >/dev/null && ! compgen -G "$NETCONFPATH/*.conflist" >/dev/null \
      && ! compgen -G "$NETCONFPATH/*.json" >/dev/null; then
      NETCONFPATH="$top/testdata/default"
    fi
  fi
  default_net=0
  [ "$NETCONFPATH" = "$top/testdata/default" ] && default_net=1
  export NETCONFPATH
  networks=$("$cnitool" list) || exit 1
  [ -n "$networks" ] || { echo "$me: no network configuration in $NETCONFPATH" >&2; exit 1; }
  attached=()
  cni_net_save
}

# What the default network makes on the host beyond the attachment (its
# bridge, forwarding, host-local's directory, the cache directory, and the
# nat table iptables-nft makes for the masquerade rule, which DEL empties
# but leaves) goes again afterwards if it was not there before.
cni_net_save() {
  bridge_existed=1 forward_was=1 ipam_existed=1 results_existed=1 cni_existed=1 nat_existed=1
  [ "$default_net" = 1 ] || return 0
  ip link show cni-default0 >/dev/null 2>&1 || bridge_existed=0
  forward_was=$(cat /proc/sys/net/ipv4/ip_forward)
  [ -e /var/lib/cni/networks/cni-default ] || ipam_existed=0
  [ -e /var/lib/cni/results ] || results_existed=0
  [ -e /var/lib/cni ] || cni_existed=0
  if command -v nft >/dev/null && ! nft list table ip nat >/dev/null 2>&1; then nat_existed=0; fi
}

cni_net_restore() {
  [ "$default_net" = 1 ] || return 0
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
}

# cni_net_attach NSPATH: adds NSPATH to every network, in list order. A
# network made only of loopback acts on lo; the others get eth0, eth1, ...
cni_net_attach() {
  local name types _file ifname eth=0
  while IFS=$'\t' read -r name types _file; do
    if [ "$types" = loopback ]; then ifname=lo; else ifname="eth$eth"; eth=$((eth + 1)); fi
    CNI_IFNAME=$ifname "$cnitool" add "$name" "$1" >/dev/null
    attached+=("$name $ifname")
  done <<< "$networks"
}

# cni_net_detach NSPATH: deletes what cni_net_attach added, in reverse
# order, going on past failures; returns 1 if any failed.
cni_net_detach() {
  local i name ifname rc=0
  for ((i = ${#attached[@]} - 1; i >= 0; i--)); do
    read -r name ifname <<< "${attached[$i]}"
    CNI_IFNAME=$ifname "$cnitool" del "$name" "$1" || rc=1
  done
  attached=()
  return "$rc"
}

# cni_net_run CMD...: runs CMD in the background, so that a signal to the
# script is handled at once (bash runs traps only between foreground
# commands), with the script's stdin; passes INT and TERM on to it and
# exits with its status.
cni_net_run() {
  "$@" <&0 &
  child=$!
  trap 'kill -INT "$child" 2>/dev/null; wait "$child"; exit 130' INT
  trap 'kill -TERM "$child" 2>/dev/null; wait "$child"; exit 143' TERM
  local status=0
  wait "$child" || status=$?
  exit "$status"
}
