//! The loopback plugin's handlers.

use pkg::netlink::Netlink;
use pkg::skel::{Call, Plugin};
use pkg::spec::{Interface, IpConfig, NetResult};
use pkg::{Error, Result};

/// Whatever `CNI_IFNAME` says, this plugin acts on `lo` (as the reference does).
const LO: &str = "lo";

pub struct Loopback;

impl Plugin for Loopback {
    fn about(&self) -> String {
        format!("CNI loopback plugin v{}", env!("CARGO_PKG_VERSION"))
    }

    async fn add(&self, call: &Call) -> Result<NetResult> {
        let ns = call.container_netns()?;
        let nl = Netlink::open_in(&ns)?;
        let lo = nl.link_by_name(LO).await?;
        nl.set_up(&lo).await?;
        if let Some(prev) = call.conf.prev_result()? {
            // Chained after another plugin: pass its result on untouched.
            return Ok(prev);
        }
        let addrs = nl.addresses(&lo).await?;
        let first_of = |v4: bool| addrs.iter().find(|a| a.addr().is_ipv4() == v4);
        let ips = [first_of(true), first_of(false)]
            .into_iter()
            .flatten()
            .map(|a| IpConfig {
                interface: Some(0),
                address: *a,
                gateway: None,
            })
            .collect();
        Ok(NetResult {
            interfaces: vec![Interface {
                name: LO.into(),
                mac: "00:00:00:00:00:00".into(),
                sandbox: ns.path().display().to_string(),
                ..Interface::default()
            }],
            ips,
            ..NetResult::default()
        })
    }

    async fn del(&self, call: &Call) -> Result<()> {
        let Some(ns) = call.container_netns_if_present()? else {
            return Ok(());
        };
        let nl = Netlink::open_in(&ns)?;
        let lo = nl.link_by_name(LO).await?;
        nl.set_down(&lo).await?;
        Ok(())
    }

    async fn check(&self, call: &Call) -> Result<()> {
        let ns = call.container_netns()?;
        let nl = Netlink::open_in(&ns)?;
        let lo = nl.link_by_name(LO).await?;
        if !lo.up {
            return Err(Error::new(
                pkg::spec::Code::Internal,
                format!("loopback interface in {} is down", ns.path().display()),
            ));
        }
        Ok(())
    }
}
