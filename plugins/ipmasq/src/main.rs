//! `ipmasq`: a chained plugin that masquerades the container's addresses.
//!
//! - ADD: masquerades every address of `prevResult` (iptables or nftables,
//!   `backend`), returns `prevResult` unchanged.
//! - DEL: removes the rules of the attachment in both forms; needs neither
//!   `prevResult` nor the namespace.
//! - CHECK: fails when a rule ADD writes is missing.
//! - GC: removes the rules of attachments not in `cni.dev/valid-attachments`.
//! - STATUS: fails when neither iptables nor nftables works here.

mod ipmasq;

fn main() {
    pkg::skel::run(ipmasq::IpMasq)
}
