//! A device with two UDP ports against the real kernel (needs root for the TUN device; ignored
//! otherwise): datagrams arrive tagged with the socket they came in on, replies leave from the
//! socket the transport picks, `Senders` sends from a control thread and wakes worker 0, and a
//! stopped device releases its ports even while the transport still holds its `Senders`.

mod support;

use cvlan_dataplane::device::no_events;
use cvlan_dataplane::offload::udp_gso;
use cvlan_dataplane::transport::{Ctx, Packet, Senders, Transport, Verdict};
use cvlan_dataplane::{Device, DeviceConfig};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Echoes every datagram; one starting with `swap` is answered from the other socket.
#[derive(Default)]
struct Echo {
    senders: OnceLock<Senders>,
    seen: Mutex<Vec<(usize, Vec<u8>)>>,
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
        let mut seen = self.seen.lock().unwrap();
        for p in pkts {
            seen.push((p.sock, p.data().to_vec()));
            if p.data().starts_with(b"swap") {
                p.sock = 1 - p.sock;
            }
            p.verdict = Verdict::Send;
        }
    }
    fn tick(&self, _ctx: &mut Ctx<'_>) {
        self.ticks.fetch_add(1, Ordering::SeqCst);
    }
    fn tick_interval(&self) -> Duration {
        // Only `Senders::wake` makes the workers tick within a test's lifetime.
        Duration::from_secs(3600)
    }
}

fn name(tag: &str) -> String {
    format!("cvp{tag}{}", std::process::id() % 100_000)
}

fn recv(sock: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0u8; 65536];
    let (n, from) = sock.recv_from(&mut buf).expect("reply within the timeout");
    (buf[..n].to_vec(), from)
}

fn start(tag: &str, offload: bool) -> (Device, Arc<Echo>, UdpSocket, [u16; 2]) {
    let t = Arc::new(Echo::default());
    let dev = Device::start(
        DeviceConfig {
            tun_name: name(tag),
            mtu: 1420,
            listen: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            listen_ports: vec![0, 0],
            workers: 2,
            offload,
            raw_esp: false,
        },
        t.clone(),
        no_events(),
    )
    .expect("start");
    let ports = dev.listen_ports();
    assert_eq!(ports.len(), 2);
    assert!(
        ports.iter().all(|p| *p != 0) && ports[0] != ports[1],
        "{ports:?}"
    );
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    (dev, t, client, [ports[0], ports[1]])
}

fn two_ports(tag: &str, offload: bool) {
    let (dev, t, client, ports) = start(tag, offload);
    let to = |i: usize| SocketAddr::from((Ipv4Addr::LOCALHOST, ports[i]));

    client.send_to(b"keep on 0", to(0)).unwrap();
    assert_eq!(recv(&client), (b"keep on 0".to_vec(), to(0)));
    client.send_to(b"keep on 1", to(1)).unwrap();
    assert_eq!(recv(&client), (b"keep on 1".to_vec(), to(1)));
    client.send_to(b"swap from 1", to(1)).unwrap();
    assert_eq!(
        recv(&client),
        (b"swap from 1".to_vec(), to(0)),
        "sent from socket 0"
    );
    client.send_to(b"swap from 0", to(0)).unwrap();
    assert_eq!(
        recv(&client),
        (b"swap from 0".to_vec(), to(1)),
        "sent from socket 1"
    );
    let seen: Vec<usize> = t.seen.lock().unwrap().iter().map(|(s, _)| *s).collect();
    assert_eq!(seen, [0, 1, 1, 0]);

    // Ten datagrams in one GSO send: with UDP_GRO on they may arrive as one message, but the
    // transport must see ten packets, and the echo leaves as ten datagrams again.
    t.seen.lock().unwrap().clear();
    let data: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 1200]).collect();
    let refs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
    udp_gso::send_segmented(client.as_raw_fd(), &refs, to(1), false).unwrap();
    for want in &data {
        assert_eq!(recv(&client), (want.clone(), to(1)));
    }
    let seen = t.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 10);
    assert!(seen.iter().zip(&data).all(|((s, d), w)| *s == 1 && d == w));
    let total = |f: fn(&cvlan_dataplane::counters::CounterSnapshot) -> u64| {
        dev.stats().iter().map(|s| f(&s.counters)).sum::<u64>()
    };
    // The worker counts a send after the syscall returns, possibly after the reply arrived.
    let deadline = Instant::now() + Duration::from_secs(2);
    while total(|c| c.udp_tx_packets) < 14 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(total(|c| c.udp_rx_packets), 14, "{:?}", dev.stats());
    assert_eq!(total(|c| c.udp_tx_packets), 14, "{:?}", dev.stats());
    assert!(total(|c| c.udp_recvs) <= 14 && total(|c| c.udp_sends) <= 14);
    if offload {
        // One GRO message and one GSO send carried the ten (loopback supports both).
        assert!(total(|c| c.udp_recvs) <= 5, "{:?}", dev.stats());
        assert!(total(|c| c.udp_sends) <= 5, "{:?}", dev.stats());
    }
    drop(dev);
}

#[test]
#[ignore = "needs root"]
fn two_ports_tag_and_send_from_the_right_socket_with_offload() {
    support::require_root(&[]);
    two_ports("o", true);
}

#[test]
#[ignore = "needs root"]
fn two_ports_tag_and_send_from_the_right_socket_without_offload() {
    support::require_root(&[]);
    two_ports("p", false);
}

#[test]
#[ignore = "needs root"]
fn senders_send_from_another_thread_wake_worker_zero_and_close_on_stop() {
    support::require_root(&[]);
    let (mut dev, t, client, ports) = start("s", true);
    let senders = t
        .senders
        .get()
        .expect("attached before start returned")
        .clone();
    assert_eq!(senders.len(), 2);
    assert_eq!(
        [senders.port(0), senders.port(1)],
        [Some(ports[0]), Some(ports[1])]
    );
    let dst = client.local_addr().unwrap();
    let s2 = senders.clone();
    std::thread::spawn(move || {
        s2.send_to(1, b"from control", dst).unwrap();
        s2.send_to(0, b"from control 0", dst).unwrap();
        assert!(s2.send_to(2, b"no such socket", dst).is_err());
    })
    .join()
    .unwrap();
    let (d, from) = recv(&client);
    assert_eq!(
        (d.as_slice(), from.port()),
        (&b"from control"[..], ports[1])
    );
    let (d, from) = recv(&client);
    assert_eq!(
        (d.as_slice(), from.port()),
        (&b"from control 0"[..], ports[0])
    );

    let before = t.ticks.load(Ordering::SeqCst);
    senders.wake();
    let deadline = Instant::now() + Duration::from_secs(2);
    while t.ticks.load(Ordering::SeqCst) == before {
        assert!(
            Instant::now() < deadline,
            "wake() did not make worker 0 tick"
        );
        std::thread::sleep(Duration::from_millis(5));
    }

    dev.stop();
    let e = senders.send_to(0, b"late", dst).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotConnected);
    for p in ports {
        // Bound without SO_REUSEPORT: fails if any descriptor of the device survived.
        UdpSocket::bind(("127.0.0.1", p)).expect("port released on stop");
    }
}
