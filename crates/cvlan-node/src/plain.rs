//! Binding of the plain (unencrypted, test-only) transport device.

use crate::device::{device_class, Opened};
use crate::{dp_err, err, event_sink, js_events, parse_ip, parse_port, Code, Result};
use cvlan_dataplane::plain::{PlainPeer, PlainTransport};
use cvlan_dataplane::{Device, DeviceConfig};
use napi::{Env, JsFunction};
use napi_derive::napi;
use std::net::SocketAddr;
use std::sync::Arc;

#[napi(object)]
pub struct PlainPeerOptions {
    /// `ip:port` or `[ip6]:port`.
    pub endpoint: String,
    /// CIDR prefixes routed to this peer and accepted as inner sources from it.
    pub allowed_ips: Vec<String>,
}

#[napi(object)]
pub struct PlainDeviceOptions {
    pub tun_name: String,
    /// Bytes; default 1420.
    pub mtu: Option<u32>,
    /// Bind address; default all addresses.
    pub listen_address: Option<String>,
    /// UDP port; 0 = any free port.
    pub listen_port: u32,
    /// Worker threads; default = number of CPUs.
    pub workers: Option<u32>,
    /// TUN TSO/GRO and UDP GSO/GRO where the kernel allows; default true.
    pub offload: Option<bool>,
    pub peers: Vec<PlainPeerOptions>,
}

fn parse_peers(peers: &[PlainPeerOptions]) -> Result<Vec<PlainPeer>> {
    peers
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let endpoint: SocketAddr = p.endpoint.parse().map_err(|_| {
                err(
                    Code::InvalidArg,
                    format!("peers[{i}].endpoint: {:?} is not ip:port", p.endpoint),
                )
            })?;
            let allowed_ips = p
                .allowed_ips
                .iter()
                .enumerate()
                .map(|(j, a)| {
                    a.parse().map_err(|e| {
                        err(
                            Code::InvalidArg,
                            format!("peers[{i}].allowed_ips[{j}]: {e}"),
                        )
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(PlainPeer {
                endpoint,
                allowed_ips,
            })
        })
        .collect()
}

/// A TUN device with worker threads speaking the plain (unencrypted, test-only) transport.
#[napi]
pub struct PlainDevice {
    opened: Opened,
    transport: Arc<PlainTransport>,
    listen_port: u16,
}

device_class!(PlainDevice);

#[napi]
impl PlainDevice {
    /// Creates the TUN device, binds the sockets and starts the workers. `onEvent`, if given,
    /// receives `{type, worker, reason?}` objects from the worker threads; it does not keep
    /// the process alive.
    #[napi(constructor)]
    pub fn new(
        env: Env,
        options: PlainDeviceOptions,
        on_event: Option<JsFunction>,
    ) -> Result<Self> {
        let peers = parse_peers(&options.peers)?;
        let listen = parse_ip(&options.listen_address, "listen_address")?;
        let listen_port = parse_port(options.listen_port, "listen_port")?;
        let events = js_events(&env, on_event)?;
        let transport = Arc::new(PlainTransport::new(peers));
        let cfg = DeviceConfig {
            tun_name: options.tun_name.clone(),
            mtu: options.mtu.unwrap_or(1420),
            listen,
            listen_ports: vec![listen_port],
            workers: options.workers.unwrap_or_else(crate::default_workers) as usize,
            offload: options.offload.unwrap_or(true),
            raw_esp: false,
        };
        let device = Device::start(cfg, transport.clone(), event_sink(&events)).map_err(dp_err)?;
        Ok(PlainDevice {
            listen_port: device.listen_port(),
            opened: Opened::new(device, (), options.tun_name, false),
            transport,
        })
    }

    #[napi(getter)]
    pub fn listen_port(&self) -> u32 {
        u32::from(self.listen_port)
    }

    #[napi(getter)]
    pub fn workers(&self) -> u32 {
        self.opened.running().map_or(0, |d| d.worker_count() as u32)
    }

    /// Replaces the peer list atomically; running workers pick it up at their next batch.
    #[napi]
    pub fn set_peers(&self, peers: Vec<PlainPeerOptions>) -> Result<()> {
        self.opened.device()?;
        self.transport.set_peers(parse_peers(&peers)?);
        Ok(())
    }

    /// Grows or shrinks the worker pool without interrupting traffic.
    #[napi]
    pub fn set_workers(&mut self, workers: u32) -> Result<()> {
        self.opened
            .device_mut()?
            .set_workers(workers as usize)
            .map_err(dp_err)
    }

    /// Test hook: makes one worker panic so the restart path can be observed.
    #[napi]
    pub fn inject_panic(&self, worker: u32) -> Result<()> {
        self.opened
            .device()?
            .inject_panic(worker as usize)
            .map_err(dp_err)
    }
}
