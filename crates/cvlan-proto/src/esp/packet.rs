//! The ESP packet format (RFC 4303 §2) in tunnel mode: header, payload, trailer and ICV.
//!
//! ```text
//! | SPI (4) | Sequence Number (4) | IV (8 or 16) | inner IP packet | Padding | Pad Length | Next Header | ICV |
//!                                                |<------------- encrypted --------------------------->|
//! ```

use std::ops::Range;

use super::DropReason;

// --- Specification constants -----------------------------------------------------------

/// RFC 4303 §2: SPI (32 bits) followed by the Sequence Number (32 bits).
pub const ESP_HEADER_LEN: usize = 8;
/// RFC 4303 §2.4/§2.5: the Pad Length and Next Header octets that end every payload.
pub const TRAILER_FIXED_LEN: usize = 2;
/// RFC 4303 §2.4: the Pad Length field is one octet, so at most 255 octets of padding.
pub const MAX_PAD_LEN: usize = 255;
/// RFC 4303 §2.4: the ciphertext must end on a 4-octet boundary whatever the cipher.
pub const MIN_ALIGN: usize = 4;
/// RFC 4303 §2.6 with IANA protocol numbers: IPv4 inside a tunnel-mode SA ("IP-in-IP", 4).
pub const NEXT_HEADER_IPV4: u8 = 4;
/// IANA protocol number 41: IPv6 inside a tunnel-mode SA.
pub const NEXT_HEADER_IPV6: u8 = 41;
/// RFC 4303 §2.6: Next Header 59 ("no next header") marks a dummy packet, to be discarded.
pub const NEXT_HEADER_NONE: u8 = 59;
/// RFC 4303 §2.1: SPI 0 is reserved for local use and never appears on the wire.
pub const RESERVED_SPI: u32 = 0;

/// The Next Header value for an inner packet, from its IP version nibble.
pub fn next_header_for(inner: &[u8]) -> Result<u8, DropReason> {
    match inner.first().map(|b| b >> 4) {
        Some(4) => Ok(NEXT_HEADER_IPV4),
        Some(6) => Ok(NEXT_HEADER_IPV6),
        _ => Err(DropReason::InnerMalformed),
    }
}

/// Number of padding octets so that `payload_len + pad + 2` is a multiple of `align`
/// (RFC 4303 §2.4). `align` is a power of two no larger than 16.
pub fn pad_len(payload_len: usize, align: usize) -> usize {
    debug_assert!(align.is_power_of_two() && align <= 16);
    let used = payload_len + TRAILER_FIXED_LEN;
    (align - used % align) % align
}

/// Writes the default padding 1, 2, 3, … (RFC 4303 §2.4), Pad Length and Next Header
/// into `trailer`, whose length must be `pad + 2`.
pub fn write_trailer(trailer: &mut [u8], next_header: u8) {
    let pad = trailer.len() - TRAILER_FIXED_LEN;
    for (i, b) in trailer[..pad].iter_mut().enumerate() {
        // pad <= 255 by construction, so the value fits
        *b = (i + 1) as u8;
    }
    trailer[pad] = pad as u8;
    trailer[pad + 1] = next_header;
}

/// Validates the trailer at the end of a decrypted payload and returns the range of the
/// payload data (before the padding) and the Next Header value.
pub fn check_trailer(plaintext: &[u8]) -> Result<(Range<usize>, u8), DropReason> {
    let n = plaintext.len();
    if n < TRAILER_FIXED_LEN {
        return Err(DropReason::Truncated);
    }
    let pad = usize::from(plaintext[n - 2]);
    let next_header = plaintext[n - 1];
    if pad + TRAILER_FIXED_LEN > n {
        return Err(DropReason::BadPadding);
    }
    let data_end = n - TRAILER_FIXED_LEN - pad;
    // RFC 4303 §2.4: with the default padding scheme the receiver checks the pad bytes.
    let mut bad = 0u8;
    for (i, &b) in plaintext[data_end..n - 2].iter().enumerate() {
        bad |= b ^ ((i + 1) as u8);
    }
    if bad != 0 {
        return Err(DropReason::BadPadding);
    }
    Ok((0..data_end, next_header))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_aligns() {
        for align in [4usize, 16] {
            for len in 0..100 {
                let p = pad_len(len, align);
                assert!(p < align);
                assert_eq!((len + p + 2) % align, 0);
            }
        }
    }

    #[test]
    fn trailer_round_trip() {
        let mut buf = [0u8; 7];
        write_trailer(&mut buf[2..], NEXT_HEADER_IPV6);
        assert_eq!(&buf[2..], &[1, 2, 3, 3, 41]);
        assert_eq!(check_trailer(&buf), Ok((0..2, 41)));
        buf[3] = 9;
        assert_eq!(check_trailer(&buf), Err(DropReason::BadPadding));
        assert_eq!(check_trailer(&[0, 200, 4]), Err(DropReason::BadPadding));
        assert_eq!(check_trailer(&[4]), Err(DropReason::Truncated));
        assert_eq!(check_trailer(&[0, 4]), Ok((0..0, 4)));
    }
}
