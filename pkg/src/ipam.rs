//! Delegation to the IPAM plugin named in `ipam.type`, and applying its
//! result to an interface.
//!
//! The IPAM plugin gets the same stdin and environment as the calling
//! plugin (the spec's rule for delegation), with `CNI_COMMAND` set to the
//! verb: a rollback of a failed ADD runs it with DEL.

use std::path::{Path, PathBuf};

use crate::invoke::{self, Pending};
use crate::netlink::{Link, Netlink};
use crate::skel::Call;
use crate::spec::NetResult;
use crate::spec::Route;
use crate::{Error, Result};

/// The IPAM plugin of this call's configuration; `None` when there is no
/// `ipam` section (a layer-2-only attachment).
pub fn plugin(call: &Call) -> Result<Option<PathBuf>> {
    match &call.conf.ipam {
        Some(ipam) if !ipam.plugin_type.is_empty() => {
            invoke::find_plugin(&ipam.plugin_type, &call.path).map(Some)
        }
        Some(_) => Err(Error::invalid_config("ipam: \"type\" is missing")),
        None => Ok(None),
    }
}

/// Starts the IPAM plugin with `command` in the background; the caller
/// collects it with [`Pending::wait`] or [`Pending::wait_result`].
pub fn start(binary: &Path, call: &Call, command: &str) -> Pending {
    invoke::start(binary, command, &[], &call.stdin)
}

/// Runs the IPAM plugin with `command` and waits for it.
pub fn exec(binary: &Path, call: &Call, command: &str) -> Result<()> {
    invoke::spawn(binary, command, &[], &call.stdin)?
        .wait()
        .map(drop)
}

/// Applies `result`'s addresses (those for interface `index`, or with no
/// interface) and routes to `link`: addresses first, then the link up
/// (unless `keep_down`), then routes. A route without a gateway goes
/// through the gateway of the interface's first address of its family, as
/// the reference does, or is a link route when there is none.
pub async fn configure_iface(
    nl: &Netlink,
    link: &Link,
    result: &NetResult,
    index: usize,
    dad: bool,
    keep_down: bool,
) -> Result<()> {
    let ours = result
        .ips
        .iter()
        .filter(|ip| ip.interface.is_none_or(|i| i == index));
    for ip in ours.clone() {
        nl.add_addr(link, ip.address, dad).await?;
    }
    if keep_down {
        return Ok(());
    }
    nl.set_up(link).await?;
    if dad {
        wait_for_dad(nl, link).await?;
    }
    for route in &result.routes {
        let v4 = route.dst.addr().is_ipv4();
        let gw = route.gw.or_else(|| {
            ours.clone()
                .find(|ip| ip.address.addr().is_ipv4() == v4)
                .and_then(|ip| ip.gateway)
        });
        let route = Route {
            dst: route.dst.trunc(),
            gw,
            ..route.clone()
        };
        nl.add_route(link, &route).await?;
    }
    Ok(())
}

/// Waits until no address of the link is tentative (IPv6 duplicate address
/// detection has finished), polling every 10 ms for at most 5 s.
async fn wait_for_dad(nl: &Netlink, link: &Link) -> Result<()> {
    for _ in 0..500 {
        if !nl.has_tentative_addr(link).await? {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Err(Error::new(
        crate::spec::Code::Internal,
        format!(
            "link {:?}: IPv6 duplicate address detection did not finish within 5 s",
            link.name
        ),
    ))
}
