//! Outbound processing (RFC 4303 §3.3) of a tunnel-mode SA.
//!
//! Stages of [`OutboundSa::seal`], in order:
//! 1. refuse if the SA is past its hard lifetime;
//! 2. check the inner packet's IP version (it picks the Next Header) and the buffer room;
//! 3. take the next sequence number (one atomic operation; stops at 2^32 - 1 without ESN,
//!    RFC 4303 §3.3.3);
//! 4. write header, padding and trailer around the inner packet where it lies;
//! 5. encrypt and compute the ICV in place;
//! 6. account the packet against the lifetime.
//!
//! `seal` takes `&self`: several workers can encrypt for one SA at once.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rand_core::{CryptoRng, RngCore};

use super::algorithms::{Transform, AEAD_IV_LEN, CBC_IV_LEN};
use super::esn;
use super::lifetime::{Counters, Lifetime, LifetimeEvent};
use super::packet::{next_header_for, pad_len, write_trailer, ESP_HEADER_LEN, TRAILER_FIXED_LEN};
use super::sa::{Direction, SaError, SaParams, TunnelEndpoints};
use super::DropReason;

/// RFC 4303 §3.3.3: without ESN the counter must not cycle past 2^32 - 1.
const MAX_SEQ_32: u64 = u32::MAX as u64;

/// A protected packet inside the caller's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The ESP packet (from the SPI to the end of the ICV).
    pub esp: Range<usize>,
    /// The full (64-bit) sequence number used.
    pub seq: u64,
    /// A lifetime limit this packet crossed, to report to the key manager.
    pub event: Option<LifetimeEvent>,
}

/// An outbound SA.
pub struct OutboundSa {
    spi: u32,
    esn: bool,
    transform: Transform,
    /// Last sequence number handed out (0 = none yet; the first packet carries 1).
    seq: AtomicU64,
    /// First sequence number this SA may not use (an HA counter lease; `u64::MAX`: none).
    limit: AtomicU64,
    /// Whether the lease's exhaustion was reported (once per limit).
    lease_reported: AtomicBool,
    lifetime: Lifetime,
    tunnel: TunnelEndpoints,
}

impl std::fmt::Debug for OutboundSa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundSa")
            .field("spi", &format_args!("{:#010x}", self.spi))
            .field("esn", &self.esn)
            .field("seq", &self.seq.load(Ordering::Relaxed))
            .field("keys", &"<redacted>")
            .finish()
    }
}

impl OutboundSa {
    /// Builds the SA from `add_sa` parameters; `now` starts the time lifetimes.
    pub fn new(params: &SaParams, now: Duration) -> Result<OutboundSa, SaError> {
        params.validate(Direction::Outbound)?;
        let transform = Transform::new(
            params.encryption,
            params.enc_key.expose(),
            params.integrity.as_ref().map(|(a, k)| (*a, k.expose())),
        )?;
        Ok(OutboundSa {
            spi: params.spi,
            esn: params.esn,
            transform,
            seq: AtomicU64::new(0),
            limit: AtomicU64::new(u64::MAX),
            lease_reported: AtomicBool::new(false),
            lifetime: Lifetime::new(params.lifetime, now),
            tunnel: params.tunnel,
        })
    }

    pub fn spi(&self) -> u32 {
        self.spi
    }

    pub fn tunnel(&self) -> &TunnelEndpoints {
        &self.tunnel
    }

    /// Octets the caller must leave in front of the inner packet (ESP header + IV).
    pub fn headroom(&self) -> usize {
        ESP_HEADER_LEN + self.transform.layout().iv_len
    }

    /// Octets the caller must leave after an inner packet of `inner_len` octets.
    pub fn tailroom(&self, inner_len: usize) -> usize {
        pad_len(inner_len, self.transform.align())
            + TRAILER_FIXED_LEN
            + self.transform.layout().icv_len
    }

    /// Upper bound of [`OutboundSa::tailroom`] for any packet.
    pub fn max_tailroom(&self) -> usize {
        self.transform.align() - 1 + TRAILER_FIXED_LEN + self.transform.layout().icv_len
    }

    /// Counters for `query_sa`.
    pub fn counters(&self) -> Counters {
        self.lifetime.counters()
    }

    /// The last sequence number sent (0 before the first packet).
    pub fn last_seq(&self) -> u64 {
        self.seq.load(Ordering::Relaxed)
    }

    /// Time-based lifetime check without traffic.
    pub fn poll_lifetime(&self, now: Duration) -> Option<LifetimeEvent> {
        self.lifetime.poll(now)
    }

    /// Encapsulates the inner IP packet at `buf[inner]` in place. `buf` must have
    /// [`OutboundSa::headroom`] octets before `inner.start` and
    /// [`OutboundSa::tailroom`] octets after `inner.end`.
    pub fn seal<R: RngCore + CryptoRng>(
        &self,
        buf: &mut [u8],
        inner: Range<usize>,
        now: Duration,
        rng: &mut R,
    ) -> Result<Sealed, DropReason> {
        self.seal_with(buf, inner, now, rng, None)
    }

    /// `seal` with an optional fixed (sequence number, IV) pair, for known-answer tests
    /// that need the IV a published vector used.
    pub(crate) fn seal_with<R: RngCore + CryptoRng>(
        &self,
        buf: &mut [u8],
        inner: Range<usize>,
        now: Duration,
        rng: &mut R,
        fixed: Option<(u64, &[u8])>,
    ) -> Result<Sealed, DropReason> {
        self.lifetime.check()?;
        let inner_len = inner
            .end
            .checked_sub(inner.start)
            .ok_or(DropReason::BufferTooSmall)?;
        let start = inner
            .start
            .checked_sub(self.headroom())
            .ok_or(DropReason::BufferTooSmall)?;
        let end = inner.end + self.tailroom(inner_len);
        if end > buf.len() {
            return Err(DropReason::BufferTooSmall);
        }
        let next_header = next_header_for(&buf[inner.clone()])?;
        let seq = match fixed {
            Some((s, _)) => s,
            None => self.next_seq()?,
        };
        let (seq_hi, seq_lo) = esn::split(seq);
        let pkt = &mut buf[start..end];
        pkt[..4].copy_from_slice(&self.spi.to_be_bytes());
        pkt[4..8].copy_from_slice(&seq_lo.to_be_bytes());
        let layout = self.transform.layout();
        let trailer_start = self.headroom() + inner_len;
        write_trailer(
            &mut pkt[trailer_start..end - start - layout.icv_len],
            next_header,
        );
        let mut aead_iv = seq.to_be_bytes();
        let mut cbc_iv = None;
        if let Some((_, iv)) = fixed {
            if iv.len() == AEAD_IV_LEN {
                aead_iv.copy_from_slice(iv);
            } else if iv.len() == CBC_IV_LEN {
                let mut v = [0u8; CBC_IV_LEN];
                v.copy_from_slice(iv);
                cbc_iv = Some(v);
            }
        }
        self.transform
            .seal(pkt, self.esn.then_some(seq_hi), aead_iv, cbc_iv, rng);
        let event = self.lifetime.account(inner_len as u64, now);
        Ok(Sealed {
            esp: start..end,
            seq,
            event,
        })
    }

    fn next_seq(&self) -> Result<u64, DropReason> {
        let max = if self.esn { u64::MAX } else { MAX_SEQ_32 };
        let lease = self.limit.load(Ordering::Acquire);
        let mut leased_out = false;
        self.seq
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                if s >= max {
                    return None;
                }
                // The lease is checked in the same atomic step that takes the number, so no
                // worker can take one at or beyond it.
                if s + 1 >= lease {
                    leased_out = true;
                    return None;
                }
                Some(s + 1)
            })
            .map(|prev| prev + 1)
            .map_err(|_| {
                if leased_out {
                    DropReason::LeaseExhausted
                } else {
                    DropReason::SequenceOverflow
                }
            })
    }

    /// The first sequence number this SA may not use (`u64::MAX`: no lease).
    pub fn send_limit(&self) -> u64 {
        self.limit.load(Ordering::Acquire)
    }

    /// Sets the lease limit (HA: a takeover, a new SA on the active, or a standby with none).
    pub fn set_send_limit(&self, limit: u64) {
        self.limit.store(limit, Ordering::Release);
        self.lease_reported.store(false, Ordering::Relaxed);
    }

    /// Moves the lease limit forward only (an acknowledgement from the HA standby).
    pub fn raise_send_limit(&self, limit: u64) {
        if self.limit.fetch_max(limit, Ordering::AcqRel) < limit {
            self.lease_reported.store(false, Ordering::Relaxed);
        }
    }

    /// Whether the next packet would be refused for the lease.
    pub fn lease_exhausted(&self) -> bool {
        self.seq.load(Ordering::Relaxed).saturating_add(1) >= self.limit.load(Ordering::Acquire)
    }

    /// True once per limit: the caller reports the exhaustion (a soft expire, so the key
    /// manager rekeys) the first time a packet hits it.
    pub fn take_lease_report(&self) -> bool {
        !self.lease_reported.swap(true, Ordering::Relaxed)
    }

    /// Moves the counter forward to at least `last` (the last sequence number taken as used):
    /// an HA takeover, or the active's counter synced to a standby. Never moves it back.
    pub fn advance_seq(&self, last: u64) {
        self.seq.fetch_max(last, Ordering::Relaxed);
    }

    /// Whether this SA uses 64-bit extended sequence numbers.
    pub fn esn(&self) -> bool {
        self.esn
    }

    /// Starts the counter elsewhere than at 0, for tests of the wrap-around.
    #[cfg(test)]
    pub(crate) fn set_last_seq(&self, seq: u64) {
        self.seq.store(seq, Ordering::Relaxed);
    }

    /// Protects an arbitrary plaintext `body` (payload and trailer as given, however
    /// malformed) with sequence number `seq`, so tests can make authentic packets with bad
    /// padding or Next Header.
    #[cfg(test)]
    pub(crate) fn seal_raw_body(&self, body: &[u8], seq: u64) -> Vec<u8> {
        let layout = self.transform.layout();
        let mut pkt = vec![0u8; self.headroom() + body.len() + layout.icv_len];
        let (seq_hi, seq_lo) = esn::split(seq);
        pkt[..4].copy_from_slice(&self.spi.to_be_bytes());
        pkt[4..8].copy_from_slice(&seq_lo.to_be_bytes());
        let h = self.headroom();
        pkt[h..h + body.len()].copy_from_slice(body);
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seq);
        self.transform.seal(
            &mut pkt,
            self.esn.then_some(seq_hi),
            seq.to_be_bytes(),
            Some([7; CBC_IV_LEN]),
            &mut rng,
        );
        pkt
    }
}
