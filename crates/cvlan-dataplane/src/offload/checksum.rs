//! The internet checksum (RFC 1071): the ones' complement of the ones' complement sum of the
//! data as big-endian 16-bit words, with incremental updates (RFC 1624) and the TCP/UDP
//! pseudo-header sums (RFC 9293 §3.1, RFC 768, RFC 8200 §8.1).
//!
//! Values of type `u16` here are numeric (the big-endian reading of the two bytes on the
//! wire); store them with `to_be_bytes`. "Sum" means the folded, *uncomplemented* sum, which
//! is what a partial (`NEEDS_CSUM`) checksum field holds; "checksum" is its complement.
//!
//! Speed: ones' complement addition is commutative and byte-order independent up to one final
//! byte swap (RFC 1071 §2(B)), so [`sum`] adds native-endian 64-bit words with end-around
//! carry, four independent accumulators per 32 bytes, and folds once at the end.

/// Folds a wide ones' complement accumulator to 16 bits (RFC 1071 §2(C)).
#[inline]
pub fn fold(mut acc: u64) -> u16 {
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    acc as u16
}

#[inline(always)]
fn add_carry(a: u64, b: u64) -> u64 {
    let (s, c) = a.overflowing_add(b);
    s + c as u64
}

#[inline(always)]
fn word(b: &[u8]) -> u64 {
    u64::from_ne_bytes(b[..8].try_into().unwrap())
}

/// Native-endian ones' complement sum of `data`, unfolded.
fn sum_native(data: &[u8]) -> u64 {
    let (mut a0, mut a1, mut a2, mut a3) = (0u64, 0u64, 0u64, 0u64);
    let mut blocks = data.chunks_exact(32);
    for b in &mut blocks {
        a0 = add_carry(a0, word(&b[0..]));
        a1 = add_carry(a1, word(&b[8..]));
        a2 = add_carry(a2, word(&b[16..]));
        a3 = add_carry(a3, word(&b[24..]));
    }
    let rest = blocks.remainder();
    let mut words = rest.chunks_exact(8);
    for w in &mut words {
        a0 = add_carry(a0, word(w));
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        // Zero-padding the tail to a whole word is RFC 1071's rule for an odd final byte; the
        // tail starts at a multiple of 8, so its 16-bit lanes line up with the data's.
        let mut pad = [0u8; 8];
        pad[..tail.len()].copy_from_slice(tail);
        a1 = add_carry(a1, u64::from_ne_bytes(pad));
    }
    add_carry(add_carry(a0, a1), add_carry(a2, a3))
}

/// Ones' complement sum of `data` (big-endian 16-bit words, odd final byte padded with zero)
/// plus `initial`, folded to 16 bits and not complemented. Chain calls to checksum
/// discontiguous data, as long as every piece but the last has an even length.
#[inline]
pub fn sum(data: &[u8], initial: u16) -> u16 {
    // fold() of native words gives the byte-swapped sum on little-endian hosts.
    let s = u16::from_be(fold(sum_native(data)));
    fold(s as u64 + initial as u64)
}

/// The checksum of `data` with `initial` already summed in: `!sum(data, initial)`.
#[inline]
pub fn checksum(data: &[u8], initial: u16) -> u16 {
    !sum(data, initial)
}

/// RFC 1624 eqn. 3: the checksum after one 16-bit word covered by `check` changed from `old`
/// to `new` (`HC' = ~(~HC + ~m + m')`).
#[inline]
pub fn update16(check: u16, old: u16, new: u16) -> u16 {
    !fold(!check as u64 + !old as u64 + new as u64)
}

/// As [`update16`] for an aligned 32-bit field (a TCP sequence number, an IPv4 address).
#[inline]
pub fn update32(check: u16, old: u32, new: u32) -> u16 {
    let c = update16(check, (old >> 16) as u16, (new >> 16) as u16);
    update16(c, old as u16, new as u16)
}

/// Sum of the IPv4 pseudo-header (RFC 9293 §3.1 / RFC 768): source, destination, zero,
/// protocol, and `len` = transport header plus payload.
#[inline]
pub fn pseudo_header_sum_v4(src: &[u8; 4], dst: &[u8; 4], proto: u8, len: u16) -> u16 {
    let w = |a: &[u8; 4]| {
        u16::from_be_bytes([a[0], a[1]]) as u64 + u16::from_be_bytes([a[2], a[3]]) as u64
    };
    fold(w(src) + w(dst) + proto as u64 + len as u64)
}

/// Sum of the IPv6 pseudo-header (RFC 8200 §8.1): source, destination, 32-bit upper-layer
/// length, three zero bytes and the next header.
#[inline]
pub fn pseudo_header_sum_v6(src: &[u8; 16], dst: &[u8; 16], proto: u8, len: u32) -> u16 {
    let mut acc = add_carry(sum_native(src), sum_native(dst));
    acc = u16::from_be(fold(acc)) as u64;
    fold(acc + (len >> 16) as u64 + (len & 0xffff) as u64 + proto as u64)
}

/// Pseudo-header sum for the transport segment of the IP packet `ip` (version from its first
/// nibble), with `l4_len` bytes of transport header and payload. `None` if `ip` is too short.
pub fn pseudo_header_sum(ip: &[u8], proto: u8, l4_len: usize) -> Option<u16> {
    match ip.first()? >> 4 {
        4 if ip.len() >= 20 => Some(pseudo_header_sum_v4(
            ip[12..16].try_into().unwrap(),
            ip[16..20].try_into().unwrap(),
            proto,
            l4_len as u16,
        )),
        6 if ip.len() >= 40 => Some(pseudo_header_sum_v6(
            ip[8..24].try_into().unwrap(),
            ip[24..40].try_into().unwrap(),
            proto,
            l4_len as u32,
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offload::testutil::{reference_sum, Lcg};

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3 numeric example: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(sum(&data, 0), 0xddf2);
        assert_eq!(checksum(&data, 0), !0xddf2);
    }

    #[test]
    fn ipv4_header_known_value() {
        // A textbook IPv4 header whose checksum is b861.
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&h, 0), 0xb861);
        h[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert_eq!(checksum(&h, 0), 0, "a correct header checksums to zero");
    }

    #[test]
    fn matches_reference_for_all_lengths_and_alignments() {
        let mut rng = Lcg(7);
        let mut buf = vec![0u8; 2200];
        rng.fill(&mut buf);
        for off in 0..8 {
            for len in (0..300).chain([1499, 1500, 1501, 2048, 2191]) {
                let d = &buf[off..off + len];
                let init = (len as u16).wrapping_mul(31);
                assert_eq!(sum(d, init), reference_sum(d, init), "off {off} len {len}");
            }
        }
        // All-ones data exercises every end-around carry.
        let ones = vec![0xffu8; 1501];
        assert_eq!(sum(&ones, 0xffff), reference_sum(&ones, 0xffff));
    }

    #[test]
    fn chaining_even_pieces_equals_whole() {
        let mut rng = Lcg(11);
        let mut buf = vec![0u8; 1000];
        rng.fill(&mut buf);
        let whole = sum(&buf, 0);
        let part = sum(&buf[600..], sum(&buf[..600], 0));
        assert_eq!(whole, part);
    }

    #[test]
    fn incremental_updates_match_recompute() {
        let mut rng = Lcg(3);
        for _ in 0..200 {
            let mut buf = [0u8; 64];
            rng.fill(&mut buf);
            let before = checksum(&buf, 0);
            let at = (rng.next() as usize % 30) * 2;
            let old16 = u16::from_be_bytes([buf[at], buf[at + 1]]);
            let new16 = rng.next() as u16;
            buf[at..at + 2].copy_from_slice(&new16.to_be_bytes());
            let upd = update16(before, old16, new16);
            // 0x0000 and 0xffff are the same number in ones' complement.
            let full = checksum(&buf, 0);
            assert!(
                upd == full || (upd ^ full) == 0xffff,
                "{upd:04x} vs {full:04x}"
            );

            let at = (rng.next() as usize % 15) * 4;
            let before = checksum(&buf, 0);
            let old32 = u32::from_be_bytes(buf[at..at + 4].try_into().unwrap());
            let new32 = rng.next();
            buf[at..at + 4].copy_from_slice(&new32.to_be_bytes());
            let upd = update32(before, old32, new32);
            let full = checksum(&buf, 0);
            assert!(
                upd == full || (upd ^ full) == 0xffff,
                "{upd:04x} vs {full:04x}"
            );
        }
    }

    #[test]
    fn pseudo_headers_match_reference_layout() {
        let src4 = [10, 1, 2, 3];
        let dst4 = [192, 168, 200, 254];
        let mut ph = Vec::new();
        ph.extend_from_slice(&src4);
        ph.extend_from_slice(&dst4);
        ph.extend_from_slice(&[0, 6, 0x05, 0xdc]);
        assert_eq!(
            pseudo_header_sum_v4(&src4, &dst4, 6, 1500),
            reference_sum(&ph, 0)
        );

        let src6: [u8; 16] = core::array::from_fn(|i| (i * 17 + 1) as u8);
        let dst6: [u8; 16] = core::array::from_fn(|i| (255 - i * 3) as u8);
        let mut ph = Vec::new();
        ph.extend_from_slice(&src6);
        ph.extend_from_slice(&dst6);
        ph.extend_from_slice(&70000u32.to_be_bytes());
        ph.extend_from_slice(&[0, 0, 0, 17]);
        assert_eq!(
            pseudo_header_sum_v6(&src6, &dst6, 17, 70000),
            reference_sum(&ph, 0)
        );
    }
}
