//! What an IKE datagram must pass before it is queued for charon: it must be an IKE message
//! (`ike_malformed` otherwise: junk never costs charon a parse), and a new IKE_SA's first
//! message (IKE_SA_INIT request, which costs charon a Diffie-Hellman) is bounded per source
//! address (`ike_rate_limited`), so one flooding source cannot crowd out the others.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use cvlan_proto::ike;
use cvlan_proto::ratelimiter::RateLimiter;

/// IKE_SA_INITs per second and source: enough for a legacy router that (re)negotiates dozens
/// of tunnels at once (the burst) and retransmits, far below what a flood sends.
pub const SA_INITS_PER_SECOND: u32 = 20;
pub const SA_INIT_BURST: u32 = 64;
/// Sources tracked at once; a flood from more (spoofed) sources is refused beyond this.
pub const MAX_SOURCES: usize = 65_536;

/// Why a datagram was not handed to charon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Malformed,
    RateLimited,
}

pub struct IkeGate {
    sa_inits: Mutex<RateLimiter>,
}

impl Default for IkeGate {
    fn default() -> IkeGate {
        IkeGate {
            sa_inits: Mutex::new(RateLimiter::new(
                SA_INITS_PER_SECOND,
                SA_INIT_BURST,
                MAX_SOURCES,
            )),
        }
    }
}

impl IkeGate {
    /// `message` is the IKE message without the non-ESP marker; `now` is monotonic.
    pub fn admit(&self, src: IpAddr, message: &[u8], now: Duration) -> Result<(), Refused> {
        let header = ike::parse(message).map_err(|_| Refused::Malformed)?;
        if !header.is_sa_init_request() {
            return Ok(());
        }
        let mut limiter = self.sa_inits.lock().unwrap_or_else(|e| e.into_inner());
        if limiter.allow(src, now) {
            Ok(())
        } else {
            Err(Refused::RateLimited)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa_init(spi: u64) -> Vec<u8> {
        let mut d = vec![0u8; 300];
        d[..8].copy_from_slice(&spi.to_be_bytes());
        d[16] = 33;
        d[17] = 0x20;
        d[18] = ike::IKE_SA_INIT;
        d[19] = 0x08;
        d[24..28].copy_from_slice(&300u32.to_be_bytes());
        d
    }

    #[test]
    fn floods_are_bounded_per_source_and_junk_refused() {
        let gate = IkeGate::default();
        let (a, b) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let now = Duration::from_secs(5);
        let admitted = (1..=1000)
            .filter(|spi| gate.admit(a, &sa_init(*spi), now).is_ok())
            .count();
        assert_eq!(admitted, SA_INIT_BURST as usize);
        assert_eq!(
            gate.admit(a, &sa_init(9999), now),
            Err(Refused::RateLimited)
        );
        assert!(gate.admit(b, &sa_init(1), now).is_ok(), "another source");
        // Messages of established IKE_SAs are never limited.
        let mut auth = sa_init(1);
        auth[8] = 1;
        auth[18] = 35;
        assert!(gate.admit(a, &auth, now).is_ok());
        assert_eq!(gate.admit(a, &[0x41; 1200], now), Err(Refused::Malformed));
    }
}
