//! IPsec on the workers: an IPsec device's `Transport`.
//!
//! Outbound pipeline (`encapsulate`: packets from the TUN queue, or handed off by another
//! device):
//! 0. passive         — an HA standby sends nothing (`super::sync`).
//! 1. `select_policy` — the most specific outbound policy whose traffic selectors cover the
//!    packet, among its tenant's tunnels.
//! 2. `select_sa`     — the newest outbound SA of that policy's reqid.
//! 3. `seal`          — ESP in place (never beyond an HA counter lease: at the limit charon
//!    hears a soft expire and rekeys), then sent on the NAT-T socket to the SA's peer (or the
//!    raw ESP socket for an SA without UDP encapsulation).
//!
//! Inbound pipeline (`decapsulate`: datagrams on 4500, 500 and the raw ESP socket):
//! 1. `classify`      — RFC 3948: NAT-keepalive (ignored), IKE (to charon, `super::ike`), or ESP.
//! 2. `lookup`        — the inbound SA of the SPI.
//! 3. `open`          — replay check, ICV, decrypt, padding, traffic selectors (cvlan-proto).
//! 4. `tag`           — the packet carries its tunnel's tenant; delivered `ToTun` (the handoff
//!    stage may route it to another device first).
//!
//! Each batch reads one snapshot of the tables (`super::tables`); time is the worker's `now`.

use super::tables::Table;
use super::{IpsecEngine, SOCK_IKE, SOCK_NATT, SOCK_RAW};
use crate::counters::DropReason;
use crate::transport::{Ctx, Packet, Senders, Transport, Verdict};
use cvlan_proto::esp::{self, udp_encap};
use cvlan_proto::ip;
use rand_core::OsRng;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

/// An IPsec device: TUN ⇄ ESP (site to site, a host's own tunnel, or tenants' tunnels whose
/// packets the handoff stage routes).
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
        let t = self.engine.snapshot();
        for p in pkts {
            if let Err(r) = self.engine.protect(&t, p, ctx.now) {
                crate::trace::drop(p, r);
                p.verdict = Verdict::Drop;
                self.engine.counters.drop(r);
            }
        }
    }

    /// Claims the inner packets an outbound policy covers (a tunnel's traffic selectors); the
    /// policy's reqid is the claim's key (`Packet::claim_key`), so `encapsulate` goes straight to
    /// its SA. A policy removed in between sends on its SA while that is still installed, as a
    /// packet a moment earlier would have gone.
    fn claims(&self, pkts: &mut [Packet]) {
        let t = self.engine.snapshot();
        for p in pkts.iter_mut().filter(|p| p.verdict.is_inner()) {
            if let Ok(info) = ip::parse(p.data()) {
                let policy = t.select_policy(p.data(), &info, p.tag);
                p.claimed = policy.is_some();
                p.claim_len = policy.map_or(0, |x| x.dst.prefix_len());
                p.claim_key = policy.map(|x| x.reqid);
            }
        }
    }

    /// ESP only: sealing reserves its sequence number atomically and opening checks the SA's
    /// replay window under its own lock; IKE and NAT keepalives stay with their worker.
    fn parallel(&self, stage: crate::spread::Stage, pkt: &Packet) -> bool {
        match stage {
            crate::spread::Stage::Seal => true,
            crate::spread::Stage::Open => match pkt.sock {
                SOCK_RAW => true,
                // RFC 3948 §2.2: a non-zero first word is an ESP SPI (zero: the IKE marker).
                SOCK_NATT => pkt.data().get(..4).is_some_and(|w| w != [0; 4]),
                _ => false,
            },
        }
    }

    fn decapsulate(&self, ctx: &mut Ctx<'_>, pkts: &mut [Packet]) {
        let t = self.engine.snapshot();
        for p in pkts {
            if let Err(r) = self.engine.receive(&t, p, ctx.now) {
                crate::trace::drop(p, r);
                p.verdict = Verdict::Drop;
                self.engine.counters.drop(r);
            }
        }
    }

    fn tick(&self, ctx: &mut Ctx<'_>) {
        // One worker is enough to poll time lifetimes.
        if ctx.worker == 0 {
            self.engine.poll_lifetimes(ctx.now);
        }
    }

    fn tick_interval(&self) -> Duration {
        Duration::from_secs(1)
    }
}

impl IpsecEngine {
    /// Outbound stages 1–3 for one IP packet; sets `Send` to the peer, or the reason to drop.
    fn protect(&self, t: &Table, pkt: &mut Packet, now: Duration) -> Result<(), DropReason> {
        // A passive HA standby sends nothing.
        if self.is_passive() {
            return Err(DropReason::HaStandby);
        }
        let info = ip::parse(pkt.data()).map_err(|_| DropReason::IpsecMalformedIp)?;
        // 1. select_policy (done by `claims` for a packet handed off by another device)
        let reqid = match pkt.claim_key.take() {
            Some(reqid) => reqid,
            None => {
                t.select_policy(pkt.data(), &info, pkt.tag)
                    .ok_or(DropReason::IpsecNoPolicy)?
                    .reqid
            }
        };
        // 2. select_sa
        let entry = t.sa_of(reqid).ok_or(DropReason::IpsecNoSa)?;
        // ESP without UDP goes out on the raw socket; charon negotiates it only when the plugin
        // did not announce KERNEL_REQUIRE_UDP_ENCAPSULATION, i.e. when the device has one.
        let (sock, addr) = if entry.encap {
            (SOCK_NATT, entry.peer)
        } else if self.raw_esp() {
            (SOCK_RAW, SocketAddr::new(entry.peer.ip(), 0))
        } else {
            return Err(DropReason::IpsecRawEspUnsupported);
        };
        // 3. seal: the proto crate seals at `inner` inside the whole buffer, growing into
        // head/tailroom.
        let inner = pkt.start..pkt.start + info.len;
        let sealed = match entry.sa.seal(pkt.raw_mut(), inner, now, &mut OsRng) {
            Ok(s) => s,
            Err(esp::DropReason::LeaseExhausted) => {
                // The HA standby stopped acknowledging: no sequence number beyond the lease,
                // and charon rekeys (keys the other node never had).
                if entry.sa.take_lease_report() {
                    self.report(entry.sa.spi(), entry.id.dst, esp::LifetimeEvent::SoftExpire);
                }
                return Err(DropReason::EspLeaseExhausted);
            }
            Err(e) => return Err(e.into()),
        };
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

    /// Inbound stages 1–4 for one datagram on one of the device's sockets.
    fn receive(&self, t: &Table, pkt: &mut Packet, now: Duration) -> Result<(), DropReason> {
        // 1. classify
        if pkt.sock == SOCK_IKE {
            return self.to_charon(pkt, now);
        }
        let classified = if pkt.sock == SOCK_RAW {
            // An IPv4 raw socket delivers the IP header too (IPv6 ones do not).
            if pkt.addr.is_ipv4() {
                let ihl = usize::from(pkt.data().first().copied().unwrap_or(0) & 0x0f) * 4;
                if ihl < 20 || !pkt.pull_front(ihl) {
                    return Err(esp::DropReason::Truncated.into());
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
            Ok(udp_encap::Datagram::Ike(_)) => return self.to_charon(pkt, now),
            Ok(udp_encap::Datagram::Esp { spi, packet }) => (spi, packet.len()),
            Err(r) => return Err(r.into()),
        };
        // 2. lookup
        let entry = t.inbound.get(&spi).ok_or(DropReason::EspUnknownSpi)?;
        // 3. open
        let start = pkt.start;
        let opened = entry
            .sa
            .open(&mut pkt.data_mut()[..esp_len], now)
            .map_err(DropReason::from)?;
        if let Some(ev) = opened.event {
            self.report(spi, entry.id.dst, ev);
        }
        pkt.start = start + opened.inner.start;
        pkt.len = opened.inner.len();
        // 4. tag
        pkt.tag = self
            .tenants
            .load()
            .get(&entry.id.if_id)
            .copied()
            .unwrap_or(0);
        pkt.verdict = Verdict::ToTun;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spread::Stage;
    use crate::transport::HEADROOM;

    fn datagram(sock: usize, payload: &[u8]) -> Packet {
        let mut p = Packet::new();
        p.as_mut()[HEADROOM..HEADROOM + payload.len()].copy_from_slice(payload);
        p.start = HEADROOM;
        p.len = payload.len();
        p.sock = sock;
        p
    }

    /// Only ESP is opened on another worker: IKE and keepalives stay in their batch's order.
    #[test]
    fn only_esp_is_shared() {
        let t = IpsecTransport {
            engine: IpsecEngine::new("192.0.2.1".parse().unwrap()),
        };
        let open = |sock, payload: &[u8]| t.parallel(Stage::Open, &datagram(sock, payload));
        assert!(open(SOCK_NATT, &[0, 0, 1, 0, 0, 0, 0, 1]), "ESP, SPI 256");
        assert!(
            !open(SOCK_NATT, &[0, 0, 0, 0, 1, 2, 3, 4]),
            "IKE behind the non-ESP marker"
        );
        assert!(!open(SOCK_NATT, &[0xff]), "NAT keepalive");
        assert!(!open(SOCK_IKE, &[1, 2, 3, 4]), "IKE on port 500");
        assert!(open(SOCK_RAW, &[0x45, 0, 0, 20]), "raw ESP");
        assert!(t.parallel(Stage::Seal, &datagram(0, &[0x45, 0, 0, 20])));
    }
}
