//! One flow's crypto on every worker (`cvlan_dataplane::spread`): a single UDP flow through two
//! devices with two workers each (WireGuard, and the plain transport), in two network
//! namespaces (root and `ip` needed; ignored otherwise). The flow arrives on one worker's socket of the receiving device,
//! yet both of its workers open its datagrams (per-worker counters; WireGuard, whose opening keeps
//! that worker CPU-bound), both workers of the sending device seal them, and the sequence numbers
//! the flow carries arrive in order.

#[path = "support/netns.rs"]
mod netns;
mod support;
use netns::{ip, Netns};

use cvlan_dataplane::counters::CounterSnapshot;
use cvlan_dataplane::plain::{PlainPeer, PlainTransport};
use cvlan_dataplane::transport::Transport;
use cvlan_dataplane::wireguard::{WireGuard, WireGuardTransport};
use cvlan_dataplane::Device;
use cvlan_proto::wireguard::PeerConfig;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TUN_A: &str = "10.202.0.1";
const TUN_B: &str = "10.202.0.2";
const DATAGRAMS: u64 = 60_000;
/// At most this many bursts: the receiving device shares only once it is CPU-bound
/// (`spread::Engagement`), which one burst need not make it on a quiet machine.
const BURSTS: u64 = 6;

#[derive(Clone, Copy)]
enum Kind {
    Plain,
    WireGuard,
}

/// A device's transport: towards `peer` (underlay) for `inner_peer`; WireGuard keys by side.
fn transport(kind: Kind, side: u8, peer: &str, inner_peer: &str) -> Arc<dyn Transport> {
    let endpoint = format!("{peer}:7000").parse().unwrap();
    let inner = format!("{inner_peer}/32").parse().unwrap();
    match kind {
        Kind::Plain => Arc::new(PlainTransport::new(vec![PlainPeer {
            endpoint,
            allowed_ips: vec![inner],
        }])),
        Kind::WireGuard => {
            let key = |s: u8| [s.wrapping_mul(37).wrapping_add(11); 32];
            let peer_public = WireGuard::new(Some(key(3 - side)))
                .with(|d| d.public_key())
                .unwrap();
            let wg = WireGuard::new(Some(key(side)));
            wg.with(|d| {
                let id = d.upsert_peer(PeerConfig {
                    public_key: peer_public,
                    preshared_key: None,
                    endpoint: Some(endpoint),
                    persistent_keepalive: 0,
                });
                d.add_allowed_ip(id, inner);
            });
            Arc::new(WireGuardTransport { wg })
        }
    }
}

fn per_worker(dev: &Device) -> Vec<CounterSnapshot> {
    dev.stats().into_iter().map(|s| s.counters).collect()
}

#[test]
#[ignore = "needs root"]
fn one_wireguard_peer_is_sealed_and_opened_on_every_worker_in_order() {
    one_flow(Kind::WireGuard, "w");
}

#[test]
#[ignore = "needs root"]
fn one_plain_flow_is_sealed_and_opened_on_every_worker_in_order() {
    one_flow(Kind::Plain, "p");
}

fn one_flow(kind: Kind, tag: &str) {
    support::require_root(&["ip"]);
    cvlan_dataplane::spread::set_enabled(true);
    let id = std::process::id() % 10_000;
    let a = Netns::new(format!("cvsp{tag}{id}a"));
    let b = Netns::new(format!("cvsp{tag}{id}b"));
    let (va, vb) = (format!("cvsp{tag}{id}va"), format!("cvsp{tag}{id}vb"));
    ip(&[
        "link", "add", &va, "netns", &a.0, "type", "veth", "peer", "name", &vb, "netns", &b.0,
    ]);
    ip(&["-n", &a.0, "addr", "add", "198.18.202.1/24", "dev", &va]);
    ip(&["-n", &b.0, "addr", "add", "198.18.202.2/24", "dev", &vb]);
    ip(&["-n", &a.0, "link", "set", &va, "up"]);
    ip(&["-n", &b.0, "link", "set", &vb, "up"]);
    let (ta, tb) = (format!("cvsp{tag}{id}t"), format!("cvsp{tag}{id}u"));
    let dev_a = a.device(
        &ta,
        "198.18.202.1",
        7000,
        true,
        transport(kind, 1, "198.18.202.2", TUN_B),
    );
    let dev_b = b.device(
        &tb,
        "198.18.202.2",
        7000,
        true,
        transport(kind, 2, "198.18.202.1", TUN_A),
    );
    ip(&[
        "-n",
        &a.0,
        "addr",
        "add",
        &format!("{TUN_A}/24"),
        "dev",
        &ta,
    ]);
    ip(&[
        "-n",
        &b.0,
        "addr",
        "add",
        &format!("{TUN_B}/24"),
        "dev",
        &tb,
    ]);

    let rx = b.run(|| {
        let s = UdpSocket::bind((TUN_B, 9000)).expect("bind receiver");
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        // Room for the burst while this thread waits for a core on a busy machine.
        let size: libc::c_int = 32 << 20;
        // SAFETY: a valid socket and an int option of the right size.
        let r = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(r, 0, "SO_RCVBUFFORCE: {}", std::io::Error::last_os_error());
        s
    });
    let receiver = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let (mut got, mut last, mut out_of_order) = (0u64, None::<u64>, 0u64);
        while let Ok(n) = rx.recv(&mut buf) {
            let seq = u64::from_be_bytes(buf[..8].try_into().unwrap());
            assert_eq!(n, 1200);
            if last.is_some_and(|l| seq <= l) {
                out_of_order += 1;
            }
            last = Some(seq);
            got += 1;
        }
        (got, out_of_order)
    });
    let tx = a.run(|| {
        let s = UdpSocket::bind((TUN_A, 0)).expect("bind sender");
        // A first datagram to a closed port starts WireGuard's handshake; the flow starts once
        // the session is up, so no packet of it waits in the handshake queue.
        s.send_to(&[0u8; 8], (TUN_B, 9001)).expect("send");
        std::thread::sleep(Duration::from_millis(1500));
        s.connect((TUN_B, 9000)).expect("connect");
        s
    });
    // Bursts until both sending workers have sealed some of the flow and (WireGuard) both receiving
    // workers have opened some of it, one flow with sequence numbers across all of them; the
    // receiver stops when nothing comes for 2 s.
    let (mut sent_in, mut bursts) = (Duration::ZERO, 0);
    let mut buf = [0u8; 1200];
    while bursts < BURSTS {
        let t0 = Instant::now();
        for seq in bursts * DATAGRAMS..(bursts + 1) * DATAGRAMS {
            buf[..8].copy_from_slice(&seq.to_be_bytes());
            // A full TUN queue drops; the flow only has to stay in order.
            let _ = tx.send(&buf);
        }
        sent_in += t0.elapsed();
        bursts += 1;
        std::thread::sleep(Duration::from_millis(300));
        // Sharing engages only once a worker stays CPU-bound (`spread::Engagement`): on a busy
        // machine one burst may not get there, so burst again until it has (or BURSTS).
        let shared = |w: &[CounterSnapshot]| {
            w.iter().all(|c| c.crypto_packets > 0) && w.iter().any(|c| c.helped_packets > 0)
        };
        let (wa, wb) = (per_worker(&dev_a), per_worker(&dev_b));
        if shared(&wa) && (matches!(kind, Kind::Plain) || shared(&wb)) {
            break;
        }
    }
    drop(tx);
    let (got, out_of_order) = receiver.join().expect("receiver");
    let (wa, wb) = (per_worker(&dev_a), per_worker(&dev_b));
    for (name, w) in [("A", &wa), ("B", &wb)] {
        for (i, c) in w.iter().enumerate() {
            eprintln!(
                "{name} worker {i}: tun rx {} udp rx {} crypto {} helped {} tun tx {}",
                c.tun_rx_packets,
                c.udp_rx_packets,
                c.crypto_packets,
                c.helped_packets,
                c.tun_tx_packets
            );
        }
    }
    eprintln!("sent {bursts} × {DATAGRAMS} in {sent_in:?}, received {got}");
    assert!(got >= 1000, "the flow gets through ({got})");
    assert_eq!(out_of_order, 0, "sequence numbers arrive in order");
    assert_eq!(
        wb.iter().filter(|c| c.udp_rx_packets > 0).count(),
        1,
        "one flow: one worker's socket receives it"
    );
    // Opening a plain datagram costs next to nothing: that receiver mostly keeps up with the
    // burst, is not CPU-bound for long enough and need not share (`spread::Engagement`).
    if matches!(kind, Kind::WireGuard) {
        assert!(
            wb.iter().all(|c| c.crypto_packets > 0) && wb.iter().any(|c| c.helped_packets > 0),
            "both workers of the receiving device open the flow's datagrams"
        );
    }
    assert!(
        wa.iter().all(|c| c.crypto_packets > 0) && wa.iter().any(|c| c.helped_packets > 0),
        "both workers of the sending device seal them"
    );
    drop((dev_a, dev_b));
}
