//! Traffic selectors (RFC 7296 §3.13, RFC 4301 §4.4.1): after decapsulation the inner
//! packet must fall inside what the SA was negotiated for — source in one of the remote
//! selectors, destination in one of the local ones (RFC 4301 §5.2 step 4). Without this
//! check a peer could inject packets for any address of the tenant.
//!
//! IKEv2 negotiates selectors as address *ranges* ([`SelectorRange`], RFC 7296 §3.13.1); an
//! SA checks inner packets against the prefixes covering them ([`TrafficSelector`]), and
//! outbound policies are matched and ranked on the ranges themselves.

use std::net::IpAddr;
use std::ops::RangeInclusive;

use crate::ip::{IpInfo, Prefix, IPV4_MIN_HEADER, IPV6_HEADER};

/// IANA protocol numbers that carry 16-bit source/destination ports first.
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const PROTO_SCTP: u8 = 132;

/// One traffic selector: an address prefix, optionally narrowed to an IP protocol and a
/// port range (ports apply to TCP, UDP and SCTP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficSelector {
    pub prefix: Prefix,
    pub protocol: Option<u8>,
    pub ports: Option<RangeInclusive<u16>>,
}

impl TrafficSelector {
    /// A selector covering every protocol and port of `prefix`.
    pub fn prefix(prefix: Prefix) -> TrafficSelector {
        TrafficSelector {
            prefix,
            protocol: None,
            ports: None,
        }
    }

    fn matches(&self, addr: std::net::IpAddr, proto: u8, port: Option<u16>) -> bool {
        if !self.prefix.contains(addr) {
            return false;
        }
        if self.protocol.is_some_and(|p| p != proto) {
            return false;
        }
        match &self.ports {
            None => true,
            // A port-restricted selector cannot admit a packet whose ports are not visible
            // (non-first fragment, extension headers).
            Some(r) => port.is_some_and(|p| r.contains(&p)),
        }
    }
}

/// RFC 4301 §5.2: source in `remote`, destination in `local`.
pub fn inbound_allowed(
    local: &[TrafficSelector],
    remote: &[TrafficSelector],
    pkt: &[u8],
    info: &IpInfo,
) -> bool {
    let ports = ports(pkt, info);
    let (sport, dport) = match ports {
        Some((s, d)) => (Some(s), Some(d)),
        None => (None, None),
    };
    remote
        .iter()
        .any(|ts| ts.matches(info.src, info.proto, sport))
        && local
            .iter()
            .any(|ts| ts.matches(info.dst, info.proto, dport))
}

/// Source and destination ports of a TCP/UDP/SCTP packet whose transport header follows
/// the fixed IP header directly and is not in a non-first fragment.
fn ports(pkt: &[u8], info: &IpInfo) -> Option<(u16, u16)> {
    if !matches!(info.proto, PROTO_TCP | PROTO_UDP | PROTO_SCTP) {
        return None;
    }
    let l4 = if info.src.is_ipv4() {
        // RFC 791 §3.1: fragment offset in the low 13 bits of octets 6..8.
        let frag_off = u16::from_be_bytes([*pkt.get(6)?, *pkt.get(7)?]) & 0x1fff;
        if frag_off != 0 {
            return None;
        }
        let ihl = usize::from(pkt.first()? & 0x0f) * 4;
        ihl.max(IPV4_MIN_HEADER)
    } else {
        IPV6_HEADER
    };
    let h = pkt.get(l4..l4 + 4)?;
    if l4 + 4 > info.len {
        return None;
    }
    Some((
        u16::from_be_bytes([h[0], h[1]]),
        u16::from_be_bytes([h[2], h[3]]),
    ))
}

/// A traffic selector as IKEv2 carries it (RFC 7296 §3.13.1): an address range, an IP
/// protocol (0: any) and a port range (`0..=65535`: any).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelectorRange {
    pub from: IpAddr,
    pub to: IpAddr,
    pub protocol: u8,
    pub from_port: u16,
    pub to_port: u16,
}

impl SelectorRange {
    fn any_port(&self) -> bool {
        self.from_port == 0 && self.to_port == u16::MAX
    }

    /// Whether `addr` lies in the address range (the families must agree).
    pub fn contains(&self, addr: IpAddr) -> bool {
        match (addr, self.from, self.to) {
            (IpAddr::V4(a), IpAddr::V4(f), IpAddr::V4(t)) => {
                (u32::from(f)..=u32::from(t)).contains(&u32::from(a))
            }
            (IpAddr::V6(a), IpAddr::V6(f), IpAddr::V6(t)) => {
                (u128::from(f)..=u128::from(t)).contains(&u128::from(a))
            }
            _ => false,
        }
    }

    /// Whether a packet's address, protocol and port (`None`: not visible) fall inside. A
    /// port-restricted selector admits no packet whose port is not visible.
    pub fn matches(&self, addr: IpAddr, proto: u8, port: Option<u16>) -> bool {
        if !self.contains(addr) {
            return false;
        }
        if self.protocol != 0 && self.protocol != proto {
            return false;
        }
        self.any_port() || port.is_some_and(|p| (self.from_port..=self.to_port).contains(&p))
    }

    /// `to - from`: the number of addresses minus one (`u128::MAX` for mixed families), so
    /// smaller is more specific.
    pub fn size(&self) -> u128 {
        match (self.from, self.to) {
            (IpAddr::V4(f), IpAddr::V4(t)) => u128::from(u32::from(t).saturating_sub(u32::from(f))),
            (IpAddr::V6(f), IpAddr::V6(t)) => u128::from(t).saturating_sub(u128::from(f)),
            _ => u128::MAX,
        }
    }

    /// How specific the address range is, as a prefix length (the largest prefix that fits in
    /// it), so ranges compare with longest-prefix routes.
    pub fn prefix_len(&self) -> u8 {
        let width: u32 = if self.from.is_ipv4() { 32 } else { 128 };
        let host_bits = 128 - self.size().leading_zeros();
        width.saturating_sub(host_bits) as u8
    }

    /// The prefixes covering the address range, at most 64 (ranges from IKE are usually one
    /// prefix).
    pub fn prefixes(&self) -> Vec<Prefix> {
        range_to_prefixes(self.from, self.to)
    }

    /// The range as the per-prefix selectors an SA checks inner packets against.
    pub fn selectors(&self) -> Vec<TrafficSelector> {
        self.prefixes()
            .into_iter()
            .map(|prefix| TrafficSelector {
                prefix,
                protocol: (self.protocol != 0).then_some(self.protocol),
                ports: (!self.any_port()).then_some(self.from_port..=self.to_port),
            })
            .collect()
    }
}

fn range_to_prefixes(from: IpAddr, to: IpAddr) -> Vec<Prefix> {
    let mut out = Vec::new();
    match (from, to) {
        (IpAddr::V4(f), IpAddr::V4(t)) => {
            let (mut lo, hi) = (u64::from(u32::from(f)), u64::from(u32::from(t)));
            while lo <= hi && out.len() < 64 {
                let mut len = 32u32;
                while len > 0 {
                    let size = 1u64 << (32 - (len - 1));
                    if lo % size != 0 || lo + size - 1 > hi {
                        break;
                    }
                    len -= 1;
                }
                out.extend(Prefix::new(IpAddr::V4((lo as u32).into()), len as u8));
                lo += 1u64 << (32 - len);
            }
        }
        (IpAddr::V6(f), IpAddr::V6(t)) => {
            let (mut lo, hi) = (u128::from(f), u128::from(t));
            loop {
                let mut len = 128u32;
                while len > 0 {
                    let bits = 128 - (len - 1);
                    if bits >= 128 {
                        if lo == 0 && hi == u128::MAX {
                            len -= 1;
                        }
                        break;
                    }
                    let size = 1u128 << bits;
                    if lo % size != 0 || lo.checked_add(size - 1).is_none_or(|e| e > hi) {
                        break;
                    }
                    len -= 1;
                }
                out.extend(Prefix::new(IpAddr::V6(lo.into()), len as u8));
                let step = if len == 0 {
                    return out;
                } else {
                    1u128 << (128 - len)
                };
                match lo.checked_add(step) {
                    Some(n) if n <= hi && out.len() < 64 => lo = n,
                    _ => break,
                }
            }
        }
        _ => {}
    }
    out
}

/// The destination port of a TCP/UDP/SCTP packet, where visible (see [`inbound_allowed`]),
/// for matching port-restricted outbound policies.
pub fn destination_port(pkt: &[u8], info: &IpInfo) -> Option<u16> {
    ports(pkt, info).map(|(_, d)| d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ip::parse;

    fn v4_udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        let mut p = vec![0u8; 28];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&28u16.to_be_bytes());
        p[9] = PROTO_UDP;
        p[12..16].copy_from_slice(&src);
        p[16..20].copy_from_slice(&dst);
        p[20..22].copy_from_slice(&sport.to_be_bytes());
        p[22..24].copy_from_slice(&dport.to_be_bytes());
        p
    }

    fn ts(s: &str) -> TrafficSelector {
        TrafficSelector::prefix(s.parse().unwrap())
    }

    #[test]
    fn prefixes() {
        let local = [ts("10.1.0.0/16")];
        let remote = [ts("192.168.5.0/24"), ts("192.168.9.9/32")];
        let ok = |src, dst| {
            let p = v4_udp(src, dst, 1, 2);
            inbound_allowed(&local, &remote, &p, &parse(&p).unwrap())
        };
        assert!(ok([192, 168, 5, 7], [10, 1, 2, 3]));
        assert!(ok([192, 168, 9, 9], [10, 1, 2, 3]));
        assert!(
            !ok([192, 168, 9, 8], [10, 1, 2, 3]),
            "source outside remote TS"
        );
        assert!(
            !ok([192, 168, 5, 7], [10, 2, 2, 3]),
            "destination outside local TS"
        );
        assert!(!ok([10, 1, 2, 3], [192, 168, 5, 7]), "reversed direction");
    }

    #[test]
    fn protocol_and_ports() {
        let mut local = ts("10.0.0.0/8");
        local.protocol = Some(PROTO_UDP);
        local.ports = Some(500..=600);
        let remote = [ts("0.0.0.0/0")];
        let check = |p: &[u8]| inbound_allowed(&[local.clone()], &remote, p, &parse(p).unwrap());
        assert!(check(&v4_udp([1, 2, 3, 4], [10, 0, 0, 1], 9, 500)));
        assert!(!check(&v4_udp([1, 2, 3, 4], [10, 0, 0, 1], 9, 601)));
        let mut tcp = v4_udp([1, 2, 3, 4], [10, 0, 0, 1], 9, 550);
        tcp[9] = PROTO_TCP;
        assert!(!check(&tcp));
        let mut frag = v4_udp([1, 2, 3, 4], [10, 0, 0, 1], 9, 550);
        frag[7] = 1;
        assert!(!check(&frag), "non-first fragment has no visible ports");
    }

    fn range(a: &str, b: &str) -> SelectorRange {
        SelectorRange {
            from: a.parse().unwrap(),
            to: b.parse().unwrap(),
            protocol: 0,
            from_port: 0,
            to_port: 65535,
        }
    }

    #[test]
    fn ranges_become_prefixes() {
        let r = |a: &str, b: &str| {
            range(a, b)
                .prefixes()
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(r("10.1.0.0", "10.1.0.255"), ["10.1.0.0/24"]);
        assert_eq!(r("0.0.0.0", "255.255.255.255"), ["0.0.0.0/0"]);
        assert_eq!(r("10.0.0.1", "10.0.0.1"), ["10.0.0.1/32"]);
        assert_eq!(r("10.0.0.0", "10.0.2.255"), ["10.0.0.0/23", "10.0.2.0/24"]);
        assert_eq!(r("fd00::", "fd00::ffff:ffff:ffff:ffff"), ["fd00::/64"]);
        assert_eq!(r("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), ["::/0"]);
    }

    #[test]
    fn ranges_compare_as_prefix_lengths() {
        let len = |a: &str, b: &str| range(a, b).prefix_len();
        assert_eq!(len("10.1.0.0", "10.1.255.255"), 16);
        assert_eq!(len("10.1.2.3", "10.1.2.3"), 32);
        assert_eq!(len("0.0.0.0", "255.255.255.255"), 0);
        assert_eq!(len("fd00::", "fd00::ffff:ffff:ffff:ffff"), 64);
        assert_eq!(len("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), 0);
    }

    #[test]
    fn range_matching() {
        let ts = range("10.1.0.0", "10.1.0.255");
        let a = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(ts.matches(a("10.1.0.7"), 6, Some(80)));
        assert!(!ts.matches(a("10.1.1.7"), 6, Some(80)));
        let tcp80 = SelectorRange {
            protocol: 6,
            from_port: 80,
            to_port: 80,
            ..ts
        };
        assert!(tcp80.matches(a("10.1.0.7"), 6, Some(80)));
        assert!(!tcp80.matches(a("10.1.0.7"), 17, Some(80)));
        assert!(!tcp80.matches(a("10.1.0.7"), 6, None));
        let sel = tcp80.selectors();
        assert_eq!(sel.len(), 1);
        assert_eq!(
            (sel[0].protocol, sel[0].ports.clone()),
            (Some(6), Some(80..=80))
        );
        assert_eq!(
            ts.selectors()[0],
            TrafficSelector::prefix("10.1.0.0/24".parse().unwrap())
        );
    }

    #[test]
    fn families_do_not_mix() {
        let local = [ts("::/0")];
        let remote = [ts("::/0")];
        let p = v4_udp([1, 1, 1, 1], [2, 2, 2, 2], 1, 2);
        assert!(!inbound_allowed(&local, &remote, &p, &parse(&p).unwrap()));
    }
}
