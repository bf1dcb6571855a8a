//! Stage `send`, one implementation for the worker's own batch and for the batch the handoff
//! stage encapsulated for another device: the packets with verdict `Send` and the extra
//! datagrams the transport produced, one `sendmmsg` per socket (runs of equal-size datagrams to
//! one peer as one `UDP_SEGMENT` message where the socket has GSO). Sends are counted here and
//! nowhere else: syscalls, packets, bytes, and every datagram that did not leave.

use crate::counters::{DropReason, WorkerCounters};
use crate::transport::{Outgoing, Packet, Verdict};
use crate::udp::{MmsgScratch, SendStats, UdpSocket};
use std::net::SocketAddr;

/// Sends the `Send` packets of `pkts`, each from `socks[p.sock]`; returns how many left.
pub(crate) fn packets(
    socks: &[UdpSocket],
    counters: &WorkerCounters,
    pkts: &[Packet],
    scratch: &mut MmsgScratch,
) -> usize {
    let mut sent = 0;
    for (sock, s) in socks.iter().enumerate() {
        let out: Vec<(&[u8], SocketAddr)> = pkts
            .iter()
            .filter(|p| p.verdict == Verdict::Send && p.sock == sock)
            .map(|p| (p.data(), p.addr))
            .collect();
        sent += from(s, counters, &out, scratch);
    }
    for _ in pkts
        .iter()
        .filter(|p| p.verdict == Verdict::Send && p.sock >= socks.len())
    {
        counters.drop_packet(DropReason::UdpSendFailed);
    }
    sent
}

/// Sends and clears the extra datagrams, each from `socks[o.sock]`.
pub(crate) fn extra(
    socks: &[UdpSocket],
    counters: &WorkerCounters,
    extra: &mut Vec<Outgoing>,
    scratch: &mut MmsgScratch,
) {
    if extra.is_empty() {
        return;
    }
    for (sock, s) in socks.iter().enumerate() {
        let out: Vec<(&[u8], SocketAddr)> = extra
            .iter()
            .filter(|o| o.sock == sock)
            .map(|o| (o.data.as_slice(), o.addr))
            .collect();
        from(s, counters, &out, scratch);
    }
    for _ in extra.iter().filter(|o| o.sock >= socks.len()) {
        counters.drop_packet(DropReason::UdpSendFailed);
    }
    extra.clear();
}

fn from(
    sock: &UdpSocket,
    counters: &WorkerCounters,
    out: &[(&[u8], SocketAddr)],
    scratch: &mut MmsgScratch,
) -> usize {
    if out.is_empty() {
        return 0;
    }
    let SendStats { sent, bytes, calls } = sock.send(out, scratch);
    WorkerCounters::add(&counters.udp_sends, calls as u64);
    WorkerCounters::add(&counters.udp_tx_packets, sent as u64);
    WorkerCounters::add(&counters.udp_tx_bytes, bytes as u64);
    for _ in sent..out.len() {
        counters.drop_packet(DropReason::UdpSendFailed);
    }
    sent
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn sends_per_socket_and_counts_what_did_not_leave() {
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let to = peer.local_addr().unwrap();
        let sock = UdpSocket::bind_reuseport("127.0.0.1:0".parse().unwrap(), false).unwrap();
        let counters = WorkerCounters::default();
        let mut pkts: Vec<Packet> = (0..4u8)
            .map(|i| {
                let mut p = Packet::new();
                p.len = 10;
                p.data_mut()[0] = i;
                p.addr = to;
                p.verdict = Verdict::Send;
                p
            })
            .collect();
        pkts[2].sock = 1; // no such socket
        pkts[3].verdict = Verdict::Drop;
        let mut scratch = MmsgScratch::new(8);
        let socks = [sock];
        assert_eq!(packets(&socks, &counters, &pkts, &mut scratch), 2);
        let mut extra = vec![Outgoing {
            data: vec![9; 3],
            addr: to,
            sock: 0,
        }];
        super::extra(&socks, &counters, &mut extra, &mut scratch);
        assert!(extra.is_empty(), "sent extras are cleared");
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        for _ in 0..3 {
            let n = peer.recv(&mut buf).unwrap();
            got.push((buf[0], n));
        }
        assert_eq!(got, [(0, 10), (1, 10), (9, 3)]);
        let c = counters.snapshot();
        assert_eq!((c.udp_tx_packets, c.udp_tx_bytes), (3, 23));
        let failed = c
            .drops
            .iter()
            .find(|(r, _)| *r == DropReason::UdpSendFailed)
            .map(|(_, n)| *n);
        assert_eq!(failed, Some(1), "the packet for a socket the device lacks");
    }
}
