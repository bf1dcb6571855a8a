//! The engine's side of active-passive HA (`crate::ha`): SAs and outbound policies out of the
//! tables (active) and into them (standby), their counters, the counter leases, the passive
//! standby and the takeover. The arithmetic of leases is `crate::ha::lease`, the same as for
//! WireGuard: the active may use sequence numbers only below `acked + lease`; taking over, the
//! standby starts every outbound SA at `stored + lease`.
//!
//! An import never duplicates nor resets: an SPI already installed (by charon's `ha` plugin on
//! the standby, through the plugin link) only has its counters moved forward, and charon
//! installing an SPI that was imported first adopts the imported SA with its counters
//! (`install::install_sa`).

use super::install::range;
use super::tables::OutPolicy;
use super::IpsecEngine;
use crate::charon::protocol::{AddSa, PolicyId};
use crate::ha::lease;
use cvlan_proto::esp::LifetimeEvent;
use cvlan_proto::esp::{InboundSa, OutboundSa};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Exhausted outbound SAs are reported to charon again at this interval: the report at a
/// takeover can reach a charon whose IKE_SAs are not active yet, which then does not rekey.
const LEASE_REPORT_AGAIN: Duration = Duration::from_secs(5);

/// The engine's HA state.
#[derive(Default)]
pub(super) struct HaState {
    /// A standby sends no ESP.
    passive: AtomicBool,
    /// When each exhausted outbound SA was last reported to charon (`poll_leases`).
    reported: Mutex<HashMap<u32, Duration>>,
}

/// One SA as the active exports it: what charon installed (keys, algorithms, selectors, if_id,
/// ESN, replay window, lifetimes; addresses as last updated) and its counters. `Debug` prints
/// no key (`SecretKey`), and the keys are zeroed on drop.
#[derive(Debug, Clone)]
pub struct EspSaRecord {
    pub sa: AddSa,
    /// Outbound: the last sequence number used (64 bits, ESN high half included); inbound: 0.
    pub seq: u64,
    /// Inbound: the highest authenticated sequence number (64 bits).
    pub recv_top: Option<u64>,
}

/// An outbound policy: the data plane needs its selectors, tunnel (if_id), reqid and rank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EspPolicyRecord {
    pub id: PolicyId,
    pub reqid: u32,
    pub rank: u128,
}

/// Counters of one SA, every sync interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EspCounter {
    pub spi: u32,
    /// Outbound: last sequence number used; inbound: 0.
    pub seq: u64,
    /// Inbound: highest authenticated sequence number.
    pub recv_top: Option<u64>,
}

/// What a standby stored of one SA: only forward.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EspStored {
    pub seq: u64,
    pub recv_top: Option<u64>,
}

impl EspStored {
    pub fn store(&mut self, c: &EspCounter) {
        self.seq = lease::store(self.seq, c.seq);
        self.recv_top = self.recv_top.max(c.recv_top);
    }
}

impl IpsecEngine {
    /// Standby: no ESP leaves (packets from the TUN are dropped as `ha_standby`); IKE stays
    /// charon's business.
    pub fn set_passive(&self, passive: bool) {
        self.ha.passive.store(passive, Relaxed);
    }

    pub fn is_passive(&self) -> bool {
        self.ha.passive.load(Relaxed)
    }

    /// The first export of an outbound SA gives it its lease, from where its counter is: the
    /// record the standby stores carries at least that counter, so the limit is at most what
    /// the standby stores plus the lease. Before that the SA sends freely: its keys are on no
    /// other node, so no number it uses can be used anywhere else. (WireGuard's keypairs start
    /// at `0 + lease` instead; for ESP every exhaustion costs a CHILD_SA rekey through charon,
    /// and an active node without a standby would rekey every SA every `lease` packets.)
    pub fn begin_lease(&self, spi: u32, lease: u64) {
        if let Some(e) = self.snapshot().outbound.get(&spi) {
            if e.sa.send_limit() == u64::MAX {
                e.sa.set_send_limit(lease::send_limit(e.sa.last_seq(), lease));
            }
        }
    }

    /// Reports exhausted outbound SAs to charon again (a soft expire: rekey), at most every
    /// `LEASE_REPORT_AGAIN`; called from the lifetime tick. Nothing on a passive standby.
    pub(super) fn poll_leases(&self, now: Duration) {
        if self.is_passive() {
            return;
        }
        let t = self.snapshot();
        let exhausted: Vec<_> = t
            .outbound
            .values()
            .filter(|e| e.sa.send_limit() != u64::MAX && e.sa.lease_exhausted())
            .collect();
        let mut reported = self.ha.reported.lock().unwrap_or_else(|e| e.into_inner());
        if exhausted.is_empty() && reported.is_empty() {
            return;
        }
        reported.retain(|spi, _| exhausted.iter().any(|e| e.sa.spi() == *spi));
        for e in exhausted {
            let spi = e.sa.spi();
            if reported
                .get(&spi)
                .is_none_or(|at| now.saturating_sub(*at) >= LEASE_REPORT_AGAIN)
            {
                reported.insert(spi, now);
                self.report(spi, e.id.dst, LifetimeEvent::SoftExpire);
            }
        }
    }

    /// Every SA's counters (active, each interval).
    pub fn esp_counters(&self) -> Vec<EspCounter> {
        let t = self.snapshot();
        let mut v: Vec<EspCounter> = t
            .outbound
            .values()
            .map(|e| EspCounter {
                spi: e.sa.spi(),
                seq: e.sa.last_seq(),
                recv_top: None,
            })
            .collect();
        v.extend(t.inbound.values().map(|e| EspCounter {
            spi: e.sa.spi(),
            seq: 0,
            recv_top: e.sa.highest_seq(),
        }));
        v
    }

    /// The full records of the given SPIs (new since the last interval), with their counters.
    pub fn export_sas(&self, spis: &[u32]) -> Vec<EspSaRecord> {
        let t = self.snapshot();
        let mut v = Vec::with_capacity(spis.len());
        for spi in spis {
            if let Some(e) = t.outbound.get(spi) {
                let mut sa = (*e.record).clone();
                // update_sa moves the peer (MOBIKE, NAT mapping): export where it is now.
                sa.id = e.id;
                sa.flags.encap = e.encap;
                v.push(EspSaRecord {
                    sa,
                    seq: e.sa.last_seq(),
                    recv_top: None,
                });
            }
            if let Some(e) = t.inbound.get(spi) {
                v.push(EspSaRecord {
                    sa: (*e.record).clone(),
                    seq: 0,
                    recv_top: e.sa.highest_seq(),
                });
            }
        }
        v
    }

    /// Installs an SA from the active, or only moves the counters of one already installed
    /// (charon's `ha` plugin got there first, or an earlier import). `Err` names what this
    /// data plane cannot install (an algorithm, a mode).
    pub fn import_sa(&self, r: &EspSaRecord) -> Result<(), String> {
        let spi = r.sa.id.spi;
        let inbound = r.sa.flags.inbound;
        let present = {
            let t = self.snapshot();
            if inbound {
                t.inbound.contains_key(&spi)
            } else {
                t.outbound.contains_key(&spi)
            }
        };
        if !present {
            self.install_sa(r.sa.clone(), true)
                .map_err(|st| format!("SA {spi:#010x}: cannot install ({st:?})"))?;
        }
        self.sync_esp_counter(&EspCounter {
            spi,
            seq: r.seq,
            recv_top: r.recv_top,
        });
        Ok(())
    }

    /// Moves an SA's counters forward (standby): the outbound sequence number, and the inbound
    /// window through the active's highest received number. `false` for an unknown SPI.
    pub fn sync_esp_counter(&self, c: &EspCounter) -> bool {
        let t = self.snapshot();
        let mut found = false;
        if let Some(e) = t.outbound.get(&c.spi) {
            e.sa.advance_seq(c.seq);
            found = true;
        }
        if let Some(e) = t.inbound.get(&c.spi) {
            if let Some(top) = c.recv_top {
                e.sa.mark_received_through(top);
            }
            found = true;
        }
        found
    }

    /// The standby stored `acked` for this SPI: an outbound SA may send up to it plus the
    /// lease. `false` for an unknown SPI.
    pub fn ack_esp(&self, spi: u32, acked: u64, lease: u64) -> bool {
        let t = self.snapshot();
        if let Some(e) = t.outbound.get(&spi) {
            e.sa.raise_send_limit(lease::send_limit(acked, lease));
            return true;
        }
        t.inbound.contains_key(&spi)
    }

    /// Outbound SAs at their lease limit (the standby stopped acknowledging).
    pub fn esp_exhausted(&self) -> Vec<u32> {
        self.snapshot()
            .outbound
            .values()
            .filter(|e| e.sa.send_limit() != u64::MAX && e.sa.lease_exhausted())
            .map(|e| e.sa.spi())
            .collect()
    }

    /// The active deleted an SA: the standby drops its import. An SA this node's charon
    /// installed is charon's to delete (its `ha` plugin does).
    pub fn remove_synced_sa(&self, spi: u32) {
        self.commit(|t| {
            if t.inbound.get(&spi).is_some_and(|e| e.synced) {
                t.inbound.remove(&spi);
            }
            if let Some(e) = t.outbound.get(&spi).filter(|e| e.synced).cloned() {
                t.outbound.remove(&spi);
                super::install::unlist(t, &e);
            }
        });
    }

    /// Every outbound policy (the ones that route).
    pub fn export_policies(&self) -> Vec<EspPolicyRecord> {
        self.snapshot()
            .out_policies_ranked()
            .iter()
            .map(|p| EspPolicyRecord {
                id: p.id.clone(),
                reqid: p.reqid,
                rank: p.rank,
            })
            .collect()
    }

    /// Installs an outbound policy from the active unless this node's charon installed it.
    pub fn import_policy(&self, r: &EspPolicyRecord) {
        self.commit(|t| {
            if t.out_policy(&r.id).is_some_and(|p| !p.synced) {
                return;
            }
            t.put_out_policy(OutPolicy {
                src: range(&r.id.src_ts),
                dst: range(&r.id.dst_ts),
                reqid: r.reqid,
                installs: vec![r.reqid],
                if_id: r.id.if_id,
                rank: r.rank,
                seq: self.install_seq.fetch_add(1, Relaxed),
                id: r.id.clone(),
                orphan: false,
                synced: true,
            });
        });
    }

    /// The active removed an outbound policy: the standby drops its import.
    pub fn remove_synced_policy(&self, id: &PolicyId) {
        self.commit(|t| {
            if t.out_policy(id).is_some_and(|p| p.synced) {
                t.remove_out_policy(id);
            }
        });
    }

    /// Takeover: synced outbound SAs continue past anything the old active may have used and
    /// inbound ones treat what it received as seen; outbound SAs this node never stored may
    /// not send (their first packet asks charon to rekey). Returns (continued, stopped).
    pub fn take_over_esp(&self, stored: &HashMap<u32, EspStored>, lease: u64) -> (u64, u64) {
        let t = self.snapshot();
        let (mut jumped, mut stopped) = (0, 0);
        for (spi, e) in t.outbound.iter() {
            match stored.get(spi) {
                Some(s) => {
                    let start = lease::takeover_counter(s.seq, lease);
                    e.sa.advance_seq(start);
                    e.sa.set_send_limit(lease::send_limit(start, lease));
                    jumped += 1;
                }
                None => {
                    e.sa.set_send_limit(0);
                    stopped += 1;
                }
            }
        }
        for (spi, e) in t.inbound.iter() {
            if let Some(top) = stored.get(spi).and_then(|s| s.recv_top) {
                e.sa.mark_received_through(top);
            }
        }
        (jumped, stopped)
    }

    /// The outbound SA of an SPI (diagnostics and tests).
    pub fn outbound_sa(&self, spi: u32) -> Option<Arc<OutboundSa>> {
        self.snapshot().outbound.get(&spi).map(|e| e.sa.clone())
    }

    /// The inbound SA of an SPI (diagnostics and tests).
    pub fn inbound_sa(&self, spi: u32) -> Option<Arc<InboundSa>> {
        self.snapshot().inbound.get(&spi).map(|e| e.sa.clone())
    }

    /// Whether an SPI was imported from the HA active (not installed by this node's charon).
    pub fn is_synced_sa(&self, spi: u32) -> Option<bool> {
        let t = self.snapshot();
        t.outbound
            .get(&spi)
            .map(|e| e.synced)
            .or_else(|| t.inbound.get(&spi).map(|e| e.synced))
    }
}
