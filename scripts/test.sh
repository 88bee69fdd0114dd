#!/usr/bin/env bash
# Runs every test of the suite (unit tests and namespace tests) inside a new
# user + network + mount namespace, so nothing reaches the host's network or
# file system: TMPDIR and /run are private tmpfs mounts in there. Needs no root
# where unprivileged user namespaces are allowed.
#
#   scripts/test.sh [cargo test args...]
#
# Under CI=true a namespace test that cannot run fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null || { echo "test.sh: cargo not found; install Rust (https://rustup.rs)" >&2; exit 1; }
scripts/install-deps.sh

# Build first, outside the namespace: fetching crates needs the network.
cargo test --workspace --no-run --quiet

# Temporary files go to a tmpfs mounted inside the namespace, so a test that
# dies half-way leaves nothing on disk; /run (named netns, runtime state) is
# private too, unless the checkout itself lives there.
export TMPDIR="$PWD/target/test-tmp"
mkdir -p "$TMPDIR"
private_run=1
case "$PWD/" in /run/*) private_run=0 ;; esac

exec unshare --user --map-root-user --net --mount --propagation private --fork -- \
  bash -euo pipefail -c '
    mount -t tmpfs -o mode=1777 tmpfs "$TMPDIR"
    if [ "'"$private_run"'" = 1 ]; then mount -t tmpfs -o mode=755 tmpfs /run; fi
    ip link set lo up
    exec cargo test --workspace --offline "$@"
  ' test.sh "$@"
