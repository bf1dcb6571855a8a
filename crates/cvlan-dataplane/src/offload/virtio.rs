//! `struct virtio_net_hdr` (virtio 1.2 §5.1.6, `linux/virtio_net.h`): the 10-byte header in
//! front of every packet read from or written to a TUN opened with `IFF_VNET_HDR`.
//!
//! Field order: flags (u8), gso_type (u8), hdr_len, gso_size, csum_start, csum_offset (u16
//! each). The TUN driver uses little-endian fields on little-endian hosts (and whenever
//! `TUNSETVNETLE` is set); this module always encodes little-endian, which is what every
//! host this project targets uses.

use super::OffloadError;

/// Size of the legacy header without `num_buffers` (what `TUNSETVNETHDRSZ` is set to).
pub const VIRTIO_NET_HDR_LEN: usize = 10;

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum from `csum_start` to the end of the packet
/// still has to be computed and stored at `csum_start + csum_offset`; the field there holds
/// the (uncomplemented) pseudo-header sum.
pub const F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID`: the checksum was already verified (receive side only).
pub const F_DATA_VALID: u8 = 2;

/// `VIRTIO_NET_HDR_GSO_ECN`: or-ed into the GSO type when the TCP flow uses ECN and CWR must
/// only appear on the first segment.
pub const GSO_ECN: u8 = 0x80;

/// `gso_type` without the ECN bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GsoType {
    /// `VIRTIO_NET_HDR_GSO_NONE`: a single packet.
    None,
    /// `VIRTIO_NET_HDR_GSO_TCPV4`: TSO over IPv4.
    TcpV4,
    /// `VIRTIO_NET_HDR_GSO_TCPV6`: TSO over IPv6.
    TcpV6,
    /// `VIRTIO_NET_HDR_GSO_UDP_L4`: USO (UDP segmentation, not IP fragmentation), v4 or v6.
    UdpL4,
}

impl GsoType {
    pub const fn to_raw(self) -> u8 {
        match self {
            GsoType::None => 0,
            GsoType::TcpV4 => 1,
            GsoType::TcpV6 => 4,
            GsoType::UdpL4 => 5,
        }
    }

    /// Parses the type without its ECN bit. `VIRTIO_NET_HDR_GSO_UDP` (3, UFO: IP
    /// fragmentation) is deliberately unsupported: Linux stopped generating it in 4.14.
    pub fn from_raw(raw: u8) -> Result<GsoType, OffloadError> {
        match raw & !GSO_ECN {
            0 => Ok(GsoType::None),
            1 => Ok(GsoType::TcpV4),
            4 => Ok(GsoType::TcpV6),
            5 => Ok(GsoType::UdpL4),
            3 => Err(OffloadError::Unsupported("UFO (VIRTIO_NET_HDR_GSO_UDP)")),
            _ => Err(OffloadError::Unsupported("unknown gso_type")),
        }
    }
}

/// A decoded `virtio_net_hdr`. `gso_type` keeps the raw byte so the ECN bit survives a round
/// trip; use [`VirtioNetHdr::gso`] for the parsed type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VirtioNetHdr {
    pub flags: u8,
    pub gso_type: u8,
    /// Length of the headers up to and including the transport header. For TSO from the
    /// kernel this is only a hint (it may cover the whole linear part), so the splitter
    /// recomputes it from the TCP data offset.
    pub hdr_len: u16,
    /// Payload bytes per segment (MSS for TCP, datagram payload for UDP).
    pub gso_size: u16,
    /// Offset of the transport header, where checksumming starts.
    pub csum_start: u16,
    /// Offset of the checksum field from `csum_start` (16 for TCP, 6 for UDP).
    pub csum_offset: u16,
}

impl VirtioNetHdr {
    /// The header for a plain packet with a complete checksum: all zero.
    pub const NONE: VirtioNetHdr = VirtioNetHdr {
        flags: 0,
        gso_type: 0,
        hdr_len: 0,
        gso_size: 0,
        csum_start: 0,
        csum_offset: 0,
    };

    /// Decodes the first [`VIRTIO_NET_HDR_LEN`] bytes of `b`. Only the length is checked here;
    /// the fields are validated against the packet by the splitter.
    pub fn decode(b: &[u8]) -> Result<VirtioNetHdr, OffloadError> {
        if b.len() < VIRTIO_NET_HDR_LEN {
            return Err(OffloadError::BadVirtioHeader("shorter than 10 bytes"));
        }
        let le = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        Ok(VirtioNetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: le(2),
            gso_size: le(4),
            csum_start: le(6),
            csum_offset: le(8),
        })
    }

    /// Encodes into the first [`VIRTIO_NET_HDR_LEN`] bytes of `out` (panics if shorter: the
    /// caller reserves the room, so a short buffer is a bug).
    pub fn encode(&self, out: &mut [u8]) {
        let out = &mut out[..VIRTIO_NET_HDR_LEN];
        out[0] = self.flags;
        out[1] = self.gso_type;
        out[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        out[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        out[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        out[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
    }

    pub fn to_bytes(&self) -> [u8; VIRTIO_NET_HDR_LEN] {
        let mut b = [0u8; VIRTIO_NET_HDR_LEN];
        self.encode(&mut b);
        b
    }

    pub fn gso(&self) -> Result<GsoType, OffloadError> {
        GsoType::from_raw(self.gso_type)
    }

    pub fn needs_csum(&self) -> bool {
        self.flags & F_NEEDS_CSUM != 0
    }

    pub fn ecn(&self) -> bool {
        self.gso_type & GSO_ECN != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_little_endian_and_ten_bytes() {
        let h = VirtioNetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GsoType::TcpV4.to_raw(),
            hdr_len: 0x0034,
            gso_size: 0x05a8,
            csum_start: 0x0014,
            csum_offset: 0x0010,
        };
        // Expected bytes written out by hand from linux/virtio_net.h's field order.
        let want = [0x01, 0x01, 0x34, 0x00, 0xa8, 0x05, 0x14, 0x00, 0x10, 0x00];
        assert_eq!(h.to_bytes(), want);
        assert_eq!(VirtioNetHdr::decode(&want).unwrap(), h);
    }

    #[test]
    fn round_trip_and_types() {
        for raw in [0u8, 1, 4, 5, 0x81, 0x84] {
            let h = VirtioNetHdr {
                flags: 3,
                gso_type: raw,
                hdr_len: 0xfedc,
                gso_size: 1,
                csum_start: 0x1234,
                csum_offset: 0xffff,
            };
            let mut buf = [0xaau8; 12];
            h.encode(&mut buf);
            assert_eq!(buf[10..], [0xaa, 0xaa], "encode writes exactly 10 bytes");
            let d = VirtioNetHdr::decode(&buf).unwrap();
            assert_eq!(d, h);
            assert_eq!(d.gso().unwrap().to_raw(), raw & !GSO_ECN);
            assert_eq!(d.ecn(), raw & GSO_ECN != 0);
        }
        assert_eq!(VirtioNetHdr::decode(&[0; 10]).unwrap(), VirtioNetHdr::NONE);
    }

    #[test]
    fn rejects_short_and_unknown() {
        assert!(matches!(
            VirtioNetHdr::decode(&[0; 9]),
            Err(OffloadError::BadVirtioHeader(_))
        ));
        assert!(matches!(
            GsoType::from_raw(3),
            Err(OffloadError::Unsupported(_))
        ));
        assert!(GsoType::from_raw(2).is_err());
        assert!(GsoType::from_raw(6).is_err());
    }
}
