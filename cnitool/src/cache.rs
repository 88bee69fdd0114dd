//! The result cache: what ADD returned, kept for DEL, CHECK and GC.
//!
//! One file per attachment, `<dir>/results/<network>-<containerID>-<ifname>`,
//! in libcni's `cniCacheV1` format (the list's bytes base64-encoded under
//! `config`, the runtime arguments, the final result), so containerd, CRI-O,
//! podman and the reference cnitool read our entries and we read theirs.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::Failure;

/// The `kind` of every entry this format writes.
pub const KIND: &str = "cniCacheV1";

/// One cached attachment.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Entry {
    pub kind: String,
    // libcni writes `containerId`; Go reads keys case-insensitively, so some
    // writers say `containerID`: accept both.
    #[serde(rename = "containerId", alias = "containerID")]
    pub container_id: String,
    /// The network list's bytes, base64 as Go encodes a `[]byte`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub config: String,
    #[serde(rename = "ifName")]
    pub ifname: String,
    #[serde(rename = "networkName")]
    pub network: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub netns: String,
    #[serde(
        rename = "cniArgs",
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub cni_args: Vec<(String, String)>,
    #[serde(
        rename = "capabilityArgs",
        default,
        skip_serializing_if = "Map::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub capability_args: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The cache under one directory (`/var/lib/cni` by default).
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    pub fn new(dir: impl Into<PathBuf>) -> Cache {
        Cache { dir: dir.into() }
    }

    fn results(&self) -> PathBuf {
        self.dir.join("results")
    }

    /// The file of one attachment.
    pub fn path(&self, network: &str, container_id: &str, ifname: &str) -> PathBuf {
        self.results()
            .join(format!("{network}-{container_id}-{ifname}"))
    }

    /// Writes an entry (mode 0600 in a 0700 directory, as libcni does),
    /// through a temporary file so a reader never sees half of it.
    pub fn write(&self, entry: &Entry) -> Result<(), Failure> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let dir = self.results();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| Failure(format!("cannot create result cache {}: {e}", dir.display())))?;
        let path = self.path(&entry.network, &entry.container_id, &entry.ifname);
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let bytes = serde_json::to_vec(entry).expect("JSON serializes");
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| std::io::Write::write_all(&mut f, &bytes))
            .and_then(|()| std::fs::rename(&tmp, &path));
        written.map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Failure(format!(
                "cannot write cached result {}: {e}",
                path.display()
            ))
        })
    }

    /// The entry of one attachment; `None` when there is none (or it is not
    /// in this format: a legacy bare result is of no use to DEL or CHECK
    /// without its version, and libcni treats it the same way).
    pub fn read(&self, network: &str, container_id: &str, ifname: &str) -> Option<Entry> {
        read_entry(&self.path(network, container_id, ifname))
    }

    /// Removes one attachment's entry; a missing entry is fine.
    pub fn remove(&self, network: &str, container_id: &str, ifname: &str) -> Result<(), Failure> {
        let path = self.path(network, container_id, ifname);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Failure(format!(
                "cannot remove cached result {}: {e}",
                path.display()
            ))),
            _ => Ok(()),
        }
    }

    /// Every entry of `network`, in file name order.
    pub fn entries(&self, network: &str) -> Vec<Entry> {
        let Ok(dir) = std::fs::read_dir(self.results()) else {
            return Vec::new();
        };
        let mut paths: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        paths
            .iter()
            .filter_map(|p| read_entry(p))
            .filter(|e| e.network == network && !e.container_id.is_empty() && !e.ifname.is_empty())
            .collect()
    }
}

fn read_entry(path: &Path) -> Option<Entry> {
    let bytes = std::fs::read(path).ok()?;
    let entry: Entry = serde_json::from_slice(&bytes).ok()?;
    (entry.kind == KIND).then_some(entry)
}

/// Standard base64 with padding: how Go's encoding/json writes a `[]byte`.
pub fn base64(data: &[u8]) -> String {
    STANDARD.encode(data)
}

/// Decodes standard base64 (padding optional); `None` if it is not base64.
pub fn unbase64(text: &str) -> Option<Vec<u8>> {
    LENIENT.decode(text).ok()
}

/// Standard alphabet; padding accepted whether present or not.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_base64_matches_go() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"{\"a\":1}"), "eyJhIjoxfQ==");
        for data in [&b""[..], b"f", b"fo", b"foo", b"foob", b"{\"a\":1}"] {
            assert_eq!(unbase64(&base64(data)).unwrap(), data);
        }
        assert!(unbase64("Zm9v!").is_none());
    }

    #[test]
    fn test_cache_roundtrip_and_format() {
        let d = tempfile::tempdir().unwrap();
        let cache = Cache::new(d.path());
        let entry = Entry {
            kind: KIND.into(),
            container_id: "cnitool-0123".into(),
            config: base64(b"{}"),
            ifname: "eth0".into(),
            network: "net".into(),
            netns: "/run/netns/x".into(),
            cni_args: vec![("K".into(), "V".into())],
            capability_args: Map::new(),
            result: Some(serde_json::json!({"cniVersion":"1.0.0"})),
        };
        cache.write(&entry).unwrap();
        let path = d.path().join("results/net-cnitool-0123-eth0");
        let raw: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(raw["kind"], "cniCacheV1");
        assert_eq!(raw["containerId"], "cnitool-0123");
        assert_eq!(raw["cniArgs"], serde_json::json!([["K", "V"]]));
        assert!(raw.get("capabilityArgs").is_none());
        let back = cache.read("net", "cnitool-0123", "eth0").unwrap();
        assert_eq!(back.netns, "/run/netns/x");
        assert_eq!(cache.entries("net").len(), 1);
        assert!(cache.entries("other").is_empty());
        cache.remove("net", "cnitool-0123", "eth0").unwrap();
        cache.remove("net", "cnitool-0123", "eth0").unwrap();
        assert!(cache.read("net", "cnitool-0123", "eth0").is_none());
    }

    #[test]
    fn test_cache_reads_libcni_spelling() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("results")).unwrap();
        std::fs::write(
            d.path().join("results/n-c-eth0"),
            r#"{"kind":"cniCacheV1","containerID":"c","ifName":"eth0","networkName":"n","cniArgs":null,"capabilityArgs":null}"#,
        )
        .unwrap();
        assert_eq!(
            Cache::new(d.path())
                .read("n", "c", "eth0")
                .unwrap()
                .container_id,
            "c"
        );
    }
}
