//! Counters of the WireGuard engine, shared by the workers (drops and handshakes are rare).

use crate::counters::DropCounters;
use cvlan_proto::wireguard as wg;
use std::sync::atomic::AtomicU64;

pub struct WgCounters {
    pub drops: DropCounters,
    pub handshakes_completed: AtomicU64,
    pub handshakes_failed: AtomicU64,
    pub handshake_messages: AtomicU64,
}

impl WgCounters {
    pub(super) fn new() -> WgCounters {
        WgCounters {
            drops: DropCounters::default(),
            handshakes_completed: AtomicU64::new(0),
            handshakes_failed: AtomicU64::new(0),
            handshake_messages: AtomicU64::new(0),
        }
    }

    pub(super) fn drop(&self, d: wg::DropReason) {
        self.drops.add(d);
    }
}
