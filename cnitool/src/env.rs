//! cnitool's environment: where configurations, plugins and the cache are,
//! and the attachment's interface name and arguments.

use std::path::{Component, Path, PathBuf};

use pkg::skel::{validate_container_id, validate_ifname};
use serde_json::{Map, Value};
use sha2::{Digest, Sha512};

use crate::cache::Cache;
use crate::runtime::{Attachment, Runtime};
use crate::Failure;

/// What the environment says, read once at start.
#[derive(Debug, Clone)]
pub struct Settings {
    pub netconf_path: PathBuf,
    pub cni_path: Vec<PathBuf>,
    pub cache_dir: PathBuf,
    pub ifname: String,
    pub args: Vec<(String, String)>,
    pub capability_args: Map<String, Value>,
    pub container_id: Option<String>,
}

fn var(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

impl Settings {
    /// Reads the environment, then removes the `CNI_*` variables from it:
    /// the plugins get exactly the ones the runner sets for each verb.
    pub fn from_env() -> Result<Settings, Failure> {
        let settings = Settings {
            netconf_path: var("NETCONFPATH")
                .unwrap_or_else(|| "/etc/cni/net.d".into())
                .into(),
            cni_path: std::env::split_paths(
                &var("CNI_PATH").unwrap_or_else(|| "/opt/cni/bin".into()),
            )
            .filter(|p| !p.as_os_str().is_empty())
            .collect(),
            cache_dir: var("CNI_CACHE_DIR")
                .unwrap_or_else(|| "/var/lib/cni".into())
                .into(),
            ifname: var("CNI_IFNAME").unwrap_or_else(|| "eth0".into()),
            args: parse_cni_args(&var("CNI_ARGS").unwrap_or_default())?,
            capability_args: parse_cap_args(&var("CAP_ARGS").unwrap_or_default())?,
            container_id: var("CNI_CONTAINERID"),
        };
        validate_ifname(&settings.ifname).map_err(|e| Failure(e.to_string()))?;
        if let Some(id) = &settings.container_id {
            validate_container_id(id).map_err(|e| Failure(e.to_string()))?;
        }
        for key in [
            "CNI_COMMAND",
            "CNI_CONTAINERID",
            "CNI_NETNS",
            "CNI_IFNAME",
            "CNI_ARGS",
            "CNI_PATH",
        ] {
            std::env::remove_var(key);
        }
        Ok(settings)
    }

    /// The runner for these settings.
    pub fn runtime(&self) -> Runtime {
        Runtime {
            cni_path: self.cni_path.clone(),
            cache: Cache::new(&self.cache_dir),
        }
    }

    /// The attachment of `netns`; `must_exist` for ADD and CHECK (DEL
    /// of a namespace that is gone still releases what lives outside it).
    pub fn attachment(&self, netns: &str, must_exist: bool) -> Result<Attachment, Failure> {
        let netns = absolute(Path::new(netns));
        if must_exist && !netns.exists() {
            return Err(Failure(format!(
                "network namespace {} does not exist",
                netns.display()
            )));
        }
        let netns = netns.display().to_string();
        Ok(Attachment {
            container_id: self
                .container_id
                .clone()
                .unwrap_or_else(|| container_id_for(&netns)),
            netns,
            ifname: self.ifname.clone(),
            args: self.args.clone(),
            capability_args: self.capability_args.clone(),
        })
    }
}

/// The reference cnitool's container id for a namespace path: `cnitool-`
/// and the first 10 bytes of the path's SHA-512 in hex, so both tools find
/// each other's cache entries and IPAM reservations.
pub fn container_id_for(netns: &str) -> String {
    let digest = Sha512::digest(netns.as_bytes());
    let hex: String = digest[..10].iter().map(|b| format!("{b:02x}")).collect();
    format!("cnitool-{hex}")
}

/// `path` made absolute against the working directory, `.` and `..`
/// resolved by name (Go's `filepath.Abs`, which the reference uses).
fn absolute(path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    let mut out = PathBuf::from("/");
    for c in joined.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// `CNI_ARGS`: `KEY=VALUE` pairs separated by `;`, both sides non-empty.
fn parse_cni_args(s: &str) -> Result<Vec<(String, String)>, Failure> {
    s.split(';')
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() && !v.is_empty() && !v.contains('=') => {
                Ok((k.to_string(), v.to_string()))
            }
            _ => Err(Failure(format!(
                "invalid CNI_ARGS pair {pair:?}: expected KEY=VALUE"
            ))),
        })
        .collect()
}

/// `CAP_ARGS`: a JSON object of capability arguments.
fn parse_cap_args(s: &str) -> Result<Map<String, Value>, Failure> {
    if s.is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str::<Value>(s) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Failure("CAP_ARGS is not a JSON object".into())),
        Err(e) => Err(Failure(format!("CAP_ARGS is not valid JSON: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_container_id_is_the_references() {
        // The reference cnitool's id for /var/run/netns/testing, as seen in
        // its cache file names.
        assert_eq!(
            container_id_for("/var/run/netns/testing"),
            "cnitool-77383ca0a0715733ca6f"
        );
    }

    #[test]
    fn test_absolute_resolves_by_name() {
        assert_eq!(
            absolute(Path::new("/run/netns/../netns/./x")),
            Path::new("/run/netns/x")
        );
        assert!(absolute(Path::new("x")).is_absolute());
    }

    #[test]
    fn test_parse_cni_args() {
        assert_eq!(
            parse_cni_args("A=1;B=2").unwrap(),
            vec![("A".into(), "1".into()), ("B".into(), "2".into())]
        );
        assert!(parse_cni_args("").unwrap().is_empty());
        for bad in ["A", "=1", "A=", "A=1=2"] {
            assert!(parse_cni_args(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn test_parse_cap_args() {
        assert!(parse_cap_args(r#"{"portMappings":[]}"#)
            .unwrap()
            .contains_key("portMappings"));
        assert!(parse_cap_args("[]").is_err());
        assert!(parse_cap_args("{").is_err());
    }
}
