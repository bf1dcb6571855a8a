//! Binding of a tenant TUN device: a tenant's local network on a TUN of its own, routed by the
//! tenant's WireGuard and IPsec devices on their workers (`cvlan_dataplane::tenant_tun`).

use crate::{dp_err, err, event_sink, js_events, worker_stats, Result, WorkerStatsJs};
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
    device: Option<Device>,
    tun_name: String,
    handoff_id: u32,
}

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
                    .map_err(|e| err("CVLAN_ERR_INVALID_ARG", format!("subnets[{i}]: {e}")))
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
            handoff_id: crate::translation::register(&device),
            device: Some(device),
            tun_name: options.tun_name,
        })
    }

    #[napi(getter)]
    pub fn tun_name(&self) -> String {
        self.tun_name.clone()
    }

    #[napi(getter)]
    pub fn closed(&self) -> bool {
        self.device.is_none()
    }

    /// Id of this device for `setTranslation`.
    #[napi(getter)]
    pub fn handoff_id(&self) -> u32 {
        self.handoff_id
    }

    #[napi]
    pub fn stats(&self) -> Result<Vec<WorkerStatsJs>> {
        let dev = self.device.as_ref().ok_or_else(|| {
            err(
                "CVLAN_ERR_CLOSED",
                format!("device {} is closed", self.tun_name),
            )
        })?;
        Ok(worker_stats(dev))
    }

    /// Stops the workers and removes the TUN device. Idempotent; also run by the finalizer.
    #[napi]
    pub fn close(&mut self) {
        crate::translation::unregister(self.handoff_id);
        if let Some(mut d) = self.device.take() {
            d.stop();
        }
    }
}

impl Drop for TenantTunDevice {
    fn drop(&mut self) {
        crate::translation::unregister(self.handoff_id);
    }
}
