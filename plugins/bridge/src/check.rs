//! CHECK: the attachment is as ADD left it, according to `prevResult`.

use pkg::netlink::{self, Netlink};
use pkg::skel::Call;
use pkg::spec::Code;
use pkg::{ipam, Error, Result};

use crate::conf::Conf;

fn mismatch(msg: String) -> Error {
    Error::new(Code::Internal, msg)
}

/// Checks IPAM (delegated), the container interface with its addresses,
/// routes and MAC, the host veth on the bridge, and the masquerade rules.
pub async fn check(conf: &Conf, call: &Call) -> Result<()> {
    let prev = call
        .conf
        .prev_result()?
        .ok_or_else(|| Error::invalid_config("CHECK needs prevResult"))?;
    if let Some(binary) = ipam::plugin(call)? {
        ipam::exec(&binary, call, "CHECK")?;
    }
    let netns = call.container_netns()?;
    let (index, iface) = prev
        .interfaces
        .iter()
        .enumerate()
        .find(|(_, i)| i.name == call.ifname && !i.sandbox.is_empty())
        .ok_or_else(|| {
            mismatch(format!(
                "prevResult has no interface {:?} in a sandbox",
                call.ifname
            ))
        })?;

    let ctr = Netlink::open_in(&netns)?;
    let link = ctr.link_by_name(&call.ifname).await?;
    let where_ = netns.path().display();
    if link.kind.as_deref() != Some("veth") {
        return Err(mismatch(format!(
            "interface {:?} in netns {where_} is not a veth",
            call.ifname
        )));
    }
    if !iface.mac.is_empty() && !iface.mac.eq_ignore_ascii_case(&link.mac) {
        return Err(mismatch(format!(
            "interface {:?} in netns {where_} has MAC {}, prevResult says {}",
            call.ifname, link.mac, iface.mac
        )));
    }
    let addrs = ctr.addresses(&link).await?;
    let ours: Vec<_> = prev
        .ips
        .iter()
        .filter(|ip| ip.interface == Some(index))
        .collect();
    for ip in &ours {
        if !addrs.contains(&ip.address) {
            return Err(mismatch(format!(
                "interface {:?} in netns {where_} lacks address {}",
                call.ifname, ip.address
            )));
        }
    }
    let routes = ctr.routes(&link).await?;
    for r in &prev.routes {
        let found = routes
            .iter()
            .any(|have| have.dst == r.dst.trunc() && (r.gw.is_none() || have.gw == r.gw));
        if !found {
            return Err(mismatch(format!(
                "netns {where_} lacks route to {}{}",
                r.dst,
                r.gw.map(|g| format!(" via {g}")).unwrap_or_default()
            )));
        }
    }

    let host = Netlink::open()?;
    let bridge = host.link_by_name(&conf.bridge).await?;
    if bridge.kind.as_deref() != Some("bridge") {
        return Err(mismatch(format!("link {:?} is not a bridge", conf.bridge)));
    }
    let host_ifaces = prev
        .interfaces
        .iter()
        .filter(|i| i.sandbox.is_empty() && i.name != conf.bridge);
    for veth in host_ifaces {
        let port = match host.link_by_name(&veth.name).await {
            Ok(l) => l,
            Err(netlink::Error::LinkNotFound(_)) => {
                return Err(mismatch(format!(
                    "host veth {:?} does not exist",
                    veth.name
                )))
            }
            Err(e) => return Err(e.into()),
        };
        if port.controller != Some(bridge.index) {
            return Err(mismatch(format!(
                "host veth {:?} is not a port of bridge {:?}",
                veth.name, conf.bridge
            )));
        }
    }
    if conf.mac_spoof_check {
        pkg::spoofcheck::check(&pkg::spoofcheck::ref_id(&call.container_id, &call.ifname))?;
    }
    if conf.ip_masq {
        let addrs: Vec<_> = ours.iter().map(|ip| ip.address).collect();
        crate::bridge::masquerade(conf, call, &addrs).check()?;
    }
    Ok(())
}
