//! What the allocation tests and the transport benchmark share: a counting allocator and two
//! WireGuard devices with a confirmed session. Included with `mod support;` (the benchmark
//! example with `#[path]`); each binary uses only part of it.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::time::Duration;

use cvlan_proto::wireguard::constants::TRANSPORT_HEADER_LEN;
use cvlan_proto::wireguard::messages::{self, Message};
use cvlan_proto::wireguard::{Device, Outbox, PeerConfig, PeerId, SendPlan, Time};
use rand::rngs::StdRng;

/// Counts the allocations of the calling thread. Install it in the test binary with
/// `#[global_allocator] static GLOBAL: support::Counting = support::Counting;`.
pub struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; counting touches only a
// thread-local cell (try_with: no panic during thread teardown).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        System.realloc(ptr, layout, new_size)
    }
}

/// Allocations made so far by the calling thread.
pub fn allocs() -> u64 {
    ALLOCS.with(|c| c.get())
}

/// A UDP-in-IPv4 header for `total` bytes in `buf`, the rest filled with `fill`.
pub fn ipv4(src: [u8; 4], dst: [u8; 4], total: usize, fill: u8, buf: &mut [u8]) {
    buf[..total].fill(fill);
    buf[0] = 0x45;
    buf[1] = 0;
    buf[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    buf[8] = 64;
    buf[9] = 17;
    buf[12..16].copy_from_slice(&src);
    buf[16..20].copy_from_slice(&dst);
}

/// Two devices after a complete handshake: A (10.0.0.1, initiator) and B (10.0.0.2), each the
/// other's only peer, B's keypair confirmed by A's first packet.
pub struct Pair {
    pub a: Device,
    pub b: Device,
    /// B as A's peer, A as B's peer.
    pub pa: PeerId,
    pub pb: PeerId,
    pub addr_a: SocketAddr,
    pub addr_b: SocketAddr,
    pub t: Time,
    pub out_a: Outbox,
    pub out_b: Outbox,
}

/// Runs the handshake: A's first packet queues and yields an initiation, B answers, A sends
/// the queued packet, which confirms B's keypair. The outboxes are empty afterwards.
pub fn established_pair(rng: &mut StdRng) -> Pair {
    let mut a = Device::new(Some([0x11; 32]));
    let mut b = Device::new(Some([0x22; 32]));
    let addr_a: SocketAddr = "192.0.2.1:51820".parse().unwrap();
    let addr_b: SocketAddr = "192.0.2.2:51820".parse().unwrap();
    let pa = a.upsert_peer(PeerConfig {
        public_key: b.public_key().unwrap(),
        preshared_key: None,
        endpoint: Some(addr_b),
        persistent_keepalive: 0,
    });
    let pb = b.upsert_peer(PeerConfig {
        public_key: a.public_key().unwrap(),
        preshared_key: None,
        endpoint: None,
        persistent_keepalive: 0,
    });
    a.add_allowed_ip(pa, "10.0.0.2/32".parse().unwrap());
    b.add_allowed_ip(pb, "10.0.0.1/32".parse().unwrap());
    let t = Time {
        mono: Duration::from_secs(100),
        unix: Duration::from_secs(1_700_000_000),
    };

    let mut first = vec![0u8; 40];
    ipv4([10, 0, 0, 1], [10, 0, 0, 2], 40, 0, &mut first);
    let mut out_a = Outbox::default();
    let mut out_b = Outbox::default();
    assert!(matches!(
        a.prepare_send(pa, &first, t, rng, &mut out_a),
        SendPlan::Queued
    ));
    let (init, _) = out_a.datagrams.pop().expect("initiation");
    b.handle_handshake(addr_a, &init, t, rng, &mut out_b)
        .expect("initiation accepted");
    let (resp, _) = out_b.datagrams.pop().expect("response");
    a.handle_handshake(addr_b, &resp, t, rng, &mut out_a)
        .expect("response accepted");
    let (mut data, _) = out_a.datagrams.pop().expect("queued packet");
    let Ok(Message::Transport {
        receiver, counter, ..
    }) = messages::parse(&data)
    else {
        panic!("transport message expected");
    };
    let (peer, kp) = b.lookup_receiver(receiver, t).expect("receiver");
    let n = kp
        .open(counter, &mut data[TRANSPORT_HEADER_LEN..])
        .expect("opens");
    b.received_data(peer, &kp, addr_a, data.len(), n, t, rng, &mut out_b);
    assert!(b.current_keypair(pb).is_some(), "B's keypair confirmed");
    for out in [&mut out_a, &mut out_b] {
        out.datagrams.clear();
        out.events.clear();
    }
    Pair {
        a,
        b,
        pa,
        pb,
        addr_a,
        addr_b,
        t,
        out_a,
        out_b,
    }
}
