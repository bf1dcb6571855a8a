//! Outbound policy lookup (the SPD of RFC 4301 §4.4.1), per tenant and by selector.
//!
//! A policy is filed under the prefix that covers its destination range (the longest prefix
//! both ends share). A lookup probes one bucket per prefix length in use and scans only the
//! policies filed under the packet's destination at that length, so its cost follows the
//! number of distinct lengths and of policies sharing one destination prefix — not the number
//! of tunnels. Tagged packets (several tenants on one device) look in their tenant's own index.
//!
//! The order is the one charon's kernel interface expects: the smallest `rank` wins (the sizes
//! of both ranges, or charon's manual priority), then the earliest installation (`seq`); the
//! source range, protocol and destination port decide within a bucket.
//!
//! Buckets live in persistent maps (`imbl`): the table's copy-on-write snapshot shares every
//! bucket an install does not touch, so one install copies a path of the map and one bucket,
//! never the whole list.

use super::tables::OutPolicy;
use cvlan_proto::esp::SelectorRange;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;
use std::sync::Arc;

#[derive(Clone, Default)]
pub(super) struct PolicyIndex {
    /// Every policy: untagged packets (a device with one tenant) see them all.
    all: Lookup,
    /// Each tenant's tunnels' policies, by tenant tag.
    by_tenant: imbl::HashMap<u32, Lookup>,
}

#[derive(Clone, Default)]
struct Lookup {
    v4: Family,
    v6: Family,
}

#[derive(Clone, Default)]
struct Family {
    /// Keyed by the covering prefix of the destination range: (length, masked address).
    buckets: imbl::GenericHashMap<
        (u8, u128),
        Bucket,
        BuildHasherDefault<PrefixHasher>,
        imbl::shared_ptr::DefaultSharedPtr,
    >,
    /// Prefix lengths that have buckets, with how many: a lookup probes only these (at most
    /// 33 or 129, a handful in practice).
    lengths: BTreeMap<u8, u32>,
}

/// The policies filed under one prefix, best first.
type Bucket = Arc<[Arc<OutPolicy>]>;

/// A multiply-fold hash for prefix keys: the keys come from charon's configuration, not from
/// packets, so the per-packet probe need not pay for a keyed (SipHash) hash.
#[derive(Default)]
struct PrefixHasher(u64);

impl Hasher for PrefixHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn write_u8(&mut self, v: u8) {
        self.write_u64(u64::from(v));
    }

    fn write_u128(&mut self, v: u128) {
        self.write_u64(v as u64);
        self.write_u64((v >> 64) as u64);
    }

    fn finish(&self) -> u64 {
        // imbl takes the low bits first: fold the well-mixed high half down.
        self.0 ^ (self.0 >> 32)
    }
}

/// What a lookup examined: map probes and policies compared (for tests and benchmarks).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Probes {
    pub buckets: u32,
    pub policies: u32,
}

/// A packet's fields the policies match on.
pub(super) struct Key {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    /// Destination port where visible (TCP/UDP/SCTP, first fragment).
    pub port: Option<u16>,
}

fn order(p: &OutPolicy) -> (u128, u64) {
    (p.rank, p.seq)
}

/// An address as a number, with its family's width in bits.
fn bits(a: IpAddr) -> (u128, u8) {
    match a {
        IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
        IpAddr::V6(a) => (u128::from(a), 128),
    }
}

fn masked(addr: u128, len: u8, width: u8) -> u128 {
    match width - len {
        0 => addr,
        host if host >= 128 => 0,
        host => addr >> host << host,
    }
}

/// The longest prefix covering a range, as (length, masked address, is IPv6); `None` for a
/// range whose ends differ in family (it matches no packet).
fn cover(r: &SelectorRange) -> Option<(u8, u128, bool)> {
    let ((from, width), (to, w)) = (bits(r.from), bits(r.to));
    if width != w {
        return None;
    }
    let common = ((from ^ to).leading_zeros() - (128 - u32::from(width))) as u8;
    Some((common, masked(from, common, width), width == 128))
}

impl PolicyIndex {
    /// The index of `policies`, filed per tenant by `tenants` (if_id → tag).
    pub fn build<'a>(
        policies: impl Iterator<Item = &'a Arc<OutPolicy>>,
        tenants: &HashMap<u32, u32>,
    ) -> PolicyIndex {
        let mut index = PolicyIndex::default();
        for p in policies {
            index.insert(p, tenants.get(&p.if_id).copied());
        }
        index
    }

    pub fn insert(&mut self, p: &Arc<OutPolicy>, tenant: Option<u32>) {
        self.all.insert(p);
        if let Some(tag) = tenant {
            self.by_tenant.entry(tag).or_default().insert(p);
        }
    }

    /// Removes the entry of `p`'s policy id (as filed with `tenant`).
    pub fn remove(&mut self, p: &OutPolicy, tenant: Option<u32>) {
        self.all.remove(p);
        if let Some(tag) = tenant {
            if let Some(l) = self.by_tenant.get_mut(&tag) {
                l.remove(p);
                if l.v4.lengths.is_empty() && l.v6.lengths.is_empty() {
                    self.by_tenant.remove(&tag);
                }
            }
        }
    }

    /// The best policy covering a packet among tenant `tag`'s (0: every tenant's).
    pub fn select(&self, tag: u32, k: &Key, probes: &mut Probes) -> Option<&Arc<OutPolicy>> {
        let lookup = if tag == 0 {
            &self.all
        } else {
            self.by_tenant.get(&tag)?
        };
        let (addr, width) = bits(k.dst);
        let family = if width == 128 { &lookup.v6 } else { &lookup.v4 };
        let mut best: Option<&Arc<OutPolicy>> = None;
        for &len in family.lengths.keys() {
            probes.buckets += 1;
            let Some(bucket) = family.buckets.get(&(len, masked(addr, len, width))) else {
                continue;
            };
            for p in bucket.iter() {
                if best.is_some_and(|b| order(b) <= order(p)) {
                    break; // the rest of the bucket ranks lower still
                }
                probes.policies += 1;
                if p.src.matches(k.src, k.proto, None) && p.dst.matches(k.dst, k.proto, k.port) {
                    best = Some(p);
                    break;
                }
            }
        }
        best
    }
}

impl Lookup {
    fn family(&mut self, v6: bool) -> &mut Family {
        if v6 {
            &mut self.v6
        } else {
            &mut self.v4
        }
    }

    fn insert(&mut self, p: &Arc<OutPolicy>) {
        let Some((len, prefix, v6)) = cover(&p.dst) else {
            return;
        };
        let f = self.family(v6);
        let mut bucket: Vec<Arc<OutPolicy>> = match f.buckets.get(&(len, prefix)) {
            Some(b) => b.iter().filter(|x| x.id != p.id).cloned().collect(),
            None => {
                *f.lengths.entry(len).or_default() += 1;
                Vec::with_capacity(1)
            }
        };
        let at = bucket.partition_point(|x| order(x) <= order(p));
        bucket.insert(at, p.clone());
        f.buckets.insert((len, prefix), bucket.into());
    }

    fn remove(&mut self, p: &OutPolicy) {
        let Some((len, prefix, v6)) = cover(&p.dst) else {
            return;
        };
        let f = self.family(v6);
        let Some(b) = f.buckets.get(&(len, prefix)) else {
            return;
        };
        let rest: Vec<Arc<OutPolicy>> = b.iter().filter(|x| x.id != p.id).cloned().collect();
        if !rest.is_empty() {
            f.buckets.insert((len, prefix), rest.into());
            return;
        }
        f.buckets.remove(&(len, prefix));
        if let Some(n) = f.lengths.get_mut(&len) {
            *n -= 1;
            if *n == 0 {
                f.lengths.remove(&len);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(from: &str, to: &str) -> SelectorRange {
        SelectorRange {
            from: from.parse().unwrap(),
            to: to.parse().unwrap(),
            protocol: 0,
            from_port: 0,
            to_port: u16::MAX,
        }
    }

    #[test]
    fn covering_prefixes() {
        let c = |a: &str, b: &str| cover(&range(a, b));
        assert_eq!(c("10.1.2.0", "10.1.2.255"), Some((24, 0x0a01_0200, false)));
        assert_eq!(c("10.1.2.3", "10.1.2.3"), Some((32, 0x0a01_0203, false)));
        assert_eq!(c("10.0.0.0", "10.0.2.255"), Some((22, 0x0a00_0000, false)));
        assert_eq!(c("0.0.0.0", "255.255.255.255"), Some((0, 0, false)));
        assert_eq!(
            c("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            Some((0, 0, true))
        );
        assert_eq!(
            c("fd00::1", "fd00::1"),
            Some((
                128,
                u128::from("fd00::1".parse::<std::net::Ipv6Addr>().unwrap()),
                true
            ))
        );
        assert_eq!(c("10.0.0.0", "fd00::"), None);
    }
}
