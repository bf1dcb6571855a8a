//! One worker thread: an epoll loop over its own TUN queue, its own UDP sockets (one per device
//! port) and a control eventfd. The pipeline per wake-up, in processing order:
//!
//! 1. `read_tun`     — read IP packets from the TUN queue (non-blocking). With offload on, one
//!    read may return a TCP/UDP super-packet of up to 64 KB, split here into MSS-sized packets
//!    (`offload::tso`), so one syscall fills up to ~46 slots of the batch.
//! 2. `encapsulate`  — the transport rewrites them in place into datagrams (`tun_ingress`; a
//!    tenant TUN's transport instead marks them `HandOff`, for stage 6). A full enough batch is
//!    shared with the device's other workers and joined in order (`crate::spread`).
//! 3. `send`         — one `sendmmsg` per socket for the batch plus any extra protocol messages;
//!    with offload on, runs of equal-size datagrams to one peer go as one `UDP_SEGMENT` message
//!    (`crate::send`).
//! 4. `recv_udp`     — one `recvmmsg`; with `UDP_GRO` a message may hold many datagrams, which
//!    are spread over separate packets (the transport sees one datagram per `Packet`).
//! 5. `decapsulate`  — the transport authenticates/unwraps them in place (shared like 2).
//! 6. `handoff`      — inner packets another device routes are encapsulated by its transport and
//!    sent from its ports, here (`crate::handoff`); those too big for its tunnels are answered
//!    with an ICMP error through this transport. Runs after 5, and after 2 for `HandOff`
//!    packets (which are never written back to this TUN).
//! 7. `write_tun`    — inner packets to the device's TUN, each on its flow's queue (this
//!    worker's, unless another worker wrote the flow first: `crate::tun_queues`);
//!    with offload on, in-order TCP segments of one flow are coalesced into one write
//!    (`offload::gro`). Replies go through `send`.
//! 8. `tick`         — protocol timers, at least every `tick_interval`, and whenever a control
//!    thread asks for it (`Senders::wake`).
//!
//! At each wake-up by its control eventfd a worker first runs the shares other workers left for
//! it (`Crew::help`).
//!
//! Each wake-up reads the data plane's clock once (`crate::clock`); every stage and transport
//! of that wake-up sees that time.
//!
//! A panic inside the loop is caught, counted and the loop restarted on the same fds; a worker
//! that keeps panicking gives up and reports it, instead of spinning.

use crate::clock;
use crate::control::Control;
use crate::counters::{DropReason, WorkerCounters};
use crate::handoff::{self, Handoff};
use crate::offload::gro::Coalescer;
use crate::offload::virtio::{GsoType, VirtioNetHdr, VIRTIO_NET_HDR_LEN};
use crate::offload::{tso, udp_gso};
use crate::send;
use crate::spread::{Crew, Spreader, Stage};
use crate::sys::Epoll;
use crate::transport::{Ctx, Outgoing, Packet, Transport, Verdict, BUF_SIZE, HEADROOM};
use crate::tun::TunQueue;
use crate::tun_queues::TunQueues;
use crate::udp::{MmsgScratch, UdpSocket};
use crate::Event;
use arc_swap::ArcSwapOption;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Packets per transport batch. A TUN read can yield up to ~46 packets (64 KB at MSS 1448), so
/// the batch holds two such reads plus change.
pub const BATCH: usize = 128;
/// Read from TUN only while this many slots are free: room for one more super-packet.
const TUN_READ_ROOM: usize = 64;
/// Messages per `recvmmsg`. Each may expand to many datagrams with `UDP_GRO`; the batch is
/// handed to the transport whenever it fills up.
const RX_MSGS: usize = 64;
/// A worker that panics more often than this within `PANIC_WINDOW` stops restarting.
const MAX_PANICS: usize = 5;
const PANIC_WINDOW: Duration = Duration::from_secs(60);

const TOKEN_TUN: u64 = 0;
const TOKEN_CTL: u64 = 1;
/// UDP socket `i` of the device is registered as `TOKEN_UDP + i`.
const TOKEN_UDP: u64 = 2;

pub struct WorkerIo {
    pub tun: TunQueue,
    /// One socket per device port, in the device's port order.
    pub udp: Vec<UdpSocket>,
}

pub struct WorkerArgs {
    pub index: usize,
    pub io: WorkerIo,
    pub control: Arc<Control>,
    pub counters: Arc<WorkerCounters>,
    pub transport: Arc<dyn Transport>,
    /// What the handoff stage hands packets to (`crate::handoff`); swapped at runtime.
    pub handoff: Arc<ArcSwapOption<Handoff>>,
    /// The device's workers, which share each other's crypto (`crate::spread`).
    pub crew: Arc<Crew>,
    /// The device's TUN queues, which inner packets are written on by flow
    /// (`crate::tun_queues`).
    pub tun_queues: Arc<TunQueues>,
    pub events: crate::EventSink,
}

struct Buffers {
    /// The TUN-side batch.
    tun: Vec<Packet>,
    /// Segment sizes written by `tso::split`, parallel to `tun`.
    sizes: Vec<usize>,
    /// Landing buffer of vnet TUN reads (header in the headroom, packet at `HEADROOM`). A plain
    /// packet is swapped into the batch, a super-packet split out of it.
    spare: Packet,
    /// `spare` holds a read (this many bytes incl. header) that did not fit the last batch.
    pending: Option<usize>,
    /// The UDP-side batch.
    udp: Vec<Packet>,
    /// `recvmmsg` landing buffers; the first datagram of each is swapped into `udp`, the
    /// others of a GRO message are copied.
    rx: Vec<Packet>,
    lens: Vec<usize>,
    addrs: Vec<Option<SocketAddr>>,
    segs: Vec<usize>,
    scratch: MmsgScratch,
    extra: Vec<Outgoing>,
    coalescer: Coalescer,
    tun_lens: Vec<usize>,
    writes: Vec<usize>,
    spreader: Spreader,
}

impl Buffers {
    fn new() -> Buffers {
        Buffers {
            tun: (0..BATCH).map(|_| Packet::new()).collect(),
            sizes: vec![0; BATCH],
            spare: Packet::new(),
            pending: None,
            udp: (0..BATCH).map(|_| Packet::new()).collect(),
            rx: (0..RX_MSGS).map(|_| Packet::new()).collect(),
            lens: vec![0; RX_MSGS],
            addrs: vec![None; RX_MSGS],
            segs: vec![0; RX_MSGS],
            scratch: MmsgScratch::new(BATCH),
            extra: Vec::new(),
            coalescer: Coalescer::new(),
            tun_lens: Vec::with_capacity(BATCH),
            writes: Vec::with_capacity(BATCH),
            spreader: Spreader::new(),
        }
    }
}

/// Which of the two batches a stage works on.
#[derive(Clone, Copy)]
enum Side {
    /// Read from the TUN queue.
    Tun,
    /// Received on the UDP sockets.
    Udp,
}

/// Body of a worker thread.
pub fn run(args: WorkerArgs) {
    let index = args.index;
    let events = args.events.clone();
    events(Event::WorkerStarted { worker: index });
    let mut panics: Vec<Instant> = Vec::new();
    let mut bufs = Buffers::new();
    loop {
        let r = catch_unwind(AssertUnwindSafe(|| event_loop(&args, &mut bufs)));
        match r {
            Ok(Ok(())) => break,
            Ok(Err(e)) => {
                args.tun_queues.clear(index);
                events(Event::WorkerFailed {
                    worker: index,
                    reason: format!("I/O error: {e}"),
                });
                break;
            }
            Err(payload) => {
                let msg = panic_message(&payload);
                let counters = &args.counters;
                WorkerCounters::add(&counters.restarts, 1);
                let now = Instant::now();
                panics.retain(|t| now.duration_since(*t) < PANIC_WINDOW);
                panics.push(now);
                if panics.len() > MAX_PANICS {
                    args.tun_queues.clear(index);
                    events(Event::WorkerFailed {
                        worker: index,
                        reason: format!(
                            "gave up after {} panics in {:?}: {msg}",
                            panics.len(),
                            PANIC_WINDOW
                        ),
                    });
                    break;
                }
                events(Event::WorkerRestarted {
                    worker: index,
                    reason: msg,
                    restarts: counters.restarts.load(Ordering::Relaxed),
                });
                // Buffers may be mid-batch; start from clean ones.
                bufs = Buffers::new();
                crate::trace::reset();
            }
        }
    }
    drop(args);
    events(Event::WorkerStopped { worker: index });
}

fn panic_message(payload: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_string()
    }
}

fn event_loop(w: &WorkerArgs, bufs: &mut Buffers) -> io::Result<()> {
    let (io, control) = (&w.io, &w.control);
    let epoll = Epoll::new()?;
    if io.tun.lost().is_none() {
        epoll.add(io.tun.as_raw_fd(), TOKEN_TUN)?;
    }
    epoll.add(control.wake.as_raw_fd(), TOKEN_CTL)?;
    for (i, u) in io.udp.iter().enumerate() {
        epoll.add(u.as_raw_fd(), TOKEN_UDP + i as u64)?;
    }
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 2 + io.udp.len()];
    let mut udp_ready = vec![false; io.udp.len()];
    let tick = w.transport.tick_interval();
    let mut next_tick = Instant::now() + tick;
    loop {
        let timeout = next_tick.saturating_duration_since(Instant::now());
        let n = epoll.wait(
            &mut events,
            timeout.as_millis().min(i32::MAX as u128) as i32 + 1,
        )?;
        let woke = Instant::now();
        if control.stop.load(Ordering::Acquire) {
            return Ok(());
        }
        if control.inject_panic.swap(false, Ordering::AcqRel) {
            panic!("worker {}: injected panic (test hook)", w.index);
        }
        let mut tun_ready = false;
        udp_ready.fill(false);
        for ev in &events[..n] {
            match ev.u64 {
                TOKEN_TUN => tun_ready = true,
                TOKEN_CTL => {
                    control.wake.drain();
                    w.crew.help(w.index, w.transport.as_ref(), &w.counters);
                }
                t => {
                    if let Some(r) = udp_ready.get_mut((t - TOKEN_UDP) as usize) {
                        *r = true;
                    }
                }
            }
        }
        let mut wake = Wake {
            index: w.index,
            io,
            counters: &w.counters,
            transport: w.transport.as_ref(),
            handoff: &w.handoff,
            crew: &w.crew,
            tun_queues: &w.tun_queues,
            now: clock::at(woke),
            bufs: &mut *bufs,
        };
        let mut did_work = false;
        if tun_ready {
            did_work |= wake.tun_ready();
            crate::tun::stop_polling_if_lost(w.index, &io.tun, &epoll, &w.events);
        }
        for (sock, ready) in udp_ready.iter().enumerate() {
            if *ready {
                did_work |= wake.udp_ready(sock)?;
            }
        }
        if woke >= next_tick || control.tick_now.swap(false, Ordering::AcqRel) {
            wake.tick();
            if woke >= next_tick {
                next_tick = woke + tick;
            }
        }
        if did_work {
            WorkerCounters::add(&w.counters.batches, 1);
        }
        WorkerCounters::add(&w.counters.busy_ns, woke.elapsed().as_nanos() as u64);
    }
}

/// What the stages of one wake-up work with: the worker's I/O, counters, transport and
/// handoff, the time it woke up (the one clock reading of this wake-up) and its buffers.
struct Wake<'a> {
    index: usize,
    io: &'a WorkerIo,
    counters: &'a WorkerCounters,
    transport: &'a dyn Transport,
    handoff: &'a ArcSwapOption<Handoff>,
    crew: &'a Crew,
    tun_queues: &'a TunQueues,
    now: Duration,
    bufs: &'a mut Buffers,
}

impl Wake<'_> {
    /// Stages 1–3 (and 6 for `HandOff` packets), until the TUN queue is empty.
    fn tun_ready(&mut self) -> bool {
        let mut any = false;
        loop {
            // 1. read_tun
            let n = if self.io.tun.vnet() {
                self.read_tun_vnet()
            } else {
                self.read_tun_plain()
            };
            if n == 0 {
                return any;
            }
            any = true;
            // 2. encapsulate
            crate::trace::begin(
                self.index,
                self.transport.name(),
                &mut self.bufs.tun[..n],
                self.now,
                true,
            );
            self.transport_stage(Stage::Seal, n);
            crate::trace::sealed(self.transport.name(), &self.bufs.tun[..n]);
            // 6. handoff of what other devices route (a tenant TUN's packets)
            if self.bufs.tun[..n]
                .iter()
                .any(|p| p.verdict == Verdict::HandOff)
            {
                self.handoff(Side::Tun, n);
                self.unrouted(n);
            }
            // 3. send
            self.send(Side::Tun, n);
            crate::trace::commit(&self.bufs.tun[..n]);
            // A super-packet that did not fit is not signalled by epoll again: finish it now.
            if self.bufs.pending.is_none() {
                return any;
            }
        }
    }

    /// Stage 1 without a virtio header: one packet per read, straight into the batch.
    fn read_tun_plain(&mut self) -> usize {
        let (io, counters, bufs) = (self.io, self.counters, &mut *self.bufs);
        let mut n = 0;
        while n < BATCH {
            let p = &mut bufs.tun[n];
            match io.tun.read(p.recv_area()) {
                Ok(len) => {
                    reset_packet(p, len);
                    WorkerCounters::add(&counters.tun_reads, 1);
                    WorkerCounters::add(&counters.tun_rx_packets, 1);
                    WorkerCounters::add(&counters.tun_rx_bytes, len as u64);
                    n += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        n
    }

    /// Reads with a virtio header: each read lands in `spare` and becomes one packet (swapped
    /// into the batch, no copy) or, for a super-packet, MSS-sized packets split into the batch.
    fn read_tun_vnet(&mut self) -> usize {
        let mut n = 0;
        if let Some(len) = self.bufs.pending.take() {
            n += self.place_read(len, n);
        }
        while BATCH - n >= TUN_READ_ROOM {
            let (io, counters, bufs) = (self.io, self.counters, &mut *self.bufs);
            let area = &mut bufs.spare.as_mut()[HEADROOM - VIRTIO_NET_HDR_LEN..];
            let len = match io.tun.read(area) {
                Ok(len) => len,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            WorkerCounters::add(&counters.tun_reads, 1);
            let raw = &bufs.spare.raw()[HEADROOM - VIRTIO_NET_HDR_LEN..];
            let count = VirtioNetHdr::decode(&raw[..len])
                .and_then(|h| tso::segment_count(&h, &raw[VIRTIO_NET_HDR_LEN..len]));
            match count {
                Ok(k) if k > BATCH => counters.drop_packet(DropReason::Oversized),
                Ok(k) if k > BATCH - n => {
                    bufs.pending = Some(len);
                    break;
                }
                Ok(_) => n += self.place_read(len, n),
                Err(_) => counters.drop_packet(DropReason::BadOffload),
            }
        }
        n
    }

    /// Moves the read in `spare` (`len` bytes incl. header) into the batch at `at`; returns the
    /// number of packets it became (0 if it was malformed).
    fn place_read(&mut self, len: usize, at: usize) -> usize {
        let (counters, bufs) = (self.counters, &mut *self.bufs);
        let raw = &bufs.spare.raw()[HEADROOM - VIRTIO_NET_HDR_LEN..];
        let Ok(hdr) = VirtioNetHdr::decode(raw) else {
            counters.drop_packet(DropReason::BadOffload);
            return 0;
        };
        let plen = len - VIRTIO_NET_HDR_LEN;
        if hdr.gso() == Ok(GsoType::None) {
            let pkt = &mut bufs.spare.as_mut()[HEADROOM..HEADROOM + plen];
            if tso::complete_checksum(&hdr, pkt).is_err() {
                counters.drop_packet(DropReason::BadOffload);
                return 0;
            }
            std::mem::swap(&mut bufs.spare, &mut bufs.tun[at]);
            reset_packet(&mut bufs.tun[at], plen);
            WorkerCounters::add(&counters.tun_rx_packets, 1);
            WorkerCounters::add(&counters.tun_rx_bytes, plen as u64);
            return 1;
        }
        let pkt = &bufs.spare.raw()[HEADROOM..HEADROOM + plen];
        match tso::split(
            &hdr,
            pkt,
            &mut bufs.tun[at..],
            &mut bufs.sizes[at..],
            HEADROOM,
        ) {
            Ok(k) => {
                let mut bytes = 0;
                for i in at..at + k {
                    reset_packet(&mut bufs.tun[i], bufs.sizes[i]);
                    bytes += bufs.sizes[i];
                }
                WorkerCounters::add(&counters.tun_rx_packets, k as u64);
                WorkerCounters::add(&counters.tun_rx_bytes, bytes as u64);
                k
            }
            Err(_) => {
                counters.drop_packet(DropReason::BadOffload);
                0
            }
        }
    }

    /// Stage 3 on the first `n` packets of one batch, and the extra datagrams.
    fn send(&mut self, side: Side, n: usize) {
        let bufs = &mut *self.bufs;
        let pkts = match side {
            Side::Tun => &bufs.tun[..n],
            Side::Udp => &bufs.udp[..n],
        };
        send::packets(&self.io.udp, self.counters, pkts, &mut bufs.scratch);
        send::extra(
            &self.io.udp,
            self.counters,
            &mut bufs.extra,
            &mut bufs.scratch,
        );
    }

    /// Stage 4 on socket `sock`, then 5–7 for each batch it fills.
    fn udp_ready(&mut self, sock: usize) -> io::Result<bool> {
        let counters = self.counters;
        // 4. recv_udp
        let r = {
            let bufs = &mut *self.bufs;
            let mut areas: Vec<&mut [u8]> = bufs.rx.iter_mut().map(|p| p.recv_area()).collect();
            match self.io.udp[sock].recv_batch(
                &mut areas,
                &mut bufs.lens,
                &mut bufs.addrs,
                &mut bufs.segs,
                &mut bufs.scratch,
            ) {
                Ok(n) => n,
                // ICMP errors surface on the next recv; they carry no datagram.
                Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => 0,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
                Err(e) => return Err(e),
            }
        };
        if r == 0 {
            return Ok(false);
        }
        WorkerCounters::add(&counters.udp_recvs, 1);
        let mut n = 0;
        for j in 0..r {
            let (len, seg) = (self.bufs.lens[j], self.bufs.segs[j]);
            let Some(addr) = self.bufs.addrs[j] else {
                continue;
            };
            let k = if seg == 0 { 1 } else { len.div_ceil(seg) };
            if k > BATCH {
                counters.drop_packet(DropReason::BadOffload);
                continue;
            }
            if n + k > BATCH {
                self.udp_batch(n);
                n = 0;
            }
            let bufs = &mut *self.bufs;
            // Datagrams after the first are copied out before the first's buffer is handed on.
            for (t, range) in udp_gso::gro_segments(len, seg).enumerate().skip(1) {
                let src = &bufs.rx[j].raw()[HEADROOM + range.start..HEADROOM + range.end];
                let p = &mut bufs.udp[n + t];
                p.as_mut()[HEADROOM..HEADROOM + src.len()].copy_from_slice(src);
                reset_packet(p, src.len());
                p.addr = addr;
                p.sock = sock;
            }
            std::mem::swap(&mut bufs.rx[j], &mut bufs.udp[n]);
            let p = &mut bufs.udp[n];
            reset_packet(p, if seg == 0 { len } else { seg.min(len) });
            p.addr = addr;
            p.sock = sock;
            WorkerCounters::add(&counters.udp_rx_packets, k as u64);
            WorkerCounters::add(&counters.udp_rx_bytes, len as u64);
            n += k;
        }
        if n > 0 {
            self.udp_batch(n);
        }
        Ok(true)
    }

    /// Stages 5 to 7 (and 3 for replies) for the first `n` packets of the UDP batch.
    fn udp_batch(&mut self, n: usize) {
        // 5. decapsulate
        crate::trace::begin(
            self.index,
            self.transport.name(),
            &mut self.bufs.udp[..n],
            self.now,
            false,
        );
        crate::trace::wire(self.transport.name(), &self.bufs.udp[..n]);
        self.transport_stage(Stage::Open, n);
        crate::trace::opened(&self.bufs.udp[..n]);
        // 6. handoff
        self.handoff(Side::Udp, n);
        // 7. write_tun
        self.write_tun(n);
        // 3. send: replies (handshake responses, ICMP errors) and extra datagrams
        self.send(Side::Udp, n);
        crate::trace::commit(&self.bufs.udp[..n]);
    }

    /// Stage 2 (`Seal`, the TUN batch) or 5 (`Open`, the UDP batch) on its first `n` packets,
    /// shared with the other workers when it pays (`crate::spread`).
    fn transport_stage(&mut self, stage: Stage, n: usize) {
        let bufs = &mut *self.bufs;
        let pkts = match stage {
            Stage::Seal => &mut bufs.tun,
            Stage::Open => &mut bufs.udp,
        };
        bufs.spreader.run(
            self.crew,
            self.index,
            self.transport,
            self.counters,
            stage,
            self.now,
            pkts,
            n,
            &mut bufs.extra,
        );
    }

    /// Stage 6 on the first `n` packets of one batch.
    fn handoff(&mut self, side: Side, n: usize) {
        let cell = self.handoff;
        let guard = cell.load();
        let Some(h) = guard.as_ref() else {
            return;
        };
        let bufs = &mut *self.bufs;
        let pkts = match side {
            Side::Tun => &mut bufs.tun[..n],
            Side::Udp => &mut bufs.udp[..n],
        };
        let mut stage = handoff::Stage {
            ingress: self.transport,
            ctx: Ctx {
                worker: self.index,
                counters: self.counters,
                now: self.now,
                extra: &mut bufs.extra,
            },
            scratch: &mut bufs.scratch,
        };
        handoff::run(h, &mut stage, pkts);
    }

    /// After the handoff of packets read from the TUN: what nobody took is dropped, never
    /// written back; what is left for the TUN are the ICMP errors made for their senders.
    fn unrouted(&mut self, n: usize) {
        let counters = self.counters;
        let queues = self.tun_queues.load();
        for p in self.bufs.tun[..n].iter_mut() {
            match p.verdict {
                Verdict::HandOff => {
                    crate::trace::drop(p, DropReason::NoRoute);
                    counters.drop_packet(DropReason::NoRoute)
                }
                Verdict::ToTun => {
                    WorkerCounters::add(&counters.tun_writes, 1);
                    let q =
                        self.tun_queues
                            .pick(&queues, self.index, &self.io.tun, p.data(), self.now);
                    match q.write_packet(p.data()) {
                        Ok(_) => {
                            WorkerCounters::add(&counters.tun_tx_packets, 1);
                            WorkerCounters::add(&counters.tun_tx_bytes, p.len as u64);
                        }
                        Err(_) => counters.drop_packet(DropReason::TunWriteFailed),
                    }
                }
                _ => continue,
            }
            p.verdict = Verdict::Drop;
        }
    }

    /// Stage 7 for the first `n` packets of the UDP batch.
    fn write_tun(&mut self, n: usize) {
        let (io, counters, bufs) = (self.io, self.counters, &mut *self.bufs);
        let pkts = &mut bufs.udp[..n];
        let queues = self.tun_queues.load();
        if !io.tun.vnet() {
            for p in pkts.iter().filter(|p| p.verdict == Verdict::ToTun) {
                WorkerCounters::add(&counters.tun_writes, 1);
                let q = self
                    .tun_queues
                    .pick(&queues, self.index, &io.tun, p.data(), self.now);
                match q.write(p.data()) {
                    Ok(_) => {
                        WorkerCounters::add(&counters.tun_tx_packets, 1);
                        WorkerCounters::add(&counters.tun_tx_bytes, p.len as u64);
                    }
                    Err(_) => counters.drop_packet(DropReason::TunWriteFailed),
                }
            }
            return;
        }
        // Transports strip headers of different lengths; the coalescer wants one offset, with
        // room for the virtio header in front.
        let Some(first) = pkts.iter().find(|p| p.verdict == Verdict::ToTun) else {
            return;
        };
        let offset = if first.start >= VIRTIO_NET_HDR_LEN {
            first.start
        } else {
            HEADROOM
        };
        let mut views: Vec<&mut [u8]> = Vec::with_capacity(n);
        bufs.tun_lens.clear();
        for p in pkts.iter_mut().filter(|p| p.verdict == Verdict::ToTun) {
            if offset + p.len > BUF_SIZE {
                p.drop_with(counters, DropReason::Oversized);
                continue;
            }
            p.move_to(offset);
            bufs.tun_lens.push(p.len);
            views.push(p.as_mut());
        }
        if io.tun.offload().tso() {
            bufs.coalescer
                .coalesce(&mut views, &mut bufs.tun_lens, offset, &mut bufs.writes);
        } else {
            bufs.writes.clear();
            for (i, v) in views.iter_mut().enumerate() {
                VirtioNetHdr::NONE.encode(&mut v[offset - VIRTIO_NET_HDR_LEN..]);
                bufs.writes.push(i);
            }
        }
        for &w in &bufs.writes {
            let len = bufs.tun_lens[w];
            let frame = &views[w][offset - VIRTIO_NET_HDR_LEN..offset + len];
            // A coalesced write carries several IP packets: count those, with their own headers.
            let (segments, bytes) = match VirtioNetHdr::decode(frame) {
                Ok(h) if h.gso_type != 0 && h.gso_size > 0 => {
                    let hl = h.hdr_len as usize;
                    let k = len.saturating_sub(hl).div_ceil(h.gso_size as usize).max(1);
                    (k, len + (k - 1) * hl)
                }
                _ => (1, len),
            };
            WorkerCounters::add(&counters.tun_writes, 1);
            let ip = &frame[VIRTIO_NET_HDR_LEN..];
            let q = self
                .tun_queues
                .pick(&queues, self.index, &io.tun, ip, self.now);
            match q.write(frame) {
                Ok(_) => {
                    WorkerCounters::add(&counters.tun_tx_packets, segments as u64);
                    WorkerCounters::add(&counters.tun_tx_bytes, bytes as u64);
                }
                Err(_) => {
                    for _ in 0..segments {
                        counters.drop_packet(DropReason::TunWriteFailed);
                    }
                }
            }
        }
    }

    /// Stage 8.
    fn tick(&mut self) {
        let mut ctx = Ctx {
            worker: self.index,
            counters: self.counters,
            now: self.now,
            extra: &mut self.bufs.extra,
        };
        self.transport.tick(&mut ctx);
        send::extra(
            &self.io.udp,
            self.counters,
            &mut self.bufs.extra,
            &mut self.bufs.scratch,
        );
    }
}

fn reset_packet(p: &mut Packet, len: usize) {
    p.start = HEADROOM;
    p.len = len;
    p.verdict = Verdict::Drop;
    p.sock = 0;
    p.tag = 0;
    p.claim_key = None;
}
