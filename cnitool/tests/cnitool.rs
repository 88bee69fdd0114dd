//! cnitool with the suite's real plugins, in namespaces each test makes:
//! chains, the result cache in libcni's format, rollback of a failed ADD,
//! version negotiation, and one-line errors for bad input.

mod common;

use std::path::Path;

use common::{bin_dir, list_dir, plugin_script, repo, World};
use serde_json::Value;

#[test]
fn test_default_network_add_check_del() {
    let Some(w) = World::new() else { return };
    w.use_testdata("default/10-cni-default.conflist");
    let out = w.cnitool(&["add", "cni-default", w.container()], &[]);
    let result: Value = serde_json::from_str(out.ok()).unwrap();
    assert_eq!(result["cniVersion"], "1.1.0");
    let addr = result["ips"][0]["address"].as_str().unwrap().to_string();
    assert!(addr.starts_with("10.207.41."), "{result}");

    let eth0 = w.sb.container.ip_json(&["addr", "show", "dev", "eth0"]);
    let ip = addr.split('/').next().unwrap();
    assert!(eth0.to_string().contains(ip), "{eth0}");

    // The cache entry is libcni's, under the reference's container id.
    let cached = w.cached();
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert!(cached[0].starts_with("cni-default-cnitool-") && cached[0].ends_with("-eth0"));
    let entry: Value =
        serde_json::from_slice(&std::fs::read(w.state.join("results").join(&cached[0])).unwrap())
            .unwrap();
    assert_eq!(entry["kind"], "cniCacheV1");
    assert_eq!(entry["networkName"], "cni-default");
    assert_eq!(entry["netns"], w.container());
    assert_eq!(entry["result"], result);
    assert_eq!(w.reserved("cni-default"), [ip]);

    w.cnitool(&["check", "cni-default", w.container()], &[])
        .ok();
    w.cnitool(&["status", "cni-default"], &[]).ok();
    // DEL works from the cached configuration once the file is gone.
    std::fs::remove_file(w.netconf.join("10-cni-default.conflist")).unwrap();
    w.cnitool(&["del", "cni-default", w.container()], &[]).ok();
    assert!(w.cached().is_empty());
    assert!(w.reserved("cni-default").is_empty());
    assert!(w.sb.container.link("eth0").is_none());
    assert!(w.host_links_besides(&["cni-default0"]).is_empty());
    // Without the file or a cache entry, the network is unknown.
    let line = w
        .cnitool(&["del", "cni-default", w.container()], &[])
        .one_line_error()
        .to_string();
    assert!(line.contains("no network named"), "{line}");
    // With the file back, a second DEL succeeds: nothing left to remove.
    w.use_testdata("default/10-cni-default.conflist");
    w.cnitool(&["del", "cni-default", w.container()], &[]).ok();
}

/// Every configuration in testdata/ runs through ADD, CHECK and DEL as
/// written (the README and Documentation show these files), so each uses
/// only plugins this suite builds.
#[test]
fn test_every_testdata_configuration_runs() {
    let mut files = Vec::new();
    for dir in [repo().join("testdata"), repo().join("testdata/default")] {
        for name in list_dir(&dir) {
            let p = dir.join(&name);
            if p.is_file() && (name.ends_with(".conf") || name.ends_with(".conflist")) {
                files.push(p);
            }
        }
    }
    assert!(files.len() >= 4, "{files:?}");
    let mut ran = 0;
    for file in &files {
        let body: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
        let plugins = body["plugins"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| vec![body.clone()]);
        let types: Vec<&str> = plugins
            .iter()
            .map(|p| p["type"].as_str().unwrap())
            .collect();
        if let Some(t) = types.iter().find(|t| !bin_dir().join(t).exists()) {
            panic!("{}: plugin {t} is not part of this suite", file.display());
        }
        let name = body["name"].as_str().unwrap();
        // Each file in namespaces of its own: files may share bridge names.
        let Some(w) = World::new() else { return };
        std::fs::copy(file, w.netconf.join(file.file_name().unwrap())).unwrap();
        let ifname = if types == ["loopback"] { "lo" } else { "eth0" };
        let env = [("CNI_IFNAME", ifname)];
        let what = file.display();
        let out = w.cnitool(&["add", name, w.container()], &env);
        assert_eq!(out.code, 0, "{what}: {}", out.stderr);
        let out = w.cnitool(&["check", name, w.container()], &env);
        assert_eq!(out.code, 0, "{what}: {}", out.stderr);
        let out = w.cnitool(&["del", name, w.container()], &env);
        assert_eq!(out.code, 0, "{what}: {}", out.stderr);
        assert!(w.cached().is_empty(), "{what}");
        assert!(w.reserved(name).is_empty(), "{what}");
        ran += 1;
    }
    assert_eq!(ran, files.len(), "every testdata configuration ran");
}

/// A fake plugin that records its stdin and environment, answers ADD with
/// its prevResult (or a fixed result) and speaks the versions in `$VERS`.
fn recorder(dir: &Path, name: &str, versions: &str, fail_add: bool) {
    let fail = if fail_add {
        r#"if [ "$CNI_COMMAND" = ADD ]; then echo '{"code":7,"msg":"told to fail"}'; exit 1; fi"#
    } else {
        ""
    };
    plugin_script(
        dir,
        name,
        &format!(
            r#"in=$(cat)
if [ "$CNI_COMMAND" = VERSION ]; then echo '{{"cniVersion":"1.0.0","supportedVersions":[{versions}]}}'; exit 0; fi
log="{log}"
printf '%s %s %s %s %s %s\n' "$CNI_COMMAND" "$CNI_CONTAINERID" "$CNI_IFNAME" "$CNI_ARGS" "$CNI_NETNS" "$in" >> "$log"
{fail}
if [ "$CNI_COMMAND" = ADD ]; then
  case "$in" in
    *prevResult*) printf '%s' "$in" | sed 's/.*"prevResult":\(.*\)}}$/\1/' ;;
    *) v=$(printf '%s' "$in" | sed 's/.*"cniVersion":"\([^"]*\)".*/\1/'); echo "{{\"cniVersion\":\"$v\",\"ips\":[{{\"address\":\"10.1.2.3/24\"}}],\"dns\":{{}}}}" ;;
  esac
fi"#,
            log = dir.join("calls.log").display(),
        ),
    );
}

fn calls(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("calls.log"))
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn test_chain_prev_result_args_capabilities_and_version() {
    let Some(w) = World::new() else { return };
    let fakes = w.sb.dir.path().join("fakes");
    std::fs::create_dir(&fakes).unwrap();
    recorder(&fakes, "first", r#""0.3.1","0.4.0","1.0.0""#, false);
    recorder(&fakes, "second", r#""0.4.0","1.0.0","1.1.0""#, false);
    w.write_conf(
        "10-chain.conflist",
        r#"{"cniVersion":"1.1.0","cniVersions":["0.4.0","1.0.0"],"name":"chain","plugins":[
            {"type":"first","capabilities":{"portMappings":true}},
            {"type":"second","name":"ignored","capabilities":{"bandwidth":false}}]}"#,
    );
    let path = format!("{}:{}", fakes.display(), bin_dir().display());
    let env = [
        ("CNI_PATH", path.as_str()),
        ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=p"),
        (
            "CAP_ARGS",
            r#"{"portMappings":[{"hostPort":80}],"bandwidth":{"rate":1}}"#,
        ),
        ("CNI_IFNAME", "net1"),
    ];
    let out = w.cnitool(&["add", "chain", w.container()], &env);
    let result: Value = serde_json::from_str(out.ok()).unwrap();
    // 1.1.0 is offered but `first` lacks it: the newest common version wins.
    assert_eq!(result["cniVersion"], "1.0.0");
    let log = calls(&fakes);
    assert_eq!(log.len(), 2, "{log:?}");
    let id = &w.cached()[0];
    for line in &log {
        let fields: Vec<&str> = line.splitn(6, ' ').collect();
        assert_eq!(fields[0], "ADD");
        assert!(
            id.contains(fields[1]) && fields[1].starts_with("cnitool-"),
            "{line}"
        );
        assert_eq!(fields[2], "net1");
        assert_eq!(fields[3], "IgnoreUnknown=1;K8S_POD_NAME=p");
        assert_eq!(fields[4], w.container());
    }
    let stdin = |i: usize| -> Value {
        serde_json::from_str(log[i].splitn(6, ' ').nth(5).unwrap()).unwrap()
    };
    let first = stdin(0);
    assert_eq!(first["name"], "chain");
    assert_eq!(first["cniVersion"], "1.0.0");
    assert_eq!(
        first["runtimeConfig"],
        serde_json::json!({"portMappings":[{"hostPort":80}]})
    );
    assert!(first.get("prevResult").is_none());
    let second = stdin(1);
    assert_eq!(second["name"], "chain");
    assert!(second.get("runtimeConfig").is_none());
    assert_eq!(second["prevResult"]["ips"][0]["address"], "10.1.2.3/24");

    std::fs::remove_file(fakes.join("calls.log")).unwrap();
    w.cnitool(&["del", "chain", w.container()], &env).ok();
    let log = calls(&fakes);
    // DEL in reverse order, with the cached result; no VERSION needed.
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(
        log[0].starts_with("DEL ") && log[0].contains(r#""type":"second""#),
        "{log:?}"
    );
    assert!(
        log[1].starts_with("DEL ") && log[1].contains(r#""type":"first""#),
        "{log:?}"
    );
    assert!(
        log[0].contains(r#""prevResult":{"cniVersion":"1.0.0""#),
        "{log:?}"
    );
    assert!(w.cached().is_empty());
}

#[test]
fn test_failed_add_is_undone() {
    let Some(w) = World::new() else { return };
    let fakes = w.sb.dir.path().join("fakes");
    std::fs::create_dir(&fakes).unwrap();
    recorder(&fakes, "failer", r#""1.1.0""#, true);
    w.write_conf(
        "10-half.conflist",
        r#"{"cniVersion":"1.1.0","name":"half","plugins":[
            {"type":"bridge","bridge":"cni-half0","isGateway":true,
             "ipam":{"type":"host-local","ranges":[[{"subnet":"10.207.43.0/24"}]]}},
            {"type":"failer"}]}"#,
    );
    let path = format!("{}:{}", bin_dir().display(), fakes.display());
    let out = w.cnitool(&["add", "half", w.container()], &[("CNI_PATH", &path)]);
    let line = out.one_line_error();
    assert!(
        line.contains("half") && line.contains("told to fail"),
        "{line}"
    );
    let log = calls(&fakes);
    assert!(log.len() == 2 && log[1].starts_with("DEL "), "{log:?}");
    assert!(w.sb.container.link("eth0").is_none());
    assert!(
        w.host_links_besides(&["cni-half0"]).is_empty(),
        "veth left behind"
    );
    assert!(w.reserved("half").is_empty(), "address left reserved");
    assert!(w.cached().is_empty());
}

#[test]
fn test_bad_input_gives_one_line_and_leaves_nothing() {
    let Some(w) = World::new() else { return };
    w.use_testdata("default/10-cni-default.conflist");
    let c = w.container();
    let missing_ns = w.sb.dir.path().join("no-such-netns");
    let missing_ns = missing_ns.to_str().unwrap();

    let line = w
        .cnitool(&["add", "nonet", c], &[])
        .one_line_error()
        .to_string();
    assert!(
        line.contains("\"nonet\"") && line.contains("net.d"),
        "{line}"
    );

    let line = w
        .cnitool(&["add", "cni-default", missing_ns], &[])
        .one_line_error()
        .to_string();
    assert!(
        line.contains(missing_ns) && line.contains("does not exist"),
        "{line}"
    );

    let line = w
        .cnitool(&["add", "cni-default", c], &[("CNI_PATH", "/nonexistent")])
        .one_line_error()
        .to_string();
    assert!(
        line.contains("\"bridge\"") && line.contains("/nonexistent"),
        "{line}"
    );

    let line = w
        .cnitool(&["add", "cni-default", c], &[("CAP_ARGS", "{")])
        .one_line_error()
        .to_string();
    assert!(line.contains("CAP_ARGS"), "{line}");

    let line = w
        .cnitool(&["add", "cni-default", c], &[("CNI_IFNAME", "a/b")])
        .one_line_error()
        .to_string();
    assert!(line.contains("CNI_IFNAME"), "{line}");

    let line = w.cnitool(&["frobnicate"], &[]).one_line_error().to_string();
    assert!(line.contains("usage"), "{line}");

    // A plugin's multi-line error still comes out as one line.
    w.write_conf(
        "05-broken.conflist",
        "{\"name\": \"broken\",\n \"plugins\": [}\n",
    );
    let line = w
        .cnitool(&["add", "cni-default", c], &[])
        .one_line_error()
        .to_string();
    assert!(
        line.contains("05-broken.conflist") && line.contains("JSON"),
        "{line}"
    );
    let line = w.cnitool(&["list"], &[]).one_line_error().to_string();
    assert!(line.contains("05-broken.conflist"), "{line}");

    // CHECK of what was never added names the missing cache entry.
    std::fs::remove_file(w.netconf.join("05-broken.conflist")).unwrap();
    let line = w
        .cnitool(&["check", "cni-default", c], &[])
        .one_line_error()
        .to_string();
    assert!(line.contains("no cached result"), "{line}");

    assert!(w.cached().is_empty());
    assert!(w.reserved("cni-default").is_empty());
    assert!(
        w.host_links_besides(&[]).is_empty(),
        "{:?}",
        w.sb.host.link_names()
    );
    assert_eq!(w.sb.container.link_names(), ["lo"]);
}

#[test]
fn test_list_and_gc() {
    let Some(w) = World::new() else { return };
    w.use_testdata("default/10-cni-default.conflist");
    w.use_testdata("default/00-loopback.conf");
    let listed = w.cnitool(&["list"], &[]).ok().to_string();
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 2, "{listed}");
    assert!(lines[0].starts_with("cni-default\tbridge\t"), "{listed}");
    assert!(lines[1].starts_with("cni-loopback\tloopback\t"), "{listed}");

    // Two attachments; the second's namespace goes away; GC releases it only.
    let gone = w.sb.extra_netns("gone");
    w.cnitool(&["add", "cni-default", w.container()], &[]).ok();
    w.cnitool(&["add", "cni-default", gone.path().to_str().unwrap()], &[])
        .ok();
    assert_eq!(w.reserved("cni-default").len(), 2);
    drop(gone);
    w.cnitool(&["gc", "cni-default"], &[]).ok();
    assert_eq!(w.reserved("cni-default").len(), 1);
    assert_eq!(w.cached().len(), 1);
    w.cnitool(&["del", "cni-default", w.container()], &[]).ok();
    assert!(w.reserved("cni-default").is_empty());
}
