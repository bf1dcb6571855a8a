//! TAI64N timestamps (§5.4.2): 8-byte big-endian seconds offset by 2^62, 4-byte big-endian
//! nanoseconds. Responders keep the greatest one seen per peer and refuse initiations that do
//! not exceed it, which defeats replayed initiations.

/// §5.4.2 via the TAI64 format: label 2^62 marks seconds since 1970 TAI.
const TAI64_BASE: u64 = 1 << 62;
/// TAI is ahead of UTC by 10 s at the epoch of the format (the leap seconds after it do not
/// matter here: only monotonicity does).
const TAI_OFFSET: u64 = 10;

pub type Tai64n = [u8; 12];

/// Encodes wall-clock time given as seconds and nanoseconds since the Unix epoch. The
/// nanoseconds are rounded down to a multiple of 2^24 (~16.8 ms), as deployed peers do, so the
/// timestamp leaks less about the host's clock.
pub fn encode(unix_secs: u64, nanos: u32) -> Tai64n {
    let mut t = [0u8; 12];
    t[..8].copy_from_slice(&(TAI64_BASE + unix_secs + TAI_OFFSET).to_be_bytes());
    t[8..].copy_from_slice(&(nanos & !0x00ff_ffff).to_be_bytes());
    t
}

/// Whether `a` is strictly later than `b` (big-endian byte order is chronological order).
pub fn after(a: &Tai64n, b: &Tai64n) -> bool {
    a > b
}
