//! The WireGuard transport path (route, counter reservation, seal, receiver lookup, open,
//! bookkeeping, source check) must not touch the heap once a session exists: this test binary
//! counts every allocation made by the thread under test.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::time::Duration;

use cvlan_proto::wireguard::constants::{TAG_LEN, TRANSPORT_HEADER_LEN};
use cvlan_proto::wireguard::messages::{self, Message};
use cvlan_proto::wireguard::{Device, Outbox, PeerConfig, SendPlan, Time};
use rand::SeedableRng;

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

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

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(|c| c.get())
}

fn ipv4(src: [u8; 4], dst: [u8; 4], total: usize, buf: &mut [u8]) {
    buf[..total].fill(0);
    buf[0] = 0x45;
    buf[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    buf[8] = 64;
    buf[9] = 17;
    buf[12..16].copy_from_slice(&src);
    buf[16..20].copy_from_slice(&dst);
}

#[test]
fn transport_path_does_not_allocate() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
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

    // Handshake: A's first packet queues and yields an initiation; B answers; A sends the
    // queued packet, which confirms B's keypair.
    let mut first = vec![0u8; 40];
    ipv4([10, 0, 0, 1], [10, 0, 0, 2], 40, &mut first);
    let mut out = Outbox::default();
    assert!(matches!(
        a.prepare_send(pa, &first, t, &mut rng, &mut out),
        SendPlan::Queued
    ));
    let (init, _) = out.datagrams.pop().unwrap();
    let mut out_b = Outbox::default();
    b.handle_handshake(addr_a, &init, t, &mut rng, &mut out_b)
        .unwrap();
    let (resp, _) = out_b.datagrams.pop().unwrap();
    a.handle_handshake(addr_b, &resp, t, &mut rng, &mut out)
        .unwrap();
    let (mut data, _) = out.datagrams.pop().unwrap();
    let Ok(Message::Transport {
        receiver, counter, ..
    }) = messages::parse(&data)
    else {
        panic!("transport message expected");
    };
    let (peer, kp) = b.lookup_receiver(receiver, t).unwrap();
    let n = kp.open(counter, &mut data[TRANSPORT_HEADER_LEN..]).unwrap();
    b.received_data(peer, &kp, addr_a, data.len(), n, t, &mut rng, &mut out_b);
    assert!(b.current_keypair(pb).is_some());
    out.datagrams.clear();
    out.events.clear();
    out_b.datagrams.clear();
    out_b.events.clear();

    // Steady state, both directions, with caller-owned buffers that have headroom and tailroom.
    let mut buf = vec![0u8; TRANSPORT_HEADER_LEN + 1500 + TAG_LEN];
    let mut pkt = vec![0u8; 1420];
    let before = allocs();
    let mut delivered = 0;
    for i in 0..2000 {
        let (tx, rx, tx_out, rx_out, src_ip, dst_ip, from) = if i % 2 == 0 {
            (
                &mut a,
                &mut b,
                &mut out,
                &mut out_b,
                [10, 0, 0, 1],
                [10, 0, 0, 2],
                addr_a,
            )
        } else {
            (
                &mut b,
                &mut a,
                &mut out_b,
                &mut out,
                [10, 0, 0, 2],
                [10, 0, 0, 1],
                addr_b,
            )
        };
        let len = 60 + (i % 1300);
        ipv4(src_ip, dst_ip, len, &mut pkt);
        let t = Time {
            mono: t.mono + Duration::from_millis(i as u64),
            unix: t.unix,
        };
        let peer = tx.route(dst_ip.into()).unwrap();
        let SendPlan::Encrypt {
            keypair, counter, ..
        } = tx.prepare_send(peer, &pkt[..len], t, &mut rng, tx_out)
        else {
            panic!("session expected");
        };
        buf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + len].copy_from_slice(&pkt[..len]);
        let r = keypair
            .seal(counter, &mut buf, TRANSPORT_HEADER_LEN, len)
            .unwrap();
        tx.count_tx(peer, r.len());
        let wire = &mut buf[r];
        let Ok(Message::Transport {
            receiver, counter, ..
        }) = messages::parse(wire)
        else {
            panic!("transport message expected");
        };
        let (peer, kp) = rx.lookup_receiver(receiver, t).unwrap();
        let wire_len = wire.len();
        let n = kp.open(counter, &mut wire[TRANSPORT_HEADER_LEN..]).unwrap();
        assert!(n >= len);
        rx.received_data(peer, &kp, from, wire_len, len, t, &mut rng, rx_out);
        assert!(rx.allowed_src(peer, src_ip.into()));
        assert_eq!(
            &wire[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + len],
            &pkt[..len]
        );
        delivered += 1;
    }
    let used = allocs() - before;
    assert_eq!(delivered, 2000);
    assert!(out.datagrams.is_empty() && out_b.datagrams.is_empty());
    assert_eq!(used, 0, "heap allocations on the transport path");
}
