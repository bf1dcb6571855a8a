//! Incoming handshake messages (§5.4.2–5.4.7): MAC1 always, MAC2 and the per-source rate
//! limit under load, then the initiation, response or cookie reply, and installing the
//! transport keypair a completed handshake yields.

use super::{Device, DropReason, Event, Index, Outbox, PeerId, Time};
use crate::wireguard::constants::*;
use crate::wireguard::handshake::{self, State};
use crate::wireguard::messages::{self, init, resp, Message};
use crate::wireguard::session::Keypair;
use crate::wireguard::tai64n;
use rand_core::{CryptoRng, RngCore};
use std::net::SocketAddr;
use std::sync::Arc;

impl Device {
    pub(super) fn install(
        &mut self,
        id: PeerId,
        keys: handshake::SessionKeys,
        t: Time,
        out: &mut Outbox,
    ) {
        let kp = Arc::new(Keypair::new(
            &keys.send,
            &keys.recv,
            keys.local_index,
            keys.remote_index,
            t.mono,
            keys.initiator,
        ));
        if let Some(lease) = self.send_lease {
            kp.set_send_limit(lease);
        }
        let p = self.peers.get_mut(&id).expect("caller checked");
        let gone = p.session.install(kp.clone());
        p.timers.session_derived(t.mono);
        if keys.initiator {
            p.timers.handshake_complete();
            p.last_handshake = Some((t.mono, t.unix));
            out.events.push(Event::HandshakeComplete {
                peer: id,
                initiator: true,
            });
        }
        for g in gone {
            self.indices.remove(&g.local_index);
        }
        self.indices.insert(kp.local_index, Index::Keypair(id, kp));
    }

    /// Handles a handshake initiation, response or cookie reply from `src`. Transport messages
    /// go through `lookup_receiver` instead (this returns `UnknownType` for them).
    pub fn handle_handshake<R: RngCore + CryptoRng>(
        &mut self,
        src: SocketAddr,
        datagram: &[u8],
        t: Time,
        rng: &mut R,
        out: &mut Outbox,
    ) -> Result<(), DropReason> {
        let msg = messages::parse(datagram)?;
        let Some(identity) = self.identity.as_ref() else {
            return Err(DropReason::NoIdentity);
        };
        let (mac1_at, sender_at) = match msg {
            Message::Initiation(_) => (init::MAC1, init::SENDER),
            Message::Response(_) => (resp::MAC1, resp::SENDER),
            Message::CookieReply(r) => return self.cookie_reply(r, t),
            Message::Transport { .. } => return Err(DropReason::UnknownType),
        };
        if !self
            .checker
            .check_mac1(&identity.mac1_key, datagram, mac1_at)
        {
            return Err(DropReason::BadMac1);
        }
        if self.under_load {
            if !self.checker.check_mac2(datagram, mac1_at + 16, src, t.mono) {
                let sender = messages::le32(&datagram[sender_at..]);
                let cookie_key = identity.cookie_key;
                let reply = self.checker.create_reply(
                    &cookie_key,
                    datagram,
                    mac1_at,
                    sender,
                    src,
                    t.mono,
                    rng,
                );
                out.datagrams.push((reply.to_vec(), src));
                return Err(DropReason::CookieRequired);
            }
            if !self.limiter.allow(src.ip(), t.mono) {
                return Err(DropReason::RateLimited);
            }
        }
        match msg {
            Message::Initiation(m) => self.initiation(src, m, t, rng, out),
            Message::Response(m) => self.response(src, m, t, rng, out),
            _ => unreachable!("handled above"),
        }
    }

    fn cookie_reply(&mut self, r: &[u8; COOKIE_REPLY_LEN], t: Time) -> Result<(), DropReason> {
        let index = messages::le32(&r[messages::cookie::RECEIVER..]);
        let id = match self.indices.get(&index) {
            Some(Index::Handshake(id)) | Some(Index::Keypair(id, _)) => *id,
            None => return Err(DropReason::UnknownReceiver),
        };
        let p = self.peers.get_mut(&id).expect("indexed peer");
        if p.cookie.consume_reply(&p.keys.cookie_key, r, t.mono) {
            Ok(())
        } else {
            Err(DropReason::BadCookieReply)
        }
    }

    fn initiation<R: RngCore + CryptoRng>(
        &mut self,
        src: SocketAddr,
        m: &[u8; INITIATION_LEN],
        t: Time,
        rng: &mut R,
        out: &mut Outbox,
    ) -> Result<(), DropReason> {
        let identity = self.identity.as_ref().expect("checked by caller");
        let consumed = handshake::consume_initiation(identity, m).map_err(|e| match e {
            handshake::HandshakeError::LowOrder => DropReason::LowOrder,
            _ => DropReason::HandshakeDecrypt,
        })?;
        let id = self
            .by_key
            .get(&consumed.remote_static)
            .copied()
            .ok_or(DropReason::UnknownPeer)?;
        let p = self.peers.get(&id).expect("indexed peer");
        if p.last_timestamp
            .is_some_and(|last| !tai64n::after(&consumed.timestamp, &last))
        {
            return Err(DropReason::StaleInitiation);
        }
        if p.last_initiation_received
            .is_some_and(|at| t.mono.saturating_sub(at) < REKEY_MIN_INTERVAL)
        {
            return Err(DropReason::InitiationFlood);
        }
        let index = self.new_index(rng);
        let p = self.peers.get_mut(&id).expect("indexed peer");
        let (mut msg, keys) = handshake::create_response(&p.keys, &consumed, index, rng)
            .map_err(|_| DropReason::LowOrder)?;
        p.last_timestamp = Some(consumed.timestamp);
        p.last_initiation_received = Some(t.mono);
        p.cookie
            .stamp(&p.keys.mac1_key, &mut msg, resp::MAC1, t.mono);
        if p.cfg.endpoint != Some(src) {
            p.cfg.endpoint = Some(src);
            out.events.push(Event::EndpointChanged {
                peer: id,
                endpoint: src,
            });
        }
        p.timers.authenticated_received();
        p.timers.authenticated_sent();
        p.timers.traversed(t.mono, p.cfg.persistent_keepalive);
        p.rx_bytes += INITIATION_LEN as u64;
        p.tx_bytes += RESPONSE_LEN as u64;
        out.datagrams.push((msg.to_vec(), src));
        self.install(id, keys, t, out);
        Ok(())
    }

    fn response<R: RngCore + CryptoRng>(
        &mut self,
        src: SocketAddr,
        m: &[u8; RESPONSE_LEN],
        t: Time,
        rng: &mut R,
        out: &mut Outbox,
    ) -> Result<(), DropReason> {
        let index = messages::le32(&m[resp::RECEIVER..]);
        let id = match self.indices.get(&index) {
            Some(Index::Handshake(id)) => *id,
            _ => return Err(DropReason::UnexpectedResponse),
        };
        let identity = self.identity.as_ref().expect("checked by caller");
        let p = self.peers.get(&id).expect("indexed peer");
        let keys = handshake::consume_response(identity, &p.keys, &p.handshake, m).map_err(
            |e| match e {
                handshake::HandshakeError::LowOrder => DropReason::LowOrder,
                handshake::HandshakeError::UnexpectedResponse => DropReason::UnexpectedResponse,
                _ => DropReason::HandshakeDecrypt,
            },
        )?;
        self.indices.remove(&index);
        let p = self.peers.get_mut(&id).expect("indexed peer");
        p.handshake = State::None;
        if p.cfg.endpoint != Some(src) {
            p.cfg.endpoint = Some(src);
            out.events.push(Event::EndpointChanged {
                peer: id,
                endpoint: src,
            });
        }
        p.rx_bytes += RESPONSE_LEN as u64;
        p.timers.authenticated_received();
        p.timers.traversed(t.mono, p.cfg.persistent_keepalive);
        self.install(id, keys, t, out);
        // The responder waits for data to confirm the keypair: send the queue, or a keepalive.
        if self.peers[&id].queue.is_empty() {
            self.send_keepalive(id, t, rng, out);
        } else {
            self.flush_queue(id, t, rng, out);
        }
        Ok(())
    }
}
