//! Segmentation of super-packets read from a TUN with `IFF_VNET_HDR` (what a NIC does for TSO
//! and USO, done in userspace): one read of up to 64 KB becomes MSS-sized IP packets, each a
//! valid packet on its own, so the tunnel encrypts and sends them as usual.
//!
//! Per segment, following Linux's `tcp_gso_segment`/`__udp_gso_segment`:
//! - IPv4: total length, identification = first ID + segment index, header checksum;
//!   IPv6: payload length.
//! - TCP: sequence number advanced by the payload before it; FIN and PSH only on the last
//!   segment, CWR only on the first; full checksum.
//! - UDP: length and full checksum (zero becomes `0xffff`, RFC 768).
//!
//! The header length is recomputed from the packet (the kernel's `hdr_len` may cover more
//! than the headers when a packet was forwarded), so only its range is checked.

use super::checksum::{checksum, pseudo_header_sum};
use super::virtio::{GsoType, VirtioNetHdr};
use super::{be16, be32, put16, put32, OffloadError};
use super::{IPPROTO_TCP, IPPROTO_UDP, IPV4_MIN_HEADER, IPV6_HEADER, TCP_MIN_HEADER, UDP_HEADER};

/// RFC 9293 §3.1 flag bits in byte 13 of the TCP header.
pub(crate) const TCP_FIN: u8 = 0x01;
pub(crate) const TCP_SYN: u8 = 0x02;
pub(crate) const TCP_RST: u8 = 0x04;
pub(crate) const TCP_PSH: u8 = 0x08;
pub(crate) const TCP_ACK: u8 = 0x10;
pub(crate) const TCP_URG: u8 = 0x20;
pub(crate) const TCP_CWR: u8 = 0x80;
/// Offsets of the checksum field within the transport header (the `csum_offset` values).
pub const TCP_CSUM_OFFSET: u16 = 16;
pub const UDP_CSUM_OFFSET: u16 = 6;

/// Completes a partial checksum in place: `pkt` is one packet whose virtio header says
/// `NEEDS_CSUM` (the field at `csum_start + csum_offset` holds the pseudo-header sum). A
/// header without `NEEDS_CSUM` leaves the packet untouched.
pub fn complete_checksum(hdr: &VirtioNetHdr, pkt: &mut [u8]) -> Result<(), OffloadError> {
    if !hdr.needs_csum() {
        return Ok(());
    }
    let start = hdr.csum_start as usize;
    let field = start + hdr.csum_offset as usize;
    if field + 2 > pkt.len() {
        return Err(OffloadError::BadVirtioHeader(
            "csum_start + csum_offset beyond the packet",
        ));
    }
    let mut c = checksum(&pkt[start..], 0);
    if c == 0 && hdr.csum_offset == UDP_CSUM_OFFSET {
        // RFC 768: a computed zero is sent as all ones (zero means "no checksum").
        c = 0xffff;
    }
    put16(pkt, field, c);
    Ok(())
}

/// Headers of a GSO super-packet, validated against its virtio header.
#[derive(Debug, Clone, Copy)]
struct Layout {
    v4: bool,
    tcp: bool,
    /// IP header length = transport header offset.
    ip_hlen: usize,
    /// IP + transport header length.
    hlen: usize,
    gso_size: usize,
    segments: usize,
}

fn layout(hdr: &VirtioNetHdr, gso: GsoType, pkt: &[u8]) -> Result<Layout, OffloadError> {
    use OffloadError::{BadPacket, BadVirtioHeader, Unsupported};
    if hdr.gso_size == 0 {
        return Err(BadVirtioHeader("gso_size 0 with a GSO type"));
    }
    if hdr.hdr_len as usize > pkt.len() {
        return Err(BadVirtioHeader("hdr_len beyond the packet"));
    }
    if hdr.csum_start as usize > pkt.len() {
        return Err(BadVirtioHeader("csum_start beyond the packet"));
    }
    let version = pkt.first().ok_or(BadPacket("empty packet"))? >> 4;
    let (v4, ip_hlen, proto) = match version {
        4 => {
            if pkt.len() < IPV4_MIN_HEADER {
                return Err(BadPacket("truncated IPv4 header"));
            }
            let ihl = (pkt[0] & 0x0f) as usize * 4;
            if ihl < IPV4_MIN_HEADER || ihl > pkt.len() {
                return Err(BadPacket("bad IPv4 header length"));
            }
            (true, ihl, pkt[9])
        }
        6 => {
            if pkt.len() < IPV6_HEADER {
                return Err(BadPacket("truncated IPv6 header"));
            }
            (false, IPV6_HEADER, pkt[6])
        }
        _ => return Err(BadPacket("not IPv4 or IPv6")),
    };
    let tcp = match gso {
        GsoType::TcpV4 if v4 => true,
        GsoType::TcpV6 if !v4 => true,
        GsoType::TcpV4 | GsoType::TcpV6 => {
            return Err(BadVirtioHeader(
                "TCP GSO type does not match the IP version",
            ))
        }
        GsoType::UdpL4 => false,
        GsoType::None => unreachable!("callers handle GSO_NONE"),
    };
    let want_proto = if tcp { IPPROTO_TCP } else { IPPROTO_UDP };
    if proto != want_proto {
        return Err(if !v4 && proto != IPPROTO_TCP && proto != IPPROTO_UDP {
            Unsupported("IPv6 extension headers on a GSO packet")
        } else {
            BadPacket("IP protocol does not match the GSO type")
        });
    }
    if hdr.csum_start as usize != ip_hlen {
        return Err(BadVirtioHeader(
            "csum_start is not the transport header offset",
        ));
    }
    let want_off = if tcp {
        TCP_CSUM_OFFSET
    } else {
        UDP_CSUM_OFFSET
    };
    if hdr.needs_csum() && hdr.csum_offset != want_off {
        return Err(BadVirtioHeader(
            "csum_offset is not the transport checksum field",
        ));
    }
    let l4_hlen = if tcp {
        if pkt.len() < ip_hlen + TCP_MIN_HEADER {
            return Err(BadPacket("truncated TCP header"));
        }
        let doff = (pkt[ip_hlen + 12] >> 4) as usize * 4;
        if doff < TCP_MIN_HEADER || ip_hlen + doff > pkt.len() {
            return Err(BadPacket("bad TCP data offset"));
        }
        doff
    } else {
        UDP_HEADER
    };
    let hlen = ip_hlen + l4_hlen;
    if hlen > pkt.len() {
        return Err(BadPacket("truncated transport header"));
    }
    let gso_size = hdr.gso_size as usize;
    if hlen + gso_size > 65535 {
        return Err(BadVirtioHeader("gso_size makes segments longer than 65535"));
    }
    let payload = pkt.len() - hlen;
    if payload == 0 {
        return Err(BadPacket("GSO packet without payload"));
    }
    Ok(Layout {
        v4,
        tcp,
        ip_hlen,
        hlen,
        gso_size,
        segments: payload.div_ceil(gso_size),
    })
}

/// How many packets [`split`] will produce for `pkt` (1 for `GSO_NONE`).
pub fn segment_count(hdr: &VirtioNetHdr, pkt: &[u8]) -> Result<usize, OffloadError> {
    match hdr.gso()? {
        GsoType::None => Ok(1),
        gso => Ok(layout(hdr, gso, pkt)?.segments),
    }
}

/// Splits one packet read from TUN (`pkt`, without its virtio header `hdr`) into IP packets.
///
/// Segment `i` is written to `out[i][offset..offset + sizes[i]]` (`offset` leaves headroom
/// for the tunnel header); the buffers stay the caller's and nothing is allocated. Returns the
/// number of segments. A `GSO_NONE` packet is copied to `out[0]` with its checksum completed
/// if it `NEEDS_CSUM`. Fails without writing anything meaningful if the header is malformed
/// or the output is too small ([`OffloadError::NoRoom`] says what is needed).
pub fn split<B: AsMut<[u8]>>(
    hdr: &VirtioNetHdr,
    pkt: &[u8],
    out: &mut [B],
    sizes: &mut [usize],
    offset: usize,
) -> Result<usize, OffloadError> {
    let gso = hdr.gso()?;
    if gso == GsoType::None {
        let room = |o: &mut [B]| o.first_mut().map_or(0, |b| b.as_mut().len());
        if sizes.is_empty() || room(out) < offset + pkt.len() {
            return Err(OffloadError::NoRoom {
                needed_segments: 1,
                segment_len: pkt.len(),
            });
        }
        let dst = &mut out[0].as_mut()[offset..offset + pkt.len()];
        dst.copy_from_slice(pkt);
        complete_checksum(hdr, dst)?;
        sizes[0] = pkt.len();
        return Ok(1);
    }
    let l = layout(hdr, gso, pkt)?;
    let seg_max = l.hlen + l.gso_size.min(pkt.len() - l.hlen);
    if out.len() < l.segments
        || sizes.len() < l.segments
        || out[..l.segments]
            .iter_mut()
            .any(|b| b.as_mut().len() < offset + seg_max)
    {
        return Err(OffloadError::NoRoom {
            needed_segments: l.segments,
            segment_len: seg_max,
        });
    }
    let (headers, payload) = pkt.split_at(l.hlen);
    let ip_id = be16(pkt, 4);
    let th = l.ip_hlen;
    let seq = if l.tcp { be32(pkt, th + 4) } else { 0 };
    let proto = if l.tcp { IPPROTO_TCP } else { IPPROTO_UDP };
    let csum_field = th
        + if l.tcp {
            TCP_CSUM_OFFSET
        } else {
            UDP_CSUM_OFFSET
        } as usize;
    let last = l.segments - 1;
    for (i, chunk) in payload.chunks(l.gso_size).enumerate() {
        let len = l.hlen + chunk.len();
        let seg = &mut out[i].as_mut()[offset..offset + len];
        seg[..l.hlen].copy_from_slice(headers);
        seg[l.hlen..].copy_from_slice(chunk);
        if l.v4 {
            put16(seg, 2, len as u16);
            put16(seg, 4, ip_id.wrapping_add(i as u16));
            put16(seg, 10, 0);
            let c = checksum(&seg[..l.ip_hlen], 0);
            put16(seg, 10, c);
        } else {
            put16(seg, 4, (len - IPV6_HEADER) as u16);
        }
        if l.tcp {
            put32(seg, th + 4, seq.wrapping_add((i * l.gso_size) as u32));
            let mut flags = seg[th + 13];
            if i != last {
                flags &= !(TCP_FIN | TCP_PSH);
            }
            if i != 0 {
                flags &= !TCP_CWR;
            }
            seg[th + 13] = flags;
        } else {
            put16(seg, th + 4, (len - th) as u16);
        }
        put16(seg, csum_field, 0);
        // layout() checked the version and header lengths, so this cannot fail.
        let ph = pseudo_header_sum(seg, proto, len - th).unwrap_or(0);
        let mut c = checksum(&seg[th..], ph);
        if c == 0 && !l.tcp {
            c = 0xffff;
        }
        put16(seg, csum_field, c);
        sizes[i] = len;
    }
    Ok(l.segments)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offload::testutil::{record, records, reference_sum};
    use crate::offload::virtio::F_NEEDS_CSUM;

    fn recs() -> Vec<(String, Vec<u8>)> {
        records(include_str!("testdata/packets.hex"))
    }

    /// What the kernel hands over: the super-packet with a partial (pseudo-header) checksum.
    fn as_from_kernel(pkt: &[u8], tcp: bool) -> Vec<u8> {
        let mut p = pkt.to_vec();
        let th = if p[0] >> 4 == 4 {
            (p[0] & 15) as usize * 4
        } else {
            40
        };
        let field = th + if tcp { 16 } else { 6 };
        let proto = if tcp { 6 } else { 17 };
        let ph = pseudo_header_sum(&p, proto, p.len() - th).unwrap();
        p[field..field + 2].copy_from_slice(&ph.to_be_bytes());
        p
    }

    fn hdr(gso: GsoType, gso_size: u16, th: u16, tcp: bool) -> VirtioNetHdr {
        VirtioNetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: gso.to_raw(),
            hdr_len: th + if tcp { 20 } else { 8 },
            gso_size,
            csum_start: th,
            csum_offset: if tcp { 16 } else { 6 },
        }
    }

    fn check_split(name: &str, h: VirtioNetHdr, tcp: bool, n: usize) {
        let r = recs();
        let sup = as_from_kernel(record(&r, &format!("{name}_super")), tcp);
        let mut out = vec![vec![0u8; 2000]; 8];
        let mut sizes = [0usize; 8];
        assert_eq!(segment_count(&h, &sup).unwrap(), n);
        let got = split(&h, &sup, &mut out, &mut sizes, 16).unwrap();
        assert_eq!(got, n);
        for i in 0..n {
            let want = record(&r, &format!("{name}_seg{i}"));
            let seg = &out[i][16..16 + sizes[i]];
            assert_eq!(seg, want, "{name} segment {i} differs from scapy's");
        }
    }

    #[test]
    fn tso4_matches_scapy_segments() {
        // 20-byte IPv4 header, 32-byte TCP header (timestamps); hdr_len as the kernel may
        // report it for a forwarded packet (larger than the headers) is accepted.
        let mut h = hdr(GsoType::TcpV4, 1000, 20, true);
        h.hdr_len = 200;
        check_split("tso4", h, true, 4);
    }

    #[test]
    fn tso6_matches_scapy_segments_with_seq_wrap() {
        check_split("tso6", hdr(GsoType::TcpV6, 1200, 40, true), true, 3);
    }

    #[test]
    fn uso_matches_scapy_datagrams() {
        check_split("uso4", hdr(GsoType::UdpL4, 1000, 20, false), false, 3);
        check_split("uso6", hdr(GsoType::UdpL4, 1200, 40, false), false, 3);
    }

    #[test]
    fn needs_csum_without_gso_completes_checksum() {
        let r = recs();
        for (name, tcp, th) in [
            ("tcp4_opts", true, 20u16),
            ("tcp6", true, 40),
            ("udp4", false, 20),
            ("udp6", false, 40),
        ] {
            let want = record(&r, name);
            let partial = as_from_kernel(want, tcp);
            assert_ne!(partial, want);
            let mut h = hdr(GsoType::None, 0, th, tcp);
            h.hdr_len = 0;
            let mut p = partial.clone();
            complete_checksum(&h, &mut p).unwrap();
            assert_eq!(p, want, "{name}: completed checksum differs from scapy's");
            // Through split() too (copy + complete).
            let mut out = [vec![0u8; 1600]];
            let mut sizes = [0];
            assert_eq!(split(&h, &partial, &mut out, &mut sizes, 0).unwrap(), 1);
            assert_eq!(&out[0][..sizes[0]], want);
            // And the scapy packet verifies with the independent reference sum.
            let ph = pseudo_header_sum(want, if tcp { 6 } else { 17 }, want.len() - th as usize);
            assert_eq!(reference_sum(&want[th as usize..], ph.unwrap()), 0xffff);
        }
        // Without NEEDS_CSUM the packet is left alone.
        let mut p = vec![1, 2, 3];
        complete_checksum(&VirtioNetHdr::NONE, &mut p).unwrap();
        assert_eq!(p, [1, 2, 3]);
    }

    #[test]
    fn last_segment_exactly_full_and_single_segment() {
        let r = recs();
        let sup = as_from_kernel(record(&r, "tso4_super"), true);
        let payload = sup.len() - 52;
        let mut out = vec![vec![0u8; 4000]; 2];
        let mut sizes = [0; 2];
        // gso_size equal to the payload: one segment that keeps FIN, PSH and CWR.
        let h = hdr(GsoType::TcpV4, payload as u16, 20, true);
        assert_eq!(split(&h, &sup, &mut out, &mut sizes, 0).unwrap(), 1);
        assert_eq!(out[0][33], sup[33]);
        // 3500 = 2 × 1750: no short last segment.
        let h = hdr(GsoType::TcpV4, 1750, 20, true);
        assert_eq!(split(&h, &sup, &mut out, &mut sizes, 0).unwrap(), 2);
        assert_eq!(sizes, [52 + 1750, 52 + 1750]);
        for s in 0..2 {
            let seg = &out[s][..sizes[s]];
            let ph = pseudo_header_sum(seg, 6, seg.len() - 20).unwrap();
            assert_eq!(reference_sum(&seg[20..], ph), 0xffff);
            assert_eq!(reference_sum(&seg[..20], 0), 0xffff);
        }
    }

    #[test]
    fn rejects_malformed_headers() {
        let r = recs();
        let sup = as_from_kernel(record(&r, "tso4_super"), true);
        let mut out = vec![vec![0u8; 2000]; 8];
        let mut sizes = [0; 8];
        let ok = hdr(GsoType::TcpV4, 1000, 20, true);
        let mut run = |h: VirtioNetHdr, p: &[u8]| split(&h, p, &mut out, &mut sizes, 0);
        assert!(run(ok, &sup).is_ok());
        let bad = |f: &dyn Fn(&mut VirtioNetHdr)| {
            let mut h = ok;
            f(&mut h);
            h
        };
        let cases: Vec<(VirtioNetHdr, &str)> = vec![
            (bad(&|h| h.gso_size = 0), "gso_size 0"),
            (bad(&|h| h.hdr_len = 60000), "hdr_len"),
            (bad(&|h| h.csum_start = 60000), "csum_start beyond"),
            (bad(&|h| h.csum_start = 24), "csum_start is not"),
            (bad(&|h| h.csum_offset = 6), "csum_offset"),
            (bad(&|h| h.gso_type = GsoType::TcpV6.to_raw()), "IP version"),
            (bad(&|h| h.gso_type = GsoType::UdpL4.to_raw()), "protocol"),
            (bad(&|h| h.gso_type = 3), "UFO"),
            (bad(&|h| h.gso_type = 9), "unknown"),
            (bad(&|h| h.gso_size = 65500), "65535"),
        ];
        for (h, why) in cases {
            let e = run(h, &sup).unwrap_err();
            assert!(e.to_string().contains(why), "{why}: got {e}");
        }
        // Truncated packets.
        assert!(run(ok, &sup[..30]).is_err());
        assert!(run(ok, &sup[..52])
            .unwrap_err()
            .to_string()
            .contains("without payload"));
        let mut bad_doff = sup.clone();
        bad_doff[32] = 0x40; // data offset 16 < 20
        assert!(run(ok, &bad_doff)
            .unwrap_err()
            .to_string()
            .contains("data offset"));
        assert!(run(ok, &[]).is_err());
        // Too few or too small output buffers.
        let mut few = vec![vec![0u8; 2000]; 3];
        assert_eq!(
            split(&ok, &sup, &mut few, &mut sizes, 0),
            Err(OffloadError::NoRoom {
                needed_segments: 4,
                segment_len: 1052
            })
        );
        let mut small = vec![vec![0u8; 1051]; 8];
        assert!(split(&ok, &sup, &mut small, &mut sizes, 0).is_err());
        assert!(split(&ok, &sup, &mut out, &mut sizes, 1000).is_err());
        // complete_checksum range check.
        let mut p = vec![0u8; 30];
        let h = bad(&|h| h.csum_start = 20);
        assert!(complete_checksum(&h, &mut p).is_err());
    }
}
