//! The SA and policy tables charon installs, as the workers read them: one copy-on-write
//! snapshot (`ArcSwap`) per batch, rebuilt on charon's thread by every change (`commit`), so a
//! worker never takes a lock per packet. Also the control plane's views of them.

use super::IpsecEngine;
use crate::charon::protocol::{PolicyId, SaId};
use cvlan_proto::esp::{self, InboundSa, OutboundSa, SelectorRange};
use cvlan_proto::ip;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub(super) struct InboundEntry {
    pub sa: InboundSa,
    pub id: SaId,
}

pub(super) struct OutboundEntry {
    pub sa: Arc<OutboundSa>,
    pub id: SaId,
    /// Where ESP goes: the peer's NAT-T address (updated by `update_sa`).
    pub peer: SocketAddr,
    pub encap: bool,
    pub reqid: u32,
    /// Installation order, so a reqid's newest SA carries the traffic.
    pub installed: u64,
}

#[derive(Clone)]
pub(super) struct OutPolicy {
    pub src: SelectorRange,
    pub dst: SelectorRange,
    /// The reqid of the newest installation: its SAs carry the traffic.
    pub reqid: u32,
    /// reqids of every installation of this policy id, oldest first. charon installs a policy
    /// again for each CHILD_SA that uses it (a rekey installs the new one before deleting the
    /// old) and deletes it once per installation, as kernel-netlink counts them.
    pub installs: Vec<u32>,
    pub if_id: u32,
    /// Smaller is more specific and wins.
    pub rank: u128,
    pub id: PolicyId,
    /// Installed by a previous charon (see `Table::orphan_spis`).
    pub orphan: bool,
}

#[derive(Default, Clone)]
pub(super) struct Table {
    pub inbound: HashMap<u32, Arc<InboundEntry>>,
    pub outbound: HashMap<u32, Arc<OutboundEntry>>,
    /// Outbound SAs by reqid, newest last.
    pub by_reqid: HashMap<u32, Vec<Arc<OutboundEntry>>>,
    /// Most specific first.
    pub out_policies: Vec<Arc<OutPolicy>>,
    /// In/fwd policies (with their installation count) are kept only to answer charon
    /// consistently; inbound checks use the SA's own selectors.
    pub other_policies: Vec<(PolicyId, usize)>,
    /// SPIs a previous charon installed and a new one flushed: still in `inbound`/`outbound`,
    /// forwarding, until replaced or `ORPHAN_GRACE` after `orphaned_at` (see `flush_sas`).
    pub orphan_spis: HashSet<u32>,
    pub orphaned_at: Option<Duration>,
}

impl Table {
    /// The outbound policy that covers a packet (the most specific), among the policies of
    /// tenant `tag` (0: all; `tenants` maps a tunnel's if_id to its tenant).
    pub fn select_policy(
        &self,
        tenants: &HashMap<u32, u32>,
        pkt: &[u8],
        info: &ip::IpInfo,
        tag: u32,
    ) -> Option<&OutPolicy> {
        let port = esp::selectors::destination_port(pkt, info);
        self.out_policies
            .iter()
            .find(|p| {
                (tag == 0 || tenants.get(&p.if_id) == Some(&tag))
                    && p.src.matches(info.src, info.proto, None)
                    && p.dst.matches(info.dst, info.proto, port)
            })
            .map(|p| p.as_ref())
    }

    /// The SA that carries a policy's traffic: the newest outbound SA of its reqid.
    pub fn select_sa(&self, policy: &OutPolicy) -> Option<&OutboundEntry> {
        self.by_reqid
            .get(&policy.reqid)
            .and_then(|v| v.last())
            .map(|e| e.as_ref())
    }
}

/// A view of one installed SA, for the control plane (no key material).
#[derive(Debug, Clone)]
pub struct SaView {
    pub spi: u32,
    pub inbound: bool,
    pub if_id: u32,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub bytes: u64,
    pub packets: u64,
    pub idle_secs: Option<u64>,
    pub algorithm: String,
    pub esn: bool,
    pub encap: bool,
}

impl IpsecEngine {
    pub(super) fn commit<R>(&self, f: impl FnOnce(&mut Table) -> R) -> R {
        let mut t = self.edit.lock().unwrap_or_else(|e| e.into_inner());
        let r = f(&mut t);
        self.table.store(Arc::new(t.clone()));
        r
    }

    pub(super) fn snapshot(&self) -> arc_swap::Guard<Arc<Table>> {
        self.table.load()
    }

    /// Every installed SA with its counters.
    pub fn sas(&self) -> Vec<SaView> {
        let t = self.snapshot();
        let now = crate::clock::now();
        let algos = self.algos.lock().unwrap_or_else(|e| e.into_inner());
        let view = |spi: u32, inbound: bool, id: &SaId, c: esp::Counters, encap: bool| {
            let (algorithm, esn) = algos.get(&spi).cloned().unwrap_or_default();
            SaView {
                spi,
                inbound,
                if_id: id.if_id,
                src: id.src,
                dst: id.dst,
                bytes: c.bytes,
                packets: c.packets,
                idle_secs: c.last_use.map(|u| now.saturating_sub(u).as_secs()),
                algorithm,
                esn,
                encap,
            }
        };
        let mut v: Vec<SaView> = t
            .inbound
            .values()
            .map(|e| {
                view(
                    e.sa.spi(),
                    true,
                    &e.id,
                    e.sa.counters(),
                    e.sa.tunnel().udp.is_some(),
                )
            })
            .collect();
        v.extend(
            t.outbound
                .values()
                .map(|e| view(e.sa.spi(), false, &e.id, e.sa.counters(), e.encap)),
        );
        v.sort_by_key(|s| (s.if_id, !s.inbound, s.spi));
        v
    }

    /// Number of policies, every direction (for diagnostics and tests).
    pub fn policy_count(&self) -> usize {
        let t = self.snapshot();
        t.out_policies.len() + t.other_policies.len()
    }

    /// if_id of each outbound policy (tunnel identity as configured through VICI).
    pub fn policy_if_ids(&self) -> Vec<u32> {
        self.snapshot()
            .out_policies
            .iter()
            .map(|p| p.if_id)
            .collect()
    }
}
