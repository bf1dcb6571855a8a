//! The per-peer timers of §6 as deadlines on the caller's monotonic clock. Nothing here waits:
//! the device sets and clears deadlines on protocol events, and `Device::update_timers(now)`
//! fires the ones that are due. The events and their effects follow §6.2–6.5 and, where the
//! whitepaper leaves details open, the behaviour peers on the wire expect from the reference
//! implementations (retransmissions counted, jitter on every handshake-related deadline).

use super::constants::*;
use std::time::Duration;

#[derive(Debug, Default, Clone)]
pub struct Timers {
    /// §6.4: resend the initiation if no response came by then.
    pub retransmit_handshake: Option<Duration>,
    /// §6.4: retransmissions of the current initiation; the attempt is abandoned after
    /// MAX_TIMER_HANDSHAKES (= REKEY_ATTEMPT_TIME / REKEY_TIMEOUT).
    pub handshake_attempts: u32,
    /// When we last sent an initiation (initiations are at most one per REKEY_TIMEOUT).
    pub last_initiation_sent: Option<Duration>,
    /// §6.5: send a keepalive then, unless we send something first.
    pub send_keepalive: Option<Duration>,
    /// Data arrived while a keepalive was already pending: after that one goes out, arm again,
    /// so a long receive-only stream is acknowledged every KEEPALIVE_TIMEOUT.
    pub need_another_keepalive: bool,
    /// §6.5: start a handshake then, unless something authenticated arrives first.
    pub new_handshake: Option<Duration>,
    /// §6.3: erase all keys then (3 × REJECT_AFTER_TIME after the last session was derived).
    pub zero_keys: Option<Duration>,
    /// §6.5: persistent keepalive deadline.
    pub persistent_keepalive: Option<Duration>,
    /// §6.2: the initiator renews a session close to REJECT_AFTER_TIME once per session when
    /// it receives on it; this remembers that it did.
    pub sent_last_minute_handshake: bool,
}

impl Timers {
    /// Data (not a keepalive) was sent: expect an answer within KEEPALIVE + REKEY_TIMEOUT.
    pub fn data_sent(&mut self, now: Duration, jitter: Duration) {
        if self.new_handshake.is_none() {
            self.new_handshake = Some(now + KEEPALIVE_TIMEOUT + REKEY_TIMEOUT + jitter);
        }
    }

    /// Any authenticated packet was sent (data, keepalive, handshake).
    pub fn authenticated_sent(&mut self) {
        self.send_keepalive = None;
    }

    /// Data (not a keepalive) was received.
    pub fn data_received(&mut self, now: Duration) {
        if self.send_keepalive.is_none() {
            self.send_keepalive = Some(now + KEEPALIVE_TIMEOUT);
        } else {
            self.need_another_keepalive = true;
        }
    }

    /// Any authenticated packet was received.
    pub fn authenticated_received(&mut self) {
        self.new_handshake = None;
    }

    /// Any authenticated packet went either way: the persistent keepalive restarts.
    pub fn traversed(&mut self, now: Duration, persistent: u16) {
        self.persistent_keepalive =
            (persistent > 0).then(|| now + Duration::from_secs(u64::from(persistent)));
    }

    /// An initiation went out; `retry` keeps the attempt count of the series.
    pub fn initiation_sent(&mut self, now: Duration, jitter: Duration, retry: bool) {
        if !retry {
            self.handshake_attempts = 0;
        }
        self.last_initiation_sent = Some(now);
        self.retransmit_handshake = Some(now + REKEY_TIMEOUT + jitter);
    }

    /// A handshake completed (either role).
    pub fn handshake_complete(&mut self) {
        self.retransmit_handshake = None;
        self.handshake_attempts = 0;
        self.sent_last_minute_handshake = false;
    }

    /// New session keys exist: they are erased 3 × REJECT_AFTER_TIME later unless renewed.
    pub fn session_derived(&mut self, now: Duration) {
        self.zero_keys = Some(now + REJECT_AFTER_TIME * 3);
    }

    /// Whether a new initiation may be sent now (not within REKEY_TIMEOUT of the last one).
    pub fn may_initiate(&self, now: Duration) -> bool {
        self.last_initiation_sent
            .is_none_or(|t| now.saturating_sub(t) >= REKEY_TIMEOUT)
    }

    /// The earliest deadline, for the caller's sleep.
    pub fn next(&self) -> Option<Duration> {
        [
            self.retransmit_handshake,
            self.send_keepalive,
            self.new_handshake,
            self.zero_keys,
            self.persistent_keepalive,
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn data_received_twice_asks_for_another_keepalive() {
        let mut t = Timers::default();
        t.data_received(S(1));
        assert_eq!(t.send_keepalive, Some(S(11)));
        t.data_received(S(2));
        assert_eq!(t.send_keepalive, Some(S(11)), "not pushed back");
        assert!(t.need_another_keepalive);
    }

    #[test]
    fn new_handshake_is_armed_once_and_cleared_by_any_reception() {
        let mut t = Timers::default();
        t.data_sent(S(0), Duration::from_millis(7));
        t.data_sent(S(3), Duration::ZERO);
        assert_eq!(t.new_handshake, Some(S(15) + Duration::from_millis(7)));
        t.authenticated_received();
        assert_eq!(t.new_handshake, None);
    }

    #[test]
    fn retries_keep_the_attempt_count() {
        let mut t = Timers {
            handshake_attempts: 4,
            ..Timers::default()
        };
        t.initiation_sent(S(10), Duration::ZERO, true);
        assert_eq!(t.handshake_attempts, 4);
        assert_eq!(t.retransmit_handshake, Some(S(15)));
        assert!(!t.may_initiate(S(14)));
        assert!(t.may_initiate(S(15)));
        t.initiation_sent(S(20), Duration::ZERO, false);
        assert_eq!(t.handshake_attempts, 0);
        t.handshake_complete();
        assert_eq!(t.retransmit_handshake, None);
        assert_eq!(t.next(), None);
        t.session_derived(S(20));
        assert_eq!(t.next(), Some(S(560)));
    }
}
