//! Security Association parameters (RFC 4301 §4.4.2), as the key manager installs them
//! with `add_sa`: SPI, direction, transforms and keys exactly as negotiated, ESN, replay
//! window, lifetimes, traffic selectors and tunnel endpoints.

use std::net::IpAddr;

use super::algorithms::{EncryptionAlgorithm, IntegrityAlgorithm};
use super::lifetime::LifetimeConfig;
use super::packet::RESERVED_SPI;
use super::selectors::TrafficSelector;
use crate::secret::SecretKey;

/// Default anti-replay window: wide enough for the reordering that parallel decryption and
/// multi-queue NICs cause. Tuning constant.
pub const DEFAULT_REPLAY_WINDOW: u32 = 4096;
/// Smallest window accepted; RFC 4303 §3.4.3 asks for at least 32 (64 recommended), and a
/// multi-threaded receiver needs far more. Tuning constant.
pub const MIN_REPLAY_WINDOW: u32 = 1024;

/// Whether an SA protects outgoing or checks incoming traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Inbound,
    Outbound,
}

/// UDP encapsulation ports (RFC 3948) when NAT traversal is in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UdpEncap {
    pub local_port: u16,
    pub remote_port: u16,
}

/// Outer addresses of a tunnel-mode SA (RFC 4301 §4.4.2 "tunnel header IP source and
/// destination address").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TunnelEndpoints {
    pub local: IpAddr,
    pub remote: IpAddr,
    /// `Some` for ESP-in-UDP, `None` for raw ESP (IP protocol 50).
    pub udp: Option<UdpEncap>,
}

/// Everything needed to install one SA.
#[derive(Debug, Clone)]
pub struct SaParams {
    pub spi: u32,
    pub direction: Direction,
    pub encryption: EncryptionAlgorithm,
    /// Encryption key as negotiated; for the AEADs key || 4-octet salt (RFC 4106 §8.1,
    /// RFC 7634 §4).
    pub enc_key: SecretKey,
    /// Integrity transform and key, for AES-CBC only.
    pub integrity: Option<(IntegrityAlgorithm, SecretKey)>,
    /// Extended (64-bit) sequence numbers (RFC 4303 §2.2.1).
    pub esn: bool,
    /// Anti-replay window in packets, inbound only; at least [`MIN_REPLAY_WINDOW`].
    pub replay_window: u32,
    pub lifetime: LifetimeConfig,
    /// Selectors for this end's side of the tunnel.
    pub local_ts: Vec<TrafficSelector>,
    /// Selectors for the peer's side.
    pub remote_ts: Vec<TrafficSelector>,
    pub tunnel: TunnelEndpoints,
}

impl SaParams {
    /// An SA with the defaults for everything but identity, algorithm and keys: no ESN,
    /// [`DEFAULT_REPLAY_WINDOW`], no lifetime limits, no selectors (which admit nothing
    /// inbound until set).
    pub fn new(
        spi: u32,
        direction: Direction,
        encryption: EncryptionAlgorithm,
        enc_key: &[u8],
        integrity: Option<(IntegrityAlgorithm, &[u8])>,
        tunnel: TunnelEndpoints,
    ) -> SaParams {
        SaParams {
            spi,
            direction,
            encryption,
            enc_key: SecretKey::from_slice(enc_key),
            integrity: integrity.map(|(a, k)| (a, SecretKey::from_slice(k))),
            esn: false,
            replay_window: DEFAULT_REPLAY_WINDOW,
            lifetime: LifetimeConfig::default(),
            local_ts: Vec::new(),
            remote_ts: Vec::new(),
            tunnel,
        }
    }

    /// Checks what can be checked without building the keys.
    pub fn validate(&self, want: Direction) -> Result<(), SaError> {
        if self.direction != want {
            return Err(SaError::WrongDirection);
        }
        if self.spi == RESERVED_SPI {
            return Err(SaError::ReservedSpi);
        }
        if want == Direction::Inbound && self.replay_window < MIN_REPLAY_WINDOW {
            return Err(SaError::ReplayWindowTooSmall(self.replay_window));
        }
        Ok(())
    }
}

/// Why SA parameters cannot be installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SaError {
    #[error("key is {got} bytes, the algorithm needs {expected}")]
    BadKeyLength { expected: usize, got: usize },
    #[error("AES-CBC needs an integrity algorithm")]
    MissingIntegrity,
    #[error("a combined-mode (AEAD) algorithm takes no integrity algorithm")]
    UnexpectedIntegrity,
    #[error("SPI 0 is reserved (RFC 4303 §2.1)")]
    ReservedSpi,
    #[error("replay window {0} is below the minimum")]
    ReplayWindowTooSmall(u32),
    #[error("SA direction does not match")]
    WrongDirection,
}

impl SaError {
    /// Stable code for logs and the control plane.
    pub fn code(&self) -> &'static str {
        match self {
            SaError::BadKeyLength { .. } => "bad_key_length",
            SaError::MissingIntegrity => "missing_integrity",
            SaError::UnexpectedIntegrity => "unexpected_integrity",
            SaError::ReservedSpi => "reserved_spi",
            SaError::ReplayWindowTooSmall(_) => "replay_window_too_small",
            SaError::WrongDirection => "wrong_direction",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_redacted() {
        let p = SaParams::new(
            0x1234,
            Direction::Inbound,
            EncryptionAlgorithm::AesCbc128,
            &[0xab; 16],
            Some((IntegrityAlgorithm::HmacSha256_128, &[0xcd; 32])),
            TunnelEndpoints {
                local: "192.0.2.1".parse().unwrap(),
                remote: "192.0.2.2".parse().unwrap(),
                udp: None,
            },
        );
        let s = format!("{p:?}");
        assert!(
            s.contains("<redacted 16 bytes>") && s.contains("<redacted 32 bytes>"),
            "{s}"
        );
        assert!(
            !s.contains("171") && !s.contains("ab, ab") && !s.contains("205"),
            "{s}"
        );
    }

    #[test]
    fn validation() {
        let t = TunnelEndpoints {
            local: "192.0.2.1".parse().unwrap(),
            remote: "192.0.2.2".parse().unwrap(),
            udp: None,
        };
        let mut p = SaParams::new(
            0,
            Direction::Inbound,
            EncryptionAlgorithm::AesGcm128,
            &[0; 20],
            None,
            t,
        );
        assert_eq!(p.validate(Direction::Inbound), Err(SaError::ReservedSpi));
        p.spi = 7;
        assert_eq!(
            p.validate(Direction::Outbound),
            Err(SaError::WrongDirection)
        );
        p.replay_window = 64;
        assert_eq!(
            p.validate(Direction::Inbound),
            Err(SaError::ReplayWindowTooSmall(64))
        );
        p.replay_window = 1024;
        assert_eq!(p.validate(Direction::Inbound), Ok(()));
    }
}
