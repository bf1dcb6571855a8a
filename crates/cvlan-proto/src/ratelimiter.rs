//! A token bucket per source address, as Linux's WireGuard module and wireguard-go bound the
//! handshake work one source can cause: `rate` per second on average, bursts of `burst`.
//! Time is an argument; the table is bounded (sources idle for a full bucket's refill time are
//! forgotten, and when the table is full the newest sources are refused rather than tracked).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

/// Per-source token buckets.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    max_sources: usize,
    buckets: HashMap<IpAddr, Bucket>,
    last_gc: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Duration,
}

impl RateLimiter {
    /// `rate` events per second and source, bursts of `burst`, at most `max_sources` tracked.
    pub fn new(rate: u32, burst: u32, max_sources: usize) -> RateLimiter {
        RateLimiter {
            rate: f64::from(rate.max(1)),
            burst: f64::from(burst.max(1)),
            max_sources,
            buckets: HashMap::new(),
            last_gc: Duration::ZERO,
        }
    }

    /// Whether `src` may cause one more event at `now` (monotonic); takes a token if so.
    pub fn allow(&mut self, src: IpAddr, now: Duration) -> bool {
        // A source idle this long has a full bucket again: forgetting it changes nothing.
        let refill = Duration::from_secs_f64(self.burst / self.rate);
        if now.saturating_sub(self.last_gc) >= Duration::from_secs(1) {
            self.buckets
                .retain(|_, b| now.saturating_sub(b.at) < refill);
            self.last_gc = now;
        }
        if !self.buckets.contains_key(&src) && self.buckets.len() >= self.max_sources {
            return false;
        }
        let (rate, burst) = (self.rate, self.burst);
        let b = self.buckets.entry(src).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        b.tokens = (b.tokens + now.saturating_sub(b.at).as_secs_f64() * rate).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Sources currently tracked.
    pub fn sources(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_burst_then_the_rate() {
        let mut l = RateLimiter::new(20, 5, 1000);
        let a = ip("192.0.2.1");
        let burst = (0..10).filter(|_| l.allow(a, ms(1000))).count();
        assert_eq!(burst, 5);
        // 20/s: one token per 50 ms.
        assert!(!l.allow(a, ms(1040)));
        assert!(l.allow(a, ms(1050)));
        // Over 10 s of asking every millisecond: about 20 per second.
        let allowed = (1051..11_051).filter(|t| l.allow(a, ms(*t))).count();
        assert!((199..=201).contains(&allowed), "{allowed}");
    }

    #[test]
    fn sources_are_independent() {
        let mut l = RateLimiter::new(20, 5, 1000);
        for _ in 0..5 {
            assert!(l.allow(ip("192.0.2.1"), ms(0)));
        }
        assert!(!l.allow(ip("192.0.2.1"), ms(0)));
        assert!(l.allow(ip("192.0.2.2"), ms(0)));
        assert!(l.allow(ip("2001:db8::1"), ms(0)));
    }

    #[test]
    fn the_table_is_bounded_and_idle_sources_are_forgotten() {
        let mut l = RateLimiter::new(20, 5, 3);
        for i in 1..=3 {
            assert!(l.allow(ip(&format!("192.0.2.{i}")), ms(0)));
        }
        assert!(
            !l.allow(ip("192.0.2.4"), ms(0)),
            "a fourth source is refused"
        );
        assert!(l.allow(ip("192.0.2.1"), ms(10)), "a known one is not");
        // After the refill time (250 ms) plus a GC tick, the table is empty again.
        assert!(l.allow(ip("192.0.2.4"), ms(1300)));
        assert_eq!(l.sources(), 1);
    }
}
