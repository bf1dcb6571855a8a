//! The connection to charon's "cvlan" plugin (`native/strongswan/`).
//!
//! charon negotiates IKE; the data plane owns UDP 500/4500 and the SAs. The plugin turns
//! charon's kernel-IPsec calls into requests on a unix socket and exchanges IKE packets over
//! the same connection. [`protocol`] is the wire format (pure), [`server`] the socket end.
//! `docs/charon-plugin-protocol.md` is the specification both sides follow.

pub mod protocol;
pub mod server;

pub use protocol::{
    AddSa, Expire, IkePacket, Policy, PolicyId, SaId, SaStats, SecretKey, Status, UpdateSa,
};
pub use server::{CharonHandle, CharonServer, SaBackend};
