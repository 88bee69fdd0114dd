//! The bridge plugin's configuration: every field of the reference's, with
//! its default, checked before anything on the host changes.

use serde::Deserialize;

use pkg::netlink::parse_mac;
use pkg::skel::{validate_ifname, Call};
use pkg::{Error, Result};

/// The keys of a bridge configuration beyond the shared ones.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Fields {
    #[serde(default = "default_bridge")]
    bridge: String,
    #[serde(default)]
    is_gateway: bool,
    #[serde(default)]
    is_default_gateway: bool,
    #[serde(default)]
    force_address: bool,
    #[serde(default)]
    ip_masq_backend: Option<String>,
    #[serde(default)]
    mtu: u32,
    #[serde(default)]
    hairpin_mode: bool,
    #[serde(default)]
    promisc_mode: bool,
    #[serde(default)]
    vlan: i64,
    #[serde(default)]
    vlan_trunk: Vec<VlanTrunk>,
    #[serde(default = "yes")]
    preserve_default_vlan: bool,
    #[serde(default, rename = "macspoofchk")]
    mac_spoof_check: bool,
    #[serde(default, rename = "enabledad")]
    enable_dad: bool,
    #[serde(default)]
    disable_container_interface: bool,
    #[serde(default)]
    port_isolation: bool,
}

/// One `vlanTrunk` entry: a single `id`, or a `minID`..=`maxID` range.
#[derive(Debug, Clone, Deserialize)]
struct VlanTrunk {
    #[serde(default, rename = "minID")]
    min_id: Option<i64>,
    #[serde(default, rename = "maxID")]
    max_id: Option<i64>,
    #[serde(default)]
    id: Option<i64>,
}

fn default_bridge() -> String {
    "cni0".into()
}

fn yes() -> bool {
    true
}

/// A checked bridge configuration.
#[derive(Debug, Clone)]
pub struct Conf {
    /// The bridge's name (`bridge`, default `cni0`).
    pub bridge: String,
    /// Put the gateway address on the bridge (`isGateway`, implied by `isDefaultGateway`).
    pub is_gateway: bool,
    /// Add a default route through the gateway in the container.
    pub is_default_gateway: bool,
    /// Replace a different address of the same family on the bridge.
    pub force_address: bool,
    /// Masquerade the container's traffic (`ipMasq`).
    pub ip_masq: bool,
    /// `ipMasqBackend`: `iptables`, `nftables`, or automatic.
    pub ip_masq_backend: Option<String>,
    /// MTU of the bridge (when created) and both veth ends; `None` keeps the kernel's.
    pub mtu: Option<u32>,
    pub hairpin: bool,
    pub promisc: bool,
    /// VLAN ids the host port carries: the untagged `vlan`, or the tagged trunk ids.
    pub vlan: Option<u16>,
    pub vlan_trunk: Vec<u16>,
    pub preserve_default_vlan: bool,
    pub mac_spoof_check: bool,
    pub enable_dad: bool,
    pub disable_container_interface: bool,
    pub port_isolation: bool,
    /// The container interface's MAC, if the runtime chose one.
    pub mac: Option<[u8; 6]>,
}

impl Conf {
    /// Reads and checks the configuration of `call`.
    pub fn load(call: &Call) -> Result<Conf> {
        let f: Fields = call.conf.plugin_fields()?;
        validate_ifname(&f.bridge).map_err(|_| {
            Error::invalid_config(format!("bridge: invalid link name {:?}", f.bridge))
        })?;
        if f.hairpin_mode && f.promisc_mode {
            return Err(Error::invalid_config(
                "hairpinMode and promiscMode cannot both be set",
            ));
        }
        let mtu = match f.mtu {
            0 => None,
            m @ 68..=65535 => Some(m),
            m => {
                return Err(Error::invalid_config(format!(
                    "mtu: {m} is outside 68-65535"
                )))
            }
        };
        let vlan = match f.vlan {
            0 => None,
            v @ 1..=4094 => Some(v as u16),
            v => {
                return Err(Error::invalid_config(format!(
                    "vlan: invalid VLAN id {v} (must be between 0 and 4094)"
                )))
            }
        };
        let vlan_trunk = trunk_ids(&f.vlan_trunk)?;
        if vlan.is_some() && !vlan_trunk.is_empty() {
            return Err(Error::invalid_config(
                "vlan and vlanTrunk cannot both be set",
            ));
        }
        if let Some(b) = &f.ip_masq_backend {
            if b != "iptables" && b != "nftables" {
                return Err(Error::invalid_config(format!(
                    "ipMasqBackend: {b:?} is not \"iptables\" or \"nftables\""
                )));
            }
        }
        Ok(Conf {
            bridge: f.bridge,
            is_gateway: f.is_gateway || f.is_default_gateway,
            is_default_gateway: f.is_default_gateway,
            force_address: f.force_address,
            ip_masq: call.conf.ip_masq,
            ip_masq_backend: f.ip_masq_backend,
            mtu,
            hairpin: f.hairpin_mode,
            promisc: f.promisc_mode,
            vlan,
            vlan_trunk,
            preserve_default_vlan: f.preserve_default_vlan,
            mac_spoof_check: f.mac_spoof_check,
            enable_dad: f.enable_dad,
            disable_container_interface: f.disable_container_interface,
            port_isolation: f.port_isolation,
            mac: container_mac(call)?,
        })
    }
}

/// The container MAC the runtime asked for: `runtimeConfig.mac` (the `mac`
/// capability) over `args.cni.mac` over `CNI_ARGS` `MAC=`, as the reference.
fn container_mac(call: &Call) -> Result<Option<[u8; 6]>> {
    let candidates = [
        ("runtimeConfig.mac", call.conf.runtime::<String>("mac")?),
        ("args.cni.mac", call.conf.cni_arg::<String>("mac")?),
        ("CNI_ARGS MAC", call.args.get("MAC").map(str::to_string)),
    ];
    for (source, value) in candidates {
        let Some(value) = value.filter(|v| !v.is_empty()) else {
            continue;
        };
        let mac = parse_mac(&value).ok_or_else(|| {
            Error::invalid_config(format!("{source}: {value:?} is not a MAC address"))
        })?;
        if mac[0] & 1 == 1 {
            return Err(Error::invalid_config(format!(
                "{source}: {value:?} is a multicast address"
            )));
        }
        return Ok(Some(mac));
    }
    Ok(None)
}

/// The VLAN ids of `vlanTrunk`, checked and sorted.
fn trunk_ids(trunks: &[VlanTrunk]) -> Result<Vec<u16>> {
    let valid = |what: &str, v: i64| -> Result<u16> {
        if (1..=4094).contains(&v) {
            Ok(v as u16)
        } else {
            Err(Error::invalid_config(format!(
                "vlanTrunk: invalid {what} {v} (must be between 1 and 4094)"
            )))
        }
    };
    let mut ids = Vec::new();
    for t in trunks {
        match (t.id, t.min_id, t.max_id) {
            (Some(id), None, None) => ids.push(valid("id", id)?),
            (None, Some(min), Some(max)) => {
                let (min, max) = (valid("minID", min)?, valid("maxID", max)?);
                if min > max {
                    return Err(Error::invalid_config(format!(
                        "vlanTrunk: minID {min} is greater than maxID {max}"
                    )));
                }
                ids.extend(min..=max);
            }
            (None, Some(_), None) | (None, None, Some(_)) => {
                return Err(Error::invalid_config(
                    "vlanTrunk: minID and maxID go together",
                ))
            }
            _ => {
                return Err(Error::invalid_config(
                    "vlanTrunk: an entry has either id or minID and maxID",
                ))
            }
        }
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trunk(id: Option<i64>, min: Option<i64>, max: Option<i64>) -> VlanTrunk {
        VlanTrunk {
            min_id: min,
            max_id: max,
            id,
        }
    }

    #[test]
    fn test_trunk_ids_ranges_and_singles() {
        let ids = trunk_ids(&[
            trunk(Some(7), None, None),
            trunk(None, Some(3), Some(5)),
            trunk(Some(4), None, None),
        ])
        .unwrap();
        assert_eq!(ids, vec![3, 4, 5, 7]);
    }

    #[test]
    fn test_trunk_ids_rejects_bad_entries() {
        for t in [
            trunk(Some(0), None, None),
            trunk(Some(4095), None, None),
            trunk(None, Some(9), Some(3)),
            trunk(None, Some(3), None),
            trunk(Some(3), Some(3), Some(4)),
        ] {
            assert!(trunk_ids(&[t]).is_err());
        }
    }
}
