//! WireGuard without I/O, in files named after the whitepaper's concepts:
//!
//! - [`constants`]: §5.4/§6 constants, apart from this implementation's tuning choices.
//! - [`crypto`]: HASH, MAC, HMAC, KDF, AEAD, XAEAD, DH (§5.4) on well-kept crates.
//! - [`messages`]: wire formats (§5.4.2–5.4.7); parsing never panics.
//! - [`tai64n`]: initiation timestamps (replay protection of initiations).
//! - [`handshake`]: Noise_IKpsk2 as an explicit state machine (initiator and responder).
//! - [`cookie`]: MAC1 always, MAC2 and cookie replies under load (§5.3, §5.4.4, §5.4.7).
//! - [`gate`]: the responder's front door for handshake messages (MAC1, cookies under load,
//!   the per-source limit), shared without the device's lock.
//! - [`session`]: transport keypairs (current/previous/next) and the in-place seal/open.
//! - [`timers`]: the §6 timers as deadlines.
//! - [`allowed_ips`]: cryptokey routing (§3), a longest-prefix trie per address family.
//! - [`drop_reason`]: why a datagram or packet was dropped.
//! - [`device`]: everything together, driven by the data plane (peers, send, receive,
//!   handshake dispatch, timers).
//!
//! No sockets, threads or clock reads: time ([`Time`]: a monotonic `now` plus wall-clock time
//! for TAI64N) and randomness (`&mut impl RngCore + CryptoRng`) are arguments, so two devices
//! run against each other on a virtual clock in the tests.
//!
//! # Call order
//!
//! The [`Device`] is `&mut self` and lives under the data plane's lock; a [`Keypair`] is
//! `Send + Sync` and does its AEAD work outside that lock. Per batch of packets:
//!
//! 1. **Outgoing IP packet**: `route(dst)` → `prepare_send(peer, packet, time, rng, out)`.
//!    [`SendPlan::Encrypt`] hands out the keypair, a counter already reserved and the endpoint:
//!    release the lock, then [`Keypair::seal`] into the caller's buffer (16 bytes of headroom
//!    before the packet, room for padding to 16 and the 16-byte tag after it), send, and add
//!    the sealed length with `count_tx`. [`SendPlan::Queued`] means the packet waits in the
//!    peer's bounded queue for a handshake (whose initiation is in `out`);
//!    [`SendPlan::Drop`] names why not.
//! 2. **Incoming transport message** (type 4, see [`messages::parse`]): `lookup_receiver(index,
//!    time)` under the lock → release → [`Keypair::open`] in place (replay check before the
//!    AEAD, window update after) → lock → `received_data(peer, &keypair, src, wire_len,
//!    inner_len, time, rng, out)` (confirms a responder's new keypair, follows the endpoint to
//!    `src`, runs timers, may flush the queue) → `allowed_src(peer, inner_src)` before the
//!    packet goes to TUN.
//! 3. **Incoming handshake or cookie message**: without the lock, [`HandshakeGate::admit`]
//!    (the device's `gate()`, with `note_message` deciding "under load"): a cookie reply to
//!    send, a drop, or admitted → under the lock `handle_admitted(src, datagram, time, rng,
//!    out)`. `handle_handshake` does both in one call (with the `under_load` field).
//! 4. **Timers**: `update_timers(time, rng, out)` no later than `poll_timeout()`.
//!
//! Everything for the wire lands in [`Outbox::datagrams`], events in [`Outbox::events`],
//! drops decided inside the device in [`Outbox::drops`]; every drop is a [`DropReason`]
//! (the data plane's counters give each a stable label). Nothing unauthenticated is answered, except by a cookie reply under load.

pub mod allowed_ips;
pub mod constants;
pub mod cookie;
pub mod crypto;
pub mod device;
pub mod drop_reason;
pub mod gate;
pub mod handshake;
pub mod messages;
pub mod session;
pub mod tai64n;
pub mod timers;

#[cfg(test)]
mod tests;

pub use device::{
    Device, Event, Outbox, PeerConfig, PeerId, PeerStatus, PeerTraffic, SendPlan, SessionRecord,
    SessionSlot, Time,
};
pub use drop_reason::DropReason;
pub use gate::{Admission, HandshakeGate};
pub use session::Keypair;
