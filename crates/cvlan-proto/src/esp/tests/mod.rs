//! Known-answer and behaviour tests of the ESP engine.

mod behaviour;
mod vectors;

use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::*;

pub(super) const NOW: Duration = Duration::from_secs(1000);

pub(super) fn rng() -> StdRng {
    StdRng::seed_from_u64(0x5eed)
}

pub(super) fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(s).expect("test vector hex")
}

pub(super) fn tunnel() -> TunnelEndpoints {
    TunnelEndpoints {
        local: "203.0.113.1".parse().unwrap(),
        remote: "203.0.113.2".parse().unwrap(),
        udp: None,
    }
}

/// Every algorithm combination the engine supports.
pub(super) const SUITES: [(EncryptionAlgorithm, Option<IntegrityAlgorithm>); 9] = [
    (EncryptionAlgorithm::AesGcm128, None),
    (EncryptionAlgorithm::AesGcm256, None),
    (EncryptionAlgorithm::ChaCha20Poly1305, None),
    (
        EncryptionAlgorithm::AesCbc128,
        Some(IntegrityAlgorithm::HmacSha256_128),
    ),
    (
        EncryptionAlgorithm::AesCbc128,
        Some(IntegrityAlgorithm::HmacSha384_192),
    ),
    (
        EncryptionAlgorithm::AesCbc128,
        Some(IntegrityAlgorithm::HmacSha512_256),
    ),
    (
        EncryptionAlgorithm::AesCbc256,
        Some(IntegrityAlgorithm::HmacSha256_128),
    ),
    (
        EncryptionAlgorithm::AesCbc256,
        Some(IntegrityAlgorithm::HmacSha384_192),
    ),
    (
        EncryptionAlgorithm::AesCbc256,
        Some(IntegrityAlgorithm::HmacSha512_256),
    ),
];

/// SA parameters with fixed keys; inbound selectors admit 192.168.5.0/24 and fd00::/64
/// towards 10.1.0.0/16 and fd01::/64.
pub(super) fn params(
    dir: Direction,
    enc: EncryptionAlgorithm,
    integ: Option<IntegrityAlgorithm>,
    esn: bool,
) -> SaParams {
    let ekey: Vec<u8> = (0..enc.key_len() as u8)
        .map(|i| i.wrapping_mul(37) ^ 0x5a)
        .collect();
    let ikey: Vec<u8> = integ
        .map(|a| {
            (0..a.key_len() as u8)
                .map(|i| i.wrapping_mul(11) ^ 0xc3)
                .collect()
        })
        .unwrap_or_default();
    let mut p = SaParams::new(
        0xc0ffee01,
        dir,
        enc,
        &ekey,
        integ.map(|a| (a, &ikey[..])),
        tunnel(),
    );
    p.esn = esn;
    p.local_ts = vec![
        TrafficSelector::prefix("10.1.0.0/16".parse().unwrap()),
        TrafficSelector::prefix("fd01::/64".parse().unwrap()),
    ];
    p.remote_ts = vec![
        TrafficSelector::prefix("192.168.5.0/24".parse().unwrap()),
        TrafficSelector::prefix("fd00::/64".parse().unwrap()),
    ];
    p
}

pub(super) fn pair(
    enc: EncryptionAlgorithm,
    integ: Option<IntegrityAlgorithm>,
    esn: bool,
) -> (OutboundSa, InboundSa) {
    let out = OutboundSa::new(&params(Direction::Outbound, enc, integ, esn), NOW).unwrap();
    let inb = InboundSa::new(&params(Direction::Inbound, enc, integ, esn), NOW).unwrap();
    (out, inb)
}

/// An IPv4/UDP packet of `total` octets (at least 28).
pub(super) fn ipv4(src: [u8; 4], dst: [u8; 4], total: usize) -> Vec<u8> {
    let mut p: Vec<u8> = (0..total).map(|i| (i * 7) as u8).collect();
    p[0] = 0x45;
    p[1] = 0;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[6] = 0;
    p[7] = 0;
    p[9] = 17;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    p
}

/// An IPv6/UDP packet from fd00::1 to fd01::2 of `total` octets (at least 48).
pub(super) fn ipv6(total: usize) -> Vec<u8> {
    let mut p: Vec<u8> = (0..total).map(|i| (i * 13) as u8).collect();
    p[0] = 0x60;
    p[1..4].copy_from_slice(&[0, 0, 0]);
    p[4..6].copy_from_slice(&((total - 40) as u16).to_be_bytes());
    p[6] = 17;
    let src: std::net::Ipv6Addr = "fd00::1".parse().unwrap();
    let dst: std::net::Ipv6Addr = "fd01::2".parse().unwrap();
    p[8..24].copy_from_slice(&src.octets());
    p[24..40].copy_from_slice(&dst.octets());
    p
}

pub(super) fn good_v4(total: usize) -> Vec<u8> {
    ipv4([192, 168, 5, 7], [10, 1, 2, 3], total)
}

/// Seals `inner` into a fresh buffer and returns the ESP packet alone.
pub(super) fn seal(out: &OutboundSa, inner: &[u8]) -> Result<Vec<u8>, DropReason> {
    let h = out.headroom();
    let mut buf = vec![0u8; h + inner.len() + out.max_tailroom()];
    buf[h..h + inner.len()].copy_from_slice(inner);
    let s = out.seal(&mut buf, h..h + inner.len(), NOW, &mut rng())?;
    Ok(buf[s.esp].to_vec())
}

/// Opens a copy of `pkt` and returns the inner packet.
pub(super) fn open(inb: &InboundSa, pkt: &[u8]) -> Result<Vec<u8>, DropReason> {
    let mut b = pkt.to_vec();
    let o = inb.open(&mut b, NOW)?;
    Ok(b[o.inner].to_vec())
}
