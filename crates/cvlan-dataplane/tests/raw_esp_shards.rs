//! Raw ESP sockets split the SPIs between workers (`UdpSocket::shard_esp`), against the real
//! kernel on 127.0.0.1 (needs root): every ESP packet reaches exactly the socket of its shard,
//! re-sharding moves SPIs at once, and a device's workers each open the SAs of their shard,
//! also after `set_workers`.

mod support;

use cvlan_dataplane::device::no_events;
use cvlan_dataplane::transport::{Ctx, Packet, Transport, Verdict};
use cvlan_dataplane::udp::{MmsgScratch, UdpSocket};
use cvlan_dataplane::{Device, DeviceConfig};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// SPI prefixes, one per test (they run at once and see each other's packets).
const BASE: u32 = 0x7e57_0000;
const DEVICE_BASE: u32 = 0x7e58_0000;
const IPV4_HEADER: usize = 20;

/// The test's SPIs each socket holds now (other ESP on loopback is ignored).
fn drain(s: &UdpSocket) -> Vec<u32> {
    let mut got = Vec::new();
    let mut scratch = MmsgScratch::new(64);
    let mut store = vec![vec![0u8; 256]; 64];
    loop {
        let mut bufs: Vec<&mut [u8]> = store.iter_mut().map(|b| b.as_mut_slice()).collect();
        let (mut lens, mut addrs, mut segs) = (vec![0; 64], vec![None; 64], vec![0; 64]);
        let n = s
            .recv_batch(&mut bufs, &mut lens, &mut addrs, &mut segs, &mut scratch)
            .unwrap();
        if n == 0 {
            break;
        }
        for (b, len) in store.iter().zip(&lens).take(n) {
            if *len < IPV4_HEADER + 8 {
                continue;
            }
            let spi = u32::from_be_bytes(b[IPV4_HEADER..IPV4_HEADER + 4].try_into().unwrap());
            if spi & 0xffff_0000 == BASE {
                got.push(spi);
            }
        }
    }
    got.sort_unstable();
    got
}

fn send(from: &UdpSocket, spis: impl Iterator<Item = u32>) {
    let to = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
    for spi in spis {
        let mut pkt = vec![0u8; 64];
        pkt[..4].copy_from_slice(&spi.to_be_bytes());
        pkt[4..8].copy_from_slice(&1u32.to_be_bytes());
        from.send_to(&pkt, to).unwrap();
    }
    // Loopback delivers synchronously; a moment for the softirq all the same.
    std::thread::sleep(std::time::Duration::from_millis(50));
}

#[test]
#[ignore = "needs root"]
fn each_spi_reaches_exactly_its_shard() {
    support::require_root(&[]);
    let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let socks: Vec<UdpSocket> = (0..3)
        .map(|i| UdpSocket::raw_esp(local, i, 3))
        .collect::<Result<_, _>>()
        .expect("raw ESP sockets");
    let spis = || (0..60).map(|i| BASE + i);
    send(&socks[0], spis());
    for (k, s) in socks.iter().enumerate() {
        let want: Vec<u32> = spis().filter(|spi| spi % 3 == k as u32).collect();
        assert_eq!(drain(s), want, "shard {k}");
    }
    // Two workers now: the same SPIs split in two.
    for (k, s) in socks.iter().take(2).enumerate() {
        s.shard_esp(k, 2).unwrap();
    }
    send(&socks[0], spis());
    for (k, s) in socks.iter().take(2).enumerate() {
        let want: Vec<u32> = spis().filter(|spi| spi % 2 == k as u32).collect();
        assert_eq!(drain(s), want, "shard {k} of 2");
    }
}

/// Records which worker saw which of the test's SPIs on the raw socket.
#[derive(Default)]
struct Record {
    seen: Mutex<BTreeMap<u32, Vec<usize>>>,
}

impl Transport for Record {
    fn name(&self) -> &'static str {
        "record"
    }
    fn encapsulate(&self, _ctx: &mut Ctx<'_>, pkts: &mut [Packet]) {
        for p in pkts {
            p.verdict = Verdict::Drop;
        }
    }
    fn decapsulate(&self, ctx: &mut Ctx<'_>, pkts: &mut [Packet]) {
        let mut seen = self.seen.lock().unwrap();
        for p in pkts {
            p.verdict = Verdict::Drop;
            let d = p.data();
            // The raw socket follows the one port.
            if p.sock != 1 || d.len() < IPV4_HEADER + 8 {
                continue;
            }
            let spi = u32::from_be_bytes(d[IPV4_HEADER..IPV4_HEADER + 4].try_into().unwrap());
            if spi & 0xffff_0000 == DEVICE_BASE {
                seen.entry(spi).or_default().push(ctx.worker);
            }
        }
    }
    fn tick_interval(&self) -> Duration {
        Duration::from_secs(3600)
    }
}

/// Sends `spis` and waits until each was seen once; returns spi → workers that saw it.
fn round(t: &Record, from: &UdpSocket, spis: &[u32]) -> BTreeMap<u32, Vec<usize>> {
    t.seen.lock().unwrap().clear();
    send(from, spis.iter().copied());
    let deadline = Instant::now() + Duration::from_secs(3);
    while t.seen.lock().unwrap().len() < spis.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    // Late duplicates would show up here.
    std::thread::sleep(Duration::from_millis(100));
    t.seen.lock().unwrap().clone()
}

#[test]
#[ignore = "needs root"]
fn a_devices_workers_each_open_their_shard_of_the_spis() {
    support::require_root(&[]);
    let t = Arc::new(Record::default());
    let mut dev = Device::start(
        DeviceConfig {
            tun_name: format!("cvpraw{}", std::process::id() % 100_000),
            mtu: 1420,
            listen: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            listen_ports: vec![0],
            workers: 2,
            offload: false,
            raw_esp: true,
        },
        t.clone(),
        no_events(),
    )
    .expect("start");
    assert_eq!(dev.raw_esp(), Ok(true));
    // A filterless sender (shard 0 of 1 takes everything; what it receives is never read).
    let from = UdpSocket::raw_esp(IpAddr::V4(Ipv4Addr::LOCALHOST), 0, 1).unwrap();
    let spis: Vec<u32> = (0..40).map(|i| DEVICE_BASE + i).collect();
    let want = |n: u32| -> BTreeMap<u32, Vec<usize>> {
        spis.iter().map(|s| (*s, vec![(s % n) as usize])).collect()
    };
    assert_eq!(round(&t, &from, &spis), want(2), "two workers");
    dev.set_workers(3).unwrap();
    assert_eq!(round(&t, &from, &spis), want(3), "three workers");
    dev.set_workers(1).unwrap();
    assert_eq!(round(&t, &from, &spis), want(1), "one worker");
    dev.stop();
}
