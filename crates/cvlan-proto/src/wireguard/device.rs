//! A WireGuard device without I/O: identity, peers, receiver indices, cryptokey routing,
//! handshakes, timers and cookies. The call order is in the module docs of [`super`]; in short:
//! `route` → `prepare_send` → seal outside the lock; `lookup_receiver` → open outside the lock
//! → `received_data` → `allowed_src`; `handle_handshake` for message types 1–3;
//! `update_timers` by `poll_timeout`.

use super::allowed_ips::AllowedIps;
use super::constants::*;
use super::cookie::{CookieChecker, CookieState};
use super::handshake::{self, Identity, PeerKeys, State};
use super::messages::{self, init, resp, Message, ParseError};
use super::session::{Keypair, Session};
use super::tai64n::{self, Tai64n};
use super::timers::Timers;
use crate::ip::Prefix;
use rand_core::{CryptoRng, RngCore};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
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

/// Why a datagram or packet was dropped. Names are stable (metrics labels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Drop {
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

impl Drop {
    pub const ALL: &'static [Drop] = &[
        Drop::Truncated,
        Drop::Oversized,
        Drop::UnknownType,
        Drop::BadLength,
        Drop::BadMac1,
        Drop::CookieRequired,
        Drop::RateLimited,
        Drop::HandshakeDecrypt,
        Drop::UnknownPeer,
        Drop::LowOrder,
        Drop::StaleInitiation,
        Drop::InitiationFlood,
        Drop::UnexpectedResponse,
        Drop::BadCookieReply,
        Drop::UnknownReceiver,
        Drop::DataBeforeHandshake,
        Drop::KeypairExpired,
        Drop::Replayed,
        Drop::TooOld,
        Drop::DecryptFailed,
        Drop::MessageLimit,
        Drop::SourceNotAllowed,
        Drop::NoRoute,
        Drop::NoEndpoint,
        Drop::NoIdentity,
        Drop::QueueFull,
        Drop::HandshakeTimeout,
        Drop::Malformed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Drop::Truncated => "wg_truncated",
            Drop::Oversized => "wg_oversized",
            Drop::UnknownType => "wg_unknown_type",
            Drop::BadLength => "wg_bad_length",
            Drop::BadMac1 => "wg_bad_mac1",
            Drop::CookieRequired => "wg_cookie_required",
            Drop::RateLimited => "wg_rate_limited",
            Drop::HandshakeDecrypt => "wg_handshake_decrypt",
            Drop::UnknownPeer => "wg_unknown_peer",
            Drop::LowOrder => "wg_low_order_key",
            Drop::StaleInitiation => "wg_stale_initiation",
            Drop::InitiationFlood => "wg_initiation_flood",
            Drop::UnexpectedResponse => "wg_unexpected_response",
            Drop::BadCookieReply => "wg_bad_cookie_reply",
            Drop::UnknownReceiver => "wg_unknown_receiver",
            Drop::DataBeforeHandshake => "wg_data_before_handshake",
            Drop::KeypairExpired => "wg_keypair_expired",
            Drop::Replayed => "wg_replayed",
            Drop::TooOld => "wg_too_old",
            Drop::DecryptFailed => "wg_decrypt_failed",
            Drop::MessageLimit => "wg_message_limit",
            Drop::SourceNotAllowed => "wg_source_not_allowed",
            Drop::NoRoute => "wg_no_route",
            Drop::NoEndpoint => "wg_no_endpoint",
            Drop::NoIdentity => "wg_no_private_key",
            Drop::QueueFull => "wg_queue_full",
            Drop::HandshakeTimeout => "wg_handshake_timeout",
            Drop::Malformed => "wg_malformed",
        }
    }
}

impl From<ParseError> for Drop {
    fn from(e: ParseError) -> Drop {
        match e {
            ParseError::Truncated => Drop::Truncated,
            ParseError::Oversized => Drop::Oversized,
            ParseError::UnknownType => Drop::UnknownType,
            ParseError::BadLength => Drop::BadLength,
        }
    }
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
    pub drops: Vec<Drop>,
}

/// Configuration of one peer.
#[derive(Clone)]
pub struct PeerConfig {
    pub public_key: [u8; 32],
    pub preshared_key: Option<[u8; 32]>,
    pub endpoint: Option<SocketAddr>,
    /// Seconds; 0 = off.
    pub persistent_keepalive: u16,
}

impl std::ops::Drop for PeerConfig {
    fn drop(&mut self) {
        if let Some(k) = self.preshared_key.as_mut() {
            zeroize::Zeroize::zeroize(k);
        }
    }
}

impl std::fmt::Debug for PeerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerConfig")
            .field("public_key", &self.public_key)
            .field("preshared_key", &self.preshared_key.map(|_| "<redacted>"))
            .field("endpoint", &self.endpoint)
            .field("persistent_keepalive", &self.persistent_keepalive)
            .finish()
    }
}

/// What `wg show` needs of a peer.
#[derive(Debug, Clone)]
pub struct PeerStatus {
    pub id: PeerId,
    pub public_key: [u8; 32],
    pub endpoint: Option<SocketAddr>,
    pub allowed_ips: Vec<Prefix>,
    pub persistent_keepalive: u16,
    /// Wall-clock (Unix) time of the last completed handshake.
    pub last_handshake: Option<Duration>,
    /// The same moment on the monotonic `now` clock, for ages independent of wall-clock jumps.
    pub last_handshake_mono: Option<Duration>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub has_preshared_key: bool,
}

/// The outcome of `prepare_send`.
pub enum SendPlan {
    /// Seal with `keypair` and `counter` (reserved) and send to `endpoint`.
    Encrypt {
        keypair: Arc<Keypair>,
        counter: u64,
        endpoint: SocketAddr,
    },
    /// The packet was queued until a handshake completes.
    Queued,
    Drop(Drop),
}

struct Peer {
    cfg: PeerConfig,
    keys: PeerKeys,
    handshake: State,
    session: Session,
    timers: Timers,
    cookie: CookieState,
    queue: VecDeque<Vec<u8>>,
    /// Greatest initiation timestamp accepted from this peer (replay protection).
    last_timestamp: Option<Tai64n>,
    last_initiation_received: Option<Duration>,
    /// (monotonic, wall-clock) time of the last completed handshake.
    last_handshake: Option<(Duration, Duration)>,
    rx_bytes: u64,
    tx_bytes: u64,
}

enum Index {
    Handshake(PeerId),
    Keypair(PeerId, Arc<Keypair>),
}

/// Token bucket per source address for handshake messages.
#[derive(Default)]
struct RateLimiter {
    buckets: HashMap<IpAddr, (f64, Duration)>,
    last_gc: Duration,
}

impl RateLimiter {
    fn allow(&mut self, ip: IpAddr, now: Duration) -> bool {
        if now.saturating_sub(self.last_gc) > Duration::from_secs(1) {
            self.buckets
                .retain(|_, (_, t)| now.saturating_sub(*t) < Duration::from_secs(1));
            self.last_gc = now;
        }
        let rate = f64::from(HANDSHAKES_PER_SECOND);
        let burst = f64::from(HANDSHAKE_BURST);
        let (tokens, at) = self.buckets.entry(ip).or_insert((burst, now));
        *tokens = (*tokens + now.saturating_sub(*at).as_secs_f64() * rate).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The sans-I/O WireGuard device.
#[derive(Default)]
pub struct Device {
    identity: Option<Identity>,
    peers: HashMap<PeerId, Peer>,
    by_key: HashMap<[u8; 32], PeerId>,
    indices: HashMap<u32, Index>,
    allowed: AllowedIps<PeerId>,
    checker: CookieChecker,
    limiter: RateLimiter,
    next_peer: PeerId,
    /// Set by the caller when handshake processing is saturated: MAC2 becomes mandatory.
    pub under_load: bool,
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
        .filter(|kp| {
            now.saturating_sub(kp.created) < REJECT_AFTER_TIME && kp.sent() < REJECT_AFTER_MESSAGES
        })
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

    fn reset_peer(&mut self, id: PeerId) {
        if let Some(p) = self.peers.get_mut(&id) {
            for kp in p.session.clear() {
                self.indices.remove(&kp.local_index);
            }
            if let State::InitiationSent { local_index, .. } = p.handshake {
                self.indices.remove(&local_index);
            }
            p.handshake = State::None;
            p.timers = Timers::default();
        }
    }

    /// Adds a peer or updates the one with this public key. Returns its id.
    pub fn upsert_peer(&mut self, cfg: PeerConfig) -> PeerId {
        if let Some(&id) = self.by_key.get(&cfg.public_key) {
            let p = self.peers.get_mut(&id).expect("indexed peer");
            let psk_changed = p.cfg.preshared_key != cfg.preshared_key;
            p.cfg.endpoint = cfg.endpoint.or(p.cfg.endpoint);
            p.cfg.persistent_keepalive = cfg.persistent_keepalive;
            p.cfg.preshared_key = cfg.preshared_key;
            if psk_changed {
                p.keys = PeerKeys::new(
                    self.identity.as_ref(),
                    cfg.public_key,
                    cfg.preshared_key.unwrap_or([0; 32]),
                );
            }
            return id;
        }
        let id = self.next_peer;
        self.next_peer = self.next_peer.wrapping_add(1);
        let keys = PeerKeys::new(
            self.identity.as_ref(),
            cfg.public_key,
            cfg.preshared_key.unwrap_or([0; 32]),
        );
        self.by_key.insert(cfg.public_key, id);
        self.peers.insert(
            id,
            Peer {
                cfg,
                keys,
                handshake: State::None,
                session: Session::default(),
                timers: Timers::default(),
                cookie: CookieState::default(),
                queue: VecDeque::new(),
                last_timestamp: None,
                last_initiation_received: None,
                last_handshake: None,
                rx_bytes: 0,
                tx_bytes: 0,
            },
        );
        id
    }

    pub fn peer_id(&self, public_key: &[u8; 32]) -> Option<PeerId> {
        self.by_key.get(public_key).copied()
    }

    pub fn peer_ids(&self) -> Vec<PeerId> {
        let mut v: Vec<PeerId> = self.peers.keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// Removes a peer with its keys, indices, queue and allowed IPs.
    pub fn remove_peer(&mut self, id: PeerId) {
        self.reset_peer(id);
        if let Some(p) = self.peers.remove(&id) {
            self.by_key.remove(&p.cfg.public_key);
        }
        self.allowed.remove_owner(id);
    }

    pub fn set_endpoint(&mut self, id: PeerId, endpoint: Option<SocketAddr>) {
        if let Some(p) = self.peers.get_mut(&id) {
            p.cfg.endpoint = endpoint;
        }
    }

    pub fn set_persistent_keepalive(&mut self, id: PeerId, secs: u16, now: Duration) {
        if let Some(p) = self.peers.get_mut(&id) {
            p.cfg.persistent_keepalive = secs;
            // Setting it sends one at once (wg semantics), so a NAT mapping opens immediately.
            p.timers.persistent_keepalive = (secs > 0).then_some(now);
        }
    }

    pub fn add_allowed_ip(&mut self, id: PeerId, prefix: Prefix) {
        if self.peers.contains_key(&id) {
            self.allowed.insert(prefix, id);
        }
    }

    /// Removes `prefix` only if this peer holds it (UAPI `allowed_ip=-…`).
    pub fn remove_allowed_ip(&mut self, id: PeerId, prefix: &Prefix) {
        self.allowed.remove(prefix, id);
    }

    pub fn clear_allowed_ips(&mut self, id: PeerId) {
        self.allowed.remove_owner(id);
    }

    pub fn allowed_ips(&self, id: PeerId) -> Vec<Prefix> {
        self.allowed.prefixes_of(id)
    }

    /// Cryptokey routing: the peer whose allowed IPs hold the longest prefix of `dst`.
    pub fn route(&self, dst: IpAddr) -> Option<PeerId> {
        self.allowed.lookup(dst)
    }

    /// Length of the allowed-IPs prefix that routes `dst`, if any (how specific the route is,
    /// when another device of the tenant routes `dst` too).
    pub fn route_prefix_len(&self, dst: IpAddr) -> Option<u8> {
        self.allowed.lookup_len(dst).map(|(_, len)| len)
    }

    /// Whether `src` is an allowed source address for packets from `id`.
    pub fn allowed_src(&self, id: PeerId, src: IpAddr) -> bool {
        self.allowed.lookup(src) == Some(id)
    }

    pub fn status(&self, id: PeerId) -> Option<PeerStatus> {
        let p = self.peers.get(&id)?;
        Some(PeerStatus {
            id,
            public_key: p.cfg.public_key,
            endpoint: p.cfg.endpoint,
            allowed_ips: self.allowed.prefixes_of(id),
            persistent_keepalive: p.cfg.persistent_keepalive,
            last_handshake: p.last_handshake.map(|(_, unix)| unix),
            last_handshake_mono: p.last_handshake.map(|(mono, _)| mono),
            rx_bytes: p.rx_bytes,
            tx_bytes: p.tx_bytes,
            has_preshared_key: p.cfg.preshared_key.is_some(),
        })
    }

    /// The preshared key of a peer (only for the root-only management socket's `get`).
    pub fn preshared_key(&self, id: PeerId) -> Option<[u8; 32]> {
        self.peers.get(&id).and_then(|p| p.cfg.preshared_key)
    }

    /// Bytes of a sealed message, for the transfer counters (`wg show`).
    pub fn count_tx(&mut self, id: PeerId, bytes: usize) {
        if let Some(p) = self.peers.get_mut(&id) {
            p.tx_bytes += bytes as u64;
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

    /// Sends a new initiation to `id` unless one went out less than REKEY_TIMEOUT ago (§6.4).
    /// `retry` marks a retransmission of the current series; anything else starts a new
    /// series, so the give-up count restarts while there is traffic to send.
    fn initiate<R: RngCore + CryptoRng>(
        &mut self,
        id: PeerId,
        t: Time,
        rng: &mut R,
        out: &mut Outbox,
        retry: bool,
    ) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        if !retry {
            p.timers.handshake_attempts = 0;
        }
        if self.identity.is_none() || !p.timers.may_initiate(t.mono) {
            return;
        }
        let Some(endpoint) = p.cfg.endpoint else {
            return;
        };
        let index = self.new_index(rng);
        let Device {
            identity,
            peers,
            indices,
            ..
        } = self;
        let identity = identity.as_ref().expect("checked");
        let p = peers.get_mut(&id).expect("checked");
        let Ok((mut msg, state)) =
            handshake::create_initiation(identity, &p.keys, index, tai(t), rng)
        else {
            out.drops.push(Drop::LowOrder);
            return;
        };
        if let State::InitiationSent { local_index, .. } =
            std::mem::replace(&mut p.handshake, state)
        {
            indices.remove(&local_index);
        }
        p.cookie
            .stamp(&p.keys.mac1_key, &mut msg, init::MAC1, t.mono);
        p.timers.initiation_sent(t.mono, jitter(rng), retry);
        p.timers.authenticated_sent();
        p.timers.traversed(t.mono, p.cfg.persistent_keepalive);
        p.tx_bytes += INITIATION_LEN as u64;
        indices.insert(index, Index::Handshake(id));
        out.datagrams.push((msg.to_vec(), endpoint));
    }

    /// Decides how to send one packet to `id`; queues it if no usable session exists.
    pub fn prepare_send<R: RngCore + CryptoRng>(
        &mut self,
        id: PeerId,
        packet: &[u8],
        t: Time,
        rng: &mut R,
        out: &mut Outbox,
    ) -> SendPlan {
        let Some(p) = self.peers.get_mut(&id) else {
            return SendPlan::Drop(Drop::NoRoute);
        };
        let Some(endpoint) = p.cfg.endpoint else {
            return SendPlan::Drop(Drop::NoEndpoint);
        };
        if self.identity.is_none() {
            return SendPlan::Drop(Drop::NoIdentity);
        }
        if let Some(kp) = usable(&p.session, t.mono) {
            if let Some(counter) = kp.next_counter() {
                // §6.2: only the initiator rekeys on age, so both ends never race to do it.
                let rekey = kp.initiator
                    && (t.mono.saturating_sub(kp.created) >= REKEY_AFTER_TIME
                        || counter >= REKEY_AFTER_MESSAGES);
                p.timers.authenticated_sent();
                p.timers.traversed(t.mono, p.cfg.persistent_keepalive);
                if !packet.is_empty() && p.timers.new_handshake.is_none() {
                    p.timers.data_sent(t.mono, jitter(rng));
                }
                if rekey {
                    self.initiate(id, t, rng, out, false);
                }
                return SendPlan::Encrypt {
                    keypair: kp,
                    counter,
                    endpoint,
                };
            }
        }
        // No usable keypair: queue (oldest dropped first) and make sure a handshake runs.
        if !packet.is_empty() {
            if p.queue.len() >= MAX_QUEUED_PACKETS {
                p.queue.pop_front();
                out.drops.push(Drop::QueueFull);
            }
            p.queue.push_back(packet.to_vec());
        }
        self.initiate(id, t, rng, out, false);
        SendPlan::Queued
    }

    /// The keypair a transport message is for. Checked before decryption (outside the lock).
    pub fn lookup_receiver(&self, index: u32, t: Time) -> Result<(PeerId, Arc<Keypair>), Drop> {
        match self.indices.get(&index) {
            Some(Index::Keypair(id, kp)) => {
                if t.mono.saturating_sub(kp.created) >= REJECT_AFTER_TIME {
                    return Err(Drop::KeypairExpired);
                }
                Ok((*id, kp.clone()))
            }
            Some(Index::Handshake(_)) => Err(Drop::DataBeforeHandshake),
            None => Err(Drop::UnknownReceiver),
        }
    }

    /// Bookkeeping after a transport message on `kp` authenticated: keypair confirmation,
    /// roaming, timers, counters, and the initiator's rekey before REJECT_AFTER_TIME.
    #[allow(clippy::too_many_arguments)]
    pub fn received_data<R: RngCore + CryptoRng>(
        &mut self,
        id: PeerId,
        kp: &Arc<Keypair>,
        src: SocketAddr,
        wire_len: usize,
        inner_len: usize,
        t: Time,
        rng: &mut R,
        out: &mut Outbox,
    ) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        // The responder's handshake completes when the initiator first uses the new keys.
        let confirms = p.session.next.as_ref().is_some_and(|n| Arc::ptr_eq(n, kp));
        let gone = p.session.received_on(kp);
        if confirms {
            p.timers.handshake_complete();
            p.last_handshake = Some((t.mono, t.unix));
            out.events.push(Event::HandshakeComplete {
                peer: id,
                initiator: false,
            });
        }
        if p.cfg.endpoint != Some(src) {
            p.cfg.endpoint = Some(src);
            out.events.push(Event::EndpointChanged {
                peer: id,
                endpoint: src,
            });
        }
        p.rx_bytes += wire_len as u64;
        p.timers.authenticated_received();
        p.timers.traversed(t.mono, p.cfg.persistent_keepalive);
        if inner_len > 0 {
            p.timers.data_received(t.mono);
        }
        // §6.2: an initiator whose session nears REJECT_AFTER_TIME renews it once while it is
        // still receiving, so a receive-only flow is not cut off.
        let renew = !p.timers.sent_last_minute_handshake
            && p.session.current.as_ref().is_some_and(|c| {
                c.initiator
                    && t.mono.saturating_sub(c.created)
                        >= REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT
            });
        if renew {
            p.timers.sent_last_minute_handshake = true;
        }
        let flush = !p.queue.is_empty();
        for g in gone {
            self.indices.remove(&g.local_index);
        }
        if renew {
            self.initiate(id, t, rng, out, false);
        }
        if flush {
            self.flush_queue(id, t, rng, out);
        }
    }

    /// Seals and sends the packets that waited for a session.
    fn flush_queue<R: RngCore>(&mut self, id: PeerId, t: Time, rng: &mut R, out: &mut Outbox) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        let (Some(kp), Some(endpoint)) = (usable(&p.session, t.mono), p.cfg.endpoint) else {
            return;
        };
        let mut sent = false;
        while let Some(pkt) = p.queue.pop_front() {
            let Some(counter) = kp.next_counter() else {
                p.queue.push_front(pkt);
                break;
            };
            let mut buf =
                vec![0u8; TRANSPORT_HEADER_LEN + super::session::padded_len(pkt.len()) + TAG_LEN];
            buf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + pkt.len()].copy_from_slice(&pkt);
            if let Some(r) = kp.seal(counter, &mut buf, TRANSPORT_HEADER_LEN, pkt.len()) {
                buf.truncate(r.end);
                p.tx_bytes += buf.len() as u64;
                out.datagrams.push((buf, endpoint));
                sent = true;
            }
        }
        if sent {
            p.timers.authenticated_sent();
            p.timers.traversed(t.mono, p.cfg.persistent_keepalive);
            if p.timers.new_handshake.is_none() {
                p.timers.data_sent(t.mono, jitter(rng));
            }
        }
    }

    /// Sends an empty transport message; without a usable session, starts a handshake instead
    /// (its response is followed by a keepalive anyway).
    /// Sends a keepalive to every peer with a usable session, e.g. after our listen port
    /// changed: the peers learn the new endpoint from it (roaming) without waiting for data.
    pub fn send_keepalives_to_current_peers<R: RngCore + CryptoRng>(
        &mut self,
        t: Time,
        rng: &mut R,
        out: &mut Outbox,
    ) {
        for id in self.peer_ids() {
            let current = self
                .peers
                .get(&id)
                .is_some_and(|p| p.cfg.endpoint.is_some() && usable(&p.session, t.mono).is_some());
            if current {
                self.send_keepalive(id, t, rng, out);
            }
        }
    }

    fn send_keepalive<R: RngCore + CryptoRng>(
        &mut self,
        id: PeerId,
        t: Time,
        rng: &mut R,
        out: &mut Outbox,
    ) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        let Some(endpoint) = p.cfg.endpoint else {
            return;
        };
        let Some((kp, counter)) =
            usable(&p.session, t.mono).and_then(|kp| kp.next_counter().map(|c| (kp, c)))
        else {
            self.initiate(id, t, rng, out, false);
            return;
        };
        let mut buf = vec![0u8; KEEPALIVE_LEN];
        if let Some(r) = kp.seal(counter, &mut buf, TRANSPORT_HEADER_LEN, 0) {
            buf.truncate(r.end);
            p.tx_bytes += buf.len() as u64;
            out.datagrams.push((buf, endpoint));
            p.timers.authenticated_sent();
            p.timers.traversed(t.mono, p.cfg.persistent_keepalive);
        }
    }

    fn install(&mut self, id: PeerId, keys: handshake::SessionKeys, t: Time, out: &mut Outbox) {
        let kp = Arc::new(Keypair::new(
            &keys.send,
            &keys.recv,
            keys.local_index,
            keys.remote_index,
            t.mono,
            keys.initiator,
        ));
        let p = self.peers.get_mut(&id).expect("caller checked");
        let gone = p.session.install(kp.clone());
        p.timers.session_derived(t.mono);
        if keys.initiator {
            p.timers.handshake_complete();
            p.last_handshake = Some((t.mono, t.unix));
            out.events.push(Event::HandshakeComplete {
                peer: id,
                initiator: true,
            });
        }
        for g in gone {
            self.indices.remove(&g.local_index);
        }
        self.indices.insert(kp.local_index, Index::Keypair(id, kp));
    }

    /// Handles a handshake initiation, response or cookie reply from `src`. Transport messages
    /// go through `lookup_receiver` instead (this returns `UnknownType` for them).
    pub fn handle_handshake<R: RngCore + CryptoRng>(
        &mut self,
        src: SocketAddr,
        datagram: &[u8],
        t: Time,
        rng: &mut R,
        out: &mut Outbox,
    ) -> Result<(), Drop> {
        let msg = messages::parse(datagram)?;
        let Some(identity) = self.identity.as_ref() else {
            return Err(Drop::NoIdentity);
        };
        let (mac1_at, sender_at) = match msg {
            Message::Initiation(_) => (init::MAC1, init::SENDER),
            Message::Response(_) => (resp::MAC1, resp::SENDER),
            Message::CookieReply(r) => return self.cookie_reply(r, t),
            Message::Transport { .. } => return Err(Drop::UnknownType),
        };
        if !self
            .checker
            .check_mac1(&identity.mac1_key, datagram, mac1_at)
        {
            return Err(Drop::BadMac1);
        }
        if self.under_load {
            if !self.checker.check_mac2(datagram, mac1_at + 16, src, t.mono) {
                let sender = messages::le32(&datagram[sender_at..]);
                let cookie_key = identity.cookie_key;
                let reply = self.checker.create_reply(
                    &cookie_key,
                    datagram,
                    mac1_at,
                    sender,
                    src,
                    t.mono,
                    rng,
                );
                out.datagrams.push((reply.to_vec(), src));
                return Err(Drop::CookieRequired);
            }
            if !self.limiter.allow(src.ip(), t.mono) {
                return Err(Drop::RateLimited);
            }
        }
        match msg {
            Message::Initiation(m) => self.initiation(src, m, t, rng, out),
            Message::Response(m) => self.response(src, m, t, rng, out),
            _ => unreachable!("handled above"),
        }
    }

    fn cookie_reply(&mut self, r: &[u8; COOKIE_REPLY_LEN], t: Time) -> Result<(), Drop> {
        let index = messages::le32(&r[messages::cookie::RECEIVER..]);
        let id = match self.indices.get(&index) {
            Some(Index::Handshake(id)) | Some(Index::Keypair(id, _)) => *id,
            None => return Err(Drop::UnknownReceiver),
        };
        let p = self.peers.get_mut(&id).expect("indexed peer");
        if p.cookie.consume_reply(&p.keys.cookie_key, r, t.mono) {
            Ok(())
        } else {
            Err(Drop::BadCookieReply)
        }
    }

    fn initiation<R: RngCore + CryptoRng>(
        &mut self,
        src: SocketAddr,
        m: &[u8; INITIATION_LEN],
        t: Time,
        rng: &mut R,
        out: &mut Outbox,
    ) -> Result<(), Drop> {
        let identity = self.identity.as_ref().expect("checked by caller");
        let consumed = handshake::consume_initiation(identity, m).map_err(|e| match e {
            handshake::HandshakeError::LowOrder => Drop::LowOrder,
            _ => Drop::HandshakeDecrypt,
        })?;
        let id = self
            .by_key
            .get(&consumed.remote_static)
            .copied()
            .ok_or(Drop::UnknownPeer)?;
        let p = self.peers.get(&id).expect("indexed peer");
        if p.last_timestamp
            .is_some_and(|last| !tai64n::after(&consumed.timestamp, &last))
        {
            return Err(Drop::StaleInitiation);
        }
        if p.last_initiation_received
            .is_some_and(|at| t.mono.saturating_sub(at) < REKEY_MIN_INTERVAL)
        {
            return Err(Drop::InitiationFlood);
        }
        let index = self.new_index(rng);
        let p = self.peers.get_mut(&id).expect("indexed peer");
        let (mut msg, keys) = handshake::create_response(&p.keys, &consumed, index, rng)
            .map_err(|_| Drop::LowOrder)?;
        p.last_timestamp = Some(consumed.timestamp);
        p.last_initiation_received = Some(t.mono);
        p.cookie
            .stamp(&p.keys.mac1_key, &mut msg, resp::MAC1, t.mono);
        if p.cfg.endpoint != Some(src) {
            p.cfg.endpoint = Some(src);
            out.events.push(Event::EndpointChanged {
                peer: id,
                endpoint: src,
            });
        }
        p.timers.authenticated_received();
        p.timers.authenticated_sent();
        p.timers.traversed(t.mono, p.cfg.persistent_keepalive);
        p.rx_bytes += INITIATION_LEN as u64;
        p.tx_bytes += RESPONSE_LEN as u64;
        out.datagrams.push((msg.to_vec(), src));
        self.install(id, keys, t, out);
        Ok(())
    }

    fn response<R: RngCore + CryptoRng>(
        &mut self,
        src: SocketAddr,
        m: &[u8; RESPONSE_LEN],
        t: Time,
        rng: &mut R,
        out: &mut Outbox,
    ) -> Result<(), Drop> {
        let index = messages::le32(&m[resp::RECEIVER..]);
        let id = match self.indices.get(&index) {
            Some(Index::Handshake(id)) => *id,
            _ => return Err(Drop::UnexpectedResponse),
        };
        let identity = self.identity.as_ref().expect("checked by caller");
        let p = self.peers.get(&id).expect("indexed peer");
        let keys = handshake::consume_response(identity, &p.keys, &p.handshake, m).map_err(
            |e| match e {
                handshake::HandshakeError::LowOrder => Drop::LowOrder,
                handshake::HandshakeError::UnexpectedResponse => Drop::UnexpectedResponse,
                _ => Drop::HandshakeDecrypt,
            },
        )?;
        self.indices.remove(&index);
        let p = self.peers.get_mut(&id).expect("indexed peer");
        p.handshake = State::None;
        if p.cfg.endpoint != Some(src) {
            p.cfg.endpoint = Some(src);
            out.events.push(Event::EndpointChanged {
                peer: id,
                endpoint: src,
            });
        }
        p.rx_bytes += RESPONSE_LEN as u64;
        p.timers.authenticated_received();
        p.timers.traversed(t.mono, p.cfg.persistent_keepalive);
        self.install(id, keys, t, out);
        // The responder waits for data to confirm the keypair: send the queue, or a keepalive.
        if self.peers[&id].queue.is_empty() {
            self.send_keepalive(id, t, rng, out);
        } else {
            self.flush_queue(id, t, rng, out);
        }
        Ok(())
    }

    /// Fires due timers of every peer (§6). Call it at [`Device::poll_timeout`] at the latest.
    pub fn update_timers<R: RngCore + CryptoRng>(
        &mut self,
        t: Time,
        rng: &mut R,
        out: &mut Outbox,
    ) {
        let due = |d: Option<Duration>| d.is_some_and(|d| d <= t.mono);
        // Sorted so that output order does not depend on hashing.
        for id in self.peer_ids() {
            let p = self.peers.get_mut(&id).expect("listed");
            // §6.4: retransmit the initiation, or give up after MAX_TIMER_HANDSHAKES.
            if due(p.timers.retransmit_handshake) {
                // Cleared first: `initiate` re-arms it only if it really sends.
                p.timers.retransmit_handshake = None;
                if p.timers.handshake_attempts > MAX_TIMER_HANDSHAKES {
                    p.timers.send_keepalive = None;
                    out.drops
                        .extend(std::iter::repeat_n(Drop::HandshakeTimeout, p.queue.len()));
                    p.queue.clear();
                    if p.timers.zero_keys.is_none() {
                        p.timers.zero_keys = Some(t.mono + REJECT_AFTER_TIME * 3);
                    }
                    if let State::InitiationSent { local_index, .. } =
                        std::mem::replace(&mut p.handshake, State::None)
                    {
                        self.indices.remove(&local_index);
                    }
                    out.events.push(Event::HandshakeGaveUp { peer: id });
                } else {
                    p.timers.handshake_attempts += 1;
                    self.initiate(id, t, rng, out, true);
                }
            }
            // §6.5: acknowledge received data that we had nothing to answer with.
            let p = self.peers.get_mut(&id).expect("listed");
            if due(p.timers.send_keepalive) {
                p.timers.send_keepalive = None;
                self.send_keepalive(id, t, rng, out);
                let p = self.peers.get_mut(&id).expect("listed");
                if std::mem::take(&mut p.timers.need_another_keepalive) {
                    p.timers.send_keepalive = Some(t.mono + KEEPALIVE_TIMEOUT);
                }
            }
            // §6.5: we sent data and heard nothing back: the session may be dead.
            let p = self.peers.get_mut(&id).expect("listed");
            if due(p.timers.new_handshake) {
                p.timers.new_handshake = None;
                self.initiate(id, t, rng, out, false);
            }
            // §6.3: no new session for 3 × REJECT_AFTER_TIME: erase every key.
            let p = self.peers.get_mut(&id).expect("listed");
            if due(p.timers.zero_keys) {
                p.timers.zero_keys = None;
                out.drops
                    .extend(std::iter::repeat_n(Drop::KeypairExpired, p.queue.len()));
                p.queue.clear();
                let mut gone: Vec<u32> = p.session.clear().iter().map(|k| k.local_index).collect();
                if let State::InitiationSent { local_index, .. } =
                    std::mem::replace(&mut p.handshake, State::None)
                {
                    gone.push(local_index);
                }
                for i in gone {
                    self.indices.remove(&i);
                }
                out.events.push(Event::KeysZeroed { peer: id });
            }
            // Persistent keepalive keeps NAT mappings open even when idle.
            let p = self.peers.get_mut(&id).expect("listed");
            if due(p.timers.persistent_keepalive) {
                p.timers.persistent_keepalive = None;
                if p.cfg.persistent_keepalive > 0 {
                    self.send_keepalive(id, t, rng, out);
                    let p = self.peers.get_mut(&id).expect("listed");
                    p.timers.traversed(t.mono, p.cfg.persistent_keepalive);
                }
            }
        }
    }

    /// The earliest timer deadline of any peer.
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.peers.values().filter_map(|p| p.timers.next()).min()
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
