//! Binding of the IPsec device: a TUN interface whose packets are protected with the SAs charon
//! installs through the `cvlan` plugin, and the UDP 500/4500 sockets that carry IKE and ESP.

use crate::device::{device_class, Opened};
use crate::{dp_err, err, event_sink, js_events, Code, Result};
use cvlan_dataplane::charon::server::CharonServer;
use cvlan_dataplane::ipsec::{IpsecBackend, IpsecEngine, IpsecTransport, SOCK_IKE, SOCK_NATT};
use cvlan_dataplane::{Device, DeviceConfig};
use napi::bindgen_prelude::BigInt;
use napi::{Env, JsFunction};
use napi_derive::napi;
use std::net::IpAddr;
use std::sync::Arc;

#[napi(object)]
pub struct IpsecDeviceOptions {
    pub tun_name: String,
    /// Bytes; default 1400 (room for ESP-in-UDP over a 1500-byte path).
    pub mtu: Option<u32>,
    /// The public address IKE and ESP use (required: charon must know its own address).
    pub listen_address: String,
    /// NAT-T / ESP-in-UDP port; default 4500.
    pub nat_port: Option<u32>,
    /// IKE port; default 500.
    pub ike_port: Option<u32>,
    /// Worker threads; default = number of CPUs.
    pub workers: Option<u32>,
    /// Unix socket the charon plugin connects to (`charon.plugins.cvlan.socket`).
    pub charon_socket: String,
    /// Also carry ESP without UDP on a raw socket where the host allows it; default false.
    pub raw_esp: Option<bool>,
}

#[napi(object)]
pub struct SaInfo {
    pub spi: u32,
    pub inbound: bool,
    pub if_id: u32,
    pub src: String,
    pub dst: String,
    pub bytes: BigInt,
    pub packets: BigInt,
    /// Seconds since the SA last carried a packet; absent if it never did.
    pub idle_secs: Option<u32>,
    pub algorithm: String,
    pub esn: bool,
    pub encap: bool,
}

#[napi(object)]
pub struct IpsecCountersJs {
    pub ike_in: BigInt,
    pub ike_out: BigInt,
    pub nat_keepalives: BigInt,
    pub expires_sent: BigInt,
    pub drops: Vec<crate::DropCount>,
}

#[napi]
pub struct IpsecDevice {
    /// The charon link lives as long as the workers: charon sees it drop when the device closes.
    opened: Opened<CharonServer>,
    engine: Arc<IpsecEngine>,
    ports: Vec<u16>,
}

device_class!(IpsecDevice, handoff);

impl IpsecDevice {
    /// The engine, for the HA sync (`crate::ha`); an error once the device is closed.
    pub(crate) fn engine(&self) -> Result<Arc<IpsecEngine>> {
        self.opened.device()?;
        Ok(self.engine.clone())
    }
}

#[napi(object)]
pub struct TunnelTenantJs {
    /// The tunnel's CHILD_SA if_id.
    pub if_id: u32,
    /// Its tenant's tag (non-zero).
    pub tenant: u32,
}

fn port(v: Option<u32>, default: u16, name: &str) -> Result<u16> {
    v.map_or(Ok(default), |p| crate::parse_port(p, name))
}

#[napi]
impl IpsecDevice {
    /// Opens the charon link socket, then the TUN device and sockets, then starts the workers.
    #[napi(constructor)]
    pub fn new(
        env: Env,
        options: IpsecDeviceOptions,
        on_event: Option<JsFunction>,
    ) -> Result<Self> {
        let local: IpAddr = options.listen_address.parse().map_err(|_| {
            err(
                Code::InvalidArg,
                format!(
                    "listen_address: {:?} is not an IP address",
                    options.listen_address
                ),
            )
        })?;
        let nat = port(options.nat_port, 4500, "nat_port")?;
        let ike = port(options.ike_port, 500, "ike_port")?;
        let engine = IpsecEngine::new(local);
        let (server, handle) = CharonServer::bind(
            &options.charon_socket,
            Box::new(IpsecBackend(engine.clone())),
            None,
        )
        .map_err(|e| {
            err(
                Code::Socket,
                format!("charon link socket {}: {e}", options.charon_socket),
            )
        })?;
        engine.set_charon(handle);
        let mut listen_ports = vec![0u16; 2];
        listen_ports[SOCK_NATT] = nat;
        listen_ports[SOCK_IKE] = ike;
        let cfg = DeviceConfig {
            tun_name: options.tun_name.clone(),
            mtu: options.mtu.unwrap_or(1400),
            listen: Some(local),
            listen_ports,
            workers: options.workers.unwrap_or_else(crate::default_workers) as usize,
            offload: true,
            raw_esp: options.raw_esp.unwrap_or(false),
        };
        let sink = event_sink(&js_events(&env, on_event)?);
        engine.set_events(sink.clone());
        let transport = Arc::new(IpsecTransport {
            engine: engine.clone(),
        });
        let device = Device::start(cfg, transport, sink).map_err(dp_err)?;
        let ports = device.listen_ports();
        Ok(IpsecDevice {
            opened: Opened::new(device, server, options.tun_name, true),
            engine,
            ports,
        })
    }

    /// Which tenant each tunnel (if_id) belongs to, when the device serves several: packets from
    /// a tunnel carry its tenant's tag, and a tagged packet leaves only through that tenant's
    /// tunnels. An empty list: one tenant, every policy for every packet.
    #[napi]
    pub fn set_tenants(&self, tunnels: Vec<TunnelTenantJs>) -> Result<()> {
        if let Some(t) = tunnels.iter().find(|t| t.tenant == 0) {
            return Err(err(
                Code::InvalidArg,
                format!("if_id {}: tenant tag 0 is reserved for \"none\"", t.if_id),
            ));
        }
        self.engine
            .set_tenants(tunnels.iter().map(|t| (t.if_id, t.tenant)).collect());
        Ok(())
    }

    /// Whether ESP without UDP is carried (a raw socket is open).
    #[napi(getter)]
    pub fn raw_esp(&self) -> bool {
        self.opened
            .running()
            .is_some_and(|d| d.raw_esp() == Ok(true))
    }

    /// Why a raw ESP socket was asked for but could not be opened (null otherwise).
    #[napi(getter)]
    pub fn raw_esp_error(&self) -> Option<String> {
        self.opened.running().and_then(|d| d.raw_esp().err())
    }

    #[napi(getter)]
    pub fn nat_port(&self) -> u32 {
        u32::from(self.ports[SOCK_NATT])
    }

    #[napi(getter)]
    pub fn ike_port(&self) -> u32 {
        u32::from(self.ports[SOCK_IKE])
    }

    /// Installed SAs with their counters (no key material).
    #[napi]
    pub fn sas(&self) -> Vec<SaInfo> {
        self.engine
            .sas()
            .into_iter()
            .map(|s| SaInfo {
                spi: s.spi,
                inbound: s.inbound,
                if_id: s.if_id,
                src: s.src.to_string(),
                dst: s.dst.to_string(),
                bytes: s.bytes.into(),
                packets: s.packets.into(),
                idle_secs: s.idle_secs.map(|v| u32::try_from(v).unwrap_or(u32::MAX)),
                algorithm: s.algorithm,
                esn: s.esn,
                encap: s.encap,
            })
            .collect()
    }

    #[napi]
    pub fn counters(&self) -> IpsecCountersJs {
        use std::sync::atomic::Ordering::Relaxed;
        let c = &self.engine.counters;
        IpsecCountersJs {
            ike_in: c.ike_in.load(Relaxed).into(),
            ike_out: c.ike_out.load(Relaxed).into(),
            nat_keepalives: c.nat_keepalives.load(Relaxed).into(),
            expires_sent: c.expires_sent.load(Relaxed).into(),
            drops: crate::drop_counts(c.drop_counts().into_iter().map(|(r, n)| (r.as_str(), n))),
        }
    }
}
