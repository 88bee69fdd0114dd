//! End to end, with real software from Debian's packages: a runc container
//! networked by cnitool, priv-net-run.sh, and docker-run.sh against a
//! Docker engine this test starts. Everything runs inside the test
//! command's user + network + mount namespace (scripts/test.sh).
//!
//! Two things make runc and dockerd work in a user namespace that maps one
//! id (root) only:
//! - cgroups: the cgroup mounts are remounted read-only in a private mount
//!   namespace and runc runs with `--rootless true`, which skips cgroups it
//!   cannot write when no cgroup path is asked for. So nothing is made in
//!   the host's cgroup tree, even when the test runs as real root.
//! - Docker's default spec mounts devpts with `gid=5` and sets a
//!   `cgroupsPath`; a runtime wrapper drops both before calling runc (gid 5
//!   does not exist in the namespace). Rootless Docker solves the same with
//!   a full id map from rootlesskit, which this namespace does not have.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{busybox_rootfs, plugin_script, repo, which, World};
use pkg::testing::{in_netns, skip_or_fail};
use serde_json::{json, Value};

/// Shell lines that make the cgroup mounts read-only in the current mount namespace.
const CGROUPS_RO: &str = r#"for m in $(awk '$2 ~ "^/sys/fs/cgroup" {print $2}' /proc/self/mounts); do mount -o remount,bind,ro "$m"; done"#;

/// Runs `runc --rootless true --root ROOT ARGS` in the host namespace with
/// read-only cgroups.
fn runc(w: &World, root: &Path, args: &[&str]) -> std::process::Output {
    // A detached container keeps the stdio it was given: a pipe would never
    // reach end-of-file, so its output goes to files.
    let log = root.with_extension(format!("{}.log", args[0]));
    let (out, err) = (
        std::fs::File::create(log.with_extension("out")).unwrap(),
        std::fs::File::create(log.with_extension("err")).unwrap(),
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(format!(
            "{CGROUPS_RO} && exec runc --rootless true --root \"$0\" \"$@\""
        ))
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    in_netns(&mut cmd, w.sb.host.ns());
    let status = cmd.status().expect("run runc");
    std::process::Output {
        status,
        stdout: std::fs::read(log.with_extension("out")).unwrap_or_default(),
        stderr: std::fs::read(log.with_extension("err")).unwrap_or_default(),
    }
}

fn ping(w: &World, addr: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if w.sb
            .host
            .cmd("ping", &["-c", "1", "-W", "1", addr])
            .status
            .success()
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

fn requirements(programs: &[&str]) -> bool {
    for p in programs {
        if which(p).is_none() {
            skip_or_fail(&format!(
                "{p} is not installed (scripts/install-deps.sh installs it)"
            ));
            return false;
        }
    }
    true
}

#[test]
fn test_runc_container_dual_stack() {
    if !requirements(&["runc", "busybox", "ping"]) {
        return;
    }
    let Some(w) = World::new() else { return };
    w.use_testdata("dual-stack.conflist");
    let dir = w.sb.dir.path();
    let bundle = dir.join("bundle");
    let root = dir.join("runc-root");
    busybox_rootfs(&bundle.join("rootfs")).unwrap();
    std::fs::create_dir(&root).unwrap();
    let config = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": ["sleep", "600"],
            "env": ["PATH=/bin"],
            "cwd": "/",
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs"},
        "hostname": "ctr",
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
        "linux": {"namespaces": [
            {"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"},
            {"type": "network", "path": w.container()}
        ]}
    });
    std::fs::write(bundle.join("config.json"), config.to_string()).unwrap();

    // As a runtime does: the namespace gets its network, then the container starts in it.
    let out = w.cnitool(&["add", "dual-stack", w.container()], &[]);
    let result: Value = serde_json::from_str(out.ok()).unwrap();
    let addrs = pkg::testing::result_addresses(&result);
    let v4 = addrs
        .iter()
        .find(|a| a.contains('.'))
        .expect("IPv4 address")
        .clone();
    let v6 = addrs
        .iter()
        .find(|a| a.contains(':'))
        .expect("IPv6 address")
        .clone();

    let run = runc(
        &w,
        &root,
        &["run", "-d", "--bundle", bundle.to_str().unwrap(), "ctr1"],
    );
    let started = run.status.success();
    let inside = runc(
        &w,
        &root,
        &["exec", "ctr1", "ip", "-o", "addr", "show", "dev", "eth0"],
    );
    let reached = started && ping(&w, &v4) && ping(&w, &v6);
    let stopped = runc(&w, &root, &["delete", "-f", "ctr1"]);
    let del = w.cnitool(&["del", "dual-stack", w.container()], &[]);

    assert!(
        started,
        "runc run: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let seen = String::from_utf8_lossy(&inside.stdout);
    assert!(
        seen.contains(&v4) && seen.contains(&v6),
        "container sees {seen:?} {}",
        String::from_utf8_lossy(&inside.stderr)
    );
    assert!(reached, "ping {v4} / {v6} from the host failed");
    assert!(
        stopped.status.success(),
        "runc delete: {}",
        String::from_utf8_lossy(&stopped.stderr)
    );
    del.ok();
    assert!(w.reserved("dual-stack").is_empty(), "address not released");
    assert!(w.cached().is_empty());
    assert!(w.host_links_besides(&["cni-ds0"]).is_empty());
    let listed = runc(&w, &root, &["list", "-q"]);
    assert!(String::from_utf8_lossy(&listed.stdout).trim().is_empty());
}

#[test]
fn test_priv_net_run_prints_the_namespace() {
    let Some(w) = World::new() else { return };
    let script = repo().join("scripts/priv-net-run.sh");
    let script = script.to_str().unwrap();
    let default = repo().join("testdata/default");
    let env = [("NETCONFPATH", default.to_str().unwrap())];
    let forward = || {
        w.sb.host
            .cmd("cat", &["/proc/sys/net/ipv4/ip_forward"])
            .stdout
    };
    let forward_before = forward();

    let out = w.run(script, &["ip", "-o", "addr"], &env);
    let text = out.ok();
    assert!(
        text.contains("lo ") && text.contains("127.0.0.1/8"),
        "{text}"
    );
    assert!(
        text.contains("eth0") && text.contains("inet 10.207.41."),
        "{text}"
    );

    // CMD's failure is the script's, and the cleanup still happens.
    let out = w.run(script, &["sh", "-c", "exit 3"], &env);
    assert_eq!(out.code, 3, "{}", out.stderr);

    // SIGTERM while CMD runs: CMD is stopped, everything is removed.
    let mut child = w
        .command(script, &["sleep", "60"], &env)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let prefix = format!("cni-{}-", child.id());
    let deadline = Instant::now() + Duration::from_secs(30);
    while !common::list_dir(Path::new("/run/netns"))
        .iter()
        .any(|n| n.starts_with(&prefix))
    {
        assert!(
            Instant::now() < deadline,
            "priv-net-run.sh made no namespace"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Let it reach CMD (a TERM while it attaches is handled the same way).
    std::thread::sleep(Duration::from_millis(500));
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143));

    // A broken configuration: one line, nothing made.
    let broken = w.sb.dir.path().join("broken.d");
    std::fs::create_dir(&broken).unwrap();
    std::fs::write(broken.join("10-x.conflist"), "{\"name\":\"x\"}").unwrap();
    let out = w.run(
        script,
        &["true"],
        &[("NETCONFPATH", broken.to_str().unwrap())],
    );
    let line = out.one_line_error();
    assert!(line.contains("10-x.conflist"), "{line}");

    // A plugin missing from CNI_PATH: one line from cnitool, nothing made.
    let lonely = w.sb.dir.path().join("lonely-bin");
    std::fs::create_dir(&lonely).unwrap();
    std::fs::copy(common::CNITOOL, lonely.join("cnitool")).unwrap();
    let out = w.run(
        script,
        &["true"],
        &[env[0], ("CNI_PATH", lonely.to_str().unwrap())],
    );
    let line = out.one_line_error();
    assert!(line.contains("\"bridge\" not found"), "{line}");

    assert!(
        w.host_links_besides(&[]).is_empty(),
        "{:?}",
        w.sb.host.link_names()
    );
    assert_eq!(forward(), forward_before, "ip_forward not restored");
    assert!(
        common::list_dir(&w.state).is_empty(),
        "{:?}",
        common::list_dir(&w.state)
    );
    let netns = common::list_dir(Path::new("/run/netns"));
    assert!(!netns.iter().any(|n| n.starts_with("cni-")), "{netns:?}");
}

/// A dockerd of the test's own, stopped (and its children with it) on drop.
struct Dockerd {
    child: Child,
    sock: PathBuf,
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_dockerd(w: &World, dir: &Path) -> Result<Dockerd, String> {
    let sock = dir.join("docker.sock");
    let runtime = plugin_script(
        dir,
        "runc-userns",
        r#"bundle=""; prev=""
for a in "$@"; do [ "$prev" = "--bundle" ] && bundle=$a; prev=$a; done
if [ -n "$bundle" ] && [ -f "$bundle/config.json" ]; then
  sed -i 's/,"gid=5"//g; s/"cgroupsPath":"[^"]*",//' "$bundle/config.json"
fi
exec runc --rootless true "$@""#,
    );
    std::fs::write(dir.join("daemon.json"), "{}").unwrap();
    let d = |p: &str| dir.join(p).display().to_string();
    let log = std::fs::File::create(dir.join("dockerd.log")).unwrap();
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(format!("{CGROUPS_RO} && exec \"$@\""))
        .arg("sh")
        .arg("dockerd")
        .args(["--config-file", &d("daemon.json")])
        .args(["--data-root", &d("data"), "--exec-root", &d("exec")])
        .args(["--pidfile", &d("dockerd.pid")])
        .arg(format!("--host=unix://{}", sock.display()))
        .args(["--group", "root", "--storage-driver", "vfs"])
        .args(["--iptables=false", "--ip6tables=false", "--ip-masq=false"])
        .args(["--bridge=none", "--userland-proxy=false"])
        .args(["--exec-opt", "native.cgroupdriver=cgroupfs"])
        .arg(format!("--add-runtime=runc-userns={}", runtime.display()))
        .args(["--default-runtime", "runc-userns"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    in_netns(&mut cmd, w.sb.host.ns());
    let child = cmd.spawn().map_err(|e| format!("start dockerd: {e}"))?;
    let daemon = Dockerd { child, sock };
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if daemon.sock.exists() && docker(&daemon, &["version"]).status.success() {
            return Ok(daemon);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = std::fs::read_to_string(dir.join("dockerd.log")).unwrap_or_default();
    Err(format!(
        "dockerd did not come up: {}",
        log.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
    ))
}

/// The Docker client of the docker.io package, talking to `daemon`.
fn docker_cmd(daemon: &Dockerd) -> String {
    let client = if Path::new("/usr/bin/docker").exists() {
        "/usr/bin/docker"
    } else {
        "docker"
    };
    format!("{client} -H unix://{}", daemon.sock.display())
}

fn docker(daemon: &Dockerd, args: &[&str]) -> std::process::Output {
    let line = docker_cmd(daemon);
    let mut parts = line.split(' ');
    Command::new(parts.next().unwrap())
        .args(parts)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run docker")
}

#[test]
fn test_docker_run_script() {
    if !requirements(&["dockerd", "runc", "busybox"]) {
        return;
    }
    let Some(w) = World::new() else { return };
    let dir = w.sb.dir.path().join("docker");
    std::fs::create_dir(&dir).unwrap();
    let daemon = match start_dockerd(&w, &dir) {
        Ok(d) => d,
        Err(e) => {
            skip_or_fail(&e);
            return;
        }
    };
    let rootfs = dir.join("rootfs");
    busybox_rootfs(&rootfs).unwrap();
    let tar = dir.join("rootfs.tar");
    let made = Command::new("tar")
        .args([
            "-C",
            rootfs.to_str().unwrap(),
            "-cf",
            tar.to_str().unwrap(),
            ".",
        ])
        .status()
        .unwrap();
    assert!(made.success());
    let import = docker(
        &daemon,
        &["import", tar.to_str().unwrap(), "cni-busybox:test"],
    );
    assert!(
        import.status.success(),
        "{}",
        String::from_utf8_lossy(&import.stderr)
    );

    let script = repo().join("scripts/docker-run.sh");
    let default = repo().join("testdata/default");
    let docker_line = docker_cmd(&daemon);
    let env = [
        ("NETCONFPATH", default.to_str().unwrap()),
        ("DOCKER", docker_line.as_str()),
    ];
    let out = w.run(
        script.to_str().unwrap(),
        &["--rm", "cni-busybox:test", "ip", "-o", "addr"],
        &env,
    );
    let text = out.ok().to_string();
    assert!(
        text.contains("eth0") && text.contains("inet 10.207.41."),
        "{text} {}",
        out.stderr
    );
    assert!(text.contains("127.0.0.1/8"), "lo is not up: {text}");

    // The container's failure is the script's; the holder goes either way.
    let out = w.run(
        script.to_str().unwrap(),
        &["--rm", "cni-busybox:test", "false"],
        &env,
    );
    assert_eq!(out.code, 1, "{}", out.stderr);

    // No local image among the arguments: one line, no holder.
    let out = w.run(
        script.to_str().unwrap(),
        &["--rm", "no-such-image", "true"],
        &env,
    );
    let line = out.one_line_error();
    assert!(line.contains("no local image"), "{line}");

    let ps = docker(&daemon, &["ps", "-aq"]);
    assert!(
        String::from_utf8_lossy(&ps.stdout).trim().is_empty(),
        "containers left behind"
    );
    assert!(w.cached().is_empty(), "{:?}", w.cached());
    assert!(w.reserved("cni-default").is_empty());
    let links = w.host_links_besides(&["cni-default0"]);
    assert!(links.is_empty(), "{links:?}");
    drop(daemon);
}
