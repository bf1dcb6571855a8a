//! A WireGuard device without I/O: identity, peers, receiver indices, cryptokey routing,
//! handshakes, timers and cookies, in files named after those concepts:
//!
//! - this file: the [`Device`] itself, its clocks ([`Time`]), receiver indices and output.
//! - `peers.rs`: peer configuration, cryptokey routing and status.
//! - `send.rs`: outgoing packets, initiations, queued packets and keepalives.
//! - `receive.rs`: incoming transport messages.
//! - `handshake_dispatch.rs`: incoming initiations, responses and cookie replies.
//! - `timers.rs`: firing the §6 deadlines.
//!
//! The call order is in the module docs of [`super`]; in short: `route` → `prepare_send` →
//! seal outside the lock; `lookup_receiver` → open outside the lock → `received_data` →
//! `allowed_src`; `gate().admit` → `handle_admitted` (or
//! `handle_handshake`, both in one) for message types 1–3; `update_timers` by `poll_timeout`.

mod ha;
mod handshake_dispatch;
mod peers;
mod receive;
mod send;
mod timers;

pub use ha::{SessionRecord, SessionSlot};
pub use peers::{PeerConfig, PeerStatus, PeerTraffic};
pub use send::SendPlan;

use super::allowed_ips::AllowedIps;
use super::constants::*;
use super::drop_reason::DropReason;
use super::gate::HandshakeGate;
use super::handshake::{Identity, PeerKeys};
use super::session::{Keypair, Session};
use super::tai64n::{self, Tai64n};
use peers::Peer;
use rand_core::RngCore;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub type PeerId = u32;

/// The two clocks the protocol needs: monotonic time for timers, wall time for TAI64N
/// timestamps and for reporting the last handshake (both since arbitrary / Unix epochs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Time {
    pub mono: Duration,
    pub unix: Duration,
}

/// Something the control plane may want to log or count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    HandshakeComplete {
        peer: PeerId,
        initiator: bool,
    },
    /// REKEY_ATTEMPT_TIME passed without an answer: queued packets were dropped.
    HandshakeGaveUp {
        peer: PeerId,
    },
    /// A peer's endpoint changed to the source of an authenticated packet (roaming).
    EndpointChanged {
        peer: PeerId,
        endpoint: SocketAddr,
    },
    /// §6.3: 3 × REJECT_AFTER_TIME without a new session; every key of the peer is gone.
    KeysZeroed {
        peer: PeerId,
    },
}

/// What the device wants sent and reported.
#[derive(Debug, Default)]
pub struct Outbox {
    pub datagrams: Vec<(Vec<u8>, SocketAddr)>,
    pub events: Vec<Event>,
    /// Drops decided inside the device (e.g. queue overflow), for the caller's counters.
    pub drops: Vec<DropReason>,
}

/// What a receiver index we handed out (§5.4.2) stands for: a pending initiation or a keypair.
enum Index {
    Handshake(PeerId),
    Keypair(PeerId, Arc<Keypair>),
}

/// The sans-I/O WireGuard device.
pub struct Device {
    identity: Option<Identity>,
    peers: HashMap<PeerId, Peer>,
    by_key: HashMap<[u8; 32], PeerId>,
    indices: HashMap<u32, Index>,
    allowed: AllowedIps<PeerId>,
    /// MAC1, cookies and the per-source limit; shared with the workers, who consult it
    /// without the lock this device lives under.
    gate: Arc<HandshakeGate>,
    next_peer: PeerId,
    /// Set by the caller when handshake processing is saturated: MAC2 becomes mandatory.
    pub under_load: bool,
    /// HA counter lease: the send limit of every new keypair (`None`: no limit but the
    /// protocol's own). The HA sync raises it as the standby acknowledges counters.
    pub send_lease: Option<u64>,
}

impl Default for Device {
    fn default() -> Device {
        Device {
            identity: None,
            peers: HashMap::new(),
            by_key: HashMap::new(),
            indices: HashMap::new(),
            allowed: AllowedIps::default(),
            gate: Arc::new(HandshakeGate::default()),
            next_peer: 0,
            under_load: false,
            send_lease: None,
        }
    }
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("peers", &self.peers.len())
            .field("identity", &self.identity)
            .finish()
    }
}

fn jitter<R: RngCore>(rng: &mut R) -> Duration {
    Duration::from_millis(rng.next_u64() % REKEY_TIMEOUT_JITTER_MAX_MS)
}

/// The current keypair if it may still send (§6.2: REJECT_AFTER_TIME and _MESSAGES).
fn usable(session: &Session, now: Duration) -> Option<Arc<Keypair>> {
    session
        .current
        .as_ref()
        .filter(|kp| now.saturating_sub(kp.created) < REJECT_AFTER_TIME && !kp.send_exhausted())
        .cloned()
}

fn tai(t: Time) -> Tai64n {
    tai64n::encode(t.unix.as_secs(), t.unix.subsec_nanos())
}

impl Device {
    pub fn new(private_key: Option<[u8; 32]>) -> Device {
        let mut d = Device::default();
        d.set_private_key(private_key);
        d
    }

    pub fn public_key(&self) -> Option<[u8; 32]> {
        self.identity.as_ref().map(|i| i.public)
    }

    pub fn private_key(&self) -> Option<zeroize::Zeroizing<[u8; 32]>> {
        self.identity.as_ref().map(|i| i.private_bytes())
    }

    /// Replaces the identity. Sessions and pending handshakes end (they were bound to the old
    /// key); a peer with our own new public key is removed, as WireGuard does.
    pub fn set_private_key(&mut self, key: Option<[u8; 32]>) {
        if key.is_some()
            && self.identity.as_ref().map(|i| i.private_bytes()).as_deref() == key.as_ref()
        {
            return;
        }
        self.identity = key.map(Identity::new);
        self.gate.set_identity(self.identity.as_ref());
        if let Some(own) = self.public_key() {
            if let Some(id) = self.by_key.get(&own).copied() {
                self.remove_peer(id);
            }
        }
        let ids: Vec<PeerId> = self.peers.keys().copied().collect();
        for id in ids {
            self.reset_peer(id);
            let identity = self.identity.as_ref();
            if let Some(p) = self.peers.get_mut(&id) {
                p.keys = PeerKeys::new(
                    identity,
                    p.cfg.public_key,
                    p.cfg.preshared_key.unwrap_or([0; 32]),
                );
            }
        }
    }

    fn new_index<R: RngCore>(&mut self, rng: &mut R) -> u32 {
        loop {
            let i = rng.next_u32();
            if !self.indices.contains_key(&i) {
                return i;
            }
        }
    }

    /// The handshake gate, for callers that admit handshake messages outside this device's lock.
    pub fn gate(&self) -> Arc<HandshakeGate> {
        self.gate.clone()
    }

    /// Number of live receiver indices (for tests: removed peers leave none behind).
    pub fn index_count(&self) -> usize {
        self.indices.len()
    }

    /// Queued packets of a peer (for tests and diagnostics).
    pub fn queued(&self, id: PeerId) -> usize {
        self.peers.get(&id).map_or(0, |p| p.queue.len())
    }

    /// The current keypair of a peer, if any (for tests).
    pub fn current_keypair(&self, id: PeerId) -> Option<Arc<Keypair>> {
        self.peers.get(&id).and_then(|p| p.session.current.clone())
    }
}
