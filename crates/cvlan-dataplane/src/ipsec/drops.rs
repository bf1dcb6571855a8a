//! Why the IPsec engine drops packets, and its other engine-wide counters. The codes are the
//! data plane's one table (`crate::counters::DropReason`), which ESP's own reasons map into.
//! Counted engine-wide, not per worker: drops and IKE relay are rare, and charon's thread counts
//! too.

use crate::counters::DropReason;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Engine-wide counters (shared by the workers and charon's link).
pub struct IpsecCounters {
    drops: [AtomicU64; DropReason::COUNT],
    pub ike_in: AtomicU64,
    pub ike_out: AtomicU64,
    pub nat_keepalives: AtomicU64,
    pub expires_sent: AtomicU64,
}

impl IpsecCounters {
    pub(crate) fn new() -> IpsecCounters {
        IpsecCounters {
            drops: std::array::from_fn(|_| AtomicU64::new(0)),
            ike_in: AtomicU64::new(0),
            ike_out: AtomicU64::new(0),
            nat_keepalives: AtomicU64::new(0),
            expires_sent: AtomicU64::new(0),
        }
    }

    pub(crate) fn drop(&self, r: DropReason) {
        self.drops[r as usize].fetch_add(1, Relaxed);
    }

    /// The drops counted so far, by reason (reasons never counted are left out).
    pub fn drop_counts(&self) -> Vec<(DropReason, u64)> {
        DropReason::ALL
            .iter()
            .map(|r| (*r, self.drops[*r as usize].load(Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}
