//! Wire format between the charon plugin "cvlan" and the data plane, version 1.
//!
//! Pure encode/decode, no I/O. The normative description is
//! `docs/charon-plugin-protocol.md`; the C side is `native/strongswan/cvlan_ipc.c`.
//!
//! Every frame is `length:u32 | type:u16 | flags:u16 | id:u32 | body`, big-endian, where
//! `length` counts the bytes after itself. Requests go from the plugin to the data plane and
//! are answered by a response of the same type with [`RESPONSE_BIT`] set and the same `id`,
//! whose body starts with a [`Status`] byte. `IKE_PACKET` (both ways) and `EXPIRE` (data plane
//! to plugin) are events: `id` 0, never answered.
//!
//! - `types.rs`: the messages as Rust types (requests, replies, events, their fields).
//! - `codec.rs`: frames to bytes and back; decoding never panics on any input.

mod codec;
mod types;

pub use codec::{decode, encode, frame_len};
pub use cvlan_proto::secret::SecretKey;
pub use types::*;

/// Bumped on any incompatible change; both ends refuse a peer with another version.
pub const PROTOCOL_VERSION: u16 = 1;

/// Bytes of the frame header after the length word: type, flags, id.
pub const HEADER_LEN: usize = 8;
/// Largest IKE message carried: a UDP payload can be no larger.
pub const MAX_IKE_PACKET: usize = 65_535;
/// Largest value of the length word: an IKE packet plus two addresses and the header, rounded
/// up. Anything larger is a corrupt stream.
pub const MAX_FRAME: usize = MAX_IKE_PACKET + 1024;
/// Bound on traffic selectors per list; charon narrows to a handful in practice.
pub const MAX_TS: usize = 64;
/// Bound on a key: the largest ESP key charon derives (AES-256 + salt, HMAC-SHA2-512) is 64 bytes.
pub const MAX_KEY: usize = 256;
/// IFNAMSIZ - 1.
pub const MAX_IFNAME: usize = 15;
/// Bound on the free-form software name in HELLO.
pub const MAX_NAME: usize = 64;

/// Set in the type of every response.
pub const RESPONSE_BIT: u16 = 0x8000;

/// IANA IP protocol numbers charon passes as the SA protocol (RFC 4303, RFC 4302).
pub const PROTO_ESP: u8 = 50;
pub const PROTO_AH: u8 = 51;

#[cfg(test)]
mod tests;
