//! Per-worker counters: plain relaxed atomics written only by their worker, read at any time
//! by the control plane (one snapshot per scrape, never per packet from JavaScript).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

macro_rules! drop_reasons {
    ($($variant:ident => $name:literal,)*) => {
        /// Why the data plane dropped a packet. The names are stable: they become the `reason`
        /// label of `cvlan_vrouter_drops_total` and keys of `vrouterctl drops`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(usize)]
        pub enum DropReason { $($variant,)* }

        impl DropReason {
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant,)*];
            pub const COUNT: usize = DropReason::ALL.len();
            pub fn as_str(self) -> &'static str {
                match self { $(DropReason::$variant => $name,)* }
            }
        }
    };
}

drop_reasons! {
    MalformedIp => "malformed_ip",
    NoRoute => "no_route",
    SourceNotAllowed => "source_not_allowed",
    UnknownPeer => "unknown_peer",
    BadHeader => "bad_header",
    Oversized => "oversized",
    TunWriteFailed => "tun_write_failed",
    UdpSendFailed => "udp_send_failed",
    BadOffload => "bad_offload",
    InterTenantDenied => "inter_tenant_denied",
    // ESP (`cvlan_proto::esp::DropReason`) and the IPsec engine (`crate::ipsec::drops`)
    EspUnknownSpi => "esp_unknown_spi",
    EspTruncated => "esp_truncated",
    EspAuthFailed => "esp_auth_failed",
    EspReplayed => "esp_replayed",
    EspTooOld => "esp_too_old",
    EspBadPadding => "esp_bad_padding",
    EspBadNextHeader => "esp_bad_next_header",
    EspDummy => "esp_dummy",
    EspInnerMalformed => "esp_inner_malformed",
    EspOutsideSelectors => "esp_outside_selectors",
    EspSaExpired => "esp_sa_expired",
    EspSequenceOverflow => "esp_sequence_overflow",
    EspBufferTooSmall => "esp_buffer_too_small",
    IpsecNoPolicy => "ipsec_no_policy",
    IpsecNoSa => "ipsec_no_sa",
    IpsecRawEspUnsupported => "ipsec_raw_esp_unsupported",
    IkeRelayFailed => "ike_relay_failed",
    IpsecMalformedIp => "ipsec_malformed_ip",
}

/// Counters of one worker.
#[derive(Default)]
pub struct WorkerCounters {
    pub tun_rx_packets: AtomicU64,
    pub tun_rx_bytes: AtomicU64,
    pub tun_tx_packets: AtomicU64,
    pub tun_tx_bytes: AtomicU64,
    pub udp_rx_packets: AtomicU64,
    pub udp_rx_bytes: AtomicU64,
    pub udp_tx_packets: AtomicU64,
    pub udp_tx_bytes: AtomicU64,
    /// Syscalls, so the batching factor is visible (e.g. `tun_rx_packets / tun_reads`).
    /// `read()`s of the TUN queue that returned a packet (one may carry a TSO super-packet).
    pub tun_reads: AtomicU64,
    /// `write()`s to the TUN queue (one may carry several coalesced TCP segments).
    pub tun_writes: AtomicU64,
    /// `recvmmsg()` calls that returned datagrams (each message may hold a GRO batch).
    pub udp_recvs: AtomicU64,
    /// `sendmmsg()`/`sendto()` calls (each message may be a GSO batch).
    pub udp_sends: AtomicU64,
    /// Loop iterations that found work (a batch may carry 1..BATCH packets).
    pub batches: AtomicU64,
    /// Times the worker's loop was restarted after a panic.
    pub restarts: AtomicU64,
    /// Nanoseconds spent processing (not waiting in epoll): load = busy / wall.
    pub busy_ns: AtomicU64,
    /// Packets this worker's handoff stage sent from another device (`crate::handoff`):
    /// "translated" in the API.
    pub translated: AtomicU64,
    pub drops: [AtomicU64; DropReason::COUNT],
}

impl WorkerCounters {
    #[inline]
    pub fn add(c: &AtomicU64, v: u64) {
        // Only the owning worker writes, so load+store avoids a locked RMW on the hot path.
        c.store(c.load(Relaxed).wrapping_add(v), Relaxed);
    }

    #[inline]
    pub fn drop_packet(&self, reason: DropReason) {
        Self::add(&self.drops[reason as usize], 1);
    }

    pub fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            tun_rx_packets: self.tun_rx_packets.load(Relaxed),
            tun_rx_bytes: self.tun_rx_bytes.load(Relaxed),
            tun_tx_packets: self.tun_tx_packets.load(Relaxed),
            tun_tx_bytes: self.tun_tx_bytes.load(Relaxed),
            udp_rx_packets: self.udp_rx_packets.load(Relaxed),
            udp_rx_bytes: self.udp_rx_bytes.load(Relaxed),
            udp_tx_packets: self.udp_tx_packets.load(Relaxed),
            udp_tx_bytes: self.udp_tx_bytes.load(Relaxed),
            tun_reads: self.tun_reads.load(Relaxed),
            tun_writes: self.tun_writes.load(Relaxed),
            udp_recvs: self.udp_recvs.load(Relaxed),
            udp_sends: self.udp_sends.load(Relaxed),
            batches: self.batches.load(Relaxed),
            restarts: self.restarts.load(Relaxed),
            busy_ns: self.busy_ns.load(Relaxed),
            translated: self.translated.load(Relaxed),
            drops: DropReason::ALL
                .iter()
                .map(|r| (*r, self.drops[*r as usize].load(Relaxed)))
                .collect(),
        }
    }
}

/// A point-in-time copy of one worker's counters.
#[derive(Debug, Clone, Default)]
pub struct CounterSnapshot {
    pub tun_rx_packets: u64,
    pub tun_rx_bytes: u64,
    pub tun_tx_packets: u64,
    pub tun_tx_bytes: u64,
    pub udp_rx_packets: u64,
    pub udp_rx_bytes: u64,
    pub udp_tx_packets: u64,
    pub udp_tx_bytes: u64,
    pub tun_reads: u64,
    pub tun_writes: u64,
    pub udp_recvs: u64,
    pub udp_sends: u64,
    pub batches: u64,
    pub restarts: u64,
    pub busy_ns: u64,
    pub translated: u64,
    pub drops: Vec<(DropReason, u64)>,
}
