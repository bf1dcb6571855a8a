//! What WireGuard's framing costs on top of its AEAD: encrypt + decrypt of 1420-byte packets
//! through the whole transport path of `cvlan_proto::wireguard` (route, counter reservation,
//! padding, seal, parse, receiver lookup, open, replay window, bookkeeping, source check) against
//! the bare ChaCha20-Poly1305 of the same library (ring) on the same buffers, one thread.
//!
//!   cargo run --release -p cvlan-proto --example wg_transport_bench -- [--seconds 3] [--out FILE]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cvlan_proto::wireguard::constants::{TAG_LEN, TRANSPORT_HEADER_LEN};
use cvlan_proto::wireguard::messages::{self, Message};
use cvlan_proto::wireguard::{Device, Outbox, PeerConfig, SendPlan, Time};
use rand::SeedableRng;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};

const PACKET: usize = 1420;

fn ipv4(src: [u8; 4], dst: [u8; 4], total: usize, buf: &mut [u8]) {
    buf[..total].fill(0x5a);
    buf[0] = 0x45;
    buf[1] = 0;
    buf[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    buf[8] = 64;
    buf[9] = 17;
    buf[12..16].copy_from_slice(&src);
    buf[16..20].copy_from_slice(&dst);
}

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
    let mut a = Device::new(Some([0x11; 32]));
    let mut b = Device::new(Some([0x22; 32]));
    let addr_a: SocketAddr = "192.0.2.1:51820".parse().unwrap();
    let addr_b: SocketAddr = "192.0.2.2:51820".parse().unwrap();
    let pa = a.upsert_peer(PeerConfig {
        public_key: b.public_key().unwrap(),
        preshared_key: None,
        endpoint: Some(addr_b),
        persistent_keepalive: 0,
    });
    let pb = b.upsert_peer(PeerConfig {
        public_key: a.public_key().unwrap(),
        preshared_key: None,
        endpoint: None,
        persistent_keepalive: 0,
    });
    a.add_allowed_ip(pa, "10.0.0.2/32".parse().unwrap());
    b.add_allowed_ip(pb, "10.0.0.1/32".parse().unwrap());
    let t0 = Time {
        mono: Duration::from_secs(100),
        unix: Duration::from_secs(1_700_000_000),
    };

    // Handshake; the queued first packet confirms B's keypair.
    let mut first = vec![0u8; 40];
    ipv4([10, 0, 0, 1], [10, 0, 0, 2], 40, &mut first);
    let mut out = Outbox::default();
    let mut out_b = Outbox::default();
    let _ = a.prepare_send(pa, &first, t0, &mut rng, &mut out);
    let (init, _) = out.datagrams.pop().expect("initiation");
    b.handle_handshake(addr_a, &init, t0, &mut rng, &mut out_b)
        .expect("initiation accepted");
    let (resp, _) = out_b.datagrams.pop().expect("response");
    a.handle_handshake(addr_b, &resp, t0, &mut rng, &mut out)
        .expect("response accepted");
    let (mut data, _) = out.datagrams.pop().expect("queued packet");
    let Ok(Message::Transport {
        receiver, counter, ..
    }) = messages::parse(&data)
    else {
        panic!("transport message expected");
    };
    let (peer, kp) = b.lookup_receiver(receiver, t0).expect("receiver");
    let n = kp
        .open(counter, &mut data[TRANSPORT_HEADER_LEN..])
        .expect("opens");
    b.received_data(peer, &kp, addr_a, data.len(), n, t0, &mut rng, &mut out_b);

    let mut pkt = vec![0u8; PACKET];
    ipv4([10, 0, 0, 1], [10, 0, 0, 2], PACKET, &mut pkt);
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
