//! The crate's error: every module's error composed, and the one mapping to spec codes.

use crate::spec::Code;
use crate::{ipmasq, netlink, ns};

/// Any failure a plugin reports. [`Error::code`] is the only place that
/// decides which spec code a failure carries.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A failure whose code the caller chose (configuration and environment checks).
    #[error("{msg}")]
    Spec {
        code: Code,
        msg: String,
        details: String,
    },
    #[error(transparent)]
    Ns(#[from] ns::Error),
    #[error(transparent)]
    Netlink(#[from] netlink::Error),
    #[error(transparent)]
    Ipmasq(#[from] ipmasq::Error),
    /// A file operation, naming the file.
    #[error("{what} {path}: {source}")]
    File {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
}

/// Shorthand for results whose error is the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error with an explicit spec code and message.
    pub fn new(code: Code, msg: impl Into<String>) -> Self {
        Error::Spec {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    /// An error with an explicit spec code, message and details.
    pub fn with_details(code: Code, msg: impl Into<String>, details: impl Into<String>) -> Self {
        Error::Spec {
            code,
            msg: msg.into(),
            details: details.into(),
        }
    }

    /// A configuration that is well-formed but invalid (code 7).
    pub fn invalid_config(msg: impl Into<String>) -> Self {
        Error::new(Code::InvalidConfig, msg)
    }

    /// A missing or invalid `CNI_*` variable (code 4).
    pub fn invalid_env(msg: impl Into<String>) -> Self {
        Error::new(Code::InvalidEnvironment, msg)
    }

    /// A failed file operation (code 5), naming the file.
    pub fn file(
        what: &'static str,
        path: impl AsRef<std::path::Path>,
        source: std::io::Error,
    ) -> Self {
        Error::File {
            what,
            path: path.as_ref().display().to_string(),
            source,
        }
    }

    /// The spec code this failure is reported with.
    pub fn code(&self) -> Code {
        match self {
            Error::Spec { code, .. } => *code,
            Error::Ns(ns::Error::NotFound { .. }) => Code::UnknownContainer,
            Error::Ns(ns::Error::NotNetns { .. } | ns::Error::OwnNamespace { .. }) => {
                Code::InvalidEnvironment
            }
            Error::Ns(_) | Error::Netlink(_) | Error::Ipmasq(_) => Code::Internal,
            Error::File { .. } => Code::Io,
        }
    }

    /// The `details` string of the error JSON.
    pub fn details(&self) -> &str {
        match self {
            Error::Spec { details, .. } => details,
            _ => "",
        }
    }
}
