//! What every device class of the binding shares: the running device until `close`, its TUN
//! name, its handoff id, statistics, and closing exactly once (explicitly or when the
//! finalizer drops the object). `device_class!` adds the common JavaScript members to a class
//! that holds an [`Opened`] in a field named `opened`.

use crate::{err, worker_stats, Code, Result, WorkerStatsJs};
use cvlan_dataplane::Device;

/// A started device and what must live exactly as long as it does (`T`: e.g. IPsec's charon
/// link, closed right after the workers stop).
pub(crate) struct Opened<T = ()> {
    running: Option<(Device, T)>,
    tun_name: String,
    /// Under which id handoffs name the device (`crate::handoff`); `None` for devices
    /// that take no part in the handoff.
    handoff_id: Option<u32>,
}

impl<T> Opened<T> {
    /// Takes over a started device; `handoff` registers it as a handoff target.
    pub fn new(device: Device, companion: T, tun_name: String, handoff: bool) -> Opened<T> {
        Opened {
            handoff_id: handoff.then(|| crate::handoff::register(&device)),
            running: Some((device, companion)),
            tun_name,
        }
    }

    pub fn device(&self) -> Result<&Device> {
        match &self.running {
            Some((d, _)) => Ok(d),
            None => Err(closed(&self.tun_name)),
        }
    }

    pub fn device_mut(&mut self) -> Result<&mut Device> {
        match &mut self.running {
            Some((d, _)) => Ok(d),
            None => Err(closed(&self.tun_name)),
        }
    }

    /// The device while it runs, without an error when it does not (getters).
    pub fn running(&self) -> Option<&Device> {
        self.running.as_ref().map(|(d, _)| d)
    }

    pub fn tun_name(&self) -> String {
        self.tun_name.clone()
    }

    pub fn closed(&self) -> bool {
        self.running.is_none()
    }

    pub fn handoff_id(&self) -> u32 {
        self.handoff_id.unwrap_or(0)
    }

    pub fn stats(&self) -> Result<Vec<WorkerStatsJs>> {
        Ok(worker_stats(self.device()?))
    }

    /// Leaves handoffs, stops the workers and removes the TUN device, then drops the
    /// companion. Idempotent.
    pub fn close(&mut self) {
        if let Some(id) = self.handoff_id {
            crate::handoff::unregister(id);
        }
        if let Some((mut d, companion)) = self.running.take() {
            d.stop();
            drop(companion);
        }
    }
}

fn closed(tun_name: &str) -> napi::Error<crate::Status> {
    err(Code::Closed, format!("device {tun_name} is closed"))
}

impl<T> Drop for Opened<T> {
    fn drop(&mut self) {
        // The finalizer: the device stops when dropped; handoffs must forget it first.
        if let Some(id) = self.handoff_id {
            crate::handoff::unregister(id);
        }
    }
}

/// The members every device class has in JavaScript: `tunName`, `closed`, `stats()`, `close()`
/// and, for classes handoffs can name, `handoffId`.
macro_rules! device_class {
    ($class:ident) => {
        #[napi_derive::napi]
        impl $class {
            #[napi(getter)]
            pub fn tun_name(&self) -> String {
                self.opened.tun_name()
            }

            #[napi(getter)]
            pub fn closed(&self) -> bool {
                self.opened.closed()
            }

            /// Counters of each worker.
            #[napi]
            pub fn stats(&self) -> $crate::Result<Vec<$crate::WorkerStatsJs>> {
                self.opened.stats()
            }

            /// Stops the workers and removes the TUN device. Idempotent; also run by the
            /// finalizer.
            #[napi]
            pub fn close(&mut self) {
                self.opened.close()
            }
        }
    };
    ($class:ident, handoff) => {
        device_class!($class);

        #[napi_derive::napi]
        impl $class {
            /// Id of this device for `setHandoff`.
            #[napi(getter)]
            pub fn handoff_id(&self) -> u32 {
                self.opened.handoff_id()
            }
        }
    };
}

pub(crate) use device_class;
