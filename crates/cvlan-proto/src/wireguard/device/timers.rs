//! Firing the §6 timers (`crate::wireguard::timers` keeps the deadlines): retransmitted and
//! abandoned initiations, keepalives, new handshakes on silence, zeroed keys.

use super::{Device, DropReason, Event, Outbox, Time};
use crate::wireguard::constants::*;
use crate::wireguard::handshake::State;
use crate::wireguard::PeerId;
use rand_core::{CryptoRng, RngCore};
use std::time::Duration;

impl Device {
    /// Fires due timers of every peer (§6). Call it at [`Device::poll_timeout`] at the latest.
    pub fn update_timers<R: RngCore + CryptoRng>(
        &mut self,
        t: Time,
        rng: &mut R,
        out: &mut Outbox,
    ) {
        let due = |d: Option<Duration>| d.is_some_and(|d| d <= t.mono);
        // Only the peers with a timer due (`Timers::next` is the earliest of the five below): one
        // pass over the table, where a lookup per timer of every peer and a sort of all their ids
        // cost an idle device with 2000 peers ~0.5 % of a core at 10 ticks a second. Sorted so
        // that output order does not depend on hashing.
        let mut due_now: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| due(p.timers.next()))
            .map(|(id, _)| *id)
            .collect();
        due_now.sort_unstable();
        for id in due_now {
            let p = self.peers.get_mut(&id).expect("listed");
            // §6.4: retransmit the initiation, or give up after MAX_TIMER_HANDSHAKES.
            if due(p.timers.retransmit_handshake) {
                // Cleared first: `initiate` re-arms it only if it really sends.
                p.timers.retransmit_handshake = None;
                if p.timers.handshake_attempts > MAX_TIMER_HANDSHAKES {
                    p.timers.send_keepalive = None;
                    out.drops.extend(std::iter::repeat_n(
                        DropReason::HandshakeTimeout,
                        p.queue.len(),
                    ));
                    p.queue.clear();
                    if p.timers.zero_keys.is_none() {
                        p.timers.zero_keys = Some(t.mono + REJECT_AFTER_TIME * 3);
                    }
                    if let State::InitiationSent { local_index, .. } =
                        std::mem::replace(&mut p.handshake, State::None)
                    {
                        self.indices.remove(&local_index);
                    }
                    out.events.push(Event::HandshakeGaveUp { peer: id });
                } else {
                    p.timers.handshake_attempts += 1;
                    self.initiate(id, t, rng, out, true);
                }
            }
            // §6.5: acknowledge received data that we had nothing to answer with.
            let p = self.peers.get_mut(&id).expect("listed");
            if due(p.timers.send_keepalive) {
                p.timers.send_keepalive = None;
                self.send_keepalive(id, t, rng, out);
                let p = self.peers.get_mut(&id).expect("listed");
                if std::mem::take(&mut p.timers.need_another_keepalive) {
                    p.timers.send_keepalive = Some(t.mono + KEEPALIVE_TIMEOUT);
                }
            }
            // §6.5: we sent data and heard nothing back: the session may be dead.
            let p = self.peers.get_mut(&id).expect("listed");
            if due(p.timers.new_handshake) {
                p.timers.new_handshake = None;
                self.initiate(id, t, rng, out, false);
            }
            // §6.3: no new session for 3 × REJECT_AFTER_TIME: erase every key.
            let p = self.peers.get_mut(&id).expect("listed");
            if due(p.timers.zero_keys) {
                p.timers.zero_keys = None;
                out.drops.extend(std::iter::repeat_n(
                    DropReason::KeypairExpired,
                    p.queue.len(),
                ));
                p.queue.clear();
                let mut gone: Vec<u32> = p.session.clear().iter().map(|k| k.local_index).collect();
                if let State::InitiationSent { local_index, .. } =
                    std::mem::replace(&mut p.handshake, State::None)
                {
                    gone.push(local_index);
                }
                for i in gone {
                    self.indices.remove(&i);
                }
                out.events.push(Event::KeysZeroed { peer: id });
            }
            // Persistent keepalive keeps NAT mappings open even when idle.
            let p = self.peers.get_mut(&id).expect("listed");
            if due(p.timers.persistent_keepalive) {
                p.timers.persistent_keepalive = None;
                if p.cfg.persistent_keepalive > 0 {
                    self.send_keepalive(id, t, rng, out);
                    let p = self.peers.get_mut(&id).expect("listed");
                    p.timers.traversed(t.mono, p.cfg.persistent_keepalive);
                }
            }
        }
    }

    /// The earliest timer deadline of any peer.
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.peers.values().filter_map(|p| p.timers.next()).min()
    }
}
