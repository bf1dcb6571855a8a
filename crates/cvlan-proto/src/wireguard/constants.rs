//! Constants of the WireGuard protocol, with the whitepaper section that defines each, kept
//! apart from this implementation's tuning choices.

use std::time::Duration;

// ---- Specification (WireGuard whitepaper, §5.4 "Messages" and §6 "Timers") ----

/// §5.4: the Noise protocol name, hashed into the initial chaining key.
pub const CONSTRUCTION: &[u8] = b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s";
/// §5.4: mixed into the initial hash after the construction.
pub const IDENTIFIER: &[u8] = b"WireGuard v1 zx2c4 Jason@zx2c4.com";
/// §5.4.4: label of the MAC1 key, HASH(LABEL_MAC1 || responder's static public key).
pub const LABEL_MAC1: &[u8] = b"mac1----";
/// §5.4.7: label of the cookie encryption key.
pub const LABEL_COOKIE: &[u8] = b"cookie--";

/// §5.4.2–5.4.6: message types (little-endian u32 with three zero bytes).
pub const MSG_INITIATION: u8 = 1;
pub const MSG_RESPONSE: u8 = 2;
pub const MSG_COOKIE_REPLY: u8 = 3;
pub const MSG_TRANSPORT: u8 = 4;

/// §5.4.2: handshake initiation size.
pub const INITIATION_LEN: usize = 148;
/// §5.4.3: handshake response size.
pub const RESPONSE_LEN: usize = 92;
/// §5.4.7: cookie reply size.
pub const COOKIE_REPLY_LEN: usize = 64;
/// §5.4.6: transport header (type, reserved, receiver, counter) before the ciphertext.
pub const TRANSPORT_HEADER_LEN: usize = 16;
/// Poly1305 tag length.
pub const TAG_LEN: usize = 16;
/// §5.4.6: plaintext is zero-padded to a multiple of 16 bytes.
pub const PADDING_MULTIPLE: usize = 16;
/// A transport message carrying an empty (keepalive) packet.
pub const KEEPALIVE_LEN: usize = TRANSPORT_HEADER_LEN + TAG_LEN;

/// §6.1: a keypair is rekeyed after this many messages (2^60)...
pub const REKEY_AFTER_MESSAGES: u64 = 1 << 60;
/// ...and refused after this many (2^64 − 2^13 − 1, so the counter never wraps and stays clear
/// of the top of the replay window).
pub const REJECT_AFTER_MESSAGES: u64 = u64::MAX - (1 << 13);
/// §6.1: the initiator rekeys a keypair this old when it sends.
pub const REKEY_AFTER_TIME: Duration = Duration::from_secs(120);
/// §6.1: keypairs older than this are never used.
pub const REJECT_AFTER_TIME: Duration = Duration::from_secs(180);
/// §6.4: give up retrying a handshake after this long.
pub const REKEY_ATTEMPT_TIME: Duration = Duration::from_secs(90);
/// §6.4: retransmit an unanswered initiation after this long (plus jitter).
pub const REKEY_TIMEOUT: Duration = Duration::from_secs(5);
/// §6.5: send a keepalive if data was received but nothing sent for this long.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// §5.4.7: the cookie secret and received cookies are valid this long.
pub const COOKIE_REFRESH_TIME: Duration = Duration::from_secs(120);

// ---- Implementation choices ----

/// Initiations from one peer closer together than this are refused as a flood (the §5.3 cookie
/// defence works per source address; this also bounds the work one peer's key can cause).
pub const REKEY_MIN_INTERVAL: Duration = Duration::from_millis(20);
/// §6.4 gives up after REKEY_ATTEMPT_TIME; counted in retransmissions (as the reference
/// implementations do) so a late timer tick cannot buy an extra attempt.
pub const MAX_TIMER_HANDSHAKES: u32 =
    (REKEY_ATTEMPT_TIME.as_secs() / REKEY_TIMEOUT.as_secs()) as u32;
/// Anti-replay window of transport counters (≥ 2048 required; wide because workers and the
/// host's queues reorder).
pub const REPLAY_WINDOW: u64 = 8192;
/// Packets queued per peer while a handshake is pending; older ones are dropped first.
pub const MAX_QUEUED_PACKETS: usize = 1024;
/// Upper bound of the random jitter added to REKEY_TIMEOUT (§6.4 suggests up to 333 ms).
pub const REKEY_TIMEOUT_JITTER_MAX_MS: u64 = 334;
/// Handshake messages per second from one source address before it is rate-limited.
pub const HANDSHAKES_PER_SECOND: u32 = 20;
/// Burst of handshake messages per source address.
pub const HANDSHAKE_BURST: u32 = 5;
/// Source addresses the handshake rate limiter tracks at once; beyond that, new sources are
/// refused until idle ones are forgotten (bounds memory under a spoofed-source flood).
pub const HANDSHAKE_SOURCES_TRACKED: usize = 65_536;
/// Datagrams larger than this are not WireGuard (65535 minus IPv6/UDP headers).
pub const MAX_DATAGRAM: usize = 65535 - 48;
