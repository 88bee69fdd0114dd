#!/usr/bin/env bash
# docker-run.sh [DOCKER RUN ARGS...]: `docker run` with the container's
# network made by CNI. A holder container started with --net=none owns the
# network namespace; every configured network is added to
# /proc/<holder pid>/ns/net; the real container joins it with
# --net=container:<holder>; when it exits, the networks are removed and the
# holder with them, also on failure or interruption. Needs root (or a user
# allowed to run docker and write the CNI state directories).
#
# Networks, plugins and cnitool are found as priv-net-run.sh finds them
# (NETCONFPATH, CNI_PATH, else /etc/cni/net.d or testdata/default and the
# checkout's release build). DOCKER names the client command (default
# `docker`), e.g. DOCKER="docker -H unix:///run/my.sock". The exit code is
# the container's.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
me=docker-run.sh
[ $# -gt 0 ] || { echo "usage: $me [docker run args...] IMAGE [CMD...]" >&2; exit 2; }
read -ra docker <<< "${DOCKER:-docker}"
command -v "${docker[0]}" >/dev/null || { echo "$me: ${docker[0]} not found" >&2; exit 1; }

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
if [ -z "${NETCONFPATH:-}" ]; then
  NETCONFPATH=/etc/cni/net.d
  compgen -G "$NETCONFPATH/*.conf*" >/dev/null || compgen -G "$NETCONFPATH/*.json" >/dev/null \
    || NETCONFPATH="$top/testdata/default"
fi
export NETCONFPATH
networks=$("$cnitool" list) || exit 1
[ -n "$networks" ] || { echo "$me: no network configuration in $NETCONFPATH" >&2; exit 1; }

holder=""
attached=()
nspath=""

cleanup() {
  local status=$? i name ifname
  trap - EXIT INT TERM
  for ((i = ${#attached[@]} - 1; i >= 0; i--)); do
    read -r name ifname <<< "${attached[$i]}"
    CNI_CONTAINERID=$holder CNI_IFNAME=$ifname "$cnitool" del "$name" "$nspath" || status=1
  done
  if [ -n "$holder" ]; then
    "${docker[@]}" rm -f "$holder" >/dev/null || status=1
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The holder runs `sleep` from the image: the first argument that is not an
# option and names a local image (docker's options are not parsed here).
image=""
for a in "$@"; do
  case "$a" in -*) continue ;; esac
  if "${docker[@]}" image inspect "$a" >/dev/null 2>&1; then image=$a; break; fi
done
[ -n "$image" ] || { echo "$me: no local image among the arguments" >&2; exit 1; }
holder=$("${docker[@]}" run -d --net=none --entrypoint sleep "$image" 2147483647)
pid=$("${docker[@]}" inspect -f '{{.State.Pid}}' "$holder")
nspath="/proc/$pid/ns/net"

eth=0
while IFS=$'\t' read -r name types _file; do
  if [ "$types" = loopback ]; then ifname=lo; else ifname="eth$eth"; eth=$((eth + 1)); fi
  CNI_CONTAINERID=$holder CNI_IFNAME=$ifname "$cnitool" add "$name" "$nspath" >/dev/null
  attached+=("$name $ifname")
done <<< "$networks"

# CMD runs in the background so that a signal to this script is handled at
# once (bash runs traps only between foreground commands); stdin stays CMD's.
"${docker[@]}" run --net="container:$holder" "$@" <&0 &
child=$!
trap 'kill -INT "$child" 2>/dev/null; wait "$child"; exit 130' INT
trap 'kill -TERM "$child" 2>/dev/null; wait "$child"; exit 143' TERM
status=0
wait "$child" || status=$?
exit "$status"
