//! Writes the seed corpus (`fuzz/corpus/<target>/`) from the project's own encoders, so each
//! seed is a real message: `cargo run -p cvlan-fuzz --example seeds`.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use cvlan_dataplane::charon::protocol::*;
use cvlan_fuzz::rng::CountingRng;
use cvlan_fuzz::{esp, wireguard};
use cvlan_proto::esp::{Direction, OutboundSa};
use cvlan_proto::wireguard::{Outbox, Time};

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut n = 0;
    for (target, seeds) in [
        ("wireguard", wireguard_seeds()),
        ("esp", esp_seeds()),
        ("charon_protocol", charon_seeds()),
        ("charon_plugin", charon_plugin_seeds()),
        ("ip_icmp", ip_icmp_seeds()),
        ("offload", offload_seeds()),
    ] {
        let dir: PathBuf = root.join(target);
        fs::create_dir_all(&dir)?;
        for (name, bytes) in seeds {
            fs::write(dir.join(name), bytes)?;
            n += 1;
        }
    }
    println!("wrote {n} seeds under {}", root.display());
    Ok(())
}

type Seeds = Vec<(String, Vec<u8>)>;

fn seed(name: &str, bytes: Vec<u8>) -> (String, Vec<u8>) {
    (name.to_string(), bytes)
}

/// A real handshake with the target's device: its initiation answered by the peer, and the
/// peer's own initiation.
fn wireguard_seeds() -> Seeds {
    let mut ours_rng = CountingRng::default();
    let (_, _, sent) =
        wireguard::device(wireguard::OUR_KEY, wireguard::PEER_KEY, true, &mut ours_rng);
    let our_init = sent
        .into_iter()
        .next()
        .expect("the target's device initiates");
    let mut peer_rng = CountingRng::default();
    // Skip the peer's rng ahead so its indices and ephemerals differ from ours.
    for _ in 0..1000 {
        rand_core::RngCore::next_u64(&mut peer_rng);
    }
    let (mut peer, _, _) = wireguard::device(
        wireguard::PEER_KEY,
        wireguard::OUR_KEY,
        false,
        &mut peer_rng,
    );
    let t = Time {
        mono: wireguard::T0.mono + std::time::Duration::from_millis(5),
        unix: wireguard::T0.unix,
    };
    let src: SocketAddr = wireguard::OUR_ADDR.parse().expect("address");
    let mut out = Outbox::default();
    peer.handle_handshake(src, &our_init, t, &mut peer_rng, &mut out)
        .expect("the peer accepts the initiation");
    let response = out.datagrams[0].0.clone();
    let (_, _, peer_sent) =
        wireguard::device(wireguard::PEER_KEY, wireguard::OUR_KEY, true, &mut peer_rng);
    let peer_init = peer_sent[0].clone();
    let receiver = response[4..8].to_vec();
    let mut transport = vec![4, 0, 0, 0];
    transport.extend_from_slice(&receiver);
    transport.extend_from_slice(&[0; 8]);
    transport.extend_from_slice(&[0x5a; 32]);
    let mut cookie = vec![3, 0, 0, 0];
    cookie.extend_from_slice(&our_init[4..8]);
    cookie.extend_from_slice(&[0x77; 56]);
    vec![
        seed("response", response),
        seed("initiation", peer_init),
        seed("transport", transport),
        seed("cookie_reply", cookie),
        seed("keepalive", {
            let mut k = vec![4, 0, 0, 0];
            k.extend_from_slice(&receiver);
            k.extend_from_slice(&[0; 24]);
            k
        }),
    ]
}

fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, payload: &[u8]) -> Vec<u8> {
    let len = 20 + payload.len();
    let mut p = vec![
        0x45,
        0,
        (len >> 8) as u8,
        len as u8,
        0,
        1,
        0x40,
        0,
        64,
        proto,
        0,
        0,
    ];
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    let mut sum = 0u32;
    for c in p.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let c = !(sum as u16);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

fn ipv6(src: [u8; 16], dst: [u8; 16], next: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    p.extend_from_slice(&[next, 64]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(payload);
    p
}

fn v6(prefix: u16, last: u8) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[..2].copy_from_slice(&prefix.to_be_bytes());
    a[15] = last;
    a
}

fn icmp_echo() -> Vec<u8> {
    vec![8, 0, 0xf7, 0xfe, 0, 1, 0, 1]
}

/// Inner packets the SA's selectors admit: 192.168.5.0/24 → 10.1.0.0/16, fd00::/64 → fd01::/64.
fn inner_packets() -> Vec<Vec<u8>> {
    vec![
        ipv4([192, 168, 5, 7], [10, 1, 0, 9], 1, &icmp_echo()),
        ipv6(
            v6(0xfd00, 7),
            v6(0xfd01, 9),
            58,
            &[128, 0, 0, 0, 0, 1, 0, 1],
        ),
    ]
}

fn esp_seeds() -> Seeds {
    let mut seeds = Vec::new();
    let mut rng = CountingRng::default();
    for (si, (enc, integ)) in esp::SUITES.iter().enumerate() {
        for esn in [false, true] {
            let mut p = esp::params(esp::SPI, *enc, *integ, esn);
            p.direction = Direction::Outbound;
            let sa = OutboundSa::new(&p, esp::NOW).expect("SA");
            for (k, inner) in inner_packets().iter().enumerate() {
                let head = sa.headroom();
                let mut buf = vec![0u8; head + inner.len() + sa.tailroom(inner.len())];
                buf[head..head + inner.len()].copy_from_slice(inner);
                let sealed = sa
                    .seal(&mut buf, head..head + inner.len(), esp::NOW, &mut rng)
                    .expect("seal");
                let mode = ((si as u8) << 2) | (u8::from(esn) << 1);
                let mut s = vec![mode];
                s.extend_from_slice(&buf[sealed.esp]);
                seeds.push(seed(&format!("wire_{si}_{}_{k}", u8::from(esn)), s));
            }
        }
    }
    for (k, inner) in inner_packets().iter().enumerate() {
        for esn in [false, true] {
            let nh = if inner[0] >> 4 == 4 { 4 } else { 41 };
            let mut s = vec![1 | (u8::from(esn) << 1)];
            s.extend_from_slice(&1u32.to_be_bytes());
            s.extend_from_slice(inner);
            s.extend_from_slice(&[1, 2, 2, nh]);
            seeds.push(seed(&format!("sealed_{}_{k}", u8::from(esn)), s));
        }
    }
    let mut ike = vec![0u8, 0, 0, 0, 0];
    ike.extend_from_slice(&[0x11; 28]);
    seeds.push(seed("wire_ike", ike));
    seeds.push(seed("wire_keepalive", vec![0, 0xff]));
    seeds
}

fn sa(addr: &str) -> SocketAddr {
    addr.parse().expect("address")
}

fn ts4(from: &str, to: &str) -> TrafficSelector {
    TrafficSelector {
        protocol: 0,
        from_port: 0,
        to_port: 65535,
        from: from.parse().expect("address"),
        to: to.parse().expect("address"),
    }
}

fn sa_id() -> SaId {
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

fn policy() -> Policy {
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

/// One of each frame the plugin and the data plane exchange.
pub fn charon_frames() -> Vec<(&'static str, Frame)> {
    let add_sa = AddSa {
        id: sa_id(),
        reqid: 3,
        mode: Mode::Tunnel,
        src_ts: vec![ts4("10.1.0.0", "10.1.255.255")],
        dst_ts: vec![ts4("10.2.0.0", "10.2.0.255")],
        interface: Some("eth0".into()),
        lifetime: Lifetime {
            time: Limits {
                life: 3600,
                rekey: 3240,
                jitter: 360,
            },
            bytes: Limits::default(),
            packets: Limits::default(),
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
    };
    let req = |id, req| Frame::Request { id, req };
    let resp = |id, kind, status, reply| Frame::Response {
        id,
        resp: Response {
            kind,
            status,
            reply,
        },
    };
    vec![
        (
            "hello",
            req(
                1,
                Request::Hello {
                    version: PROTOCOL_VERSION,
                    name: "charon 5.9.8".into(),
                },
            ),
        ),
        (
            "get_spi",
            req(
                2,
                Request::GetSpi {
                    src: sa("192.0.2.1:500"),
                    dst: sa("192.0.2.2:500"),
                    proto: PROTO_ESP,
                },
            ),
        ),
        ("add_sa", req(3, Request::AddSa(Box::new(add_sa)))),
        (
            "update_sa",
            req(
                4,
                Request::UpdateSa(UpdateSa {
                    id: sa_id(),
                    cpi: 0,
                    new_src: sa("198.51.100.1:4500"),
                    new_dst: sa("198.51.100.2:31000"),
                    encap: false,
                    new_encap: true,
                    new_reqid: 0,
                }),
            ),
        ),
        (
            "query_sa",
            req(
                5,
                Request::QuerySa {
                    id: sa_id(),
                    cpi: 0,
                },
            ),
        ),
        (
            "del_sa",
            req(
                6,
                Request::DelSa {
                    id: sa_id(),
                    cpi: 9,
                },
            ),
        ),
        ("add_policy", req(7, Request::AddPolicy(Box::new(policy())))),
        (
            "query_policy",
            req(8, Request::QueryPolicy(Box::new(policy().id))),
        ),
        ("del_policy", req(9, Request::DelPolicy(Box::new(policy())))),
        (
            "enable_udp_decap",
            req(
                10,
                Request::EnableUdpDecap {
                    family: 4,
                    port: 4500,
                },
            ),
        ),
        (
            "resp_hello",
            resp(
                1,
                MsgType::Hello,
                Status::Ok,
                Reply::Hello {
                    version: 1,
                    instance: 77,
                },
            ),
        ),
        (
            "resp_spi",
            resp(2, MsgType::GetSpi, Status::Ok, Reply::Spi(0xc123_4567)),
        ),
        (
            "resp_sa_stats",
            resp(
                5,
                MsgType::QuerySa,
                Status::Ok,
                Reply::SaStats(SaStats {
                    bytes: 1 << 33,
                    packets: 12,
                    idle_secs: Some(4),
                }),
            ),
        ),
        (
            "resp_policy_idle",
            resp(
                8,
                MsgType::QueryPolicy,
                Status::Ok,
                Reply::PolicyIdle(Some(3)),
            ),
        ),
        (
            "resp_failed",
            resp(6, MsgType::DelSa, Status::Failed, Reply::None),
        ),
        (
            "event_ike_packet",
            Frame::Event(Event::IkePacket(IkePacket {
                src: sa("[2001:db8::1]:4500"),
                dst: sa("192.0.2.2:4500"),
                data: vec![0xab; 64],
            })),
        ),
        (
            "event_expire",
            Frame::Event(Event::Expire(Expire {
                proto: PROTO_ESP,
                spi: 0xc000_0002,
                dst: sa("192.0.2.2:0"),
                hard: true,
            })),
        ),
    ]
}

fn charon_seeds() -> Seeds {
    let frames = charon_frames();
    let mut seeds: Seeds = frames
        .iter()
        .map(|(name, f)| seed(name, encode(f)))
        .collect();
    // A stream of several frames, as one read from the socket may hold.
    seeds.push(seed(
        "stream",
        frames[..3].iter().flat_map(|(_, f)| encode(f)).collect(),
    ));
    seeds
}

/// What the plugin reads from the data plane (the C target `charon_plugin`): events, and
/// responses to the requests its harness has pending (ids 1 to 4: GET_SPI, GET_CPI,
/// QUERY_SA, QUERY_POLICY).
fn charon_plugin_seeds() -> Seeds {
    let resp = |id, kind, reply| {
        encode(&Frame::Response {
            id,
            resp: Response {
                kind,
                status: Status::Ok,
                reply,
            },
        })
    };
    let frames = charon_frames();
    let event = |name: &str| {
        let (_, f) = frames.iter().find(|(n, _)| *n == name).expect("frame");
        encode(f)
    };
    let mut seeds = vec![
        seed(
            "resp_spi",
            resp(1, MsgType::GetSpi, Reply::Spi(0xc123_4567)),
        ),
        seed("resp_cpi", resp(2, MsgType::GetCpi, Reply::Cpi(0x4242))),
        seed(
            "resp_sa_stats",
            resp(
                3,
                MsgType::QuerySa,
                Reply::SaStats(SaStats {
                    bytes: 1 << 33,
                    packets: 12,
                    idle_secs: Some(4),
                }),
            ),
        ),
        seed(
            "resp_policy_idle",
            resp(4, MsgType::QueryPolicy, Reply::PolicyIdle(Some(9))),
        ),
        seed("event_ike_packet", event("event_ike_packet")),
        seed("event_expire", event("event_expire")),
    ];
    let stream: Vec<u8> = seeds.iter().flat_map(|(_, b)| b.clone()).collect();
    seeds.push(seed("stream", stream));
    seeds
}

fn ip_icmp_seeds() -> Seeds {
    let mut udp = vec![0x30, 0x39, 0x00, 0x35, 0, 28, 0, 0];
    udp.extend_from_slice(&[0x61; 20]);
    let with_mtu = |mtu: u16, p: Vec<u8>| {
        let mut s = mtu.to_be_bytes().to_vec();
        s.extend_from_slice(&p);
        s
    };
    vec![
        seed(
            "v4_icmp_df",
            with_mtu(1400, ipv4([192, 168, 5, 7], [10, 1, 0, 9], 1, &icmp_echo())),
        ),
        seed(
            "v4_udp",
            with_mtu(576, ipv4([10, 0, 0, 1], [10, 0, 0, 2], 17, &udp)),
        ),
        seed(
            "v6_icmp",
            with_mtu(
                1280,
                ipv6(
                    v6(0xfd00, 7),
                    v6(0xfd01, 9),
                    58,
                    &[128, 0, 0, 0, 0, 1, 0, 1],
                ),
            ),
        ),
        seed(
            "v6_udp",
            with_mtu(1500, ipv6(v6(0x2001, 1), v6(0x2001, 2), 17, &udp)),
        ),
    ]
}

/// Packets from the offload tests' capture (`testdata/packets.hex`, made with scapy): each as
/// a plain TUN read; each super-packet as a TSO/USO read with the virtio header the kernel
/// would give it; the segments of each as a GRO batch (which coalesces them again).
fn offload_seeds() -> Seeds {
    let text = include_str!("../../crates/cvlan-dataplane/src/offload/testdata/packets.hex");
    let records: Vec<(String, Vec<u8>)> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, hex)| {
            let pkt = (0..hex.len() / 2)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex"))
                .collect();
            (name.to_string(), pkt)
        })
        .collect();
    let mut seeds = Vec::new();
    for (name, pkt) in &records {
        let mut read = vec![0u8];
        read.extend_from_slice(&[0; 10]); // virtio header: no offload
        read.extend_from_slice(pkt);
        seeds.push(seed(&format!("tun_{name}"), read));
    }
    for flow in ["tso4", "tso6", "uso4", "uso6"] {
        let part = |n: &str| {
            records
                .iter()
                .find(|(r, _)| r == &format!("{flow}_{n}"))
                .map(|(_, p)| p.clone())
                .expect("record")
        };
        let sup = part("super");
        let v4 = sup[0] >> 4 == 4;
        let ip_hlen = if v4 {
            usize::from(sup[0] & 0x0f) * 4
        } else {
            40
        };
        let tcp = flow.starts_with("tso");
        let l4_hlen = if tcp {
            usize::from(sup[ip_hlen + 12] >> 4) * 4
        } else {
            8
        };
        let hlen = ip_hlen + l4_hlen;
        let gso_size = part("seg0").len() - hlen;
        let gso_type: u8 = match (tcp, v4) {
            (true, true) => 1,
            (true, false) => 4,
            (false, _) => 5,
        };
        let csum_offset: u16 = if tcp { 16 } else { 6 };
        let mut read = vec![0u8, 1, gso_type];
        for v in [hlen as u16, gso_size as u16, ip_hlen as u16, csum_offset] {
            read.extend_from_slice(&v.to_le_bytes());
        }
        read.extend_from_slice(&sup);
        seeds.push(seed(&format!("tun_{flow}_gso"), read));
        let mut batch = vec![1u8];
        for (_, seg) in records
            .iter()
            .filter(|(r, _)| r.starts_with(&format!("{flow}_seg")))
        {
            batch.extend_from_slice(&(seg.len() as u16).to_be_bytes());
            batch.extend_from_slice(seg);
        }
        seeds.push(seed(&format!("gro_{flow}"), batch));
    }
    seeds
}
