//! ESP and ESP-in-UDP: RFC 3948 classification of port-4500 datagrams, then decapsulation
//! with a fixed inbound SA (`InboundSa::open`).
//!
//! The first input byte picks the mode, the rest is the datagram:
//! - bit 0 clear, "wire": the rest is a UDP payload as received; an ESP packet in it is
//!   opened by an SA with its SPI and the suite picked by bits 2..6 (almost every input
//!   stops at the ICV, which is what the wire sees).
//! - bit 0 set, "sealed": the rest is a sequence number (4 bytes) and the plaintext of an
//!   ESP payload (inner packet, padding, pad length, next header). The target encrypts it
//!   with the SA's AES-GCM key (RFC 4106) so the trailer, inner-packet and selector checks
//!   behind the ICV see fuzzed bytes. Bit 1 turns on extended sequence numbers.

use std::time::Duration;

use cvlan_proto::esp::udp_encap::{self, Datagram};
use cvlan_proto::esp::{
    Direction, EncryptionAlgorithm, InboundSa, IntegrityAlgorithm, SaParams, TrafficSelector,
    TunnelEndpoints, UdpEncap,
};
use ring::aead;

pub const NOW: Duration = Duration::from_secs(1000);
pub const SPI: u32 = 0xc0ff_ee01;

/// Every suite the engine supports.
pub const SUITES: [(EncryptionAlgorithm, Option<IntegrityAlgorithm>); 9] = [
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

fn enc_key(enc: EncryptionAlgorithm) -> Vec<u8> {
    (0..enc.key_len() as u8)
        .map(|i| i.wrapping_mul(37) ^ 0x5a)
        .collect()
}

fn integ_key(integ: IntegrityAlgorithm) -> Vec<u8> {
    (0..integ.key_len() as u8)
        .map(|i| i.wrapping_mul(11) ^ 0xc3)
        .collect()
}

/// Inbound SA parameters with fixed keys; selectors admit 192.168.5.0/24 and fd00::/64
/// towards 10.1.0.0/16 and fd01::/64.
pub fn params(
    spi: u32,
    enc: EncryptionAlgorithm,
    integ: Option<IntegrityAlgorithm>,
    esn: bool,
) -> SaParams {
    let ikey = integ.map(integ_key).unwrap_or_default();
    let tunnel = TunnelEndpoints {
        local: "203.0.113.1".parse().expect("address"),
        remote: "203.0.113.2".parse().expect("address"),
        udp: Some(UdpEncap {
            local_port: 4500,
            remote_port: 4500,
        }),
    };
    let mut p = SaParams::new(
        spi,
        Direction::Inbound,
        enc,
        &enc_key(enc),
        integ.map(|a| (a, &ikey[..])),
        tunnel,
    );
    p.esn = esn;
    p.local_ts = ["10.1.0.0/16", "fd01::/64"]
        .iter()
        .map(|s| TrafficSelector::prefix(s.parse().expect("prefix")))
        .collect();
    p.remote_ts = ["192.168.5.0/24", "fd00::/64"]
        .iter()
        .map(|s| TrafficSelector::prefix(s.parse().expect("prefix")))
        .collect();
    p
}

/// An AES-GCM-128 ESP packet (RFC 4106) carrying `plaintext` as its encrypted payload, as
/// `params(SPI, AesGcm128, None, esn)` would have sealed it; `seq_hi` is used for the AAD
/// only with ESN.
pub fn seal_gcm128(seq_lo: u32, seq_hi: Option<u32>, plaintext: &[u8]) -> Vec<u8> {
    let k = enc_key(EncryptionAlgorithm::AesGcm128);
    let (key, salt) = k.split_at(16);
    let key = aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_128_GCM, key).expect("key"));
    let iv = u64::from(seq_lo).to_be_bytes();
    let mut nonce = [0u8; 12];
    nonce[..4].copy_from_slice(salt);
    nonce[4..].copy_from_slice(&iv);
    let mut aad = SPI.to_be_bytes().to_vec();
    if let Some(hi) = seq_hi {
        aad.extend_from_slice(&hi.to_be_bytes());
    }
    aad.extend_from_slice(&seq_lo.to_be_bytes());
    let mut body = plaintext.to_vec();
    key.seal_in_place_append_tag(
        aead::Nonce::assume_unique_for_key(nonce),
        aead::Aad::from(&aad[..]),
        &mut body,
    )
    .expect("seal");
    let mut pkt = SPI.to_be_bytes().to_vec();
    pkt.extend_from_slice(&seq_lo.to_be_bytes());
    pkt.extend_from_slice(&iv);
    pkt.extend_from_slice(&body);
    pkt
}

pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        wire(mode, rest);
    } else {
        sealed(mode & 2 != 0, rest);
    }
}

fn wire(mode: u8, payload: &[u8]) {
    let Ok(d) = udp_encap::classify(payload) else {
        return;
    };
    let (spi, packet) = match d {
        Datagram::Keepalive => return,
        Datagram::Ike(ike) => {
            assert_eq!(ike.len() + 4, payload.len(), "IKE message bounds");
            return;
        }
        Datagram::Esp { spi, packet } => (spi, packet),
    };
    let (enc, integ) = SUITES[usize::from(mode >> 2) % SUITES.len()];
    let sa = InboundSa::new(&params(spi, enc, integ, mode & 2 != 0), NOW).expect("SA");
    let mut pkt = packet.to_vec();
    if let Ok(o) = sa.open(&mut pkt, NOW) {
        assert!(o.inner.end <= pkt.len(), "inner packet bounds");
    }
}

fn sealed(esn: bool, rest: &[u8]) {
    if rest.len() < 4 {
        return;
    }
    let seq_lo = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
    let sa =
        InboundSa::new(&params(SPI, EncryptionAlgorithm::AesGcm128, None, esn), NOW).expect("SA");
    // A fresh window: the sequence number's high half is 0.
    let mut pkt = seal_gcm128(seq_lo, esn.then_some(0), &rest[4..]);
    if let Ok(o) = sa.open(&mut pkt, NOW) {
        assert!(o.inner.end <= pkt.len(), "inner packet bounds");
        assert!(
            o.inner.start >= 16,
            "inner packet starts after header and IV"
        );
    }
}
