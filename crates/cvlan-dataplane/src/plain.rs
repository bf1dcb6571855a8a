//! The plain transport: IP packets carried in UDP with a 4-byte marker and **no** encryption
//! or authentication. It exists only to measure the data plane itself (the "no crypto"
//! baseline of every benchmark) and to test the spine; the production configuration loader
//! refuses it.

use crate::counters::DropReason;
use crate::transport::{Ctx, Packet, Transport, Verdict};
use crate::udp::canonical;
use arc_swap::ArcSwap;
use cvlan_proto::ip::{self, Prefix};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// Every datagram starts with this marker, so stray traffic on the port is told apart.
pub const MAGIC: [u8; 4] = *b"CVP\x01";

#[derive(Debug, Clone)]
pub struct PlainPeer {
    pub endpoint: SocketAddr,
    pub allowed_ips: Vec<Prefix>,
}

#[derive(Default)]
struct Table {
    peers: Vec<PlainPeer>,
    by_endpoint: HashMap<SocketAddr, usize>,
}

impl Table {
    fn new(peers: Vec<PlainPeer>) -> Table {
        let peers: Vec<PlainPeer> = peers
            .into_iter()
            .map(|p| PlainPeer {
                endpoint: canonical(p.endpoint),
                ..p
            })
            .collect();
        let by_endpoint = peers
            .iter()
            .enumerate()
            .map(|(i, p)| (p.endpoint, i))
            .collect();
        Table { peers, by_endpoint }
    }

    /// Longest-prefix match over the (few) peers of a test setup.
    fn route(&self, dst: IpAddr) -> Option<&PlainPeer> {
        self.peers
            .iter()
            .flat_map(|p| p.allowed_ips.iter().map(move |a| (a, p)))
            .filter(|(a, _)| a.contains(dst))
            .max_by_key(|(a, _)| a.len())
            .map(|(_, p)| p)
    }
}

pub struct PlainTransport {
    table: ArcSwap<Table>,
}

impl PlainTransport {
    pub fn new(peers: Vec<PlainPeer>) -> PlainTransport {
        PlainTransport {
            table: ArcSwap::from_pointee(Table::new(peers)),
        }
    }

    /// Replaces the peer list; workers see it at their next batch.
    pub fn set_peers(&self, peers: Vec<PlainPeer>) {
        self.table.store(Arc::new(Table::new(peers)));
    }

    pub fn peers(&self) -> Vec<PlainPeer> {
        self.table.load().peers.clone()
    }
}

impl Transport for PlainTransport {
    fn name(&self) -> &'static str {
        "plain-insecure-test-only"
    }

    fn encapsulate(&self, ctx: &mut Ctx<'_>, pkts: &mut [Packet]) {
        let table = self.table.load();
        for p in pkts {
            let dst = match ip::parse(p.data()) {
                Ok(info) => info.dst,
                Err(_) => {
                    p.drop_with(ctx.counters, DropReason::MalformedIp);
                    continue;
                }
            };
            let Some(peer) = table.route(dst) else {
                p.drop_with(ctx.counters, DropReason::NoRoute);
                continue;
            };
            let endpoint = peer.endpoint;
            match p.push_front(MAGIC.len()) {
                Some(h) => h.copy_from_slice(&MAGIC),
                None => {
                    p.drop_with(ctx.counters, DropReason::Oversized);
                    continue;
                }
            }
            p.addr = endpoint;
            p.verdict = Verdict::Send;
        }
    }

    /// Every packet stands alone (no handshake, no state per packet).
    fn parallel(&self, _stage: crate::spread::Stage, _pkt: &Packet) -> bool {
        true
    }

    fn decapsulate(&self, ctx: &mut Ctx<'_>, pkts: &mut [Packet]) {
        let table = self.table.load();
        for p in pkts {
            if p.len < MAGIC.len() || p.data()[..MAGIC.len()] != MAGIC {
                p.drop_with(ctx.counters, DropReason::BadHeader);
                continue;
            }
            let Some(&idx) = table.by_endpoint.get(&p.addr) else {
                p.drop_with(ctx.counters, DropReason::UnknownPeer);
                continue;
            };
            p.pull_front(MAGIC.len());
            let info = match ip::parse(p.data()) {
                Ok(i) => i,
                Err(_) => {
                    p.drop_with(ctx.counters, DropReason::MalformedIp);
                    continue;
                }
            };
            if !table.peers[idx]
                .allowed_ips
                .iter()
                .any(|a| a.contains(info.src))
            {
                p.drop_with(ctx.counters, DropReason::SourceNotAllowed);
                continue;
            }
            // Trailing bytes beyond the IP length would reach the host stack as garbage.
            p.len = info.len;
            p.verdict = Verdict::ToTun;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::WorkerCounters;
    use std::time::Duration;

    fn ipv4(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
        let mut p = vec![0u8; 28];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&28u16.to_be_bytes());
        p[9] = 17;
        p[12..16].copy_from_slice(&src);
        p[16..20].copy_from_slice(&dst);
        p
    }

    fn packet(data: &[u8], from: &str) -> Packet {
        let mut p = Packet::new();
        p.len = data.len();
        p.data_mut().copy_from_slice(data);
        p.addr = from.parse().unwrap();
        p
    }

    fn transport() -> PlainTransport {
        PlainTransport::new(vec![
            PlainPeer {
                endpoint: "192.0.2.1:7000".parse().unwrap(),
                allowed_ips: vec!["10.1.0.0/16".parse().unwrap()],
            },
            PlainPeer {
                endpoint: "[::ffff:192.0.2.2]:7000".parse().unwrap(),
                allowed_ips: vec!["10.1.5.0/24".parse().unwrap()],
            },
        ])
    }

    fn run(
        t: &PlainTransport,
        pkts: &mut [Packet],
        encap: bool,
    ) -> (WorkerCounters, Vec<crate::transport::Outgoing>) {
        let c = WorkerCounters::default();
        let mut extra = Vec::new();
        let mut ctx = Ctx {
            worker: 0,
            counters: &c,
            now: Duration::ZERO,
            extra: &mut extra,
        };
        if encap {
            t.encapsulate(&mut ctx, pkts);
        } else {
            t.decapsulate(&mut ctx, pkts);
        }
        (c, extra)
    }

    fn drops(c: &WorkerCounters, r: DropReason) -> u64 {
        c.snapshot().drops.iter().find(|(x, _)| *x == r).unwrap().1
    }

    #[test]
    fn routes_by_longest_prefix_and_frames() {
        let t = transport();
        let mut pkts = [
            packet(&ipv4([10, 9, 0, 1], [10, 1, 5, 7]), "0.0.0.0:0"),
            packet(&ipv4([10, 9, 0, 1], [10, 1, 6, 7]), "0.0.0.0:0"),
        ];
        run(&t, &mut pkts, true);
        assert_eq!(pkts[0].verdict, Verdict::Send);
        assert_eq!(
            pkts[0].addr,
            "192.0.2.2:7000".parse().unwrap(),
            "/24 beats /16; mapped address unmapped"
        );
        assert_eq!(pkts[1].addr, "192.0.2.1:7000".parse().unwrap());
        assert_eq!(&pkts[0].data()[..4], &MAGIC);
        assert_eq!(pkts[0].len, 32);
    }

    #[test]
    fn encapsulate_drops_with_reasons() {
        let t = transport();
        let mut pkts = [
            packet(&ipv4([10, 9, 0, 1], [172, 16, 0, 1]), "0.0.0.0:0"),
            packet(&[0x45, 0, 0], "0.0.0.0:0"),
        ];
        let (c, _) = run(&t, &mut pkts, true);
        assert!(pkts.iter().all(|p| p.verdict == Verdict::Drop));
        assert_eq!(drops(&c, DropReason::NoRoute), 1);
        assert_eq!(drops(&c, DropReason::MalformedIp), 1);
    }

    #[test]
    fn decapsulate_checks_marker_peer_and_source() {
        let t = transport();
        let framed = |src: [u8; 4]| {
            let mut d = MAGIC.to_vec();
            d.extend(ipv4(src, [10, 9, 0, 1]));
            d
        };
        let mut good = framed([10, 1, 2, 3]);
        good.extend([0u8; 5]); // trailing garbage is cut at the IP length
        let mut pkts = [
            packet(&good, "192.0.2.1:7000"),
            packet(&framed([10, 1, 2, 3]), "192.0.2.2:7000"), // 10.1.2.3 not in that peer's /24
            packet(&framed([10, 1, 2, 3]), "192.0.2.9:7000"), // unknown endpoint
            packet(b"XXXX", "192.0.2.1:7000"),
            packet(&MAGIC[..2], "192.0.2.1:7000"),
            packet(&MAGIC, "192.0.2.1:7000"),
        ];
        let (c, _) = run(&t, &mut pkts, false);
        assert_eq!(pkts[0].verdict, Verdict::ToTun);
        assert_eq!(pkts[0].len, 28);
        assert_eq!(pkts[0].data(), &ipv4([10, 1, 2, 3], [10, 9, 0, 1])[..]);
        assert!(pkts[1..].iter().all(|p| p.verdict == Verdict::Drop));
        assert_eq!(drops(&c, DropReason::SourceNotAllowed), 1);
        assert_eq!(drops(&c, DropReason::UnknownPeer), 1);
        assert_eq!(drops(&c, DropReason::BadHeader), 2);
        assert_eq!(drops(&c, DropReason::MalformedIp), 1);
    }

    #[test]
    fn set_peers_replaces_table() {
        let t = transport();
        t.set_peers(vec![]);
        let mut pkts = [packet(&ipv4([10, 9, 0, 1], [10, 1, 5, 7]), "0.0.0.0:0")];
        let (c, _) = run(&t, &mut pkts, true);
        assert_eq!(drops(&c, DropReason::NoRoute), 1);
        assert!(t.peers().is_empty());
    }
}
