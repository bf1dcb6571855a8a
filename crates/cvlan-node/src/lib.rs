//! Node-API binding of cvlan-vrouter — the only crate that touches Node-API. It converts
//! options in, statistics and events out, and throws errors whose `code` is the data plane's
//! stable `CVLAN_ERR_*` string ([`Code`], the one list of them on the Rust side). No packet ever
//! crosses this boundary.

mod device;
pub mod ha;
pub mod handoff;
mod ipsec;
mod plain;
mod tenant_tun;
pub mod trace;
mod wireguard;

// Reachable from the crate root like the other free functions (napi registers it in the addon).
pub use ha::set_floating_addresses;

use cvlan_dataplane::counters::DropReason;
pub(crate) use cvlan_dataplane::Code;
use cvlan_dataplane::{Device, Event};
use napi::bindgen_prelude::{BigInt, Buffer};
use napi::threadsafe_function::{
    ErrorStrategy, ThreadSafeCallContext, ThreadsafeFunction, ThreadsafeFunctionCallMode,
};
use napi::{Env, JsFunction, JsObject};
use napi_derive::napi;
use std::sync::Arc;

/// The error status thrown to JavaScript: its code's `CVLAN_ERR_*` string becomes `err.code`.
pub struct Status(Code);

impl AsRef<str> for Status {
    fn as_ref(&self) -> &str {
        self.0.as_str()
    }
}

pub(crate) type Result<T> = std::result::Result<T, napi::Error<Status>>;

pub(crate) fn err(code: Code, msg: impl Into<String>) -> napi::Error<Status> {
    napi::Error::new(Status(code), msg.into())
}

pub(crate) fn dp_err(e: cvlan_dataplane::Error) -> napi::Error<Status> {
    err(e.code, e.message)
}

pub(crate) fn default_workers() -> u32 {
    // available_parallelism reads cgroup files: tens of microseconds, so ask once.
    static N: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *N.get_or_init(|| {
        std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1)
    })
}

/// Build facts of the addon, cheap to call (also the micro-benchmark of the call overhead).
#[napi(object)]
pub struct NativeInfo {
    pub version: String,
    pub napi_version: u32,
    pub default_workers: u32,
    pub transports: Vec<String>,
}

#[napi]
pub fn native_info() -> NativeInfo {
    NativeInfo {
        version: env!("CARGO_PKG_VERSION").to_string(),
        napi_version: 8,
        default_workers: default_workers(),
        transports: ["plain-insecure-test-only", "wireguard", "ipsec"]
            .map(String::from)
            .to_vec(),
    }
}

/// Copies a Buffer through the binding: measures the cost of a Node-API call carrying bytes
/// (the boundary packets must never cross on the data path).
#[napi]
pub fn echo_buffer(buf: Buffer) -> Buffer {
    buf.to_vec().into()
}

/// Every drop code the data plane counts, in table order (`cvlan_dataplane::counters`): the
/// daemon's mapping onto API reasons is tested against this list.
#[napi]
pub fn drop_codes() -> Vec<String> {
    DropReason::ALL
        .iter()
        .map(|r| r.as_str().to_string())
        .collect()
}

#[napi(object)]
pub struct DropCount {
    pub reason: String,
    pub count: BigInt,
}

pub(crate) fn drop_counts(counts: impl IntoIterator<Item = (&'static str, u64)>) -> Vec<DropCount> {
    counts
        .into_iter()
        .map(|(reason, n)| DropCount {
            reason: reason.to_string(),
            count: n.into(),
        })
        .collect()
}

/// Counters of one worker. Totals are 64-bit, hence BigInt.
#[napi(object)]
pub struct WorkerStatsJs {
    pub index: u32,
    pub active: bool,
    pub tun_rx_packets: BigInt,
    pub tun_rx_bytes: BigInt,
    pub tun_tx_packets: BigInt,
    pub tun_tx_bytes: BigInt,
    pub udp_rx_packets: BigInt,
    pub udp_rx_bytes: BigInt,
    pub udp_tx_packets: BigInt,
    pub udp_tx_bytes: BigInt,
    pub batches: BigInt,
    pub restarts: BigInt,
    pub busy_ns: BigInt,
    /// Packets this worker's handoff stage sent from another device (IPsec ⇄ WireGuard, tenant
    /// TUNs): the API's `translated`.
    pub translated: BigInt,
    /// Packets this worker sealed or opened, its own batches' and shares of other workers'
    /// (one flow's crypto spread over the workers); `helped_packets` are the latter.
    pub crypto_packets: BigInt,
    pub helped_packets: BigInt,
    /// Syscalls: TUN reads/writes, recvmmsg/sendmmsg calls (packets per call = batching).
    pub tun_reads: BigInt,
    pub tun_writes: BigInt,
    pub udp_recvs: BigInt,
    pub udp_sends: BigInt,
    pub drops: Vec<DropCount>,
}

pub(crate) fn worker_stats(dev: &Device) -> Vec<WorkerStatsJs> {
    dev.stats()
        .into_iter()
        .map(|s| {
            let c = s.counters;
            WorkerStatsJs {
                index: s.index as u32,
                active: s.active,
                tun_rx_packets: c.tun_rx_packets.into(),
                tun_rx_bytes: c.tun_rx_bytes.into(),
                tun_tx_packets: c.tun_tx_packets.into(),
                tun_tx_bytes: c.tun_tx_bytes.into(),
                udp_rx_packets: c.udp_rx_packets.into(),
                udp_rx_bytes: c.udp_rx_bytes.into(),
                udp_tx_packets: c.udp_tx_packets.into(),
                udp_tx_bytes: c.udp_tx_bytes.into(),
                batches: c.batches.into(),
                restarts: c.restarts.into(),
                busy_ns: c.busy_ns.into(),
                translated: c.translated.into(),
                crypto_packets: c.crypto_packets.into(),
                helped_packets: c.helped_packets.into(),
                tun_reads: c.tun_reads.into(),
                tun_writes: c.tun_writes.into(),
                udp_recvs: c.udp_recvs.into(),
                udp_sends: c.udp_sends.into(),
                drops: drop_counts(c.drops.into_iter().map(|(r, n)| (r.as_str(), n))),
            }
        })
        .collect()
}

/// An event for JavaScript: `{type, worker?, reason?, restarts?, peer?, endpoint?, device?,
/// ifId?, spis?}`.
#[derive(Default, Clone)]
pub(crate) struct JsEvent {
    pub kind: &'static str,
    pub worker: Option<u32>,
    pub reason: Option<String>,
    pub restarts: Option<u64>,
    pub peer: Option<String>,
    pub endpoint: Option<String>,
    /// The TUN device of a `tun-lost` event.
    pub device: Option<String>,
    /// `sas-removed`: the tunnel (if_id) and its SPIs.
    pub if_id: Option<u32>,
    pub spis: Option<Vec<u32>>,
}

impl From<Event> for JsEvent {
    fn from(e: Event) -> JsEvent {
        match e {
            Event::WorkerStarted { worker } => JsEvent {
                kind: "worker-started",
                worker: Some(worker as u32),
                ..Default::default()
            },
            Event::WorkerStopped { worker } => JsEvent {
                kind: "worker-stopped",
                worker: Some(worker as u32),
                ..Default::default()
            },
            Event::WorkerRestarted {
                worker,
                reason,
                restarts,
            } => JsEvent {
                kind: "worker-restarted",
                worker: Some(worker as u32),
                reason: Some(reason),
                restarts: Some(restarts),
                ..Default::default()
            },
            Event::WorkerFailed { worker, reason } => JsEvent {
                kind: "worker-failed",
                worker: Some(worker as u32),
                reason: Some(reason),
                ..Default::default()
            },
            Event::TunLost {
                worker,
                device,
                reason,
            } => JsEvent {
                kind: "tun-lost",
                worker: Some(worker as u32),
                reason: Some(reason),
                device: Some(device),
                ..Default::default()
            },
            Event::SasRemoved {
                if_id,
                spis,
                reason,
            } => JsEvent {
                kind: "sas-removed",
                reason: Some(reason),
                if_id: Some(if_id),
                spis: Some(spis),
                ..Default::default()
            },
        }
    }
}

fn event_to_js(ctx: ThreadSafeCallContext<JsEvent>) -> napi::Result<Vec<JsObject>> {
    let mut o = ctx.env.create_object()?;
    let e = ctx.value;
    o.set("type", e.kind)?;
    if let Some(w) = e.worker {
        o.set("worker", w)?;
    }
    if let Some(r) = e.reason {
        o.set("reason", r)?;
    }
    if let Some(r) = e.restarts {
        o.set("restarts", r as f64)?;
    }
    if let Some(p) = e.peer {
        o.set("peer", p)?;
    }
    if let Some(ep) = e.endpoint {
        o.set("endpoint", ep)?;
    }
    if let Some(d) = e.device {
        o.set("device", d)?;
    }
    if let Some(i) = e.if_id {
        o.set("ifId", i)?;
    }
    if let Some(spis) = e.spis {
        o.set(
            "spis",
            spis.iter().map(|s| format!("{s:08x}")).collect::<Vec<_>>(),
        )?;
    }
    Ok(vec![o])
}

/// Delivers events from any thread to the JavaScript callback (which never keeps the process
/// alive: the function is unref'd).
pub(crate) type JsEvents = Arc<dyn Fn(JsEvent) + Send + Sync>;

pub(crate) fn js_events(env: &Env, on_event: Option<JsFunction>) -> Result<JsEvents> {
    match on_event {
        Some(f) => {
            let mut tsfn: ThreadsafeFunction<JsEvent, ErrorStrategy::Fatal> = f
                .create_threadsafe_function(256, event_to_js)
                .map_err(|e| err(Code::Internal, e.reason))?;
            tsfn.unref(env).map_err(|e| err(Code::Internal, e.reason))?;
            Ok(Arc::new(move |ev: JsEvent| {
                tsfn.call(ev, ThreadsafeFunctionCallMode::NonBlocking);
            }))
        }
        None => Ok(Arc::new(|_| {})),
    }
}

/// The data plane's event sink feeding the same JavaScript callback.
pub(crate) fn event_sink(events: &JsEvents) -> cvlan_dataplane::EventSink {
    let events = events.clone();
    Arc::new(move |ev: Event| events(ev.into()))
}

pub(crate) fn parse_port(v: u32, name: &str) -> Result<u16> {
    u16::try_from(v).map_err(|_| err(Code::InvalidArg, format!("{name} {v} exceeds 65535")))
}

pub(crate) fn parse_ip(v: &Option<String>, name: &str) -> Result<Option<std::net::IpAddr>> {
    match v {
        Some(a) => a.parse().map(Some).map_err(|_| {
            err(
                Code::InvalidArg,
                format!("{name}: {a:?} is not an IP address"),
            )
        }),
        None => Ok(None),
    }
}
