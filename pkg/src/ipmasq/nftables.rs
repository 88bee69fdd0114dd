//! The nftables form, as the reference's newer releases write it: table
//! `inet cni_plugins_masquerade`; base chain `postrouting` (NAT hook,
//! priority `srcnat`) that returns for multicast and jumps (`goto`) to
//! `masq_checks`; in `masq_checks` one rule per address,
//! `ip saddr A ip daddr != SUBNET masquerade`, commented with
//! [`nft_comment`]. Rules are found again by the comment's prefix.
//!
//! One `nft -j list table` reads what is there, one `nft -f -` transaction
//! changes it. The table and its two chains stay when the last rule goes,
//! as the reference leaves them: removing them could race another ADD's
//! transaction (the kernel deletes a chain with rules in it).

use ipnet::IpNet;
use serde_json::{json, Value};

use super::{
    multicast, nft_comment, nft_instance_hash, nft_network_hash, run, Attachment, Error, Result,
    Target,
};

const TABLE: &str = "inet cni_plugins_masquerade";
const CHECKS: &str = "masq_checks";
const POSTROUTING: &str = "postrouting";

/// One rule of `masq_checks` as `nft -j` lists it.
#[derive(Debug)]
struct Rule {
    handle: u64,
    comment: String,
    expr: Value,
}

/// What the table holds; empty when it does not exist.
#[derive(Debug, Default)]
struct Table {
    checks: Vec<Rule>,
    /// Whether `postrouting` exists and ends in `goto masq_checks`.
    postrouting_ok: bool,
    /// Whether the table, both chains and `postrouting`'s rules are exactly
    /// what setup writes, so setup can leave them alone.
    skeleton_exact: bool,
}

impl Table {
    fn parse(json: &Value) -> Table {
        let mut table = Table::default();
        let items = json["nftables"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let mut postrouting = Vec::new();
        let (mut checks_chain, mut base_chain) = (false, false);
        for item in items {
            let chain = &item["chain"];
            match chain["name"].as_str() {
                Some(CHECKS) => checks_chain = true,
                Some(POSTROUTING) => {
                    base_chain = chain["type"] == "nat"
                        && chain["hook"] == "postrouting"
                        && chain["prio"] == 100
                        && chain["policy"] == "accept"
                }
                _ => {}
            }
            let rule = &item["rule"];
            if rule.is_null() {
                continue;
            }
            match rule["chain"].as_str() {
                Some(CHECKS) => table.checks.push(Rule {
                    handle: rule["handle"].as_u64().unwrap_or(0),
                    comment: rule["comment"].as_str().unwrap_or("").to_string(),
                    expr: rule["expr"].clone(),
                }),
                Some(POSTROUTING) => postrouting.push(&rule["expr"]),
                _ => {}
            }
        }
        table.postrouting_ok = postrouting
            .last()
            .is_some_and(|e| e[0]["goto"]["target"].as_str() == Some(CHECKS));
        let skip_multicast = |protocol: &str, addr: &str, len: u8| {
            json!([
                {"match": {"op": "==",
                           "left": {"payload": {"protocol": protocol, "field": "daddr"}},
                           "right": {"prefix": {"addr": addr, "len": len}}}},
                {"return": null}
            ])
        };
        let wanted = [
            skip_multicast("ip", "224.0.0.0", 4),
            skip_multicast("ip6", "ff00::", 8),
            json!([{"goto": {"target": CHECKS}}]),
        ];
        table.skeleton_exact = checks_chain
            && base_chain
            && postrouting.len() == wanted.len()
            && postrouting.iter().zip(&wanted).all(|(a, b)| *a == b);
        table
    }

    fn handles_with_prefix(&self, prefix: &str) -> Vec<u64> {
        self.checks
            .iter()
            .filter(|r| r.comment.starts_with(prefix))
            .map(|r| r.handle)
            .collect()
    }
}

fn spawn_error(t: Target, source: std::io::Error) -> Error {
    Error::Spawn {
        attachment: t.to_string(),
        program: "nft".into(),
        source,
    }
}

/// Reads the table; `Ok(None)` when `nft` is not installed.
fn read(t: Target) -> Result<Option<Table>> {
    let ran = match run(
        "nft",
        &["-j", "list", "table", "inet", "cni_plugins_masquerade"],
        None,
    ) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(spawn_error(t, e)),
    };
    if !ran.ok {
        if ran.stderr.contains("No such file or directory") {
            return Ok(Some(Table::default()));
        }
        return Err(Error::Tool {
            attachment: t.to_string(),
            program: "nft".into(),
            doing: format!("listing table {TABLE}"),
            stderr: ran.stderr,
        });
    }
    let json: Value = serde_json::from_str(&ran.stdout).map_err(|e| Error::Tool {
        attachment: t.to_string(),
        program: "nft".into(),
        doing: format!("listing table {TABLE}"),
        stderr: format!("output is not JSON: {e}"),
    })?;
    Ok(Some(Table::parse(&json)))
}

/// Runs `script` as one transaction.
fn write(t: Target, script: &str, what: &str) -> Result<()> {
    if script.is_empty() {
        return Ok(());
    }
    let ran = run("nft", &["-f", "-"], Some(script)).map_err(|e| spawn_error(t, e))?;
    if ran.ok {
        return Ok(());
    }
    Err(Error::Tool {
        attachment: t.to_string(),
        program: "nft".into(),
        doing: what.to_string(),
        stderr: ran.stderr,
    })
}

fn family_word(a: &IpNet) -> &'static str {
    if a.addr().is_ipv4() {
        "ip"
    } else {
        "ip6"
    }
}

/// The destinations an address's traffic is not masqueraded to, besides
/// multicast: its own subnet and the `exclude` entries of its family.
fn kept_destinations(a: &IpNet, exclude: &[IpNet]) -> Vec<IpNet> {
    let mut out = vec![a.trunc()];
    for e in exclude
        .iter()
        .filter(|e| e.addr().is_ipv4() == a.addr().is_ipv4())
    {
        if !out.contains(&e.trunc()) {
            out.push(e.trunc());
        }
    }
    out
}

/// The `masq_checks` rule for one address, as `nft -f` reads it.
fn rule_text(t: Target, a: &IpNet, exclude: &[IpNet]) -> String {
    let ip = family_word(a);
    let kept = kept_destinations(a, exclude);
    let dst = if kept.len() == 1 {
        kept[0].to_string()
    } else {
        let items: Vec<String> = kept.iter().map(ToString::to_string).collect();
        format!("{{ {} }}", items.join(", "))
    };
    format!(
        "{ip} saddr {} {ip} daddr != {dst} masquerade comment \"{}\"",
        a.addr(),
        nft_comment(t.network, t.ifname, t.container_id)
    )
}

/// The setup transaction: the table and chains (created if missing) and
/// `postrouting` rewritten unless `skeleton_exact`, this attachment's old
/// rules out, its rules in. Leaving an exact `postrouting` alone matters
/// for speed: a transaction that deletes rules (the flush) waits for an RCU
/// grace period, several milliseconds, where one that only adds does not.
fn setup_script(
    t: Target,
    skeleton_exact: bool,
    stale: &[u64],
    addrs: &[IpNet],
    exclude: &[IpNet],
) -> String {
    let mut s = String::new();
    if !skeleton_exact {
        s += &skeleton();
    }
    for h in stale {
        s += &format!("delete rule {TABLE} {CHECKS} handle {h}\n");
    }
    for a in addrs {
        s += &format!("add rule {TABLE} {CHECKS} {}\n", rule_text(t, a, exclude));
    }
    s
}

/// The table, its chains and `postrouting`'s rules, as the reference writes them.
fn skeleton() -> String {
    let mut s = String::new();
    s += &format!(
        "add table {TABLE} {{ comment \"Masquerading for plugins from github.com/containernetworking/plugins\" ; }}\n"
    );
    s += &format!(
        "add chain {TABLE} {CHECKS} {{ comment \"Masquerade traffic from certain IPs to any (non-multicast) IP outside their subnet\" ; }}\n"
    );
    s += &format!(
        "add chain {TABLE} {POSTROUTING} {{ type nat hook postrouting priority srcnat ; }}\n"
    );
    s += &format!("flush chain {TABLE} {POSTROUTING}\n");
    s += &format!(
        "add rule {TABLE} {POSTROUTING} ip daddr {} return\n",
        multicast(true)
    );
    s += &format!(
        "add rule {TABLE} {POSTROUTING} ip6 daddr {} return\n",
        multicast(false)
    );
    s += &format!("add rule {TABLE} {POSTROUTING} goto {CHECKS}\n");
    s
}

fn delete_script(handles: &[u64]) -> String {
    handles
        .iter()
        .map(|h| format!("delete rule {TABLE} {CHECKS} handle {h}\n"))
        .collect()
}

pub(super) fn setup(t: Target, addrs: &[IpNet], exclude: &[IpNet]) -> Result<()> {
    let table = read(t)?.ok_or_else(|| {
        spawn_error(
            t,
            std::io::Error::new(std::io::ErrorKind::NotFound, "nft is not installed"),
        )
    })?;
    let stale = table.handles_with_prefix(&nft_instance_hash(t.network, t.ifname, t.container_id));
    write(
        t,
        &setup_script(t, table.skeleton_exact, &stale, addrs, exclude),
        &format!("adding rules to {TABLE} chain {CHECKS}"),
    )
}

pub(super) fn teardown(t: Target) -> Result<()> {
    let prefix = nft_instance_hash(t.network, t.ifname, t.container_id);
    delete_matching(t, |r| r.comment.starts_with(&prefix))
}

/// Deletes the `masq_checks` rules `stale` picks in one transaction. When a
/// rule went between the read and the write (a concurrent DEL or GC), the
/// transaction fails as a whole: read again and retry (twice).
fn delete_matching(t: Target, stale: impl Fn(&Rule) -> bool) -> Result<()> {
    let what = format!("deleting rules from {TABLE} chain {CHECKS}");
    let mut last = Ok(());
    for _ in 0..3 {
        let Some(table) = read(t)? else {
            return Ok(());
        };
        let handles: Vec<u64> = table
            .checks
            .iter()
            .filter(|r| stale(r))
            .map(|r| r.handle)
            .collect();
        last = write(t, &delete_script(&handles), &what);
        if last.is_ok() {
            break;
        }
    }
    last
}

/// The addresses (`addr/len`) a rule's `daddr !=` match keeps, from its JSON.
fn kept_in_expr(expr: &Value) -> Vec<String> {
    let prefix = |p: &Value| format!("{}/{}", p["addr"].as_str().unwrap_or(""), p["len"]);
    let mut out = Vec::new();
    for e in expr.as_array().map(Vec::as_slice).unwrap_or(&[]) {
        let m = &e["match"];
        if m["op"] != "!=" || m["left"]["payload"]["field"] != "daddr" {
            continue;
        }
        let right = &m["right"];
        if let Some(set) = right["set"].as_array() {
            out.extend(set.iter().map(|i| prefix(&i["prefix"])));
        } else {
            out.push(prefix(&right["prefix"]));
        }
    }
    out.sort();
    out
}

fn saddr_in_expr(expr: &Value) -> Option<&str> {
    expr.as_array()?.iter().find_map(|e| {
        let m = &e["match"];
        (m["op"] == "==" && m["left"]["payload"]["field"] == "saddr")
            .then(|| m["right"].as_str())
            .flatten()
    })
}

pub(super) fn check(t: Target, addrs: &[IpNet], exclude: &[IpNet]) -> Result<()> {
    let missing = |what: String| Error::Missing {
        attachment: t.to_string(),
        what,
    };
    let Some(table) = read(t)? else {
        return Err(missing(format!("nft (to list table {TABLE})")));
    };
    if !table.postrouting_ok {
        return Err(missing(format!(
            "table {TABLE} chain {POSTROUTING} ending in `goto {CHECKS}`"
        )));
    }
    let prefix = nft_instance_hash(t.network, t.ifname, t.container_id);
    for a in addrs {
        let mut want: Vec<String> = kept_destinations(a, exclude)
            .iter()
            .map(ToString::to_string)
            .collect();
        want.sort();
        let addr = a.addr().to_string();
        let found = table.checks.iter().any(|r| {
            r.comment.starts_with(&prefix)
                && saddr_in_expr(&r.expr) == Some(addr.as_str())
                && kept_in_expr(&r.expr) == want
                && r.expr
                    .as_array()
                    .is_some_and(|e| e.last().is_some_and(|l| l.get("masquerade").is_some()))
        });
        if !found {
            return Err(missing(format!(
                "rule `{}` in table {TABLE} chain {CHECKS}",
                rule_text(t, a, exclude)
            )));
        }
    }
    Ok(())
}

pub(super) fn gc(network: &str, valid: &[Attachment]) -> Result<()> {
    let t = Target {
        network,
        container_id: "",
        ifname: "",
    };
    let keep: Vec<String> = valid
        .iter()
        .map(|a| nft_instance_hash(network, &a.ifname, &a.container_id))
        .collect();
    let net = nft_network_hash(network);
    delete_matching(t, |r| {
        r.comment.starts_with(&net) && !keep.iter().any(|k| r.comment.starts_with(k))
    })
}

/// Whether `nft` can list rules here.
pub(super) fn works() -> bool {
    run("nft", &["list", "tables"], None).is_ok_and(|r| r.ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target<'static> {
        Target {
            network: "unit-test",
            container_id: "one",
            ifname: "eth0",
        }
    }

    #[test]
    fn test_rule_text_forms() {
        let v4: IpNet = "10.1.0.5/24".parse().unwrap();
        assert_eq!(
            rule_text(target(), &v4, &[]),
            "ip saddr 10.1.0.5 ip daddr != 10.1.0.0/24 masquerade comment \"6fd94d501e58f0aa-287fc69eff0574a2, net: unit-test, if: eth0, id: one\""
        );
        let v6: IpNet = "fd00::5/64".parse().unwrap();
        let ex = [
            "2001:db8::/32".parse().unwrap(),
            "10.9.0.0/16".parse().unwrap(),
        ];
        assert!(rule_text(target(), &v6, &ex)
            .starts_with("ip6 saddr fd00::5 ip6 daddr != { fd00::/64, 2001:db8::/32 } masquerade"));
    }

    #[test]
    fn test_table_parse_finds_rules_and_goto() {
        let json: Value = serde_json::from_str(
            r#"{"nftables":[{"metainfo":{}},
            {"rule":{"family":"inet","table":"cni_plugins_masquerade","chain":"masq_checks","handle":6,
              "comment":"6fd94d501e58f0aa-287fc69eff0574a2, net: unit-test, if: eth0, id: one",
              "expr":[{"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"saddr"}},"right":"10.1.0.5"}},
                      {"match":{"op":"!=","left":{"payload":{"protocol":"ip","field":"daddr"}},"right":{"prefix":{"addr":"10.1.0.0","len":24}}}},
                      {"masquerade":null}]}},
            {"rule":{"family":"inet","table":"cni_plugins_masquerade","chain":"postrouting","handle":5,
              "expr":[{"goto":{"target":"masq_checks"}}]}}]}"#,
        )
        .unwrap();
        let table = Table::parse(&json);
        assert!(table.postrouting_ok);
        assert_eq!(table.handles_with_prefix("6fd94d501e58f0aa-287f"), vec![6]);
        assert!(table
            .handles_with_prefix("6fd94d501e58f0aa-0000")
            .is_empty());
        assert_eq!(kept_in_expr(&table.checks[0].expr), vec!["10.1.0.0/24"]);
        assert_eq!(saddr_in_expr(&table.checks[0].expr), Some("10.1.0.5"));
    }

    #[test]
    fn test_table_parse_skeleton_exact() {
        // As `nft -j list table` prints what setup writes (nft 1.0.6).
        let listed = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
          {"table": {"family": "inet", "name": "cni_plugins_masquerade", "handle": 1}},
          {"chain": {"family": "inet", "table": "cni_plugins_masquerade", "name": "masq_checks", "handle": 1}},
          {"chain": {"family": "inet", "table": "cni_plugins_masquerade", "name": "postrouting", "handle": 2,
                     "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"}},
          {"rule": {"family": "inet", "table": "cni_plugins_masquerade", "chain": "postrouting", "handle": 3,
                    "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                              "right": {"prefix": {"addr": "224.0.0.0", "len": 4}}}}, {"return": null}]}},
          {"rule": {"family": "inet", "table": "cni_plugins_masquerade", "chain": "postrouting", "handle": 4,
                    "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip6", "field": "daddr"}},
                              "right": {"prefix": {"addr": "ff00::", "len": 8}}}}, {"return": null}]}},
          {"rule": {"family": "inet", "table": "cni_plugins_masquerade", "chain": "postrouting", "handle": 5,
                    "expr": [{"goto": {"target": "masq_checks"}}]}}]}"#;
        let json: Value = serde_json::from_str(listed).unwrap();
        let table = Table::parse(&json);
        assert!(table.skeleton_exact && table.postrouting_ok);
        // Without the IPv6 multicast rule, setup rewrites postrouting.
        let trimmed = listed.replace(r#""ff00::""#, r#""fe00::""#);
        let table = Table::parse(&serde_json::from_str(&trimmed).unwrap());
        assert!(!table.skeleton_exact && table.postrouting_ok);
        assert!(!Table::default().skeleton_exact);
    }

    #[test]
    fn test_setup_script_deletes_stale_first() {
        let v4: IpNet = "10.1.0.5/24".parse().unwrap();
        let s = setup_script(target(), false, &[7], &[v4], &[]);
        let del = s
            .find("delete rule inet cni_plugins_masquerade masq_checks handle 7")
            .unwrap();
        let add = s
            .find("add rule inet cni_plugins_masquerade masq_checks ip saddr")
            .unwrap();
        assert!(del < add);
        assert!(s.contains("priority srcnat"));
        let s = setup_script(target(), true, &[], &[v4], &[]);
        assert_eq!(s.lines().count(), 1, "{s}");
    }
}
