//! Frames to bytes and back (`docs/charon-plugin-protocol.md`): the header, then each message's
//! fields in the order the specification lists them. Decoding checks every length and bound and
//! never panics; encoding is its exact inverse.

use super::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

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
        Ok(SecretKey::new(self.bytes16(what, MAX_KEY)?.to_vec()))
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
pub(super) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub(super) fn header(&mut self, kind: u16, id: u32) {
        self.u32(0); // length, patched by finish()
        self.u16(kind);
        self.u16(0);
        self.u32(id);
    }
    pub(super) fn finish(mut self) -> Vec<u8> {
        let len = (self.buf.len() - 4) as u32;
        self.buf[..4].copy_from_slice(&len.to_be_bytes());
        self.buf
    }
    pub(super) fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub(super) fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub(super) fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub(super) fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub(super) fn idle(&mut self, v: Option<u32>) {
        // A real idle time of u32::MAX seconds (136 years) cannot occur.
        self.u32(v.unwrap_or(IDLE_NEVER));
    }
    pub(super) fn ip(&mut self, ip: &IpAddr) {
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
    pub(super) fn sockaddr(&mut self, a: &SocketAddr) {
        self.ip(&a.ip());
        self.u16(a.port());
    }
    pub(super) fn bytes16(&mut self, b: &[u8]) {
        self.u16(b.len() as u16);
        self.buf.extend_from_slice(b);
    }
    pub(super) fn bytes32(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.buf.extend_from_slice(b);
    }
    pub(super) fn string(&mut self, s: &str) {
        self.bytes16(s.as_bytes());
    }
    pub(super) fn mark(&mut self, m: &Mark) {
        self.u32(m.value);
        self.u32(m.mask);
    }
    pub(super) fn ts(&mut self, ts: &TrafficSelector) {
        self.u8(ts.protocol);
        self.u16(ts.from_port);
        self.u16(ts.to_port);
        self.ip(&ts.from);
        self.ip(&ts.to);
    }
    pub(super) fn ts_list(&mut self, list: &[TrafficSelector]) {
        self.u16(list.len() as u16);
        list.iter().for_each(|ts| self.ts(ts));
    }
    pub(super) fn limits(&mut self, l: &Limits) {
        self.u64(l.life);
        self.u64(l.rekey);
        self.u64(l.jitter);
    }
    pub(super) fn sa_id(&mut self, id: &SaId) {
        self.sockaddr(&id.src);
        self.sockaddr(&id.dst);
        self.u32(id.spi);
        self.u8(id.proto);
        self.mark(&id.mark);
        self.u32(id.if_id);
    }
    pub(super) fn add_sa(&mut self, sa: &AddSa) {
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
    pub(super) fn policy_id(&mut self, id: &PolicyId) {
        self.u8(id.dir as u8);
        self.ts(&id.src_ts);
        self.ts(&id.dst_ts);
        self.mark(&id.mark);
        self.u32(id.if_id);
        self.string(id.interface.as_deref().unwrap_or(""));
    }
    pub(super) fn policy(&mut self, p: &Policy) {
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
