//! Minimal views of IPv4 (RFC 791) and IPv6 (RFC 8200) headers: just what routing,
//! source checks and tunnel framing need. Parsing never panics on short or garbage input.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// RFC 791 §3.1: the fixed part of the IPv4 header.
pub const IPV4_MIN_HEADER: usize = 20;
/// RFC 8200 §3: the fixed IPv6 header.
pub const IPV6_HEADER: usize = 40;

/// Why a buffer is not a usable IP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IpError {
    #[error("empty packet")]
    Empty,
    #[error("IP version {0} is neither 4 nor 6")]
    BadVersion(u8),
    #[error("packet shorter than its IP header")]
    Truncated,
    #[error("IP total length does not match the buffer")]
    BadLength,
}

/// The addressing facts of one IP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpInfo {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// The packet's own idea of its length (IPv4 total length, IPv6 payload + 40).
    pub len: usize,
    /// Upper-layer protocol (IPv4 protocol / IPv6 next header of the fixed header).
    pub proto: u8,
}

/// Parses the header of `pkt`. `pkt` may be longer than the packet (padding after the
/// datagram, as in WireGuard), never shorter.
pub fn parse(pkt: &[u8]) -> Result<IpInfo, IpError> {
    let first = *pkt.first().ok_or(IpError::Empty)?;
    match first >> 4 {
        4 => {
            if pkt.len() < IPV4_MIN_HEADER {
                return Err(IpError::Truncated);
            }
            let ihl = usize::from(first & 0x0f) * 4;
            let len = usize::from(u16::from_be_bytes([pkt[2], pkt[3]]));
            if ihl < IPV4_MIN_HEADER || len < ihl || len > pkt.len() {
                return Err(IpError::BadLength);
            }
            let src = Ipv4Addr::new(pkt[12], pkt[13], pkt[14], pkt[15]);
            let dst = Ipv4Addr::new(pkt[16], pkt[17], pkt[18], pkt[19]);
            Ok(IpInfo {
                src: src.into(),
                dst: dst.into(),
                len,
                proto: pkt[9],
            })
        }
        6 => {
            if pkt.len() < IPV6_HEADER {
                return Err(IpError::Truncated);
            }
            let len = usize::from(u16::from_be_bytes([pkt[4], pkt[5]])) + IPV6_HEADER;
            if len > pkt.len() {
                return Err(IpError::BadLength);
            }
            let mut s = [0u8; 16];
            let mut d = [0u8; 16];
            s.copy_from_slice(&pkt[8..24]);
            d.copy_from_slice(&pkt[24..40]);
            Ok(IpInfo {
                src: Ipv6Addr::from(s).into(),
                dst: Ipv6Addr::from(d).into(),
                len,
                proto: pkt[6],
            })
        }
        v => Err(IpError::BadVersion(v)),
    }
}

/// A prefix (CIDR) with the host bits cleared on construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Prefix {
    addr: IpAddr,
    len: u8,
}

impl Prefix {
    /// Builds a prefix; `None` if `len` exceeds the address width.
    pub fn new(addr: IpAddr, len: u8) -> Option<Prefix> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if len > max {
            return None;
        }
        Some(Prefix {
            addr: mask(addr, len),
            len,
        })
    }
    pub fn addr(&self) -> IpAddr {
        self.addr
    }
    pub fn len(&self) -> u8 {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        false
    }
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.len) == self.addr
    }
}

impl std::str::FromStr for Prefix {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("{a:?} is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match l {
            Some(l) => l
                .parse::<u8>()
                .map_err(|_| format!("{l:?} is not a prefix length"))?,
            None => max,
        };
        Prefix::new(addr, len).ok_or_else(|| format!("prefix length {len} exceeds {max}"))
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

fn mask(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let m = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len))
            };
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & m))
        }
        IpAddr::V6(a) => {
            let m = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len))
            };
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & m))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(src: [u8; 4], dst: [u8; 4], total: u16) -> Vec<u8> {
        let mut p = vec![0u8; usize::from(total)];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p[9] = 1;
        p[12..16].copy_from_slice(&src);
        p[16..20].copy_from_slice(&dst);
        p
    }

    #[test]
    fn parses_ipv4() {
        let p = v4([10, 0, 0, 1], [10, 0, 0, 2], 28);
        let i = parse(&p).unwrap();
        assert_eq!(i.src, "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(i.dst, "10.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(i.len, 28);
        assert_eq!(i.proto, 1);
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(parse(&[]), Err(IpError::Empty));
        assert_eq!(parse(&[0x45; 10]), Err(IpError::Truncated));
        assert_eq!(parse(&[0x15; 40]), Err(IpError::BadVersion(1)));
        let mut p = v4([1, 1, 1, 1], [2, 2, 2, 2], 28);
        p[3] = 200;
        assert_eq!(parse(&p), Err(IpError::BadLength));
        assert_eq!(parse(&[0x60; 39]), Err(IpError::Truncated));
    }

    #[test]
    fn prefixes() {
        let p: Prefix = "10.1.2.3/16".parse().unwrap();
        assert_eq!(p.to_string(), "10.1.0.0/16");
        assert!(p.contains("10.1.200.1".parse().unwrap()));
        assert!(!p.contains("10.2.0.1".parse().unwrap()));
        assert!(!p.contains("::1".parse().unwrap()));
        let q: Prefix = "fd00::1/64".parse().unwrap();
        assert_eq!(q.to_string(), "fd00::/64");
        assert!("10.0.0.0/33".parse::<Prefix>().is_err());
        assert!("nonsense/8".parse::<Prefix>().is_err());
        let z: Prefix = "0.0.0.0/0".parse().unwrap();
        assert!(z.contains("8.8.8.8".parse().unwrap()));
    }
}
