//! The inbound pipeline (datagrams on the WireGuard port):
//! 1. `classify` — transport messages vs handshake messages;
//! 2. `lookup`   — receiver index → keypair, under the lock; handshake messages are answered;
//! 3. `open`     — replay check and decryption in place, outside the lock;
//! 4. `confirm`  — keypair confirmation, roaming, timers, allowed-IPs source check, under the
//!    lock; the inner packet is delivered `ToTun` (the handoff stage may route it to another
//!    device first).

use super::{time_at, WireGuard};
use crate::transport::{Ctx, Packet, Verdict};
use cvlan_proto::ip;
use cvlan_proto::wireguard::constants::TRANSPORT_HEADER_LEN;
use cvlan_proto::wireguard::messages::{self, Message};
use cvlan_proto::wireguard::session::OpenError;
use cvlan_proto::wireguard::{self as wg, Keypair, Outbox, PeerId};
use rand_core::OsRng;
use std::sync::Arc;

struct Received {
    idx: usize,
    peer: PeerId,
    keypair: Arc<Keypair>,
    counter: u64,
}

pub(super) fn decapsulate(wg: &WireGuard, ctx: &mut Ctx<'_>, pkts: &mut [Packet]) {
    let t = time_at(ctx.now);
    let mut out = Outbox::default();
    let mut received = Vec::with_capacity(pkts.len());
    {
        let mut dev = wg.lock();
        for (idx, p) in pkts.iter_mut().enumerate() {
            p.verdict = Verdict::Drop;
            match messages::parse(p.data()) {
                Ok(Message::Transport {
                    receiver, counter, ..
                }) => match dev.lookup_receiver(receiver, t) {
                    Ok((peer, keypair)) => received.push(Received {
                        idx,
                        peer,
                        keypair,
                        counter,
                    }),
                    Err(d) => wg.counters.drop(crate::trace::dropped(p, d)),
                },
                Ok(_) => {
                    dev.under_load = wg.note_handshake_message(t.mono);
                    let src = p.addr;
                    if let Err(d) = dev.handle_handshake(src, p.data(), t, &mut OsRng, &mut out) {
                        wg.counters.drop(d);
                    }
                }
                Err(e) => wg
                    .counters
                    .drop(crate::trace::dropped(p, wg::DropReason::from(e))),
            }
        }
    }
    // Decrypt outside the lock.
    let mut opened: Vec<(Received, usize, usize, Option<std::net::IpAddr>)> =
        Vec::with_capacity(received.len());
    for r in received {
        let p = &mut pkts[r.idx];
        let wire_len = p.len;
        let payload = &mut p.data_mut()[TRANSPORT_HEADER_LEN..];
        match r.keypair.open(r.counter, payload) {
            Ok(plain) => {
                let (inner_len, src) = match ip::parse(&payload[..plain]) {
                    Ok(i) => (i.len, Some(i.src)),
                    Err(_) if plain == 0 => (0, None),
                    Err(_) => {
                        crate::trace::drop(p, wg::DropReason::Malformed);
                        wg.counters.drop(wg::DropReason::Malformed);
                        continue;
                    }
                };
                opened.push((r, wire_len, inner_len, src));
            }
            Err(e) => wg.counters.drop(crate::trace::dropped(p, open_drop(e))),
        }
    }
    if !opened.is_empty() {
        let mut dev = wg.lock();
        for (r, wire_len, inner_len, src) in opened {
            let p = &mut pkts[r.idx];
            crate::trace::wg_peer(p, "receiver", Some(r.peer), &dev);
            dev.received_data(
                r.peer, &r.keypair, p.addr, wire_len, inner_len, t, &mut OsRng, &mut out,
            );
            let Some(src) = src else { continue }; // keepalive
            if !dev.allowed_src(r.peer, src) {
                crate::trace::drop(p, wg::DropReason::SourceNotAllowed);
                wg.counters.drop(wg::DropReason::SourceNotAllowed);
                continue;
            }
            p.start += TRANSPORT_HEADER_LEN;
            p.len = inner_len;
            p.verdict = Verdict::ToTun;
        }
    }
    wg.finish(out, Some(ctx.extra));
}

fn open_drop(e: OpenError) -> wg::DropReason {
    match e {
        OpenError::Replayed => wg::DropReason::Replayed,
        OpenError::TooOld => wg::DropReason::TooOld,
        OpenError::Decrypt => wg::DropReason::DecryptFailed,
        OpenError::Exhausted => wg::DropReason::MessageLimit,
    }
}
