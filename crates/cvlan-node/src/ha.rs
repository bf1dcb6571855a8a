//! Binding of the HA sync channel (`cvlan_dataplane::ha`): options validated once, events
//! delivered to JavaScript off the channel's thread, status without secrets.

use crate::ipsec::IpsecDevice;
use crate::wireguard::WireGuardDevice;
use crate::{err, Code, Result};
use cvlan_dataplane::ha::{self, HaConfig, HaEvent, HaSync as Channel, Role};
use napi::bindgen_prelude::Buffer;
use napi::threadsafe_function::{
    ErrorStrategy, ThreadSafeCallContext, ThreadsafeFunction, ThreadsafeFunctionCallMode,
};
use napi::{Env, JsFunction, JsObject};
use napi_derive::napi;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use zeroize::Zeroizing;

#[napi(object)]
pub struct HaRelayOptions {
    /// Local UDP address charon's ha plugin sends to, e.g. "127.0.0.2:4510".
    pub bind: String,
    /// Where datagrams from the peer are delivered, e.g. "127.0.0.1:4510".
    pub deliver_to: String,
}

#[napi(object)]
pub struct HaSyncOptions {
    /// TCP "ip:port" this node listens on for the peer.
    pub listen: String,
    /// TCP "ip:port" of the peer's channel.
    pub peer: String,
    /// The 32-byte sync key (`[ha] sync_key`); the caller zeroes its copy afterwards.
    pub key: Buffer,
    /// 1..255, distinct on the two nodes.
    pub node_id: u32,
    /// Milliseconds between counter updates; default 100.
    pub sync_interval_ms: Option<u32>,
    /// Messages a session may send beyond what the standby acknowledged; default 2^20.
    pub lease_messages: Option<f64>,
    pub relay: Option<HaRelayOptions>,
}

#[napi(object)]
pub struct HaStatusJs {
    pub role: String,
    pub peer_connected: bool,
    pub peer_role: Option<String>,
    pub peer_generation: Option<f64>,
    pub last_sync_age_ms: Option<f64>,
    pub synced_wg_sessions: f64,
    pub synced_esp_sas: f64,
    pub frames_sent: f64,
    pub frames_received: f64,
    pub rejected_forged: f64,
    pub rejected_replayed: f64,
    pub rejected_malformed: f64,
    pub lease_exhausted: f64,
}

fn addr(v: &str, field: &str) -> Result<SocketAddr> {
    v.parse().map_err(|_| {
        err(
            Code::InvalidArg,
            format!("{field}: {v:?} is not ip:port or [ip6]:port"),
        )
    })
}

fn config(o: &HaSyncOptions) -> Result<HaConfig> {
    let key: [u8; 32] = o.key.as_ref().try_into().map_err(|_| {
        err(
            Code::InvalidArg,
            format!("key: expected 32 bytes, got {}", o.key.len()),
        )
    })?;
    let key = Zeroizing::new(key);
    let node_id = u8::try_from(o.node_id)
        .ok()
        .filter(|&n| n >= 1)
        .ok_or_else(|| {
            err(
                Code::InvalidArg,
                format!("nodeId: {} is not in 1..255", o.node_id),
            )
        })?;
    let interval = o.sync_interval_ms.unwrap_or(100);
    if !(1..=60_000).contains(&interval) {
        return Err(err(
            Code::InvalidArg,
            format!("syncIntervalMs: {interval} is not in 1..60000"),
        ));
    }
    let lease = match o.lease_messages {
        None => ha::lease::DEFAULT_LEASE,
        Some(l) if l.fract() == 0.0 && (1.0..=9.007_199_254_740_991e15).contains(&l) => l as u64,
        Some(l) => {
            return Err(err(
                Code::InvalidArg,
                format!("leaseMessages: {l} is not a positive integer"),
            ))
        }
    };
    let relay = match &o.relay {
        None => None,
        Some(r) => Some((
            addr(&r.bind, "relay.bind")?,
            addr(&r.deliver_to, "relay.deliverTo")?,
        )),
    };
    Ok(HaConfig {
        listen: addr(&o.listen, "listen")?,
        peer: addr(&o.peer, "peer")?,
        key,
        node_id,
        sync_interval: Duration::from_millis(interval.into()),
        lease,
        relay,
    })
}

fn event_to_js(ctx: ThreadSafeCallContext<HaEvent>) -> napi::Result<Vec<JsObject>> {
    let mut o = ctx.env.create_object()?;
    let mut detail = ctx.env.create_object()?;
    let (kind, reason) = match ctx.value {
        HaEvent::PeerUp {
            node_id,
            role,
            generation,
        } => {
            detail.set("nodeId", node_id as u32)?;
            detail.set("role", role.as_str())?;
            detail.set("generation", generation as f64)?;
            ("peer-up", None)
        }
        HaEvent::PeerDown { reason } => ("peer-down", Some(reason)),
        HaEvent::Rejected { reason } => ("rejected", Some(reason)),
        HaEvent::Takeover {
            jumped,
            dropped,
            esp_jumped,
            esp_stopped,
        } => {
            detail.set("wgSessionsContinued", jumped as f64)?;
            detail.set("wgSessionsStopped", dropped as f64)?;
            detail.set("espSasContinued", esp_jumped as f64)?;
            detail.set("espSasStopped", esp_stopped as f64)?;
            ("takeover", None)
        }
        HaEvent::LeaseExhausted { index } => {
            detail.set("receiverIndex", index)?;
            ("lease-exhausted", None)
        }
        HaEvent::EspLeaseExhausted { spi } => {
            detail.set("spi", spi)?;
            ("lease-exhausted", None)
        }
        HaEvent::SnapshotDone { sessions } => {
            detail.set("wgSessions", sessions)?;
            ("snapshot-done", None)
        }
    };
    o.set("kind", kind)?;
    if let Some(r) = reason {
        o.set("reason", r)?;
    }
    o.set("detail", detail)?;
    Ok(vec![o])
}

/// The data plane's half of active-passive HA: the sync channel to the other node.
#[napi(js_name = "HaSync")]
pub struct HaSyncJs {
    inner: Option<Channel>,
}

#[napi]
impl HaSyncJs {
    #[napi(constructor)]
    pub fn new(env: Env, options: HaSyncOptions, on_event: JsFunction) -> Result<Self> {
        let cfg = config(&options)?;
        let mut tsfn: ThreadsafeFunction<HaEvent, ErrorStrategy::Fatal> = on_event
            .create_threadsafe_function(256, event_to_js)
            .map_err(|e| err(Code::Internal, e.reason))?;
        tsfn.unref(&env)
            .map_err(|e| err(Code::Internal, e.reason))?;
        let sink = Arc::new(move |ev: HaEvent| {
            tsfn.call(ev, ThreadsafeFunctionCallMode::NonBlocking);
        });
        let inner = Channel::start(cfg, sink).map_err(crate::dp_err)?;
        Ok(HaSyncJs { inner: Some(inner) })
    }

    fn channel(&self) -> Result<&Channel> {
        self.inner
            .as_ref()
            .ok_or_else(|| err(Code::Closed, "the HA sync channel is closed"))
    }

    /// Puts a WireGuard device under HA (passive while this node is a standby).
    #[napi]
    pub fn attach_wireguard(&self, device: &WireGuardDevice) -> Result<()> {
        self.channel()?.attach_wireguard(device.engine()?);
        Ok(())
    }

    /// Takes a WireGuard device out of HA; call it before the device closes.
    #[napi]
    pub fn detach_wireguard(&self, device: &WireGuardDevice) -> Result<()> {
        self.channel()?.detach_wireguard(&device.engine()?);
        Ok(())
    }

    /// Puts the IPsec device under HA: its SAs and outbound policies are synced (active) or
    /// imported (standby); passive while this node is a standby.
    #[napi]
    pub fn attach_ipsec(&self, device: &IpsecDevice) -> Result<()> {
        self.channel()?.attach_ipsec(device.engine()?);
        Ok(())
    }

    /// Takes an IPsec device out of HA; call it before the device closes.
    #[napi]
    pub fn detach_ipsec(&self, device: &IpsecDevice) -> Result<()> {
        self.channel()?.detach_ipsec(&device.engine()?);
        Ok(())
    }

    #[napi]
    pub fn set_generation(&self, generation: f64) -> Result<()> {
        if generation.fract() != 0.0 || !(0.0..=9.007_199_254_740_991e15).contains(&generation) {
            return Err(err(
                Code::InvalidArg,
                format!("generation: {generation} is not a non-negative integer"),
            ));
        }
        self.channel()?.set_generation(generation as u64);
        Ok(())
    }

    /// `standby`: passive at once; `active`: counters jump by the lease, then it sends.
    #[napi]
    pub fn set_role(&self, role: String) -> Result<()> {
        let r = match role.as_str() {
            "active" => Role::Active,
            "standby" => Role::Standby,
            _ => {
                return Err(err(
                    Code::InvalidArg,
                    format!("role: {role:?} is not 'active' or 'standby'"),
                ))
            }
        };
        self.channel()?.set_role(r);
        Ok(())
    }

    #[napi]
    pub fn status(&self) -> Result<HaStatusJs> {
        let s = self.channel()?.status();
        Ok(HaStatusJs {
            role: s.role.as_str().into(),
            peer_connected: s.peer_connected,
            peer_role: s.peer_role.map(|r| r.as_str().into()),
            peer_generation: s.peer_generation.map(|g| g as f64),
            last_sync_age_ms: s.last_sync_age.map(|d| d.as_millis() as f64),
            synced_wg_sessions: s.synced_wg_sessions as f64,
            synced_esp_sas: s.synced_esp_sas as f64,
            frames_sent: s.frames_sent as f64,
            frames_received: s.frames_received as f64,
            rejected_forged: s.rejected_forged as f64,
            rejected_replayed: s.rejected_replayed as f64,
            rejected_malformed: s.rejected_malformed as f64,
            lease_exhausted: s.lease_exhausted as f64,
        })
    }

    /// Stops the channel (idempotent).
    #[napi]
    pub fn close(&mut self) {
        if let Some(mut c) = self.inner.take() {
            c.close();
        }
    }
}

/// Declares the floating addresses (the HA pair's VIPs) this node's sockets may bind before it
/// owns them (IP_FREEBIND). Any other listen address must be local: a typo still fails at bind.
#[napi]
pub fn set_floating_addresses(addresses: Vec<String>) -> Result<()> {
    let mut ips = Vec::with_capacity(addresses.len());
    for (i, a) in addresses.iter().enumerate() {
        ips.push(a.parse().map_err(|_| {
            err(
                Code::InvalidArg,
                format!("addresses[{i}]: {a:?} is not an IP address"),
            )
        })?);
    }
    cvlan_dataplane::udp::set_floating_addresses(ips);
    Ok(())
}
