//! What WireGuard's framing costs on top of its AEAD: encrypt + decrypt of 1420-byte packets
//! through the whole transport path of `cvlan_proto::wireguard` (route, counter reservation,
//! padding, seal, parse, receiver lookup, open, replay window, bookkeeping, source check) against
//! the bare ChaCha20-Poly1305 of the same library (ring) on the same buffers, one thread.
//!
//!   cargo run --release -p cvlan-proto --example wg_transport_bench -- [--seconds 3] [--out FILE]

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use cvlan_proto::wireguard::constants::{TAG_LEN, TRANSPORT_HEADER_LEN};
use cvlan_proto::wireguard::messages::{self, Message};
use cvlan_proto::wireguard::{SendPlan, Time};
use rand::SeedableRng;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use support::ipv4;

const PACKET: usize = 1420;

/// Runs `f` repeatedly for about `secs` seconds; returns packets per second.
fn rate(secs: f64, mut f: impl FnMut()) -> f64 {
    for _ in 0..1000 {
        f();
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        for _ in 0..1000 {
            f();
        }
        n += 1000;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let secs: f64 = arg("--seconds").and_then(|s| s.parse().ok()).unwrap_or(3.0);

    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    // Handshake; the queued first packet confirms B's keypair.
    let support::Pair {
        mut a,
        mut b,
        addr_a,
        t: t0,
        out_a: mut out,
        mut out_b,
        ..
    } = support::established_pair(&mut rng);

    let mut pkt = vec![0u8; PACKET];
    ipv4([10, 0, 0, 1], [10, 0, 0, 2], PACKET, 0x5a, &mut pkt);
    let mut buf = vec![0u8; TRANSPORT_HEADER_LEN + 1500 + TAG_LEN];
    let mut tick = 0u64;
    let framed = rate(secs, || {
        tick += 1;
        let t = Time {
            mono: t0.mono + Duration::from_micros(tick),
            unix: t0.unix,
        };
        let peer = a.route([10, 0, 0, 2].into()).expect("route");
        let SendPlan::Encrypt {
            keypair, counter, ..
        } = a.prepare_send(peer, &pkt, t, &mut rng, &mut out)
        else {
            panic!("session expected");
        };
        buf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + PACKET].copy_from_slice(&pkt);
        let r = keypair
            .seal(counter, &mut buf, TRANSPORT_HEADER_LEN, PACKET)
            .expect("seal");
        a.count_tx(peer, r.len());
        let wire = &mut buf[r];
        let Ok(Message::Transport {
            receiver, counter, ..
        }) = messages::parse(wire)
        else {
            panic!("transport message expected");
        };
        let (peer, kp) = b.lookup_receiver(receiver, t).expect("receiver");
        let wire_len = wire.len();
        let n = kp
            .open(counter, &mut wire[TRANSPORT_HEADER_LEN..])
            .expect("open");
        b.received_data(peer, &kp, addr_a, wire_len, n, t, &mut rng, &mut out_b);
        assert!(b.allowed_src(peer, [10, 0, 0, 1].into()));
        out.datagrams.clear();
        out_b.datagrams.clear();
    });

    // The bare AEAD: same library, same packet size, in place, a fresh nonce each time.
    let key = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &[0x42; 32]).expect("key"));
    let mut raw = pkt.clone();
    raw.resize(PACKET + TAG_LEN, 0);
    let mut ctr = 0u64;
    let bare = rate(secs, || {
        ctr += 1;
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&ctr.to_le_bytes());
        let tag = key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::empty(),
                &mut raw[..PACKET],
            )
            .expect("seal");
        raw[PACKET..].copy_from_slice(tag.as_ref());
        key.open_in_place(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut raw)
            .expect("open");
    });

    let gbps = |pps: f64| pps * PACKET as f64 * 8.0 / 1e9;
    let json = format!(
        "{{\n  \"benchmark\": \"wireguard-transport-vs-aead\",\n  \"packet_bytes\": {PACKET},\n  \"seconds_each\": {secs},\n  \"framed_encrypt_decrypt_gbps\": {:.3},\n  \"bare_aead_encrypt_decrypt_gbps\": {:.3},\n  \"framed_over_bare\": {:.3}\n}}\n",
        gbps(framed),
        gbps(bare),
        framed / bare
    );
    print!("{json}");
    if let Some(path) = arg("--out") {
        std::fs::write(&path, &json).expect("write results");
        eprintln!("results: {path}");
    }
}
