//! The responder's front door for handshake messages (§5.3, §5.4.4, §5.4.7), shared by the
//! data plane's workers without the device's lock: MAC1 always; under load MAC2, a cookie
//! reply instead of any Diffie-Hellman when MAC2 is missing, and the per-source rate limit when
//! it is valid (as Linux's WireGuard: only messages with a valid cookie meet the limiter).
//!
//! Only what passes here reaches the [`Device`](super::Device)'s handshake work, so a flood of
//! initiations costs the device's lock nothing. "Under load" is a rate of handshake messages
//! that lasts a second beyond the moment it was exceeded (the kernel keeps it for a second
//! after its queue drains), so a steady flood never finds an unguarded start of a second.

use super::constants::*;
use super::cookie::CookieChecker;
use super::crypto::Key32;
use super::drop_reason::DropReason;
use super::handshake::Identity;
use super::messages::{self, init, resp, Message};
use crate::ratelimiter::RateLimiter;
use rand_core::{CryptoRng, RngCore};
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard, RwLock};
use std::time::Duration;

/// Handshake messages per second beyond which MAC2 (cookies) becomes mandatory (§5.3 "under
/// load"); a tuning choice, well above what any legitimate set of peers sends.
pub const UNDER_LOAD_MESSAGES_PER_SEC: u64 = 500;

/// How long "under load" lasts after the rate was last exceeded.
pub const UNDER_LOAD_HOLD: Duration = Duration::from_secs(1);

/// What the gate decided for a handshake message.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// Initiation or response with a valid MAC1 (and MAC2 under load, within the rate): the
    /// device does the handshake work.
    Handshake,
    /// A cookie reply: the device checks it against the peer's pending handshake.
    CookieReply,
    /// Under load without a valid MAC2: send this cookie reply to the source, nothing else.
    SendCookie([u8; COOKIE_REPLY_LEN]),
}

#[derive(Clone)]
struct Keys {
    mac1: Key32,
    cookie: Key32,
}

impl Drop for Keys {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.mac1);
        zeroize::Zeroize::zeroize(&mut self.cookie);
    }
}

/// Messages counted in the current second, and until when the gate stays under load.
#[derive(Default)]
struct Load {
    second: u64,
    count: u64,
    until: Duration,
}

/// MAC checks, cookie replies and the per-source limit, each behind its own short lock.
pub struct HandshakeGate {
    keys: RwLock<Option<Keys>>,
    checker: Mutex<CookieChecker>,
    limiter: Mutex<RateLimiter>,
    load: Mutex<Load>,
}

impl Default for HandshakeGate {
    fn default() -> HandshakeGate {
        HandshakeGate {
            keys: RwLock::new(None),
            checker: Mutex::new(CookieChecker::default()),
            limiter: Mutex::new(RateLimiter::new(
                HANDSHAKES_PER_SECOND,
                HANDSHAKE_BURST,
                HANDSHAKE_SOURCES_TRACKED,
            )),
            load: Mutex::new(Load::default()),
        }
    }
}

impl std::fmt::Debug for HandshakeGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandshakeGate").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl HandshakeGate {
    /// Takes the MAC1 and cookie keys of our identity (`None`: nothing is admitted).
    pub fn set_identity(&self, identity: Option<&Identity>) {
        let keys = identity.map(|i| Keys {
            mac1: i.mac1_key,
            cookie: i.cookie_key,
        });
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = keys;
    }

    /// Counts one handshake message at `now` and tells whether the device is under load.
    pub fn note_message(&self, now: Duration) -> bool {
        let mut l = lock(&self.load);
        let sec = now.as_secs();
        if l.second != sec {
            l.second = sec;
            l.count = 0;
        }
        l.count += 1;
        if l.count > UNDER_LOAD_MESSAGES_PER_SEC {
            l.until = now + UNDER_LOAD_HOLD;
        }
        now < l.until
    }

    /// Decides what a handshake-type datagram from `src` may cost (see [`Admission`]).
    pub fn admit<R: RngCore + CryptoRng>(
        &self,
        src: SocketAddr,
        datagram: &[u8],
        under_load: bool,
        now: Duration,
        rng: &mut R,
    ) -> Result<Admission, DropReason> {
        let (mac1_at, sender_at) = match messages::parse(datagram)? {
            Message::Initiation(_) => (init::MAC1, init::SENDER),
            Message::Response(_) => (resp::MAC1, resp::SENDER),
            Message::CookieReply(_) => return Ok(Admission::CookieReply),
            Message::Transport { .. } => return Err(DropReason::UnknownType),
        };
        let Some(keys) = self.keys.read().unwrap_or_else(|e| e.into_inner()).clone() else {
            return Err(DropReason::NoIdentity);
        };
        if !CookieChecker::check_mac1(&keys.mac1, datagram, mac1_at) {
            return Err(DropReason::BadMac1);
        }
        if !under_load {
            return Ok(Admission::Handshake);
        }
        let mut checker = lock(&self.checker);
        if !checker.check_mac2(datagram, mac1_at + 16, src, now) {
            let sender = messages::le32(&datagram[sender_at..]);
            let reply =
                checker.create_reply(&keys.cookie, datagram, mac1_at, sender, src, now, rng);
            return Ok(Admission::SendCookie(reply));
        }
        drop(checker);
        if !lock(&self.limiter).allow(src.ip(), now) {
            return Err(DropReason::RateLimited);
        }
        Ok(Admission::Handshake)
    }
}
