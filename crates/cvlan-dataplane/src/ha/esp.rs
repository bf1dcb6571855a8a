//! ESP SAs and outbound policies over the sync channel, one connection's worth of state.
//!
//! Active, every interval: outbound policies new or changed since the last interval, SAs new
//! since then (keys, algorithms, selectors, if_id, ESN, replay window, addresses, with their
//! counters; again if the standby has not acknowledged one for a while), every SA's counters,
//! and removals. Standby: imports (idempotent, `IpsecEngine::import_sa`), stores counters
//! only forward and acknowledges what it stored; acks raise the active's lease limits.

use super::frame::{self, FrameError, Message};
use super::{HaEvent, Role, Shared};
use crate::charon::protocol::PolicyId;
use crate::ipsec::{EspStored, IpsecEngine};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one connection sent and had acknowledged (active).
#[derive(Default)]
pub(super) struct EspSync {
    /// SPIs the peer has been sent, and when.
    sent: HashMap<u32, Instant>,
    /// SPIs the peer acknowledged.
    acked: HashSet<u32>,
    /// Outbound SAs whose exhausted lease was already reported.
    exhausted: HashSet<u32>,
    /// Outbound policies sent, with the (reqid, rank) they were sent with.
    policies: HashMap<PolicyId, (u32, u128)>,
}

type Send<'a> = dyn FnMut(&Message) -> Result<(), FrameError> + 'a;

impl EspSync {
    /// A standby forgets what it had sent as active.
    pub(super) fn reset(&mut self) {
        *self = EspSync::default();
    }

    /// The active's interval output. `resend`: after how long an unacknowledged SA goes again.
    pub(super) fn tick(
        &mut self,
        s: &Shared,
        resend: Duration,
        send: &mut Send<'_>,
    ) -> Result<(), FrameError> {
        let mut live = HashSet::new();
        let mut live_policies = HashSet::new();
        for e in s.ipsec_engines() {
            for p in e.export_policies() {
                let v = (p.reqid, p.rank);
                if self.policies.get(&p.id) != Some(&v) {
                    send(&Message::EspPolicy(Box::new(p.clone())))?;
                    self.policies.insert(p.id.clone(), v);
                }
                live_policies.insert(p.id);
            }
            let counters = e.esp_counters();
            let now = Instant::now();
            let mut new: Vec<u32> = counters
                .iter()
                .map(|c| c.spi)
                .filter(|spi| match self.sent.get(spi) {
                    None => true,
                    Some(at) => !self.acked.contains(spi) && now.duration_since(*at) >= resend,
                })
                .collect();
            new.sort_unstable();
            new.dedup();
            for spi in &new {
                e.begin_lease(*spi, s.cfg.lease);
            }
            for r in e.export_sas(&new) {
                send(&Message::EspSa(Box::new(r)))?;
            }
            for spi in new {
                self.sent.insert(spi, now);
            }
            for chunk in counters.chunks(frame::COUNTERS_PER_FRAME) {
                send(&Message::EspCounters(chunk.to_vec()))?;
            }
            live.extend(counters.iter().map(|c| c.spi));
            for spi in e.esp_exhausted() {
                if self.exhausted.insert(spi) {
                    s.lease_exhausted.fetch_add(1, Relaxed);
                    s.emit(HaEvent::EspLeaseExhausted { spi });
                }
            }
        }
        // An SA whose limit moved on (acks came back) may be reported again later.
        let exhausted_now: HashSet<u32> = s
            .ipsec_engines()
            .iter()
            .flat_map(|e| e.esp_exhausted())
            .collect();
        self.exhausted.retain(|spi| exhausted_now.contains(spi));
        let gone: Vec<u32> = self
            .sent
            .keys()
            .filter(|spi| !live.contains(*spi))
            .copied()
            .collect();
        for spi in gone {
            send(&Message::EspRemove { spi })?;
            self.sent.remove(&spi);
            self.acked.remove(&spi);
        }
        let gone: Vec<PolicyId> = self
            .policies
            .keys()
            .filter(|id| !live_policies.contains(*id))
            .cloned()
            .collect();
        for id in gone {
            send(&Message::EspPolicyRemove(Box::new(id.clone())))?;
            self.policies.remove(&id);
        }
        s.synced_esp.store(self.acked.len() as u64, Relaxed);
        Ok(())
    }

    /// Applies one ESP message from the peer. State flows from the active to the standby
    /// only; an active node (split brain) keeps its own.
    pub(super) fn apply(
        &mut self,
        s: &Shared,
        m: Message,
        send: &mut Send<'_>,
    ) -> Result<(), FrameError> {
        let role = s.role();
        let engines = s.ipsec_engines();
        match m {
            Message::EspSa(r) if role == Role::Standby => {
                // One charon, one IPsec engine; the newest attached is the live one.
                let Some(e) = engines.last() else {
                    return Ok(());
                };
                // An SA this data plane cannot install is not acknowledged: the active sends it
                // again later, and counts it as not synced meanwhile.
                if e.import_sa(&r).is_ok() {
                    let st = store(
                        s,
                        r.sa.id.spi,
                        &crate::ipsec::EspCounter {
                            spi: r.sa.id.spi,
                            seq: r.seq,
                            recv_top: r.recv_top,
                        },
                    );
                    send(&Message::EspAck(vec![(r.sa.id.spi, st)]))?;
                }
            }
            Message::EspRemove { spi } if role == Role::Standby => {
                for e in &engines {
                    e.remove_synced_sa(spi);
                }
                let mut stored = s.stored_esp.lock().unwrap_or_else(|e| e.into_inner());
                stored.remove(&spi);
                s.synced_esp.store(stored.len() as u64, Relaxed);
            }
            Message::EspCounters(list) if role == Role::Standby => {
                let mut acks = Vec::with_capacity(list.len());
                for c in &list {
                    if engines.iter().any(|e| e.sync_esp_counter(c)) {
                        acks.push((c.spi, store(s, c.spi, c)));
                    }
                }
                send(&Message::EspAck(acks))?;
            }
            Message::EspAck(list) if role == Role::Active => {
                for (spi, acked) in list {
                    if engines.iter().any(|e| e.ack_esp(spi, acked, s.cfg.lease)) {
                        self.acked.insert(spi);
                    }
                }
                s.synced_esp.store(self.acked.len() as u64, Relaxed);
            }
            Message::EspPolicy(p) if role == Role::Standby => {
                if let Some(e) = engines.last() {
                    e.import_policy(&p);
                }
            }
            Message::EspPolicyRemove(id) if role == Role::Standby => {
                for e in &engines {
                    e.remove_synced_policy(&id);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Stores an SA's counters on the standby (only forward); returns the stored outbound
/// sequence number, which is what the standby acknowledges.
fn store(s: &Shared, spi: u32, c: &crate::ipsec::EspCounter) -> u64 {
    let mut stored = s.stored_esp.lock().unwrap_or_else(|e| e.into_inner());
    let e = stored.entry(spi).or_default();
    e.store(c);
    let v = e.seq;
    s.synced_esp.store(stored.len() as u64, Relaxed);
    v
}

/// Takeover of every attached engine; returns (continued, stopped) outbound SAs.
pub(super) fn take_over(
    engines: &[Arc<IpsecEngine>],
    stored: &HashMap<u32, EspStored>,
    lease: u64,
) -> (u64, u64) {
    let (mut jumped, mut stopped) = (0, 0);
    for e in engines {
        let (j, d) = e.take_over_esp(stored, lease);
        jumped += j;
        stopped += d;
    }
    (jumped, stopped)
}

/// Passive as a standby. (Leases begin when the active first exports an SA.)
pub(super) fn apply_role(e: &IpsecEngine, role: Role) {
    e.set_passive(role == Role::Standby);
}
