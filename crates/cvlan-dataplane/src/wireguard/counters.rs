//! Counters of the WireGuard engine, shared by the workers (drops and handshakes are rare).

use cvlan_proto::wireguard::Drop;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

pub struct WgCounters {
    pub drops: Vec<AtomicU64>,
    pub handshakes_completed: AtomicU64,
    pub handshakes_failed: AtomicU64,
    pub handshake_messages: AtomicU64,
}

impl WgCounters {
    pub(super) fn new() -> WgCounters {
        WgCounters {
            drops: Drop::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            handshakes_completed: AtomicU64::new(0),
            handshakes_failed: AtomicU64::new(0),
            handshake_messages: AtomicU64::new(0),
        }
    }
    pub(super) fn drop(&self, d: Drop) {
        if let Some(i) = Drop::ALL.iter().position(|x| *x == d) {
            self.drops[i].fetch_add(1, Relaxed);
        }
    }
    pub fn drop_counts(&self) -> Vec<(Drop, u64)> {
        Drop::ALL
            .iter()
            .zip(&self.drops)
            .map(|(d, c)| (*d, c.load(Relaxed)))
            .collect()
    }
}
