//! Handshake rate limiting under load (§5.3): a token bucket per source address.

use super::constants::{HANDSHAKES_PER_SECOND, HANDSHAKE_BURST};
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

/// Token bucket per source address for handshake messages.
#[derive(Default)]
pub(crate) struct RateLimiter {
    buckets: HashMap<IpAddr, (f64, Duration)>,
    last_gc: Duration,
}

impl RateLimiter {
    pub(crate) fn allow(&mut self, ip: IpAddr, now: Duration) -> bool {
        if now.saturating_sub(self.last_gc) > Duration::from_secs(1) {
            self.buckets
                .retain(|_, (_, t)| now.saturating_sub(*t) < Duration::from_secs(1));
            self.last_gc = now;
        }
        let rate = f64::from(HANDSHAKES_PER_SECOND);
        let burst = f64::from(HANDSHAKE_BURST);
        let (tokens, at) = self.buckets.entry(ip).or_insert((burst, now));
        *tokens = (*tokens + now.saturating_sub(*at).as_secs_f64() * rate).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}
