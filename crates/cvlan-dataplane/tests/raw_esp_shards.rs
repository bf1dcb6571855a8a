//! Raw ESP sockets split the SPIs between workers (`UdpSocket::shard_esp`): against the real
//! kernel on 127.0.0.1 (needs CAP_NET_RAW; passes trivially without it, saying so), every ESP
//! packet reaches exactly the socket of its shard, and re-sharding moves SPIs at once.

use cvlan_dataplane::udp::{MmsgScratch, UdpSocket};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

const BASE: u32 = 0x7e57_0000;
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
fn each_spi_reaches_exactly_its_shard() {
    let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let socks: Vec<UdpSocket> = match (0..3).map(|i| UdpSocket::raw_esp(local, i, 3)).collect() {
        Ok(v) => v,
        Err(e) => {
            eprintln!("skipped: no raw ESP socket here ({e})");
            return;
        }
    };
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
