//! Moving a running device to another port (needs root for the TUN device; ignored otherwise):
//! the new port answers, the old one is released, the transport's `Senders` send from the new
//! port and still wake worker 0, the counters go on, and a port in use is refused without
//! changing anything.

mod support;

use cvlan_dataplane::device::no_events;
use cvlan_dataplane::error::Code;
use cvlan_dataplane::transport::{Ctx, Packet, Senders, Transport, Verdict};
use cvlan_dataplane::{Device, DeviceConfig};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Echo {
    senders: OnceLock<Senders>,
    ticks: AtomicUsize,
}

impl Transport for Echo {
    fn name(&self) -> &'static str {
        "echo"
    }
    fn attach(&self, senders: Senders) {
        assert!(self.senders.set(senders).is_ok(), "attach is called once");
    }
    fn encapsulate(&self, _ctx: &mut Ctx<'_>, pkts: &mut [Packet]) {
        for p in pkts {
            p.verdict = Verdict::Drop;
        }
    }
    fn decapsulate(&self, _ctx: &mut Ctx<'_>, pkts: &mut [Packet]) {
        for p in pkts {
            p.verdict = Verdict::Send;
        }
    }
    fn tick(&self, _ctx: &mut Ctx<'_>) {
        self.ticks.fetch_add(1, Ordering::SeqCst);
    }
    fn tick_interval(&self) -> Duration {
        Duration::from_secs(3600)
    }
}

fn echo_from(client: &UdpSocket, port: u16, msg: &[u8]) -> Option<u16> {
    client
        .send_to(msg, SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .unwrap();
    let mut buf = [0u8; 2048];
    let (n, from) = client.recv_from(&mut buf).ok()?;
    assert_eq!(&buf[..n], msg);
    Some(from.port())
}

#[test]
#[ignore = "needs root"]
fn a_running_device_moves_to_another_port() {
    support::require_root(&[]);
    let t = Arc::new(Echo::default());
    let mut dev = Device::start(
        DeviceConfig {
            tun_name: format!("cvlp{}", std::process::id() % 100_000),
            mtu: 1420,
            listen: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            listen_ports: vec![0],
            workers: 2,
            offload: true,
            raw_esp: false,
        },
        t.clone(),
        no_events(),
    )
    .expect("start");
    let old = dev.listen_port();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    assert_eq!(echo_from(&client, old, b"before"), Some(old));

    // A port someone else holds: refused, nothing changed.
    let holder = UdpSocket::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap().port();
    let e = dev
        .set_listen_port(0, taken, &|| {})
        .expect_err("port in use");
    assert_eq!(e.code, Code::AddrInUse, "{e}");
    assert_eq!(dev.listen_port(), old);
    assert_eq!(echo_from(&client, old, b"still"), Some(old));

    // 0 picks a free port, as at start.
    let announced = std::cell::Cell::new(None);
    let senders0 = t.senders.get().unwrap().clone();
    let new = dev
        .set_listen_port(0, 0, &|| announced.set(senders0.port(0)))
        .expect("move");
    assert_eq!(announced.get(), Some(new), "announced from the new port");
    assert!(new != 0 && new != old);
    assert_eq!(dev.listen_port(), new);
    // Several sources, so both workers' sockets on the new port are exercised.
    for i in 0..8 {
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        assert_eq!(
            echo_from(&c, new, format!("after {i}").as_bytes()),
            Some(new)
        );
    }
    assert_eq!(echo_from(&client, old, b"gone"), None, "old port released");
    UdpSocket::bind(("127.0.0.1", old)).expect("the old port is free again");

    let senders = t.senders.get().unwrap();
    assert_eq!(senders.port(0), Some(new));
    senders
        .send_to(0, b"from control", client.local_addr().unwrap())
        .unwrap();
    let mut buf = [0u8; 64];
    let (_, from) = client.recv_from(&mut buf).unwrap();
    assert_eq!(from.port(), new, "senders use the new socket");
    let ticks = t.ticks.load(Ordering::SeqCst);
    senders.wake();
    let deadline = Instant::now() + Duration::from_secs(2);
    while t.ticks.load(Ordering::SeqCst) == ticks && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        t.ticks.load(Ordering::SeqCst) > ticks,
        "worker 0 still wakes"
    );
    assert_eq!(dev.worker_count(), 2);
    let rx: u64 = dev.stats().iter().map(|s| s.counters.udp_rx_packets).sum();
    assert!(rx >= 10, "counters kept across the move: {rx}");
    assert_eq!(
        dev.set_listen_port(3, 1, &|| {}).map_err(|e| e.code),
        Err(Code::InvalidArg)
    );
}
