//! What cnitool's tests share: the built binaries, and running a command in
//! a sandbox's host namespace with `/var/lib` private, so the default paths
//! (`/var/lib/cni/results`, host-local's `/var/lib/cni/networks`) are used
//! for real but land in the test's own directory.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use pkg::testing::{in_netns, Sandbox};

pub const CNITOOL: &str = env!("CARGO_BIN_EXE_cnitool");

/// The directory `cargo test --workspace` built every binary into.
pub fn bin_dir() -> PathBuf {
    let dir = Path::new(CNITOOL).parent().unwrap().to_path_buf();
    for plugin in ["bridge", "host-local", "loopback"] {
        assert!(
            dir.join(plugin).exists(),
            "{} is missing: run the suite with scripts/test.sh (it builds every binary)",
            dir.join(plugin).display()
        );
    }
    dir
}

/// The checkout.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// What a command printed and how it exited.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "failed: {} {}", self.stdout, self.stderr);
        &self.stdout
    }

    /// Asserts a failure reported as exactly one line on stderr; returns it.
    pub fn one_line_error(&self) -> &str {
        assert_ne!(self.code, 0, "succeeded: {}", self.stdout);
        let line = self.stderr.trim_end();
        assert!(
            !line.is_empty() && !line.contains('\n'),
            "not one line: {:?}",
            self.stderr
        );
        line
    }
}

/// A sandbox with a state directory standing in for `/var/lib/cni` and a
/// directory of network configurations.
pub struct World {
    pub sb: Sandbox,
    pub state: PathBuf,
    pub netconf: PathBuf,
}

impl World {
    pub fn new() -> Option<World> {
        let sb = Sandbox::new()?;
        let state = sb.dir.path().join("var-lib-cni");
        let netconf = sb.dir.path().join("net.d");
        std::fs::create_dir(&state).unwrap();
        std::fs::create_dir(&netconf).unwrap();
        Some(World { sb, state, netconf })
    }

    /// Copies `testdata/<rel>` into the configuration directory.
    pub fn use_testdata(&self, rel: &str) {
        let src = repo().join("testdata").join(rel);
        let name = src.file_name().unwrap();
        std::fs::copy(&src, self.netconf.join(name)).unwrap();
    }

    pub fn write_conf(&self, name: &str, body: &str) {
        std::fs::write(self.netconf.join(name), body).unwrap();
    }

    /// Runs `program args` in the host namespace, `/var/lib` a private
    /// tmpfs with `/var/lib/cni` bound to the state directory.
    pub fn run(&self, program: &str, args: &[&str], env: &[(&str, &str)]) -> Out {
        let out = self
            .command(program, args, env)
            .output()
            .expect("run unshare");
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The command [`World::run`] runs; its process becomes `program`.
    pub fn command(&self, program: &str, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(
                "mount -t tmpfs tmpfs /var/lib && mkdir /var/lib/cni && \
                 mount --bind \"$0\" /var/lib/cni && exec \"$@\"",
            )
            .arg(&self.state)
            .arg(program)
            .args(args)
            .env("NETCONFPATH", &self.netconf)
            .env("CNI_PATH", bin_dir())
            .envs(env.iter().copied())
            .stdin(Stdio::null());
        in_netns(&mut cmd, self.sb.host.ns());
        cmd
    }

    pub fn cnitool(&self, args: &[&str], env: &[(&str, &str)]) -> Out {
        self.run(CNITOOL, args, env)
    }

    pub fn container(&self) -> &str {
        self.sb.container.path().to_str().unwrap()
    }

    /// Files in the result cache.
    pub fn cached(&self) -> Vec<String> {
        list_dir(&self.state.join("results"))
    }

    /// Addresses host-local holds for `network`.
    pub fn reserved(&self, network: &str) -> Vec<String> {
        list_dir(&self.state.join("networks").join(network))
            .into_iter()
            .filter(|f| f.parse::<std::net::IpAddr>().is_ok())
            .collect()
    }

    /// The host namespace's links other than `lo` and the given bridges.
    pub fn host_links_besides(&self, bridges: &[&str]) -> Vec<String> {
        self.sb
            .host
            .link_names()
            .into_iter()
            .filter(|l| l != "lo" && !bridges.contains(&l.as_str()))
            .collect()
    }
}

pub fn list_dir(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// An executable shell script `name` in `dir`: a fake plugin.
pub fn plugin_script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// A busybox root file system (the static binary and a link per applet).
pub fn busybox_rootfs(root: &Path) -> Result<(), String> {
    let busybox = which("busybox").ok_or("busybox is not installed (package busybox-static)")?;
    let bin = root.join("bin");
    for d in ["bin", "proc", "dev", "sys", "etc", "tmp"] {
        std::fs::create_dir_all(root.join(d)).map_err(|e| e.to_string())?;
    }
    std::fs::copy(&busybox, bin.join("busybox")).map_err(|e| e.to_string())?;
    let list = Command::new(&busybox)
        .arg("--list")
        .output()
        .map_err(|e| e.to_string())?;
    for applet in String::from_utf8_lossy(&list.stdout).split_whitespace() {
        let link = bin.join(applet);
        if !link.exists() {
            std::os::unix::fs::symlink("busybox", link).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// A program in `PATH` (or the sbin directories a non-login shell may lack).
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default() + ":/usr/sbin:/sbin";
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}
