//! What a trace holds per packet: the stages it passed, headers and decisions only (no payload,
//! no key material). Records are `Copy` and fixed-size, so the rings are preallocated once.

use crate::counters::DropReason;
use crate::transport::Verdict;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// One stage of one packet, in the order the pipeline ran it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Read by a worker of the device whose transport is `device`, from its TUN queue or from
    /// `from` (a datagram on one of its ports).
    Ingress {
        device: &'static str,
        worker: u16,
        len: u32,
        from: Option<SocketAddr>,
    },
    /// The inner IP header (read from the TUN, or what `decapsulate` opened).
    Inner {
        src: IpAddr,
        dst: IpAddr,
        proto: u8,
        len: u32,
    },
    /// The packet's tenant tag (0: one tenant).
    Tenant { tag: u32 },
    /// An ESP packet as received (before the SA lookup).
    EspDecap { spi: u32, seq: u32 },
    /// A WireGuard transport message as received (before the receiver-index lookup).
    WgDecap { receiver: u32, counter: u64 },
    /// A WireGuard handshake message (type 1 initiation, 2 response, 3 cookie reply).
    WgHandshake { kind: u8 },
    /// A WireGuard lookup: `table` is "receiver" (inbound) or "allowed-ips" (outbound); `peer`
    /// the peer it chose (none: no peer).
    WgPeer {
        table: &'static str,
        peer: Option<u32>,
    },
    /// The handoff stage chose the device whose transport is `to`, by a route whose destination
    /// prefix is `prefix_len` bits long (none: admitted by an inter-tenant rule).
    Handoff {
        from: &'static str,
        to: &'static str,
        tenant: u32,
        prefix_len: Option<u8>,
    },
    /// The outbound SA chosen, as sealed: its SPI, the sequence number and the peer.
    EspEncap {
        spi: u32,
        seq: u32,
        peer: SocketAddr,
    },
    /// Sealed for a WireGuard peer: the peer's receiver index, the counter and the endpoint.
    WgEncap {
        receiver: u32,
        counter: u64,
        endpoint: SocketAddr,
    },
    /// Held until the peer's handshake completes.
    Queued,
    /// Dropped, with its reason from the one drop table.
    Drop { reason: DropReason },
    /// Taken by the protocol itself, no drop: a handshake, a keepalive, IKE for charon.
    Consumed,
    /// What the worker did with it at the end of the batch.
    Verdict {
        verdict: Verdict,
        to: Option<SocketAddr>,
    },
}

impl Stage {
    /// The stage's short name (stable: `--json` output and tests use it).
    pub fn name(&self) -> &'static str {
        match self {
            Stage::Ingress { .. } => "ingress",
            Stage::Inner { .. } => "inner",
            Stage::Tenant { .. } => "tenant",
            Stage::EspDecap { .. } => "esp-decap",
            Stage::WgDecap { .. } => "wg-decap",
            Stage::WgHandshake { .. } => "wg-handshake",
            Stage::WgPeer { .. } => "wg-peer",
            Stage::Handoff { .. } => "handoff",
            Stage::EspEncap { .. } => "esp-encap",
            Stage::WgEncap { .. } => "wg-encap",
            Stage::Queued => "queued",
            Stage::Drop { .. } => "drop",
            Stage::Consumed => "consumed",
            Stage::Verdict { .. } => "verdict",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Stage::Ingress {
                device,
                worker,
                len,
                from,
            } => match from {
                Some(a) => write!(f, "{device} worker {worker}: {len} bytes from {a}"),
                None => write!(f, "{device} worker {worker}: {len} bytes from tun"),
            },
            Stage::Inner {
                src,
                dst,
                proto,
                len,
            } => write!(f, "{src} -> {dst} proto {proto} len {len}"),
            Stage::Tenant { tag } => write!(f, "tenant {tag}"),
            Stage::EspDecap { spi, seq } => write!(f, "spi 0x{spi:08x} seq {seq}"),
            Stage::WgDecap { receiver, counter } => {
                write!(f, "receiver 0x{receiver:08x} counter {counter}")
            }
            Stage::WgHandshake { kind } => match kind {
                1 => write!(f, "initiation"),
                2 => write!(f, "response"),
                3 => write!(f, "cookie reply"),
                k => write!(f, "type {k}"),
            },
            Stage::WgPeer { table, peer } => match peer {
                Some(p) => write!(f, "{table} -> peer {p}"),
                None => write!(f, "{table} -> none"),
            },
            Stage::Handoff {
                from,
                to,
                tenant,
                prefix_len,
            } => match prefix_len {
                Some(l) => write!(f, "{from} -> {to} tenant {tenant} route /{l}"),
                None => write!(f, "{from} -> {to} tenant {tenant} by inter-tenant rule"),
            },
            Stage::EspEncap { spi, seq, peer } => {
                write!(f, "sa spi 0x{spi:08x} seq {seq} to {peer}")
            }
            Stage::WgEncap {
                receiver,
                counter,
                endpoint,
            } => write!(
                f,
                "receiver 0x{receiver:08x} counter {counter} to {endpoint}"
            ),
            Stage::Queued => write!(f, "until the handshake completes"),
            Stage::Drop { reason } => write!(f, "{}", reason.as_str()),
            Stage::Consumed => write!(f, "by the protocol (handshake, keepalive or IKE)"),
            Stage::Verdict { verdict, to } => match (verdict, to) {
                (Verdict::Send, Some(a)) => write!(f, "sent to {a}"),
                (Verdict::ToTun, _) => write!(f, "to tun"),
                (Verdict::HandedOff, _) => write!(f, "handed off"),
                (Verdict::Drop, _) => write!(f, "dropped"),
                (v, _) => write!(f, "{v:?}"),
            },
        }
    }
}

/// One stage of one traced packet.
#[derive(Debug, Clone, Copy)]
pub struct Record {
    /// Unique per traced packet (ring, batch and slot).
    pub packet: u64,
    /// The batch's time on the data plane's clock (`crate::clock`).
    pub at: Duration,
    pub stage: Stage,
}

/// WireGuard transport message header (type 4): receiver index and counter.
pub(crate) fn wg_header(d: &[u8]) -> Option<(u32, u64)> {
    if d.len() < 16 || d[0] != 4 || d[1..4] != [0, 0, 0] {
        return None;
    }
    let receiver = u32::from_le_bytes(d[4..8].try_into().ok()?);
    let counter = u64::from_le_bytes(d[8..16].try_into().ok()?);
    Some((receiver, counter))
}

/// ESP header: SPI and sequence number (SPI 0 is the non-ESP marker of IKE on port 4500).
pub(crate) fn esp_header(d: &[u8]) -> Option<(u32, u32)> {
    if d.len() < 8 {
        return None;
    }
    let spi = u32::from_be_bytes(d[0..4].try_into().ok()?);
    let seq = u32::from_be_bytes(d[4..8].try_into().ok()?);
    (spi != 0).then_some((spi, seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_read_only_from_their_own_messages() {
        let mut wg = [0u8; 32];
        wg[0] = 4;
        wg[4..8].copy_from_slice(&0x1122_3344u32.to_le_bytes());
        wg[8..16].copy_from_slice(&7u64.to_le_bytes());
        assert_eq!(wg_header(&wg), Some((0x1122_3344, 7)));
        wg[0] = 1;
        assert_eq!(wg_header(&wg), None, "a handshake initiation is no data");
        assert_eq!(wg_header(&wg[..15]), None, "truncated");
        let esp = [0xc0, 0, 0, 1, 0, 0, 0, 9];
        assert_eq!(esp_header(&esp), Some((0xc000_0001, 9)));
        assert_eq!(esp_header(&[0; 8]), None, "the non-ESP marker (IKE)");
    }
}
