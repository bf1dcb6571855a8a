//! A data-plane device: one multi-queue TUN interface, one or more UDP ports and N worker
//! threads, each owning one TUN queue and one `SO_REUSEPORT` socket per port. Start, resize and
//! stop never leak a thread, a file descriptor or the TUN device (it vanishes with its last
//! queue).

use crate::control::Control;
use crate::counters::{CounterSnapshot, WorkerCounters};
use crate::error::{Code, Error, Result};
use crate::handoff::{Handoff, Rule, Target};
use crate::spread::Crew;
use crate::transport::{Senders, SendersInner, Transport};
use crate::tun::{self, TunQueue};
use crate::tun_queues::TunQueues;
use crate::udp::{self, UdpSocket};
use crate::worker::{self, WorkerArgs, WorkerIo};
use crate::{Event, EventSink};
use arc_swap::ArcSwapOption;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

mod listen_port;

/// Upper bound on workers (the kernel allows 256 TUN queues; more threads than that is a typo).
pub const MAX_WORKERS: usize = 64;

#[derive(Debug, Clone)]
pub struct DeviceConfig {
    /// TUN interface name (1-15 characters); must not exist yet.
    pub tun_name: String,
    /// TUN MTU in bytes.
    pub mtu: u32,
    /// Address to bind; `None` = all addresses (dual-stack where possible).
    pub listen: Option<IpAddr>,
    /// UDP ports, one socket each per worker; the index is the socket id transports use
    /// (`Packet::sock`). 0 picks a free port (see [`Device::listen_ports`]).
    pub listen_ports: Vec<u16>,
    /// Number of worker threads (= TUN queues; each has one socket per port).
    pub workers: usize,
    /// Segmentation offload: TUN with `IFF_VNET_HDR` + TSO/USO (super-packets split in the
    /// worker, TCP segments coalesced on the way back) and UDP GSO/GRO, each where the kernel
    /// allows. `false` keeps one syscall per packet on TUN and one message per datagram.
    pub offload: bool,
    /// Also open raw IP-protocol-50 sockets on `listen` (ESP without UDP), one per worker as
    /// the socket after the ports, each receiving its shard of the SPIs. Where the host refuses
    /// them the device starts without (see [`Device::raw_esp`]).
    pub raw_esp: bool,
}

impl Default for DeviceConfig {
    fn default() -> Self {
        DeviceConfig {
            tun_name: String::new(),
            mtu: 1420,
            listen: None,
            listen_ports: vec![0],
            workers: 1,
            offload: true,
            raw_esp: false,
        }
    }
}

/// Most ports a device takes (IPsec needs two: IKE and NAT-T).
pub const MAX_PORTS: usize = 8;

struct WorkerHandle {
    control: Arc<Control>,
    thread: Option<JoinHandle<()>>,
}

/// Per-worker statistics as the control plane sees them.
#[derive(Debug, Clone)]
pub struct WorkerStats {
    pub index: usize,
    pub active: bool,
    pub counters: CounterSnapshot,
}

pub struct Device {
    cfg: DeviceConfig,
    /// Bound addresses, one per port (ports resolved).
    listen: Vec<SocketAddr>,
    transport: Arc<dyn Transport>,
    events: EventSink,
    /// Counters of every worker ever started, so totals survive a shrink.
    counters: Vec<Arc<WorkerCounters>>,
    workers: Vec<WorkerHandle>,
    /// The transport's senders, closed on stop so the ports are free again.
    senders: Option<Arc<SendersInner>>,
    /// What the handoff stage hands packets to, shared with every worker.
    handoff: Arc<ArcSwapOption<Handoff>>,
    /// The workers as helpers of each other's crypto (`crate::spread`).
    crew: Arc<Crew>,
    /// The workers' TUN queues, for writing each flow on one (`crate::tun_queues`).
    tun_queues: Arc<TunQueues>,
    /// The raw ESP sockets, one per worker (after the ports), each receiving its shard of the
    /// SPIs (`UdpSocket::shard_esp`); empty without raw ESP.
    raw: Vec<UdpSocket>,
    /// Why `raw_esp` was asked for but is not available.
    raw_error: Option<String>,
}

fn validate(cfg: &DeviceConfig) -> Result<()> {
    tun::validate_name(&cfg.tun_name)?;
    if cfg.workers == 0 || cfg.workers > MAX_WORKERS {
        return Err(Error::new(
            Code::InvalidArg,
            format!(
                "workers must be between 1 and {MAX_WORKERS}, got {}",
                cfg.workers
            ),
        ));
    }
    // No ports: a TUN-only device (a tenant's local network), fed by other devices' workers.
    if cfg.listen_ports.len() > MAX_PORTS {
        return Err(Error::new(
            Code::InvalidArg,
            format!(
                "a device takes at most {MAX_PORTS} UDP ports, got {}",
                cfg.listen_ports.len()
            ),
        ));
    }
    for (i, p) in cfg.listen_ports.iter().enumerate() {
        if *p != 0 && cfg.listen_ports[..i].contains(p) {
            return Err(Error::new(
                Code::InvalidArg,
                format!("UDP port {p} is listed twice"),
            ));
        }
    }
    if !(576..=65535).contains(&cfg.mtu) {
        return Err(Error::new(
            Code::InvalidArg,
            format!("mtu must be 576..65535, got {}", cfg.mtu),
        ));
    }
    Ok(())
}

impl Device {
    /// Creates the TUN device and sockets, then starts the workers. On any failure everything
    /// opened so far is closed again before the error returns.
    pub fn start(
        cfg: DeviceConfig,
        transport: Arc<dyn Transport>,
        events: EventSink,
    ) -> Result<Device> {
        validate(&cfg)?;
        if tun::if_index(&cfg.tun_name).is_some() {
            return Err(Error::new(
                Code::TunBusy,
                format!(
                    "interface {:?} already exists; choose another tun name",
                    cfg.tun_name
                ),
            ));
        }
        let mut listen: Vec<SocketAddr> = cfg
            .listen_ports
            .iter()
            .map(|p| udp::resolve_listen(cfg.listen, *p))
            .collect();
        for a in listen.iter().filter(|a| a.port() != 0) {
            udp::check_port_free(*a)?;
        }
        let (raw, raw_error) = match (cfg.raw_esp, cfg.listen) {
            (false, _) => (Vec::new(), None),
            (true, None) => (
                Vec::new(),
                Some("raw ESP needs a listen address".to_string()),
            ),
            (true, Some(local)) => match (0..cfg.workers)
                .map(|i| UdpSocket::raw_esp(local, i, cfg.workers))
                .collect::<Result<Vec<_>>>()
            {
                Ok(v) => (v, None),
                Err(e) => (Vec::new(), Some(e.to_string())),
            },
        };
        let mut ios = Vec::with_capacity(cfg.workers);
        for i in 0..cfg.workers {
            let io = open_io(&cfg.tun_name, &listen, cfg.offload, raw.get(i))?;
            for (i, a) in listen.iter_mut().enumerate() {
                if a.port() == 0 {
                    // The first socket picked a port; the others must join it.
                    let port = io.udp[i]
                        .local_port()
                        .map_err(|e| Error::os(Code::Socket, "getsockname", e))?;
                    a.set_port(port);
                }
            }
            ios.push(io);
        }
        tun::set_mtu_up(&cfg.tun_name, cfg.mtu)?;
        let mut dev = Device {
            cfg,
            listen,
            transport,
            events,
            counters: Vec::new(),
            workers: Vec::new(),
            senders: None,
            handoff: Arc::new(ArcSwapOption::empty()),
            crew: Arc::new(Crew::default()),
            tun_queues: Arc::new(TunQueues::default()),
            raw,
            raw_error,
        };
        // Senders are dups of worker 0's sockets and wake worker 0; the transport gets them
        // before any worker runs, so it never sees a packet without a way to answer.
        let control0 = new_control()?;
        let clones = ios[0]
            .udp
            .iter()
            .zip(dev.listen.iter().map(|a| a.port()).chain([0]))
            .map(|(u, port)| u.try_clone().map(|c| (c, port)))
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|e| Error::os(Code::Socket, "dup", e))?;
        let tun = ios[0]
            .tun
            .try_clone()
            .map_err(|e| Error::os(Code::Tun, "dup TUN queue", e))?;
        let senders = Senders::new(clones, Some(tun), control0.clone());
        dev.senders = Some(senders.inner());
        dev.transport.attach(senders);
        let mut control0 = Some(control0);
        for io in ios {
            let control = match control0.take() {
                Some(c) => c,
                None => new_control()?,
            };
            dev.spawn(io, control)?;
        }
        Ok(dev)
    }

    fn spawn(&mut self, io: WorkerIo, control: Arc<Control>) -> Result<()> {
        let index = self.workers.len();
        let counters = match self.counters.get(index) {
            Some(c) => c.clone(),
            None => {
                let c = Arc::new(WorkerCounters::default());
                self.counters.push(c.clone());
                c
            }
        };
        let write = io
            .tun
            .try_clone()
            .map_err(|e| Error::os(Code::Tun, "dup TUN queue", e))?;
        self.tun_queues.set(index, write);
        let args = WorkerArgs {
            index,
            io,
            control: control.clone(),
            counters,
            transport: self.transport.clone(),
            handoff: self.handoff.clone(),
            crew: self.crew.clone(),
            tun_queues: self.tun_queues.clone(),
            events: self.events.clone(),
        };
        self.crew.join(index, control.clone());
        let thread = std::thread::Builder::new()
            .name(format!("cvlan-w{index}"))
            .spawn(move || worker::run(args))
            .map_err(|e| Error::os(Code::Worker, "cannot spawn worker thread", e))?;
        self.workers.push(WorkerHandle {
            control,
            thread: Some(thread),
        });
        Ok(())
    }

    pub fn config(&self) -> &DeviceConfig {
        &self.cfg
    }

    /// The first port (0 for a device without ports).
    pub fn listen_port(&self) -> u16 {
        self.listen.first().map_or(0, |a| a.port())
    }

    pub fn listen_ports(&self) -> Vec<u16> {
        self.listen.iter().map(|a| a.port()).collect()
    }

    pub fn worker_count(&self) -> usize {
        self.workers.len()
    }

    /// Grows or shrinks the worker pool. New workers attach extra queues to the existing TUN
    /// device and extra sockets to the port, so traffic never stops while resizing.
    pub fn set_workers(&mut self, n: usize) -> Result<()> {
        validate(&DeviceConfig {
            workers: n,
            ..self.cfg.clone()
        })?;
        let raw_local = self.cfg.listen.filter(|_| !self.raw.is_empty());
        while self.workers.len() < n {
            let index = self.workers.len();
            if let Some(local) = raw_local {
                self.raw.push(UdpSocket::raw_esp(local, index, n)?);
            }
            let io = open_io(
                &self.cfg.tun_name,
                &self.listen,
                self.cfg.offload,
                self.raw.get(index),
            )?;
            self.spawn(io, new_control()?)?;
        }
        while self.workers.len() > n {
            self.crew.truncate(self.workers.len() - 1);
            // Before the worker stops: its queue must not outlive it (`crate::tun_queues`).
            self.tun_queues.truncate(self.workers.len() - 1);
            if let Some(mut w) = self.workers.pop() {
                stop_worker(&mut w);
            }
            self.raw.truncate(self.workers.len());
        }
        // The SPI shards follow the worker count (a shard's SAs move to another worker).
        for (i, r) in self.raw.iter().enumerate() {
            r.shard_esp(i, n)
                .map_err(|e| Error::os(Code::Socket, "raw ESP socket filter", e))?;
        }
        self.cfg.workers = n;
        Ok(())
    }

    /// Whether the workers have a raw ESP socket (`Err`: it was asked for, and why it is not).
    pub fn raw_esp(&self) -> std::result::Result<bool, String> {
        match (self.raw.is_empty(), &self.raw_error) {
            (false, _) => Ok(true),
            (true, Some(e)) => Err(e.clone()),
            (true, None) => Ok(false),
        }
    }

    /// This device as a handoff target for `tenant` (0: any) with `rules` (see
    /// [`crate::handoff`]); `None` once stopped.
    pub fn handoff_target(&self, tenant: u32, rules: Vec<Rule>) -> Option<Target> {
        Some(Target {
            transport: self.transport.clone(),
            senders: Senders::from_inner(self.senders.clone()?),
            mtu: self.cfg.mtu as usize,
            tenant,
            rules,
        })
    }

    /// What the workers do with decapsulated packets other devices route (`None`: nothing, every
    /// inner packet goes to the TUN). Takes effect with the next batch.
    pub fn set_handoff(&self, handoff: Option<Handoff>) {
        self.handoff.store(handoff.map(Arc::new));
    }

    /// The cell [`Device::set_handoff`] writes, for a control plane that keeps it apart from
    /// the device.
    pub fn handoff_cell(&self) -> Arc<ArcSwapOption<Handoff>> {
        self.handoff.clone()
    }

    pub fn stats(&self) -> Vec<WorkerStats> {
        self.counters
            .iter()
            .enumerate()
            .map(|(index, c)| WorkerStats {
                index,
                active: index < self.workers.len()
                    && self.workers[index]
                        .thread
                        .as_ref()
                        .is_some_and(|t| !t.is_finished()),
                counters: c.snapshot(),
            })
            .collect()
    }

    /// Test hook: makes worker `index` panic at its next wake-up.
    pub fn inject_panic(&self, index: usize) -> Result<()> {
        let w = self
            .workers
            .get(index)
            .ok_or_else(|| Error::new(Code::InvalidArg, format!("no worker {index}")))?;
        w.control.inject_panic.store(true, Ordering::Release);
        w.control.wake.notify();
        Ok(())
    }

    /// Stops and joins every worker; the TUN device disappears with the last queue.
    pub fn stop(&mut self) {
        self.tun_queues.truncate(0);
        for w in &self.workers {
            w.control.stop.store(true, Ordering::Release);
            w.control.wake.notify();
        }
        for mut w in self.workers.drain(..) {
            stop_worker(&mut w);
        }
        self.handoff.store(None);
        if let Some(s) = self.senders.take() {
            s.close();
        }
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.stop();
    }
}

fn stop_worker(w: &mut WorkerHandle) {
    w.control.stop.store(true, Ordering::Release);
    w.control.wake.notify();
    if let Some(t) = w.thread.take() {
        let _ = t.join();
    }
}

fn new_control() -> Result<Arc<Control>> {
    Ok(Arc::new(
        Control::new().map_err(|e| Error::os(Code::Worker, "eventfd", e))?,
    ))
}

fn open_io(
    tun_name: &str,
    listen: &[SocketAddr],
    offload: bool,
    raw: Option<&UdpSocket>,
) -> Result<WorkerIo> {
    let tun: TunQueue = tun::open_queue(tun_name, offload)?;
    let mut udp = listen
        .iter()
        .map(|a| UdpSocket::bind_reuseport(*a, offload))
        .collect::<Result<Vec<_>>>()?;
    if let Some(r) = raw {
        udp.push(
            r.try_clone()
                .map_err(|e| Error::os(Code::Socket, "dup raw ESP socket", e))?,
        );
    }
    Ok(WorkerIo { tun, udp })
}

/// Convenience for callers that want no events.
pub fn no_events() -> EventSink {
    Arc::new(|_: Event| {})
}
