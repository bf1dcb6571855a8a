//! UDP sockets for the workers: one `SO_REUSEPORT` socket per worker on the same port (the
//! kernel spreads flows across them by 4-tuple hash), dual-stack where the host has IPv6, and
//! batched I/O with `recvmmsg`/`sendmmsg`.
//!
//! With offload on, a socket sends runs of equal-size datagrams to one destination as one
//! `UDP_SEGMENT` message each (all messages of a batch still in one `sendmmsg`), and receives
//! with `UDP_GRO`, so one message may hold many datagrams of one flow back to back.

use crate::error::{Code, Error, Result};
use crate::offload::udp_gso::{self, GsoGroup};
use crate::sys::{cvt, set_nonblocking};
use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// Socket buffer size; large buffers absorb bursts between two worker wake-ups.
const SOCKET_BUFFER: libc::c_int = 7 << 20;

pub struct UdpSocket {
    fd: OwnedFd,
    v6: bool,
    /// `UDP_SEGMENT` sends; switched off for good when the route's device refuses one (EIO).
    gso: AtomicBool,
    /// `UDP_GRO` is on: received messages may hold several datagrams.
    gro: bool,
}

/// What one batched send did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SendStats {
    /// Datagrams the kernel accepted and their bytes.
    pub sent: usize,
    pub bytes: usize,
    /// Syscalls made.
    pub calls: usize,
}

impl SendStats {
    fn add(&mut self, o: SendStats) {
        self.sent += o.sent;
        self.bytes += o.bytes;
        self.calls += o.calls;
    }
}

fn setsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    opt: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    // SAFETY: passes a pointer to a live c_int with its size.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            &v as *const _ as *const _,
            size_of::<libc::c_int>() as _,
        )
    })?;
    Ok(())
}

pub(crate) fn to_sockaddr(addr: SocketAddr, v6: bool) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { zeroed() };
    let addr = match (addr, v6) {
        (SocketAddr::V4(a), true) => {
            SocketAddr::V6(SocketAddrV6::new(a.ip().to_ipv6_mapped(), a.port(), 0, 0))
        }
        (a, _) => a,
    };
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large enough and aligned for sockaddr_in.
            let sin = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as _;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from(*a.ip()).to_be();
            (ss, size_of::<libc::sockaddr_in>() as _)
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_storage is large enough and aligned for sockaddr_in6.
            let sin6 = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as _;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_scope_id = a.scope_id();
            (ss, size_of::<libc::sockaddr_in6>() as _)
        }
    }
}

/// Converts a kernel address back, unmapping IPv4-mapped IPv6 so peers compare equal however
/// they were configured.
pub(crate) fn from_sockaddr(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match ss.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: family says this is a sockaddr_in.
            let sin = unsafe { &*(ss as *const _ as *const libc::sockaddr_in) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: family says this is a sockaddr_in6.
            let sin6 = unsafe { &*(ss as *const _ as *const libc::sockaddr_in6) };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            let port = u16::from_be(sin6.sin6_port);
            Some(match ip.to_ipv4_mapped() {
                Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, port)),
                None => SocketAddr::V6(SocketAddrV6::new(ip, port, 0, sin6.sin6_scope_id)),
            })
        }
        _ => None,
    }
}

/// Normalizes a configured endpoint the same way received addresses are normalized.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(a) => match a.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, a.port())),
            None => addr,
        },
        a => a,
    }
}

fn raw_socket(v6: bool) -> io::Result<OwnedFd> {
    let family = if v6 { libc::AF_INET6 } else { libc::AF_INET };
    // SAFETY: plain syscall.
    let fd = cvt(unsafe { libc::socket(family, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: fresh valid descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Floating addresses (an HA pair's VIPs): this node may bind them before it owns them.
static FLOATING: std::sync::RwLock<Vec<IpAddr>> = std::sync::RwLock::new(Vec::new());

/// Declares the addresses sockets may bind without owning them yet (IP_FREEBIND); every other
/// address must be local, so a mistyped listen address still fails at bind.
pub fn set_floating_addresses(addrs: Vec<IpAddr>) {
    *FLOATING.write().unwrap_or_else(|e| e.into_inner()) = addrs;
}

fn is_floating(ip: IpAddr) -> bool {
    let ip = canonical(SocketAddr::new(ip, 0)).ip();
    FLOATING
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .any(|f| canonical(SocketAddr::new(*f, 0)).ip() == ip)
}

fn bind(fd: RawFd, addr: SocketAddr, v6: bool) -> io::Result<()> {
    if !addr.ip().is_unspecified() && is_floating(addr.ip()) {
        // IP_FREEBIND: an HA standby binds the floating VIP before it owns it, so taking over
        // only moves the address (keepalived) and never rebinds a socket. The option is
        // IPPROTO_IP level on IPv6 sockets too (Linux applies it to both families).
        setsockopt_int(fd, libc::IPPROTO_IP, libc::IP_FREEBIND, 1)?;
    }
    let (ss, len) = to_sockaddr(addr, v6);
    // SAFETY: ss holds a valid address of length len.
    cvt(unsafe { libc::bind(fd, &ss as *const _ as *const libc::sockaddr, len) })?;
    Ok(())
}

/// How long a worker socket waits for a port `check_port_free` found free: the probe's socket
/// outlives its close while a child forked by another thread still holds a copy of the
/// descriptor (until that child's `exec` closes it, `SOCK_CLOEXEC`), and it holds the port
/// without `SO_REUSEPORT` meanwhile. Tuning, not spec.
const PROBE_LINGER: std::time::Duration = std::time::Duration::from_millis(200);

/// `bind`, tried again on `EADDRINUSE` for up to [`PROBE_LINGER`]: a port really in use was
/// refused by the probe before, so a refusal here is almost always the probe's own copy.
fn bind_after_probe(fd: RawFd, addr: SocketAddr, v6: bool) -> io::Result<()> {
    let deadline = std::time::Instant::now() + PROBE_LINGER;
    loop {
        match bind(fd, addr, v6) {
            Err(e)
                if e.raw_os_error() == Some(libc::EADDRINUSE)
                    && addr.port() != 0
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            r => return r,
        }
    }
}

/// The address the workers bind: `listen` if given, else dual-stack `[::]` where the host has
/// IPv6, else `0.0.0.0`.
pub fn resolve_listen(listen: Option<IpAddr>, port: u16) -> SocketAddr {
    match listen {
        Some(ip) => SocketAddr::new(ip, port),
        None if raw_socket(true).is_ok() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port)
        }
        None => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
    }
}

/// Fails with `CVLAN_ERR_ADDR_IN_USE` if another socket holds the port. `SO_REUSEPORT` would let
/// a second process of the same user silently share it, so the check binds without it first.
pub fn check_port_free(addr: SocketAddr) -> Result<()> {
    let v6 = addr.is_ipv6();
    let fd = raw_socket(v6).map_err(|e| Error::os(Code::Socket, "socket", e))?;
    if v6 {
        let _ = setsockopt_int(fd.as_raw_fd(), libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 0);
    }
    bind(fd.as_raw_fd(), addr, v6)
        .map_err(|e| Error::os(Code::Socket, format!("UDP {addr} is not available"), e))
}

impl UdpSocket {
    /// One worker's socket on the shared port. `offload` turns on `UDP_SEGMENT` sends and
    /// `UDP_GRO` receives where the kernel has them.
    pub fn bind_reuseport(addr: SocketAddr, offload: bool) -> Result<UdpSocket> {
        let v6 = addr.is_ipv6();
        let fd = raw_socket(v6).map_err(|e| Error::os(Code::Socket, "socket", e))?;
        let raw = fd.as_raw_fd();
        let ctx = |what: &str| format!("UDP socket option {what} on port {}", addr.port());
        setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)
            .map_err(|e| Error::os(Code::Socket, ctx("SO_REUSEPORT"), e))?;
        if v6 {
            setsockopt_int(raw, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 0)
                .map_err(|e| Error::os(Code::Socket, ctx("IPV6_V6ONLY"), e))?;
        }
        // FORCE variants exceed rmem_max as root; fall back to the capped ones otherwise.
        if setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, SOCKET_BUFFER).is_err() {
            let _ = setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_RCVBUF, SOCKET_BUFFER);
        }
        if setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, SOCKET_BUFFER).is_err() {
            let _ = setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_SNDBUF, SOCKET_BUFFER);
        }
        bind_after_probe(raw, addr, v6)
            .map_err(|e| Error::os(Code::Socket, format!("cannot bind UDP {addr}"), e))?;
        set_nonblocking(raw).map_err(|e| Error::os(Code::Socket, "O_NONBLOCK", e))?;
        let gso = offload && udp_gso::udp_gso_supported(raw);
        let gro = offload && udp_gso::enable_udp_gro(raw).is_ok();
        Ok(UdpSocket {
            fd,
            v6,
            gso: AtomicBool::new(gso),
            gro,
        })
    }

    /// A raw socket for IP protocol 50 (ESP without UDP, RFC 4303) bound to `local`, receiving
    /// shard `shard` of `shards` (see [`UdpSocket::shard_esp`]): one per worker. Receives carry
    /// the IPv4 header (not the IPv6 one); sends get it from the kernel. Needs CAP_NET_RAW: the
    /// caller falls back to ESP-in-UDP without it.
    pub fn raw_esp(local: IpAddr, shard: usize, shards: usize) -> Result<UdpSocket> {
        let v6 = local.is_ipv6();
        let family = if v6 { libc::AF_INET6 } else { libc::AF_INET };
        // SAFETY: plain syscall.
        let fd = cvt(unsafe {
            libc::socket(
                family,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                libc::IPPROTO_ESP,
            )
        })
        .map_err(|e| Error::os(Code::Socket, "raw ESP socket (needs CAP_NET_RAW)", e))?;
        // SAFETY: fresh valid descriptor.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let raw = fd.as_raw_fd();
        if setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, SOCKET_BUFFER).is_err() {
            let _ = setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_RCVBUF, SOCKET_BUFFER);
        }
        if setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, SOCKET_BUFFER).is_err() {
            let _ = setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_SNDBUF, SOCKET_BUFFER);
        }
        let sock = UdpSocket {
            fd,
            v6,
            gso: AtomicBool::new(false),
            gro: false,
        };
        // Filtered before bound, so no packet of another shard is ever queued here.
        sock.shard_esp(shard, shards)
            .map_err(|e| Error::os(Code::Socket, "raw ESP socket filter", e))?;
        bind(raw, SocketAddr::new(local, 0), v6)
            .map_err(|e| Error::os(Code::Socket, format!("cannot bind raw ESP to {local}"), e))?;
        Ok(sock)
    }

    /// Makes this raw ESP socket receive only the packets of shard `shard` of `shards`: those
    /// whose SPI modulo `shards` is `shard` (IPv6: all on shard 0, the header is not in the
    /// filter's view). The kernel hands every ESP packet to every raw socket; without shards
    /// all workers would wake for each and one SA's packets would be opened on several workers
    /// at once and reach TUN out of order. With them an SA stays on one worker, as a UDP
    /// 4-tuple does on its `SO_REUSEPORT` socket. Replaces the filter (workers added/removed).
    pub fn shard_esp(&self, shard: usize, shards: usize) -> io::Result<()> {
        let shards = shards.max(1) as u32;
        let accept = libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: 0x0004_0000,
        };
        let reject = libc::sock_filter { k: 0, ..accept };
        let op = |code: u32, k: u32| libc::sock_filter {
            code: code as u16,
            jt: 0,
            jf: 0,
            k,
        };
        let prog: Vec<libc::sock_filter> = if self.v6 {
            vec![if shard == 0 { accept } else { reject }]
        } else {
            vec![
                // X = IPv4 header length; A = the SPI behind it.
                op(libc::BPF_LDX | libc::BPF_B | libc::BPF_MSH, 0),
                op(libc::BPF_LD | libc::BPF_W | libc::BPF_IND, 0),
                op(libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K, shards),
                libc::sock_filter {
                    code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
                    jt: 0,
                    jf: 1,
                    k: shard as u32,
                },
                accept,
                reject,
            ]
        };
        let fprog = libc::sock_fprog {
            len: prog.len() as u16,
            filter: prog.as_ptr() as *mut _,
        };
        // SAFETY: fprog points at `prog`, alive across the call; the kernel copies it.
        cvt(unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER,
                &fprog as *const _ as *const _,
                size_of::<libc::sock_fprog>() as _,
            )
        })?;
        Ok(())
    }

    /// Whether sends still use `UDP_SEGMENT`.
    pub fn gso(&self) -> bool {
        self.gso.load(Ordering::Relaxed)
    }

    /// Whether `UDP_GRO` is on.
    pub fn gro(&self) -> bool {
        self.gro
    }

    /// A second descriptor of the same socket (not a new `SO_REUSEPORT` member).
    pub fn try_clone(&self) -> io::Result<UdpSocket> {
        // SAFETY: F_DUPFD_CLOEXEC on a valid descriptor returns a new owned one.
        let fd = cvt(unsafe { libc::fcntl(self.fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) })?;
        // SAFETY: fd is fresh and valid.
        Ok(UdpSocket {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            v6: self.v6,
            // Batches sent on a clone (another device's handoff stage) keep using UDP_SEGMENT.
            gso: AtomicBool::new(self.gso()),
            gro: self.gro,
        })
    }

    /// One datagram, non-blocking.
    pub fn send_to(&self, data: &[u8], addr: SocketAddr) -> io::Result<()> {
        let (ss, len) = to_sockaddr(addr, self.v6);
        // SAFETY: data and ss are valid for the given lengths.
        let r = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                data.as_ptr() as *const _,
                data.len(),
                libc::MSG_DONTWAIT,
                &ss as *const _ as *const libc::sockaddr,
                len,
            )
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    pub fn local_port(&self) -> io::Result<u16> {
        // SAFETY: zeroed storage is valid; getsockname fills at most len bytes.
        let mut ss: libc::sockaddr_storage = unsafe { zeroed() };
        let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        cvt(unsafe {
            libc::getsockname(self.fd.as_raw_fd(), &mut ss as *mut _ as *mut _, &mut len)
        })?;
        from_sockaddr(&ss)
            .map(|a| a.port())
            .ok_or_else(|| io::Error::other("unknown family"))
    }

    /// Receives up to `bufs.len()` messages in one `recvmmsg`. Fills `lens[i]`, `addrs[i]` and
    /// `segs[i]` for each received message and returns how many; `Ok(0)` when nothing is
    /// pending. `segs[i]` is the `UDP_GRO` segment size when message `i` holds several
    /// datagrams of `segs[i]` bytes (the last may be shorter), else 0.
    pub fn recv_batch(
        &self,
        bufs: &mut [&mut [u8]],
        lens: &mut [usize],
        addrs: &mut [Option<SocketAddr>],
        segs: &mut [usize],
        scratch: &mut MmsgScratch,
    ) -> io::Result<usize> {
        let n = bufs
            .len()
            .min(lens.len())
            .min(addrs.len())
            .min(segs.len())
            .min(scratch.capacity());
        scratch.reset(n);
        for (i, b) in bufs.iter_mut().take(n).enumerate() {
            scratch.iov[i] = libc::iovec {
                iov_base: b.as_mut_ptr() as *mut _,
                iov_len: b.len(),
            };
        }
        scratch.link(n);
        if self.gro {
            for i in 0..n {
                scratch.set_control(i, CONTROL_BYTES);
            }
        }
        // SAFETY: every mmsghdr points at a live iovec and sockaddr_storage in scratch, and each
        // iovec at a live buffer, for the duration of the call.
        let r = unsafe {
            libc::recvmmsg(
                self.fd.as_raw_fd(),
                scratch.msgs.as_mut_ptr(),
                n as _,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::WouldBlock {
                Ok(0)
            } else {
                Err(e)
            };
        }
        let r = r as usize;
        for i in 0..r {
            lens[i] = scratch.msgs[i].msg_len as usize;
            addrs[i] = from_sockaddr(&scratch.addrs[i]);
            segs[i] = if self.gro {
                // msg_controllen is usize on glibc, u32 on musl.
                #[allow(clippy::unnecessary_cast)]
                let len = scratch.msgs[i].msg_hdr.msg_controllen as usize;
                udp_gso::gro_segment_size(&scratch.control_bytes(i)[..len.min(CONTROL_BYTES)])
                    .filter(|&s| s < lens[i])
                    .unwrap_or(0)
            } else {
                0
            };
        }
        Ok(r)
    }

    /// Sends `datagrams` with as few `sendmmsg` calls as the kernel allows. Returns the number
    /// and total bytes of datagrams the kernel accepted; the rest could not be queued (full
    /// socket buffer or an error) and the caller counts them as dropped.
    pub fn send_batch(
        &self,
        datagrams: &[(&[u8], SocketAddr)],
        scratch: &mut MmsgScratch,
    ) -> SendStats {
        let mut sent = 0;
        let mut ok = 0;
        let mut bytes = 0;
        let mut calls = 0;
        while sent < datagrams.len() {
            let chunk = &datagrams[sent..];
            let n = chunk.len().min(scratch.capacity());
            scratch.reset(n);
            for (i, (d, a)) in chunk.iter().take(n).enumerate() {
                scratch.iov[i] = libc::iovec {
                    iov_base: d.as_ptr() as *mut _,
                    iov_len: d.len(),
                };
                let (ss, len) = to_sockaddr(*a, self.v6);
                scratch.addrs[i] = ss;
                scratch.addr_lens[i] = len;
            }
            scratch.link(n);
            calls += 1;
            // SAFETY: as in recv_batch; the kernel only reads the buffers.
            let r = unsafe {
                libc::sendmmsg(
                    self.fd.as_raw_fd(),
                    scratch.msgs.as_mut_ptr(),
                    n as _,
                    libc::MSG_DONTWAIT,
                )
            };
            if r <= 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // A datagram the kernel refuses (e.g. EMSGSIZE, unreachable) must not block the
                // rest of the batch: skip exactly one and go on.
                if r == 0 || e.kind() == io::ErrorKind::WouldBlock {
                    break;
                }
                sent += 1;
                continue;
            }
            let r = r as usize;
            bytes += chunk[..r].iter().map(|(d, _)| d.len()).sum::<usize>();
            ok += r;
            sent += r;
        }
        SendStats {
            sent: ok,
            bytes,
            calls,
        }
    }

    /// Sends `datagrams` in order, as `UDP_SEGMENT` messages where the socket has GSO (runs of
    /// equal-size datagrams to one destination, see [`udp_gso::plan_gso`]), all messages of a
    /// chunk in one `sendmmsg`; otherwise as [`send_batch`](Self::send_batch) does. A GSO
    /// message the route's device refuses (`EIO`) switches GSO off for this socket and the rest
    /// goes out one datagram per message; a GSO message refused for another reason (e.g. a
    /// segment larger than the path MTU) is resent one datagram per message.
    pub fn send(&self, datagrams: &[(&[u8], SocketAddr)], scratch: &mut MmsgScratch) -> SendStats {
        if !self.gso() {
            return self.send_batch(datagrams, scratch);
        }
        let mut groups = std::mem::take(&mut scratch.groups);
        udp_gso::plan_gso(datagrams, &mut groups);
        let mut stats = SendStats::default();
        let mut g = 0;
        'outer: while g < groups.len() {
            // One chunk: as many whole groups as the scratch has messages and iovecs for.
            let (mut msgs, mut iovs) = (0, 0);
            while g + msgs < groups.len()
                && msgs < scratch.capacity()
                && iovs + groups[g + msgs].count <= scratch.iov.len()
            {
                iovs += groups[g + msgs].count;
                msgs += 1;
            }
            scratch.reset(msgs);
            let mut iov_at = 0;
            for (m, grp) in groups[g..g + msgs].iter().enumerate() {
                for (k, (d, _)) in datagrams[grp.start..grp.start + grp.count]
                    .iter()
                    .enumerate()
                {
                    scratch.iov[iov_at + k] = libc::iovec {
                        iov_base: d.as_ptr() as *mut _,
                        iov_len: d.len(),
                    };
                }
                let (ss, len) = to_sockaddr(datagrams[grp.start].1, self.v6);
                scratch.addrs[m] = ss;
                scratch.addr_lens[m] = len;
                scratch.link_one(m, iov_at, grp.count);
                if grp.count > 1 {
                    let n = udp_gso::write_segment_cmsg(
                        scratch.control_bytes_mut(m),
                        grp.segment as u16,
                    );
                    scratch.set_control(m, n);
                }
                iov_at += grp.count;
            }
            let mut done = 0;
            while done < msgs {
                stats.calls += 1;
                // SAFETY: as in send_batch; every message points at live iovecs, addresses and
                // control bytes in scratch, and the iovecs at the caller's datagrams.
                let r = unsafe {
                    libc::sendmmsg(
                        self.fd.as_raw_fd(),
                        scratch.msgs[done..].as_mut_ptr(),
                        (msgs - done) as _,
                        libc::MSG_DONTWAIT,
                    )
                };
                if r > 0 {
                    for grp in &groups[g + done..g + done + r as usize] {
                        stats.sent += grp.count;
                        stats.bytes += datagrams[grp.start..grp.start + grp.count]
                            .iter()
                            .map(|(d, _)| d.len())
                            .sum::<usize>();
                    }
                    done += r as usize;
                    continue;
                }
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                if r == 0 || e.kind() == io::ErrorKind::WouldBlock {
                    break 'outer;
                }
                let grp = groups[g + done];
                if grp.count > 1 && udp_gso::is_gso_refused(&e) {
                    self.gso.store(false, Ordering::Relaxed);
                    let rest = &datagrams[grp.start..];
                    stats.add(self.send_batch(rest, scratch));
                    break 'outer;
                }
                if grp.count > 1 {
                    // Refused as a whole: one by one, so only the datagrams at fault are lost.
                    let one = &datagrams[grp.start..grp.start + grp.count];
                    let mut plain = MmsgScratch::new(grp.count);
                    stats.add(self.send_batch(one, &mut plain));
                }
                done += 1;
            }
            g += msgs;
        }
        scratch.groups = groups;
        stats
    }
}

impl AsRawFd for UdpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Control bytes per message: room for one `UDP_SEGMENT` (`CMSG_SPACE(2)`) or `UDP_GRO`
/// (`CMSG_SPACE(4)`) message; without the room the kernel truncates it (`MSG_CTRUNC`).
const CONTROL_BYTES: usize = 32;

/// Reusable `mmsghdr`/`iovec`/address/control arrays for batched socket calls (allocated once
/// per worker).
pub struct MmsgScratch {
    msgs: Vec<libc::mmsghdr>,
    iov: Vec<libc::iovec>,
    addrs: Vec<libc::sockaddr_storage>,
    addr_lens: Vec<libc::socklen_t>,
    /// u64 elements keep each control buffer aligned for `cmsghdr`.
    control: Vec<[u64; CONTROL_BYTES / 8]>,
    groups: Vec<GsoGroup>,
}

// SAFETY: the raw pointers inside are only ever set and used within one call on one thread.
unsafe impl Send for MmsgScratch {}

impl MmsgScratch {
    pub fn new(capacity: usize) -> MmsgScratch {
        // SAFETY: these C structs are plain old data; zero is valid.
        unsafe {
            MmsgScratch {
                msgs: vec![zeroed(); capacity],
                // A GSO message gathers up to MAX_SEGMENTS iovecs, whatever the capacity.
                iov: vec![zeroed(); capacity.max(udp_gso::MAX_SEGMENTS)],
                addrs: vec![zeroed(); capacity],
                addr_lens: vec![size_of::<libc::sockaddr_storage>() as _; capacity],
                control: vec![[0; CONTROL_BYTES / 8]; capacity],
                groups: Vec::with_capacity(capacity),
            }
        }
    }
    fn control_bytes(&self, i: usize) -> &[u8] {
        // SAFETY: a [u64; 4] is 32 initialized bytes.
        unsafe { std::slice::from_raw_parts(self.control[i].as_ptr() as *const u8, CONTROL_BYTES) }
    }
    fn control_bytes_mut(&mut self, i: usize) -> &mut [u8] {
        // SAFETY: as above, borrowed mutably.
        unsafe {
            std::slice::from_raw_parts_mut(self.control[i].as_mut_ptr() as *mut u8, CONTROL_BYTES)
        }
    }
    fn set_control(&mut self, i: usize, len: usize) {
        self.msgs[i].msg_hdr.msg_control = self.control[i].as_mut_ptr() as *mut _;
        self.msgs[i].msg_hdr.msg_controllen = len as _;
    }
    /// Message `i` gathers `count` iovecs starting at `iov_at`.
    fn link_one(&mut self, i: usize, iov_at: usize, count: usize) {
        // SAFETY: zeroed msghdr is valid; fields are set below.
        let mut h: libc::msghdr = unsafe { zeroed() };
        h.msg_name = &mut self.addrs[i] as *mut _ as *mut _;
        h.msg_namelen = self.addr_lens[i];
        h.msg_iov = &mut self.iov[iov_at];
        h.msg_iovlen = count as _;
        self.msgs[i] = libc::mmsghdr {
            msg_hdr: h,
            msg_len: 0,
        };
    }
    fn capacity(&self) -> usize {
        self.msgs.len()
    }
    fn reset(&mut self, n: usize) {
        for l in &mut self.addr_lens[..n] {
            *l = size_of::<libc::sockaddr_storage>() as _;
        }
    }
    fn link(&mut self, n: usize) {
        for i in 0..n {
            self.link_one(i, i, 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket as StdUdp;
    use std::time::{Duration, Instant};

    /// A port whose last holder (no `SO_REUSEPORT`, like the probe's copy in a forking child)
    /// lets go shortly after the probe: the worker socket binds once it has.
    #[test]
    fn worker_socket_waits_for_a_lingering_probe() {
        let holder = StdUdp::bind("127.0.0.1:0").unwrap();
        let addr = holder.local_addr().unwrap();
        let released = Instant::now() + Duration::from_millis(40);
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(40));
            drop(holder);
        });
        let s = UdpSocket::bind_reuseport(addr, false).expect("bound once the holder left");
        assert!(Instant::now() >= released);
        assert_eq!(s.local_port().unwrap(), addr.port());
        t.join().unwrap();
    }

    /// A holder that stays: refused after the wait, with the address named.
    #[test]
    fn worker_socket_refused_when_the_port_stays_taken() {
        let holder = StdUdp::bind("127.0.0.1:0").unwrap();
        let addr = holder.local_addr().unwrap();
        let start = Instant::now();
        let e = UdpSocket::bind_reuseport(addr, false)
            .err()
            .expect("port in use");
        assert!(start.elapsed() >= PROBE_LINGER);
        assert!(e.message.contains(&addr.to_string()), "{e}");
    }
}
