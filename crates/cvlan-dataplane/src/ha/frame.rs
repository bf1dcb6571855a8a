//! The sync channel's wire format, without I/O, in the order a connection uses it:
//! 1. `FrameReader` — splits the TCP byte stream into length-prefixed frames, bounded;
//! 2. `Handshake` — Noise `NNpsk0` keyed by the 32-byte sync key (the PSK authenticates both
//!    ends; the ephemerals give each connection fresh keys), carrying each side's `Hello`;
//! 3. `Cipher` — every later frame sealed with an explicit, strictly increasing nonce: a frame
//!    that fails authentication is forged, one that authenticates under a nonce already
//!    consumed is replayed; both are rejected and counted apart;
//! 4. `Message` — what the frames carry, encoded big-endian with bounds checks.
//!
//! Frame on the wire: `len: u32` then `len` bytes; a transport frame is `nonce: u64` followed
//! by the ciphertext and its 16-byte tag.

use crate::charon::protocol::{self as charon, PolicyId};
use crate::ha::Role;
use crate::ipsec::{EspCounter, EspPolicyRecord, EspSaRecord};
use cvlan_proto::wireguard::{SessionRecord, SessionSlot};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use zeroize::Zeroizing;

/// Noise's own bound on one message (Noise §3).
pub const MAX_NOISE_MESSAGE: usize = 65535;
/// Poly1305 tag.
pub const TAG_LEN: usize = 16;
/// Largest plaintext one frame may carry.
pub const MAX_PLAINTEXT: usize = MAX_NOISE_MESSAGE - TAG_LEN;
/// Largest frame body: nonce + Noise message.
pub const MAX_FRAME: usize = 8 + MAX_NOISE_MESSAGE;
const NOISE_PARAMS: &str = "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s";
/// Binds the handshake to this protocol and version (Noise §6 prologue).
const PROLOGUE: &[u8] = b"cvlan-vrouter ha sync 1";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// A length prefix beyond `MAX_FRAME`.
    Oversized(usize),
    /// A frame too short for what it must hold.
    Truncated,
    /// Authentication failed (wrong key, tampering).
    Forged,
    /// Authentic, but under a nonce already consumed.
    Replayed { nonce: u64, expected: u64 },
    /// Authentic but not a message this version understands.
    Malformed(&'static str),
    /// The Noise handshake failed (wrong key, tampering, wrong order).
    Handshake(String),
    /// The connection failed (closed, timed out, silent): nothing was refused.
    Io(String),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Oversized(n) => write!(f, "frame of {n} bytes exceeds {MAX_FRAME}"),
            FrameError::Truncated => write!(f, "truncated frame"),
            FrameError::Forged => write!(f, "frame failed authentication"),
            FrameError::Replayed { nonce, expected } => {
                write!(f, "replayed frame (nonce {nonce}, expected >= {expected})")
            }
            FrameError::Malformed(why) => write!(f, "malformed message: {why}"),
            FrameError::Handshake(why) => write!(f, "handshake failed: {why}"),
            FrameError::Io(why) => write!(f, "connection: {why}"),
        }
    }
}

/// Prefixes `body` with its length.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + body.len());
    v.extend_from_slice(&(body.len() as u32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// Reassembles frames from a byte stream. Holds at most one frame plus one read.
#[derive(Default)]
pub struct FrameReader {
    buf: Vec<u8>,
}

impl FrameReader {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame body, `Ok(None)` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes(self.buf[..4].try_into().expect("4 bytes")) as usize;
        if len > MAX_FRAME {
            return Err(FrameError::Oversized(len));
        }
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        let body = self.buf[4..4 + len].to_vec();
        self.buf.drain(..4 + len);
        Ok(Some(body))
    }
}

fn noise_err(e: snow::Error) -> FrameError {
    FrameError::Handshake(e.to_string())
}

/// One side of the Noise handshake. The initiator writes first.
pub struct Handshake {
    hs: snow::HandshakeState,
}

impl Handshake {
    pub fn new(key: &Zeroizing<[u8; 32]>, initiator: bool) -> Result<Handshake, FrameError> {
        let params = NOISE_PARAMS.parse().map_err(noise_err)?;
        let b = snow::Builder::new(params)
            .prologue(PROLOGUE)
            .psk(0, &key[..]);
        let hs = if initiator {
            b.build_initiator()
        } else {
            b.build_responder()
        }
        .map_err(noise_err)?;
        Ok(Handshake { hs })
    }

    /// The next handshake frame body carrying `hello`.
    pub fn write(&mut self, hello: &Message) -> Result<Vec<u8>, FrameError> {
        let payload = hello.encode();
        let mut out = vec![0u8; MAX_NOISE_MESSAGE];
        let n = self
            .hs
            .write_message(&payload, &mut out)
            .map_err(noise_err)?;
        out.truncate(n);
        Ok(out)
    }

    /// Reads the other side's handshake frame body; returns its `Hello`.
    pub fn read(&mut self, body: &[u8]) -> Result<Message, FrameError> {
        let mut out = vec![0u8; MAX_NOISE_MESSAGE];
        let n = self.hs.read_message(body, &mut out).map_err(|e| match e {
            snow::Error::Decrypt => FrameError::Forged,
            e => noise_err(e),
        })?;
        Message::decode(&out[..n])
    }

    pub fn into_cipher(self) -> Result<Cipher, FrameError> {
        Ok(Cipher {
            ts: self.hs.into_stateless_transport_mode().map_err(noise_err)?,
            send_nonce: 0,
            recv_next: 0,
        })
    }
}

/// The transport keys of one connection and its two nonce counters.
pub struct Cipher {
    ts: snow::StatelessTransportState,
    send_nonce: u64,
    recv_next: u64,
}

impl Cipher {
    /// Seals a message into a frame body (nonce + ciphertext).
    pub fn seal(&mut self, m: &Message) -> Result<Vec<u8>, FrameError> {
        self.seal_bytes(&Zeroizing::new(m.encode()))
    }

    /// Seals an encoded message (a peer of another version can send kinds this one does not
    /// know: the receiver must refuse them, see the tests).
    pub fn seal_bytes(&mut self, plain: &[u8]) -> Result<Vec<u8>, FrameError> {
        if plain.len() > MAX_PLAINTEXT {
            return Err(FrameError::Oversized(plain.len()));
        }
        let nonce = self.send_nonce;
        self.send_nonce += 1;
        let mut out = vec![0u8; 8 + plain.len() + TAG_LEN];
        out[..8].copy_from_slice(&nonce.to_be_bytes());
        let n = self
            .ts
            .write_message(nonce, plain, &mut out[8..])
            .map_err(noise_err)?;
        out.truncate(8 + n);
        Ok(out)
    }

    /// Opens a frame body: authenticates it, then refuses nonces already consumed.
    pub fn open(&mut self, body: &[u8]) -> Result<Message, FrameError> {
        if body.len() < 8 + TAG_LEN {
            return Err(FrameError::Truncated);
        }
        let nonce = u64::from_be_bytes(body[..8].try_into().expect("8 bytes"));
        let mut plain = Zeroizing::new(vec![0u8; body.len() - 8]);
        let n = self
            .ts
            .read_message(nonce, &body[8..], &mut plain)
            .map_err(|_| FrameError::Forged)?;
        if nonce < self.recv_next {
            return Err(FrameError::Replayed {
                nonce,
                expected: self.recv_next,
            });
        }
        self.recv_next = nonce + 1;
        Message::decode(&plain[..n])
    }
}

/// Send and receive counters of one WireGuard keypair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WgCounter {
    pub index: u32,
    pub send: u64,
    pub recv_top: Option<u64>,
}

/// What the sync channel carries.
#[derive(Debug, Clone)]
pub enum Message {
    /// Handshake payload of each side.
    Hello {
        node_id: u8,
        generation: u64,
        role: Role,
    },
    /// Heartbeat at every sync interval.
    State { generation: u64, role: Role },
    /// A keypair the active holds (snapshot and changes).
    WgSession(Box<SessionRecord>),
    /// A keypair the active dropped.
    WgRemove { index: u32 },
    /// Counters of live keypairs.
    WgCounters(Vec<WgCounter>),
    /// The standby stored these send counters: the active may send up to each plus the lease.
    WgAck(Vec<(u32, u64)>),
    /// Everything the active held at (re)connection has been sent.
    SnapshotDone { sessions: u32 },
    /// An opaque datagram for the other node's relay socket (charon's ha plugin).
    Relay(Vec<u8>),
    /// An ESP SA the active holds (snapshot and changes), keys included.
    EspSa(Box<EspSaRecord>),
    /// An ESP SA the active deleted.
    EspRemove { spi: u32 },
    /// Sequence numbers and replay-window tops of live SAs.
    EspCounters(Vec<EspCounter>),
    /// The standby stored these outbound sequence numbers: the active may send up to each
    /// plus the lease.
    EspAck(Vec<(u32, u64)>),
    /// An outbound policy the active holds.
    EspPolicy(Box<EspPolicyRecord>),
    /// An outbound policy the active removed.
    EspPolicyRemove(Box<PolicyId>),
}

const T_HELLO: u8 = 1;
const T_STATE: u8 = 2;
const T_WG_SESSION: u8 = 3;
const T_WG_REMOVE: u8 = 4;
const T_WG_COUNTERS: u8 = 5;
const T_WG_ACK: u8 = 6;
const T_SNAPSHOT_DONE: u8 = 7;
const T_RELAY: u8 = 8;
const T_ESP_SA: u8 = 9;
const T_ESP_REMOVE: u8 = 10;
const T_ESP_COUNTERS: u8 = 11;
const T_ESP_ACK: u8 = 12;
const T_ESP_POLICY: u8 = 13;
const T_ESP_POLICY_REMOVE: u8 = 14;

/// `WgCounter` entries per frame: 4 + 8 + 1 + 8 bytes each, with room to spare.
pub const COUNTERS_PER_FRAME: usize = 2048;
/// Largest relay datagram (what fits one frame).
pub const MAX_RELAY: usize = MAX_PLAINTEXT - 16;

fn role_byte(r: Role) -> u8 {
    match r {
        Role::Standby => 0,
        Role::Active => 1,
    }
}

fn slot_byte(s: SessionSlot) -> u8 {
    match s {
        SessionSlot::Current => 0,
        SessionSlot::Previous => 1,
        SessionSlot::Next => 2,
    }
}

fn put_addr(v: &mut Vec<u8>, a: Option<SocketAddr>) {
    match a {
        None => v.push(0),
        Some(SocketAddr::V4(a)) => {
            v.push(4);
            v.extend_from_slice(&a.ip().octets());
            v.extend_from_slice(&a.port().to_be_bytes());
        }
        Some(SocketAddr::V6(a)) => {
            v.push(6);
            v.extend_from_slice(&a.ip().octets());
            v.extend_from_slice(&a.port().to_be_bytes());
        }
    }
}

impl Message {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::new();
        match self {
            Message::Hello {
                node_id,
                generation,
                role,
            } => {
                v.push(T_HELLO);
                v.push(*node_id);
                v.extend_from_slice(&generation.to_be_bytes());
                v.push(role_byte(*role));
            }
            Message::State { generation, role } => {
                v.push(T_STATE);
                v.extend_from_slice(&generation.to_be_bytes());
                v.push(role_byte(*role));
            }
            Message::WgSession(r) => {
                v.push(T_WG_SESSION);
                v.extend_from_slice(&r.peer_public_key);
                v.extend_from_slice(&r.local_index.to_be_bytes());
                v.extend_from_slice(&r.remote_index.to_be_bytes());
                v.extend_from_slice(&r.send_key[..]);
                v.extend_from_slice(&r.recv_key[..]);
                v.extend_from_slice(&(r.age.as_millis() as u64).to_be_bytes());
                v.push(u8::from(r.initiator));
                v.push(slot_byte(r.slot));
                v.extend_from_slice(&r.send_counter.to_be_bytes());
                put_opt_u64(&mut v, r.recv_top);
                put_addr(&mut v, r.endpoint);
            }
            Message::WgRemove { index } => {
                v.push(T_WG_REMOVE);
                v.extend_from_slice(&index.to_be_bytes());
            }
            Message::WgCounters(list) => {
                v.push(T_WG_COUNTERS);
                v.extend_from_slice(&(list.len() as u32).to_be_bytes());
                for c in list {
                    v.extend_from_slice(&c.index.to_be_bytes());
                    v.extend_from_slice(&c.send.to_be_bytes());
                    put_opt_u64(&mut v, c.recv_top);
                }
            }
            Message::WgAck(list) => {
                v.push(T_WG_ACK);
                v.extend_from_slice(&(list.len() as u32).to_be_bytes());
                for (i, c) in list {
                    v.extend_from_slice(&i.to_be_bytes());
                    v.extend_from_slice(&c.to_be_bytes());
                }
            }
            Message::SnapshotDone { sessions } => {
                v.push(T_SNAPSHOT_DONE);
                v.extend_from_slice(&sessions.to_be_bytes());
            }
            Message::Relay(d) => {
                v.push(T_RELAY);
                v.extend_from_slice(d);
            }
            Message::EspSa(r) => {
                v.push(T_ESP_SA);
                v.extend_from_slice(&r.seq.to_be_bytes());
                put_opt_u64(&mut v, r.recv_top);
                // The plugin link's own encoding of `add_sa` (docs/charon-plugin-protocol.md).
                let req = charon::Request::AddSa(Box::new(r.sa.clone()));
                put_charon(&mut v, &req);
            }
            Message::EspRemove { spi } => {
                v.push(T_ESP_REMOVE);
                v.extend_from_slice(&spi.to_be_bytes());
            }
            Message::EspCounters(list) => {
                v.push(T_ESP_COUNTERS);
                v.extend_from_slice(&(list.len() as u32).to_be_bytes());
                for c in list {
                    v.extend_from_slice(&c.spi.to_be_bytes());
                    v.extend_from_slice(&c.seq.to_be_bytes());
                    put_opt_u64(&mut v, c.recv_top);
                }
            }
            Message::EspAck(list) => {
                v.push(T_ESP_ACK);
                v.extend_from_slice(&(list.len() as u32).to_be_bytes());
                for (spi, c) in list {
                    v.extend_from_slice(&spi.to_be_bytes());
                    v.extend_from_slice(&c.to_be_bytes());
                }
            }
            Message::EspPolicy(p) => {
                v.push(T_ESP_POLICY);
                v.extend_from_slice(&p.reqid.to_be_bytes());
                v.extend_from_slice(&p.rank.to_be_bytes());
                put_charon(
                    &mut v,
                    &charon::Request::QueryPolicy(Box::new(p.id.clone())),
                );
            }
            Message::EspPolicyRemove(id) => {
                v.push(T_ESP_POLICY_REMOVE);
                put_charon(&mut v, &charon::Request::QueryPolicy(id.clone()));
            }
        }
        v
    }

    pub fn decode(b: &[u8]) -> Result<Message, FrameError> {
        let mut r = Rd { b, at: 0 };
        let m = match r.u8()? {
            T_HELLO => Message::Hello {
                node_id: r.u8()?,
                generation: r.u64()?,
                role: r.role()?,
            },
            T_STATE => Message::State {
                generation: r.u64()?,
                role: r.role()?,
            },
            T_WG_SESSION => {
                let peer_public_key = r.key()?;
                let local_index = r.u32()?;
                let remote_index = r.u32()?;
                let send_key = Zeroizing::new(r.key()?);
                let recv_key = Zeroizing::new(r.key()?);
                let age = Duration::from_millis(r.u64()?);
                let initiator = match r.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err(FrameError::Malformed("initiator flag")),
                };
                let slot = match r.u8()? {
                    0 => SessionSlot::Current,
                    1 => SessionSlot::Previous,
                    2 => SessionSlot::Next,
                    _ => return Err(FrameError::Malformed("session slot")),
                };
                Message::WgSession(Box::new(SessionRecord {
                    peer_public_key,
                    local_index,
                    remote_index,
                    send_key,
                    recv_key,
                    age,
                    initiator,
                    slot,
                    send_counter: r.u64()?,
                    recv_top: r.opt_u64()?,
                    endpoint: r.addr()?,
                }))
            }
            T_WG_REMOVE => Message::WgRemove { index: r.u32()? },
            T_WG_COUNTERS => {
                let n = r.count(COUNTERS_PER_FRAME)?;
                let mut list = Vec::with_capacity(n);
                for _ in 0..n {
                    list.push(WgCounter {
                        index: r.u32()?,
                        send: r.u64()?,
                        recv_top: r.opt_u64()?,
                    });
                }
                Message::WgCounters(list)
            }
            T_WG_ACK => {
                let n = r.count(COUNTERS_PER_FRAME)?;
                let mut list = Vec::with_capacity(n);
                for _ in 0..n {
                    list.push((r.u32()?, r.u64()?));
                }
                Message::WgAck(list)
            }
            T_SNAPSHOT_DONE => Message::SnapshotDone { sessions: r.u32()? },
            T_RELAY => {
                let d = r.b[r.at..].to_vec();
                r.at = r.b.len();
                Message::Relay(d)
            }
            T_ESP_SA => {
                let seq = r.u64()?;
                let recv_top = r.opt_u64()?;
                let charon::Request::AddSa(sa) = r.charon()? else {
                    return Err(FrameError::Malformed("ESP SA: not an add_sa"));
                };
                Message::EspSa(Box::new(EspSaRecord {
                    sa: *sa,
                    seq,
                    recv_top,
                }))
            }
            T_ESP_REMOVE => Message::EspRemove { spi: r.u32()? },
            T_ESP_COUNTERS => {
                let n = r.count(COUNTERS_PER_FRAME)?;
                let mut list = Vec::with_capacity(n);
                for _ in 0..n {
                    list.push(EspCounter {
                        spi: r.u32()?,
                        seq: r.u64()?,
                        recv_top: r.opt_u64()?,
                    });
                }
                Message::EspCounters(list)
            }
            T_ESP_ACK => {
                let n = r.count(COUNTERS_PER_FRAME)?;
                let mut list = Vec::with_capacity(n);
                for _ in 0..n {
                    list.push((r.u32()?, r.u64()?));
                }
                Message::EspAck(list)
            }
            T_ESP_POLICY => {
                let reqid = r.u32()?;
                let rank = u128::from_be_bytes(r.take(16)?.try_into().expect("16"));
                let charon::Request::QueryPolicy(id) = r.charon()? else {
                    return Err(FrameError::Malformed("ESP policy: not a policy id"));
                };
                Message::EspPolicy(Box::new(EspPolicyRecord {
                    id: *id,
                    reqid,
                    rank,
                }))
            }
            T_ESP_POLICY_REMOVE => {
                let charon::Request::QueryPolicy(id) = r.charon()? else {
                    return Err(FrameError::Malformed("ESP policy: not a policy id"));
                };
                Message::EspPolicyRemove(id)
            }
            _ => return Err(FrameError::Malformed("unknown message type")),
        };
        if r.at != b.len() {
            return Err(FrameError::Malformed("trailing bytes"));
        }
        Ok(m)
    }
}

fn put_opt_u64(v: &mut Vec<u8>, x: Option<u64>) {
    match x {
        None => v.push(0),
        Some(x) => {
            v.push(1);
            v.extend_from_slice(&x.to_be_bytes());
        }
    }
}

/// A request in the plugin link's encoding, without its length word (which the frame's own
/// length bounds), behind a u32 length. The buffer holds keys: zeroed when dropped.
fn put_charon(v: &mut Vec<u8>, req: &charon::Request) {
    let f = Zeroizing::new(charon::encode(&charon::Frame::Request {
        id: 0,
        req: req.clone(),
    }));
    let body = &f[4..];
    v.extend_from_slice(&(body.len() as u32).to_be_bytes());
    v.extend_from_slice(body);
}

struct Rd<'a> {
    b: &'a [u8],
    at: usize,
}

impl Rd<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], FrameError> {
        let s = self
            .b
            .get(self.at..self.at + n)
            .ok_or(FrameError::Truncated)?;
        self.at += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, FrameError> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().expect("2")))
    }
    fn u32(&mut self) -> Result<u32, FrameError> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn u64(&mut self) -> Result<u64, FrameError> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn key(&mut self) -> Result<[u8; 32], FrameError> {
        Ok(self.take(32)?.try_into().expect("32"))
    }
    fn count(&mut self, max: usize) -> Result<usize, FrameError> {
        let n = self.u32()? as usize;
        if n > max {
            return Err(FrameError::Malformed("too many entries"));
        }
        Ok(n)
    }
    fn charon(&mut self) -> Result<charon::Request, FrameError> {
        let n = self.u32()? as usize;
        match charon::decode(self.take(n)?) {
            Ok(charon::Frame::Request { req, .. }) => Ok(req),
            Ok(_) => Err(FrameError::Malformed("ESP record: not a request")),
            Err(_) => Err(FrameError::Malformed("ESP record: bad encoding")),
        }
    }
    fn opt_u64(&mut self) -> Result<Option<u64>, FrameError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.u64()?)),
            _ => Err(FrameError::Malformed("option flag")),
        }
    }
    fn role(&mut self) -> Result<Role, FrameError> {
        match self.u8()? {
            0 => Ok(Role::Standby),
            1 => Ok(Role::Active),
            _ => Err(FrameError::Malformed("role")),
        }
    }
    fn addr(&mut self) -> Result<Option<SocketAddr>, FrameError> {
        match self.u8()? {
            0 => Ok(None),
            4 => {
                let ip: [u8; 4] = self.take(4)?.try_into().expect("4");
                Ok(Some(SocketAddr::new(IpAddr::from(ip), self.u16()?)))
            }
            6 => {
                let ip: [u8; 16] = self.take(16)?.try_into().expect("16");
                Ok(Some(SocketAddr::new(IpAddr::from(ip), self.u16()?)))
            }
            _ => Err(FrameError::Malformed("address family")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> Zeroizing<[u8; 32]> {
        Zeroizing::new([b; 32])
    }

    fn hello(id: u8) -> Message {
        Message::Hello {
            node_id: id,
            generation: 7,
            role: Role::Standby,
        }
    }

    fn pair(ki: u8, kr: u8) -> Result<(Cipher, Cipher), FrameError> {
        let mut i = Handshake::new(&key(ki), true)?;
        let mut r = Handshake::new(&key(kr), false)?;
        let m1 = i.write(&hello(1))?;
        assert!(matches!(r.read(&m1)?, Message::Hello { node_id: 1, .. }));
        let m2 = r.write(&hello(2))?;
        assert!(matches!(i.read(&m2)?, Message::Hello { node_id: 2, .. }));
        Ok((i.into_cipher()?, r.into_cipher()?))
    }

    fn record() -> SessionRecord {
        SessionRecord {
            peer_public_key: [9; 32],
            local_index: 0xdead_beef,
            remote_index: 42,
            send_key: key(1),
            recv_key: key(2),
            age: Duration::from_millis(1234),
            initiator: true,
            slot: SessionSlot::Previous,
            send_counter: 1 << 40,
            recv_top: Some(77),
            endpoint: Some("[2001:db8::1]:51820".parse().unwrap()),
        }
    }

    fn esp_record() -> EspSaRecord {
        use crate::charon::protocol::{AddSa, Mode, SaFlags, SaId, SecretKey};
        EspSaRecord {
            sa: AddSa {
                id: SaId {
                    src: "192.0.2.1:4500".parse().unwrap(),
                    dst: "192.0.2.2:4500".parse().unwrap(),
                    spi: 0xc0ff_ee01,
                    proto: 50,
                    mark: Default::default(),
                    if_id: 7,
                },
                reqid: 7,
                mode: Mode::Tunnel,
                src_ts: vec![],
                dst_ts: vec![],
                interface: None,
                lifetime: Default::default(),
                enc_alg: 20,
                enc_key: SecretKey::new(vec![0x5a; 36]),
                int_alg: 0,
                int_key: SecretKey::default(),
                replay_window: 4096,
                tfc: 0,
                ipcomp: 0,
                cpi: 0,
                hw_offload: 0,
                sa_mark: Default::default(),
                copy_dscp: 0,
                flags: SaFlags {
                    esn: true,
                    encap: true,
                    ..Default::default()
                },
            },
            seq: (5 << 32) + 9,
            recv_top: Some(3),
        }
    }

    fn esp_record_policy() -> PolicyId {
        use crate::charon::protocol::{PolicyDir, TrafficSelector};
        let ts = |a: &str, b: &str| TrafficSelector {
            protocol: 0,
            from_port: 0,
            to_port: 65535,
            from: a.parse().unwrap(),
            to: b.parse().unwrap(),
        };
        PolicyId {
            dir: PolicyDir::Out,
            src_ts: ts("10.1.0.0", "10.1.0.255"),
            dst_ts: ts("10.2.0.0", "10.2.0.255"),
            mark: Default::default(),
            if_id: 7,
            interface: None,
        }
    }

    #[test]
    fn messages_round_trip() {
        let (mut a, mut b) = pair(5, 5).unwrap();
        let msgs = vec![
            Message::State {
                generation: u64::MAX,
                role: Role::Active,
            },
            Message::WgSession(Box::new(record())),
            Message::WgRemove { index: 3 },
            Message::WgCounters(vec![
                WgCounter {
                    index: 1,
                    send: 2,
                    recv_top: None,
                },
                WgCounter {
                    index: 3,
                    send: 4,
                    recv_top: Some(5),
                },
            ]),
            Message::WgAck(vec![(1, 2), (3, 4)]),
            Message::SnapshotDone { sessions: 500 },
            Message::Relay(vec![0xab; 1500]),
            Message::EspSa(Box::new(esp_record())),
            Message::EspRemove { spi: 0xc0ff_ee01 },
            Message::EspCounters(vec![
                EspCounter {
                    spi: 1,
                    seq: (1 << 32) + 7,
                    recv_top: None,
                },
                EspCounter {
                    spi: 2,
                    seq: 0,
                    recv_top: Some(u64::MAX),
                },
            ]),
            Message::EspAck(vec![(1, 1 << 40)]),
            Message::EspPolicy(Box::new(EspPolicyRecord {
                id: esp_record_policy(),
                reqid: 7,
                rank: u128::MAX - 1,
            })),
            Message::EspPolicyRemove(Box::new(esp_record_policy())),
        ];
        for m in msgs {
            let body = b.open(&a.seal(&m).unwrap()).unwrap();
            assert_eq!(format!("{body:?}"), format!("{m:?}"));
            assert_eq!(body.encode(), m.encode());
        }
        let back = a.open(&b.seal(&Message::WgAck(vec![])).unwrap()).unwrap();
        assert!(matches!(back, Message::WgAck(l) if l.is_empty()));
        assert!(
            !format!("{:?}", record()).contains("1, 1, 1"),
            "keys redacted"
        );
    }

    #[test]
    fn a_wrong_key_fails_the_handshake() {
        assert!(pair(5, 6).is_err());
    }

    #[test]
    fn forged_and_replayed_frames_are_told_apart() {
        let (mut a, mut b) = pair(5, 5).unwrap();
        let f1 = a.seal(&Message::WgRemove { index: 1 }).unwrap();
        let f2 = a.seal(&Message::WgRemove { index: 2 }).unwrap();
        let mut forged = f1.clone();
        forged[12] ^= 1;
        assert_eq!(b.open(&forged).unwrap_err(), FrameError::Forged);
        // A forged nonce field is a forgery too: the nonce is bound by the AEAD.
        let mut renonced = f1.clone();
        renonced[7] ^= 1;
        assert_eq!(b.open(&renonced).unwrap_err(), FrameError::Forged);
        b.open(&f2).unwrap();
        assert_eq!(
            b.open(&f1).unwrap_err(),
            FrameError::Replayed {
                nonce: 0,
                expected: 2
            },
            "an older frame after a newer one"
        );
        assert!(matches!(
            b.open(&f2).unwrap_err(),
            FrameError::Replayed { nonce: 1, .. }
        ));
        // A frame of another connection (same key, other ephemerals) does not authenticate.
        let (mut c, _) = pair(5, 5).unwrap();
        let other = c.seal(&Message::WgRemove { index: 3 }).unwrap();
        assert_eq!(b.open(&other).unwrap_err(), FrameError::Forged);
        assert_eq!(b.open(&f1[..20]).unwrap_err(), FrameError::Truncated);
    }

    #[test]
    fn frames_are_bounded_and_reassembled() {
        let mut r = FrameReader::default();
        let f = frame(b"hello");
        r.push(&f[..3]);
        assert_eq!(r.next_frame().unwrap(), None);
        r.push(&f[3..]);
        r.push(&f);
        assert_eq!(r.next_frame().unwrap().unwrap(), b"hello");
        assert_eq!(r.next_frame().unwrap().unwrap(), b"hello");
        assert_eq!(r.next_frame().unwrap(), None);
        let mut r = FrameReader::default();
        r.push(&((MAX_FRAME + 1) as u32).to_be_bytes());
        assert_eq!(
            r.next_frame().unwrap_err(),
            FrameError::Oversized(MAX_FRAME + 1)
        );
        let (mut a, _) = pair(5, 5).unwrap();
        assert!(matches!(
            a.seal(&Message::Relay(vec![0; MAX_PLAINTEXT])),
            Err(FrameError::Oversized(_))
        ));
    }

    #[test]
    fn truncated_and_malformed_messages_are_refused() {
        let full = Message::WgSession(Box::new(record())).encode();
        for n in 0..full.len() {
            assert!(Message::decode(&full[..n]).is_err(), "prefix of {n} bytes");
        }
        let mut trailing = Message::WgRemove { index: 1 }.encode();
        trailing.push(0);
        assert_eq!(
            Message::decode(&trailing).unwrap_err(),
            FrameError::Malformed("trailing bytes")
        );
        let mut many = vec![T_WG_ACK];
        many.extend_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            Message::decode(&many).unwrap_err(),
            FrameError::Malformed("too many entries")
        );
        assert!(Message::decode(&[0xff]).is_err());
        let full = Message::EspSa(Box::new(esp_record())).encode();
        for n in 0..full.len() {
            assert!(
                Message::decode(&full[..n]).is_err(),
                "ESP prefix of {n} bytes"
            );
        }
        // An ESP record whose embedded request is of another kind.
        let mut wrong = vec![T_ESP_POLICY_REMOVE];
        put_charon(&mut wrong, &charon::Request::FlushSas);
        assert_eq!(
            Message::decode(&wrong).unwrap_err(),
            FrameError::Malformed("ESP policy: not a policy id")
        );
        assert!(
            !format!("{:?}", esp_record()).contains("90, 90"),
            "ESP keys redacted"
        );
    }
}
