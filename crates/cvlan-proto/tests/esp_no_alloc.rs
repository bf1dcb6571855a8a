//! The ESP hot path (seal and open) must not touch the heap: this test binary counts every
//! allocation made by the thread under test.

mod support;

use std::time::Duration;

use cvlan_proto::esp::{
    Direction, EncryptionAlgorithm, InboundSa, IntegrityAlgorithm, OutboundSa, SaParams,
    TrafficSelector, TunnelEndpoints,
};
use rand::SeedableRng;
use support::allocs;

#[global_allocator]
static GLOBAL: support::Counting = support::Counting;

fn params(dir: Direction, enc: EncryptionAlgorithm, integ: Option<IntegrityAlgorithm>) -> SaParams {
    let ekey = vec![0x42u8; enc.key_len()];
    let ikey = integ.map(|a| vec![0x17u8; a.key_len()]).unwrap_or_default();
    let tunnel = TunnelEndpoints {
        local: "203.0.113.1".parse().unwrap(),
        remote: "203.0.113.2".parse().unwrap(),
        udp: None,
    };
    let mut p = SaParams::new(
        0x1000_0001,
        dir,
        enc,
        &ekey,
        integ.map(|a| (a, &ikey[..])),
        tunnel,
    );
    p.esn = true;
    p.local_ts = vec![TrafficSelector::prefix("0.0.0.0/0".parse().unwrap())];
    p.remote_ts = vec![TrafficSelector::prefix("0.0.0.0/0".parse().unwrap())];
    p
}

#[test]
fn seal_and_open_do_not_allocate() {
    let now = Duration::from_secs(1);
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    for (enc, integ) in [
        (EncryptionAlgorithm::AesGcm256, None),
        (EncryptionAlgorithm::ChaCha20Poly1305, None),
        (
            EncryptionAlgorithm::AesCbc128,
            Some(IntegrityAlgorithm::HmacSha256_128),
        ),
    ] {
        let out = OutboundSa::new(&params(Direction::Outbound, enc, integ), now).unwrap();
        let inb = InboundSa::new(&params(Direction::Inbound, enc, integ), now).unwrap();
        let mut buf = vec![0u8; 2048];
        let h = out.headroom();
        let before = allocs();
        for _ in 0..1000 {
            let inner = h..h + 1400;
            buf[h] = 0x45;
            buf[h + 2..h + 4].copy_from_slice(&1400u16.to_be_bytes());
            let sealed = out.seal(&mut buf, inner, now, &mut rng).unwrap();
            let opened = inb.open(&mut buf[sealed.esp.clone()], now).unwrap();
            assert_eq!(opened.inner.len(), 1400);
        }
        assert_eq!(allocs() - before, 0, "{enc:?} allocated on the hot path");
    }
}
