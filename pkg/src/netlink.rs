//! The link, address and route operations the plugins need, over rtnetlink.
//!
//! This is the only module that speaks `netlink_packet_route`. A [`Netlink`]
//! is bound to one network namespace: the socket belongs to the namespace of
//! the thread that created it, so [`Netlink::open_in`] creates it on a thread
//! that entered the namespace, and it is then used from the runtime like any
//! other. Verbs are named after `ip`'s. `ENODEV` and `EEXIST` come back as
//! their own variants so callers can tolerate "already gone" by type.

use std::net::IpAddr;

use futures::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use rtnetlink::{Handle, LinkUnspec};

use crate::ns::{self, NetNs};

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

/// A netlink socket bound to one network namespace.
pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// A socket in the calling thread's namespace. Must be called from
    /// inside the tokio runtime, which drives the connection.
    pub fn open() -> Result<Netlink, Error> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(Error::Socket)?;
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

    /// Brings the link up.
    pub async fn set_up(&self, link: &Link) -> Result<(), Error> {
        let msg = LinkUnspec::new_with_index(link.index).up().build();
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(fail("set up link", format!("{:?}", link.name)))
    }

    /// Takes the link down.
    pub async fn set_down(&self, link: &Link) -> Result<(), Error> {
        let msg = LinkUnspec::new_with_index(link.index).down().build();
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(fail("set down link", format!("{:?}", link.name)))
    }

    /// The addresses on the link, with their prefix lengths.
    pub async fn addresses(&self, link: &Link) -> Result<Vec<IpNet>, Error> {
        let mut req = self
            .handle
            .address()
            .get()
            .set_link_index_filter(link.index)
            .execute();
        let mut out = Vec::new();
        while let Some(msg) = req
            .try_next()
            .await
            .map_err(fail("list addresses of link", format!("{:?}", link.name)))?
        {
            if let Some(net) = address_of(&msg) {
                out.push(net);
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
