//! A TCP flow relayed by a hub between two of its peers stays in order (root and `ip` needed;
//! ignored otherwise). Three namespaces: site A ⇄ hub H ⇄ site C, plain-transport devices with
//! two workers each; H forwards between its two peers through its own TUN device.
//!
//! The flow (one connection, data both ways) reaches H on different workers in its two
//! directions (C's port is chosen until it does).
//! Each worker writes what it decrypted to the TUN; if each wrote on its own queue, the kernel's
//! per-flow queue choice (the last writer's) would flip with every write, two H workers would
//! read and send the forwarded direction at once, and C would see it out of order. The
//! workers write on the queue the flow picks (`cvlan_dataplane::tun_queues`), so C's TCP
//! and A's TCP find (almost) nothing to put in their out-of-order queues.

#[path = "support/netns.rs"]
mod netns;
mod support;
use netns::{ip, Netns};

use cvlan_dataplane::plain::{PlainPeer, PlainTransport};
use cvlan_dataplane::Device;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

const BYTES: usize = 48 << 20;

fn peers(list: &[(String, &str)]) -> Vec<PlainPeer> {
    list.iter()
        .map(|(endpoint, allowed)| PlainPeer {
            endpoint: endpoint.parse().unwrap(),
            allowed_ips: vec![allowed.parse().unwrap()],
        })
        .collect()
}

/// A site: a device on `listen`:`port` whose one peer is the hub at `hub`, holding `far`.
fn site(ns: &Netns, tun: &str, listen: &str, port: u16, hub: &str, far: &str) -> Device {
    let transport = PlainTransport::new(peers(&[(hub.to_string(), far)]));
    ns.device(tun, listen, port, true, Arc::new(transport))
}

fn udp_rx(dev: &Device) -> Vec<u64> {
    dev.stats()
        .iter()
        .map(|s| s.counters.udp_rx_packets)
        .collect()
}

/// The worker of `hub` that received what `send` made it receive.
fn receiving_worker(hub: &Device, send: impl FnOnce()) -> usize {
    let before = udp_rx(hub);
    send();
    std::thread::sleep(Duration::from_millis(200));
    let after = udp_rx(hub);
    let grew: Vec<usize> = (0..after.len())
        .filter(|&i| after[i] > before.get(i).copied().unwrap_or(0))
        .collect();
    assert_eq!(
        grew.len(),
        1,
        "one worker receives a peer's datagrams: {before:?} → {after:?}"
    );
    grew[0]
}

/// Datagrams into `ns` toward `to` (forwarded by the hub, dropped by the far site's kernel).
fn probe(ns: &Netns, from: &'static str, to: &'static str) {
    ns.run(move || {
        let s = UdpSocket::bind((from, 0)).unwrap();
        for _ in 0..20 {
            s.send_to(b"probe", (to, 9)).unwrap();
        }
    });
}

/// Sends `BYTES` on `s` while reading what the other end sends; returns the bytes read.
fn exchange(s: TcpStream) -> usize {
    let mut w = s.try_clone().unwrap();
    w.set_write_timeout(Some(Duration::from_secs(60))).unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = vec![0x5au8; 1 << 20];
        for _ in 0..BYTES >> 20 {
            w.write_all(&chunk).expect("write");
        }
        w.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut r = s;
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0usize;
    loop {
        let k = r.read(&mut buf).expect("read");
        if k == 0 {
            break;
        }
        n += k;
    }
    writer.join().expect("writer");
    n
}

/// TcpExtTCPOFOQueue of the calling thread's namespace.
fn ofo_queue() -> u64 {
    let text = std::fs::read_to_string("/proc/thread-self/net/netstat").unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("TcpExt:")).collect();
    let (names, values) = (lines[0], lines[1]);
    let i = names
        .split_whitespace()
        .position(|n| n == "TCPOFOQueue")
        .unwrap();
    values.split_whitespace().nth(i).unwrap().parse().unwrap()
}

#[test]
#[ignore = "needs root"]
fn a_flow_relayed_between_two_peers_stays_in_order() {
    support::require_root(&["ip"]);
    let id = std::process::id() % 10_000;
    let (a, h, c) = (
        Netns::new(format!("cvtqa{id}")),
        Netns::new(format!("cvtqh{id}")),
        Netns::new(format!("cvtqc{id}")),
    );
    for (site, net, tag) in [(&a, "198.18.202", "a"), (&c, "198.18.203", "c")] {
        let (vs, vh) = (format!("cvtq{id}{tag}s"), format!("cvtq{id}{tag}h"));
        ip(&[
            "link", "add", &vs, "netns", &site.0, "type", "veth", "peer", "name", &vh, "netns",
            &h.0,
        ]);
        ip(&[
            "-n",
            &site.0,
            "addr",
            "add",
            &format!("{net}.1/24"),
            "dev",
            &vs,
        ]);
        ip(&[
            "-n",
            &h.0,
            "addr",
            "add",
            &format!("{net}.2/24"),
            "dev",
            &vh,
        ]);
        ip(&["-n", &site.0, "link", "set", &vs, "up"]);
        ip(&["-n", &h.0, "link", "set", &vh, "up"]);
    }
    let ok = Command::new("ip")
        .args([
            "netns",
            "exec",
            &h.0,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ])
        .status()
        .unwrap();
    assert!(ok.success(), "ip_forward in the hub");

    let (ta, th, tc) = (
        format!("cvtq{id}ta"),
        format!("cvtq{id}th"),
        format!("cvtq{id}tc"),
    );
    let dev_a = site(
        &a,
        &ta,
        "198.18.202.1",
        7000,
        "198.18.202.2:7000",
        "10.202.3.0/24",
    );
    ip(&["-n", &a.0, "addr", "add", "10.202.1.1/24", "dev", &ta]);
    ip(&["-n", &a.0, "route", "add", "10.202.3.0/24", "dev", &ta]);
    let hub_peers = |c_port: u16| {
        peers(&[
            ("198.18.202.1:7000".into(), "10.202.1.0/24"),
            (format!("198.18.203.1:{c_port}"), "10.202.3.0/24"),
        ])
    };
    let hub = Arc::new(PlainTransport::new(hub_peers(7100)));
    let dev_h = h.device(&th, "0.0.0.0", 7000, true, hub.clone());
    ip(&["-n", &h.0, "addr", "add", "10.202.2.1/24", "dev", &th]);
    ip(&["-n", &h.0, "route", "add", "10.202.1.0/24", "dev", &th]);
    ip(&["-n", &h.0, "route", "add", "10.202.3.0/24", "dev", &th]);
    let from_a = receiving_worker(&dev_h, || probe(&a, "10.202.1.1", "10.202.3.99"));

    // C's port picks the hub worker its datagrams reach (the SO_REUSEPORT hash of the 4-tuple):
    // take the first that differs from A's, and tell the hub.
    let mut dev_c = None;
    for port in 7100..7140 {
        let d = site(
            &c,
            &tc,
            "198.18.203.1",
            port,
            "198.18.203.2:7000",
            "10.202.1.0/24",
        );
        ip(&["-n", &c.0, "addr", "replace", "10.202.3.1/24", "dev", &tc]);
        ip(&["-n", &c.0, "route", "replace", "10.202.1.0/24", "dev", &tc]);
        if receiving_worker(&dev_h, || probe(&c, "10.202.3.1", "10.202.1.99")) != from_a {
            hub.set_peers(hub_peers(port));
            dev_c = Some(d);
            break;
        }
        drop(d);
    }
    let dev_c = dev_c.expect("a port of C whose datagrams reach the other hub worker");

    // One connection carrying data both ways at once: both directions of the flow are written
    // to the hub's TUN all the time, by the two workers.
    let listener = c.run(|| TcpListener::bind(("10.202.3.1", 5201)).expect("listen"));
    let server = std::thread::spawn(move || {
        let (s, _) = listener.accept().expect("accept");
        exchange(s)
    });
    std::thread::sleep(Duration::from_millis(100));
    let client = a.run(|| {
        let to: SocketAddr = "10.202.3.1:5201".parse().unwrap();
        TcpStream::connect_timeout(&to, Duration::from_secs(10)).expect("connect through the hub")
    });
    let (ofo_a0, ofo_c0) = (a.run(ofo_queue), c.run(ofo_queue));
    let at_a = exchange(client);
    let at_c = server.join().expect("server");
    let (ofo_a, ofo_c) = (a.run(ofo_queue) - ofo_a0, c.run(ofo_queue) - ofo_c0);
    let segments = 2 * BYTES / 1380;
    eprintln!(
        "hub workers: A's datagrams on {from_a}; out-of-order queue entries: {ofo_a} at A, {ofo_c} at C, of ~{segments} segments"
    );
    assert_eq!((at_a, at_c), (BYTES, BYTES));
    // Reordered, this is thousands (a few percent of the segments); in order, none, or a
    // handful when a packet is lost and its successors wait.
    assert!(
        (ofo_a + ofo_c) * 1000 < segments as u64,
        "{ofo_a} + {ofo_c} segments arrived out of order (of ~{segments})"
    );
    drop((dev_a, dev_c, dev_h));
}
