//! WireGuard on the workers: the sans-I/O `cvlan_proto::wireguard::Device` behind a lock that is
//! taken once or twice per batch, never around AEAD.
//!
//! Outbound pipeline (packets from the TUN queue):
//! 1. `route`   — cryptokey routing (allowed-IPs trie) and counter reservation, under the lock,
//!    for the whole batch;
//! 2. `seal`    — ChaCha20-Poly1305 in place, outside the lock;
//! 3. send to each peer's endpoint (the device queues packets of peers without a session and
//!    starts their handshakes; those messages leave as extra datagrams).
//!
//! Inbound pipeline (datagrams on the WireGuard port):
//! 1. `classify` — transport messages vs handshake messages;
//! 2. `lookup`   — receiver index → keypair, under the lock; handshake messages are answered;
//! 3. `open`     — replay check and decryption in place, outside the lock;
//! 4. `confirm`  — keypair confirmation, roaming, timers, allowed-IPs source check, under the lock;
//! 5. deliver the inner packet to the TUN queue.

use crate::counters::{DropCounters, DropReason};
use crate::transport::{Ctx, Outgoing, Packet, Senders, Transport, Verdict};
use cvlan_proto::ip;
use cvlan_proto::wireguard::constants::{TAG_LEN, TRANSPORT_HEADER_LEN};
use cvlan_proto::wireguard::messages::{self, Message};
use cvlan_proto::wireguard::session::OpenError;
use cvlan_proto::wireguard::{self as wg, Device, Event, Keypair, Outbox, PeerId, SendPlan, Time};
use rand_core::OsRng;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Handshake messages per second beyond which MAC2 (cookies) becomes mandatory (§5.3 "under
/// load"); a tuning choice, well above what any legitimate set of peers sends.
const UNDER_LOAD_HANDSHAKES_PER_SEC: u64 = 500;

/// Receiver of protocol events (handshakes, roaming), off the hot path.
pub type WgEventSink = Arc<dyn Fn(&Event) + Send + Sync>;

/// Counters of the WireGuard engine, shared by the workers (drops and handshakes are rare).
pub struct WgCounters {
    pub drops: DropCounters,
    pub handshakes_completed: AtomicU64,
    pub handshakes_failed: AtomicU64,
    pub handshake_messages: AtomicU64,
}

impl WgCounters {
    fn new() -> WgCounters {
        WgCounters {
            drops: DropCounters::default(),
            handshakes_completed: AtomicU64::new(0),
            handshakes_failed: AtomicU64::new(0),
            handshake_messages: AtomicU64::new(0),
        }
    }
    fn drop(&self, d: wg::DropReason) {
        self.drops.add(d);
    }
}

/// The WireGuard engine shared by a device's workers and its control plane.
pub struct WireGuard {
    dev: Mutex<Device>,
    epoch: Instant,
    pub counters: WgCounters,
    events: OnceLock<WgEventSink>,
    senders: OnceLock<Senders>,
    /// (second, count) of handshake messages, for the under-load decision.
    load: Mutex<(u64, u64)>,
}

impl WireGuard {
    pub fn new(private_key: Option<[u8; 32]>) -> Arc<WireGuard> {
        Arc::new(WireGuard {
            dev: Mutex::new(Device::new(private_key)),
            epoch: Instant::now(),
            counters: WgCounters::new(),
            events: OnceLock::new(),
            senders: OnceLock::new(),
            load: Mutex::new((0, 0)),
        })
    }

    pub fn set_event_sink(&self, sink: WgEventSink) {
        let _ = self.events.set(sink);
    }

    /// The protocol's two clocks: monotonic since this engine started, and Unix time.
    pub fn time(&self) -> Time {
        Time {
            mono: self.epoch.elapsed(),
            unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or(Duration::ZERO),
        }
    }

    /// Runs `f` on the protocol device (configuration changes, status). Keep it short: the
    /// workers wait for this lock.
    pub fn with<R>(&self, f: impl FnOnce(&mut Device) -> R) -> R {
        f(&mut self.lock())
    }

    fn lock(&self) -> MutexGuard<'_, Device> {
        self.dev.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends what the device produced outside a worker (e.g. after a configuration change).
    pub fn send_now(&self, out: Outbox) {
        self.finish(out, None);
    }

    /// Fires timers now (e.g. a new persistent keepalive) from a control thread.
    pub fn poke(&self) {
        let t = self.time();
        let mut out = Outbox::default();
        self.lock().update_timers(t, &mut OsRng, &mut out);
        self.finish(out, None);
    }

    fn finish(&self, out: Outbox, extra: Option<&mut Vec<Outgoing>>) {
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

    fn note_handshake_message(&self, now: Duration) -> bool {
        self.counters.handshake_messages.fetch_add(1, Relaxed);
        let mut l = self.load.lock().unwrap_or_else(|e| e.into_inner());
        let sec = now.as_secs();
        if l.0 != sec {
            *l = (sec, 0);
        }
        l.1 += 1;
        l.1 > UNDER_LOAD_HANDSHAKES_PER_SEC
    }
}

fn open_drop(e: OpenError) -> wg::DropReason {
    match e {
        OpenError::Replayed => wg::DropReason::Replayed,
        OpenError::TooOld => wg::DropReason::TooOld,
        OpenError::Decrypt => wg::DropReason::DecryptFailed,
        OpenError::Exhausted => wg::DropReason::MessageLimit,
    }
}

/// A WireGuard interface: TUN ⇄ WireGuard peers.
pub struct WireGuardTransport {
    pub wg: Arc<WireGuard>,
}

struct Planned {
    idx: usize,
    peer: PeerId,
    keypair: Arc<Keypair>,
    counter: u64,
    endpoint: SocketAddr,
}

struct Received {
    idx: usize,
    peer: PeerId,
    keypair: Arc<Keypair>,
    counter: u64,
}

impl Transport for WireGuardTransport {
    fn name(&self) -> &'static str {
        "wireguard"
    }

    fn attach(&self, senders: Senders) {
        let _ = self.wg.senders.set(senders);
    }

    fn encapsulate(&self, ctx: &mut Ctx<'_>, pkts: &mut [Packet]) {
        let t = self.wg.time();
        let mut out = Outbox::default();
        let mut plans = Vec::with_capacity(pkts.len());
        {
            let mut dev = self.wg.lock();
            for (idx, p) in pkts.iter_mut().enumerate() {
                p.verdict = Verdict::Drop;
                let Ok(info) = ip::parse(p.data()) else {
                    p.drop_with(ctx.counters, DropReason::MalformedIp);
                    continue;
                };
                let Some(peer) = dev.route(info.dst) else {
                    p.drop_with(ctx.counters, DropReason::NoRoute);
                    continue;
                };
                // Bytes after the IP length (none from TUN) would be encrypted for nothing.
                p.len = info.len;
                match dev.prepare_send(peer, p.data(), t, &mut OsRng, &mut out) {
                    SendPlan::Encrypt {
                        keypair,
                        counter,
                        endpoint,
                    } => plans.push(Planned {
                        idx,
                        peer,
                        keypair,
                        counter,
                        endpoint,
                    }),
                    SendPlan::Queued => {}
                    SendPlan::Drop(d) => self.wg.counters.drop(d),
                }
            }
        }
        let mut tx: HashMap<PeerId, usize> = HashMap::new();
        for pl in plans {
            let p = &mut pkts[pl.idx];
            let (start, len) = (p.start, p.len);
            if p.raw_mut().len() < start + len + 16 + TAG_LEN || start < TRANSPORT_HEADER_LEN {
                p.drop_with(ctx.counters, DropReason::Oversized);
                continue;
            }
            match pl.keypair.seal(pl.counter, p.raw_mut(), start, len) {
                Some(r) => {
                    p.start = r.start;
                    p.len = r.len();
                    p.addr = pl.endpoint;
                    p.sock = 0;
                    p.verdict = Verdict::Send;
                    *tx.entry(pl.peer).or_default() += r.len();
                }
                None => p.drop_with(ctx.counters, DropReason::Oversized),
            }
        }
        if !tx.is_empty() {
            let mut dev = self.wg.lock();
            for (peer, bytes) in tx {
                dev.count_tx(peer, bytes);
            }
        }
        self.wg.finish(out, Some(ctx.extra));
    }

    /// Claims the inner packets whose destination a peer's allowed IPs cover (cryptokey
    /// routing), one lock for the batch.
    fn claims(&self, pkts: &mut [Packet]) {
        let dev = self.wg.lock();
        for p in pkts.iter_mut().filter(|p| p.verdict == Verdict::ToTun) {
            if let Ok(info) = ip::parse(p.data()) {
                let len = dev.route_prefix_len(info.dst);
                p.claimed = len.is_some();
                p.claim_len = len.unwrap_or(0);
            }
        }
    }

    fn decapsulate(&self, ctx: &mut Ctx<'_>, pkts: &mut [Packet]) {
        let t = self.wg.time();
        let mut out = Outbox::default();
        let mut received = Vec::with_capacity(pkts.len());
        {
            let mut dev = self.wg.lock();
            for (idx, p) in pkts.iter_mut().enumerate() {
                p.verdict = Verdict::Drop;
                match messages::parse(p.data()) {
                    Ok(Message::Transport {
                        receiver, counter, ..
                    }) => match dev.lookup_receiver(receiver, t) {
                        Ok((peer, keypair)) => received.push(Received {
                            idx,
                            peer,
                            keypair,
                            counter,
                        }),
                        Err(d) => self.wg.counters.drop(d),
                    },
                    Ok(_) => {
                        dev.under_load = self.wg.note_handshake_message(t.mono);
                        let src = p.addr;
                        if let Err(d) = dev.handle_handshake(src, p.data(), t, &mut OsRng, &mut out)
                        {
                            self.wg.counters.drop(d);
                        }
                    }
                    Err(e) => self.wg.counters.drop(wg::DropReason::from(e)),
                }
            }
        }
        // Decrypt outside the lock.
        let mut opened: Vec<(Received, usize, usize, Option<std::net::IpAddr>)> =
            Vec::with_capacity(received.len());
        for r in received {
            let p = &mut pkts[r.idx];
            let wire_len = p.len;
            let payload = &mut p.data_mut()[TRANSPORT_HEADER_LEN..];
            match r.keypair.open(r.counter, payload) {
                Ok(plain) => {
                    let (inner_len, src) = match ip::parse(&payload[..plain]) {
                        Ok(i) => (i.len, Some(i.src)),
                        Err(_) if plain == 0 => (0, None),
                        Err(_) => {
                            self.wg.counters.drop(wg::DropReason::Malformed);
                            continue;
                        }
                    };
                    opened.push((r, wire_len, inner_len, src));
                }
                Err(e) => self.wg.counters.drop(open_drop(e)),
            }
        }
        if !opened.is_empty() {
            let mut dev = self.wg.lock();
            for (r, wire_len, inner_len, src) in opened {
                let p = &mut pkts[r.idx];
                dev.received_data(
                    r.peer, &r.keypair, p.addr, wire_len, inner_len, t, &mut OsRng, &mut out,
                );
                let Some(src) = src else { continue }; // keepalive
                if !dev.allowed_src(r.peer, src) {
                    self.wg.counters.drop(wg::DropReason::SourceNotAllowed);
                    continue;
                }
                p.start += TRANSPORT_HEADER_LEN;
                p.len = inner_len;
                p.verdict = Verdict::ToTun;
            }
        }
        self.wg.finish(out, Some(ctx.extra));
    }

    fn tick(&self, ctx: &mut Ctx<'_>) {
        // Timers are device-wide: one worker drives them.
        if ctx.worker != 0 {
            return;
        }
        let t = self.wg.time();
        let mut out = Outbox::default();
        self.wg.lock().update_timers(t, &mut OsRng, &mut out);
        self.wg.finish(out, Some(ctx.extra));
    }

    fn tick_interval(&self) -> Duration {
        Duration::from_millis(100)
    }
}
