//! The messages of the charon plugin protocol as types: what each request, reply and event
//! carries. Their byte layout is in [`super::codec`].

use super::SecretKey;
use std::net::{IpAddr, SocketAddr};

/// Message types (the `type` field without [`super::RESPONSE_BIT`]).
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

    pub(super) fn is_event(self) -> bool {
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

/// Mark as in strongSwan's `mark_t`: value and mask.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Mark {
    pub value: u32,
    pub mask: u32,
}

/// A traffic selector (RFC 7296 section 3.13.1): address range, IP protocol, port range.
/// Both addresses have the same family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    pub(super) fn from_u8(v: u8) -> Option<Mode> {
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
    pub(super) fn to_bits(self) -> u8 {
        (self.encap as u8)
            | (self.esn as u8) << 1
            | (self.copy_df as u8) << 2
            | (self.copy_ecn as u8) << 3
            | (self.initiator as u8) << 4
            | (self.inbound as u8) << 5
            | (self.update as u8) << 6
    }
    pub(super) fn from_bits(b: u8) -> Option<SaFlags> {
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
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
