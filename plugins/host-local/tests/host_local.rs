//! The host-local binary, run for real with its data directory in a temp dir.
//!
//! host-local touches no network namespace: it runs in the test's own, and
//! `CNI_NETNS` is only passed along because the spec requires it.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use pkg::spec::Version;
use pkg::testing::Output;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_host-local");
const REFERENCE: &str = "/usr/lib/cni/host-local";
const NET: &str = "hl-net";

/// A data directory and the calls made against it.
struct Node {
    data: tempfile::TempDir,
}

impl Node {
    fn new() -> Node {
        Node {
            data: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.data.path().join("networks")
    }

    /// The network's state directory.
    fn dir(&self) -> PathBuf {
        self.data_dir().join(NET)
    }

    /// A configuration with `ipam` (to which `type` and `dataDir` are added).
    fn conf(&self, version: Version, mut ipam: Value) -> Value {
        ipam["type"] = json!("host-local");
        ipam["dataDir"] = json!(self.data_dir());
        json!({"cniVersion": version.as_str(), "name": NET, "type": "bridge", "ipam": ipam})
    }

    fn run(&self, command: &str, id: &str, conf: &Value) -> Output {
        run_binary(BIN, command, &[("CNI_CONTAINERID", id)], conf)
    }

    /// Every file of the network's directory and its bytes.
    fn files(&self) -> BTreeMap<String, Vec<u8>> {
        let Ok(entries) = std::fs::read_dir(self.dir()) else {
            return BTreeMap::new();
        };
        entries
            .map(|e| {
                let e = e.unwrap();
                let name = e.file_name().into_string().unwrap();
                let bytes = std::fs::read(e.path()).unwrap_or_default();
                (name, bytes)
            })
            .collect()
    }

    fn names(&self) -> Vec<String> {
        self.files().into_keys().collect()
    }

    fn read(&self, name: &str) -> String {
        String::from_utf8(std::fs::read(self.dir().join(name)).unwrap()).unwrap()
    }
}

/// Runs `binary` with a clean environment: the container `ctr1` on `eth0`,
/// overridden by `env`.
fn run_binary(binary: &str, command: &str, env: &[(&str, &str)], conf: &Value) -> Output {
    let mut cmd = Command::new(binary);
    cmd.env_clear()
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", "ctr1")
        .env("CNI_NETNS", "/run/netns/unused")
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/opt/cni/bin")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {binary}: {e}"));
    let stdin = conf.to_string();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn dual_stack() -> Value {
    json!({
        "ranges": [
            [{"subnet": "10.10.0.0/24", "rangeStart": "10.10.0.10", "rangeEnd": "10.10.0.20"}],
            [{"subnet": "fd10::/64", "gateway": "fd10::fe"}]
        ],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0", "gw": "fd10::fe"}]
    })
}

/// The result ADD prints for the dual-stack configuration, in `version`.
fn dual_stack_result(version: Version, v4: &str, v6: &str, dns: Value) -> Value {
    if version.has_legacy_result() {
        return json!({
            "cniVersion": version.as_str(),
            "ip4": {"ip": v4, "gateway": "10.10.0.1", "routes": [{"dst": "0.0.0.0/0"}]},
            "ip6": {"ip": v6, "gateway": "fd10::fe", "routes": [{"dst": "::/0", "gw": "fd10::fe"}]},
            "dns": dns,
        });
    }
    let tag = |family: &str, address: &str, gateway: &str| {
        if version < Version::V1_0_0 {
            json!({"version": family, "address": address, "gateway": gateway})
        } else {
            json!({"address": address, "gateway": gateway})
        }
    };
    json!({
        "cniVersion": version.as_str(),
        "ips": [tag("4", v4, "10.10.0.1"), tag("6", v6, "fd10::fe")],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0", "gw": "fd10::fe"}],
        "dns": dns,
    })
}

fn ensure_reference() -> bool {
    if Path::new(REFERENCE).exists() {
        return true;
    }
    pkg::testing::skip_or_fail(&format!(
        "the reference plugin {REFERENCE} is missing (Debian package containernetworking-plugins)"
    ));
    false
}

#[test]
fn test_host_local_every_verb_every_version() {
    for version in Version::ALL {
        let node = Node::new();
        let resolv = node.data.path().join("resolv.conf");
        std::fs::write(
            &resolv,
            "nameserver 10.10.0.53\nsearch example.org\noptions ndots:2\n",
        )
        .unwrap();
        let mut ipam = dual_stack();
        ipam["resolvConf"] = json!(resolv);
        let conf = node.conf(version, ipam);
        let dns = json!({"nameservers": ["10.10.0.53"], "search": ["example.org"], "options": ["ndots:2"]});

        let out = node.run("ADD", "ctr1", &conf).ok();
        assert_eq!(
            out,
            dual_stack_result(version, "10.10.0.10/24", "fd10::1/64", dns.clone()),
            "{version}"
        );
        let files = node.files();
        assert_eq!(files["10.10.0.10"], b"ctr1\r\neth0", "{version}");
        assert_eq!(files["fd10::1"], b"ctr1\r\neth0", "{version}");
        assert_eq!(files["last_reserved_ip.0"], b"10.10.0.10", "{version}");
        assert_eq!(files["last_reserved_ip.1"], b"fd10::1", "{version}");
        assert_eq!(files["lock"], b"", "{version}");

        let out = node.run("ADD", "ctr2", &conf).ok();
        assert_eq!(
            out,
            dual_stack_result(version, "10.10.0.11/24", "fd10::2/64", dns),
            "{version}"
        );

        if version.supports_check() {
            node.run("CHECK", "ctr1", &conf).ok();
            let msg = node.run("CHECK", "ctr3", &conf).err(999);
            assert!(msg.contains("ctr3") && msg.contains("no address"), "{msg}");
        } else {
            node.run("CHECK", "ctr1", &conf).err(1);
        }

        node.run("DEL", "ctr1", &conf).ok();
        node.run("DEL", "ctr1", &conf).ok();
        assert!(!node.names().contains(&"10.10.0.10".to_string()));
        if version.supports_check() {
            node.run("CHECK", "ctr1", &conf).err(999);
        }
        node.run("DEL", "ctr2", &conf).ok();
        assert_eq!(
            node.names(),
            ["last_reserved_ip.0", "last_reserved_ip.1", "lock"],
            "{version}"
        );

        for verb in ["GC", "STATUS"] {
            let mut c = conf.clone();
            c["cni.dev/valid-attachments"] = json!([]);
            let out = node.run(verb, "", &c);
            if version.supports_gc_and_status() {
                out.ok();
            } else {
                assert!(out.err(1).contains(verb));
            }
        }
    }
}

/// The addresses of a result in order, whatever its version's form
/// (0.1.0 and 0.2.0 hold only the first IPv4 and the first IPv6 address).
fn addresses(out: &Value) -> Vec<String> {
    if let Some(ips) = out["ips"].as_array() {
        return ips
            .iter()
            .map(|i| i["address"].as_str().unwrap().to_string())
            .collect();
    }
    ["ip4", "ip6"]
        .iter()
        .filter_map(|k| out[k]["ip"].as_str())
        .map(String::from)
        .collect()
}

impl Node {
    /// The addresses whose files name `id` on `eth0`, sorted.
    fn held_by(&self, id: &str) -> Vec<String> {
        let want = format!("{id}\r\neth0").into_bytes();
        self.files()
            .into_iter()
            .filter(|(name, bytes)| name.parse::<std::net::IpAddr>().is_ok() && *bytes == want)
            .map(|(name, _)| name)
            .collect()
    }
}

#[test]
fn test_host_local_legacy_single_range_round_robin() {
    for version in Version::ALL {
        let node = Node::new();
        let conf = node.conf(
            version,
            json!({"subnet": "10.20.0.0/24", "rangeStart": "10.20.0.100", "rangeEnd": "10.20.0.103",
                   "gateway": "10.20.0.101"}),
        );
        let add = |id: &str| addresses(&node.run("ADD", id, &conf).ok());
        let a = node.run("ADD", "c1", &conf).ok();
        assert_eq!(addresses(&a), ["10.20.0.100/24"], "{version}");
        let gateway = if version.has_legacy_result() {
            &a["ip4"]["gateway"]
        } else {
            &a["ips"][0]["gateway"]
        };
        assert_eq!(gateway, "10.20.0.101", "{version}");
        // The gateway is skipped.
        assert_eq!(add("c2"), ["10.20.0.102/24"], "{version}");
        node.run("DEL", "c1", &conf).ok();
        // Round robin: after the last reserved address, not the lowest free one.
        assert_eq!(add("c3"), ["10.20.0.103/24"], "{version}");
        // Wrapping around.
        assert_eq!(add("c4"), ["10.20.0.100/24"], "{version}");
        assert_eq!(node.read("last_reserved_ip.0"), "10.20.0.100");
        assert_eq!(node.held_by("c4"), ["10.20.0.100"]);

        // Exhausted: a clear error, and no new file.
        let before = node.files();
        let msg = node.run("ADD", "c5", &conf).err(999);
        assert!(
            msg.contains("no address left") && msg.contains("10.20.0.100-10.20.0.103"),
            "{msg}"
        );
        assert_eq!(node.files(), before, "{version}");
    }
}

#[test]
fn test_host_local_exhausted_second_set_leaves_nothing() {
    for version in Version::ALL {
        let node = Node::new();
        let conf = node.conf(
            version,
            json!({"ranges": [[{"subnet": "10.30.0.0/24"}], [{"subnet": "10.31.0.0/30"}]]}),
        );
        node.run("ADD", "c1", &conf).ok();
        let before = node.files();
        let msg = node.run("ADD", "c2", &conf).err(999);
        assert!(msg.contains("range set 1"), "{msg}");
        assert_eq!(
            node.files(),
            before,
            "{version}: the address of set 0 is released again"
        );
    }
}

#[test]
fn test_host_local_second_add_refused() {
    for version in Version::ALL {
        let node = Node::new();
        let conf = node.conf(version, json!({"subnet": "10.40.0.0/24"}));
        node.run("ADD", "c1", &conf).ok();
        let before = node.files();
        let msg = node.run("ADD", "c1", &conf).err(999);
        assert!(
            msg.contains("10.40.0.2") && msg.contains("second ADD"),
            "{msg}"
        );
        assert_eq!(node.files(), before);
        // Another interface of the same container is a different attachment.
        let out = run_binary(
            BIN,
            "ADD",
            &[("CNI_CONTAINERID", "c1"), ("CNI_IFNAME", "eth1")],
            &conf,
        )
        .ok();
        assert_eq!(addresses(&out), ["10.40.0.3/24"], "{version}");
        assert_eq!(node.read("10.40.0.3"), "c1\r\neth1");
        // After a DEL, the container may be added again.
        node.run("DEL", "c1", &conf).ok();
        node.run("ADD", "c1", &conf).ok();
    }
}

#[test]
fn test_host_local_requested_addresses() {
    for version in Version::ALL {
        let node = Node::new();
        let ipam = json!({"ranges": [[{"subnet": "10.50.0.0/24"}], [{"subnet": "fd50::/64"}]]});
        let conf = node.conf(version, ipam);
        let add = |id: &str, args: &str, conf: &Value| {
            let out = run_binary(
                BIN,
                "ADD",
                &[("CNI_CONTAINERID", id), ("CNI_ARGS", args)],
                conf,
            );
            addresses(&out.ok())
        };

        assert_eq!(
            add("c1", "IgnoreUnknown=1;IP=10.50.0.7", &conf),
            ["10.50.0.7/24", "fd50::2/64"],
            "{version}"
        );
        assert_eq!(node.read("last_reserved_ip.0"), "10.50.0.7");
        assert_eq!(
            add("c2", "IP=10.50.0.8,fd50::8", &conf),
            ["10.50.0.8/24", "fd50::8/64"],
            "{version}"
        );

        let mut c = conf.clone();
        c["args"] = json!({"cni": {"ips": ["fd50::9/64", "10.50.0.9"]}});
        assert_eq!(
            add("c3", "", &c),
            ["10.50.0.9/24", "fd50::9/64"],
            "{version}"
        );

        let mut c = conf.clone();
        c["runtimeConfig"] = json!({"ips": ["10.50.0.10"]});
        assert_eq!(
            add("c4", "", &c),
            ["10.50.0.10/24", "fd50::a/64"],
            "{version}"
        );
        assert_eq!(node.read("fd50::a"), "c4\r\neth0");

        // Held by another container: refused, naming the holder; nothing new on disk.
        let before = node.files();
        let msg = run_binary(
            BIN,
            "ADD",
            &[("CNI_CONTAINERID", "c5"), ("CNI_ARGS", "IP=10.50.0.7")],
            &conf,
        )
        .err(999);
        assert!(
            msg.contains("10.50.0.7") && msg.contains("container c1"),
            "{msg}"
        );
        // The gateway, an address outside every range, two in one set, garbage.
        for (args, code, needle) in [
            ("IP=10.50.0.1", 7, "gateway"),
            ("IP=10.99.0.1", 7, "in no range"),
            ("IP=10.50.0.20,10.50.0.21", 7, "both in range set 0"),
            ("IP=bogus", 4, "bogus"),
        ] {
            let msg = run_binary(
                BIN,
                "ADD",
                &[("CNI_CONTAINERID", "c5"), ("CNI_ARGS", args)],
                &conf,
            )
            .err(code);
            assert!(msg.contains(needle), "{args}: {msg}");
        }
        assert_eq!(node.files(), before, "{version}");
    }
}

#[test]
fn test_host_local_ip_ranges_capability_comes_first() {
    for version in Version::ALL {
        let node = Node::new();
        let mut conf = node.conf(
            version,
            json!({"subnet": "10.61.0.0/24", "ranges": [[{"subnet": "10.62.0.0/24"}]]}),
        );
        conf["runtimeConfig"] = json!({"ipRanges": [[{"subnet": "10.60.0.0/24"}]]});
        let out = node.run("ADD", "c1", &conf).ok();
        if !version.has_legacy_result() {
            assert_eq!(
                addresses(&out),
                ["10.60.0.2/24", "10.61.0.2/24", "10.62.0.2/24"],
                "{version}"
            );
        }
        assert_eq!(node.held_by("c1"), ["10.60.0.2", "10.61.0.2", "10.62.0.2"]);
        assert_eq!(node.read("last_reserved_ip.0"), "10.60.0.2");
        assert_eq!(node.read("last_reserved_ip.2"), "10.62.0.2");
    }
}

#[test]
fn test_host_local_invalid_configurations() {
    let cases = [
        (json!({"subnet": "10.0.0.1/24"}), "host bits"),
        (json!({"subnet": "10.0.0.0/31"}), "too small"),
        (json!({"subnet": "fd00::/127"}), "too small"),
        (
            json!({"subnet": "10.0.0.0/24", "rangeStart": "10.1.0.1"}),
            "rangeStart 10.1.0.1 is not in subnet 10.0.0.0/24",
        ),
        (
            json!({"subnet": "10.0.0.0/24", "rangeEnd": "10.1.0.1"}),
            "rangeEnd 10.1.0.1",
        ),
        (
            json!({"subnet": "10.0.0.0/24", "gateway": "10.1.0.1"}),
            "gateway 10.1.0.1",
        ),
        (
            json!({"subnet": "10.0.0.0/24", "rangeStart": "10.0.0.50", "rangeEnd": "10.0.0.20"}),
            "after rangeEnd",
        ),
        (
            json!({"ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "10.0.0.0/25"}]]}),
            "range set 1 (ipam.ranges[1]: 10.0.0.1-10.0.0.126) overlaps range set 0",
        ),
        (
            json!({"subnet": "10.0.0.0/24", "ranges": [[{"subnet": "10.0.0.0/16"}]]}),
            "overlaps",
        ),
        (
            json!({"ranges": [[{"subnet": "10.0.0.0/24"}, {"subnet": "10.0.0.0/25"}]]}),
            "ipam.ranges[0]",
        ),
        (
            json!({"ranges": [[{"subnet": "10.0.0.0/24"}, {"subnet": "fd00::/64"}]]}),
            "mixes IPv4 and IPv6",
        ),
        (json!({"ranges": [[]]}), "empty"),
        (json!({"ranges": []}), "no address range"),
        (json!({}), "no address range"),
        (
            json!({"ranges": [[{"subnet": "10.0.0.0/24"}, {"gateway": "10.0.1.1"}]]}),
            "ipam.ranges[0][1]: it has no subnet",
        ),
        (
            json!({"ranges": [[{"subnet": "banana"}]]}),
            "ipam.ranges[0][0]: subnet \"banana\"",
        ),
        (json!({"subnet": 7}), "subnet"),
    ];
    for version in Version::ALL {
        for (ipam, needle) in &cases {
            let node = Node::new();
            let conf = node.conf(version, ipam.clone());
            let msg = node.run("ADD", "c1", &conf).err(7);
            assert!(msg.contains(needle), "{version} {ipam}: {msg}");
            assert!(!node.data_dir().exists(), "{ipam}: nothing is written");
        }
    }
    let node = Node::new();
    let mut conf = node.conf(Version::V1_0_0, json!({"subnet": "10.0.0.0/24"}));
    conf.as_object_mut().unwrap().remove("ipam");
    assert!(node.run("ADD", "c1", &conf).err(7).contains("ipam"));
}

#[test]
fn test_host_local_network_name_is_not_a_path() {
    let node = Node::new();
    for name in ["../x", "a/b", ".hidden", ".."] {
        let mut conf = node.conf(Version::V1_0_0, json!({"subnet": "10.0.0.0/24"}));
        conf["name"] = json!(name);
        for verb in ["ADD", "DEL"] {
            let msg = node.run(verb, "c1", &conf).err(7);
            assert!(msg.contains("network name"), "{name}: {msg}");
        }
    }
    assert_eq!(std::fs::read_dir(node.data.path()).unwrap().count(), 0);
}

#[test]
fn test_host_local_symlinks_are_not_followed() {
    let node = Node::new();
    let outside = node.data.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::create_dir_all(node.data_dir()).unwrap();
    let conf = node.conf(Version::V1_0_0, json!({"subnet": "10.70.0.0/24"}));

    // The network's directory itself.
    std::os::unix::fs::symlink(&outside, node.dir()).unwrap();
    let msg = node.run("ADD", "c1", &conf).err(5);
    assert!(msg.contains("symbolic link"), "{msg}");
    node.run("DEL", "c1", &conf).err(5);
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    std::fs::remove_file(node.dir()).unwrap();

    // An address file and last_reserved_ip pointing outside.
    std::fs::create_dir(node.dir()).unwrap();
    let target = outside.join("target");
    std::fs::write(&target, "untouched").unwrap();
    std::os::unix::fs::symlink(&target, node.dir().join("10.70.0.2")).unwrap();
    std::os::unix::fs::symlink(&target, node.dir().join("last_reserved_ip.0")).unwrap();
    let out = node.run("ADD", "c1", &conf).ok();
    assert_eq!(out["ips"][0]["address"], "10.70.0.3/24");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "untouched");
    assert!(!node
        .dir()
        .join("last_reserved_ip.0")
        .symlink_metadata()
        .unwrap()
        .is_symlink());
    node.run("DEL", "c1", &conf).ok();
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "untouched");
    assert!(node.dir().join("10.70.0.2").symlink_metadata().is_ok());

    // The lock file.
    let other = node.data.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let mut conf2 = conf.clone();
    conf2["ipam"]["dataDir"] = json!(other);
    std::fs::create_dir(other.join(NET)).unwrap();
    std::os::unix::fs::symlink(&target, other.join(NET).join("lock")).unwrap();
    node.run("ADD", "c1", &conf2).err(5);
}

#[test]
fn test_host_local_files_only_root_reads() {
    let node = Node::new();
    let conf = node.conf(Version::V1_0_0, json!({"subnet": "10.80.0.0/24"}));
    node.run("ADD", "c1", &conf).ok();
    for name in [
        "10.80.0.2",
        "last_reserved_ip.0",
        "lock",
        "attachment.c1:eth0",
    ] {
        let mode = std::fs::metadata(node.dir().join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}");
    }
}

#[test]
fn test_host_local_del_needs_no_netns_and_creates_nothing() {
    let node = Node::new();
    let conf = node.conf(Version::V1_0_0, json!({"subnet": "10.90.0.0/24"}));
    run_binary(BIN, "DEL", &[("CNI_NETNS", "")], &conf).ok();
    assert!(!node.data_dir().exists());
    node.run("ADD", "ctr1", &conf).ok();
    // DEL releases even when the ranges changed or became invalid.
    let changed = node.conf(Version::V1_0_0, json!({"subnet": "10.90.0.1/24"}));
    run_binary(BIN, "DEL", &[("CNI_NETNS", "")], &changed).ok();
    assert_eq!(node.names(), ["last_reserved_ip.0", "lock"]);
}

#[test]
fn test_host_local_legacy_and_reference_files() {
    let node = Node::new();
    let conf = node.conf(Version::V1_0_0, json!({"subnet": "10.91.0.0/24"}));
    std::fs::create_dir_all(node.dir()).unwrap();
    // A file of an old reference version (id only) and one of the current
    // reference (no index file of ours).
    std::fs::write(node.dir().join("10.91.0.2"), "old").unwrap();
    std::fs::write(node.dir().join("10.91.0.3"), "new\r\neth0").unwrap();
    std::fs::write(node.dir().join("last_reserved_ip.0"), "10.91.0.3").unwrap();
    let out = node.run("ADD", "c1", &conf).ok();
    assert_eq!(out["ips"][0]["address"], "10.91.0.4/24");
    node.run("CHECK", "old", &conf).ok();
    node.run("CHECK", "new", &conf).ok();
    // Another interface of a container holding an address is not enough.
    let other_if = [("CNI_CONTAINERID", "new"), ("CNI_IFNAME", "eth1")];
    run_binary(BIN, "CHECK", &other_if, &conf).err(999);
    // An index file whose address the reference released since is stale.
    std::fs::write(node.dir().join("attachment.gone:eth0"), "10.91.0.3\n").unwrap();
    run_binary(BIN, "CHECK", &[("CNI_CONTAINERID", "gone")], &conf).err(999);
    let out = node.run("ADD", "gone", &conf).ok();
    assert_eq!(out["ips"][0]["address"], "10.91.0.5/24");
    node.run("DEL", "old", &conf).ok();
    node.run("DEL", "new", &conf).ok();
    node.run("DEL", "c1", &conf).ok();
    node.run("DEL", "gone", &conf).ok();
    assert_eq!(node.names(), ["last_reserved_ip.0", "lock"]);
}

#[test]
fn test_host_local_gc_releases_all_but_valid() {
    let node = Node::new();
    let conf = node.conf(Version::V1_1_0, json!({"subnet": "10.92.0.0/24"}));
    for id in ["keep", "drop1", "drop2"] {
        node.run("ADD", id, &conf).ok();
    }
    std::fs::write(node.dir().join("10.92.0.100"), "keep").unwrap();
    std::fs::write(node.dir().join("10.92.0.101"), "gone").unwrap();
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "keep", "ifname": "eth0"}]);
    run_binary(BIN, "GC", &[], &gc).ok();
    assert_eq!(
        node.names(),
        [
            "10.92.0.100",
            "10.92.0.2",
            "attachment.keep:eth0",
            "last_reserved_ip.0",
            "lock"
        ]
    );
    // Without the list, GC refuses rather than releasing everything.
    let msg = run_binary(BIN, "GC", &[], &conf).err(7);
    assert!(msg.contains("valid-attachments"), "{msg}");
    assert!(node.names().contains(&"10.92.0.2".to_string()));
}

#[test]
fn test_host_local_status() {
    let node = Node::new();
    let conf = node.conf(Version::V1_1_0, json!({"subnet": "10.93.0.0/24"}));
    run_binary(BIN, "STATUS", &[], &conf).ok();
    let file = node.data.path().join("plain-file");
    std::fs::write(&file, "").unwrap();
    let mut bad = conf.clone();
    bad["ipam"]["dataDir"] = json!(file.join("networks"));
    let msg = run_binary(BIN, "STATUS", &[], &bad).err(50);
    assert!(msg.contains("plain-file"), "{msg}");
}

#[test]
fn test_host_local_64_concurrent_adds_then_dels() {
    let node = Node::new();
    let conf = node.conf(Version::V1_0_0, json!({"subnet": "10.94.0.0/24"}));
    let run_all = |verb: &'static str| {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..64)
                .map(|i| {
                    let conf = &conf;
                    let node = &node;
                    s.spawn(move || node.run(verb, &format!("c{i}"), conf))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .collect::<Vec<_>>()
        })
    };
    let mut addrs: Vec<String> = run_all("ADD")
        .iter()
        .map(|o| o.ok()["ips"][0]["address"].as_str().unwrap().to_string())
        .collect();
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), 64);
    let held = node.names().iter().filter(|n| n.starts_with("10.")).count();
    assert_eq!(held, 64);
    for out in run_all("DEL") {
        out.ok();
    }
    assert_eq!(node.names(), ["last_reserved_ip.0", "lock"]);
}

#[test]
fn test_host_local_interoperates_with_reference() {
    if !ensure_reference() {
        return;
    }
    let node = Node::new();
    let conf = node.conf(
        Version::V1_0_0,
        json!({"ranges": [[{"subnet": "10.95.0.0/24"}], [{"subnet": "fd95::/64"}]]}),
    );
    let reference =
        |verb: &str, id: &str| run_binary(REFERENCE, verb, &[("CNI_CONTAINERID", id)], &conf);
    reference("ADD", "r1").ok();
    let out = node.run("ADD", "o1", &conf).ok();
    assert_eq!(out["ips"][0]["address"], "10.95.0.3/24");
    assert_eq!(out["ips"][1]["address"], "fd95::3/64");
    let out = reference("ADD", "r2").ok();
    assert_eq!(out["ips"][0]["address"], "10.95.0.4/24");
    assert_eq!(node.read("10.95.0.3"), "o1\r\neth0");
    assert_eq!(node.read("fd95::4"), "r2\r\neth0");
    // Each releases what the other allocated.
    node.run("DEL", "r1", &conf).ok();
    reference("DEL", "o1").ok();
    node.run("DEL", "r2", &conf).ok();
    let left: Vec<String> = node
        .names()
        .into_iter()
        .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn test_host_local_example_configurations() {
    let testdata = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata");
    let mut seen = 0;
    for entry in std::fs::read_dir(&testdata).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !(name.starts_with("host-local") && name.ends_with(".conf")) {
            continue;
        }
        seen += 1;
        let node = Node::new();
        let mut conf: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        conf["ipam"]["dataDir"] = json!(node.data_dir());
        if conf["ipam"].get("resolvConf").is_some() {
            let resolv = node.data.path().join("resolv.conf");
            std::fs::write(&resolv, "nameserver 192.0.2.53\n").unwrap();
            conf["ipam"]["resolvConf"] = json!(resolv);
        }
        let out = run_binary(BIN, "ADD", &[], &conf).ok();
        assert!(!out["ips"].as_array().unwrap().is_empty(), "{name}: {out}");
        run_binary(BIN, "CHECK", &[], &conf).ok();
        run_binary(BIN, "DEL", &[], &conf).ok();
    }
    assert!(
        seen >= 2,
        "the example configurations are in {}",
        testdata.display()
    );
}
