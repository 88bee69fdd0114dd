#!/usr/bin/env bash
# Runs every test of the suite (unit tests and namespace tests) inside a new
# user + network + mount namespace, so nothing reaches the host's network or
# file system: /tmp and /run are private tmpfs mounts in there. Needs no root
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

exec unshare --user --map-root-user --net --mount --propagation private --fork -- \
  bash -euo pipefail -c '
    mount -t tmpfs -o mode=1777 tmpfs /tmp
    mount -t tmpfs -o mode=755 tmpfs /run
    ip link set lo up
    exec cargo test --workspace --offline "$@"
  ' test.sh "$@"
