//! The shared library of the CNI plugin suite.
//!
//! - [`spec`]: the contract as types (versions, codes, configuration, results).
//! - [`skel`]: the entry point every plugin's `main` hands its handlers to.
//! - [`ns`]: opening network namespaces and running work inside them.
//! - [`netlink`]: the link, address and route verbs the plugins use.
//! - [`ipmasq`]: masquerade rules for a container's addresses (iptables, nftables).
//! - `testing` (feature `testing`): throwaway namespaces and a plugin runner.

pub mod error;
pub mod invoke;
pub mod ipam;
pub mod ipmasq;
pub mod netlink;
pub mod ns;
pub mod skel;
pub mod spec;
pub mod spoofcheck;
#[cfg(feature = "testing")]
pub mod testing;

pub use error::{Error, Result};
