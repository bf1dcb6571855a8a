//! The SA and policy tables charon installs, as the workers read them: one copy-on-write
//! snapshot (`ArcSwap`) per batch, published on charon's thread after every change (`commit`),
//! so a worker never takes a lock per packet. The maps are persistent (`imbl`): a snapshot
//! shares everything a change did not touch, so one install costs the same with 2000 tunnels
//! as with one. Also the control plane's views of them.

use super::policies::{Key, PolicyIndex, Probes};
use super::IpsecEngine;
use crate::charon::protocol::{AddSa, PolicyId, SaId};
use cvlan_proto::esp::{self, InboundSa, OutboundSa, SelectorRange};
use cvlan_proto::ip;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub(super) struct InboundEntry {
    pub sa: Arc<InboundSa>,
    pub id: SaId,
    /// What was installed, kept for the HA standby (keys zeroed on drop).
    pub record: Arc<AddSa>,
    /// Imported from the HA active rather than installed by this node's charon.
    pub synced: bool,
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
    /// What was installed, kept for the HA standby (keys zeroed on drop).
    pub record: Arc<AddSa>,
    /// Imported from the HA active rather than installed by this node's charon.
    pub synced: bool,
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
    /// Installation order: of two policies of the same rank, the earlier wins.
    pub seq: u64,
    pub id: PolicyId,
    /// Installed by a previous charon (see `Table::orphan_spis`).
    pub orphan: bool,
    /// Imported from the HA active: this node's charon installing it replaces the import.
    pub synced: bool,
}

#[derive(Default, Clone)]
pub(super) struct Table {
    pub inbound: imbl::HashMap<u32, Arc<InboundEntry>>,
    pub outbound: imbl::HashMap<u32, Arc<OutboundEntry>>,
    /// Outbound SAs by reqid, oldest installation first.
    pub by_reqid: imbl::HashMap<u32, Arc<Vec<Arc<OutboundEntry>>>>,
    /// Outbound policies by id; `policy_index` files the same for lookup.
    out_policies: imbl::HashMap<PolicyId, Arc<OutPolicy>>,
    policy_index: PolicyIndex,
    /// Tenant tag of each tunnel (if_id) the index is filed by (see `IpsecEngine::set_tenants`).
    tenants: Arc<HashMap<u32, u32>>,
    /// In/fwd policies (with their installation count) are kept only to answer charon
    /// consistently; inbound checks use the SA's own selectors.
    pub other_policies: imbl::HashMap<PolicyId, usize>,
    /// SPIs a previous charon installed and a new one flushed: still in `inbound`/`outbound`,
    /// forwarding, until replaced or `ORPHAN_GRACE` after `orphaned_at` (see `flush_sas`).
    pub orphan_spis: imbl::HashSet<u32>,
    pub orphaned_at: Option<Duration>,
}

impl Table {
    /// The outbound policy that covers a packet (the most specific), among the policies of
    /// tenant `tag` (0: all).
    pub fn select_policy(&self, pkt: &[u8], info: &ip::IpInfo, tag: u32) -> Option<&OutPolicy> {
        self.select_policy_probed(pkt, info, tag, &mut Probes::default())
    }

    pub fn select_policy_probed(
        &self,
        pkt: &[u8],
        info: &ip::IpInfo,
        tag: u32,
        probes: &mut Probes,
    ) -> Option<&OutPolicy> {
        let key = Key {
            src: info.src,
            dst: info.dst,
            proto: info.proto,
            port: esp::selectors::destination_port(pkt, info),
        };
        self.policy_index
            .select(tag, &key, probes)
            .map(|p| p.as_ref())
    }

    /// The SA that carries a policy's traffic: the newest outbound SA of its reqid.
    pub fn sa_of(&self, reqid: u32) -> Option<&OutboundEntry> {
        self.by_reqid
            .get(&reqid)
            .and_then(|v| v.last())
            .map(|e| e.as_ref())
    }

    pub fn out_policy(&self, id: &PolicyId) -> Option<&Arc<OutPolicy>> {
        self.out_policies.get(id)
    }

    /// Installs `p`, replacing the policy of the same id.
    pub fn put_out_policy(&mut self, p: OutPolicy) {
        let tenant = self.tenants.get(&p.if_id).copied();
        if let Some(old) = self.out_policies.get(&p.id) {
            self.policy_index.remove(old, tenant);
        }
        let p = Arc::new(p);
        self.policy_index.insert(&p, tenant);
        self.out_policies.insert(p.id.clone(), p);
    }

    pub fn remove_out_policy(&mut self, id: &PolicyId) -> Option<Arc<OutPolicy>> {
        let old = self.out_policies.remove(id)?;
        self.policy_index
            .remove(&old, self.tenants.get(&old.if_id).copied());
        Some(old)
    }

    /// Rewrites or drops every outbound policy (flushes; the index is rebuilt once).
    pub fn retain_out_policies(&mut self, mut f: impl FnMut(&OutPolicy) -> Option<OutPolicy>) {
        let mut kept = imbl::HashMap::new();
        for p in self.out_policies.values() {
            if let Some(n) = f(p) {
                kept.insert(n.id.clone(), Arc::new(n));
            }
        }
        self.out_policies = kept;
        self.reindex();
    }

    /// Files the policies per tenant anew (the tenants changed).
    pub fn set_tenants(&mut self, tenants: Arc<HashMap<u32, u32>>) {
        self.tenants = tenants;
        self.reindex();
    }

    fn reindex(&mut self) {
        self.policy_index = PolicyIndex::build(self.out_policies.values(), &self.tenants);
    }

    /// Outbound policies, most specific first.
    pub fn out_policies_ranked(&self) -> Vec<Arc<OutPolicy>> {
        let mut v: Vec<_> = self.out_policies.values().cloned().collect();
        v.sort_by_key(|p| (p.rank, p.seq));
        v
    }

    pub fn out_policy_count(&self) -> usize {
        self.out_policies.len()
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
        t.out_policy_count() + t.other_policies.len()
    }

    /// if_id of each outbound policy (tunnel identity as configured through VICI).
    pub fn policy_if_ids(&self) -> Vec<u32> {
        self.snapshot()
            .out_policies_ranked()
            .iter()
            .map(|p| p.if_id)
            .collect()
    }
}
