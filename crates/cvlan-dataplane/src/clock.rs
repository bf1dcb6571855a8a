//! The data plane's one clock. Every device, every worker and every protocol engine reads time
//! here, and a protocol sees it only as an argument (`Ctx::now`, or the engine's control calls):
//! monotonic time since the clock started.
//!
//! One epoch for the whole process, not one per device: the handoff stage runs another device's
//! transport with the receiving worker's `now` (`crate::handoff`), so every device must count
//! from the same instant.
//!
//! Wall-clock time is derived, not read again: the Unix time taken once when the clock starts
//! plus the monotonic time since. WireGuard needs it only for the TAI64N timestamp of handshake
//! initiations (whitepaper §5.4.2), which a responder requires to grow: derived time never goes
//! backwards when the system clock is stepped back, and a restarted process starts from the
//! system clock again.

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

struct Epoch {
    mono: Instant,
    /// Unix time at `mono`.
    unix: Duration,
}

fn epoch() -> &'static Epoch {
    static EPOCH: OnceLock<Epoch> = OnceLock::new();
    EPOCH.get_or_init(|| Epoch {
        mono: Instant::now(),
        unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO),
    })
}

/// Monotonic time since the clock started.
pub fn now() -> Duration {
    at(Instant::now())
}

/// `t` on the clock (an `Instant` a worker took when it woke up).
pub fn at(t: Instant) -> Duration {
    t.saturating_duration_since(epoch().mono)
}

/// Unix time at clock time `now`.
pub fn unix(now: Duration) -> Duration {
    epoch().unix + now
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_time_is_derived_from_the_monotonic_clock() {
        let a = now();
        let b = now();
        assert!(b >= a);
        assert_eq!(unix(b) - unix(a), b - a, "one clock, two views");
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let derived = unix(now());
        let skew = wall.abs_diff(derived);
        assert!(
            skew < Duration::from_secs(1),
            "derived {derived:?} vs system {wall:?}"
        );
    }
}
