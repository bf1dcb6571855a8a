//! The WireGuard transport path (route, counter reservation, seal, receiver lookup, open,
//! bookkeeping, source check) must not touch the heap once a session exists: this test binary
//! counts every allocation made by the thread under test.

mod support;

use std::time::Duration;

use cvlan_proto::wireguard::constants::{TAG_LEN, TRANSPORT_HEADER_LEN};
use cvlan_proto::wireguard::messages::{self, Message};
use cvlan_proto::wireguard::{SendPlan, Time};
use rand::SeedableRng;
use support::{allocs, ipv4};

#[global_allocator]
static GLOBAL: support::Counting = support::Counting;

#[test]
fn transport_path_does_not_allocate() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let support::Pair {
        mut a,
        mut b,
        addr_a,
        addr_b,
        t,
        out_a: mut out,
        mut out_b,
        ..
    } = support::established_pair(&mut rng);

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
        ipv4(src_ip, dst_ip, len, 0, &mut pkt);
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
