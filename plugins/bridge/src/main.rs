//! `bridge`: attaches a container to a Linux bridge on the host.
//!
//! - ADD: create or reuse the bridge; a veth pair with the container end
//!   named `CNI_IFNAME` in the container's namespace and the host end on the
//!   bridge; addresses and routes from the IPAM plugin; with `isGateway` the
//!   gateway address on the bridge and IP forwarding on; with `ipMasq`
//!   masquerade. Any failure undoes everything the ADD did.
//! - DEL: delete the container's veth, release the address, remove the
//!   masquerade rules; the last two also when the namespace is gone.
//! - CHECK: links, addresses, routes and rules match `prevResult`.
//! - GC, STATUS: passed on to the IPAM plugin; GC also removes stale
//!   masquerade rules.

mod bridge;
mod check;
mod conf;

fn main() {
    pkg::skel::run(bridge::Bridge)
}
