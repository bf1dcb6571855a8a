//! Which of a device's TUN queues a worker writes an inner packet on.
//!
//! The kernel sends a packet out of a multi-queue TUN device on the queue that last *wrote* a
//! packet of its flow (tun's "automq": a flow table keyed by a hash that is the same in both
//! directions, updated by every write). When the two directions of one flow arrive from two
//! tunnels whose datagrams land on different workers (a hub relaying peer to peer, two sites
//! of one device), each write moves the flow's entry to the writer's queue: the forwarded
//! packets of one direction alternate between two queues, two workers read and seal them at
//! once, and they reach the peer out of order (TCP answers with fast retransmits).
//!
//! So the first worker to write a flow keeps it: a small table, indexed by the packet's
//! direction-independent flow hash, remembers which worker's queue the flow is written on, and
//! the other workers write the flow's packets on that queue too. The kernel's entry for the flow
//! then stays put and one worker reads (and seals) the flow. A flow one worker alone writes (a
//! tunnel's traffic to or from this host) stays on that worker's own queue: written on another,
//! its replies would move to a second worker, at a wake-up per batch (≈ 10 % of one flow's
//! throughput on 2 vCPUs). An entry no write has renewed for `STICKY` is free again; two flows
//! that share a slot share a queue (they only spread less).
//!
//! The set holds duplicates of the workers' queue descriptors. A duplicate keeps its queue
//! attached, so the device drops a worker's entry before that worker stops, a worker that gives
//! up drops its own (a queue nobody reads would keep receiving the flows steered to it), and the
//! device clears the set when it stops.

use crate::tun::TunQueue;
use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

/// Slots of the flow table (tuning): a power of two, far more than the flows a device's TUN
/// carries at once in both directions through different workers.
const SLOTS: usize = 4096;

/// How long a flow keeps its queue without a write (tuning): longer than any pause inside a
/// transfer, short enough that a slot comes free soon after its flow ends.
pub const STICKY: Duration = Duration::from_secs(5);

/// The write side of a device's TUN queues, indexed by worker, and which queue each flow is
/// written on.
pub struct TunQueues {
    /// `None`: the worker gave up (its flows go to the next writer).
    queues: ArcSwap<Vec<Option<Arc<TunQueue>>>>,
    /// Per slot: 0 = free, else the writing queue's index + 1 in the low 32 bits and the second
    /// of its last write (data-plane clock) in the high 32.
    owners: Box<[AtomicU64]>,
}

impl Default for TunQueues {
    fn default() -> Self {
        TunQueues {
            queues: ArcSwap::default(),
            owners: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl TunQueues {
    /// Sets worker `index`'s queue (a worker started, or moved to a new queue).
    pub fn set(&self, index: usize, queue: TunQueue) {
        let q = Arc::new(queue);
        self.update(|v| {
            if v.len() <= index {
                v.resize(index + 1, None);
            }
            v[index] = Some(q.clone());
        });
    }

    /// Drops worker `index`'s queue: the worker gave up and no longer reads it.
    pub fn clear(&self, index: usize) {
        self.update(|v| {
            if let Some(q) = v.get_mut(index) {
                *q = None;
            }
        });
    }

    /// Keeps the queues of the first `n` workers.
    pub fn truncate(&self, n: usize) {
        self.update(|v| v.truncate(n));
    }

    /// A worker gives up on its own thread while the device may change the set: read, copy,
    /// compare and swap.
    fn update(&self, f: impl Fn(&mut Vec<Option<Arc<TunQueue>>>)) {
        self.queues.rcu(|v| {
            let mut v = v.as_ref().clone();
            f(&mut v);
            v
        });
    }

    /// The current set, for one batch.
    pub fn load(&self) -> Arc<Vec<Option<Arc<TunQueue>>>> {
        self.queues.load_full()
    }

    /// The queue worker `me` (whose own queue is `own`) writes the IP packet `pkt` on at `now`:
    /// the flow's, or `own`, which then becomes the flow's. `queues` is this batch's `load`.
    pub fn pick<'a>(
        &self,
        queues: &'a [Option<Arc<TunQueue>>],
        me: usize,
        own: &'a TunQueue,
        pkt: &[u8],
        now: Duration,
    ) -> &'a TunQueue {
        let live = |q: usize| matches!(queues.get(q), Some(Some(_)));
        match self.owner(queues.len(), me, pkt, now, live) {
            q if q == me => own,
            q => queues[q].as_deref().unwrap_or(own),
        }
    }

    /// Which of `n` queues (those `live` says are read) the flow of `pkt` is written on (see the
    /// module doc).
    fn owner(
        &self,
        n: usize,
        me: usize,
        pkt: &[u8],
        now: Duration,
        live: impl Fn(usize) -> bool,
    ) -> usize {
        if n < 2 {
            return me;
        }
        let slot = &self.owners[flow_hash(pkt) as usize & (SLOTS - 1)];
        let now_s = now.as_secs();
        let v = slot.load(Relaxed);
        let (q, at) = ((v & 0xffff_ffff) as usize, v >> 32);
        if q != 0 && q <= n && live(q - 1) && now_s.saturating_sub(at) < STICKY.as_secs() {
            if at != now_s {
                // Renewed once a second at most: the slot's cache line is shared.
                slot.store(q as u64 | (now_s << 32), Relaxed);
            }
            return q - 1;
        }
        slot.store((me as u64 + 1) | (now_s << 32), Relaxed);
        me
    }
}

/// A hash of the packet's flow that is the same in both directions: addresses and, for TCP,
/// UDP and SCTP packets that are not fragments, ports. A fragment hashes on its addresses only,
/// like the packet's other fragments. Not an IP packet: 0.
pub fn flow_hash(pkt: &[u8]) -> u32 {
    let (a, b, proto, l4) = match pkt.first().map(|v| v >> 4) {
        Some(4) if pkt.len() >= 20 => {
            let ihl = usize::from(pkt[0] & 0x0f) * 4;
            // MF set or a fragment offset: a fragment.
            let fragment = u16::from_be_bytes([pkt[6], pkt[7]]) & 0x3fff != 0;
            let l4 = if fragment { None } else { pkt.get(ihl..) };
            (&pkt[12..16], &pkt[16..20], pkt[9], l4)
        }
        // Extension headers are not walked: such packets hash on their addresses.
        Some(6) if pkt.len() >= 40 => (&pkt[8..24], &pkt[24..40], pkt[6], pkt.get(40..)),
        _ => return 0,
    };
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let mut h = Fnv::default();
    h.write(lo);
    h.write(hi);
    h.write(&[proto]);
    // TCP 6, UDP 17, SCTP 132: source and destination port lead the header.
    if let (6 | 17 | 132, Some(l4)) = (proto, l4) {
        if l4.len() >= 4 {
            let (p, q) = (&l4[0..2], &l4[2..4]);
            let (plo, phi) = if p <= q { (p, q) } else { (q, p) };
            h.write(plo);
            h.write(phi);
        }
    }
    h.0
}

/// FNV-1a, 32 bit: a few dozen bytes per packet, no key needed (the queue choice is not a
/// security boundary: a flow that picks a busy queue only shares that worker).
struct Fnv(u32);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0x811c_9dc5)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u32::from(b)).wrapping_mul(0x0100_0193);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(src: [u8; 4], dst: [u8; 4], proto: u8, frag: u16, ports: (u16, u16)) -> Vec<u8> {
        let mut p = vec![0u8; 28];
        p[0] = 0x45;
        p[6..8].copy_from_slice(&frag.to_be_bytes());
        p[9] = proto;
        p[12..16].copy_from_slice(&src);
        p[16..20].copy_from_slice(&dst);
        p[20..22].copy_from_slice(&ports.0.to_be_bytes());
        p[22..24].copy_from_slice(&ports.1.to_be_bytes());
        p
    }

    fn v6(src: u8, dst: u8, next: u8, ports: (u16, u16)) -> Vec<u8> {
        let mut p = vec![0u8; 48];
        p[0] = 0x60;
        p[6] = next;
        p[23] = src;
        p[39] = dst;
        p[40..42].copy_from_slice(&ports.0.to_be_bytes());
        p[42..44].copy_from_slice(&ports.1.to_be_bytes());
        p
    }

    #[test]
    fn both_directions_of_a_flow_hash_alike() {
        let (a, b) = ([10, 88, 1, 1], [10, 88, 3, 1]);
        for proto in [6, 17, 132, 1, 50] {
            let there = v4(a, b, proto, 0, (40000, 5201));
            let back = v4(b, a, proto, 0, (5201, 40000));
            assert_eq!(flow_hash(&there), flow_hash(&back), "proto {proto}");
        }
        assert_eq!(
            flow_hash(&v6(1, 2, 6, (40000, 443))),
            flow_hash(&v6(2, 1, 6, (443, 40000)))
        );
    }

    #[test]
    fn flows_differ_by_ports_and_fragments_by_addresses_only() {
        let (a, b) = ([10, 0, 0, 1], [10, 0, 0, 2]);
        let hashes: std::collections::HashSet<u32> = (0..64)
            .map(|i| flow_hash(&v4(a, b, 6, 0, (40000 + i, 5201))))
            .collect();
        assert!(hashes.len() > 60, "ports spread flows: {}", hashes.len());
        // The first fragment (MF) and a later one (offset) go where the addresses say, whatever
        // their payload holds.
        let first = v4(a, b, 17, 0x2000, (1, 2));
        let later = v4(a, b, 17, 0x00b9, (7, 9));
        assert_eq!(flow_hash(&first), flow_hash(&later));
        assert_ne!(flow_hash(&first), flow_hash(&v4(a, b, 17, 0, (1, 2))));
    }

    #[test]
    fn the_first_writer_keeps_a_flow_until_it_goes_quiet() {
        let t = TunQueues::default();
        let s = Duration::from_secs;
        let there = v4([10, 0, 0, 1], [10, 0, 0, 2], 6, 0, (40000, 5201));
        let back = v4([10, 0, 0, 2], [10, 0, 0, 1], 6, 0, (5201, 40000));
        // Worker 1 writes first; worker 0 then writes the other direction on 1's queue.
        assert_eq!(t.owner(2, 1, &there, s(100), |_| true), 1);
        assert_eq!(t.owner(2, 0, &back, s(101), |_| true), 1);
        // Writes renew the entry: still 1's after more than STICKY of steady traffic.
        for k in 102..110 {
            assert_eq!(t.owner(2, 0, &back, s(k), |_| true), 1);
        }
        // Quiet for STICKY: the next writer takes it.
        assert_eq!(t.owner(2, 0, &back, s(109) + STICKY, |_| true), 0);
        assert_eq!(t.owner(2, 1, &there, s(110) + STICKY, |_| true), 0);
        // With one queue, or once the owner's queue is gone, a worker writes on its own.
        assert_eq!(t.owner(1, 1, &there, s(111) + STICKY, |_| true), 1);
        let u = TunQueues::default();
        assert_eq!(u.owner(3, 2, &there, s(5), |_| true), 2);
        assert_eq!(
            u.owner(2, 0, &back, s(5), |_| true),
            0,
            "queue 2 went with its worker"
        );
        assert_eq!(u.owner(2, 1, &there, s(5), |_| true), 0);
        // A worker that gave up loses its flows to the next writer.
        assert_eq!(u.owner(2, 1, &there, s(6), |q| q != 0), 1);
        assert_eq!(u.owner(2, 0, &back, s(6), |_| true), 1);
    }

    #[test]
    fn what_is_not_ip_hashes_to_zero() {
        assert_eq!(flow_hash(&[]), 0);
        assert_eq!(flow_hash(&[0x45; 19]), 0);
        assert_eq!(flow_hash(&[0x60; 39]), 0);
        assert_eq!(flow_hash(&[0x00; 64]), 0);
    }
}
