//! Helpers for namespace tests: throwaway namespaces, a plugin runner, and
//! `ip -j` queries.
//!
//! Each test makes its own "host" and "container" namespaces, bind-mounted
//! on files in a temporary directory, and runs the plugin binary inside the
//! host one. The test command (`scripts/test.sh`) runs the whole suite in a
//! new user + network + mount namespace, so none of this reaches the real
//! host. Where namespaces cannot be made, a test is skipped with the reason,
//! except under `CI=true`, where that is a failure.

use std::ffi::OsStr;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use serde_json::Value;

use crate::ns::NetNs;

/// A network namespace made for one test, removed when dropped.
pub struct TestNetns {
    ns: NetNs,
    path: PathBuf,
}

impl TestNetns {
    /// Makes a new, empty network namespace bound to `path` (which must not exist).
    pub fn create(path: &Path) -> Result<TestNetns, String> {
        File::create(path).map_err(|e| format!("create {}: {e}", path.display()))?;
        let made = std::thread::scope(|s| {
            s.spawn(|| -> Result<(), String> {
                unshare(CloneFlags::CLONE_NEWNET)
                    .map_err(|e| format!("unshare(CLONE_NEWNET): {e}"))?;
                mount(
                    Some("/proc/thread-self/ns/net"),
                    path,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(|e| format!("bind mount netns on {}: {e}", path.display()))
            })
            .join()
            .expect("netns thread panicked")
        });
        if let Err(e) = made {
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
        let ns = NetNs::open(path).map_err(|e| e.to_string())?;
        Ok(TestNetns {
            ns,
            path: path.to_path_buf(),
        })
    }

    /// The namespace's path, as a runtime would pass it in `CNI_NETNS`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open namespace.
    pub fn ns(&self) -> &NetNs {
        &self.ns
    }

    /// Runs a command (e.g. `ip`, `ping`) inside this namespace.
    pub fn cmd<S: AsRef<OsStr>>(&self, program: &str, args: &[S]) -> std::process::Output {
        let mut c = Command::new(program);
        c.args(args);
        in_netns(&mut c, &self.ns);
        c.output().unwrap_or_else(|e| panic!("run {program}: {e}"))
    }

    /// Runs `ip -j ARGS` inside this namespace and parses its JSON.
    pub fn ip_json(&self, args: &[&str]) -> Value {
        let mut full = vec!["-j"];
        full.extend_from_slice(args);
        let out = self.cmd("ip", &full);
        assert!(
            out.status.success(),
            "ip {full:?} in {}: {}",
            self.path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        if text.trim().is_empty() {
            return Value::Array(vec![]);
        }
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("ip {full:?} output {text:?}: {e}"))
    }

    /// The link named `name`, as `ip -j -d link show` reports it; `None` if absent.
    pub fn link(&self, name: &str) -> Option<Value> {
        let out = self.cmd("ip", &["-j", "-d", "link", "show", "dev", name]);
        if !out.status.success() {
            return None;
        }
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        v.as_array()?.first().cloned()
    }

    /// The names of every link in the namespace.
    pub fn link_names(&self) -> Vec<String> {
        self.ip_json(&["link", "show"])
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["ifname"].as_str().unwrap().to_string())
            .collect()
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = umount2(&self.path, MntFlags::MNT_DETACH);
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Makes `cmd` start inside `ns` (entered between fork and exec).
pub fn in_netns(cmd: &mut Command, ns: &NetNs) {
    let file = File::open(ns.path()).expect("reopen netns");
    // SAFETY: only setns(2), which is async-signal-safe, runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A test's world: a temporary directory, a "host" and a "container" namespace.
pub struct Sandbox {
    // Fields drop in order: the namespaces are unmounted before the directory goes.
    pub host: TestNetns,
    pub container: TestNetns,
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    /// A new sandbox; `None` (test skipped) where namespaces cannot be made,
    /// a panic under `CI=true`.
    pub fn new() -> Option<Sandbox> {
        let dir = tempfile::tempdir().expect("temp dir");
        let made = TestNetns::create(&dir.path().join("host")).and_then(|host| {
            let container = TestNetns::create(&dir.path().join("container"))?;
            Ok((host, container))
        });
        match made {
            Ok((host, container)) => Some(Sandbox {
                dir,
                host,
                container,
            }),
            Err(e) => {
                skip_or_fail(&format!(
                    "cannot make network namespaces ({e}); run the suite with scripts/test.sh"
                ));
                None
            }
        }
    }

    /// Another namespace in this sandbox (a second container, say).
    pub fn extra_netns(&self, name: &str) -> TestNetns {
        TestNetns::create(&self.dir.path().join(name)).expect("extra netns")
    }

    /// A runner for `binary` in the host namespace, with the container's
    /// coordinates preset (`CNI_CONTAINERID=ctr1`, `CNI_IFNAME=eth0`).
    pub fn plugin(&self, binary: impl Into<PathBuf>) -> PluginRun {
        let binary = binary.into();
        let cni_path = binary.parent().map(Path::to_path_buf).unwrap_or_default();
        PluginRun {
            binary,
            host: self.host.path.clone(),
            env: vec![
                ("CNI_CONTAINERID".into(), "ctr1".into()),
                (
                    "CNI_NETNS".into(),
                    self.container.path.display().to_string(),
                ),
                ("CNI_IFNAME".into(), "eth0".into()),
                ("CNI_PATH".into(), cni_path.display().to_string()),
            ],
        }
    }
}

/// The addresses of a result's `ips`, without their prefix lengths
/// (`["10.1.0.5", "fd00::5"]`), for pinging them.
pub fn result_addresses(result: &Value) -> Vec<String> {
    result["ips"]
        .as_array()
        .map(|ips| {
            ips.iter()
                .filter_map(|ip| ip["address"].as_str())
                .map(|a| a.split('/').next().unwrap_or(a).to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Skips the calling test with `reason`, or fails it under `CI=true`.
pub fn skip_or_fail(reason: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("namespace test cannot run under CI=true: {reason}");
    }
    say(&format!("SKIP: {reason}"));
}

/// Skips the calling test because the kernel lacks `feature`: allowed under CI too.
pub fn skip_missing_kernel_feature(feature: &str) {
    say(&format!("SKIP: the kernel lacks {feature}"));
}

/// Writes a line to the real stderr: libtest captures `eprintln!` of passing
/// tests, and a skip must show in the log.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// One plugin binary, the namespace it runs in, and its environment.
#[derive(Debug, Clone)]
pub struct PluginRun {
    pub binary: PathBuf,
    pub host: PathBuf,
    pub env: Vec<(String, String)>,
}

/// What a plugin printed and how it exited.
#[derive(Debug, Clone)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Stdout parsed as JSON (a result, or an error object).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {:?} stderr: {:?}",
                self.stdout, self.stderr
            )
        })
    }

    /// Asserts exit 0 and returns stdout as JSON (or `Null` when empty).
    pub fn ok(&self) -> Value {
        assert_eq!(
            self.code, 0,
            "plugin failed: {} {}",
            self.stdout, self.stderr
        );
        if self.stdout.trim().is_empty() {
            Value::Null
        } else {
            self.json()
        }
    }

    /// Asserts a spec error with `code` and returns its message.
    pub fn err(&self, code: u64) -> String {
        assert_ne!(self.code, 0, "plugin succeeded: {}", self.stdout);
        let v = self.json();
        assert_eq!(v["code"], code, "error: {v}");
        v["msg"].as_str().unwrap_or_default().to_string()
    }
}

impl PluginRun {
    /// Sets (or replaces) an environment variable.
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
        self
    }

    /// Removes an environment variable.
    pub fn without(mut self, key: &str) -> Self {
        self.env.retain(|(k, _)| k != key);
        self
    }

    /// Runs `command` with `stdin`.
    pub fn run(&self, command: &str, stdin: &str) -> Output {
        self.run_raw(Some(command), stdin)
    }

    /// Runs with `CNI_COMMAND` set to `command`, or unset.
    pub fn run_raw(&self, command: Option<&str>, stdin: &str) -> Output {
        let mut cmd = Command::new(&self.binary);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(c) = command {
            cmd.env("CNI_COMMAND", c);
        }
        let ns = NetNs::open(&self.host).expect("host netns");
        in_netns(&mut cmd, &ns);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.binary.display()));
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .expect("write stdin");
        let out = child.wait_with_output().expect("wait for plugin");
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}
