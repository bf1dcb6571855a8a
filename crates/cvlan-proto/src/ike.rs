//! The IKE header (RFC 7296 section 3.1), only as far as the data plane needs it before it hands
//! a datagram to charon: is it an IKE message at all, and is it the first message of a new
//! IKE_SA (which costs charon a Diffie-Hellman and is what a flood sends)?

/// Fixed header length (RFC 7296 section 3.1).
pub const HEADER_LEN: usize = 28;
/// Exchange type IKE_SA_INIT (RFC 7296 section 3.1).
pub const IKE_SA_INIT: u8 = 34;
/// Flags: the message is a response (R, bit 5).
const FLAG_RESPONSE: u8 = 0x20;

/// Why a datagram is not an IKE message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IkeError {
    /// Shorter than the fixed header.
    Truncated,
    /// Major version neither 2 (IKEv2) nor 1 (IKEv1: charon answers it).
    BadVersion,
    /// The header's length field differs from the datagram's length.
    BadLength,
    /// The initiator's SPI is zero, which RFC 7296 section 3.1 forbids.
    ZeroSpi,
}

/// What the data plane learns from a valid header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IkeHeader {
    pub initiator_spi: u64,
    pub responder_spi: u64,
    pub exchange: u8,
    pub response: bool,
}

impl IkeHeader {
    /// The first message of a new IKE_SA: an IKE_SA_INIT request, responder SPI still zero.
    pub fn is_sa_init_request(&self) -> bool {
        self.exchange == IKE_SA_INIT && !self.response && self.responder_spi == 0
    }
}

/// Checks the fixed header of an IKE message (without the non-ESP marker of port 4500).
pub fn parse(d: &[u8]) -> Result<IkeHeader, IkeError> {
    if d.len() < HEADER_LEN {
        return Err(IkeError::Truncated);
    }
    if !matches!(d[17] >> 4, 1 | 2) {
        return Err(IkeError::BadVersion);
    }
    let len = u32::from_be_bytes([d[24], d[25], d[26], d[27]]);
    if usize::try_from(len).ok() != Some(d.len()) {
        return Err(IkeError::BadLength);
    }
    let spi = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&d[at..at + 8]);
        u64::from_be_bytes(b)
    };
    let initiator_spi = spi(0);
    if initiator_spi == 0 {
        return Err(IkeError::ZeroSpi);
    }
    Ok(IkeHeader {
        initiator_spi,
        responder_spi: spi(8),
        exchange: d[18],
        response: d[19] & FLAG_RESPONSE != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(len: usize, exchange: u8, flags: u8, spi_r: u64) -> Vec<u8> {
        let mut d = vec![0u8; len];
        d[..8].copy_from_slice(&0x1122_3344_5566_7788u64.to_be_bytes());
        d[8..16].copy_from_slice(&spi_r.to_be_bytes());
        d[16] = 33; // SA
        d[17] = 0x20;
        d[18] = exchange;
        d[19] = flags;
        d[24..28].copy_from_slice(&(len as u32).to_be_bytes());
        d
    }

    #[test]
    fn sa_init_requests_are_told_apart() {
        let init = parse(&header(300, IKE_SA_INIT, 0x08, 0)).unwrap();
        assert!(init.is_sa_init_request());
        assert_eq!(init.initiator_spi, 0x1122_3344_5566_7788);
        // The responder's answer, and any later exchange, are not new IKE_SAs.
        assert!(!parse(&header(300, IKE_SA_INIT, 0x20, 7))
            .unwrap()
            .is_sa_init_request());
        assert!(!parse(&header(80, 35, 0x08, 7))
            .unwrap()
            .is_sa_init_request());
    }

    #[test]
    fn junk_is_refused_with_its_reason() {
        assert_eq!(parse(&[0u8; 27]), Err(IkeError::Truncated));
        let mut v3 = header(100, IKE_SA_INIT, 0x08, 0);
        v3[17] = 0x30;
        assert_eq!(parse(&v3), Err(IkeError::BadVersion));
        let mut short = header(100, IKE_SA_INIT, 0x08, 0);
        short.truncate(99);
        assert_eq!(parse(&short), Err(IkeError::BadLength));
        let mut zero = header(100, IKE_SA_INIT, 0x08, 0);
        zero[..8].fill(0);
        assert_eq!(parse(&zero), Err(IkeError::ZeroSpi));
        assert_eq!(parse(&[0x41u8; 1200]), Err(IkeError::BadVersion));
        let mut v1 = header(100, 2, 0, 0);
        v1[17] = 0x10;
        assert!(parse(&v1).is_ok(), "IKEv1 goes to charon, which answers it");
    }
}
