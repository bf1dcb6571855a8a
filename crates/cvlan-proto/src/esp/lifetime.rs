//! SA lifetimes (RFC 4301 §4.4.2.1 "Lifetime of this SA"): soft limits ask the key
//! manager to rekey in time, hard limits end the SA. Counted in bytes, packets and time
//! since installation; the counters are also what `query_sa` reports.
//!
//! Counters are atomics so that worker threads account in parallel without a lock. A limit
//! is "crossed" by the packet whose accounting reaches it; that packet is still processed
//! and its result carries the event. After a hard limit every packet is dropped with
//! [`DropReason::SaExpired`]. Each event fires exactly once per SA.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use super::DropReason;

/// The last-use stamp is refreshed at most this often, so that parallel workers do not
/// write the same cache line for every packet. Tuning constant.
const LAST_USE_GRANULARITY_NS: u64 = 1_000_000;

/// One set of limits; `None` means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub bytes: Option<u64>,
    pub packets: Option<u64>,
    /// Time since the SA was installed.
    pub time: Option<Duration>,
}

/// Soft and hard limits of an SA, as the key manager configures them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LifetimeConfig {
    pub soft: Limits,
    pub hard: Limits,
}

/// A lifetime limit was crossed; reported once per SA and kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LifetimeEvent {
    /// Time to rekey: the SA keeps working.
    SoftExpire,
    /// The SA must not be used any more.
    HardExpire,
}

/// A snapshot of an SA's counters (what `query_sa` returns).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// Inner (plaintext) bytes protected or delivered.
    pub bytes: u64,
    pub packets: u64,
    /// `now` of the most recent packet, `None` if the SA has not carried any.
    pub last_use: Option<Duration>,
}

/// The per-SA lifetime state.
#[derive(Debug)]
pub struct Lifetime {
    config: LifetimeConfig,
    installed: Duration,
    bytes: AtomicU64,
    packets: AtomicU64,
    /// Nanoseconds + 1 of the last use (0 = never).
    last_use: AtomicU64,
    soft_fired: AtomicBool,
    hard_fired: AtomicBool,
}

impl Lifetime {
    pub fn new(config: LifetimeConfig, installed: Duration) -> Lifetime {
        Lifetime {
            config,
            installed,
            bytes: AtomicU64::new(0),
            packets: AtomicU64::new(0),
            last_use: AtomicU64::new(0),
            soft_fired: AtomicBool::new(false),
            hard_fired: AtomicBool::new(false),
        }
    }

    pub fn config(&self) -> &LifetimeConfig {
        &self.config
    }

    /// Whether the hard limit has been reached.
    pub fn is_expired(&self) -> bool {
        self.hard_fired.load(Ordering::Relaxed)
    }

    /// Fails with [`DropReason::SaExpired`] once the hard limit was crossed.
    pub fn check(&self) -> Result<(), DropReason> {
        if self.is_expired() {
            Err(DropReason::SaExpired)
        } else {
            Ok(())
        }
    }

    /// Accounts one packet of `bytes` inner octets at `now`; returns the event this packet
    /// triggered, if any (hard wins over soft; a soft event is then never reported).
    pub fn account(&self, bytes: u64, now: Duration) -> Option<LifetimeEvent> {
        let total_bytes = self
            .bytes
            .fetch_add(bytes, Ordering::Relaxed)
            .saturating_add(bytes);
        let total_packets = self
            .packets
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        let stamp = u64::try_from(now.as_nanos())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1);
        let prev = self.last_use.load(Ordering::Relaxed);
        if stamp >= prev.saturating_add(LAST_USE_GRANULARITY_NS) || prev == 0 {
            self.last_use.store(stamp, Ordering::Relaxed);
        }
        self.evaluate(total_bytes, total_packets, now)
    }

    /// Checks the time limits without traffic; call it from the data plane's timer tick.
    pub fn poll(&self, now: Duration) -> Option<LifetimeEvent> {
        self.evaluate(
            self.bytes.load(Ordering::Relaxed),
            self.packets.load(Ordering::Relaxed),
            now,
        )
    }

    pub fn counters(&self) -> Counters {
        let lu = self.last_use.load(Ordering::Relaxed);
        Counters {
            bytes: self.bytes.load(Ordering::Relaxed),
            packets: self.packets.load(Ordering::Relaxed),
            last_use: (lu != 0).then(|| Duration::from_nanos(lu - 1)),
        }
    }

    fn evaluate(&self, bytes: u64, packets: u64, now: Duration) -> Option<LifetimeEvent> {
        let age = now.saturating_sub(self.installed);
        if reached(&self.config.hard, bytes, packets, age) {
            // Reaching the hard limit also implies the soft one; never report it late.
            self.soft_fired.store(true, Ordering::Relaxed);
            if !self.hard_fired.swap(true, Ordering::Relaxed) {
                return Some(LifetimeEvent::HardExpire);
            }
            return None;
        }
        if reached(&self.config.soft, bytes, packets, age)
            && !self.soft_fired.swap(true, Ordering::Relaxed)
        {
            return Some(LifetimeEvent::SoftExpire);
        }
        None
    }
}

fn reached(l: &Limits, bytes: u64, packets: u64, age: Duration) -> bool {
    l.bytes.is_some_and(|b| bytes >= b)
        || l.packets.is_some_and(|p| packets >= p)
        || l.time.is_some_and(|t| age >= t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn packet_limits_fire_once() {
        let cfg = LifetimeConfig {
            soft: Limits {
                packets: Some(3),
                ..Limits::default()
            },
            hard: Limits {
                packets: Some(5),
                ..Limits::default()
            },
        };
        let l = Lifetime::new(cfg, s(0));
        let events: Vec<_> = (0..10).map(|i| (l.check(), l.account(10, s(i)))).collect();
        assert_eq!(events[0], (Ok(()), None));
        assert_eq!(events[1], (Ok(()), None));
        assert_eq!(events[2], (Ok(()), Some(LifetimeEvent::SoftExpire)));
        assert_eq!(events[3], (Ok(()), None));
        assert_eq!(events[4], (Ok(()), Some(LifetimeEvent::HardExpire)));
        for e in &events[5..] {
            assert_eq!(*e, (Err(DropReason::SaExpired), None));
        }
    }

    #[test]
    fn byte_limits_and_counters() {
        let cfg = LifetimeConfig {
            soft: Limits {
                bytes: Some(1000),
                ..Limits::default()
            },
            hard: Limits {
                bytes: Some(2000),
                ..Limits::default()
            },
        };
        let l = Lifetime::new(cfg, s(0));
        assert_eq!(l.counters(), Counters::default());
        assert_eq!(l.account(999, s(1)), None);
        assert_eq!(l.account(1, s(2)), Some(LifetimeEvent::SoftExpire));
        assert_eq!(l.account(500, s(3)), None);
        assert_eq!(l.account(5000, s(4)), Some(LifetimeEvent::HardExpire));
        let c = l.counters();
        assert_eq!((c.bytes, c.packets, c.last_use), (6500, 4, Some(s(4))));
    }

    #[test]
    fn time_limits_by_poll() {
        let cfg = LifetimeConfig {
            soft: Limits {
                time: Some(s(100)),
                ..Limits::default()
            },
            hard: Limits {
                time: Some(s(120)),
                ..Limits::default()
            },
        };
        let l = Lifetime::new(cfg, s(1000));
        assert_eq!(l.poll(s(1099)), None);
        assert_eq!(l.poll(s(1100)), Some(LifetimeEvent::SoftExpire));
        assert_eq!(l.poll(s(1110)), None);
        assert_eq!(l.poll(s(1120)), Some(LifetimeEvent::HardExpire));
        assert_eq!(l.poll(s(1130)), None);
        assert!(l.is_expired());
    }

    #[test]
    fn hard_without_soft_reports_hard_only() {
        let cfg = LifetimeConfig {
            soft: Limits {
                packets: Some(10),
                ..Limits::default()
            },
            hard: Limits {
                bytes: Some(100),
                ..Limits::default()
            },
        };
        let l = Lifetime::new(cfg, s(0));
        assert_eq!(l.account(150, s(0)), Some(LifetimeEvent::HardExpire));
        assert_eq!(l.poll(s(1)), None);
    }
}
