//! Errors of the data plane. Every error carries one of the stable codes shared with the
//! TypeScript side (`src/errors.ts`); the Node-API binding throws with the code verbatim.

use std::io;

/// Stable error codes (the `CVLAN_ERR_*` strings of `src/errors.ts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    InvalidArg,
    NoTun,
    TunBusy,
    Tun,
    AddrInUse,
    Socket,
    Permission,
    Worker,
    Closed,
    State,
    Internal,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::InvalidArg => "CVLAN_ERR_INVALID_ARG",
            Code::NoTun => "CVLAN_ERR_NO_TUN",
            Code::TunBusy => "CVLAN_ERR_TUN_BUSY",
            Code::Tun => "CVLAN_ERR_TUN",
            Code::AddrInUse => "CVLAN_ERR_ADDR_IN_USE",
            Code::Socket => "CVLAN_ERR_SOCKET",
            Code::Permission => "CVLAN_ERR_PERMISSION",
            Code::Worker => "CVLAN_ERR_WORKER",
            Code::Closed => "CVLAN_ERR_CLOSED",
            Code::State => "CVLAN_ERR_STATE",
            Code::Internal => "CVLAN_ERR_INTERNAL",
        }
    }
}

/// A data-plane error: a stable code and a message naming the cause.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    pub code: Code,
    pub message: String,
}

impl Error {
    pub fn new(code: Code, message: impl Into<String>) -> Error {
        Error {
            code,
            message: message.into(),
        }
    }

    /// Wraps an OS error, choosing the code from errno where it names a cause the user can fix.
    pub fn os(default: Code, what: impl std::fmt::Display, err: io::Error) -> Error {
        let code = match err.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => Code::Permission,
            Some(libc::EADDRINUSE) => Code::AddrInUse,
            _ => default,
        };
        let hint = match code {
            Code::Permission => " (needs root or CAP_NET_ADMIN)",
            _ => "",
        };
        Error::new(code, format!("{what}: {err}{hint}"))
    }
}

pub type Result<T> = std::result::Result<T, Error>;
