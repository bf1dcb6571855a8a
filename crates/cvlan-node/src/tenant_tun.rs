//! Binding of a tenant TUN device: a tenant's local network on a TUN of its own, routed by the
//! tenant's WireGuard and IPsec devices on their workers (`cvlan_dataplane::tenant_tun`).

use crate::device::{device_class, Opened};
use crate::{dp_err, err, event_sink, js_events, Code, Result};
use cvlan_dataplane::tenant_tun::TenantTun;
use cvlan_dataplane::{Device, DeviceConfig};
use cvlan_proto::ip::Prefix;
use napi::{Env, JsFunction};
use napi_derive::napi;

#[napi(object)]
pub struct TenantTunOptions {
    pub tun_name: String,
    /// Bytes; default 1420.
    pub mtu: Option<u32>,
    /// Worker threads; default = number of CPUs.
    pub workers: Option<u32>,
    /// The prefixes behind the TUN: routed into it, and the only sources accepted from it.
    pub subnets: Vec<String>,
}

#[napi]
pub struct TenantTunDevice {
    opened: Opened,
}

device_class!(TenantTunDevice, handoff);

#[napi]
impl TenantTunDevice {
    #[napi(constructor)]
    pub fn new(env: Env, options: TenantTunOptions, on_event: Option<JsFunction>) -> Result<Self> {
        let subnets = options
            .subnets
            .iter()
            .enumerate()
            .map(|(i, s)| {
                s.parse::<Prefix>()
                    .map_err(|e| err(Code::InvalidArg, format!("subnets[{i}]: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let cfg = DeviceConfig {
            tun_name: options.tun_name.clone(),
            mtu: options.mtu.unwrap_or(1420),
            listen: None,
            listen_ports: Vec::new(),
            workers: options.workers.unwrap_or_else(crate::default_workers) as usize,
            // Packets are written into it from other devices' workers one by one.
            offload: false,
            raw_esp: false,
        };
        let sink = event_sink(&js_events(&env, on_event)?);
        let device = Device::start(cfg, TenantTun::new(&subnets), sink).map_err(dp_err)?;
        Ok(TenantTunDevice {
            opened: Opened::new(device, (), options.tun_name, true),
        })
    }
}
