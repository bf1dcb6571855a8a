//! Extended Sequence Numbers (RFC 4303 §2.2.1, Appendix A).
//!
//! Only the low 32 bits travel in the ESP header. The receiver infers the high 32 bits
//! from the top of its anti-replay window: a low half that falls inside the window keeps
//! the window's high half, one below it must belong to the next 2^32 "subspace".
//! The high half is authenticated all the same: it is part of the AEAD AAD (RFC 4106 §5,
//! RFC 7634 §2.1) or appended to the ICV input for CBC + HMAC (RFC 4303 §2.2.1), so a
//! wrong guess fails authentication instead of being accepted.

/// Splits a 64-bit sequence number into (high, low) halves.
pub fn split(seq: u64) -> (u32, u32) {
    ((seq >> 32) as u32, seq as u32)
}

/// RFC 4303 Appendix A2.2: reconstructs the full sequence number from the low 32 bits
/// received (`seq_lo`), the highest authenticated sequence number so far (`top`, `None`
/// before the first packet) and the window size `window` (W).
pub fn reconstruct(seq_lo: u32, top: Option<u64>, window: u64) -> u64 {
    let top = top.unwrap_or(0);
    let (th, tl) = split(top);
    let w = window.clamp(1, 1 << 31);
    let seq_lo64 = u64::from(seq_lo);
    let tl64 = u64::from(tl);
    let seq_hi = if tl64 + 1 >= w {
        // Case A: the window [Tl - W + 1, Tl] lies within one subspace.
        let bottom = tl64 + 1 - w;
        if seq_lo64 >= bottom {
            th
        } else {
            th.wrapping_add(1)
        }
    } else {
        // Case B: the window spans two subspaces; its bottom is in the previous one.
        let bottom = tl64 + (1u64 << 32) + 1 - w;
        if seq_lo64 >= bottom {
            // Before the first wrap there is no previous subspace to be in.
            th.saturating_sub(1)
        } else {
            th
        }
    };
    (u64::from(seq_hi) << 32) | seq_lo64
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: u64 = 4096;

    #[test]
    fn same_subspace() {
        let top = (7u64 << 32) | 100_000;
        assert_eq!(reconstruct(100_001, Some(top), W), (7 << 32) | 100_001);
        assert_eq!(reconstruct(99_000, Some(top), W), (7 << 32) | 99_000);
        // below the window: assumed to be from the next subspace (it then fails auth
        // if it was really an old packet, since seq_hi is authenticated)
        assert_eq!(reconstruct(5, Some(top), W), (8 << 32) | 5);
    }

    #[test]
    fn window_spans_wrap() {
        // top just after a wrap: low half 10, window reaches back into subspace 2
        let top = (3u64 << 32) | 10;
        assert_eq!(reconstruct(11, Some(top), W), (3 << 32) | 11);
        assert_eq!(
            reconstruct(0xffff_fff0, Some(top), W),
            (2 << 32) | 0xffff_fff0
        );
        assert_eq!(reconstruct(3000, Some(top), W), (3 << 32) | 3000);
    }

    #[test]
    fn just_before_wrap() {
        let top = (1u64 << 32) | 0xffff_fffe;
        assert_eq!(
            reconstruct(0xffff_ffff, Some(top), W),
            (1 << 32) | 0xffff_ffff
        );
        assert_eq!(reconstruct(0, Some(top), W), 2 << 32);
        assert_eq!(reconstruct(1, Some(top), W), (2 << 32) | 1);
        assert_eq!(
            reconstruct(0xffff_f000, Some(top), W),
            (1 << 32) | 0xffff_f000
        );
    }

    #[test]
    fn fresh_window() {
        assert_eq!(reconstruct(1, None, W), 1);
        assert_eq!(reconstruct(0xffff_ff00, None, W), 0xffff_ff00);
        assert_eq!(reconstruct(5, Some(3), W), 5);
    }

    #[test]
    fn split_halves() {
        assert_eq!(split(0x0000_0001_ffff_fffe), (1, 0xffff_fffe));
    }
}
