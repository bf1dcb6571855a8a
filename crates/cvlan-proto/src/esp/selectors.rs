//! Traffic selectors (RFC 7296 §3.13, RFC 4301 §4.4.1): after decapsulation the inner
//! packet must fall inside what the SA was negotiated for — source in one of the remote
//! selectors, destination in one of the local ones (RFC 4301 §5.2 step 4). Without this
//! check a peer could inject packets for any address of the tenant.

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

    #[test]
    fn families_do_not_mix() {
        let local = [ts("::/0")];
        let remote = [ts("::/0")];
        let p = v4_udp([1, 1, 1, 1], [2, 2, 2, 2], 1, 2);
        assert!(!inbound_allowed(&local, &remote, &p, &parse(&p).unwrap()));
    }
}
