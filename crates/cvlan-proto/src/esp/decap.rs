//! Inbound processing (RFC 4303 §3.4) of a tunnel-mode SA.
//!
//! Stages of [`InboundSa::open`], in order:
//! 1. length and SPI sanity, hard lifetime;
//! 2. sequence number: reconstruct the high half (ESN) and check the replay window
//!    (RFC 4303 §3.4.3) — cheap rejection before any cryptography;
//! 3. verify the ICV and decrypt in place (RFC 4303 §3.4.4);
//! 4. record the sequence number in the window, only now that it is authentic;
//! 5. validate padding and Next Header (RFC 4303 §2.4, §2.6);
//! 6. parse the inner packet and check it against the traffic selectors;
//! 7. account the packet against the lifetime.
//!
//! `open` takes `&self`; the replay window is behind a small mutex held only for the
//! window check and the update, never during decryption.

use std::ops::Range;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::algorithms::Transform;
use super::esn;
use super::lifetime::{Counters, Lifetime, LifetimeEvent};
use super::packet::{
    check_trailer, ESP_HEADER_LEN, NEXT_HEADER_IPV4, NEXT_HEADER_IPV6, NEXT_HEADER_NONE,
    TRAILER_FIXED_LEN,
};
use super::sa::{Direction, SaError, SaParams, TunnelEndpoints};
use super::selectors::{inbound_allowed, TrafficSelector};
use super::DropReason;
use crate::ip;
use crate::replay::{ReplayError, ReplayWindow};

/// A decapsulated packet inside the caller's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The inner IP packet (TFC padding after it, RFC 4303 §2.7, is cut off).
    pub inner: Range<usize>,
    /// [`NEXT_HEADER_IPV4`] or [`NEXT_HEADER_IPV6`].
    pub next_header: u8,
    /// The full (reconstructed) sequence number.
    pub seq: u64,
    pub event: Option<LifetimeEvent>,
}

/// An inbound SA.
pub struct InboundSa {
    spi: u32,
    esn: bool,
    transform: Transform,
    replay: Mutex<ReplayWindow>,
    lifetime: Lifetime,
    local_ts: Vec<TrafficSelector>,
    remote_ts: Vec<TrafficSelector>,
    tunnel: TunnelEndpoints,
}

impl std::fmt::Debug for InboundSa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundSa")
            .field("spi", &format_args!("{:#010x}", self.spi))
            .field("esn", &self.esn)
            .field("keys", &"<redacted>")
            .finish()
    }
}

impl InboundSa {
    /// Builds the SA from `add_sa` parameters; `now` starts the time lifetimes.
    pub fn new(params: &SaParams, now: Duration) -> Result<InboundSa, SaError> {
        params.validate(Direction::Inbound)?;
        let transform = Transform::new(
            params.encryption,
            params.enc_key.expose(),
            params.integrity.as_ref().map(|(a, k)| (*a, k.expose())),
        )?;
        Ok(InboundSa {
            spi: params.spi,
            esn: params.esn,
            transform,
            replay: Mutex::new(ReplayWindow::new(u64::from(params.replay_window))),
            lifetime: Lifetime::new(params.lifetime, now),
            local_ts: params.local_ts.clone(),
            remote_ts: params.remote_ts.clone(),
            tunnel: params.tunnel,
        })
    }

    pub fn spi(&self) -> u32 {
        self.spi
    }

    pub fn tunnel(&self) -> &TunnelEndpoints {
        &self.tunnel
    }

    /// Counters for `query_sa`.
    pub fn counters(&self) -> Counters {
        self.lifetime.counters()
    }

    /// Time-based lifetime check without traffic.
    pub fn poll_lifetime(&self, now: Duration) -> Option<LifetimeEvent> {
        self.lifetime.poll(now)
    }

    /// Highest authenticated sequence number so far.
    pub fn highest_seq(&self) -> Option<u64> {
        self.window().top()
    }

    /// The smallest ESP packet this SA can carry: header, IV, trailer, ICV (and for CBC
    /// one whole block instead of the bare trailer).
    pub fn min_packet_len(&self) -> usize {
        let l = self.transform.layout();
        ESP_HEADER_LEN
            + l.iv_len
            + TRAILER_FIXED_LEN.max(self.transform.align().min(16))
            + l.icv_len
    }

    /// Decapsulates the ESP packet `pkt` (starting at the SPI, ending with the ICV) in
    /// place; the inner packet's range is relative to `pkt`.
    pub fn open(&self, pkt: &mut [u8], now: Duration) -> Result<Opened, DropReason> {
        if pkt.len() < self.min_packet_len() {
            return Err(DropReason::Truncated);
        }
        if u32::from_be_bytes([pkt[0], pkt[1], pkt[2], pkt[3]]) != self.spi {
            return Err(DropReason::UnknownSpi);
        }
        self.lifetime.check()?;
        let seq_lo = u32::from_be_bytes([pkt[4], pkt[5], pkt[6], pkt[7]]);
        let seq = {
            let w = self.window();
            let seq = if self.esn {
                esn::reconstruct(seq_lo, w.top(), w.size())
            } else {
                u64::from(seq_lo)
            };
            // RFC 4303 §3.3.3: the first packet carries 1, so 0 is never legitimate.
            if seq == 0 {
                return Err(DropReason::TooOld);
            }
            w.check(seq).map_err(replay_reason)?;
            seq
        };
        let (seq_hi, _) = esn::split(seq);
        self.transform.open(pkt, self.esn.then_some(seq_hi))?;
        // A concurrent worker may have delivered the same sequence number meanwhile.
        self.window().update(seq).map_err(replay_reason)?;

        let l = self.transform.layout();
        let body = ESP_HEADER_LEN + l.iv_len..pkt.len() - l.icv_len;
        let (data, next_header) = check_trailer(&pkt[body.clone()])?;
        let inner = body.start + data.start..body.start + data.end;
        let want_version = match next_header {
            NEXT_HEADER_IPV4 => 4,
            NEXT_HEADER_IPV6 => 6,
            NEXT_HEADER_NONE => return Err(DropReason::DummyPacket),
            _ => return Err(DropReason::BadNextHeader),
        };
        let inner_pkt = &pkt[inner.clone()];
        let info = ip::parse(inner_pkt).map_err(|_| DropReason::InnerMalformed)?;
        if inner_pkt[0] >> 4 != want_version {
            return Err(DropReason::InnerMalformed);
        }
        let inner = inner.start..inner.start + info.len;
        if !inbound_allowed(&self.local_ts, &self.remote_ts, &pkt[inner.clone()], &info) {
            return Err(DropReason::OutsideSelectors);
        }
        let event = self.lifetime.account(info.len as u64, now);
        Ok(Opened {
            inner,
            next_header,
            seq,
            event,
        })
    }

    /// Treats every sequence number up to `top` as received: an HA takeover, so packets the
    /// old active accepted are replays here. Never moves the window back.
    pub fn mark_received_through(&self, top: u64) {
        let mut w = self.window();
        if top == 0 || w.top().is_some_and(|t| t >= top) {
            return;
        }
        // Only what lies between the old top and the new one (at most one window) is new.
        let from = top
            .saturating_sub(w.size())
            .max(w.top().map_or(1, |t| t + 1))
            .max(1);
        for s in from..=top {
            let _ = w.update(s);
        }
    }

    /// Whether this SA uses 64-bit extended sequence numbers.
    pub fn esn(&self) -> bool {
        self.esn
    }

    /// Records `seq` as received, for tests that start near a sequence number wrap.
    #[cfg(test)]
    pub(crate) fn prime_window(&self, seq: u64) {
        let _ = self.window().update(seq);
    }

    fn window(&self) -> MutexGuard<'_, ReplayWindow> {
        // The window holds no invariant a panicking holder could break half-way.
        self.replay.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn replay_reason(e: ReplayError) -> DropReason {
    match e {
        ReplayError::Replayed => DropReason::Replayed,
        ReplayError::TooOld => DropReason::TooOld,
    }
}
