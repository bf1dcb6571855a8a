//! The packet trace (VPP's `trace add` / `show trace`): per packet, every stage it passed on a
//! worker, from ingress to its verdict, kept in a fixed-size ring per worker.
//!
//! Cost when off: `begin` reads one relaxed atomic per batch; the hooks in the pipelines test a
//! thread-local flag that `begin` sets only while a traced batch runs. When on:
//! 1. `begin`   — the batch's packets get their slot (`Packet::trace`) and an `ingress` record;
//! 2. hooks     — the transports and the handoff append headers and decisions (`record::Stage`)
//!    to the worker's scratch, and mark which filter conditions each packet met (`filter`);
//! 3. `commit`  — after the batch's send, the packets that met every condition get their
//!    verdict and go into the worker's ring, whole, while the count lasts (then the trace stops).
//!
//! Nothing here allocates per packet: the scratch and the ring are allocated once per worker
//! thread, on its first traced batch. A worker never waits for the control plane: it appends
//! to its ring with `try_lock`, and counts the records as lost if a reader holds it.

pub mod filter;
pub mod record;
pub mod ring;

pub use filter::Filter;
pub use record::{Record, Stage};
use ring::{Ring, RING_RECORDS};

use crate::counters::DropReason;
use crate::transport::{Packet, Verdict};
use crate::worker::BATCH;
use arc_swap::ArcSwapOption;
use cvlan_proto::ip;
use cvlan_proto::wireguard::Device as WgDevice;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Records one batch may collect before commit (a batch of `BATCH` packets, ~8 each, twice).
const SCRATCH_RECORDS: usize = BATCH * 16;
/// Largest `count` a trace accepts (the rings bound what is kept in any case).
pub const MAX_COUNT: u64 = 100_000;

/// The gate: read once per batch.
static ON: AtomicBool = AtomicBool::new(false);
static SESSION: ArcSwapOption<Session> = ArcSwapOption::const_empty();
/// Every worker thread's ring (registered on its first traced batch).
static RINGS: Mutex<Vec<Arc<Mutex<Ring>>>> = Mutex::new(Vec::new());
static NEXT_RING: AtomicU64 = AtomicU64::new(1);
/// Records of batches whose ring a reader held at commit (the worker did not wait).
static LOST_BUSY: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// True between `begin` and `commit` of a traced batch on this worker.
    static LIVE: Cell<bool> = const { Cell::new(false) };
    static STATE: RefCell<Option<Box<BatchState>>> = const { RefCell::new(None) };
}

/// A started trace.
pub struct Session {
    pub filter: Filter,
    required: u8,
    pub count: u64,
    remaining: AtomicU64,
}

/// A worker's trace scratch and ring.
struct BatchState {
    ring: Arc<Mutex<Ring>>,
    ring_id: u64,
    batch: u64,
    session: Option<Arc<Session>>,
    at: Duration,
    n: usize,
    recs: Vec<Record>,
    /// Filter conditions met, per slot.
    mask: [u8; BATCH],
    out: Vec<Record>,
}

impl BatchState {
    fn push(&mut self, p: &Packet, stage: Stage) {
        let slot = p.trace as usize;
        if slot < self.n && self.recs.len() < self.recs.capacity() {
            self.recs.push(Record {
                packet: slot as u64,
                at: self.at,
                stage,
            });
        }
    }

    fn mark(&mut self, p: &Packet, bits: u8) {
        if let Some(m) = self.mask.get_mut(p.trace as usize) {
            *m |= bits;
        }
    }

    fn filter(&self) -> Option<&Filter> {
        self.session.as_ref().map(|s| &s.filter)
    }
}

/// Runs `f` on this worker's batch state if a traced batch is running.
#[inline]
fn with(f: impl FnOnce(&mut BatchState)) {
    if LIVE.with(Cell::get) {
        STATE.with(|s| {
            if let Some(st) = s.borrow_mut().as_mut() {
                f(st)
            }
        });
    }
}

/// Starts a trace of `count` packets matching `filter` (replacing any running one, and
/// clearing what the rings hold).
pub fn start(filter: Filter, count: u64) {
    ON.store(false, Relaxed);
    clear();
    SESSION.store(Some(Arc::new(Session {
        required: filter.required(),
        filter,
        count,
        remaining: AtomicU64::new(count),
    })));
    ON.store(count > 0, Relaxed);
}

/// Stops tracing; what was recorded stays readable.
pub fn stop() {
    ON.store(false, Relaxed);
}

/// Empties every worker's ring.
pub fn clear() {
    LOST_BUSY.store(0, Relaxed);
    for r in RINGS.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        r.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// One traced packet, its stages in pipeline order.
#[derive(Debug, Clone)]
pub struct TracedPacket {
    pub id: u64,
    pub at: Duration,
    pub stages: Vec<Stage>,
}

/// The state of the trace as the control plane reads it.
#[derive(Debug, Clone)]
pub struct Status {
    pub on: bool,
    /// The running (or last) trace's filter and count; `None` before the first start.
    pub filter: Option<Filter>,
    pub count: u64,
    /// Packets still to record.
    pub remaining: u64,
    /// Records that found no room (ring full, or being read).
    pub lost: u64,
}

pub fn status() -> Status {
    let s = SESSION.load_full();
    let lost = LOST_BUSY.load(Relaxed)
        + RINGS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|r| r.lock().unwrap_or_else(|e| e.into_inner()).lost)
            .sum::<u64>();
    Status {
        on: ON.load(Relaxed),
        filter: s.as_ref().map(|s| s.filter.clone()),
        count: s.as_ref().map_or(0, |s| s.count),
        remaining: s.as_ref().map_or(0, |s| s.remaining.load(Relaxed)),
        lost,
    }
}

/// Every worker's traced packets, merged by time.
pub fn read() -> Vec<TracedPacket> {
    let mut rings = RINGS.lock().unwrap_or_else(|e| e.into_inner());
    // Rings of workers that are gone and hold nothing are forgotten.
    rings.retain(|r| {
        Arc::strong_count(r) > 1 || !r.lock().map(|g| g.records().is_empty()).unwrap_or(true)
    });
    let mut by_id: BTreeMap<u64, TracedPacket> = BTreeMap::new();
    for r in rings.iter() {
        let g = r.lock().unwrap_or_else(|e| e.into_inner());
        for rec in g.records() {
            by_id
                .entry(rec.packet)
                .or_insert_with(|| TracedPacket {
                    id: rec.packet,
                    at: rec.at,
                    stages: Vec::new(),
                })
                .stages
                .push(rec.stage);
        }
    }
    let mut v: Vec<TracedPacket> = by_id.into_values().collect();
    v.sort_by_key(|p| (p.at, p.id));
    v
}

/// Stage 1: a worker's batch of `pkts`, read from its TUN queue (`from_tun`) or its ports, by
/// the device whose transport is `device`. The one atomic load per batch when off.
#[inline]
pub fn begin(
    worker: usize,
    device: &'static str,
    pkts: &mut [Packet],
    now: Duration,
    from_tun: bool,
) {
    if ON.load(Relaxed) {
        begin_traced(worker, device, pkts, now, from_tun);
    }
}

#[cold]
fn begin_traced(
    worker: usize,
    device: &'static str,
    pkts: &mut [Packet],
    now: Duration,
    from_tun: bool,
) {
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        let st = s.get_or_insert_with(|| {
            let ring = Arc::new(Mutex::new(Ring::new(RING_RECORDS)));
            RINGS
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(ring.clone());
            Box::new(BatchState {
                ring,
                ring_id: NEXT_RING.fetch_add(1, Relaxed),
                batch: 0,
                session: None,
                at: Duration::ZERO,
                n: 0,
                recs: Vec::with_capacity(SCRATCH_RECORDS),
                mask: [0; BATCH],
                out: Vec::with_capacity(SCRATCH_RECORDS),
            })
        });
        st.session = SESSION.load_full();
        st.batch += 1;
        st.at = now;
        st.recs.clear();
        st.n = pkts.len().min(BATCH);
        st.mask = [0; BATCH];
        for (i, p) in pkts.iter_mut().take(BATCH).enumerate() {
            p.trace = i as u16;
            let from = (!from_tun).then_some(p.addr);
            st.push(
                p,
                Stage::Ingress {
                    device,
                    worker: worker as u16,
                    len: p.len as u32,
                    from,
                },
            );
            if from_tun {
                inner(st, p);
            }
        }
    });
    LIVE.with(|l| l.set(true));
}

fn inner(st: &mut BatchState, p: &Packet) {
    if let Ok(i) = ip::parse(p.data()) {
        let bits = st.filter().map_or(0, |f| f.inner(i.src, i.dst));
        st.mark(p, bits);
        st.push(
            p,
            Stage::Inner {
                src: i.src,
                dst: i.dst,
                proto: i.proto,
                len: i.len as u32,
            },
        );
    }
}

/// Forgets a batch a panic interrupted (the worker restarts its loop with fresh buffers).
pub fn reset() {
    LIVE.with(|l| l.set(false));
}

/// Datagrams as received, before `decapsulate`: the ESP or WireGuard header.
#[inline]
pub fn wire(device: &'static str, pkts: &[Packet]) {
    with(|st| {
        for p in pkts {
            match device {
                "wireguard" => {
                    if let Some((receiver, counter)) = record::wg_header(p.data()) {
                        st.push(p, Stage::WgDecap { receiver, counter });
                    } else if let Some(&kind @ 1..=3) = p.data().first() {
                        st.push(p, Stage::WgHandshake { kind });
                    }
                }
                "ipsec" => {
                    let mut d = p.data();
                    if p.sock == crate::ipsec::SOCK_IKE {
                        continue;
                    }
                    if p.sock == crate::ipsec::SOCK_RAW && p.addr.is_ipv4() {
                        let ihl = usize::from(d.first().copied().unwrap_or(0) & 0x0f) * 4;
                        d = d.get(ihl..).unwrap_or(&[]);
                    }
                    if let Some((spi, seq)) = record::esp_header(d) {
                        let bits = st.filter().map_or(0, |f| f.spi(spi));
                        st.mark(p, bits);
                        st.push(p, Stage::EspDecap { spi, seq });
                    }
                }
                _ => {}
            }
        }
    });
}

/// After `decapsulate`: the inner header and tenant of what it opened.
#[inline]
pub fn opened(pkts: &[Packet]) {
    with(|st| {
        for p in pkts.iter().filter(|p| p.verdict.is_inner()) {
            inner(st, p);
            tenant(st, p);
        }
    });
}

fn tenant(st: &mut BatchState, p: &Packet) {
    let bits = st.filter().map_or(0, |f| f.tenant(p.tag));
    st.mark(p, bits);
    st.push(p, Stage::Tenant { tag: p.tag });
}

/// After an `encapsulate` by the transport `device`: the SA or peer each sent packet went to.
#[inline]
pub fn sealed(device: &'static str, pkts: &[Packet]) {
    with(|st| {
        for p in pkts.iter().filter(|p| p.verdict == Verdict::Send) {
            match device {
                "wireguard" => {
                    if let Some((receiver, counter)) = record::wg_header(p.data()) {
                        let endpoint = p.addr;
                        st.push(
                            p,
                            Stage::WgEncap {
                                receiver,
                                counter,
                                endpoint,
                            },
                        );
                    }
                }
                "ipsec" => {
                    if let Some((spi, seq)) = record::esp_header(p.data()) {
                        let bits = st.filter().map_or(0, |f| f.spi(spi));
                        st.mark(p, bits);
                        let peer = p.addr;
                        st.push(p, Stage::EspEncap { spi, seq, peer });
                    }
                }
                _ => {}
            }
        }
    });
}

/// The handoff stage gives the claimed inner packets among `pkts` to the transport `to`.
#[inline]
pub fn handoff(from: &'static str, to: &'static str, pkts: &[Packet], by_route: bool) {
    with(|st| {
        for p in pkts.iter().filter(|p| p.claimed && p.verdict.is_inner()) {
            let prefix_len = if by_route {
                Some(p.best.map_or(p.claim_len, |b| b.0))
            } else {
                None
            };
            let bits = st.filter().map_or(0, |f| f.tenant(p.tag));
            st.mark(p, bits);
            st.push(
                p,
                Stage::Handoff {
                    from,
                    to,
                    tenant: p.tag,
                    prefix_len,
                },
            );
        }
    });
}

/// A WireGuard lookup (`table`: "receiver" or "allowed-ips") chose `peer` of `dev`.
#[inline]
pub fn wg_peer(p: &Packet, table: &'static str, peer: Option<u32>, dev: &WgDevice) {
    with(|st| {
        let hit = match (st.filter().and_then(|f| f.peer), peer) {
            (Some(key), Some(id)) => dev.peer_id(&key) == Some(id),
            _ => false,
        };
        st.mark(p, if hit { filter::PEER } else { 0 });
        st.push(p, Stage::WgPeer { table, peer });
    });
}

/// `p` waits for its peer's handshake.
#[inline]
pub fn queued(p: &Packet) {
    with(|st| st.push(p, Stage::Queued));
}

/// `p` was dropped for `reason` (the hook next to the counter).
#[inline]
pub fn drop(p: &Packet, reason: impl Into<DropReason>) {
    with(|st| {
        st.push(
            p,
            Stage::Drop {
                reason: reason.into(),
            },
        )
    });
}

/// `drop` that hands the reason back, for a hook inside the counter's own call.
#[inline]
pub fn dropped<R: Into<DropReason> + Copy>(p: &Packet, reason: R) -> R {
    drop(p, reason);
    reason
}

/// Stage 3: the batch is done (sent, written, handed off); `pkts` are its packets in any order.
#[inline]
pub fn commit(pkts: &[Packet]) {
    if LIVE.with(Cell::get) {
        LIVE.with(|l| l.set(false));
        STATE.with(|s| {
            if let Some(st) = s.borrow_mut().as_mut() {
                commit_traced(st, pkts)
            }
        });
    }
}

#[cold]
fn commit_traced(st: &mut BatchState, pkts: &[Packet]) {
    let Some(sess) = st.session.take() else {
        return;
    };
    let mut keep = [false; BATCH];
    for p in pkts {
        let slot = p.trace as usize;
        if slot >= st.n || st.mask[slot] & sess.required != sess.required {
            continue;
        }
        keep[slot] = true;
        let to = (p.verdict == Verdict::Send).then_some(p.addr);
        let verdict = p.verdict;
        let counted = || {
            st.recs
                .iter()
                .any(|r| r.packet == slot as u64 && matches!(r.stage, Stage::Drop { .. }))
        };
        if verdict == Verdict::Drop && !counted() {
            st.push(p, Stage::Consumed);
        } else {
            st.push(p, Stage::Verdict { verdict, to });
        }
    }
    let Ok(mut ring) = st.ring.try_lock() else {
        LOST_BUSY.fetch_add(st.recs.len() as u64, Relaxed);
        return;
    };
    for slot in (0..st.n).filter(|&s| keep[s]) {
        match sess
            .remaining
            .fetch_update(Relaxed, Relaxed, |r| r.checked_sub(1))
        {
            Ok(1) => ON.store(false, Relaxed),
            Ok(_) => {}
            Err(_) => {
                ON.store(false, Relaxed);
                break;
            }
        }
        let id = (st.ring_id << 40) | (st.batch << 8) | slot as u64;
        st.out.clear();
        st.out.extend(
            st.recs
                .iter()
                .filter(|r| r.packet == slot as u64)
                .map(|r| Record { packet: id, ..*r }),
        );
        ring.push_packet(&st.out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(src: [u8; 4], dst: [u8; 4]) -> Packet {
        let mut p = Packet::new();
        p.len = 20;
        let d = p.data_mut();
        d[0] = 0x45;
        d[2..4].copy_from_slice(&20u16.to_be_bytes());
        d[8] = 64;
        d[9] = 17;
        d[12..16].copy_from_slice(&src);
        d[16..20].copy_from_slice(&dst);
        p
    }

    /// The whole gate on one thread: filter, count limit, drop reason, verdict, stop. (The
    /// only test using the process-wide trace.)
    #[test]
    fn keeps_matching_packets_up_to_the_count_then_stops() {
        let batch = || {
            vec![
                v4([10, 1, 0, 1], [10, 2, 0, 1]),
                v4([192, 0, 2, 1], [192, 0, 2, 2]),
                v4([10, 1, 0, 2], [10, 2, 0, 2]),
                v4([10, 1, 0, 3], [10, 2, 0, 3]),
            ]
        };
        let mut pkts = batch();
        begin(0, "test", &mut pkts, Duration::from_secs(1), true);
        assert!(!LIVE.with(Cell::get), "off: the batch is not traced");
        let filter = Filter {
            prefix: Some("10.1.0.0/16".parse().unwrap()),
            ..Filter::default()
        };
        start(filter, 3);
        begin(0, "test", &mut pkts, Duration::from_secs(2), true);
        drop(&pkts[0], DropReason::NoRoute);
        pkts[2].verdict = Verdict::ToTun;
        commit(&pkts);
        let got = read();
        assert_eq!(got.len(), 3, "the count limit: 3 of the 3 matching packets");
        assert_eq!(got[0].stages[0].name(), "ingress");
        assert_eq!(got[0].stages[1].name(), "inner");
        assert!(
            got[0].stages.contains(&Stage::Drop {
                reason: DropReason::NoRoute
            }),
            "{:?}",
            got[0].stages
        );
        assert!(got[1].stages.contains(&Stage::Verdict {
            verdict: Verdict::ToTun,
            to: None
        }));
        assert_eq!(
            got[2].stages.last(),
            Some(&Stage::Consumed),
            "no drop counted: taken by the protocol"
        );
        assert!(!got[0].stages.contains(&Stage::Consumed));
        let st = status();
        assert!(!st.on, "the count reached stops the trace");
        assert_eq!(st.remaining, 0);
        // A filter no packet matches keeps nothing.
        start(
            Filter {
                tenant: Some(9),
                ..Filter::default()
            },
            10,
        );
        let mut pkts = batch();
        begin(0, "test", &mut pkts, Duration::from_secs(3), true);
        commit(&pkts);
        assert!(read().is_empty());
        assert!(status().on);
        stop();
        assert!(!status().on);
    }
}
