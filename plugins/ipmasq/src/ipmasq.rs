//! The ipmasq plugin's configuration and handlers.

use ipnet::IpNet;
use serde::Deserialize;

use pkg::ipmasq::{self, Backend, Masquerade};
use pkg::skel::{Call, Plugin};
use pkg::spec::{Code, NetResult};
use pkg::{Error, Result};

/// The plugin's own configuration keys.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Conf {
    /// `iptables` or `nftables`; unset: iptables when it works, else nftables.
    /// `ipMasqBackend` (bridge's name for it) is read too.
    #[serde(default, alias = "ipMasqBackend")]
    pub backend: Option<Backend>,
    /// Destinations not masqueraded, beyond each address's own subnet.
    #[serde(default)]
    pub exclude: Vec<IpNet>,
}

pub struct IpMasq;

/// The masquerade of this call's attachment for `addrs`.
fn masquerade<'a>(conf: &'a Conf, call: &'a Call, addrs: &'a [IpNet]) -> Masquerade<'a> {
    Masquerade {
        backend: conf.backend,
        network: &call.conf.name,
        container_id: &call.container_id,
        ifname: &call.ifname,
        addrs,
        exclude: &conf.exclude,
    }
}

/// The `prevResult` and its addresses (with prefix), which ADD and CHECK
/// act on: a chained plugin with nothing before it is misconfigured.
fn prev_addresses(call: &Call) -> Result<(NetResult, Vec<IpNet>)> {
    let Some(prev) = call.conf.prev_result()? else {
        return Err(Error::invalid_config(format!(
            "ipmasq is a chained plugin: network {:?} has no prevResult, so there are no addresses to masquerade; list ipmasq after a plugin that assigns addresses",
            call.conf.name
        )));
    };
    let addrs: Vec<IpNet> = prev.ips.iter().map(|ip| ip.address).collect();
    if addrs.is_empty() {
        return Err(Error::invalid_config(format!(
            "ipmasq: the prevResult of network {:?} has no addresses (\"ips\" is empty), so there is nothing to masquerade",
            call.conf.name
        )));
    }
    Ok((prev, addrs))
}

impl Plugin for IpMasq {
    fn about(&self) -> String {
        format!("CNI ipmasq plugin v{}", env!("CARGO_PKG_VERSION"))
    }

    async fn add(&self, call: &Call) -> Result<NetResult> {
        let conf: Conf = call.conf.plugin_fields()?;
        let (prev, addrs) = prev_addresses(call)?;
        masquerade(&conf, call, &addrs).setup()?;
        Ok(prev)
    }

    async fn del(&self, call: &Call) -> Result<()> {
        // The rules are named after the network, container and interface:
        // neither prevResult nor the namespace is needed to find them.
        ipmasq::teardown(&call.conf.name, &call.container_id, &call.ifname)
    }

    async fn check(&self, call: &Call) -> Result<()> {
        let conf: Conf = call.conf.plugin_fields()?;
        let (_, addrs) = prev_addresses(call)?;
        masquerade(&conf, call, &addrs).check()
    }

    async fn gc(&self, call: &Call) -> Result<()> {
        ipmasq::gc(&call.conf.name, &call.conf.valid_attachments()?)
    }

    async fn status(&self, call: &Call) -> Result<()> {
        let conf: Conf = call.conf.plugin_fields()?;
        if ipmasq::available(conf.backend) {
            return Ok(());
        }
        let which = conf
            .backend
            .map_or("neither iptables nor nftables".to_string(), |b| {
                b.to_string()
            });
        Err(Error::new(
            Code::NotAvailable,
            format!("ipmasq cannot serve ADDs: {which} works here"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pkg::spec::NetConf;

    #[test]
    fn test_conf_reads_backend_and_exclude() {
        let conf = NetConf::parse(
            br#"{"name":"n","type":"ipmasq","backend":"nftables","exclude":["192.168.0.0/16"]}"#,
        )
        .unwrap();
        let c: Conf = conf.plugin_fields().unwrap();
        assert_eq!(c.backend, Some(Backend::Nftables));
        assert_eq!(c.exclude, vec!["192.168.0.0/16".parse::<IpNet>().unwrap()]);
    }

    #[test]
    fn test_conf_testdata_conflist_parses() {
        let list: serde_json::Value =
            serde_json::from_str(include_str!("../../../testdata/ipmasq.conflist")).unwrap();
        let mut entry = list["plugins"][1].clone();
        entry["name"] = list["name"].clone();
        entry["cniVersion"] = list["cniVersion"].clone();
        let conf = NetConf::parse(entry.to_string().as_bytes()).unwrap();
        let c: Conf = conf.plugin_fields().unwrap();
        assert_eq!(c.backend, Some(Backend::Nftables));
        assert_eq!(c.exclude.len(), 1);
    }

    #[test]
    fn test_conf_rejects_unknown_backend() {
        let conf = NetConf::parse(br#"{"name":"n","type":"ipmasq","backend":"ipfw"}"#).unwrap();
        let err = conf.plugin_fields::<Conf>().unwrap_err();
        assert_eq!(err.code(), Code::InvalidConfig);
        assert!(err.to_string().contains("backend"), "{err}");
    }
}
