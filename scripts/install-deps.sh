#!/usr/bin/env bash
# Installs the Debian packages the suite's scripts and tests use, if any is
# missing. Safe to run again: it does nothing when everything is there.
#
#   scripts/install-deps.sh            # what the tests and scripts need
#
# iproute2 (ip), util-linux (unshare, nsenter), iptables and nftables (the
# masquerade backends), iputils-ping (packets crossing in tests),
# containernetworking-plugins (the reference plugins, for comparison tests
# and benchmarks, in /usr/lib/cni), busybox-static, runc and docker.io
# (end-to-end tests; the tests start their own dockerd), hyperfine (benchmarks).
set -euo pipefail

declare -A need=(
  [ip]=iproute2 [unshare]=util-linux [nsenter]=util-linux
  [iptables]=iptables [ip6tables]=iptables [iptables-restore]=iptables [nft]=nftables
  [ping]=iputils-ping [busybox]=busybox-static [runc]=runc [hyperfine]=hyperfine
  [dockerd]=docker.io
)
missing=()
for cmd in "${!need[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$cmd" >/dev/null 2>&1 || missing+=("${need[$cmd]}")
done
[ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
[ ${#missing[@]} -eq 0 ] && exit 0

mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-deps.sh: missing packages (no apt-get here): ${missing[*]}" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "install-deps.sh: run as root to install: ${missing[*]}" >&2; exit 1; }
  sudo=sudo
fi
echo "install-deps.sh: installing ${missing[*]}" >&2
$sudo apt-get update -qq
# docker.io's maintainer scripts start the system's Docker daemon, which
# would take over the host's network (docker0, iptables); the tests run
# their own. A policy-rc.d that refuses service starts prevents that.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
  $sudo chmod 755 "$policy"
  trap '$sudo rm -f "$policy"' EXIT
fi
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
