//! The ipmasq binary, run for real in namespaces each test makes: the rules
//! it leaves in the "host" namespace's netfilter state, in both backends,
//! and against the reference bridge plugin's masquerade.

use pkg::testing::{skip_or_fail, Sandbox, TestNetns};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_ipmasq");
const REF_BRIDGE: &str = "/usr/lib/cni/bridge";

/// The reference vector: network `test`, container `1234`.
const CHAIN: &str = "CNI-2bbe0c48b91a7d1b8a6753a8";
const COMMENT: &str = r#""name: \"test\" id: \"1234\"""#;
/// The reference vector: network `unit-test`, ifname `eth0`, container `one`.
const NFT_COMMENT: &str = "6fd94d501e58f0aa-287fc69eff0574a2, net: unit-test, if: eth0, id: one";

fn prev_result(addrs: &[&str]) -> Value {
    let ips: Vec<Value> = addrs
        .iter()
        .map(|a| json!({"interface": 0, "address": a}))
        .collect();
    json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "mac": "0a:58:0a:01:00:05", "sandbox": "/x"}],
        "ips": ips,
        "dns": {}
    })
}

fn conf(network: &str, backend: Option<&str>, prev: Option<Value>) -> Value {
    let mut c = json!({"cniVersion": "1.0.0", "name": network, "type": "ipmasq"});
    if let Some(b) = backend {
        c["backend"] = json!(b);
    }
    if let Some(p) = prev {
        c["prevResult"] = p;
    }
    c
}

/// The rule lines and CNI chain declarations of a family's nat table.
fn nat(ns: &TestNetns, v6: bool) -> Vec<String> {
    let program = if v6 {
        "ip6tables-save"
    } else {
        "iptables-save"
    };
    let out = ns.cmd(program, &["-t", "nat"]);
    assert!(
        out.status.success(),
        "{program}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("-A") || l.starts_with(":CNI-"))
        .map(str::to_string)
        .collect()
}

/// The reference's iptables rules for one address of container `1234` on network `test`.
fn iptables_rules(addr: &str, host: &str, subnet: &str) -> Vec<String> {
    let multicast = if addr.contains(':') {
        "ff00::/8"
    } else {
        "224.0.0.0/4"
    };
    vec![
        format!(":{CHAIN} - [0:0]"),
        format!("-A POSTROUTING -s {host} -m comment --comment {COMMENT} -j {CHAIN}"),
        format!("-A {CHAIN} -d {subnet} -m comment --comment {COMMENT} -j ACCEPT"),
        format!("-A {CHAIN} ! -d {multicast} -m comment --comment {COMMENT} -j MASQUERADE"),
    ]
}

/// `nft list table inet cni_plugins_masquerade`, line by line without
/// indentation or blank lines; empty when the table does not exist.
fn nft_table(ns: &TestNetns) -> Vec<String> {
    let out = ns.cmd("nft", &["list", "table", "inet", "cni_plugins_masquerade"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

fn nft_expected(rules: &[String]) -> Vec<String> {
    let mut v = vec![
        "table inet cni_plugins_masquerade {".to_string(),
        "comment \"Masquerading for plugins from github.com/containernetworking/plugins\""
            .to_string(),
        "chain masq_checks {".to_string(),
        "comment \"Masquerade traffic from certain IPs to any (non-multicast) IP outside their subnet\"".to_string(),
    ];
    v.extend(rules.iter().cloned());
    v.extend(
        [
            "}",
            "chain postrouting {",
            "type nat hook postrouting priority srcnat; policy accept;",
            "ip daddr 224.0.0.0/4 return",
            "ip6 daddr ff00::/8 return",
            "goto masq_checks",
            "}",
            "}",
        ]
        .map(String::from),
    );
    v
}

fn nft_rule(addr: &str, subnet: &str) -> String {
    let ip = if addr.contains(':') { "ip6" } else { "ip" };
    format!("{ip} saddr {addr} {ip} daddr != {subnet} masquerade comment \"{NFT_COMMENT}\"")
}

/// IPv6 in the namespace can be off (a kernel booted with ipv6.disable=1).
fn has_ipv6(ns: &TestNetns) -> bool {
    ns.cmd("ip6tables-save", &["-t", "nat"]).status.success()
}

struct Case {
    name: &'static str,
    /// (address, as iptables prints the host, subnet)
    addrs: &'static [(&'static str, &'static str, &'static str)],
}

const CASES: &[Case] = &[
    Case {
        name: "ipv4",
        addrs: &[("10.22.0.2/24", "10.22.0.2/32", "10.22.0.0/24")],
    },
    Case {
        name: "ipv6",
        addrs: &[("fd00:22::2/64", "fd00:22::2/128", "fd00:22::/64")],
    },
    Case {
        name: "dual stack",
        addrs: &[
            ("10.22.0.2/24", "10.22.0.2/32", "10.22.0.0/24"),
            ("fd00:22::2/64", "fd00:22::2/128", "fd00:22::/64"),
        ],
    },
];

#[test]
fn test_ipmasq_iptables_exact_rules_then_nothing() {
    for case in CASES {
        let Some(sb) = Sandbox::new() else { return };
        let v6_wanted = case.addrs.iter().any(|a| a.0.contains(':'));
        if v6_wanted && !has_ipv6(&sb.host) {
            skip_or_fail("ip6tables nat table unavailable in the namespace");
            continue;
        }
        let plugin = sb.plugin(BIN).env("CNI_CONTAINERID", "1234");
        let addrs: Vec<&str> = case.addrs.iter().map(|a| a.0).collect();
        let prev = prev_result(&addrs);
        let c = conf("test", Some("iptables"), Some(prev.clone())).to_string();

        assert_eq!(plugin.run("ADD", &c).ok(), prev, "{}", case.name);
        for v6 in [false, true] {
            let want: Vec<String> = case
                .addrs
                .iter()
                .filter(|a| a.0.contains(':') == v6)
                .flat_map(|(a, host, subnet)| iptables_rules(a, host, subnet))
                .collect();
            if v6 && !v6_wanted && !has_ipv6(&sb.host) {
                continue;
            }
            assert_eq!(nat(&sb.host, v6), want, "{} v6={v6}", case.name);
        }
        assert!(
            nft_table(&sb.host).is_empty(),
            "{}: no nftables form",
            case.name
        );

        // A second ADD changes nothing; CHECK passes.
        plugin.run("ADD", &c).ok();
        assert_eq!(
            nat(&sb.host, false).len() + nat(&sb.host, true).len(),
            4 * case.addrs.len()
        );
        plugin.run("CHECK", &c).ok();

        let del = conf("test", None, None).to_string();
        plugin.run("DEL", &del).ok();
        assert!(nat(&sb.host, false).is_empty(), "{}", case.name);
        if has_ipv6(&sb.host) {
            assert!(nat(&sb.host, true).is_empty(), "{}", case.name);
        }
        plugin.run("DEL", &del).ok();
        let msg = plugin.run("CHECK", &c).err(999);
        assert!(msg.contains("missing") && msg.contains(CHAIN), "{msg}");
    }
}

#[test]
fn test_ipmasq_nftables_exact_rules_then_nothing() {
    for case in CASES {
        let Some(sb) = Sandbox::new() else { return };
        let plugin = sb
            .plugin(BIN)
            .env("CNI_CONTAINERID", "one")
            .env("CNI_IFNAME", "eth0");
        let addrs: Vec<&str> = case.addrs.iter().map(|a| a.0).collect();
        let prev = prev_result(&addrs);
        let c = conf("unit-test", Some("nftables"), Some(prev.clone())).to_string();

        assert_eq!(plugin.run("ADD", &c).ok(), prev, "{}", case.name);
        let rules: Vec<String> = case
            .addrs
            .iter()
            .map(|(a, _, subnet)| nft_rule(a.split('/').next().unwrap(), subnet))
            .collect();
        assert_eq!(nft_table(&sb.host), nft_expected(&rules), "{}", case.name);
        assert!(
            nat(&sb.host, false).is_empty(),
            "{}: no iptables form",
            case.name
        );

        plugin.run("ADD", &c).ok();
        assert_eq!(
            nft_table(&sb.host),
            nft_expected(&rules),
            "{}: repeated ADD",
            case.name
        );
        plugin.run("CHECK", &c).ok();

        let del = conf("unit-test", None, None).to_string();
        plugin.run("DEL", &del).ok();
        // The table and its two chains stay, as the reference leaves them;
        // no rule of the attachment does.
        assert_eq!(nft_table(&sb.host), nft_expected(&[]), "{}", case.name);
        plugin.run("DEL", &del).ok();
        let msg = plugin.run("CHECK", &c).err(999);
        assert!(
            msg.contains("missing") && msg.contains("masq_checks"),
            "{msg}"
        );
    }
}

#[test]
fn test_ipmasq_default_backend_is_iptables_when_it_works() {
    let Some(sb) = Sandbox::new() else { return };
    let plugin = sb.plugin(BIN).env("CNI_CONTAINERID", "1234");
    let c = conf("test", None, Some(prev_result(&["10.22.0.2/24"]))).to_string();
    plugin.run("ADD", &c).ok();
    assert_eq!(
        nat(&sb.host, false),
        iptables_rules("10.22.0.2/24", "10.22.0.2/32", "10.22.0.0/24")
    );
    assert!(nft_table(&sb.host).is_empty());
    plugin.run("CHECK", &c).ok();
    plugin.run("DEL", &c).ok();
    assert!(nat(&sb.host, false).is_empty());
}

#[test]
fn test_ipmasq_exclude_in_both_backends() {
    let Some(sb) = Sandbox::new() else { return };
    let plugin = sb.plugin(BIN).env("CNI_CONTAINERID", "1234");
    let mut c = conf(
        "test",
        Some("iptables"),
        Some(prev_result(&["10.22.0.2/24"])),
    );
    c["exclude"] = json!(["192.168.0.0/16", "fd00:99::/64"]);
    plugin.run("ADD", &c.to_string()).ok();
    let rules = nat(&sb.host, false);
    assert_eq!(
        rules[3],
        format!("-A {CHAIN} -d 192.168.0.0/16 -m comment --comment {COMMENT} -j ACCEPT")
    );
    assert!(rules[4].ends_with("-j MASQUERADE"), "{rules:?}");
    plugin.run("CHECK", &c.to_string()).ok();
    plugin.run("DEL", &c.to_string()).ok();
    assert!(nat(&sb.host, false).is_empty());

    let plugin = sb.plugin(BIN).env("CNI_CONTAINERID", "one");
    c["name"] = json!("unit-test");
    c["backend"] = json!("nftables");
    plugin.run("ADD", &c.to_string()).ok();
    let rule = format!(
        "ip saddr 10.22.0.2 ip daddr != {{ 10.22.0.0/24, 192.168.0.0/16 }} masquerade comment \"{NFT_COMMENT}\""
    );
    assert_eq!(nft_table(&sb.host), nft_expected(&[rule]));
    plugin.run("CHECK", &c.to_string()).ok();
    plugin.run("DEL", &c.to_string()).ok();
    assert_eq!(nft_table(&sb.host), nft_expected(&[]));
}

#[test]
fn test_ipmasq_add_without_addresses_is_an_error() {
    let Some(sb) = Sandbox::new() else { return };
    let plugin = sb.plugin(BIN);
    let msg = plugin.run("ADD", &conf("n", None, None).to_string()).err(7);
    assert!(
        msg.contains("chained plugin") && msg.contains("prevResult"),
        "{msg}"
    );
    let msg = plugin
        .run("ADD", &conf("n", None, Some(prev_result(&[]))).to_string())
        .err(7);
    assert!(msg.contains("no addresses"), "{msg}");
    assert!(nat(&sb.host, false).is_empty());
    assert!(nft_table(&sb.host).is_empty());
}

#[test]
fn test_ipmasq_del_without_prev_result_or_netns() {
    let Some(sb) = Sandbox::new() else { return };
    let plugin = sb.plugin(BIN).env("CNI_CONTAINERID", "1234");
    let add = conf(
        "test",
        Some("iptables"),
        Some(prev_result(&["10.22.0.2/24"])),
    );
    for netns in ["", "/nonexistent/netns"] {
        plugin.run("ADD", &add.to_string()).ok();
        assert_eq!(nat(&sb.host, false).len(), 4);
        plugin
            .clone()
            .env("CNI_NETNS", netns)
            .run("DEL", &conf("test", None, None).to_string())
            .ok();
        assert!(nat(&sb.host, false).is_empty(), "CNI_NETNS={netns:?}");
    }
    plugin.run("ADD", &add.to_string()).ok();
    plugin
        .without("CNI_NETNS")
        .run("DEL", &add.to_string())
        .ok();
    assert!(nat(&sb.host, false).is_empty());
}

#[test]
fn test_ipmasq_gc_keeps_only_valid_attachments() {
    let Some(sb) = Sandbox::new() else { return };
    for backend in ["iptables", "nftables"] {
        for (cid, addr) in [("keep", "10.22.0.2/24"), ("stale", "10.22.0.3/24")] {
            let mut c = conf("gcnet", Some(backend), Some(prev_result(&[addr])));
            c["cniVersion"] = json!("1.1.0");
            sb.plugin(BIN)
                .env("CNI_CONTAINERID", cid)
                .run("ADD", &c.to_string())
                .ok();
        }
    }
    // Another network's rules are not GC's business.
    sb.plugin(BIN)
        .env("CNI_CONTAINERID", "stale")
        .run(
            "ADD",
            &conf(
                "other",
                Some("iptables"),
                Some(prev_result(&["10.9.0.2/24"])),
            )
            .to_string(),
        )
        .ok();
    let gc = json!({"cniVersion": "1.1.0", "name": "gcnet", "type": "ipmasq",
        "cni.dev/valid-attachments": [{"containerID": "keep", "ifname": "eth0"}]});
    sb.plugin(BIN).run("GC", &gc.to_string()).ok();

    let rules = nat(&sb.host, false).join("\n");
    let chain = |net: &str, cid: &str| {
        let out = sb.host.cmd(
            "sh",
            &["-c", &format!("printf %s '{net}{cid}' | sha512sum")],
        );
        format!("CNI-{}", &String::from_utf8_lossy(&out.stdout)[..24])
    };
    assert!(rules.contains(&chain("gcnet", "keep")), "{rules}");
    assert!(!rules.contains(&chain("gcnet", "stale")), "{rules}");
    assert!(rules.contains(&chain("other", "stale")), "{rules}");
    let nft = nft_table(&sb.host).join("\n");
    assert!(nft.contains("id: keep"), "{nft}");
    assert!(!nft.contains("id: stale"), "{nft}");
}

#[test]
fn test_ipmasq_failed_add_leaves_nothing() {
    let Some(sb) = Sandbox::new() else { return };
    if !has_ipv6(&sb.host) {
        skip_or_fail("ip6tables nat table unavailable in the namespace");
        return;
    }
    // An ip6 nat table whose POSTROUTING is not a NAT chain: ip6tables-nft
    // refuses to add to it, while IPv4 works.
    for args in [
        &["add", "table", "ip6", "nat"][..],
        &[
            "add",
            "chain",
            "ip6",
            "nat",
            "POSTROUTING",
            "{ type filter hook postrouting priority 0; }",
        ][..],
    ] {
        let out = sb.host.cmd("nft", args);
        assert!(out.status.success(), "nft {args:?}: {out:?}");
    }
    let plugin = sb.plugin(BIN).env("CNI_CONTAINERID", "1234");
    for backend in [Some("iptables"), None] {
        let c = conf(
            "test",
            backend,
            Some(prev_result(&["10.22.0.2/24", "fd00:22::2/64"])),
        );
        let msg = plugin.run("ADD", &c.to_string()).err(999);
        assert!(
            msg.contains("ip6tables-restore") && msg.contains("-A POSTROUTING -s fd00:22::2/128"),
            "{msg}"
        );
        assert!(
            nat(&sb.host, false).is_empty(),
            "{backend:?}: IPv4 rules undone"
        );
        assert!(
            nft_table(&sb.host).is_empty(),
            "{backend:?}: no nftables fallback"
        );
    }
}

#[test]
fn test_ipmasq_concurrent_dels_all_succeed() {
    let Some(sb) = Sandbox::new() else { return };
    for backend in ["iptables", "nftables"] {
        let plugin = sb.plugin(BIN).env("CNI_CONTAINERID", "1234");
        let add = conf("test", Some(backend), Some(prev_result(&["10.22.0.2/24"])));
        plugin.run("ADD", &add.to_string()).ok();
        let del = conf("test", None, None).to_string();
        std::thread::scope(|s| {
            let runs: Vec<_> = (0..4)
                .map(|_| s.spawn(|| plugin.run("DEL", &del)))
                .collect();
            for r in runs {
                r.join().unwrap().ok();
            }
        });
        assert!(nat(&sb.host, false).is_empty(), "{backend}");
        assert!(
            !nft_table(&sb.host)
                .join("\n")
                .contains("masquerade comment"),
            "{backend}"
        );
    }
}

#[test]
fn test_ipmasq_status() {
    let Some(sb) = Sandbox::new() else { return };
    for backend in ["iptables", "nftables"] {
        let c = json!({"cniVersion": "1.1.0", "name": "n", "type": "ipmasq", "backend": backend});
        sb.plugin(BIN).run("STATUS", &c.to_string()).ok();
    }
}

/// The reference bridge's configuration: dual stack, host-local in the sandbox.
fn ref_bridge_conf(sb: &Sandbox, ip_masq: bool) -> String {
    json!({
        "cniVersion": "1.0.0", "name": "test", "type": "bridge",
        "bridge": "cni0", "isGateway": true, "ipMasq": ip_masq,
        "ipam": {"type": "host-local",
                 "ranges": [[{"subnet": "10.22.0.0/24"}], [{"subnet": "fd00:22::/64"}]],
                 "dataDir": sb.dir.path().join("ipam").display().to_string()}
    })
    .to_string()
}

fn reference_available(sb: &Sandbox) -> bool {
    if !std::path::Path::new(REF_BRIDGE).exists() {
        skip_or_fail("the reference plugins are not installed (/usr/lib/cni/bridge)");
        return false;
    }
    if !has_ipv6(&sb.host) {
        skip_or_fail("ip6tables nat table unavailable in the namespace");
        return false;
    }
    true
}

#[test]
fn test_ipmasq_removes_reference_bridge_rules() {
    let Some(sb) = Sandbox::new() else { return };
    if !reference_available(&sb) {
        return;
    }
    let bridge = sb
        .plugin(REF_BRIDGE)
        .env("CNI_CONTAINERID", "1234")
        .env("CNI_PATH", "/usr/lib/cni");
    let result = bridge.run("ADD", &ref_bridge_conf(&sb, true)).ok();
    assert_eq!(result["ips"].as_array().unwrap().len(), 2, "{result}");
    assert_eq!(nat(&sb.host, false).len(), 4, "reference wrote IPv4 rules");
    assert_eq!(nat(&sb.host, true).len(), 4, "reference wrote IPv6 rules");

    // Our CHECK accepts the reference's rules as its own.
    let mut check = conf("test", Some("iptables"), Some(result.clone()));
    check["cniVersion"] = json!("1.0.0");
    sb.plugin(BIN)
        .env("CNI_CONTAINERID", "1234")
        .run("CHECK", &check.to_string())
        .ok();

    sb.plugin(BIN)
        .env("CNI_CONTAINERID", "1234")
        .run("DEL", &conf("test", None, None).to_string())
        .ok();
    assert!(nat(&sb.host, false).is_empty());
    assert!(nat(&sb.host, true).is_empty());
    // The reference 1.1.1's DEL would now fail while the container's
    // interface still holds its addresses: with iptables-nft, its library
    // does not take "Chain ... does not exist" for "already gone". Its DEL
    // without masquerade removes the rest.
    bridge.run("DEL", &ref_bridge_conf(&sb, false)).ok();
}

#[test]
fn test_reference_bridge_removes_ipmasq_rules() {
    let Some(sb) = Sandbox::new() else { return };
    if !reference_available(&sb) {
        return;
    }
    // The reference's DEL finds the addresses on the container's interface,
    // so the interface comes from its own ADD (without masquerade); ours
    // adds the rules for the addresses it returned.
    let bridge = sb
        .plugin(REF_BRIDGE)
        .env("CNI_CONTAINERID", "1234")
        .env("CNI_PATH", "/usr/lib/cni");
    let result = bridge.run("ADD", &ref_bridge_conf(&sb, false)).ok();
    assert!(nat(&sb.host, false).is_empty());
    let ours = conf("test", Some("iptables"), Some(result));
    sb.plugin(BIN)
        .env("CNI_CONTAINERID", "1234")
        .run("ADD", &ours.to_string())
        .ok();
    assert_eq!(nat(&sb.host, false).len(), 4);
    assert_eq!(nat(&sb.host, true).len(), 4);

    bridge.run("DEL", &ref_bridge_conf(&sb, true)).ok();
    assert!(
        nat(&sb.host, false).is_empty(),
        "{:?}",
        nat(&sb.host, false)
    );
    assert!(nat(&sb.host, true).is_empty(), "{:?}", nat(&sb.host, true));
}
