//! The data plane's end of the charon plugin connection: a unix-socket server.
//!
//! One plugin connection is served at a time; a newer connection replaces the older one
//! (charon restarted, or the plugin reconnected). Requests are dispatched to an
//! [`SaBackend`] in the connection's thread; [`CharonHandle`] queues IKE packets and expire
//! events for whichever connection is current.
//!
//! Workers call [`CharonHandle::send_ike`] on their packet path, so it never blocks: it puts
//! the frame into a bounded outbox (or refuses it, counted, when full) and a writer thread
//! drains the outbox into the connection. A stopped or slow charon only fills the outbox; the
//! connection is kept, and frames queued while no charon is connected are delivered to the
//! next one.

use std::collections::VecDeque;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::protocol::{
    self, AddSa, BadFrame, Event, Expire, Frame, IkePacket, Policy, PolicyId, Reply, Request,
    Response, SaId, SaStats, Status, UpdateSa, PROTOCOL_VERSION,
};

/// What the data plane does for charon. Called from the connection thread, one call at a time.
/// Errors are reported to charon as the status of the response.
pub trait SaBackend: Send {
    /// Reserves an inbound SPI (RFC 4303 section 2.1: 1..=255 are reserved).
    fn get_spi(&mut self, src: SocketAddr, dst: SocketAddr, proto: u8) -> Result<u32, Status>;
    /// IPComp is not carried by the data plane.
    fn get_cpi(&mut self, _src: SocketAddr, _dst: SocketAddr) -> Result<u16, Status> {
        Err(Status::NotSupported)
    }
    fn add_sa(&mut self, sa: AddSa) -> Result<(), Status>;
    fn update_sa(&mut self, update: &UpdateSa) -> Result<(), Status>;
    fn query_sa(&mut self, id: &SaId) -> Result<SaStats, Status>;
    fn del_sa(&mut self, id: &SaId) -> Result<(), Status>;
    fn flush_sas(&mut self) -> Result<(), Status>;
    fn add_policy(&mut self, policy: Policy) -> Result<(), Status>;
    /// Seconds since the policy last matched, `None` if never.
    fn query_policy(&mut self, _id: &PolicyId) -> Result<Option<u32>, Status> {
        Err(Status::NotSupported)
    }
    fn del_policy(&mut self, policy: &Policy) -> Result<(), Status>;
    fn flush_policies(&mut self) -> Result<(), Status>;
    /// charon's own sockets carry no data-plane traffic, so there is nothing to exempt.
    fn bypass_socket(&mut self, _family: u8) -> Result<(), Status> {
        Ok(())
    }
    /// charon expects ESP-in-UDP on `port`.
    fn enable_udp_decap(&mut self, _family: u8, _port: u16) -> Result<(), Status> {
        Ok(())
    }
    /// charon wants this IKE message sent from `packet.src` to `packet.dst`.
    fn send_ike(&mut self, packet: IkePacket);
    /// A plugin connection completed HELLO; everything installed before belongs to an older
    /// connection that the plugin is about to replay or flush.
    fn connected(&mut self, _peer_name: &str) {}
}

/// A backend shared with other threads (the data plane's workers, tests) behind a mutex.
impl<T: SaBackend> SaBackend for Arc<Mutex<T>> {
    fn get_spi(&mut self, src: SocketAddr, dst: SocketAddr, proto: u8) -> Result<u32, Status> {
        lock(self).get_spi(src, dst, proto)
    }
    fn get_cpi(&mut self, src: SocketAddr, dst: SocketAddr) -> Result<u16, Status> {
        lock(self).get_cpi(src, dst)
    }
    fn add_sa(&mut self, sa: AddSa) -> Result<(), Status> {
        lock(self).add_sa(sa)
    }
    fn update_sa(&mut self, update: &UpdateSa) -> Result<(), Status> {
        lock(self).update_sa(update)
    }
    fn query_sa(&mut self, id: &SaId) -> Result<SaStats, Status> {
        lock(self).query_sa(id)
    }
    fn del_sa(&mut self, id: &SaId) -> Result<(), Status> {
        lock(self).del_sa(id)
    }
    fn flush_sas(&mut self) -> Result<(), Status> {
        lock(self).flush_sas()
    }
    fn add_policy(&mut self, policy: Policy) -> Result<(), Status> {
        lock(self).add_policy(policy)
    }
    fn query_policy(&mut self, id: &PolicyId) -> Result<Option<u32>, Status> {
        lock(self).query_policy(id)
    }
    fn del_policy(&mut self, policy: &Policy) -> Result<(), Status> {
        lock(self).del_policy(policy)
    }
    fn flush_policies(&mut self) -> Result<(), Status> {
        lock(self).flush_policies()
    }
    fn bypass_socket(&mut self, family: u8) -> Result<(), Status> {
        lock(self).bypass_socket(family)
    }
    fn enable_udp_decap(&mut self, family: u8, port: u16) -> Result<(), Status> {
        lock(self).enable_udp_decap(family, port)
    }
    fn send_ike(&mut self, packet: IkePacket) {
        lock(self).send_ike(packet)
    }
    fn connected(&mut self, peer_name: &str) {
        lock(self).connected(peer_name)
    }
}

/// Where diagnostics go; defaults to standard error.
pub type LogFn = Arc<dyn Fn(&str) + Send + Sync>;

/// Bounds of the outbox: enough for a burst of IKE_SA_INITs and the rekeys of many tunnels
/// while charon is restarted (about a second), small enough that a charon gone for good costs
/// little memory.
pub const OUTBOX_FRAMES: usize = 1024;
pub const OUTBOX_BYTES: usize = 4 << 20;

struct Current {
    generation: u64,
    stream: Arc<UnixStream>,
    /// Serializes whole frames from the writer thread and the connection thread (responses).
    write: Arc<Mutex<()>>,
}

/// Encoded frames waiting for charon, oldest first.
#[derive(Default)]
struct Outbox {
    frames: VecDeque<Vec<u8>>,
    bytes: usize,
}

struct Shared {
    backend: Mutex<Box<dyn SaBackend>>,
    current: Mutex<Option<Current>>,
    generation: AtomicU64,
    stop: AtomicBool,
    instance: u64,
    log: LogFn,
    outbox: Mutex<Outbox>,
    /// Signalled when a frame is queued, a connection is established, or on stop.
    outbox_ready: Condvar,
    /// Frames refused because the outbox was full.
    outbox_dropped: AtomicU64,
}

/// Why a frame could not be queued for charon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueError {
    /// Larger than the protocol allows.
    TooLarge,
    /// The outbox is full (charon stopped, slow or gone for longer than the outbox lasts).
    Full,
}

fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic in a backend call must not take the server down with it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Pushes events to the connected plugin. Cheap to clone.
#[derive(Clone)]
pub struct CharonHandle {
    shared: Arc<Shared>,
}

impl CharonHandle {
    /// Queues a datagram received on UDP 500, or on 4500 starting with the non-ESP marker
    /// (marker kept: charon strips it), for charon. Never blocks.
    pub fn send_ike(&self, packet: IkePacket) -> Result<(), QueueError> {
        if packet.data.len() > protocol::MAX_IKE_PACKET {
            return Err(QueueError::TooLarge);
        }
        self.push(&Frame::Event(Event::IkePacket(packet)))
    }

    /// Queues the news that an SA reached its soft (rekey) or hard lifetime. Never blocks.
    pub fn expire(&self, expire: Expire) -> Result<(), QueueError> {
        self.push(&Frame::Event(Event::Expire(expire)))
    }

    pub fn is_connected(&self) -> bool {
        lock(&self.shared.current).is_some()
    }

    /// Frames waiting in the outbox.
    pub fn queued(&self) -> usize {
        lock(&self.shared.outbox).frames.len()
    }

    /// Frames refused so far because the outbox was full.
    pub fn queue_dropped(&self) -> u64 {
        self.shared.outbox_dropped.load(Ordering::Relaxed)
    }

    fn push(&self, frame: &Frame) -> Result<(), QueueError> {
        let bytes = protocol::encode(frame);
        let mut outbox = lock(&self.shared.outbox);
        if outbox.frames.len() >= OUTBOX_FRAMES || outbox.bytes + bytes.len() > OUTBOX_BYTES {
            drop(outbox);
            self.shared.outbox_dropped.fetch_add(1, Ordering::Relaxed);
            return Err(QueueError::Full);
        }
        outbox.bytes += bytes.len();
        outbox.frames.push_back(bytes);
        drop(outbox);
        self.shared.outbox_ready.notify_one();
        Ok(())
    }
}

impl Shared {
    /// Writes one frame to the current connection, or only to connection `generation` if given
    /// (a response must never reach a newer connection than the one that asked). Blocks while
    /// charon does not read (stopped): only the writer thread and the connection thread call
    /// this, never a worker.
    fn write(&self, generation: Option<u64>, bytes: &[u8]) -> io::Result<()> {
        let (gen, stream, write) = match lock(&self.current).as_ref() {
            Some(c) if generation.is_none() || generation == Some(c.generation) => {
                (c.generation, c.stream.clone(), c.write.clone())
            }
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "charon not connected",
                ))
            }
        };
        let result = {
            let _frame = lock(&write);
            (&*stream).write_all(bytes)
        };
        if result.is_err() {
            // A half-written frame desynchronizes the stream: drop the connection.
            let _ = stream.shutdown(Shutdown::Both);
            let mut current = lock(&self.current);
            if current.as_ref().is_some_and(|c| c.generation == gen) {
                *current = None;
            }
        }
        result
    }

    /// Wakes the writer thread, without losing the wake-up to a writer about to wait: it
    /// checks its condition while holding the outbox lock.
    fn wake_writer(&self) {
        drop(lock(&self.outbox));
        self.outbox_ready.notify_all();
    }
}

/// Body of the writer thread: moves frames from the outbox to the current connection, oldest
/// first. A frame whose write failed (the connection died) stays first in line for the next
/// connection.
fn writer_loop(shared: Arc<Shared>) {
    loop {
        let frame = {
            let mut outbox = lock(&shared.outbox);
            loop {
                if shared.stop.load(Ordering::SeqCst) {
                    return;
                }
                if !outbox.frames.is_empty() && lock(&shared.current).is_some() {
                    break;
                }
                outbox = shared
                    .outbox_ready
                    .wait(outbox)
                    .unwrap_or_else(|e| e.into_inner());
            }
            let frame = outbox.frames.pop_front().unwrap_or_default();
            outbox.bytes -= frame.len();
            frame
        };
        if shared.write(None, &frame).is_err() {
            let mut outbox = lock(&shared.outbox);
            outbox.bytes += frame.len();
            outbox.frames.push_front(frame);
        }
    }
}

/// The listening server. Dropping it stops accepting, closes the connection and removes the
/// socket file.
pub struct CharonServer {
    path: PathBuf,
    shared: Arc<Shared>,
    /// The listening socket, shut down to wake `accept()` (the path may no longer exist).
    listener_fd: std::os::fd::RawFd,
    accept: Option<JoinHandle<()>>,
    writer: Option<JoinHandle<()>>,
}

impl CharonServer {
    /// Listens on `path` (parent directory created, a stale socket file replaced, mode 0600:
    /// whoever can connect can install SAs).
    pub fn bind(
        path: impl AsRef<Path>,
        backend: Box<dyn SaBackend>,
        log: Option<LogFn>,
    ) -> io::Result<(CharonServer, CharonHandle)> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        if let Ok(meta) = fs::symlink_metadata(&path) {
            if meta.file_type().is_socket() {
                fs::remove_file(&path)?;
            }
        }
        let listener = UnixListener::bind(&path)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
        let shared = Arc::new(Shared {
            backend: Mutex::new(backend),
            current: Mutex::new(None),
            generation: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            instance: random_instance(),
            log: log.unwrap_or_else(|| Arc::new(|m: &str| eprintln!("cvlan charon-ipc: {m}"))),
            outbox: Mutex::new(Outbox::default()),
            outbox_ready: Condvar::new(),
            outbox_dropped: AtomicU64::new(0),
        });
        let listener_fd = listener.as_raw_fd();
        let writer_shared = shared.clone();
        let writer = thread::Builder::new()
            .name("charon-write".into())
            .spawn(move || writer_loop(writer_shared))?;
        let accept_shared = shared.clone();
        let accept = match thread::Builder::new()
            .name("charon-accept".into())
            .spawn(move || accept_loop(listener, accept_shared))
        {
            Ok(t) => t,
            Err(e) => {
                shared.stop.store(true, Ordering::SeqCst);
                shared.wake_writer();
                let _ = writer.join();
                return Err(e);
            }
        };
        let handle = CharonHandle {
            shared: shared.clone(),
        };
        Ok((
            CharonServer {
                path,
                shared,
                listener_fd,
                accept: Some(accept),
                writer: Some(writer),
            },
            handle,
        ))
    }

    /// Identifies this data-plane instance in HELLO, so the plugin can tell a reconnect to the
    /// same process (state kept) from a restarted one (state to replay).
    pub fn instance(&self) -> u64 {
        self.shared.instance
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for CharonServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(c) = lock(&self.shared.current).take() {
            // Also ends a write blocked on a stopped charon.
            let _ = c.stream.shutdown(Shutdown::Both);
        }
        self.shared.wake_writer();
        // accept() has no timeout; shutdown(2) on the listening socket makes it return
        // (EINVAL) without touching the filesystem, where the socket's path may be gone.
        // The accept thread owns the descriptor and closes it only after it returned.
        // SAFETY: plain syscall on a descriptor still open (its owner is joined below).
        unsafe { libc::shutdown(self.listener_fd, libc::SHUT_RDWR) };
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        if let Some(t) = self.writer.take() {
            let _ = t.join();
        }
        let _ = fs::remove_file(&self.path);
    }
}

fn random_instance() -> u64 {
    let mut b = [0u8; 8];
    if fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_ok()
    {
        return u64::from_ne_bytes(b);
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    t ^ (std::process::id() as u64) << 32
}

fn accept_loop(listener: UnixListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let stream = match stream {
            Ok(s) => s,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                // Only a shut-down listener gives EINVAL; that is the stop signal.
                if !shared.stop.load(Ordering::SeqCst) {
                    (shared.log)(&format!("accept failed: {e}"));
                }
                return;
            }
            Err(e) => {
                (shared.log)(&format!("accept failed: {e}"));
                thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let s = shared.clone();
        let spawned = thread::Builder::new()
            .name("charon-conn".into())
            .spawn(move || {
                if let Err(e) = serve(stream, &s) {
                    (s.log)(&format!("connection closed: {e}"));
                }
            });
        if let Err(e) = spawned {
            (shared.log)(&format!("cannot start connection thread: {e}"));
        }
    }
}

fn read_frame(stream: &mut UnixStream) -> io::Result<Result<Frame, BadFrame>> {
    let mut word = [0u8; 4];
    stream.read_exact(&mut word)?;
    // A bad length leaves no way to find the next frame: the connection ends.
    let len = protocol::frame_len(word)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body)?;
    Ok(protocol::decode(&body))
}

fn respond(shared: &Shared, generation: u64, id: u32, resp: Response) -> io::Result<()> {
    shared.write(
        Some(generation),
        &protocol::encode(&Frame::Response { id, resp }),
    )
}

fn serve(mut stream: UnixStream, shared: &Shared) -> io::Result<()> {
    // HELLO first, before this connection may replace the current one.
    let (id, version, name) = match read_frame(&mut stream)? {
        Ok(Frame::Request {
            id,
            req: Request::Hello { version, name },
        }) => (id, version, name),
        Ok(other) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("expected HELLO, got {:?}", frame_kind(&other)),
            ))
        }
        Err(bad) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad HELLO: {bad:?}"),
            ))
        }
    };
    let hello = |status| Response {
        kind: protocol::MsgType::Hello,
        status,
        reply: Reply::Hello {
            version: PROTOCOL_VERSION,
            instance: shared.instance,
        },
    };
    if version != PROTOCOL_VERSION {
        let _ = stream.write_all(&protocol::encode(&Frame::Response {
            id,
            resp: hello(Status::VersionMismatch),
        }));
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "plugin {name:?} speaks protocol {version}, we speak {PROTOCOL_VERSION}: refused"
            ),
        ));
    }
    let generation = shared.generation.fetch_add(1, Ordering::SeqCst) + 1;
    let write = Arc::new(Mutex::new(()));
    {
        // HELLO's answer is the first frame: the writer thread waits for this lock.
        let _first = lock(&write);
        {
            let mut current = lock(&shared.current);
            if let Some(old) = current.take() {
                (shared.log)("a new plugin connection replaces the current one");
                let _ = old.stream.shutdown(Shutdown::Both);
            }
            *current = Some(Current {
                generation,
                stream: Arc::new(stream.try_clone()?),
                write: write.clone(),
            });
        }
        lock(&shared.backend).connected(&name);
        let answered = stream.write_all(&protocol::encode(&Frame::Response {
            id,
            resp: hello(Status::Ok),
        }));
        if let Err(e) = answered {
            let mut current = lock(&shared.current);
            if current.as_ref().is_some_and(|c| c.generation == generation) {
                *current = None;
            }
            return Err(e);
        }
    }
    (shared.log)(&format!("plugin {name:?} connected"));
    // Frames queued while no charon was connected go out now, after HELLO's answer.
    shared.wake_writer();

    let result = dispatch_loop(&mut stream, shared, generation);
    let mut current = lock(&shared.current);
    if current.as_ref().is_some_and(|c| c.generation == generation) {
        *current = None;
    }
    result
}

fn dispatch_loop(stream: &mut UnixStream, shared: &Shared, generation: u64) -> io::Result<()> {
    loop {
        match read_frame(stream)? {
            Ok(Frame::Request { id, req }) => {
                let resp = handle_request(shared, req);
                respond(shared, generation, id, resp)?;
            }
            Ok(Frame::Event(Event::IkePacket(p))) => lock(&shared.backend).send_ike(p),
            Ok(other) => (shared.log)(&format!("unexpected {:?} ignored", frame_kind(&other))),
            Err(bad) => {
                (shared.log)(&format!(
                    "refused message type {:#06x} id {}: {}",
                    bad.kind, bad.id, bad.error
                ));
                let is_request = bad.kind & protocol::RESPONSE_BIT == 0;
                if let (true, Some(kind)) = (is_request, protocol::MsgType::from_u16(bad.kind)) {
                    if bad.id != 0 {
                        let resp = Response {
                            kind,
                            status: Status::Invalid,
                            reply: Reply::None,
                        };
                        respond(shared, generation, bad.id, resp)?;
                    }
                }
            }
        }
    }
}

fn frame_kind(f: &Frame) -> &'static str {
    match f {
        Frame::Request { .. } => "request",
        Frame::Response { .. } => "response",
        Frame::Event(Event::IkePacket(_)) => "IKE_PACKET",
        Frame::Event(Event::Expire(_)) => "EXPIRE",
    }
}

fn handle_request(shared: &Shared, req: Request) -> Response {
    let kind = req.msg_type();
    let mut b = lock(&shared.backend);
    let result = match req {
        Request::Hello { .. } => Err(Status::Invalid),
        Request::GetSpi { src, dst, proto } => b.get_spi(src, dst, proto).map(Reply::Spi),
        Request::GetCpi { src, dst } => b.get_cpi(src, dst).map(Reply::Cpi),
        Request::AddSa(sa) => b.add_sa(*sa).map(|_| Reply::None),
        Request::UpdateSa(u) => b.update_sa(&u).map(|_| Reply::None),
        Request::QuerySa { id, .. } => b.query_sa(&id).map(Reply::SaStats),
        Request::DelSa { id, .. } => b.del_sa(&id).map(|_| Reply::None),
        Request::FlushSas => b.flush_sas().map(|_| Reply::None),
        Request::AddPolicy(p) => b.add_policy(*p).map(|_| Reply::None),
        Request::QueryPolicy(id) => b.query_policy(&id).map(Reply::PolicyIdle),
        Request::DelPolicy(p) => b.del_policy(&p).map(|_| Reply::None),
        Request::FlushPolicies => b.flush_policies().map(|_| Reply::None),
        Request::BypassSocket { family } => b.bypass_socket(family).map(|_| Reply::None),
        Request::EnableUdpDecap { family, port } => {
            b.enable_udp_decap(family, port).map(|_| Reply::None)
        }
    };
    match result {
        Ok(reply) => Response {
            kind,
            status: Status::Ok,
            reply,
        },
        // Ok is not an error: a backend returning it is treated as a failure.
        Err(Status::Ok) => Response {
            kind,
            status: Status::Failed,
            reply: Reply::None,
        },
        Err(status) => Response {
            kind,
            status,
            reply: Reply::None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::charon::protocol::{Mode, MsgType, SaFlags, SecretKey, PROTO_ESP};
    use std::collections::HashMap;
    use std::sync::mpsc;

    #[derive(Default)]
    struct Mem {
        next_spi: u32,
        sas: HashMap<u32, AddSa>,
        sent: Vec<IkePacket>,
    }

    impl SaBackend for Mem {
        fn get_spi(&mut self, _: SocketAddr, _: SocketAddr, _: u8) -> Result<u32, Status> {
            self.next_spi += 1;
            Ok(0xc000_0000 + self.next_spi)
        }
        fn add_sa(&mut self, sa: AddSa) -> Result<(), Status> {
            self.sas.insert(sa.id.spi, sa);
            Ok(())
        }
        fn update_sa(&mut self, _: &UpdateSa) -> Result<(), Status> {
            Err(Status::NotSupported)
        }
        fn query_sa(&mut self, id: &SaId) -> Result<SaStats, Status> {
            let sa = self.sas.get(&id.spi).ok_or(Status::NotFound)?;
            Ok(SaStats {
                bytes: sa.enc_key.len() as u64,
                packets: 1,
                idle_secs: None,
            })
        }
        fn del_sa(&mut self, id: &SaId) -> Result<(), Status> {
            self.sas.remove(&id.spi).map(|_| ()).ok_or(Status::NotFound)
        }
        fn flush_sas(&mut self) -> Result<(), Status> {
            self.sas.clear();
            Ok(())
        }
        fn add_policy(&mut self, _: Policy) -> Result<(), Status> {
            Ok(())
        }
        fn del_policy(&mut self, _: &Policy) -> Result<(), Status> {
            Ok(())
        }
        fn flush_policies(&mut self) -> Result<(), Status> {
            Ok(())
        }
        fn send_ike(&mut self, packet: IkePacket) {
            self.sent.push(packet);
        }
    }

    fn tmp_socket(tag: &str) -> PathBuf {
        std::env::temp_dir().join(format!(
            "cvlan-srv-{tag}-{}-{}",
            std::process::id(),
            random_instance()
        ))
    }

    fn quiet() -> Option<LogFn> {
        Some(Arc::new(|_: &str| {}))
    }

    struct Client(UnixStream);

    impl Client {
        fn connect(path: &Path) -> Client {
            let s = UnixStream::connect(path).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            Client(s)
        }
        fn send(&mut self, f: &Frame) {
            self.0.write_all(&protocol::encode(f)).unwrap();
        }
        fn recv(&mut self) -> Frame {
            read_frame(&mut self.0).unwrap().unwrap()
        }
        fn call(&mut self, id: u32, req: Request) -> Response {
            self.send(&Frame::Request { id, req });
            match self.recv() {
                Frame::Response { id: got, resp } => {
                    assert_eq!(got, id);
                    resp
                }
                other => panic!("expected a response, got {other:?}"),
            }
        }
        fn hello(&mut self, version: u16) -> Response {
            self.call(
                1,
                Request::Hello {
                    version,
                    name: "test".into(),
                },
            )
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn add_sa(spi: u32) -> AddSa {
        AddSa {
            id: SaId {
                src: addr("192.0.2.2:4500"),
                dst: addr("192.0.2.1:4500"),
                spi,
                proto: PROTO_ESP,
                mark: Default::default(),
                if_id: 7,
            },
            reqid: 1,
            mode: Mode::Tunnel,
            src_ts: vec![],
            dst_ts: vec![],
            interface: None,
            lifetime: Default::default(),
            enc_alg: 20,
            enc_key: SecretKey::new(vec![9; 36]),
            int_alg: 0,
            int_key: SecretKey::default(),
            replay_window: 32,
            tfc: 0,
            ipcomp: 0,
            cpi: 0,
            hw_offload: 0,
            sa_mark: Default::default(),
            copy_dscp: 0,
            flags: SaFlags {
                inbound: true,
                ..Default::default()
            },
        }
    }

    #[test]
    fn requests_reach_the_backend_and_events_reach_the_plugin() {
        let mem = Arc::new(Mutex::new(Mem::default()));
        let path = tmp_socket("rr");
        let (server, handle) = CharonServer::bind(&path, Box::new(mem.clone()), quiet()).unwrap();
        let mut c = Client::connect(&path);
        let hello = c.hello(PROTOCOL_VERSION);
        assert_eq!(hello.status, Status::Ok);
        assert_eq!(
            hello.reply,
            Reply::Hello {
                version: PROTOCOL_VERSION,
                instance: server.instance()
            }
        );

        let spi = match c.call(
            2,
            Request::GetSpi {
                src: addr("192.0.2.2:500"),
                dst: addr("192.0.2.1:500"),
                proto: PROTO_ESP,
            },
        ) {
            Response {
                status: Status::Ok,
                reply: Reply::Spi(spi),
                ..
            } => spi,
            other => panic!("{other:?}"),
        };
        assert_eq!(spi, 0xc000_0001);
        let sa = add_sa(spi);
        let id = sa.id;
        assert_eq!(c.call(3, Request::AddSa(Box::new(sa))).status, Status::Ok);
        let q = c.call(4, Request::QuerySa { id, cpi: 0 });
        assert_eq!(
            q.reply,
            Reply::SaStats(SaStats {
                bytes: 36,
                packets: 1,
                idle_secs: None
            })
        );
        assert_eq!(
            c.call(
                5,
                Request::GetCpi {
                    src: id.src,
                    dst: id.dst
                }
            )
            .status,
            Status::NotSupported
        );
        assert_eq!(c.call(6, Request::DelSa { id, cpi: 0 }).status, Status::Ok);
        assert_eq!(
            c.call(7, Request::DelSa { id, cpi: 0 }).status,
            Status::NotFound
        );

        let out = IkePacket {
            src: addr("192.0.2.1:500"),
            dst: addr("192.0.2.2:500"),
            data: vec![1, 2, 3],
        };
        c.send(&Frame::Event(Event::IkePacket(out.clone())));
        // The reply to a later request proves the event before it was processed.
        assert_eq!(c.call(8, Request::FlushSas).status, Status::Ok);
        assert_eq!(lock(&mem).sent, vec![out]);

        let inbound = IkePacket {
            src: addr("192.0.2.2:4500"),
            dst: addr("192.0.2.1:4500"),
            data: vec![7; 300],
        };
        handle.send_ike(inbound.clone()).unwrap();
        assert_eq!(c.recv(), Frame::Event(Event::IkePacket(inbound)));
        let exp = Expire {
            proto: PROTO_ESP,
            spi,
            dst: id.dst,
            hard: false,
        };
        handle.expire(exp).unwrap();
        assert_eq!(c.recv(), Frame::Event(Event::Expire(exp)));
        drop(server);
        assert!(!path.exists());
    }

    #[test]
    fn version_mismatch_is_refused() {
        let path = tmp_socket("vm");
        let (_server, handle) =
            CharonServer::bind(&path, Box::new(Mem::default()), quiet()).unwrap();
        let mut c = Client::connect(&path);
        let resp = c.hello(PROTOCOL_VERSION + 1);
        assert_eq!(resp.status, Status::VersionMismatch);
        assert!(matches!(
            resp.reply,
            Reply::Hello {
                version: PROTOCOL_VERSION,
                ..
            }
        ));
        let mut rest = Vec::new();
        assert_eq!(
            c.0.read_to_end(&mut rest).unwrap(),
            0,
            "connection must be closed"
        );
        assert!(!handle.is_connected());
    }

    #[test]
    fn corrupt_requests_get_invalid_and_bad_lengths_close() {
        let path = tmp_socket("bad");
        let (_server, handle) =
            CharonServer::bind(&path, Box::new(Mem::default()), quiet()).unwrap();
        let mut c = Client::connect(&path);
        assert_eq!(c.hello(PROTOCOL_VERSION).status, Status::Ok);
        // GET_SPI with a family byte of 9.
        let mut bad = protocol::encode(&Frame::Request {
            id: 42,
            req: Request::GetSpi {
                src: addr("192.0.2.2:500"),
                dst: addr("192.0.2.1:500"),
                proto: 50,
            },
        });
        bad[12] = 9;
        c.0.write_all(&bad).unwrap();
        match c.recv() {
            Frame::Response { id: 42, resp } => {
                assert_eq!((resp.kind, resp.status), (MsgType::GetSpi, Status::Invalid))
            }
            other => panic!("{other:?}"),
        }
        // Still serving after a refused message.
        assert_eq!(c.call(43, Request::FlushPolicies).status, Status::Ok);
        assert!(handle.is_connected());
        c.0.write_all(&u32::MAX.to_be_bytes()).unwrap();
        let mut rest = Vec::new();
        assert_eq!(c.0.read_to_end(&mut rest).unwrap(), 0);
        thread::sleep(Duration::from_millis(50));
        assert!(!handle.is_connected());
    }

    #[test]
    fn a_new_connection_replaces_the_old() {
        let path = tmp_socket("new");
        let (_server, handle) =
            CharonServer::bind(&path, Box::new(Mem::default()), quiet()).unwrap();
        let mut a = Client::connect(&path);
        assert_eq!(a.hello(PROTOCOL_VERSION).status, Status::Ok);
        let mut b = Client::connect(&path);
        assert_eq!(b.hello(PROTOCOL_VERSION).status, Status::Ok);
        let mut rest = Vec::new();
        assert_eq!(
            a.0.read_to_end(&mut rest).unwrap(),
            0,
            "old connection closed"
        );
        let (tx, rx) = mpsc::channel();
        let h = handle.clone();
        thread::spawn(move || {
            tx.send(h.expire(Expire {
                proto: 50,
                spi: 1,
                dst: addr("192.0.2.1:0"),
                hard: true,
            }))
            .unwrap()
        });
        rx.recv_timeout(Duration::from_secs(5)).unwrap().unwrap();
        assert!(matches!(
            b.recv(),
            Frame::Event(Event::Expire(Expire { spi: 1, .. }))
        ));
    }

    #[test]
    fn requests_before_hello_are_refused() {
        let path = tmp_socket("pre");
        let (_server, handle) =
            CharonServer::bind(&path, Box::new(Mem::default()), quiet()).unwrap();
        let mut c = Client::connect(&path);
        c.send(&Frame::Request {
            id: 1,
            req: Request::FlushSas,
        });
        let mut rest = Vec::new();
        assert_eq!(c.0.read_to_end(&mut rest).unwrap(), 0);
        assert!(!handle.is_connected());
        // Kept for the next charon, not lost.
        handle
            .send_ike(IkePacket {
                src: addr("192.0.2.1:500"),
                dst: addr("192.0.2.2:500"),
                data: vec![],
            })
            .unwrap();
        assert_eq!(handle.queued(), 1);
    }

    fn ike(n: u32, len: usize) -> IkePacket {
        let mut data = vec![0u8; len];
        data[..4].copy_from_slice(&n.to_be_bytes());
        IkePacket {
            src: addr("192.0.2.2:500"),
            dst: addr("192.0.2.1:500"),
            data,
        }
    }

    fn seq_of(f: Frame) -> u32 {
        match f {
            Frame::Event(Event::IkePacket(p)) => {
                u32::from_be_bytes(p.data[..4].try_into().unwrap())
            }
            other => panic!("expected an IKE packet, got {other:?}"),
        }
    }

    #[test]
    fn a_stopped_charon_neither_blocks_the_sender_nor_costs_the_link() {
        let path = tmp_socket("stop");
        let (_server, handle) =
            CharonServer::bind(&path, Box::new(Mem::default()), quiet()).unwrap();
        let mut c = Client::connect(&path);
        assert_eq!(c.hello(PROTOCOL_VERSION).status, Status::Ok);
        // The client reads nothing now, like a SIGSTOPped charon: the socket buffer fills, the
        // writer thread blocks, then the outbox fills and refuses.
        let started = std::time::Instant::now();
        // Which frames were accepted: once the outbox is full, the writer may still free a slot
        // now and then (a frame finishing into the socket buffer), so they need not be a prefix.
        let mut accepted: Vec<u32> = Vec::new();
        let mut refused = 0u32;
        for n in 0..2000u32 {
            match handle.send_ike(ike(n, 60_000)) {
                Ok(()) => accepted.push(n),
                Err(e) => {
                    assert_eq!(e, QueueError::Full);
                    refused += 1;
                }
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "send_ike blocked: {:?}",
            started.elapsed()
        );
        assert!(
            refused > 0 && !accepted.is_empty(),
            "{} {refused}",
            accepted.len()
        );
        assert_eq!(handle.queue_dropped(), u64::from(refused));
        thread::sleep(Duration::from_millis(2500));
        assert!(handle.is_connected(), "a slow reader must keep its link");
        // "SIGCONT": every accepted frame arrives, in order; the link works afterwards.
        for n in accepted {
            assert_eq!(seq_of(c.recv()), n);
        }
        handle.send_ike(ike(7777, 100)).unwrap();
        assert_eq!(seq_of(c.recv()), 7777);
        assert_eq!(c.call(9, Request::FlushSas).status, Status::Ok);
    }

    #[test]
    fn packets_queued_while_charon_is_away_reach_the_next_one_after_hello() {
        let path = tmp_socket("away");
        let (_server, handle) =
            CharonServer::bind(&path, Box::new(Mem::default()), quiet()).unwrap();
        let mut a = Client::connect(&path);
        assert_eq!(a.hello(PROTOCOL_VERSION).status, Status::Ok);
        drop(a);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while handle.is_connected() && std::time::Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        assert!(!handle.is_connected());
        for n in 0..10 {
            handle.send_ike(ike(n, 200)).unwrap();
        }
        assert_eq!(handle.queued(), 10);
        let mut b = Client::connect(&path);
        // HELLO's answer comes first, then the queued packets in order.
        assert_eq!(b.hello(PROTOCOL_VERSION).status, Status::Ok);
        for n in 0..10 {
            assert_eq!(seq_of(b.recv()), n);
        }
        assert_eq!(handle.queued(), 0);
    }

    #[test]
    fn stops_promptly_when_the_socket_path_is_gone() {
        let dir = tmp_socket("gone");
        let path = dir.join("charon.sock");
        let (server, _handle) =
            CharonServer::bind(&path, Box::new(Mem::default()), quiet()).unwrap();
        let mut c = Client::connect(&path);
        assert_eq!(c.hello(PROTOCOL_VERSION).status, Status::Ok);
        fs::remove_dir_all(&dir).unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            drop(server);
            tx.send(()).unwrap();
        });
        rx.recv_timeout(Duration::from_secs(5))
            .expect("the server must stop without its socket file");
        let mut rest = Vec::new();
        assert_eq!(c.0.read_to_end(&mut rest).unwrap(), 0, "connection closed");
    }
}
