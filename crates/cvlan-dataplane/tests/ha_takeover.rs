//! Takeover of a responder's session that the active exported between its handshake response
//! and the peer's first data message (the keypair was still `next` then): the new active must
//! continue it — sending first, or answering the peer — with no new handshake and no
//! (receiver, counter) pair used twice.

use cvlan_dataplane::ha::{HaConfig, HaEvent, HaSync, Role};
use cvlan_dataplane::wireguard::WireGuard;
use cvlan_proto::wireguard::{Device, Keypair, Outbox, PeerConfig, PeerId, SendPlan};
use rand_core::OsRng;
use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener};
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
            endpoint: None,
            persistent_keepalive: 0,
        });
        d.add_allowed_ip(id, "10.9.0.0/24".parse().unwrap());
    });
    wg
}

fn peer_device() -> Mutex<Device> {
    let mut p = Device::new(Some(PEER_KEY));
    let id = p.upsert_peer(PeerConfig {
        public_key: public(NODE_KEY),
        preshared_key: None,
        endpoint: Some(NODE_ADDR.parse().unwrap()),
        persistent_keepalive: 0,
    });
    p.add_allowed_ip(id, "10.9.0.0/24".parse().unwrap());
    Mutex::new(p)
}

fn channel(node_id: u8, listen: u16, peer: u16) -> (HaSync, Arc<Mutex<Vec<HaEvent>>>) {
    let events: Arc<Mutex<Vec<HaEvent>>> = Arc::default();
    let e = events.clone();
    let ha = HaSync::start(
        HaConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], listen)),
            peer: SocketAddr::from(([127, 0, 0, 1], peer)),
            key: Zeroizing::new([7; 32]),
            node_id,
            sync_interval: Duration::from_millis(20),
            lease: LEASE,
            relay: None,
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

fn ipv4_packet(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let mut p = vec![0u8; 28];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&28u16.to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    p
}

/// A transport message `from` produced, delivered to `to` (opened, then the receive
/// bookkeeping: keypair confirmation, roaming, timers). Returns (receiver, counter).
fn deliver(
    to: &mut Device,
    from: SocketAddr,
    msg: &[u8],
    t: cvlan_proto::wireguard::Time,
) -> (u32, u64) {
    let receiver = u32::from_le_bytes(msg[4..8].try_into().unwrap());
    let counter = u64::from_le_bytes(msg[8..16].try_into().unwrap());
    let (id, kp) = to
        .lookup_receiver(receiver, t)
        .expect("a known receiver index");
    let mut payload = msg[16..].to_vec();
    let n = kp.open(counter, &mut payload).expect("authentic and fresh");
    let mut out = Outbox::default();
    to.received_data(id, &kp, from, msg.len(), n, t, &mut OsRng, &mut out);
    assert!(
        out.datagrams.iter().all(|(d, _)| d[0] != 1),
        "receiving started a handshake"
    );
    (receiver, counter)
}

/// One packet from a node's engine to the peer: sealed on the session the engine has, or the
/// handshake initiation it wanted sent instead.
fn node_sends(wg: &WireGuard, peer: &Mutex<Device>) -> Result<(u32, u64), Outbox> {
    let t = wg.time();
    let mut out = Outbox::default();
    let pkt = ipv4_packet([10, 9, 0, 1], [10, 9, 0, 5]);
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
    let msg = seal(&keypair, counter, &pkt);
    Ok(deliver(
        &mut peer.lock().unwrap(),
        NODE_ADDR.parse().unwrap(),
        &msg,
        t,
    ))
}

fn seal(kp: &Keypair, counter: u64, pkt: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 16 + pkt.len() + 32];
    buf[16..16 + pkt.len()].copy_from_slice(pkt);
    let r = kp.seal(counter, &mut buf, 16, pkt.len()).unwrap();
    buf[r].to_vec()
}

/// The peer's next data message to the node, sealed (not yet delivered).
fn peer_message(peer: &Mutex<Device>, t: cvlan_proto::wireguard::Time) -> Vec<u8> {
    let mut p = peer.lock().unwrap();
    let id = p.peer_id(&public(NODE_KEY)).unwrap();
    let pkt = ipv4_packet([10, 9, 0, 5], [10, 9, 0, 1]);
    let mut out = Outbox::default();
    match p.prepare_send(id, &pkt, t, &mut OsRng, &mut out) {
        SendPlan::Encrypt {
            keypair, counter, ..
        } => seal(&keypair, counter, &pkt),
        _ => panic!("the peer has a session"),
    }
}

/// The peer initiates and the active answers; returns the peer's first data message (the one
/// that confirms the responder's keypair), held back by the caller.
fn handshake_without_first_data(active: &WireGuard, peer: &Mutex<Device>) -> Vec<u8> {
    let mut p = peer.lock().unwrap();
    let t = active.time();
    let pid = p.peer_id(&public(NODE_KEY)).unwrap();
    let mut out = Outbox::default();
    let pkt = ipv4_packet([10, 9, 0, 5], [10, 9, 0, 1]);
    assert!(matches!(
        p.prepare_send(pid, &pkt, t, &mut OsRng, &mut out),
        SendPlan::Queued
    ));
    let (init, _) = out.datagrams.remove(0);
    let mut resp = Outbox::default();
    active
        .with(|d| d.handle_handshake(PEER_ADDR.parse().unwrap(), &init, t, &mut OsRng, &mut resp))
        .unwrap();
    let (response, _) = resp.datagrams.remove(0);
    let mut out = Outbox::default();
    p.handle_handshake(
        NODE_ADDR.parse().unwrap(),
        &response,
        t,
        &mut OsRng,
        &mut out,
    )
    .unwrap();
    out.datagrams
        .into_iter()
        .find(|(d, _)| d[0] == 4)
        .expect("the queued packet leaves with the new session")
        .0
}

struct Pair {
    /// The new active (B) and its engine; A is gone.
    b: HaSync,
    wb: Arc<WireGuard>,
    b_events: Arc<Mutex<Vec<HaEvent>>>,
    peer: Mutex<Device>,
    /// (receiver, counter) pairs the nodes sent.
    used: HashSet<(u32, u64)>,
}

/// Active A, standby B; the peer's session is exported to B while it is still A's `next`, then
/// the peer's first data confirms it on A and traffic flows both ways until B has stored the
/// counters. A then dies (its channel closes) and B takes over.
fn export_before_first_data_then_fail_over() -> Pair {
    let (wa, wb) = (engine(), engine());
    let peer = peer_device();
    let (pa, pb) = (free_port(), free_port());
    let (a, _) = channel(1, pa, pb);
    let (b, b_events) = channel(2, pb, pa);
    a.attach_wireguard(wa.clone());
    b.attach_wireguard(wb.clone());
    a.set_role(Role::Active);
    wait("the channel", || {
        a.status().peer_connected && b.status().peer_connected
    });

    let first = handshake_without_first_data(&wa, &peer);
    // The window: B holds the keypair before the peer confirmed it on A.
    wait("the standby to hold the unconfirmed keypair", || {
        b.status().synced_wg_sessions == 1 && a.status().synced_wg_sessions == 1
    });
    let index = wa.with(|d| d.session_counters())[0].0;
    let pid: PeerId = wa.with(|d| d.peer_id(&public(PEER_KEY)).unwrap());
    assert!(
        wa.with(|d| d.current_keypair(pid)).is_none(),
        "exported while still `next` on the active"
    );
    // The peer's first data message reaches A: the keypair is confirmed there.
    let t = wa.time();
    wa.with(|d| deliver(d, PEER_ADDR.parse().unwrap(), &first, t));
    assert!(wa.with(|d| d.current_keypair(pid)).is_some());
    let mut used = HashSet::new();
    for _ in 0..50 {
        assert!(used.insert(node_sends(&wa, &peer).expect("A sends on the confirmed keypair")));
        let t = wa.time();
        let m = peer_message(&peer, t);
        wa.with(|d| deliver(d, PEER_ADDR.parse().unwrap(), &m, t));
    }
    let a_top = used.iter().map(|u| u.1).max().unwrap();
    wait("the standby to store the counters", || {
        wb.with(|d| d.session_counters())
            .iter()
            .any(|c| c.0 == index && c.1 > a_top)
    });
    drop(a);
    b.set_role(Role::Active);
    Pair {
        b,
        wb,
        b_events,
        peer,
        used,
    }
}

#[test]
fn the_new_active_sends_first_on_a_session_exported_before_its_first_data() {
    let mut p = export_before_first_data_then_fail_over();
    assert!(p.b_events.lock().unwrap().contains(&HaEvent::Takeover {
        jumped: 1,
        dropped: 0,
        esp_jumped: 0,
        esp_stopped: 0
    }));
    let peer_kp = {
        let d = p.peer.lock().unwrap();
        d.current_keypair(d.peer_id(&public(NODE_KEY)).unwrap())
            .unwrap()
    };
    // B sends before anything arrives from the peer (traffic from its own side).
    let first = match node_sends(&p.wb, &p.peer) {
        Ok(u) => u,
        Err(out) => panic!(
            "the new active handshakes instead of continuing the session ({} datagrams)",
            out.datagrams.len()
        ),
    };
    assert_eq!(first.0, peer_kp.local_index, "the peer's own session");
    assert!(
        p.used.insert(first),
        "a (receiver, counter) pair sent twice"
    );
    assert!(first.1 >= LEASE, "the counter jumped by the lease");
    for _ in 0..20 {
        assert!(p
            .used
            .insert(node_sends(&p.wb, &p.peer).expect("the session continues")));
    }
    let d = p.peer.lock().unwrap();
    let still = d.current_keypair(d.peer_id(&public(NODE_KEY)).unwrap());
    assert!(
        still.is_some_and(|k| Arc::ptr_eq(&k, &peer_kp)),
        "no new session"
    );
    drop(d);
    assert_eq!(p.b.status().lease_exhausted, 0);
}

#[test]
fn the_new_active_answers_the_peer_on_a_session_exported_before_its_first_data() {
    let mut p = export_before_first_data_then_fail_over();
    let t = p.wb.time();
    let m = peer_message(&p.peer, t);
    p.wb.with(|d| deliver(d, PEER_ADDR.parse().unwrap(), &m, t));
    for _ in 0..20 {
        assert!(p
            .used
            .insert(node_sends(&p.wb, &p.peer).expect("the session continues")));
    }
}
