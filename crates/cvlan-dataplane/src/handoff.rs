//! Translation between two devices on the workers (IPsec ⇄ WireGuard): an inner packet one
//! device decapsulated, whose destination the other device's protocol routes, is encapsulated by
//! that protocol on the same worker and sent from the other device's port. It never crosses a
//! TUN device or the kernel's forwarding path.
//!
//! Pipeline (after the receiving transport's `decapsulate`, before the TUN write):
//! 1. `claim`       — the other transport marks the `ToTun` packets it has a route for
//!    (WireGuard: allowed IPs of the destination; IPsec: an outbound policy);
//! 2. `too_big`     — a claimed packet longer than the other tunnel carries (its device's MTU)
//!    becomes an ICMP "fragmentation needed" / "packet too big" for its sender, unless it may be
//!    fragmented (IPv4 without DF: the outer datagram is fragmented instead);
//! 3. `partition`   — claimed packets move to the front, then the ICMP replies, in order (flows
//!    stay in order);
//! 4. `encapsulate` — the other transport's own outbound stage, on the same buffers; the
//!    replies go back through this device's transport to where the packet came from;
//! 5. `send`        — batched on the other device's sockets; its handshake or keepalive
//!    datagrams too. Replies leave with the batch on this device's sockets.
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
    /// The largest inner packet the other device's tunnels carry (its TUN MTU).
    pub mtu: usize,
}

/// Where a packet goes after stage 2 (the partition order).
fn group(p: &Packet, reply: &[bool], i: usize) -> u8 {
    if reply[i] {
        1
    } else if p.claimed && p.verdict == Verdict::ToTun {
        0
    } else {
        2
    }
}

/// Runs stages 1–5 on a decapsulated batch. Packets handed off end as `Verdict::Forwarded`;
/// ICMP replies as `ingress` left them (normally `Send` on this device's sockets).
#[allow(clippy::too_many_arguments)]
pub(crate) fn run(
    h: &Handoff,
    ingress: &dyn Transport,
    worker: usize,
    counters: &WorkerCounters,
    now: Duration,
    pkts: &mut [Packet],
    scratch: &mut MmsgScratch,
    extra: &mut Vec<Outgoing>,
) {
    // 1. claim
    for p in pkts.iter_mut() {
        p.claimed = false;
    }
    if !pkts.iter().any(|p| p.verdict == Verdict::ToTun) {
        return;
    }
    h.transport.claims(pkts);
    if !pkts
        .iter()
        .any(|p| p.claimed && p.verdict == Verdict::ToTun)
    {
        return;
    }
    // 2. too_big
    let mut reply = vec![false; pkts.len()];
    let mut icmp = [0u8; 1280];
    for (i, p) in pkts.iter_mut().enumerate() {
        if !(p.claimed && p.verdict == Verdict::ToTun && p.len > h.mtu) {
            continue;
        }
        let mtu = u16::try_from(h.mtu).unwrap_or(u16::MAX);
        if let Some(n) = cvlan_proto::icmp::too_big(p.data(), mtu, &mut icmp) {
            counters.drop_packet(DropReason::Oversized);
            p.len = n;
            p.data_mut().copy_from_slice(&icmp[..n]);
            p.claimed = false;
            reply[i] = true;
        }
    }
    // 3. partition (stable: a flow's packets keep their order)
    let mut order: Vec<(u8, usize)> = pkts
        .iter()
        .enumerate()
        .map(|(i, p)| (group(p, &reply, i), i))
        .collect();
    order.sort_by_key(|x| x.0);
    let from: Vec<usize> = order.iter().map(|x| x.1).collect();
    permute(pkts, &from);
    let n = order.iter().filter(|x| x.0 == 0).count();
    let r = order.iter().filter(|x| x.0 == 1).count();
    for p in pkts[..n + r].iter_mut() {
        p.verdict = Verdict::Drop;
        p.sock = 0;
    }
    // 4. encapsulate: the replies back the way they came, on this device
    if r > 0 {
        let mut ctx = Ctx {
            worker,
            counters,
            now,
            extra,
        };
        ingress.encapsulate(&mut ctx, &mut pkts[n..n + r]);
    }
    if n == 0 {
        return;
    }
    let group = &mut pkts[..n];
    let mut extra: Vec<Outgoing> = Vec::new();
    let mut ctx = Ctx {
        worker,
        counters,
        now,
        extra: &mut extra,
    };
    h.transport.encapsulate(&mut ctx, group);
    // 5. send
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

/// Reorders `pkts` so that position k holds the packet that was at `from[k]` (a permutation).
/// Swaps only: a `Packet` move is pointer-sized, its buffer stays where it is.
fn permute(pkts: &mut [Packet], from: &[usize]) {
    for i in 0..from.len() {
        // Positions before i are final; the packet for i, once at from[i], was swapped on to
        // from[from[i]] if that position came earlier, and so on.
        let mut at = from[i];
        while at < i {
            at = from[at];
        }
        pkts.swap(i, at);
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
            mtu: 1400,
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
        run(
            &h,
            &Odd,
            0,
            &counters,
            Duration::ZERO,
            &mut pkts,
            &mut scratch,
            &mut Vec::new(),
        );
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
            mtu: 1400,
        };
        let counters = WorkerCounters::default();
        let mut scratch = MmsgScratch::new(8);
        let mut pkts: Vec<Packet> = [2u8, 4, 6]
            .into_iter()
            .map(|t| packet(t, Verdict::ToTun))
            .collect();
        run(
            &h,
            &Odd,
            0,
            &counters,
            Duration::ZERO,
            &mut pkts,
            &mut scratch,
            &mut Vec::new(),
        );
        assert!(pkts.iter().all(|p| p.verdict == Verdict::ToTun));
        assert_eq!(
            pkts.iter().map(|p| p.data()[0]).collect::<Vec<_>>(),
            [2, 4, 6]
        );
    }

    #[test]
    fn permute_applies_every_permutation() {
        fn all(n: usize) -> Vec<Vec<usize>> {
            if n == 0 {
                return vec![vec![]];
            }
            let mut out = Vec::new();
            for p in all(n - 1) {
                for k in 0..=p.len() {
                    let mut q = p.clone();
                    q.insert(k, n - 1);
                    out.push(q);
                }
            }
            out
        }
        for from in all(5) {
            let mut pkts: Vec<Packet> = (0..5u8).map(|t| packet(t, Verdict::ToTun)).collect();
            permute(&mut pkts, &from);
            let got: Vec<usize> = pkts.iter().map(|p| usize::from(p.data()[0])).collect();
            assert_eq!(got, from, "position k holds the packet from from[k]");
        }
    }

    #[test]
    fn too_big_for_the_other_tunnel_is_answered_back_the_way_it_came() {
        let h = Handoff {
            transport: Arc::new(Odd),
            senders: Senders::new(Vec::new(), Arc::new(Control::new().unwrap())),
            mtu: 1400,
        };
        // IPv4, DF, 1500 bytes: its first byte (0x45) is odd, so `Odd` claims it.
        let mut big = Packet::new();
        big.len = 1500;
        let d = big.data_mut();
        d[0] = 0x45;
        d[2..4].copy_from_slice(&1500u16.to_be_bytes());
        d[6] = 0x40;
        d[9] = 6;
        d[12..16].copy_from_slice(&[10, 20, 0, 2]);
        d[16..20].copy_from_slice(&[10, 10, 0, 1]);
        big.verdict = Verdict::ToTun;
        let mut pkts = vec![big, packet(2, Verdict::ToTun)];
        let counters = WorkerCounters::default();
        run(
            &h,
            &Odd,
            0,
            &counters,
            Duration::ZERO,
            &mut pkts,
            &mut MmsgScratch::new(8),
            &mut Vec::new(),
        );
        let reply = &pkts[0];
        assert_eq!(
            reply.verdict,
            Verdict::Send,
            "the ICMP error leaves through the ingress transport"
        );
        let info = cvlan_proto::ip::parse(reply.data()).unwrap();
        assert_eq!(
            (info.proto, info.dst.to_string()),
            (1, "10.20.0.2".to_string())
        );
        assert_eq!(&reply.data()[20..22], &[3, 4], "fragmentation needed");
        assert_eq!(
            u16::from_be_bytes([reply.data()[26], reply.data()[27]]),
            1400
        );
        assert_eq!(pkts[1].verdict, Verdict::ToTun);
        let oversized = counters
            .snapshot()
            .drops
            .iter()
            .find(|(r, _)| *r == DropReason::Oversized)
            .map(|(_, n)| *n);
        assert_eq!(oversized, Some(1));
    }
}
