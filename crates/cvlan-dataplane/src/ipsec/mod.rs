//! IPsec on the workers: the SA and policy tables charon installs through the `cvlan` plugin,
//! ESP sealing/opening with `cvlan_proto::esp`, and the IKE relay (UDP 500/4500 belong to the
//! data plane; IKE datagrams go to charon over the plugin link and back).
//!
//! - `pipeline`: the device's `Transport`, its outbound and inbound stages (start here).
//! - `tables`:   the SA and policy tables the workers read, policy and SA selection, views.
//! - `policies`: the outbound policy index (per tenant, by destination prefix).
//! - `install`:  what charon installs, updates, deletes and flushes (SPIs, SAs, policies,
//!   orphans of a previous charon).
//! - `lifetime`: time limits and the expire messages to charon.
//! - `ike`:      the IKE relay between the device's sockets and charon (through `ike_gate`).
//! - `ike_gate`: what an IKE datagram must pass before it is queued for charon.
//! - `orphans`:  reporting the SAs of a previous charon the engine removed after their grace.
//! - `backend`:  the plugin link's entry points (`SaBackend`).
//! - `counters`: the engine's counters (drops by codes of the data plane's one table).
//! - `sync`:     SAs and outbound policies out of and into the tables for the HA sync channel
//!   (`crate::ha`), counter leases, the passive standby, takeover.
//!
//! Selector math (ranges, prefixes, ports) lives with the protocol, in
//! `cvlan_proto::esp::selectors`.

mod backend;
mod counters;
mod ike;
mod ike_gate;
mod install;
mod lifetime;
mod orphans;
mod pipeline;
mod policies;
#[cfg(test)]
mod policies_tests;
mod sync;
mod tables;

pub use backend::IpsecBackend;
pub use counters::IpsecCounters;
pub use pipeline::IpsecTransport;
pub use sync::{EspCounter, EspPolicyRecord, EspSaRecord, EspStored};
pub use tables::SaView;

use crate::charon::server::CharonHandle;
use crate::transport::Senders;
use arc_swap::ArcSwap;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tables::Table;

/// Socket indices of an IPsec device: NAT-T first (it carries ESP), IKE second, and the raw
/// ESP socket third where the device has one (`DeviceConfig::raw_esp`).
pub const SOCK_NATT: usize = 0;
pub const SOCK_IKE: usize = 1;
pub const SOCK_RAW: usize = 2;
/// IANA protocol number of ESP (RFC 4303).
const PROTO_ESP: u8 = 50;
/// RFC 4303 §2.1: SPIs 1..=255 are reserved by IANA.
const MIN_SPI: u32 = 256;
/// How long SAs and policies of a previous charon keep forwarding after a new one flushed them
/// (tuning): long enough for the new charon to negotiate replacements, short enough that a
/// tunnel the new configuration dropped does not linger.
const ORPHAN_GRACE: Duration = Duration::from_secs(60);

/// The IPsec engine: SA tables, ESP, IKE relay. Shared by the workers and charon's link.
pub struct IpsecEngine {
    local: IpAddr,
    table: ArcSwap<Table>,
    /// The table charon's calls edit; each `commit` publishes a copy to `table`.
    edit: Mutex<Table>,
    reserved_spis: Mutex<HashSet<u32>>,
    install_seq: AtomicU64,
    charon: OnceLock<CharonHandle>,
    senders: OnceLock<Senders>,
    algos: Mutex<HashMap<u32, (String, bool)>>,
    pub counters: IpsecCounters,
    /// Tenant tag of each tunnel (if_id) when the device serves several tenants; empty: one.
    tenants: ArcSwap<HashMap<u32, u32>>,
    ike_gate: ike_gate::IkeGate,
    events: OnceLock<crate::EventSink>,
    /// HA: passive standby, counter lease (`sync`).
    ha: sync::HaState,
}

impl IpsecEngine {
    /// `local` is the address the device's sockets are bound to: IKE datagrams are reported
    /// to charon as sent to it.
    pub fn new(local: IpAddr) -> Arc<IpsecEngine> {
        Arc::new(IpsecEngine {
            local,
            table: ArcSwap::from_pointee(Table::default()),
            edit: Mutex::new(Table::default()),
            reserved_spis: Mutex::new(HashSet::new()),
            install_seq: AtomicU64::new(0),
            charon: OnceLock::new(),
            senders: OnceLock::new(),
            algos: Mutex::new(HashMap::new()),
            counters: IpsecCounters::new(),
            tenants: ArcSwap::from_pointee(HashMap::new()),
            ike_gate: Default::default(),
            events: OnceLock::new(),
            ha: Default::default(),
        })
    }

    /// Where the engine reports what it does on its own (set once).
    pub fn set_events(&self, sink: crate::EventSink) {
        let _ = self.events.set(sink);
    }

    /// Connects the engine to charon's link (set once, after the link is bound).
    pub fn set_charon(&self, handle: CharonHandle) {
        let _ = self.charon.set(handle);
    }

    /// Sets the tenant tag of each tunnel (if_id → tag). Tagged packets then match only their
    /// tenant's policies, and packets from a tunnel carry its tenant's tag.
    pub fn set_tenants(&self, tenants: HashMap<u32, u32>) {
        let tenants = Arc::new(tenants);
        self.commit(|t| t.set_tenants(tenants.clone()));
        self.tenants.store(tenants);
    }

    /// Whether the device has a raw ESP socket (known once the workers' senders are attached).
    pub fn raw_esp(&self) -> bool {
        self.senders.get().is_some_and(|s| s.len() > SOCK_RAW)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::charon::protocol::{
        self as proto, Mode, Policy, PolicyDir, PolicyId, Status, TrafficSelector as WireTs,
    };
    use crate::charon::server::SaBackend;

    fn policy(dir: PolicyDir, reqid: u32, spi: u32) -> Policy {
        let ts = |net: &str| WireTs {
            protocol: 0,
            from_port: 0,
            to_port: 65535,
            from: format!("{net}.0").parse().unwrap(),
            to: format!("{net}.255").parse().unwrap(),
        };
        Policy {
            id: PolicyId {
                dir,
                src_ts: ts("10.1.0"),
                dst_ts: ts("10.2.0"),
                mark: proto::Mark { value: 0, mask: 0 },
                if_id: 7,
                interface: None,
            },
            kind: proto::PolicyType::Ipsec,
            prio: proto::PolicyPriority::Default,
            manual_prio: 0,
            src: "192.0.2.1:4500".parse().unwrap(),
            dst: "192.0.2.2:4500".parse().unwrap(),
            sa: proto::SaCfg {
                mode: Mode::Tunnel,
                reqid,
                esp_spi: Some(spi),
                ah_spi: None,
                ipcomp_transform: 0,
                ipcomp_cpi: 0,
            },
        }
    }

    /// A CHILD_SA rekey installs the policy for the new SA, then deletes it for the old one: the
    /// policy must survive until its last user is gone.
    #[test]
    fn policies_are_counted_per_installation() {
        let e = IpsecEngine::new("192.0.2.1".parse().unwrap());
        for dir in [PolicyDir::Out, PolicyDir::In, PolicyDir::Fwd] {
            e.add_policy(policy(dir, 1, 0xc0ffee01)).unwrap();
        }
        assert_eq!(e.policy_count(), 3);
        // the rekey: same policy ids, new SA
        for dir in [PolicyDir::Out, PolicyDir::In, PolicyDir::Fwd] {
            e.add_policy(policy(dir, 1, 0xc0ffee02)).unwrap();
        }
        assert_eq!(e.policy_count(), 3, "one entry per policy id");
        for dir in [PolicyDir::Out, PolicyDir::In, PolicyDir::Fwd] {
            e.del_policy(&policy(dir, 1, 0xc0ffee01)).unwrap();
        }
        assert_eq!(e.policy_count(), 3, "still used by the new CHILD_SA");
        assert_eq!(e.policy_if_ids(), [7]);
        for dir in [PolicyDir::Out, PolicyDir::In, PolicyDir::Fwd] {
            e.del_policy(&policy(dir, 1, 0xc0ffee02)).unwrap();
        }
        assert_eq!(e.policy_count(), 0);
        assert_eq!(
            e.del_policy(&policy(PolicyDir::Out, 1, 0xc0ffee02)),
            Err(Status::NotFound)
        );
    }

    #[test]
    fn newest_installation_gives_the_reqid() {
        let e = IpsecEngine::new("192.0.2.1".parse().unwrap());
        e.add_policy(policy(PolicyDir::Out, 1, 1)).unwrap();
        e.add_policy(policy(PolicyDir::Out, 2, 2)).unwrap();
        assert_eq!(e.snapshot().out_policies_ranked()[0].reqid, 2);
        e.del_policy(&policy(PolicyDir::Out, 2, 2)).unwrap();
        assert_eq!(
            e.snapshot().out_policies_ranked()[0].reqid,
            1,
            "back to the remaining installation"
        );
    }

    /// A new charon flushes: the old policy keeps forwarding until the new charon installs its
    /// own (which then counts from scratch), and orphans go when their grace ends.
    #[test]
    fn a_new_charon_adopts_nothing_but_stops_nothing() {
        let e = IpsecEngine::new("192.0.2.1".parse().unwrap());
        let mut b = IpsecBackend(e.clone());
        e.add_policy(policy(PolicyDir::Out, 1, 1)).unwrap();
        e.add_policy(policy(PolicyDir::Out, 1, 2)).unwrap();
        b.flush_policies().unwrap();
        b.flush_sas().unwrap();
        assert_eq!(e.policy_if_ids(), [7], "still routing after the flush");
        assert!(e.snapshot().out_policies_ranked()[0].orphan);
        e.add_policy(policy(PolicyDir::Out, 3, 9)).unwrap();
        let p = e.snapshot().out_policies_ranked()[0].clone();
        assert!(!p.orphan, "replaced by the new charon's policy");
        assert_eq!(
            (p.reqid, p.installs.clone()),
            (3, vec![3]),
            "the old installations do not count"
        );
        e.del_policy(&policy(PolicyDir::Out, 3, 9)).unwrap();
        assert_eq!(
            e.policy_count(),
            0,
            "one delete from the new charon removes it"
        );

        e.add_policy(policy(PolicyDir::Out, 1, 1)).unwrap();
        b.flush_policies().unwrap();
        e.drop_orphans();
        assert_eq!(
            e.policy_count(),
            0,
            "an orphan nobody replaced is gone after its grace"
        );
    }

    fn esp_sa(spi: u32, if_id: u32, inbound: bool) -> crate::charon::protocol::AddSa {
        use crate::charon::protocol::{AddSa, SaFlags, SaId, SecretKey};
        AddSa {
            id: SaId {
                src: "192.0.2.2:4500".parse().unwrap(),
                dst: "192.0.2.1:4500".parse().unwrap(),
                spi,
                proto: PROTO_ESP,
                mark: Default::default(),
                if_id,
            },
            reqid: if_id,
            mode: Mode::Tunnel,
            src_ts: vec![],
            dst_ts: vec![],
            interface: None,
            lifetime: Default::default(),
            enc_alg: 20,
            enc_key: SecretKey::new(vec![9; 36]),
            int_alg: 0,
            int_key: SecretKey::default(),
            replay_window: 32,
            tfc: 0,
            ipcomp: 0,
            cpi: 0,
            hw_offload: 0,
            sa_mark: Default::default(),
            copy_dscp: 0,
            flags: SaFlags {
                inbound,
                encap: true,
                ..Default::default()
            },
        }
    }

    /// Removing orphans is the engine's own decision, so it is reported per tunnel; SAs the new
    /// charon installed are not touched and not reported.
    #[test]
    fn removed_orphans_are_reported_per_tunnel() {
        let e = IpsecEngine::new("192.0.2.1".parse().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        e.set_events(Arc::new(move |ev| sink.lock().unwrap().push(ev)));
        let mut b = IpsecBackend(e.clone());
        for (spi, if_id, inbound) in [(0x1001, 7, true), (0x1002, 7, false), (0x2001, 9, true)] {
            e.add_sa(esp_sa(spi, if_id, inbound)).unwrap();
        }
        b.flush_sas().unwrap();
        e.add_sa(esp_sa(0x3001, 9, true)).unwrap();
        e.drop_orphans();
        let seen = seen.lock().unwrap();
        let got: Vec<(u32, Vec<u32>)> = seen
            .iter()
            .map(|ev| match ev {
                crate::Event::SasRemoved {
                    if_id,
                    spis,
                    reason,
                } => {
                    assert!(reason.contains("60s"), "{reason}");
                    (*if_id, spis.clone())
                }
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(got, [(7, vec![0x1001, 0x1002]), (9, vec![0x2001])]);
        assert_eq!(
            e.sas().iter().map(|s| s.spi).collect::<Vec<_>>(),
            [0x3001],
            "the new charon's SA stays"
        );
    }
}
