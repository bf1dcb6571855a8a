//! Peers: configuration, cryptokey routing (allowed IPs) and what `wg show` reports.

use super::{Device, PeerId};
use crate::ip::Prefix;
use crate::wireguard::cookie::CookieState;
use crate::wireguard::handshake::{PeerKeys, State};
use crate::wireguard::session::Session;
use crate::wireguard::tai64n::Tai64n;
use crate::wireguard::timers::Timers;
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

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

/// A peer's counters without its configuration (`Device::traffic`).
#[derive(Debug, Clone, Copy)]
pub struct PeerTraffic {
    pub public_key: [u8; 32],
    /// Wall-clock (Unix) time of the last completed handshake.
    pub last_handshake: Option<Duration>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

pub(super) struct Peer {
    pub(super) cfg: PeerConfig,
    pub(super) keys: PeerKeys,
    pub(super) handshake: State,
    pub(super) session: Session,
    pub(super) timers: Timers,
    pub(super) cookie: CookieState,
    pub(super) queue: VecDeque<Vec<u8>>,
    /// Greatest initiation timestamp accepted from this peer (replay protection).
    pub(super) last_timestamp: Option<Tai64n>,
    pub(super) last_initiation_received: Option<Duration>,
    /// (monotonic, wall-clock) time of the last completed handshake.
    pub(super) last_handshake: Option<(Duration, Duration)>,
    pub(super) rx_bytes: u64,
    pub(super) tx_bytes: u64,
}

impl Device {
    pub(super) fn reset_peer(&mut self, id: PeerId) {
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

    /// [`Device::route`] and [`Device::route_prefix_len`] in one walk.
    pub fn route_with_len(&self, dst: IpAddr) -> Option<(PeerId, u8)> {
        self.allowed.lookup_len(dst)
    }

    /// Whether `src` is an allowed source address for packets from `id`.
    pub fn allowed_src(&self, id: PeerId, src: IpAddr) -> bool {
        self.allowed.lookup(src) == Some(id)
    }

    pub fn status(&self, id: PeerId) -> Option<PeerStatus> {
        self.status_with(id, self.allowed.prefixes_of(id))
    }

    /// Every peer's status, in `peer_ids` order, with one walk of the allowed-IPs table (UAPI
    /// `get` and `/v1/peers` at thousands of peers; `status` per peer would walk it per peer).
    pub fn statuses(&self) -> Vec<PeerStatus> {
        let mut by_peer: HashMap<PeerId, Vec<Prefix>> = HashMap::new();
        for (prefix, id) in self.allowed.entries() {
            by_peer.entry(id).or_default().push(prefix);
        }
        self.peer_ids()
            .into_iter()
            .filter_map(|id| self.status_with(id, by_peer.remove(&id).unwrap_or_default()))
            .collect()
    }

    fn status_with(&self, id: PeerId, allowed_ips: Vec<Prefix>) -> Option<PeerStatus> {
        let p = self.peers.get(&id)?;
        Some(PeerStatus {
            id,
            public_key: p.cfg.public_key,
            endpoint: p.cfg.endpoint,
            allowed_ips,
            persistent_keepalive: p.cfg.persistent_keepalive,
            last_handshake: p.last_handshake.map(|(_, unix)| unix),
            last_handshake_mono: p.last_handshake.map(|(mono, _)| mono),
            rx_bytes: p.rx_bytes,
            tx_bytes: p.tx_bytes,
            has_preshared_key: p.cfg.preshared_key.is_some(),
        })
    }

    /// Every peer's public key and traffic, in `peer_ids` order: what a metrics scrape reads.
    /// Unlike `status` it does not collect allowed IPs (a walk of the whole table per peer).
    pub fn traffic(&self) -> Vec<PeerTraffic> {
        self.peer_ids()
            .into_iter()
            .filter_map(|id| {
                let p = self.peers.get(&id)?;
                Some(PeerTraffic {
                    public_key: p.cfg.public_key,
                    last_handshake: p.last_handshake.map(|(_, unix)| unix),
                    rx_bytes: p.rx_bytes,
                    tx_bytes: p.tx_bytes,
                })
            })
            .collect()
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
}
