//! The sync channel's thread. One loop, in order: accept or dial → Noise handshake → for the
//! life of the connection: read and apply frames, relay datagrams, and at every interval send
//! the heartbeat and (active) new sessions, removals and counters; (standby) acks go out as
//! frames are applied. Any bad frame ends the connection (it is counted and reported); the
//! loop then reconnects. Both nodes listen and dial; only the connection from the lower node id
//! to the higher one is kept, so there is one.

use super::frame::{self, Cipher, FrameError, FrameReader, Handshake, Message, WgCounter};
use super::{wireguard as wgha, HaEvent, Role, Shared};
use super::{PEER_ACTIVE, PEER_NONE, PEER_STANDBY};
use crate::clock;
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A handshake that takes longer than this is abandoned.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
/// Between connection attempts.
const REDIAL: Duration = Duration::from_secs(1);
/// Sync intervals after which a keypair the standby did not acknowledge is sent again.
const RESEND_AFTER_INTERVALS: u32 = 10;
/// A write that blocks longer than this ends the connection (the peer stopped reading).
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

fn now_ms() -> u64 {
    clock::now().as_millis() as u64
}

/// The peer is gone after this long without an authenticated frame.
fn dead_after(interval: Duration) -> Duration {
    (interval * 10).max(Duration::from_secs(1))
}

pub(super) fn run(s: Arc<Shared>, listener: TcpListener, relay: Option<UdpSocket>) {
    let _ = listener.set_nonblocking(true);
    if let Some(r) = &relay {
        let _ = r.set_nonblocking(true);
    }
    // Learned from the first handshake: whether this node is the one that dials.
    let mut peer_id: Option<u8> = None;
    let mut last_dial: Option<Instant> = None;
    while !s.closing.load(Relaxed) {
        let mut conn = None;
        if let Ok((stream, _)) = listener.accept() {
            conn = Some((stream, false));
        } else if peer_id.is_none_or(|p| s.cfg.node_id < p)
            && last_dial.is_none_or(|t| t.elapsed() >= REDIAL)
        {
            last_dial = Some(Instant::now());
            if let Ok(stream) = TcpStream::connect_timeout(&s.cfg.peer, REDIAL) {
                conn = Some((stream, true));
            }
        }
        match conn {
            Some((stream, initiator)) => match handshake(&s, &stream, initiator) {
                Ok(((cipher, rd), id, role, generation)) => {
                    peer_id = Some(id);
                    // Keep only the lower id's dialled connection.
                    if initiator != (s.cfg.node_id < id) {
                        continue;
                    }
                    serve(&s, stream, cipher, rd, id, role, generation, relay.as_ref());
                }
                Err(e) => reject(&s, &e),
            },
            None => {
                drain_relay(relay.as_ref());
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Without a connection, relay datagrams have nowhere to go.
fn drain_relay(relay: Option<&UdpSocket>) {
    if let Some(r) = relay {
        let mut buf = [0u8; 2048];
        while r.recv_from(&mut buf).is_ok() {}
    }
}

fn reject(s: &Shared, e: &FrameError) {
    // Two nodes that dial each other at once each wait for an answer the other, busy dialling,
    // does not give: that times out, and refuses nothing.
    if matches!(e, FrameError::Io(_)) {
        return;
    }
    match e {
        FrameError::Forged | FrameError::Handshake(_) => {
            s.rejected_forged.fetch_add(1, Relaxed);
        }
        FrameError::Replayed { .. } => {
            s.rejected_replayed.fetch_add(1, Relaxed);
        }
        FrameError::Malformed(_) | FrameError::Truncated | FrameError::Oversized(_) => {
            s.rejected_malformed.fetch_add(1, Relaxed);
        }
        _ => {}
    }
    s.emit(HaEvent::Rejected {
        reason: e.to_string(),
    });
}

fn read_frame(stream: &mut TcpStream, rd: &mut FrameReader) -> Result<Vec<u8>, FrameError> {
    let mut buf = [0u8; 4096];
    loop {
        if let Some(f) = rd.next_frame()? {
            return Ok(f);
        }
        let n = stream
            .read(&mut buf)
            .map_err(|e| FrameError::Io(e.to_string()))?;
        if n == 0 {
            return Err(FrameError::Io("connection closed".into()));
        }
        rd.push(&buf[..n]);
    }
}

fn hello(s: &Shared) -> Message {
    Message::Hello {
        node_id: s.cfg.node_id,
        generation: s.generation.load(Relaxed),
        role: s.role(),
    }
}

/// The connection's cipher and its reader, with whatever arrived behind the peer's hello: the
/// responder starts sending (its snapshot) the moment it has answered, so one read can carry
/// the answer and the first frames together.
type Session = (Cipher, FrameReader);

fn handshake(
    s: &Shared,
    stream: &TcpStream,
    initiator: bool,
) -> Result<(Session, u8, Role, u64), FrameError> {
    let io = |e: std::io::Error| FrameError::Io(e.to_string());
    stream.set_nonblocking(false).map_err(io)?;
    stream
        .set_read_timeout(Some(HANDSHAKE_TIMEOUT))
        .map_err(io)?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT)).map_err(io)?;
    let _ = stream.set_nodelay(true);
    let mut st = stream;
    let mut hs = Handshake::new(&s.cfg.key, initiator)?;
    let mut rd = FrameReader::default();
    let theirs = if initiator {
        st.write_all(&frame::frame(&hs.write(&hello(s))?))
            .map_err(io)?;
        hs.read(&read_frame(&mut st.try_clone().map_err(io)?, &mut rd)?)?
    } else {
        let m = hs.read(&read_frame(&mut st.try_clone().map_err(io)?, &mut rd)?)?;
        st.write_all(&frame::frame(&hs.write(&hello(s))?))
            .map_err(io)?;
        m
    };
    let Message::Hello {
        node_id,
        generation,
        role,
    } = theirs
    else {
        return Err(FrameError::Malformed("expected hello"));
    };
    if node_id == s.cfg.node_id || node_id == 0 {
        return Err(FrameError::Handshake(format!(
            "peer node id {node_id} is invalid or equals ours"
        )));
    }
    Ok(((hs.into_cipher()?, rd), node_id, role, generation))
}

/// The state of one live connection.
struct Conn<'a> {
    s: &'a Shared,
    stream: TcpStream,
    cipher: Cipher,
    /// Receiver indices the peer has been sent, and when (active).
    sent: HashMap<u32, Instant>,
    /// Receiver indices the peer acknowledged (active).
    acked: HashSet<u32>,
    /// Exhausted keypairs already reported.
    exhausted: HashSet<u32>,
    snapshot_sent: bool,
    /// ESP SAs and policies sent and acknowledged.
    esp: super::esp::EspSync,
}

impl Conn<'_> {
    fn send(&mut self, m: &Message) -> Result<(), FrameError> {
        let body = self.cipher.seal(m)?;
        write_all(&mut self.stream, &frame::frame(&body))
            .map_err(|e| FrameError::Io(format!("write: {e}")))?;
        self.s.frames_sent.fetch_add(1, Relaxed);
        Ok(())
    }

    /// The interval's output: heartbeat, and as active the state changes and counters.
    fn tick(&mut self) -> Result<(), FrameError> {
        let s = self.s;
        let role = s.role();
        self.send(&Message::State {
            generation: s.generation.load(Relaxed),
            role,
        })?;
        if role != Role::Active {
            self.snapshot_sent = false;
            self.sent.clear();
            self.acked.clear();
            self.esp.reset();
            return Ok(());
        }
        let mut live = HashSet::new();
        for wg in s.engines() {
            let counters = wgha::counters(&wg);
            // New keypairs, and keypairs the standby has not acknowledged for a while (it could
            // not install them yet: its configuration lagged, or it attached its engine late).
            let now = Instant::now();
            let resend = s.cfg.sync_interval * RESEND_AFTER_INTERVALS;
            let mut new: Vec<u32> = counters
                .iter()
                .map(|c| c.index)
                .filter(|i| match self.sent.get(i) {
                    None => true,
                    Some(at) => !self.acked.contains(i) && now.duration_since(*at) >= resend,
                })
                .collect();
            new.sort_unstable();
            for r in wgha::records(&wg, &new) {
                self.send(&Message::WgSession(Box::new(r)))?;
            }
            for i in &new {
                self.sent.insert(*i, now);
            }
            for chunk in counters.chunks(frame::COUNTERS_PER_FRAME) {
                self.send(&Message::WgCounters(chunk.to_vec()))?;
            }
            live.extend(counters.iter().map(|c| c.index));
            for i in wgha::exhausted(&wg) {
                if self.exhausted.insert(i) {
                    s.lease_exhausted.fetch_add(1, Relaxed);
                    s.emit(HaEvent::LeaseExhausted { index: i });
                }
            }
        }
        let gone: Vec<u32> = self
            .sent
            .keys()
            .filter(|i| !live.contains(i))
            .copied()
            .collect();
        for i in gone {
            self.send(&Message::WgRemove { index: i })?;
            self.sent.remove(&i);
            self.acked.remove(&i);
            self.exhausted.remove(&i);
        }
        let mut esp = std::mem::take(&mut self.esp);
        let resend = s.cfg.sync_interval * RESEND_AFTER_INTERVALS;
        let r = esp.tick(s, resend, &mut |m| self.send(m));
        self.esp = esp;
        r?;
        if !self.snapshot_sent {
            self.snapshot_sent = true;
            self.send(&Message::SnapshotDone {
                sessions: self.sent.len() as u32,
            })?;
        }
        s.synced_wg.store(self.acked.len() as u64, Relaxed);
        Ok(())
    }

    fn apply(
        &mut self,
        m: Message,
        relay: Option<(&UdpSocket, std::net::SocketAddr)>,
    ) -> Result<(), FrameError> {
        let s = self.s;
        let role = s.role();
        match m {
            Message::Hello { .. } => return Err(FrameError::Malformed("hello after handshake")),
            Message::State { generation, role } => {
                s.peer_generation.store(generation, Relaxed);
                s.peer_role.store(peer_role(role), Relaxed);
            }
            // Session state flows from the active to the standby only; an active node (split
            // brain) keeps its own.
            Message::WgSession(r) if role == Role::Standby => {
                let engines = s.engines();
                // Installed and stored under one lock: a takeover sees both or neither (an
                // installed keypair without its stored counter could not send after it).
                let mut stored = s.stored.lock().unwrap_or_else(|e| e.into_inner());
                if wgha::import(&engines, &r) {
                    let st = store(s, &mut stored, r.local_index, r.send_counter, r.recv_top);
                    drop(stored);
                    self.send(&Message::WgAck(vec![(r.local_index, st)]))?;
                }
            }
            Message::WgRemove { index } if role == Role::Standby => {
                wgha::remove(&s.engines(), index);
                let mut stored = s.stored.lock().unwrap_or_else(|e| e.into_inner());
                stored.remove(&index);
                s.synced_wg.store(stored.len() as u64, Relaxed);
            }
            Message::WgCounters(list) if role == Role::Standby => {
                let engines = s.engines();
                let mut acks = Vec::with_capacity(list.len());
                let mut stored = s.stored.lock().unwrap_or_else(|e| e.into_inner());
                for c in &list {
                    if apply_counter(&engines, c) {
                        acks.push((c.index, store(s, &mut stored, c.index, c.send, c.recv_top)));
                    }
                }
                drop(stored);
                self.send(&Message::WgAck(acks))?;
            }
            Message::WgAck(list) if role == Role::Active => {
                let engines = s.engines();
                for (index, acked) in list {
                    if wgha::ack(&engines, index, acked, s.cfg.lease) {
                        self.acked.insert(index);
                    }
                }
                // At once, not at the next tick: the standby counts a session as it stores it.
                s.synced_wg.store(self.acked.len() as u64, Relaxed);
            }
            Message::SnapshotDone { sessions } if role == Role::Standby => {
                s.emit(HaEvent::SnapshotDone { sessions });
            }
            Message::Relay(d) => {
                if let Some((sock, to)) = relay {
                    let _ = sock.send_to(&d, to);
                }
            }
            m @ (Message::EspSa(_)
            | Message::EspRemove { .. }
            | Message::EspCounters(_)
            | Message::EspAck(_)
            | Message::EspPolicy(_)
            | Message::EspPolicyRemove(_)) => {
                let mut esp = std::mem::take(&mut self.esp);
                let r = esp.apply(s, m, &mut |m| self.send(m));
                self.esp = esp;
                r?;
            }
            _ => {}
        }
        Ok(())
    }
}

fn apply_counter(engines: &[Arc<crate::wireguard::WireGuard>], c: &WgCounter) -> bool {
    wgha::sync_counter(engines, c)
}

/// Stores a session's counters on the standby (only forward); returns the stored send counter,
/// which is what the standby acknowledges.
fn store(
    s: &Shared,
    stored: &mut HashMap<u32, super::Stored>,
    index: u32,
    send: u64,
    recv_top: Option<u64>,
) -> u64 {
    let e = stored.entry(index).or_default();
    e.send = super::lease::store(e.send, send);
    e.recv_top = e.recv_top.max(recv_top);
    let v = e.send;
    s.synced_wg.store(stored.len() as u64, Relaxed);
    v
}

/// Writes on the non-blocking stream, waiting for room at most WRITE_TIMEOUT in all.
fn write_all(stream: &mut TcpStream, mut data: &[u8]) -> std::io::Result<()> {
    let deadline = Instant::now() + WRITE_TIMEOUT;
    while !data.is_empty() {
        match stream.write(data) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(std::io::ErrorKind::TimedOut.into());
                }
                let mut fd = libc::pollfd {
                    fd: stream.as_raw_fd(),
                    events: libc::POLLOUT,
                    revents: 0,
                };
                // SAFETY: one valid pollfd for the duration of the call.
                unsafe { libc::poll(&mut fd, 1, left.as_millis().max(1) as libc::c_int) };
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn peer_role(r: Role) -> u8 {
    match r {
        Role::Standby => PEER_STANDBY,
        Role::Active => PEER_ACTIVE,
    }
}

#[allow(clippy::too_many_arguments)]
fn serve(
    s: &Shared,
    stream: TcpStream,
    cipher: Cipher,
    rd: FrameReader,
    id: u8,
    role: Role,
    generation: u64,
    relay: Option<&UdpSocket>,
) {
    if stream.set_nonblocking(true).is_err() {
        return;
    }
    s.peer_generation.store(generation, Relaxed);
    s.peer_role.store(peer_role(role), Relaxed);
    s.peer_connected.store(true, Relaxed);
    s.last_rx_ms.store(now_ms().max(1), Relaxed);
    s.emit(HaEvent::PeerUp {
        node_id: id,
        role,
        generation,
    });
    let mut c = Conn {
        s,
        stream,
        cipher,
        sent: HashMap::new(),
        acked: HashSet::new(),
        exhausted: HashSet::new(),
        snapshot_sent: false,
        esp: Default::default(),
    };
    let reason = serve_loop(&mut c, rd, relay);
    s.peer_connected.store(false, Relaxed);
    s.peer_role.store(PEER_NONE, Relaxed);
    let _ = c.stream.shutdown(std::net::Shutdown::Both);
    if let Err(e) = &reason {
        if matches!(
            e,
            FrameError::Forged
                | FrameError::Replayed { .. }
                | FrameError::Malformed(_)
                | FrameError::Oversized(_)
                | FrameError::Truncated
        ) {
            reject(s, e);
        }
    }
    s.emit(HaEvent::PeerDown {
        reason: match reason {
            Ok(()) => "closed".into(),
            Err(e) => e.to_string(),
        },
    });
}

fn serve_loop(
    c: &mut Conn<'_>,
    mut rd: FrameReader,
    relay: Option<&UdpSocket>,
) -> Result<(), FrameError> {
    let s = c.s;
    let interval = s.cfg.sync_interval;
    let relay_to = relay.zip(s.cfg.relay.map(|r| r.1));
    let mut next_tick = Instant::now();
    let mut buf = vec![0u8; 65536];
    while !s.closing.load(Relaxed) {
        if Instant::now() >= next_tick {
            c.tick()?;
            next_tick = Instant::now() + interval;
        }
        let wait = next_tick.saturating_duration_since(Instant::now());
        let mut fds = vec![libc::pollfd {
            fd: c.stream.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        if let Some(r) = relay {
            fds.push(libc::pollfd {
                fd: r.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        let ms = wait.as_millis().clamp(1, 100) as libc::c_int;
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd structures for the call.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        // Frames from the peer (the first ones may have come with the handshake).
        loop {
            while let Some(body) = rd.next_frame()? {
                let m = c.cipher.open(&body)?;
                s.frames_received.fetch_add(1, Relaxed);
                s.last_rx_ms.store(now_ms().max(1), Relaxed);
                c.apply(m, relay_to)?;
            }
            match c.stream.read(&mut buf) {
                Ok(0) => return Err(FrameError::Io("peer closed the connection".into())),
                Ok(n) => rd.push(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(FrameError::Io(format!("read: {e}"))),
            }
        }
        // Datagrams from the local charon, to the peer's.
        if let Some(r) = relay {
            loop {
                match r.recv_from(&mut buf) {
                    Ok((n, _)) if n <= frame::MAX_RELAY => {
                        let d = buf[..n].to_vec();
                        c.send(&Message::Relay(d))?;
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }
        let last = s.last_rx_ms.load(Relaxed);
        if now_ms().saturating_sub(last) > dead_after(interval).as_millis() as u64 {
            return Err(FrameError::Io("peer silent".into()));
        }
    }
    Ok(())
}
