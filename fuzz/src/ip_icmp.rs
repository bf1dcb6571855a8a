//! IP header views and the ICMP errors built from a received packet: `ip::parse`,
//! `icmp::too_big` and `icmp::unreachable` on any bytes (inner packets come from peers).
//!
//! Input: two bytes of MTU (big-endian), then the packet.

use cvlan_proto::{icmp, ip};

pub fn run(data: &[u8]) {
    let Some((mtu, pkt)) = data.split_first_chunk::<2>() else {
        return;
    };
    let mtu = u16::from_be_bytes(*mtu);
    if let Ok(info) = ip::parse(pkt) {
        assert!(info.len <= pkt.len(), "IP length within the buffer");
    }
    let mut out = [0u8; 1500];
    for n in [
        icmp::too_big(pkt, mtu, &mut out),
        icmp::unreachable(pkt, &mut out),
    ]
    .into_iter()
    .flatten()
    {
        assert!(n <= out.len(), "ICMP error within the output buffer");
        // The error we built is itself a well-formed packet of its stated length.
        let info = ip::parse(&out[..n]).expect("ICMP error parses");
        assert_eq!(info.len, n, "ICMP error length");
    }
    // A short output buffer must be refused, not overrun.
    let mut small = [0u8; 60];
    let _ = icmp::too_big(pkt, mtu, &mut small);
    let _ = icmp::unreachable(pkt, &mut small);
    if let Ok(s) = std::str::from_utf8(pkt) {
        let _ = s.parse::<ip::Prefix>();
    }
}
