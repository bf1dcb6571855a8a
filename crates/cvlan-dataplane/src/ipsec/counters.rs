//! The IPsec engine's counters: drops by code of the data plane's one table
//! (`crate::counters::DropReason`, into which ESP's own reasons map), IKE relay, NAT keepalives
//! and expire messages. Counted engine-wide, not per worker: these are rare, and charon's thread
//! counts too.

use crate::counters::{DropCounters, DropReason};
use std::sync::atomic::AtomicU64;

pub struct IpsecCounters {
    pub drops: DropCounters,
    pub ike_in: AtomicU64,
    pub ike_out: AtomicU64,
    pub nat_keepalives: AtomicU64,
    pub expires_sent: AtomicU64,
}

impl IpsecCounters {
    pub(crate) fn new() -> IpsecCounters {
        IpsecCounters {
            drops: DropCounters::default(),
            ike_in: AtomicU64::new(0),
            ike_out: AtomicU64::new(0),
            nat_keepalives: AtomicU64::new(0),
            expires_sent: AtomicU64::new(0),
        }
    }

    pub(crate) fn drop(&self, r: DropReason) {
        self.drops.add(r);
    }

    /// Every code of the table with its count.
    pub fn drop_counts(&self) -> Vec<(DropReason, u64)> {
        self.drops.snapshot()
    }
}
