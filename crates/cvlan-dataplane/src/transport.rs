//! The seam between the I/O loop and a tunnel protocol. A worker hands a transport whole
//! batches, already read into its own buffers; the transport rewrites each packet in place
//! (headroom in front, tailroom behind) and marks what happens to it.

use crate::control::Control;
use crate::counters::{DropReason, WorkerCounters};
use crate::tun::TunQueue;
use crate::udp::UdpSocket;
use arc_swap::ArcSwapOption;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Room kept in front of every packet so a transport can prepend its header without copying
/// (WireGuard's 16-byte transport header, ESP's SPI/sequence/IV).
pub const HEADROOM: usize = 64;
/// Size of each packet buffer: a maximal IP packet plus headroom and tailroom for padding/tags.
pub const BUF_SIZE: usize = 65536 + 2 * HEADROOM;

/// What the worker does with a packet after the transport looked at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Dropped; the transport already counted the reason.
    Drop,
    /// Send `data()` as one UDP datagram to `addr`, from the device's socket `sock`.
    Send,
    /// An inner packet for this device's TUN (what `decapsulate` opened). The handoff stage
    /// may take it first, for the device that routes it; what it leaves is written to the TUN.
    ToTun,
    /// An inner packet only other devices route (what a tenant TUN's hosts sent): the handoff
    /// stage takes it or it is dropped; never written back to this TUN.
    HandOff,
    /// Taken by the handoff stage, which sent it from the target device (or dropped and
    /// counted it): nothing left to do here.
    HandedOff,
}

impl Verdict {
    /// An inner packet the handoff stage may route (`ToTun` or `HandOff`).
    pub fn is_inner(self) -> bool {
        matches!(self, Verdict::ToTun | Verdict::HandOff)
    }
}

/// One packet buffer owned by a worker.
pub struct Packet {
    buf: Box<[u8]>,
    pub start: usize,
    pub len: usize,
    pub verdict: Verdict,
    /// Source (received datagrams) or destination (datagrams to send).
    pub addr: SocketAddr,
    /// Index of the device's UDP socket the datagram came in on, or is to leave from.
    pub sock: usize,
    /// Set by `Transport::claims`: that transport's device routes this packet, by a route whose
    /// destination prefix is `claim_len` bits long (`crate::handoff`).
    pub claimed: bool,
    pub claim_len: u8,
    /// Set with `claimed` by a transport that keeps its route as a key (WireGuard: the peer),
    /// and given back to that transport's `encapsulate` with the packet so the route is not
    /// looked up twice. `None` for packets read from TUN (`worker::reset_packet`).
    pub claim_key: Option<u32>,
    /// The longest claim so far (`crate::handoff`): its length, target and key.
    pub(crate) best: Option<(u8, usize, Option<u32>)>,
    /// Tenant of the packet where the data plane knows it (the IPsec tunnel it came through, the
    /// WireGuard device of a tenant); 0 = none (one tenant, or not known). Transports that serve
    /// several tenants route a tagged packet by that tenant's entries only.
    pub tag: u32,
    /// The tag a packet had when the handoff started (it routes a packet an inter-tenant rule
    /// admits as the other tenant's, and gives it back its own afterwards).
    pub(crate) home: u32,
    /// An ICMP error `crate::handoff` made for this packet's sender.
    pub(crate) reply: bool,
    /// The packet's slot in a traced batch (`crate::trace`); meaningless when not tracing.
    pub trace: u16,
}

impl Default for Packet {
    fn default() -> Self {
        Packet::new()
    }
}

/// Gives a zeroed buffer's whole pages back to the kernel: they read as zeros still (private
/// anonymous memory), and count in RSS only once a packet is written there. The allocator may
/// have zeroed the buffer by hand in memory it reused (a worker thread started after another
/// exited takes over its arena), which left a worker's 320 buffers, 21 MiB, resident before
/// any traffic.
fn release_pages(buf: &mut [u8]) {
    // SAFETY: sysconf has no preconditions.
    let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        p if p > 0 => p as usize,
        _ => return,
    };
    let addr = buf.as_mut_ptr() as usize;
    let start = addr.next_multiple_of(page);
    let end = (addr + buf.len()) / page * page;
    if end > start {
        // SAFETY: [start, end) lies inside `buf`, which this function borrows exclusively and
        // which holds zeros; MADV_DONTNEED keeps it mapped and reading as zeros. Advice only:
        // a failure leaves the pages as they were.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
    }
}

impl Packet {
    pub fn new() -> Packet {
        let mut buf = vec![0u8; BUF_SIZE].into_boxed_slice();
        release_pages(&mut buf);
        Packet {
            buf,
            start: HEADROOM,
            len: 0,
            verdict: Verdict::Drop,
            addr: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            sock: 0,
            claimed: false,
            claim_len: 0,
            claim_key: None,
            best: None,
            tag: 0,
            home: 0,
            reply: false,
            trace: 0,
        }
    }
    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.start + self.len]
    }
    /// The whole buffer, read-only.
    pub(crate) fn raw(&self) -> &[u8] {
        &self.buf
    }
    /// The whole buffer, for transports that rewrite in place across headroom/tailroom.
    pub fn raw_mut(&mut self) -> &mut [u8] {
        &mut self.buf
    }
    /// The receive area: everything after the headroom.
    pub(crate) fn recv_area(&mut self) -> &mut [u8] {
        &mut self.buf[HEADROOM..]
    }
    /// Moves the packet so that it starts at `start` (transports strip headers of different
    /// lengths; the TUN writer wants one common offset).
    pub(crate) fn move_to(&mut self, start: usize) {
        if start != self.start {
            self.buf
                .copy_within(self.start..self.start + self.len, start);
            self.start = start;
        }
    }
    /// Grows the packet at the front by `n` bytes (taken from the headroom).
    pub fn push_front(&mut self, n: usize) -> Option<&mut [u8]> {
        if n > self.start {
            return None;
        }
        self.start -= n;
        self.len += n;
        Some(&mut self.buf[self.start..self.start + n])
    }
    /// Shrinks the packet at the front by `n` bytes.
    pub fn pull_front(&mut self, n: usize) -> bool {
        if n > self.len {
            return false;
        }
        self.start += n;
        self.len -= n;
        true
    }
    pub fn drop_with(&mut self, counters: &WorkerCounters, reason: DropReason) {
        crate::trace::drop(self, reason);
        counters.drop_packet(reason);
        self.verdict = Verdict::Drop;
    }
}

/// The whole buffer, so the offload code can write segments at `HEADROOM` and grow coalesced
/// packets into the tailroom.
impl AsMut<[u8]> for Packet {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.buf
    }
}

/// What a transport may use while processing a batch on a worker.
pub struct Ctx<'a> {
    pub worker: usize,
    pub counters: &'a WorkerCounters,
    /// Time of this batch on the data plane's clock (`crate::clock`): the only clock a protocol
    /// sees. The same epoch on every device: the handoff runs another device's transport with it.
    pub now: Duration,
    /// Extra datagrams to send after the batch (handshake messages, keepalives, replies).
    pub extra: &'a mut Vec<Outgoing>,
}

/// A datagram a transport wants sent besides the batch's own packets.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub data: Vec<u8>,
    pub addr: SocketAddr,
    /// Index of the device's UDP socket to send from.
    pub sock: usize,
}

/// Lets a control thread (the charon link, a handshake answered off the workers) send from the
/// device's ports. Each entry is a `dup()` of worker 0's socket: sending on it adds no member to
/// the `SO_REUSEPORT` group (a new member would receive a share of the traffic and never read it).
///
/// The descriptors are released when the device stops, even if a transport keeps its `Senders`
/// longer: otherwise the port would stay bound and a restarted device could not take it again.
#[derive(Clone)]
pub struct Senders {
    inner: Arc<SendersInner>,
}

pub(crate) struct SendersInner {
    socks: ArcSwapOption<Sockets>,
    /// A queue of the device's TUN, for packets another device's workers hand to it.
    tun: ArcSwapOption<TunQueue>,
    wake: Arc<Control>,
}

/// A device's sockets, in port order, and their local ports.
pub(crate) struct Sockets {
    pub(crate) socks: Vec<UdpSocket>,
    ports: Vec<u16>,
}

impl SendersInner {
    /// Points the senders at new sockets and a new TUN queue (the device moved to other ports).
    pub(crate) fn replace(&self, socks: Vec<(UdpSocket, u16)>, tun: TunQueue) {
        let (socks, ports) = socks.into_iter().unzip();
        self.socks.store(Some(Arc::new(Sockets { socks, ports })));
        self.tun.store(Some(Arc::new(tun)));
    }

    /// Closes the descriptors (sends in flight finish on their own reference).
    pub(crate) fn close(&self) {
        self.socks.store(None);
        self.tun.store(None);
    }
}

impl Senders {
    pub(crate) fn new(
        socks: Vec<(UdpSocket, u16)>,
        tun: Option<TunQueue>,
        wake: Arc<Control>,
    ) -> Senders {
        let (socks, ports) = socks.into_iter().unzip();
        Senders {
            inner: Arc::new(SendersInner {
                socks: ArcSwapOption::from_pointee(Sockets { socks, ports }),
                tun: ArcSwapOption::new(tun.map(Arc::new)),
                wake,
            }),
        }
    }

    /// Writes one IP packet into the device's TUN (`None`: the device has stopped).
    pub(crate) fn write_tun(&self, pkt: &[u8]) -> Option<io::Result<usize>> {
        self.inner.tun.load().as_ref().map(|t| t.write_packet(pkt))
    }

    pub(crate) fn inner(&self) -> Arc<SendersInner> {
        self.inner.clone()
    }

    pub(crate) fn from_inner(inner: Arc<SendersInner>) -> Senders {
        Senders { inner }
    }

    /// Runs `f` on the device's sockets, in port order (none once the device has stopped), so
    /// a worker sends on them as on its own (`crate::send`).
    pub(crate) fn with_sockets<R>(&self, f: impl FnOnce(&[UdpSocket]) -> R) -> R {
        let socks = self.inner.socks.load();
        f(socks.as_ref().map_or(&[][..], |s| &s.socks[..]))
    }

    /// Sends one datagram from socket `sock` (an index into the device's ports), without
    /// blocking: a full socket buffer is `WouldBlock`, a stopped device `NotConnected`.
    pub fn send_to(&self, sock: usize, data: &[u8], addr: SocketAddr) -> io::Result<()> {
        let socks = self.inner.socks.load();
        let socks = socks
            .as_ref()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "device stopped"))?;
        let s = socks.socks.get(sock).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("no socket {sock}"))
        })?;
        s.send_to(data, addr)
    }

    /// The local port of socket `sock` (`None` for an unknown index or a stopped device).
    pub fn port(&self, sock: usize) -> Option<u16> {
        self.inner.socks.load().as_ref()?.ports.get(sock).copied()
    }

    /// Number of sockets (= the device's ports).
    pub fn len(&self) -> usize {
        self.inner
            .socks
            .load()
            .as_ref()
            .map_or(0, |s| s.socks.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Wakes worker 0 out of `epoll_wait`, so that work a transport queued for the workers
    /// (e.g. packets held back until a handshake completed) runs now: the worker calls
    /// `Transport::tick` on that wake-up, not only every `tick_interval`.
    pub fn wake(&self) {
        self.inner.wake.wake_for_tick();
    }
}

/// A tunnel protocol as seen by the workers. Implementations are shared by all workers, so
/// per-packet work must not serialize on a device-wide lock.
pub trait Transport: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// Called once by `Device::start` before any worker runs, with senders for every port.
    fn attach(&self, _senders: Senders) {}
    /// Stage "encapsulate": packets read from TUN (IP packets at `data()`). Set `verdict`
    /// to `Send` with `addr`, or drop.
    fn encapsulate(&self, ctx: &mut Ctx<'_>, pkts: &mut [Packet]);
    /// Stage "from TUN" of the worker (`tun_ingress`): packets read from this device's TUN.
    /// Default: they are to be encapsulated. A transport whose packets are routed by other
    /// devices (a tenant TUN) marks them `HandOff` instead.
    fn tun_ingress(&self, ctx: &mut Ctx<'_>, pkts: &mut [Packet]) {
        self.encapsulate(ctx, pkts);
    }
    /// Stage "decapsulate": datagrams received on UDP (`addr` = source). Set `verdict` to
    /// `ToTun` (inner packet at `data()`), `Send` (a reply), or drop.
    fn decapsulate(&self, ctx: &mut Ctx<'_>, pkts: &mut [Packet]);
    /// For the handoff stage (`crate::handoff`): sets `claimed` on the inner packets among
    /// `pkts` (`Verdict::is_inner`: another device decapsulated or read them) that this
    /// transport has a route for, and `claim_len` to that route's destination prefix length
    /// (the longest claim among a tenant's devices wins). Default: none.
    fn claims(&self, _pkts: &mut [Packet]) {}
    /// Whether `pkt` may go through `stage` on another worker, concurrently with the rest of its
    /// batch (`crate::spread`): data packets whose seal or open needs nothing the batch's other
    /// packets set up. A batch is spread only if every packet may be. Default: none.
    fn parallel(&self, _stage: crate::spread::Stage, _pkt: &Packet) -> bool {
        false
    }
    /// Called at least every `tick_interval` on each worker, for protocol timers.
    fn tick(&self, _ctx: &mut Ctx<'_>) {}
    fn tick_interval(&self) -> Duration {
        Duration::from_millis(250)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Resident pages of `buf`'s whole pages, and how many there are (`mincore`).
    fn resident(buf: &[u8]) -> (usize, usize) {
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let start = (buf.as_ptr() as usize).next_multiple_of(page);
        let end = (buf.as_ptr() as usize + buf.len()) / page * page;
        let mut vec = vec![0u8; (end - start) / page];
        // SAFETY: the range is inside `buf`, mapped; `vec` has one byte per page.
        let rc =
            unsafe { libc::mincore(start as *mut libc::c_void, end - start, vec.as_mut_ptr()) };
        assert_eq!(rc, 0);
        (vec.iter().filter(|b| **b & 1 == 1).count(), vec.len())
    }

    #[test]
    fn fresh_buffers_read_as_zeros_and_hold_no_pages_until_written() {
        // Memory the allocator hands out again (the case where it zeroes by hand).
        let mut used: Vec<Packet> = (0..32).map(|_| Packet::new()).collect();
        for p in &mut used {
            p.raw_mut().fill(0xab);
        }
        drop(used);
        let mut fresh: Vec<Packet> = (0..32).map(|_| Packet::new()).collect();
        let (mut held, mut pages) = (0, 0);
        for p in &fresh {
            let (h, n) = resident(p.raw());
            held += h;
            pages += n;
        }
        assert!(held * 10 < pages, "{held} of {pages} pages resident");
        // (After mincore: a read maps the shared zero page, which mincore would count.)
        assert!(fresh.iter().all(|p| p.raw().iter().all(|b| *b == 0)));
        let p = &mut fresh[0];
        p.len = 1500;
        p.data_mut().fill(7);
        assert!(
            resident(p.raw()).0 >= 1,
            "a written packet's pages are there"
        );
        assert!(p.data().iter().all(|b| *b == 7));
    }
}
