//! Round trips, tampering, malformed packets, replay with ESN wrap, lifetimes, selectors,
//! concurrency and robustness against random input.

use std::sync::Arc;

use rand::{Rng, RngCore};

use super::*;
use crate::esp::packet::{NEXT_HEADER_IPV4, NEXT_HEADER_IPV6};

#[test]
fn round_trip_every_algorithm_with_and_without_esn() {
    for (enc, integ) in SUITES {
        for esn in [false, true] {
            let (out, inb) = pair(enc, integ, esn);
            for len in [28usize, 29, 30, 31, 33, 64, 100, 577, 1400, 1500] {
                let inner = good_v4(len);
                let esp = seal(&out, &inner).unwrap();
                assert_eq!(esp.len(), out.headroom() + len + out.tailroom(len));
                assert_eq!(
                    open(&inb, &esp).unwrap(),
                    inner,
                    "{enc:?} {integ:?} esn={esn} len={len}"
                );
            }
            for len in [48usize, 49, 51, 1280] {
                let inner = ipv6(len);
                let mut esp = seal(&out, &inner).unwrap();
                let o = inb.open(&mut esp, NOW).unwrap();
                assert_eq!(o.next_header, NEXT_HEADER_IPV6);
                assert_eq!(&esp[o.inner], &inner[..]);
            }
        }
    }
}

#[test]
fn seal_in_place_keeps_surrounding_bytes() {
    let (out, _) = pair(EncryptionAlgorithm::AesGcm256, None, false);
    let inner = good_v4(100);
    let h = out.headroom() + 10;
    let mut buf = vec![0xeeu8; h + 100 + out.max_tailroom() + 10];
    buf[h..h + 100].copy_from_slice(&inner);
    let s = out.seal(&mut buf, h..h + 100, NOW, &mut rng()).unwrap();
    assert_eq!(s.esp.start, 10);
    assert!(buf[..10].iter().all(|&b| b == 0xee));
    assert!(buf[s.esp.end..].iter().all(|&b| b == 0xee));
    assert_eq!(s.seq, 1);
    // The IV is the 64-bit sequence number (RFC 4106 §3.1: unique per packet).
    assert_eq!(&buf[s.esp.start + 8..s.esp.start + 16], &1u64.to_be_bytes());
}

#[test]
fn outbound_rejects_bad_input() {
    let (out, _) = pair(
        EncryptionAlgorithm::AesCbc128,
        Some(IntegrityAlgorithm::HmacSha256_128),
        false,
    );
    let h = out.headroom();
    let mut buf = vec![0u8; 200];
    buf[h] = 0x45;
    assert_eq!(
        out.seal(&mut buf, h - 1..h + 20, NOW, &mut rng()),
        Err(DropReason::BufferTooSmall)
    );
    assert_eq!(
        out.seal(&mut buf, h..190, NOW, &mut rng()),
        Err(DropReason::BufferTooSmall)
    );
    buf[h] = 0x15;
    assert_eq!(
        out.seal(&mut buf, h..h + 20, NOW, &mut rng()),
        Err(DropReason::InnerMalformed)
    );
    // none of these consumed a sequence number
    assert_eq!(out.last_seq(), 0);
}

#[test]
fn cbc_ivs_are_random() {
    let (out, _) = pair(
        EncryptionAlgorithm::AesCbc256,
        Some(IntegrityAlgorithm::HmacSha512_256),
        false,
    );
    let mut r = rng();
    let inner = good_v4(60);
    let mut ivs = std::collections::HashSet::new();
    for _ in 0..50 {
        let h = out.headroom();
        let mut buf = vec![0u8; h + 60 + out.max_tailroom()];
        buf[h..h + 60].copy_from_slice(&inner);
        let s = out.seal(&mut buf, h..h + 60, NOW, &mut r).unwrap();
        assert!(ivs.insert(buf[s.esp.start + 8..s.esp.start + 24].to_vec()));
    }
}

#[test]
fn tampering_any_byte_is_rejected() {
    for (enc, integ) in SUITES {
        for esn in [false, true] {
            let (out, inb) = pair(enc, integ, esn);
            let esp = seal(&out, &good_v4(61)).unwrap();
            for i in 0..esp.len() {
                for bit in [0x01u8, 0x80] {
                    let mut bad = esp.clone();
                    bad[i] ^= bit;
                    let r = open(&inb, &bad);
                    match i {
                        0..=3 => assert_eq!(r, Err(DropReason::UnknownSpi)),
                        4..=7 => assert!(
                            matches!(r, Err(DropReason::AuthFailed | DropReason::TooOld)),
                            "{enc:?} esn={esn} byte {i}: {r:?}"
                        ),
                        _ => {
                            assert_eq!(r, Err(DropReason::AuthFailed), "{enc:?} esn={esn} byte {i}")
                        }
                    }
                }
            }
            // Forgeries did not move the window: the genuine packet still opens once.
            assert!(open(&inb, &esp).is_ok());
            assert_eq!(open(&inb, &esp), Err(DropReason::Replayed));
        }
    }
}

#[test]
fn malformed_but_authentic_payloads() {
    for (enc, integ) in SUITES {
        let (out, inb) = pair(enc, integ, false);
        let align = if enc.is_aead() { 4 } else { 16 };
        let inner = good_v4(28);
        // Builds inner || pad || pad_len || next header, padded to the alignment.
        let body = |pad: &[u8], pad_len: u8, nh: u8, inner: &[u8]| {
            let mut b = inner.to_vec();
            b.extend_from_slice(pad);
            b.push(pad_len);
            b.push(nh);
            while b.len() & (align - 1) != 0 {
                b.insert(inner.len(), 0);
            }
            b
        };
        let mut seq = 0u64;
        let mut attempt = |b: Vec<u8>| {
            seq += 1;
            open(&inb, &out.seal_raw_body(&b, seq))
        };
        let pad_ok: Vec<u8> = (1..=((align - (28 + 2) % align) % align) as u8).collect();
        let good = body(&pad_ok, pad_ok.len() as u8, NEXT_HEADER_IPV4, &inner);
        assert_eq!(attempt(good.clone()), Ok(inner.clone()), "{enc:?}");
        // Wrong pad byte values.
        let mut bad = good.clone();
        let n = bad.len();
        bad[n - 2] = 2;
        bad[n - 4] = 9;
        bad[n - 3] = 9;
        assert_eq!(attempt(bad), Err(DropReason::BadPadding), "{enc:?}");
        // Pad length beyond the payload.
        let mut bad = good.clone();
        bad[n - 2] = 250;
        assert_eq!(attempt(bad), Err(DropReason::BadPadding), "{enc:?}");
        // Next header not IP-in-IP.
        for nh in [6u8, 17, 0, 255, NEXT_HEADER_IPV6] {
            let mut bad = good.clone();
            bad[n - 1] = nh;
            let want = if nh == NEXT_HEADER_IPV6 {
                DropReason::InnerMalformed
            } else {
                DropReason::BadNextHeader
            };
            assert_eq!(attempt(bad), Err(want), "{enc:?} nh {nh}");
        }
        // Inner packet shorter than its header claims.
        let mut short = inner.clone();
        short[3] = 200;
        assert_eq!(
            attempt(body(&pad_ok, pad_ok.len() as u8, 4, &short)),
            Err(DropReason::InnerMalformed)
        );
        // TFC padding after the inner packet (RFC 4303 §2.7) is cut off, not delivered.
        let mut tfc = inner.clone();
        tfc.extend_from_slice(&[0xaa; 7]);
        let pad: Vec<u8> = (1..=((align - (35 + 2) % align) % align) as u8).collect();
        assert_eq!(
            attempt(body(&pad, pad.len() as u8, 4, &tfc)),
            Ok(inner.clone())
        );
    }
}

#[test]
fn truncated_packets() {
    for (enc, integ) in SUITES {
        let (out, inb) = pair(enc, integ, false);
        let esp = seal(&out, &good_v4(40)).unwrap();
        for len in 0..inb.min_packet_len() {
            assert_eq!(
                open(&inb, &esp[..len]),
                Err(DropReason::Truncated),
                "{enc:?} len {len}"
            );
        }
        for len in inb.min_packet_len()..esp.len() {
            let r = open(&inb, &esp[..len]);
            assert!(
                matches!(r, Err(DropReason::AuthFailed | DropReason::Truncated)),
                "{enc:?} {len}: {r:?}"
            );
        }
    }
}

#[test]
fn replay_and_reordering() {
    let (out, inb) = pair(EncryptionAlgorithm::AesGcm128, None, false);
    let pkts: Vec<_> = (0..5000)
        .map(|_| seal(&out, &good_v4(40)).unwrap())
        .collect();
    // deliver in reverse blocks of 100 (reordering well inside the window)
    for chunk in pkts.chunks(100) {
        for p in chunk.iter().rev() {
            assert!(open(&inb, p).is_ok());
        }
    }
    assert_eq!(inb.highest_seq(), Some(5000));
    assert_eq!(open(&inb, &pkts[4999]), Err(DropReason::Replayed));
    assert_eq!(open(&inb, &pkts[2000]), Err(DropReason::Replayed));
    assert_eq!(open(&inb, &pkts[0]), Err(DropReason::TooOld));
}

#[test]
fn sequence_number_zero_is_refused() {
    let (out, inb) = pair(EncryptionAlgorithm::AesGcm128, None, false);
    let pkt = out.seal_raw_body(&[0x45, 0, 2, 4], 0);
    assert_eq!(open(&inb, &pkt), Err(DropReason::TooOld));
}

#[test]
fn esn_wrap_round_trip_and_replay() {
    for (enc, integ) in [SUITES[0], SUITES[2], SUITES[3]] {
        let (out, inb) = pair(enc, integ, true);
        let start = (1u64 << 32) - 4;
        out.set_last_seq(start - 1);
        inb.prime_window(start - 1);
        // packets 2^32-4 .. 2^32+5, crossing the wrap, delivered slightly out of order
        let pkts: Vec<_> = (0..10).map(|_| seal(&out, &good_v4(50)).unwrap()).collect();
        assert_eq!(out.last_seq(), start + 9);
        for i in [1usize, 0, 3, 2, 5, 4, 7, 6, 9, 8] {
            let mut b = pkts[i].clone();
            let o = inb
                .open(&mut b, NOW)
                .unwrap_or_else(|e| panic!("{enc:?} pkt {i}: {e}"));
            assert_eq!(o.seq, start + i as u64);
        }
        assert_eq!(inb.highest_seq(), Some(start + 9));
        // Just before and just after the wrap, again: both replays.
        assert_eq!(open(&inb, &pkts[3]), Err(DropReason::Replayed));
        assert_eq!(open(&inb, &pkts[4]), Err(DropReason::Replayed));
        // Only the low half is on the wire.
        assert_eq!(&pkts[4][4..8], &[0, 0, 0, 0]);
        assert_eq!(&pkts[3][4..8], &[0xff, 0xff, 0xff, 0xff]);
    }
}

#[test]
fn esn_too_old_across_the_wrap() {
    let (out, inb) = pair(EncryptionAlgorithm::AesGcm256, None, true);
    out.set_last_seq((1u64 << 32) - 11);
    inb.prime_window((1u64 << 32) - 11);
    let old = seal(&out, &good_v4(40)).unwrap(); // 2^32 - 10, before the wrap
    let recent = seal(&out, &good_v4(40)).unwrap(); // 2^32 - 9
    assert!(open(&inb, &recent).is_ok());
    // Advance the window far past the wrap: 2^32 + 5000.
    out.set_last_seq((1u64 << 32) + 4999);
    let ahead = seal(&out, &good_v4(40)).unwrap();
    assert!(open(&inb, &ahead).is_ok());
    let top = inb.highest_seq();
    // The old packet's low half now maps to the next subspace; the authenticated high
    // half then fails: rejected, and the window does not move.
    assert_eq!(open(&inb, &old), Err(DropReason::AuthFailed));
    assert_eq!(inb.highest_seq(), top);
    // Without ESN the same situation is a plain "too old".
    let (out, inb) = pair(EncryptionAlgorithm::AesGcm256, None, false);
    let old = seal(&out, &good_v4(40)).unwrap();
    out.set_last_seq(5000);
    assert!(open(&inb, &seal(&out, &good_v4(40)).unwrap()).is_ok());
    assert_eq!(open(&inb, &old), Err(DropReason::TooOld));
}

#[test]
fn esn_window_straddling_wrap_accepts_late_packets() {
    let (out, inb) = pair(EncryptionAlgorithm::ChaCha20Poly1305, None, true);
    out.set_last_seq((3u64 << 32) - 101);
    inb.prime_window((3u64 << 32) - 101);
    let before: Vec<_> = (0..100)
        .map(|_| seal(&out, &good_v4(40)).unwrap())
        .collect(); // ..= 3<<32 - 1
    let after: Vec<_> = (0..100)
        .map(|_| seal(&out, &good_v4(40)).unwrap())
        .collect(); // 3<<32 ..
    for p in &after {
        assert!(open(&inb, p).is_ok());
    }
    // late packets from the previous subspace, still inside the window
    for (i, p) in before.iter().enumerate() {
        let mut b = p.clone();
        assert_eq!(
            inb.open(&mut b, NOW).unwrap().seq,
            (3u64 << 32) - 100 + i as u64
        );
    }
}

#[test]
fn sequence_overflow_without_esn() {
    let (out, inb) = pair(EncryptionAlgorithm::AesGcm128, None, false);
    out.set_last_seq(u64::from(u32::MAX) - 1);
    inb.prime_window(u64::from(u32::MAX) - 1);
    let last = seal(&out, &good_v4(40)).unwrap();
    assert_eq!(&last[4..8], &[0xff; 4]);
    assert!(open(&inb, &last).is_ok());
    assert_eq!(seal(&out, &good_v4(40)), Err(DropReason::SequenceOverflow));
    assert_eq!(seal(&out, &good_v4(40)), Err(DropReason::SequenceOverflow));
    // With ESN the same SA keeps going into the next subspace.
    let (out, _) = pair(EncryptionAlgorithm::AesGcm128, None, true);
    out.set_last_seq(u64::from(u32::MAX) - 1);
    assert!(seal(&out, &good_v4(40)).is_ok());
    assert!(seal(&out, &good_v4(40)).is_ok());
    assert_eq!(out.last_seq(), 1 << 32);
    out.set_last_seq(u64::MAX);
    assert_eq!(seal(&out, &good_v4(40)), Err(DropReason::SequenceOverflow));
}

#[test]
fn lifetime_events_fire_once_per_sa() {
    let limits = |soft, hard| LifetimeConfig {
        soft: Limits {
            packets: Some(soft),
            ..Limits::default()
        },
        hard: Limits {
            packets: Some(hard),
            ..Limits::default()
        },
    };
    let enc = EncryptionAlgorithm::AesGcm128;
    let mut po = params(Direction::Outbound, enc, None, false);
    po.lifetime = limits(3, 5);
    let mut pi = params(Direction::Inbound, enc, None, false);
    pi.lifetime = limits(2, 4);
    let out = OutboundSa::new(&po, NOW).unwrap();
    let inb = InboundSa::new(&pi, NOW).unwrap();
    let mut out_events = Vec::new();
    let mut in_events = Vec::new();
    let mut sealed = Vec::new();
    for i in 0..8 {
        let inner = good_v4(100);
        let h = out.headroom();
        let mut buf = vec![0u8; h + 100 + out.max_tailroom()];
        buf[h..h + 100].copy_from_slice(&inner);
        match out.seal(
            &mut buf,
            h..h + 100,
            NOW + Duration::from_secs(i),
            &mut rng(),
        ) {
            Ok(s) => {
                out_events.push(Ok(s.event));
                sealed.push(buf[s.esp].to_vec());
            }
            Err(e) => out_events.push(Err(e)),
        }
    }
    use LifetimeEvent::*;
    let e = DropReason::SaExpired;
    assert_eq!(
        out_events,
        vec![
            Ok(None),
            Ok(None),
            Ok(Some(SoftExpire)),
            Ok(None),
            Ok(Some(HardExpire)),
            Err(e),
            Err(e),
            Err(e)
        ]
    );
    for p in &sealed {
        let mut b = p.clone();
        in_events.push(inb.open(&mut b, NOW).map(|o| o.event));
    }
    assert_eq!(
        in_events,
        vec![
            Ok(None),
            Ok(Some(SoftExpire)),
            Ok(None),
            Ok(Some(HardExpire)),
            Err(e)
        ]
    );
    let c = out.counters();
    assert_eq!(
        (c.packets, c.bytes, c.last_use),
        (5, 500, Some(NOW + Duration::from_secs(4)))
    );
    assert_eq!(inb.counters().packets, 4);
}

#[test]
fn forged_packets_do_not_count_against_lifetime() {
    let (out, inb) = pair(EncryptionAlgorithm::AesGcm128, None, false);
    let mut p = seal(&out, &good_v4(40)).unwrap();
    p[20] ^= 1;
    assert_eq!(open(&inb, &p), Err(DropReason::AuthFailed));
    assert_eq!(inb.counters(), Counters::default());
}

#[test]
fn traffic_selectors_enforced() {
    let (out, inb) = pair(EncryptionAlgorithm::AesGcm128, None, false);
    let cases = [
        (ipv4([192, 168, 5, 1], [10, 1, 0, 1], 40), Ok(())),
        (
            ipv4([192, 168, 6, 1], [10, 1, 0, 1], 40),
            Err(DropReason::OutsideSelectors),
        ),
        (
            ipv4([192, 168, 5, 1], [10, 2, 0, 1], 40),
            Err(DropReason::OutsideSelectors),
        ),
        (
            ipv4([10, 1, 0, 1], [192, 168, 5, 1], 40),
            Err(DropReason::OutsideSelectors),
        ),
    ];
    for (inner, want) in cases {
        let esp = seal(&out, &inner).unwrap();
        assert_eq!(open(&inb, &esp).map(|_| ()), want);
    }
    let mut v6 = ipv6(60);
    v6[8] = 0xfe; // source fe00::1, outside fd00::/64
    assert_eq!(
        open(&inb, &seal(&out, &v6).unwrap()),
        Err(DropReason::OutsideSelectors)
    );
}

#[test]
fn parallel_seal_and_open() {
    let (out, inb) = pair(EncryptionAlgorithm::AesGcm256, None, true);
    let (out, inb) = (Arc::new(out), Arc::new(inb));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let out = out.clone();
            std::thread::spawn(move || {
                (0..500)
                    .map(|_| seal(&out, &good_v4(80)).unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let pkts: Vec<Vec<u8>> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let chunks: Vec<Vec<Vec<u8>>> = pkts.chunks(500).map(|c| c.to_vec()).collect();
    let threads: Vec<_> = chunks
        .into_iter()
        .map(|c| {
            let inb = inb.clone();
            std::thread::spawn(move || {
                c.iter()
                    .map(|p| {
                        let mut b = p.clone();
                        inb.open(&mut b, NOW).unwrap().seq
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut seqs: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=2000).collect::<Vec<_>>());
    assert_eq!(inb.counters().packets, 2000);
    assert_eq!(out.counters().bytes, 2000 * 80);
}

#[test]
fn random_and_mutated_input_never_panics() {
    let mut r = StdRng::seed_from_u64(42);
    for (enc, integ) in SUITES {
        let (out, inb) = pair(enc, integ, true);
        let genuine = seal(&out, &good_v4(120)).unwrap();
        for _ in 0..1500 {
            let len = r.gen_range(0..200);
            let mut junk = vec![0u8; len];
            r.fill_bytes(&mut junk);
            if r.gen_bool(0.5) && len >= 4 {
                junk[..4].copy_from_slice(&inb.spi().to_be_bytes());
            }
            assert!(inb.open(&mut junk, NOW).is_err());
            let _ = udp_encap::classify(&junk);
            let mut m = genuine.clone();
            for _ in 0..r.gen_range(1..4) {
                let i = r.gen_range(0..m.len());
                m[i] = r.gen();
            }
            match r.gen_range(0..3) {
                0 => m.truncate(r.gen_range(0..m.len())),
                1 => m.extend((0..r.gen_range(1..20)).map(|_| r.gen::<u8>())),
                _ => {}
            }
            if m != genuine {
                assert!(inb.open(&mut m, NOW).is_err());
            }
        }
    }
}

#[test]
fn algorithm_mapping_from_ikev2() {
    use crate::esp::algorithms::*;
    assert_eq!(
        EncryptionAlgorithm::from_ikev2(ENCR_AES_GCM_16, 36),
        Some(EncryptionAlgorithm::AesGcm256)
    );
    assert_eq!(
        EncryptionAlgorithm::from_ikev2(ENCR_AES_GCM_16, 20),
        Some(EncryptionAlgorithm::AesGcm128)
    );
    assert_eq!(
        EncryptionAlgorithm::from_ikev2(ENCR_CHACHA20_POLY1305, 36),
        Some(EncryptionAlgorithm::ChaCha20Poly1305)
    );
    assert_eq!(
        EncryptionAlgorithm::from_ikev2(ENCR_AES_CBC, 32),
        Some(EncryptionAlgorithm::AesCbc256)
    );
    assert_eq!(EncryptionAlgorithm::from_ikev2(ENCR_AES_GCM_16, 32), None);
    assert_eq!(
        IntegrityAlgorithm::from_ikev2(AUTH_HMAC_SHA2_384_192),
        Some(IntegrityAlgorithm::HmacSha384_192)
    );
    // Key length errors at install time.
    let mut p = params(
        Direction::Inbound,
        EncryptionAlgorithm::AesGcm128,
        None,
        false,
    );
    p.enc_key = SecretKey::from_slice(&[0; 16]);
    assert_eq!(
        InboundSa::new(&p, NOW).err(),
        Some(SaError::BadKeyLength {
            expected: 20,
            got: 16
        })
    );
    let p = params(
        Direction::Outbound,
        EncryptionAlgorithm::AesCbc128,
        None,
        false,
    );
    assert_eq!(
        OutboundSa::new(&p, NOW).err(),
        Some(SaError::MissingIntegrity)
    );
}
