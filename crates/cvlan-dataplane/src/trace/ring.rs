//! A worker's trace ring: a fixed number of records, allocated once. The worker appends a
//! batch's records with `try_lock` (never waiting: if the control plane is reading it at that
//! moment, the batch's records are counted as lost instead); the control plane copies it out.

use super::record::Record;

/// Records per worker ring (a packet takes ~6–10).
pub const RING_RECORDS: usize = 4096;

pub struct Ring {
    recs: Vec<Record>,
    cap: usize,
    /// Records that did not fit (full ring, or the ring was being read).
    pub lost: u64,
}

impl Ring {
    pub fn new(cap: usize) -> Ring {
        Ring {
            recs: Vec::with_capacity(cap),
            cap,
            lost: 0,
        }
    }

    /// Appends whole packets only: `recs` is one packet's records; all or none go in.
    pub fn push_packet(&mut self, recs: &[Record]) -> bool {
        if self.recs.len() + recs.len() > self.cap {
            self.lost += recs.len() as u64;
            return false;
        }
        self.recs.extend_from_slice(recs);
        true
    }

    pub fn records(&self) -> &[Record] {
        &self.recs
    }

    pub fn clear(&mut self) {
        self.recs.clear();
        self.lost = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::super::record::Stage;
    use super::*;
    use std::time::Duration;

    fn rec(packet: u64) -> Record {
        Record {
            packet,
            at: Duration::ZERO,
            stage: Stage::Queued,
        }
    }

    #[test]
    fn keeps_whole_packets_within_its_fixed_size() {
        let mut r = Ring::new(5);
        let cap = r.recs.capacity();
        assert!(r.push_packet(&[rec(1), rec(1), rec(1)]));
        assert!(
            !r.push_packet(&[rec(2), rec(2), rec(2)]),
            "a packet that does not fit whole is not split"
        );
        assert!(r.push_packet(&[rec(3), rec(3)]));
        assert!(!r.push_packet(&[rec(4)]));
        assert_eq!(r.records().len(), 5);
        assert_eq!(r.lost, 4);
        assert_eq!(r.recs.capacity(), cap, "never grows past its allocation");
        r.clear();
        assert!(r.records().is_empty());
        assert_eq!(r.lost, 0);
    }
}
