//! The inbound pipeline (datagrams on the WireGuard port):
//! 1. `classify`  — transport messages vs handshake messages; handshake messages pass the
//!    `HandshakeGate` without the device's lock (MAC1; under load a cookie reply instead of
//!    any work, or the per-source limit);
//! 2. `lookup`    — receiver index → keypair, under the lock;
//! 3. `open`      — replay check and decryption in place, outside the lock;
//! 4. `confirm`   — keypair confirmation, roaming, timers, allowed-IPs source check, under the
//!    lock; the inner packet is delivered `ToTun` (the handoff stage may route it to another
//!    device first);
//! 5. `handshake` — at most `HANDSHAKES_PER_BATCH` admitted messages, the lock taken for each.

use super::{time_at, WireGuard};
use crate::counters::DropReason;
use crate::transport::{Ctx, Packet, Verdict};
use cvlan_proto::ip;
use cvlan_proto::wireguard::constants::TRANSPORT_HEADER_LEN;
use cvlan_proto::wireguard::messages::{self, Message};
use cvlan_proto::wireguard::session::OpenError;
use cvlan_proto::wireguard::{self as wg, Admission, Keypair, Outbox, PeerId};
use rand_core::OsRng;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// Handshake messages a batch may hand to the device (Diffie-Hellman under its lock); beyond
/// that they are dropped as rate-limited (peers retransmit), so one batch's handshake work is
/// bounded whatever the gate admits.
const HANDSHAKES_PER_BATCH: usize = 8;

struct Received {
    idx: usize,
    peer: PeerId,
    keypair: Arc<Keypair>,
    counter: u64,
}

pub(super) fn decapsulate(wg: &WireGuard, ctx: &mut Ctx<'_>, pkts: &mut [Packet]) {
    let t = time_at(ctx.now);
    let mut out = Outbox::default();
    // classify: transport messages wait for the lookup; handshake messages pass the gate
    // here, without the device's lock (a flood is answered with cookies from this loop).
    let mut transports = Vec::with_capacity(pkts.len());
    let mut admitted = Vec::new();
    for (idx, p) in pkts.iter_mut().enumerate() {
        p.verdict = Verdict::Drop;
        match messages::parse(p.data()) {
            Ok(Message::Transport {
                receiver, counter, ..
            }) => transports.push((idx, receiver, counter)),
            // A passive standby answers no handshake: its sessions are the active's.
            Ok(_) if wg.is_passive() => p.drop_with(ctx.counters, DropReason::HaStandby),
            Ok(_) => {
                wg.counters.handshake_messages.fetch_add(1, Relaxed);
                let under_load = wg.gate.note_message(t.mono);
                match wg
                    .gate
                    .admit(p.addr, p.data(), under_load, t.mono, &mut OsRng)
                {
                    Ok(Admission::SendCookie(reply)) => {
                        out.datagrams.push((reply.to_vec(), p.addr));
                        let d = wg::DropReason::CookieRequired;
                        wg.counters.drop(crate::trace::dropped(p, d));
                    }
                    Ok(_) if admitted.len() < HANDSHAKES_PER_BATCH => admitted.push(idx),
                    Ok(_) => wg
                        .counters
                        .drop(crate::trace::dropped(p, wg::DropReason::RateLimited)),
                    Err(d) => wg.counters.drop(crate::trace::dropped(p, d)),
                }
            }
            Err(e) => wg
                .counters
                .drop(crate::trace::dropped(p, wg::DropReason::from(e))),
        }
    }
    let mut received = Vec::with_capacity(transports.len());
    if !transports.is_empty() {
        let dev = wg.lock();
        for (idx, receiver, counter) in transports {
            match dev.lookup_receiver(receiver, t) {
                Ok((peer, keypair)) => received.push(Received {
                    idx,
                    peer,
                    keypair,
                    counter,
                }),
                Err(d) => wg.counters.drop(crate::trace::dropped(&pkts[idx], d)),
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
    // handshake: the admitted messages' Diffie-Hellman, after this batch's data and with the
    // lock taken per message, so the other workers' data interleaves.
    for idx in admitted {
        let p = &pkts[idx];
        let r = wg
            .lock()
            .handle_admitted(p.addr, p.data(), t, &mut OsRng, &mut out);
        if let Err(d) = r {
            wg.counters.drop(d);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::{DropReason, WorkerCounters};
    use crate::transport::Outgoing;
    use crate::wireguard::WireGuard;
    use cvlan_proto::wireguard::constants::COOKIE_REPLY_LEN;
    use cvlan_proto::wireguard::{Device, PeerConfig, SendPlan};
    use std::time::Duration;

    /// One initiation to `responder` from each of `n` initiators (valid MAC1; the responder
    /// knows none of them), as received packets from distinct sources.
    fn initiations(responder: [u8; 32], n: usize, t: wg::Time) -> Vec<Packet> {
        (0..n)
            .map(|i| {
                let mut d = Device::new(Some([(i % 250) as u8 + 1; 32]));
                let id = d.upsert_peer(PeerConfig {
                    public_key: responder,
                    preshared_key: None,
                    endpoint: Some("192.0.2.1:51820".parse().unwrap()),
                    persistent_keepalive: 0,
                });
                let mut out = Outbox::default();
                let plan = d.prepare_send(id, &[0x45; 28], t, &mut OsRng, &mut out);
                assert!(matches!(plan, SendPlan::Queued), "no session yet");
                let (msg, _) = out.datagrams.pop().expect("an initiation");
                let mut p = Packet::new();
                let start = p.start;
                p.raw_mut()[start..start + msg.len()].copy_from_slice(&msg);
                p.len = msg.len();
                p.addr = format!("198.51.100.{}:{}", i % 250 + 1, 1000 + i)
                    .parse()
                    .unwrap();
                p
            })
            .collect()
    }

    fn batch(wg: &WireGuard, pkts: &mut [Packet], now: Duration, extra: &mut Vec<Outgoing>) {
        let counters = WorkerCounters::default();
        let mut ctx = Ctx {
            worker: 0,
            counters: &counters,
            now,
            extra,
        };
        decapsulate(wg, &mut ctx, pkts);
    }

    fn drops(wg: &WireGuard, d: wg::DropReason) -> u64 {
        wg.counters.drops.get(DropReason::from(d))
    }

    #[test]
    fn handshake_work_is_bounded_per_batch_and_a_flood_gets_cookies_only() {
        let wg = WireGuard::new(Some([200; 32]));
        let responder = wg.with(|d| d.public_key().unwrap());
        let now = Duration::from_millis(100_500);
        let t = time_at(now);
        let mut extra = Vec::new();
        // Below the load threshold: 8 of a batch of 20 reach the Diffie-Hellman.
        let mut pkts = initiations(responder, 20, t);
        batch(&wg, &mut pkts, now, &mut extra);
        assert_eq!(drops(&wg, wg::DropReason::RateLimited), 12);
        assert_eq!(drops(&wg, wg::DropReason::UnknownPeer), 8);
        assert!(pkts.iter().all(|p| p.verdict == Verdict::Drop));
        assert!(extra.is_empty(), "unknown initiators get no answer");
        // 30 batches more in the same second: from the 501st message on, a cookie reply each
        // and no handshake work at all.
        for _ in 0..30 {
            let mut pkts = initiations(responder, 20, t);
            batch(&wg, &mut pkts, now, &mut extra);
        }
        assert_eq!(wg.counters.handshake_messages.load(Relaxed), 620);
        assert_eq!(drops(&wg, wg::DropReason::CookieRequired), 120);
        assert_eq!(extra.len(), 120);
        assert!(extra
            .iter()
            .all(|o| o.data.len() == COOKIE_REPLY_LEN && o.data[0] == 3));
        // Into the next second (the count starts again) the load holds for a second after the
        // last excess: cookies, no Diffie-Hellman.
        let unknown = drops(&wg, wg::DropReason::UnknownPeer);
        let mut pkts = initiations(responder, 20, t);
        batch(&wg, &mut pkts, now + Duration::from_millis(700), &mut extra);
        assert_eq!(drops(&wg, wg::DropReason::CookieRequired), 140);
        assert_eq!(drops(&wg, wg::DropReason::UnknownPeer), unknown);
    }
}
