//! A stand-in data plane for charon's "cvlan" plugin: serves the plugin socket with an
//! in-memory SA table, owns UDP 500/4500 on one address and relays IKE packets between
//! them. ESP arriving on 4500 is not decrypted, only counted against its inbound SA, so
//! `query_sa` (and `swanctl --list-sas`) report real packet and byte counts.
//!
//! Every call is printed as one line, `<event> key=value ...`, for tests to read; key
//! bytes are never printed, only their lengths.
//!
//! ```text
//! charon_echo --socket /run/cvlan/charon.sock --listen 192.0.2.1 [--port 500] [--natt-port 4500]
//! ```

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Instant;

use cvlan_dataplane::charon::protocol::{TrafficSelector, PROTO_ESP};
use cvlan_dataplane::charon::{
    AddSa, CharonHandle, CharonServer, IkePacket, Policy, PolicyId, SaBackend, SaId, SaStats,
    Status, UpdateSa,
};

/// RFC 3948 section 2.2: IKE on the NAT-T port starts with four zero bytes.
const NON_ESP_MARKER: [u8; 4] = [0; 4];
/// RFC 3948 section 2.3: a NAT-keepalive is the single byte 0xFF.
const NAT_KEEPALIVE: u8 = 0xff;

fn emit(line: String) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn ts_list(list: &[TrafficSelector]) -> String {
    let parts: Vec<String> = list.iter().map(ts).collect();
    parts.join(",")
}

fn ts(t: &TrafficSelector) -> String {
    format!(
        "{}-{}/{}/{}-{}",
        t.from, t.to, t.protocol, t.from_port, t.to_port
    )
}

struct Sa {
    sa: AddSa,
    bytes: u64,
    packets: u64,
    last_use: Option<Instant>,
}

struct Echo {
    ike: Arc<UdpSocket>,
    natt: Arc<UdpSocket>,
    natt_port: u16,
    spi_base: u32,
    next_spi: u32,
    sas: HashMap<(u32, u8, IpAddr), Sa>,
    policies: Vec<Policy>,
}

impl Echo {
    fn key(id: &SaId) -> (u32, u8, IpAddr) {
        (id.spi, id.proto, id.dst.ip())
    }

    /// Counts an ESP packet that arrived on the NAT-T port against its inbound SA.
    fn count_esp(&mut self, data: &[u8], local: IpAddr) -> Option<u32> {
        let spi = u32::from_be_bytes(data.get(..4)?.try_into().ok()?);
        let sa = self.sas.get_mut(&(spi, PROTO_ESP, local))?;
        sa.bytes += data.len() as u64;
        sa.packets += 1;
        sa.last_use = Some(Instant::now());
        Some(spi)
    }
}

impl SaBackend for Echo {
    fn get_spi(&mut self, src: SocketAddr, dst: SocketAddr, proto: u8) -> Result<u32, Status> {
        self.next_spi += 1;
        // Local SPIs in 0xc0000000..0xcfffffff like charon's own kernel backends choose.
        let spi = 0xc000_0000 | (self.spi_base.wrapping_add(self.next_spi) & 0x0fff_ffff);
        emit(format!(
            "get_spi src={src} dst={dst} proto={proto} spi={spi:08x}"
        ));
        Ok(spi)
    }

    fn add_sa(&mut self, sa: AddSa) -> Result<(), Status> {
        emit(format!(
            "add_sa spi={:08x} proto={} src={} dst={} if_id={} reqid={} mode={:?} inbound={} \
             encap={} esn={} enc_alg={} enc_key_len={} int_alg={} int_key_len={} \
             replay_window={} src_ts={} dst_ts={} life_time={} rekey_time={}",
            sa.id.spi,
            sa.id.proto,
            sa.id.src,
            sa.id.dst,
            sa.id.if_id,
            sa.reqid,
            sa.mode,
            sa.flags.inbound,
            sa.flags.encap,
            sa.flags.esn,
            sa.enc_alg,
            sa.enc_key.len(),
            sa.int_alg,
            sa.int_key.len(),
            sa.replay_window,
            ts_list(&sa.src_ts),
            ts_list(&sa.dst_ts),
            sa.lifetime.time.life,
            sa.lifetime.time.rekey,
        ));
        let key = Echo::key(&sa.id);
        self.sas.insert(
            key,
            Sa {
                sa,
                bytes: 0,
                packets: 0,
                last_use: None,
            },
        );
        Ok(())
    }

    fn update_sa(&mut self, u: &UpdateSa) -> Result<(), Status> {
        emit(format!(
            "update_sa spi={:08x} new_src={} new_dst={} new_encap={}",
            u.id.spi, u.new_src, u.new_dst, u.new_encap
        ));
        let mut sa = self.sas.remove(&Echo::key(&u.id)).ok_or(Status::NotFound)?;
        sa.sa.id.src = u.new_src;
        sa.sa.id.dst = u.new_dst;
        sa.sa.flags.encap = u.new_encap;
        self.sas.insert(Echo::key(&sa.sa.id), sa);
        Ok(())
    }

    fn query_sa(&mut self, id: &SaId) -> Result<SaStats, Status> {
        let sa = self.sas.get(&Echo::key(id)).ok_or(Status::NotFound)?;
        let stats = SaStats {
            bytes: sa.bytes,
            packets: sa.packets,
            idle_secs: sa.last_use.map(|t| t.elapsed().as_secs() as u32),
        };
        emit(format!(
            "query_sa spi={:08x} bytes={} packets={}",
            id.spi, stats.bytes, stats.packets
        ));
        Ok(stats)
    }

    fn del_sa(&mut self, id: &SaId) -> Result<(), Status> {
        emit(format!("del_sa spi={:08x}", id.spi));
        self.sas
            .remove(&Echo::key(id))
            .map(|_| ())
            .ok_or(Status::NotFound)
    }

    fn flush_sas(&mut self) -> Result<(), Status> {
        emit("flush_sas".into());
        self.sas.clear();
        Ok(())
    }

    fn add_policy(&mut self, p: Policy) -> Result<(), Status> {
        emit(format!(
            "add_policy dir={:?} type={:?} src_ts={} dst_ts={} if_id={} reqid={} esp_spi={}",
            p.id.dir,
            p.kind,
            ts(&p.id.src_ts),
            ts(&p.id.dst_ts),
            p.id.if_id,
            p.sa.reqid,
            p.sa.esp_spi.map_or("-".into(), |s| format!("{s:08x}")),
        ));
        self.policies.push(p);
        Ok(())
    }

    fn query_policy(&mut self, _id: &PolicyId) -> Result<Option<u32>, Status> {
        Ok(None)
    }

    fn del_policy(&mut self, p: &Policy) -> Result<(), Status> {
        emit(format!(
            "del_policy dir={:?} src_ts={} dst_ts={}",
            p.id.dir,
            ts(&p.id.src_ts),
            ts(&p.id.dst_ts)
        ));
        let at = self
            .policies
            .iter()
            .rposition(|q| q.id == p.id)
            .ok_or(Status::NotFound)?;
        self.policies.remove(at);
        Ok(())
    }

    fn flush_policies(&mut self) -> Result<(), Status> {
        emit("flush_policies".into());
        self.policies.clear();
        Ok(())
    }

    fn send_ike(&mut self, packet: IkePacket) {
        // charon already added the non-ESP marker where one belongs: send verbatim.
        let natt = packet.src.port() == self.natt_port;
        emit(format!(
            "ike_out src={} dst={} len={} natt={natt}",
            packet.src,
            packet.dst,
            packet.data.len()
        ));
        let sock = if natt { &self.natt } else { &self.ike };
        if let Err(e) = sock.send_to(&packet.data, packet.dst) {
            emit(format!("ike_out_error dst={} error={e:?}", packet.dst));
        }
    }

    fn connected(&mut self, peer_name: &str) {
        emit(format!("hello name={peer_name:?}"));
    }
}

fn receive_loop(sock: Arc<UdpSocket>, natt: bool, handle: CharonHandle, echo: Arc<Mutex<Echo>>) {
    let local = sock.local_addr().expect("bound socket");
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e) => {
                emit(format!("udp_error local={local} error={e:?}"));
                return;
            }
        };
        let data = &buf[..n];
        // On the NAT-T port only datagrams with the non-ESP marker are IKE; charon strips the
        // marker itself, so they go up whole.
        let ike = if !natt || (n >= 4 && data[..4] == NON_ESP_MARKER) {
            data
        } else if n == 1 && data[0] == NAT_KEEPALIVE {
            continue;
        } else {
            let counted = echo.lock().unwrap().count_esp(data, local.ip());
            match counted {
                Some(spi) => emit(format!("esp_in spi={spi:08x} len={n}")),
                None => emit(format!("esp_unknown from={from} len={n}")),
            }
            continue;
        };
        emit(format!("ike_in src={from} dst={local} len={}", ike.len()));
        let packet = IkePacket {
            src: from,
            dst: local,
            data: ike.to_vec(),
        };
        if let Err(e) = handle.send_ike(packet) {
            emit(format!("ike_in_dropped error={e:?}"));
        }
    }
}

fn main() -> io::Result<()> {
    let mut socket = None;
    let mut listen: Option<IpAddr> = None;
    let mut port = 500u16;
    let mut natt_port = 4500u16;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or_else(|| bad_arg(&a));
        match a.as_str() {
            "--socket" => socket = Some(value()?),
            "--listen" => listen = Some(value()?.parse().map_err(|_| bad_arg("--listen"))?),
            "--port" => port = value()?.parse().map_err(|_| bad_arg("--port"))?,
            "--natt-port" => natt_port = value()?.parse().map_err(|_| bad_arg("--natt-port"))?,
            _ => return Err(bad_arg(&a)),
        }
    }
    let socket = socket.ok_or_else(|| bad_arg("--socket is required"))?;
    let listen = listen.ok_or_else(|| bad_arg("--listen is required"))?;

    let ike = Arc::new(UdpSocket::bind((listen, port))?);
    let natt = Arc::new(UdpSocket::bind((listen, natt_port))?);
    let echo = Arc::new(Mutex::new(Echo {
        ike: ike.clone(),
        natt: natt.clone(),
        natt_port,
        spi_base: std::process::id().wrapping_mul(2_654_435_761),
        next_spi: 0,
        sas: HashMap::new(),
        policies: Vec::new(),
    }));
    let log = Arc::new(|m: &str| emit(format!("server_log msg={m:?}")));
    let (_server, handle) = CharonServer::bind(&socket, Box::new(echo.clone()), Some(log))?;
    for (sock, is_natt) in [(ike, false), (natt, true)] {
        let (h, e) = (handle.clone(), echo.clone());
        thread::spawn(move || receive_loop(sock, is_natt, h, e));
    }
    emit(format!(
        "ready socket={socket} listen={listen} port={port} natt_port={natt_port}"
    ));
    loop {
        thread::park();
    }
}

fn bad_arg(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("bad argument: {what}"))
}
