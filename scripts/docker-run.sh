#!/usr/bin/env bash
# docker-run.sh [DOCKER RUN ARGS...] IMAGE [CMD...]: `docker run` with the
# container's network made by CNI. A holder container started with
# --net=none owns the network namespace; every configured network is added
# to /proc/<holder pid>/ns/net (container id: the holder's); the real
# container joins it with --net=container:<holder>; when it exits, the
# networks are removed and the holder with them, also on failure or INT or
# TERM. The exit code is the container's. Needs root.
#
# The holder runs `sleep` from the image: the first argument that is not an
# option and names a local image. DOCKER names the client command (default
# `docker`), e.g. DOCKER="docker -H unix:///run/other.sock". Networks,
# plugins and cnitool are found as priv-net-run.sh finds them.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
me=docker-run.sh
[ $# -gt 0 ] || { echo "usage: $me [docker run args...] IMAGE [CMD...]" >&2; exit 2; }
read -ra docker <<< "${DOCKER:-docker}"
command -v "${docker[0]}" >/dev/null || { echo "$me: ${docker[0]} not found" >&2; exit 1; }
. "$top/scripts/lib/cni-net.sh"

image=""
for a in "$@"; do
  case "$a" in -*) continue ;; esac
  if "${docker[@]}" image inspect "$a" >/dev/null 2>&1; then image=$a; break; fi
done
[ -n "$image" ] || { echo "$me: no local image among the arguments" >&2; exit 1; }
cni_net_setup
holder=""
nspath=""

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [ -n "$holder" ]; then
    CNI_CONTAINERID=$holder cni_net_detach "$nspath" || status=1
    "${docker[@]}" rm -f "$holder" >/dev/null || status=1
  fi
  cni_net_restore
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

holder=$("${docker[@]}" run -d --net=none --entrypoint sleep "$image" 2147483647)
nspath="/proc/$("${docker[@]}" inspect -f '{{.State.Pid}}' "$holder")/ns/net"
CNI_CONTAINERID=$holder cni_net_attach "$nspath"
cni_net_run "${docker[@]}" run --net="container:$holder" "$@"
