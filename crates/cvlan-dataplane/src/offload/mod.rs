//! Segmentation offload building blocks: fewer, larger syscalls per packet.
//!
//! - [`virtio`]: the `virtio_net_hdr` that prefixes every packet on a TUN opened with
//!   `IFF_VNET_HDR`.
//! - [`checksum`]: RFC 1071 internet checksum, incremental updates (RFC 1624) and the
//!   TCP/UDP pseudo-header sums.
//! - [`tso`]: splits a TCP (TSO) or UDP (USO) super-packet read from TUN into MTU-sized IP
//!   packets, and completes a partial (`NEEDS_CSUM`) checksum.
//! - [`gro`]: coalesces in-order TCP segments of one flow into one super-packet for a single
//!   TUN write, the kernel resegmenting it.
//! - [`udp_gso`]: `UDP_SEGMENT` (send) and `UDP_GRO` (receive) control messages, batching
//!   plans, and the runtime probes that switch the TUN and UDP offloads on.
//!
//! Nothing here owns a thread or a buffer pool: every function works on buffers the caller
//! owns, so the worker loop adopts it stage by stage. See `docs/offload.md`.

pub mod checksum;
pub mod gro;
pub mod tso;
pub mod tun_vnet;
pub mod udp_gso;
pub mod virtio;

/// Why a packet could not be split, completed or parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OffloadError {
    /// The virtio header is inconsistent with itself or with the packet it describes.
    #[error("malformed virtio_net_hdr: {0}")]
    BadVirtioHeader(&'static str),
    /// The IP/TCP/UDP headers are truncated or contradict the packet length.
    #[error("malformed packet: {0}")]
    BadPacket(&'static str),
    /// A GSO type or header layout this implementation does not handle: UFO, unknown GSO
    /// types, IPv6 extension headers on a GSO packet. (IPv4 options are fine.)
    #[error("unsupported offload: {0}")]
    Unsupported(&'static str),
    /// The caller provided fewer output buffers than segments, or a buffer too small.
    #[error(
        "output buffers too small: need {needed_segments} segments of up to {segment_len} bytes"
    )]
    NoRoom {
        needed_segments: usize,
        segment_len: usize,
    },
}

pub(crate) const IPPROTO_TCP: u8 = 6;
pub(crate) const IPPROTO_UDP: u8 = 17;
/// RFC 791: fixed part of the IPv4 header.
pub(crate) const IPV4_MIN_HEADER: usize = 20;
/// RFC 8200 §3: the IPv6 header has a fixed length.
pub(crate) const IPV6_HEADER: usize = 40;
/// RFC 9293 §3.1: TCP header without options.
pub(crate) const TCP_MIN_HEADER: usize = 20;
/// RFC 768.
pub(crate) const UDP_HEADER: usize = 8;

#[inline]
pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline]
pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline]
pub(crate) fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline]
pub(crate) fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

#[cfg(test)]
pub(crate) mod testutil;
