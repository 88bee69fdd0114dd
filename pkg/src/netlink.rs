//! The link, address and route operations the plugins need, over rtnetlink.
//!
//! This is the only module that speaks `netlink_packet_route`. A [`Netlink`]
//! is bound to one network namespace: the socket belongs to the namespace of
//! the thread that created it, so [`Netlink::open_in`] creates it on a thread
//! that entered the namespace, and it is then used from the runtime like any
//! other. Verbs are named after `ip`'s. `ENODEV` and `EEXIST` come back as
//! their own variants so callers can tolerate "already gone" by type.

use std::net::IpAddr;

use std::os::fd::AsRawFd;

use futures::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use netlink_packet_route::link::{AfSpecInet6, AfSpecUnspec, BridgeVlanInfoFlags, In6AddrGenMode};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteMetric, RouteScope,
};
use netlink_packet_route::AddressFamily;
use rtnetlink::{
    Handle, LinkBridge, LinkBridgePort, LinkBridgeVlan, LinkMessageBuilder, LinkUnspec, LinkVeth,
};

use crate::ns::{self, NetNs};
use crate::spec::Route;

/// A failed netlink operation, naming the object it was about.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The link does not exist (ENODEV, or no match on a lookup).
    #[error("link {0:?}: no such link")]
    LinkNotFound(String),
    /// The object exists already (EEXIST).
    #[error("{0}: already exists")]
    Exists(String),
    /// Any other refusal by the kernel.
    #[error("{op} {what}: {errno}")]
    Kernel {
        op: &'static str,
        what: String,
        errno: nix::errno::Errno,
    },
    /// A failure that is not a kernel error code (a broken socket, a malformed reply).
    #[error("{op} {what}: {detail}")]
    Protocol {
        op: &'static str,
        what: String,
        detail: String,
    },
    #[error(transparent)]
    Ns(#[from] ns::Error),
    #[error("netlink socket: {0}")]
    Socket(std::io::Error),
}

/// What a verb reports on failure: the operation and the object.
fn fail(op: &'static str, what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> Error {
    let what = what.into();
    move |e| match e {
        rtnetlink::Error::NetlinkError(msg) => {
            let errno = nix::errno::Errno::from_raw(-msg.raw_code());
            match errno {
                nix::errno::Errno::ENODEV => Error::LinkNotFound(what),
                nix::errno::Errno::EEXIST => Error::Exists(what),
                errno => Error::Kernel { op, what, errno },
            }
        }
        other => Error::Protocol {
            op,
            what,
            detail: other.to_string(),
        },
    }
}

/// A link as the plugins see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// `aa:bb:cc:dd:ee:ff`, lower case; empty for links without one (`lo` has zeros).
    pub mac: String,
    pub mtu: Option<u32>,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// The link kind (`veth`, `bridge`, ...); `None` for `lo` and physical links.
    pub kind: Option<String>,
    /// The bridge (or other controller) this link is a port of.
    pub controller: Option<u32>,
}

impl Link {
    fn from_message(msg: &LinkMessage) -> Link {
        let mut link = Link {
            index: msg.header.index,
            name: String::new(),
            mac: String::new(),
            mtu: None,
            up: msg.header.flags.contains(LinkFlags::Up),
            kind: None,
            controller: None,
        };
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::IfName(n) => link.name = n.clone(),
                LinkAttribute::Address(a) => link.mac = format_mac(a),
                LinkAttribute::Mtu(m) => link.mtu = Some(*m),
                LinkAttribute::Controller(c) => link.controller = Some(*c),
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        if let LinkInfo::Kind(k) = info {
                            link.kind = Some(k.to_string());
                        }
                    }
                }
                _ => {}
            }
        }
        link
    }
}

/// Formats a hardware address as `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A connection with `NETLINK_GET_STRICT_CHK`: the kernel then honours the
/// filters of a dump (addresses of one link, routes of one interface)
/// instead of sending the whole namespace's, which grows with every
/// container on the host.
fn connect() -> std::io::Result<(
    rtnetlink::proto::Connection<netlink_packet_route::RouteNetlinkMessage>,
    Handle,
)> {
    let (conn, handle, _) = rtnetlink::new_connection_with_strict_check()?;
    Ok((conn, handle))
}

/// A netlink socket bound to one network namespace.
pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// A socket in the calling thread's namespace. Must be called from
    /// inside the tokio runtime, which drives the connection.
    pub fn open() -> Result<Netlink, Error> {
        let (conn, handle) = connect().map_err(Error::Socket)?;
        tokio::spawn(conn);
        Ok(Netlink { handle })
    }

    /// A socket in `ns`, created on a thread that entered it. Must be called
    /// from inside the tokio runtime, which drives the connection.
    pub fn open_in(ns: &NetNs) -> Result<Netlink, Error> {
        let runtime = tokio::runtime::Handle::current();
        let (conn, handle, _) = ns
            .run(|| {
                // The socket registers with the runtime's reactor when created.
                let _entered = runtime.enter();
                rtnetlink::new_connection()
            })?
            .map_err(Error::Socket)?;
        tokio::spawn(conn);
        Ok(Netlink { handle })
    }

    /// The link named `name`.
    pub async fn link_by_name(&self, name: &str) -> Result<Link, Error> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match links.try_next().await {
            Ok(Some(msg)) => Ok(Link::from_message(&msg)),
            Ok(None) => Err(Error::LinkNotFound(name.to_string())),
            Err(e) => Err(fail("get link", format!("{name:?}"))(e)),
        }
    }

    /// Sends one RTM_SETLINK about `link`; `op` names it in errors.
    async fn set_link(&self, link: &Link, msg: LinkMessage, op: &'static str) -> Result<(), Error> {
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(fail(op, format!("{:?}", link.name)))
    }

    /// Brings the link up.
    pub async fn set_up(&self, link: &Link) -> Result<(), Error> {
        self.set_link(
            link,
            LinkUnspec::new_with_index(link.index).up().build(),
            "set up link",
        )
        .await
    }

    /// Takes the link down.
    pub async fn set_down(&self, link: &Link) -> Result<(), Error> {
        self.set_link(
            link,
            LinkUnspec::new_with_index(link.index).down().build(),
            "set down link",
        )
        .await
    }

    /// The addresses on the link, with their prefix lengths.
    pub async fn addresses(&self, link: &Link) -> Result<Vec<IpNet>, Error> {
        Ok(self
            .address_messages(link)
            .await?
            .iter()
            .filter_map(address_of)
            .collect())
    }

    /// The kernel's address messages of one link. The index goes in the
    /// request header, where a strict-check socket makes the kernel filter:
    /// otherwise it sends every address of the namespace (one more per
    /// container on a busy host) and rtnetlink drops the others here.
    async fn address_messages(&self, link: &Link) -> Result<Vec<AddressMessage>, Error> {
        let mut req = self
            .handle
            .address()
            .get()
            .set_link_index_filter(link.index);
        req.message_mut().header.index = link.index;
        req.execute()
            .try_collect()
            .await
            .map_err(fail("list addresses of link", format!("{:?}", link.name)))
    }

    /// The link with index `index`.
    pub async fn link_by_index(&self, index: u32) -> Result<Link, Error> {
        let mut links = self.handle.link().get().match_index(index).execute();
        match links.try_next().await {
            Ok(Some(msg)) => Ok(Link::from_message(&msg)),
            Ok(None) => Err(Error::LinkNotFound(format!("index {index}"))),
            Err(e) => Err(fail("get link", format!("index {index}"))(e)),
        }
    }

    /// True when any link is a port of `bridge`.
    pub async fn has_ports(&self, bridge: &Link) -> Result<bool, Error> {
        let mut links = self.handle.link().get().execute();
        while let Some(msg) = links
            .try_next()
            .await
            .map_err(fail("list links", "of the namespace"))?
        {
            if Link::from_message(&msg).controller == Some(bridge.index) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Creates a bridge, up, with a fixed MAC (so the bridge keeps it when
    /// ports come and go instead of taking the lowest port's), `mtu` if
    /// given, and VLAN filtering if asked (kernels built without it refuse).
    /// `Error::Exists` when a link of that name exists.
    pub async fn create_bridge(
        &self,
        name: &str,
        mac: [u8; 6],
        mtu: Option<u32>,
        vlan_filtering: bool,
    ) -> Result<(), Error> {
        let mut b = LinkBridge::new(name).address(mac.to_vec()).up();
        if vlan_filtering {
            b = b.vlan_filtering(true);
        }
        if let Some(mtu) = mtu {
            b = b.mtu(mtu);
        }
        self.handle
            .link()
            .add(b.build())
            .execute()
            .await
            .map_err(fail("create bridge", format!("{name:?}")))
    }

    /// Creates a veth pair in one request: `pair.host` in this socket's
    /// namespace (a port of `pair.master` if given; still down), its peer
    /// named `pair.peer` directly in `pair.peer_ns`. Both ends get
    /// `pair.mtu` and their MACs. `Error::Exists` when either name is taken.
    pub async fn create_veth(&self, pair: &VethPair<'_>) -> Result<(), Error> {
        let mut peer = LinkUnspec::new_with_name(pair.peer).address(pair.peer_mac.to_vec());
        if let Some(mtu) = pair.mtu {
            peer = peer.mtu(mtu);
        }
        let peer = peer.setns_by_fd(pair.peer_ns.as_raw_fd()).build();
        let mut host = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
            .name(pair.host.to_string())
            .address(pair.host_mac.to_vec())
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)));
        if let Some(mtu) = pair.mtu {
            host = host.mtu(mtu);
        }
        if let Some(master) = pair.master {
            host = host.controller(master);
        }
        self.handle
            .link()
            .add(host.build())
            .execute()
            .await
            .map_err(fail(
                "create veth",
                format!("{:?} (peer {:?})", pair.host, pair.peer),
            ))
    }

    /// Brings up the bridge port `name` without IPv6 addresses of its own
    /// (`addrgenmode none`): a port needs none, and the link-local address's
    /// duplicate detection, MLD and router solicitations would be flooded to
    /// every other port of the bridge, a cost that grows with each container.
    /// Kernels without IPv6 refuse the setting; the port then just comes up.
    pub async fn set_port_up(&self, name: &str) -> Result<(), Error> {
        let no_ll =
            LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(vec![AfSpecInet6::AddrGenMode(
                In6AddrGenMode::None,
            )])]);
        let msg = LinkUnspec::new_with_name(name)
            .up()
            .append_extra_attribute(no_ll)
            .build();
        let what = format!("{name:?}");
        match self
            .handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(fail("set up bridge port", what.clone()))
        {
            Err(Error::Kernel {
                errno: nix::errno::Errno::EAFNOSUPPORT,
                ..
            }) => {
                let msg = LinkUnspec::new_with_name(name).up().build();
                self.handle
                    .link()
                    .set(msg)
                    .execute()
                    .await
                    .map_err(fail("set up bridge port", what))
            }
            other => other,
        }
    }

    /// Sets bridge port flags of `port`: hairpin (reflect frames back out
    /// of the port they came in) and isolation (no traffic to other isolated ports).
    pub async fn set_port_flags(
        &self,
        port: &Link,
        hairpin: bool,
        isolated: bool,
    ) -> Result<(), Error> {
        let msg = LinkBridgePort::new(port.index)
            .hairpin(hairpin)
            .append_info_data(netlink_packet_route::link::InfoBridgePort::Isolated(
                isolated,
            ))
            .build();
        self.handle
            .link()
            .set_port(msg)
            .execute()
            .await
            .map_err(fail("set bridge port flags of", format!("{:?}", port.name)))
    }

    /// Adds VLAN `vid` to bridge port `port`; with `pvid_untagged`, as the
    /// port's native VLAN (`bridge vlan add vid N pvid untagged`).
    pub async fn add_port_vlan(
        &self,
        port: &Link,
        vid: u16,
        pvid_untagged: bool,
    ) -> Result<(), Error> {
        let flags = if pvid_untagged {
            BridgeVlanInfoFlags::Pvid | BridgeVlanInfoFlags::Untagged
        } else {
            BridgeVlanInfoFlags::empty()
        };
        let msg = LinkBridgeVlan::new(port.index).vlan(vid, flags).build();
        self.handle.link().set(msg).execute().await.map_err(fail(
            "add VLAN",
            format!("{vid} to bridge port {:?}", port.name),
        ))
    }

    /// Removes VLAN `vid` from bridge port `port`.
    pub async fn del_port_vlan(&self, port: &Link, vid: u16) -> Result<(), Error> {
        let msg = LinkBridgeVlan::new(port.index)
            .vlan(vid, BridgeVlanInfoFlags::empty())
            .build();
        self.handle
            .link()
            .del_with_message(msg)
            .execute()
            .await
            .map_err(fail(
                "remove VLAN",
                format!("{vid} from bridge port {:?}", port.name),
            ))
    }

    /// Turns promiscuous mode on or off.
    pub async fn set_promisc(&self, link: &Link, on: bool) -> Result<(), Error> {
        let msg = LinkUnspec::new_with_index(link.index)
            .promiscuous(on)
            .build();
        self.set_link(link, msg, "set promiscuous mode of").await
    }

    /// Deletes the link (a veth takes its peer with it). `Error::LinkNotFound` if gone.
    pub async fn del_link(&self, link: &Link) -> Result<(), Error> {
        self.handle
            .link()
            .del(link.index)
            .execute()
            .await
            .map_err(fail("delete link", format!("{:?}", link.name)))
    }

    /// Adds `addr` to the link. Without `dad`, an IPv6 address is usable at
    /// once (`IFA_F_NODAD`) instead of after duplicate address detection.
    pub async fn add_addr(&self, link: &Link, addr: IpNet, dad: bool) -> Result<(), Error> {
        let mut req = self
            .handle
            .address()
            .add(link.index, addr.addr(), addr.prefix_len());
        if !dad && addr.addr().is_ipv6() {
            req.message_mut()
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        req.execute()
            .await
            .map_err(fail("add address", format!("{addr} to {:?}", link.name)))
    }

    /// Removes `addr` from the link.
    pub async fn del_addr(&self, link: &Link, addr: IpNet) -> Result<(), Error> {
        let found = self
            .address_messages(link)
            .await?
            .into_iter()
            .find(|msg| address_of(msg) == Some(addr));
        let Some(msg) = found else { return Ok(()) };
        self.handle.address().del(msg).execute().await.map_err(fail(
            "delete address",
            format!("{addr} from {:?}", link.name),
        ))
    }

    /// True while an IPv6 address on the link is still tentative (DAD running).
    pub async fn has_tentative_addr(&self, link: &Link) -> Result<bool, Error> {
        let tentative = |msg: &AddressMessage| {
            msg.attributes.iter().any(
                |a| matches!(a, AddressAttribute::Flags(f) if f.contains(AddressFlags::Tentative)),
            )
        };
        Ok(self.address_messages(link).await?.iter().any(tentative))
    }

    /// Adds a route through `link`.
    pub async fn add_route(&self, link: &Link, route: &Route) -> Result<(), Error> {
        let msg = route_message(link.index, route);
        self.handle.route().add(msg).execute().await.map_err(fail(
            "add route",
            format!("{} via {:?}", route.dst, link.name),
        ))
    }

    /// Every route of the main table whose output interface is `link`.
    pub async fn routes(&self, link: &Link) -> Result<Vec<Route>, Error> {
        let mut out = Vec::new();
        for family in [rtnetlink::IpVersion::V4, rtnetlink::IpVersion::V6] {
            let query = match family {
                rtnetlink::IpVersion::V4 => {
                    rtnetlink::RouteMessageBuilder::<std::net::Ipv4Addr>::new().build()
                }
                rtnetlink::IpVersion::V6 => {
                    rtnetlink::RouteMessageBuilder::<std::net::Ipv6Addr>::new().build()
                }
            };
            let mut req = self.handle.route().get(query).execute();
            while let Some(msg) = req
                .try_next()
                .await
                .map_err(fail("list routes of link", format!("{:?}", link.name)))?
            {
                if let Some(r) = route_from_message(&msg, link.index) {
                    out.push(r);
                }
            }
        }
        Ok(out)
    }
}

/// The address of an address message: `IFA_LOCAL` where set (the local end
/// of a point-to-point link), else `IFA_ADDRESS`.
fn address_of(msg: &AddressMessage) -> Option<IpNet> {
    let mut addr: Option<IpAddr> = None;
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Local(a) => addr = Some(*a),
            AddressAttribute::Address(a) if addr.is_none() => addr = Some(*a),
            _ => {}
        }
    }
    addr.and_then(|a| IpNet::new(a, msg.header.prefix_len).ok())
}

/// Both ends of a veth pair to create, for [`Netlink::create_veth`].
pub struct VethPair<'a> {
    pub host: &'a str,
    pub host_mac: [u8; 6],
    pub peer: &'a str,
    pub peer_mac: [u8; 6],
    pub peer_ns: &'a NetNs,
    pub mtu: Option<u32>,
    pub master: Option<u32>,
}

/// A route of the main table through interface `oif`, read back from the kernel.
fn route_from_message(msg: &RouteMessage, oif: u32) -> Option<Route> {
    let mut dst: Option<IpAddr> = None;
    let mut gw = None;
    let mut out_if = None;
    let mut table = u32::from(msg.header.table);
    let mut priority = None;
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Destination(a) => dst = route_addr(a),
            RouteAttribute::Gateway(a) => gw = route_addr(a),
            RouteAttribute::Oif(i) => out_if = Some(*i),
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Priority(p) => priority = Some(*p),
            _ => {}
        }
    }
    if out_if != Some(oif) || table != 254 {
        return None;
    }
    let dst = dst.unwrap_or(match msg.header.address_family {
        AddressFamily::Inet6 => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        _ => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
    });
    let dst = IpNet::new(dst, msg.header.destination_prefix_length).ok()?;
    Some(Route {
        priority,
        ..Route::new(dst, gw)
    })
}

fn route_addr(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

fn route_message(oif: u32, r: &Route) -> RouteMessage {
    let mut b = rtnetlink::RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(r.dst.addr(), r.dst.prefix_len())
        .expect("destination and family agree")
        .output_interface(oif);
    if let Some(gw) = r.gw {
        // A gateway of the other family is refused by the kernel, which names it.
        if let Ok(with_gw) = b.clone().gateway(gw) {
            b = with_gw;
        }
    }
    if let Some(p) = r.priority {
        b = b.priority(p);
    }
    if let Some(t) = r.table {
        b = b.table_id(t);
    }
    match r.scope {
        Some(s) => b = b.scope(RouteScope::from(s)),
        None if r.gw.is_none() => b = b.scope(RouteScope::Link),
        None => {}
    }
    let mut msg = b.build();
    let mut metrics = Vec::new();
    if let Some(m) = r.mtu {
        metrics.push(RouteMetric::Mtu(m));
    }
    if let Some(m) = r.advmss {
        metrics.push(RouteMetric::Advmss(m));
    }
    if !metrics.is_empty() {
        msg.attributes.push(RouteAttribute::Metrics(metrics));
    }
    msg
}

/// Parses `aa:bb:cc:dd:ee:ff` (either case).
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for byte in &mut out {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// A random unicast, locally administered MAC, as the kernel makes for a
/// new veth; generated here so the result can name it without asking.
pub fn random_mac() -> [u8; 6] {
    let mut mac = [0u8; 6];
    fill_random(&mut mac);
    mac[0] = (mac[0] & 0xfe) | 0x02;
    mac
}

/// Fills `buf` from the kernel's random source.
pub fn fill_random(buf: &mut [u8]) {
    // SAFETY: getrandom writes at most buf.len() bytes into buf.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    assert_eq!(n, buf.len() as isize, "getrandom");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_mac() {
        assert_eq!(
            parse_mac("0A:58:0a:01:00:05"),
            Some([0x0a, 0x58, 0x0a, 1, 0, 5])
        );
        for bad in [
            "",
            "0a:58:0a:01:00",
            "0a:58:0a:01:00:05:06",
            "0a-58-0a-01-00-05",
            "zz:58:0a:01:00:05",
            "a:58:0a:01:00:05",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
        assert_eq!(
            format_mac(&parse_mac("0a:58:0a:01:00:05").unwrap()),
            "0a:58:0a:01:00:05"
        );
    }

    #[test]
    fn test_random_mac_is_local_unicast() {
        for _ in 0..32 {
            let m = random_mac();
            assert_eq!(m[0] & 0x01, 0);
            assert_eq!(m[0] & 0x02, 0x02);
        }
    }
}
