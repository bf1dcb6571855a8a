//! Why the WireGuard device dropped a datagram or packet.

use super::messages::ParseError;

/// Why a datagram or packet was dropped. The data plane counts each under the stable code
/// `cvlan_dataplane::counters::DropReason` maps it to; the names live there, once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Shorter than its message type requires (or than any message).
    Truncated,
    /// Longer than any UDP payload can be.
    Oversized,
    /// Not one of the four message types, or non-zero reserved bytes.
    UnknownType,
    /// A handshake or cookie message of the wrong length.
    BadLength,
    /// MAC1 does not match our public key: not meant for us, or forged. Never answered.
    BadMac1,
    /// Under load without a valid MAC2: answered with a cookie reply instead.
    CookieRequired,
    /// Under load, valid MAC2, but the source address exceeded its handshake rate.
    RateLimited,
    /// A handshake message whose AEAD fields do not open (wrong keys, PSK mismatch, forgery).
    HandshakeDecrypt,
    /// An initiation from a static key that is not one of our peers.
    UnknownPeer,
    /// A Diffie-Hellman result was all zeros (low-order public key).
    LowOrder,
    /// An initiation whose timestamp is not newer than the last one (replay).
    StaleInitiation,
    /// Initiations from one peer faster than REKEY_MIN_INTERVAL.
    InitiationFlood,
    /// A response for no initiation of ours that is still pending.
    UnexpectedResponse,
    /// A cookie reply that does not open against the MAC1 we last sent.
    BadCookieReply,
    /// A transport or cookie message for a receiver index we do not have.
    UnknownReceiver,
    /// A transport message for an index whose handshake has not produced keys yet.
    DataBeforeHandshake,
    /// A transport message on a keypair older than REJECT_AFTER_TIME.
    KeypairExpired,
    /// A counter seen before inside the replay window.
    Replayed,
    /// A counter behind the replay window: cannot be told from a replay.
    TooOld,
    /// The transport message does not authenticate.
    DecryptFailed,
    /// A counter at or beyond REJECT_AFTER_MESSAGES.
    MessageLimit,
    /// The decrypted packet's source address is not in the peer's allowed IPs.
    SourceNotAllowed,
    /// No peer's allowed IPs cover the destination (or the peer is gone).
    NoRoute,
    /// The peer has no endpoint yet: it must contact us first.
    NoEndpoint,
    /// The device has no private key.
    NoIdentity,
    /// The peer's queue (MAX_QUEUED_PACKETS) overflowed while waiting for a handshake; the
    /// oldest packet went.
    QueueFull,
    /// A queued packet whose handshake was abandoned (§6.4).
    HandshakeTimeout,
    /// The decrypted payload is not an IP packet (reported by the caller).
    Malformed,
}

impl From<ParseError> for DropReason {
    fn from(e: ParseError) -> DropReason {
        match e {
            ParseError::Truncated => DropReason::Truncated,
            ParseError::Oversized => DropReason::Oversized,
            ParseError::UnknownType => DropReason::UnknownType,
            ParseError::BadLength => DropReason::BadLength,
        }
    }
}
