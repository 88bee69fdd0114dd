//! Finding a plugin in `CNI_PATH` and running it: how a plugin delegates
//! (to its IPAM plugin) and how the runtime side runs a chain.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde::Deserialize;

use crate::spec::{Code, NetResult, Version};
use crate::{Error, Result};

/// The first executable file named `plugin` in `dirs`.
pub fn find_plugin(plugin: &str, dirs: &[PathBuf]) -> Result<PathBuf> {
    if plugin.is_empty() || plugin.contains('/') {
        return Err(Error::invalid_config(format!(
            "invalid plugin type {plugin:?}: a plugin is named by its file name in CNI_PATH"
        )));
    }
    for dir in dirs {
        let candidate = dir.join(plugin);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    let searched: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    Err(Error::new(
        Code::Internal,
        format!(
            "plugin {plugin:?} not found in CNI_PATH [{}]",
            searched.join(":")
        ),
    ))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// A plugin process started with [`spawn`]; [`Running::wait`] collects its answer.
pub struct Running {
    child: Child,
    name: String,
}

/// Starts `binary` with the calling process's environment, `CNI_COMMAND`
/// set to `command` and `extra_env` on top, and writes `stdin` to it. The
/// plugin runs while the caller does other work (a DEL deletes its link
/// while the IPAM plugin releases the address).
pub fn spawn(
    binary: &Path,
    command: &str,
    extra_env: &[(&str, &str)],
    stdin: &[u8],
) -> Result<Running> {
    let name = binary
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut cmd = Command::new(binary);
    cmd.env("CNI_COMMAND", command)
        .envs(extra_env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| {
        Error::new(
            Code::Internal,
            format!("run plugin {}: {e}", binary.display()),
        )
    })?;
    // A plugin reads all of stdin before it answers, and a configuration is
    // far smaller than a pipe's buffer, so writing before reading cannot block.
    if let Some(mut pipe) = child.stdin.take() {
        pipe.write_all(stdin).map_err(|e| {
            Error::new(Code::Internal, format!("write stdin of plugin {name}: {e}"))
        })?;
    }
    Ok(Running { child, name })
}

/// A plugin being started on a thread of its own, for [`start`].
pub struct Pending(std::thread::JoinHandle<Result<Running>>);

/// Like [`spawn`], but returns at once: spawning blocks the thread that
/// does it until the kernel has loaded the new program (`posix_spawn` is a
/// vfork), most of a millisecond that the caller spends on its own work
/// instead (a bridge ADD makes its links while the IPAM plugin starts).
pub fn start(binary: &Path, command: &str, extra_env: &[(&str, &str)], stdin: &[u8]) -> Pending {
    let binary = binary.to_path_buf();
    let command = command.to_string();
    let env: Vec<(String, String)> = extra_env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let stdin = stdin.to_vec();
    Pending(std::thread::spawn(move || {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        spawn(&binary, &command, &env, &stdin)
    }))
}

impl Pending {
    fn started(self) -> Result<Running> {
        match self.0.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// As [`Running::wait`].
    pub fn wait(self) -> Result<Vec<u8>> {
        self.started()?.wait()
    }

    /// As [`Running::wait_result`].
    pub fn wait_result(self, version: Version) -> Result<NetResult> {
        self.started()?.wait_result(version)
    }
}

#[derive(Deserialize)]
struct ErrorJson {
    #[serde(default)]
    code: u32,
    #[serde(default)]
    msg: String,
    #[serde(default)]
    details: String,
}

impl Running {
    /// Waits for the plugin; on failure, its error (code, message and
    /// details) becomes ours, the message prefixed with the plugin's name.
    pub fn wait(self) -> Result<Vec<u8>> {
        let out = self.child.wait_with_output().map_err(|e| {
            Error::new(
                Code::Internal,
                format!("wait for plugin {}: {e}", self.name),
            )
        })?;
        if out.status.success() {
            return Ok(out.stdout);
        }
        match serde_json::from_slice::<ErrorJson>(&out.stdout) {
            Ok(e) if e.code != 0 || !e.msg.is_empty() => Err(Error::with_details(
                Code::from_number(e.code),
                format!("{}: {}", self.name, e.msg),
                e.details,
            )),
            _ => Err(Error::new(
                Code::Internal,
                format!(
                    "plugin {} failed ({}): {}{}",
                    self.name,
                    out.status,
                    String::from_utf8_lossy(&out.stdout).trim(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            )),
        }
    }

    /// Waits for the plugin and reads its result, written in `version`.
    pub fn wait_result(self, version: Version) -> Result<NetResult> {
        let name = self.name.clone();
        let stdout = self.wait()?;
        let value: serde_json::Value = serde_json::from_slice(&stdout).map_err(|e| {
            Error::new(
                Code::Decoding,
                format!("result of plugin {name} is not JSON: {e}"),
            )
        })?;
        NetResult::from_json(&value, version)
            .map_err(|e| Error::new(Code::Decoding, format!("result of plugin {name}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[test]
    fn test_find_plugin_searches_in_order() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        std::fs::write(a.path().join("p"), "not executable").unwrap();
        let want = script(b.path(), "p", "true");
        let dirs = vec![a.path().to_path_buf(), b.path().to_path_buf()];
        assert_eq!(find_plugin("p", &dirs).unwrap(), want);
        let err = find_plugin("missing", &dirs).unwrap_err();
        assert!(err.to_string().contains("\"missing\""), "{err}");
        assert!(find_plugin("../p", &dirs).is_err());
    }

    #[test]
    fn test_spawn_passes_command_and_stdin() {
        let d = tempfile::tempdir().unwrap();
        let p = script(
            d.path(),
            "echoer",
            r#"read line; printf '{"cniVersion":"1.0.0","ips":[{"address":"%s"}],"dns":{}}' "$line$CNI_COMMAND""#,
        );
        let r = spawn(&p, "/24", &[], b"10.0.0.9\n").unwrap();
        let result = r.wait_result(Version::V1_0_0).unwrap();
        assert_eq!(result.ips[0].address.to_string(), "10.0.0.9/24");
    }

    #[test]
    fn test_start_runs_the_plugin_in_the_background() {
        let d = tempfile::tempdir().unwrap();
        let p = script(d.path(), "cat-back", "cat");
        let out = start(&p, "ADD", &[], b"{\"x\":1}").wait().unwrap();
        assert_eq!(out, b"{\"x\":1}");
        let missing = start(&d.path().join("gone"), "ADD", &[], b"");
        assert!(missing.wait().unwrap_err().to_string().contains("gone"));
    }

    #[test]
    fn test_wait_passes_the_plugins_error_through() {
        let d = tempfile::tempdir().unwrap();
        let p = script(
            d.path(),
            "failer",
            r#"cat >/dev/null; echo '{"code":11,"msg":"busy","details":"d"}'; exit 1"#,
        );
        let err = spawn(&p, "ADD", &[], b"{}").unwrap().wait().unwrap_err();
        assert_eq!(err.code(), Code::TryAgainLater);
        assert_eq!(err.to_string(), "failer: busy");
        assert_eq!(err.details(), "d");
    }
}
