//! The `ipam` section and the requested addresses, read and checked before
//! any file is touched.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use pkg::skel::Call;
use pkg::spec::{from_value, Dns, NetConf, Route};
use pkg::{Error, Result};
use serde::Deserialize;
use serde_json::Value;

use crate::allocator::{Range, RangeSet, RangeSpec};

/// Where state lives when `dataDir` is not set (the reference's default).
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";

/// Everything one call needs, checked.
#[derive(Debug, Clone)]
pub struct IpamConfig {
    /// The network's name: the directory under `data_dir` holding its state.
    pub network: String,
    /// `runtimeConfig.ipRanges`, then the legacy single range, then `ranges`;
    /// set `i` keeps its last reservation in `last_reserved_ip.i`.
    pub range_sets: Vec<RangeSet>,
    /// For each range set, the requested address it must hand out, if any.
    pub requested: Vec<Option<IpAddr>>,
    pub routes: Vec<Route>,
    pub data_dir: PathBuf,
    pub resolv_conf: Option<PathBuf>,
}

/// The `ipam` keys as written. Empty strings count as absent, as in the reference.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawIpam {
    subnet: Option<String>,
    range_start: Option<String>,
    range_end: Option<String>,
    gateway: Option<String>,
    ranges: Option<Vec<Vec<RawRange>>>,
    routes: Option<Vec<Route>>,
    data_dir: Option<String>,
    resolv_conf: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRange {
    subnet: Option<String>,
    range_start: Option<String>,
    range_end: Option<String>,
    gateway: Option<String>,
}

impl IpamConfig {
    /// Reads and checks the whole configuration (ADD, CHECK, STATUS).
    pub fn load(call: &Call) -> Result<IpamConfig> {
        let conf = &call.conf;
        let raw = raw_ipam(conf)?;
        let mut named: Vec<(String, Vec<RawRange>)> = Vec::new();
        let ip_ranges: Option<Vec<Vec<RawRange>>> = conf.runtime("ipRanges")?;
        for (i, set) in ip_ranges.unwrap_or_default().into_iter().enumerate() {
            named.push((format!("runtimeConfig.ipRanges[{i}]"), set));
        }
        if present(&raw.subnet).is_some() {
            let legacy = RawRange {
                subnet: raw.subnet.clone(),
                range_start: raw.range_start.clone(),
                range_end: raw.range_end.clone(),
                gateway: raw.gateway.clone(),
            };
            named.push(("ipam".into(), vec![legacy]));
        }
        for (i, set) in raw.ranges.unwrap_or_default().into_iter().enumerate() {
            named.push((format!("ipam.ranges[{i}]"), set));
        }
        if named.is_empty() {
            return Err(Error::invalid_config(format!(
                "network {:?}: ipam has no address range: set \"subnet\" or \"ranges\"",
                conf.name
            )));
        }

        let mut range_sets: Vec<RangeSet> = Vec::new();
        for (idx, (name, set)) in named.iter().enumerate() {
            let mut ranges = Vec::new();
            for (j, r) in set.iter().enumerate() {
                let place = if name == "ipam" {
                    name.clone()
                } else {
                    format!("{name}[{j}]")
                };
                ranges.push(parse_range(r, &place)?);
            }
            let checked = RangeSet::new(ranges)
                .map_err(|e| Error::invalid_config(format!("range set {idx} ({name}): {e}")))?;
            for (other, earlier) in range_sets.iter().enumerate() {
                if checked.overlaps(earlier) {
                    return Err(Error::invalid_config(format!(
                        "range set {idx} ({name}: {checked}) overlaps range set {other} ({}: {earlier})",
                        named[other].0
                    )));
                }
            }
            range_sets.push(checked);
        }

        let requested = assign_requested(&range_sets, &requested_ips(call)?, &conf.name)?;
        Ok(IpamConfig {
            network: conf.name.clone(),
            range_sets,
            requested,
            routes: raw.routes.unwrap_or_default(),
            data_dir: data_dir_of(raw.data_dir),
            resolv_conf: present(&raw.resolv_conf).map(PathBuf::from),
        })
    }

    /// Only the data directory, for DEL and GC: releasing must work even
    /// when the ranges have since become invalid.
    pub fn data_dir(conf: &NetConf) -> Result<PathBuf> {
        Ok(data_dir_of(raw_ipam(conf)?.data_dir))
    }
}

fn raw_ipam(conf: &NetConf) -> Result<RawIpam> {
    let ipam = conf.ipam.as_ref().ok_or_else(|| {
        Error::invalid_config(format!(
            "network {:?}: the configuration has no \"ipam\" section",
            conf.name
        ))
    })?;
    from_value(Value::Object(ipam.extra.clone()), "ipam")
}

fn data_dir_of(configured: Option<String>) -> PathBuf {
    present(&configured).map_or_else(|| PathBuf::from(DEFAULT_DATA_DIR), PathBuf::from)
}

fn present(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

fn parse_range(r: &RawRange, place: &str) -> Result<Range> {
    let addr = |field: &str, v: &Option<String>| -> Result<Option<IpAddr>> {
        present(v)
            .map(|s| {
                s.parse().map_err(|_| {
                    Error::invalid_config(format!("{place}: {field} {s:?} is not an IP address"))
                })
            })
            .transpose()
    };
    let subnet = present(&r.subnet)
        .map(|s| {
            s.parse::<IpNet>().map_err(|_| {
                Error::invalid_config(format!(
                    "{place}: subnet {s:?} is not an address with a prefix length"
                ))
            })
        })
        .transpose()?;
    let spec = RangeSpec {
        subnet,
        start: addr("rangeStart", &r.range_start)?,
        end: addr("rangeEnd", &r.range_end)?,
        gateway: addr("gateway", &r.gateway)?,
    };
    Range::new(spec).map_err(|e| Error::invalid_config(format!("{place}: {e}")))
}

/// Requested addresses, each with where it came from: `CNI_ARGS` `IP=`
/// (one address, or several separated by commas), `args.cni.ips` and
/// `runtimeConfig.ips` (addresses, a prefix length is ignored).
fn requested_ips(call: &Call) -> Result<Vec<(IpAddr, String)>> {
    let mut out: Vec<(IpAddr, String)> = Vec::new();
    let mut add = |ip: IpAddr, from: String| {
        if !out.iter().any(|(seen, _)| *seen == ip) {
            out.push((ip, from));
        }
    };
    if let Some(list) = call.args.get("IP") {
        for s in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let ip = s.parse().map_err(|_| {
                Error::invalid_env(format!("CNI_ARGS IP: {s:?} is not an IP address"))
            })?;
            add(ip, "CNI_ARGS IP".into());
        }
    }
    let lists = [
        ("args.cni.ips", call.conf.cni_arg::<Vec<String>>("ips")?),
        (
            "runtimeConfig.ips",
            call.conf.runtime::<Vec<String>>("ips")?,
        ),
    ];
    for (from, list) in lists {
        for s in list.unwrap_or_default() {
            let bare = s.split_once('/').map_or(s.as_str(), |(a, _)| a);
            let ip = bare.parse().map_err(|_| {
                Error::invalid_config(format!("{from}: {s:?} is not an IP address"))
            })?;
            add(ip, from.into());
        }
    }
    Ok(out)
}

/// Gives each range set at most one requested address. An address in no
/// set, two in one set, or a set's gateway is a configuration error.
fn assign_requested(
    sets: &[RangeSet],
    requested: &[(IpAddr, String)],
    network: &str,
) -> Result<Vec<Option<IpAddr>>> {
    let mut per_set: Vec<Option<IpAddr>> = vec![None; sets.len()];
    for (ip, from) in requested {
        let Some((idx, range)) = sets
            .iter()
            .enumerate()
            .find_map(|(i, s)| Some((i, s.range_for(*ip)?)))
        else {
            return Err(Error::invalid_config(format!(
                "requested address {ip} ({from}) is in no range of network {network:?}"
            )));
        };
        if range.gateway == *ip {
            return Err(Error::invalid_config(format!(
                "requested address {ip} ({from}) is the gateway of range {range}"
            )));
        }
        if let Some(other) = per_set[idx] {
            return Err(Error::invalid_config(format!(
                "requested addresses {other} and {ip} are both in range set {idx} ({}); one address is allocated per set",
                sets[idx]
            )));
        }
        per_set[idx] = Some(*ip);
    }
    Ok(per_set)
}

/// Reads a resolv.conf into a result's `dns`: `nameserver` (each),
/// `domain`, `search` and `options` (all words), as the reference does.
pub fn parse_resolv_conf(path: &Path) -> Result<Dns> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::file("reading", path, e))?;
    Ok(parse_resolv_text(&text))
}

fn parse_resolv_text(text: &str) -> Dns {
    let mut dns = Dns::default();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let [key, first, ..] = words.as_slice() else {
            continue;
        };
        let rest = words[1..].iter().map(|w| w.to_string());
        match *key {
            "nameserver" => dns.nameservers.push(first.to_string()),
            "domain" => dns.domain = first.to_string(),
            "search" => dns.search.extend(rest),
            "options" => dns.options.extend(rest),
            _ => {}
        }
    }
    dns
}

#[cfg(test)]
mod tests {
    use super::*;
    use pkg::spec::Code;

    #[test]
    fn test_parse_resolv_text_fields() {
        let dns = parse_resolv_text(
            "# comment\n; also\nnameserver 10.0.0.1\nnameserver fd00::1\n\
             domain example.org\nsearch a.example b.example\noptions ndots:2 edns0\nbogus x\nnameserver\n",
        );
        assert_eq!(dns.nameservers, ["10.0.0.1", "fd00::1"]);
        assert_eq!(dns.domain, "example.org");
        assert_eq!(dns.search, ["a.example", "b.example"]);
        assert_eq!(dns.options, ["ndots:2", "edns0"]);
    }

    fn sets(subnets: &[&str]) -> Vec<RangeSet> {
        subnets
            .iter()
            .map(|s| {
                let spec = RangeSpec {
                    subnet: Some(s.parse().unwrap()),
                    ..RangeSpec::default()
                };
                RangeSet::new(vec![Range::new(spec).unwrap()]).unwrap()
            })
            .collect()
    }

    fn req(list: &[&str]) -> Vec<(IpAddr, String)> {
        list.iter()
            .map(|s| (s.parse().unwrap(), "test".to_string()))
            .collect()
    }

    #[test]
    fn test_assign_requested_one_per_set() {
        let s = sets(&["10.1.0.0/24", "fd00::/64"]);
        let got = assign_requested(&s, &req(&["fd00::9", "10.1.0.9"]), "n").unwrap();
        assert_eq!(
            got,
            [
                Some("10.1.0.9".parse().unwrap()),
                Some("fd00::9".parse().unwrap())
            ]
        );
        assert_eq!(assign_requested(&s, &[], "n").unwrap(), [None, None]);
    }

    #[test]
    fn test_assign_requested_errors() {
        let s = sets(&["10.1.0.0/24"]);
        let e = assign_requested(&s, &req(&["10.2.0.9"]), "n").unwrap_err();
        assert!(e.to_string().contains("in no range"), "{e}");
        let e = assign_requested(&s, &req(&["10.1.0.1"]), "n").unwrap_err();
        assert!(e.to_string().contains("gateway"), "{e}");
        let e = assign_requested(&s, &req(&["10.1.0.8", "10.1.0.9"]), "n").unwrap_err();
        assert!(e.to_string().contains("both in range set 0"), "{e}");
        assert_eq!(e.code(), Code::InvalidConfig);
    }
}
