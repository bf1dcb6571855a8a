//! Active-passive high availability of the data plane: a sync channel to the other node that
//! carries session state, counters and acks, and the roles that decide who sends.
//!
//! - `frame`:     the wire format (Noise NNpsk0 with the sync key; forged and replayed frames
//!   rejected), pure;
//! - `lease`:     the counter-lease arithmetic that keeps nonces unique across failovers, pure;
//! - `wireguard`: WireGuard sessions out of and into the engines, takeover of their counters;
//! - `esp`:       ESP SAs and outbound policies out of and into the IPsec engine (the engine's
//!   side is `crate::ipsec::sync`), acks, leases;
//! - `channel`:   the channel's own thread (TCP connection, snapshot, counters, acks, relay);
//! - here: the handle the control plane holds (`HaSync`), roles, events and status.
//!
//! The workers never wait for the channel: it takes each engine's lock as briefly as the control
//! plane does, and everything it reports lives in atomics.

mod channel;
mod esp;
pub mod frame;
pub mod lease;
mod wireguard;

use crate::ipsec::{EspStored, IpsecEngine};
use crate::wireguard::WireGuard;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use zeroize::Zeroizing;

/// Default interval of counter updates and heartbeats.
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Passive: everything installed, nothing sent.
    Standby,
    Active,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Standby => "standby",
            Role::Active => "active",
        }
    }
}

/// The channel's configuration. `Debug` leaves the key out.
pub struct HaConfig {
    pub listen: SocketAddr,
    pub peer: SocketAddr,
    pub key: Zeroizing<[u8; 32]>,
    /// 1..=255, distinct on the two nodes.
    pub node_id: u8,
    pub sync_interval: Duration,
    /// Messages an active session may send beyond what the standby acknowledged.
    pub lease: u64,
    /// (bind, deliver_to) of the relay for charon's ha plugin datagrams.
    pub relay: Option<(SocketAddr, SocketAddr)>,
}

impl std::fmt::Debug for HaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HaConfig")
            .field("listen", &self.listen)
            .field("peer", &self.peer)
            .field("key", &"<redacted>")
            .field("node_id", &self.node_id)
            .field("sync_interval", &self.sync_interval)
            .field("lease", &self.lease)
            .field("relay", &self.relay)
            .finish()
    }
}

/// What the channel reports to the control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HaEvent {
    PeerUp {
        node_id: u8,
        role: Role,
        generation: u64,
    },
    PeerDown {
        reason: String,
    },
    /// A connection or frame was refused (wrong key, forged, replayed, same node id).
    Rejected {
        reason: String,
    },
    /// This node became active: `jumped` sessions continue, `dropped` must handshake again;
    /// `esp_jumped` outbound SAs continue, `esp_stopped` ask charon to rekey at their first packet.
    Takeover {
        jumped: u64,
        dropped: u64,
        esp_jumped: u64,
        esp_stopped: u64,
    },
    /// A session reached its lease (the standby stopped acknowledging): it rekeys.
    LeaseExhausted {
        index: u32,
    },
    /// An outbound ESP SA reached its lease: it sends nothing more, charon rekeys it.
    EspLeaseExhausted {
        spi: u32,
    },
    /// The standby received the active's whole state.
    SnapshotDone {
        sessions: u32,
    },
}

pub type HaEventSink = Arc<dyn Fn(HaEvent) + Send + Sync>;

/// A snapshot of the channel's state, without secrets.
#[derive(Debug, Clone)]
pub struct HaStatus {
    pub role: Role,
    pub peer_connected: bool,
    pub peer_role: Option<Role>,
    pub peer_generation: Option<u64>,
    /// Since the last authenticated frame from the peer.
    pub last_sync_age: Option<Duration>,
    pub synced_wg_sessions: u64,
    pub synced_esp_sas: u64,
    pub frames_sent: u64,
    pub frames_received: u64,
    pub rejected_forged: u64,
    pub rejected_replayed: u64,
    /// Authentic frames this node could not decode (a message kind it does not know, bad
    /// fields): the connection ends, as for a forgery.
    pub rejected_malformed: u64,
    pub lease_exhausted: u64,
}

/// What a standby stored of one session: the send counter (only forward) and the highest
/// received counter.
#[derive(Debug, Clone, Copy, Default)]
struct Stored {
    send: u64,
    recv_top: Option<u64>,
}

const PEER_NONE: u8 = 0;
const PEER_STANDBY: u8 = 1;
const PEER_ACTIVE: u8 = 2;

struct Shared {
    cfg: HaConfig,
    role: Mutex<Role>,
    generation: AtomicU64,
    engines: Mutex<Vec<Arc<WireGuard>>>,
    /// Sessions a standby received (by receiver index): the only ones it may take over.
    stored: Mutex<HashMap<u32, Stored>>,
    events: HaEventSink,
    closing: AtomicBool,
    peer_connected: AtomicBool,
    peer_role: AtomicU8,
    peer_generation: AtomicU64,
    /// `crate::clock` milliseconds of the last authenticated frame (0: never).
    last_rx_ms: AtomicU64,
    frames_sent: AtomicU64,
    frames_received: AtomicU64,
    rejected_forged: AtomicU64,
    rejected_replayed: AtomicU64,
    lease_exhausted: AtomicU64,
    /// Sessions the standby holds (on the active: the ones it acknowledged).
    synced_wg: AtomicU64,
    ipsec: Mutex<Vec<Arc<IpsecEngine>>>,
    /// ESP SAs a standby received (by SPI): counters stored only forward.
    stored_esp: Mutex<HashMap<u32, EspStored>>,
    /// ESP SAs the standby holds (on the active: the ones it acknowledged).
    synced_esp: AtomicU64,
    rejected_malformed: AtomicU64,
}

impl Shared {
    fn role(&self) -> Role {
        *self.role.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn emit(&self, e: HaEvent) {
        (self.events)(e);
    }

    fn engines(&self) -> Vec<Arc<WireGuard>> {
        self.engines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn ipsec_engines(&self) -> Vec<Arc<IpsecEngine>> {
        self.ipsec.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The handle the control plane holds; dropping it stops the channel.
pub struct HaSync {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl HaSync {
    /// Starts the channel (listening, and connecting to the peer) as a standby.
    pub fn start(cfg: HaConfig, events: HaEventSink) -> crate::Result<HaSync> {
        if cfg.node_id == 0 {
            return Err(crate::Error::new(
                crate::Code::InvalidArg,
                "nodeId: must be 1..255",
            ));
        }
        if cfg.sync_interval.is_zero() {
            return Err(crate::Error::new(
                crate::Code::InvalidArg,
                "syncIntervalMs: must be positive",
            ));
        }
        if cfg.lease == 0 {
            return Err(crate::Error::new(
                crate::Code::InvalidArg,
                "leaseMessages: must be positive",
            ));
        }
        let listener = std::net::TcpListener::bind(cfg.listen).map_err(|e| {
            crate::Error::os(
                crate::Code::Socket,
                format_args!("listen: cannot bind {}", cfg.listen),
                e,
            )
        })?;
        let relay = match cfg.relay {
            None => None,
            Some((bind, _)) => Some(std::net::UdpSocket::bind(bind).map_err(|e| {
                crate::Error::os(
                    crate::Code::Socket,
                    format_args!("relay.bind: cannot bind {bind}"),
                    e,
                )
            })?),
        };
        let shared = Arc::new(Shared {
            cfg,
            role: Mutex::new(Role::Standby),
            generation: AtomicU64::new(0),
            engines: Mutex::new(Vec::new()),
            stored: Mutex::new(HashMap::new()),
            events,
            closing: AtomicBool::new(false),
            peer_connected: AtomicBool::new(false),
            peer_role: AtomicU8::new(PEER_NONE),
            peer_generation: AtomicU64::new(0),
            last_rx_ms: AtomicU64::new(0),
            frames_sent: AtomicU64::new(0),
            frames_received: AtomicU64::new(0),
            rejected_forged: AtomicU64::new(0),
            rejected_replayed: AtomicU64::new(0),
            lease_exhausted: AtomicU64::new(0),
            synced_wg: AtomicU64::new(0),
            ipsec: Mutex::new(Vec::new()),
            stored_esp: Mutex::new(HashMap::new()),
            synced_esp: AtomicU64::new(0),
            rejected_malformed: AtomicU64::new(0),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("ha-sync".into())
            .spawn(move || channel::run(s, listener, relay))
            .map_err(|e| {
                crate::Error::os(crate::Code::Internal, "cannot start the sync thread", e)
            })?;
        Ok(HaSync {
            shared,
            thread: Some(thread),
        })
    }

    /// Takes an engine out of HA before its device closes (a reconcile replaced it): synced
    /// sessions go to the engine that has their peer, and a closed one must not be that engine.
    pub fn detach_wireguard(&self, wg: &Arc<WireGuard>) {
        self.shared
            .engines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|x| !Arc::ptr_eq(x, wg));
    }

    /// Puts a WireGuard engine under HA: passive while this node is a standby.
    pub fn attach_wireguard(&self, wg: Arc<WireGuard>) {
        wireguard::apply_role(&wg, self.shared.role(), self.shared.cfg.lease);
        let mut e = self
            .shared
            .engines
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if !e.iter().any(|x| Arc::ptr_eq(x, &wg)) {
            e.push(wg);
        }
    }

    /// Puts the IPsec engine under HA: its SAs and outbound policies are synced (active) or
    /// imported (standby); passive while this node is a standby.
    pub fn attach_ipsec(&self, engine: Arc<IpsecEngine>) {
        let role = self.shared.role.lock().unwrap_or_else(|e| e.into_inner());
        esp::apply_role(&engine, *role);
        let mut e = self.shared.ipsec.lock().unwrap_or_else(|e| e.into_inner());
        if !e.iter().any(|x| Arc::ptr_eq(x, &engine)) {
            e.push(engine);
        }
    }

    /// Takes an IPsec engine out of HA before its device closes (a replaced device).
    pub fn detach_ipsec(&self, engine: &Arc<IpsecEngine>) {
        self.shared
            .ipsec
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|x| !Arc::ptr_eq(x, engine));
    }

    pub fn set_generation(&self, generation: u64) {
        self.shared.generation.store(generation, Relaxed);
    }

    /// Standby: passive at once. Active: every synced session jumps its counters by the lease
    /// and goes live; unsynced ones may not send (they handshake again).
    pub fn set_role(&self, role: Role) {
        let mut r = self.shared.role.lock().unwrap_or_else(|e| e.into_inner());
        if *r == role {
            return;
        }
        *r = role;
        let lease = self.shared.cfg.lease;
        match role {
            Role::Standby => {
                // What this node knew as active is no basis for a later takeover: only what
                // the new active syncs from now on is.
                self.shared
                    .stored
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clear();
                self.shared
                    .stored_esp
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clear();
                for wg in self.shared.engines() {
                    wireguard::apply_role(&wg, role, lease);
                }
                for e in self.shared.ipsec_engines() {
                    esp::apply_role(&e, role);
                }
            }
            Role::Active => {
                // Held while taking over: the channel installs and stores a keypair under it.
                let stored = self.shared.stored.lock().unwrap_or_else(|e| e.into_inner());
                let (mut jumped, mut dropped) = (0, 0);
                for wg in self.shared.engines() {
                    let (j, d) = wireguard::take_over(&wg, &stored, lease);
                    jumped += j;
                    dropped += d;
                    wireguard::apply_role(&wg, role, lease);
                }
                drop(stored);
                let stored_esp = self
                    .shared
                    .stored_esp
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                let ipsec = self.shared.ipsec_engines();
                // Counters first, then live: no packet leaves below the jumped counter.
                let (esp_jumped, esp_stopped) = esp::take_over(&ipsec, &stored_esp, lease);
                for e in &ipsec {
                    esp::apply_role(e, role);
                }
                drop(r);
                self.shared.emit(HaEvent::Takeover {
                    jumped,
                    dropped,
                    esp_jumped,
                    esp_stopped,
                });
            }
        }
    }

    pub fn status(&self) -> HaStatus {
        let s = &self.shared;
        let connected = s.peer_connected.load(Relaxed);
        let last = s.last_rx_ms.load(Relaxed);
        let now = crate::clock::now().as_millis() as u64;
        HaStatus {
            role: s.role(),
            peer_connected: connected,
            peer_role: match s.peer_role.load(Relaxed) {
                PEER_STANDBY if connected => Some(Role::Standby),
                PEER_ACTIVE if connected => Some(Role::Active),
                _ => None,
            },
            peer_generation: connected.then(|| s.peer_generation.load(Relaxed)),
            last_sync_age: (last > 0).then(|| Duration::from_millis(now.saturating_sub(last))),
            synced_wg_sessions: s.synced_wg.load(Relaxed),
            synced_esp_sas: s.synced_esp.load(Relaxed),
            frames_sent: s.frames_sent.load(Relaxed),
            frames_received: s.frames_received.load(Relaxed),
            rejected_forged: s.rejected_forged.load(Relaxed),
            rejected_replayed: s.rejected_replayed.load(Relaxed),
            rejected_malformed: s.rejected_malformed.load(Relaxed),
            lease_exhausted: s.lease_exhausted.load(Relaxed),
        }
    }

    /// Stops the channel and waits for its thread. Idempotent.
    pub fn close(&mut self) {
        self.shared.closing.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for HaSync {
    fn drop(&mut self) {
        self.close();
    }
}
