//! The packet trace (`cvlan_dataplane::trace`): start, stop, clear, and read it out. One trace
//! for the process, over every device's workers.

use crate::{err, Code, Result};
use base64::Engine;
use cvlan_dataplane::trace::{self, Filter, Stage};
use napi_derive::napi;

/// Packets a trace keeps when `count` is not given.
const DEFAULT_COUNT: u32 = 50;

#[napi(object)]
pub struct TraceStartOptions {
    /// Packets to record, then the trace stops (default 50).
    pub count: Option<u32>,
    /// Only packets of this tenant tag.
    pub tenant: Option<u32>,
    /// Only packets of this WireGuard peer (base64 public key).
    pub peer: Option<String>,
    /// Only packets of these SPIs (an IPsec tunnel's SAs).
    pub spis: Option<Vec<u32>>,
    /// Only packets with an inner source or destination in this prefix.
    pub prefix: Option<String>,
}

#[napi]
pub fn trace_start(opts: TraceStartOptions) -> Result<()> {
    let count = opts.count.unwrap_or(DEFAULT_COUNT);
    if count == 0 || u64::from(count) > trace::MAX_COUNT {
        return Err(err(
            Code::InvalidArg,
            format!("count: {count} is not within 1..={}", trace::MAX_COUNT),
        ));
    }
    let peer = match &opts.peer {
        None => None,
        Some(k) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(k)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok());
            Some(bytes.ok_or_else(|| {
                err(
                    Code::InvalidArg,
                    "peer: not a base64 WireGuard public key (32 bytes)",
                )
            })?)
        }
    };
    let prefix = match &opts.prefix {
        None => None,
        Some(p) => Some(p.parse().map_err(|_| {
            err(
                Code::InvalidArg,
                format!("prefix: {p:?} is not an address prefix (a.b.c.d/len)"),
            )
        })?),
    };
    if opts.spis.as_ref().is_some_and(|s| s.is_empty()) {
        return Err(err(Code::InvalidArg, "spis: empty (no SA would match)"));
    }
    let filter = Filter {
        tenant: opts.tenant,
        peer,
        spis: opts.spis,
        prefix,
    };
    trace::start(filter, u64::from(count));
    Ok(())
}

#[napi]
pub fn trace_stop() {
    trace::stop();
}

#[napi]
pub fn trace_clear() {
    trace::clear();
}

#[napi(object)]
pub struct TraceStatusJs {
    pub on: bool,
    pub count: u32,
    pub remaining: u32,
    pub lost: f64,
}

#[napi]
pub fn trace_status() -> TraceStatusJs {
    let s = trace::status();
    TraceStatusJs {
        on: s.on,
        count: s.count as u32,
        remaining: s.remaining as u32,
        lost: s.lost as f64,
    }
}

/// One stage as JavaScript sees it: its name, a one-line description, and the fields it has.
#[napi(object)]
#[derive(Default)]
pub struct TraceStageJs {
    pub stage: String,
    pub detail: String,
    pub device: Option<String>,
    pub worker: Option<u32>,
    pub len: Option<u32>,
    pub from: Option<String>,
    pub src: Option<String>,
    pub dst: Option<String>,
    pub proto: Option<u32>,
    pub tenant: Option<u32>,
    pub spi: Option<u32>,
    pub seq: Option<u32>,
    pub receiver: Option<u32>,
    pub counter: Option<f64>,
    pub table: Option<String>,
    pub peer: Option<u32>,
    pub to: Option<String>,
    pub prefix_len: Option<u32>,
    pub reason: Option<String>,
    pub verdict: Option<String>,
}

#[napi(object)]
pub struct TracePacketJs {
    /// Unique per traced packet (hex).
    pub id: String,
    /// When its batch ran, on the data plane's clock (ns).
    pub at_ns: f64,
    pub stages: Vec<TraceStageJs>,
}

fn stage_js(s: &Stage) -> TraceStageJs {
    let mut j = TraceStageJs {
        stage: s.name().to_string(),
        detail: s.to_string(),
        ..TraceStageJs::default()
    };
    match *s {
        Stage::Ingress {
            device,
            worker,
            len,
            from,
        } => {
            j.device = Some(device.to_string());
            j.worker = Some(u32::from(worker));
            j.len = Some(len);
            j.from = Some(from.map_or("tun".to_string(), |a| a.to_string()));
        }
        Stage::Inner {
            src,
            dst,
            proto,
            len,
        } => {
            j.src = Some(src.to_string());
            j.dst = Some(dst.to_string());
            j.proto = Some(u32::from(proto));
            j.len = Some(len);
        }
        Stage::Tenant { tag } => j.tenant = Some(tag),
        Stage::EspDecap { spi, seq } => {
            j.spi = Some(spi);
            j.seq = Some(seq);
        }
        Stage::WgDecap { receiver, counter } => {
            j.receiver = Some(receiver);
            j.counter = Some(counter as f64);
        }
        Stage::WgPeer { table, peer } => {
            j.table = Some(table.to_string());
            j.peer = peer;
        }
        Stage::Handoff {
            from,
            to,
            tenant,
            prefix_len,
        } => {
            j.device = Some(from.to_string());
            j.to = Some(to.to_string());
            j.tenant = Some(tenant);
            j.prefix_len = prefix_len.map(u32::from);
        }
        Stage::EspEncap { spi, seq, peer } => {
            j.spi = Some(spi);
            j.seq = Some(seq);
            j.to = Some(peer.to_string());
        }
        Stage::WgEncap {
            receiver,
            counter,
            endpoint,
        } => {
            j.receiver = Some(receiver);
            j.counter = Some(counter as f64);
            j.to = Some(endpoint.to_string());
        }
        Stage::WgHandshake { .. } | Stage::Queued | Stage::Consumed => {}
        Stage::Drop { reason } => j.reason = Some(reason.as_str().to_string()),
        Stage::Verdict { verdict, to } => {
            j.verdict = Some(
                match verdict {
                    cvlan_dataplane::transport::Verdict::Drop => "drop",
                    cvlan_dataplane::transport::Verdict::Send => "send",
                    cvlan_dataplane::transport::Verdict::ToTun => "to-tun",
                    cvlan_dataplane::transport::Verdict::HandOff => "hand-off",
                    cvlan_dataplane::transport::Verdict::HandedOff => "handed-off",
                }
                .to_string(),
            );
            j.to = to.map(|a| a.to_string());
        }
    }
    j
}

/// Every worker's traced packets, merged by time.
#[napi]
pub fn trace_read() -> Vec<TracePacketJs> {
    trace::read()
        .iter()
        .map(|p| TracePacketJs {
            id: format!("{:x}", p.id),
            at_ns: p.at.as_nanos() as f64,
            stages: p.stages.iter().map(stage_js).collect(),
        })
        .collect()
}
