//! Network configurations on disk: `.conflist` files (a chain of plugins)
//! and `.conf` / `.json` files (one plugin), found in `NETCONFPATH`.
//!
//! Files are read in name order and the first network with the asked name
//! wins, conflists before single configurations, as libcni looks them up.
//! A single configuration becomes a one-plugin list, so everything after
//! loading deals with lists only.

use std::path::{Path, PathBuf};

use pkg::spec::{validate_network_name, Version};
use serde_json::{Map, Value};

use crate::Failure;

/// A network: its plugins in chain order and what the list says about itself.
#[derive(Debug, Clone)]
pub struct NetworkList {
    pub name: String,
    /// `cniVersion`, and `cniVersions` when the list offers several (1.1.0).
    pub versions: Vec<Version>,
    pub disable_check: bool,
    pub disable_gc: bool,
    /// Each plugin's configuration object, as written.
    pub plugins: Vec<Map<String, Value>>,
    /// The list as bytes: the file for a conflist, a list made around a
    /// single configuration. The result cache keeps these, as libcni does.
    pub bytes: Vec<u8>,
    pub file: PathBuf,
}

impl NetworkList {
    /// Parses a `.conflist` file's content.
    pub fn from_conflist(bytes: &[u8], file: &Path) -> Result<NetworkList, Failure> {
        let at = |msg: String| Failure(format!("{}: {msg}", file.display()));
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| at(format!("not valid JSON: {e}")))?;
        let Value::Object(obj) = value else {
            return Err(at("not a JSON object".into()));
        };
        let name = string_key(&obj, "name").map_err(at)?;
        let versions = list_versions(&obj).map_err(at)?;
        let plugins = match obj.get("plugins") {
            Some(Value::Array(items)) if !items.is_empty() => items,
            Some(Value::Array(_)) => return Err(at("\"plugins\" is empty".into())),
            Some(_) => return Err(at("\"plugins\" is not a list".into())),
            None => {
                return Err(at(
                    "no \"plugins\" list (a single plugin belongs in a .conf file)".into(),
                ))
            }
        };
        let mut confs = Vec::with_capacity(plugins.len());
        for (i, p) in plugins.iter().enumerate() {
            let Value::Object(p) = p else {
                return Err(at(format!("plugins[{i}] is not a JSON object")));
            };
            string_key(p, "type").map_err(|e| at(format!("plugins[{i}]: {e}")))?;
            confs.push(p.clone());
        }
        Ok(NetworkList {
            name,
            versions,
            disable_check: bool_key(&obj, "disableCheck").map_err(at)?,
            disable_gc: bool_key(&obj, "disableGC").map_err(at)?,
            plugins: confs,
            bytes: bytes.to_vec(),
            file: file.to_path_buf(),
        })
    }

    /// Parses a `.conf` / `.json` file's content: one plugin, wrapped in a list.
    pub fn from_conf(bytes: &[u8], file: &Path) -> Result<NetworkList, Failure> {
        let at = |msg: String| Failure(format!("{}: {msg}", file.display()));
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| at(format!("not valid JSON: {e}")))?;
        let Value::Object(obj) = value else {
            return Err(at("not a JSON object".into()));
        };
        if obj.contains_key("plugins") {
            return Err(at(
                "has a \"plugins\" list: a chain belongs in a .conflist file".into(),
            ));
        }
        let name = string_key(&obj, "name").map_err(at)?;
        string_key(&obj, "type").map_err(at)?;
        let versions = list_versions(&obj).map_err(at)?;
        let mut list = Map::new();
        if let Some(v) = obj.get("cniVersion") {
            list.insert("cniVersion".into(), v.clone());
        }
        list.insert("name".into(), Value::String(name.clone()));
        list.insert(
            "plugins".into(),
            Value::Array(vec![Value::Object(obj.clone())]),
        );
        Ok(NetworkList {
            name,
            versions,
            disable_check: false,
            disable_gc: false,
            plugins: vec![obj],
            bytes: serde_json::to_vec(&list).expect("JSON serializes"),
            file: file.to_path_buf(),
        })
    }

    /// The plugin types in chain order.
    pub fn types(&self) -> Vec<&str> {
        self.plugins
            .iter()
            .map(|p| p.get("type").and_then(Value::as_str).unwrap_or_default())
            .collect()
    }
}

fn string_key(obj: &Map<String, Value>, key: &str) -> Result<String, String> {
    match obj.get(key) {
        Some(Value::String(s)) if !s.is_empty() => {
            if key == "name" {
                validate_network_name(s).map_err(|e| e.to_string())?;
            }
            Ok(s.clone())
        }
        Some(Value::String(_)) | None => Err(format!("no {key:?}")),
        Some(_) => Err(format!("{key:?} is not a string")),
    }
}

fn bool_key(obj: &Map<String, Value>, key: &str) -> Result<bool, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(format!("{key:?} is not true or false")),
    }
}

/// The versions a list offers, newest first: `cniVersion` (0.1.0 when
/// absent) and the known entries of `cniVersions`. An unknown `cniVersion`
/// is an error; unknown `cniVersions` entries are for newer runtimes and
/// skipped.
fn list_versions(obj: &Map<String, Value>) -> Result<Vec<Version>, String> {
    let mut out = Vec::new();
    match obj.get("cniVersion") {
        None | Some(Value::Null) => out.push(Version::IMPLICIT),
        Some(Value::String(s)) if s.is_empty() => out.push(Version::IMPLICIT),
        Some(Value::String(s)) => out.push(s.parse().map_err(|e| format!("{e}"))?),
        Some(_) => return Err("\"cniVersion\" is not a string".into()),
    }
    match obj.get("cniVersions") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for item in items {
                let s = item
                    .as_str()
                    .ok_or("\"cniVersions\" holds a value that is not a string")?;
                if let Ok(v) = s.parse() {
                    out.push(v);
                }
            }
        }
        Some(_) => return Err("\"cniVersions\" is not a list".into()),
    }
    out.sort_unstable_by(|a, b| b.cmp(a));
    out.dedup();
    Ok(out)
}

/// The configuration files of `dir`, sorted by name: conflists first, then
/// single configurations.
fn conf_files(dir: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>), Failure> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        Failure(format!(
            "cannot read network configuration directory {} (NETCONFPATH): {e}",
            dir.display()
        ))
    })?;
    let mut names: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    names.sort();
    let ext = |p: &PathBuf| {
        p.extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default()
            .to_string()
    };
    let lists = names
        .iter()
        .filter(|p| ext(p) == "conflist")
        .cloned()
        .collect();
    let singles = names
        .iter()
        .filter(|p| matches!(ext(p).as_str(), "conf" | "json"))
        .cloned()
        .collect();
    Ok((lists, singles))
}

fn read(file: &Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(file).map_err(|e| Failure(format!("cannot read {}: {e}", file.display())))
}

fn parse(file: &Path, conflist: bool) -> Result<NetworkList, Failure> {
    let bytes = read(file)?;
    if conflist {
        NetworkList::from_conflist(&bytes, file)
    } else {
        NetworkList::from_conf(&bytes, file)
    }
}

/// Every network in `dir`, in lookup order. A file that does not parse is
/// an error naming it: a runtime that skipped it would silently run a
/// different network than the one the administrator wrote.
pub fn load_all(dir: &Path) -> Result<Vec<NetworkList>, Failure> {
    let (lists, singles) = conf_files(dir)?;
    let mut out = Vec::new();
    for f in &lists {
        out.push(parse(f, true)?);
    }
    for f in &singles {
        out.push(parse(f, false)?);
    }
    Ok(out)
}

/// The network named `name` in `dir`, if there is one.
pub fn find(dir: &Path, name: &str) -> Result<Option<NetworkList>, Failure> {
    Ok(load_all(dir)?.into_iter().find(|n| n.name == name))
}

/// The network named `name` in `dir`.
pub fn load(dir: &Path, name: &str) -> Result<NetworkList, Failure> {
    find(dir, name)?.ok_or_else(|| not_found(dir, name))
}

/// The error for a network that is not in `dir`.
pub fn not_found(dir: &Path, name: &str) -> Failure {
    Failure(format!(
        "no network named {name:?} in {} (NETCONFPATH); `cnitool list` shows the networks there",
        dir.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, body: &str) {
        std::fs::write(dir.join(name), body).unwrap();
    }

    #[test]
    fn test_load_conflist_and_conf() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "20-b.conflist",
            r#"{"cniVersion":"1.0.0","cniVersions":["0.4.0","9.9.9"],"name":"b","disableCheck":true,"plugins":[{"type":"bridge"},{"type":"ipmasq"}]}"#,
        );
        write(
            d.path(),
            "10-a.conf",
            r#"{"cniVersion":"0.3.1","name":"a","type":"loopback"}"#,
        );
        write(d.path(), "README", "not a config");
        let all = load_all(d.path()).unwrap();
        assert_eq!(
            all.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(),
            ["b", "a"]
        );
        let b = &all[0];
        assert_eq!(b.versions, [Version::V1_0_0, Version::V0_4_0]);
        assert!(b.disable_check);
        assert_eq!(b.types(), ["bridge", "ipmasq"]);
        let a = load(d.path(), "a").unwrap();
        assert_eq!(a.plugins.len(), 1);
        let wrapped: Value = serde_json::from_slice(&a.bytes).unwrap();
        assert_eq!(wrapped["plugins"][0]["type"], "loopback");
        assert_eq!(wrapped["cniVersion"], "0.3.1");
    }

    #[test]
    fn test_load_first_file_wins() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "20.conflist",
            r#"{"name":"n","plugins":[{"type":"second"}]}"#,
        );
        write(
            d.path(),
            "10.conflist",
            r#"{"name":"n","plugins":[{"type":"first"}]}"#,
        );
        write(d.path(), "05.conf", r#"{"name":"n","type":"single"}"#);
        assert_eq!(load(d.path(), "n").unwrap().types(), ["first"]);
    }

    #[test]
    fn test_load_errors_name_the_problem() {
        let d = tempfile::tempdir().unwrap();
        let err = load(d.path(), "missing").unwrap_err().0;
        assert!(err.contains("no network named \"missing\""), "{err}");
        let err = load(&d.path().join("nope"), "x").unwrap_err().0;
        assert!(err.contains("NETCONFPATH"), "{err}");
        for (body, want) in [
            ("{", "not valid JSON"),
            (r#"{"name":"n"}"#, "no \"plugins\""),
            (r#"{"name":"n","plugins":[]}"#, "empty"),
            (
                r#"{"name":"n","plugins":[{"name":"x"}]}"#,
                "plugins[0]: no \"type\"",
            ),
            (r#"{"plugins":[{"type":"x"}]}"#, "no \"name\""),
            (
                r#"{"name":"a/b","plugins":[{"type":"x"}]}"#,
                "invalid network name",
            ),
            (
                r#"{"name":"n","cniVersion":"7.0.0","plugins":[{"type":"x"}]}"#,
                "7.0.0",
            ),
        ] {
            write(d.path(), "bad.conflist", body);
            let err = load(d.path(), "n").unwrap_err().0;
            assert!(
                err.contains("bad.conflist") && err.contains(want),
                "{body}: {err}"
            );
        }
    }
}
