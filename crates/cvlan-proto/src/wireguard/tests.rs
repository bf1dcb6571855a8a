//! Vectors and two in-memory peers on a virtual clock.

use super::constants::*;
use super::cookie::CookieState;
use super::crypto;
use super::device::{Device, Event, Outbox, PeerConfig, PeerId, SendPlan, Time};
use super::drop_reason::DropReason;
use super::handshake::{self, Identity, PeerKeys};
use super::messages::{self, init, resp, Message};
use rand::{Rng, SeedableRng};
use rand_core::{CryptoRng, RngCore};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

fn hex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

fn vectors() -> std::collections::HashMap<String, Vec<u8>> {
    include_str!("../../tests/vectors/wireguard_vectors.txt")
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| !k.starts_with("tai_"))
        .map(|(k, v)| (k.to_string(), hex(v)))
        .collect()
}

fn arr(v: &[u8]) -> [u8; 32] {
    v.try_into().unwrap()
}

/// An RNG that hands out fixed bytes (ephemeral keys of a known-answer test).
struct FixedRng(VecDeque<u8>);
impl RngCore for FixedRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for d in dest {
            *d = self.0.pop_front().expect("fixed bytes exhausted");
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}
impl CryptoRng for FixedRng {}

#[test]
fn construction_and_identifier_hashes() {
    // Computed independently with Python's hashlib.blake2s.
    let (ck, h) = handshake::initial_chain_and_hash();
    assert_eq!(
        hex::encode(ck),
        "60e26daef327efc02ec335e2a025d2d016eb4206f87277f52d38d1988b78cd36"
    );
    assert_eq!(
        hex::encode(h),
        "2211b361081ac566691243db458ad5322d9c6c662293e8b70ee19c65ba079ef3"
    );
}

#[test]
fn primitive_vectors() {
    // RFC 7693 Appendix B: BLAKE2s-256("abc").
    assert_eq!(
        hex::encode(crypto::hash(&[b"abc"])),
        "508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982"
    );
    // Keyed BLAKE2s-128 and HMAC-BLAKE2s, reference values from Python's hashlib/hmac.
    let key: [u8; 32] = std::array::from_fn(|i| i as u8);
    assert_eq!(
        hex::encode(crypto::mac(&key, &[b"hel", b"lo"])),
        "1f946dc212a39570bc06fd378517a91e"
    );
    assert_eq!(
        hex::encode(crypto::hmac(
            b"key",
            &[b"The quick brown fox jumps over the lazy dog"]
        )),
        "f93215bb90d4af4c3061cd932fb169fb8bb8a91d0b4022baea1271e1323cd9a0"
    );
    // RFC 8439 §2.8.2 AEAD test vector.
    let k: [u8; 32] = std::array::from_fn(|i| 0x80 + i as u8);
    let nonce = hex("070000004041424344454647");
    let aad = hex("50515253c0c1c2c3c4c5c6c7");
    let pt = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
    use chacha20poly1305::aead::{Aead, KeyInit, Payload};
    let ct = chacha20poly1305::ChaCha20Poly1305::new(&k.into())
        .encrypt(nonce.as_slice().into(), Payload { msg: pt, aad: &aad })
        .unwrap();
    assert_eq!(
        hex::encode(&ct[ct.len() - 16..]),
        "1ae10b594f09e26a7e902ecbd0600691"
    );
    assert!(hex::encode(&ct)
        .starts_with("d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6"));
    // The transport cipher is ring's: the same vector through it (the RFC nonce has a non-zero
    // prefix, which WireGuard's counter nonces never do, so ring is driven directly).
    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
    let rk = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &k).unwrap());
    let mut buf = pt.to_vec();
    rk.seal_in_place_append_tag(
        Nonce::try_assume_unique_for_key(&nonce).unwrap(),
        Aad::from(&aad),
        &mut buf,
    )
    .unwrap();
    assert_eq!(buf, ct);
}

/// Runs both handshake roles with the fixed keys, ephemerals and timestamp of the vector file
/// and checks every message byte and the derived transport keys.
fn check_handshake_vector(tag: &str) {
    let v = vectors();
    let g = |k: &str| v[&format!("{tag}_{k}")].clone();
    let ident_i = Identity::new(arr(&g("s_i")));
    let ident_r = Identity::new(arr(&g("s_r")));
    assert_eq!(ident_i.public.to_vec(), g("s_i_pub"));
    assert_eq!(ident_r.public.to_vec(), g("s_r_pub"));
    let psk = arr(&g("psk"));
    let peer_r_at_i = PeerKeys::new(Some(&ident_i), ident_r.public, psk);
    let peer_i_at_r = PeerKeys::new(Some(&ident_r), ident_i.public, psk);
    let ts: [u8; 12] = g("ts").as_slice().try_into().unwrap();
    let idx_i = u32::from_be_bytes(g("idx_i").try_into().unwrap());
    let idx_r = u32::from_be_bytes(g("idx_r").try_into().unwrap());

    let mut rng = FixedRng(g("e_i").into_iter().collect());
    let (mut msg, state) =
        handshake::create_initiation(&ident_i, &peer_r_at_i, idx_i, ts, &mut rng).unwrap();
    let mut cookie = CookieState::default();
    cookie.stamp(&peer_r_at_i.mac1_key, &mut msg, init::MAC1, Duration::ZERO);
    assert_eq!(
        hex::encode(msg),
        hex::encode(g("initiation")),
        "{tag} initiation"
    );

    assert!(super::cookie::CookieChecker::check_mac1(
        &ident_r.mac1_key,
        &msg,
        init::MAC1
    ));
    let consumed = handshake::consume_initiation(&ident_r, &msg).unwrap();
    assert_eq!(consumed.remote_static, ident_i.public);
    assert_eq!(consumed.timestamp, ts);
    assert_eq!(consumed.remote_index, idx_i);
    let mut rng = FixedRng(g("e_r").into_iter().collect());
    let (mut rmsg, keys_r) =
        handshake::create_response(&peer_i_at_r, &consumed, idx_r, &mut rng).unwrap();
    let mut cookie_r = CookieState::default();
    cookie_r.stamp(&peer_i_at_r.mac1_key, &mut rmsg, resp::MAC1, Duration::ZERO);
    assert_eq!(
        hex::encode(rmsg),
        hex::encode(g("response")),
        "{tag} response"
    );

    let keys_i = handshake::consume_response(&ident_i, &peer_r_at_i, &state, &rmsg).unwrap();
    assert_eq!(keys_i.send.to_vec(), g("t_i_send"));
    assert_eq!(keys_i.recv.to_vec(), g("t_i_recv"));
    assert_eq!(keys_r.recv.to_vec(), g("t_i_send"));
    assert_eq!(keys_r.send.to_vec(), g("t_i_recv"));
    assert_eq!((keys_i.local_index, keys_i.remote_index), (idx_i, idx_r));
    assert_eq!((keys_r.local_index, keys_r.remote_index), (idx_r, idx_i));

    // §5.4.6: whole transport messages, padding included, both directions.
    let kp_i = super::Keypair::new(
        &keys_i.send,
        &keys_i.recv,
        idx_i,
        idx_r,
        Duration::ZERO,
        true,
    );
    let kp_r = super::Keypair::new(
        &keys_r.send,
        &keys_r.recv,
        idx_r,
        idx_i,
        Duration::ZERO,
        false,
    );
    let packet = g("packet");
    let mut buf = vec![0xaau8; 16 + 64];
    buf[16..16 + packet.len()].copy_from_slice(&packet);
    let r = kp_i.seal(0, &mut buf, 16, packet.len()).unwrap();
    assert_eq!(
        hex::encode(&buf[r.clone()]),
        hex::encode(g("transport_i2r")),
        "{tag} data"
    );
    let mut wire = buf[r].to_vec();
    let n = kp_r.open(0, &mut wire[16..]).unwrap();
    assert_eq!(&wire[16..16 + packet.len()], &packet[..]);
    assert_eq!(n, 32, "padded to 16");
    let mut ka = vec![0u8; 32];
    let r = kp_r.seal(0, &mut ka, 16, 0).unwrap();
    assert_eq!(
        hex::encode(&ka[r]),
        hex::encode(g("keepalive_r2i")),
        "{tag} keepalive"
    );
    assert_eq!(kp_i.open(0, &mut ka[16..]), Ok(0));
}

#[test]
fn full_handshake_matches_independent_computation() {
    check_handshake_vector("psk");
}

#[test]
fn full_handshake_without_psk_matches_independent_computation() {
    check_handshake_vector("nopsk");
}

#[test]
fn kdf_tai64n_and_xaead_match_independent_computation() {
    let v = vectors();
    let [t1, t2, t3] = crypto::kdf::<3>(&v["kdf_key"], &v["kdf_input"]);
    assert_eq!(t1.to_vec(), v["kdf_t1"]);
    assert_eq!(t2.to_vec(), v["kdf_t2"]);
    assert_eq!(t3.to_vec(), v["kdf_t3"]);
    let [only] = crypto::kdf::<1>(&v["kdf_key"], &v["kdf_input"]);
    assert_eq!(
        only.to_vec(),
        v["kdf_t1"],
        "KDF1 is the first output of KDF3"
    );

    // The two decimal fields are not hex: read them from the file itself.
    let raw = include_str!("../../tests/vectors/wireguard_vectors.txt");
    let field = |k: &str| {
        raw.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap()
            .to_string()
    };
    let secs: u64 = field("tai_unix_secs").parse().unwrap();
    let nanos: u32 = field("tai_nanos").parse().unwrap();
    assert_eq!(super::tai64n::encode(secs, nanos).to_vec(), v["tai64n"]);

    // draft-irtf-cfrg-xchacha-03 §A.3.1: the published tag, and the whole ciphertext as
    // libsodium computes it.
    let key: [u8; 32] = std::array::from_fn(|i| 0x80 + i as u8);
    let nonce: [u8; 24] = std::array::from_fn(|i| 0x40 + i as u8);
    let aad = hex("50515253c0c1c2c3c4c5c6c7");
    let pt = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
    let ct = crypto::xaead_seal(&key, &nonce, pt, &aad);
    assert_eq!(
        hex::encode(&ct[ct.len() - 16..]),
        "c0875924c1c7987947deafd8780acf49"
    );
    assert_eq!(ct, v["xaead"]);
    assert_eq!(crypto::xaead_open(&key, &nonce, &ct, &aad).unwrap(), pt);
}

#[test]
fn cookie_reply_and_mac2_match_independent_computation() {
    let v = vectors();
    let ident_r = Identity::new(arr(&v["psk_s_r"]));
    let ident_i = Identity::new(arr(&v["psk_s_i"]));
    let init_msg: [u8; INITIATION_LEN] = v["psk_initiation"].as_slice().try_into().unwrap();
    let src: SocketAddr = "192.0.2.1:51820".parse().unwrap();
    let mut checker = super::cookie::CookieChecker::default();
    // The checker draws a fresh secret, then the reply's nonce.
    let mut rng = FixedRng(
        v["cookie_secret"]
            .iter()
            .chain(v["cookie_nonce"].iter())
            .copied()
            .collect(),
    );
    let now = Duration::from_secs(5);
    let reply = checker.create_reply(
        &ident_r.cookie_key,
        &init_msg,
        init::MAC1,
        0x01020304,
        src,
        now,
        &mut rng,
    );
    assert_eq!(hex::encode(reply), hex::encode(&v["cookie_reply"]));
    assert!(
        !checker.check_mac2(&init_msg, init::MAC2, src, now),
        "no MAC2 yet"
    );

    // The initiator takes the cookie (it must have sent that MAC1) and stamps MAC2 next time.
    let peer_r = PeerKeys::new(Some(&ident_i), ident_r.public, arr(&v["psk_psk"]));
    let mut state = CookieState::default();
    let mut msg = init_msg;
    state.stamp(&peer_r.mac1_key, &mut msg, init::MAC1, now);
    assert_eq!(msg, init_msg, "no cookie: MAC2 stays zero");
    assert!(state.consume_reply(&peer_r.cookie_key, &reply, now));
    state.stamp(&peer_r.mac1_key, &mut msg, init::MAC1, now);
    assert_eq!(
        hex::encode(&msg[init::MAC2..]),
        hex::encode(&v["initiation_mac2"])
    );
    assert!(checker.check_mac2(&msg, init::MAC2, src, now));
    let other: SocketAddr = "192.0.2.1:51821".parse().unwrap();
    assert!(
        !checker.check_mac2(&msg, init::MAC2, other, now),
        "cookie is per address"
    );
    assert!(
        !checker.check_mac2(&msg, init::MAC2, src, now + COOKIE_REFRESH_TIME),
        "secret rotated"
    );
    // A reply that does not match our last MAC1 is refused.
    let mut bad = reply;
    bad[40] ^= 1;
    let mut fresh = CookieState::default();
    fresh.stamp(&peer_r.mac1_key, &mut msg, init::MAC1, now);
    assert!(!fresh.consume_reply(&peer_r.cookie_key, &bad, now));
}

#[test]
fn low_order_keys_are_refused() {
    let ident = Identity::new([7; 32]);
    let zero = PeerKeys::new(Some(&ident), [0; 32], [0; 32]);
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    assert_eq!(
        handshake::create_initiation(&ident, &zero, 1, [0; 12], &mut rng).err(),
        Some(handshake::HandshakeError::LowOrder)
    );
}

// ---------------------------------------------------------------- in-memory pair

const A: usize = 0;
const B: usize = 1;

struct Node {
    dev: Device,
    addr: SocketAddr,
    peer: PeerId,
    delivered: Vec<Vec<u8>>,
    drops: Vec<DropReason>,
    events: Vec<Event>,
}

struct Pair {
    n: [Node; 2],
    mono: Duration,
    unix: Duration,
    rng: rand::rngs::StdRng,
    wire: VecDeque<(usize, SocketAddr, Vec<u8>)>,
    /// When false, datagrams to that node are lost.
    link_up: [bool; 2],
}

fn ipv4(src: [u8; 4], dst: [u8; 4], payload: usize) -> Vec<u8> {
    let total = 20 + payload;
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    for (i, b) in p[20..].iter_mut().enumerate() {
        *b = i as u8;
    }
    p
}

impl Pair {
    fn new() -> Pair {
        Pair::with_psk(None)
    }

    fn with_psk(psk: Option<[u8; 32]>) -> Pair {
        let mut rng = rand::rngs::StdRng::seed_from_u64(42);
        let ka: [u8; 32] = rng.gen();
        let kb: [u8; 32] = rng.gen();
        let mut da = Device::new(Some(ka));
        let mut db = Device::new(Some(kb));
        let addr_a: SocketAddr = "192.0.2.1:51820".parse().unwrap();
        let addr_b: SocketAddr = "192.0.2.2:51820".parse().unwrap();
        let pa = da.upsert_peer(PeerConfig {
            public_key: db.public_key().unwrap(),
            preshared_key: psk,
            endpoint: Some(addr_b),
            persistent_keepalive: 0,
        });
        let pb = db.upsert_peer(PeerConfig {
            public_key: da.public_key().unwrap(),
            preshared_key: psk,
            endpoint: None,
            persistent_keepalive: 0,
        });
        da.add_allowed_ip(pa, "10.0.0.2/32".parse().unwrap());
        db.add_allowed_ip(pb, "10.0.0.1/32".parse().unwrap());
        let node = |dev, addr, peer| Node {
            dev,
            addr,
            peer,
            delivered: vec![],
            drops: vec![],
            events: vec![],
        };
        Pair {
            n: [node(da, addr_a, pa), node(db, addr_b, pb)],
            mono: Duration::from_secs(1000),
            unix: Duration::from_secs(1_700_000_000),
            rng,
            wire: VecDeque::new(),
            link_up: [true, true],
        }
    }

    fn t(&self) -> Time {
        Time {
            mono: self.mono,
            unix: self.unix,
        }
    }

    fn other(i: usize) -> usize {
        1 - i
    }

    fn push_out(&mut self, from: usize, out: Outbox) {
        for (d, to) in out.datagrams {
            let dst = if to == self.n[Self::other(from)].addr {
                Self::other(from)
            } else {
                usize::MAX
            };
            if dst != usize::MAX {
                self.wire.push_back((dst, self.n[from].addr, d));
            }
        }
        self.n[from].events.extend(out.events);
        self.n[from].drops.extend(out.drops);
    }

    /// Sends an IP packet from node `from` toward the other node.
    fn send(&mut self, from: usize, pkt: &[u8]) -> bool {
        let t = self.t();
        let mut out = Outbox::default();
        let node = &mut self.n[from];
        let peer = match ip_dst(pkt).and_then(|d| node.dev.route(d)) {
            Some(p) => p,
            None => {
                node.drops.push(DropReason::NoRoute);
                return false;
            }
        };
        let plan = node.dev.prepare_send(peer, pkt, t, &mut self.rng, &mut out);
        let mut sent = false;
        if let SendPlan::Encrypt {
            keypair,
            counter,
            endpoint,
        } = plan
        {
            let mut buf = vec![0u8; 16 + pkt.len() + 32];
            buf[16..16 + pkt.len()].copy_from_slice(pkt);
            let r = keypair.seal(counter, &mut buf, 16, pkt.len()).unwrap();
            buf.truncate(r.end);
            node.dev.count_tx(peer, buf.len());
            out.datagrams.push((buf, endpoint));
            sent = true;
        } else if let SendPlan::Drop(d) = plan {
            node.drops.push(d);
        }
        self.push_out(from, out);
        sent
    }

    fn receive(&mut self, to: usize, src: SocketAddr, mut d: Vec<u8>) {
        let t = self.t();
        let mut out = Outbox::default();
        let node = &mut self.n[to];
        match messages::parse(&d) {
            Ok(Message::Transport {
                receiver, counter, ..
            }) => {
                let wire_len = d.len();
                match node.dev.lookup_receiver(receiver, t) {
                    Err(e) => node.drops.push(e),
                    Ok((peer, kp)) => match kp.open(counter, &mut d[16..]) {
                        Err(e) => node.drops.push(match e {
                            super::session::OpenError::Replayed => DropReason::Replayed,
                            super::session::OpenError::TooOld => DropReason::TooOld,
                            super::session::OpenError::Decrypt => DropReason::DecryptFailed,
                            super::session::OpenError::Exhausted => DropReason::MessageLimit,
                        }),
                        Ok(plain) => {
                            let inner = &d[16..16 + plain];
                            let inner_len = crate::ip::parse(inner).map(|i| i.len).unwrap_or(0);
                            node.dev.received_data(
                                peer,
                                &kp,
                                src,
                                wire_len,
                                inner_len,
                                t,
                                &mut self.rng,
                                &mut out,
                            );
                            if inner_len > 0 {
                                let src_ip = crate::ip::parse(inner).unwrap().src;
                                if node.dev.allowed_src(peer, src_ip) {
                                    node.delivered.push(inner[..inner_len].to_vec());
                                } else {
                                    node.drops.push(DropReason::SourceNotAllowed);
                                }
                            }
                        }
                    },
                }
            }
            _ => {
                if let Err(e) = node
                    .dev
                    .handle_handshake(src, &d, t, &mut self.rng, &mut out)
                {
                    node.drops.push(e);
                }
            }
        }
        self.push_out(to, out);
    }

    /// Delivers everything in flight (and what it triggers).
    fn flush(&mut self) {
        let mut guard = 0;
        while let Some((to, src, d)) = self.wire.pop_front() {
            guard += 1;
            assert!(guard < 10_000, "message storm");
            if self.link_up[to] {
                self.receive(to, src, d);
            }
        }
    }

    fn advance(&mut self, dt: Duration) {
        // Step in small increments so timers fire in order.
        let step = Duration::from_millis(100);
        let end = self.mono + dt;
        while self.mono < end {
            let s = step.min(end - self.mono);
            self.mono += s;
            self.unix += s;
            for i in [A, B] {
                let t = self.t();
                let mut out = Outbox::default();
                self.n[i].dev.update_timers(t, &mut self.rng, &mut out);
                self.push_out(i, out);
            }
            self.flush();
        }
    }

    fn ping(&mut self, from: usize) -> bool {
        let (s, d) = if from == A {
            ([10, 0, 0, 1], [10, 0, 0, 2])
        } else {
            ([10, 0, 0, 2], [10, 0, 0, 1])
        };
        let before = self.n[Self::other(from)].delivered.len();
        self.send(from, &ipv4(s, d, 100));
        self.flush();
        self.n[Self::other(from)].delivered.len() > before
    }

    fn handshakes(&self, i: usize) -> usize {
        self.n[i]
            .events
            .iter()
            .filter(|e| matches!(e, Event::HandshakeComplete { .. }))
            .count()
    }
}

fn ip_dst(pkt: &[u8]) -> Option<std::net::IpAddr> {
    crate::ip::parse(pkt).ok().map(|i| i.dst)
}

#[test]
fn handshake_then_data_both_ways_queued_packet_flushed() {
    let mut p = Pair::new();
    // The first packet waits for the handshake and is delivered once it completes.
    assert!(!p.send(A, &ipv4([10, 0, 0, 1], [10, 0, 0, 2], 50)));
    assert_eq!(p.n[A].dev.queued(p.n[A].peer), 1);
    p.flush();
    assert_eq!(
        p.n[B].delivered.len(),
        1,
        "queued packet flushed after the handshake"
    );
    assert_eq!(p.n[A].dev.queued(p.n[A].peer), 0);
    assert_eq!(p.handshakes(A), 1);
    assert_eq!(p.handshakes(B), 1);
    assert!(
        p.ping(B),
        "responder can send after the first data message confirmed its keypair"
    );
    assert!(p.ping(A));
    let st = p.n[B].dev.status(p.n[B].peer).unwrap();
    assert_eq!(
        st.endpoint,
        Some(p.n[A].addr),
        "responder learned the initiator's endpoint"
    );
    assert!(st.last_handshake.is_some() && st.rx_bytes > 0 && st.tx_bytes > 0);
}

#[test]
fn traffic_agrees_with_status() {
    let mut p = Pair::new();
    assert!(p.ping(A) || p.ping(A));
    assert!(p.ping(B));
    for side in [A, B] {
        let dev = &p.n[side].dev;
        let all = dev.traffic();
        assert_eq!(all.len(), dev.peer_ids().len());
        let st = dev.status(p.n[side].peer).unwrap();
        let t = all.iter().find(|t| t.public_key == st.public_key).unwrap();
        assert_eq!(
            (t.rx_bytes, t.tx_bytes, t.last_handshake),
            (st.rx_bytes, st.tx_bytes, st.last_handshake)
        );
        assert!(t.rx_bytes > 0 && t.tx_bytes > 0 && t.last_handshake.is_some());
    }
}

#[test]
fn statuses_agree_with_status_per_peer() {
    let mut p = Pair::new();
    assert!(p.ping(A) || p.ping(A));
    let dev = &mut p.n[A].dev;
    // More peers with allowed IPs of both families, one without any.
    for i in 0..5u8 {
        let id = dev.upsert_peer(PeerConfig {
            public_key: [100 + i; 32],
            preshared_key: None,
            endpoint: None,
            persistent_keepalive: 0,
        });
        if i > 0 {
            dev.add_allowed_ip(id, format!("10.{i}.0.0/16").parse().unwrap());
            dev.add_allowed_ip(id, format!("fd00:{i}::/64").parse().unwrap());
        }
    }
    let all = dev.statuses();
    let one: Vec<_> = dev
        .peer_ids()
        .into_iter()
        .filter_map(|id| dev.status(id))
        .collect();
    assert_eq!(all.len(), one.len());
    for (a, b) in all.iter().zip(&one) {
        assert_eq!(
            (
                a.id,
                a.public_key,
                &a.allowed_ips,
                a.rx_bytes,
                a.last_handshake
            ),
            (
                b.id,
                b.public_key,
                &b.allowed_ips,
                b.rx_bytes,
                b.last_handshake
            )
        );
    }
    assert!(all.iter().any(|s| s.allowed_ips.len() == 2));
}

#[test]
fn with_preshared_key_and_mismatch() {
    let mut p = Pair::with_psk(Some([9; 32]));
    assert!(p.ping(A) || p.ping(A));
    // Different PSKs: the response does not authenticate and no session comes up.
    let mut q = Pair::with_psk(Some([9; 32]));
    let pb = q.n[B].peer;
    let key = q.n[A].dev.public_key().unwrap();
    q.n[B].dev.upsert_peer(PeerConfig {
        public_key: key,
        preshared_key: Some([8; 32]),
        endpoint: None,
        persistent_keepalive: 0,
    });
    let _ = pb;
    q.send(A, &ipv4([10, 0, 0, 1], [10, 0, 0, 2], 10));
    q.flush();
    assert!(q.n[A].drops.contains(&DropReason::HandshakeDecrypt));
    assert_eq!(q.n[B].delivered.len(), 0);
}

#[test]
fn rekey_after_120s_and_key_rotation() {
    let mut p = Pair::new();
    assert!(p.ping(A) || p.ping(A));
    let first = p.n[A].dev.current_keypair(p.n[A].peer).unwrap();
    p.advance(Duration::from_secs(119));
    assert!(p.ping(A));
    assert_eq!(p.handshakes(A), 1, "no rekey before REKEY_AFTER_TIME");
    p.advance(Duration::from_secs(2));
    assert!(
        p.ping(A),
        "the packet that triggers the rekey is still sent on the old keypair"
    );
    p.flush();
    assert_eq!(p.handshakes(A), 2, "rekeyed after 120 s");
    let second = p.n[A].dev.current_keypair(p.n[A].peer).unwrap();
    assert!(!std::sync::Arc::ptr_eq(&first, &second));
    // The old keypair still decrypts (previous) right after rotation, then traffic uses the new one.
    assert!(p.ping(A) && p.ping(B));
}

#[test]
fn reject_after_180s_without_handshake_and_zero_keys_after_540s() {
    let mut p = Pair::new();
    assert!(p.ping(A) || p.ping(A));
    let kp = p.n[A].dev.current_keypair(p.n[A].peer).unwrap();
    // Cut B off: every handshake attempt from now on fails.
    p.link_up = [true, false];
    p.advance(Duration::from_secs(181));
    // A cannot send on an expired keypair: the packet is queued instead.
    assert!(!p.send(A, &ipv4([10, 0, 0, 1], [10, 0, 0, 2], 10)));
    // B rejects transport messages on a keypair past REJECT_AFTER_TIME.
    let mut buf = vec![0u8; 16 + 32 + 32];
    buf[16..16 + 28].copy_from_slice(&ipv4([10, 0, 0, 1], [10, 0, 0, 2], 8));
    let r = kp.seal(1_000, &mut buf, 16, 28).unwrap();
    buf.truncate(r.end);
    p.link_up = [true, true];
    p.receive(B, p.n[A].addr, buf);
    assert!(p.n[B].drops.contains(&DropReason::KeypairExpired));
    p.link_up = [true, false];
    p.advance(Duration::from_secs(540));
    assert!(p.n[A]
        .events
        .iter()
        .any(|e| matches!(e, Event::KeysZeroed { .. })));
    assert!(p.n[A].dev.current_keypair(p.n[A].peer).is_none());
    assert!(
        p.n[A]
            .events
            .iter()
            .any(|e| matches!(e, Event::HandshakeGaveUp { .. })),
        "gave up after 90 s of attempts"
    );
}

#[test]
fn retransmits_every_5s_and_gives_up_after_90s() {
    let mut p = Pair::new();
    p.link_up = [true, false];
    p.send(A, &ipv4([10, 0, 0, 1], [10, 0, 0, 2], 10));
    p.flush();
    let count = |p: &Pair| p.n[A].dev.status(p.n[A].peer).unwrap().tx_bytes / INITIATION_LEN as u64;
    let gave_up = |p: &Pair| {
        p.n[A]
            .events
            .iter()
            .any(|e| matches!(e, Event::HandshakeGaveUp { .. }))
    };
    assert_eq!(count(&p), 1);
    p.advance(Duration::from_millis(4_900));
    assert_eq!(count(&p), 1, "no retransmission before REKEY_TIMEOUT");
    p.advance(Duration::from_millis(500));
    assert_eq!(count(&p), 2, "retransmitted after 5 s + jitter");
    // §6.4: retries for REKEY_ATTEMPT_TIME, i.e. MAX_TIMER_HANDSHAKES retransmissions after the
    // first one, then one more timeout before giving up: 20 initiations over 100 s (+ jitter).
    p.advance(Duration::from_millis(89_000));
    assert!(!gave_up(&p), "still trying at 94.4 s");
    p.advance(Duration::from_secs(16));
    assert_eq!(count(&p), 1 + 1 + u64::from(MAX_TIMER_HANDSHAKES));
    assert!(gave_up(&p), "gave up after REKEY_ATTEMPT_TIME of retries");
    assert_eq!(
        p.n[A].dev.queued(p.n[A].peer),
        0,
        "queue dropped when giving up"
    );
    assert!(p.n[A].drops.contains(&DropReason::HandshakeTimeout));
    let sent = count(&p);
    p.advance(Duration::from_secs(30));
    assert_eq!(count(&p), sent, "no more attempts after giving up");
    // The pending handshake's index is gone, and nothing waits in the past.
    assert_eq!(p.n[A].dev.index_count(), 0);
    assert!(p.n[A].dev.poll_timeout().is_none_or(|d| d > p.mono));
}

#[test]
fn replay_and_reordering_within_the_window() {
    let mut p = Pair::new();
    assert!(p.ping(A) || p.ping(A));
    let t = p.t();
    let mut out = Outbox::default();
    let peer = p.n[A].peer;
    let mut msgs = Vec::new();
    for i in 0..50 {
        let pkt = ipv4([10, 0, 0, 1], [10, 0, 0, 2], i);
        match p.n[A].dev.prepare_send(peer, &pkt, t, &mut p.rng, &mut out) {
            SendPlan::Encrypt {
                keypair, counter, ..
            } => {
                let mut buf = vec![0u8; 16 + pkt.len() + 32];
                buf[16..16 + pkt.len()].copy_from_slice(&pkt);
                let r = keypair.seal(counter, &mut buf, 16, pkt.len()).unwrap();
                buf.truncate(r.end);
                msgs.push(buf);
            }
            _ => panic!("session expected"),
        }
    }
    let src = p.n[A].addr;
    let before = p.n[B].delivered.len();
    for m in msgs.iter().rev() {
        p.receive(B, src, m.clone());
    }
    assert_eq!(
        p.n[B].delivered.len(),
        before + 50,
        "reordered packets within the window are accepted"
    );
    p.receive(B, src, msgs[7].clone());
    assert!(p.n[B].drops.contains(&DropReason::Replayed));
    let mut forged = msgs[8].clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    p.receive(B, src, forged);
    assert!(
        p.n[B].drops.contains(&DropReason::Replayed),
        "a replay is caught before decryption"
    );
    // A counter far behind the window.
    let kp = p.n[A].dev.current_keypair(peer).unwrap();
    kp.send_counter
        .store(REPLAY_WINDOW + 1000, std::sync::atomic::Ordering::Relaxed);
    assert!(p.ping(A));
    let pkt = ipv4([10, 0, 0, 1], [10, 0, 0, 2], 5);
    let mut buf = vec![0u8; 16 + pkt.len() + 32];
    buf[16..16 + pkt.len()].copy_from_slice(&pkt);
    let r = kp.seal(60, &mut buf, 16, pkt.len()).unwrap();
    buf.truncate(r.end);
    p.receive(B, src, buf);
    assert!(p.n[B].drops.contains(&DropReason::TooOld));
}

#[test]
fn cookie_reply_under_load_then_mac2_accepted() {
    let mut p = Pair::new();
    p.n[B].dev.under_load = true;
    p.send(A, &ipv4([10, 0, 0, 1], [10, 0, 0, 2], 10));
    p.flush();
    assert!(
        p.n[B].drops.contains(&DropReason::CookieRequired),
        "no MAC2: answered with a cookie reply only"
    );
    assert_eq!(p.handshakes(B), 0);
    // A stored the cookie; its retransmission carries MAC2 and is answered.
    p.advance(Duration::from_secs(6));
    assert_eq!(p.handshakes(B), 1);
    assert_eq!(p.n[B].delivered.len(), 1);
    // Forged cookie replies are refused.
    let mut bogus = vec![0u8; COOKIE_REPLY_LEN];
    bogus[0] = MSG_COOKIE_REPLY;
    let addr = p.n[B].addr;
    p.receive(A, addr, bogus);
    assert!(
        p.n[A].drops.contains(&DropReason::UnknownReceiver)
            || p.n[A].drops.contains(&DropReason::BadCookieReply)
    );
}

#[test]
fn roaming_follows_authenticated_packets() {
    let mut p = Pair::new();
    assert!(p.ping(A) || p.ping(A));
    let new_addr: SocketAddr = "198.51.100.7:40000".parse().unwrap();
    p.n[A].addr = new_addr;
    assert!(p.ping(A));
    assert_eq!(
        p.n[B].dev.status(p.n[B].peer).unwrap().endpoint,
        Some(new_addr)
    );
    assert!(p.n[B]
        .events
        .iter()
        .any(|e| matches!(e, Event::EndpointChanged { endpoint, .. } if *endpoint == new_addr)));
    assert!(p.ping(B), "replies go to the new address");
    // An unauthenticated packet from elsewhere does not move the endpoint.
    p.receive(
        B,
        "203.0.113.9:1".parse().unwrap(),
        vec![
            4, 0, 0, 0, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0,
        ],
    );
    assert_eq!(
        p.n[B].dev.status(p.n[B].peer).unwrap().endpoint,
        Some(new_addr)
    );
}

#[test]
fn keepalive_after_10s_of_receive_only_and_persistent_keepalive() {
    let mut p = Pair::new();
    assert!(p.ping(A) || p.ping(A));
    let rx_before = p.n[A].dev.status(p.n[A].peer).unwrap().rx_bytes;
    assert!(p.ping(A));
    p.advance(Duration::from_secs(11));
    let rx = p.n[A].dev.status(p.n[A].peer).unwrap().rx_bytes;
    assert_eq!(
        rx - rx_before,
        KEEPALIVE_LEN as u64,
        "B answered A's data with one keepalive after 10 s"
    );
    // Persistent keepalive every 25 s from B.
    let now = p.mono;
    let peer = p.n[B].peer;
    p.n[B].dev.set_persistent_keepalive(peer, 25, now);
    let rx0 = p.n[A].dev.status(p.n[A].peer).unwrap().rx_bytes;
    p.advance(Duration::from_secs(51));
    let got = (p.n[A].dev.status(p.n[A].peer).unwrap().rx_bytes - rx0) / KEEPALIVE_LEN as u64;
    assert!((2..=3).contains(&got), "persistent keepalives: {got}");
}

#[test]
fn source_outside_allowed_ips_is_dropped() {
    let mut p = Pair::new();
    assert!(p.ping(A) || p.ping(A));
    // A has a route for 10.9.9.9 via B, but B does not allow that source from A.
    let pa = p.n[A].peer;
    p.n[A]
        .dev
        .add_allowed_ip(pa, "10.9.0.0/16".parse().unwrap());
    p.send(A, &ipv4([10, 0, 0, 7], [10, 9, 9, 9], 10));
    p.flush();
    assert!(p.n[B].drops.contains(&DropReason::SourceNotAllowed));
}

#[test]
fn stale_and_replayed_initiations_are_refused() {
    let mut p = Pair::new();
    p.send(A, &ipv4([10, 0, 0, 1], [10, 0, 0, 2], 10));
    let (_, src, init) = p.wire.pop_front().unwrap();
    p.receive(B, src, init.clone());
    assert_eq!(p.wire.len(), 1, "answered with a response");
    p.wire.clear();
    p.mono += Duration::from_secs(1);
    p.receive(B, src, init);
    assert!(p.n[B].drops.contains(&DropReason::StaleInitiation));
}

#[test]
fn peer_removal_clears_indices_and_routes() {
    let mut p = Pair::new();
    assert!(p.ping(A) || p.ping(A));
    assert!(p.n[A].dev.index_count() > 0);
    let pa = p.n[A].peer;
    p.n[A].dev.remove_peer(pa);
    assert_eq!(p.n[A].dev.index_count(), 0);
    assert!(p.n[A].dev.route("10.0.0.2".parse().unwrap()).is_none());
    assert!(p.n[A].dev.status(pa).is_none());
    // Re-adding works and a new handshake comes up.
    let key = p.n[B].dev.public_key().unwrap();
    let addr = p.n[B].addr;
    let id = p.n[A].dev.upsert_peer(PeerConfig {
        public_key: key,
        preshared_key: None,
        endpoint: Some(addr),
        persistent_keepalive: 0,
    });
    p.n[A]
        .dev
        .add_allowed_ip(id, "10.0.0.2/32".parse().unwrap());
    p.n[A].peer = id;
    p.advance(Duration::from_secs(1));
    assert!(p.ping(A) || p.ping(A));
}

#[test]
fn garbage_never_panics_and_is_never_answered() {
    let mut p = Pair::new();
    assert!(p.ping(A) || p.ping(A));
    let mut rng = rand::rngs::StdRng::seed_from_u64(99);
    let t = p.t();
    let valid_init = {
        let mut q = Pair::new();
        q.send(A, &ipv4([10, 0, 0, 1], [10, 0, 0, 2], 10));
        q.wire.pop_front().unwrap().2
    };
    for i in 0..40_000 {
        // The second half runs under load: then a cookie reply is the only possible answer.
        p.n[B].dev.under_load = i >= 20_000;
        let mut d: Vec<u8> = match i % 4 {
            0 => (0..rng.gen_range(0..200)).map(|_| rng.gen()).collect(),
            1 => {
                let mut v = valid_init.clone();
                let j = rng.gen_range(0..v.len());
                v[j] ^= 1 << rng.gen_range(0..8);
                v
            }
            2 => valid_init[..rng.gen_range(0..valid_init.len())].to_vec(),
            _ => {
                let mut v = vec![rng.gen_range(1..5u8), 0, 0, 0];
                v.extend((0..rng.gen_range(0..160)).map(|_| rng.gen::<u8>()));
                v
            }
        };
        let mut out = Outbox::default();
        let src: SocketAddr = "203.0.113.1:9".parse().unwrap();
        match messages::parse(&d) {
            Ok(Message::Transport {
                receiver, counter, ..
            }) => {
                if let Ok((_, kp)) = p.n[B].dev.lookup_receiver(receiver, t) {
                    assert!(kp.open(counter, &mut d[16..]).is_err());
                }
            }
            _ => {
                let _ = p.n[B].dev.handle_handshake(src, &d, t, &mut rng, &mut out);
            }
        }
        assert!(
            out.datagrams
                .iter()
                .all(|(m, _)| p.n[B].dev.under_load && m.len() == COOKIE_REPLY_LEN && m[0] == 3),
            "unauthenticated input answered: {:02x?}",
            &d[..d.len().min(8)]
        );
    }
}

#[test]
fn data_arriving_while_a_keepalive_is_pending_earns_another_one() {
    let mut p = Pair::new();
    assert!(p.ping(A));
    let tx = |p: &Pair| p.n[B].dev.status(p.n[B].peer).unwrap().tx_bytes;
    let before = tx(&p);
    // A keeps sending for 9 s, B has nothing to say.
    for _ in 0..9 {
        p.advance(Duration::from_secs(1));
        assert!(p.ping(A));
    }
    p.advance(Duration::from_millis(1_500));
    assert_eq!(
        tx(&p) - before,
        KEEPALIVE_LEN as u64,
        "first keepalive at 10 s"
    );
    p.advance(Duration::from_secs(10));
    assert_eq!(
        tx(&p) - before,
        2 * KEEPALIVE_LEN as u64,
        "one more: data came while the first was pending"
    );
    p.advance(Duration::from_secs(30));
    assert_eq!(tx(&p) - before, 2 * KEEPALIVE_LEN as u64, "then quiet");
}

#[test]
fn responder_completes_on_first_data_and_pending_index_carries_no_data() {
    let mut p = Pair::new();
    p.send(A, &ipv4([10, 0, 0, 1], [10, 0, 0, 2], 10));
    let (to, src, init) = p.wire.pop_front().unwrap();
    assert_eq!(to, B);
    // A transport message aimed at the initiation's sender index: no keys exist for it yet.
    let sender = messages::le32(&init[init::SENDER..]);
    assert_eq!(
        p.n[A].dev.lookup_receiver(sender, p.t()).err(),
        Some(DropReason::DataBeforeHandshake)
    );
    p.receive(B, src, init);
    let peer_b = p.n[B].peer;
    assert_eq!(p.n[B].dev.status(peer_b).unwrap().last_handshake, None);
    assert!(
        p.n[B].dev.current_keypair(peer_b).is_none(),
        "responder waits"
    );
    // B has something to send before confirmation: it is queued, not sent with unconfirmed keys.
    assert!(!p.send(B, &ipv4([10, 0, 0, 2], [10, 0, 0, 1], 10)));
    assert_eq!(p.n[B].dev.queued(peer_b), 1);
    p.flush();
    let st = p.n[B].dev.status(peer_b).unwrap();
    assert_eq!(st.last_handshake, Some(p.unix));
    assert_eq!(st.last_handshake_mono, Some(p.mono));
    assert_eq!(p.n[B].dev.queued(peer_b), 0, "flushed on confirmation");
    assert_eq!(p.n[A].delivered.len(), 1);
    assert_eq!(p.n[B].delivered.len(), 1);
    assert!(p.n[B].events.contains(&Event::HandshakeComplete {
        peer: peer_b,
        initiator: false
    }));
}

#[test]
fn initiator_renews_a_receive_only_session_before_reject_after_time() {
    let mut p = Pair::new();
    assert!(p.ping(A));
    let initiated = |p: &Pair| {
        p.n[A]
            .events
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    Event::HandshakeComplete {
                        initiator: true,
                        ..
                    }
                )
            })
            .count()
    };
    assert_eq!(initiated(&p), 1);
    // Only B sends data (A answers with keepalives): A never hits REKEY_AFTER_TIME on its
    // send path, so the receive path must renew before B's keys expire at 180 s.
    for s in 1..=200 {
        p.advance(Duration::from_secs(1));
        assert!(p.ping(B), "B's data at {s} s");
    }
    assert_eq!(initiated(&p), 2, "exactly one last-minute handshake");
}

#[test]
fn removing_the_endpoint_mid_handshake_leaves_no_past_deadline() {
    let mut p = Pair::new();
    p.link_up = [true, false];
    p.send(A, &ipv4([10, 0, 0, 1], [10, 0, 0, 2], 10));
    p.flush();
    let peer = p.n[A].peer;
    p.n[A].dev.set_endpoint(peer, None);
    p.advance(Duration::from_secs(6));
    let next = p.n[A].dev.poll_timeout();
    assert!(next.is_none_or(|d| d > p.mono), "{next:?} <= {:?}", p.mono);
}

/// The gate with `ident_r`'s keys and an initiation to it whose MAC1 is valid.
fn gate_and_initiation() -> (super::gate::HandshakeGate, [u8; INITIATION_LEN], PeerKeys) {
    let v = vectors();
    let ident_r = Identity::new(arr(&v["psk_s_r"]));
    let ident_i = Identity::new(arr(&v["psk_s_i"]));
    let gate = super::gate::HandshakeGate::default();
    gate.set_identity(Some(&ident_r));
    let init_msg: [u8; INITIATION_LEN] = v["psk_initiation"].as_slice().try_into().unwrap();
    let peer_r = PeerKeys::new(Some(&ident_i), ident_r.public, arr(&v["psk_psk"]));
    (gate, init_msg, peer_r)
}

#[test]
fn under_load_lasts_a_second_beyond_the_rate() {
    use super::gate::{HandshakeGate, UNDER_LOAD_MESSAGES_PER_SEC};
    let g = HandshakeGate::default();
    let ms = Duration::from_millis;
    // 600 messages spread over 10.0–10.6 s: under load from the 501st on.
    let flags: Vec<bool> = (0..600).map(|i| g.note_message(ms(10_000 + i))).collect();
    assert!(!flags[UNDER_LOAD_MESSAGES_PER_SEC as usize - 1]);
    assert!(flags[UNDER_LOAD_MESSAGES_PER_SEC as usize..]
        .iter()
        .all(|f| *f));
    // A new second starts counting at zero, but the load holds (until 10.599 + 1 s).
    assert!(g.note_message(ms(11_050)));
    assert!(g.note_message(ms(11_590)));
    assert!(!g.note_message(ms(11_700)));
}

#[test]
fn the_gate_answers_a_flood_with_cookies_and_limits_only_valid_mac2() {
    use super::gate::Admission;
    let (gate, msg, peer_r) = gate_and_initiation();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let src: SocketAddr = "192.0.2.1:51820".parse().unwrap();
    let now = Duration::from_secs(5);
    assert_eq!(
        gate.admit(src, &msg, false, now, &mut rng),
        Ok(Admission::Handshake)
    );
    let mut bad = msg;
    bad[init::MAC1] ^= 1;
    assert_eq!(
        gate.admit(src, &bad, true, now, &mut rng),
        Err(DropReason::BadMac1)
    );
    // Under load, without MAC2: a cookie reply every time, and no rate-limiter token spent.
    let mut reply = None;
    for _ in 0..100 {
        match gate.admit(src, &msg, true, now, &mut rng) {
            Ok(Admission::SendCookie(r)) => reply = Some(r),
            other => panic!("{other:?}"),
        }
    }
    // With the cookie's MAC2: admitted within the per-source burst, then limited.
    let mut state = CookieState::default();
    let mut stamped = msg;
    state.stamp(&peer_r.mac1_key, &mut stamped, init::MAC1, now);
    assert!(state.consume_reply(&peer_r.cookie_key, &reply.unwrap(), now));
    state.stamp(&peer_r.mac1_key, &mut stamped, init::MAC1, now);
    let results: Vec<_> = (0..HANDSHAKE_BURST + 3)
        .map(|_| gate.admit(src, &stamped, true, now, &mut rng))
        .collect();
    assert!(results[..HANDSHAKE_BURST as usize]
        .iter()
        .all(|r| *r == Ok(Admission::Handshake)));
    assert!(results[HANDSHAKE_BURST as usize..]
        .iter()
        .all(|r| *r == Err(DropReason::RateLimited)));
    // Without an identity nothing passes.
    gate.set_identity(None);
    assert_eq!(
        gate.admit(src, &msg, false, now, &mut rng),
        Err(DropReason::NoIdentity)
    );
}
