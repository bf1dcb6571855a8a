//! A TCP flow through two plain-transport devices in two network namespaces, with offload on
//! and off (root and `ip` needed; ignored otherwise). The data must arrive intact either way;
//! with offload on, the counters must show super-packets split on TUN reads, GSO sends, GRO
//! receives and coalesced TUN writes, and with it off, one packet per TUN syscall.
//!
//! Each namespace is entered by one thread (`setns` is per thread): the device is started
//! there, so its TUN device and sockets live in that namespace; the workers only use the fds.

#[path = "support/netns.rs"]
mod netns;
mod support;
use netns::{ip, Netns};

use cvlan_dataplane::counters::{CounterSnapshot, DropReason};
use cvlan_dataplane::plain::{PlainPeer, PlainTransport};
use cvlan_dataplane::Device;
use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

const TUN_A: &str = "10.201.0.1";
const TUN_B: &str = "10.201.0.2";
const BYTES: usize = 24 << 20;

/// The plain transport with one peer: `peer`:7000, which holds `inner_peer`.
fn plain(peer: &str, inner_peer: &str) -> Arc<PlainTransport> {
    Arc::new(PlainTransport::new(vec![PlainPeer {
        endpoint: format!("{peer}:7000").parse().unwrap(),
        allowed_ips: vec![format!("{inner_peer}/32").parse().unwrap()],
    }]))
}

fn total(dev: &Device) -> CounterSnapshot {
    let mut t = CounterSnapshot::default();
    for s in dev.stats() {
        let c = s.counters;
        t.tun_rx_packets += c.tun_rx_packets;
        t.tun_tx_packets += c.tun_tx_packets;
        t.udp_rx_packets += c.udp_rx_packets;
        t.udp_tx_packets += c.udp_tx_packets;
        t.tun_reads += c.tun_reads;
        t.tun_writes += c.tun_writes;
        t.udp_recvs += c.udp_recvs;
        t.udp_sends += c.udp_sends;
        t.drops.extend(c.drops.into_iter().filter(|(_, n)| *n > 0));
    }
    t
}

/// Byte `i` of the stream (the client repeats a 1 MiB chunk, so the pattern has that period).
fn pattern(i: usize) -> u8 {
    ((i & 0xf_ffff).wrapping_mul(2654435761) >> 13) as u8
}

fn forward_tcp(tag: &str, offload: bool) {
    let id = std::process::id() % 10_000;
    let a = Netns::new(format!("cvwf{tag}a{id}"));
    let b = Netns::new(format!("cvwf{tag}b{id}"));
    let (va, vb) = (format!("cvwf{tag}{id}a"), format!("cvwf{tag}{id}b"));
    ip(&[
        "link", "add", &va, "netns", &a.0, "type", "veth", "peer", "name", &vb, "netns", &b.0,
    ]);
    ip(&["-n", &a.0, "addr", "add", "198.18.201.1/24", "dev", &va]);
    ip(&["-n", &b.0, "addr", "add", "198.18.201.2/24", "dev", &vb]);
    ip(&["-n", &a.0, "link", "set", &va, "up"]);
    ip(&["-n", &b.0, "link", "set", &vb, "up"]);

    let (ta, tb) = (format!("cvwf{tag}{id}t"), format!("cvwf{tag}{id}u"));
    let dev_a = a.device(
        &ta,
        "198.18.201.1",
        7000,
        offload,
        plain("198.18.201.2", TUN_B),
    );
    let dev_b = b.device(
        &tb,
        "198.18.201.2",
        7000,
        offload,
        plain("198.18.201.1", TUN_A),
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

    let listener = b.run(|| TcpListener::bind((TUN_B, 5201)).expect("listen"));
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let mut buf = vec![0u8; 1 << 16];
        let (mut n, mut bad) = (0usize, 0usize);
        loop {
            let k = s.read(&mut buf).expect("read");
            if k == 0 {
                break;
            }
            bad += buf[..k]
                .iter()
                .enumerate()
                .filter(|(j, v)| **v != pattern(n + j))
                .count();
            n += k;
        }
        (n, bad)
    });
    a.run(|| {
        let mut s = TcpStream::connect_timeout(
            &(TUN_B.parse::<IpAddr>().unwrap(), 5201).into(),
            Duration::from_secs(10),
        )
        .expect("connect through the tunnel");
        s.set_write_timeout(Some(Duration::from_secs(60))).unwrap();
        let chunk: Vec<u8> = (0..1 << 20).map(pattern).collect();
        for _ in 0..BYTES >> 20 {
            s.write_all(&chunk).expect("write");
        }
    });
    let (n, bad) = server.join().expect("server");
    assert_eq!(
        (n, bad),
        (BYTES, 0),
        "all bytes arrive, in order and intact"
    );

    let (ca, cb) = (total(&dev_a), total(&dev_b));
    eprintln!("offload={offload}\n A {ca:?}\n B {cb:?}");
    // The kernel's own IPv6 chatter on a fresh link (router solicitations) has no route.
    let real = |d: &[(DropReason, u64)]| d.iter().any(|(r, _)| *r != DropReason::NoRoute);
    assert!(
        !real(&ca.drops) && !real(&cb.drops),
        "drops: {:?} {:?}",
        ca.drops,
        cb.drops
    );
    assert!(
        ca.tun_rx_packets as usize >= BYTES / 1400 && cb.tun_tx_packets as usize >= BYTES / 1400
    );
    if offload {
        assert!(
            ca.tun_rx_packets > 2 * ca.tun_reads,
            "TSO super-packets split on TUN reads"
        );
        assert!(ca.udp_tx_packets > 2 * ca.udp_sends, "GSO sends");
        assert!(cb.udp_rx_packets > 2 * cb.udp_recvs, "GRO receives");
        assert!(
            cb.tun_tx_packets > 2 * cb.tun_writes,
            "coalesced TUN writes"
        );
    } else {
        assert_eq!(ca.tun_rx_packets, ca.tun_reads, "one packet per TUN read");
        assert_eq!(cb.tun_tx_packets, cb.tun_writes, "one packet per TUN write");
    }
    drop((dev_a, dev_b));
}

#[test]
#[ignore = "needs root"]
fn tcp_through_two_devices_with_offload() {
    support::require_root(&["ip"]);
    forward_tcp("o", true);
}

#[test]
#[ignore = "needs root"]
fn tcp_through_two_devices_without_offload() {
    support::require_root(&["ip"]);
    forward_tcp("p", false);
}
