//! The host-local plugin's handlers.

use std::net::IpAddr;

use ipnet::IpNet;
use pkg::skel::{Call, Plugin};
use pkg::spec::{Code, Dns, IpConfig, NetResult};
use pkg::{Error, Result};

use crate::allocator::{Range, RangeSet};
use crate::config::{parse_resolv_conf, IpamConfig};
use crate::store::{Holder, Store};

pub struct HostLocal;

impl Plugin for HostLocal {
    fn about(&self) -> String {
        format!("CNI host-local plugin v{}", env!("CARGO_PKG_VERSION"))
    }

    async fn add(&self, call: &Call) -> Result<NetResult> {
        let conf = IpamConfig::load(call)?;
        let dns = match &conf.resolv_conf {
            Some(path) => parse_resolv_conf(path)?,
            None => Dns::default(),
        };
        let store = Store::open(&conf.data_dir, &conf.network)?;
        refuse_second_add(&store, &conf, call)?;

        let mut reserved = Reservation {
            store: &store,
            ips: Vec::new(),
            committed: false,
        };
        let mut ips = Vec::new();
        for (idx, set) in conf.range_sets.iter().enumerate() {
            let (ip, range) = match conf.requested[idx] {
                Some(ip) => reserve_requested(&store, set, idx, ip, call)?,
                None => reserve_next(&store, set, idx, call, &conf.network)?,
            };
            reserved.ips.push((idx, ip));
            ips.push(IpConfig {
                interface: None,
                address: IpNet::new(ip, range.subnet.prefix_len())
                    .expect("a subnet's prefix length fits its family"),
                gateway: Some(range.gateway),
            });
        }
        reserved.commit(&call.container_id, &call.ifname)?;
        Ok(NetResult {
            ips,
            routes: conf.routes,
            dns,
            ..NetResult::default()
        })
    }

    async fn del(&self, call: &Call) -> Result<()> {
        let data_dir = IpamConfig::data_dir(&call.conf)?;
        if let Some(store) = Store::open_existing(&data_dir, &call.conf.name)? {
            store.release_attachment(&call.container_id, &call.ifname)?;
        }
        Ok(())
    }

    async fn check(&self, call: &Call) -> Result<()> {
        let conf = IpamConfig::load(call)?;
        let (id, ifname) = (&call.container_id, &call.ifname);
        if let Some(store) = Store::open_existing(&conf.data_dir, &conf.network)? {
            if !store.indexed(id, ifname)?.is_empty() {
                return Ok(());
            }
            // Addresses the reference allocated have no index: look at them all.
            // A legacy file names the container only.
            let held = store.held()?;
            if held
                .iter()
                .any(|(_, h)| h.is(id, ifname) || matches!(h, Holder::Legacy { id: i } if i == id))
            {
                return Ok(());
            }
        }
        Err(Error::new(
            Code::Internal,
            format!(
                "container {id} interface {ifname} holds no address on network {:?} (in {})",
                conf.network,
                conf.data_dir.join(&conf.network).display()
            ),
        ))
    }

    async fn gc(&self, call: &Call) -> Result<()> {
        let valid = call.conf.valid_attachments()?;
        let data_dir = IpamConfig::data_dir(&call.conf)?;
        if let Some(store) = Store::open_existing(&data_dir, &call.conf.name)? {
            store.release_all_but(&valid)?;
        }
        Ok(())
    }

    async fn status(&self, call: &Call) -> Result<()> {
        let conf = IpamConfig::load(call)?;
        // Opening the store creates the directory and opens the lock file
        // for writing: it fails on a read-only or missing file system.
        Store::open(&conf.data_dir, &conf.network).map_err(|e| {
            Error::new(
                Code::NotAvailable,
                format!(
                    "data directory {} cannot be written: {e}",
                    conf.data_dir.display()
                ),
            )
        })?;
        Ok(())
    }
}

/// Refuses an ADD for an attachment that already holds an address of one
/// of the network's range sets, as the reference does. This reads the
/// attachment's index file, not every address file: addresses the
/// reference plugin allocated (which it does not index) are not seen.
fn refuse_second_add(store: &Store, conf: &IpamConfig, call: &Call) -> Result<()> {
    let held = store.indexed(&call.container_id, &call.ifname)?;
    let in_sets = |ip: &IpAddr| conf.range_sets.iter().any(|s| s.range_for(*ip).is_some());
    match held.iter().find(|ip| in_sets(ip)) {
        None => Ok(()),
        Some(ip) => Err(Error::new(
            Code::Internal,
            format!(
                "container {} interface {} already holds {ip} on network {:?}; a second ADD is refused (DEL first)",
                call.container_id, call.ifname, conf.network
            ),
        )),
    }
}

fn reserve_requested<'s>(
    store: &Store,
    set: &'s RangeSet,
    idx: usize,
    ip: IpAddr,
    call: &Call,
) -> Result<(IpAddr, &'s Range)> {
    let range = set
        .range_for(ip)
        .expect("requested addresses are assigned to the set holding them");
    if store.reserve(ip, &call.container_id, &call.ifname)? {
        return Ok((ip, range));
    }
    let by = match store.holder(ip)? {
        Some(holder) => format!("held by {holder}"),
        None => format!("{} exists", store.path().join(ip.to_string()).display()),
    };
    Err(Error::new(
        Code::Internal,
        format!("requested address {ip} is not available in range set {idx} ({set}): {by}"),
    ))
}

/// The first free address in the reference's round-robin order.
fn reserve_next<'s>(
    store: &Store,
    set: &'s RangeSet,
    idx: usize,
    call: &Call,
    network: &str,
) -> Result<(IpAddr, &'s Range)> {
    let last = store.last_reserved(idx)?;
    for (ip, range) in set.candidates(last) {
        if store.reserve(ip, &call.container_id, &call.ifname)? {
            return Ok((ip, range));
        }
    }
    Err(Error::new(
        Code::Internal,
        format!(
            "no address left in range set {idx} ({set}) of network {network:?}: every one is held"
        ),
    ))
}

/// The addresses an ADD reserved: removed again unless the ADD succeeds.
struct Reservation<'s> {
    store: &'s Store,
    /// (range set index, address).
    ips: Vec<(usize, IpAddr)>,
    committed: bool,
}

impl Reservation<'_> {
    /// Records each set's last reservation and the attachment's index; the
    /// addresses are then kept.
    fn commit(mut self, id: &str, ifname: &str) -> Result<()> {
        for (idx, ip) in &self.ips {
            self.store.set_last_reserved(*idx, *ip)?;
        }
        let ips: Vec<IpAddr> = self.ips.iter().map(|(_, ip)| *ip).collect();
        self.store.write_index(id, ifname, &ips)?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.committed {
            for (_, ip) in &self.ips {
                let _ = self.store.release(*ip);
            }
        }
    }
}
