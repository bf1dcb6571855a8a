//! Cost of the HA sync channel at scale: an active node with N WireGuard sessions (default 500)
//! under traffic, a standby that joins it (bulk snapshot), then steady-state sync. Both channels
//! run in this process over loopback with the defaults (100 ms interval, lease 2^20).
//!
//! Measured:
//! - bulk resync: from the standby's start until both sides count every session acknowledged
//!   (and the part after the connection was up: connecting waits for the active's next dial);
//!   frames the active sent vs frames the standby authenticated and applied (after the active
//!   closed, so nothing is in flight): equal means no sync message was lost;
//! - steady state: frames/s the active sends and bytes/s on its connection (`ss`), and the CPU
//!   time of each sync thread (`/proc/self/task/<tid>/schedstat`), as a share of one
//!   CPU, while a traffic thread reserves send counters on every session the way the workers do
//!   (`prepare_send` under the engine lock, one lock per batch of all sessions).
//!
//! ```text
//! cargo run --release -p cvlan-dataplane --example ha_sync_bench -- [--sessions 500] [--seconds 10] [--pps 100] [--out FILE]
//! cargo run --release -p cvlan-dataplane --example ha_sync_bench -- --esp [--tunnels 500] [--seconds 10] [--pps 100] [--out FILE]
//! ```
//! `--pps` is packets per second per session (per CHILD_SA with `--esp`). Prints one JSON object
//! (and writes it to FILE).
//!
//! `--esp`: the same for IPsec. The active's engine gets N CHILD_SAs the way charon installs
//! them (two SAs and one outbound policy each: AES-GCM-256, ESN, NAT-T), and the traffic thread
//! seals real packets on every outbound SA (`OutboundSa::seal`: the workers' own sequence
//! numbers and lease check). Inbound SAs see no traffic (their replay windows go every
//! interval all the same).

use cvlan_dataplane::charon::protocol::{
    AddSa, Mark, Mode, Policy, PolicyDir, PolicyId, PolicyPriority, PolicyType, SaCfg, SaFlags,
    SaId, SecretKey, TrafficSelector,
};
use cvlan_dataplane::charon::SaBackend;
use cvlan_dataplane::ha::{lease, HaConfig, HaEvent, HaSync, Role, DEFAULT_SYNC_INTERVAL};
use cvlan_dataplane::ipsec::{IpsecBackend, IpsecEngine};
use cvlan_dataplane::wireguard::WireGuard;
use cvlan_proto::wireguard::{Device, Outbox, PeerConfig, PeerId, SendPlan};
use rand_core::OsRng;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

const NODE_KEY: [u8; 32] = [0x11; 32];
const NODE_ADDR: &str = "192.0.2.1:51820";

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

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

/// A distinct private key per `i` (byte 0 is clamped by X25519).
fn peer_key(i: usize) -> [u8; 32] {
    std::array::from_fn(|j| match j {
        1 => i as u8,
        2 => (i >> 8) as u8,
        _ => 0x33,
    })
}

fn ipv4_packet() -> Vec<u8> {
    let mut p = vec![0u8; 28];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&28u16.to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p
}

fn engine_with_peers(n: usize) -> Arc<WireGuard> {
    let wg = WireGuard::new(Some(NODE_KEY));
    wg.with(|d| {
        for i in 0..n {
            d.upsert_peer(PeerConfig {
                public_key: public(peer_key(i)),
                preshared_key: None,
                endpoint: None,
                persistent_keepalive: 0,
            });
        }
    });
    wg
}

/// A real handshake with peer `i` (it initiates, the node answers, its first data confirms).
fn establish(node: &WireGuard, i: usize) {
    let mut peer = Device::new(Some(peer_key(i)));
    let pid = peer.upsert_peer(PeerConfig {
        public_key: public(NODE_KEY),
        preshared_key: None,
        endpoint: Some(NODE_ADDR.parse().unwrap()),
        persistent_keepalive: 0,
    });
    let src = SocketAddr::from(([198, 18, (i >> 8) as u8, i as u8], 51820));
    let t = node.time();
    let mut out = Outbox::default();
    let _ = peer.prepare_send(pid, &ipv4_packet(), t, &mut OsRng, &mut out);
    let (init, _) = out.datagrams.remove(0);
    let mut resp = Outbox::default();
    node.with(|d| d.handle_handshake(src, &init, t, &mut OsRng, &mut resp))
        .unwrap();
    let mut out = Outbox::default();
    peer.handle_handshake(
        NODE_ADDR.parse().unwrap(),
        &resp.datagrams[0].0,
        t,
        &mut OsRng,
        &mut out,
    )
    .unwrap();
    let (data, _) = out.datagrams.into_iter().find(|(d, _)| d[0] == 4).unwrap();
    let receiver = u32::from_le_bytes(data[4..8].try_into().unwrap());
    let counter = u64::from_le_bytes(data[8..16].try_into().unwrap());
    let (id, kp) = node.with(|d| d.lookup_receiver(receiver, t)).unwrap();
    let mut payload = data[16..].to_vec();
    let n = kp.open(counter, &mut payload).unwrap();
    let mut o = Outbox::default();
    node.with(|d| d.received_data(id, &kp, src, data.len(), n, t, &mut OsRng, &mut o));
}

fn channel(node_id: u8, listen: u16, peer: u16, events: Arc<Mutex<Vec<HaEvent>>>) -> HaSync {
    HaSync::start(
        HaConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], listen)),
            peer: SocketAddr::from(([127, 0, 0, 1], peer)),
            key: Zeroizing::new([7; 32]),
            node_id,
            sync_interval: DEFAULT_SYNC_INTERVAL,
            lease: lease::DEFAULT_LEASE,
            relay: None,
        },
        Arc::new(move |e| events.lock().unwrap().push(e)),
    )
    .unwrap()
}

/// Thread ids of this process's threads named `name`.
fn tids(name: &str) -> Vec<u32> {
    let mut v: Vec<u32> = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|tid: &u32| {
            std::fs::read_to_string(format!("/proc/self/task/{tid}/comm"))
                .is_ok_and(|c| c.trim() == name)
        })
        .collect();
    v.sort_unstable();
    v
}

/// The thread named `name` that is not in `known` (a new thread names itself once it runs).
fn new_thread(name: &str, known: &[u32]) -> u32 {
    let mut found = None;
    wait("the new thread", Duration::from_secs(5), || {
        found = tids(name).into_iter().find(|t| !known.contains(t));
        found.is_some()
    });
    found.expect("waited for")
}

/// CPU time a thread has run (ns), from the scheduler's own accounting.
fn cpu_ns(tid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Bytes the active has sent on its sync connection (it dials: node 1 to node 2's `port`), as
/// the kernel counts them (`ss`: TCP_INFO's bytes_sent; no counter in the channel itself).
fn bytes_sent_to(port: u16) -> u64 {
    let out = std::process::Command::new("ss")
        .args([
            "-tinH",
            "state",
            "established",
            &format!("( dport = :{port} )"),
        ])
        .output()
        .expect("ss (iproute2)");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find_map(|w| w.strip_prefix("bytes_sent:")?.parse().ok())
        .unwrap_or(0)
}

fn wait(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
    start.elapsed()
}

fn main() {
    if std::env::args().any(|a| a == "--esp") {
        return esp_main();
    }
    let sessions: usize = arg("--sessions").map_or(500, |v| v.parse().unwrap());
    let seconds: u64 = arg("--seconds").map_or(10, |v| v.parse().unwrap());
    let pps: u64 = arg("--pps").map_or(100, |v| v.parse().unwrap());
    assert!((1..=65000).contains(&sessions), "--sessions: 1..65000");

    // The active first, then its sessions: each starts with the lease as its limit.
    let wa = engine_with_peers(sessions);
    let (pa, pb) = (free_port(), free_port());
    let before = tids("ha-sync");
    let a = channel(1, pa, pb, Arc::default());
    a.attach_wireguard(wa.clone());
    a.set_role(Role::Active);
    let a_tid = new_thread("ha-sync", &before);
    for i in 0..sessions {
        establish(&wa, i);
    }
    let peers: Vec<PeerId> = wa.with(|d| d.peer_ids());
    assert_eq!(wa.with(|d| d.session_counters()).len(), sessions);

    // Traffic: every session sends `pps` packets a second, counters reserved as the workers do.
    let stop = Arc::new(AtomicBool::new(false));
    let reserved = Arc::new(AtomicU64::new(0));
    let traffic = {
        let (wa, stop, reserved, peers) =
            (wa.clone(), stop.clone(), reserved.clone(), peers.clone());
        std::thread::Builder::new()
            .name("traffic".into())
            .spawn(move || {
                let pkt = ipv4_packet();
                let period = Duration::from_nanos(1_000_000_000 / pps.max(1));
                let mut next = Instant::now();
                while !stop.load(Relaxed) {
                    let t = wa.time();
                    let mut out = Outbox::default();
                    let n = wa.with(|d| {
                        peers
                            .iter()
                            .filter(|&&id| {
                                matches!(
                                    d.prepare_send(id, &pkt, t, &mut OsRng, &mut out),
                                    SendPlan::Encrypt { .. }
                                )
                            })
                            .count()
                    });
                    reserved.fetch_add(n as u64, Relaxed);
                    next += period;
                    std::thread::sleep(next.saturating_duration_since(Instant::now()));
                }
            })
            .unwrap()
    };
    std::thread::sleep(Duration::from_millis(500));

    // Bulk resync: a standby joins the active under traffic.
    let wb = engine_with_peers(sessions);
    let b_events: Arc<Mutex<Vec<HaEvent>>> = Arc::default();
    let joined = Instant::now();
    let b = channel(2, pb, pa, b_events.clone());
    b.attach_wireguard(wb.clone());
    let b_tid = new_thread("ha-sync", &[before.as_slice(), &[a_tid]].concat());
    // The connection itself waits for the active's next dial (it redials every second).
    let connected = wait("the connection", Duration::from_secs(10), || {
        b.status().peer_connected
    });
    wait(
        "every session acknowledged",
        Duration::from_secs(60),
        || {
            a.status().synced_wg_sessions == sessions as u64
                && b.status().synced_wg_sessions == sessions as u64
                && b_events
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|e| matches!(e, HaEvent::SnapshotDone { .. }))
        },
    );
    let bulk = joined.elapsed();
    let snapshot_done = b_events.lock().unwrap().iter().find_map(|e| match e {
        HaEvent::SnapshotDone { sessions } => Some(*sessions),
        _ => None,
    });
    let same_indices = wb
        .with(|d| d.session_counters())
        .iter()
        .map(|c| c.0)
        .collect::<Vec<_>>()
        == wa
            .with(|d| d.session_counters())
            .iter()
            .map(|c| c.0)
            .collect::<Vec<_>>();

    // Steady state.
    std::thread::sleep(Duration::from_secs(1));
    let (s0, r0) = (a.status(), reserved.load(Relaxed));
    let (ca0, cb0, w0) = (cpu_ns(a_tid), cpu_ns(b_tid), bytes_sent_to(pb));
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    let el = t0.elapsed().as_secs_f64();
    let (s1, r1) = (a.status(), reserved.load(Relaxed));
    let (ca1, cb1, w1) = (cpu_ns(a_tid), cpu_ns(b_tid), bytes_sent_to(pb));
    stop.store(true, Relaxed);
    traffic.join().unwrap();

    // Nothing lost: once the active's channel is closed, everything it sent has arrived; the
    // standby must have authenticated and applied every frame.
    let lag = wa
        .with(|d| d.session_counters())
        .iter()
        .zip(&wb.with(|d| d.session_counters()))
        .map(|(x, y)| x.1.saturating_sub(y.1))
        .max()
        .unwrap_or(0);
    let mut a = a;
    a.close();
    let a_sent = a.status().frames_sent;
    let bs = b.status();
    wait(
        "the standby to read what is in flight",
        Duration::from_secs(5),
        || b.status().frames_received >= a_sent || !b.status().peer_connected,
    );
    std::thread::sleep(Duration::from_millis(100));
    let bs_final = b.status();
    let r = serde_like(&[
        ("sessions", sessions.to_string()),
        ("traffic_pps_per_session", pps.to_string()),
        (
            "traffic_reserved_per_s",
            format!("{:.0}", (r1 - r0) as f64 / el),
        ),
        ("bulk_resync_ms", format!("{:.1}", bulk.as_secs_f64() * 1e3)),
        (
            "connect_ms",
            format!("{:.1}", connected.as_secs_f64() * 1e3),
        ),
        (
            "snapshot_after_connect_ms",
            format!("{:.1}", (bulk - connected).as_secs_f64() * 1e3),
        ),
        (
            "snapshot_done_sessions",
            snapshot_done.map_or("null".into(), |s| s.to_string()),
        ),
        ("same_receiver_indices", same_indices.to_string()),
        (
            "steady_frames_per_s",
            format!("{:.1}", (s1.frames_sent - s0.frames_sent) as f64 / el),
        ),
        (
            "steady_bytes_per_s",
            // `ss` found no connection at one of the reads: no figure rather than a wrong one.
            match (w0, w1) {
                (0, _) | (_, 0) => "null".into(),
                _ if w1 < w0 => "null".into(),
                _ => format!("{:.0}", (w1 - w0) as f64 / el),
            },
        ),
        (
            "active_sync_cpu_pct",
            format!("{:.2}", (ca1 - ca0) as f64 / 1e7 / el),
        ),
        (
            "standby_sync_cpu_pct",
            format!("{:.2}", (cb1 - cb0) as f64 / 1e7 / el),
        ),
        ("active_frames_sent", a_sent.to_string()),
        (
            "standby_frames_applied",
            bs_final.frames_received.to_string(),
        ),
        (
            "frames_lost",
            a_sent.saturating_sub(bs_final.frames_received).to_string(),
        ),
        (
            "rejected",
            (bs.rejected_forged + bs.rejected_replayed).to_string(),
        ),
        ("standby_counter_lag_max", lag.to_string()),
        ("lease_exhausted", s1.lease_exhausted.to_string()),
        (
            // Each one is a new snapshot; bytes_per_s then counts the last connection only.
            "reconnects",
            b_events
                .lock()
                .unwrap()
                .iter()
                .filter(|e| matches!(e, HaEvent::PeerUp { .. }))
                .count()
                .saturating_sub(1)
                .to_string(),
        ),
        ("seconds", format!("{el:.1}")),
    ]);
    emit(&r);
}

fn emit(r: &str) {
    println!("{r}");
    if let Some(path) = arg("--out") {
        std::fs::write(path, format!("{r}\n")).unwrap();
    }
}

const ESP_LOCAL: &str = "192.0.2.1:4500";
const ESP_PEER: &str = "192.0.2.2:4500";

/// Tunnel `i`'s single-address selector on `side` (1: local, 2: remote).
fn esp_ts(side: u8, i: u32) -> TrafficSelector {
    let a = format!("10.{side}.{}.{}", i / 250, i % 250)
        .parse()
        .unwrap();
    TrafficSelector {
        protocol: 0,
        from_port: 0,
        to_port: 65535,
        from: a,
        to: a,
    }
}

fn out_spi(i: u32) -> u32 {
    0x10_0000 + i
}

/// What charon installs for CHILD_SA `i`: both SAs (AES-GCM-256, ESN, NAT-T) and the outbound
/// policy, each SA with its own key.
fn install_child_sa(charon: &mut IpsecBackend, i: u32) {
    for (spi, inbound) in [(out_spi(i), false), (0x20_0000 + i, true)] {
        let (src, dst) = if inbound {
            (ESP_PEER, ESP_LOCAL)
        } else {
            (ESP_LOCAL, ESP_PEER)
        };
        let (l, r) = (esp_ts(1, i), esp_ts(2, i));
        let (src_ts, dst_ts) = if inbound { (r, l) } else { (l, r) };
        let mut key = [0x5a; 36];
        key[..4].copy_from_slice(&spi.to_be_bytes());
        charon
            .add_sa(AddSa {
                id: SaId {
                    src: src.parse().unwrap(),
                    dst: dst.parse().unwrap(),
                    spi,
                    proto: 50,
                    mark: Mark::default(),
                    if_id: 100 + i,
                },
                reqid: 100 + i,
                mode: Mode::Tunnel,
                src_ts: vec![src_ts],
                dst_ts: vec![dst_ts],
                interface: None,
                lifetime: Default::default(),
                enc_alg: 20,
                enc_key: SecretKey::new(key.to_vec()),
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
            })
            .unwrap();
    }
    charon
        .add_policy(Policy {
            id: PolicyId {
                dir: PolicyDir::Out,
                src_ts: esp_ts(1, i),
                dst_ts: esp_ts(2, i),
                mark: Mark::default(),
                if_id: 100 + i,
                interface: None,
            },
            kind: PolicyType::Ipsec,
            prio: PolicyPriority::Default,
            manual_prio: 0,
            src: ESP_LOCAL.parse().unwrap(),
            dst: ESP_PEER.parse().unwrap(),
            sa: SaCfg {
                mode: Mode::Tunnel,
                reqid: 100 + i,
                esp_spi: Some(out_spi(i)),
                ah_spi: None,
                ipcomp_transform: 0,
                ipcomp_cpi: 0,
            },
        })
        .unwrap();
}

fn esp_main() {
    let tunnels: u32 = arg("--tunnels").map_or(500, |v| v.parse().unwrap());
    let seconds: u64 = arg("--seconds").map_or(10, |v| v.parse().unwrap());
    let pps: u64 = arg("--pps").map_or(100, |v| v.parse().unwrap());
    assert!((1..=60000).contains(&tunnels), "--tunnels: 1..60000");
    let sas = 2 * tunnels as u64;

    let ea = IpsecEngine::new("192.0.2.1".parse().unwrap());
    let (pa, pb) = (free_port(), free_port());
    let before = tids("ha-sync");
    let a = channel(1, pa, pb, Arc::default());
    a.attach_ipsec(ea.clone());
    a.set_role(Role::Active);
    let a_tid = new_thread("ha-sync", &before);
    let mut charon = IpsecBackend(ea.clone());
    for i in 0..tunnels {
        install_child_sa(&mut charon, i);
    }
    assert_eq!(ea.policy_count(), tunnels as usize);

    // Traffic: every outbound SA seals `pps` packets a second, as a worker would.
    let stop = Arc::new(AtomicBool::new(false));
    let sealed = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let traffic = {
        let outs: Vec<_> = (0..tunnels)
            .map(|i| ea.outbound_sa(out_spi(i)).unwrap())
            .collect();
        let (stop, sealed, refused) = (stop.clone(), sealed.clone(), refused.clone());
        std::thread::Builder::new()
            .name("traffic".into())
            .spawn(move || {
                let inner = ipv4_packet();
                let h = outs[0].headroom();
                let mut buf = vec![0u8; h + inner.len() + outs[0].max_tailroom()];
                let period = Duration::from_nanos(1_000_000_000 / pps.max(1));
                let mut next = Instant::now();
                while !stop.load(Relaxed) {
                    let now = cvlan_dataplane::clock::now();
                    let (mut ok, mut no) = (0, 0);
                    for sa in &outs {
                        buf[h..h + inner.len()].copy_from_slice(&inner);
                        match sa.seal(&mut buf, h..h + inner.len(), now, &mut OsRng) {
                            Ok(_) => ok += 1,
                            Err(_) => no += 1,
                        }
                    }
                    sealed.fetch_add(ok, Relaxed);
                    refused.fetch_add(no, Relaxed);
                    next += period;
                    std::thread::sleep(next.saturating_duration_since(Instant::now()));
                }
            })
            .unwrap()
    };
    std::thread::sleep(Duration::from_millis(500));

    // Bulk resync: a standby joins the active under traffic.
    let eb = IpsecEngine::new("192.0.2.1".parse().unwrap());
    let joined = Instant::now();
    let b = channel(2, pb, pa, Arc::default());
    b.attach_ipsec(eb.clone());
    let b_tid = new_thread("ha-sync", &[before.as_slice(), &[a_tid]].concat());
    let connected = wait("the connection", Duration::from_secs(10), || {
        b.status().peer_connected
    });
    wait("every SA acknowledged", Duration::from_secs(60), || {
        a.status().synced_esp_sas == sas && b.status().synced_esp_sas == sas
    });
    let bulk = joined.elapsed();
    wait("every policy", Duration::from_secs(10), || {
        eb.policy_count() == tunnels as usize
    });
    let same_policies = eb.policy_if_ids() == ea.policy_if_ids() && eb.sas().len() == sas as usize;

    // Steady state.
    std::thread::sleep(Duration::from_secs(1));
    let (s0, n0) = (a.status(), sealed.load(Relaxed));
    let (ca0, cb0, w0) = (cpu_ns(a_tid), cpu_ns(b_tid), bytes_sent_to(pb));
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    let el = t0.elapsed().as_secs_f64();
    let (s1, n1) = (a.status(), sealed.load(Relaxed));
    let (ca1, cb1, w1) = (cpu_ns(a_tid), cpu_ns(b_tid), bytes_sent_to(pb));
    stop.store(true, Relaxed);
    traffic.join().unwrap();

    let lag = (0..tunnels)
        .map(|i| {
            let spi = out_spi(i);
            (ea.outbound_sa(spi).unwrap().last_seq())
                .saturating_sub(eb.outbound_sa(spi).map_or(0, |sa| sa.last_seq()))
        })
        .max()
        .unwrap_or(0);
    let mut a = a;
    a.close();
    let a_sent = a.status().frames_sent;
    wait(
        "the standby to read what is in flight",
        Duration::from_secs(5),
        || b.status().frames_received >= a_sent || !b.status().peer_connected,
    );
    std::thread::sleep(Duration::from_millis(100));
    let bs = b.status();
    let r = serde_like(&[
        ("tunnels", tunnels.to_string()),
        ("sas", sas.to_string()),
        ("traffic_pps_per_child_sa", pps.to_string()),
        (
            "traffic_sealed_per_s",
            format!("{:.0}", (n1 - n0) as f64 / el),
        ),
        ("traffic_refused", refused.load(Relaxed).to_string()),
        ("bulk_resync_ms", format!("{:.1}", bulk.as_secs_f64() * 1e3)),
        (
            "connect_ms",
            format!("{:.1}", connected.as_secs_f64() * 1e3),
        ),
        (
            "snapshot_after_connect_ms",
            format!("{:.1}", (bulk - connected).as_secs_f64() * 1e3),
        ),
        ("same_sas_and_policies", same_policies.to_string()),
        (
            "steady_frames_per_s",
            format!("{:.1}", (s1.frames_sent - s0.frames_sent) as f64 / el),
        ),
        (
            "steady_bytes_per_s",
            match (w0, w1) {
                (0, _) | (_, 0) => "null".into(),
                _ if w1 < w0 => "null".into(),
                _ => format!("{:.0}", (w1 - w0) as f64 / el),
            },
        ),
        (
            "active_sync_cpu_pct",
            format!("{:.2}", (ca1 - ca0) as f64 / 1e7 / el),
        ),
        (
            "standby_sync_cpu_pct",
            format!("{:.2}", (cb1 - cb0) as f64 / 1e7 / el),
        ),
        ("active_frames_sent", a_sent.to_string()),
        ("standby_frames_applied", bs.frames_received.to_string()),
        (
            "frames_lost",
            a_sent.saturating_sub(bs.frames_received).to_string(),
        ),
        (
            "rejected",
            (bs.rejected_forged + bs.rejected_replayed + bs.rejected_malformed).to_string(),
        ),
        ("standby_seq_lag_max", lag.to_string()),
        ("lease_exhausted", s1.lease_exhausted.to_string()),
        ("seconds", format!("{el:.1}")),
    ]);
    emit(&r);
}

fn serde_like(kv: &[(&str, String)]) -> String {
    let body: Vec<String> = kv.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect();
    format!("{{{}}}", body.join(", "))
}
