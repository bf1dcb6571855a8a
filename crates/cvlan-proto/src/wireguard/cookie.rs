//! MAC1, MAC2 and cookie replies (§5.4.4, §5.4.7): every handshake message carries MAC1 (proof
//! that the sender knows our public key); under load a responder also demands MAC2, keyed with a
//! cookie bound to the sender's address that it hands out in an encrypted cookie reply.

use super::constants::*;
use super::crypto::{xaead_open, xaead_seal, Key32};
use super::messages::cookie as off;
use super::messages::write_type;
use rand_core::{CryptoRng, RngCore};
use std::net::SocketAddr;
use std::time::Duration;
use subtle::ConstantTimeEq;

fn addr_bytes(a: SocketAddr) -> Vec<u8> {
    // Only we ever recompute this (the cookie is ours), so any unambiguous encoding works.
    let mut v = match a.ip() {
        std::net::IpAddr::V4(ip) => ip.octets().to_vec(),
        std::net::IpAddr::V6(ip) => ip.octets().to_vec(),
    };
    v.extend_from_slice(&a.port().to_be_bytes());
    v
}

/// Responder side: checks MACs, issues cookie replies. The secret rotates every two minutes.
#[derive(Default)]
pub struct CookieChecker {
    secret: [u8; 32],
    secret_born: Option<Duration>,
}

impl Drop for CookieChecker {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.secret);
    }
}

impl CookieChecker {
    /// `mac1_offset`: where MAC1 starts in `msg` (MAC2 follows it).
    pub fn check_mac1(mac1_key: &Key32, msg: &[u8], mac1_offset: usize) -> bool {
        let want = mac(mac1_key, &[&msg[..mac1_offset]]);
        bool::from(want.ct_eq(&msg[mac1_offset..mac1_offset + 16]))
    }

    fn cookie<R: RngCore + CryptoRng>(
        &mut self,
        src: SocketAddr,
        now: Duration,
        rng: &mut R,
    ) -> [u8; 16] {
        let stale = self
            .secret_born
            .is_none_or(|b| now.saturating_sub(b) >= COOKIE_REFRESH_TIME);
        if stale {
            rng.fill_bytes(&mut self.secret);
            self.secret_born = Some(now);
        }
        mac(&self.secret, &[&addr_bytes(src)])
    }

    /// MAC2 is valid only with the cookie of the current secret for this source address.
    pub fn check_mac2(
        &self,
        msg: &[u8],
        mac2_offset: usize,
        src: SocketAddr,
        now: Duration,
    ) -> bool {
        match self.secret_born {
            Some(b) if now.saturating_sub(b) < COOKIE_REFRESH_TIME => {
                let cookie = mac(&self.secret, &[&addr_bytes(src)]);
                let want = mac(&cookie_key16(&cookie), &[&msg[..mac2_offset]]);
                bool::from(want.ct_eq(&msg[mac2_offset..mac2_offset + 16]))
            }
            _ => false,
        }
    }

    /// A cookie reply to `msg` (an initiation or response whose MAC1 verified).
    #[allow(clippy::too_many_arguments)]
    pub fn create_reply<R: RngCore + CryptoRng>(
        &mut self,
        our_cookie_key: &Key32,
        msg: &[u8],
        mac1_offset: usize,
        receiver_index: u32,
        src: SocketAddr,
        now: Duration,
        rng: &mut R,
    ) -> [u8; COOKIE_REPLY_LEN] {
        let cookie = self.cookie(src, now, rng);
        let mut nonce = [0u8; 24];
        rng.fill_bytes(&mut nonce);
        let sealed = xaead_seal(
            our_cookie_key,
            &nonce,
            &cookie,
            &msg[mac1_offset..mac1_offset + 16],
        );
        let mut out = [0u8; COOKIE_REPLY_LEN];
        write_type(&mut out, MSG_COOKIE_REPLY);
        out[off::RECEIVER..off::RECEIVER + 4].copy_from_slice(&receiver_index.to_le_bytes());
        out[off::NONCE..off::COOKIE].copy_from_slice(&nonce);
        out[off::COOKIE..].copy_from_slice(&sealed);
        out
    }
}

/// MAC(cookie, ...) keys BLAKE2s with the 16-byte cookie; BLAKE2s accepts keys up to 32 bytes,
/// so the key is the cookie itself, not padded (padding would change the MAC).
fn cookie_key16(cookie: &[u8; 16]) -> CookieKey {
    CookieKey(*cookie)
}

pub struct CookieKey([u8; 16]);

fn mac_with(key: &CookieKey, parts: &[&[u8]]) -> [u8; 16] {
    use blake2::digest::{FixedOutput, KeyInit, Update};
    let mut m =
        <blake2::Blake2sMac<blake2::digest::consts::U16> as KeyInit>::new_from_slice(&key.0)
            .expect("16-byte key");
    for p in parts {
        Update::update(&mut m, p);
    }
    m.finalize_fixed().into()
}

// `mac` takes a 32-byte key; MAC2 needs the 16-byte cookie as key.
fn mac(key: &impl MacKey, parts: &[&[u8]]) -> [u8; 16] {
    key.mac(parts)
}

trait MacKey {
    fn mac(&self, parts: &[&[u8]]) -> [u8; 16];
}

impl MacKey for Key32 {
    fn mac(&self, parts: &[&[u8]]) -> [u8; 16] {
        super::crypto::mac(self, parts)
    }
}

impl MacKey for CookieKey {
    fn mac(&self, parts: &[&[u8]]) -> [u8; 16] {
        mac_with(self, parts)
    }
}

/// Initiator side of one peer: stamps MAC1/MAC2 on what we send, keeps the cookie they gave us.
#[derive(Default)]
pub struct CookieState {
    last_mac1: Option<[u8; 16]>,
    cookie: Option<([u8; 16], Duration)>,
}

impl CookieState {
    /// Writes MAC1 (and MAC2 if we hold a fresh cookie) into `msg`.
    pub fn stamp(
        &mut self,
        their_mac1_key: &Key32,
        msg: &mut [u8],
        mac1_offset: usize,
        now: Duration,
    ) {
        let m1 = mac(their_mac1_key, &[&msg[..mac1_offset]]);
        msg[mac1_offset..mac1_offset + 16].copy_from_slice(&m1);
        self.last_mac1 = Some(m1);
        let m2 = match self.cookie {
            Some((c, at)) if now.saturating_sub(at) < COOKIE_REFRESH_TIME => {
                mac(&cookie_key16(&c), &[&msg[..mac1_offset + 16]])
            }
            _ => [0u8; 16],
        };
        msg[mac1_offset + 16..mac1_offset + 32].copy_from_slice(&m2);
    }

    /// Takes a cookie reply; false if it does not decrypt against our last MAC1.
    pub fn consume_reply(
        &mut self,
        their_cookie_key: &Key32,
        reply: &[u8; COOKIE_REPLY_LEN],
        now: Duration,
    ) -> bool {
        let Some(m1) = self.last_mac1 else {
            return false;
        };
        let mut nonce = [0u8; 24];
        nonce.copy_from_slice(&reply[off::NONCE..off::COOKIE]);
        match xaead_open(their_cookie_key, &nonce, &reply[off::COOKIE..], &m1) {
            Some(c) if c.len() == 16 => {
                let mut cookie = [0u8; 16];
                cookie.copy_from_slice(&c);
                self.cookie = Some((cookie, now));
                true
            }
            _ => false,
        }
    }
}
