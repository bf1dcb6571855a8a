//! Translation between two devices on the workers (IPsec ⇄ WireGuard): an inner packet one
//! device decapsulated, whose destination the other device's protocol routes, is encapsulated by
//! that protocol on the same worker and sent from the other device's port. It never crosses a
//! TUN device or the kernel's forwarding path.
//!
//! Pipeline (after the receiving transport's `decapsulate`, before the TUN write):
//! 1. `claim`       — the other transport marks the `ToTun` packets it has a route for
//!    (WireGuard: allowed IPs of the destination; IPsec: an outbound policy);
//! 2. `partition`   — claimed packets move to the front, in order (flows stay in order);
//! 3. `encapsulate` — the other transport's own outbound stage, on the same buffers;
//! 4. `send`        — batched on the other device's sockets; its handshake or keepalive
//!    datagrams too.
//!
//! The source was checked by the receiving protocol (allowed IPs, traffic selectors) before the
//! packet gets here.

use crate::counters::{DropReason, WorkerCounters};
use crate::transport::{Ctx, Outgoing, Packet, Senders, Transport, Verdict};
use crate::udp::MmsgScratch;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The other device of a translating pair, as this device's workers see it.
pub struct Handoff {
    pub transport: Arc<dyn Transport>,
    pub senders: Senders,
}

/// Runs stages 1–4 on a decapsulated batch. Packets handed off end as `Verdict::Forwarded`.
pub(crate) fn run(
    h: &Handoff,
    worker: usize,
    counters: &WorkerCounters,
    now: Duration,
    pkts: &mut [Packet],
    scratch: &mut MmsgScratch,
) {
    // 1. claim
    for p in pkts.iter_mut() {
        p.claimed = false;
    }
    if !pkts.iter().any(|p| p.verdict == Verdict::ToTun) {
        return;
    }
    h.transport.claims(pkts);
    let n = pkts
        .iter()
        .filter(|p| p.claimed && p.verdict == Verdict::ToTun)
        .count();
    if n == 0 {
        return;
    }
    // 2. partition (stable: a flow's packets keep their order)
    pkts.sort_by_key(|p| !(p.claimed && p.verdict == Verdict::ToTun));
    let group = &mut pkts[..n];
    for p in group.iter_mut() {
        p.verdict = Verdict::Drop;
        p.sock = 0;
    }
    // 3. encapsulate
    let mut extra: Vec<Outgoing> = Vec::new();
    let mut ctx = Ctx {
        worker,
        counters,
        now,
        extra: &mut extra,
    };
    h.transport.encapsulate(&mut ctx, group);
    // 4. send
    for sock in 0..h.senders.len() {
        let out: Vec<(&[u8], SocketAddr)> = group
            .iter()
            .filter(|p| p.verdict == Verdict::Send && p.sock == sock)
            .map(|p| (p.data(), p.addr))
            .collect();
        if out.is_empty() {
            continue;
        }
        match h.senders.send_batch(sock, &out, scratch) {
            Some(s) => {
                WorkerCounters::add(&counters.udp_sends, s.calls as u64);
                WorkerCounters::add(&counters.udp_tx_packets, s.sent as u64);
                WorkerCounters::add(&counters.udp_tx_bytes, s.bytes as u64);
                WorkerCounters::add(&counters.forwarded, s.sent as u64);
                for _ in s.sent..out.len() {
                    counters.drop_packet(DropReason::UdpSendFailed);
                }
            }
            None => {
                for _ in &out {
                    counters.drop_packet(DropReason::UdpSendFailed);
                }
            }
        }
    }
    for p in group.iter_mut() {
        if p.verdict == Verdict::Send && p.sock >= h.senders.len() {
            counters.drop_packet(DropReason::UdpSendFailed);
        }
        // Sent above, or dropped and counted by the other transport.
        p.verdict = Verdict::Forwarded;
    }
    for o in extra {
        if h.senders.send_to(o.sock, &o.data, o.addr).is_err() {
            counters.drop_packet(DropReason::UdpSendFailed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::Control;

    /// Claims packets whose first byte is odd; "encapsulates" by marking them for socket 0.
    struct Odd;
    impl Transport for Odd {
        fn name(&self) -> &'static str {
            "odd"
        }
        fn claims(&self, pkts: &mut [Packet]) {
            for p in pkts.iter_mut().filter(|p| p.verdict == Verdict::ToTun) {
                p.claimed = p.data()[0] % 2 == 1;
            }
        }
        fn encapsulate(&self, _ctx: &mut Ctx<'_>, pkts: &mut [Packet]) {
            for p in pkts {
                assert_eq!(
                    p.data()[0] % 2,
                    1,
                    "only claimed packets reach the other transport"
                );
                p.verdict = Verdict::Send;
                p.sock = 0;
            }
        }
        fn decapsulate(&self, _ctx: &mut Ctx<'_>, _pkts: &mut [Packet]) {}
    }

    fn packet(tag: u8, verdict: Verdict) -> Packet {
        let mut p = Packet::new();
        p.len = 20;
        p.data_mut()[0] = tag;
        p.verdict = verdict;
        p
    }

    #[test]
    fn claimed_packets_move_to_the_other_transport_in_order() {
        let h = Handoff {
            transport: Arc::new(Odd),
            // No sockets: sends fail and are counted, which is what this test can observe.
            senders: Senders::new(Vec::new(), Arc::new(Control::new().unwrap())),
        };
        let counters = WorkerCounters::default();
        let mut scratch = MmsgScratch::new(8);
        let mut pkts: Vec<Packet> = [
            (1, Verdict::ToTun),
            (2, Verdict::ToTun),
            (3, Verdict::Drop),
            (5, Verdict::ToTun),
            (4, Verdict::ToTun),
            (7, Verdict::ToTun),
        ]
        .into_iter()
        .map(|(t, v)| packet(t, v))
        .collect();
        run(&h, 0, &counters, Duration::ZERO, &mut pkts, &mut scratch);
        let seen: Vec<(u8, Verdict)> = pkts.iter().map(|p| (p.data()[0], p.verdict)).collect();
        assert_eq!(
            seen,
            [
                (1, Verdict::Forwarded),
                (5, Verdict::Forwarded),
                (7, Verdict::Forwarded),
                (2, Verdict::ToTun),
                (3, Verdict::Drop),
                (4, Verdict::ToTun),
            ],
            "claimed first, each group in arrival order; dropped packets are not claimed"
        );
        let failed = counters
            .snapshot()
            .drops
            .iter()
            .find(|(r, _)| *r == DropReason::UdpSendFailed)
            .map(|(_, n)| *n);
        assert_eq!(
            failed,
            Some(3),
            "the other device's sockets are gone: counted, not lost silently"
        );
    }

    #[test]
    fn nothing_claimed_leaves_the_batch_alone() {
        let h = Handoff {
            transport: Arc::new(Odd),
            senders: Senders::new(Vec::new(), Arc::new(Control::new().unwrap())),
        };
        let counters = WorkerCounters::default();
        let mut scratch = MmsgScratch::new(8);
        let mut pkts: Vec<Packet> = [2u8, 4, 6]
            .into_iter()
            .map(|t| packet(t, Verdict::ToTun))
            .collect();
        run(&h, 0, &counters, Duration::ZERO, &mut pkts, &mut scratch);
        assert!(pkts.iter().all(|p| p.verdict == Verdict::ToTun));
        assert_eq!(
            pkts.iter().map(|p| p.data()[0]).collect::<Vec<_>>(),
            [2, 4, 6]
        );
    }
}
