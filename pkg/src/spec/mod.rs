//! The CNI contract as types: versions, error codes, configuration, results.

mod code;
mod conf;
mod result;
mod version;

pub use code::Code;
pub use conf::{
    decode, from_value, is_safe_identifier, validate_network_name, Attachment, CniArgs, IpamConf,
    NetConf,
};
pub use result::{Dns, Interface, IpConfig, NetResult, Route};
pub use version::{UnknownVersion, Version};
