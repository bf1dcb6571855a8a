//! UDP segmentation offload on send (`UDP_SEGMENT`, Linux 4.18) and generic receive offload
//! on receive (`UDP_GRO`, Linux 5.0; forwarded GRO 5.12): one `sendmsg` carries up to 64
//! equal-size datagrams to one destination, and one `recvmsg` may return several datagrams
//! of one flow back to back, with their size in a control message (`linux/udp.h`,
//! `Documentation/networking/segmentation-offloads.rst`).
//!
//! Control messages are read and written as bytes (`cmsghdr` laid out with the C library's
//! definition), so a control buffer needs no particular alignment.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::SocketAddr;
use std::ops::Range;
use std::os::fd::RawFd;

/// `SOL_UDP` (= `IPPROTO_UDP`), the level of both options.
pub const SOL_UDP: libc::c_int = 17;
/// `UDP_SEGMENT`: socket option and cmsg type carrying the segment size (u16).
pub const UDP_SEGMENT: libc::c_int = 103;
/// `UDP_GRO`: socket option enabling GRO; cmsg type carrying the segment size (int).
pub const UDP_GRO: libc::c_int = 104;
/// Datagrams per `UDP_SEGMENT` send. Linux 4.18–6.8 allow 64 (`UDP_MAX_SEGMENTS`), newer
/// kernels 128; 64 works everywhere.
pub const MAX_SEGMENTS: usize = 64;
/// Largest UDP payload of one send: 65535 minus the IPv4 and UDP headers (the IPv6 limit,
/// 65527, is larger; one limit for both keeps plans independent of the family).
pub const MAX_GSO_PAYLOAD: usize = 65535 - 20 - 8;

fn cmsg_len(data: usize) -> usize {
    // SAFETY: pure arithmetic macro.
    unsafe { libc::CMSG_LEN(data as libc::c_uint) as usize }
}

/// Bytes of control buffer one `UDP_SEGMENT` message takes (`CMSG_SPACE(sizeof(u16))`).
pub fn segment_cmsg_space() -> usize {
    // SAFETY: pure arithmetic macro.
    unsafe { libc::CMSG_SPACE(size_of::<u16>() as libc::c_uint) as usize }
}

/// Writes a `UDP_SEGMENT` control message for `segment`-byte datagrams at the start of
/// `control` and returns its length (put it in `msg_controllen`).
///
/// # Panics
/// If `control` is shorter than [`segment_cmsg_space`].
pub fn write_segment_cmsg(control: &mut [u8], segment: u16) -> usize {
    let space = segment_cmsg_space();
    let control = &mut control[..space];
    control.fill(0);
    // SAFETY: cmsghdr is plain old data; all-zero is valid.
    let mut h: libc::cmsghdr = unsafe { zeroed() };
    h.cmsg_len = cmsg_len(size_of::<u16>()) as _;
    h.cmsg_level = SOL_UDP;
    h.cmsg_type = UDP_SEGMENT;
    // SAFETY: control holds at least CMSG_SPACE(2) > size_of::<cmsghdr>() bytes; the write is
    // unaligned-safe.
    unsafe { std::ptr::write_unaligned(control.as_mut_ptr() as *mut libc::cmsghdr, h) };
    let at = cmsg_len(0);
    control[at..at + 2].copy_from_slice(&segment.to_ne_bytes());
    space
}

/// The segment size from a `UDP_GRO` control message in `control` (the first
/// `msg_controllen` bytes after `recvmsg`), or `None` if the datagram was not coalesced.
pub fn gro_segment_size(control: &[u8]) -> Option<usize> {
    let hdr = size_of::<libc::cmsghdr>();
    let align = size_of::<usize>();
    let mut at = 0;
    while at + hdr <= control.len() {
        // SAFETY: at + hdr <= len; read_unaligned needs no alignment.
        let h: libc::cmsghdr =
            unsafe { std::ptr::read_unaligned(control[at..].as_ptr() as *const libc::cmsghdr) };
        let len = h.cmsg_len as usize;
        if len < cmsg_len(0) || at + len > control.len() {
            return None;
        }
        if h.cmsg_level == SOL_UDP && h.cmsg_type == UDP_GRO {
            let d = &control[at + cmsg_len(0)..at + len];
            // The kernel stores an int; accept a u16 too, as some senders of test data do.
            return match d.len() {
                n if n >= 4 => Some(i32::from_ne_bytes(d[..4].try_into().unwrap()) as usize),
                2 => Some(u16::from_ne_bytes([d[0], d[1]]) as usize),
                _ => None,
            }
            .filter(|&s| s > 0);
        }
        at += (len + align - 1) & !(align - 1);
    }
    None
}

/// Byte ranges of the datagrams in a buffer of `len` bytes received with GRO segment size
/// `segment` (all `segment` long but the last). `segment == 0` yields the whole buffer.
pub fn gro_segments(len: usize, segment: usize) -> impl Iterator<Item = Range<usize>> {
    let step = if segment == 0 { len.max(1) } else { segment };
    (0..len).step_by(step).map(move |s| s..(s + step).min(len))
}

/// A run of datagrams that can go out in one `UDP_SEGMENT` send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GsoGroup {
    /// Index of the first datagram in the planned batch.
    pub start: usize,
    pub count: usize,
    /// Size of every datagram but possibly the last (which is no longer).
    pub segment: usize,
}

/// Groups consecutive datagrams for GSO: same destination, equal size (the last of a group may
/// be shorter and ends it), at most [`MAX_SEGMENTS`] and [`MAX_GSO_PAYLOAD`] bytes per group.
/// Every datagram lands in exactly one group, in order; a one-datagram group is sent without
/// a control message. Empty datagrams always travel alone.
pub fn plan_gso<A: PartialEq>(datagrams: &[(&[u8], A)], groups: &mut Vec<GsoGroup>) {
    groups.clear();
    let mut i = 0;
    while i < datagrams.len() {
        let (first, addr) = &datagrams[i];
        let segment = first.len();
        let mut count = 1;
        let mut total = segment;
        if segment > 0 {
            while i + count < datagrams.len() && count < MAX_SEGMENTS {
                let (d, a) = &datagrams[i + count];
                if a != addr
                    || d.is_empty()
                    || d.len() > segment
                    || total + d.len() > MAX_GSO_PAYLOAD
                {
                    break;
                }
                total += d.len();
                count += 1;
                if d.len() < segment {
                    break;
                }
            }
        }
        groups.push(GsoGroup {
            start: i,
            count,
            segment,
        });
        i += count;
    }
}

/// Whether `fd` (a UDP socket) supports `UDP_SEGMENT`: reading the option fails on kernels
/// without it.
pub fn udp_gso_supported(fd: RawFd) -> bool {
    let mut v: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: v and len are live for the call.
    unsafe {
        libc::getsockopt(
            fd,
            SOL_UDP,
            UDP_SEGMENT,
            &mut v as *mut _ as *mut _,
            &mut len,
        ) == 0
    }
}

/// Turns on `UDP_GRO` for `fd`: received datagrams of one flow may then arrive coalesced,
/// with [`gro_segment_size`] in the control buffer (which must have room for
/// `CMSG_SPACE(sizeof(int))`, or the kernel truncates it and sets `MSG_CTRUNC`).
pub fn enable_udp_gro(fd: RawFd) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: passes a live int with its size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            SOL_UDP,
            UDP_GRO,
            &one as *const _ as *const _,
            size_of::<libc::c_int>() as _,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// True for the error a GSO send gets when the route's device cannot segment or checksum
/// (`EIO`): switch GSO off for the socket and resend the datagrams one by one.
pub fn is_gso_refused(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EIO)
}

fn sockaddr(addr: SocketAddr, v6_socket: bool) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zero is valid.
    let mut ss: libc::sockaddr_storage = unsafe { zeroed() };
    let v6 = match addr {
        SocketAddr::V4(a) if v6_socket => {
            std::net::SocketAddrV6::new(a.ip().to_ipv6_mapped(), a.port(), 0, 0)
        }
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large enough and aligned for sockaddr_in.
            let sin = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as _;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from(*a.ip()).to_be();
            return (ss, size_of::<libc::sockaddr_in>() as _);
        }
        SocketAddr::V6(a) => a,
    };
    // SAFETY: sockaddr_storage is large enough and aligned for sockaddr_in6.
    let sin6 = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in6) };
    sin6.sin6_family = libc::AF_INET6 as _;
    sin6.sin6_port = v6.port().to_be();
    sin6.sin6_addr.s6_addr = v6.ip().octets();
    sin6.sin6_scope_id = v6.scope_id();
    (ss, size_of::<libc::sockaddr_in6>() as _)
}

/// Sends `datagrams` (one [`GsoGroup`]: all but the last of equal size, the last no longer)
/// to `dst` with one `sendmsg`, gathering them with one iovec each, so nothing is copied.
/// `v6_socket` says the socket is `AF_INET6` (IPv4 destinations are then mapped). Returns the
/// bytes sent. Up to [`MAX_SEGMENTS`] iovecs live on the stack.
pub fn send_segmented(
    fd: RawFd,
    datagrams: &[&[u8]],
    dst: SocketAddr,
    v6_socket: bool,
) -> io::Result<usize> {
    let n = datagrams.len();
    if n == 0 || n > MAX_SEGMENTS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "1 to 64 datagrams per GSO send",
        ));
    }
    let segment = datagrams[0].len();
    if segment > u16::MAX as usize
        || datagrams[..n - 1].iter().any(|d| d.len() != segment)
        || datagrams[n - 1].len() > segment
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "GSO datagrams must have equal sizes (the last may be shorter)",
        ));
    }
    let mut iov = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; MAX_SEGMENTS];
    for (v, d) in iov.iter_mut().zip(datagrams) {
        v.iov_base = d.as_ptr() as *mut _;
        v.iov_len = d.len();
    }
    let (mut ss, sslen) = sockaddr(dst, v6_socket);
    // u64 storage keeps the control buffer aligned for the kernel's CMSG walk on our side too.
    let mut control = [0u64; 4];
    // SAFETY: viewing a u64 array as bytes.
    let cbytes = unsafe { std::slice::from_raw_parts_mut(control.as_mut_ptr() as *mut u8, 32) };
    // SAFETY: msghdr is plain old data; all-zero is valid.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_name = &mut ss as *mut _ as *mut _;
    msg.msg_namelen = sslen;
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = n as _;
    if n > 1 {
        msg.msg_controllen = write_segment_cmsg(cbytes, segment as u16) as _;
        msg.msg_control = cbytes.as_mut_ptr() as *mut _;
    }
    // SAFETY: msg points at live iovecs, address and control buffer for the call.
    let r = unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    #[test]
    fn segment_cmsg_layout() {
        let mut buf = [0xffu8; 40];
        let n = write_segment_cmsg(&mut buf, 1200);
        // struct cmsghdr on 64-bit Linux: size_t len, int level, int type; then 2 data bytes,
        // padded to 8: 24 bytes.
        assert_eq!(n, 24);
        assert_eq!(&buf[..8], &18u64.to_ne_bytes());
        assert_eq!(&buf[8..12], &17i32.to_ne_bytes());
        assert_eq!(&buf[12..16], &103i32.to_ne_bytes());
        assert_eq!(&buf[16..18], &1200u16.to_ne_bytes());
        assert_eq!(&buf[18..24], &[0; 6]);
        assert_eq!(buf[24], 0xff);
    }

    #[test]
    fn gro_cmsg_parse() {
        // Another cmsg first (IP_TOS, 1 byte, padded), then UDP_GRO with an int.
        let mut c = Vec::new();
        c.extend_from_slice(&17u64.to_ne_bytes());
        c.extend_from_slice(&0i32.to_ne_bytes());
        c.extend_from_slice(&1i32.to_ne_bytes());
        c.extend_from_slice(&[0x10, 0, 0, 0, 0, 0, 0, 0]);
        c.extend_from_slice(&20u64.to_ne_bytes());
        c.extend_from_slice(&17i32.to_ne_bytes());
        c.extend_from_slice(&104i32.to_ne_bytes());
        c.extend_from_slice(&1400i32.to_ne_bytes());
        c.extend_from_slice(&[0; 4]);
        assert_eq!(gro_segment_size(&c), Some(1400));
        assert_eq!(gro_segment_size(&c[..24]), None);
        assert_eq!(gro_segment_size(&c[..40]), None, "truncated message");
        assert_eq!(gro_segment_size(&[]), None);
        let mut bad = c.clone();
        bad[..8].copy_from_slice(&3u64.to_ne_bytes());
        assert_eq!(gro_segment_size(&bad), None, "cmsg_len below the header");
    }

    #[test]
    fn gro_segment_ranges() {
        let r: Vec<_> = gro_segments(3500, 1000).collect();
        assert_eq!(r, [0..1000, 1000..2000, 2000..3000, 3000..3500]);
        let r: Vec<_> = gro_segments(2000, 1000).collect();
        assert_eq!(r, [0..1000, 1000..2000]);
        assert!(gro_segments(700, 0).eq(std::iter::once(0..700)));
        assert_eq!(gro_segments(0, 1000).count(), 0);
    }

    #[test]
    fn plan_groups() {
        let big = [0u8; 1400];
        let small = [0u8; 100];
        let d = |n: usize, a: u8| (&big[..n], a);
        let mut g = Vec::new();
        let dg = vec![
            d(1400, 1),
            d(1400, 1),
            d(100, 1), // shorter: ends the group
            d(1400, 1),
            d(1400, 2), // other destination
            d(1400, 2),
            d(1400, 2),
            (&small[..], 2), // shorter, ends
            (&small[..], 2), // equal size to its own group start
            (&big[..0], 2),  // empty travels alone
        ];
        plan_gso(&dg, &mut g);
        let v: Vec<_> = g.iter().map(|g| (g.start, g.count, g.segment)).collect();
        assert_eq!(
            v,
            [
                (0, 3, 1400),
                (3, 1, 1400),
                (4, 4, 1400),
                (8, 1, 100),
                (9, 1, 0)
            ]
        );
        // A larger datagram after a smaller one starts a new group.
        plan_gso(&[d(100, 1), d(200, 1)], &mut g);
        assert_eq!(g.len(), 2);
        // 64-segment and 65507-byte limits.
        let many: Vec<_> = (0..130).map(|_| d(10, 1)).collect();
        plan_gso(&many, &mut g);
        assert_eq!(g.iter().map(|g| g.count).collect::<Vec<_>>(), [64, 64, 2]);
        let v = vec![0u8; 1400];
        let many: Vec<_> = (0..60).map(|_| (&v[..], 1)).collect();
        plan_gso(&many, &mut g);
        assert_eq!(g[0].count, MAX_GSO_PAYLOAD / 1400);
        assert_eq!(g.iter().map(|g| g.count).sum::<usize>(), 60);
    }

    fn pattern(i: usize, n: usize) -> Vec<u8> {
        (0..n).map(|j| (i * 31 + j) as u8).collect()
    }

    #[test]
    fn gso_loopback_arrives_as_separate_datagrams() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(udp_gso_supported(tx.as_raw_fd()));
        let data: Vec<Vec<u8>> = (0..10).map(|i| pattern(i, 1200)).collect();
        let refs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        let n = send_segmented(tx.as_raw_fd(), &refs, rx.local_addr().unwrap(), false).unwrap();
        assert_eq!(n, 12000);
        rx.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let mut buf = [0u8; 65536];
        for (i, want) in data.iter().enumerate() {
            let (len, from) = rx.recv_from(&mut buf).unwrap();
            assert_eq!(from, tx.local_addr().unwrap());
            assert_eq!(&buf[..len], &want[..], "datagram {i}");
        }
        // A short last datagram, over an IPv4-mapped dual-stack socket when IPv6 exists.
        let refs = [&data[0][..], &data[1][..700]];
        send_segmented(tx.as_raw_fd(), &refs, rx.local_addr().unwrap(), false).unwrap();
        assert_eq!(rx.recv(&mut buf).unwrap(), 1200);
        assert_eq!(rx.recv(&mut buf).unwrap(), 700);
        assert_eq!(&buf[..700], &data[1][..700]);
        // Unequal sizes are refused before the syscall.
        let refs = [&data[0][..700], &data[1][..]];
        assert!(send_segmented(tx.as_raw_fd(), &refs, rx.local_addr().unwrap(), false).is_err());
    }

    #[test]
    fn gro_loopback_delivers_one_coalesced_buffer() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        enable_udp_gro(rx.as_raw_fd()).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let data: Vec<Vec<u8>> = (0..10).map(|i| pattern(i + 5, 1200)).collect();
        let refs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        send_segmented(tx.as_raw_fd(), &refs, rx.local_addr().unwrap(), false).unwrap();
        let mut buf = vec![0u8; 65536];
        let mut control = [0u64; 8];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr() as *mut _,
            iov_len: buf.len(),
        };
        // SAFETY: zeroed msghdr is valid; pointers set below are live for the call.
        let mut msg: libc::msghdr = unsafe { zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr() as *mut _;
        msg.msg_controllen = 64;
        rx.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        // SAFETY: as above.
        let n = unsafe { libc::recvmsg(rx.as_raw_fd(), &mut msg, 0) };
        assert!(n > 0, "{}", io::Error::last_os_error());
        // SAFETY: the kernel wrote msg_controllen bytes of the u64 array.
        let cbytes = unsafe {
            std::slice::from_raw_parts(control.as_ptr() as *const u8, msg.msg_controllen as usize)
        };
        let seg = gro_segment_size(cbytes).unwrap_or(n as usize);
        assert_eq!(seg, 1200);
        // Loopback keeps the GSO packet whole, so all ten arrive in this one read.
        assert_eq!(n, 12000);
        let got: Vec<&[u8]> = gro_segments(n as usize, seg).map(|r| &buf[r]).collect();
        assert_eq!(got, refs);
    }
}
