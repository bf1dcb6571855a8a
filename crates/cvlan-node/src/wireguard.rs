//! Binding of the WireGuard device: a TUN interface, one UDP port, and peers managed at runtime.
//! `state()`/`apply()` are shaped after the cross-platform UAPI (`get=1`/`set=1`) so the
//! management socket and the daemon use one code path.

use crate::device::{device_class, Opened};
use crate::{dp_err, err, event_sink, js_events, parse_ip, parse_port, Code, JsEvent, Result};
use base64::Engine;
use cvlan_dataplane::wireguard::{WireGuard, WireGuardTransport};
use cvlan_dataplane::{Device, DeviceConfig};
use cvlan_proto::ip::Prefix;
use cvlan_proto::wireguard::{Event, PeerConfig};
use napi::bindgen_prelude::{BigInt, Buffer, Float64Array};
use napi::{Env, JsFunction};
use napi_derive::napi;
use std::net::SocketAddr;
use std::sync::Arc;

fn b64(k: &[u8; 32]) -> String {
    base64::engine::general_purpose::STANDARD.encode(k)
}

fn key32(b: &Buffer, what: &str) -> Result<[u8; 32]> {
    <[u8; 32]>::try_from(b.as_ref()).map_err(|_| {
        err(
            Code::InvalidArg,
            format!("{what}: expected 32 bytes, got {}", b.len()),
        )
    })
}

#[napi(object)]
pub struct WireGuardDeviceOptions {
    pub tun_name: String,
    /// Bytes; default 1420.
    pub mtu: Option<u32>,
    /// Bind address; default all addresses.
    pub listen_address: Option<String>,
    /// UDP port; 0 = any free port.
    pub listen_port: u32,
    /// Worker threads; default = number of CPUs.
    pub workers: Option<u32>,
    /// Curve25519 private key (32 bytes); may be set later with `apply`.
    pub private_key: Option<Buffer>,
}

#[napi(object)]
pub struct WgPeerStateJs {
    pub public_key: Buffer,
    /// Only on this root-only management path (UAPI `get`); never in the admin API.
    pub preshared_key: Option<Buffer>,
    pub endpoint: Option<String>,
    pub allowed_ips: Vec<String>,
    pub persistent_keepalive: u32,
    pub last_handshake_sec: Option<i64>,
    pub last_handshake_nsec: Option<u32>,
    pub rx_bytes: BigInt,
    pub tx_bytes: BigInt,
}

#[napi(object)]
pub struct WgDeviceStateJs {
    pub private_key: Option<Buffer>,
    pub public_key: Option<Buffer>,
    pub listen_port: u32,
    pub peers: Vec<WgPeerStateJs>,
}

/// Every peer's traffic in one call, as columns (`traffic()`): a metrics scrape of thousands of
/// peers then creates four values instead of an object with strings and arrays per peer.
#[napi(object)]
pub struct WgPeerTrafficJs {
    /// Public keys, 32 bytes each; peer `i` is bytes `32 * i .. 32 * i + 32`.
    pub public_keys: Buffer,
    pub rx_bytes: Float64Array,
    pub tx_bytes: Float64Array,
    /// Last completed handshake, ms since the Unix epoch; NaN before the first.
    pub last_handshake_ms: Float64Array,
}

#[napi(object)]
pub struct WgPeerUpdateJs {
    pub public_key: Buffer,
    pub remove: Option<bool>,
    /// Only update an existing peer; do nothing if it does not exist.
    pub update_only: Option<bool>,
    /// 32 bytes; all zero removes the preshared key.
    pub preshared_key: Option<Buffer>,
    pub endpoint: Option<String>,
    pub persistent_keepalive: Option<u32>,
    pub replace_allowed_ips: Option<bool>,
    /// Prefixes to add (after clearing when `replace_allowed_ips`).
    pub allowed_ips: Option<Vec<String>>,
    /// Prefixes to remove after adding, only where this peer holds them.
    pub remove_allowed_ips: Option<Vec<String>>,
}

#[napi(object)]
pub struct WgDeviceUpdateJs {
    /// 32 bytes; all zero removes the private key.
    pub private_key: Option<Buffer>,
    /// Must equal the current port (the sockets are bound for the device's lifetime).
    pub listen_port: Option<u32>,
    pub replace_peers: Option<bool>,
    pub peers: Vec<WgPeerUpdateJs>,
}

#[napi(object)]
pub struct WgCountersJs {
    pub handshakes_completed: BigInt,
    pub handshakes_failed: BigInt,
    pub handshake_messages: BigInt,
    pub drops: Vec<crate::DropCount>,
}

/// `None`: leave unchanged; `Some(None)`: clear (an all-zero key, as in the UAPI); `Some(Some(k))`: set.
type KeyChange = Option<Option<[u8; 32]>>;

struct PeerOp {
    key: [u8; 32],
    remove: bool,
    update_only: bool,
    psk: KeyChange,
    endpoint: Option<SocketAddr>,
    keepalive: Option<u16>,
    replace_allowed: bool,
    allowed: Vec<Prefix>,
    remove_allowed: Vec<Prefix>,
}

fn validate(u: &WgDeviceUpdateJs) -> Result<(KeyChange, Vec<PeerOp>)> {
    let private = match &u.private_key {
        None => None,
        Some(b) => {
            let k = key32(b, "private_key")?;
            Some((k != [0; 32]).then_some(k))
        }
    };
    let mut ops = Vec::with_capacity(u.peers.len());
    for (i, p) in u.peers.iter().enumerate() {
        let key = key32(&p.public_key, &format!("peers[{i}].public_key"))?;
        let psk = match &p.preshared_key {
            None => None,
            Some(b) => {
                let k = key32(b, &format!("peers[{i}].preshared_key"))?;
                Some((k != [0; 32]).then_some(k))
            }
        };
        let endpoint = match &p.endpoint {
            None => None,
            Some(e) => Some(e.parse::<SocketAddr>().map_err(|_| {
                err(
                    Code::InvalidArg,
                    format!("peers[{i}].endpoint: {e:?} is not ip:port or [ip6]:port"),
                )
            })?),
        };
        let keepalive = match p.persistent_keepalive {
            None => None,
            Some(k) => Some(u16::try_from(k).map_err(|_| {
                err(
                    Code::InvalidArg,
                    format!("peers[{i}].persistent_keepalive: {k} exceeds 65535"),
                )
            })?),
        };
        let prefixes = |list: &Option<Vec<String>>, field: &str| {
            list.iter()
                .flatten()
                .enumerate()
                .map(|(j, a)| {
                    a.parse::<Prefix>()
                        .map_err(|e| err(Code::InvalidArg, format!("peers[{i}].{field}[{j}]: {e}")))
                })
                .collect::<Result<Vec<_>>>()
        };
        let allowed = prefixes(&p.allowed_ips, "allowed_ips")?;
        let remove_allowed = prefixes(&p.remove_allowed_ips, "remove_allowed_ips")?;
        ops.push(PeerOp {
            key,
            remove: p.remove.unwrap_or(false),
            update_only: p.update_only.unwrap_or(false),
            psk,
            endpoint,
            keepalive,
            replace_allowed: p.replace_allowed_ips.unwrap_or(false),
            allowed,
            remove_allowed,
        });
    }
    Ok((private, ops))
}

/// A WireGuard interface in userspace.
#[napi]
pub struct WireGuardDevice {
    opened: Opened,
    wg: Arc<WireGuard>,
    listen_port: u16,
}

device_class!(WireGuardDevice, handoff);

impl WireGuardDevice {
    /// The engine, for the HA sync (`crate::ha`); an error once the device is closed.
    pub(crate) fn engine(&self) -> Result<Arc<WireGuard>> {
        self.opened.device()?;
        Ok(self.wg.clone())
    }
}

#[napi]
impl WireGuardDevice {
    #[napi(constructor)]
    pub fn new(
        env: Env,
        options: WireGuardDeviceOptions,
        on_event: Option<JsFunction>,
    ) -> Result<Self> {
        let private = options
            .private_key
            .as_ref()
            .map(|b| key32(b, "private_key"))
            .transpose()?;
        let listen = parse_ip(&options.listen_address, "listen_address")?;
        let port = parse_port(options.listen_port, "listen_port")?;
        let events = js_events(&env, on_event)?;
        let wg = WireGuard::new(private);
        let ev = events.clone();
        let keys = wg.clone();
        wg.set_event_sink(Arc::new(move |e: &Event| {
            let key_of = |id| keys.with(|d| d.status(id).map(|s| b64(&s.public_key)));
            let js = match e {
                Event::HandshakeComplete { peer, .. } => JsEvent {
                    kind: "handshake-complete",
                    peer: key_of(*peer),
                    ..Default::default()
                },
                Event::HandshakeGaveUp { peer } => JsEvent {
                    kind: "handshake-failed",
                    peer: key_of(*peer),
                    ..Default::default()
                },
                Event::EndpointChanged { peer, endpoint } => JsEvent {
                    kind: "endpoint-changed",
                    peer: key_of(*peer),
                    endpoint: Some(endpoint.to_string()),
                    ..Default::default()
                },
                Event::KeysZeroed { peer } => JsEvent {
                    kind: "keys-zeroed",
                    peer: key_of(*peer),
                    ..Default::default()
                },
            };
            ev(js);
        }));
        let cfg = DeviceConfig {
            tun_name: options.tun_name.clone(),
            mtu: options.mtu.unwrap_or(1420),
            listen,
            listen_ports: vec![port],
            workers: options.workers.unwrap_or_else(crate::default_workers) as usize,
            offload: true,
            raw_esp: false,
        };
        let transport = Arc::new(WireGuardTransport { wg: wg.clone() });
        let device = Device::start(cfg, transport, event_sink(&events)).map_err(dp_err)?;
        Ok(WireGuardDevice {
            listen_port: device.listen_port(),
            opened: Opened::new(device, (), options.tun_name, true),
            wg,
        })
    }

    #[napi(getter)]
    pub fn listen_port(&self) -> u32 {
        u32::from(self.listen_port)
    }

    /// Interface and peer state (UAPI `get`).
    #[napi]
    pub fn state(&self) -> Result<WgDeviceStateJs> {
        self.opened.device()?;
        Ok(self.wg.with(|d| WgDeviceStateJs {
            private_key: d.private_key().map(|k| Buffer::from(k.to_vec())),
            public_key: d.public_key().map(|k| Buffer::from(k.to_vec())),
            listen_port: u32::from(self.listen_port),
            peers: d
                .statuses()
                .into_iter()
                .map(|s| (s.id, s))
                .map(|(id, s)| WgPeerStateJs {
                    public_key: Buffer::from(s.public_key.to_vec()),
                    preshared_key: d.preshared_key(id).map(|k| Buffer::from(k.to_vec())),
                    endpoint: s.endpoint.map(|e| e.to_string()),
                    allowed_ips: s.allowed_ips.iter().map(|p| p.to_string()).collect(),
                    persistent_keepalive: u32::from(s.persistent_keepalive),
                    last_handshake_sec: s.last_handshake.map(|t| t.as_secs() as i64),
                    last_handshake_nsec: s.last_handshake.map(|t| t.subsec_nanos()),
                    rx_bytes: s.rx_bytes.into(),
                    tx_bytes: s.tx_bytes.into(),
                })
                .collect(),
        }))
    }

    /// Every peer's public key, byte counters and last handshake (no key material, no allowed
    /// IPs): what metrics need, without `state()`'s per-peer walk of the allowed-IPs table.
    #[napi]
    pub fn traffic(&self) -> Result<WgPeerTrafficJs> {
        self.opened.device()?;
        let peers = self.wg.with(|d| d.traffic());
        let mut keys = Vec::with_capacity(peers.len() * 32);
        let (mut rx, mut tx, mut hs) = (
            Vec::with_capacity(peers.len()),
            Vec::with_capacity(peers.len()),
            Vec::with_capacity(peers.len()),
        );
        for p in &peers {
            keys.extend_from_slice(&p.public_key);
            // f64 is exact up to 2^53 bytes (8 PiB); JavaScript numbers are f64 anyway.
            rx.push(p.rx_bytes as f64);
            tx.push(p.tx_bytes as f64);
            hs.push(p.last_handshake.map_or(f64::NAN, |t| t.as_millis() as f64));
        }
        Ok(WgPeerTrafficJs {
            public_keys: keys.into(),
            rx_bytes: rx.into(),
            tx_bytes: tx.into(),
            last_handshake_ms: hs.into(),
        })
    }

    /// Applies a UAPI-style update atomically: everything is validated first; on any error
    /// nothing changes.
    #[napi]
    pub fn apply(&mut self, update: WgDeviceUpdateJs) -> Result<()> {
        self.opened.device()?;
        let (private, ops) = validate(&update)?;
        // The port first: a port in use refuses the whole update, nothing else changed.
        if let Some(p) = update.listen_port {
            let port = parse_port(p, "listen_port")?;
            if port != self.listen_port || port == 0 {
                let wg = self.wg.clone();
                let device = self.opened.device_mut()?;
                self.listen_port = device
                    .set_listen_port(0, port, &|| wg.announce_endpoint())
                    .map_err(dp_err)?;
            }
        }
        let now = self.wg.time().mono;
        self.wg.with(|d| {
            if let Some(k) = private {
                d.set_private_key(k);
            }
            if update.replace_peers.unwrap_or(false) {
                for id in d.peer_ids() {
                    d.remove_peer(id);
                }
            }
            for op in ops {
                let existing = d.peer_id(&op.key);
                if op.remove {
                    if let Some(id) = existing {
                        d.remove_peer(id);
                    }
                    continue;
                }
                if op.update_only && existing.is_none() {
                    continue;
                }
                if d.public_key() == Some(op.key) {
                    // A peer with our own key is ignored, as WireGuard does.
                    continue;
                }
                let old = existing.and_then(|id| d.status(id));
                let cfg = PeerConfig {
                    public_key: op.key,
                    preshared_key: match op.psk {
                        Some(v) => v,
                        None => existing.and_then(|id| d.preshared_key(id)),
                    },
                    endpoint: op.endpoint.or(old.as_ref().and_then(|s| s.endpoint)),
                    persistent_keepalive: op
                        .keepalive
                        .unwrap_or(old.as_ref().map_or(0, |s| s.persistent_keepalive)),
                };
                let id = d.upsert_peer(cfg);
                if let Some(e) = op.endpoint {
                    d.set_endpoint(id, Some(e));
                }
                if let Some(k) = op.keepalive {
                    d.set_persistent_keepalive(id, k, now);
                }
                if op.replace_allowed {
                    d.clear_allowed_ips(id);
                }
                for p in op.allowed {
                    d.add_allowed_ip(id, p);
                }
                for p in &op.remove_allowed {
                    d.remove_allowed_ip(id, p);
                }
            }
        });
        // A new persistent keepalive or handshake goes out now, not at the next tick.
        self.wg.poke();
        Ok(())
    }

    #[napi]
    pub fn counters(&self) -> WgCountersJs {
        use std::sync::atomic::Ordering::Relaxed;
        let c = &self.wg.counters;
        WgCountersJs {
            handshakes_completed: c.handshakes_completed.load(Relaxed).into(),
            handshakes_failed: c.handshakes_failed.load(Relaxed).into(),
            handshake_messages: c.handshake_messages.load(Relaxed).into(),
            drops: crate::drop_counts(c.drops.snapshot().into_iter().map(|(r, n)| (r.as_str(), n))),
        }
    }
}
