//! Which packets a trace keeps, evaluated on the workers. Each condition may hold at a
//! different stage (the tenant is known after decapsulation, the peer at its lookup, the
//! tunnel's SPI at the ESP header); a packet is kept when every condition held at some stage.

use cvlan_proto::ip::Prefix;
use std::net::IpAddr;

pub(crate) const TENANT: u8 = 1;
pub(crate) const PEER: u8 = 2;
pub(crate) const TUNNEL: u8 = 4;
pub(crate) const PREFIX: u8 = 8;

/// The conditions of a trace; none = every packet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// The packet's tenant tag.
    pub tenant: Option<u32>,
    /// A WireGuard peer's public key (the peer chosen by the receiver index or allowed IPs).
    pub peer: Option<[u8; 32]>,
    /// SPIs of an IPsec tunnel's SAs (either direction).
    pub spis: Option<Vec<u32>>,
    /// The inner source or destination address.
    pub prefix: Option<Prefix>,
}

impl Filter {
    /// The condition bits a packet must collect to be kept.
    pub(crate) fn required(&self) -> u8 {
        let mut m = 0;
        if self.tenant.is_some() {
            m |= TENANT;
        }
        if self.peer.is_some() {
            m |= PEER;
        }
        if self.spis.is_some() {
            m |= TUNNEL;
        }
        if self.prefix.is_some() {
            m |= PREFIX;
        }
        m
    }

    pub(crate) fn tenant(&self, tag: u32) -> u8 {
        if self.tenant == Some(tag) {
            TENANT
        } else {
            0
        }
    }

    pub(crate) fn spi(&self, spi: u32) -> u8 {
        match &self.spis {
            Some(s) if s.contains(&spi) => TUNNEL,
            _ => 0,
        }
    }

    pub(crate) fn inner(&self, src: IpAddr, dst: IpAddr) -> u8 {
        match &self.prefix {
            Some(p) if p.contains(src) || p.contains(dst) => PREFIX,
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_condition_sets_its_own_bit_only_on_a_match() {
        let f = Filter {
            tenant: Some(7),
            peer: None,
            spis: Some(vec![0xc000_0001]),
            prefix: Some("10.1.0.0/16".parse().unwrap()),
        };
        assert_eq!(f.required(), TENANT | TUNNEL | PREFIX);
        assert_eq!(f.tenant(7), TENANT);
        assert_eq!(f.tenant(8), 0);
        assert_eq!(f.spi(0xc000_0001), TUNNEL);
        assert_eq!(f.spi(0xc000_0002), 0);
        let (a, b, c) = (
            "10.1.2.3".parse().unwrap(),
            "10.2.0.1".parse().unwrap(),
            "192.0.2.1".parse().unwrap(),
        );
        assert_eq!(f.inner(a, c), PREFIX, "source inside");
        assert_eq!(f.inner(c, a), PREFIX, "destination inside");
        assert_eq!(f.inner(b, c), 0);
        assert_eq!(
            Filter::default().required(),
            0,
            "no filter keeps every packet"
        );
    }
}
