#!/usr/bin/env bash
# Builds the release binaries as they ship and prints the directory that
# holds them (use it as CNI_PATH, or install from it).
#
# Every CNI call is a fresh process, so start-up is part of every container
# start: on glibc Linux the binaries are linked statically and not
# position-independent (no dynamic loader, no start-up relocations), and
# [profile.release] optimises for size, which keeps the pages a call touches
# (and so its peak memory) low. The flags go through RUSTFLAGS with an
# explicit --target so they reach our binaries and not the proc-macros.
set -euo pipefail
cd "$(dirname "$0")/.."
host=$(rustc -vV | sed -n 's/^host: //p')
flags=""
case "$host" in *-linux-gnu*) flags="-C target-feature=+crt-static -C relocation-model=static" ;; esac
RUSTFLAGS="${RUSTFLAGS:-} $flags" cargo build --release --quiet --workspace --bins --target "$host" >&2
echo "${CARGO_TARGET_DIR:-$PWD/target}/$host/release"
