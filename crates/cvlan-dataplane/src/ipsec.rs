//! IPsec on the workers: the SA and policy tables charon installs through the `cvlan` plugin,
//! ESP sealing/opening with `cvlan_proto::esp`, and the IKE relay (UDP 500/4500 belong to the
//! data plane; IKE datagrams go to charon over the plugin link and back).
//!
//! Outbound pipeline (packets from the TUN queue):
//! 1. `select_policy` — the first outbound policy whose traffic selectors cover the packet.
//! 2. `select_sa`     — the newest outbound SA of that policy's reqid.
//! 3. `seal`          — ESP in place, then sent on the NAT-T socket to the SA's peer.
//!
//! Inbound pipeline (datagrams on 4500 and 500):
//! 1. `classify`      — RFC 3948: NAT-keepalive (ignored), IKE (to charon), or ESP.
//! 2. `lookup`        — the inbound SA of the SPI.
//! 3. `open`          — replay check, ICV, decrypt, padding, traffic selectors (cvlan-proto).
//! 4. deliver the inner packet to the TUN queue.
//!
//! The tables are copy-on-write (`ArcSwap`): charon's calls rebuild them on its own thread,
//! workers read a snapshot per batch and never take a lock per packet.

use crate::charon::protocol::{
    self as proto, AddSa, Expire, IkePacket, Mode, Policy, PolicyDir, PolicyId, SaId, SaStats,
    Status, TrafficSelector as WireTs, UpdateSa,
};
use crate::charon::server::{CharonHandle, SaBackend};
use crate::transport::{Ctx, Packet, Senders, Transport, Verdict};
use arc_swap::ArcSwap;
use cvlan_proto::esp::{
    self, udp_encap, EncryptionAlgorithm, InboundSa, IntegrityAlgorithm, LifetimeConfig,
    LifetimeEvent, Limits, OutboundSa, SaParams, TrafficSelector, TunnelEndpoints, UdpEncap,
};
use cvlan_proto::ip::{self, Prefix};
use rand_core::{OsRng, RngCore};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Socket indices of an IPsec device: NAT-T first (it carries ESP), IKE second, and the raw
/// ESP socket third where the device has one (`DeviceConfig::raw_esp`).
pub const SOCK_NATT: usize = 0;
pub const SOCK_IKE: usize = 1;
pub const SOCK_RAW: usize = 2;
/// IANA protocol number of ESP (RFC 4303).
const PROTO_ESP: u8 = 50;
/// RFC 4303 §2.1: SPIs 1..=255 are reserved by IANA.
const MIN_SPI: u32 = 256;
/// How long SAs and policies of a previous charon keep forwarding after a new one flushed them
/// (tuning): long enough for the new charon to negotiate replacements, short enough that a
/// tunnel the new configuration dropped does not linger.
const ORPHAN_GRACE: Duration = Duration::from_secs(60);

macro_rules! ipsec_drops {
    ($($variant:ident => $name:literal,)*) => {
        /// Why the IPsec engine dropped a packet (stable names, like the worker's drop reasons).
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(usize)]
        pub enum IpsecDrop { $($variant,)* }
        impl IpsecDrop {
            pub const ALL: &'static [IpsecDrop] = &[$(IpsecDrop::$variant,)*];
            pub fn as_str(self) -> &'static str { match self { $(IpsecDrop::$variant => $name,)* } }
        }
    };
}

ipsec_drops! {
    UnknownSpi => "esp_unknown_spi",
    Truncated => "esp_truncated",
    AuthFailed => "esp_auth_failed",
    Replayed => "esp_replayed",
    TooOld => "esp_too_old",
    BadPadding => "esp_bad_padding",
    BadNextHeader => "esp_bad_next_header",
    Dummy => "esp_dummy",
    InnerMalformed => "esp_inner_malformed",
    OutsideSelectors => "esp_outside_selectors",
    SaExpired => "esp_sa_expired",
    SequenceOverflow => "esp_sequence_overflow",
    BufferTooSmall => "esp_buffer_too_small",
    NoPolicy => "ipsec_no_policy",
    NoSa => "ipsec_no_sa",
    RawEspUnsupported => "ipsec_raw_esp_unsupported",
    IkeRelayFailed => "ike_relay_failed",
    IkeQueueFull => "ike_queue_full",
    IkeMalformed => "ike_malformed",
    IkeRateLimited => "ike_rate_limited",
    MalformedIp => "ipsec_malformed_ip",
}

impl From<crate::ike_gate::Refused> for IpsecDrop {
    fn from(r: crate::ike_gate::Refused) -> IpsecDrop {
        match r {
            crate::ike_gate::Refused::Malformed => IpsecDrop::IkeMalformed,
            crate::ike_gate::Refused::RateLimited => IpsecDrop::IkeRateLimited,
        }
    }
}

impl From<crate::charon::server::QueueError> for IpsecDrop {
    fn from(e: crate::charon::server::QueueError) -> IpsecDrop {
        match e {
            crate::charon::server::QueueError::Full => IpsecDrop::IkeQueueFull,
            crate::charon::server::QueueError::TooLarge => IpsecDrop::IkeRelayFailed,
        }
    }
}

impl From<esp::DropReason> for IpsecDrop {
    fn from(r: esp::DropReason) -> IpsecDrop {
        use esp::DropReason as R;
        match r {
            R::UnknownSpi => IpsecDrop::UnknownSpi,
            R::Truncated => IpsecDrop::Truncated,
            R::AuthFailed => IpsecDrop::AuthFailed,
            R::Replayed => IpsecDrop::Replayed,
            R::TooOld => IpsecDrop::TooOld,
            R::BadPadding => IpsecDrop::BadPadding,
            R::BadNextHeader => IpsecDrop::BadNextHeader,
            R::DummyPacket => IpsecDrop::Dummy,
            R::InnerMalformed => IpsecDrop::InnerMalformed,
            R::OutsideSelectors => IpsecDrop::OutsideSelectors,
            R::SaExpired => IpsecDrop::SaExpired,
            R::SequenceOverflow => IpsecDrop::SequenceOverflow,
            R::BufferTooSmall => IpsecDrop::BufferTooSmall,
        }
    }
}

/// Engine-wide counters (shared by the workers; only drops and IKE relay, which are rare).
pub struct IpsecCounters {
    pub drops: Vec<AtomicU64>,
    pub ike_in: AtomicU64,
    pub ike_out: AtomicU64,
    pub nat_keepalives: AtomicU64,
    pub expires_sent: AtomicU64,
}

impl IpsecCounters {
    fn new() -> IpsecCounters {
        IpsecCounters {
            drops: IpsecDrop::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            ike_in: AtomicU64::new(0),
            ike_out: AtomicU64::new(0),
            nat_keepalives: AtomicU64::new(0),
            expires_sent: AtomicU64::new(0),
        }
    }
    fn drop(&self, r: IpsecDrop) {
        self.drops[r as usize].fetch_add(1, Relaxed);
    }
    pub fn drop_counts(&self) -> Vec<(IpsecDrop, u64)> {
        IpsecDrop::ALL
            .iter()
            .map(|r| (*r, self.drops[*r as usize].load(Relaxed)))
            .collect()
    }
}

struct InboundEntry {
    sa: InboundSa,
    id: SaId,
}

struct OutboundEntry {
    sa: Arc<OutboundSa>,
    id: SaId,
    /// Where ESP goes: the peer's NAT-T address (updated by `update_sa`).
    peer: SocketAddr,
    encap: bool,
    reqid: u32,
    installed: u64,
}

struct OutPolicy {
    src: WireTs,
    dst: WireTs,
    /// The reqid of the newest installation: its SAs carry the traffic.
    reqid: u32,
    /// reqids of every installation of this policy id, oldest first. charon installs a policy
    /// again for each CHILD_SA that uses it (a rekey installs the new one before deleting the
    /// old) and deletes it once per installation, as kernel-netlink counts them.
    installs: Vec<u32>,
    if_id: u32,
    /// Smaller is more specific and wins.
    rank: u128,
    id: PolicyId,
    /// Installed by a previous charon (see `Table::orphan_spis`).
    orphan: bool,
}

#[derive(Default, Clone)]
struct Table {
    inbound: HashMap<u32, Arc<InboundEntry>>,
    outbound: HashMap<u32, Arc<OutboundEntry>>,
    /// Outbound SAs by reqid, newest last.
    by_reqid: HashMap<u32, Vec<Arc<OutboundEntry>>>,
    out_policies: Vec<Arc<OutPolicy>>,
    /// In/fwd policies (with their installation count) are kept only to answer charon
    /// consistently; inbound checks use the SA's own selectors.
    other_policies: Vec<(PolicyId, usize)>,
    /// SPIs a previous charon installed and a new one flushed: still in `inbound`/`outbound`,
    /// forwarding, until replaced or `ORPHAN_GRACE` after `orphaned_at` (see `flush_sas`).
    orphan_spis: HashSet<u32>,
    orphaned_at: Option<Duration>,
}

/// A view of one installed SA, for the control plane (no key material).
#[derive(Debug, Clone)]
pub struct SaView {
    pub spi: u32,
    pub inbound: bool,
    pub if_id: u32,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub bytes: u64,
    pub packets: u64,
    pub idle_secs: Option<u64>,
    pub algorithm: String,
    pub esn: bool,
    pub encap: bool,
}

/// The IPsec engine: SA tables, ESP, IKE relay. Shared by the workers and charon's link.
pub struct IpsecEngine {
    local: IpAddr,
    epoch: Instant,
    table: ArcSwap<Table>,
    edit: Mutex<Table>,
    reserved_spis: Mutex<HashSet<u32>>,
    install_seq: AtomicU64,
    charon: OnceLock<CharonHandle>,
    senders: OnceLock<Senders>,
    algos: Mutex<HashMap<u32, (String, bool)>>,
    pub counters: IpsecCounters,
    /// Tenant tag of each tunnel (if_id) when the device serves several tenants; empty: one.
    tenants: ArcSwap<HashMap<u32, u32>>,
    ike_gate: crate::ike_gate::IkeGate,
    events: OnceLock<crate::EventSink>,
}

fn ts_in_range(addr: IpAddr, from: IpAddr, to: IpAddr) -> bool {
    match (addr, from, to) {
        (IpAddr::V4(a), IpAddr::V4(f), IpAddr::V4(t)) => {
            (u32::from(f)..=u32::from(t)).contains(&u32::from(a))
        }
        (IpAddr::V6(a), IpAddr::V6(f), IpAddr::V6(t)) => {
            (u128::from(f)..=u128::from(t)).contains(&u128::from(a))
        }
        _ => false,
    }
}

fn range_size(ts: &WireTs) -> u128 {
    match (ts.from, ts.to) {
        (IpAddr::V4(f), IpAddr::V4(t)) => u128::from(u32::from(t).saturating_sub(u32::from(f))),
        (IpAddr::V6(f), IpAddr::V6(t)) => u128::from(t).saturating_sub(u128::from(f)),
        _ => u128::MAX,
    }
}

/// How specific a selector's address range is, as a prefix length (the largest prefix that fits
/// in it), so IPsec routes compare with the tenant's other longest-prefix routes.
fn prefix_len_of(ts: &WireTs) -> u8 {
    let width: u32 = if ts.from.is_ipv4() { 32 } else { 128 };
    // range_size is (to - from): the number of addresses minus one.
    let host_bits = 128 - range_size(ts).leading_zeros();
    width.saturating_sub(host_bits) as u8
}

fn wire_ts_matches(ts: &WireTs, addr: IpAddr, proto: u8, port: Option<u16>) -> bool {
    if !ts_in_range(addr, ts.from, ts.to) {
        return false;
    }
    if ts.protocol != 0 && ts.protocol != proto {
        return false;
    }
    if ts.from_port == 0 && ts.to_port == u16::MAX {
        return true;
    }
    port.is_some_and(|p| (ts.from_port..=ts.to_port).contains(&p))
}

/// The prefixes covering a charon address range (ranges from IKE are usually single prefixes).
fn range_to_prefixes(from: IpAddr, to: IpAddr) -> Vec<Prefix> {
    let mut out = Vec::new();
    match (from, to) {
        (IpAddr::V4(f), IpAddr::V4(t)) => {
            let (mut lo, hi) = (u64::from(u32::from(f)), u64::from(u32::from(t)));
            while lo <= hi && out.len() < 64 {
                let mut len = 32u32;
                while len > 0 {
                    let size = 1u64 << (32 - (len - 1));
                    if lo % size != 0 || lo + size - 1 > hi {
                        break;
                    }
                    len -= 1;
                }
                out.extend(Prefix::new(IpAddr::V4((lo as u32).into()), len as u8));
                lo += 1u64 << (32 - len);
            }
        }
        (IpAddr::V6(f), IpAddr::V6(t)) => {
            let (mut lo, hi) = (u128::from(f), u128::from(t));
            loop {
                let mut len = 128u32;
                while len > 0 {
                    let bits = 128 - (len - 1);
                    if bits >= 128 {
                        if lo == 0 && hi == u128::MAX {
                            len -= 1;
                        }
                        break;
                    }
                    let size = 1u128 << bits;
                    if lo % size != 0 || lo.checked_add(size - 1).is_none_or(|e| e > hi) {
                        break;
                    }
                    len -= 1;
                }
                out.extend(Prefix::new(IpAddr::V6(lo.into()), len as u8));
                let step = if len == 0 {
                    return out;
                } else {
                    1u128 << (128 - len)
                };
                match lo.checked_add(step) {
                    Some(n) if n <= hi && out.len() < 64 => lo = n,
                    _ => break,
                }
            }
        }
        _ => {}
    }
    out
}

fn to_selectors(list: &[WireTs]) -> Vec<TrafficSelector> {
    let mut out = Vec::new();
    for ts in list {
        for prefix in range_to_prefixes(ts.from, ts.to) {
            out.push(TrafficSelector {
                prefix,
                protocol: (ts.protocol != 0).then_some(ts.protocol),
                ports: (!(ts.from_port == 0 && ts.to_port == u16::MAX))
                    .then_some(ts.from_port..=ts.to_port),
            });
        }
    }
    out
}

fn limits(l: &proto::Lifetime, soft: bool) -> Limits {
    let pick = |x: &proto::Limits| {
        let v = if soft { x.rekey } else { x.life };
        (v != 0).then_some(v)
    };
    Limits {
        bytes: pick(&l.bytes),
        packets: pick(&l.packets),
        time: pick(&l.time).map(Duration::from_secs),
    }
}

fn ports_of(pkt: &[u8], info: &ip::IpInfo) -> Option<u16> {
    // Destination port of TCP/UDP/SCTP for port-restricted policies (first header only).
    if !matches!(info.proto, 6 | 17 | 132) {
        return None;
    }
    let off = if info.src.is_ipv4() {
        usize::from(pkt[0] & 0x0f) * 4
    } else {
        ip::IPV6_HEADER
    };
    pkt.get(off + 2..off + 4)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
}

impl IpsecEngine {
    /// `local` is the address the device's sockets are bound to: IKE datagrams are reported
    /// to charon as sent to it.
    pub fn new(local: IpAddr) -> Arc<IpsecEngine> {
        Arc::new(IpsecEngine {
            local,
            epoch: Instant::now(),
            table: ArcSwap::from_pointee(Table::default()),
            edit: Mutex::new(Table::default()),
            reserved_spis: Mutex::new(HashSet::new()),
            install_seq: AtomicU64::new(0),
            charon: OnceLock::new(),
            senders: OnceLock::new(),
            algos: Mutex::new(HashMap::new()),
            counters: IpsecCounters::new(),
            tenants: ArcSwap::from_pointee(HashMap::new()),
            ike_gate: Default::default(),
            events: OnceLock::new(),
        })
    }

    /// Where the engine reports what it does on its own (set once).
    pub fn set_events(&self, sink: crate::EventSink) {
        let _ = self.events.set(sink);
    }

    /// Connects the engine to charon's link (set once, after the link is bound).
    pub fn set_charon(&self, handle: CharonHandle) {
        let _ = self.charon.set(handle);
    }

    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    fn commit<R>(&self, f: impl FnOnce(&mut Table) -> R) -> R {
        let mut t = self.edit.lock().unwrap_or_else(|e| e.into_inner());
        let r = f(&mut t);
        self.table.store(Arc::new(t.clone()));
        r
    }

    /// Every installed SA with its counters.
    pub fn sas(&self) -> Vec<SaView> {
        let t = self.table.load();
        let now = self.now();
        let algos = self.algos.lock().unwrap_or_else(|e| e.into_inner());
        let view = |spi: u32, inbound: bool, id: &SaId, c: esp::Counters, encap: bool| {
            let (algorithm, esn) = algos.get(&spi).cloned().unwrap_or_default();
            SaView {
                spi,
                inbound,
                if_id: id.if_id,
                src: id.src,
                dst: id.dst,
                bytes: c.bytes,
                packets: c.packets,
                idle_secs: c.last_use.map(|u| now.saturating_sub(u).as_secs()),
                algorithm,
                esn,
                encap,
            }
        };
        let mut v: Vec<SaView> = t
            .inbound
            .values()
            .map(|e| {
                view(
                    e.sa.spi(),
                    true,
                    &e.id,
                    e.sa.counters(),
                    e.sa.tunnel().udp.is_some(),
                )
            })
            .collect();
        v.extend(
            t.outbound
                .values()
                .map(|e| view(e.sa.spi(), false, &e.id, e.sa.counters(), e.encap)),
        );
        v.sort_by_key(|s| (s.if_id, !s.inbound, s.spi));
        v
    }

    fn report(&self, spi: u32, dst: SocketAddr, ev: LifetimeEvent) {
        if let Some(c) = self.charon.get() {
            let hard = ev == LifetimeEvent::HardExpire;
            if c.expire(Expire {
                proto: PROTO_ESP,
                spi,
                dst,
                hard,
            })
            .is_ok()
            {
                self.counters.expires_sent.fetch_add(1, Relaxed);
            }
        }
    }

    /// Outbound: protects one IP packet from a TUN queue; sets `Send` to the peer or drops.
    /// Sets the tenant tag of each tunnel (if_id → tag). Tagged packets then match only their
    /// tenant's policies, and packets from a tunnel carry its tenant's tag.
    pub fn set_tenants(&self, tenants: HashMap<u32, u32>) {
        self.tenants.store(Arc::new(tenants));
    }

    /// The outbound policy that covers a packet (policies are sorted, most specific first),
    /// among the policies of tenant `tag` (0: all).
    fn select_policy<'t>(
        t: &'t Table,
        tenants: &HashMap<u32, u32>,
        pkt: &[u8],
        info: &ip::IpInfo,
        tag: u32,
    ) -> Option<&'t OutPolicy> {
        let port = ports_of(pkt, info);
        t.out_policies
            .iter()
            .find(|p| {
                (tag == 0 || tenants.get(&p.if_id) == Some(&tag))
                    && wire_ts_matches(&p.src, info.src, info.proto, None)
                    && wire_ts_matches(&p.dst, info.dst, info.proto, port)
            })
            .map(|p| p.as_ref())
    }

    fn protect(&self, t: &Table, pkt: &mut Packet, now: Duration) -> Result<(), IpsecDrop> {
        let info = ip::parse(pkt.data()).map_err(|_| IpsecDrop::MalformedIp)?;
        let policy = Self::select_policy(t, &self.tenants.load(), pkt.data(), &info, pkt.tag)
            .ok_or(IpsecDrop::NoPolicy)?;
        let entry = t
            .by_reqid
            .get(&policy.reqid)
            .and_then(|v| v.last())
            .ok_or(IpsecDrop::NoSa)?;
        // ESP without UDP goes out on the raw socket; charon negotiates it only when the plugin
        // did not announce KERNEL_REQUIRE_UDP_ENCAPSULATION, i.e. when the device has one.
        let (sock, addr) = if entry.encap {
            (SOCK_NATT, entry.peer)
        } else if self.raw_esp() {
            (SOCK_RAW, SocketAddr::new(entry.peer.ip(), 0))
        } else {
            return Err(IpsecDrop::RawEspUnsupported);
        };
        // The proto crate seals at `inner` inside the whole buffer, growing into head/tailroom.
        let inner = pkt.start..pkt.start + info.len;
        let sealed = entry
            .sa
            .seal(pkt.raw_mut(), inner, now, &mut OsRng)
            .map_err(IpsecDrop::from)?;
        if let Some(ev) = sealed.event {
            self.report(entry.sa.spi(), entry.id.dst, ev);
        }
        pkt.start = sealed.esp.start;
        pkt.len = sealed.esp.len();
        pkt.addr = addr;
        pkt.sock = sock;
        pkt.verdict = Verdict::Send;
        Ok(())
    }

    /// Inbound: a datagram on one of the device's sockets.
    fn receive(&self, t: &Table, pkt: &mut Packet, now: Duration) -> Result<(), IpsecDrop> {
        if pkt.sock == SOCK_IKE {
            return self.to_charon(pkt);
        }
        let classified = if pkt.sock == SOCK_RAW {
            // An IPv4 raw socket delivers the IP header too (IPv6 ones do not).
            if pkt.addr.is_ipv4() {
                let ihl = usize::from(pkt.data().first().copied().unwrap_or(0) & 0x0f) * 4;
                if ihl < 20 || !pkt.pull_front(ihl) {
                    return Err(IpsecDrop::from(esp::DropReason::Truncated));
                }
            }
            udp_encap::classify_raw(pkt.data())
        } else {
            udp_encap::classify(pkt.data())
        };
        let (spi, esp_len) = match classified {
            Ok(udp_encap::Datagram::Keepalive) => {
                self.counters.nat_keepalives.fetch_add(1, Relaxed);
                pkt.verdict = Verdict::Drop;
                return Ok(());
            }
            Ok(udp_encap::Datagram::Ike(_)) => return self.to_charon(pkt),
            Ok(udp_encap::Datagram::Esp { spi, packet }) => (spi, packet.len()),
            Err(r) => return Err(r.into()),
        };
        let entry = t.inbound.get(&spi).ok_or(IpsecDrop::UnknownSpi)?;
        let start = pkt.start;
        let opened = entry
            .sa
            .open(&mut pkt.data_mut()[..esp_len], now)
            .map_err(IpsecDrop::from)?;
        if let Some(ev) = opened.event {
            self.report(spi, entry.id.dst, ev);
        }
        pkt.start = start + opened.inner.start;
        pkt.len = opened.inner.len();
        pkt.tag = self
            .tenants
            .load()
            .get(&entry.id.if_id)
            .copied()
            .unwrap_or(0);
        pkt.verdict = Verdict::ToTun;
        Ok(())
    }

    fn to_charon(&self, pkt: &mut Packet) -> Result<(), IpsecDrop> {
        pkt.verdict = Verdict::Drop;
        let Some(c) = self.charon.get() else {
            return Err(IpsecDrop::IkeRelayFailed);
        };
        let port = if pkt.sock == SOCK_IKE { 500 } else { 4500 };
        let local_port = self
            .senders
            .get()
            .and_then(|s| s.port(pkt.sock))
            .unwrap_or(port);
        let marker = if pkt.sock == SOCK_IKE { 0 } else { 4 };
        self.ike_gate
            .admit(pkt.addr.ip(), &pkt.data()[marker..], self.now())?;
        let ike = IkePacket {
            src: pkt.addr,
            dst: SocketAddr::new(self.local, local_port),
            data: pkt.data().to_vec(),
        };
        c.send_ike(ike).map_err(IpsecDrop::from)?;
        self.counters.ike_in.fetch_add(1, Relaxed);
        Ok(())
    }

    /// Whether the device has a raw ESP socket (known once the workers' senders are attached).
    pub fn raw_esp(&self) -> bool {
        self.senders.get().is_some_and(|s| s.len() > SOCK_RAW)
    }

    /// Checks time-based lifetimes (called from a worker tick; cheap when nothing expires).
    pub fn poll_lifetimes(&self) {
        let now = self.now();
        if self
            .table
            .load()
            .orphaned_at
            .is_some_and(|at| now.saturating_sub(at) >= ORPHAN_GRACE)
        {
            self.drop_orphans();
        }
        let t = self.table.load();
        for e in t.inbound.values() {
            if let Some(ev) = e.sa.poll_lifetime(now) {
                self.report(e.sa.spi(), e.id.dst, ev);
            }
        }
        for e in t.outbound.values() {
            if let Some(ev) = e.sa.poll_lifetime(now) {
                self.report(e.sa.spi(), e.id.dst, ev);
            }
        }
    }

    /// Removes what a previous charon installed and the current one did not replace.
    fn drop_orphans(&self) {
        let mut removed: Vec<(u32, u32)> = Vec::new();
        self.commit(|t| {
            let spis = std::mem::take(&mut t.orphan_spis);
            for spi in &spis {
                if let Some(e) = t.inbound.remove(spi) {
                    removed.push((e.id.if_id, *spi));
                }
                if let Some(e) = t.outbound.remove(spi) {
                    removed.push((e.id.if_id, *spi));
                }
            }
            for list in t.by_reqid.values_mut() {
                list.retain(|e| !spis.contains(&e.sa.spi()));
            }
            t.by_reqid.retain(|_, l| !l.is_empty());
            t.out_policies.retain(|p| !p.orphan);
            t.orphaned_at = None;
        });
        crate::orphans::report_removed(self.events.get(), removed, ORPHAN_GRACE);
    }

    fn snapshot(&self) -> arc_swap::Guard<Arc<Table>> {
        self.table.load()
    }

    // ---- what charon asks for (through the plugin link) ----

    fn get_spi(&self) -> u32 {
        let t = self.snapshot();
        let mut reserved = self.reserved_spis.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let spi = OsRng.next_u32();
            if spi >= MIN_SPI && !t.inbound.contains_key(&spi) && reserved.insert(spi) {
                return spi;
            }
        }
    }

    fn add_sa(&self, sa: AddSa) -> Result<(), Status> {
        if sa.mode != Mode::Tunnel || sa.id.proto != PROTO_ESP || sa.ipcomp != 0 {
            return Err(Status::NotSupported);
        }
        let enc = EncryptionAlgorithm::from_ikev2(sa.enc_alg, sa.enc_key.expose().len())
            .ok_or(Status::NotSupported)?;
        let integ = if enc.is_aead() {
            None
        } else {
            let a = IntegrityAlgorithm::from_ikev2(sa.int_alg).ok_or(Status::NotSupported)?;
            Some((a, sa.int_key.expose()))
        };
        let inbound = sa.flags.inbound;
        let (local, remote) = if inbound {
            (sa.id.dst, sa.id.src)
        } else {
            (sa.id.src, sa.id.dst)
        };
        let tunnel = TunnelEndpoints {
            local: local.ip(),
            remote: remote.ip(),
            udp: sa.flags.encap.then_some(UdpEncap {
                local_port: local.port(),
                remote_port: remote.port(),
            }),
        };
        let dir = if inbound {
            esp::Direction::Inbound
        } else {
            esp::Direction::Outbound
        };
        let mut params = SaParams::new(sa.id.spi, dir, enc, sa.enc_key.expose(), integ, tunnel);
        params.esn = sa.flags.esn;
        if sa.replay_window > 0 {
            params.replay_window = sa.replay_window.max(esp::sa::DEFAULT_REPLAY_WINDOW);
        }
        params.lifetime = LifetimeConfig {
            soft: limits(&sa.lifetime, true),
            hard: limits(&sa.lifetime, false),
        };
        // charon passes selectors as the packets of this SA see them: sources in src_ts,
        // destinations in dst_ts (so for an inbound SA src_ts is the peer's side).
        let (local_ts, remote_ts) = if inbound {
            (to_selectors(&sa.dst_ts), to_selectors(&sa.src_ts))
        } else {
            (to_selectors(&sa.src_ts), to_selectors(&sa.dst_ts))
        };
        params.local_ts = local_ts;
        params.remote_ts = remote_ts;
        let now = self.now();
        let name = format!(
            "{enc:?}{}",
            integ.map(|(a, _)| format!("+{a:?}")).unwrap_or_default()
        );
        self.algos
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(sa.id.spi, (name, sa.flags.esn));
        if inbound {
            let esa = InboundSa::new(&params, now).map_err(|_| Status::Invalid)?;
            self.reserved_spis
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&sa.id.spi);
            let entry = Arc::new(InboundEntry { sa: esa, id: sa.id });
            self.commit(|t| {
                t.orphan_spis.remove(&sa.id.spi);
                t.inbound.insert(sa.id.spi, entry);
            });
        } else {
            let esa = Arc::new(OutboundSa::new(&params, now).map_err(|_| Status::Invalid)?);
            let entry = Arc::new(OutboundEntry {
                sa: esa,
                id: sa.id,
                peer: sa.id.dst,
                encap: sa.flags.encap,
                reqid: sa.reqid,
                installed: self.install_seq.fetch_add(1, Relaxed),
            });
            self.commit(|t| {
                if t.orphan_spis.remove(&sa.id.spi) {
                    for list in t.by_reqid.values_mut() {
                        list.retain(|e| e.sa.spi() != sa.id.spi);
                    }
                }
                t.outbound.insert(sa.id.spi, entry.clone());
                let list = t.by_reqid.entry(sa.reqid).or_default();
                list.push(entry);
                list.sort_by_key(|e| e.installed);
            });
        }
        Ok(())
    }

    fn update_sa(&self, u: &UpdateSa) -> Result<(), Status> {
        self.commit(|t| {
            let Some(old) = t.outbound.get(&u.id.spi).cloned() else {
                // Inbound SAs are found by SPI; their addresses do not matter to the data plane.
                return if t.inbound.contains_key(&u.id.spi) {
                    Ok(())
                } else {
                    Err(Status::NotFound)
                };
            };
            let new = Arc::new(OutboundEntry {
                sa: old.sa.clone(),
                id: SaId {
                    src: u.new_src,
                    dst: u.new_dst,
                    ..old.id
                },
                peer: u.new_dst,
                encap: u.new_encap,
                reqid: old.reqid,
                installed: old.installed,
            });
            t.outbound.insert(u.id.spi, new.clone());
            if let Some(list) = t.by_reqid.get_mut(&old.reqid) {
                for e in list.iter_mut() {
                    if e.sa.spi() == u.id.spi {
                        *e = new.clone();
                    }
                }
            }
            Ok(())
        })
    }

    fn query_sa(&self, id: &SaId) -> Result<SaStats, Status> {
        let t = self.snapshot();
        let c = if let Some(e) = t.inbound.get(&id.spi) {
            e.sa.counters()
        } else if let Some(e) = t.outbound.get(&id.spi) {
            e.sa.counters()
        } else {
            return Err(Status::NotFound);
        };
        let now = self.now();
        Ok(SaStats {
            bytes: c.bytes,
            packets: c.packets,
            idle_secs: c
                .last_use
                .map(|u| u32::try_from(now.saturating_sub(u).as_secs()).unwrap_or(u32::MAX)),
        })
    }

    fn del_sa(&self, id: &SaId) -> Result<(), Status> {
        self.algos
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id.spi);
        self.reserved_spis
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id.spi);
        self.commit(|t| {
            t.orphan_spis.remove(&id.spi);
            let found = t.inbound.remove(&id.spi).is_some() | t.outbound.remove(&id.spi).is_some();
            for list in t.by_reqid.values_mut() {
                list.retain(|e| e.sa.spi() != id.spi);
            }
            t.by_reqid.retain(|_, l| !l.is_empty());
            if found {
                Ok(())
            } else {
                Err(Status::NotFound)
            }
        })
    }

    fn add_policy(&self, p: Policy) -> Result<(), Status> {
        self.commit(|t| {
            if p.id.dir != PolicyDir::Out {
                match t.other_policies.iter_mut().find(|(id, _)| *id == p.id) {
                    Some((_, n)) => *n += 1,
                    None => t.other_policies.push((p.id.clone(), 1)),
                }
                return Ok(());
            }
            // A previous charon's installations do not count for the new one.
            let mut installs = t
                .out_policies
                .iter()
                .find(|x| x.id == p.id && !x.orphan)
                .map(|x| x.installs.clone())
                .unwrap_or_default();
            installs.push(p.sa.reqid);
            t.out_policies.retain(|x| x.id != p.id);
            let rank = range_size(&p.id.src_ts).saturating_add(range_size(&p.id.dst_ts));
            t.out_policies.push(Arc::new(OutPolicy {
                src: p.id.src_ts,
                dst: p.id.dst_ts,
                reqid: p.sa.reqid,
                installs,
                if_id: p.id.if_id,
                rank: if p.manual_prio != 0 {
                    u128::from(p.manual_prio)
                } else {
                    rank
                },
                id: p.id.clone(),
                orphan: false,
            }));
            t.out_policies.sort_by_key(|x| x.rank);
            Ok(())
        })
    }

    /// Removes one installation; the policy stays while others use it.
    fn del_policy(&self, p: &Policy) -> Result<(), Status> {
        self.commit(|t| {
            if p.id.dir != PolicyDir::Out {
                let i = t
                    .other_policies
                    .iter()
                    .position(|(id, _)| *id == p.id)
                    .ok_or(Status::NotFound)?;
                t.other_policies[i].1 -= 1;
                if t.other_policies[i].1 == 0 {
                    t.other_policies.remove(i);
                }
                return Ok(());
            }
            let i = t
                .out_policies
                .iter()
                .position(|x| x.id == p.id)
                .ok_or(Status::NotFound)?;
            let old = t.out_policies[i].clone();
            let mut installs = old.installs.clone();
            // The installation of this CHILD_SA's reqid; the newest if none matches.
            let k = installs
                .iter()
                .rposition(|r| *r == p.sa.reqid)
                .unwrap_or(installs.len() - 1);
            installs.remove(k);
            match installs.last() {
                None => {
                    t.out_policies.remove(i);
                }
                Some(&reqid) => {
                    t.out_policies[i] = Arc::new(OutPolicy {
                        src: old.src,
                        dst: old.dst,
                        reqid,
                        installs,
                        if_id: old.if_id,
                        rank: old.rank,
                        id: old.id.clone(),
                        orphan: old.orphan,
                    });
                }
            }
            Ok(())
        })
    }

    /// Relays an IKE datagram from charon to the network (port 500 → IKE socket, else NAT-T).
    fn send_ike(&self, packet: IkePacket) {
        let sock = if packet.src.port() == 500 {
            SOCK_IKE
        } else {
            SOCK_NATT
        };
        match self.senders.get() {
            Some(s) if s.send_to(sock, &packet.data, packet.dst).is_ok() => {
                self.counters.ike_out.fetch_add(1, Relaxed);
            }
            _ => self.counters.drop(IpsecDrop::IkeRelayFailed),
        }
    }

    /// Number of outbound policies (for diagnostics and tests).
    pub fn policy_count(&self) -> usize {
        let t = self.snapshot();
        t.out_policies.len() + t.other_policies.len()
    }

    /// if_id of each outbound policy (tunnel identity as configured through VICI).
    pub fn policy_if_ids(&self) -> Vec<u32> {
        self.snapshot()
            .out_policies
            .iter()
            .map(|p| p.if_id)
            .collect()
    }
}

/// The plugin link's view of the engine.
pub struct IpsecBackend(pub Arc<IpsecEngine>);

impl SaBackend for IpsecBackend {
    fn get_spi(&mut self, _src: SocketAddr, _dst: SocketAddr, proto: u8) -> Result<u32, Status> {
        if proto != PROTO_ESP {
            return Err(Status::NotSupported);
        }
        Ok(self.0.get_spi())
    }
    fn add_sa(&mut self, sa: AddSa) -> Result<(), Status> {
        self.0.add_sa(sa)
    }
    fn update_sa(&mut self, update: &UpdateSa) -> Result<(), Status> {
        self.0.update_sa(update)
    }
    fn query_sa(&mut self, id: &SaId) -> Result<SaStats, Status> {
        self.0.query_sa(id)
    }
    fn del_sa(&mut self, id: &SaId) -> Result<(), Status> {
        self.0.del_sa(id)
    }
    /// A new charon (or a resync) starts from nothing. The SAs it never installed are not
    /// dropped at once: they keep forwarding as orphans until the new charon has negotiated their
    /// replacements, at most `ORPHAN_GRACE`, so a charon restart costs no traffic.
    fn flush_sas(&mut self) -> Result<(), Status> {
        let now = self.0.now();
        self.0.commit(|t| {
            t.orphan_spis
                .extend(t.inbound.keys().chain(t.outbound.keys()).copied());
            if !t.orphan_spis.is_empty() {
                t.orphaned_at = Some(now);
            }
        });
        self.0
            .reserved_spis
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        Ok(())
    }
    fn add_policy(&mut self, policy: Policy) -> Result<(), Status> {
        self.0.add_policy(policy)
    }
    fn del_policy(&mut self, policy: &Policy) -> Result<(), Status> {
        self.0.del_policy(policy)
    }
    /// Outbound policies stay as orphans with their SAs (see `flush_sas`); a policy the new
    /// charon installs again replaces its orphan.
    fn flush_policies(&mut self) -> Result<(), Status> {
        self.0.commit(|t| {
            for p in t.out_policies.iter_mut() {
                if !p.orphan {
                    *p = Arc::new(OutPolicy {
                        src: p.src,
                        dst: p.dst,
                        reqid: p.reqid,
                        installs: p.installs.clone(),
                        if_id: p.if_id,
                        rank: p.rank,
                        id: p.id.clone(),
                        orphan: true,
                    });
                }
            }
            t.other_policies.clear();
        });
        Ok(())
    }
    fn send_ike(&mut self, packet: IkePacket) {
        self.0.send_ike(packet);
    }
}

/// A standalone IPsec device: TUN ⇄ ESP (site to site, or a host's own tunnel).
pub struct IpsecTransport {
    pub engine: Arc<IpsecEngine>,
}

impl Transport for IpsecTransport {
    fn name(&self) -> &'static str {
        "ipsec"
    }

    fn attach(&self, senders: Senders) {
        let _ = self.engine.senders.set(senders);
    }

    fn encapsulate(&self, ctx: &mut Ctx<'_>, pkts: &mut [Packet]) {
        let t = self.engine.table.load();
        let now = self.engine.now();
        for p in pkts {
            if let Err(r) = self.engine.protect(&t, p, now) {
                p.verdict = Verdict::Drop;
                self.engine.counters.drop(r);
            }
        }
        let _ = ctx;
    }

    /// Claims the inner packets an outbound policy covers (a tunnel's traffic selectors).
    fn claims(&self, pkts: &mut [Packet]) {
        let t = self.engine.table.load();
        let tenants = self.engine.tenants.load();
        for p in pkts.iter_mut().filter(|p| p.verdict == Verdict::ToTun) {
            if let Ok(info) = ip::parse(p.data()) {
                let policy = IpsecEngine::select_policy(&t, &tenants, p.data(), &info, p.tag);
                p.claimed = policy.is_some();
                p.claim_len = policy.map_or(0, |x| prefix_len_of(&x.dst));
            }
        }
    }

    fn decapsulate(&self, ctx: &mut Ctx<'_>, pkts: &mut [Packet]) {
        let t = self.engine.table.load();
        let now = self.engine.now();
        for p in pkts {
            if let Err(r) = self.engine.receive(&t, p, now) {
                p.verdict = Verdict::Drop;
                self.engine.counters.drop(r);
            }
        }
        let _ = ctx;
    }

    fn tick(&self, ctx: &mut Ctx<'_>) {
        // One worker is enough to poll time lifetimes.
        if ctx.worker == 0 {
            self.engine.poll_lifetimes();
        }
    }

    fn tick_interval(&self) -> Duration {
        Duration::from_secs(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_become_prefixes() {
        let r = |a: &str, b: &str| {
            range_to_prefixes(a.parse().unwrap(), b.parse().unwrap())
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(r("10.1.0.0", "10.1.0.255"), ["10.1.0.0/24"]);
        assert_eq!(r("0.0.0.0", "255.255.255.255"), ["0.0.0.0/0"]);
        assert_eq!(r("10.0.0.1", "10.0.0.1"), ["10.0.0.1/32"]);
        assert_eq!(r("10.0.0.0", "10.0.2.255"), ["10.0.0.0/23", "10.0.2.0/24"]);
        assert_eq!(r("fd00::", "fd00::ffff:ffff:ffff:ffff"), ["fd00::/64"]);
        assert_eq!(r("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), ["::/0"]);
    }

    #[test]
    fn selector_ranges_compare_as_prefix_lengths() {
        let ts = |a: &str, b: &str| WireTs {
            protocol: 0,
            from_port: 0,
            to_port: 65535,
            from: a.parse().unwrap(),
            to: b.parse().unwrap(),
        };
        assert_eq!(prefix_len_of(&ts("10.1.0.0", "10.1.255.255")), 16);
        assert_eq!(prefix_len_of(&ts("10.1.2.3", "10.1.2.3")), 32);
        assert_eq!(prefix_len_of(&ts("0.0.0.0", "255.255.255.255")), 0);
        assert_eq!(
            prefix_len_of(&ts("fd00::", "fd00::ffff:ffff:ffff:ffff")),
            64
        );
        assert_eq!(
            prefix_len_of(&ts("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")),
            0
        );
    }

    #[test]
    fn selector_matching() {
        let ts = WireTs {
            protocol: 0,
            from_port: 0,
            to_port: 65535,
            from: "10.1.0.0".parse().unwrap(),
            to: "10.1.0.255".parse().unwrap(),
        };
        assert!(wire_ts_matches(
            &ts,
            "10.1.0.7".parse().unwrap(),
            6,
            Some(80)
        ));
        assert!(!wire_ts_matches(
            &ts,
            "10.1.1.7".parse().unwrap(),
            6,
            Some(80)
        ));
        let tcp80 = WireTs {
            protocol: 6,
            from_port: 80,
            to_port: 80,
            ..ts
        };
        assert!(wire_ts_matches(
            &tcp80,
            "10.1.0.7".parse().unwrap(),
            6,
            Some(80)
        ));
        assert!(!wire_ts_matches(
            &tcp80,
            "10.1.0.7".parse().unwrap(),
            17,
            Some(80)
        ));
        assert!(!wire_ts_matches(
            &tcp80,
            "10.1.0.7".parse().unwrap(),
            6,
            None
        ));
    }

    fn policy(dir: PolicyDir, reqid: u32, spi: u32) -> Policy {
        let ts = |net: &str| WireTs {
            protocol: 0,
            from_port: 0,
            to_port: 65535,
            from: format!("{net}.0").parse().unwrap(),
            to: format!("{net}.255").parse().unwrap(),
        };
        Policy {
            id: PolicyId {
                dir,
                src_ts: ts("10.1.0"),
                dst_ts: ts("10.2.0"),
                mark: proto::Mark { value: 0, mask: 0 },
                if_id: 7,
                interface: None,
            },
            kind: proto::PolicyType::Ipsec,
            prio: proto::PolicyPriority::Default,
            manual_prio: 0,
            src: "192.0.2.1:4500".parse().unwrap(),
            dst: "192.0.2.2:4500".parse().unwrap(),
            sa: proto::SaCfg {
                mode: Mode::Tunnel,
                reqid,
                esp_spi: Some(spi),
                ah_spi: None,
                ipcomp_transform: 0,
                ipcomp_cpi: 0,
            },
        }
    }

    /// A CHILD_SA rekey installs the policy for the new SA, then deletes it for the old one: the
    /// policy must survive until its last user is gone.
    #[test]
    fn policies_are_counted_per_installation() {
        let e = IpsecEngine::new("192.0.2.1".parse().unwrap());
        for dir in [PolicyDir::Out, PolicyDir::In, PolicyDir::Fwd] {
            e.add_policy(policy(dir, 1, 0xc0ffee01)).unwrap();
        }
        assert_eq!(e.policy_count(), 3);
        // the rekey: same policy ids, new SA
        for dir in [PolicyDir::Out, PolicyDir::In, PolicyDir::Fwd] {
            e.add_policy(policy(dir, 1, 0xc0ffee02)).unwrap();
        }
        assert_eq!(e.policy_count(), 3, "one entry per policy id");
        for dir in [PolicyDir::Out, PolicyDir::In, PolicyDir::Fwd] {
            e.del_policy(&policy(dir, 1, 0xc0ffee01)).unwrap();
        }
        assert_eq!(e.policy_count(), 3, "still used by the new CHILD_SA");
        assert_eq!(e.policy_if_ids(), [7]);
        for dir in [PolicyDir::Out, PolicyDir::In, PolicyDir::Fwd] {
            e.del_policy(&policy(dir, 1, 0xc0ffee02)).unwrap();
        }
        assert_eq!(e.policy_count(), 0);
        assert_eq!(
            e.del_policy(&policy(PolicyDir::Out, 1, 0xc0ffee02)),
            Err(Status::NotFound)
        );
    }

    #[test]
    fn newest_installation_gives_the_reqid() {
        let e = IpsecEngine::new("192.0.2.1".parse().unwrap());
        e.add_policy(policy(PolicyDir::Out, 1, 1)).unwrap();
        e.add_policy(policy(PolicyDir::Out, 2, 2)).unwrap();
        assert_eq!(e.snapshot().out_policies[0].reqid, 2);
        e.del_policy(&policy(PolicyDir::Out, 2, 2)).unwrap();
        assert_eq!(
            e.snapshot().out_policies[0].reqid,
            1,
            "back to the remaining installation"
        );
    }

    /// A new charon flushes: the old policy keeps forwarding until the new charon installs its
    /// own (which then counts from scratch), and orphans go when their grace ends.
    #[test]
    fn a_new_charon_adopts_nothing_but_stops_nothing() {
        let e = IpsecEngine::new("192.0.2.1".parse().unwrap());
        let mut b = IpsecBackend(e.clone());
        e.add_policy(policy(PolicyDir::Out, 1, 1)).unwrap();
        e.add_policy(policy(PolicyDir::Out, 1, 2)).unwrap();
        b.flush_policies().unwrap();
        b.flush_sas().unwrap();
        assert_eq!(e.policy_if_ids(), [7], "still routing after the flush");
        assert!(e.snapshot().out_policies[0].orphan);
        e.add_policy(policy(PolicyDir::Out, 3, 9)).unwrap();
        let p = e.snapshot().out_policies[0].clone();
        assert!(!p.orphan, "replaced by the new charon's policy");
        assert_eq!(
            (p.reqid, p.installs.clone()),
            (3, vec![3]),
            "the old installations do not count"
        );
        e.del_policy(&policy(PolicyDir::Out, 3, 9)).unwrap();
        assert_eq!(
            e.policy_count(),
            0,
            "one delete from the new charon removes it"
        );

        e.add_policy(policy(PolicyDir::Out, 1, 1)).unwrap();
        b.flush_policies().unwrap();
        e.drop_orphans();
        assert_eq!(
            e.policy_count(),
            0,
            "an orphan nobody replaced is gone after its grace"
        );
    }

    fn esp_sa(spi: u32, if_id: u32, inbound: bool) -> AddSa {
        use crate::charon::protocol::{SaFlags, SecretKey};
        AddSa {
            id: SaId {
                src: "192.0.2.2:4500".parse().unwrap(),
                dst: "192.0.2.1:4500".parse().unwrap(),
                spi,
                proto: PROTO_ESP,
                mark: Default::default(),
                if_id,
            },
            reqid: if_id,
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
                inbound,
                encap: true,
                ..Default::default()
            },
        }
    }

    /// Removing orphans is the engine's own decision, so it is reported per tunnel; SAs the new
    /// charon installed are not touched and not reported.
    #[test]
    fn removed_orphans_are_reported_per_tunnel() {
        let e = IpsecEngine::new("192.0.2.1".parse().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        e.set_events(Arc::new(move |ev| sink.lock().unwrap().push(ev)));
        let mut b = IpsecBackend(e.clone());
        for (spi, if_id, inbound) in [(0x1001, 7, true), (0x1002, 7, false), (0x2001, 9, true)] {
            e.add_sa(esp_sa(spi, if_id, inbound)).unwrap();
        }
        b.flush_sas().unwrap();
        e.add_sa(esp_sa(0x3001, 9, true)).unwrap();
        e.drop_orphans();
        let seen = seen.lock().unwrap();
        let got: Vec<(u32, Vec<u32>)> = seen
            .iter()
            .map(|ev| match ev {
                crate::Event::SasRemoved {
                    if_id,
                    spis,
                    reason,
                } => {
                    assert!(reason.contains("60s"), "{reason}");
                    (*if_id, spis.clone())
                }
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(got, [(7, vec![0x1001, 0x1002]), (9, vec![0x2001])]);
        assert_eq!(
            e.sas().iter().map(|s| s.spi).collect::<Vec<_>>(),
            [0x3001],
            "the new charon's SA stays"
        );
    }
}
