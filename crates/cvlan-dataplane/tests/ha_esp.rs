//! Two data planes' IPsec engines and the HA sync channel between them over loopback, with an
//! IPsec peer in memory (`cvlan_proto::esp`): ESP SAs and policies charon installs on the active
//! appear on the standby with the same keys, sequence numbers and replay windows follow, the
//! standby takes the SAs over beyond anything the old active may use (even while the old
//! active keeps sending), imports and charon's own installations do not duplicate each other,
//! and frames that are forged, replayed or of a kind the node does not know are refused.

use cvlan_dataplane::charon::protocol::{
    AddSa, Mark, Mode, Policy, PolicyDir, PolicyId, PolicyPriority, PolicyType, SaCfg, SaFlags,
    SaId, SecretKey, TrafficSelector,
};
use cvlan_dataplane::charon::{CharonServer, SaBackend};
use cvlan_dataplane::counters::{DropReason, WorkerCounters};
use cvlan_dataplane::ha::frame::{self, FrameReader, Handshake, Message};
use cvlan_dataplane::ha::{HaConfig, HaEvent, HaSync, Role};
use cvlan_dataplane::ipsec::{IpsecBackend, IpsecEngine, IpsecTransport, SOCK_NATT};
use cvlan_dataplane::transport::{Ctx, Packet, Transport, Verdict, HEADROOM};
use cvlan_proto::esp::{self, InboundSa, OutboundSa, SaParams, TunnelEndpoints, UdpEncap};
use rand_core::OsRng;
use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

const LOCAL: &str = "192.0.2.1:4500";
const PEER: &str = "192.0.2.2:4500";
const LEASE: u64 = 500;
/// The node sends on OUT, the peer on IN.
const OUT: u32 = 0xc0ff_ee01;
const IN: u32 = 0xc0ff_ee02;
const REQID: u32 = 7;
const ENC_KEY: [u8; 36] = [0x5a; 36];

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

type Events = Arc<Mutex<Vec<HaEvent>>>;

fn channel(node_id: u8, listen: u16, peer: u16) -> (HaSync, Events) {
    let events: Events = Arc::default();
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

fn wait(what: &str, mut f: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    t0.elapsed()
}

fn ts(net: &str) -> TrafficSelector {
    TrafficSelector {
        protocol: 0,
        from_port: 0,
        to_port: 65535,
        from: format!("{net}.0").parse().unwrap(),
        to: format!("{net}.255").parse().unwrap(),
    }
}

/// What charon installs for one CHILD_SA direction: AES-GCM-256, ESN, NAT-T.
fn add_sa(spi: u32, inbound: bool) -> AddSa {
    let (src, dst) = if inbound {
        (PEER, LOCAL)
    } else {
        (LOCAL, PEER)
    };
    let (src_ts, dst_ts) = if inbound {
        (vec![ts("10.2.0")], vec![ts("10.1.0")])
    } else {
        (vec![ts("10.1.0")], vec![ts("10.2.0")])
    };
    AddSa {
        id: SaId {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            spi,
            proto: 50,
            mark: Mark::default(),
            if_id: REQID,
        },
        reqid: REQID,
        mode: Mode::Tunnel,
        src_ts,
        dst_ts,
        interface: None,
        lifetime: Default::default(),
        enc_alg: 20,
        enc_key: SecretKey::new(ENC_KEY.to_vec()),
        int_alg: 0,
        int_key: SecretKey::default(),
        replay_window: 4096,
        tfc: 0,
        ipcomp: 0,
        cpi: 0,
        hw_offload: 0,
        sa_mark: Mark::default(),
        copy_dscp: 0,
        flags: SaFlags {
            encap: true,
            esn: true,
            inbound,
            ..Default::default()
        },
    }
}

fn out_policy() -> Policy {
    Policy {
        id: PolicyId {
            dir: PolicyDir::Out,
            src_ts: ts("10.1.0"),
            dst_ts: ts("10.2.0"),
            mark: Mark::default(),
            if_id: REQID,
            interface: None,
        },
        kind: PolicyType::Ipsec,
        prio: PolicyPriority::Default,
        manual_prio: 0,
        src: LOCAL.parse().unwrap(),
        dst: PEER.parse().unwrap(),
        sa: SaCfg {
            mode: Mode::Tunnel,
            reqid: REQID,
            esp_spi: Some(OUT),
            ah_spi: None,
            ipcomp_transform: 0,
            ipcomp_cpi: 0,
        },
    }
}

/// charon on the active: both directions and the outbound policy.
fn install(e: &Arc<IpsecEngine>) {
    let mut b = IpsecBackend(e.clone());
    b.add_sa(add_sa(OUT, false)).unwrap();
    b.add_sa(add_sa(IN, true)).unwrap();
    b.add_policy(out_policy()).unwrap();
}

/// The peer's side of the CHILD_SA: it opens what the node seals on OUT, seals on IN.
struct Peer {
    rx: InboundSa,
    tx: OutboundSa,
}

fn peer() -> Peer {
    let tunnel = TunnelEndpoints {
        local: "192.0.2.2".parse().unwrap(),
        remote: "192.0.2.1".parse().unwrap(),
        udp: Some(UdpEncap {
            local_port: 4500,
            remote_port: 4500,
        }),
    };
    let sel = |net: &str| {
        cvlan_proto::esp::SelectorRange {
            from: format!("{net}.0").parse().unwrap(),
            to: format!("{net}.255").parse().unwrap(),
            protocol: 0,
            from_port: 0,
            to_port: 65535,
        }
        .selectors()
    };
    let params = |spi, dir| {
        let mut p = SaParams::new(
            spi,
            dir,
            esp::EncryptionAlgorithm::AesGcm256,
            &ENC_KEY,
            None,
            tunnel,
        );
        p.esn = true;
        p.local_ts = sel("10.2.0");
        p.remote_ts = sel("10.1.0");
        p
    };
    Peer {
        rx: InboundSa::new(&params(OUT, esp::Direction::Inbound), Duration::ZERO).unwrap(),
        tx: OutboundSa::new(&params(IN, esp::Direction::Outbound), Duration::ZERO).unwrap(),
    }
}

fn inner_packet(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let mut p = vec![0u8; 28];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&28u16.to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    p
}

fn packet(sock: usize, data: &[u8]) -> Packet {
    let mut p = Packet::new();
    p.as_mut()[HEADROOM..HEADROOM + data.len()].copy_from_slice(data);
    p.start = HEADROOM;
    p.len = data.len();
    p.sock = sock;
    p.addr = PEER.parse().unwrap();
    p
}

fn ctx_run(t: &IpsecTransport, mut p: Packet, outbound: bool) -> Packet {
    let counters = WorkerCounters::default();
    let mut extra = Vec::new();
    let mut ctx = Ctx {
        worker: 1,
        counters: &counters,
        now: cvlan_dataplane::clock::now(),
        extra: &mut extra,
    };
    let mut batch = [std::mem::take(&mut p)];
    if outbound {
        t.encapsulate(&mut ctx, &mut batch);
    } else {
        t.decapsulate(&mut ctx, &mut batch);
    }
    std::mem::take(&mut batch[0])
}

/// The node sends one inner packet through its pipeline; the peer opens it. `Err`: the drop.
fn node_sends(t: &IpsecTransport, peer: &Peer) -> Result<u64, DropReason> {
    let before = drops(&t.engine);
    let p = ctx_run(
        t,
        packet(0, &inner_packet([10, 1, 0, 1], [10, 2, 0, 1])),
        true,
    );
    if p.verdict != Verdict::Send {
        return Err(new_drop(&t.engine, &before));
    }
    assert_eq!(p.sock, SOCK_NATT);
    let mut esp_pkt = p.data().to_vec();
    let opened = peer
        .rx
        .open(&mut esp_pkt, cvlan_dataplane::clock::now())
        .expect("the peer accepts it: same keys, a sequence number it never saw");
    Ok(opened.seq)
}

/// The peer seals one packet on IN: the ESP bytes.
fn peer_seals(peer: &Peer) -> Vec<u8> {
    let inner = inner_packet([10, 2, 0, 1], [10, 1, 0, 1]);
    let h = peer.tx.headroom();
    let mut buf = vec![0u8; h + inner.len() + peer.tx.max_tailroom()];
    buf[h..h + inner.len()].copy_from_slice(&inner);
    let s = peer
        .tx
        .seal(&mut buf, h..h + inner.len(), Duration::ZERO, &mut OsRng)
        .unwrap();
    buf[s.esp].to_vec()
}

/// The node receives ESP bytes; `Err`: the drop.
fn node_receives(t: &IpsecTransport, esp_pkt: &[u8]) -> Result<(), DropReason> {
    let before = drops(&t.engine);
    let p = ctx_run(t, packet(SOCK_NATT, esp_pkt), false);
    if p.verdict == Verdict::ToTun {
        Ok(())
    } else {
        Err(new_drop(&t.engine, &before))
    }
}

fn drops(e: &IpsecEngine) -> Vec<(DropReason, u64)> {
    e.counters.drop_counts()
}

/// The one reason whose count went up since `before`.
fn new_drop(e: &IpsecEngine, before: &[(DropReason, u64)]) -> DropReason {
    let was = |r: DropReason| before.iter().find(|(b, _)| *b == r).map_or(0, |x| x.1);
    drops(e)
        .into_iter()
        .find(|&(r, n)| n > was(r))
        .map(|(r, _)| r)
        .expect("a drop was counted")
}

struct Pair {
    /// The active's plugin link, which queues the expires it reports for charon.
    _link_a: CharonServer,
    a: Arc<IpsecTransport>,
    b: Arc<IpsecTransport>,
    ha_a: HaSync,
    ha_b: HaSync,
    ev_a: Events,
    ev_b: Events,
}

fn pair() -> Pair {
    let (pa, pb) = (free_port(), free_port());
    let a = Arc::new(IpsecTransport {
        engine: IpsecEngine::new("192.0.2.1".parse().unwrap()),
    });
    let b = Arc::new(IpsecTransport {
        engine: IpsecEngine::new("192.0.2.1".parse().unwrap()),
    });
    let sock = std::env::temp_dir().join(format!("ha-esp-{}-{pa}.sock", std::process::id()));
    let (link_a, handle) =
        CharonServer::bind(&sock, Box::new(IpsecBackend(a.engine.clone())), None).unwrap();
    a.engine.set_charon(handle);
    let (ha_a, ev_a) = channel(1, pa, pb);
    let (ha_b, ev_b) = channel(2, pb, pa);
    ha_a.attach_ipsec(a.engine.clone());
    ha_a.set_role(Role::Active);
    ha_b.attach_ipsec(b.engine.clone());
    Pair {
        _link_a: link_a,
        a,
        b,
        ha_a,
        ha_b,
        ev_a,
        ev_b,
    }
}

/// The whole life of a CHILD_SA across a failover: synced with its keys, its counters and its
/// window; passive standby; takeover beyond the old active's lease while the old active keeps
/// sending (split brain); no (SPI, sequence number) twice; the 64-bit ESN counter crosses 2^32.
#[test]
fn the_standby_continues_the_child_sa_and_no_sequence_number_repeats() {
    let p = pair();
    let peer = peer();
    // Close below 2^32, so the takeover's jump crosses into the ESN high half.
    install(&p.a.engine);
    let start = (1u64 << 32) - 600;
    p.a.engine.outbound_sa(OUT).unwrap().advance_seq(start);
    // The active's fresh SA may send only within the lease until the standby acknowledged.
    wait("the standby to acknowledge both SAs", || {
        p.ha_a.status().synced_esp_sas == 2 && p.ha_b.status().synced_esp_sas == 2
    });
    wait("the lease to move past the counter", || {
        p.a.engine.outbound_sa(OUT).unwrap().send_limit() > start + 1
    });
    let b = &p.b.engine;
    assert_eq!(b.is_synced_sa(OUT), Some(true));
    assert_eq!(b.is_synced_sa(IN), Some(true));
    assert_eq!(b.policy_if_ids(), [REQID], "the outbound policy came along");
    assert!(b.is_passive());

    let mut used: HashSet<u64> = HashSet::new();
    for _ in 0..100 {
        let seq = node_sends(&p.a, &peer).unwrap();
        assert!(used.insert(seq));
    }
    let a_last = p.a.engine.outbound_sa(OUT).unwrap().last_seq();
    assert_eq!(a_last, start + 100);
    // The peer sends to the active; keep one it accepted to replay at the standby later.
    let accepted = peer_seals(&peer);
    node_receives(&p.a, &accepted).unwrap();
    for _ in 0..4 {
        node_receives(&p.a, &peer_seals(&peer)).unwrap();
    }
    let took = wait("the standby's counter to follow", || {
        b.outbound_sa(OUT).unwrap().last_seq() == a_last
            && b.inbound_sa(IN).unwrap().highest_seq() == Some(5)
    });
    assert!(took < Duration::from_secs(2), "followed in {took:?}");
    // Passive: the standby has the SA and the policy, and sends nothing.
    assert_eq!(node_sends(&p.b, &peer), Err(DropReason::HaStandby));

    // Split brain: the standby takes over while the active keeps sending. The active's acks
    // stop (an active node stores nothing), so it runs into its lease.
    p.ha_b.set_role(Role::Active);
    assert!(p.ev_b.lock().unwrap().iter().any(|e| matches!(
        e,
        HaEvent::Takeover {
            esp_jumped: 1,
            esp_stopped: 0,
            ..
        }
    )));
    let b_first = node_sends(&p.b, &peer).expect("the new active sends at once");
    assert!(
        b_first > 1 << 32,
        "ESN: the high half moved on ({b_first:#x})"
    );
    assert!(used.insert(b_first));
    let mut a_max = a_last;
    let mut tries = 0;
    let refused = loop {
        tries += 1;
        assert!(
            tries <= 2 * LEASE,
            "the old active is never stopped by its lease"
        );
        match node_sends(&p.a, &peer) {
            Ok(seq) => {
                assert!(used.insert(seq), "sequence number {seq} used twice");
                a_max = seq;
            }
            Err(r) => break r,
        }
    };
    assert_eq!(refused, DropReason::EspLeaseExhausted);
    // charon hears a soft expire (it rekeys) once, not per refused packet; the lifetime tick
    // repeats it every 5 s while the SA stays exhausted.
    let expires = || p.a.engine.counters.expires_sent.load(Ordering::Relaxed);
    assert_eq!(expires(), 1);
    assert_eq!(node_sends(&p.a, &peer), Err(DropReason::EspLeaseExhausted));
    assert_eq!(expires(), 1);
    let now = cvlan_dataplane::clock::now();
    p.a.engine.poll_lifetimes(now);
    assert_eq!(expires(), 2);
    p.a.engine.poll_lifetimes(now + Duration::from_secs(1));
    assert_eq!(expires(), 2);
    p.a.engine.poll_lifetimes(now + Duration::from_secs(6));
    assert_eq!(expires(), 3);
    let limit = p.a.engine.outbound_sa(OUT).unwrap().send_limit();
    assert!(
        a_max < limit && limit <= a_last + LEASE + 1,
        "{a_max} {limit}"
    );
    assert!(
        b_first > a_max,
        "the new active starts beyond anything the old one could use ({b_first} > {a_max})"
    );
    for _ in 0..50 {
        let seq = node_sends(&p.b, &peer).unwrap();
        assert!(used.insert(seq));
    }
    wait("the old active to report its exhausted lease", || {
        p.ev_a
            .lock()
            .unwrap()
            .iter()
            .any(|e| matches!(e, HaEvent::EspLeaseExhausted { spi: OUT }))
    });
    assert!(p.ha_a.status().lease_exhausted >= 1);

    // The replay window came along: what the old active accepted is a replay here; the
    // peer's next packet opens with the synced keys.
    assert_eq!(node_receives(&p.b, &accepted), Err(DropReason::EspReplayed));
    node_receives(&p.b, &peer_seals(&peer)).unwrap();
}

/// Charon's ha plugin installs the same SAs on the standby through the plugin link: whichever
/// comes first, there is one SA per SPI, its counters are not reset, and only imports go when
/// the active deletes.
#[test]
fn imports_and_charons_installations_do_not_duplicate_each_other() {
    let p = pair();
    let b = &p.b.engine;
    let mut charon_b = IpsecBackend(b.clone());
    // Charon's ha plugin first (OUT), the import first (IN).
    charon_b.add_sa(add_sa(OUT, false)).unwrap();
    install(&p.a.engine);
    wait("both SAs on the standby", || {
        b.inbound_sa(IN).is_some() && p.ha_a.status().synced_esp_sas == 2
    });
    assert_eq!(
        b.is_synced_sa(OUT),
        Some(false),
        "charon's own, not replaced"
    );
    assert_eq!(b.is_synced_sa(IN), Some(true));
    let peer = peer();
    for _ in 0..20 {
        node_sends(&p.a, &peer).unwrap();
    }
    for _ in 0..3 {
        node_receives(&p.a, &peer_seals(&peer)).unwrap();
    }
    wait("counters on the standby", || {
        b.outbound_sa(OUT).unwrap().last_seq() == 20
            && b.inbound_sa(IN).unwrap().highest_seq() == Some(3)
    });
    // Now charon installs IN as well: it adopts the import with its window.
    charon_b.add_sa(add_sa(IN, true)).unwrap();
    assert_eq!(b.is_synced_sa(IN), Some(false));
    assert_eq!(
        b.inbound_sa(IN).unwrap().highest_seq(),
        Some(3),
        "not reset"
    );
    assert_eq!(b.sas().len(), 2, "one SA per SPI");
    charon_b.add_policy(out_policy()).unwrap();
    assert_eq!(b.policy_count(), 1, "charon's policy replaced the import");

    // The active deletes: imports go, charon's own stay for charon to delete.
    let mut charon_a = IpsecBackend(p.a.engine.clone());
    let extra = 0xc0ff_ee03;
    charon_a.add_sa(add_sa(extra, true)).unwrap();
    wait("the third SA on the standby", || {
        b.inbound_sa(extra).is_some()
    });
    charon_a.del_sa(&add_sa(extra, true).id).unwrap();
    charon_a.del_sa(&add_sa(IN, true).id).unwrap();
    charon_a.del_policy(&out_policy()).unwrap();
    wait("the import's removal", || b.inbound_sa(extra).is_none());
    assert!(b.inbound_sa(IN).is_some(), "charon's, on the standby");
    assert_eq!(b.policy_count(), 1, "charon's policy stays");
    wait("the counts to follow", || {
        p.ha_a.status().synced_esp_sas == 1 && p.ha_b.status().synced_esp_sas == 1
    });
}

/// A fake peer with the right key: an authentic frame of a kind the node does not know, a
/// forged one and a replayed one are each refused, counted and end the connection; the node
/// dials again and keeps working.
#[test]
fn unknown_forged_and_replayed_frames_are_refused_and_counted() {
    let fake = TcpListener::bind("127.0.0.1:0").unwrap();
    let fake_port = fake.local_addr().unwrap().port();
    let (ha, events) = channel(1, free_port(), fake_port);
    let engine = IpsecEngine::new("192.0.2.1".parse().unwrap());
    ha.attach_ipsec(engine);
    // Node 1 dials node "2", which answers the handshake, then sends `frame`.
    let serve = |payload: &dyn Fn(&mut frame::Cipher) -> Vec<Vec<u8>>| {
        let (mut s, _) = fake.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut hs = Handshake::new(&Zeroizing::new([7; 32]), false).unwrap();
        let mut rd = FrameReader::default();
        let mut buf = [0u8; 4096];
        let first = loop {
            if let Some(f) = rd.next_frame().unwrap() {
                break f;
            }
            let n = s.read(&mut buf).unwrap();
            rd.push(&buf[..n]);
        };
        hs.read(&first).unwrap();
        let hello = Message::Hello {
            node_id: 2,
            generation: 0,
            role: Role::Standby,
        };
        s.write_all(&frame::frame(&hs.write(&hello).unwrap()))
            .unwrap();
        let mut c = hs.into_cipher().unwrap();
        for f in payload(&mut c) {
            s.write_all(&frame::frame(&f)).unwrap();
        }
        // The node ends the connection.
        while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
    };
    serve(&|c| vec![c.seal_bytes(&[0xee, 1, 2, 3]).unwrap()]);
    wait("the unknown kind counted", || {
        ha.status().rejected_malformed == 1
    });
    serve(&|c| {
        let mut f = c.seal(&Message::EspRemove { spi: 1 }).unwrap();
        let n = f.len();
        f[n - 1] ^= 1;
        vec![f]
    });
    wait("the forgery counted", || ha.status().rejected_forged == 1);
    serve(&|c| {
        let f = c.seal(&Message::EspAck(vec![])).unwrap();
        vec![f.clone(), f]
    });
    wait("the replay counted", || ha.status().rejected_replayed == 1);
    let ev = events.lock().unwrap();
    let rejected = ev
        .iter()
        .filter(|e| matches!(e, HaEvent::Rejected { .. }))
        .count();
    assert_eq!(rejected, 3, "{ev:?}");
}

/// An SA no standby ever received can collide with nothing: an active node alone sends on it
/// without a limit (no rekey every lease), and its lease begins when it is first exported.
#[test]
fn an_sa_the_standby_never_saw_has_no_lease_until_exported() {
    let (pa, pb) = (free_port(), free_port());
    let a = IpsecTransport {
        engine: IpsecEngine::new("192.0.2.1".parse().unwrap()),
    };
    let (ha_a, _) = channel(1, pa, pb);
    ha_a.attach_ipsec(a.engine.clone());
    ha_a.set_role(Role::Active);
    install(&a.engine);
    let peer = peer();
    for i in 1..=2 * LEASE {
        assert_eq!(node_sends(&a, &peer), Ok(i));
    }
    assert_eq!(a.engine.outbound_sa(OUT).unwrap().send_limit(), u64::MAX);
    // The standby arrives: from now on the active stays within what it acknowledges + lease.
    let b = IpsecEngine::new("192.0.2.1".parse().unwrap());
    let (ha_b, _) = channel(2, pb, pa);
    ha_b.attach_ipsec(b.clone());
    wait("the standby's acks", || ha_a.status().synced_esp_sas == 2);
    let limit = a.engine.outbound_sa(OUT).unwrap().send_limit();
    assert!(
        (2 * LEASE + LEASE..=2 * LEASE + LEASE + 1).contains(&limit),
        "limit {limit} = the counter when exported + the lease"
    );
    assert_eq!(b.outbound_sa(OUT).unwrap().last_seq(), 2 * LEASE);
}

/// A standby that joins an active with 500 CHILD_SAs receives every SA and policy in the
/// snapshot: nothing refused, all acknowledged on both sides.
#[test]
fn a_joining_standby_receives_500_child_sas() {
    const TUNNELS: u32 = 500;
    let (pa, pb) = (free_port(), free_port());
    let a = IpsecEngine::new("192.0.2.1".parse().unwrap());
    let (ha_a, _) = channel(1, pa, pb);
    ha_a.attach_ipsec(a.clone());
    ha_a.set_role(Role::Active);
    let mut charon = IpsecBackend(a.clone());
    for i in 0..TUNNELS {
        let net = |side: u8| format!("10.{side}.{}.{}", i / 250, i % 250);
        let tsel = |side: u8| TrafficSelector {
            from: net(side).parse().unwrap(),
            to: net(side).parse().unwrap(),
            ..ts("10.0.0")
        };
        for (spi, inbound) in [(0x10_0000 + i, false), (0x20_0000 + i, true)] {
            let mut sa = add_sa(spi, inbound);
            sa.reqid = 100 + i;
            sa.id.if_id = 100 + i;
            charon.add_sa(sa).unwrap();
        }
        let mut p = out_policy();
        p.id.src_ts = tsel(1);
        p.id.dst_ts = tsel(2);
        p.id.if_id = 100 + i;
        p.sa.reqid = 100 + i;
        charon.add_policy(p).unwrap();
    }
    assert_eq!(a.policy_count(), TUNNELS as usize);
    let joined = Instant::now();
    let b = IpsecEngine::new("192.0.2.1".parse().unwrap());
    let (ha_b, _) = channel(2, pb, pa);
    ha_b.attach_ipsec(b.clone());
    wait("every SA acknowledged", || {
        ha_a.status().synced_esp_sas == 2 * TUNNELS as u64
            && ha_b.status().synced_esp_sas == 2 * TUNNELS as u64
    });
    let took = joined.elapsed();
    wait("every policy", || b.policy_count() == TUNNELS as usize);
    assert_eq!(b.sas().len(), 2 * TUNNELS as usize);
    assert_eq!(b.policy_if_ids(), a.policy_if_ids());
    let s = ha_b.status();
    assert_eq!(
        (s.rejected_forged, s.rejected_replayed, s.rejected_malformed),
        (0, 0, 0)
    );
    eprintln!(
        "500 CHILD_SAs (1000 SAs, 500 policies) acknowledged {took:?} after the standby started"
    );
}
