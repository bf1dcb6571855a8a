//! Sliding anti-replay window over 64-bit sequence numbers, in the style of RFC 6479
//! ("IPsec Anti-Replay Algorithm without Bit Shifting"): a ring of 64-bit blocks indexed by
//! `seq / 64`, so advancing the window clears whole blocks instead of shifting a bitmap.
//! Used by WireGuard transport counters and by ESP (after ESN reconstruction).

/// Bits per block of the ring (RFC 6479 §2 uses machine words).
const BLOCK_BITS: u64 = 64;

/// Outcome of checking a sequence number against the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayError {
    /// Seen before inside the window.
    Replayed,
    /// Older than the window's left edge: cannot be told from a replay.
    TooOld,
}

/// An anti-replay window of `blocks * 64 - 64` usable positions (one block is kept as the
/// partially filled head, as in RFC 6479).
#[derive(Clone)]
pub struct ReplayWindow {
    ring: Box<[u64]>,
    /// Highest sequence number accepted so far (`None` before the first).
    top: Option<u64>,
    size: u64,
}

impl std::fmt::Debug for ReplayWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayWindow")
            .field("top", &self.top)
            .field("size", &self.size)
            .finish()
    }
}

impl ReplayWindow {
    /// A window that accepts any packet at most `size` positions behind the highest seen.
    /// `size` is rounded up to a multiple of 64.
    pub fn new(size: u64) -> ReplayWindow {
        let blocks = size.div_ceil(BLOCK_BITS).max(1) + 1;
        ReplayWindow {
            ring: vec![0u64; blocks as usize].into_boxed_slice(),
            top: None,
            size: (blocks - 1) * BLOCK_BITS,
        }
    }

    /// The number of positions behind the top that are still tracked.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Highest accepted sequence number.
    pub fn top(&self) -> Option<u64> {
        self.top
    }

    /// Checks `seq` without recording it: run this before authenticating a packet, then
    /// [`ReplayWindow::update`] after the ICV/tag verified, so forged packets cannot move the window.
    pub fn check(&self, seq: u64) -> Result<(), ReplayError> {
        let Some(top) = self.top else { return Ok(()) };
        if seq > top {
            return Ok(());
        }
        if top - seq >= self.size {
            return Err(ReplayError::TooOld);
        }
        let (idx, bit) = self.pos(seq);
        if self.ring[idx] & bit != 0 {
            Err(ReplayError::Replayed)
        } else {
            Ok(())
        }
    }

    /// Records an authenticated `seq`; returns the same verdict as [`ReplayWindow::check`].
    pub fn update(&mut self, seq: u64) -> Result<(), ReplayError> {
        self.check(seq)?;
        let n = self.ring.len() as u64;
        match self.top {
            Some(top) if seq <= top => {}
            Some(top) => {
                // Clear every block that the new top skips over (at most the whole ring).
                let old_block = top / BLOCK_BITS;
                let new_block = seq / BLOCK_BITS;
                let steps = (new_block - old_block).min(n);
                for i in 1..=steps {
                    self.ring[((old_block + i) % n) as usize] = 0;
                }
                self.top = Some(seq);
            }
            None => {
                self.top = Some(seq);
            }
        }
        let (idx, bit) = self.pos(seq);
        self.ring[idx] |= bit;
        Ok(())
    }

    fn pos(&self, seq: u64) -> (usize, u64) {
        let n = self.ring.len() as u64;
        (
            ((seq / BLOCK_BITS) % n) as usize,
            1u64 << (seq % BLOCK_BITS),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_in_order_and_rejects_duplicates() {
        let mut w = ReplayWindow::new(2048);
        for s in 0..5000 {
            assert_eq!(w.update(s), Ok(()));
        }
        assert_eq!(w.update(4999), Err(ReplayError::Replayed));
        assert_eq!(w.update(4000), Err(ReplayError::Replayed));
        assert_eq!(w.update(0), Err(ReplayError::TooOld));
    }

    #[test]
    fn reordering_inside_window() {
        let mut w = ReplayWindow::new(2048);
        assert_eq!(w.update(3000), Ok(()));
        assert_eq!(w.update(1000), Ok(()));
        assert_eq!(w.update(1000), Err(ReplayError::Replayed));
        assert_eq!(w.update(3000 - w.size()), Err(ReplayError::TooOld));
        assert_eq!(w.update(3000 - w.size() + 1), Ok(()));
        assert_eq!(w.update(2999), Ok(()));
    }

    #[test]
    fn big_jump_clears_ring() {
        let mut w = ReplayWindow::new(128);
        for s in 0..100 {
            w.update(s).unwrap();
        }
        w.update(1_000_000).unwrap();
        // positions that alias old bits in the ring must read as unseen
        for s in (1_000_000 - w.size() + 1)..1_000_000 {
            assert_eq!(w.check(s), Ok(()), "seq {s}");
        }
    }

    #[test]
    fn check_does_not_record() {
        let mut w = ReplayWindow::new(64);
        assert_eq!(w.check(5), Ok(()));
        assert_eq!(w.check(5), Ok(()));
        w.update(5).unwrap();
        assert_eq!(w.check(5), Err(ReplayError::Replayed));
    }

    #[test]
    fn matches_naive_model() {
        // Differential test against a set-based model with a deterministic pseudo-random walk.
        let mut w = ReplayWindow::new(256);
        let mut seen = std::collections::HashSet::new();
        let mut top: Option<u64> = None;
        let mut x: u64 = 0x9e3779b97f4a7c15;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let base = top.unwrap_or(0);
            let seq = (base + (x % 600)).saturating_sub(400);
            let expect = match top {
                Some(t) if seq <= t && t - seq >= w.size() => Err(ReplayError::TooOld),
                _ if seen.contains(&seq) => Err(ReplayError::Replayed),
                _ => Ok(()),
            };
            assert_eq!(w.update(seq), expect, "seq {seq} top {top:?}");
            if expect.is_ok() {
                seen.insert(seq);
                top = Some(top.map_or(seq, |t| t.max(seq)));
            }
        }
    }
}
