//! UDP encapsulation of ESP (RFC 3948) and raw ESP framing.
//!
//! One UDP port (4500) carries three kinds of datagrams (RFC 3948 §2.2, §2.3):
//! a single 0xFF octet is a NAT-keepalive, a leading all-zero "non-ESP marker" means an IKE
//! message follows, anything else is an ESP packet whose first word is its (non-zero) SPI.

use std::ops::Range;

use super::packet::ESP_HEADER_LEN;
use super::DropReason;

// --- Specification constants -----------------------------------------------------------

/// RFC 3948 §1 / RFC 7296 §2.23: the port that carries IKE and ESP after NAT detection.
pub const NAT_T_PORT: u16 = 4500;
/// RFC 3948 §2.2: the non-ESP marker, four zero octets where an ESP SPI would be.
pub const NON_ESP_MARKER: [u8; 4] = [0; 4];
/// RFC 3948 §2.3: the NAT-keepalive payload is the single octet 0xFF.
pub const NAT_KEEPALIVE: u8 = 0xff;
/// RFC 768: the UDP header.
pub const UDP_HEADER_LEN: usize = 8;
/// IANA protocol number of ESP, for raw sockets (RFC 4303 §2).
pub const IPPROTO_ESP: u8 = 50;

/// What a datagram received on the NAT-T port is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datagram<'a> {
    /// NAT-keepalive: only keeps the NAT mapping open; ignore.
    Keepalive,
    /// An IKE message with the non-ESP marker removed: for the key manager.
    Ike(&'a [u8]),
    /// An ESP packet starting at its SPI.
    Esp { spi: u32, packet: &'a [u8] },
}

/// Classifies the payload of a UDP datagram received on port 4500.
pub fn classify(payload: &[u8]) -> Result<Datagram<'_>, DropReason> {
    if payload == [NAT_KEEPALIVE] {
        return Ok(Datagram::Keepalive);
    }
    if payload.len() < NON_ESP_MARKER.len() {
        return Err(DropReason::Truncated);
    }
    if payload[..4] == NON_ESP_MARKER {
        return Ok(Datagram::Ike(&payload[4..]));
    }
    classify_raw(payload)
}

/// Classifies the payload of an IP protocol 50 packet (raw ESP): SPI and length only.
pub fn classify_raw(payload: &[u8]) -> Result<Datagram<'_>, DropReason> {
    if payload.len() < ESP_HEADER_LEN {
        return Err(DropReason::Truncated);
    }
    let spi = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
    if spi == 0 {
        // RFC 4303 §2.1: SPI 0 never appears on the wire.
        return Err(DropReason::UnknownSpi);
    }
    Ok(Datagram::Esp {
        spi,
        packet: payload,
    })
}

/// Puts the non-ESP marker in front of the IKE message at `buf[ike]`, which needs four
/// octets of headroom; returns the datagram payload's range.
pub fn prepend_non_esp_marker(
    buf: &mut [u8],
    ike: Range<usize>,
) -> Result<Range<usize>, DropReason> {
    let start = ike
        .start
        .checked_sub(NON_ESP_MARKER.len())
        .ok_or(DropReason::BufferTooSmall)?;
    if ike.end > buf.len() || ike.start > ike.end {
        return Err(DropReason::BufferTooSmall);
    }
    buf[start..ike.start].copy_from_slice(&NON_ESP_MARKER);
    Ok(start..ike.end)
}

/// Writes a UDP header for an ESP-in-UDP datagram over IPv4 (for raw-socket senders).
/// RFC 3948 §2.1: the checksum SHOULD be transmitted as zero.
pub fn write_udp_header_v4(
    hdr: &mut [u8; UDP_HEADER_LEN],
    src_port: u16,
    dst_port: u16,
    payload_len: usize,
) -> Result<(), DropReason> {
    let len =
        u16::try_from(payload_len + UDP_HEADER_LEN).map_err(|_| DropReason::BufferTooSmall)?;
    hdr[0..2].copy_from_slice(&src_port.to_be_bytes());
    hdr[2..4].copy_from_slice(&dst_port.to_be_bytes());
    hdr[4..6].copy_from_slice(&len.to_be_bytes());
    hdr[6..8].copy_from_slice(&[0, 0]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert_eq!(classify(&[0xff]), Ok(Datagram::Keepalive));
        assert_eq!(
            classify(&[0, 0, 0, 0, 1, 2, 3]),
            Ok(Datagram::Ike(&[1, 2, 3]))
        );
        assert_eq!(classify(&[0, 0, 0, 0]), Ok(Datagram::Ike(&[])));
        let esp = [0, 0, 0x12, 0x34, 0, 0, 0, 1, 9, 9];
        assert_eq!(
            classify(&esp),
            Ok(Datagram::Esp {
                spi: 0x1234,
                packet: &esp
            })
        );
        assert_eq!(classify(&[]), Err(DropReason::Truncated));
        assert_eq!(classify(&[0xff, 0xff]), Err(DropReason::Truncated));
        assert_eq!(classify(&[1, 2, 3, 4, 5]), Err(DropReason::Truncated));
        assert_eq!(
            classify_raw(&[0, 0, 0, 0, 0, 0, 0, 1]),
            Err(DropReason::UnknownSpi)
        );
    }

    #[test]
    fn marker_and_header() {
        let mut buf = [7u8; 10];
        let r = prepend_non_esp_marker(&mut buf, 4..10).unwrap();
        assert_eq!(r, 0..10);
        assert_eq!(classify(&buf[r]), Ok(Datagram::Ike(&[7; 6])));
        assert_eq!(
            prepend_non_esp_marker(&mut buf, 3..10),
            Err(DropReason::BufferTooSmall)
        );
        let mut h = [0u8; UDP_HEADER_LEN];
        write_udp_header_v4(&mut h, 4500, 4501, 100).unwrap();
        assert_eq!(h, [0x11, 0x94, 0x11, 0x95, 0, 108, 0, 0]);
    }
}
