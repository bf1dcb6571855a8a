//! One worker thread: an epoll loop over its own TUN queue, its own UDP sockets (one per device
//! port) and a control eventfd. The pipeline per wake-up, in processing order:
//!
//! 1. `read_tun`     — read IP packets from the TUN queue (non-blocking). With offload on, one
//!    read may return a TCP/UDP super-packet of up to 64 KB, split here into MSS-sized packets
//!    (`offload::tso`), so one syscall fills up to ~46 slots of the batch.
//! 2. `encapsulate`  — the transport rewrites them in place into datagrams (a tenant TUN's
//!    transport instead marks them for the handoff, see 6).
//! 3. `send`         — one `sendmmsg` per socket for the batch plus any extra protocol messages;
//!    with offload on, runs of equal-size datagrams to one peer go as one `UDP_SEGMENT` message.
//! 4. `recv_udp`     — one `recvmmsg`; with `UDP_GRO` a message may hold many datagrams, which
//!    are spread over separate packets (the transport sees one datagram per `Packet`).
//! 5. `decapsulate`  — the transport authenticates/unwraps them in place.
//! 6. `handoff`      — inner packets the other device of a translating pair routes are
//!    encapsulated by its transport and sent from its ports, here (`crate::handoff`); those too
//!    big for its tunnels are answered with an ICMP error through this transport.
//! 7. `write_tun`    — inner packets to the TUN queue; with offload on, in-order TCP segments of
//!    one flow are coalesced into one write (`offload::gro`). Replies go through `send`.
//! 8. `tick`         — protocol timers, at least every `tick_interval`, and whenever a control
//!    thread asks for it (`Senders::wake`).
//!
//! A panic inside the loop is caught, counted and the loop restarted on the same fds; a worker
//! that keeps panicking gives up and reports it, instead of spinning.

use crate::counters::{DropReason, WorkerCounters};
use crate::handoff::{self, Handoff};
use crate::offload::gro::Coalescer;
use crate::offload::virtio::{GsoType, VirtioNetHdr, VIRTIO_NET_HDR_LEN};
use crate::offload::{tso, udp_gso};
use crate::sys::{Epoll, EventFd};
use crate::transport::{Ctx, Outgoing, Packet, Transport, Verdict, BUF_SIZE, HEADROOM};
use crate::tun::TunQueue;
use crate::udp::{MmsgScratch, SendStats, UdpSocket};
use crate::Event;
use arc_swap::ArcSwapOption;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
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

/// How the control plane talks to a running worker.
pub struct Control {
    pub wake: EventFd,
    pub stop: AtomicBool,
    /// Test hook: the worker panics at its next wake-up (exercises the restart path).
    pub inject_panic: AtomicBool,
    /// Run `Transport::tick` at the next wake-up instead of waiting for the interval.
    pub tick_now: AtomicBool,
}

impl Control {
    pub fn new() -> io::Result<Control> {
        Ok(Control {
            wake: EventFd::new()?,
            stop: AtomicBool::new(false),
            inject_panic: AtomicBool::new(false),
            tick_now: AtomicBool::new(false),
        })
    }

    /// Wakes the worker and makes it run the transport's tick now.
    pub fn wake_for_tick(&self) {
        self.tick_now.store(true, Ordering::Release);
        self.wake.notify();
    }
}

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
    /// The other device of a translating pair, if any (`crate::handoff`); swapped at runtime.
    pub handoff: Arc<ArcSwapOption<Handoff>>,
    pub events: crate::EventSink,
    pub epoch: Instant,
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
        }
    }
}

/// Body of a worker thread.
pub fn run(args: WorkerArgs) {
    let WorkerArgs {
        index,
        io,
        control,
        counters,
        transport,
        handoff,
        events,
        epoch,
    } = args;
    events(Event::WorkerStarted { worker: index });
    let mut panics: Vec<Instant> = Vec::new();
    let mut bufs = Buffers::new();
    loop {
        let r = catch_unwind(AssertUnwindSafe(|| {
            event_loop(
                index,
                &events,
                &io,
                &control,
                &counters,
                transport.as_ref(),
                &handoff,
                epoch,
                &mut bufs,
            )
        }));
        match r {
            Ok(Ok(())) => break,
            Ok(Err(e)) => {
                events(Event::WorkerFailed {
                    worker: index,
                    reason: format!("I/O error: {e}"),
                });
                break;
            }
            Err(payload) => {
                let msg = panic_message(&payload);
                WorkerCounters::add(&counters.restarts, 1);
                let now = Instant::now();
                panics.retain(|t| now.duration_since(*t) < PANIC_WINDOW);
                panics.push(now);
                if panics.len() > MAX_PANICS {
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
            }
        }
    }
    drop(io);
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

#[allow(clippy::too_many_arguments)]
fn event_loop(
    index: usize,
    events_out: &crate::EventSink,
    io: &WorkerIo,
    control: &Control,
    counters: &WorkerCounters,
    transport: &dyn Transport,
    handoff: &ArcSwapOption<Handoff>,
    epoch: Instant,
    bufs: &mut Buffers,
) -> io::Result<()> {
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
    let tick = transport.tick_interval();
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
            panic!("worker {index}: injected panic (test hook)");
        }
        let mut tun_ready = false;
        udp_ready.fill(false);
        for ev in &events[..n] {
            match ev.u64 {
                TOKEN_TUN => tun_ready = true,
                TOKEN_CTL => control.wake.drain(),
                t => {
                    if let Some(r) = udp_ready.get_mut((t - TOKEN_UDP) as usize) {
                        *r = true;
                    }
                }
            }
        }
        let now = woke.duration_since(epoch);
        let mut did_work = false;
        if tun_ready {
            did_work |= from_tun(index, io, counters, transport, handoff, now, bufs);
            crate::tun::stop_polling_if_lost(index, &io.tun, &epoll, events_out);
        }
        for (sock, ready) in udp_ready.iter().enumerate() {
            if *ready {
                did_work |= from_udp(index, io, sock, counters, transport, handoff, now, bufs)?;
            }
        }
        if woke >= next_tick || control.tick_now.swap(false, Ordering::AcqRel) {
            let mut ctx = Ctx {
                worker: index,
                counters,
                now,
                extra: &mut bufs.extra,
            };
            transport.tick(&mut ctx);
            send_extra(io, counters, bufs);
            if woke >= next_tick {
                next_tick = woke + tick;
            }
        }
        if did_work {
            WorkerCounters::add(&counters.batches, 1);
        }
        WorkerCounters::add(&counters.busy_ns, woke.elapsed().as_nanos() as u64);
    }
}

#[allow(clippy::too_many_arguments)]
fn from_tun(
    index: usize,
    io: &WorkerIo,
    counters: &WorkerCounters,
    transport: &dyn Transport,
    handoff: &ArcSwapOption<Handoff>,
    now: Duration,
    bufs: &mut Buffers,
) -> bool {
    let mut any = false;
    loop {
        // 1. read_tun
        let n = if io.tun.vnet() {
            read_tun_vnet(io, counters, bufs)
        } else {
            read_tun_plain(io, counters, bufs)
        };
        if n == 0 {
            return any;
        }
        any = true;
        // 2. encapsulate
        let mut ctx = Ctx {
            worker: index,
            counters,
            now,
            extra: &mut bufs.extra,
        };
        transport.tun_ingress(&mut ctx, &mut bufs.tun[..n]);
        // 2b. packets other devices route (a tenant's TUN): handed off, never written back,
        // except the ICMP errors made for their senders
        if bufs.tun[..n].iter().any(|p| p.verdict == Verdict::ToTun) {
            if let Some(h) = handoff.load().as_ref() {
                handoff::run(
                    h,
                    transport,
                    index,
                    counters,
                    now,
                    &mut bufs.tun[..n],
                    &mut bufs.scratch,
                    &mut bufs.extra,
                );
            }
            for p in bufs.tun[..n]
                .iter_mut()
                .filter(|p| p.verdict == Verdict::ToTun)
            {
                if p.reply {
                    match io.tun.write_packet(p.data()) {
                        Ok(_) => WorkerCounters::add(&counters.tun_tx_packets, 1),
                        Err(_) => counters.drop_packet(DropReason::TunWriteFailed),
                    }
                } else {
                    counters.drop_packet(DropReason::NoRoute);
                }
                p.verdict = Verdict::Drop;
            }
        }
        // 3. send
        send_verdicts(io, counters, &bufs.tun[..n], &mut bufs.scratch);
        send_extra(io, counters, bufs);
        // A super-packet that did not fit is not signalled by epoll again: finish it now.
        if bufs.pending.is_none() {
            return any;
        }
    }
}

fn reset_packet(p: &mut Packet, len: usize) {
    p.start = HEADROOM;
    p.len = len;
    p.verdict = Verdict::Drop;
    p.sock = 0;
    p.tag = 0;
}

fn read_tun_plain(io: &WorkerIo, counters: &WorkerCounters, bufs: &mut Buffers) -> usize {
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

/// Reads with a virtio header: each read lands in `spare` and becomes one packet (swapped into
/// the batch, no copy) or, for a super-packet, MSS-sized packets split into the batch.
fn read_tun_vnet(io: &WorkerIo, counters: &WorkerCounters, bufs: &mut Buffers) -> usize {
    let mut n = 0;
    if let Some(len) = bufs.pending.take() {
        n += place_read(counters, bufs, len, n);
    }
    while BATCH - n >= TUN_READ_ROOM {
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
            Ok(_) => n += place_read(counters, bufs, len, n),
            Err(_) => counters.drop_packet(DropReason::BadOffload),
        }
    }
    n
}

/// Moves the read in `spare` (`len` bytes incl. header) into the batch at `at`; returns the
/// number of packets it became (0 if it was malformed).
fn place_read(counters: &WorkerCounters, bufs: &mut Buffers, len: usize, at: usize) -> usize {
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

#[allow(clippy::too_many_arguments)]
fn from_udp(
    index: usize,
    io: &WorkerIo,
    sock: usize,
    counters: &WorkerCounters,
    transport: &dyn Transport,
    handoff: &ArcSwapOption<Handoff>,
    now: Duration,
    bufs: &mut Buffers,
) -> io::Result<bool> {
    // 4. recv_udp
    let r = {
        let mut areas: Vec<&mut [u8]> = bufs.rx.iter_mut().map(|p| p.recv_area()).collect();
        match io.udp[sock].recv_batch(
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
        let (len, seg) = (bufs.lens[j], bufs.segs[j]);
        let Some(addr) = bufs.addrs[j] else { continue };
        let k = if seg == 0 { 1 } else { len.div_ceil(seg) };
        if k > BATCH {
            counters.drop_packet(DropReason::BadOffload);
            continue;
        }
        if n + k > BATCH {
            udp_batch(index, io, counters, transport, handoff, now, bufs, n);
            n = 0;
        }
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
        udp_batch(index, io, counters, transport, handoff, now, bufs, n);
    }
    Ok(true)
}

/// Stages 5 to 7 for the first `n` packets of the UDP batch.
#[allow(clippy::too_many_arguments)]
fn udp_batch(
    index: usize,
    io: &WorkerIo,
    counters: &WorkerCounters,
    transport: &dyn Transport,
    handoff: &ArcSwapOption<Handoff>,
    now: Duration,
    bufs: &mut Buffers,
    n: usize,
) {
    // 5. decapsulate
    let mut ctx = Ctx {
        worker: index,
        counters,
        now,
        extra: &mut bufs.extra,
    };
    transport.decapsulate(&mut ctx, &mut bufs.udp[..n]);
    // 6. handoff: translation to the other device of a pair, on this worker
    if let Some(h) = handoff.load().as_ref() {
        handoff::run(
            h,
            transport,
            index,
            counters,
            now,
            &mut bufs.udp[..n],
            &mut bufs.scratch,
            &mut bufs.extra,
        );
    }
    // 7. write_tun
    write_tun(io, counters, bufs, n);
    send_verdicts(io, counters, &bufs.udp[..n], &mut bufs.scratch);
    send_extra(io, counters, bufs);
}

fn write_tun(io: &WorkerIo, counters: &WorkerCounters, bufs: &mut Buffers, n: usize) {
    let pkts = &mut bufs.udp[..n];
    if !io.tun.vnet() {
        for p in pkts.iter().filter(|p| p.verdict == Verdict::ToTun) {
            WorkerCounters::add(&counters.tun_writes, 1);
            match io.tun.write(p.data()) {
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
        match io.tun.write(frame) {
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

fn send_verdicts(
    io: &WorkerIo,
    counters: &WorkerCounters,
    pkts: &[Packet],
    scratch: &mut MmsgScratch,
) {
    for sock in 0..io.udp.len() {
        let out: Vec<(&[u8], SocketAddr)> = pkts
            .iter()
            .filter(|p| p.verdict == Verdict::Send && p.sock == sock)
            .map(|p| (p.data(), p.addr))
            .collect();
        send_all(io, sock, counters, &out, scratch);
    }
    for _ in pkts
        .iter()
        .filter(|p| p.verdict == Verdict::Send && p.sock >= io.udp.len())
    {
        counters.drop_packet(DropReason::UdpSendFailed);
    }
}

fn send_extra(io: &WorkerIo, counters: &WorkerCounters, bufs: &mut Buffers) {
    if bufs.extra.is_empty() {
        return;
    }
    for sock in 0..io.udp.len() {
        let out: Vec<(&[u8], SocketAddr)> = bufs
            .extra
            .iter()
            .filter(|o| o.sock == sock)
            .map(|o| (o.data.as_slice(), o.addr))
            .collect();
        send_all(io, sock, counters, &out, &mut bufs.scratch);
    }
    for _ in bufs.extra.iter().filter(|o| o.sock >= io.udp.len()) {
        counters.drop_packet(DropReason::UdpSendFailed);
    }
    bufs.extra.clear();
}

fn send_all(
    io: &WorkerIo,
    sock: usize,
    counters: &WorkerCounters,
    out: &[(&[u8], SocketAddr)],
    scratch: &mut MmsgScratch,
) {
    if out.is_empty() {
        return;
    }
    let SendStats { sent, bytes, calls } = io.udp[sock].send(out, scratch);
    WorkerCounters::add(&counters.udp_sends, calls as u64);
    WorkerCounters::add(&counters.udp_tx_packets, sent as u64);
    WorkerCounters::add(&counters.udp_tx_bytes, bytes as u64);
    for _ in sent..out.len() {
        counters.drop_packet(DropReason::UdpSendFailed);
    }
}
