//! The handoff stage: an inner packet one device decapsulated (or a tenant TUN read), whose
//! destination another device routes for the packet's tenant, is encapsulated by that device's
//! transport on the same worker and sent from that device's port. This is where IPsec ⇄
//! WireGuard translation happens; the packet never crosses a TUN device or the kernel's
//! forwarding path.
//!
//! Pipeline (after the receiving transport's `decapsulate` or `tun_ingress`, before the TUN
//! write), per target:
//! 1. `select`      — the inner packets the target takes: its tenant's (the tag the receiving
//!    side gave: the IPsec tunnel's tenant, the WireGuard device's), or another tenant's that an
//!    inter-tenant rule lets through for this source and destination prefix;
//! 2. `claim`       — the target transport marks those it has a route for (WireGuard: a peer's
//!    allowed IPs hold the destination; IPsec: an outbound policy of the tenant's tunnels);
//! 3. `too_big`     — a claimed packet longer than the target's tunnels carry (its device's MTU)
//!    becomes an ICMP "fragmentation needed" / "packet too big" for its sender, unless it may be
//!    fragmented (IPv4 without DF: the outer datagram is fragmented instead);
//! 4. `partition`   — claimed packets move to the front, then the ICMP replies, in order (flows
//!    stay in order);
//! 5. `encapsulate` — the target's own outbound stage, on the same buffers; the replies go back
//!    through the receiving transport to where the packet came from;
//! 6. `send`        — batched on the target device's sockets (`crate::send`), its handshake or
//!    keepalive datagrams too; for a TUN-only target (a tenant's local network), into its TUN.
//!    Replies leave with the batch on this device's sockets (or its TUN).
//!
//! Then, with tenants isolated, a tagged packet no target took is dropped: `inter_tenant_denied`
//! when another tenant routes its destination, else `no_route`. It never reaches the TUN, whose
//! namespace has one routing table for everyone.
//!
//! The source was checked by the receiving protocol (allowed IPs, traffic selectors) before the
//! packet gets here.

use crate::counters::{DropReason, WorkerCounters};
use crate::send;
use crate::transport::{Ctx, Outgoing, Packet, Senders, Transport, Verdict};
use crate::udp::MmsgScratch;
use cvlan_proto::ip::{self, Prefix};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

/// Lets packets of tenant `from` with a source in `src` and a destination in `dst` into the
/// target's tenant (one direction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub from: u32,
    pub src: Prefix,
    pub dst: Prefix,
}

/// A device the workers hand packets to, for one tenant.
pub struct Target {
    pub transport: Arc<dyn Transport>,
    pub senders: Senders,
    /// The largest inner packet the target's tunnels carry (its TUN MTU).
    pub mtu: usize,
    /// Tenant tag whose packets it takes; 0 = every packet (one tenant).
    pub tenant: u32,
    pub rules: Vec<Rule>,
}

impl Target {
    /// Whether the target takes `p`: as its tenant's own packet, or (`by_rule`) as another
    /// tenant's that a rule lets in.
    fn takes(&self, p: &Packet, by_rule: bool) -> bool {
        if !p.verdict.is_inner() {
            return false;
        }
        if !by_rule {
            return self.tenant == 0 || p.tag == self.tenant;
        }
        if self.tenant == 0 || p.tag == self.tenant || self.rules.is_empty() {
            return false;
        }
        let Ok(info) = ip::parse(p.data()) else {
            return false;
        };
        self.rules
            .iter()
            .any(|r| r.from == p.tag && r.src.contains(info.src) && r.dst.contains(info.dst))
    }
}

/// ICMP errors one device's workers originate per second, at most (tuning; RFC 1812 §4.3.2.8
/// asks routers to limit them).
const ICMP_PER_SECOND: u32 = 100;

/// A shared per-second budget for the ICMP errors a handoff originates.
#[derive(Default)]
pub struct IcmpLimit {
    second: AtomicU64,
    count: AtomicU32,
}

impl IcmpLimit {
    fn allow(&self, now: Duration) -> bool {
        let s = now.as_secs();
        if self.second.swap(s, Relaxed) != s {
            self.count.store(0, Relaxed);
        }
        self.count.fetch_add(1, Relaxed) < ICMP_PER_SECOND
    }
}

/// What a device's workers do with decapsulated packets other devices route.
pub struct Handoff {
    /// Tenant tag of everything this device decapsulates (a tenant's WireGuard device); 0 when
    /// the transport tags each packet itself (IPsec: by tunnel) or there is one tenant.
    pub stamp: u32,
    /// Tenants are isolated (see the module doc); false with one tenant.
    pub isolated: bool,
    pub targets: Vec<Target>,
    pub icmp: IcmpLimit,
}

/// Moves the packets matching `pred` to the front, each side in its order; returns how many.
fn front(pkts: &mut [Packet], pred: impl Fn(&Packet) -> bool) -> usize {
    let mut order: Vec<(bool, usize)> = pkts
        .iter()
        .enumerate()
        .map(|(i, p)| (!pred(p), i))
        .collect();
    order.sort_by_key(|x| x.0);
    let from: Vec<usize> = order.iter().map(|x| x.1).collect();
    permute(pkts, &from);
    order.iter().filter(|x| !x.0).count()
}

/// What the handoff stage uses of the worker that runs it.
pub(crate) struct Stage<'a> {
    /// The transport that received the batch: ICMP errors go back through it.
    pub ingress: &'a dyn Transport,
    /// The worker's context; its `extra` leaves from the receiving device with the batch.
    pub ctx: Ctx<'a>,
    pub scratch: &'a mut MmsgScratch,
}

impl Stage<'_> {
    /// The ingress transport's outbound stage, for ICMP errors back the way packets came.
    fn reply(&mut self, pkts: &mut [Packet]) {
        // A claim key names a route of the target, not of the ingress.
        for p in pkts.iter_mut() {
            p.claim_key = None;
        }
        self.ingress.encapsulate(&mut self.ctx, pkts);
    }
}

/// Runs the pipeline on a batch. Packets handed off end as `Verdict::HandedOff`; ICMP replies as
/// the ingress transport's `encapsulate` left them (normally `Send` on this device's sockets).
pub(crate) fn run(h: &Handoff, stage: &mut Stage<'_>, pkts: &mut [Packet]) {
    if !pkts.iter().any(|p| p.verdict.is_inner()) {
        return;
    }
    for p in pkts.iter_mut() {
        if h.stamp != 0 {
            p.tag = h.stamp;
        }
        p.home = p.tag;
        p.reply = false;
    }
    // A tenant's own routes first, the longest of them (the tenant's table is the union of
    // its devices' tables); then rules, for what those leave.
    for p in pkts.iter_mut() {
        p.best = None;
    }
    for (i, t) in h.targets.iter().enumerate() {
        // 1. select
        let k = front(pkts, |p| t.takes(p, false));
        for p in pkts[..k].iter_mut() {
            p.claimed = false;
            p.claim_key = None;
        }
        t.transport.claims(&mut pkts[..k]);
        for p in pkts[..k].iter_mut() {
            if p.claimed && p.best.is_none_or(|(len, _, _)| p.claim_len > len) {
                p.best = Some((p.claim_len, i, p.claim_key));
            }
            p.claimed = false;
            p.claim_key = None;
        }
    }
    for (i, t) in h.targets.iter().enumerate() {
        let k = front(pkts, |p| {
            p.verdict.is_inner() && p.best.map(|b| b.1) == Some(i)
        });
        if k > 0 {
            // The winning target's own key for its route goes with the packet to its
            // `encapsulate` (stage 5), which then skips its lookup.
            for p in pkts[..k].iter_mut() {
                p.claim_key = p.best.and_then(|b| b.2);
            }
            to_target(t, &h.icmp, stage, &mut pkts[..k], true);
        }
    }
    for t in &h.targets {
        let k = front(pkts, |p| p.best.is_none() && t.takes(p, true));
        if k == 0 {
            continue;
        }
        // Admitted by a rule: routed as the target tenant's packet, then given its tag back.
        for p in pkts[..k].iter_mut() {
            p.tag = t.tenant;
        }
        to_target(t, &h.icmp, stage, &mut pkts[..k], false);
        for p in pkts[..k].iter_mut() {
            p.tag = p.home;
        }
    }
    if h.isolated {
        isolate(h, stage, pkts);
    }
    // A key is only valid for the transport that claimed and the batch it claimed in.
    for p in pkts.iter_mut() {
        p.claim_key = None;
    }
}

/// Drops what no target took, with the reason (see the module doc), and answers what nobody
/// routes with "destination unreachable" through the way it came.
fn isolate(h: &Handoff, stage: &mut Stage<'_>, pkts: &mut [Packet]) {
    let k = front(pkts, |p| p.verdict.is_inner());
    if k == 0 {
        return;
    }
    let left = &mut pkts[..k];
    let mut elsewhere = vec![false; k];
    // Would another tenant route it? Each is asked with its own tag.
    for t in h.targets.iter().filter(|t| t.tenant != 0) {
        for p in left.iter_mut() {
            p.tag = t.tenant;
            p.claimed = false;
        }
        t.transport.claims(left);
        for (i, p) in left.iter().enumerate() {
            elsewhere[i] |= p.claimed && p.home != t.tenant;
        }
    }
    let counters = stage.ctx.counters;
    let mut icmp = [0u8; 1280];
    for (i, p) in left.iter_mut().enumerate() {
        p.tag = p.home;
        p.claimed = false;
        p.verdict = Verdict::Drop;
        if elsewhere[i] {
            crate::trace::drop(p, DropReason::InterTenantDenied);
            counters.drop_packet(DropReason::InterTenantDenied);
            continue;
        }
        crate::trace::drop(p, DropReason::NoRoute);
        counters.drop_packet(DropReason::NoRoute);
        if h.icmp.allow(stage.ctx.now) {
            if let Some(n) = cvlan_proto::icmp::unreachable(p.data(), &mut icmp) {
                p.len = n;
                p.data_mut().copy_from_slice(&icmp[..n]);
                p.reply = true;
            }
        }
    }
    let r = front(left, |p| p.reply);
    if r > 0 {
        stage.reply(&mut left[..r]);
    }
}

/// Where a packet goes after stage 3 (the partition order).
fn group(p: &Packet, reply: &[bool], i: usize) -> u8 {
    if reply[i] {
        1
    } else if p.claimed && p.verdict.is_inner() {
        0
    } else {
        2
    }
}

/// Stages 2–6 for the packets `t` takes (all inner packets); `claimed`: the selection already
/// found that `t` routes every one of them (its longest claim), so they are not asked again.
fn to_target(
    t: &Target,
    limit: &IcmpLimit,
    stage: &mut Stage<'_>,
    pkts: &mut [Packet],
    claimed: bool,
) {
    let counters = stage.ctx.counters;
    let now = stage.ctx.now;
    // 2. claim (unless the caller already knows these are the target's)
    for p in pkts.iter_mut() {
        p.claimed = claimed;
        if !claimed {
            p.claim_key = None;
        }
    }
    if !claimed {
        t.transport.claims(pkts);
    }
    if !pkts.iter().any(|p| p.claimed && p.verdict.is_inner()) {
        return;
    }
    crate::trace::handoff(stage.ingress.name(), t.transport.name(), pkts, claimed);
    // 3. too_big
    let mut reply = vec![false; pkts.len()];
    let mut icmp = [0u8; 1280];
    for (i, p) in pkts.iter_mut().enumerate() {
        if !(p.claimed && p.verdict.is_inner() && p.len > t.mtu) {
            continue;
        }
        let mtu = u16::try_from(t.mtu).unwrap_or(u16::MAX);
        if !limit.allow(now) {
            // Over the budget: dropped without an answer (the sender retries).
            crate::trace::drop(p, DropReason::Oversized);
            counters.drop_packet(DropReason::Oversized);
            p.claimed = false;
            p.verdict = Verdict::Drop;
            continue;
        }
        if let Some(n) = cvlan_proto::icmp::too_big(p.data(), mtu, &mut icmp) {
            crate::trace::drop(p, DropReason::Oversized);
            counters.drop_packet(DropReason::Oversized);
            p.len = n;
            p.data_mut().copy_from_slice(&icmp[..n]);
            p.claimed = false;
            p.reply = true;
            reply[i] = true;
        }
    }
    // 4. partition (stable: a flow's packets keep their order)
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
    // 5. encapsulate: the replies back the way they came, on this device
    if r > 0 {
        stage.reply(&mut pkts[n..n + r]);
    }
    if n == 0 {
        return;
    }
    let group = &mut pkts[..n];
    let mut extra: Vec<Outgoing> = Vec::new();
    let mut ctx = Ctx {
        worker: stage.ctx.worker,
        counters,
        now,
        extra: &mut extra,
    };
    t.transport.encapsulate(&mut ctx, group);
    crate::trace::sealed(t.transport.name(), group);
    // 6. send
    let scratch = &mut *stage.scratch;
    let sent = t.senders.with_sockets(|socks| {
        let sent = send::packets(socks, counters, group, scratch);
        send::extra(socks, counters, &mut extra, scratch);
        sent
    });
    WorkerCounters::add(&counters.translated, sent as u64);
    for p in group.iter_mut() {
        // A TUN-only target (a tenant's local network): into its TUN.
        if p.verdict == Verdict::ToTun {
            match t.senders.write_tun(p.data()) {
                Some(Ok(_)) => {
                    WorkerCounters::add(&counters.tun_tx_packets, 1);
                    WorkerCounters::add(&counters.tun_tx_bytes, p.len as u64);
                    WorkerCounters::add(&counters.translated, 1);
                }
                _ => counters.drop_packet(DropReason::TunWriteFailed),
            }
        }
        // Sent or written above, or dropped and counted by the target transport.
        p.verdict = Verdict::HandedOff;
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
    use crate::control::Control;

    /// Claims packets whose first byte is odd; "encapsulates" by marking them for socket 0.
    struct Odd;
    impl Transport for Odd {
        fn name(&self) -> &'static str {
            "odd"
        }
        fn claims(&self, pkts: &mut [Packet]) {
            for p in pkts.iter_mut().filter(|p| p.verdict.is_inner()) {
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

    fn target<T: Transport>(t: T, tenant: u32, rules: Vec<Rule>) -> Target {
        Target {
            transport: Arc::new(t),
            senders: Senders::new(Vec::new(), None, Arc::new(Control::new().unwrap())),
            mtu: 1400,
            tenant,
            rules,
        }
    }

    /// A single-tenant pair, as `cvlan-vrouter run` with one tenant sets it up.
    fn pair<T: Transport>(t: T) -> Handoff {
        Handoff {
            stamp: 0,
            isolated: false,
            targets: vec![target(t, 0, Vec::new())],
            icmp: IcmpLimit::default(),
        }
    }

    /// One decapsulated batch through `h`, with `Odd` as the receiving transport.
    fn batch(h: &Handoff, pkts: &mut [Packet]) -> WorkerCounters {
        let counters = WorkerCounters::default();
        let mut extra = Vec::new();
        let mut stage = Stage {
            ingress: &Odd,
            ctx: Ctx {
                worker: 0,
                counters: &counters,
                now: Duration::ZERO,
                extra: &mut extra,
            },
            scratch: &mut MmsgScratch::new(64),
        };
        run(h, &mut stage, pkts);
        counters
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
        // No sockets: sends fail and are counted, which is what this test can observe.
        let h = pair(Odd);
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
        let counters = batch(&h, &mut pkts);
        let seen: Vec<(u8, Verdict)> = pkts.iter().map(|p| (p.data()[0], p.verdict)).collect();
        assert_eq!(
            seen,
            [
                (1, Verdict::HandedOff),
                (5, Verdict::HandedOff),
                (7, Verdict::HandedOff),
                (2, Verdict::ToTun),
                (4, Verdict::ToTun),
                (3, Verdict::Drop),
            ],
            "claimed first, then the rest the target was offered, each in arrival order; dropped packets are not offered"
        );
        assert_eq!(
            drops(&counters, DropReason::UdpSendFailed),
            3,
            "the other device's sockets are gone: counted, not lost silently"
        );
    }

    #[test]
    fn nothing_claimed_leaves_the_batch_alone() {
        let h = pair(Odd);
        let mut pkts: Vec<Packet> = [2u8, 4, 6]
            .into_iter()
            .map(|t| packet(t, Verdict::ToTun))
            .collect();
        batch(&h, &mut pkts);
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
        let h = pair(Odd);
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
        let counters = batch(&h, &mut pkts);
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
        assert_eq!(drops(&counters, DropReason::Oversized), 1);
    }

    /// Routes `(tenant tag, destination)` pairs; sends whatever it is given.
    struct Routes(Vec<(u32, [u8; 4])>);
    impl Transport for Routes {
        fn name(&self) -> &'static str {
            "routes"
        }
        fn claims(&self, pkts: &mut [Packet]) {
            for p in pkts.iter_mut().filter(|p| p.verdict.is_inner()) {
                let d = p.data();
                let dst = [d[16], d[17], d[18], d[19]];
                p.claimed = self.0.contains(&(p.tag, dst));
            }
        }
        fn encapsulate(&self, _ctx: &mut Ctx<'_>, pkts: &mut [Packet]) {
            for p in pkts {
                p.verdict = Verdict::Send;
            }
        }
        fn decapsulate(&self, _ctx: &mut Ctx<'_>, _pkts: &mut [Packet]) {}
    }

    fn v4(tag: u32, src: [u8; 4], dst: [u8; 4]) -> Packet {
        let mut p = Packet::new();
        p.len = 40;
        let d = p.data_mut();
        d[0] = 0x45;
        d[2..4].copy_from_slice(&40u16.to_be_bytes());
        d[12..16].copy_from_slice(&src);
        d[16..20].copy_from_slice(&dst);
        p.tag = tag;
        p.verdict = Verdict::ToTun;
        p
    }

    fn drops(c: &WorkerCounters, r: DropReason) -> u64 {
        c.snapshot()
            .drops
            .iter()
            .find(|(x, _)| *x == r)
            .map_or(0, |(_, n)| *n)
    }

    #[test]
    fn tenants_are_isolated_and_a_rule_opens_one_prefix_pair() {
        let prefix = |s: &str| s.parse::<Prefix>().unwrap();
        // Both tenants route 10.0.0.1 (overlapping prefixes); only tenant 2 routes 10.9.0.1.
        let h = Handoff {
            stamp: 0,
            isolated: true,
            targets: vec![
                target(Routes(vec![(1, [10, 0, 0, 1])]), 1, Vec::new()),
                target(
                    Routes(vec![(2, [10, 0, 0, 1]), (2, [10, 9, 0, 1])]),
                    2,
                    vec![Rule {
                        from: 1,
                        src: prefix("10.1.0.0/16"),
                        dst: prefix("10.9.0.0/24"),
                    }],
                ),
            ],
            icmp: IcmpLimit::default(),
        };
        let mut pkts = vec![
            v4(1, [10, 2, 0, 5], [10, 0, 0, 1]), // tenant 1, its own route
            v4(2, [10, 2, 0, 5], [10, 0, 0, 1]), // tenant 2, the same address, its own route
            v4(1, [10, 2, 0, 5], [10, 9, 0, 1]), // tenant 1 → tenant 2's prefix, no rule for this source
            v4(1, [10, 1, 0, 5], [10, 9, 0, 1]), // the same, from the prefix the rule allows
            v4(1, [10, 2, 0, 5], [10, 7, 0, 1]), // nobody routes it
        ];
        let counters = batch(&h, &mut pkts);
        assert_eq!(
            pkts.iter()
                .filter(|p| p.verdict == Verdict::HandedOff)
                .count(),
            3,
            "two own routes and the rule"
        );
        let verdict_to = |dst: u8| {
            pkts.iter()
                .filter(|p| p.data()[17] == dst)
                .map(|p| p.verdict)
                .collect::<Vec<_>>()
        };
        assert_eq!(verdict_to(7), [], "the unrouted packet is gone...");
        let unreachable: Vec<&Packet> = pkts
            .iter()
            .filter(|p| p.len > 28 && p.data()[20..22] == [3, 0])
            .collect();
        assert_eq!(unreachable.len(), 1, "...answered with net unreachable");
        assert_eq!(
            unreachable[0].verdict,
            Verdict::Send,
            "back through the ingress transport"
        );
        assert_eq!(
            &unreachable[0].data()[16..20],
            &[10, 2, 0, 5],
            "to its sender"
        );
        assert_eq!(
            &unreachable[0].data()[12..16],
            &[10, 7, 0, 1],
            "from the destination it asked for"
        );
        assert_eq!(
            verdict_to(0),
            [Verdict::HandedOff, Verdict::HandedOff],
            "the same address in each tenant"
        );
        assert_eq!(
            drops(&counters, DropReason::InterTenantDenied),
            1,
            "10.2.0.5 → 10.9.0.1 of tenant 1"
        );
        assert_eq!(drops(&counters, DropReason::NoRoute), 1, "10.7.0.1");
        assert!(
            pkts.iter().all(|p| p.verdict != Verdict::ToTun),
            "nothing reaches the shared TUN"
        );
    }

    #[test]
    fn a_wireguard_device_stamps_its_tenant() {
        let h = Handoff {
            stamp: 2,
            isolated: true,
            targets: vec![
                target(Routes(vec![(1, [10, 0, 0, 1])]), 1, Vec::new()),
                target(Routes(vec![(2, [10, 0, 0, 1])]), 2, Vec::new()),
            ],
            icmp: IcmpLimit::default(),
        };
        let mut pkts = vec![v4(0, [10, 2, 0, 5], [10, 0, 0, 1])];
        batch(&h, &mut pkts);
        assert_eq!(pkts[0].verdict, Verdict::HandedOff);
        assert_eq!(pkts[0].tag, 2, "routed as tenant 2's");
    }

    /// A tenant TUN's packets (`HandOff`) go the same way as decapsulated ones, and what nobody
    /// routes is answered, never left for the TUN.
    #[test]
    fn a_tenant_tuns_packets_are_handed_off_or_answered() {
        let h = Handoff {
            stamp: 1,
            isolated: true,
            targets: vec![target(Routes(vec![(1, [10, 0, 0, 1])]), 1, Vec::new())],
            icmp: IcmpLimit::default(),
        };
        let mut pkts = vec![
            v4(0, [10, 30, 0, 5], [10, 0, 0, 1]),
            v4(0, [10, 30, 0, 5], [10, 7, 0, 1]),
        ];
        for p in pkts.iter_mut() {
            p.verdict = Verdict::HandOff;
        }
        let counters = batch(&h, &mut pkts);
        let handed: Vec<&Packet> = pkts
            .iter()
            .filter(|p| p.verdict == Verdict::HandedOff)
            .collect();
        assert_eq!(handed.len(), 1);
        assert_eq!(&handed[0].data()[16..20], &[10, 0, 0, 1], "the routed one");
        let reply: Vec<&Packet> = pkts.iter().filter(|p| p.verdict == Verdict::Send).collect();
        assert_eq!(reply.len(), 1, "the other is answered through the ingress");
        assert_eq!(&reply[0].data()[20..22], &[3, 0], "net unreachable");
        assert_eq!(drops(&counters, DropReason::NoRoute), 1);
    }

    /// Claims everything with a route of `len` bits, keyed `id + 100`; stamps its `id` and the
    /// key it was given (0 for none) into what it encapsulates.
    struct Prefixed {
        id: u8,
        len: u8,
    }
    impl Transport for Prefixed {
        fn name(&self) -> &'static str {
            "prefixed"
        }
        fn claims(&self, pkts: &mut [Packet]) {
            for p in pkts.iter_mut().filter(|p| p.verdict.is_inner()) {
                p.claimed = true;
                p.claim_len = self.len;
                p.claim_key = Some(u32::from(self.id) + 100);
            }
        }
        fn encapsulate(&self, _ctx: &mut Ctx<'_>, pkts: &mut [Packet]) {
            for p in pkts {
                let key = p.claim_key.take().map_or(0, |k| k as u8);
                p.data_mut()[1] = self.id;
                p.data_mut()[2] = key;
                p.verdict = Verdict::Send;
            }
        }
        fn decapsulate(&self, _ctx: &mut Ctx<'_>, _pkts: &mut [Packet]) {}
    }

    /// A tenant's table is the union of its devices' tables: the longest route wins, whichever
    /// device holds it (10.0.0.0/8 through one, 10.1.0.0/16 through another).
    #[test]
    fn the_longest_route_among_the_devices_wins() {
        let h = Handoff {
            stamp: 0,
            isolated: false,
            targets: vec![
                target(Prefixed { id: 1, len: 8 }, 0, Vec::new()),
                target(Prefixed { id: 2, len: 16 }, 0, Vec::new()),
                target(Prefixed { id: 3, len: 12 }, 0, Vec::new()),
            ],
            icmp: IcmpLimit::default(),
        };
        let mut pkts = vec![v4(0, [10, 2, 0, 5], [10, 1, 2, 3])];
        batch(&h, &mut pkts);
        assert_eq!(pkts[0].verdict, Verdict::HandedOff);
        assert_eq!(pkts[0].data()[1], 2, "the /16 device encapsulated it");
        assert_eq!(
            pkts[0].data()[2],
            102,
            "with its own claim's key, not the key of a device that claimed after it"
        );
        assert_eq!(pkts[0].claim_key, None, "no key outlives the batch");
    }
}
