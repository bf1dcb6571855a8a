//! Wire format between the charon plugin "cvlan" and the data plane, version 1.
//!
//! Pure encode/decode, no I/O. The normative description is
//! `docs/charon-plugin-protocol.md`; the C side is `native/strongswan/cvlan_ipc.c`.
//!
//! Every frame is `length:u32 | type:u16 | flags:u16 | id:u32 | body`, big-endian, where
//! `length` counts the bytes after itself. Requests go from the plugin to the data plane and
//! are answered by a response of the same type with [`RESPONSE_BIT`] set and the same `id`,
//! whose body starts with a [`Status`] byte. `IKE_PACKET` (both ways) and `EXPIRE` (data plane
//! to plugin) are events: `id` 0, never answered.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use zeroize::Zeroize;

/// Bumped on any incompatible change; both ends refuse a peer with another version.
pub const PROTOCOL_VERSION: u16 = 1;

/// Bytes of the frame header after the length word: type, flags, id.
pub const HEADER_LEN: usize = 8;
/// Largest IKE message carried: a UDP payload can be no larger.
pub const MAX_IKE_PACKET: usize = 65_535;
/// Largest value of the length word: an IKE packet plus two addresses and the header, rounded
/// up. Anything larger is a corrupt stream.
pub const MAX_FRAME: usize = MAX_IKE_PACKET + 1024;
/// Bound on traffic selectors per list; charon narrows to a handful in practice.
pub const MAX_TS: usize = 64;
/// Bound on a key: the largest ESP key charon derives (AES-256 + salt, HMAC-SHA2-512) is 64 bytes.
pub const MAX_KEY: usize = 256;
/// IFNAMSIZ - 1.
pub const MAX_IFNAME: usize = 15;
/// Bound on the free-form software name in HELLO.
pub const MAX_NAME: usize = 64;

/// Set in the type of every response.
pub const RESPONSE_BIT: u16 = 0x8000;

/// IANA IP protocol numbers charon passes as the SA protocol (RFC 4303, RFC 4302).
pub const PROTO_ESP: u8 = 50;
pub const PROTO_AH: u8 = 51;

/// Message types (the `type` field without [`RESPONSE_BIT`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum MsgType {
    Hello = 1,
    GetSpi = 2,
    GetCpi = 3,
    AddSa = 4,
    UpdateSa = 5,
    QuerySa = 6,
    DelSa = 7,
    FlushSas = 8,
    AddPolicy = 9,
    QueryPolicy = 10,
    DelPolicy = 11,
    FlushPolicies = 12,
    BypassSocket = 13,
    EnableUdpDecap = 14,
    IkePacket = 32,
    Expire = 33,
}

impl MsgType {
    pub fn from_u16(v: u16) -> Option<MsgType> {
        use MsgType::*;
        Some(match v {
            1 => Hello,
            2 => GetSpi,
            3 => GetCpi,
            4 => AddSa,
            5 => UpdateSa,
            6 => QuerySa,
            7 => DelSa,
            8 => FlushSas,
            9 => AddPolicy,
            10 => QueryPolicy,
            11 => DelPolicy,
            12 => FlushPolicies,
            13 => BypassSocket,
            14 => EnableUdpDecap,
            32 => IkePacket,
            33 => Expire,
            _ => return None,
        })
    }

    fn is_event(self) -> bool {
        matches!(self, MsgType::IkePacket | MsgType::Expire)
    }
}

/// Outcome carried first in every response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    Ok = 0,
    Failed = 1,
    NotFound = 2,
    NotSupported = 3,
    /// The request could not be decoded, or its values are out of range.
    Invalid = 4,
    VersionMismatch = 5,
}

impl Status {
    pub fn from_u8(v: u8) -> Option<Status> {
        Some(match v {
            0 => Status::Ok,
            1 => Status::Failed,
            2 => Status::NotFound,
            3 => Status::NotSupported,
            4 => Status::Invalid,
            5 => Status::VersionMismatch,
            _ => return None,
        })
    }
}

/// Why a frame was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("frame truncated: {0}")]
    Truncated(&'static str),
    #[error("frame length {0} out of bounds")]
    BadLength(usize),
    #[error("unknown message type {0:#06x}")]
    UnknownType(u16),
    #[error("invalid value for {0}")]
    BadValue(&'static str),
    #[error("{0} exceeds its bound")]
    TooLong(&'static str),
    #[error("{0} trailing bytes")]
    Trailing(usize),
}

/// Key bytes exactly as charon derived them (for AEAD ciphers the salt is appended, RFC 4106
/// section 8.1). Zeroed on drop and never printed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretKey(Vec<u8>);

impl SecretKey {
    pub fn new(bytes: Vec<u8>) -> SecretKey {
        SecretKey(bytes)
    }
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Drop for SecretKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<redacted {} bytes>", self.0.len())
    }
}

/// Mark as in strongSwan's `mark_t`: value and mask.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mark {
    pub value: u32,
    pub mask: u32,
}

/// A traffic selector (RFC 7296 section 3.13.1): address range, IP protocol, port range.
/// Both addresses have the same family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrafficSelector {
    pub protocol: u8,
    pub from_port: u16,
    pub to_port: u16,
    pub from: IpAddr,
    pub to: IpAddr,
}

/// One of charon's lifetime limits (`lifetime_cfg_t`): hard limit, soft (rekey) limit, jitter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub life: u64,
    pub rekey: u64,
    pub jitter: u64,
}

/// Time limits are in seconds; 0 means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lifetime {
    pub time: Limits,
    pub bytes: Limits,
    pub packets: Limits,
}

/// Identifies an SA. The CHILD_SA's `if_id` is what the data plane maps to tunnel and tenant.
/// With UDP encapsulation the ports of `src`/`dst` are the ESP-in-UDP ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaId {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub spi: u32,
    pub proto: u8,
    pub mark: Mark,
    pub if_id: u32,
}

/// IPsec mode, wire values fixed by this protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    Transport = 1,
    Tunnel = 2,
    Beet = 3,
    Pass = 4,
    Drop = 5,
}

impl Mode {
    fn from_u8(v: u8) -> Option<Mode> {
        Some(match v {
            1 => Mode::Transport,
            2 => Mode::Tunnel,
            3 => Mode::Beet,
            4 => Mode::Pass,
            5 => Mode::Drop,
            _ => return None,
        })
    }
}

/// Boolean attributes of an SA, one bit each on the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SaFlags {
    pub encap: bool,
    pub esn: bool,
    pub copy_df: bool,
    pub copy_ecn: bool,
    pub initiator: bool,
    pub inbound: bool,
    pub update: bool,
}

impl SaFlags {
    fn to_bits(self) -> u8 {
        (self.encap as u8)
            | (self.esn as u8) << 1
            | (self.copy_df as u8) << 2
            | (self.copy_ecn as u8) << 3
            | (self.initiator as u8) << 4
            | (self.inbound as u8) << 5
            | (self.update as u8) << 6
    }
    fn from_bits(b: u8) -> Option<SaFlags> {
        if b & 0x80 != 0 {
            return None;
        }
        Some(SaFlags {
            encap: b & 1 != 0,
            esn: b & 2 != 0,
            copy_df: b & 4 != 0,
            copy_ecn: b & 8 != 0,
            initiator: b & 16 != 0,
            inbound: b & 32 != 0,
            update: b & 64 != 0,
        })
    }
}

/// Everything charon hands to `add_sa`. Algorithm ids are IKEv2 transform ids (RFC 7296
/// section 3.3.2, IANA registry; charon's private ids lie above 1023).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddSa {
    pub id: SaId,
    pub reqid: u32,
    pub mode: Mode,
    pub src_ts: Vec<TrafficSelector>,
    pub dst_ts: Vec<TrafficSelector>,
    pub interface: Option<String>,
    pub lifetime: Lifetime,
    pub enc_alg: u16,
    pub enc_key: SecretKey,
    pub int_alg: u16,
    pub int_key: SecretKey,
    pub replay_window: u32,
    pub tfc: u32,
    pub ipcomp: u16,
    pub cpi: u16,
    pub hw_offload: u8,
    pub sa_mark: Mark,
    pub copy_dscp: u8,
    pub flags: SaFlags,
}

/// `update_sa`: the peer moved (MOBIKE) or its NAT mapping changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdateSa {
    pub id: SaId,
    pub cpi: u16,
    pub new_src: SocketAddr,
    pub new_dst: SocketAddr,
    pub encap: bool,
    pub new_encap: bool,
    pub new_reqid: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PolicyDir {
    In = 0,
    Out = 1,
    Fwd = 2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PolicyType {
    Ipsec = 1,
    Pass = 2,
    Drop = 3,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PolicyPriority {
    Pass = 0,
    Default = 1,
    Routed = 2,
    Fallback = 3,
}

/// Identifies a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyId {
    pub dir: PolicyDir,
    pub src_ts: TrafficSelector,
    pub dst_ts: TrafficSelector,
    pub mark: Mark,
    pub if_id: u32,
    pub interface: Option<String>,
}

/// The SAs a policy refers to (`ipsec_sa_cfg_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaCfg {
    pub mode: Mode,
    pub reqid: u32,
    pub esp_spi: Option<u32>,
    pub ah_spi: Option<u32>,
    pub ipcomp_transform: u16,
    pub ipcomp_cpi: u16,
}

/// `add_policy` / `del_policy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub id: PolicyId,
    pub kind: PolicyType,
    pub prio: PolicyPriority,
    pub manual_prio: u32,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub sa: SaCfg,
}

/// A UDP payload exactly as on the wire. charon adds and strips the RFC 3948 non-ESP marker
/// itself (whenever neither port is 500), so on the NAT-T port the data plane forwards the
/// datagrams that start with the marker unchanged, and sends what charon gives verbatim
/// (NAT-keepalives included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IkePacket {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub data: Vec<u8>,
}

/// A lifetime of an SA ran out: soft means rekey now, hard means the SA is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expire {
    pub proto: u8,
    pub spi: u32,
    pub dst: SocketAddr,
    pub hard: bool,
}

/// Counters of an SA as `query_sa` reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SaStats {
    pub bytes: u64,
    pub packets: u64,
    /// Seconds since the SA last carried a packet; `None` if it never did. A duration rather
    /// than a timestamp, so the two processes need not agree on a clock.
    pub idle_secs: Option<u32>,
}

/// A request from the plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Hello {
        version: u16,
        name: String,
    },
    GetSpi {
        src: SocketAddr,
        dst: SocketAddr,
        proto: u8,
    },
    GetCpi {
        src: SocketAddr,
        dst: SocketAddr,
    },
    AddSa(Box<AddSa>),
    UpdateSa(UpdateSa),
    QuerySa {
        id: SaId,
        cpi: u16,
    },
    DelSa {
        id: SaId,
        cpi: u16,
    },
    FlushSas,
    AddPolicy(Box<Policy>),
    QueryPolicy(Box<PolicyId>),
    DelPolicy(Box<Policy>),
    FlushPolicies,
    /// `family` is 4 or 6.
    BypassSocket {
        family: u8,
    },
    EnableUdpDecap {
        family: u8,
        port: u16,
    },
}

impl Request {
    pub fn msg_type(&self) -> MsgType {
        match self {
            Request::Hello { .. } => MsgType::Hello,
            Request::GetSpi { .. } => MsgType::GetSpi,
            Request::GetCpi { .. } => MsgType::GetCpi,
            Request::AddSa(_) => MsgType::AddSa,
            Request::UpdateSa(_) => MsgType::UpdateSa,
            Request::QuerySa { .. } => MsgType::QuerySa,
            Request::DelSa { .. } => MsgType::DelSa,
            Request::FlushSas => MsgType::FlushSas,
            Request::AddPolicy(_) => MsgType::AddPolicy,
            Request::QueryPolicy(_) => MsgType::QueryPolicy,
            Request::DelPolicy(_) => MsgType::DelPolicy,
            Request::FlushPolicies => MsgType::FlushPolicies,
            Request::BypassSocket { .. } => MsgType::BypassSocket,
            Request::EnableUdpDecap { .. } => MsgType::EnableUdpDecap,
        }
    }
}

/// The type-specific part of a successful response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    None,
    Hello {
        version: u16,
        instance: u64,
    },
    Spi(u32),
    Cpi(u16),
    SaStats(SaStats),
    /// Seconds since the policy last matched a packet, `None` if never.
    PolicyIdle(Option<u32>),
}

/// A response. On any status but `Ok` the body carries nothing after the status, except for
/// HELLO, which always tells the responder's version so the refusal can be logged with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    pub kind: MsgType,
    pub status: Status,
    pub reply: Reply,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    IkePacket(IkePacket),
    Expire(Expire),
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Request { id: u32, req: Request },
    Response { id: u32, resp: Response },
    Event(Event),
}

/// A frame whose header was valid but whose body was not: the receiver can still answer the
/// request `id` with [`Status::Invalid`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadFrame {
    pub kind: u16,
    pub id: u32,
    pub error: DecodeError,
}

/// Reads the length word of a frame: how many bytes follow it, checked against the bounds.
pub fn frame_len(word: [u8; 4]) -> Result<usize, DecodeError> {
    let len = u32::from_be_bytes(word) as usize;
    if !(HEADER_LEN..=MAX_FRAME).contains(&len) {
        return Err(DecodeError::BadLength(len));
    }
    Ok(len)
}

/// Decodes the bytes after the length word.
pub fn decode(frame: &[u8]) -> Result<Frame, BadFrame> {
    let bad = |kind, id, error| BadFrame { kind, id, error };
    if frame.len() < HEADER_LEN || frame.len() > MAX_FRAME {
        return Err(bad(0, 0, DecodeError::BadLength(frame.len())));
    }
    let raw_type = u16::from_be_bytes([frame[0], frame[1]]);
    let flags = u16::from_be_bytes([frame[2], frame[3]]);
    let id = u32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let kind = MsgType::from_u16(raw_type & !RESPONSE_BIT)
        .ok_or_else(|| bad(raw_type, id, DecodeError::UnknownType(raw_type)))?;
    if flags != 0 {
        return Err(bad(raw_type, id, DecodeError::BadValue("flags")));
    }
    let mut r = Reader::new(&frame[HEADER_LEN..]);
    let decoded = if raw_type & RESPONSE_BIT != 0 {
        if kind.is_event() {
            return Err(bad(
                raw_type,
                id,
                DecodeError::BadValue("response to an event"),
            ));
        }
        decode_response(kind, &mut r).map(|resp| Frame::Response { id, resp })
    } else if kind.is_event() {
        if id != 0 {
            return Err(bad(raw_type, id, DecodeError::BadValue("event id")));
        }
        decode_event(kind, &mut r).map(Frame::Event)
    } else {
        decode_request(kind, &mut r).map(|req| Frame::Request { id, req })
    };
    let decoded = decoded.and_then(|f| r.finish().map(|_| f));
    decoded.map_err(|e| bad(raw_type, id, e))
}

/// Encodes a whole frame, length word included.
pub fn encode(frame: &Frame) -> Vec<u8> {
    let mut w = Writer::default();
    match frame {
        Frame::Request { id, req } => {
            w.header(req.msg_type() as u16, *id);
            encode_request(&mut w, req);
        }
        Frame::Response { id, resp } => {
            w.header(resp.kind as u16 | RESPONSE_BIT, *id);
            encode_response(&mut w, resp);
        }
        Frame::Event(Event::IkePacket(p)) => {
            w.header(MsgType::IkePacket as u16, 0);
            w.sockaddr(&p.src);
            w.sockaddr(&p.dst);
            w.bytes32(&p.data);
        }
        Frame::Event(Event::Expire(e)) => {
            w.header(MsgType::Expire as u16, 0);
            w.u8(e.proto);
            w.u32(e.spi);
            w.sockaddr(&e.dst);
            w.u8(e.hard as u8);
        }
    }
    w.finish()
}

fn decode_request(kind: MsgType, r: &mut Reader) -> Result<Request, DecodeError> {
    Ok(match kind {
        MsgType::Hello => Request::Hello {
            version: r.u16("version")?,
            name: r.string("name", MAX_NAME)?,
        },
        MsgType::GetSpi => Request::GetSpi {
            src: r.sockaddr("src")?,
            dst: r.sockaddr("dst")?,
            proto: r.u8("proto")?,
        },
        MsgType::GetCpi => Request::GetCpi {
            src: r.sockaddr("src")?,
            dst: r.sockaddr("dst")?,
        },
        MsgType::AddSa => Request::AddSa(Box::new(r.add_sa()?)),
        MsgType::UpdateSa => Request::UpdateSa(UpdateSa {
            id: r.sa_id()?,
            cpi: r.u16("cpi")?,
            new_src: r.sockaddr("new_src")?,
            new_dst: r.sockaddr("new_dst")?,
            encap: r.bool("encap")?,
            new_encap: r.bool("new_encap")?,
            new_reqid: r.u32("new_reqid")?,
        }),
        MsgType::QuerySa => Request::QuerySa {
            id: r.sa_id()?,
            cpi: r.u16("cpi")?,
        },
        MsgType::DelSa => Request::DelSa {
            id: r.sa_id()?,
            cpi: r.u16("cpi")?,
        },
        MsgType::FlushSas => Request::FlushSas,
        MsgType::AddPolicy => Request::AddPolicy(Box::new(r.policy()?)),
        MsgType::QueryPolicy => Request::QueryPolicy(Box::new(r.policy_id()?)),
        MsgType::DelPolicy => Request::DelPolicy(Box::new(r.policy()?)),
        MsgType::FlushPolicies => Request::FlushPolicies,
        MsgType::BypassSocket => Request::BypassSocket {
            family: r.family()?,
        },
        MsgType::EnableUdpDecap => Request::EnableUdpDecap {
            family: r.family()?,
            port: r.u16("port")?,
        },
        MsgType::IkePacket | MsgType::Expire => unreachable!("events are decoded apart"),
    })
}

fn encode_request(w: &mut Writer, req: &Request) {
    match req {
        Request::Hello { version, name } => {
            w.u16(*version);
            w.string(name);
        }
        Request::GetSpi { src, dst, proto } => {
            w.sockaddr(src);
            w.sockaddr(dst);
            w.u8(*proto);
        }
        Request::GetCpi { src, dst } => {
            w.sockaddr(src);
            w.sockaddr(dst);
        }
        Request::AddSa(sa) => w.add_sa(sa),
        Request::UpdateSa(u) => {
            w.sa_id(&u.id);
            w.u16(u.cpi);
            w.sockaddr(&u.new_src);
            w.sockaddr(&u.new_dst);
            w.u8(u.encap as u8);
            w.u8(u.new_encap as u8);
            w.u32(u.new_reqid);
        }
        Request::QuerySa { id, cpi } | Request::DelSa { id, cpi } => {
            w.sa_id(id);
            w.u16(*cpi);
        }
        Request::FlushSas | Request::FlushPolicies => {}
        Request::AddPolicy(p) | Request::DelPolicy(p) => w.policy(p),
        Request::QueryPolicy(id) => w.policy_id(id),
        Request::BypassSocket { family } => w.u8(*family),
        Request::EnableUdpDecap { family, port } => {
            w.u8(*family);
            w.u16(*port);
        }
    }
}

fn decode_response(kind: MsgType, r: &mut Reader) -> Result<Response, DecodeError> {
    let status = Status::from_u8(r.u8("status")?).ok_or(DecodeError::BadValue("status"))?;
    let reply = if kind == MsgType::Hello {
        Reply::Hello {
            version: r.u16("version")?,
            instance: r.u64("instance")?,
        }
    } else if status != Status::Ok {
        Reply::None
    } else {
        match kind {
            MsgType::GetSpi => Reply::Spi(r.u32("spi")?),
            MsgType::GetCpi => Reply::Cpi(r.u16("cpi")?),
            MsgType::QuerySa => Reply::SaStats(SaStats {
                bytes: r.u64("bytes")?,
                packets: r.u64("packets")?,
                idle_secs: r.idle()?,
            }),
            MsgType::QueryPolicy => Reply::PolicyIdle(r.idle()?),
            _ => Reply::None,
        }
    };
    Ok(Response {
        kind,
        status,
        reply,
    })
}

fn encode_response(w: &mut Writer, resp: &Response) {
    w.u8(resp.status as u8);
    match resp.reply {
        Reply::Hello { version, instance } => {
            w.u16(version);
            w.u64(instance);
        }
        _ if resp.status != Status::Ok => {}
        Reply::None => {}
        Reply::Spi(spi) => w.u32(spi),
        Reply::Cpi(cpi) => w.u16(cpi),
        Reply::SaStats(s) => {
            w.u64(s.bytes);
            w.u64(s.packets);
            w.idle(s.idle_secs);
        }
        Reply::PolicyIdle(idle) => w.idle(idle),
    }
}

fn decode_event(kind: MsgType, r: &mut Reader) -> Result<Event, DecodeError> {
    Ok(match kind {
        MsgType::IkePacket => Event::IkePacket(IkePacket {
            src: r.sockaddr("src")?,
            dst: r.sockaddr("dst")?,
            data: r.bytes32("ike data", MAX_IKE_PACKET)?,
        }),
        MsgType::Expire => Event::Expire(Expire {
            proto: r.u8("proto")?,
            spi: r.u32("spi")?,
            dst: r.sockaddr("dst")?,
            hard: r.bool("hard")?,
        }),
        _ => unreachable!("only events"),
    })
}

/// `u32::MAX` on the wire stands for "never used".
const IDLE_NEVER: u32 = u32::MAX;

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() - self.pos < n {
            return Err(DecodeError::Truncated(what));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn finish(&self) -> Result<(), DecodeError> {
        match self.buf.len() - self.pos {
            0 => Ok(()),
            n => Err(DecodeError::Trailing(n)),
        }
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes(b.try_into().expect("4 bytes")))
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let b = self.take(8, what)?;
        Ok(u64::from_be_bytes(b.try_into().expect("8 bytes")))
    }
    fn bool(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::BadValue(what)),
        }
    }
    fn idle(&mut self) -> Result<Option<u32>, DecodeError> {
        Ok(match self.u32("idle")? {
            IDLE_NEVER => None,
            s => Some(s),
        })
    }
    fn family(&mut self) -> Result<u8, DecodeError> {
        match self.u8("family")? {
            f @ (4 | 6) => Ok(f),
            _ => Err(DecodeError::BadValue("family")),
        }
    }
    fn ip(&mut self, what: &'static str) -> Result<IpAddr, DecodeError> {
        Ok(match self.family()? {
            4 => {
                let b: [u8; 4] = self.take(4, what)?.try_into().expect("4 bytes");
                IpAddr::V4(Ipv4Addr::from(b))
            }
            _ => {
                let b: [u8; 16] = self.take(16, what)?.try_into().expect("16 bytes");
                IpAddr::V6(Ipv6Addr::from(b))
            }
        })
    }
    fn sockaddr(&mut self, what: &'static str) -> Result<SocketAddr, DecodeError> {
        let ip = self.ip(what)?;
        Ok(SocketAddr::new(ip, self.u16(what)?))
    }
    fn bytes16(&mut self, what: &'static str, max: usize) -> Result<&'a [u8], DecodeError> {
        let n = self.u16(what)? as usize;
        if n > max {
            return Err(DecodeError::TooLong(what));
        }
        self.take(n, what)
    }
    fn bytes32(&mut self, what: &'static str, max: usize) -> Result<Vec<u8>, DecodeError> {
        let n = self.u32(what)? as usize;
        if n > max {
            return Err(DecodeError::TooLong(what));
        }
        Ok(self.take(n, what)?.to_vec())
    }
    fn string(&mut self, what: &'static str, max: usize) -> Result<String, DecodeError> {
        let b = self.bytes16(what, max)?;
        String::from_utf8(b.to_vec()).map_err(|_| DecodeError::BadValue(what))
    }
    fn opt_ifname(&mut self) -> Result<Option<String>, DecodeError> {
        let s = self.string("interface", MAX_IFNAME)?;
        Ok(if s.is_empty() { None } else { Some(s) })
    }
    fn key(&mut self, what: &'static str) -> Result<SecretKey, DecodeError> {
        Ok(SecretKey(self.bytes16(what, MAX_KEY)?.to_vec()))
    }
    fn mark(&mut self) -> Result<Mark, DecodeError> {
        Ok(Mark {
            value: self.u32("mark")?,
            mask: self.u32("mark mask")?,
        })
    }
    fn mode(&mut self) -> Result<Mode, DecodeError> {
        Mode::from_u8(self.u8("mode")?).ok_or(DecodeError::BadValue("mode"))
    }
    fn ts(&mut self) -> Result<TrafficSelector, DecodeError> {
        let protocol = self.u8("ts protocol")?;
        let from_port = self.u16("ts port")?;
        let to_port = self.u16("ts port")?;
        let from = self.ip("ts address")?;
        let to = self.ip("ts address")?;
        if from.is_ipv4() != to.is_ipv4() {
            return Err(DecodeError::BadValue("ts families"));
        }
        Ok(TrafficSelector {
            protocol,
            from_port,
            to_port,
            from,
            to,
        })
    }
    fn ts_list(&mut self) -> Result<Vec<TrafficSelector>, DecodeError> {
        let n = self.u16("ts count")? as usize;
        if n > MAX_TS {
            return Err(DecodeError::TooLong("ts list"));
        }
        (0..n).map(|_| self.ts()).collect()
    }
    fn limits(&mut self) -> Result<Limits, DecodeError> {
        Ok(Limits {
            life: self.u64("lifetime")?,
            rekey: self.u64("lifetime")?,
            jitter: self.u64("lifetime")?,
        })
    }
    fn sa_id(&mut self) -> Result<SaId, DecodeError> {
        Ok(SaId {
            src: self.sockaddr("sa src")?,
            dst: self.sockaddr("sa dst")?,
            spi: self.u32("spi")?,
            proto: self.u8("proto")?,
            mark: self.mark()?,
            if_id: self.u32("if_id")?,
        })
    }
    fn add_sa(&mut self) -> Result<AddSa, DecodeError> {
        Ok(AddSa {
            id: self.sa_id()?,
            reqid: self.u32("reqid")?,
            mode: self.mode()?,
            src_ts: self.ts_list()?,
            dst_ts: self.ts_list()?,
            interface: self.opt_ifname()?,
            lifetime: Lifetime {
                time: self.limits()?,
                bytes: self.limits()?,
                packets: self.limits()?,
            },
            enc_alg: self.u16("enc_alg")?,
            enc_key: self.key("enc_key")?,
            int_alg: self.u16("int_alg")?,
            int_key: self.key("int_key")?,
            replay_window: self.u32("replay_window")?,
            tfc: self.u32("tfc")?,
            ipcomp: self.u16("ipcomp")?,
            cpi: self.u16("cpi")?,
            hw_offload: self.u8("hw_offload")?,
            sa_mark: self.mark()?,
            copy_dscp: self.u8("copy_dscp")?,
            flags: SaFlags::from_bits(self.u8("sa flags")?)
                .ok_or(DecodeError::BadValue("sa flags"))?,
        })
    }
    fn policy_id(&mut self) -> Result<PolicyId, DecodeError> {
        let dir = match self.u8("policy dir")? {
            0 => PolicyDir::In,
            1 => PolicyDir::Out,
            2 => PolicyDir::Fwd,
            _ => return Err(DecodeError::BadValue("policy dir")),
        };
        Ok(PolicyId {
            dir,
            src_ts: self.ts()?,
            dst_ts: self.ts()?,
            mark: self.mark()?,
            if_id: self.u32("if_id")?,
            interface: self.opt_ifname()?,
        })
    }
    fn policy(&mut self) -> Result<Policy, DecodeError> {
        let id = self.policy_id()?;
        let kind = match self.u8("policy type")? {
            1 => PolicyType::Ipsec,
            2 => PolicyType::Pass,
            3 => PolicyType::Drop,
            _ => return Err(DecodeError::BadValue("policy type")),
        };
        let prio = match self.u8("policy priority")? {
            0 => PolicyPriority::Pass,
            1 => PolicyPriority::Default,
            2 => PolicyPriority::Routed,
            3 => PolicyPriority::Fallback,
            _ => return Err(DecodeError::BadValue("policy priority")),
        };
        let manual_prio = self.u32("manual_prio")?;
        let src = self.sockaddr("policy src")?;
        let dst = self.sockaddr("policy dst")?;
        let mode = self.mode()?;
        let reqid = self.u32("reqid")?;
        let esp = self.bool("esp use")?;
        let esp_spi = self.u32("esp spi")?;
        let ah = self.bool("ah use")?;
        let ah_spi = self.u32("ah spi")?;
        let sa = SaCfg {
            mode,
            reqid,
            esp_spi: esp.then_some(esp_spi),
            ah_spi: ah.then_some(ah_spi),
            ipcomp_transform: self.u16("ipcomp")?,
            ipcomp_cpi: self.u16("cpi")?,
        };
        Ok(Policy {
            id,
            kind,
            prio,
            manual_prio,
            src,
            dst,
            sa,
        })
    }
}

#[derive(Default)]
struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    fn header(&mut self, kind: u16, id: u32) {
        self.u32(0); // length, patched by finish()
        self.u16(kind);
        self.u16(0);
        self.u32(id);
    }
    fn finish(mut self) -> Vec<u8> {
        let len = (self.buf.len() - 4) as u32;
        self.buf[..4].copy_from_slice(&len.to_be_bytes());
        self.buf
    }
    fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    fn idle(&mut self, v: Option<u32>) {
        // A real idle time of u32::MAX seconds (136 years) cannot occur.
        self.u32(v.unwrap_or(IDLE_NEVER));
    }
    fn ip(&mut self, ip: &IpAddr) {
        match ip {
            IpAddr::V4(a) => {
                self.u8(4);
                self.buf.extend_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                self.u8(6);
                self.buf.extend_from_slice(&a.octets());
            }
        }
    }
    fn sockaddr(&mut self, a: &SocketAddr) {
        self.ip(&a.ip());
        self.u16(a.port());
    }
    fn bytes16(&mut self, b: &[u8]) {
        self.u16(b.len() as u16);
        self.buf.extend_from_slice(b);
    }
    fn bytes32(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.buf.extend_from_slice(b);
    }
    fn string(&mut self, s: &str) {
        self.bytes16(s.as_bytes());
    }
    fn mark(&mut self, m: &Mark) {
        self.u32(m.value);
        self.u32(m.mask);
    }
    fn ts(&mut self, ts: &TrafficSelector) {
        self.u8(ts.protocol);
        self.u16(ts.from_port);
        self.u16(ts.to_port);
        self.ip(&ts.from);
        self.ip(&ts.to);
    }
    fn ts_list(&mut self, list: &[TrafficSelector]) {
        self.u16(list.len() as u16);
        list.iter().for_each(|ts| self.ts(ts));
    }
    fn limits(&mut self, l: &Limits) {
        self.u64(l.life);
        self.u64(l.rekey);
        self.u64(l.jitter);
    }
    fn sa_id(&mut self, id: &SaId) {
        self.sockaddr(&id.src);
        self.sockaddr(&id.dst);
        self.u32(id.spi);
        self.u8(id.proto);
        self.mark(&id.mark);
        self.u32(id.if_id);
    }
    fn add_sa(&mut self, sa: &AddSa) {
        self.sa_id(&sa.id);
        self.u32(sa.reqid);
        self.u8(sa.mode as u8);
        self.ts_list(&sa.src_ts);
        self.ts_list(&sa.dst_ts);
        self.string(sa.interface.as_deref().unwrap_or(""));
        self.limits(&sa.lifetime.time);
        self.limits(&sa.lifetime.bytes);
        self.limits(&sa.lifetime.packets);
        self.u16(sa.enc_alg);
        self.bytes16(sa.enc_key.expose());
        self.u16(sa.int_alg);
        self.bytes16(sa.int_key.expose());
        self.u32(sa.replay_window);
        self.u32(sa.tfc);
        self.u16(sa.ipcomp);
        self.u16(sa.cpi);
        self.u8(sa.hw_offload);
        self.mark(&sa.sa_mark);
        self.u8(sa.copy_dscp);
        self.u8(sa.flags.to_bits());
    }
    fn policy_id(&mut self, id: &PolicyId) {
        self.u8(id.dir as u8);
        self.ts(&id.src_ts);
        self.ts(&id.dst_ts);
        self.mark(&id.mark);
        self.u32(id.if_id);
        self.string(id.interface.as_deref().unwrap_or(""));
    }
    fn policy(&mut self, p: &Policy) {
        self.policy_id(&p.id);
        self.u8(p.kind as u8);
        self.u8(p.prio as u8);
        self.u32(p.manual_prio);
        self.sockaddr(&p.src);
        self.sockaddr(&p.dst);
        self.u8(p.sa.mode as u8);
        self.u32(p.sa.reqid);
        self.u8(p.sa.esp_spi.is_some() as u8);
        self.u32(p.sa.esp_spi.unwrap_or(0));
        self.u8(p.sa.ah_spi.is_some() as u8);
        self.u32(p.sa.ah_spi.unwrap_or(0));
        self.u16(p.sa.ipcomp_transform);
        self.u16(p.sa.ipcomp_cpi);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(addr: &str) -> SocketAddr {
        addr.parse().unwrap()
    }

    fn ts4(from: &str, to: &str) -> TrafficSelector {
        TrafficSelector {
            protocol: 0,
            from_port: 0,
            to_port: 65535,
            from: from.parse().unwrap(),
            to: to.parse().unwrap(),
        }
    }

    fn sample_sa_id() -> SaId {
        SaId {
            src: sa("192.0.2.1:4500"),
            dst: sa("[2001:db8::2]:4500"),
            spi: 0xc001_d00d,
            proto: PROTO_ESP,
            mark: Mark {
                value: 7,
                mask: 0xffff_ffff,
            },
            if_id: 42,
        }
    }

    fn sample_add_sa() -> AddSa {
        AddSa {
            id: sample_sa_id(),
            reqid: 3,
            mode: Mode::Tunnel,
            src_ts: vec![ts4("10.1.0.0", "10.1.255.255")],
            dst_ts: vec![ts4("10.2.0.0", "10.2.0.255"), ts4("10.3.0.0", "10.3.0.0")],
            interface: Some("eth0".into()),
            lifetime: Lifetime {
                time: Limits {
                    life: 3600,
                    rekey: 3240,
                    jitter: 360,
                },
                bytes: Limits::default(),
                packets: Limits {
                    life: 1 << 40,
                    rekey: 1 << 39,
                    jitter: 0,
                },
            },
            enc_alg: 20,
            enc_key: SecretKey::new((0..36).collect()),
            int_alg: 0,
            int_key: SecretKey::default(),
            replay_window: 32,
            tfc: 0,
            ipcomp: 0,
            cpi: 0,
            hw_offload: 0,
            sa_mark: Mark::default(),
            copy_dscp: 3,
            flags: SaFlags {
                encap: true,
                esn: true,
                inbound: true,
                ..Default::default()
            },
        }
    }

    fn sample_policy() -> Policy {
        Policy {
            id: PolicyId {
                dir: PolicyDir::Fwd,
                src_ts: ts4("10.1.0.0", "10.1.255.255"),
                dst_ts: ts4("10.2.0.0", "10.2.0.255"),
                mark: Mark::default(),
                if_id: 42,
                interface: None,
            },
            kind: PolicyType::Ipsec,
            prio: PolicyPriority::Default,
            manual_prio: 0,
            src: sa("192.0.2.1:0"),
            dst: sa("192.0.2.2:0"),
            sa: SaCfg {
                mode: Mode::Tunnel,
                reqid: 3,
                esp_spi: Some(0xc000_0001),
                ah_spi: None,
                ipcomp_transform: 0,
                ipcomp_cpi: 0,
            },
        }
    }

    fn all_frames() -> Vec<Frame> {
        let reqs = vec![
            Request::Hello {
                version: PROTOCOL_VERSION,
                name: "charon 5.9.8".into(),
            },
            Request::GetSpi {
                src: sa("192.0.2.1:500"),
                dst: sa("192.0.2.2:500"),
                proto: PROTO_ESP,
            },
            Request::GetCpi {
                src: sa("192.0.2.1:500"),
                dst: sa("192.0.2.2:500"),
            },
            Request::AddSa(Box::new(sample_add_sa())),
            Request::UpdateSa(UpdateSa {
                id: sample_sa_id(),
                cpi: 0,
                new_src: sa("198.51.100.1:4500"),
                new_dst: sa("198.51.100.2:31000"),
                encap: false,
                new_encap: true,
                new_reqid: 0,
            }),
            Request::QuerySa {
                id: sample_sa_id(),
                cpi: 0,
            },
            Request::DelSa {
                id: sample_sa_id(),
                cpi: 9,
            },
            Request::FlushSas,
            Request::AddPolicy(Box::new(sample_policy())),
            Request::QueryPolicy(Box::new(sample_policy().id)),
            Request::DelPolicy(Box::new(sample_policy())),
            Request::FlushPolicies,
            Request::BypassSocket { family: 6 },
            Request::EnableUdpDecap {
                family: 4,
                port: 4500,
            },
        ];
        let mut frames: Vec<Frame> = reqs
            .into_iter()
            .enumerate()
            .map(|(i, req)| Frame::Request {
                id: i as u32 + 1,
                req,
            })
            .collect();
        let replies = [
            (
                MsgType::Hello,
                Status::Ok,
                Reply::Hello {
                    version: 1,
                    instance: u64::MAX - 3,
                },
            ),
            (
                MsgType::Hello,
                Status::VersionMismatch,
                Reply::Hello {
                    version: 9,
                    instance: 0,
                },
            ),
            (MsgType::GetSpi, Status::Ok, Reply::Spi(0xc123_4567)),
            (MsgType::GetCpi, Status::NotSupported, Reply::None),
            (MsgType::AddSa, Status::Ok, Reply::None),
            (
                MsgType::QuerySa,
                Status::Ok,
                Reply::SaStats(SaStats {
                    bytes: 1 << 33,
                    packets: 12,
                    idle_secs: Some(4),
                }),
            ),
            (
                MsgType::QuerySa,
                Status::Ok,
                Reply::SaStats(SaStats::default()),
            ),
            (MsgType::QuerySa, Status::NotFound, Reply::None),
            (MsgType::QueryPolicy, Status::Ok, Reply::PolicyIdle(None)),
            (MsgType::DelSa, Status::Failed, Reply::None),
        ];
        frames.extend(
            replies
                .iter()
                .enumerate()
                .map(|(i, (kind, status, reply))| Frame::Response {
                    id: 100 + i as u32,
                    resp: Response {
                        kind: *kind,
                        status: *status,
                        reply: *reply,
                    },
                }),
        );
        frames.push(Frame::Event(Event::IkePacket(IkePacket {
            src: sa("[2001:db8::1]:4500"),
            dst: sa("[2001:db8::2]:4500"),
            data: vec![0xab; 1200],
        })));
        frames.push(Frame::Event(Event::Expire(Expire {
            proto: PROTO_ESP,
            spi: 0xc000_0002,
            dst: sa("192.0.2.2:0"),
            hard: true,
        })));
        frames
    }

    #[test]
    fn every_frame_round_trips() {
        for frame in all_frames() {
            let bytes = encode(&frame);
            let len = frame_len(bytes[..4].try_into().unwrap()).unwrap();
            assert_eq!(len, bytes.len() - 4);
            assert_eq!(decode(&bytes[4..]).unwrap(), frame, "{frame:?}");
        }
    }

    #[test]
    fn header_layout_is_fixed() {
        let bytes = encode(&Frame::Request {
            id: 0x0102_0304,
            req: Request::FlushSas,
        });
        assert_eq!(bytes, [0, 0, 0, 8, 0, 8, 0, 0, 1, 2, 3, 4]);
        let bytes = encode(&Frame::Response {
            id: 5,
            resp: Response {
                kind: MsgType::GetSpi,
                status: Status::Ok,
                reply: Reply::Spi(0xc0000001),
            },
        });
        assert_eq!(
            bytes,
            [0, 0, 0, 13, 0x80, 2, 0, 0, 0, 0, 0, 5, 0, 0xc0, 0, 0, 1]
        );
    }

    #[test]
    fn every_truncation_is_refused() {
        for frame in all_frames() {
            let bytes = encode(&frame);
            let body = &bytes[4..];
            for cut in 0..body.len() {
                assert!(decode(&body[..cut]).is_err(), "{frame:?} cut at {cut}");
            }
        }
    }

    #[test]
    fn trailing_bytes_are_refused() {
        for frame in all_frames() {
            let mut bytes = encode(&frame);
            bytes.push(0);
            let err = decode(&bytes[4..]).unwrap_err();
            assert_eq!(err.error, DecodeError::Trailing(1), "{frame:?}");
        }
    }

    #[test]
    fn bad_values_are_refused_with_the_request_id() {
        let frame = Frame::Request {
            id: 77,
            req: Request::AddSa(Box::new(sample_add_sa())),
        };
        let good = encode(&frame);
        // The mode byte follows the header, the sa id (v4 and v6 socket addresses 7 + 19, spi 4,
        // proto 1, mark 8, if_id 4) and the reqid (4).
        let mode_at = 4 + HEADER_LEN + 7 + 19 + 4 + 1 + 8 + 4 + 4;
        assert_eq!(good[mode_at], Mode::Tunnel as u8);
        let mut bad = good.clone();
        bad[mode_at] = 9;
        let err = decode(&bad[4..]).unwrap_err();
        assert_eq!(
            (err.kind, err.id, err.error),
            (4, 77, DecodeError::BadValue("mode"))
        );

        let mut unknown = encode(&Frame::Request {
            id: 1,
            req: Request::FlushSas,
        });
        unknown[5] = 0x7f;
        assert_eq!(
            decode(&unknown[4..]).unwrap_err().error,
            DecodeError::UnknownType(0x7f)
        );

        let mut flags = encode(&Frame::Request {
            id: 1,
            req: Request::FlushSas,
        });
        flags[7] = 1;
        assert_eq!(
            decode(&flags[4..]).unwrap_err().error,
            DecodeError::BadValue("flags")
        );

        let mut family = encode(&Frame::Request {
            id: 1,
            req: Request::BypassSocket { family: 4 },
        });
        family[12] = 5;
        assert_eq!(
            decode(&family[4..]).unwrap_err().error,
            DecodeError::BadValue("family")
        );
    }

    #[test]
    fn lengths_are_bounded() {
        assert!(frame_len([0, 0, 0, 7]).is_err());
        assert!(frame_len(((MAX_FRAME + 1) as u32).to_be_bytes()).is_err());
        assert_eq!(frame_len((MAX_FRAME as u32).to_be_bytes()), Ok(MAX_FRAME));

        // A key length above the bound is refused before anything is copied.
        let mut w = Writer::default();
        w.header(MsgType::AddSa as u16, 1);
        w.sa_id(&sample_sa_id());
        w.u32(1);
        w.u8(Mode::Tunnel as u8);
        w.u16(0);
        w.u16(0);
        w.string("");
        for _ in 0..9 {
            w.u64(0);
        }
        w.u16(20);
        w.u16((MAX_KEY + 1) as u16);
        let bytes = w.finish();
        assert_eq!(
            decode(&bytes[4..]).unwrap_err().error,
            DecodeError::TooLong("enc_key")
        );

        let mut w = Writer::default();
        w.header(MsgType::IkePacket as u16, 0);
        w.sockaddr(&sa("192.0.2.1:500"));
        w.sockaddr(&sa("192.0.2.2:500"));
        w.u32(u32::MAX);
        let bytes = w.finish();
        assert_eq!(
            decode(&bytes[4..]).unwrap_err().error,
            DecodeError::TooLong("ike data")
        );

        let mut many = Writer::default();
        many.header(MsgType::AddSa as u16, 1);
        many.sa_id(&sample_sa_id());
        many.u32(1);
        many.u8(Mode::Tunnel as u8);
        many.u16((MAX_TS + 1) as u16);
        let bytes = many.finish();
        assert_eq!(
            decode(&bytes[4..]).unwrap_err().error,
            DecodeError::TooLong("ts list")
        );
    }

    #[test]
    fn events_must_not_carry_an_id_or_be_answered() {
        let mut bytes = encode(&Frame::Event(Event::Expire(Expire {
            proto: PROTO_ESP,
            spi: 1,
            dst: sa("192.0.2.2:0"),
            hard: false,
        })));
        bytes[11] = 1;
        assert_eq!(
            decode(&bytes[4..]).unwrap_err().error,
            DecodeError::BadValue("event id")
        );
        bytes[11] = 0;
        bytes[4] |= 0x80;
        assert!(decode(&bytes[4..]).is_err());
    }

    #[test]
    fn mixed_family_selector_is_refused() {
        let mut p = sample_policy();
        p.id.dst_ts.to = "2001:db8::1".parse().unwrap();
        let bytes = encode(&Frame::Request {
            id: 1,
            req: Request::AddPolicy(Box::new(p)),
        });
        assert_eq!(
            decode(&bytes[4..]).unwrap_err().error,
            DecodeError::BadValue("ts families")
        );
    }

    #[test]
    fn keys_never_print() {
        let sa = sample_add_sa();
        let printed = format!("{sa:?}");
        assert!(printed.contains("<redacted 36 bytes>"), "{printed}");
        // The key bytes 0..36 would show up as "[0, 1, 2, ...".
        assert!(!printed.contains("0, 1, 2, 3"), "{printed}");
    }

    /// Deterministic pseudo-random garbage must never panic the decoder.
    #[test]
    fn garbage_never_panics() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let seeds: Vec<Vec<u8>> = all_frames().iter().map(encode).collect();
        for round in 0..20_000 {
            let mut bytes = seeds[round % seeds.len()][4..].to_vec();
            for _ in 0..(next() % 4 + 1) {
                let i = (next() as usize) % bytes.len();
                bytes[i] = next() as u8;
            }
            let _ = decode(&bytes);
        }
    }
}
