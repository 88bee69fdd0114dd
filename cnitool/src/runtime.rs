//! The runtime's part of the contract: run a network list's plugins as a
//! chain for one attachment, and keep the result cache.
//!
//! - ADD runs the plugins in order, each with the previous one's result as
//!   `prevResult`; the last result is cached and printed. When a plugin
//!   fails, the plugins that ran (the failing one included, since it may
//!   have got half-way) get a DEL in reverse order, so a failed ADD leaves
//!   nothing behind, and no cache entry is written.
//! - DEL runs the plugins in reverse order with the cached result as
//!   `prevResult` (0.4.0 and later), keeps going past a failing plugin, and
//!   removes the cache entry only when every plugin succeeded, so that a
//!   retried DEL still has the result.
//! - CHECK (0.4.0 and later) runs the plugins in order with the cached result.
//! - GC and STATUS (1.1.0) run each plugin without an attachment.

use std::path::{Path, PathBuf};

use pkg::invoke::{find_plugin, spawn};
use pkg::spec::{NetResult, Version};
use serde_json::{json, Map, Value};

use crate::cache::{base64, Cache, Entry, KIND};
use crate::config::NetworkList;
use crate::Failure;

/// One attachment: what a runtime passes besides the network.
#[derive(Debug, Clone, Default)]
pub struct Attachment {
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    /// `CNI_ARGS` as pairs.
    pub args: Vec<(String, String)>,
    /// `CAP_ARGS`: capability arguments, passed to the plugins that declare them.
    pub capability_args: Map<String, Value>,
}

impl Attachment {
    fn cni_args(&self) -> String {
        self.args
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(";")
    }
}

/// Where plugins are found and results are cached.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub cni_path: Vec<PathBuf>,
    pub cache: Cache,
}

/// The verbs the chain runner knows, as `CNI_COMMAND` spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Add,
    Del,
    Check,
    Gc,
    Status,
}

impl Verb {
    fn as_str(self) -> &'static str {
        match self {
            Verb::Add => "ADD",
            Verb::Del => "DEL",
            Verb::Check => "CHECK",
            Verb::Gc => "GC",
            Verb::Status => "STATUS",
        }
    }
}

impl Runtime {
    fn cni_path_env(&self) -> String {
        self.cni_path
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(":")
    }

    /// Every plugin binary of the list, found before anything runs, so a
    /// plugin missing from `CNI_PATH` fails the call with nothing done.
    fn binaries(&self, list: &NetworkList) -> Result<Vec<PathBuf>, Failure> {
        list.types()
            .iter()
            .map(|t| {
                find_plugin(t, &self.cni_path).map_err(|e| {
                    Failure(format!(
                        "network {:?} ({}): {e}",
                        list.name,
                        list.file.display()
                    ))
                })
            })
            .collect()
    }

    /// The version the chain runs in: the list's `cniVersion` when it offers
    /// only that; otherwise the newest version that the list offers and every
    /// plugin of it lists in its VERSION answer. Asking costs one exec per
    /// plugin, so it happens only when there is a choice to make.
    fn negotiate(&self, list: &NetworkList, bins: &[PathBuf]) -> Result<Version, Failure> {
        if let [only] = list.versions.as_slice() {
            return Ok(*only);
        }
        let mut offered = list.versions.clone();
        for bin in bins {
            let stdin =
                json!({"cniVersion": offered.first().map(|v| v.as_str()).unwrap_or("0.1.0")});
            let out = spawn(bin, "VERSION", &[], stdin.to_string().as_bytes())
                .and_then(|r| r.wait())
                .map_err(|e| Failure(format!("VERSION of {}: {e}", bin.display())))?;
            let supported: Vec<Version> = serde_json::from_slice::<Value>(&out)
                .ok()
                .and_then(|v| v.get("supportedVersions").cloned())
                .and_then(|v| serde_json::from_value::<Vec<String>>(v).ok())
                .map(|v| v.iter().filter_map(|s| s.parse().ok()).collect())
                .ok_or_else(|| {
                    Failure(format!(
                        "VERSION of {}: no supportedVersions list",
                        bin.display()
                    ))
                })?;
            offered.retain(|v| supported.contains(v));
            if offered.is_empty() {
                return Err(Failure(format!(
                    "network {:?}: plugin {} supports none of the versions the list offers ({})",
                    list.name,
                    bin.display(),
                    list.versions
                        .iter()
                        .map(|v| v.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        Ok(offered[0])
    }

    /// Plugin `i`'s stdin: its configuration with the list's name and the
    /// chain's version, the previous result and the runtime configuration
    /// for the capabilities it declares (as libcni builds it).
    fn plugin_stdin(
        list: &NetworkList,
        i: usize,
        version: Version,
        prev: Option<&Value>,
        att: Option<&Attachment>,
        extra: &[(&str, Value)],
    ) -> Vec<u8> {
        let mut conf = list.plugins[i].clone();
        conf.insert("name".into(), Value::String(list.name.clone()));
        conf.insert("cniVersion".into(), Value::String(version.as_str().into()));
        if let Some(prev) = prev {
            conf.insert("prevResult".into(), prev.clone());
        }
        if let Some(att) = att {
            let mut rc = Map::new();
            if let Some(Value::Object(caps)) = conf.get("capabilities") {
                for (cap, on) in caps {
                    if on.as_bool() == Some(true) {
                        if let Some(v) = att.capability_args.get(cap) {
                            rc.insert(cap.clone(), v.clone());
                        }
                    }
                }
            }
            if !rc.is_empty() {
                conf.insert("runtimeConfig".into(), Value::Object(rc));
            }
        }
        for (k, v) in extra {
            conf.insert((*k).into(), v.clone());
        }
        serde_json::to_vec(&conf).expect("JSON serializes")
    }

    fn run(
        &self,
        verb: Verb,
        bin: &Path,
        att: Option<&Attachment>,
        stdin: &[u8],
    ) -> Result<Vec<u8>, Failure> {
        let path = self.cni_path_env();
        let args = att.map(Attachment::cni_args).unwrap_or_default();
        let mut env: Vec<(&str, &str)> = vec![("CNI_PATH", &path)];
        if let Some(att) = att {
            env.extend([
                ("CNI_CONTAINERID", att.container_id.as_str()),
                ("CNI_NETNS", att.netns.as_str()),
                ("CNI_IFNAME", att.ifname.as_str()),
                ("CNI_ARGS", args.as_str()),
            ]);
        }
        spawn(bin, verb.as_str(), &env, stdin)
            .and_then(|r| r.wait())
            .map_err(|e| Failure(e.to_string()))
    }

    /// ADD: runs the chain, caches and returns the final result.
    pub fn add(&self, list: &NetworkList, att: &Attachment) -> Result<Value, Failure> {
        let bins = self.binaries(list)?;
        let version = self.negotiate(list, &bins)?;
        let mut prev: Option<Value> = None;
        for (i, bin) in bins.iter().enumerate() {
            let stdin = Self::plugin_stdin(list, i, version, prev.as_ref(), Some(att), &[]);
            let answer = self.run(Verb::Add, bin, Some(att), &stdin).and_then(|out| {
                parse_result(&out, version)
                    .map_err(|e| Failure(format!("{}: {e}", list.types()[i])))
            });
            match answer {
                Ok(result) => prev = Some(result),
                Err(e) => {
                    let undo = self.del_plugins(list, &bins[..=i], version, prev.as_ref(), att);
                    return Err(Failure(format!(
                        "ADD of network {:?} failed: {}{}",
                        list.name,
                        e.0,
                        cleanup_note(&undo)
                    )));
                }
            }
        }
        let result = prev.unwrap_or_else(|| json!({"cniVersion": version.as_str()}));
        let entry = Entry {
            kind: KIND.into(),
            container_id: att.container_id.clone(),
            config: base64(&list.bytes),
            ifname: att.ifname.clone(),
            network: list.name.clone(),
            netns: att.netns.clone(),
            cni_args: att.args.clone(),
            capability_args: att.capability_args.clone(),
            result: Some(result.clone()),
        };
        if let Err(e) = self.cache.write(&entry) {
            let undo = self.del_plugins(list, &bins, version, Some(&result), att);
            return Err(Failure(format!(
                "ADD of network {:?} undone: {}{}",
                list.name,
                e.0,
                cleanup_note(&undo)
            )));
        }
        Ok(result)
    }

    /// DEL of `bins` (a prefix of the list's plugins) in reverse order;
    /// every plugin gets its DEL even when an earlier one failed.
    fn del_plugins(
        &self,
        list: &NetworkList,
        bins: &[PathBuf],
        version: Version,
        prev: Option<&Value>,
        att: &Attachment,
    ) -> Vec<String> {
        let prev = if version.supports_check() { prev } else { None };
        let mut failures = Vec::new();
        for (i, bin) in bins.iter().enumerate().rev() {
            let stdin = Self::plugin_stdin(list, i, version, prev, Some(att), &[]);
            if let Err(e) = self.run(Verb::Del, bin, Some(att), &stdin) {
                failures.push(e.0);
            }
        }
        failures
    }

    /// The cached result of an attachment, in `version`; `None` when there is
    /// none or it cannot be read in that version.
    fn cached_result(&self, list: &NetworkList, att: &Attachment) -> Option<(Version, Value)> {
        let entry = self
            .cache
            .read(&list.name, &att.container_id, &att.ifname)?;
        let result = entry.result?;
        let version: Version = result.get("cniVersion")?.as_str()?.parse().ok()?;
        Some((version, result))
    }

    /// The chain's version for an attachment that has a cached result: the
    /// result's version when the list still offers it (no VERSION calls),
    /// else a fresh negotiation; and the result in that version.
    fn version_and_prev(
        &self,
        list: &NetworkList,
        bins: &[PathBuf],
        att: &Attachment,
    ) -> Result<(Version, Option<Value>), Failure> {
        let cached = self.cached_result(list, att);
        let version = match &cached {
            Some((v, _)) if list.versions.contains(v) => *v,
            _ => self.negotiate(list, bins)?,
        };
        let prev = cached.and_then(|(v, result)| {
            if v == version {
                return Some(result);
            }
            NetResult::from_json(&result, v)
                .ok()
                .map(|r| r.to_json(version))
        });
        Ok((version, prev))
    }

    /// The network list an attachment was added with, from its cache entry:
    /// DEL uses it when the configuration file has gone since (as CRI-O does).
    pub fn cached_list(&self, network: &str, att: &Attachment) -> Option<NetworkList> {
        let entry = self.cache.read(network, &att.container_id, &att.ifname)?;
        let bytes = crate::cache::unbase64(&entry.config)?;
        let file = self.cache.path(network, &att.container_id, &att.ifname);
        // libcni caches a single configuration run on its own as it is.
        NetworkList::from_conflist(&bytes, &file)
            .or_else(|_| NetworkList::from_conf(&bytes, &file))
            .ok()
            .filter(|l| l.name == network)
    }

    /// DEL: detaches and forgets the cached result.
    pub fn del(&self, list: &NetworkList, att: &Attachment) -> Result<(), Failure> {
        let bins = self.binaries(list)?;
        let (version, prev) = self.version_and_prev(list, &bins, att)?;
        let failures = self.del_plugins(list, &bins, version, prev.as_ref(), att);
        if !failures.is_empty() {
            return Err(Failure(format!(
                "DEL of network {:?} failed: {}",
                list.name,
                failures.join("; ")
            )));
        }
        self.cache
            .remove(&list.name, &att.container_id, &att.ifname)
    }

    /// CHECK: asks every plugin whether the attachment is as ADD left it.
    pub fn check(&self, list: &NetworkList, att: &Attachment) -> Result<(), Failure> {
        let bins = self.binaries(list)?;
        let (version, prev) = self.version_and_prev(list, &bins, att)?;
        if !version.supports_check() {
            return Err(Failure(format!(
                "network {:?} is version {version}: CHECK needs 0.4.0 or later",
                list.name
            )));
        }
        if list.disable_check {
            return Ok(());
        }
        let Some(prev) = prev else {
            return Err(Failure(format!(
                "network {:?} has no cached result for container {} interface {} in {}: was it added?",
                list.name,
                att.container_id,
                att.ifname,
                self.cache.path(&list.name, &att.container_id, &att.ifname).display()
            )));
        };
        for (i, bin) in bins.iter().enumerate() {
            let stdin = Self::plugin_stdin(list, i, version, Some(&prev), Some(att), &[]);
            self.run(Verb::Check, bin, Some(att), &stdin).map_err(|e| {
                Failure(format!("CHECK of network {:?} failed: {}", list.name, e.0))
            })?;
        }
        Ok(())
    }

    /// GC: the cached attachments of this network whose namespace is gone
    /// get a DEL; then (1.1.0) every plugin gets a GC naming the attachments
    /// that remain valid.
    pub fn gc(&self, list: &NetworkList) -> Result<(), Failure> {
        if list.disable_gc {
            return Ok(());
        }
        let bins = self.binaries(list)?;
        let mut failures = Vec::new();
        let mut valid = Vec::new();
        for entry in self.cache.entries(&list.name) {
            let att = Attachment {
                container_id: entry.container_id.clone(),
                netns: entry.netns.clone(),
                ifname: entry.ifname.clone(),
                args: entry.cni_args.clone(),
                capability_args: entry.capability_args.clone(),
            };
            if !entry.netns.is_empty() && Path::new(&entry.netns).exists() {
                valid.push(json!({"containerID": att.container_id, "ifname": att.ifname}));
            } else if let Err(e) = self.del(list, &att) {
                failures.push(e.0);
            }
        }
        let version = self.negotiate(list, &bins)?;
        if version.supports_gc_and_status() {
            let extra = [("cni.dev/valid-attachments", Value::Array(valid))];
            for (i, bin) in bins.iter().enumerate() {
                let stdin = Self::plugin_stdin(list, i, version, None, None, &extra);
                if let Err(e) = self.run(Verb::Gc, bin, None, &stdin) {
                    failures.push(e.0);
                }
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(Failure(format!(
                "GC of network {:?} failed: {}",
                list.name,
                failures.join("; ")
            )))
        }
    }

    /// STATUS (1.1.0): succeeds when every plugin can serve ADDs. Older
    /// lists have no STATUS and are taken as ready, as libcni does.
    pub fn status(&self, list: &NetworkList) -> Result<(), Failure> {
        let bins = self.binaries(list)?;
        let version = self.negotiate(list, &bins)?;
        if !version.supports_gc_and_status() {
            return Ok(());
        }
        for (i, bin) in bins.iter().enumerate() {
            let stdin = Self::plugin_stdin(list, i, version, None, None, &[]);
            self.run(Verb::Status, bin, None, &stdin)
                .map_err(|e| Failure(format!("STATUS of network {:?}: {}", list.name, e.0)))?;
        }
        Ok(())
    }
}

/// A plugin's ADD output, checked to be a result of `version`.
fn parse_result(out: &[u8], version: Version) -> Result<Value, String> {
    let value: Value =
        serde_json::from_slice(out).map_err(|e| format!("ADD result is not JSON: {e}"))?;
    NetResult::from_json(&value, version).map_err(|e| format!("ADD result: {e}"))?;
    Ok(value)
}

fn cleanup_note(failures: &[String]) -> String {
    if failures.is_empty() {
        String::new()
    } else {
        format!(" (and cleaning up failed: {})", failures.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(body: &str) -> NetworkList {
        NetworkList::from_conflist(body.as_bytes(), Path::new("t.conflist")).unwrap()
    }

    #[test]
    fn test_plugin_stdin_injects_name_version_prev_and_capabilities() {
        let l = list(
            r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"a","name":"other","capabilities":{"portMappings":true,"bandwidth":false}}]}"#,
        );
        let att = Attachment {
            capability_args: serde_json::from_str(
                r#"{"portMappings":[{"hostPort":8080}],"bandwidth":{"rate":1},"ips":["10.0.0.1"]}"#,
            )
            .unwrap(),
            ..Default::default()
        };
        let prev = json!({"cniVersion":"1.0.0","ips":[]});
        let out: Value = serde_json::from_slice(&Runtime::plugin_stdin(
            &l,
            0,
            Version::V1_0_0,
            Some(&prev),
            Some(&att),
            &[],
        ))
        .unwrap();
        assert_eq!(out["name"], "n");
        assert_eq!(out["cniVersion"], "1.0.0");
        assert_eq!(out["prevResult"], prev);
        assert_eq!(
            out["runtimeConfig"],
            json!({"portMappings":[{"hostPort":8080}]})
        );
    }

    #[test]
    fn test_no_runtime_config_without_capabilities() {
        let l = list(r#"{"name":"n","plugins":[{"type":"a"}]}"#);
        let att = Attachment {
            capability_args: serde_json::from_str(r#"{"portMappings":[]}"#).unwrap(),
            ..Default::default()
        };
        let out: Value = serde_json::from_slice(&Runtime::plugin_stdin(
            &l,
            0,
            Version::V0_1_0,
            None,
            Some(&att),
            &[],
        ))
        .unwrap();
        assert!(out.get("runtimeConfig").is_none());
        assert!(out.get("prevResult").is_none());
    }

    #[test]
    fn test_cni_args_joined() {
        let att = Attachment {
            args: vec![("A".into(), "1".into()), ("B".into(), "2".into())],
            ..Default::default()
        };
        assert_eq!(att.cni_args(), "A=1;B=2");
    }
}
