//! The IKE relay: UDP 500 and 4500 belong to the data plane (so ESP-in-UDP never detours through
//! charon); IKE datagrams that arrive on them go to charon over the plugin link, and charon's
//! go out from the same sockets. Before an inbound datagram is queued for charon it passes the
//! gate (`super::ike_gate`: IKE messages only, new IKE_SAs bounded per source).

use super::ike_gate::Refused;
use super::{IpsecEngine, SOCK_IKE, SOCK_NATT};
use crate::charon::protocol::IkePacket;
use crate::charon::server::QueueError;
use crate::counters::DropReason;
use crate::transport::{Packet, Verdict};
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

impl IpsecEngine {
    /// Inbound: an IKE datagram (on 500, or on 4500 after the non-ESP marker) to charon; `now`
    /// is the worker's time.
    pub(super) fn to_charon(&self, pkt: &mut Packet, now: Duration) -> Result<(), DropReason> {
        pkt.verdict = Verdict::Drop;
        let Some(c) = self.charon.get() else {
            return Err(DropReason::IkeRelayFailed);
        };
        let port = if pkt.sock == SOCK_IKE { 500 } else { 4500 };
        let local_port = self
            .senders
            .get()
            .and_then(|s| s.port(pkt.sock))
            .unwrap_or(port);
        let marker = if pkt.sock == SOCK_IKE { 0 } else { 4 };
        self.ike_gate
            .admit(pkt.addr.ip(), &pkt.data()[marker..], now)
            .map_err(|r| match r {
                Refused::Malformed => DropReason::IkeMalformed,
                Refused::RateLimited => DropReason::IkeRateLimited,
            })?;
        let ike = IkePacket {
            src: pkt.addr,
            dst: SocketAddr::new(self.local, local_port),
            data: pkt.data().to_vec(),
        };
        c.send_ike(ike).map_err(|e| match e {
            QueueError::Full => DropReason::IkeQueueFull,
            QueueError::TooLarge => DropReason::IkeRelayFailed,
        })?;
        self.counters.ike_in.fetch_add(1, Relaxed);
        Ok(())
    }

    /// Outbound: charon's datagram to the network (port 500 → IKE socket, else NAT-T).
    pub(super) fn send_ike(&self, packet: IkePacket) {
        let sock = if packet.src.port() == 500 {
            SOCK_IKE
        } else {
            SOCK_NATT
        };
        match self.senders.get() {
            Some(s) if s.send_to(sock, &packet.data, packet.dst).is_ok() => {
                self.counters.ike_out.fetch_add(1, Relaxed);
            }
            _ => self.counters.drop(DropReason::IkeRelayFailed),
        }
    }
}
