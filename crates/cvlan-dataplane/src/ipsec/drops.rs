//! Why the IPsec engine drops packets, and its other engine-wide counters. The codes are the
//! data plane's one table (`crate::counters::DropReason`); ESP's own reasons map onto it here.
//! Counted engine-wide, not per worker: drops and IKE relay are rare, and charon's thread counts
//! too.

use crate::counters::DropReason;
use cvlan_proto::esp;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The code of an ESP drop (`cvlan_proto::esp::DropReason`).
pub(crate) fn esp(r: esp::DropReason) -> DropReason {
    use esp::DropReason as R;
    match r {
        R::UnknownSpi => DropReason::EspUnknownSpi,
        R::Truncated => DropReason::EspTruncated,
        R::AuthFailed => DropReason::EspAuthFailed,
        R::Replayed => DropReason::EspReplayed,
        R::TooOld => DropReason::EspTooOld,
        R::BadPadding => DropReason::EspBadPadding,
        R::BadNextHeader => DropReason::EspBadNextHeader,
        R::DummyPacket => DropReason::EspDummy,
        R::InnerMalformed => DropReason::EspInnerMalformed,
        R::OutsideSelectors => DropReason::EspOutsideSelectors,
        R::SaExpired => DropReason::EspSaExpired,
        R::SequenceOverflow => DropReason::EspSequenceOverflow,
        R::BufferTooSmall => DropReason::EspBufferTooSmall,
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_esp_reason_has_its_own_code() {
        let codes: std::collections::HashSet<&str> = esp::DropReason::ALL
            .iter()
            .map(|r| esp(*r).as_str())
            .collect();
        assert_eq!(codes.len(), esp::DropReason::ALL.len());
        for r in esp::DropReason::ALL {
            assert!(esp(r).as_str().starts_with("esp_"), "{r:?}");
        }
    }
}
