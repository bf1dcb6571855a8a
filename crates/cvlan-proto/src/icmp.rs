//! ICMP errors a router returns through the tunnel a packet came from: "fragmentation needed"
//! (IPv4, RFC 792 and RFC 1191 §4) / "packet too big" (ICMPv6, RFC 4443 §3.2), so path MTU
//! discovery works when the tunnel a packet would leave on carries less than the one it came in
//! on, and "destination unreachable" when nothing routes it.
//!
//! The error's source is the original packet's destination: the sender's tunnel peer accepts an
//! inner source only from the prefixes behind us (WireGuard allowed IPs, IPsec selectors), and
//! the sender's stack matches the error by the quoted header, not by who sent it.

use crate::ip::{IPV4_MIN_HEADER, IPV6_HEADER};
use std::net::{Ipv4Addr, Ipv6Addr};

/// RFC 792: Destination Unreachable, code 4 "fragmentation needed and DF set".
pub const ICMPV4_DEST_UNREACH: u8 = 3;
pub const ICMPV4_FRAG_NEEDED: u8 = 4;
/// RFC 792: Destination Unreachable, code 0 "net unreachable".
pub const ICMPV4_NET_UNREACH: u8 = 0;
/// RFC 4443 §3.2.
pub const ICMPV6_PACKET_TOO_BIG: u8 = 2;
/// RFC 4443 §3.1: Destination Unreachable, code 0 "no route to destination".
pub const ICMPV6_DEST_UNREACH: u8 = 1;
pub const ICMPV6_NO_ROUTE: u8 = 0;
const PROTO_ICMP: u8 = 1;
const PROTO_ICMPV6: u8 = 58;
/// RFC 1812 §4.3.2.3: an IPv4 error quotes as much of the original as fits in 576 bytes.
const V4_MAX_ERROR: usize = 576;
/// RFC 4443 §2.4 (c): an ICMPv6 error never exceeds the minimum IPv6 MTU.
const V6_MAX_ERROR: usize = 1280;
/// RFC 8200 §5: the minimum IPv6 link MTU, the least a "packet too big" may announce.
const V6_MIN_MTU: u32 = 1280;
const ICMP_HEADER: usize = 8;
/// Hop limit of the errors we originate.
const TTL: u8 = 64;

/// RFC 1071 one's-complement sum, folded, not inverted.
fn sum(data: &[u8], mut acc: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc
}

fn checksum(data: &[u8], initial: u32) -> [u8; 2] {
    (!(sum(data, initial) as u16)).to_be_bytes()
}

/// Whether an ICMP(v6) message of this type is itself an error: no error is sent about one
/// (RFC 1122 §3.2.2, RFC 4443 §2.4 (e)).
fn is_icmp_error(proto: u8, icmp_type: u8) -> bool {
    match proto {
        PROTO_ICMP => matches!(icmp_type, 3 | 4 | 5 | 11 | 12),
        PROTO_ICMPV6 => icmp_type < 128,
        _ => false,
    }
}

/// Writes into `out` the error telling the sender of `pkt` (an IP packet longer than `mtu`) to
/// send at most `mtu` bytes, and returns its length. `None` when no error is due: an IPv4 packet
/// without DF (it may be fragmented), a non-initial fragment, an ICMP error, a packet that does
/// not parse, or `out` too small.
pub fn too_big(pkt: &[u8], mtu: u16, out: &mut [u8]) -> Option<usize> {
    match pkt.first()? >> 4 {
        4 => {
            let df = pkt.len() >= IPV4_MIN_HEADER && pkt[6] & 0x40 != 0;
            let [hi, lo] = mtu.to_be_bytes();
            df.then(|| {
                error_v4(
                    pkt,
                    ICMPV4_DEST_UNREACH,
                    ICMPV4_FRAG_NEEDED,
                    [0, 0, hi, lo],
                    out,
                )
            })?
        }
        6 => error_v6(
            pkt,
            ICMPV6_PACKET_TOO_BIG,
            0,
            u32::from(mtu).max(V6_MIN_MTU).to_be_bytes(),
            out,
        ),
        _ => None,
    }
}

/// Writes into `out` a "destination unreachable: no route" error for the sender of `pkt` (RFC
/// 792 code 0, network unreachable; RFC 4443 §3.1 code 0, no route to destination) and returns
/// its length. `None` where RFC 1812 §4.3.2.7 / RFC 4443 §2.4 (e) forbid one: about an ICMP
/// error, a non-initial fragment, a multicast or broadcast destination or a source that is not
/// a unicast host, or when `pkt` does not parse or `out` is too small.
pub fn unreachable(pkt: &[u8], out: &mut [u8]) -> Option<usize> {
    match pkt.first()? >> 4 {
        4 => error_v4(pkt, ICMPV4_DEST_UNREACH, ICMPV4_NET_UNREACH, [0; 4], out),
        6 => error_v6(pkt, ICMPV6_DEST_UNREACH, ICMPV6_NO_ROUTE, [0; 4], out),
        _ => None,
    }
}

/// An ICMPv4 error of `icmp_type`/`code` (with `rest`, the header's last 4 bytes) about `pkt`.
fn error_v4(pkt: &[u8], icmp_type: u8, code: u8, rest4: [u8; 4], out: &mut [u8]) -> Option<usize> {
    if pkt.len() < IPV4_MIN_HEADER {
        return None;
    }
    let ihl = usize::from(pkt[0] & 0x0f) * 4;
    let offset = u16::from_be_bytes([pkt[6], pkt[7]]) & 0x1fff;
    if ihl < IPV4_MIN_HEADER || pkt.len() < ihl || offset != 0 {
        return None;
    }
    if pkt[9] == PROTO_ICMP && pkt.len() > ihl && is_icmp_error(PROTO_ICMP, pkt[ihl]) {
        return None;
    }
    let (src, dst) = (
        Ipv4Addr::new(pkt[12], pkt[13], pkt[14], pkt[15]),
        Ipv4Addr::new(pkt[16], pkt[17], pkt[18], pkt[19]),
    );
    if dst.is_multicast()
        || dst.is_broadcast()
        || src.is_multicast()
        || src.is_broadcast()
        || src.is_unspecified()
    {
        return None;
    }
    let quoted = pkt.len().min(V4_MAX_ERROR - IPV4_MIN_HEADER - ICMP_HEADER);
    let total = IPV4_MIN_HEADER + ICMP_HEADER + quoted;
    let out = out.get_mut(..total)?;
    let (ip, rest) = out.split_at_mut(IPV4_MIN_HEADER);
    ip.copy_from_slice(&[0; IPV4_MIN_HEADER]);
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    ip[8] = TTL;
    ip[9] = PROTO_ICMP;
    ip[12..16].copy_from_slice(&pkt[16..20]);
    ip[16..20].copy_from_slice(&pkt[12..16]);
    let c = checksum(ip, 0);
    ip[10..12].copy_from_slice(&c);
    rest[..4].copy_from_slice(&[icmp_type, code, 0, 0]);
    rest[4..8].copy_from_slice(&rest4);
    rest[ICMP_HEADER..].copy_from_slice(&pkt[..quoted]);
    let c = checksum(rest, 0);
    rest[2..4].copy_from_slice(&c);
    Some(total)
}

/// An ICMPv6 error of `icmp_type`/`code` (with `rest`, the header's last 4 bytes) about `pkt`.
fn error_v6(pkt: &[u8], icmp_type: u8, code: u8, rest4: [u8; 4], out: &mut [u8]) -> Option<usize> {
    if pkt.len() < IPV6_HEADER {
        return None;
    }
    // Only the fixed header's next header is looked at: an error about an ICMPv6 error behind
    // extension headers is possible, and harmless (the sender drops it).
    if pkt[6] == PROTO_ICMPV6
        && pkt.len() > IPV6_HEADER
        && is_icmp_error(PROTO_ICMPV6, pkt[IPV6_HEADER])
    {
        return None;
    }
    let src = Ipv6Addr::from(<[u8; 16]>::try_from(&pkt[8..24]).ok()?);
    let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&pkt[24..40]).ok()?);
    // RFC 4443 §2.4 (e): "packet too big" is the one error also sent about multicast.
    if (dst.is_multicast() && icmp_type != ICMPV6_PACKET_TOO_BIG)
        || src.is_multicast()
        || src.is_unspecified()
    {
        return None;
    }
    let quoted = pkt.len().min(V6_MAX_ERROR - IPV6_HEADER - ICMP_HEADER);
    let payload = ICMP_HEADER + quoted;
    let total = IPV6_HEADER + payload;
    let out = out.get_mut(..total)?;
    let (ip, rest) = out.split_at_mut(IPV6_HEADER);
    ip.copy_from_slice(&[0; IPV6_HEADER]);
    ip[0] = 0x60;
    ip[4..6].copy_from_slice(&(payload as u16).to_be_bytes());
    ip[6] = PROTO_ICMPV6;
    ip[7] = TTL;
    ip[8..24].copy_from_slice(&pkt[24..40]);
    ip[24..40].copy_from_slice(&pkt[8..24]);
    rest[..4].copy_from_slice(&[icmp_type, code, 0, 0]);
    rest[4..8].copy_from_slice(&rest4);
    rest[ICMP_HEADER..].copy_from_slice(&pkt[..quoted]);
    // RFC 4443 §2.3: the checksum covers the RFC 8200 §8.1 pseudo-header.
    let mut pseudo = sum(&ip[8..40], 0);
    pseudo = sum(&(payload as u32).to_be_bytes(), pseudo);
    pseudo = sum(&[0, 0, 0, PROTO_ICMPV6], pseudo);
    let c = checksum(rest, pseudo);
    rest[2..4].copy_from_slice(&c);
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ip;

    fn v4(df: bool, proto: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; 20];
        p[0] = 0x45;
        let len = (20 + payload.len()) as u16;
        p[2..4].copy_from_slice(&len.to_be_bytes());
        if df {
            p[6] = 0x40;
        }
        p[8] = 64;
        p[9] = proto;
        p[12..16].copy_from_slice(&[10, 20, 0, 2]);
        p[16..20].copy_from_slice(&[10, 10, 0, 1]);
        let c = checksum(&p, 0);
        p[10..12].copy_from_slice(&c);
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn ipv4_frag_needed_reverses_addresses_and_checks_out() {
        let orig = v4(true, 6, &[0xab; 1400]);
        let mut out = [0u8; 2048];
        let n = too_big(&orig, 1380, &mut out).expect("DF set: an error is due");
        let e = &out[..n];
        assert_eq!(n, 576, "quotes up to the RFC 1812 limit");
        let info = ip::parse(e).unwrap();
        assert_eq!(
            info.src.to_string(),
            "10.10.0.1",
            "from the original destination"
        );
        assert_eq!(info.dst.to_string(), "10.20.0.2", "to the original source");
        assert_eq!(info.proto, 1);
        assert_eq!(sum(&e[..20], 0), 0xffff, "IPv4 header checksum");
        assert_eq!(sum(&e[20..], 0), 0xffff, "ICMP checksum");
        assert_eq!(&e[20..22], &[3, 4]);
        assert_eq!(
            u16::from_be_bytes([e[26], e[27]]),
            1380,
            "next-hop MTU (RFC 1191)"
        );
        assert_eq!(&e[28..48], &orig[..20], "the original header is quoted");
    }

    #[test]
    fn no_error_without_df_for_errors_or_fragments() {
        let mut out = [0u8; 2048];
        assert_eq!(
            too_big(&v4(false, 6, &[0; 1400]), 1380, &mut out),
            None,
            "may be fragmented"
        );
        assert_eq!(
            too_big(&v4(true, 1, &[3, 4, 0, 0, 0, 0, 5, 0]), 1380, &mut out),
            None,
            "an ICMP error"
        );
        assert!(
            too_big(&v4(true, 1, &[8, 0, 0, 0, 0, 0, 0, 0]), 1380, &mut out).is_some(),
            "an echo request is fine"
        );
        let mut later = v4(true, 6, &[0; 100]);
        later[7] = 1; // fragment offset 8
        assert_eq!(
            too_big(&later, 1380, &mut out),
            None,
            "not the first fragment"
        );
        assert_eq!(too_big(&[0x45, 0, 0], 1380, &mut out), None, "truncated");
        assert_eq!(
            too_big(&v4(true, 6, &[0; 1400]), 1380, &mut [0u8; 100]),
            None,
            "no room"
        );
    }

    #[test]
    fn ipv6_packet_too_big() {
        let mut orig = vec![0u8; 40];
        orig[0] = 0x60;
        orig[4..6].copy_from_slice(&1400u16.to_be_bytes());
        orig[6] = 17;
        orig[7] = 64;
        orig[8..24].copy_from_slice(&"fd00::2".parse::<std::net::Ipv6Addr>().unwrap().octets());
        orig[24..40].copy_from_slice(&"fd10::1".parse::<std::net::Ipv6Addr>().unwrap().octets());
        orig.extend_from_slice(&[0x5a; 1400]);
        let mut out = [0u8; 2048];
        let n = too_big(&orig, 1300, &mut out).expect("IPv6 routers never fragment");
        let e = &out[..n];
        assert_eq!(n, 1280, "never beyond the minimum MTU");
        let info = ip::parse(e).unwrap();
        assert_eq!(info.src.to_string(), "fd10::1");
        assert_eq!(info.dst.to_string(), "fd00::2");
        assert_eq!((e[40], e[41]), (2, 0));
        assert_eq!(u32::from_be_bytes([e[44], e[45], e[46], e[47]]), 1300);
        let mut pseudo = sum(&e[8..40], 0);
        pseudo = sum(&((n - 40) as u32).to_be_bytes(), pseudo);
        pseudo = sum(&[0, 0, 0, 58], pseudo);
        assert_eq!(
            sum(&e[40..], pseudo),
            0xffff,
            "ICMPv6 checksum over the pseudo-header"
        );
        // an MTU below the IPv6 minimum is announced as the minimum
        let n = too_big(&orig, 1200, &mut out).unwrap();
        assert_eq!(
            u32::from_be_bytes([out[44], out[45], out[46], out[47]]),
            1280
        );
        assert!(n <= 1280);
    }

    #[test]
    fn unreachable_for_unicast_only() {
        let mut out = [0u8; 2048];
        let orig = v4(false, 6, &[0; 100]);
        let n = unreachable(&orig, &mut out).expect("no DF needed for unreachable");
        let e = &out[..n];
        assert_eq!((e[20], e[21]), (3, 0), "net unreachable");
        assert_eq!(sum(&e[20..], 0), 0xffff);
        assert_eq!(ip::parse(e).unwrap().dst.to_string(), "10.20.0.2");
        let mut bcast = orig.clone();
        bcast[16..20].copy_from_slice(&[255, 255, 255, 255]);
        assert_eq!(
            unreachable(&bcast, &mut out),
            None,
            "never about a broadcast"
        );
        let mut mcast = orig.clone();
        mcast[16..20].copy_from_slice(&[224, 0, 0, 5]);
        assert_eq!(
            unreachable(&mcast, &mut out),
            None,
            "never about a multicast"
        );
        assert_eq!(
            unreachable(&v4(false, 1, &[11, 0, 0, 0, 0, 0, 0, 0]), &mut out),
            None,
            "never about an ICMP error"
        );
    }
}
