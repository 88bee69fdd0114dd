//! The bridge binary with our host-local, run for real in namespaces each
//! test makes: results field by field, packets crossing, rules, rollback.

use std::path::{Path, PathBuf};

use pkg::spec::Version;
use pkg::testing::{result_addresses, PluginRun, Sandbox, TestNetns};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_bridge");

/// Our host-local, built beside the bridge binary by `cargo test --workspace`.
fn host_local() -> PathBuf {
    let p = Path::new(BIN).with_file_name("host-local");
    assert!(
        p.exists(),
        "{} is missing: run the suite with scripts/test.sh (it builds every binary)",
        p.display()
    );
    p
}

struct Net {
    conf: Value,
}

impl Net {
    /// A bridge network on `br-test` with host-local over `subnet`, state in the sandbox.
    fn new(sb: &Sandbox, version: Version, ranges: Value) -> Net {
        host_local();
        let conf = json!({
            "cniVersion": version.as_str(),
            "name": "br-net",
            "type": "bridge",
            "bridge": "br-test",
            "isGateway": true,
            "ipam": {
                "type": "host-local",
                "ranges": ranges,
                "dataDir": sb.dir.path().join("ipam").display().to_string(),
            },
        });
        Net { conf }
    }

    fn v4(sb: &Sandbox, version: Version) -> Net {
        Net::new(sb, version, json!([[{"subnet": "10.10.0.0/24"}]]))
    }

    fn with(mut self, extra: Value) -> Net {
        for (k, v) in extra.as_object().unwrap() {
            self.conf[k] = v.clone();
        }
        self
    }

    fn s(&self) -> String {
        self.conf.to_string()
    }

    fn with_prev(&self, prev: &Value) -> String {
        let mut c = self.conf.clone();
        c["prevResult"] = prev.clone();
        c.to_string()
    }
}

fn ipam_dir(sb: &Sandbox) -> PathBuf {
    sb.dir.path().join("ipam").join("br-net")
}

fn ipam_files(sb: &Sandbox) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(ipam_dir(sb))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Allocation files only: those named by an address.
fn held(sb: &Sandbox) -> Vec<String> {
    ipam_files(sb)
        .into_iter()
        .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
        .collect()
}

fn addrs_of(ns: &TestNetns, dev: &str) -> Vec<String> {
    let v = ns.ip_json(&["addr", "show", "dev", dev]);
    v[0]["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["scope"] != "link")
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect()
}

fn nat_rules(ns: &TestNetns) -> String {
    let out = ns.cmd("iptables-save", &["-t", "nat"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("CNI-"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn nft_ruleset(ns: &TestNetns) -> String {
    String::from_utf8_lossy(&ns.cmd("nft", &["list", "ruleset"]).stdout).into_owned()
}

/// Everything a failed ADD could leave behind, to compare before and after.
fn snapshot(sb: &Sandbox) -> Value {
    let links = |ns: &TestNetns| {
        let mut v: Vec<Value> = ns
            .ip_json(&["addr", "show"])
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                json!([
                    l["ifname"],
                    l["flags"],
                    l["addr_info"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|a| &a["local"])
                        .collect::<Vec<_>>()
                ])
            })
            .collect();
        v.sort_by_key(|x| x.to_string());
        v
    };
    json!({
        "host": links(&sb.host),
        "container": links(&sb.container),
        "ipam": held(sb),
        "nat": nat_rules(&sb.host),
        "nft": nft_ruleset(&sb.host),
    })
}

fn ping(from: &TestNetns, to: &str) -> bool {
    from.cmd("ping", &["-c", "1", "-W", "2", to])
        .status
        .success()
}

fn second(sb: &Sandbox, name: &str) -> (TestNetns, PluginRun) {
    let ns = sb.extra_netns(name);
    let run = sb
        .plugin(BIN)
        .env("CNI_NETNS", ns.path().display().to_string())
        .env("CNI_CONTAINERID", name);
    (ns, run)
}

#[test]
fn test_bridge_add_check_del_every_version() {
    for version in Version::ALL {
        let Some(sb) = Sandbox::new() else { return };
        let net = Net::v4(&sb, version);
        let p = sb.plugin(BIN);
        let r = p.run("ADD", &net.s()).ok();
        assert_eq!(r["cniVersion"], version.as_str());

        let eth0 = sb.container.link("eth0").expect("eth0 in the container");
        let mac = eth0["address"].as_str().unwrap();
        assert_eq!(
            addrs_of(&sb.container, "eth0"),
            vec!["10.10.0.2/24"],
            "{version}"
        );
        assert_eq!(
            addrs_of(&sb.host, "br-test"),
            vec!["10.10.0.1/24"],
            "{version}"
        );
        let bridge = sb.host.link("br-test").unwrap();
        let veth_name = sb
            .host
            .link_names()
            .into_iter()
            .find(|n| n.starts_with("veth"))
            .expect("host veth");
        let veth = sb.host.link(&veth_name).unwrap();
        assert_eq!(veth["master"], "br-test");
        assert_eq!(held(&sb), vec!["10.10.0.2"]);

        if version.has_legacy_result() {
            assert_eq!(
                r["ip4"],
                json!({"ip": "10.10.0.2/24", "gateway": "10.10.0.1"}),
                "{version}"
            );
            assert!(r.get("interfaces").is_none());
        } else {
            let sandbox = sb.container.path().display().to_string();
            assert_eq!(
                r["interfaces"],
                json!([
                    {"name": "br-test", "mac": bridge["address"]},
                    {"name": veth_name, "mac": veth["address"]},
                    {"name": "eth0", "mac": mac, "sandbox": sandbox},
                ]),
                "{version}"
            );
            let mut ip = json!({"interface": 2, "address": "10.10.0.2/24", "gateway": "10.10.0.1"});
            if version < Version::V1_0_0 {
                ip = json!({"version": "4", "interface": 2, "address": "10.10.0.2/24", "gateway": "10.10.0.1"});
            }
            assert_eq!(r["ips"], json!([ip]), "{version}");
            assert_eq!(r["dns"], json!({}));
        }

        if version.supports_check() {
            p.run("CHECK", &net.with_prev(&r)).ok();
        }
        p.run("DEL", &net.s()).ok();
        assert!(sb.container.link("eth0").is_none(), "{version}: eth0 gone");
        assert!(
            !sb.host.link_names().contains(&veth_name),
            "{version}: host veth gone"
        );
        assert!(held(&sb).is_empty(), "{version}: address released");
        if version.supports_check() {
            p.run("CHECK", &net.with_prev(&r)).err(999);
        }
        p.run("DEL", &net.s()).ok();
    }
}

#[test]
fn test_bridge_two_containers_ping_dual_stack() {
    let Some(sb) = Sandbox::new() else { return };
    let net = Net::new(
        &sb,
        Version::V1_0_0,
        json!([[{"subnet": "10.10.0.0/24"}], [{"subnet": "fd00:10::/64"}]]),
    )
    .with(json!({"isDefaultGateway": true}));
    let r1 = sb.plugin(BIN).run("ADD", &net.s()).ok();
    let (ctr2, p2) = second(&sb, "ctr2");
    let r2 = p2.run("ADD", &net.s()).ok();
    let addr = |r: &Value, i: usize| result_addresses(r)[i].clone();
    assert_eq!(addr(&r1, 0), "10.10.0.2");
    assert_eq!(addr(&r2, 0), "10.10.0.3");
    assert_eq!(addr(&r1, 1), "fd00:10::2");
    assert_eq!(r1["ips"][1]["gateway"], "fd00:10::1");

    for to in [
        addr(&r2, 0),
        addr(&r2, 1),
        "10.10.0.1".into(),
        "fd00:10::1".into(),
    ] {
        assert!(ping(&sb.container, &to), "ping {to} from container 1");
    }
    assert!(ping(&ctr2, &addr(&r1, 0)));
    assert!(ping(&ctr2, &addr(&r1, 1)));
    assert!(
        ping(&sb.host, &addr(&r1, 0)),
        "host reaches the container through the bridge"
    );

    let routes = sb.container.ip_json(&["route", "show", "default"]);
    assert_eq!(routes[0]["gateway"], "10.10.0.1");
    let routes6 = sb.container.ip_json(&["-6", "route", "show", "default"]);
    assert_eq!(routes6[0]["gateway"], "fd00:10::1");
    assert_eq!(
        r1["routes"],
        json!([{"dst": "0.0.0.0/0", "gw": "10.10.0.1"}, {"dst": "::/0", "gw": "fd00:10::1"}])
    );
    sb.plugin(BIN).run("CHECK", &net.with_prev(&r1)).ok();
    sb.plugin(BIN).run("DEL", &net.s()).ok();
    p2.run("DEL", &net.s()).ok();
    assert!(held(&sb).is_empty());
}

#[test]
fn test_bridge_ipmasq_rules_iptables_and_nftables() {
    for backend in ["iptables", "nftables"] {
        let Some(sb) = Sandbox::new() else { return };
        let net =
            Net::v4(&sb, Version::V1_0_0).with(json!({"ipMasq": true, "ipMasqBackend": backend}));
        let r = sb.plugin(BIN).run("ADD", &net.s()).ok();
        if backend == "iptables" {
            let rules = nat_rules(&sb.host);
            assert!(rules.contains("-A POSTROUTING -s 10.10.0.2/32"), "{rules}");
            assert!(rules.contains("-j MASQUERADE"), "{rules}");
        } else {
            let rules = nft_ruleset(&sb.host);
            assert!(
                rules.contains("cni_plugins_masquerade") && rules.contains("10.10.0.2"),
                "{rules}"
            );
        }
        sb.plugin(BIN).run("CHECK", &net.with_prev(&r)).ok();
        sb.plugin(BIN).run("DEL", &net.s()).ok();
        assert_eq!(nat_rules(&sb.host), "", "{backend}");
        assert!(!nft_ruleset(&sb.host).contains("10.10.0.2"), "{backend}");
        sb.plugin(BIN).run("DEL", &net.s()).ok();
    }
}

#[test]
fn test_bridge_del_without_netns_releases_address_and_rules() {
    for netns in ["", "gone"] {
        let Some(sb) = Sandbox::new() else { return };
        let net = Net::v4(&sb, Version::V1_0_0).with(json!({"ipMasq": true}));
        sb.plugin(BIN).run("ADD", &net.s()).ok();
        assert_eq!(held(&sb).len(), 1);
        let path = if netns.is_empty() {
            String::new()
        } else {
            sb.dir.path().join(netns).display().to_string()
        };
        sb.plugin(BIN)
            .env("CNI_NETNS", path)
            .run("DEL", &net.s())
            .ok();
        assert!(
            held(&sb).is_empty(),
            "address released with CNI_NETNS={netns:?}"
        );
        assert_eq!(
            nat_rules(&sb.host),
            "",
            "rules removed with CNI_NETNS={netns:?}"
        );
    }
}

#[test]
fn test_bridge_failed_add_leaves_nothing() {
    // A taken interface name in the container.
    let Some(sb) = Sandbox::new() else { return };
    let net = Net::v4(&sb, Version::V1_0_0).with(json!({"ipMasq": true}));
    let out = sb.container.cmd(
        "ip",
        &[
            "link", "add", "eth0", "type", "veth", "peer", "name", "other",
        ],
    );
    assert!(out.status.success());
    let before = snapshot(&sb);
    let msg = sb.plugin(BIN).run("ADD", &net.s()).err(999);
    assert!(msg.contains("\"eth0\" already exists"), "{msg}");
    assert_eq!(snapshot(&sb), before, "taken interface name");

    // An exhausted range: the first container holds the only address.
    let Some(sb) = Sandbox::new() else { return };
    let net = Net::new(&sb, Version::V1_0_0, json!([[{"subnet": "10.10.0.0/30"}]]))
        .with(json!({"ipMasq": true}));
    let (_ctr2, p2) = second(&sb, "ctr2");
    p2.run("ADD", &net.s()).ok();
    let before = snapshot(&sb);
    let out = sb.plugin(BIN).run("ADD", &net.s());
    assert_ne!(out.code, 0, "{}", out.stdout);
    assert_eq!(snapshot(&sb), before, "exhausted range");

    // A missing IPAM binary.
    let Some(sb) = Sandbox::new() else { return };
    let mut net = Net::v4(&sb, Version::V1_0_0);
    net.conf["ipam"]["type"] = json!("no-such-ipam");
    let before = snapshot(&sb);
    let msg = sb.plugin(BIN).run("ADD", &net.s()).err(999);
    assert!(msg.contains("\"no-such-ipam\" not found"), "{msg}");
    assert_eq!(snapshot(&sb), before, "missing IPAM binary");

    // A bridge name used by a link that is not a bridge.
    let Some(sb) = Sandbox::new() else { return };
    let net = Net::v4(&sb, Version::V1_0_0);
    assert!(sb
        .host
        .cmd(
            "ip",
            &["link", "add", "br-test", "type", "veth", "peer", "name", "x"]
        )
        .status
        .success());
    let before = snapshot(&sb);
    let msg = sb.plugin(BIN).run("ADD", &net.s()).err(999);
    assert!(msg.contains("not a bridge"), "{msg}");
    assert_eq!(snapshot(&sb), before, "bridge name taken by a veth");
}

#[test]
fn test_bridge_bad_config_names_the_field() {
    let Some(sb) = Sandbox::new() else { return };
    let base = Net::v4(&sb, Version::V1_0_0);
    let cases = [
        (json!({"mtu": 20}), "mtu"),
        (json!({"vlan": 5000}), "vlan"),
        (
            json!({"hairpinMode": true, "promiscMode": true}),
            "hairpinMode",
        ),
        (json!({"bridge": "a-name-that-is-too-long"}), "bridge"),
        (json!({"ipMasqBackend": "pf"}), "ipMasqBackend"),
        (
            json!({"runtimeConfig": {"mac": "not-a-mac"}}),
            "runtimeConfig.mac",
        ),
        (json!({"isGateway": "yes"}), "isGateway"),
    ];
    let before = snapshot(&sb);
    for (extra, field) in cases {
        let conf = Net {
            conf: base.conf.clone(),
        }
        .with(extra)
        .s();
        let msg = sb.plugin(BIN).run("ADD", &conf).err(7);
        assert!(msg.contains(field), "{field}: {msg}");
    }
    assert_eq!(snapshot(&sb), before);
}

#[test]
fn test_bridge_container_mac_sources() {
    let Some(sb) = Sandbox::new() else { return };
    let base = Net::v4(&sb, Version::V1_0_0);
    let cases = [
        (base.conf.clone(), "MAC=0a:00:00:00:00:03", "0a:00:00:00:00:03"),
        (
            Net { conf: base.conf.clone() }.with(json!({"args": {"cni": {"mac": "0a:00:00:00:00:02"}}})).conf,
            "MAC=0a:00:00:00:00:03",
            "0a:00:00:00:00:02",
        ),
        (
            Net { conf: base.conf.clone() }
                .with(json!({"args": {"cni": {"mac": "0a:00:00:00:00:02"}}, "runtimeConfig": {"mac": "0a:00:00:00:00:01"}}))
                .conf,
            "MAC=0a:00:00:00:00:03",
            "0a:00:00:00:00:01",
        ),
    ];
    for (conf, args, want) in cases {
        let p = sb.plugin(BIN).env("CNI_ARGS", args);
        let r = p.run("ADD", &conf.to_string()).ok();
        assert_eq!(r["interfaces"][2]["mac"], want);
        assert_eq!(sb.container.link("eth0").unwrap()["address"], want);
        p.run("DEL", &conf.to_string()).ok();
    }
}

#[test]
fn test_bridge_link_options() {
    let Some(sb) = Sandbox::new() else { return };
    let net = Net::v4(&sb, Version::V1_1_0)
        .with(json!({"mtu": 1400, "hairpinMode": true, "portIsolation": true}));
    let r = sb.plugin(BIN).run("ADD", &net.s()).ok();
    assert_eq!(sb.container.link("eth0").unwrap()["mtu"], 1400);
    assert_eq!(sb.host.link("br-test").unwrap()["mtu"], 1400);
    let veth = r["interfaces"][1]["name"].as_str().unwrap();
    let port = sb.host.link(veth).unwrap();
    assert_eq!(port["mtu"], 1400);
    let info = &port["linkinfo"]["info_slave_data"];
    assert_eq!(info["hairpin"], true, "{port}");
    assert_eq!(info["isolated"], true, "{port}");
    sb.plugin(BIN).run("DEL", &net.s()).ok();

    let Some(sb) = Sandbox::new() else { return };
    let net = Net::v4(&sb, Version::V1_0_0)
        .with(json!({"promiscMode": true, "disableContainerInterface": true}));
    sb.plugin(BIN).run("ADD", &net.s()).ok();
    let br = sb.host.link("br-test").unwrap();
    assert_eq!(br["promiscuity"], 1, "{br}");
    let eth0 = sb.container.link("eth0").unwrap();
    assert!(
        !eth0["flags"].as_array().unwrap().iter().any(|f| f == "UP"),
        "{eth0}"
    );
    assert_eq!(addrs_of(&sb.container, "eth0"), vec!["10.10.0.2/24"]);
}

#[test]
fn test_bridge_gateway_address_conflicts() {
    let Some(sb) = Sandbox::new() else { return };
    assert!(sb
        .host
        .cmd("ip", &["link", "add", "br-test", "type", "bridge"])
        .status
        .success());
    assert!(sb
        .host
        .cmd("ip", &["addr", "add", "10.99.0.1/24", "dev", "br-test"])
        .status
        .success());
    let net = Net::v4(&sb, Version::V1_0_0);
    let msg = sb.plugin(BIN).run("ADD", &net.s()).err(999);
    assert!(
        msg.contains("10.99.0.1/24") && msg.contains("forceAddress"),
        "{msg}"
    );
    assert!(held(&sb).is_empty(), "failed ADD released its address");
    assert!(sb.container.link("eth0").is_none());

    let net = net.with(json!({"forceAddress": true}));
    sb.plugin(BIN).run("ADD", &net.s()).ok();
    assert_eq!(addrs_of(&sb.host, "br-test"), vec!["10.10.0.1/24"]);
}

#[test]
fn test_bridge_no_ipam_is_layer2_only() {
    let Some(sb) = Sandbox::new() else { return };
    let conf = json!({"cniVersion": "1.0.0", "name": "l2", "type": "bridge", "bridge": "br-l2"});
    let r = sb.plugin(BIN).run("ADD", &conf.to_string()).ok();
    assert!(r.get("ips").is_none(), "{r}");
    assert_eq!(r["interfaces"].as_array().unwrap().len(), 3);
    let eth0 = sb.container.link("eth0").unwrap();
    assert!(eth0["flags"].as_array().unwrap().iter().any(|f| f == "UP"));
    sb.plugin(BIN).run("DEL", &conf.to_string()).ok();
}

#[test]
fn test_bridge_concurrent_first_adds_on_a_new_bridge() {
    let Some(sb) = Sandbox::new() else { return };
    let net = Net::v4(&sb, Version::V1_0_0).with(json!({"ipMasq": true}));
    let others: Vec<(TestNetns, PluginRun)> =
        (0..8).map(|i| second(&sb, &format!("c{i}"))).collect();
    let conf = net.s();
    std::thread::scope(|s| {
        let handles: Vec<_> = others
            .iter()
            .map(|(_, p)| s.spawn(|| p.run("ADD", &conf)))
            .collect();
        for h in handles {
            h.join().unwrap().ok();
        }
    });
    assert_eq!(held(&sb).len(), 8);
    assert_eq!(addrs_of(&sb.host, "br-test"), vec!["10.10.0.1/24"]);
    for (ns, _) in &others {
        assert!(ping(ns, "10.10.0.1"));
    }
    for (_, p) in &others {
        p.run("DEL", &conf).ok();
    }
    assert!(held(&sb).is_empty());
    assert_eq!(nat_rules(&sb.host), "");
}

#[test]
fn test_bridge_gc_and_status() {
    let Some(sb) = Sandbox::new() else { return };
    let net = Net::v4(&sb, Version::V1_1_0).with(json!({"ipMasq": true}));
    sb.plugin(BIN).run("ADD", &net.s()).ok();
    let (_c2, p2) = second(&sb, "ctr2");
    p2.run("ADD", &net.s()).ok();
    sb.plugin(BIN).run("STATUS", &net.s()).ok();
    let gc =
        net.with(json!({"cni.dev/valid-attachments": [{"containerID": "ctr1", "ifname": "eth0"}]}));
    sb.plugin(BIN).run("GC", &gc.s()).ok();
    assert_eq!(held(&sb), vec!["10.10.0.2"], "ctr2's address collected");
    let rules = nat_rules(&sb.host);
    assert!(
        rules.contains("10.10.0.2") && !rules.contains("10.10.0.3"),
        "{rules}"
    );
}

#[test]
fn test_bridge_vlan_needs_kernel_support() {
    let Some(sb) = Sandbox::new() else { return };
    let probe = sb.host.cmd(
        "ip",
        &[
            "link",
            "add",
            "vlprobe",
            "type",
            "bridge",
            "vlan_filtering",
            "1",
        ],
    );
    if !probe.status.success() {
        pkg::testing::skip_missing_kernel_feature("bridge VLAN filtering");
        return;
    }
    let _ = sb.host.cmd("ip", &["link", "del", "vlprobe"]);
    let net = Net::v4(&sb, Version::V1_0_0).with(json!({"vlan": 100}));
    sb.plugin(BIN).run("ADD", &net.s()).ok();
    let vlans = sb.host.ip_json(&["link", "show", "master", "br-test"]);
    assert!(!vlans.as_array().unwrap().is_empty());
}

#[test]
fn test_bridge_mac_spoof_check() {
    let Some(sb) = Sandbox::new() else { return };
    let net = Net::v4(&sb, Version::V1_0_0).with(json!({"macspoofchk": true}));
    let r = sb.plugin(BIN).run("ADD", &net.s()).ok();
    let (ctr2, p2) = second(&sb, "ctr2");
    p2.run("ADD", &net.s()).ok();
    let rules = nft_ruleset(&sb.host);
    assert!(
        rules.contains("chain cni-br-iface-ctr1-eth0-mac"),
        "{rules}"
    );
    assert!(
        rules.contains(&format!(
            "ether saddr {} return",
            r["interfaces"][2]["mac"].as_str().unwrap()
        )),
        "{rules}"
    );
    sb.plugin(BIN).run("CHECK", &net.with_prev(&r)).ok();
    assert!(ping(&ctr2, "10.10.0.2"), "the real MAC passes");

    // A container that changes its MAC is cut off.
    assert!(sb
        .container
        .cmd(
            "ip",
            &["link", "set", "eth0", "address", "0a:00:00:00:00:99"]
        )
        .status
        .success());
    let _ = sb.container.cmd("ip", &["neigh", "flush", "all"]);
    let _ = ctr2.cmd("ip", &["neigh", "flush", "all"]);
    assert!(
        !ping(&sb.container, "10.10.0.3"),
        "a spoofed MAC is dropped"
    );

    sb.plugin(BIN).run("DEL", &net.s()).ok();
    let rules = nft_ruleset(&sb.host);
    assert!(!rules.contains("ctr1-eth0"), "{rules}");
    assert!(
        rules.contains("cni-br-iface-ctr2-eth0"),
        "the other container keeps its check"
    );
    sb.plugin(BIN).run("DEL", &net.s()).ok();
}

/// The example configurations of Documentation/bridge.md, run as written
/// (state directory moved into the sandbox).
#[test]
fn test_bridge_documented_examples() {
    let testdata = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata");
    for file in ["bridge.conf", "bridge-dualstack.conf"] {
        let Some(sb) = Sandbox::new() else { return };
        host_local();
        let mut conf: Value =
            serde_json::from_str(&std::fs::read_to_string(testdata.join(file)).unwrap()).unwrap();
        conf["ipam"]["dataDir"] = json!(sb.dir.path().join("ipam").display().to_string());
        let conf = conf.to_string();
        let r = sb.plugin(BIN).run("ADD", &conf).ok();
        assert_eq!(r["interfaces"].as_array().unwrap().len(), 3, "{file}");
        let (ctr2, p2) = second(&sb, "ctr2");
        let r2 = p2.run("ADD", &conf).ok();
        let other = result_addresses(&r2)[0].clone();
        assert!(
            ping(&sb.container, &other),
            "{file}: containers reach each other"
        );
        let mut with_prev: Value = serde_json::from_str(&conf).unwrap();
        with_prev["prevResult"] = r;
        sb.plugin(BIN).run("CHECK", &with_prev.to_string()).ok();
        sb.plugin(BIN).run("DEL", &conf).ok();
        p2.run("DEL", &conf).ok();
        drop(ctr2);
        assert_eq!(nat_rules(&sb.host), "", "{file}");
    }
}
