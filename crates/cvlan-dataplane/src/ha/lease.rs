//! Counter leases: the arithmetic that keeps every (key, nonce) and (SPI, sequence number) unique
//! across a failover, even a split brain.
//!
//! - The active may send on a session only below `limit = acked + lease`, where `acked` is the
//!   greatest send counter the standby confirmed it stored. New sessions start at `0 + lease`.
//! - The standby stores counters only forward, and acknowledges what it stored; so at any moment
//!   `acked ≤ stored` on the standby, and the active has used counters `< acked + lease`.
//! - Taking over, the standby starts at `stored + lease ≥ acked + lease`: beyond anything the
//!   old active can have used, whether or not the old active is still alive.

/// Default lease in messages: 2^20, ~1 s of line rate for one session at 1 Mpps, so a
/// standby that misses acks for a while does not stop the active, and far from the 2^64 space.
pub const DEFAULT_LEASE: u64 = 1 << 20;

/// The first counter the active may not use, given what the standby acknowledged.
pub fn send_limit(acked: u64, lease: u64) -> u64 {
    acked.saturating_add(lease)
}

/// The first counter the standby uses after taking over a session it stored at `stored`.
pub fn takeover_counter(stored: u64, lease: u64) -> u64 {
    stored.saturating_add(lease)
}

/// What the standby keeps of a counter update: never less than it had.
pub fn store(current: u64, update: u64) -> u64 {
    current.max(update)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Simulates an active sending as far as its limit lets it, acks lost or delayed at random,
    /// and a takeover at any point: the standby's first counter is never one the active used.
    #[test]
    fn takeover_never_reuses_a_counter_the_active_could_use() {
        let lease = 1000u64;
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut rnd = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..200 {
            let (mut sent, mut stored, mut acked) = (0u64, 0u64, 0u64);
            // Counter updates in flight to the standby, and acks in flight back.
            let mut to_standby: Vec<u64> = Vec::new();
            let mut to_active: Vec<u64> = Vec::new();
            for _ in 0..rnd(400) {
                match rnd(4) {
                    0 => {
                        let want = rnd(700);
                        sent = (sent + want).min(send_limit(acked, lease));
                        assert!(sent <= send_limit(acked, lease));
                    }
                    1 => to_standby.push(sent),
                    2 => {
                        if !to_standby.is_empty() {
                            let u = to_standby.remove(rnd(to_standby.len() as u64) as usize);
                            stored = store(stored, u);
                            to_active.push(stored);
                        }
                    }
                    _ => {
                        if !to_active.is_empty() {
                            let a = to_active.remove(rnd(to_active.len() as u64) as usize);
                            acked = acked.max(a);
                        }
                    }
                }
                assert!(acked <= stored, "acks only confirm what was stored");
                // Takeover now, with the active still running (split brain): its highest
                // usable counter is below its limit, and stays there without new acks.
                assert!(takeover_counter(stored, lease) >= send_limit(acked, lease));
                assert!(sent <= takeover_counter(stored, lease));
            }
        }
    }

    #[test]
    fn exhaustion_and_saturation() {
        assert_eq!(send_limit(0, DEFAULT_LEASE), DEFAULT_LEASE);
        assert_eq!(send_limit(u64::MAX - 1, DEFAULT_LEASE), u64::MAX);
        assert_eq!(takeover_counter(u64::MAX, 1), u64::MAX);
        assert_eq!(store(10, 5), 10, "an old update never moves a counter back");
        assert_eq!(store(10, 50), 50);
    }
}
