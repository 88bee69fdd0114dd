//! The entry point every plugin calls: it owns the protocol.
//!
//! [`run`] reads the environment and stdin, checks what each verb requires,
//! answers VERSION, refuses verbs the configuration's version does not have,
//! calls the plugin's handler on a single-threaded runtime, prints the result
//! in the caller's version, and turns any failure into the spec's error JSON
//! on stdout with exit code 1. [`dispatch`] is the same without the process
//! around it, for unit tests.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::PathBuf;

use serde::Serialize;
use serde_json::{json, Value};

use crate::ns::NetNs;
use crate::spec::{CniArgs, Code, NetConf, NetResult, Version};
use crate::{Error, Result};

/// A CNI verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Gc,
    Status,
    Version,
}

impl Command {
    fn parse(s: &str) -> Option<Command> {
        Some(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "GC" => Command::Gc,
            "STATUS" => Command::Status,
            "VERSION" => Command::Version,
            _ => return None,
        })
    }

    /// ADD, DEL and CHECK act on one attachment (container id + interface).
    fn is_per_attachment(self) -> bool {
        matches!(self, Command::Add | Command::Del | Command::Check)
    }
}

/// Everything a handler gets for one call.
#[derive(Debug, Clone)]
pub struct Call {
    pub command: Command,
    /// `CNI_CONTAINERID`; empty for GC and STATUS.
    pub container_id: String,
    /// `CNI_NETNS`; `None` when unset or empty (allowed for DEL).
    pub netns: Option<PathBuf>,
    /// `CNI_IFNAME`; empty for GC and STATUS.
    pub ifname: String,
    /// `CNI_ARGS`.
    pub args: CniArgs,
    /// `CNI_PATH`, split on `:`.
    pub path: Vec<PathBuf>,
    /// The parsed configuration.
    pub conf: NetConf,
    /// The configuration's version: results are printed in it.
    pub version: Version,
    /// Stdin as received, for passing on to a delegated plugin.
    pub stdin: Vec<u8>,
}

impl Call {
    /// Opens `CNI_NETNS` for configuring the container: it must exist, be a
    /// network namespace, and not be the plugin's own.
    pub fn container_netns(&self) -> Result<NetNs> {
        let path = self
            .netns
            .as_ref()
            .ok_or_else(|| Error::invalid_env("CNI_NETNS is required"))?;
        Ok(NetNs::open_container(path)?)
    }

    /// Like [`Call::container_netns`], for DEL: `None` when `CNI_NETNS` is
    /// empty or the namespace is gone, since there is then nothing inside it
    /// left to undo.
    pub fn container_netns_if_present(&self) -> Result<Option<NetNs>> {
        let Some(path) = &self.netns else {
            return Ok(None);
        };
        match NetNs::open_container(path) {
            Ok(ns) => Ok(Some(ns)),
            Err(crate::ns::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// A plugin: its handlers, each called with the checked [`Call`].
#[allow(async_fn_in_trait)]
pub trait Plugin {
    /// One line saying what the plugin is, printed when run by hand.
    fn about(&self) -> String;
    /// ADD: attach the container; returns the result to print.
    async fn add(&self, call: &Call) -> Result<NetResult>;
    /// DEL: detach; succeeds when there is nothing left to remove.
    async fn del(&self, call: &Call) -> Result<()>;
    /// CHECK: fails when the attachment is not as ADD left it.
    async fn check(&self, call: &Call) -> Result<()>;
    /// GC: release what attachments not in `cni.dev/valid-attachments` hold.
    async fn gc(&self, _call: &Call) -> Result<()> {
        Ok(())
    }
    /// STATUS: fails when the plugin cannot serve ADDs now.
    async fn status(&self, _call: &Call) -> Result<()> {
        Ok(())
    }
}

/// What one call prints and how it exits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub stdout: String,
    pub stderr: String,
    pub exit_code: i32,
}

/// Runs the plugin as a process: reads the real environment and stdin,
/// prints the reply and exits with its code.
pub fn run<P: Plugin>(plugin: P) -> ! {
    let env: HashMap<String, String> = std::env::vars().collect();
    let mut stdin = Vec::new();
    let read = if env.contains_key("CNI_COMMAND") {
        std::io::stdin().read_to_end(&mut stdin).map(|_| ())
    } else {
        Ok(())
    };
    let reply = match read {
        Ok(()) => dispatch(&plugin, &env, stdin),
        Err(e) => error_reply(
            Version::CURRENT,
            &Error::new(Code::Io, format!("reading stdin: {e}")),
        ),
    };
    let _ = std::io::stdout().write_all(reply.stdout.as_bytes());
    let _ = std::io::stderr().write_all(reply.stderr.as_bytes());
    std::process::exit(reply.exit_code)
}

/// Handles one call given its environment and stdin.
pub fn dispatch<P: Plugin>(plugin: &P, env: &HashMap<String, String>, stdin: Vec<u8>) -> Reply {
    let var = |k: &str| env.get(k).map(String::as_str).unwrap_or("");
    let command = var("CNI_COMMAND");
    if command.is_empty() && !env.keys().any(|k| k.starts_with("CNI_")) {
        // Run by hand, not by a runtime: say what this is.
        return Reply {
            stdout: String::new(),
            stderr: format!(
                "{}\nCNI protocol versions supported: {}\n",
                plugin.about(),
                Version::all_strings().join(", ")
            ),
            exit_code: 0,
        };
    }
    let Some(command) = Command::parse(command) else {
        let msg = if command.is_empty() {
            "CNI_COMMAND is not set".to_string()
        } else {
            format!(
                "unknown CNI_COMMAND {command:?}; expected ADD, DEL, CHECK, GC, STATUS or VERSION"
            )
        };
        return error_reply(Version::CURRENT, &Error::invalid_env(msg));
    };
    if command == Command::Version {
        return version_reply(&stdin);
    }
    let call = match check_call(command, env, stdin) {
        Ok(call) => call,
        Err((version, e)) => return error_reply(version, &e),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return error_reply(
                call.version,
                &Error::new(Code::Internal, format!("starting the runtime: {e}")),
            )
        }
    };
    let outcome = runtime.block_on(call_handler(plugin, &call));
    match outcome {
        Ok(Some(result)) => Reply {
            stdout: pretty(&result.to_json(call.version)),
            stderr: String::new(),
            exit_code: 0,
        },
        Ok(None) => Reply {
            stdout: String::new(),
            stderr: String::new(),
            exit_code: 0,
        },
        Err(e) => error_reply(call.version, &e),
    }
}

async fn call_handler<P: Plugin>(plugin: &P, call: &Call) -> Result<Option<NetResult>> {
    match call.command {
        Command::Add => plugin.add(call).await.map(Some),
        Command::Del => plugin.del(call).await.map(|()| None),
        Command::Check => plugin.check(call).await.map(|()| None),
        Command::Gc => plugin.gc(call).await.map(|()| None),
        Command::Status => plugin.status(call).await.map(|()| None),
        Command::Version => unreachable!("VERSION is answered before any handler"),
    }
}

/// Parses and checks everything the verb needs. On failure, also returns the
/// version to write the error in (the configuration's, once it is known).
fn check_call(
    command: Command,
    env: &HashMap<String, String>,
    stdin: Vec<u8>,
) -> std::result::Result<Call, (Version, Error)> {
    let var = |k: &str| env.get(k).cloned().unwrap_or_default();
    let fallback = Version::CURRENT;
    let conf = NetConf::parse(&stdin).map_err(|e| (fallback, e))?;
    let version = conf.version().map_err(|e| (fallback, e))?;
    let fail = |e: Error| (version, e);

    let required: &[&str] = match command {
        Command::Add | Command::Check => {
            &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"]
        }
        Command::Del => &["CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"],
        _ => &[],
    };
    let missing: Vec<&str> = required
        .iter()
        .copied()
        .filter(|k| var(k).is_empty())
        .collect();
    if !missing.is_empty() {
        return Err(fail(Error::invalid_env(format!(
            "required environment variables missing: {}",
            missing.join(", ")
        ))));
    }
    if command.is_per_attachment() {
        validate_container_id(&var("CNI_CONTAINERID")).map_err(fail)?;
        validate_ifname(&var("CNI_IFNAME")).map_err(fail)?;
    }
    match command {
        Command::Check if !version.supports_check() => {
            return Err(fail(Error::new(
                Code::IncompatibleVersion,
                format!("cniVersion {version} does not have CHECK; it needs 0.4.0 or later"),
            )))
        }
        Command::Gc | Command::Status if !version.supports_gc_and_status() => {
            let verb = if command == Command::Gc {
                "GC"
            } else {
                "STATUS"
            };
            return Err(fail(Error::new(
                Code::IncompatibleVersion,
                format!("cniVersion {version} does not have {verb}; it needs 1.1.0 or later"),
            )));
        }
        _ => {}
    }
    let args = CniArgs::parse(&var("CNI_ARGS")).map_err(fail)?;
    let netns = Some(var("CNI_NETNS"))
        .filter(|s| !s.is_empty())
        .map(PathBuf::from);
    let path = var("CNI_PATH")
        .split(':')
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .collect();
    Ok(Call {
        command,
        container_id: var("CNI_CONTAINERID"),
        netns,
        ifname: var("CNI_IFNAME"),
        args,
        path,
        conf,
        version,
        stdin,
    })
}

/// A container id: letters, digits, `_`, `.`, `-`, starting with a letter or digit.
pub fn validate_container_id(id: &str) -> Result<()> {
    if crate::spec::is_safe_identifier(id) {
        Ok(())
    } else {
        Err(Error::invalid_env(format!(
            "invalid CNI_CONTAINERID {id:?}: only letters, digits, '_', '.' and '-' are allowed, starting with a letter or digit"
        )))
    }
}

/// An interface name the kernel accepts: 1 to 15 bytes, not `.` or `..`,
/// without `/`, `:` or white space.
pub fn validate_ifname(name: &str) -> Result<()> {
    let why = if name.is_empty() {
        "is empty"
    } else if name.len() > 15 {
        "is longer than 15 bytes"
    } else if name == "." || name == ".." {
        "is not a valid name"
    } else if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        "contains '/', ':' or white space"
    } else {
        return Ok(());
    };
    Err(Error::invalid_env(format!(
        "invalid CNI_IFNAME {name:?}: {why}"
    )))
}

/// VERSION: every supported version, in the version the caller asked in
/// (the newest when stdin does not say).
fn version_reply(stdin: &[u8]) -> Reply {
    let asked = serde_json::from_slice::<Value>(stdin)
        .ok()
        .and_then(|v| v.get("cniVersion")?.as_str()?.parse::<Version>().ok())
        .unwrap_or(Version::CURRENT);
    Reply {
        stdout: pretty(&json!({
            "cniVersion": asked,
            "supportedVersions": Version::all_strings(),
        })),
        stderr: String::new(),
        exit_code: 0,
    }
}

#[derive(Serialize)]
struct ErrorJson<'a> {
    #[serde(rename = "cniVersion")]
    cni_version: Version,
    code: Code,
    msg: String,
    details: &'a str,
}

/// The spec's error JSON on stdout, exit code 1.
pub fn error_reply(version: Version, e: &Error) -> Reply {
    let body = ErrorJson {
        cni_version: version,
        code: e.code(),
        msg: e.to_string(),
        details: e.details(),
    };
    Reply {
        stdout: pretty(&serde_json::to_value(&body).expect("error JSON serializes")),
        stderr: String::new(),
        exit_code: 1,
    }
}

/// JSON indented by four spaces, as the reference plugins print it.
fn pretty(v: &Value) -> String {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    v.serialize(&mut ser).expect("JSON values serialize");
    out.push(b'\n');
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// A plugin that records which handler ran.
    #[derive(Default)]
    struct Recorder {
        called: RefCell<Vec<Command>>,
        fail_with: Option<Code>,
    }

    impl Plugin for Recorder {
        fn about(&self) -> String {
            "CNI recorder plugin".into()
        }
        async fn add(&self, call: &Call) -> Result<NetResult> {
            self.called.borrow_mut().push(call.command);
            if let Some(code) = self.fail_with {
                return Err(Error::new(code, "injected"));
            }
            Ok(NetResult {
                ips: vec![crate::spec::IpConfig {
                    interface: None,
                    address: "10.0.0.2/24".parse().unwrap(),
                    gateway: None,
                }],
                ..NetResult::default()
            })
        }
        async fn del(&self, call: &Call) -> Result<()> {
            self.called.borrow_mut().push(call.command);
            Ok(())
        }
        async fn check(&self, call: &Call) -> Result<()> {
            self.called.borrow_mut().push(call.command);
            Ok(())
        }
    }

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn add_env(command: &str) -> HashMap<String, String> {
        env(&[
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_NETNS", "/run/netns/c1"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/opt/cni/bin"),
        ])
    }

    fn conf(version: &str) -> Vec<u8> {
        format!(r#"{{"cniVersion":"{version}","name":"n","type":"recorder"}}"#).into_bytes()
    }

    fn error_of(reply: &Reply) -> Value {
        assert_eq!(reply.exit_code, 1, "{reply:?}");
        serde_json::from_str(&reply.stdout).unwrap()
    }

    #[test]
    fn test_dispatch_add_prints_result_in_callers_version() {
        let p = Recorder::default();
        for v in Version::ALL {
            let reply = dispatch(&p, &add_env("ADD"), conf(v.as_str()));
            assert_eq!(reply.exit_code, 0, "{reply:?}");
            let out: Value = serde_json::from_str(&reply.stdout).unwrap();
            assert_eq!(out["cniVersion"], v.as_str());
            if v.has_legacy_result() {
                assert_eq!(out["ip4"]["ip"], "10.0.0.2/24");
            } else {
                assert_eq!(out["ips"][0]["address"], "10.0.0.2/24");
            }
        }
    }

    #[test]
    fn test_dispatch_about_without_command() {
        let reply = dispatch(&Recorder::default(), &env(&[("PATH", "/bin")]), vec![]);
        assert_eq!(reply.exit_code, 0);
        assert!(reply.stderr.contains("CNI recorder plugin"));
        assert!(reply
            .stderr
            .contains("0.1.0, 0.2.0, 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0"));
    }

    #[test]
    fn test_dispatch_missing_command_from_a_runtime() {
        let mut e = add_env("ADD");
        e.remove("CNI_COMMAND");
        let err = error_of(&dispatch(&Recorder::default(), &e, conf("1.0.0")));
        assert_eq!(err["code"], 4);
        assert!(err["msg"].as_str().unwrap().contains("CNI_COMMAND"));
    }

    #[test]
    fn test_dispatch_unknown_command() {
        let err = error_of(&dispatch(
            &Recorder::default(),
            &add_env("ATTACH"),
            conf("1.0.0"),
        ));
        assert_eq!(err["code"], 4);
        assert!(err["msg"].as_str().unwrap().contains("\"ATTACH\""));
    }

    #[test]
    fn test_dispatch_version() {
        let reply = dispatch(
            &Recorder::default(),
            &env(&[("CNI_COMMAND", "VERSION")]),
            vec![],
        );
        let out: Value = serde_json::from_str(&reply.stdout).unwrap();
        assert_eq!(out["cniVersion"], "1.1.0");
        assert_eq!(out["supportedVersions"].as_array().unwrap().len(), 7);
        let reply = dispatch(
            &Recorder::default(),
            &env(&[("CNI_COMMAND", "VERSION")]),
            br#"{"cniVersion":"0.3.1"}"#.to_vec(),
        );
        let out: Value = serde_json::from_str(&reply.stdout).unwrap();
        assert_eq!(out["cniVersion"], "0.3.1");
    }

    #[test]
    fn test_dispatch_bad_config() {
        let p = Recorder::default();
        let code =
            |stdin: &[u8]| error_of(&dispatch(&p, &add_env("ADD"), stdin.to_vec()))["code"].clone();
        assert_eq!(code(b"{not json"), 6);
        assert_eq!(code(br#"{"cniVersion":"1.0.0","type":"t"}"#), 7);
        assert_eq!(code(br#"{"cniVersion":"1.0.0","name":"n"}"#), 7);
        assert_eq!(code(br#"{"cniVersion":"7.0.0","name":"n","type":"t"}"#), 1);
        assert!(p.called.borrow().is_empty());
    }

    #[test]
    fn test_dispatch_missing_env_names_variables() {
        let mut e = add_env("ADD");
        e.remove("CNI_NETNS");
        e.remove("CNI_PATH");
        let err = error_of(&dispatch(&Recorder::default(), &e, conf("1.0.0")));
        assert_eq!(err["code"], 4);
        assert_eq!(err["cniVersion"], "1.0.0");
        let msg = err["msg"].as_str().unwrap();
        assert!(
            msg.contains("CNI_NETNS") && msg.contains("CNI_PATH"),
            "{msg}"
        );
    }

    #[test]
    fn test_dispatch_del_without_netns() {
        let p = Recorder::default();
        let mut e = add_env("DEL");
        e.insert("CNI_NETNS".into(), String::new());
        let reply = dispatch(&p, &e, conf("1.0.0"));
        assert_eq!(reply.exit_code, 0, "{reply:?}");
        assert_eq!(reply.stdout, "");
        assert_eq!(*p.called.borrow(), vec![Command::Del]);
    }

    #[test]
    fn test_dispatch_check_needs_040() {
        let err = error_of(&dispatch(
            &Recorder::default(),
            &add_env("CHECK"),
            conf("0.3.1"),
        ));
        assert_eq!(err["code"], 1);
        let reply = dispatch(&Recorder::default(), &add_env("CHECK"), conf("0.4.0"));
        assert_eq!(reply.exit_code, 0);
    }

    #[test]
    fn test_dispatch_gc_and_status_need_110() {
        for verb in ["GC", "STATUS"] {
            let e = env(&[("CNI_COMMAND", verb), ("CNI_PATH", "/opt/cni/bin")]);
            let err = error_of(&dispatch(&Recorder::default(), &e, conf("1.0.0")));
            assert_eq!(err["code"], 1, "{verb}");
            assert!(err["msg"].as_str().unwrap().contains(verb));
            let reply = dispatch(&Recorder::default(), &e, conf("1.1.0"));
            assert_eq!(reply.exit_code, 0, "{verb}: {reply:?}");
        }
    }

    #[test]
    fn test_dispatch_handler_error_is_spec_json() {
        let p = Recorder {
            fail_with: Some(Code::TryAgainLater),
            ..Recorder::default()
        };
        let err = error_of(&dispatch(&p, &add_env("ADD"), conf("0.4.0")));
        assert_eq!(err["code"], 11);
        assert_eq!(err["msg"], "injected");
        assert_eq!(err["cniVersion"], "0.4.0");
    }

    #[test]
    fn test_validate_ifname() {
        for ok in ["eth0", "a", "123456789012345", "veth-x_y.z"] {
            assert!(validate_ifname(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "1234567890123456",
            "a/b",
            "a:b",
            "a b",
            "a\tb",
        ] {
            let e = validate_ifname(bad).unwrap_err();
            assert_eq!(e.code(), Code::InvalidEnvironment, "{bad}");
        }
    }

    #[test]
    fn test_validate_container_id() {
        assert!(validate_container_id("abc-123_x.y").is_ok());
        for bad in ["", "-a", "a/b", "a b", "../x"] {
            assert!(validate_container_id(bad).is_err(), "{bad}");
        }
    }
}
