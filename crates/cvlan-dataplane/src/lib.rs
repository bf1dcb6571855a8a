//! I/O half of cvlan-vrouter: TUN queues, batched UDP sockets and the worker threads that run
//! the packet pipelines. Protocol logic lives in `cvlan-proto` (sans-I/O); this crate owns file
//! descriptors, threads and the clock. It never depends on Node-API.

pub mod charon;
pub mod clock;
pub mod control;
pub mod counters;
pub mod device;
pub mod error;
pub mod ha;
pub mod handoff;
pub mod ipsec;
pub mod offload;
pub mod plain;
mod send;
pub mod spread;
mod sys;
pub mod tenant_tun;
pub mod trace;
pub mod transport;
pub mod tun;
pub mod tun_queues;
pub mod udp;
pub mod wireguard;
pub mod worker;

pub use device::{Device, DeviceConfig, WorkerStats};
pub use error::{Code, Error, Result};

/// Something a worker or device reports to the control plane (delivered off the hot path).
#[derive(Debug, Clone)]
pub enum Event {
    WorkerStarted {
        worker: usize,
    },
    WorkerStopped {
        worker: usize,
    },
    /// A worker's loop panicked and was restarted on the same queue and socket.
    WorkerRestarted {
        worker: usize,
        reason: String,
        restarts: u64,
    },
    /// A worker stopped for good (repeated panics or an I/O error on its epoll set).
    WorkerFailed {
        worker: usize,
        reason: String,
    },
    /// A worker's TUN queue cannot be read any more (the device was deleted, usually): the
    /// worker stops polling it and goes on with its sockets. Traffic to and from the TUN is lost.
    TunLost {
        worker: usize,
        device: String,
        reason: String,
    },
    /// The IPsec engine removed SAs on its own, not at charon's request (orphans of a
    /// restarted charon that were not replaced within the grace): one event per tunnel (if_id).
    SasRemoved {
        if_id: u32,
        spis: Vec<u32>,
        reason: String,
    },
}

/// Receiver of events; called from worker threads, so it must be cheap and thread-safe.
pub type EventSink = std::sync::Arc<dyn Fn(Event) + Send + Sync>;
