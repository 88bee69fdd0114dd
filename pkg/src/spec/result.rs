//! Results, held in one form (the newest) and written in any version.
//!
//! 0.1.0 and 0.2.0 write `ip4` / `ip6` objects, each with its routes and no
//! interfaces; 0.3.0 to 0.4.0 write `interfaces`, `ips` (with a `version`
//! key) and `routes`; 1.0.0 drops `version`; 1.1.0 adds the route attributes
//! `mtu`, `advmss`, `priority`, `table`, `scope` and the interface attributes
//! `mtu`, `socketPath`, `pciID`. Writing an older version drops what it cannot
//! hold, as the reference's converters do.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::Version;

/// A result in its newest (1.1.0) form.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetResult {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub dns: Dns,
}

/// An interface the plugin made or configured.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    /// 1.1.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The netns path for a container interface; empty for a host interface.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
    /// 1.1.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket_path: Option<String>,
    /// 1.1.0.
    #[serde(default, rename = "pciID", skip_serializing_if = "Option::is_none")]
    pub pci_id: Option<String>,
}

/// An address, the interface it is on (an index into `interfaces`) and its gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
    /// Address with prefix length, host bits kept (`10.1.0.5/24`).
    pub address: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
}

/// A route to install in the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    pub dst: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    /// 1.1.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// 1.1.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advmss: Option<u32>,
    /// 1.1.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    /// 1.1.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    /// 1.1.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u8>,
}

impl Route {
    /// A route with only a destination and an optional gateway.
    pub fn new(dst: IpNet, gw: Option<IpAddr>) -> Route {
        Route {
            dst,
            gw,
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        }
    }
}

/// DNS settings; every field optional. Written as `{}` when empty, as the
/// reference does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub domain: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    /// True when no field is set.
    pub fn is_empty(&self) -> bool {
        *self == Dns::default()
    }
}

/// The `ip4` / `ip6` object of 0.1.0 and 0.2.0 results.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LegacyIp {
    ip: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gateway: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    routes: Vec<LegacyRoute>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct LegacyRoute {
    dst: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gw: Option<IpAddr>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct LegacyResult {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip4: Option<LegacyIp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip6: Option<LegacyIp>,
    #[serde(default)]
    dns: Dns,
}

impl NetResult {
    /// Reads a result written in `version`.
    pub fn from_json(value: &Value, version: Version) -> Result<NetResult, serde_json::Error> {
        if version.has_legacy_result() {
            let legacy: LegacyResult = serde_json::from_value(value.clone())?;
            return Ok(NetResult::from_legacy(legacy));
        }
        // 0.3.x/0.4.0 `version` keys and 1.0.0's missing fields read the same way.
        let mut result: NetResult = serde_json::from_value(value.clone())?;
        result.drop_unheld(version);
        Ok(result)
    }

    /// Writes the result in `version`, with `cniVersion` first.
    pub fn to_json(&self, version: Version) -> Value {
        let mut out = Map::new();
        out.insert("cniVersion".into(), json!(version.as_str()));
        let body = if version.has_legacy_result() {
            serde_json::to_value(self.to_legacy())
        } else {
            let mut r = self.clone();
            r.drop_unheld(version);
            serde_json::to_value(&r)
        }
        .expect("results always serialize");
        let Value::Object(body) = body else {
            unreachable!("a result serializes to an object")
        };
        out.extend(body);
        if (Version::V0_3_0..Version::V1_0_0).contains(&version) {
            add_ip_versions(&mut out);
        }
        Value::Object(out)
    }

    /// The addresses of the result's first IPv4 and first IPv6 entries,
    /// what a 0.2.0 result can hold.
    fn to_legacy(&self) -> LegacyResult {
        let first = |v4: bool| self.ips.iter().find(|ip| ip.address.addr().is_ipv4() == v4);
        let legacy_ip = |v4: bool| {
            first(v4).map(|ip| LegacyIp {
                ip: ip.address,
                gateway: ip.gateway,
                routes: self
                    .routes
                    .iter()
                    .filter(|r| r.dst.addr().is_ipv4() == v4)
                    .map(|r| LegacyRoute {
                        dst: r.dst,
                        gw: r.gw,
                    })
                    .collect(),
            })
        };
        LegacyResult {
            ip4: legacy_ip(true),
            ip6: legacy_ip(false),
            dns: self.dns.clone(),
        }
    }

    fn from_legacy(legacy: LegacyResult) -> NetResult {
        let mut result = NetResult {
            dns: legacy.dns,
            ..NetResult::default()
        };
        for ip in [legacy.ip4, legacy.ip6].into_iter().flatten() {
            result.ips.push(IpConfig {
                interface: None,
                address: ip.ip,
                gateway: ip.gateway,
            });
            result
                .routes
                .extend(ip.routes.into_iter().map(|r| Route::new(r.dst, r.gw)));
        }
        result
    }

    /// Clears the fields `version` does not have.
    fn drop_unheld(&mut self, version: Version) {
        if version >= Version::V1_1_0 {
            return;
        }
        for i in &mut self.interfaces {
            i.mtu = None;
            i.socket_path = None;
            i.pci_id = None;
        }
        for r in &mut self.routes {
            *r = Route::new(r.dst, r.gw);
        }
    }
}

/// 0.3.0 to 0.4.0 tag each address with `"version": "4"` or `"6"`, written first.
fn add_ip_versions(out: &mut Map<String, Value>) {
    let Some(Value::Array(ips)) = out.get_mut("ips") else {
        return;
    };
    for ip in ips {
        let Value::Object(fields) = ip else { continue };
        let family = match fields.get("address").and_then(Value::as_str) {
            Some(a) if a.contains(':') => "6",
            _ => "4",
        };
        let mut tagged = Map::new();
        tagged.insert("version".into(), json!(family));
        tagged.extend(std::mem::take(fields));
        *fields = tagged;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A dual-stack result using every 1.1.0 field.
    fn full() -> NetResult {
        NetResult {
            interfaces: vec![
                Interface {
                    name: "cni0".into(),
                    mac: "0a:58:0a:01:00:01".into(),
                    mtu: Some(1500),
                    ..Interface::default()
                },
                Interface {
                    name: "eth0".into(),
                    mac: "0a:58:0a:01:00:05".into(),
                    mtu: Some(1500),
                    sandbox: "/run/netns/c".into(),
                    socket_path: Some("/run/sock".into()),
                    pci_id: Some("0000:00:01.0".into()),
                },
            ],
            ips: vec![
                IpConfig {
                    interface: Some(1),
                    address: net("10.1.0.5/24"),
                    gateway: Some(ip("10.1.0.1")),
                },
                IpConfig {
                    interface: Some(1),
                    address: net("fd00::5/64"),
                    gateway: Some(ip("fd00::1")),
                },
            ],
            routes: vec![
                Route {
                    mtu: Some(1400),
                    advmss: Some(1360),
                    priority: Some(10),
                    table: Some(100),
                    scope: Some(0),
                    ..Route::new(net("0.0.0.0/0"), Some(ip("10.1.0.1")))
                },
                Route::new(net("::/0"), Some(ip("fd00::1"))),
            ],
            dns: Dns {
                nameservers: vec!["10.1.0.1".into()],
                domain: "example.org".into(),
                search: vec!["example.org".into()],
                options: vec!["ndots:2".into()],
            },
        }
    }

    /// What `r` keeps when written in `v`.
    fn restrict(mut r: NetResult, v: Version) -> NetResult {
        if v.has_legacy_result() {
            r.interfaces.clear();
            for i in &mut r.ips {
                i.interface = None;
            }
        }
        r.drop_unheld(v);
        r
    }

    #[test]
    fn test_result_every_pair_of_versions() {
        for from in Version::ALL {
            let original = restrict(full(), from);
            let written = original.to_json(from);
            assert_eq!(written["cniVersion"], from.as_str());
            let read = NetResult::from_json(&written, from).unwrap();
            assert_eq!(read, original, "read back {from}");
            for to in Version::ALL {
                // The target keeps what it can hold; coming back loses nothing more.
                let expected = restrict(original.clone(), to);
                let converted = NetResult::from_json(&read.to_json(to), to).unwrap();
                assert_eq!(converted, expected, "{from} -> {to}");
                let back = NetResult::from_json(&converted.to_json(from), from).unwrap();
                assert_eq!(back, expected, "{from} -> {to} -> {from}");
                if to >= from {
                    assert_eq!(back, original, "{from} -> {to} -> {from} is lossless");
                }
            }
        }
    }

    #[test]
    fn test_result_040_has_ip_versions_first() {
        let v = full().to_json(Version::V0_4_0);
        let first = v["ips"][0].as_object().unwrap();
        assert_eq!(first.keys().next().unwrap(), "version");
        assert_eq!(v["ips"][0]["version"], "4");
        assert_eq!(v["ips"][1]["version"], "6");
        assert!(v["interfaces"][1].get("socketPath").is_none());
        assert!(v["routes"][0].get("mtu").is_none());
    }

    #[test]
    fn test_result_100_has_no_ip_versions() {
        let v = full().to_json(Version::V1_0_0);
        assert!(v["ips"][0].get("version").is_none());
        assert!(v["interfaces"][0].get("mtu").is_none());
    }

    #[test]
    fn test_result_110_keeps_route_attributes() {
        let v = full().to_json(Version::V1_1_0);
        assert_eq!(v["routes"][0]["advmss"], 1360);
        assert_eq!(v["interfaces"][1]["pciID"], "0000:00:01.0");
        assert_eq!(v["interfaces"][1]["socketPath"], "/run/sock");
    }

    #[test]
    fn test_result_020_form() {
        let v = full().to_json(Version::V0_2_0);
        assert_eq!(
            v,
            json!({
                "cniVersion": "0.2.0",
                "ip4": {"ip": "10.1.0.5/24", "gateway": "10.1.0.1",
                        "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}]},
                "ip6": {"ip": "fd00::5/64", "gateway": "fd00::1",
                        "routes": [{"dst": "::/0", "gw": "fd00::1"}]},
                "dns": {"nameservers": ["10.1.0.1"], "domain": "example.org",
                        "search": ["example.org"], "options": ["ndots:2"]}
            })
        );
    }

    #[test]
    fn test_result_020_keeps_first_address_of_each_family() {
        let mut r = full();
        r.ips.push(IpConfig {
            interface: Some(1),
            address: net("10.2.0.5/24"),
            gateway: None,
        });
        let v = r.to_json(Version::V0_1_0);
        assert_eq!(v["ip4"]["ip"], "10.1.0.5/24");
    }

    #[test]
    fn test_result_empty_dns_is_written() {
        let v = NetResult::default().to_json(Version::V1_0_0);
        assert_eq!(v, json!({"cniVersion": "1.0.0", "dns": {}}));
    }
}
