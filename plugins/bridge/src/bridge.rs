//! The bridge plugin's handlers.
//!
//! ADD: bridge (created or reused), veth pair with the container end named
//! `CNI_IFNAME` in the container and the host end on the bridge, addresses
//! and routes from the IPAM plugin, gateway address on the bridge, IP
//! forwarding, masquerade. The IPAM plugin runs while the links are made.
//! Every side effect is recorded in a [`Rollback`] that undoes it if a
//! later step fails.

use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;

use pkg::invoke::Pending;
use pkg::ipmasq::{self, Backend, Masquerade};
use pkg::netlink::{self, format_mac, random_mac, Link, Netlink, VethPair};
use pkg::ns::NetNs;
use pkg::skel::{Call, Plugin};
use pkg::spec::{Code, Interface, NetResult, Route};
use pkg::{ipam, spoofcheck, Error, Result};

use crate::conf::Conf;

/// Index of the container interface in the result: bridge, host veth, container.
const CONTAINER_IFACE: usize = 2;

pub struct Bridge;

impl Plugin for Bridge {
    fn about(&self) -> String {
        format!("CNI bridge plugin v{}", env!("CARGO_PKG_VERSION"))
    }

    async fn add(&self, call: &Call) -> Result<NetResult> {
        let conf = Conf::load(call)?;
        let netns = call.container_netns()?;
        let ipam_plugin = ipam::plugin(call)?;
        let host = Netlink::open()?;
        let ctr = Netlink::open_in(&netns)?;
        let mut undo = Rollback::default();
        // The IPAM plugin runs while the links are made.
        if let Some(binary) = &ipam_plugin {
            undo.ipam_running = Some(ipam::start(binary, call, "ADD"));
            undo.ipam_binary = ipam_plugin.clone();
        }
        match add(&conf, call, &netns, &host, &ctr, &mut undo).await {
            Ok(result) => Ok(result),
            Err(e) => Err(undo.run(call, &host, e).await),
        }
    }

    async fn del(&self, call: &Call) -> Result<()> {
        let conf = Conf::load(call)?;
        // Three things overlap: the IPAM plugin releases the address and a
        // thread removes the firewall rules while the kernel deletes the
        // veth (tens of milliseconds on its own).
        let release = ipam::plugin(call)?.map(|binary| ipam::start(&binary, call, "DEL"));
        let rules = (conf.ip_masq || conf.mac_spoof_check).then(|| {
            let (conf, call) = (conf.clone(), call.clone());
            std::thread::spawn(move || remove_rules(&conf, &call))
        });
        let mut errors = Vec::new();
        errors.extend(del_container_link(call).await.err());
        if let Some(rules) = rules {
            errors.extend(rules.join().expect("rule teardown thread panicked"));
        }
        if let Some(release) = release {
            errors.extend(release.wait().err());
        }
        first_of(errors)
    }

    async fn check(&self, call: &Call) -> Result<()> {
        let conf = Conf::load(call)?;
        crate::check::check(&conf, call).await
    }

    async fn gc(&self, call: &Call) -> Result<()> {
        let conf = Conf::load(call)?;
        let valid = call.conf.valid_attachments()?;
        let mut errors = Vec::new();
        if let Some(binary) = ipam::plugin(call)? {
            errors.extend(ipam::exec(&binary, call, "GC").err());
        }
        if conf.ip_masq {
            errors.extend(ipmasq::gc(&call.conf.name, &valid).err());
        }
        first_of(errors)
    }

    async fn status(&self, call: &Call) -> Result<()> {
        Conf::load(call)?;
        match ipam::plugin(call)? {
            Some(binary) => ipam::exec(&binary, call, "STATUS"),
            None => Ok(()),
        }
    }
}

/// The steps of ADD after the configuration is read.
async fn add(
    conf: &Conf,
    call: &Call,
    netns: &NetNs,
    host: &Netlink,
    ctr: &Netlink,
    undo: &mut Rollback,
) -> Result<NetResult> {
    let bridge = ensure_bridge(conf, host, undo).await?;
    let (host_veth, host_mac, ctr_mac) =
        create_veth(conf, call, netns, host, ctr, &bridge, undo).await?;
    if conf.mac_spoof_check {
        undo.spoofcheck = true;
        spoofcheck::setup(
            &host_veth,
            &format_mac(&ctr_mac),
            &spoofcheck::ref_id(&call.container_id, &call.ifname),
        )?;
    }
    if conf.hairpin || conf.port_isolation {
        let port = host.link_by_name(&host_veth).await?;
        host.set_port_flags(&port, conf.hairpin, conf.port_isolation)
            .await?;
    }
    if conf.vlan.is_some() || !conf.vlan_trunk.is_empty() {
        let port = host.link_by_name(&host_veth).await?;
        set_port_vlans(conf, host, &port, conf.vlan).await?;
    }

    let mut result = NetResult {
        interfaces: vec![
            Interface {
                name: bridge.name.clone(),
                mac: bridge.mac.clone(),
                ..Interface::default()
            },
            Interface {
                name: host_veth,
                mac: format_mac(&host_mac),
                ..Interface::default()
            },
            Interface {
                name: call.ifname.clone(),
                mac: format_mac(&ctr_mac),
                sandbox: call
                    .netns
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                ..Interface::default()
            },
        ],
        ..NetResult::default()
    };

    let ctr_link = ctr.link_by_name(&call.ifname).await?;
    if let Some(running) = undo.ipam_running.take() {
        let ipam_result = running.wait_result(call.version)?;
        undo.ipam_allocated = true;
        if ipam_result.ips.is_empty() {
            return Err(Error::new(
                Code::Internal,
                "IPAM plugin returned no addresses",
            ));
        }
        result.ips = ipam_result.ips;
        result.routes = ipam_result.routes;
        result.dns = ipam_result.dns;
        let gateways = assign_gateways(conf, &mut result);
        ipam::configure_iface(
            ctr,
            &ctr_link,
            &result,
            CONTAINER_IFACE,
            conf.enable_dad,
            conf.disable_container_interface,
        )
        .await?;
        if conf.is_gateway {
            // On a VLAN, the gateway lives on a veth into that VLAN, as the reference does.
            let gw_link = match conf.vlan {
                Some(vid) => ensure_vlan_gateway_link(conf, host, &bridge, vid).await?,
                None => bridge.clone(),
            };
            for gw in gateways {
                ensure_gateway_addr(conf, host, &gw_link, gw).await?;
                enable_forwarding(gw.addr())?;
            }
        }
        if conf.ip_masq {
            let addrs: Vec<IpNet> = result.ips.iter().map(|ip| ip.address).collect();
            undo.masq = true;
            masquerade(conf, call, &addrs).setup()?;
        }
    } else if !conf.disable_container_interface {
        ctr.set_up(&ctr_link).await?;
    }

    if let Some(dns) = &call.conf.dns {
        if !dns.is_empty() {
            result.dns = dns.clone();
        }
    }
    undo.disarm();
    Ok(result)
}

/// The bridge named in the configuration, created if absent. A link of that
/// name that is not a bridge is refused.
async fn ensure_bridge(conf: &Conf, host: &Netlink, undo: &mut Rollback) -> Result<Link> {
    let existing = match host.link_by_name(&conf.bridge).await {
        Ok(link) => Some(link),
        Err(netlink::Error::LinkNotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let bridge = match existing {
        Some(link) => link,
        None => {
            let vlan_filtering = conf.vlan.is_some() || !conf.vlan_trunk.is_empty();
            match host
                .create_bridge(&conf.bridge, random_mac(), conf.mtu, vlan_filtering)
                .await
            {
                Ok(()) => {
                    let link = host.link_by_name(&conf.bridge).await?;
                    undo.created_bridge = Some(link.clone());
                    link
                }
                // Another ADD created it a moment ago.
                Err(netlink::Error::Exists(_)) => host.link_by_name(&conf.bridge).await?,
                Err(e) => return Err(e.into()),
            }
        }
    };
    if bridge.kind.as_deref() != Some("bridge") {
        return Err(Error::new(
            Code::Internal,
            format!(
                "link {:?} exists and is not a bridge (kind {})",
                conf.bridge,
                bridge.kind.as_deref().unwrap_or("none")
            ),
        ));
    }
    if conf.promisc {
        host.set_promisc(&bridge, true).await?;
    }
    if !bridge.up {
        host.set_up(&bridge).await?;
    }
    Ok(bridge)
}

/// Creates the veth pair; returns the host end's name and both MACs.
async fn create_veth(
    conf: &Conf,
    call: &Call,
    netns: &NetNs,
    host: &Netlink,
    ctr: &Netlink,
    bridge: &Link,
    undo: &mut Rollback,
) -> Result<(String, [u8; 6], [u8; 6])> {
    let ctr_mac = conf.mac.unwrap_or_else(random_mac);
    for _ in 0..3 {
        let host_name = random_veth_name();
        let host_mac = random_mac();
        let pair = VethPair {
            host: &host_name,
            host_mac,
            peer: &call.ifname,
            peer_mac: ctr_mac,
            peer_ns: netns,
            mtu: conf.mtu,
            master: Some(bridge.index),
        };
        match host.create_veth(&pair).await {
            Ok(()) => {
                undo.host_veth = Some(host_name.clone());
                host.set_port_up(&host_name).await?;
                return Ok((host_name, host_mac, ctr_mac));
            }
            Err(netlink::Error::Exists(_)) => {
                // Either name may be the taken one: the container's is ours to report.
                if ctr.link_by_name(&call.ifname).await.is_ok() {
                    return Err(Error::new(
                        Code::Internal,
                        format!(
                            "interface {:?} already exists in netns {}",
                            call.ifname,
                            netns.path().display()
                        ),
                    ));
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::new(
        Code::Internal,
        "could not find a free host veth name in 3 tries",
    ))
}

/// Puts `port` on the configured VLANs: `vid` as its untagged native VLAN,
/// or the trunk's ids tagged; VLAN 1 is removed unless `preserveDefaultVlan`.
async fn set_port_vlans(conf: &Conf, host: &Netlink, port: &Link, vid: Option<u16>) -> Result<()> {
    if let Some(vid) = vid {
        host.add_port_vlan(port, vid, true).await?;
    }
    for &id in &conf.vlan_trunk {
        host.add_port_vlan(port, id, false).await?;
    }
    if !conf.preserve_default_vlan {
        host.del_port_vlan(port, 1).await?;
    }
    Ok(())
}

/// The link `<bridge>.<vid>` that carries the gateway address of VLAN
/// `vid`: one end of a veth pair in the host namespace whose other end is a
/// bridge port on that VLAN. Made on first use, shared afterwards.
async fn ensure_vlan_gateway_link(
    conf: &Conf,
    host: &Netlink,
    bridge: &Link,
    vid: u16,
) -> Result<Link> {
    let name = format!("{}.{vid}", bridge.name);
    pkg::skel::validate_ifname(&name).map_err(|_| {
        Error::invalid_config(format!(
            "bridge: {name:?} (the VLAN gateway link) is longer than 15 bytes"
        ))
    })?;
    match host.link_by_name(&name).await {
        Ok(link) => return Ok(link),
        Err(netlink::Error::LinkNotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let own_ns = pkg::ns::NetNs::current()?;
    let port_name = random_veth_name();
    let pair = VethPair {
        host: &port_name,
        host_mac: random_mac(),
        peer: &name,
        peer_mac: random_mac(),
        peer_ns: &own_ns,
        mtu: conf.mtu,
        master: Some(bridge.index),
    };
    match host.create_veth(&pair).await {
        Ok(()) => {
            host.set_port_up(&port_name).await?;
            let port = host.link_by_name(&port_name).await?;
            set_port_vlans(conf, host, &port, Some(vid)).await?;
        }
        Err(netlink::Error::Exists(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let link = host.link_by_name(&name).await?;
    host.set_up(&link).await?;
    Ok(link)
}

/// `veth` and 8 random hex digits, as the reference names host ends.
fn random_veth_name() -> String {
    let mut b = [0u8; 4];
    netlink::fill_random(&mut b);
    format!(
        "veth{}",
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    )
}

/// Points every address at the container interface, fills in gateways
/// (the subnet's first address) when the bridge is the gateway, and adds
/// default routes for `isDefaultGateway`, as the reference does. Returns the
/// gateway addresses for the bridge, with the subnets' prefix lengths.
fn assign_gateways(conf: &Conf, result: &mut NetResult) -> Vec<IpNet> {
    let mut gateways = Vec::new();
    let mut default_done = [false, false];
    for i in 0..result.ips.len() {
        let ip = &mut result.ips[i];
        ip.interface = Some(CONTAINER_IFACE);
        if ip.gateway.is_none() && conf.is_gateway {
            ip.gateway = first_host(ip.address);
        }
        let (address, gateway) = (ip.address, ip.gateway);
        let v4 = address.addr().is_ipv4();
        let family = usize::from(!v4);
        let default: IpNet = if v4 { "0.0.0.0/0" } else { "::/0" }
            .parse()
            .expect("literal");
        if conf.is_default_gateway && !default_done[family] {
            default_done[family] = true;
            let exists = result
                .routes
                .iter()
                .any(|r| r.dst == default && r.gw.is_some());
            if !exists {
                result.routes.push(Route::new(default, gateway));
            }
        }
        if conf.is_gateway {
            if let Some(gw) = gateway.and_then(|g| IpNet::new(g, address.prefix_len()).ok()) {
                if !gateways.contains(&gw) {
                    gateways.push(gw);
                }
            }
        }
    }
    gateways
}

/// The first address of `net`'s subnet (`10.1.0.1` for `10.1.0.5/24`).
fn first_host(net: IpNet) -> Option<IpAddr> {
    match net.network() {
        IpAddr::V4(a) => u32::from(a).checked_add(1).map(|n| IpAddr::V4(n.into())),
        IpAddr::V6(a) => u128::from(a).checked_add(1).map(|n| IpAddr::V6(n.into())),
    }
}

/// Puts `gw` on the bridge. Another address of the same family (IPv4) or
/// of an overlapping subnet (IPv6) is an error unless `forceAddress`, which
/// replaces it. A concurrent ADD adding the same address is fine.
async fn ensure_gateway_addr(conf: &Conf, host: &Netlink, bridge: &Link, gw: IpNet) -> Result<()> {
    for existing in host.addresses(bridge).await? {
        if existing == gw {
            return Ok(());
        }
        let same_family = existing.addr().is_ipv4() == gw.addr().is_ipv4();
        let conflicts = same_family
            && (gw.addr().is_ipv4()
                || existing.contains(&gw.addr())
                || gw.contains(&existing.addr()));
        if conflicts {
            if !conf.force_address {
                return Err(Error::new(
                    Code::Internal,
                    format!(
                        "bridge {:?} already has address {existing}, not the gateway {gw} (set forceAddress to replace it)",
                        bridge.name
                    ),
                ));
            }
            host.del_addr(bridge, existing).await?;
        }
    }
    match host.add_addr(bridge, gw, false).await {
        Ok(()) | Err(netlink::Error::Exists(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Turns on forwarding for `gw`'s family in the host namespace, writing
/// the sysctl only when it is off.
fn enable_forwarding(gw: IpAddr) -> Result<()> {
    let path = if gw.is_ipv4() {
        "/proc/sys/net/ipv4/ip_forward"
    } else {
        "/proc/sys/net/ipv6/conf/all/forwarding"
    };
    let current = std::fs::read_to_string(path).map_err(|e| Error::file("read", path, e))?;
    if current.trim() != "1" {
        std::fs::write(path, "1").map_err(|e| Error::file("write", path, e))?;
    }
    Ok(())
}

/// The masquerade of this call's attachment for `addrs`.
pub(crate) fn masquerade<'a>(conf: &Conf, call: &'a Call, addrs: &'a [IpNet]) -> Masquerade<'a> {
    Masquerade {
        backend: match conf.ip_masq_backend.as_deref() {
            Some("nftables") => Some(Backend::Nftables),
            Some("iptables") => Some(Backend::Iptables),
            _ => None,
        },
        network: &call.conf.name,
        container_id: &call.container_id,
        ifname: &call.ifname,
        addrs,
        exclude: &[],
    }
}

/// DEL outside the container: the masquerade and spoof check rules, found
/// by network, container id and interface alone. Returns every failure.
fn remove_rules(conf: &Conf, call: &Call) -> Vec<Error> {
    let mut errors = Vec::new();
    if conf.ip_masq {
        errors.extend(ipmasq::teardown(&call.conf.name, &call.container_id, &call.ifname).err());
    }
    if conf.mac_spoof_check {
        errors.extend(
            spoofcheck::teardown(&spoofcheck::ref_id(&call.container_id, &call.ifname)).err(),
        );
    }
    errors
}

/// DEL inside the container: delete its end of the veth (the host end goes
/// with it). Nothing to do when the namespace or the link is gone.
async fn del_container_link(call: &Call) -> Result<()> {
    let Some(ns) = call.container_netns_if_present()? else {
        return Ok(());
    };
    let ctr = Netlink::open_in(&ns)?;
    match ctr.link_by_name(&call.ifname).await {
        Ok(link) => match ctr.del_link(&link).await {
            Ok(()) | Err(netlink::Error::LinkNotFound(_)) => Ok(()),
            Err(e) => Err(e.into()),
        },
        Err(netlink::Error::LinkNotFound(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn first_of(errors: Vec<Error>) -> Result<()> {
    match errors.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// What a failed ADD must undo, filled in step by step.
#[derive(Default)]
struct Rollback {
    ipam_binary: Option<PathBuf>,
    /// The IPAM ADD, until its result is taken.
    ipam_running: Option<Pending>,
    /// The IPAM ADD succeeded: its address must be released.
    ipam_allocated: bool,
    created_bridge: Option<Link>,
    host_veth: Option<String>,
    spoofcheck: bool,
    masq: bool,
    disarmed: bool,
}

impl Rollback {
    fn disarm(&mut self) {
        self.disarmed = true;
    }

    /// Undoes every recorded step, newest first, and returns `cause` with
    /// any failure of the undo appended to its details.
    async fn run(mut self, call: &Call, host: &Netlink, cause: Error) -> Error {
        if self.disarmed {
            return cause;
        }
        let mut failures = Vec::new();
        if self.masq {
            if let Err(e) = ipmasq::teardown(&call.conf.name, &call.container_id, &call.ifname) {
                failures.push(e.to_string());
            }
        }
        if self.spoofcheck {
            if let Err(e) =
                spoofcheck::teardown(&spoofcheck::ref_id(&call.container_id, &call.ifname))
            {
                failures.push(e.to_string());
            }
        }
        if let Some(name) = &self.host_veth {
            match host.link_by_name(name).await {
                Ok(link) => match host.del_link(&link).await {
                    Ok(()) | Err(netlink::Error::LinkNotFound(_)) => {}
                    Err(e) => failures.push(e.to_string()),
                },
                Err(netlink::Error::LinkNotFound(_)) => {}
                Err(e) => failures.push(e.to_string()),
            }
        }
        if let Some(bridge) = &self.created_bridge {
            // Only if no other ADD has put a port on it meanwhile.
            match host.has_ports(bridge).await {
                Ok(false) => {
                    if let Err(e) = host.del_link(bridge).await {
                        failures.push(e.to_string());
                    }
                }
                Ok(true) => {}
                Err(e) => failures.push(e.to_string()),
            }
        }
        if let Some(running) = self.ipam_running.take() {
            // Its ADD may have succeeded after all: then it holds an address.
            self.ipam_allocated = running.wait().is_ok();
        }
        if self.ipam_allocated {
            if let Some(binary) = &self.ipam_binary {
                if let Err(e) = ipam::exec(binary, call, "DEL") {
                    failures.push(e.to_string());
                }
            }
        }
        if failures.is_empty() {
            return cause;
        }
        let code = cause.code();
        let details = format!(
            "{} (undoing the ADD also failed: {})",
            cause.details(),
            failures.join("; ")
        );
        Error::with_details(code, cause.to_string(), details.trim_start())
    }
}
