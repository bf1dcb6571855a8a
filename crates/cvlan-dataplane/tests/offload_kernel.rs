//! The offload building blocks against the real kernel: a TUN opened with `IFF_VNET_HDR` and
//! offloads on, a TCP connection whose peer is this test (reading super-packets from the TUN,
//! splitting them, and answering with one coalesced super-packet), and UDP/USO into the TUN.
//! Needs root (CAP_NET_ADMIN) and `ip`; ignored otherwise.

mod support;

use cvlan_dataplane::offload::gro::Coalescer;
use cvlan_dataplane::offload::tso::split;
use cvlan_dataplane::offload::tun_vnet::{
    enable_tun_offload, set_vnet_hdr_size, tun_vnet_flags, vnet_hdr_size,
};
use cvlan_dataplane::offload::udp_gso::send_segmented;
use cvlan_dataplane::offload::virtio::{GsoType, VirtioNetHdr, VIRTIO_NET_HDR_LEN};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;

/// RFC 1071 as written: the independent check of every checksum the kernel or we produce.
fn reference_sum(data: &[u8], initial: u32) -> u16 {
    let mut acc = initial as u64;
    for c in data.chunks(2) {
        acc += (c[0] as u64) << 8 | *c.get(1).unwrap_or(&0) as u64;
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

fn l4_valid(p: &[u8], proto: u8) -> bool {
    let ph: u32 = p[12..20]
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]) as u32)
        .sum::<u32>()
        + proto as u32
        + (p.len() - 20) as u32;
    reference_sum(&p[20..], ph) == 0xffff && reference_sum(&p[..20], 0) == 0xffff
}

struct Tun {
    fd: OwnedFd,
    name: String,
    /// 198.18.N.0/24 (RFC 2544 benchmarking space): .1 is ours, .2 is behind the TUN.
    net: [u8; 3],
}

static SEQ: AtomicU32 = AtomicU32::new(0);

fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().expect("ip");
    assert!(st.success(), "ip {args:?}");
}

impl Tun {
    fn open() -> Tun {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let name = format!("cvoff{}x{n}", pid % 100_000);
        // SAFETY: valid C string.
        let fd = unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        assert!(fd >= 0);
        // SAFETY: fresh descriptor.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut req = [0u8; 40];
        req[..name.len()].copy_from_slice(name.as_bytes());
        let flags = IFF_TUN | IFF_NO_PI | tun_vnet_flags();
        req[16..18].copy_from_slice(&flags.to_ne_bytes());
        // SAFETY: req is a struct ifreq (name, flags) that lives across the call.
        let r = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF, req.as_mut_ptr()) };
        assert!(r == 0, "TUNSETIFF: {}", std::io::Error::last_os_error());
        let net = [198, 18 + (n % 2) as u8, ((pid + n * 7) % 250) as u8];
        Tun { fd, name, net }
    }

    fn addr(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(self.net[0], self.net[1], self.net[2], host)
    }

    fn up(&self) {
        let cidr = format!("{}/24", self.addr(1));
        ip(&["addr", "add", &cidr, "dev", &self.name]);
        ip(&["link", "set", &self.name, "up"]);
    }

    /// One read (virtio header + packet), or `None` after `timeout`.
    fn read(&self, buf: &mut [u8], timeout: Duration) -> Option<usize> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: pfd is live for the call.
        if unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as i32) } <= 0 {
            return None;
        }
        // SAFETY: buf is valid for its length.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr() as *mut _, buf.len()) };
        assert!(n > 0, "TUN read: {}", std::io::Error::last_os_error());
        Some(n as usize)
    }

    fn write(&self, frame: &[u8]) {
        // SAFETY: frame is valid for its length.
        let n =
            unsafe { libc::write(self.fd.as_raw_fd(), frame.as_ptr() as *const _, frame.len()) };
        assert_eq!(
            n as usize,
            frame.len(),
            "TUN write: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// An IPv4/TCP packet from .2:port to .1:client_port, checksummed with the reference sum.
fn tcp_packet(
    t: &Tun,
    (sport, dport): (u16, u16),
    (seq, ack): (u32, u32),
    flags: u8,
    opts: &[u8],
    data: &[u8],
) -> Vec<u8> {
    let tl = 20 + opts.len() + data.len();
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&((20 + tl) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0x40, 0, 64, 6, 0, 0]);
    p.extend_from_slice(&t.addr(2).octets());
    p.extend_from_slice(&t.addr(1).octets());
    let c = !reference_sum(&p, 0);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ack.to_be_bytes());
    p.push((((20 + opts.len()) / 4) as u8) << 4);
    p.push(flags);
    p.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
    p.extend_from_slice(opts);
    p.extend_from_slice(data);
    let ph: u32 = p[12..20]
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]) as u32)
        .sum::<u32>()
        + 6
        + tl as u32;
    let c = !reference_sum(&p[20..], ph);
    p[36..38].copy_from_slice(&c.to_be_bytes());
    p
}

fn with_zero_hdr(p: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; VIRTIO_NET_HDR_LEN];
    f.extend_from_slice(p);
    f
}

fn pattern(n: usize, seed: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * 13 + seed) % 251) as u8).collect()
}

#[test]
#[ignore = "needs root"]
fn tcp_super_packets_both_ways_through_a_real_tun() {
    support::require_root(&["ip"]);
    let tun = Tun::open();
    set_vnet_hdr_size(tun.fd.as_raw_fd(), VIRTIO_NET_HDR_LEN).unwrap();
    assert_eq!(
        vnet_hdr_size(tun.fd.as_raw_fd()).unwrap(),
        VIRTIO_NET_HDR_LEN
    );
    let on = enable_tun_offload(tun.fd.as_raw_fd()).unwrap();
    assert!(on.csum() && on.tso(), "{on:?}");
    tun.up();

    const PORT: u16 = 5555;
    const UP: usize = 32 * 1024;
    const DOWN: usize = 20 * 1000;
    let peer = SocketAddr::from((tun.addr(2), PORT));
    let client = std::thread::spawn(move || {
        let mut s = TcpStream::connect_timeout(&peer, Duration::from_secs(5)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(&pattern(UP, 1)).unwrap();
        let mut got = vec![0u8; DOWN];
        s.read_exact(&mut got).unwrap();
        got
    });

    let mut buf = vec![0u8; VIRTIO_NET_HDR_LEN + 65536];
    let mut segs = vec![vec![0u8; 2048]; 64];
    let mut sizes = [0usize; 64];
    let (iss, mut client_port, mut rcv_next) = (1_000_000u32, 0u16, 0u32);
    let mut received = Vec::new();
    let (mut super_packets, mut max_segments) = (0, 0);
    let mut sent_down = false;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !client.is_finished() && Instant::now() < deadline {
        let Some(n) = tun.read(&mut buf, Duration::from_millis(100)) else {
            continue;
        };
        let hdr = VirtioNetHdr::decode(&buf).unwrap();
        let pkt = &buf[VIRTIO_NET_HDR_LEN..n];
        if pkt[0] >> 4 != 4 || pkt[9] != 6 || u16::from_be_bytes([pkt[22], pkt[23]]) != PORT {
            continue; // IPv6 router solicitations and the like
        }
        let flags = pkt[33];
        if flags & 0x02 != 0 {
            // SYN: answer SYN-ACK with MSS 1200.
            client_port = u16::from_be_bytes([pkt[20], pkt[21]]);
            rcv_next = u32::from_be_bytes(pkt[24..28].try_into().unwrap()).wrapping_add(1);
            let synack = tcp_packet(
                &tun,
                (PORT, client_port),
                (iss, rcv_next),
                0x12,
                &[2, 4, 0x04, 0xb0],
                &[],
            );
            tun.write(&with_zero_hdr(&synack));
            continue;
        }
        if hdr.gso().unwrap() != GsoType::None {
            assert_eq!(hdr.gso().unwrap(), GsoType::TcpV4);
            assert_eq!(hdr.gso_size, 1200, "gso_size is the negotiated MSS");
            super_packets += 1;
        }
        let k = split(&hdr, pkt, &mut segs, &mut sizes, 0).unwrap();
        max_segments = max_segments.max(k);
        for (s, &len) in segs.iter().zip(&sizes[..k]) {
            let s = &s[..len];
            assert!(l4_valid(s, 6), "segment checksums");
            assert_eq!(u16::from_be_bytes([s[2], s[3]]) as usize, len);
            assert!(len <= 20 + 32 + 1200);
            let seq = u32::from_be_bytes(s[24..28].try_into().unwrap());
            let doff = (s[32] >> 4) as usize * 4;
            let data = &s[20 + doff..];
            if data.is_empty() {
                continue;
            }
            // No loss on a TUN we drain promptly: segments arrive in order.
            assert_eq!(seq, rcv_next, "in-order segments");
            received.extend_from_slice(data);
            rcv_next = rcv_next.wrapping_add(data.len() as u32);
        }
        let ack = tcp_packet(
            &tun,
            (PORT, client_port),
            (iss + 1, rcv_next),
            0x10,
            &[],
            &[],
        );
        tun.write(&with_zero_hdr(&ack));

        if received.len() == UP && !sent_down {
            sent_down = true;
            // The reverse direction: 20 MSS-sized segments coalesced into one TUN write.
            let down = pattern(DOWN, 2);
            let mut bufs: Vec<Vec<u8>> = down
                .chunks(1000)
                .enumerate()
                .map(|(i, c)| {
                    let fl = if (i + 1) * 1000 == DOWN { 0x18 } else { 0x10 };
                    let p = tcp_packet(
                        &tun,
                        (PORT, client_port),
                        (iss + 1 + (i * 1000) as u32, rcv_next),
                        fl,
                        &[],
                        c,
                    );
                    let mut b = vec![0u8; 64 + 65536];
                    b[64..64 + p.len()].copy_from_slice(&p);
                    b
                })
                .collect();
            let mut lens = vec![1040; bufs.len()];
            let mut writes = Vec::new();
            Coalescer::new().coalesce(&mut bufs, &mut lens, 64, &mut writes);
            assert_eq!(writes, [0], "one super-packet");
            tun.write(&bufs[0][64 - VIRTIO_NET_HDR_LEN..64 + lens[0]]);
        }
    }
    assert!(
        client.is_finished(),
        "timed out; received {} bytes",
        received.len()
    );
    let got = client.join().unwrap();
    assert_eq!(
        received,
        pattern(UP, 1),
        "upload reassembled from split segments"
    );
    assert_eq!(
        got,
        pattern(DOWN, 2),
        "the kernel accepted our coalesced super-packet"
    );
    assert!(
        super_packets > 0 && max_segments > 1,
        "the kernel sent TSO super-packets ({super_packets}, max {max_segments} segments)"
    );
    eprintln!(
        "{} TSO super-packets, up to {max_segments} segments each",
        super_packets
    );
}

#[test]
#[ignore = "needs root"]
fn udp_into_a_real_tun_has_wellformed_virtio_headers() {
    support::require_root(&["ip"]);
    let tun = Tun::open();
    let on = enable_tun_offload(tun.fd.as_raw_fd()).unwrap();
    tun.up();
    let sock = UdpSocket::bind((tun.addr(1), 0)).unwrap();
    let dst = SocketAddr::from((tun.addr(2), 9999));
    // One plain datagram, then one UDP_SEGMENT send of 4 × 1000 bytes.
    sock.send_to(&pattern(100, 3), dst).unwrap();
    let four: Vec<Vec<u8>> = (0..4).map(|i| pattern(1000, 10 + i)).collect();
    let refs: Vec<&[u8]> = four.iter().map(Vec::as_slice).collect();
    send_segmented(sock.as_raw_fd(), &refs, dst, false).unwrap();

    let mut buf = vec![0u8; VIRTIO_NET_HDR_LEN + 65536];
    let mut segs = vec![vec![0u8; 2048]; 8];
    let mut sizes = [0usize; 8];
    let mut datagrams = Vec::new();
    let mut gso_reads = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    while datagrams.len() < 5 && Instant::now() < deadline {
        let Some(n) = tun.read(&mut buf, Duration::from_millis(100)) else {
            continue;
        };
        let hdr = VirtioNetHdr::decode(&buf).unwrap();
        let pkt = &buf[VIRTIO_NET_HDR_LEN..n];
        if pkt[0] >> 4 != 4 || pkt[9] != 17 {
            continue;
        }
        if hdr.gso().unwrap() == GsoType::UdpL4 {
            gso_reads += 1;
            assert_eq!(hdr.gso_size, 1000);
        }
        if hdr.needs_csum() {
            assert_eq!((hdr.csum_start, hdr.csum_offset), (20, 6));
        }
        let k = split(&hdr, pkt, &mut segs, &mut sizes, 0).unwrap();
        for (s, &len) in segs.iter().zip(&sizes[..k]) {
            assert!(l4_valid(&s[..len], 17), "UDP checksum after split/complete");
            datagrams.push(s[28..len].to_vec());
        }
    }
    assert_eq!(datagrams.len(), 5);
    assert_eq!(datagrams[0], pattern(100, 3));
    assert_eq!(&datagrams[1..], &four[..]);
    if on.uso() {
        assert_eq!(
            gso_reads, 1,
            "USO on: the 4 datagrams came as one super-packet"
        );
    }
    eprintln!("offloads {on:?}, {gso_reads} USO reads");
}
