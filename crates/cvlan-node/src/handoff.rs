//! The handoff between devices on their workers (`cvlan_dataplane::handoff`), set up from
//! JavaScript. Each WireGuard, IPsec and tenant TUN device registers under a numeric id when it
//! opens; a handoff names its targets by those ids, so one call can mix device classes.

use crate::{err, Code, Result};
use arc_swap::ArcSwapOption;
use cvlan_dataplane::handoff::{Handoff, IcmpLimit, Rule, Target};
use cvlan_dataplane::Device;
use cvlan_proto::ip::Prefix;
use napi_derive::napi;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

/// What a handoff needs of an open device: a way to build it as a target, and its own cell.
struct Registered {
    target: Box<dyn Fn(u32, Vec<Rule>) -> Option<Target> + Send>,
    cell: Arc<ArcSwapOption<Handoff>>,
}

static NEXT_ID: AtomicU32 = AtomicU32::new(1);

fn registry() -> &'static Mutex<HashMap<u32, Registered>> {
    static R: std::sync::OnceLock<Mutex<HashMap<u32, Registered>>> = std::sync::OnceLock::new();
    R.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Registers an open device; the id stays valid until [`unregister`].
pub(crate) fn register(device: &Device) -> u32 {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let parts = device.handoff_target(0, Vec::new());
    let target = Box::new(move |tenant: u32, rules: Vec<Rule>| {
        parts.as_ref().map(|t| Target {
            transport: t.transport.clone(),
            senders: t.senders.clone(),
            mtu: t.mtu,
            tenant,
            rules,
        })
    });
    let cell = device.handoff_cell();
    registry()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id, Registered { target, cell });
    id
}

/// Forgets a closed device: handoffs set later cannot name it, and its own is cleared.
pub(crate) fn unregister(id: u32) {
    if let Some(r) = registry()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&id)
    {
        r.cell.store(None);
    }
}

#[napi(object)]
pub struct HandoffRuleJs {
    /// Tenant tag the packets come from.
    pub from_tenant: u32,
    /// Source and destination prefixes the rule lets through.
    pub source: String,
    pub destination: String,
}

#[napi(object)]
pub struct HandoffTargetJs {
    /// `handoffId` of the target device.
    pub device: u32,
    /// Tenant tag whose packets it takes; 0 = every packet (a single-tenant pair).
    pub tenant: u32,
    pub rules: Option<Vec<HandoffRuleJs>>,
}

#[napi(object)]
pub struct HandoffJs {
    /// Tenant tag of everything the device decapsulates (a tenant's WireGuard device); 0 when
    /// the device tags packets itself (IPsec, by tunnel) or there is one tenant.
    pub stamp: u32,
    /// Drop tagged packets no target takes instead of writing them to the TUN.
    pub isolated: bool,
    pub targets: Vec<HandoffTargetJs>,
}

fn prefix(s: &str, what: &str) -> Result<Prefix> {
    s.parse()
        .map_err(|_| err(Code::InvalidArg, format!("{what}: {s:?} is not a prefix")))
}

/// Sets (or with `null` clears) what device `device`'s workers hand decapsulated packets to.
/// Validated in full first: on error nothing changes.
#[napi]
pub fn set_handoff(device: u32, handoff: Option<HandoffJs>) -> Result<()> {
    let reg = registry().lock().unwrap_or_else(|e| e.into_inner());
    let own = reg.get(&device).ok_or_else(|| {
        err(
            Code::Closed,
            format!("set_handoff: device {device} is not open"),
        )
    })?;
    let Some(t) = handoff else {
        own.cell.store(None);
        return Ok(());
    };
    let mut targets = Vec::with_capacity(t.targets.len());
    for (i, x) in t.targets.iter().enumerate() {
        let r = reg.get(&x.device).ok_or_else(|| {
            err(
                Code::Closed,
                format!("targets[{i}]: device {} is not open", x.device),
            )
        })?;
        let rules = x
            .rules
            .iter()
            .flatten()
            .enumerate()
            .map(|(j, r)| {
                Ok(Rule {
                    from: r.from_tenant,
                    src: prefix(&r.source, &format!("targets[{i}].rules[{j}].source"))?,
                    dst: prefix(
                        &r.destination,
                        &format!("targets[{i}].rules[{j}].destination"),
                    )?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        targets.push((r.target)(x.tenant, rules).ok_or_else(|| {
            err(
                Code::Closed,
                format!("targets[{i}]: device {} is stopped", x.device),
            )
        })?);
    }
    own.cell.store(Some(Arc::new(Handoff {
        stamp: t.stamp,
        isolated: t.isolated,
        targets,
        icmp: IcmpLimit::default(),
    })));
    Ok(())
}
