//! The loopback binary, run for real in namespaces each test makes.

use pkg::spec::Version;
use pkg::testing::{Sandbox, TestNetns};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_loopback");

fn conf(version: Version) -> String {
    json!({"cniVersion": version.as_str(), "name": "lo-test", "type": "loopback"}).to_string()
}

fn lo_is_up(ns: &TestNetns) -> bool {
    let link = ns.link("lo").expect("lo exists");
    link["flags"].as_array().unwrap().iter().any(|f| f == "UP")
}

fn has_ipv6(ns: &TestNetns) -> bool {
    let out = ns.cmd("cat", &["/proc/sys/net/ipv6/conf/lo/disable_ipv6"]);
    out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// The result ADD must print for `version`, field by field.
fn expected_result(version: Version, netns: &str, v6: bool) -> Value {
    if version.has_legacy_result() {
        let mut r =
            json!({"cniVersion": version.as_str(), "ip4": {"ip": "127.0.0.1/8"}, "dns": {}});
        if v6 {
            r["ip6"] = json!({"ip": "::1/128"});
        }
        return r;
    }
    let tag = version < Version::V1_0_0;
    let ip = |family: &str, addr: &str| {
        let mut o = serde_json::Map::new();
        if tag {
            o.insert("version".into(), json!(family));
        }
        o.insert("interface".into(), json!(0));
        o.insert("address".into(), json!(addr));
        Value::Object(o)
    };
    let mut ips = vec![ip("4", "127.0.0.1/8")];
    if v6 {
        ips.push(ip("6", "::1/128"));
    }
    json!({
        "cniVersion": version.as_str(),
        "interfaces": [{"name": "lo", "mac": "00:00:00:00:00:00", "sandbox": netns}],
        "ips": ips,
        "dns": {},
    })
}

#[test]
fn test_loopback_every_verb_every_version() {
    for version in Version::ALL {
        let Some(sb) = Sandbox::new() else { return };
        let plugin = sb.plugin(BIN);
        let conf = conf(version);
        assert!(!lo_is_up(&sb.container));

        let result = plugin.run("ADD", &conf).ok();
        let netns = sb.container.path().display().to_string();
        assert_eq!(
            result,
            expected_result(version, &netns, has_ipv6(&sb.container)),
            "{version}"
        );
        assert!(lo_is_up(&sb.container), "{version}: lo up after ADD");
        assert!(
            !lo_is_up(&sb.host),
            "{version}: the host namespace's lo is untouched"
        );

        if version.supports_check() {
            assert_eq!(plugin.run("CHECK", &conf).ok(), Value::Null, "{version}");
        } else {
            plugin.run("CHECK", &conf).err(1);
        }

        assert_eq!(plugin.run("DEL", &conf).ok(), Value::Null, "{version}");
        assert!(!lo_is_up(&sb.container), "{version}: lo down after DEL");
        if version.supports_check() {
            let msg = plugin.run("CHECK", &conf).err(999);
            assert!(msg.contains("down"), "{msg}");
        }
        plugin.run("DEL", &conf).ok();

        let v = plugin.run("VERSION", &conf).ok();
        assert_eq!(v["cniVersion"], version.as_str());
        assert_eq!(v["supportedVersions"], json!(Version::all_strings()));

        for verb in ["STATUS", "GC"] {
            let out = plugin.run(verb, &conf);
            if version.supports_gc_and_status() {
                assert_eq!(out.ok(), Value::Null, "{verb} {version}");
            } else {
                assert!(out.err(1).contains(verb));
            }
        }
    }
}

#[test]
fn test_loopback_gc_with_valid_attachments() {
    let Some(sb) = Sandbox::new() else { return };
    let conf = json!({"cniVersion": "1.1.0", "name": "lo-test", "type": "loopback",
        "cni.dev/valid-attachments": [{"containerID": "ctr1", "ifname": "eth0"}]});
    sb.plugin(BIN).run("GC", &conf.to_string()).ok();
}

#[test]
fn test_loopback_prev_result_passes_through() {
    let Some(sb) = Sandbox::new() else { return };
    let prev = json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "mac": "0a:58:0a:01:00:05", "sandbox": "/x"}],
        "ips": [{"interface": 0, "address": "10.1.0.5/24", "gateway": "10.1.0.1"}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}],
        "dns": {"nameservers": ["10.1.0.1"]}
    });
    let mut conf = json!({"cniVersion": "1.0.0", "name": "lo-test", "type": "loopback"});
    conf["prevResult"] = prev.clone();
    let out = sb.plugin(BIN).run("ADD", &conf.to_string()).ok();
    assert_eq!(out, prev);
    assert!(lo_is_up(&sb.container));
}

#[test]
fn test_loopback_del_without_netns_or_with_it_gone() {
    let Some(sb) = Sandbox::new() else { return };
    let conf = conf(Version::V1_0_0);
    sb.plugin(BIN).env("CNI_NETNS", "").run("DEL", &conf).ok();
    sb.plugin(BIN).without("CNI_NETNS").run("DEL", &conf).ok();
    let gone = sb.dir.path().join("gone");
    sb.plugin(BIN)
        .env("CNI_NETNS", gone.display().to_string())
        .run("DEL", &conf)
        .ok();
}

#[test]
fn test_loopback_refuses_bad_netns() {
    let Some(sb) = Sandbox::new() else { return };
    let conf = conf(Version::V1_0_0);
    let missing = sb.dir.path().join("missing");
    let msg = sb
        .plugin(BIN)
        .env("CNI_NETNS", missing.display().to_string())
        .run("ADD", &conf)
        .err(3);
    assert!(msg.contains("missing"), "{msg}");

    let file = sb.dir.path().join("plain-file");
    std::fs::write(&file, "").unwrap();
    let msg = sb
        .plugin(BIN)
        .env("CNI_NETNS", file.display().to_string())
        .run("ADD", &conf)
        .err(4);
    assert!(msg.contains("not a network namespace"), "{msg}");

    // The plugin runs in the host namespace: being handed it as the container's is refused,
    // and the host's lo is left as it was.
    let host = sb.host.path().display().to_string();
    let msg = sb
        .plugin(BIN)
        .env("CNI_NETNS", host)
        .run("ADD", &conf)
        .err(4);
    assert!(msg.contains("own network namespace"), "{msg}");
    assert!(!lo_is_up(&sb.host));
}

#[test]
fn test_loopback_refuses_bad_environment() {
    let Some(sb) = Sandbox::new() else { return };
    let conf = conf(Version::V1_0_0);
    let p = sb.plugin(BIN);
    for (ifname, why) in [
        ("this-name-is-too-long", "15 bytes"),
        ("..", "valid"),
        ("a/b", "'/'"),
        ("a b", "white"),
    ] {
        let msg = p.clone().env("CNI_IFNAME", ifname).run("ADD", &conf).err(4);
        assert!(msg.contains(why) && msg.contains(ifname), "{msg}");
    }
    let msg = p
        .clone()
        .env("CNI_CONTAINERID", "../etc")
        .run("ADD", &conf)
        .err(4);
    assert!(msg.contains("CNI_CONTAINERID"), "{msg}");
    let msg = p
        .clone()
        .without("CNI_CONTAINERID")
        .run("ADD", &conf)
        .err(4);
    assert!(msg.contains("CNI_CONTAINERID"), "{msg}");
    let msg = p.run_raw(None, &conf).err(4);
    assert!(msg.contains("CNI_COMMAND"), "{msg}");
    let msg = p.run("SETUP", &conf).err(4);
    assert!(msg.contains("SETUP"), "{msg}");
    assert!(!lo_is_up(&sb.container));
}

#[test]
fn test_loopback_refuses_bad_config() {
    let Some(sb) = Sandbox::new() else { return };
    let p = sb.plugin(BIN);
    let cases = [
        ("{\"cniVersion\": ", 6, "not valid JSON"),
        (r#"{"cniVersion":"1.0.0","name":"n"}"#, 7, "type"),
        (r#"{"cniVersion":"1.0.0","type":"loopback"}"#, 7, "name"),
        (
            r#"{"cniVersion":"0.9.0","name":"n","type":"loopback"}"#,
            1,
            "0.9.0",
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"a/b","type":"loopback"}"#,
            7,
            "a/b",
        ),
    ];
    for (stdin, code, needle) in cases {
        let msg = p.run("ADD", stdin).err(code);
        assert!(msg.contains(needle), "{stdin}: {msg}");
    }
    assert!(!lo_is_up(&sb.container));
}

#[test]
fn test_loopback_about_when_run_by_hand() {
    let Some(sb) = Sandbox::new() else { return };
    let mut p = sb.plugin(BIN);
    p.env.clear();
    let out = p.run_raw(None, "");
    assert_eq!(out.code, 0);
    assert!(out.stderr.contains("CNI loopback plugin"), "{}", out.stderr);
    assert!(out.stderr.contains("1.1.0"));
}
