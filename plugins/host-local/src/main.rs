//! `host-local`: the IPAM plugin that allocates addresses from configured
//! ranges and keeps its state in files on the host, in the reference
//! plugin's on-disk format.
//!
//! - ADD: one address per range set (requested ones first), plus `routes`
//!   and the `dns` read from `resolvConf`; a second ADD for the same
//!   container and interface is refused.
//! - DEL: releases what the container and interface hold; needs no namespace.
//! - CHECK: fails when the container and interface hold no address here.
//! - GC: releases what attachments outside `cni.dev/valid-attachments` hold.
//! - STATUS: fails (code 50) when the data directory cannot be written.

mod allocator;
mod config;
mod host_local;
mod store;

fn main() {
    pkg::skel::run(host_local::HostLocal)
}
