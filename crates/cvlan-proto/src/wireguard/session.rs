//! Transport keypairs (§5.4.6) and the per-peer set of current, previous and next keypairs.
//!
//! A `Keypair` is shared by all workers: sealing reserves nothing (the caller passes a counter
//! the device reserved under its lock), opening checks and then records the counter in a small
//! per-keypair replay window. AEAD never runs under a device-wide lock.

use super::constants::*;
use crate::replay::{ReplayError, ReplayWindow};
use ring::aead::{self, LessSafeKey, UnboundKey, CHACHA20_POLY1305};
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use zeroize::{Zeroize, Zeroizing};

/// A transport key that is wiped when dropped. ring's AEAD keys do not wipe themselves, so the
/// key lives in storage that may hold any bytes (`MaybeUninit`) and is overwritten with zeros
/// once it is no longer a valid key.
struct TransportKey(MaybeUninit<LessSafeKey>);

impl TransportKey {
    fn new(bytes: &Zeroizing<[u8; 32]>) -> TransportKey {
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, &bytes[..]).expect("32-byte key");
        TransportKey(MaybeUninit::new(LessSafeKey::new(unbound)))
    }

    fn get(&self) -> &LessSafeKey {
        // SAFETY: initialised in `new`; de-initialised only in `drop`, after which no `&self`
        // can exist.
        unsafe { self.0.assume_init_ref() }
    }
}

impl Drop for TransportKey {
    fn drop(&mut self) {
        // SAFETY: initialised in `new` and dropped only here, once.
        unsafe { self.0.assume_init_drop() };
        // The storage is now plain bytes, which `MaybeUninit` permits to be zero.
        self.0.zeroize();
    }
}

/// One direction-pair of transport keys.
pub struct Keypair {
    send: TransportKey,
    recv: TransportKey,
    /// The raw keys, kept only so that a standby can be given this session (`device::ha`).
    send_bytes: Zeroizing<[u8; 32]>,
    recv_bytes: Zeroizing<[u8; 32]>,
    pub local_index: u32,
    pub remote_index: u32,
    /// When the handshake that made it completed (device clock).
    pub created: Duration,
    /// Whether we initiated that handshake (only the initiator rekeys on time, §6.2).
    pub initiator: bool,
    /// Next counter to use for sending.
    pub(crate) send_counter: AtomicU64,
    /// Counters at or above this may not be used (the HA lease; `u64::MAX` without HA): past it
    /// the keypair counts as exhausted and the device starts a new handshake.
    send_limit: AtomicU64,
    replay: Mutex<ReplayWindow>,
    /// Set once a data message arrived on it (the responder's "next" keypair is confirmed).
    pub(crate) received: AtomicBool,
}

impl std::fmt::Debug for Keypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keypair")
            .field("local_index", &format_args!("{:#x}", self.local_index))
            .field("remote_index", &format_args!("{:#x}", self.remote_index))
            .field("keys", &"<redacted>")
            .finish()
    }
}

/// Why a transport message was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    Replayed,
    TooOld,
    Decrypt,
    Exhausted,
}

fn nonce(counter: u64) -> aead::Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_le_bytes());
    aead::Nonce::assume_unique_for_key(n)
}

/// Padded plaintext length for a packet of `len` bytes (§5.4.6).
pub fn padded_len(len: usize) -> usize {
    len.div_ceil(PADDING_MULTIPLE) * PADDING_MULTIPLE
}

/// Padded length when the tunnel MTU is known: padding never pushes a packet that fits the MTU
/// beyond it (a full-MTU packet would otherwise grow the outer datagram past the path MTU).
pub fn padded_len_for_mtu(len: usize, mtu: usize) -> usize {
    if mtu == 0 || len > mtu {
        return padded_len(len);
    }
    padded_len(len).min(mtu)
}

impl Keypair {
    pub fn new(
        send: &Zeroizing<[u8; 32]>,
        recv: &Zeroizing<[u8; 32]>,
        local_index: u32,
        remote_index: u32,
        created: Duration,
        initiator: bool,
    ) -> Keypair {
        Keypair {
            send: TransportKey::new(send),
            recv: TransportKey::new(recv),
            send_bytes: send.clone(),
            recv_bytes: recv.clone(),
            local_index,
            remote_index,
            created,
            initiator,
            send_counter: AtomicU64::new(0),
            send_limit: AtomicU64::new(u64::MAX),
            replay: Mutex::new(ReplayWindow::new(REPLAY_WINDOW)),
            received: AtomicBool::new(false),
        }
    }

    /// Reserves the next sending counter, `None` once REJECT_AFTER_MESSAGES or the send limit
    /// is reached.
    pub fn next_counter(&self) -> Option<u64> {
        let c = self.send_counter.fetch_add(1, Ordering::Relaxed);
        (c < REJECT_AFTER_MESSAGES && c < self.send_limit.load(Ordering::Acquire)).then_some(c)
    }

    pub fn sent(&self) -> u64 {
        self.send_counter.load(Ordering::Relaxed)
    }

    /// First counter this keypair may not use.
    pub fn send_limit(&self) -> u64 {
        self.send_limit.load(Ordering::Acquire)
    }

    /// Sets the send limit (a lease granted by the HA peer, or none with `u64::MAX`).
    pub fn set_send_limit(&self, limit: u64) {
        self.send_limit.store(limit, Ordering::Release);
    }

    /// Raises the send limit; never lowers it (acks may arrive out of order).
    pub fn raise_send_limit(&self, limit: u64) {
        self.send_limit.fetch_max(limit, Ordering::AcqRel);
    }

    /// Moves the next send counter forward to `counter`; never backwards (a counter once
    /// reserved may have been used).
    pub fn advance_send_counter(&self, counter: u64) {
        self.send_counter.fetch_max(counter, Ordering::AcqRel);
    }

    /// Whether the send limit or REJECT_AFTER_MESSAGES stops this keypair from sending.
    pub fn send_exhausted(&self) -> bool {
        let sent = self.sent();
        sent >= REJECT_AFTER_MESSAGES || sent >= self.send_limit()
    }

    /// Highest counter received so far.
    pub fn recv_top(&self) -> Option<u64> {
        self.replay.lock().unwrap_or_else(|e| e.into_inner()).top()
    }

    /// Treats every counter up to `top` as received (a standby taking over: it cannot know which
    /// of them the old active saw, so none may be accepted again).
    pub fn mark_received_through(&self, top: u64) {
        let mut w = self.replay.lock().unwrap_or_else(|e| e.into_inner());
        if w.top().is_some_and(|t| t >= top) {
            return;
        }
        // The window then reports everything behind `top` as seen or too old.
        let from = top.saturating_sub(w.size());
        for c in from..=top {
            let _ = w.update(c);
        }
    }

    /// The raw (send, receive) keys, for handing the session to an HA standby.
    pub(crate) fn raw_keys(&self) -> (&Zeroizing<[u8; 32]>, &Zeroizing<[u8; 32]>) {
        (&self.send_bytes, &self.recv_bytes)
    }

    /// Builds a transport message in place. The IP packet is at `buf[start..start + len]`;
    /// `start` must leave 16 bytes of headroom and `buf` room for padding and the tag after it.
    /// Returns the message's range in `buf`.
    pub fn seal(
        &self,
        counter: u64,
        buf: &mut [u8],
        start: usize,
        len: usize,
    ) -> Option<std::ops::Range<usize>> {
        self.seal_padded(counter, buf, start, len, padded_len(len))
    }

    /// [`Keypair::seal`] with padding capped at the tunnel MTU ([`padded_len_for_mtu`]).
    pub fn seal_mtu(
        &self,
        counter: u64,
        buf: &mut [u8],
        start: usize,
        len: usize,
        mtu: usize,
    ) -> Option<std::ops::Range<usize>> {
        self.seal_padded(counter, buf, start, len, padded_len_for_mtu(len, mtu))
    }

    fn seal_padded(
        &self,
        counter: u64,
        buf: &mut [u8],
        start: usize,
        len: usize,
        padded: usize,
    ) -> Option<std::ops::Range<usize>> {
        if counter >= REJECT_AFTER_MESSAGES {
            return None;
        }
        if start < TRANSPORT_HEADER_LEN || buf.len() < start + padded + TAG_LEN {
            return None;
        }
        buf[start + len..start + padded].fill(0);
        let tag = self
            .send
            .get()
            .seal_in_place_separate_tag(
                nonce(counter),
                aead::Aad::empty(),
                &mut buf[start..start + padded],
            )
            .ok()?;
        buf[start + padded..start + padded + TAG_LEN].copy_from_slice(tag.as_ref());
        let h = start - TRANSPORT_HEADER_LEN;
        buf[h..h + 4].copy_from_slice(&[MSG_TRANSPORT, 0, 0, 0]);
        buf[h + 4..h + 8].copy_from_slice(&self.remote_index.to_le_bytes());
        buf[h + 8..h + 16].copy_from_slice(&counter.to_le_bytes());
        Some(h..start + padded + TAG_LEN)
    }

    /// Decrypts a transport payload (ciphertext + tag) in place and records its counter.
    /// Returns the plaintext length (padding included; the IP header tells the real length).
    pub fn open(&self, counter: u64, payload: &mut [u8]) -> Result<usize, OpenError> {
        if counter >= REJECT_AFTER_MESSAGES {
            return Err(OpenError::Exhausted);
        }
        match self
            .replay
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .check(counter)
        {
            Err(ReplayError::Replayed) => return Err(OpenError::Replayed),
            Err(ReplayError::TooOld) => return Err(OpenError::TooOld),
            Ok(()) => {}
        }
        let plain = self
            .recv
            .get()
            .open_in_place(nonce(counter), aead::Aad::empty(), payload)
            .map_err(|_| OpenError::Decrypt)?
            .len();
        // Two workers may race on the same counter; only the first update wins.
        match self
            .replay
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .update(counter)
        {
            Err(ReplayError::Replayed) => Err(OpenError::Replayed),
            Err(ReplayError::TooOld) => Err(OpenError::TooOld),
            Ok(()) => {
                self.received.store(true, Ordering::Relaxed);
                Ok(plain)
            }
        }
    }
}

/// §5.4.6 keypairs: `current` sends; `previous` still receives during rotation;
/// `next` is a responder's fresh keypair that becomes current on the first data message.
#[derive(Default, Debug)]
pub struct Session {
    pub current: Option<std::sync::Arc<Keypair>>,
    pub previous: Option<std::sync::Arc<Keypair>>,
    pub next: Option<std::sync::Arc<Keypair>>,
}

impl Session {
    /// Installs the keypair a handshake produced; returns the keypairs that fell out (so the
    /// caller can drop their indices).
    pub fn install(&mut self, kp: std::sync::Arc<Keypair>) -> Vec<std::sync::Arc<Keypair>> {
        let mut gone = Vec::new();
        if kp.initiator {
            // The initiator may use it at once: the response proved the responder has it.
            gone.extend(self.previous.take());
            match self.next.take() {
                Some(unconfirmed) => {
                    self.previous = Some(unconfirmed);
                    gone.extend(self.current.take());
                }
                None => self.previous = self.current.take(),
            }
            self.current = Some(kp);
        } else {
            // The responder must wait for the initiator's first data message before sending.
            gone.extend(self.next.replace(kp));
            gone.extend(self.previous.take());
        }
        gone
    }

    /// Data arrived on `kp`: a confirmed `next` becomes `current`.
    pub fn received_on(&mut self, kp: &std::sync::Arc<Keypair>) -> Vec<std::sync::Arc<Keypair>> {
        let mut gone = Vec::new();
        if self
            .next
            .as_ref()
            .is_some_and(|n| std::sync::Arc::ptr_eq(n, kp))
        {
            let n = self.next.take().expect("checked");
            gone.extend(self.previous.take());
            self.previous = self.current.replace(n);
        }
        gone
    }

    /// Drops every keypair (REJECT_AFTER_TIME × 3, peer removed, key changed).
    pub fn clear(&mut self) -> Vec<std::sync::Arc<Keypair>> {
        [self.current.take(), self.previous.take(), self.next.take()]
            .into_iter()
            .flatten()
            .collect()
    }

    pub fn all(&self) -> impl Iterator<Item = &std::sync::Arc<Keypair>> {
        [&self.current, &self.previous, &self.next]
            .into_iter()
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Keypair, Keypair) {
        let a = Zeroizing::new([1u8; 32]);
        let b = Zeroizing::new([2u8; 32]);
        (
            Keypair::new(&a, &b, 1, 2, Duration::ZERO, true),
            Keypair::new(&b, &a, 2, 1, Duration::ZERO, false),
        )
    }

    #[test]
    fn transport_keys_are_zeroed_on_drop() {
        let mut key = std::mem::ManuallyDrop::new(TransportKey::new(&Zeroizing::new([0x5a; 32])));
        let mut buf = [0u8; 32];
        let tag = key
            .get()
            .seal_in_place_separate_tag(nonce(0), aead::Aad::empty(), &mut buf)
            .unwrap();
        assert_ne!(tag.as_ref(), &[0u8; 16], "a working key first");
        // SAFETY: dropped exactly once here; the storage stays in place (ManuallyDrop) and is
        // only read afterwards as the plain bytes the drop wrote.
        unsafe { std::mem::ManuallyDrop::drop(&mut key) };
        // ManuallyDrop is transparent: this is the address of the dropped key's storage.
        let at = std::ptr::addr_of!(key) as *const u8;
        let after: Vec<u8> = (0..std::mem::size_of::<TransportKey>())
            // SAFETY: in bounds of the still-live storage, fully written by `zeroize`.
            .map(|i| unsafe { std::ptr::read_volatile(at.add(i)) })
            .collect();
        assert!(
            after.iter().all(|&b| b == 0),
            "key material left: {after:02x?}"
        );
    }

    #[test]
    fn padding_is_capped_at_the_mtu() {
        assert_eq!(padded_len(0), 0);
        assert_eq!(padded_len(1), 16);
        assert_eq!(padded_len(1420), 1424);
        assert_eq!(padded_len_for_mtu(1420, 1420), 1420);
        assert_eq!(padded_len_for_mtu(1419, 1420), 1420);
        assert_eq!(padded_len_for_mtu(1405, 1420), 1408);
        assert_eq!(
            padded_len_for_mtu(1500, 1420),
            1504,
            "oversized: plain padding"
        );
        let (i, r) = pair();
        let mut buf = vec![0u8; 16 + 1420 + 16];
        let range = i.seal_mtu(0, &mut buf, 16, 1419, 1420).unwrap();
        assert_eq!(range.len(), 16 + 1420 + 16);
        assert_eq!(r.open(0, &mut buf[16..range.end]), Ok(1420));
    }

    #[test]
    fn seal_refuses_small_buffers_and_exhausted_counters() {
        let (i, r) = pair();
        let mut buf = vec![0u8; 16 + 20 + 16];
        assert!(i.seal(0, &mut buf, 8, 20).is_none(), "no headroom");
        assert!(i.seal(0, &mut buf, 16, 20).is_none(), "no room for padding");
        let mut buf = vec![0u8; 16 + 32 + 16];
        assert!(i.seal(REJECT_AFTER_MESSAGES, &mut buf, 16, 20).is_none());
        let range = i.seal(7, &mut buf, 16, 20).unwrap();
        let end = range.end;
        let mut copy = buf.clone();
        assert_eq!(r.open(7, &mut buf[16..end]), Ok(32));
        assert_eq!(r.open(7, &mut copy[16..end]), Err(OpenError::Replayed));
        copy[20] ^= 1;
        assert_eq!(r.open(8, &mut copy[16..end]), Err(OpenError::Decrypt));
        assert_eq!(
            r.open(REJECT_AFTER_MESSAGES, &mut copy[16..end]),
            Err(OpenError::Exhausted)
        );
        assert!(format!("{i:?}").contains("<redacted>"));
    }

    #[test]
    fn responder_keypair_waits_for_confirmation() {
        let mk = |init| {
            let k = Zeroizing::new([3u8; 32]);
            std::sync::Arc::new(Keypair::new(&k, &k, 9, 9, Duration::ZERO, init))
        };
        let mut s = Session::default();
        let first = mk(false);
        assert!(s.install(first.clone()).is_empty());
        assert!(
            s.current.is_none(),
            "not usable before the initiator's first data"
        );
        assert!(s.received_on(&first).is_empty());
        assert!(std::sync::Arc::ptr_eq(s.current.as_ref().unwrap(), &first));
        let second = mk(true);
        s.install(second.clone());
        assert!(std::sync::Arc::ptr_eq(s.previous.as_ref().unwrap(), &first));
        let third = mk(false);
        let gone = s.install(third.clone());
        assert_eq!(gone.len(), 1, "previous dropped for the new next");
        assert!(std::sync::Arc::ptr_eq(s.current.as_ref().unwrap(), &second));
        assert_eq!(s.all().count(), 2);
        assert_eq!(s.clear().len(), 2);
    }
}
