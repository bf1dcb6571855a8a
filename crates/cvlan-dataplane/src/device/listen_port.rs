//! Changing a port of a running device, as `wg set IF listen-port N` does on wireguard-go: every
//! worker gets a new TUN queue and new sockets on the new port, all opened (joined) before any
//! old one is closed (left), then the workers are replaced one by one on their own counters and
//! control. Peers learn the new port from the next datagram we send them (roaming): the
//! transport announces itself from the new port once before the old sockets close and once after
//! the last one closed, because an old worker may still send (a reply, an ACK) from the old port
//! in between, and a peer roams back to whatever it heard from last.

use super::{open_io, stop_worker, Device};
use crate::error::{Code, Error, Result};
use crate::udp;
use crate::worker::{self, WorkerArgs, WorkerIo};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

impl Device {
    /// Moves socket `sock` (an index into the device's ports) to `port` (0: a free one) and
    /// returns the port now bound. A port in use fails with `CVLAN_ERR_ADDR_IN_USE` and changes
    /// nothing. `announce` runs once the new sockets are bound and the transport's `Senders`
    /// send from them, before any old socket closes: a transport tells its peers there (what it
    /// sends makes them roam to the new port while the old one still receives), and once more
    /// after the last old socket closed (nothing sent from the old port can come after it).
    pub fn set_listen_port(&mut self, sock: usize, port: u16, announce: &dyn Fn()) -> Result<u16> {
        let Some(current) = self.listen.get(sock).copied() else {
            return Err(Error::new(
                Code::InvalidArg,
                format!(
                    "the device has {} UDP ports, no port {sock}",
                    self.listen.len()
                ),
            ));
        };
        if port != 0 && port == current.port() {
            return Ok(port);
        }
        let mut listen = self.listen.clone();
        listen[sock] = SocketAddr::new(current.ip(), port);
        if port != 0 {
            udp::check_port_free(listen[sock])?;
        }
        // Everything new is open before anything old closes; on error nothing changed.
        let mut ios: Vec<WorkerIo> = Vec::with_capacity(self.workers.len());
        for i in 0..self.workers.len() {
            let io = open_io(
                &self.cfg.tun_name,
                &listen,
                self.cfg.offload,
                self.raw.get(i),
            )?;
            if listen[sock].port() == 0 {
                let picked = io.udp[sock]
                    .local_port()
                    .map_err(|e| Error::os(Code::Socket, "getsockname", e))?;
                listen[sock].set_port(picked);
            }
            ios.push(io);
        }
        if let Some(senders) = &self.senders {
            let socks = ios[0]
                .udp
                .iter()
                .zip(listen.iter().map(|a| a.port()).chain([0]))
                .map(|(u, port)| u.try_clone().map(|c| (c, port)))
                .collect::<std::io::Result<Vec<_>>>()
                .map_err(|e| Error::os(Code::Socket, "dup", e))?;
            let tun = ios[0]
                .tun
                .try_clone()
                .map_err(|e| Error::os(Code::Tun, "dup TUN queue", e))?;
            senders.replace(socks, tun);
        }
        self.listen = listen;
        announce();
        for (index, io) in ios.into_iter().enumerate() {
            self.replace_worker(index, io)?;
        }
        announce();
        Ok(self.listen[sock].port())
    }

    /// Stops worker `index` and starts it again on `io`, with the same counters and control
    /// (worker 0's control is what the transport's `Senders` wake).
    fn replace_worker(&mut self, index: usize, io: WorkerIo) -> Result<()> {
        // Writes move to the new queue before the old one closes with its worker.
        let write = io
            .tun
            .try_clone()
            .map_err(|e| Error::os(Code::Tun, "dup TUN queue", e))?;
        self.tun_queues.set(index, write);
        let w = &mut self.workers[index];
        stop_worker(w);
        let control = w.control.clone();
        control.stop.store(false, Ordering::Release);
        let args = WorkerArgs {
            index,
            io,
            control,
            counters: self.counters[index].clone(),
            transport: self.transport.clone(),
            handoff: self.handoff.clone(),
            crew: self.crew.clone(),
            tun_queues: self.tun_queues.clone(),
            events: self.events.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("cvlan-w{index}"))
            .spawn(move || worker::run(args))
            .map_err(|e| Error::os(Code::Worker, "cannot spawn worker thread", e))?;
        self.workers[index].thread = Some(thread);
        Ok(())
    }
}
