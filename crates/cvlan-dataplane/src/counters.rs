//! Per-worker counters: plain relaxed atomics written only by their worker, read at any time
//! by the control plane (one snapshot per scrape, never per packet from JavaScript).

use cvlan_proto::{esp, wireguard};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

macro_rules! drop_reasons {
    ($($variant:ident => $name:literal,)*) => {
        /// Why the data plane dropped a packet: the one table of drop codes. The names are
        /// stable: they become the `reason` label of `cvlan_vrouter_drops_total` (through the
        /// mapping in `src/daemon/drops.ts`, which a test keeps total) and keys of
        /// `vrouterctl drops`. The protocol core's own reasons map into it with `From`.
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
    // The workers and the transports' pipelines.
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
    // An HA standby is passive: it sends nothing (`crate::ha`).
    HaStandby => "ha_standby",
    // ESP (`cvlan_proto::esp::DropReason`).
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
    EspLeaseExhausted => "esp_lease_exhausted",
    EspBufferTooSmall => "esp_buffer_too_small",
    // The IPsec engine around ESP (`crate::ipsec`).
    IpsecNoPolicy => "ipsec_no_policy",
    IpsecNoSa => "ipsec_no_sa",
    IpsecRawEspUnsupported => "ipsec_raw_esp_unsupported",
    IkeRelayFailed => "ike_relay_failed",
    IkeQueueFull => "ike_queue_full",
    IkeMalformed => "ike_malformed",
    IkeRateLimited => "ike_rate_limited",
    IpsecMalformedIp => "ipsec_malformed_ip",
    // WireGuard (`cvlan_proto::wireguard::DropReason`).
    WgTruncated => "wg_truncated",
    WgOversized => "wg_oversized",
    WgUnknownType => "wg_unknown_type",
    WgBadLength => "wg_bad_length",
    WgBadMac1 => "wg_bad_mac1",
    WgCookieRequired => "wg_cookie_required",
    WgRateLimited => "wg_rate_limited",
    WgHandshakeDecrypt => "wg_handshake_decrypt",
    WgUnknownPeer => "wg_unknown_peer",
    WgLowOrder => "wg_low_order_key",
    WgStaleInitiation => "wg_stale_initiation",
    WgInitiationFlood => "wg_initiation_flood",
    WgUnexpectedResponse => "wg_unexpected_response",
    WgBadCookieReply => "wg_bad_cookie_reply",
    WgUnknownReceiver => "wg_unknown_receiver",
    WgDataBeforeHandshake => "wg_data_before_handshake",
    WgKeypairExpired => "wg_keypair_expired",
    WgReplayed => "wg_replayed",
    WgTooOld => "wg_too_old",
    WgDecryptFailed => "wg_decrypt_failed",
    WgMessageLimit => "wg_message_limit",
    WgSourceNotAllowed => "wg_source_not_allowed",
    WgNoRoute => "wg_no_route",
    WgNoEndpoint => "wg_no_endpoint",
    WgNoIdentity => "wg_no_private_key",
    WgQueueFull => "wg_queue_full",
    WgHandshakeTimeout => "wg_handshake_timeout",
    WgMalformed => "wg_malformed",
}

impl From<esp::DropReason> for DropReason {
    fn from(r: esp::DropReason) -> DropReason {
        use esp::DropReason as E;
        match r {
            E::UnknownSpi => DropReason::EspUnknownSpi,
            E::Truncated => DropReason::EspTruncated,
            E::AuthFailed => DropReason::EspAuthFailed,
            E::Replayed => DropReason::EspReplayed,
            E::TooOld => DropReason::EspTooOld,
            E::BadPadding => DropReason::EspBadPadding,
            E::BadNextHeader => DropReason::EspBadNextHeader,
            E::DummyPacket => DropReason::EspDummy,
            E::InnerMalformed => DropReason::EspInnerMalformed,
            E::OutsideSelectors => DropReason::EspOutsideSelectors,
            E::SaExpired => DropReason::EspSaExpired,
            E::SequenceOverflow => DropReason::EspSequenceOverflow,
            E::LeaseExhausted => DropReason::EspLeaseExhausted,
            E::BufferTooSmall => DropReason::EspBufferTooSmall,
        }
    }
}

impl From<wireguard::DropReason> for DropReason {
    fn from(r: wireguard::DropReason) -> DropReason {
        use wireguard::DropReason as W;
        match r {
            W::Truncated => DropReason::WgTruncated,
            W::Oversized => DropReason::WgOversized,
            W::UnknownType => DropReason::WgUnknownType,
            W::BadLength => DropReason::WgBadLength,
            W::BadMac1 => DropReason::WgBadMac1,
            W::CookieRequired => DropReason::WgCookieRequired,
            W::RateLimited => DropReason::WgRateLimited,
            W::HandshakeDecrypt => DropReason::WgHandshakeDecrypt,
            W::UnknownPeer => DropReason::WgUnknownPeer,
            W::LowOrder => DropReason::WgLowOrder,
            W::StaleInitiation => DropReason::WgStaleInitiation,
            W::InitiationFlood => DropReason::WgInitiationFlood,
            W::UnexpectedResponse => DropReason::WgUnexpectedResponse,
            W::BadCookieReply => DropReason::WgBadCookieReply,
            W::UnknownReceiver => DropReason::WgUnknownReceiver,
            W::DataBeforeHandshake => DropReason::WgDataBeforeHandshake,
            W::KeypairExpired => DropReason::WgKeypairExpired,
            W::Replayed => DropReason::WgReplayed,
            W::TooOld => DropReason::WgTooOld,
            W::DecryptFailed => DropReason::WgDecryptFailed,
            W::MessageLimit => DropReason::WgMessageLimit,
            W::SourceNotAllowed => DropReason::WgSourceNotAllowed,
            W::NoRoute => DropReason::WgNoRoute,
            W::NoEndpoint => DropReason::WgNoEndpoint,
            W::NoIdentity => DropReason::WgNoIdentity,
            W::QueueFull => DropReason::WgQueueFull,
            W::HandshakeTimeout => DropReason::WgHandshakeTimeout,
            W::Malformed => DropReason::WgMalformed,
        }
    }
}

/// One counter per drop code. Shared by an engine's workers (IPsec, WireGuard: drops there are
/// rare, so an atomic add per drop is cheap) or owned by one worker (`WorkerCounters::drops`).
pub struct DropCounters([AtomicU64; DropReason::COUNT]);

impl Default for DropCounters {
    fn default() -> DropCounters {
        DropCounters(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl DropCounters {
    /// Counts a drop from any thread.
    pub fn add(&self, reason: impl Into<DropReason>) {
        self.0[reason.into() as usize].fetch_add(1, Relaxed);
    }

    /// Counts a drop where only the calling thread writes (a worker's own counters).
    #[inline]
    fn add_owned(&self, reason: DropReason) {
        WorkerCounters::add(&self.0[reason as usize], 1);
    }

    pub fn get(&self, reason: DropReason) -> u64 {
        self.0[reason as usize].load(Relaxed)
    }

    /// Every code of the table with its count, in table order.
    pub fn snapshot(&self) -> Vec<(DropReason, u64)> {
        DropReason::ALL.iter().map(|r| (*r, self.get(*r))).collect()
    }
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
    /// Packets this worker ran through its transport's seal or open stage, its own batches'
    /// and shares of other workers' (`crate::spread`).
    pub crypto_packets: AtomicU64,
    /// Of those, packets of another worker's batch.
    pub helped_packets: AtomicU64,
    pub drops: DropCounters,
}

impl WorkerCounters {
    #[inline]
    pub fn add(c: &AtomicU64, v: u64) {
        // Only the owning worker writes, so load+store avoids a locked RMW on the hot path.
        c.store(c.load(Relaxed).wrapping_add(v), Relaxed);
    }

    #[inline]
    pub fn drop_packet(&self, reason: DropReason) {
        self.drops.add_owned(reason);
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
            crypto_packets: self.crypto_packets.load(Relaxed),
            helped_packets: self.helped_packets.load(Relaxed),
            drops: self.drops.snapshot(),
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
    pub crypto_packets: u64,
    pub helped_packets: u64,
    pub drops: Vec<(DropReason, u64)>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_lowercase_and_indexed_in_order() {
        let names: HashSet<_> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), DropReason::COUNT);
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
            assert!(r
                .as_str()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
        }
    }

    #[test]
    fn protocol_reasons_map_to_distinct_codes() {
        let wg = [
            wireguard::DropReason::Replayed,
            wireguard::DropReason::TooOld,
            wireguard::DropReason::NoRoute,
        ];
        let esp = [esp::DropReason::Replayed, esp::DropReason::DummyPacket];
        let codes: Vec<&str> = wg
            .into_iter()
            .map(DropReason::from)
            .chain(esp.into_iter().map(DropReason::from))
            .map(DropReason::as_str)
            .collect();
        assert_eq!(
            codes,
            [
                "wg_replayed",
                "wg_too_old",
                "wg_no_route",
                "esp_replayed",
                "esp_dummy"
            ]
        );
    }

    #[test]
    fn shared_counters_count_every_code() {
        let c = DropCounters::default();
        c.add(wireguard::DropReason::Replayed);
        c.add(wireguard::DropReason::Replayed);
        c.add(DropReason::NoRoute);
        assert_eq!(c.get(DropReason::WgReplayed), 2);
        let nonzero: Vec<_> = c.snapshot().into_iter().filter(|(_, n)| *n > 0).collect();
        assert_eq!(
            nonzero,
            [(DropReason::NoRoute, 1), (DropReason::WgReplayed, 2)]
        );
        assert_eq!(c.snapshot().len(), DropReason::COUNT);
    }
}
