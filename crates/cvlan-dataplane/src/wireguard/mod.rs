//! WireGuard on the workers: the sans-I/O `cvlan_proto::wireguard::Device` behind a lock that is
//! taken once or twice per batch, never around AEAD, and never for a handshake message its
//! `HandshakeGate` turns away.
//!
//! - `send`:     the outbound pipeline (route, seal) and cryptokey routing for the handoff.
//! - `receive`:  the inbound pipeline (classify, lookup, open, confirm).
//! - `counters`: the engine's drops and handshake counts.
//! - here: the engine the workers and the control plane share (the lock, protocol output,
//!   events, timers), and the device's `Transport`.
//!
//! Time is the data plane's one clock (`crate::clock`): the worker's `Ctx::now`, and for the
//! TAI64N timestamp of handshake initiations the Unix time derived from it.

mod counters;
mod receive;
mod send;

pub use counters::WgCounters;

use crate::clock;
use crate::transport::{Ctx, Outgoing, Packet, Senders, Transport};
use cvlan_proto::wireguard::{Device, Event, HandshakeGate, Outbox, Time};
use rand_core::OsRng;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

/// Receiver of protocol events (handshakes, roaming), off the hot path.
pub type WgEventSink = Arc<dyn Fn(&Event) + Send + Sync>;

/// The WireGuard engine shared by a device's workers and its control plane.
pub struct WireGuard {
    dev: Mutex<Device>,
    pub counters: WgCounters,
    events: OnceLock<WgEventSink>,
    senders: OnceLock<Senders>,
    /// The device's handshake gate, consulted without `dev`'s lock.
    gate: Arc<HandshakeGate>,
    /// An HA standby: sessions installed, nothing sent, no timers, no handshakes answered.
    passive: AtomicBool,
}

impl WireGuard {
    pub fn new(private_key: Option<[u8; 32]>) -> Arc<WireGuard> {
        let dev = Device::new(private_key);
        Arc::new(WireGuard {
            gate: dev.gate(),
            dev: Mutex::new(dev),
            counters: WgCounters::new(),
            events: OnceLock::new(),
            senders: OnceLock::new(),
            passive: AtomicBool::new(false),
        })
    }

    /// Makes the engine passive (HA standby) or live again.
    pub fn set_passive(&self, passive: bool) {
        self.passive.store(passive, Release);
    }

    pub fn is_passive(&self) -> bool {
        self.passive.load(Acquire)
    }

    pub fn set_event_sink(&self, sink: WgEventSink) {
        let _ = self.events.set(sink);
    }

    /// Now, for a control thread (configuration changes, `poke`); workers use their `Ctx::now`.
    pub fn time(&self) -> Time {
        time_at(clock::now())
    }

    /// Runs `f` on the protocol device (configuration changes, status). Keep it short: the
    /// workers wait for this lock.
    pub fn with<R>(&self, f: impl FnOnce(&mut Device) -> R) -> R {
        f(&mut self.lock())
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Device> {
        self.dev.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends what the device produced outside a worker (e.g. after a configuration change).
    pub fn send_now(&self, out: Outbox) {
        self.finish(out, None);
    }

    /// Tells every peer with a session where we are now (after a listen-port change).
    pub fn announce_endpoint(&self) {
        let t = self.time();
        let mut out = Outbox::default();
        self.lock()
            .send_keepalives_to_current_peers(t, &mut OsRng, &mut out);
        self.finish(out, None);
    }

    /// Fires timers now (e.g. a new persistent keepalive) from a control thread.
    pub fn poke(&self) {
        let t = self.time();
        let mut out = Outbox::default();
        self.lock().update_timers(t, &mut OsRng, &mut out);
        self.finish(out, None);
    }

    pub(super) fn finish(&self, mut out: Outbox, extra: Option<&mut Vec<Outgoing>>) {
        if self.is_passive() {
            out.datagrams.clear();
        }
        for d in out.drops {
            self.counters.drop(d);
        }
        for e in &out.events {
            match e {
                Event::HandshakeComplete { .. } => {
                    self.counters.handshakes_completed.fetch_add(1, Relaxed)
                }
                Event::HandshakeGaveUp { .. } => {
                    self.counters.handshakes_failed.fetch_add(1, Relaxed)
                }
                _ => 0,
            };
            if let Some(sink) = self.events.get() {
                sink(e);
            }
        }
        match extra {
            Some(extra) => extra.extend(out.datagrams.into_iter().map(|(data, addr)| Outgoing {
                data,
                addr,
                sock: 0,
            })),
            None => {
                if let Some(s) = self.senders.get() {
                    for (d, a) in out.datagrams {
                        let _ = s.send_to(0, &d, a);
                    }
                }
            }
        }
    }
}

/// The protocol's two views of the data plane's one clock at `now`: monotonic, and the Unix
/// time derived from it (for TAI64N, see `crate::clock`).
pub(super) fn time_at(now: Duration) -> Time {
    Time {
        mono: now,
        unix: clock::unix(now),
    }
}

/// A WireGuard interface: TUN ⇄ WireGuard peers.
pub struct WireGuardTransport {
    pub wg: Arc<WireGuard>,
}

impl Transport for WireGuardTransport {
    fn name(&self) -> &'static str {
        "wireguard"
    }

    fn attach(&self, senders: Senders) {
        let _ = self.wg.senders.set(senders);
    }

    fn encapsulate(&self, ctx: &mut Ctx<'_>, pkts: &mut [Packet]) {
        send::encapsulate(&self.wg, ctx, pkts);
    }

    fn claims(&self, pkts: &mut [Packet]) {
        send::claims(&self.wg, pkts);
    }

    fn decapsulate(&self, ctx: &mut Ctx<'_>, pkts: &mut [Packet]) {
        receive::decapsulate(&self.wg, ctx, pkts);
    }

    /// Sealing needs only the session's counter (atomic); opening, transport data messages
    /// only (handshakes and cookies change sessions the batch's other packets may need).
    fn parallel(&self, stage: crate::spread::Stage, pkt: &Packet) -> bool {
        match stage {
            crate::spread::Stage::Seal => true,
            crate::spread::Stage::Open => {
                pkt.data().first() == Some(&cvlan_proto::wireguard::constants::MSG_TRANSPORT)
            }
        }
    }

    fn tick(&self, ctx: &mut Ctx<'_>) {
        // Timers are device-wide: one worker drives them; a passive standby fires none.
        if ctx.worker != 0 || self.wg.is_passive() {
            return;
        }
        let t = time_at(ctx.now);
        let mut out = Outbox::default();
        self.wg.lock().update_timers(t, &mut OsRng, &mut out);
        self.wg.finish(out, Some(ctx.extra));
    }

    fn tick_interval(&self) -> Duration {
        Duration::from_millis(100)
    }
}
