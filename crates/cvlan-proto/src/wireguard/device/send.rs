//! Outgoing packets (§5.4.6) and the handshake initiations they trigger (§6.2, §6.4).
//!
//! Stages of one packet, in order:
//! 1. `prepare_send` — a usable keypair and a reserved counter, or the peer's bounded queue and
//!    an initiation (`initiate`, at most one per REKEY_TIMEOUT);
//! 2. the caller seals outside the lock with the keypair it got;
//! 3. after a handshake, `flush_queue` seals what waited; `send_keepalive` when there is
//!    nothing to send but something to acknowledge.

use super::{jitter, tai, usable, Device, DropReason, Index, Outbox, PeerId, Time};
use crate::wireguard::constants::*;
use crate::wireguard::handshake::{self, State};
use crate::wireguard::messages::init;
use crate::wireguard::session::Keypair;
use rand_core::{CryptoRng, RngCore};
use std::net::SocketAddr;
use std::sync::Arc;

/// The outcome of `prepare_send`.
pub enum SendPlan {
    /// Seal with `keypair` and `counter` (reserved) and send to `endpoint`.
    Encrypt {
        keypair: Arc<Keypair>,
        counter: u64,
        endpoint: SocketAddr,
    },
    /// The packet was queued until a handshake completes.
    Queued,
    Drop(DropReason),
}

impl Device {
    /// Sends a new initiation to `id` unless one went out less than REKEY_TIMEOUT ago (§6.4).
    /// `retry` marks a retransmission of the current series; anything else starts a new
    /// series, so the give-up count restarts while there is traffic to send.
    pub(super) fn initiate<R: RngCore + CryptoRng>(
        &mut self,
        id: PeerId,
        t: Time,
        rng: &mut R,
        out: &mut Outbox,
        retry: bool,
    ) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        if !retry {
            p.timers.handshake_attempts = 0;
        }
        if self.identity.is_none() || !p.timers.may_initiate(t.mono) {
            return;
        }
        let Some(endpoint) = p.cfg.endpoint else {
            return;
        };
        let index = self.new_index(rng);
        let Device {
            identity,
            peers,
            indices,
            ..
        } = self;
        let identity = identity.as_ref().expect("checked");
        let p = peers.get_mut(&id).expect("checked");
        let Ok((mut msg, state)) =
            handshake::create_initiation(identity, &p.keys, index, tai(t), rng)
        else {
            out.drops.push(DropReason::LowOrder);
            return;
        };
        if let State::InitiationSent { local_index, .. } =
            std::mem::replace(&mut p.handshake, state)
        {
            indices.remove(&local_index);
        }
        p.cookie
            .stamp(&p.keys.mac1_key, &mut msg, init::MAC1, t.mono);
        p.timers.initiation_sent(t.mono, jitter(rng), retry);
        p.timers.authenticated_sent();
        p.timers.traversed(t.mono, p.cfg.persistent_keepalive);
        p.tx_bytes += INITIATION_LEN as u64;
        indices.insert(index, Index::Handshake(id));
        out.datagrams.push((msg.to_vec(), endpoint));
    }

    /// Decides how to send one packet to `id`; queues it if no usable session exists.
    pub fn prepare_send<R: RngCore + CryptoRng>(
        &mut self,
        id: PeerId,
        packet: &[u8],
        t: Time,
        rng: &mut R,
        out: &mut Outbox,
    ) -> SendPlan {
        let Some(p) = self.peers.get_mut(&id) else {
            return SendPlan::Drop(DropReason::NoRoute);
        };
        let Some(endpoint) = p.cfg.endpoint else {
            return SendPlan::Drop(DropReason::NoEndpoint);
        };
        if self.identity.is_none() {
            return SendPlan::Drop(DropReason::NoIdentity);
        }
        if let Some(kp) = usable(&p.session, t.mono) {
            if let Some(counter) = kp.next_counter() {
                // §6.2: only the initiator rekeys on age, so both ends never race to do it.
                let rekey = kp.initiator
                    && (t.mono.saturating_sub(kp.created) >= REKEY_AFTER_TIME
                        || counter >= REKEY_AFTER_MESSAGES);
                p.timers.authenticated_sent();
                p.timers.traversed(t.mono, p.cfg.persistent_keepalive);
                if !packet.is_empty() && p.timers.new_handshake.is_none() {
                    p.timers.data_sent(t.mono, jitter(rng));
                }
                if rekey {
                    self.initiate(id, t, rng, out, false);
                }
                return SendPlan::Encrypt {
                    keypair: kp,
                    counter,
                    endpoint,
                };
            }
        }
        // No usable keypair: queue (oldest dropped first) and make sure a handshake runs.
        if !packet.is_empty() {
            if p.queue.len() >= MAX_QUEUED_PACKETS {
                p.queue.pop_front();
                out.drops.push(DropReason::QueueFull);
            }
            p.queue.push_back(packet.to_vec());
        }
        self.initiate(id, t, rng, out, false);
        SendPlan::Queued
    }

    /// Seals and sends the packets that waited for a session.
    pub(super) fn flush_queue<R: RngCore>(
        &mut self,
        id: PeerId,
        t: Time,
        rng: &mut R,
        out: &mut Outbox,
    ) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        let (Some(kp), Some(endpoint)) = (usable(&p.session, t.mono), p.cfg.endpoint) else {
            return;
        };
        let mut sent = false;
        while let Some(pkt) = p.queue.pop_front() {
            let Some(counter) = kp.next_counter() else {
                p.queue.push_front(pkt);
                break;
            };
            let mut buf = vec![
                0u8;
                TRANSPORT_HEADER_LEN
                    + crate::wireguard::session::padded_len(pkt.len())
                    + TAG_LEN
            ];
            buf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + pkt.len()].copy_from_slice(&pkt);
            if let Some(r) = kp.seal(counter, &mut buf, TRANSPORT_HEADER_LEN, pkt.len()) {
                buf.truncate(r.end);
                p.tx_bytes += buf.len() as u64;
                out.datagrams.push((buf, endpoint));
                sent = true;
            }
        }
        if sent {
            p.timers.authenticated_sent();
            p.timers.traversed(t.mono, p.cfg.persistent_keepalive);
            if p.timers.new_handshake.is_none() {
                p.timers.data_sent(t.mono, jitter(rng));
            }
        }
    }

    /// Sends a keepalive to every peer with a usable session, e.g. after our listen port
    /// changed: the peers learn the new endpoint from it (roaming) without waiting for data.
    pub fn send_keepalives_to_current_peers<R: RngCore + CryptoRng>(
        &mut self,
        t: Time,
        rng: &mut R,
        out: &mut Outbox,
    ) {
        for id in self.peer_ids() {
            let current = self
                .peers
                .get(&id)
                .is_some_and(|p| p.cfg.endpoint.is_some() && usable(&p.session, t.mono).is_some());
            if current {
                self.send_keepalive(id, t, rng, out);
            }
        }
    }

    /// Sends an empty transport message; without a usable session, starts a handshake instead
    /// (its response is followed by a keepalive anyway).
    pub(super) fn send_keepalive<R: RngCore + CryptoRng>(
        &mut self,
        id: PeerId,
        t: Time,
        rng: &mut R,
        out: &mut Outbox,
    ) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        let Some(endpoint) = p.cfg.endpoint else {
            return;
        };
        let Some((kp, counter)) =
            usable(&p.session, t.mono).and_then(|kp| kp.next_counter().map(|c| (kp, c)))
        else {
            self.initiate(id, t, rng, out, false);
            return;
        };
        let mut buf = vec![0u8; KEEPALIVE_LEN];
        if let Some(r) = kp.seal(counter, &mut buf, TRANSPORT_HEADER_LEN, 0) {
            buf.truncate(r.end);
            p.tx_bytes += buf.len() as u64;
            out.datagrams.push((buf, endpoint));
            p.timers.authenticated_sent();
            p.timers.traversed(t.mono, p.cfg.persistent_keepalive);
        }
    }
}
