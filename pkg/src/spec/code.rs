//! The spec's numeric error codes.

use serde::{Serialize, Serializer};

/// An error code as the spec numbers it (0-99 are the spec's; 999 is the
/// reference plugins' code for everything else, kept so runtimes see the same
/// codes from either implementation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// 1: the configuration's `cniVersion` is not one the plugin speaks, or
    /// the verb does not exist in that version.
    IncompatibleVersion,
    /// 2: a field of the configuration is not supported.
    UnsupportedField,
    /// 3: the container or its namespace does not exist; the runtime need not clean up.
    UnknownContainer,
    /// 4: a `CNI_*` environment variable is missing or invalid.
    InvalidEnvironment,
    /// 5: reading or writing a file failed.
    Io,
    /// 6: stdin (or a result) is not valid JSON of the expected shape.
    Decoding,
    /// 7: the configuration is well-formed but not valid.
    InvalidConfig,
    /// 11: a transient condition; the runtime may retry.
    TryAgainLater,
    /// 50: STATUS: the plugin cannot serve ADDs now.
    NotAvailable,
    /// 51: STATUS: the plugin can serve ADDs, with limited connectivity.
    LimitedConnectivity,
    /// 999: anything else (a kernel refusal, an unexpected failure).
    Internal,
    /// Any other number, passed through from a delegated plugin's error.
    Other(u32),
}

impl Code {
    /// The number written in the error JSON.
    pub fn number(self) -> u32 {
        match self {
            Code::IncompatibleVersion => 1,
            Code::UnsupportedField => 2,
            Code::UnknownContainer => 3,
            Code::InvalidEnvironment => 4,
            Code::Io => 5,
            Code::Decoding => 6,
            Code::InvalidConfig => 7,
            Code::TryAgainLater => 11,
            Code::NotAvailable => 50,
            Code::LimitedConnectivity => 51,
            Code::Internal => 999,
            Code::Other(n) => n,
        }
    }

    /// The code a number stands for (what a delegated plugin reported).
    pub fn from_number(n: u32) -> Code {
        [
            Code::IncompatibleVersion,
            Code::UnsupportedField,
            Code::UnknownContainer,
            Code::InvalidEnvironment,
            Code::Io,
            Code::Decoding,
            Code::InvalidConfig,
            Code::TryAgainLater,
            Code::NotAvailable,
            Code::LimitedConnectivity,
            Code::Internal,
        ]
        .into_iter()
        .find(|c| c.number() == n)
        .unwrap_or(Code::Other(n))
    }
}

impl Serialize for Code {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(self.number())
    }
}
