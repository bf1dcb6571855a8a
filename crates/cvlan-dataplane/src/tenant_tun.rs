//! A tenant's local network on a TUN device of its own (a cloud subnet, a namespace of hosts):
//! no UDP ports, no protocol. Packets its hosts send into the TUN are routed by the other
//! devices of the tenant (`crate::handoff`, from the worker's TUN path); packets those devices
//! decapsulate for its subnets are written into it.
//!
//! From the TUN:  1. `source` — the inner source must lie in the TUN's subnets (no spoofing
//!                   from the local network either); 2. marked `HandOff` for the handoff.
//! Into the TUN:  `claims` — the destination lies in the subnets; `encapsulate` marks the
//!                packet `ToTun`, which the handoff writes into this TUN.

use crate::counters::DropReason;
use crate::transport::{Ctx, Packet, Transport, Verdict};
use arc_swap::ArcSwap;
use cvlan_proto::ip::{self, Prefix};
use cvlan_proto::wireguard::allowed_ips::AllowedIps;
use std::sync::Arc;

pub struct TenantTun {
    subnets: ArcSwap<AllowedIps<()>>,
}

impl TenantTun {
    pub fn new(subnets: &[Prefix]) -> Arc<TenantTun> {
        let t = Arc::new(TenantTun {
            subnets: ArcSwap::from_pointee(AllowedIps::default()),
        });
        t.set_subnets(subnets);
        t
    }

    /// The prefixes behind this TUN (its routes inside the tenant).
    pub fn set_subnets(&self, subnets: &[Prefix]) {
        let mut a = AllowedIps::default();
        for p in subnets {
            a.insert(*p, ());
        }
        self.subnets.store(Arc::new(a));
    }
}

impl Transport for TenantTun {
    fn name(&self) -> &'static str {
        "tenant-tun"
    }

    fn tun_ingress(&self, ctx: &mut Ctx<'_>, pkts: &mut [Packet]) {
        let subnets = self.subnets.load();
        for p in pkts {
            p.verdict = match ip::parse(p.data()) {
                Ok(info) if subnets.lookup(info.src).is_some() => Verdict::HandOff,
                Ok(_) => {
                    ctx.counters.drop_packet(DropReason::SourceNotAllowed);
                    Verdict::Drop
                }
                Err(_) => {
                    ctx.counters.drop_packet(DropReason::MalformedIp);
                    Verdict::Drop
                }
            };
        }
    }

    fn claims(&self, pkts: &mut [Packet]) {
        let subnets = self.subnets.load();
        for p in pkts.iter_mut().filter(|p| p.verdict.is_inner()) {
            if let Ok(info) = ip::parse(p.data()) {
                let hit = subnets.lookup_len(info.dst);
                p.claimed = hit.is_some();
                p.claim_len = hit.map_or(0, |(_, len)| len);
            }
        }
    }

    fn encapsulate(&self, _ctx: &mut Ctx<'_>, pkts: &mut [Packet]) {
        for p in pkts {
            p.verdict = Verdict::ToTun;
        }
    }

    fn decapsulate(&self, _ctx: &mut Ctx<'_>, pkts: &mut [Packet]) {
        // No sockets: nothing arrives here.
        for p in pkts {
            p.verdict = Verdict::Drop;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::WorkerCounters;
    use std::time::Duration;

    fn v4(src: [u8; 4], dst: [u8; 4]) -> Packet {
        let mut p = Packet::new();
        p.len = 20;
        let d = p.data_mut();
        d[0] = 0x45;
        d[3] = 20;
        d[12..16].copy_from_slice(&src);
        d[16..20].copy_from_slice(&dst);
        p
    }

    #[test]
    fn sources_from_the_subnets_only_and_claims_by_destination() {
        let t = TenantTun::new(&["10.30.0.0/24".parse().unwrap()]);
        let counters = WorkerCounters::default();
        let mut extra = Vec::new();
        let mut ctx = Ctx {
            worker: 0,
            counters: &counters,
            now: Duration::ZERO,
            extra: &mut extra,
        };
        let mut from_tun = vec![
            v4([10, 30, 0, 5], [10, 10, 0, 1]),
            v4([10, 31, 0, 1], [10, 10, 0, 1]),
        ];
        t.tun_ingress(&mut ctx, &mut from_tun);
        assert_eq!(
            from_tun[0].verdict,
            Verdict::HandOff,
            "a host of the subnet: to be routed by the tenant's other devices"
        );
        assert_eq!(
            from_tun[1].verdict,
            Verdict::Drop,
            "a source outside the subnets"
        );
        let dropped = counters
            .snapshot()
            .drops
            .iter()
            .find(|(r, _)| *r == DropReason::SourceNotAllowed)
            .map(|(_, n)| *n);
        assert_eq!(dropped, Some(1));

        let mut to_tun = vec![
            v4([10, 10, 0, 1], [10, 30, 0, 5]),
            v4([10, 10, 0, 1], [10, 40, 0, 5]),
        ];
        for p in to_tun.iter_mut() {
            p.verdict = Verdict::ToTun;
        }
        t.claims(&mut to_tun);
        assert!(to_tun[0].claimed, "destination behind the TUN");
        assert!(!to_tun[1].claimed);
        t.set_subnets(&["10.40.0.0/16".parse().unwrap()]);
        t.claims(&mut to_tun);
        assert!(
            !to_tun[0].claimed && to_tun[1].claimed,
            "subnets replaced at runtime"
        );
    }
}
