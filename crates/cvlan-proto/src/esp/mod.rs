//! ESP (RFC 4303) in tunnel mode, sans-I/O.
//!
//! - [`sa`]: SA parameters as the key manager installs them (`add_sa`).
//! - [`algorithms`]: AES-GCM-16 (RFC 4106), ChaCha20-Poly1305 (RFC 7634), AES-CBC (RFC 3602)
//!   with HMAC-SHA-256/384/512 (RFC 4868).
//! - [`esn`]: 64-bit extended sequence numbers (RFC 4303 §2.2.1, Appendix A).
//! - [`packet`]: header, padding and trailer layout.
//! - [`encap`] / [`decap`]: [`OutboundSa::seal`] and [`InboundSa::open`], in place on the
//!   caller's buffer, no allocation per packet, callable from many threads at once.
//! - [`selectors`]: inner packets against the SA's traffic selectors.
//! - [`lifetime`]: soft/hard byte, packet and time limits; counters for `query_sa`.
//! - [`udp_encap`]: RFC 3948 classification of port-4500 datagrams; raw ESP framing.
//!
//! Finding the SA for an SPI is the caller's table; this module only defines the reason
//! ([`DropReason::UnknownSpi`]) for it.

pub mod algorithms;
pub mod decap;
pub mod encap;
pub mod esn;
pub mod lifetime;
pub mod packet;
pub mod sa;
pub mod selectors;
pub mod udp_encap;

#[cfg(test)]
mod tests;

pub use crate::secret::SecretKey;
pub use algorithms::{EncryptionAlgorithm, IntegrityAlgorithm};
pub use decap::{InboundSa, Opened};
pub use encap::{OutboundSa, Sealed};
pub use lifetime::{Counters, LifetimeConfig, LifetimeEvent, Limits};
pub use sa::{Direction, SaError, SaParams, TunnelEndpoints, UdpEncap};
pub use selectors::{SelectorRange, TrafficSelector};

/// Why a packet was not delivered. The data plane counts each under the stable code
/// `cvlan_dataplane::counters::DropReason` maps it to; the names live there, once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum DropReason {
    /// No SA for the packet's SPI (the caller's lookup), or the SPI does not match the SA.
    #[error("unknown SPI")]
    UnknownSpi,
    /// Shorter than header, IV, trailer and ICV (or not whole cipher blocks).
    #[error("truncated ESP packet")]
    Truncated,
    /// ICV / AEAD tag did not verify (RFC 4303 §3.4.4).
    #[error("authentication failed")]
    AuthFailed,
    /// Sequence number already received (RFC 4303 §3.4.3).
    #[error("replayed packet")]
    Replayed,
    /// Sequence number behind the anti-replay window.
    #[error("sequence number behind the replay window")]
    TooOld,
    /// Pad Length beyond the payload or pad bytes not 1, 2, 3, … (RFC 4303 §2.4).
    #[error("bad padding")]
    BadPadding,
    /// Next Header neither IPv4 (4) nor IPv6 (41) in tunnel mode.
    #[error("bad next header")]
    BadNextHeader,
    /// RFC 4303 §2.6: a dummy packet (Next Header 59), silently discarded.
    #[error("dummy packet")]
    DummyPacket,
    /// The inner packet is not a well-formed IP packet of the announced version.
    #[error("inner packet malformed")]
    InnerMalformed,
    /// The inner packet's addresses are outside the SA's traffic selectors.
    #[error("outside traffic selectors")]
    OutsideSelectors,
    /// The SA is past its hard lifetime.
    #[error("SA expired")]
    SaExpired,
    /// The sequence number space is exhausted (RFC 4303 §3.3.3); the SA needs a rekey.
    #[error("sequence number overflow")]
    SequenceOverflow,
    /// The SA reached its HA counter lease (what the standby acknowledged plus the lease):
    /// it sends nothing more until the lease moves or a rekey replaces it.
    #[error("HA counter lease exhausted")]
    LeaseExhausted,
    /// The caller's buffer lacks head- or tailroom for the ESP framing.
    #[error("buffer too small")]
    BufferTooSmall,
}
