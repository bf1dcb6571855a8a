//! Generic receive offload for TCP, in userspace: a batch of decapsulated IP packets about to
//! be written to TUN is reduced to fewer, larger writes. In-order segments of one TCP flow are
//! appended to the first one (the "head") and written once, with a virtio header asking the
//! kernel to treat it as a TSO super-packet (`GSO_TCPV4`/`GSO_TCPV6`, `NEEDS_CSUM`); Linux
//! resegments it only if it has to forward it, and local sockets take it whole.
//!
//! Eligibility follows Linux's `inet_gro_receive`/`ipv6_gro_receive`/`tcp_gro_receive`:
//! - IPv4 without options or fragmentation, IPv6 without extension headers; the IP length
//!   field must match the packet;
//! - TCP with payload, ACK set, no SYN/FIN/RST/URG/CWR; a correct TCP checksum (it is verified
//!   here, because the kernel trusts a `NEEDS_CSUM` packet's data);
//! - to join a head: same addresses and ports, sequence number = the head's next, same ACK
//!   number, window, flags (PSH aside), header length and options bytes; same TOS/TTL/DF (v4)
//!   or traffic class/flow label/hop limit (v6); an IPv4 ID one more than the previous
//!   segment's unless DF is set;
//! - every segment's payload equals the head's (`gso_size`) except the last, which may be
//!   shorter and ends the run; a PSH segment ends it too (its PSH moves to the head); the
//!   result stays ≤ 65535 bytes and within the head's buffer.
//!
//! Packets that do not qualify are written unchanged behind an all-zero virtio header. A
//! packet of a flow that does not qualify ends that flow's run, so the per-flow order of
//! writes equals the order of the batch.

use super::checksum::{pseudo_header_sum, sum};
use super::tso::{TCP_ACK, TCP_CSUM_OFFSET, TCP_CWR, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, TCP_URG};
use super::virtio::{GsoType, VirtioNetHdr, F_NEEDS_CSUM, VIRTIO_NET_HDR_LEN};
use super::{be16, be32, put16, IPPROTO_TCP, IPV4_MIN_HEADER, IPV6_HEADER, TCP_MIN_HEADER};

/// Largest coalesced packet: the IPv4 total length / IPv6 payload length field limit.
pub const MAX_COALESCED: usize = 65535;

/// One run of segments being built on a head buffer.
#[derive(Debug, Clone, Copy)]
struct Run {
    /// Index of the head packet in the batch.
    head: usize,
    v4: bool,
    /// Addresses and ports: IPv4 uses the first 12 bytes, IPv6 all 36.
    key: [u8; 36],
    ip_hlen: usize,
    hlen: usize,
    /// Payload length of the head: every segment but the last has exactly this.
    gso_size: usize,
    /// Current length of the coalesced packet.
    len: usize,
    next_seq: u32,
    segments: u16,
    psh: bool,
    closed: bool,
}

/// Reusable state for [`Coalescer::coalesce`] (allocate one per worker; it keeps its
/// capacity between batches).
#[derive(Debug, Default)]
pub struct Coalescer {
    runs: Vec<Run>,
}

/// What a TCP packet looks like to the coalescer.
struct Parsed {
    v4: bool,
    key: [u8; 36],
    ip_hlen: usize,
    hlen: usize,
    payload: usize,
    seq: u32,
    flags: u8,
    /// Eligible to start or join a run.
    eligible: bool,
}

fn parse(p: &[u8]) -> Option<Parsed> {
    let mut key = [0u8; 36];
    let (v4, ip_hlen, ip_ok) = match p.first()? >> 4 {
        4 if p.len() >= IPV4_MIN_HEADER => {
            let ihl = (p[0] & 0x0f) as usize * 4;
            if p[9] != IPPROTO_TCP || ihl < IPV4_MIN_HEADER {
                return None;
            }
            key[..8].copy_from_slice(&p[12..20]);
            let frag = be16(p, 6) & 0x3fff; // MF and fragment offset
            (
                true,
                ihl,
                ihl == IPV4_MIN_HEADER && frag == 0 && be16(p, 2) as usize == p.len(),
            )
        }
        6 if p.len() >= IPV6_HEADER => {
            if p[6] != IPPROTO_TCP {
                return None;
            }
            key[..32].copy_from_slice(&p[8..40]);
            (
                false,
                IPV6_HEADER,
                be16(p, 4) as usize + IPV6_HEADER == p.len(),
            )
        }
        _ => return None,
    };
    if p.len() < ip_hlen + TCP_MIN_HEADER {
        return None;
    }
    let t = &p[ip_hlen..];
    let ports = if v4 { 8 } else { 32 };
    key[ports..ports + 4].copy_from_slice(&t[..4]);
    let doff = (t[12] >> 4) as usize * 4;
    let flags = t[13];
    let hlen = ip_hlen + doff;
    let eligible = ip_ok
        && doff >= TCP_MIN_HEADER
        && hlen < p.len()
        && flags & TCP_ACK != 0
        && flags & (TCP_SYN | TCP_FIN | TCP_RST | TCP_URG | TCP_CWR) == 0
        && pseudo_header_sum(p, IPPROTO_TCP, p.len() - ip_hlen)
            .is_some_and(|ph| sum(t, ph) == 0xffff);
    Some(Parsed {
        v4,
        key,
        ip_hlen,
        hlen: hlen.min(p.len()),
        payload: p.len().saturating_sub(hlen),
        seq: be32(t, 4),
        flags,
        eligible,
    })
}

/// Whether `p` (parsed as `q`) may be appended to the run whose head packet is `head`.
fn joins(run: &Run, head: &[u8], p: &[u8], q: &Parsed, room: usize) -> bool {
    if run.closed
        || q.seq != run.next_seq
        || q.hlen != run.hlen
        || q.payload > run.gso_size
        || run.len + q.payload > MAX_COALESCED.min(room)
    {
        return false;
    }
    let (h, t) = (run.ip_hlen, q.ip_hlen);
    let ip_same = if run.v4 {
        let df = head[6] & 0x40;
        head[1] == p[1] // TOS incl. ECN
            && head[8] == p[8] // TTL
            && df == p[6] & 0x40
            && (df != 0 || be16(p, 4) == be16(head, 4).wrapping_add(run.segments))
    } else {
        head[..4] == p[..4] && head[7] == p[7] // class, flow label; hop limit
    };
    ip_same
        && head[h + 8..h + 12] == p[t + 8..t + 12] // ACK number
        && head[h + 12] == p[t + 12] // data offset
        && head[h + 13] & !TCP_PSH == p[t + 13] & !TCP_PSH
        && head[h + 14..h + 16] == p[t + 14..t + 16] // window
        && head[h + TCP_MIN_HEADER..run.hlen] == p[t + TCP_MIN_HEADER..q.hlen] // options
}

impl Coalescer {
    pub fn new() -> Coalescer {
        Coalescer::default()
    }

    /// Coalesces one batch in place and lists what to write.
    ///
    /// Buffer contract (the caller owns every buffer before and after the call):
    /// - `bufs[i][offset..offset + lens[i]]` holds IP packet `i`; `offset` must be at least
    ///   [`VIRTIO_NET_HDR_LEN`] (the worker's headroom).
    /// - On return, `writes` lists, in batch order, the indices of the buffers to write to
    ///   TUN, each as `bufs[i][offset - VIRTIO_NET_HDR_LEN..offset + lens[i]]`: a virtio
    ///   header followed by the packet. A head's packet grows into its buffer's tailroom
    ///   (coalescing stops at the end of the buffer) and its `lens[i]` is updated; packets
    ///   appended to a head are not listed and their buffers are free again.
    ///
    /// # Panics
    /// If `offset < VIRTIO_NET_HDR_LEN`, `lens` is shorter than `bufs`, or a packet does not
    /// fit its buffer.
    pub fn coalesce<B: AsMut<[u8]>>(
        &mut self,
        bufs: &mut [B],
        lens: &mut [usize],
        offset: usize,
        writes: &mut Vec<usize>,
    ) {
        assert!(
            offset >= VIRTIO_NET_HDR_LEN,
            "no room for the virtio header"
        );
        self.runs.clear();
        writes.clear();
        for (i, &len) in lens.iter().enumerate().take(bufs.len()) {
            let (before, rest) = bufs.split_at_mut(i);
            let p = &rest[0].as_mut()[offset..offset + len];
            let Some(q) = parse(p) else {
                writes.push(i);
                continue;
            };
            // The flow's latest run, if any: only it may grow, which keeps per-flow order.
            let cur = self
                .runs
                .iter()
                .rposition(|r| r.v4 == q.v4 && r.key == q.key);
            if let Some(ri) = cur.filter(|_| q.eligible) {
                let run = &mut self.runs[ri];
                let head = before[run.head].as_mut();
                let room = head.len() - offset;
                let head_pkt = &head[offset..offset + run.len];
                if joins(run, head_pkt, p, &q, room) {
                    let at = offset + run.len;
                    head[at..at + q.payload].copy_from_slice(&p[q.hlen..]);
                    run.len += q.payload;
                    run.next_seq = run.next_seq.wrapping_add(q.payload as u32);
                    run.segments += 1;
                    if q.flags & TCP_PSH != 0 {
                        run.psh = true;
                        run.closed = true;
                    }
                    if q.payload < run.gso_size {
                        run.closed = true;
                    }
                    continue;
                }
            }
            if let Some(ri) = cur {
                self.runs[ri].closed = true;
            }
            writes.push(i);
            if q.eligible {
                self.runs.push(Run {
                    head: i,
                    v4: q.v4,
                    key: q.key,
                    ip_hlen: q.ip_hlen,
                    hlen: q.hlen,
                    gso_size: q.payload,
                    len: p.len(),
                    next_seq: q.seq.wrapping_add(q.payload as u32),
                    segments: 1,
                    psh: false,
                    closed: q.flags & TCP_PSH != 0,
                });
            }
        }
        // Virtio headers: zero for everything, then the runs' heads get their GSO header.
        for &i in writes.iter() {
            VirtioNetHdr::NONE.encode(&mut bufs[i].as_mut()[offset - VIRTIO_NET_HDR_LEN..]);
        }
        for run in self.runs.iter().filter(|r| r.segments > 1) {
            let buf = bufs[run.head].as_mut();
            let p = &mut buf[offset..offset + run.len];
            finish_head(run, p);
            lens[run.head] = run.len;
            let gso = if run.v4 {
                GsoType::TcpV4
            } else {
                GsoType::TcpV6
            };
            VirtioNetHdr {
                flags: F_NEEDS_CSUM,
                gso_type: gso.to_raw(),
                hdr_len: run.hlen as u16,
                gso_size: run.gso_size as u16,
                csum_start: run.ip_hlen as u16,
                csum_offset: TCP_CSUM_OFFSET,
            }
            .encode(&mut buf[offset - VIRTIO_NET_HDR_LEN..]);
        }
    }
}

/// Rewrites the head's headers for its new length: IP length (and IPv4 header checksum),
/// PSH if a later segment had it, and the TCP checksum field set to the pseudo-header sum
/// that `NEEDS_CSUM` expects.
fn finish_head(run: &Run, p: &mut [u8]) {
    let th = run.ip_hlen;
    if run.v4 {
        put16(p, 2, p.len() as u16);
        put16(p, 10, 0);
        let c = super::checksum::checksum(&p[..th], 0);
        put16(p, 10, c);
    } else {
        put16(p, 4, (p.len() - IPV6_HEADER) as u16);
    }
    if run.psh {
        p[th + 13] |= TCP_PSH;
    }
    let ph = pseudo_header_sum(p, IPPROTO_TCP, p.len() - th).unwrap_or(0);
    put16(p, th + TCP_CSUM_OFFSET as usize, ph);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offload::checksum::checksum;
    use crate::offload::testutil::{record, records, reference_sum, Lcg};
    use crate::offload::tso::{complete_checksum, split};

    const OFF: usize = 64;
    const BUF: usize = OFF + 65536 + 64;

    struct Seg {
        v6: bool,
        src_port: u16,
        seq: u32,
        id: u16,
        flags: u8,
        payload: Vec<u8>,
        ack: u32,
    }

    fn seg(seq: u32, id: u16, flags: u8, payload: Vec<u8>) -> Seg {
        Seg {
            v6: false,
            src_port: 40000,
            seq,
            id,
            flags,
            payload,
            ack: 77,
        }
    }

    /// A TCP/IP packet with valid checksums, checked by the naive reference sum.
    fn build(s: &Seg) -> Vec<u8> {
        let opts = [1u8, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]; // NOP NOP TS
        let tcp_len = 20 + opts.len() + s.payload.len();
        let mut p = Vec::new();
        if s.v6 {
            p.extend_from_slice(&[0x60, 0, 0, 0]);
            p.extend_from_slice(&(tcp_len as u16).to_be_bytes());
            p.extend_from_slice(&[6, 64]);
            p.extend_from_slice(&[0xfd, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5]);
            p.extend_from_slice(&[0xfd, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7]);
        } else {
            p.extend_from_slice(&[0x45, 0]);
            p.extend_from_slice(&((20 + tcp_len) as u16).to_be_bytes());
            p.extend_from_slice(&s.id.to_be_bytes());
            p.extend_from_slice(&[0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
            let c = !reference_sum(&p, 0);
            p[10..12].copy_from_slice(&c.to_be_bytes());
        }
        let th = p.len();
        p.extend_from_slice(&s.src_port.to_be_bytes());
        p.extend_from_slice(&443u16.to_be_bytes());
        p.extend_from_slice(&s.seq.to_be_bytes());
        p.extend_from_slice(&s.ack.to_be_bytes());
        p.extend_from_slice(&[0x80, s.flags, 0x01, 0xf5, 0, 0, 0, 0]);
        p.extend_from_slice(&opts);
        p.extend_from_slice(&s.payload);
        let ph = pseudo_header_sum(&p, 6, tcp_len).unwrap();
        let c = !reference_sum(&p[th..], ph);
        p[th + 16..th + 18].copy_from_slice(&c.to_be_bytes());
        p
    }

    struct Batch {
        bufs: Vec<Vec<u8>>,
        lens: Vec<usize>,
        writes: Vec<usize>,
    }

    fn run(pkts: &[Vec<u8>]) -> Batch {
        let mut bufs: Vec<Vec<u8>> = pkts
            .iter()
            .map(|p| {
                let mut b = vec![0xeeu8; BUF];
                b[OFF..OFF + p.len()].copy_from_slice(p);
                b
            })
            .collect();
        let mut lens: Vec<usize> = pkts.iter().map(Vec::len).collect();
        let mut writes = Vec::new();
        Coalescer::new().coalesce(&mut bufs, &mut lens, OFF, &mut writes);
        Batch { bufs, lens, writes }
    }

    impl Batch {
        fn hdr(&self, i: usize) -> VirtioNetHdr {
            VirtioNetHdr::decode(&self.bufs[i][OFF - VIRTIO_NET_HDR_LEN..]).unwrap()
        }
        fn pkt(&self, i: usize) -> &[u8] {
            &self.bufs[i][OFF..OFF + self.lens[i]]
        }
    }

    fn payload(n: usize, seed: u32) -> Vec<u8> {
        let mut v = vec![0; n];
        Lcg(seed).fill(&mut v);
        v
    }

    #[test]
    fn coalesce_then_split_gives_back_the_segments() {
        for v6 in [false, true] {
            let data = payload(1448 * 5 + 300, 1);
            let segs: Vec<Vec<u8>> = data
                .chunks(1448)
                .enumerate()
                .map(|(i, c)| {
                    let last = i == 5;
                    let mut s = seg(
                        0xffff_f000u32.wrapping_add(i as u32 * 1448),
                        100 + i as u16,
                        TCP_ACK | if last { TCP_PSH } else { 0 },
                        c.to_vec(),
                    );
                    s.v6 = v6;
                    build(&s)
                })
                .collect();
            let b = run(&segs);
            assert_eq!(b.writes, [0], "v6={v6}: all six coalesce into the first");
            let h = b.hdr(0);
            let th: u16 = if v6 { 40 } else { 20 };
            assert_eq!(
                h,
                VirtioNetHdr {
                    flags: F_NEEDS_CSUM,
                    gso_type: if v6 { 4 } else { 1 },
                    hdr_len: th + 32,
                    gso_size: 1448,
                    csum_start: th,
                    csum_offset: 16,
                }
            );
            assert_eq!(b.lens[0], th as usize + 32 + data.len());
            // The kernel's view: IP length right, IPv4 header checksum right.
            let p = b.pkt(0);
            if !v6 {
                assert_eq!(be16(p, 2) as usize, p.len());
                assert_eq!(reference_sum(&p[..20], 0), 0xffff);
            } else {
                assert_eq!(be16(p, 4) as usize, p.len() - 40);
            }
            // Resegmenting gives back the original packets byte for byte.
            let mut out = vec![vec![0u8; 1600]; 8];
            let mut sizes = [0; 8];
            let n = split(&h, p, &mut out, &mut sizes, 0).unwrap();
            assert_eq!(n, segs.len());
            for i in 0..n {
                assert_eq!(&out[i][..sizes[i]], &segs[i][..], "v6={v6} segment {i}");
            }
        }
    }

    #[test]
    fn split_then_coalesce_gives_back_the_super_packet() {
        let r = records(include_str!("testdata/packets.hex"));
        for (name, mss) in [("tso6_super", 1200u16), ("tso4_super", 1000)] {
            let mut sup = record(&r, name).to_vec();
            let v4 = sup[0] >> 4 == 4;
            let th = if v4 { 20 } else { 40 };
            if v4 {
                sup[th + 13] &= !(TCP_FIN | TCP_CWR); // neither may be coalesced
            }
            let h = VirtioNetHdr {
                flags: F_NEEDS_CSUM,
                gso_type: if v4 { 1 } else { 4 },
                hdr_len: 0,
                gso_size: mss,
                csum_start: th as u16,
                csum_offset: 16,
            };
            let mut out = vec![vec![0u8; 1600]; 8];
            let mut sizes = [0; 8];
            let n = split(&h, &sup, &mut out, &mut sizes, 0).unwrap();
            let segs: Vec<Vec<u8>> = (0..n).map(|i| out[i][..sizes[i]].to_vec()).collect();
            let b = run(&segs);
            assert_eq!(b.writes, [0]);
            let got = b.hdr(0);
            assert_eq!((got.gso_size, got.csum_start), (mss, th as u16));
            assert_eq!(got.hdr_len as usize, th + if v4 { 32 } else { 20 });
            // Completing the partial checksum yields the original with a full checksum.
            let mut p = b.pkt(0).to_vec();
            complete_checksum(&got, &mut p).unwrap();
            if v4 {
                sup[10..12].fill(0);
                let c = checksum(&sup[..20], 0);
                sup[10..12].copy_from_slice(&c.to_be_bytes());
            }
            sup[th + 16..th + 18].fill(0);
            let c = checksum(
                &sup[th..],
                pseudo_header_sum(&sup, 6, sup.len() - th).unwrap(),
            );
            sup[th + 16..th + 18].copy_from_slice(&c.to_be_bytes());
            assert_eq!(p, sup, "{name}");
        }
    }

    #[test]
    fn ineligible_packets_pass_through_and_keep_flow_order() {
        let a = |i: u32, flags: u8, n: usize| {
            build(&seg(1000 + i * 100, i as u16, flags, payload(n, i)))
        };
        let mut other = seg(5000, 9, TCP_ACK, payload(100, 9));
        other.src_port = 1;
        let udp = {
            let mut p = record(&records(include_str!("testdata/packets.hex")), "udp4").to_vec();
            p.truncate(p.len());
            p
        };
        let pkts = vec![
            a(0, TCP_ACK, 100),           // 0 head
            build(&other),                // 1 other flow, head of its own
            a(1, TCP_ACK, 100),           // 2 joins 0
            udp,                          // 3 not TCP
            a(2, TCP_ACK, 0),             // 4 pure ACK: passes, ends flow's run
            a(2, TCP_ACK, 100),           // 5 new head (must not join 0: would overtake 4)
            a(3, TCP_ACK | TCP_FIN, 100), // 6 FIN: passes, ends run
            a(4, TCP_ACK, 100),           // 7 new head
            a(6, TCP_ACK, 100),           // 8 sequence gap: new head
            a(7, TCP_ACK | TCP_PSH, 50),  // 9 joins 8, short + PSH closes
            a(7, TCP_ACK, 100),           // 10 new head (8 closed)
        ];
        let b = run(&pkts);
        assert_eq!(b.writes, [0, 1, 3, 4, 5, 6, 7, 8, 10]);
        for i in [1, 3, 4, 5, 6, 7, 10] {
            assert_eq!(b.hdr(i), VirtioNetHdr::NONE, "packet {i}");
            assert_eq!(b.pkt(i), &pkts[i][..], "packet {i} unchanged");
        }
        assert_eq!(b.hdr(0).gso_size, 100);
        assert_eq!(b.lens[0], pkts[0].len() + 100);
        assert_eq!(b.lens[8], pkts[8].len() + 50);
        assert_eq!(b.pkt(8)[33] & TCP_PSH, TCP_PSH, "PSH moved to the head");
    }

    #[test]
    fn mismatches_do_not_coalesce() {
        let base = || seg(1000, 1, TCP_ACK, payload(500, 1));
        let next = || seg(1500, 2, TCP_ACK, payload(500, 2));
        type Mangle = Box<dyn Fn(&mut Vec<u8>)>;
        let variants: Vec<(&str, Mangle, Seg)> = vec![
            ("ack", Box::new(|_| {}), Seg { ack: 78, ..next() }),
            (
                "bigger",
                Box::new(|_| {}),
                Seg {
                    payload: payload(501, 3),
                    ..next()
                },
            ),
            (
                "seq",
                Box::new(|_| {}),
                Seg {
                    seq: 1499,
                    ..next()
                },
            ),
            ("ip id", Box::new(|_| {}), Seg { id: 3, ..next() }),
            (
                "cwr",
                Box::new(|_| {}),
                Seg {
                    flags: TCP_ACK | TCP_CWR,
                    ..next()
                },
            ),
            (
                "urg",
                Box::new(|_| {}),
                Seg {
                    flags: TCP_ACK | TCP_URG,
                    ..next()
                },
            ),
            ("no ack", Box::new(|_| {}), Seg { flags: 0, ..next() }),
            ("ttl", Box::new(|p| p[8] = 3), next()),
            ("tos", Box::new(|p| p[1] = 2), next()),
            ("window", Box::new(|p| p[35] ^= 1), next()),
            ("options", Box::new(|p| p[47] ^= 1), next()),
            ("bad tcp checksum", Box::new(|p| p[36] ^= 1), next()),
            ("ip options", Box::new(|p| p[0] = 0x46), next()),
            ("fragment", Box::new(|p| p[6] = 0x20), next()),
            ("trailing bytes", Box::new(|p| p.push(0)), next()),
        ];
        for (why, mangle, s) in variants {
            let mut p2 = build(&s);
            mangle(&mut p2);
            let b = run(&[build(&base()), p2.clone()]);
            assert_eq!(b.writes, [0, 1], "{why}");
            assert_eq!(b.pkt(1), &p2[..], "{why}");
        }
        // With DF set, IP IDs need not be consecutive.
        let df = |s: Seg| {
            let mut p = build(&s);
            p[6] = 0x40;
            p[10..12].fill(0);
            let c = checksum(&p[..20], 0);
            p[10..12].copy_from_slice(&c.to_be_bytes());
            p
        };
        let b = run(&[df(base()), df(Seg { id: 999, ..next() })]);
        assert_eq!(b.writes, [0]);
    }

    #[test]
    fn stops_at_65535_and_at_buffer_end() {
        let n = 1400;
        let pkts: Vec<Vec<u8>> = (0..60)
            .map(|i| build(&seg(i * n as u32, i as u16, TCP_ACK, payload(n, i))))
            .collect();
        let b = run(&pkts);
        // 52 bytes of headers + k × 1400 ≤ 65535 → k = 46.
        assert_eq!(b.writes, [0, 46]);
        assert_eq!(b.lens[0], 52 + 46 * n);
        assert_eq!(b.lens[46], 52 + 14 * n);

        // A head whose buffer has room for only two more segments.
        let mut bufs: Vec<Vec<u8>> = pkts[..4]
            .iter()
            .map(|p| {
                let mut v = vec![0u8; OFF + 52 + 3 * n];
                v[OFF..OFF + p.len()].copy_from_slice(p);
                v
            })
            .collect();
        let mut lens = vec![52 + n; 4];
        let mut writes = Vec::new();
        Coalescer::new().coalesce(&mut bufs, &mut lens, OFF, &mut writes);
        assert_eq!(writes, [0, 3]);
    }
}
