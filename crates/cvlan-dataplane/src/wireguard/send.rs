//! The outbound pipeline (packets from the TUN queue, or handed off by another device):
//! 1. `route`   — cryptokey routing (allowed-IPs trie) and counter reservation, under the lock,
//!    for the whole batch;
//! 2. `seal`    — ChaCha20-Poly1305 in place, outside the lock;
//! 3. send to each peer's endpoint (the device queues packets of peers without a session and
//!    starts their handshakes; those messages leave as extra datagrams).
//!
//! And cryptokey routing as the handoff stage asks for it (`claims`).

use super::{time_at, WireGuard};
use crate::counters::DropReason;
use crate::transport::{Ctx, Packet, Verdict};
use cvlan_proto::ip;
use cvlan_proto::wireguard::constants::{TAG_LEN, TRANSPORT_HEADER_LEN};
use cvlan_proto::wireguard::{Keypair, Outbox, PeerId, SendPlan};
use rand_core::OsRng;
use std::net::SocketAddr;
use std::sync::Arc;

struct Planned {
    idx: usize,
    peer: PeerId,
    keypair: Arc<Keypair>,
    counter: u64,
    endpoint: SocketAddr,
}

pub(super) fn encapsulate(wg: &WireGuard, ctx: &mut Ctx<'_>, pkts: &mut [Packet]) {
    if wg.is_passive() {
        for p in pkts.iter_mut() {
            p.drop_with(ctx.counters, DropReason::HaStandby);
        }
        return;
    }
    let t = time_at(ctx.now);
    let mut out = Outbox::default();
    let mut plans = Vec::with_capacity(pkts.len());
    {
        let mut dev = wg.lock();
        for (idx, p) in pkts.iter_mut().enumerate() {
            p.verdict = Verdict::Drop;
            let Ok(info) = ip::parse(p.data()) else {
                p.drop_with(ctx.counters, DropReason::MalformedIp);
                continue;
            };
            // A packet handed off by another device carries the peer this device claimed it
            // for in the same batch (`crate::handoff`); from TUN it is looked up here.
            let route = p.claim_key.take().or_else(|| dev.route(info.dst));
            crate::trace::wg_peer(p, "allowed-ips", route, &dev);
            let Some(peer) = route else {
                p.drop_with(ctx.counters, DropReason::NoRoute);
                continue;
            };
            // Bytes after the IP length (none from TUN) would be encrypted for nothing.
            p.len = info.len;
            match dev.prepare_send(peer, p.data(), t, &mut OsRng, &mut out) {
                SendPlan::Encrypt {
                    keypair,
                    counter,
                    endpoint,
                } => plans.push(Planned {
                    idx,
                    peer,
                    keypair,
                    counter,
                    endpoint,
                }),
                SendPlan::Queued => crate::trace::queued(p),
                SendPlan::Drop(d) => wg.counters.drop(crate::trace::dropped(p, d)),
            }
        }
    }
    // Bytes per peer, merged while consecutive (a batch is mostly one peer's): no hashing per
    // packet.
    let mut tx: Vec<(PeerId, usize)> = Vec::new();
    for pl in plans {
        let p = &mut pkts[pl.idx];
        let (start, len) = (p.start, p.len);
        if p.raw_mut().len() < start + len + 16 + TAG_LEN || start < TRANSPORT_HEADER_LEN {
            p.drop_with(ctx.counters, DropReason::Oversized);
            continue;
        }
        match pl.keypair.seal(pl.counter, p.raw_mut(), start, len) {
            Some(r) => {
                p.start = r.start;
                p.len = r.len();
                p.addr = pl.endpoint;
                p.sock = 0;
                p.verdict = Verdict::Send;
                match tx.last_mut() {
                    Some((peer, bytes)) if *peer == pl.peer => *bytes += r.len(),
                    _ => tx.push((pl.peer, r.len())),
                }
            }
            None => p.drop_with(ctx.counters, DropReason::Oversized),
        }
    }
    if !tx.is_empty() {
        let mut dev = wg.lock();
        for (peer, bytes) in tx {
            dev.count_tx(peer, bytes);
        }
    }
    wg.finish(out, Some(ctx.extra));
}

/// Claims the inner packets whose destination a peer's allowed IPs cover (cryptokey
/// routing), one lock for the batch; the peer is the claim's key (`Packet::claim_key`). A peer
/// removed before `encapsulate` drops the packet there (`NoRoute`); allowed IPs changed in
/// between route it as it would have been a moment earlier.
pub(super) fn claims(wg: &WireGuard, pkts: &mut [Packet]) {
    let dev = wg.lock();
    for p in pkts.iter_mut().filter(|p| p.verdict.is_inner()) {
        if let Ok(info) = ip::parse(p.data()) {
            let hit = dev.route_with_len(info.dst);
            p.claimed = hit.is_some();
            p.claim_len = hit.map_or(0, |(_, len)| len);
            p.claim_key = hit.map(|(peer, _)| peer);
        }
    }
}
