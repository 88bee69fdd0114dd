//! The network configuration a plugin reads on stdin.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Code, Dns, NetResult, Version};
use crate::{Error, Result};

/// The keys every plugin's configuration shares. Keys this struct does not
/// name are kept in [`NetConf::extra`] for the plugin to read with
/// [`NetConf::plugin_fields`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetConf {
    /// As written; [`NetConf::version`] is the parsed form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cni_version: Option<String>,
    #[serde(default)]
    pub name: String,
    #[serde(default, rename = "type")]
    pub plugin_type: String,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub capabilities: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipam: Option<IpamConf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Dns>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ip_masq: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Value>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub runtime_config: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_result: Option<Value>,
    /// Every key not named above, for the plugin.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The `ipam` section: the IPAM plugin's `type`, and its own keys.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IpamConf {
    #[serde(default, rename = "type")]
    pub plugin_type: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl NetConf {
    /// Parses stdin: malformed JSON is code 6, a missing or invalid `name`
    /// or `type` is code 7, an unknown `cniVersion` is code 1.
    pub fn parse(bytes: &[u8]) -> Result<NetConf> {
        let conf: NetConf = decode(bytes, "network configuration")?;
        conf.version()?;
        if conf.plugin_type.is_empty() {
            return Err(Error::invalid_config(
                "network configuration has no \"type\"",
            ));
        }
        if conf.name.is_empty() {
            return Err(Error::invalid_config(
                "network configuration has no \"name\"",
            ));
        }
        validate_network_name(&conf.name)?;
        Ok(conf)
    }

    /// The configuration's version; a configuration without `cniVersion` is 0.1.0.
    pub fn version(&self) -> Result<Version> {
        match &self.cni_version {
            None => Ok(Version::IMPLICIT),
            Some(s) if s.is_empty() => Ok(Version::IMPLICIT),
            Some(s) => s.parse().map_err(|e: super::UnknownVersion| {
                Error::with_details(
                    Code::IncompatibleVersion,
                    format!("incompatible CNI versions: {e}"),
                    format!("config is {s:?}"),
                )
            }),
        }
    }

    /// Reads the plugin's own keys as `T`. A wrong type names the field and
    /// the value at fault (code 7).
    pub fn plugin_fields<T: DeserializeOwned>(&self) -> Result<T> {
        from_value(Value::Object(self.extra.clone()), &self.plugin_type)
    }

    /// The `prevResult`, read in the configuration's version.
    pub fn prev_result(&self) -> Result<Option<NetResult>> {
        let Some(prev) = &self.prev_result else {
            return Ok(None);
        };
        NetResult::from_json(prev, self.version()?)
            .map(Some)
            .map_err(|e| Error::new(Code::Decoding, format!("prevResult: {e}")))
    }

    /// A `runtimeConfig` key, present only when the plugin declared the
    /// matching capability (the runtime fills it in from the capability).
    pub fn runtime<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        match self.runtime_config.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => from_value(v.clone(), &format!("runtimeConfig.{key}")).map(Some),
        }
    }

    /// GC's `cni.dev/valid-attachments`: the attachments whose resources
    /// must be kept. Missing is an error (code 7): a GC that guessed would
    /// release everything.
    pub fn valid_attachments(&self) -> Result<Vec<Attachment>> {
        const KEY: &str = "cni.dev/valid-attachments";
        match self.extra.get(KEY) {
            None | Some(Value::Null) => Err(Error::invalid_config(format!(
                "GC needs {KEY:?} in the configuration"
            ))),
            Some(v) => from_value(v.clone(), KEY),
        }
    }

    /// A key under `args.cni` (the conventions' way to pass per-container arguments).
    pub fn cni_arg<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        match self
            .args
            .as_ref()
            .and_then(|a| a.get("cni"))
            .and_then(|c| c.get(key))
        {
            None | Some(Value::Null) => Ok(None),
            Some(v) => from_value(v.clone(), &format!("args.cni.{key}")).map(Some),
        }
    }
}

/// Decodes JSON as `T`; malformed input is code 6, a wrong field is code 7
/// naming the field's path.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| Error::new(Code::Decoding, format!("{what} is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(Error::new(
            Code::Decoding,
            format!("{what} is not a JSON object"),
        ));
    }
    from_value(value, what)
}

/// Reads `value` as `T`, naming the path of a field of the wrong type (code 7).
pub fn from_value<T: DeserializeOwned>(value: Value, what: &str) -> Result<T> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            Error::invalid_config(format!("{what}: {inner}"))
        } else {
            Error::invalid_config(format!("{what}: field {path}: {inner}"))
        }
    })
}

/// Checks a network name as the spec defines it: letters, digits, `_`, `.`
/// and `-`, starting with a letter or digit. The name becomes a directory
/// name (host-local) and part of rule names, so this is a safety check too.
pub fn validate_network_name(name: &str) -> Result<()> {
    if is_safe_identifier(name) {
        Ok(())
    } else {
        Err(Error::invalid_config(format!(
            "invalid network name {name:?}: only letters, digits, '_', '.' and '-' are allowed, starting with a letter or digit"
        )))
    }
}

/// Letters, digits, `_`, `.` and `-`, starting with a letter or digit: the
/// spec's rule for container ids and network names.
pub fn is_safe_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphanumeric() => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// One attachment: a container id and the interface name it was attached with.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// `CNI_ARGS`: `KEY=VALUE` pairs separated by `;`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs(pub Vec<(String, String)>);

impl CniArgs {
    /// Parses `CNI_ARGS`; a pair without `=` is code 4 naming it.
    pub fn parse(s: &str) -> Result<CniArgs> {
        let mut pairs = Vec::new();
        for pair in s.split(';').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').ok_or_else(|| {
                Error::invalid_env(format!("CNI_ARGS: {pair:?} is not KEY=VALUE"))
            })?;
            pairs.push((k.to_string(), v.to_string()));
        }
        Ok(CniArgs(pairs))
    }

    /// The value of `key`, if given.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_netconf_parse_keeps_unknown_keys() {
        let conf = NetConf::parse(
            br#"{"cniVersion":"1.0.0","name":"n","type":"bridge","bridge":"br0","ipMasq":true}"#,
        )
        .unwrap();
        assert_eq!(conf.version().unwrap(), Version::V1_0_0);
        assert!(conf.ip_masq);
        assert_eq!(conf.extra["bridge"], "br0");
    }

    #[test]
    fn test_netconf_parse_errors_have_codes() {
        let code = |b: &[u8]| NetConf::parse(b).unwrap_err().code();
        assert_eq!(code(b"{"), Code::Decoding);
        assert_eq!(code(b"[]"), Code::Decoding);
        assert_eq!(code(br#"{"name":"n"}"#), Code::InvalidConfig);
        assert_eq!(code(br#"{"type":"t"}"#), Code::InvalidConfig);
        assert_eq!(code(br#"{"name":"../x","type":"t"}"#), Code::InvalidConfig);
        assert_eq!(
            code(br#"{"cniVersion":"9.9.9","name":"n","type":"t"}"#),
            Code::IncompatibleVersion
        );
    }

    #[test]
    fn test_netconf_missing_version_is_010() {
        let conf = NetConf::parse(br#"{"name":"n","type":"t"}"#).unwrap();
        assert_eq!(conf.version().unwrap(), Version::V0_1_0);
    }

    #[test]
    fn test_plugin_fields_names_the_field() {
        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        struct P {
            mtu: Option<u32>,
        }
        let conf = NetConf::parse(br#"{"name":"n","type":"bridge","mtu":"big"}"#).unwrap();
        let err = conf.plugin_fields::<P>().unwrap_err();
        assert_eq!(err.code(), Code::InvalidConfig);
        assert!(err.to_string().contains("mtu"), "{err}");
    }

    #[test]
    fn test_valid_attachments() {
        let conf = NetConf::parse(
            br#"{"cniVersion":"1.1.0","name":"n","type":"t","cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}]}"#,
        )
        .unwrap();
        assert_eq!(
            conf.valid_attachments().unwrap(),
            vec![Attachment {
                container_id: "a".into(),
                ifname: "eth0".into()
            }]
        );
        let conf = NetConf::parse(br#"{"cniVersion":"1.1.0","name":"n","type":"t"}"#).unwrap();
        assert_eq!(
            conf.valid_attachments().unwrap_err().code(),
            Code::InvalidConfig
        );
    }

    #[test]
    fn test_network_name_rules() {
        for ok in ["a", "net-1", "my_net.v2", "0"] {
            assert!(validate_network_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "../x", "a/b", ".hidden", "-x", "a b", "a:b"] {
            assert!(validate_network_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn test_cni_args_parse() {
        let a = CniArgs::parse("IgnoreUnknown=1;IP=10.0.0.5").unwrap();
        assert_eq!(a.get("IP"), Some("10.0.0.5"));
        assert_eq!(a.get("MAC"), None);
        assert_eq!(
            CniArgs::parse("novalue").unwrap_err().code(),
            Code::InvalidEnvironment
        );
    }
}
