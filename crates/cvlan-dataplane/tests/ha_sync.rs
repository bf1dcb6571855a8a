//! Two data planes' WireGuard engines and the HA sync channel between them over loopback, with
//! a WireGuard peer in memory: the standby takes the session over without a handshake, and no
//! counter is used twice, even while the old active keeps sending (split brain).

use cvlan_dataplane::ha::{HaConfig, HaEvent, HaSync, Role};
use cvlan_dataplane::wireguard::WireGuard;
use cvlan_proto::wireguard::{Device, Keypair, Outbox, PeerConfig, SendPlan};
use rand_core::OsRng;
use std::collections::HashSet;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

const NODE_KEY: [u8; 32] = [0x11; 32];
const PEER_KEY: [u8; 32] = [0x22; 32];
const PEER_ADDR: &str = "192.0.2.7:51820";
const NODE_ADDR: &str = "192.0.2.1:51820";
const LEASE: u64 = 500;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn public(k: [u8; 32]) -> [u8; 32] {
    Device::new(Some(k)).public_key().unwrap()
}

fn engine() -> Arc<WireGuard> {
    let wg = WireGuard::new(Some(NODE_KEY));
    wg.with(|d| {
        let id = d.upsert_peer(PeerConfig {
            public_key: public(PEER_KEY),
            preshared_key: None,
            endpoint: Some(PEER_ADDR.parse().unwrap()),
            persistent_keepalive: 0,
        });
        d.add_allowed_ip(id, "10.9.0.0/24".parse().unwrap());
    });
    wg
}

type Events = Arc<Mutex<Vec<HaEvent>>>;

fn channel(node_id: u8, listen: u16, peer: u16, key: u8) -> (HaSync, Events) {
    channel_with_relay(node_id, listen, peer, key, None)
}

fn channel_with_relay(
    node_id: u8,
    listen: u16,
    peer: u16,
    key: u8,
    relay: Option<(SocketAddr, SocketAddr)>,
) -> (HaSync, Events) {
    let events: Events = Arc::default();
    let e = events.clone();
    let ha = HaSync::start(
        HaConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], listen)),
            peer: SocketAddr::from(([127, 0, 0, 1], peer)),
            key: Zeroizing::new([key; 32]),
            node_id,
            sync_interval: Duration::from_millis(20),
            lease: LEASE,
            relay,
        },
        Arc::new(move |ev| e.lock().unwrap().push(ev)),
    )
    .unwrap();
    (ha, events)
}

fn wait(what: &str, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One data message from an engine to the peer; `None` once the engine may not send on the
/// session any more (it queued the packet and wants a handshake instead).
fn send(wg: &WireGuard, peer_dev: &Mutex<Device>) -> Option<(u32, u64)> {
    send_or_initiate(wg, peer_dev).ok()
}

/// As `send`, or what the engine wanted sent instead (a handshake initiation).
fn send_or_initiate(wg: &WireGuard, peer_dev: &Mutex<Device>) -> Result<(u32, u64), Outbox> {
    let t = wg.time();
    let mut out = Outbox::default();
    let pkt = ipv4_packet();
    let plan = wg.with(|d| {
        let id = d.route("10.9.0.5".parse().unwrap()).unwrap();
        d.prepare_send(id, &pkt, t, &mut OsRng, &mut out)
    });
    let SendPlan::Encrypt {
        keypair, counter, ..
    } = plan
    else {
        return Err(out);
    };
    let mut buf = vec![0u8; 16 + pkt.len() + 32];
    buf[16..16 + pkt.len()].copy_from_slice(&pkt);
    let r = keypair.seal(counter, &mut buf, 16, pkt.len()).unwrap();
    let msg = buf[r].to_vec();
    let receiver = u32::from_le_bytes(msg[4..8].try_into().unwrap());
    // The peer opens it with the session it has: no new handshake anywhere.
    let peer = peer_dev.lock().unwrap();
    let (_, kp) = peer.lookup_receiver(receiver, t).unwrap();
    let mut payload = msg[16..].to_vec();
    kp.open(counter, &mut payload).expect("the peer accepts it");
    Ok((receiver, counter))
}

fn ipv4_packet() -> Vec<u8> {
    let mut p = vec![0u8; 28];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&28u16.to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&[10, 9, 0, 1]);
    p[16..20].copy_from_slice(&[10, 9, 0, 5]);
    p
}

/// The peer initiates; the active answers; the peer's first data message confirms it.
fn establish(active: &WireGuard, peer_dev: &Mutex<Device>, src: SocketAddr) -> Arc<Keypair> {
    let mut peer = peer_dev.lock().unwrap();
    let t = active.time();
    let mut out = Outbox::default();
    let pid = peer.peer_id(&public(NODE_KEY)).unwrap();
    let pkt = ipv4_packet();
    assert!(matches!(
        peer.prepare_send(pid, &pkt, t, &mut OsRng, &mut out),
        SendPlan::Queued
    ));
    let (init, _) = out.datagrams.remove(0);
    let mut resp = Outbox::default();
    active
        .with(|d| d.handle_handshake(src, &init, t, &mut OsRng, &mut resp))
        .unwrap();
    let (response, _) = resp.datagrams.remove(0);
    let mut out = Outbox::default();
    peer.handle_handshake(
        NODE_ADDR.parse().unwrap(),
        &response,
        t,
        &mut OsRng,
        &mut out,
    )
    .unwrap();
    // The queued packet left with the new session: the active receives it.
    let (data, _) = out
        .datagrams
        .into_iter()
        .find(|(d, _)| d[0] == 4)
        .expect("queued packet sent");
    let receiver = u32::from_le_bytes(data[4..8].try_into().unwrap());
    let counter = u64::from_le_bytes(data[8..16].try_into().unwrap());
    let (id, kp) = active.with(|d| d.lookup_receiver(receiver, t)).unwrap();
    let mut payload = data[16..].to_vec();
    let n = kp.open(counter, &mut payload).unwrap();
    let mut o = Outbox::default();
    active.with(|d| d.received_data(id, &kp, src, data.len(), n, t, &mut OsRng, &mut o));
    peer.current_keypair(pid).unwrap()
}

#[test]
fn standby_takes_over_the_session_and_never_reuses_a_counter() {
    // The session exists before HA starts: the snapshot carries it, and the active's engine
    // brings it along with a limit set from where it is.
    let (wa, wb) = (engine(), engine());
    let peer_dev = Mutex::new(Device::new(Some(PEER_KEY)));
    {
        let mut p = peer_dev.lock().unwrap();
        let id = p.upsert_peer(PeerConfig {
            public_key: public(NODE_KEY),
            preshared_key: None,
            endpoint: Some(NODE_ADDR.parse().unwrap()),
            persistent_keepalive: 0,
        });
        p.add_allowed_ip(id, "10.9.0.0/24".parse().unwrap());
    }
    let peer_kp = establish(&wa, &peer_dev, PEER_ADDR.parse().unwrap());
    let (pa, pb) = (free_port(), free_port());
    let (a, a_events) = channel(1, pa, pb, 7);
    let (b, b_events) = channel(2, pb, pa, 7);
    a.attach_wireguard(wa.clone());
    b.attach_wireguard(wb.clone());
    assert!(wa.is_passive() && wb.is_passive(), "both start as standby");
    a.set_role(Role::Active);
    assert!(!wa.is_passive());
    assert_eq!(peer_kp.remote_index, wa.with(|d| d.session_counters())[0].0);

    let mut used: HashSet<(u32, u64)> = HashSet::new();
    // Before the standby acknowledged anything, the lease bounds the active.
    wait("the standby to hold the session", || {
        b.status().synced_wg_sessions == 1 && a.status().synced_wg_sessions == 1
    });
    for _ in 0..300 {
        assert!(used.insert(send(&wa, &peer_dev).expect("within the lease")));
    }
    let a_top = used.iter().map(|u| u.1).max().unwrap();
    wait("the standby to store the counters", || {
        b.status().frames_received > 20
            && wb
                .with(|d| d.session_counters())
                .first()
                .is_some_and(|c| c.1 > a_top)
    });
    assert!(b_events
        .lock()
        .unwrap()
        .iter()
        .any(|e| matches!(e, HaEvent::SnapshotDone { sessions: 1 })));
    assert!(a_events
        .lock()
        .unwrap()
        .iter()
        .any(|e| matches!(e, HaEvent::PeerUp { node_id: 2, .. })));

    // Takeover while the old active is still alive (split brain).
    b.set_role(Role::Active);
    assert!(b_events.lock().unwrap().contains(&HaEvent::Takeover {
        jumped: 1,
        dropped: 0,
        esp_jumped: 0,
        esp_stopped: 0,
    }));
    let first_b = send(&wb, &peer_dev).expect("the standby sends on the same session");
    let own_index = peer_kp.remote_index;
    assert!(
        used.insert(first_b),
        "a (receiver, counter) pair sent twice"
    );
    assert_eq!(
        first_b.0, peer_kp.local_index,
        "the peer's own session, no new handshake"
    );
    // The old active keeps sending until its lease runs out; none of its counters reaches
    // the new active's.
    let mut a_more = 0;
    let initiation = loop {
        let u = match send_or_initiate(&wa, &peer_dev) {
            Ok(u) => u,
            Err(out) => break out,
        };
        assert!(
            u.1 < first_b.1,
            "old active counter {} >= {}",
            u.1,
            first_b.1
        );
        assert!(used.insert(u));
        a_more += 1;
        assert!(a_more <= 2 * LEASE, "the lease stops the old active");
    };
    // An exhausted session starts a new handshake: keys the new active never saw.
    assert!(
        initiation
            .datagrams
            .iter()
            .any(|(d, _)| d.len() == 148 && d[0] == 1),
        "a handshake initiation instead of data"
    );
    for _ in 0..100 {
        assert!(used.insert(send(&wb, &peer_dev).unwrap()));
    }
    let peer = peer_dev.lock().unwrap();
    let still = peer.current_keypair(peer.peer_id(&public(NODE_KEY)).unwrap());
    assert!(
        still.is_some_and(|k| Arc::ptr_eq(&k, &peer_kp)),
        "the peer never replaced its session"
    );
    wait("the old active to report its exhausted lease", || {
        a.status().lease_exhausted == 1
            && a_events
                .lock()
                .unwrap()
                .contains(&HaEvent::LeaseExhausted { index: own_index })
    });
    drop((a, b));
}

#[test]
fn forged_frames_and_wrong_keys_are_rejected_and_counted() {
    let (pa, pb) = (free_port(), free_port());
    let (a, a_events) = channel(1, pa, pb, 7);
    // Another node with the wrong key.
    let (c, _) = channel(2, pb, pa, 8);
    wait("the wrong key to be refused", || {
        a.status().rejected_forged > 0 && !a.status().peer_connected
    });
    assert!(a_events
        .lock()
        .unwrap()
        .iter()
        .any(|e| matches!(e, HaEvent::Rejected { .. })));
    drop(c);
    // Garbage in place of a handshake.
    let before = a.status().rejected_forged;
    let mut s = TcpStream::connect(("127.0.0.1", pa)).unwrap();
    let mut junk = 48u32.to_be_bytes().to_vec();
    junk.extend_from_slice(&[0x5a; 48]);
    s.write_all(&junk).unwrap();
    wait("the junk handshake to be refused", || {
        a.status().rejected_forged > before
    });
    // An oversized length prefix never makes the channel allocate or wait for it.
    let mut s = TcpStream::connect(("127.0.0.1", pa)).unwrap();
    s.write_all(&u32::MAX.to_be_bytes()).unwrap();
    let n = a_events.lock().unwrap().len();
    wait("the oversized frame to be refused", || {
        a_events.lock().unwrap()[n..]
            .iter()
            .any(|e| matches!(e, HaEvent::Rejected { reason } if reason.contains("exceeds")))
    });
    assert!(!a.status().peer_connected);
}

#[test]
fn relay_datagrams_cross_the_channel_both_ways() {
    let (pa, pb) = (free_port(), free_port());
    let udp = |a: &str| std::net::UdpSocket::bind(a).unwrap();
    // Stand-ins for the two charons' ha plugins, and the relay ports the channels bind.
    let (charon_a, charon_b) = (udp("127.0.0.1:0"), udp("127.0.0.1:0"));
    let (ra, rb) = (
        udp("127.0.0.1:0").local_addr().unwrap(),
        udp("127.0.0.1:0").local_addr().unwrap(),
    );
    let (a, _) = channel_with_relay(1, pa, pb, 7, Some((ra, charon_a.local_addr().unwrap())));
    let (b, _) = channel_with_relay(2, pb, pa, 7, Some((rb, charon_b.local_addr().unwrap())));
    wait("the channel", || {
        a.status().peer_connected && b.status().peer_connected
    });
    for s in [&charon_a, &charon_b] {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    }
    let mut buf = [0u8; 2048];
    charon_a.send_to(b"segment 1 state", ra).unwrap();
    let (n, from) = charon_b.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"segment 1 state");
    assert_eq!(from, rb, "delivered from the relay's own address");
    charon_b.send_to(&[0xa5; 1400], rb).unwrap();
    let (n, _) = charon_a.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], &[0xa5; 1400][..]);
}

/// A distinct private key per `i` (byte 0 is clamped by X25519, so `i` goes elsewhere).
fn peer_key(i: usize) -> [u8; 32] {
    std::array::from_fn(|j| match j {
        1 => i as u8,
        2 => (i >> 8) as u8,
        _ => 0x33,
    })
}

/// A standby joining an active that holds many sessions gets all of them (a snapshot of many
/// frames), each with its counters, and acknowledges every one.
#[test]
fn a_joining_standby_receives_every_session() {
    const SESSIONS: usize = 500;
    let (pa, pb) = (free_port(), free_port());
    let (a, _) = channel(1, pa, pb, 7);
    let wa = WireGuard::new(Some(NODE_KEY));
    a.attach_wireguard(wa.clone());
    a.set_role(Role::Active);
    let mut peers = Vec::with_capacity(SESSIONS);
    for i in 0..SESSIONS {
        let key = peer_key(i);
        wa.with(|d| {
            d.upsert_peer(PeerConfig {
                public_key: public(key),
                preshared_key: None,
                endpoint: Some(PEER_ADDR.parse().unwrap()),
                persistent_keepalive: 0,
            })
        });
        let p = Mutex::new(Device::new(Some(key)));
        p.lock().unwrap().upsert_peer(PeerConfig {
            public_key: public(NODE_KEY),
            preshared_key: None,
            endpoint: Some(NODE_ADDR.parse().unwrap()),
            persistent_keepalive: 0,
        });
        establish(
            &wa,
            &p,
            SocketAddr::from(([198, 18, (i >> 8) as u8, i as u8], 51820)),
        );
        peers.push(p);
    }
    let live = wa.with(|d| d.session_counters());
    assert_eq!(live.len(), SESSIONS);

    // The standby joins now: everything reaches it in the snapshot.
    let joined = Instant::now();
    let (b, b_events) = channel(2, pb, pa, 7);
    let wb = WireGuard::new(Some(NODE_KEY));
    for i in 0..SESSIONS {
        let key = peer_key(i);
        wb.with(|d| {
            d.upsert_peer(PeerConfig {
                public_key: public(key),
                preshared_key: None,
                endpoint: None,
                persistent_keepalive: 0,
            })
        });
    }
    b.attach_wireguard(wb.clone());
    wait("every session acknowledged", || {
        a.status().synced_wg_sessions == SESSIONS as u64
            && b.status().synced_wg_sessions == SESSIONS as u64
    });
    let took = joined.elapsed();
    // The active sends the snapshot's end after the counters that follow the sessions: the
    // standby may still be reading those when both sides count every session.
    wait("the snapshot's end", || {
        b_events.lock().unwrap().contains(&HaEvent::SnapshotDone {
            sessions: SESSIONS as u32,
        })
    });
    let imported = wb.with(|d| d.session_counters());
    assert_eq!(
        imported.iter().map(|c| c.0).collect::<Vec<_>>(),
        live.iter().map(|c| c.0).collect::<Vec<_>>(),
        "the same receiver indices"
    );
    assert_eq!(b.status().rejected_forged + b.status().rejected_replayed, 0);
    eprintln!(
        "{SESSIONS} sessions synced and acknowledged {} ms after the standby started",
        took.as_millis()
    );
}

/// An active peer answers the standby's handshake and sends its snapshot in the same write: the
/// standby reads both at once and must keep the frames behind the answer (the active sends each
/// keypair once; nothing would bring a lost one back here).
#[test]
fn frames_that_come_with_the_handshake_answer_are_applied() {
    use cvlan_dataplane::ha::frame::{self, FrameReader, Handshake, Message};
    use std::io::Read;

    let wa = engine();
    let peer_dev = Mutex::new(Device::new(Some(PEER_KEY)));
    peer_dev.lock().unwrap().upsert_peer(PeerConfig {
        public_key: public(NODE_KEY),
        preshared_key: None,
        endpoint: Some(NODE_ADDR.parse().unwrap()),
        persistent_keepalive: 0,
    });
    establish(&wa, &peer_dev, PEER_ADDR.parse().unwrap());
    let records = wa.with(|d| d.export_sessions(wa.time().mono));
    assert_eq!(records.len(), 1);

    // The standby has the lower id: it dials, the (hand-made) active answers.
    let (pa, pb) = (free_port(), free_port());
    let active = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], pb))).unwrap();
    let (b, _) = channel(1, pa, pb, 7);
    let wb = engine();
    b.attach_wireguard(wb.clone());
    let (mut stream, _) = active.accept().unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut hs = Handshake::new(&Zeroizing::new([7; 32]), false).unwrap();
    let mut rd = FrameReader::default();
    let hello = loop {
        if let Some(f) = rd.next_frame().unwrap() {
            break f;
        }
        let mut buf = [0u8; 4096];
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "the standby closed the connection");
        rd.push(&buf[..n]);
    };
    assert!(matches!(
        hs.read(&hello).unwrap(),
        Message::Hello { node_id: 1, .. }
    ));
    let mut burst = frame::frame(
        &hs.write(&Message::Hello {
            node_id: 2,
            generation: 0,
            role: Role::Active,
        })
        .unwrap(),
    );
    let mut cipher = hs.into_cipher().unwrap();
    for m in [
        Message::State {
            generation: 0,
            role: Role::Active,
        },
        Message::WgSession(Box::new(records[0].clone())),
        Message::SnapshotDone { sessions: 1 },
    ] {
        burst.extend(frame::frame(&cipher.seal(&m).unwrap()));
    }
    stream.write_all(&burst).unwrap();
    // Within the standby's patience for a silent peer (1 s): nothing else is sent.
    let until = Instant::now() + Duration::from_millis(800);
    while b.status().synced_wg_sessions != 1 {
        assert!(
            Instant::now() < until,
            "the snapshot behind the handshake answer was lost: {:?}",
            b.status()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        wb.with(|d| d.session_counters())[0].0,
        records[0].local_index
    );
    assert_eq!(b.status().peer_role, Some(Role::Active));
}
