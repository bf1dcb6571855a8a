//! Round trips, bounds and malformed input of the charon plugin protocol.

use super::codec::Writer;
use super::*;
use std::net::SocketAddr;

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
