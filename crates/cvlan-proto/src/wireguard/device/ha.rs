//! Sessions handed from an active node to its standby (high availability), in the order the
//! sync uses them:
//! 1. `export_sessions` — every live keypair of every peer, on the active;
//! 2. `import_session` — installed on the standby under the same receiver index (idempotent:
//!    a known index only has its counter moved forward);
//! 3. `session_counters` / `sync_counter` — send and receive counters, at a bounded interval;
//!    a synced receive counter on a keypair that is still `next` here confirms it
//!    (`confirm_session`): the peer used it, so the active made it `current`;
//! 4. on takeover the data plane moves each keypair (`keypair_by_index`) past anything the old
//!    active may have used: the lease arithmetic is the sync's, not the protocol's.
//!
//! The standby sends nothing while passive; that is the data plane's business (it discards the
//! device's output), so the device itself stays the same on both nodes.

use super::{Device, Index, PeerId};
use crate::wireguard::session::Keypair;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use zeroize::Zeroizing;

/// Where a keypair sits in its peer's session (§5.4.6 rotation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionSlot {
    Current,
    Previous,
    Next,
}

/// One keypair as the standby needs it. The keys wipe themselves; `Debug` leaves them out.
#[derive(Clone)]
pub struct SessionRecord {
    pub peer_public_key: [u8; 32],
    pub local_index: u32,
    pub remote_index: u32,
    pub send_key: Zeroizing<[u8; 32]>,
    pub recv_key: Zeroizing<[u8; 32]>,
    /// Time since the handshake that made it (clocks differ between nodes; ages do not).
    pub age: Duration,
    pub initiator: bool,
    pub slot: SessionSlot,
    /// Next counter to send.
    pub send_counter: u64,
    /// Highest counter received.
    pub recv_top: Option<u64>,
    pub endpoint: Option<SocketAddr>,
}

impl std::fmt::Debug for SessionRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRecord")
            .field("local_index", &format_args!("{:#x}", self.local_index))
            .field("remote_index", &format_args!("{:#x}", self.remote_index))
            .field("slot", &self.slot)
            .field("send_counter", &self.send_counter)
            .field("keys", &"<redacted>")
            .finish()
    }
}

impl Device {
    /// Every live keypair, sorted by receiver index.
    pub fn export_sessions(&self, now: Duration) -> Vec<SessionRecord> {
        let mut v = Vec::new();
        for p in self.peers.values() {
            let s = &p.session;
            for (slot, kp) in [
                (SessionSlot::Current, &s.current),
                (SessionSlot::Previous, &s.previous),
                (SessionSlot::Next, &s.next),
            ] {
                let Some(kp) = kp else { continue };
                let (send, recv) = kp.raw_keys();
                v.push(SessionRecord {
                    peer_public_key: p.cfg.public_key,
                    local_index: kp.local_index,
                    remote_index: kp.remote_index,
                    send_key: send.clone(),
                    recv_key: recv.clone(),
                    age: now.saturating_sub(kp.created),
                    initiator: kp.initiator,
                    slot,
                    send_counter: kp.sent(),
                    recv_top: kp.recv_top(),
                    endpoint: p.cfg.endpoint,
                });
            }
        }
        v.sort_unstable_by_key(|r| r.local_index);
        v
    }

    /// (receiver index, next send counter, highest received counter) of every live keypair.
    pub fn session_counters(&self) -> Vec<(u32, u64, Option<u64>)> {
        let mut v: Vec<_> = self
            .indices
            .iter()
            .filter_map(|(i, ix)| match ix {
                Index::Keypair(_, kp) => Some((*i, kp.sent(), kp.recv_top())),
                Index::Handshake(_) => None,
            })
            .collect();
        v.sort_unstable_by_key(|e| e.0);
        v
    }

    /// The keypair behind a receiver index.
    pub fn keypair_by_index(&self, index: u32) -> Option<Arc<Keypair>> {
        match self.indices.get(&index) {
            Some(Index::Keypair(_, kp)) => Some(kp.clone()),
            _ => None,
        }
    }

    /// Installs a session from the active node. Returns the peer, or `None` when no peer with
    /// that public key is configured here (the configurations differ). A receiver index that is
    /// already installed only has its send counter moved forward.
    pub fn import_session(&mut self, r: &SessionRecord, now: Duration) -> Option<PeerId> {
        let id = self.peer_id(&r.peer_public_key)?;
        if let Some(Index::Keypair(owner, kp)) = self.indices.get(&r.local_index) {
            if *owner == id {
                kp.advance_send_counter(r.send_counter);
                if r.slot == SessionSlot::Current || r.recv_top.is_some() {
                    self.confirm_session(r.local_index);
                }
                return Some(id);
            }
        }
        let kp = Arc::new(Keypair::new(
            &r.send_key,
            &r.recv_key,
            r.local_index,
            r.remote_index,
            now.saturating_sub(r.age),
            r.initiator,
        ));
        kp.advance_send_counter(r.send_counter);
        if r.slot == SessionSlot::Current {
            // Data arrived on it on the active (or it was the initiator's): it may send.
            kp.received
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let p = self.peers.get_mut(&id).expect("indexed peer");
        let old = match r.slot {
            // A newer current rotates the one held here into `previous`, as on the active:
            // the peer may still send on it for a while.
            SessionSlot::Current => match p.session.current.replace(kp.clone()) {
                Some(was) => p.session.previous.replace(was),
                None => None,
            },
            SessionSlot::Previous => p.session.previous.replace(kp.clone()),
            SessionSlot::Next => p.session.next.replace(kp.clone()),
        };
        if r.endpoint.is_some() {
            p.cfg.endpoint = r.endpoint;
        }
        if r.slot == SessionSlot::Current && p.last_handshake.is_none() {
            let created = now.saturating_sub(r.age);
            p.last_handshake = Some((created, created));
        }
        if let Some(old) = old {
            self.indices.remove(&old.local_index);
        }
        // An index of ours that a pending handshake held is overwritten: the active's session
        // is the one the peer knows.
        self.indices.insert(r.local_index, Index::Keypair(id, kp));
        // Exported as `next` after the peer's first data had already arrived (the record was
        // built between the two): confirmed all the same.
        if r.slot == SessionSlot::Next && r.recv_top.is_some() {
            self.confirm_session(r.local_index);
        }
        Some(id)
    }

    /// The peer has used the keypair behind `index` (the active received data on it): if it is
    /// still its peer's `next` here, it becomes `current`, as on the responder that saw the
    /// data (§5.4.6). Without this a standby that received a responder's keypair between the
    /// handshake response and the peer's first data would hold no `current` keypair after a
    /// takeover, and its first packet towards the peer would start a new handshake.
    /// Returns whether the keypair was promoted.
    pub fn confirm_session(&mut self, index: u32) -> bool {
        let Some(Index::Keypair(id, kp)) = self.indices.get(&index) else {
            return false;
        };
        let (id, kp) = (*id, kp.clone());
        let Some(p) = self.peers.get_mut(&id) else {
            return false;
        };
        if !p.session.next.as_ref().is_some_and(|n| Arc::ptr_eq(n, &kp)) {
            return false;
        }
        kp.received
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let gone = p.session.received_on(&kp);
        if p.last_handshake.is_none() {
            p.last_handshake = Some((kp.created, kp.created));
        }
        for g in gone {
            self.indices.remove(&g.local_index);
        }
        true
    }

    /// Removes an imported keypair (the active dropped it).
    pub fn remove_session(&mut self, index: u32) {
        let Some(Index::Keypair(id, kp)) = self.indices.get(&index) else {
            return;
        };
        let (id, kp) = (*id, kp.clone());
        self.indices.remove(&index);
        if let Some(p) = self.peers.get_mut(&id) {
            for slot in [
                &mut p.session.current,
                &mut p.session.previous,
                &mut p.session.next,
            ] {
                if slot.as_ref().is_some_and(|k| Arc::ptr_eq(k, &kp)) {
                    *slot = None;
                }
            }
        }
    }

    /// Moves a synced send counter forward (standby); a synced receive counter confirms a
    /// `next` keypair (`confirm_session`). `false` for an unknown index.
    pub fn sync_counter(&mut self, index: u32, send_counter: u64, recv_top: Option<u64>) -> bool {
        match self.keypair_by_index(index) {
            Some(kp) => {
                kp.advance_send_counter(send_counter);
                if recv_top.is_some() {
                    self.confirm_session(index);
                }
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wireguard::PeerConfig;

    const PEER: [u8; 32] = [0x42; 32];

    fn standby() -> (Device, PeerId) {
        let mut d = Device::new(Some([0x11; 32]));
        let peer = Device::new(Some(PEER)).public_key().unwrap();
        let id = d.upsert_peer(PeerConfig {
            public_key: peer,
            preshared_key: None,
            endpoint: None,
            persistent_keepalive: 0,
        });
        (d, id)
    }

    fn record(index: u32, slot: SessionSlot, recv_top: Option<u64>) -> SessionRecord {
        SessionRecord {
            peer_public_key: Device::new(Some(PEER)).public_key().unwrap(),
            local_index: index,
            remote_index: index ^ 0xffff,
            send_key: Zeroizing::new([index as u8; 32]),
            recv_key: Zeroizing::new([!(index as u8); 32]),
            age: Duration::from_secs(1),
            initiator: false,
            slot,
            send_counter: 3,
            recv_top,
            endpoint: Some("192.0.2.7:51820".parse().unwrap()),
        }
    }

    fn slots(d: &Device, id: PeerId) -> [Option<u32>; 3] {
        let s = &d.peers[&id].session;
        [&s.current, &s.previous, &s.next].map(|k| k.as_ref().map(|k| k.local_index))
    }

    #[test]
    fn a_next_keypair_is_confirmed_by_a_synced_receive_counter() {
        let (mut d, id) = standby();
        let now = Duration::from_secs(10);
        d.import_session(&record(7, SessionSlot::Next, None), now)
            .unwrap();
        assert_eq!(
            slots(&d, id),
            [None, None, Some(7)],
            "unconfirmed: not sendable"
        );
        assert!(d.sync_counter(7, 5, None));
        assert_eq!(slots(&d, id), [None, None, Some(7)], "no data received yet");
        assert!(d.sync_counter(7, 9, Some(0)));
        assert_eq!(slots(&d, id), [Some(7), None, None], "the peer used it");
        assert_eq!(d.keypair_by_index(7).unwrap().sent(), 9);
        assert!(!d.confirm_session(7), "already current");
        assert!(!d.sync_counter(8, 1, Some(0)), "unknown index");
    }

    #[test]
    fn a_next_record_with_received_data_and_a_known_index_resent_as_current_are_confirmed() {
        let (mut d, id) = standby();
        let now = Duration::from_secs(10);
        d.import_session(&record(7, SessionSlot::Next, Some(0)), now)
            .unwrap();
        assert_eq!(slots(&d, id), [Some(7), None, None]);
        let (mut d, id) = standby();
        d.import_session(&record(7, SessionSlot::Next, None), now)
            .unwrap();
        d.import_session(&record(7, SessionSlot::Current, None), now)
            .unwrap();
        assert_eq!(
            slots(&d, id),
            [Some(7), None, None],
            "a resent record moves the slot"
        );
    }

    #[test]
    fn a_newer_current_rotates_the_held_one_into_previous() {
        let (mut d, id) = standby();
        let now = Duration::from_secs(10);
        d.import_session(&record(1, SessionSlot::Previous, Some(4)), now)
            .unwrap();
        d.import_session(&record(2, SessionSlot::Current, Some(4)), now)
            .unwrap();
        assert_eq!(slots(&d, id), [Some(2), Some(1), None]);
        // The peer's next handshake, confirmed on the active before its record left.
        d.import_session(&record(3, SessionSlot::Current, Some(0)), now)
            .unwrap();
        assert_eq!(slots(&d, id), [Some(3), Some(2), None], "as on the active");
        assert!(
            d.keypair_by_index(1).is_none(),
            "the oldest is gone with its index"
        );
        assert_eq!(d.session_counters().len(), 2);
    }
}
