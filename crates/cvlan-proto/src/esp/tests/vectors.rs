//! Published vectors (RFC 7634 Appendix A, draft-mcgrew-gcm-test-01, RFC 4868 §2.7.2,
//! NIST SP 800-38A F.2) and whole packets generated independently with Python's
//! `cryptography` (tests/vectors/gen_esp_vectors.py, which also re-checks the published ones).

use super::*;
use crate::esp::algorithms::{AesKey, Integrity};

/// Builds an SA pair from raw key material with selectors that admit everything.
fn vector_pair(
    spi: u32,
    enc: EncryptionAlgorithm,
    enc_key: &[u8],
    integ: Option<(IntegrityAlgorithm, &[u8])>,
    esn: bool,
) -> (OutboundSa, InboundSa) {
    let mk = |dir| {
        let mut p = SaParams::new(spi, dir, enc, enc_key, integ, tunnel());
        p.esn = esn;
        let any = vec![
            TrafficSelector::prefix("0.0.0.0/0".parse().unwrap()),
            TrafficSelector::prefix("::/0".parse().unwrap()),
        ];
        p.local_ts = any.clone();
        p.remote_ts = any;
        p
    };
    (
        OutboundSa::new(&mk(Direction::Outbound), NOW).unwrap(),
        InboundSa::new(&mk(Direction::Inbound), NOW).unwrap(),
    )
}

/// Seals `inner` with a fixed sequence number and IV and returns the ESP packet.
fn seal_fixed(out: &OutboundSa, inner: &[u8], seq: u64, iv: &[u8]) -> Vec<u8> {
    let h = out.headroom();
    let mut buf = vec![0u8; h + inner.len() + out.max_tailroom()];
    buf[h..h + inner.len()].copy_from_slice(inner);
    let s = out
        .seal_with(
            &mut buf,
            h..h + inner.len(),
            NOW,
            &mut rng(),
            Some((seq, iv)),
        )
        .unwrap();
    assert_eq!(s.seq, seq);
    buf[s.esp].to_vec()
}

// RFC 7634 Appendix A: tunnel-mode ESP with ChaCha20-Poly1305.
const RFC7634_KEYMAT: &str =
    "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9fa0a1a2a3";
const RFC7634_INNER: &str = "45000054a6f200004001e778c6336405c000020508005b7a3a080000553bec1000073627
    08090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637";
const RFC7634_ESP: &str = "01020304000000051011121314151617
    24039428b97f417e3c13753a4f05087b67c352e6a7fab1b982d466ef407ae5c6
    14ee8099d52844eb61aa95dfab4c02f72aa71e7c4c4f64c9befe2facc638e8f3
    cbec163fac469b502773f6fb94e664da9165b82829f641e0
    76aaa8266b7fb0f7b11b369907e1ad43";

#[test]
fn rfc7634_appendix_a() {
    let (out, inb) = vector_pair(
        0x01020304,
        EncryptionAlgorithm::ChaCha20Poly1305,
        &hex(RFC7634_KEYMAT),
        None,
        false,
    );
    let inner = hex(RFC7634_INNER);
    let esp = seal_fixed(&out, &inner, 5, &hex("1011121314151617"));
    assert_eq!(hex::encode(&esp), hex::encode(hex(RFC7634_ESP)));
    let mut pkt = hex(RFC7634_ESP);
    let o = inb.open(&mut pkt, NOW).unwrap();
    assert_eq!(&pkt[o.inner], &inner[..]);
    assert_eq!((o.seq, o.next_header), (5, 4));
}

#[test]
fn mcgrew_gcm_test_cases() {
    // (case, key || salt, algorithm, SPI, seq, IV, inner, ESP packet)
    let cases = [
        (
            2,
            "feffe9928665731c6d6a8f9467308308cafebabe",
            EncryptionAlgorithm::AesGcm128,
            0x0000a5f8u32,
            10u64,
            "facedbaddecaf888",
            "4500003e698f000080114dccc0a80102c0a801010a980035002a2343b2d00100000100000000000003736970
             09637962657263697479 02646b0000010001",
            "0000a5f80000000afacedbaddecaf888deb22cd9b07c72c16e3a65beeb8df304a5a5897d33ae530f1ba76d5d
             114d2a5c3de81827c10e9a4f51330d0eec416642cfbb85a5b47e48a4ec3b9ba95d918bd426f8391b9927d0fc
             c984561bbbce9fc0",
        ),
        (
            3,
            "abbccddef00112233445566778899aababbccddef00112233445566778899aab11223344",
            EncryptionAlgorithm::AesGcm256,
            0x4a2cbfe3,
            2,
            "0102030405060708",
            "4500003069a6400080062690c0a801029389155e0a9e008b2dc57ee000000000700240002 0bf0000020405b401010402",
            "4a2cbfe3000000020102030405060708ff425c9b724599df7a3bcd510194e00d6a78107f1b0b1cbf06efae9d
             65a5d763748a637985771d347f0545659f14e99def842d8b42f564f52dfdd6eef4f92eadbac23990",
        ),
    ];
    for (case, keymat, alg, spi, seq, iv, inner, esp) in cases {
        let (out, inb) = vector_pair(spi, alg, &hex(keymat), None, false);
        let inner = hex(inner);
        assert_eq!(
            hex::encode(seal_fixed(&out, &inner, seq, &hex(iv))),
            hex::encode(hex(esp)),
            "case {case}"
        );
        let mut pkt = hex(esp);
        let o = inb
            .open(&mut pkt, NOW)
            .unwrap_or_else(|e| panic!("case {case}: {e}"));
        assert_eq!(&pkt[o.inner], &inner[..], "case {case}");
        assert_eq!(o.seq, seq);
    }
}

#[test]
fn mcgrew_gcm_case_12_is_a_dummy_packet() {
    // Next Header 59 with an empty payload: authentic, and discarded (RFC 4303 §2.6).
    let (_, inb) = vector_pair(
        0x335467ae,
        EncryptionAlgorithm::AesGcm128,
        &hex("7d773d00c144c525ac619d18c84a3f47d9664267"),
        None,
        false,
    );
    let mut pkt = hex("335467aeffffffff43457e9182443bc6437f86517ea595d2ca004c33388c46770c590ad6");
    assert_eq!(inb.open(&mut pkt, NOW), Err(DropReason::DummyPacket));
    // It was authentic, so its sequence number is now taken.
    let mut again = hex("335467aeffffffff43457e9182443bc6437f86517ea595d2ca004c33388c46770c590ad6");
    assert_eq!(inb.open(&mut again, NOW), Err(DropReason::Replayed));
}

#[test]
fn rfc4868_auth_vectors() {
    // RFC 4868 §2.7.2: HMAC-SHA-256-128, -384-192, -512-256 (keys as long as the hash).
    let cases: [(IntegrityAlgorithm, Vec<u8>, Vec<u8>, &str); 7] = [
        (
            IntegrityAlgorithm::HmacSha256_128,
            vec![0x0b; 32],
            b"Hi There".to_vec(),
            "198a607eb44bfbc69903a0f1cf2bbdc5",
        ),
        (
            IntegrityAlgorithm::HmacSha256_128,
            b"JefeJefeJefeJefeJefeJefeJefeJefe".to_vec(),
            b"what do ya want for nothing?".to_vec(),
            "167f928588c5cc2eef8e3093caa0e87c",
        ),
        (
            IntegrityAlgorithm::HmacSha256_128,
            vec![0xaa; 32],
            vec![0xdd; 50],
            "cdcb1220d1ecccea91e53aba3092f962",
        ),
        (
            IntegrityAlgorithm::HmacSha256_128,
            (1..=32).collect(),
            vec![0xcd; 50],
            "372efcf9b40b35c2115b1346903d2ef4",
        ),
        (
            IntegrityAlgorithm::HmacSha384_192,
            vec![0x0b; 48],
            b"Hi There".to_vec(),
            "b6a8d5636f5c6a7224f9977dcf7ee6c7fb6d0c48cbdee973",
        ),
        (
            IntegrityAlgorithm::HmacSha384_192,
            b"Jefe".repeat(12),
            b"what do ya want for nothing?".to_vec(),
            "2c7353974f1842fd66d53c452ca42122b28c0b594cfb184d",
        ),
        (
            IntegrityAlgorithm::HmacSha512_256,
            vec![0x0b; 64],
            b"Hi There".to_vec(),
            "637edc6e01dce7e6742a99451aae82df23da3e92439e590e43e761b33e910fb8",
        ),
    ];
    for (alg, key, data, want) in cases {
        let i = Integrity::new(alg, &key);
        assert_eq!(i.icv_len(), want.len() / 2);
        let mut out = [0u8; 32];
        // Split input, as the ESP code feeds header/ciphertext and the ESN high half apart.
        let (a, b) = data.split_at(data.len() / 3);
        i.compute(&[a, b], &mut out);
        assert_eq!(hex::encode(&out[..i.icv_len()]), want, "{alg:?}");
        assert!(i.verify(&[&data], &hex(want)));
        let mut bad = hex(want);
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(!i.verify(&[&data], &bad));
    }
}

#[test]
fn sp800_38a_cbc() {
    // NIST SP 800-38A F.2.1 / F.2.2 (AES-128) and F.2.5 / F.2.6 (AES-256).
    let pt = hex(
        "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51
         30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710",
    );
    let iv: [u8; 16] = core::array::from_fn(|i| i as u8);
    for (key, ct) in [
        (
            "2b7e151628aed2a6abf7158809cf4f3c",
            "7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2
             73bed6b8e3c1743b7116e69e222295163ff1caa1681fac09120eca307586e1a7",
        ),
        (
            "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4",
            "f58c4c04d6e5f1ba779eabfb5f7bfbd69cfc4e967edb808d679f777bc6702c7d
             39f23369a9d9bacfa530e26304231461b2eb05e2c39be9fcda6c19078c6a9d1b",
        ),
    ] {
        let k = AesKey::new(&hex(key)).unwrap();
        let mut buf = pt.clone();
        k.cbc_encrypt(&iv, &mut buf);
        assert_eq!(hex::encode(&buf), hex::encode(hex(ct)), "key {key}");
        k.cbc_decrypt(&iv, &mut buf);
        assert_eq!(buf, pt);
    }
    assert!(AesKey::new(&[0; 24]).is_none());
}

struct Generated {
    name: String,
    enc: EncryptionAlgorithm,
    integ: Option<IntegrityAlgorithm>,
    esn: bool,
    spi: u32,
    seq: u64,
    enc_key: Vec<u8>,
    integ_key: Vec<u8>,
    iv: Vec<u8>,
    inner: Vec<u8>,
    esp: Vec<u8>,
}

fn generated() -> Vec<Generated> {
    let text = include_str!("../../../tests/vectors/esp_generated.txt");
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let fields: std::collections::HashMap<&str, &str> = block
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                l.split_once(" = ")
                    .or_else(|| l.strip_suffix(" =").map(|k| (k, "")))
            })
            .collect();
        let Some(name) = fields.get("name") else {
            continue;
        };
        let enc = match fields["enc"] {
            "aes-gcm-128" => EncryptionAlgorithm::AesGcm128,
            "aes-gcm-256" => EncryptionAlgorithm::AesGcm256,
            "chacha20-poly1305" => EncryptionAlgorithm::ChaCha20Poly1305,
            "aes-cbc-128" => EncryptionAlgorithm::AesCbc128,
            "aes-cbc-256" => EncryptionAlgorithm::AesCbc256,
            other => panic!("unknown algorithm {other}"),
        };
        let integ = match fields["integ"] {
            "none" => None,
            "hmac-sha256" => Some(IntegrityAlgorithm::HmacSha256_128),
            "hmac-sha384" => Some(IntegrityAlgorithm::HmacSha384_192),
            "hmac-sha512" => Some(IntegrityAlgorithm::HmacSha512_256),
            other => panic!("unknown integrity {other}"),
        };
        out.push(Generated {
            name: name.to_string(),
            enc,
            integ,
            esn: fields["esn"] == "1",
            spi: u32::from_str_radix(fields["spi"], 16).unwrap(),
            seq: u64::from_str_radix(fields["seq"], 16).unwrap(),
            enc_key: hex(fields["enc_key"]),
            integ_key: hex(fields["integ_key"]),
            iv: hex(fields["iv"]),
            inner: hex(fields["inner"]),
            esp: hex(fields["esp"]),
        });
    }
    out
}

#[test]
fn generated_packets_match_independent_implementation() {
    let vs = generated();
    assert_eq!(vs.len(), 49, "vector file incomplete");
    for v in vs {
        let (out, inb) = vector_pair(
            v.spi,
            v.enc,
            &v.enc_key,
            v.integ.map(|a| (a, &v.integ_key[..])),
            v.esn,
        );
        let esp = if v.enc.is_aead() {
            // The public path: IV = sequence number.
            out.set_last_seq(v.seq - 1);
            assert_eq!(v.iv, v.seq.to_be_bytes());
            seal(&out, &v.inner).unwrap()
        } else {
            seal_fixed(&out, &v.inner, v.seq, &v.iv)
        };
        assert_eq!(hex::encode(&esp), hex::encode(&v.esp), "{}", v.name);
        if v.esn && v.seq > 1 {
            inb.prime_window(v.seq - 1);
        }
        let mut pkt = v.esp.clone();
        let o = inb
            .open(&mut pkt, NOW)
            .unwrap_or_else(|e| panic!("{}: {e}", v.name));
        assert_eq!(&pkt[o.inner], &v.inner[..], "{}", v.name);
        assert_eq!(o.seq, v.seq, "{}", v.name);
    }
}
