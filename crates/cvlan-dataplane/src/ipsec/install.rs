//! What charon asks of the kernel, through the plugin link (`kernel_ipsec_t`): SPIs, SAs and
//! policies installed, updated, queried, deleted and flushed. Each change edits the persistent
//! tables and publishes them (`commit`); the workers see it at their next batch.
//!
//! A new charon (or a resync) starts by flushing. SAs and policies it never installed are not
//! dropped at once: they keep forwarding as orphans until the new charon has negotiated their
//! replacements, at most `ORPHAN_GRACE`, so a charon restart costs no traffic.

use super::tables::{InboundEntry, OutPolicy, OutboundEntry, Table};
use super::{IpsecEngine, MIN_SPI, PROTO_ESP};
use crate::charon::protocol::{
    self as proto, AddSa, Mode, Policy, PolicyDir, SaId, SaStats, Status,
    TrafficSelector as WireTs, UpdateSa,
};
use crate::clock;
use cvlan_proto::esp::{
    self, EncryptionAlgorithm, InboundSa, IntegrityAlgorithm, LifetimeConfig, Limits, OutboundSa,
    SaParams, SelectorRange, TrafficSelector, TunnelEndpoints, UdpEncap,
};
use rand_core::{OsRng, RngCore};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

/// A selector as charon sends it.
pub(super) fn range(ts: &WireTs) -> SelectorRange {
    SelectorRange {
        from: ts.from,
        to: ts.to,
        protocol: ts.protocol,
        from_port: ts.from_port,
        to_port: ts.to_port,
    }
}

fn selectors(list: &[WireTs]) -> Vec<TrafficSelector> {
    list.iter().flat_map(|ts| range(ts).selectors()).collect()
}

impl IpsecEngine {
    pub(super) fn get_spi(&self) -> u32 {
        let t = self.snapshot();
        let mut reserved = self.reserved_spis.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let spi = OsRng.next_u32();
            if spi >= MIN_SPI && !t.inbound.contains_key(&spi) && reserved.insert(spi) {
                return spi;
            }
        }
    }

    pub(super) fn add_sa(&self, sa: AddSa) -> Result<(), Status> {
        self.install_sa(sa, false)
    }

    /// Installs an SA from charon or, `synced`, one imported from the HA active.
    pub(super) fn install_sa(&self, sa: AddSa, synced: bool) -> Result<(), Status> {
        if sa.mode != Mode::Tunnel || sa.id.proto != PROTO_ESP || sa.ipcomp != 0 {
            return Err(Status::NotSupported);
        }
        let enc = EncryptionAlgorithm::from_ikev2(sa.enc_alg, sa.enc_key.expose().len())
            .ok_or(Status::NotSupported)?;
        let integ = if enc.is_aead() {
            None
        } else {
            let a = IntegrityAlgorithm::from_ikev2(sa.int_alg).ok_or(Status::NotSupported)?;
            Some((a, sa.int_key.expose()))
        };
        let inbound = sa.flags.inbound;
        let (local, remote) = if inbound {
            (sa.id.dst, sa.id.src)
        } else {
            (sa.id.src, sa.id.dst)
        };
        let tunnel = TunnelEndpoints {
            local: local.ip(),
            remote: remote.ip(),
            udp: sa.flags.encap.then_some(UdpEncap {
                local_port: local.port(),
                remote_port: remote.port(),
            }),
        };
        let dir = if inbound {
            esp::Direction::Inbound
        } else {
            esp::Direction::Outbound
        };
        let mut params = SaParams::new(sa.id.spi, dir, enc, sa.enc_key.expose(), integ, tunnel);
        params.esn = sa.flags.esn;
        if sa.replay_window > 0 {
            params.replay_window = sa.replay_window.max(esp::sa::DEFAULT_REPLAY_WINDOW);
        }
        params.lifetime = LifetimeConfig {
            soft: limits(&sa.lifetime, true),
            hard: limits(&sa.lifetime, false),
        };
        // charon passes selectors as the packets of this SA see them: sources in src_ts,
        // destinations in dst_ts (so for an inbound SA src_ts is the peer's side).
        let (local_ts, remote_ts) = if inbound {
            (selectors(&sa.dst_ts), selectors(&sa.src_ts))
        } else {
            (selectors(&sa.src_ts), selectors(&sa.dst_ts))
        };
        params.local_ts = local_ts;
        params.remote_ts = remote_ts;
        let now = clock::now();
        let name = format!(
            "{enc:?}{}",
            integ.map(|(a, _)| format!("+{a:?}")).unwrap_or_default()
        );
        self.algos
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(sa.id.spi, (name, sa.flags.esn));
        let id = sa.id;
        let reqid = sa.reqid;
        let encap = sa.flags.encap;
        let record = Arc::new(sa);
        if inbound {
            self.reserved_spis
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id.spi);
            // An SA the HA active synced before this node's charon installed it (charon's ha
            // plugin on the standby) keeps its replay window: the installation adopts it.
            let t = self.snapshot();
            let esa = match t
                .inbound
                .get(&id.spi)
                .filter(|e| !synced && e.synced && same_keys(&e.record, &record))
            {
                Some(e) => e.sa.clone(),
                None => Arc::new(InboundSa::new(&params, now).map_err(|_| Status::Invalid)?),
            };
            let entry = Arc::new(InboundEntry {
                sa: esa,
                id,
                record,
                synced,
            });
            self.commit(|t| {
                // An import never replaces what is there (charon may have installed it since
                // the caller looked).
                if synced && t.inbound.contains_key(&id.spi) {
                    return;
                }
                t.orphan_spis.remove(&id.spi);
                t.inbound.insert(id.spi, entry);
            });
        } else {
            // Likewise the outbound sequence number and lease of a synced SA.
            let t = self.snapshot();
            let esa = match t
                .outbound
                .get(&id.spi)
                .filter(|e| !synced && e.synced && same_keys(&e.record, &record))
            {
                Some(e) => e.sa.clone(),
                // No lease yet: the HA channel gives it one when it first exports the SA.
                None => Arc::new(OutboundSa::new(&params, now).map_err(|_| Status::Invalid)?),
            };
            let entry = Arc::new(OutboundEntry {
                sa: esa,
                id,
                peer: id.dst,
                encap,
                reqid,
                installed: self.install_seq.fetch_add(1, Relaxed),
                record,
                synced,
            });
            self.commit(|t| {
                if synced && t.outbound.contains_key(&id.spi) {
                    return;
                }
                // The SPI's earlier entry leaves its reqid's list: an orphan, a synced import,
                // or charon installing the same SPI again.
                let replaced =
                    t.orphan_spis.remove(&id.spi).is_some() || t.outbound.contains_key(&id.spi);
                if replaced {
                    if let Some(old) = t.outbound.get(&id.spi).cloned() {
                        unlist(t, &old);
                    }
                }
                t.outbound.insert(id.spi, entry.clone());
                let list = Arc::make_mut(t.by_reqid.entry(reqid).or_default());
                list.push(entry);
                list.sort_by_key(|e| e.installed);
            });
        }
        Ok(())
    }

    pub(super) fn update_sa(&self, u: &UpdateSa) -> Result<(), Status> {
        self.commit(|t| {
            let Some(old) = t.outbound.get(&u.id.spi).cloned() else {
                // Inbound SAs are found by SPI; their addresses do not matter to the data plane.
                return if t.inbound.contains_key(&u.id.spi) {
                    Ok(())
                } else {
                    Err(Status::NotFound)
                };
            };
            let new = Arc::new(OutboundEntry {
                sa: old.sa.clone(),
                id: SaId {
                    src: u.new_src,
                    dst: u.new_dst,
                    ..old.id
                },
                peer: u.new_dst,
                encap: u.new_encap,
                reqid: old.reqid,
                installed: old.installed,
                record: old.record.clone(),
                synced: old.synced,
            });
            t.outbound.insert(u.id.spi, new.clone());
            if let Some(list) = t.by_reqid.get_mut(&old.reqid) {
                for e in Arc::make_mut(list).iter_mut() {
                    if e.sa.spi() == u.id.spi {
                        *e = new.clone();
                    }
                }
            }
            Ok(())
        })
    }

    pub(super) fn query_sa(&self, id: &SaId) -> Result<SaStats, Status> {
        let t = self.snapshot();
        let c = if let Some(e) = t.inbound.get(&id.spi) {
            e.sa.counters()
        } else if let Some(e) = t.outbound.get(&id.spi) {
            e.sa.counters()
        } else {
            return Err(Status::NotFound);
        };
        let now = clock::now();
        Ok(SaStats {
            bytes: c.bytes,
            packets: c.packets,
            idle_secs: c
                .last_use
                .map(|u| u32::try_from(now.saturating_sub(u).as_secs()).unwrap_or(u32::MAX)),
        })
    }

    pub(super) fn del_sa(&self, id: &SaId) -> Result<(), Status> {
        self.algos
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id.spi);
        self.reserved_spis
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id.spi);
        self.commit(|t| {
            t.orphan_spis.remove(&id.spi);
            let mut found = t.inbound.remove(&id.spi).is_some();
            if let Some(old) = t.outbound.remove(&id.spi) {
                unlist(t, &old);
                found = true;
            }
            if found {
                Ok(())
            } else {
                Err(Status::NotFound)
            }
        })
    }

    pub(super) fn add_policy(&self, p: Policy) -> Result<(), Status> {
        self.commit(|t| {
            if p.id.dir != PolicyDir::Out {
                *t.other_policies.entry(p.id.clone()).or_default() += 1;
                return Ok(());
            }
            // A previous charon's installations do not count for the new one, nor does an
            // import from the HA active.
            let mut installs = t
                .out_policy(&p.id)
                .filter(|x| !x.orphan && !x.synced)
                .map(|x| x.installs.clone())
                .unwrap_or_default();
            installs.push(p.sa.reqid);
            let (src, dst) = (range(&p.id.src_ts), range(&p.id.dst_ts));
            let rank = src.size().saturating_add(dst.size());
            // A policy installed again ranks after its equals, as if appended anew.
            let seq = self.install_seq.fetch_add(1, Relaxed);
            t.put_out_policy(OutPolicy {
                src,
                dst,
                reqid: p.sa.reqid,
                installs,
                if_id: p.id.if_id,
                rank: if p.manual_prio != 0 {
                    u128::from(p.manual_prio)
                } else {
                    rank
                },
                seq,
                id: p.id.clone(),
                orphan: false,
                synced: false,
            });
            Ok(())
        })
    }

    /// Removes one installation; the policy stays while others use it.
    pub(super) fn del_policy(&self, p: &Policy) -> Result<(), Status> {
        self.commit(|t| {
            if p.id.dir != PolicyDir::Out {
                let n = t.other_policies.get_mut(&p.id).ok_or(Status::NotFound)?;
                *n -= 1;
                if *n == 0 {
                    t.other_policies.remove(&p.id);
                }
                return Ok(());
            }
            let old = t.out_policy(&p.id).ok_or(Status::NotFound)?.clone();
            let mut installs = old.installs.clone();
            // The installation of this CHILD_SA's reqid; the newest if none matches.
            let k = installs
                .iter()
                .rposition(|r| *r == p.sa.reqid)
                .unwrap_or(installs.len() - 1);
            installs.remove(k);
            match installs.last() {
                None => {
                    t.remove_out_policy(&p.id);
                }
                Some(&reqid) => t.put_out_policy(OutPolicy {
                    reqid,
                    installs,
                    ..(*old).clone()
                }),
            }
            Ok(())
        })
    }

    /// Every SA becomes an orphan (see the module doc); SAs synced from the HA active are not
    /// this charon's, and stay.
    pub(super) fn flush_sas(&self) -> Result<(), Status> {
        let now = clock::now();
        self.commit(|t| {
            let own: Vec<u32> = t
                .inbound
                .iter()
                .filter(|(_, e)| !e.synced)
                .map(|(s, _)| *s)
                .chain(
                    t.outbound
                        .iter()
                        .filter(|(_, e)| !e.synced)
                        .map(|(s, _)| *s),
                )
                .collect();
            t.orphan_spis.extend(own);
            if !t.orphan_spis.is_empty() {
                t.orphaned_at = Some(now);
            }
        });
        self.reserved_spis
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        Ok(())
    }

    /// Outbound policies stay as orphans with their SAs; a policy the new charon installs again
    /// replaces its orphan. Policies synced from the HA active stay as they are.
    pub(super) fn flush_policies(&self) -> Result<(), Status> {
        self.commit(|t| {
            t.retain_out_policies(|p| {
                Some(OutPolicy {
                    orphan: !p.synced,
                    ..p.clone()
                })
            });
            t.other_policies.clear();
        });
        Ok(())
    }

    /// Removes what a previous charon installed and the current one did not replace.
    pub(super) fn drop_orphans(&self) {
        let mut removed: Vec<(u32, u32)> = Vec::new();
        self.commit(|t| {
            let spis = std::mem::take(&mut t.orphan_spis);
            for spi in &spis {
                if let Some(e) = t.inbound.remove(spi) {
                    removed.push((e.id.if_id, *spi));
                }
                if let Some(e) = t.outbound.remove(spi) {
                    unlist(t, &e);
                    removed.push((e.id.if_id, *spi));
                }
            }
            t.retain_out_policies(|p| (!p.orphan).then(|| p.clone()));
            t.orphaned_at = None;
        });
        super::orphans::report_removed(self.events.get(), removed, super::ORPHAN_GRACE);
    }
}

/// Whether two installations carry the same keys and algorithms (charon's ha plugin installing
/// an SA the HA active already synced, rather than an SPI that happens to collide).
fn same_keys(a: &AddSa, b: &AddSa) -> bool {
    a.enc_alg == b.enc_alg
        && a.int_alg == b.int_alg
        && a.enc_key == b.enc_key
        && a.int_key == b.int_key
        && a.flags.esn == b.flags.esn
}

/// Takes an outbound SA out of its reqid's list.
pub(super) fn unlist(t: &mut Table, e: &OutboundEntry) {
    let spi = e.sa.spi();
    if let Some(list) = t.by_reqid.get_mut(&e.reqid) {
        Arc::make_mut(list).retain(|x| x.sa.spi() != spi);
        if list.is_empty() {
            t.by_reqid.remove(&e.reqid);
        }
    }
}

fn limits(l: &proto::Lifetime, soft: bool) -> Limits {
    let pick = |x: &proto::Limits| {
        let v = if soft { x.rekey } else { x.life };
        (v != 0).then_some(v)
    };
    Limits {
        bytes: pick(&l.bytes),
        packets: pick(&l.packets),
        time: pick(&l.time).map(Duration::from_secs),
    }
}
