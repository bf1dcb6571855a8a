//! The seed corpus and every input kept from a finding run through their targets without a
//! panic, and the seeds still reach the code they were made for (a seed that stopped at the
//! first check would leave the fuzzer at the surface).

use std::net::SocketAddr;
use std::path::Path;

use cvlan_fuzz::rng::CountingRng;
use cvlan_fuzz::{esp, wireguard, TARGETS};
use cvlan_proto::esp::udp_encap::{self, Datagram};
use cvlan_proto::esp::InboundSa;
use cvlan_proto::wireguard::{Outbox, Time};

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            (name, std::fs::read(&p).expect("corpus file"))
        })
        .collect()
}

#[test]
fn every_corpus_input_runs() {
    for (target, run) in TARGETS {
        let inputs = corpus(target);
        assert!(!inputs.is_empty(), "{target}: empty corpus");
        for (name, data) in inputs {
            let r = std::panic::catch_unwind(|| run(&data));
            assert!(r.is_ok(), "{target}/{name} panics");
        }
    }
}

#[test]
fn esp_wire_seeds_decapsulate() {
    let mut n = 0;
    for (name, data) in corpus("esp") {
        if !name.starts_with("wire_") || name == "wire_ike" || name == "wire_keepalive" {
            continue;
        }
        let mode = data[0];
        let Ok(Datagram::Esp { spi, packet }) = udp_encap::classify(&data[1..]) else {
            panic!("{name}: not ESP");
        };
        let (enc, integ) = esp::SUITES[usize::from(mode >> 2) % esp::SUITES.len()];
        let sa = InboundSa::new(&esp::params(spi, enc, integ, mode & 2 != 0), esp::NOW).unwrap();
        let mut pkt = packet.to_vec();
        sa.open(&mut pkt, esp::NOW)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        n += 1;
    }
    assert_eq!(n, esp::SUITES.len() * 2 * 2);
}

#[test]
fn esp_sealed_seeds_decapsulate() {
    for (name, data) in corpus("esp") {
        if !name.starts_with("sealed_") {
            continue;
        }
        let esn = data[0] & 2 != 0;
        let seq = u32::from_be_bytes([data[1], data[2], data[3], data[4]]);
        let sa = InboundSa::new(
            &esp::params(esp::SPI, esp::SUITES[0].0, None, esn),
            esp::NOW,
        )
        .unwrap();
        let mut pkt = esp::seal_gcm128(seq, esn.then_some(0), &data[5..]);
        sa.open(&mut pkt, esp::NOW)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn wireguard_response_seed_completes_the_handshake() {
    let response = corpus("wireguard")
        .into_iter()
        .find(|(n, _)| n == "response")
        .expect("response seed")
        .1;
    let mut rng = CountingRng::default();
    let (mut dev, id, _) =
        wireguard::device(wireguard::OUR_KEY, wireguard::PEER_KEY, true, &mut rng);
    let src: SocketAddr = wireguard::PEER_ADDR.parse().unwrap();
    let t = Time {
        mono: wireguard::T0.mono + std::time::Duration::from_millis(10),
        unix: wireguard::T0.unix,
    };
    let mut out = Outbox::default();
    dev.handle_handshake(src, &response, t, &mut rng, &mut out)
        .expect("the target's device accepts the seed response");
    assert!(
        dev.current_keypair(id).is_some(),
        "a session is established"
    );
}

#[test]
fn offload_seeds_split_and_coalesce() {
    use cvlan_dataplane::offload::gro::Coalescer;
    use cvlan_dataplane::offload::tso;
    use cvlan_dataplane::offload::virtio::{VirtioNetHdr, VIRTIO_NET_HDR_LEN};
    for (name, data) in corpus("offload") {
        if name.starts_with("tun_") && name.ends_with("_gso") {
            let hdr = VirtioNetHdr::decode(&data[1..]).unwrap();
            let n = tso::segment_count(&hdr, &data[1 + VIRTIO_NET_HDR_LEN..])
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(n > 1, "{name}: {n} segment");
        }
        if name.starts_with("gro_tso") {
            let mut rest = &data[1..];
            let (mut bufs, mut lens) = (Vec::new(), Vec::new());
            while let Some((len, r)) = rest.split_first_chunk::<2>() {
                let len = usize::from(u16::from_be_bytes(*len));
                let mut b = vec![0u8; 64 + 65536];
                b[64..64 + len].copy_from_slice(&r[..len]);
                bufs.push(b);
                lens.push(len);
                rest = &r[len..];
            }
            let mut writes = Vec::new();
            Coalescer::new().coalesce(&mut bufs, &mut lens, 64, &mut writes);
            assert!(
                writes.len() < lens.len(),
                "{name}: no segments coalesce ({} writes)",
                writes.len()
            );
        }
    }
}
