//! `loopback`: brings `lo` up in the container's namespace.
//!
//! - ADD: `lo` up; returns `lo` with its addresses, or `prevResult` unchanged
//!   when chained after another plugin.
//! - DEL: `lo` down; succeeds when `CNI_NETNS` is empty or the namespace is gone.
//! - CHECK: fails when `lo` is down.
//! - GC, STATUS: nothing to do.

mod loopback;

fn main() {
    pkg::skel::run(loopback::Loopback)
}
