//! Incoming transport messages (§5.4.6). Stages, in order:
//! 1. `lookup_receiver` — the keypair of the receiver index, under the caller's lock;
//! 2. the caller opens the message outside the lock (replay check, AEAD);
//! 3. `received_data` — keypair confirmation, roaming, timers, counters and the initiator's
//!    last-minute rekey;
//! 4. the caller checks the inner source with `allowed_src`.

use super::{Device, DropReason, Event, Index, Outbox, PeerId, Time};
use crate::wireguard::constants::*;
use crate::wireguard::session::Keypair;
use rand_core::{CryptoRng, RngCore};
use std::net::SocketAddr;
use std::sync::Arc;

impl Device {
    /// The keypair a transport message is for. Checked before decryption (outside the lock).
    pub fn lookup_receiver(
        &self,
        index: u32,
        t: Time,
    ) -> Result<(PeerId, Arc<Keypair>), DropReason> {
        match self.indices.get(&index) {
            Some(Index::Keypair(id, kp)) => {
                if t.mono.saturating_sub(kp.created) >= REJECT_AFTER_TIME {
                    return Err(DropReason::KeypairExpired);
                }
                Ok((*id, kp.clone()))
            }
            Some(Index::Handshake(_)) => Err(DropReason::DataBeforeHandshake),
            None => Err(DropReason::UnknownReceiver),
        }
    }

    /// Bookkeeping after a transport message on `kp` authenticated: keypair confirmation,
    /// roaming, timers, counters, and the initiator's rekey before REJECT_AFTER_TIME.
    #[allow(clippy::too_many_arguments)]
    pub fn received_data<R: RngCore + CryptoRng>(
        &mut self,
        id: PeerId,
        kp: &Arc<Keypair>,
        src: SocketAddr,
        wire_len: usize,
        inner_len: usize,
        t: Time,
        rng: &mut R,
        out: &mut Outbox,
    ) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        // The responder's handshake completes when the initiator first uses the new keys.
        let confirms = p.session.next.as_ref().is_some_and(|n| Arc::ptr_eq(n, kp));
        let gone = p.session.received_on(kp);
        if confirms {
            p.timers.handshake_complete();
            p.last_handshake = Some((t.mono, t.unix));
            out.events.push(Event::HandshakeComplete {
                peer: id,
                initiator: false,
            });
        }
        if p.cfg.endpoint != Some(src) {
            p.cfg.endpoint = Some(src);
            out.events.push(Event::EndpointChanged {
                peer: id,
                endpoint: src,
            });
        }
        p.rx_bytes += wire_len as u64;
        p.timers.authenticated_received();
        p.timers.traversed(t.mono, p.cfg.persistent_keepalive);
        if inner_len > 0 {
            p.timers.data_received(t.mono);
        }
        // §6.2: an initiator whose session nears REJECT_AFTER_TIME renews it once while it is
        // still receiving, so a receive-only flow is not cut off.
        let renew = !p.timers.sent_last_minute_handshake
            && p.session.current.as_ref().is_some_and(|c| {
                c.initiator
                    && t.mono.saturating_sub(c.created)
                        >= REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT
            });
        if renew {
            p.timers.sent_last_minute_handshake = true;
        }
        let flush = !p.queue.is_empty();
        for g in gone {
            self.indices.remove(&g.local_index);
        }
        if renew {
            self.initiate(id, t, rng, out, false);
        }
        if flush {
            self.flush_queue(id, t, rng, out);
        }
    }
}
