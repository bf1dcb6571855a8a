//! Allowed IPs (§3 "Cryptokey Routing"): a longest-prefix-match table from IP prefixes to peers,
//! used in both directions — to pick the peer an outgoing packet is encrypted to, and to check
//! that a decrypted packet's source belongs to the peer it came from.
//!
//! A binary trie per address family (an arena of nodes, one level per bit). Each prefix has at
//! most one owner: inserting a prefix another peer holds moves it, as WireGuard does.

use crate::ip::Prefix;
use std::net::IpAddr;

#[derive(Clone)]
struct Node<V> {
    child: [u32; 2],
    value: Option<V>,
}

const NONE: u32 = u32::MAX;

#[derive(Clone)]
struct Trie<V> {
    nodes: Vec<Node<V>>,
    free: Vec<u32>,
    width: u8,
}

fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)) << 96,
        IpAddr::V6(a) => u128::from(a),
    }
}

fn bit(v: u128, i: u8) -> usize {
    ((v >> (127 - i)) & 1) as usize
}

impl<V: Copy + PartialEq> Trie<V> {
    fn new(width: u8) -> Trie<V> {
        Trie {
            nodes: vec![Node {
                child: [NONE, NONE],
                value: None,
            }],
            free: Vec::new(),
            width,
        }
    }

    fn alloc(&mut self) -> u32 {
        let n = Node {
            child: [NONE, NONE],
            value: None,
        };
        match self.free.pop() {
            Some(i) => {
                self.nodes[i as usize] = n;
                i
            }
            None => {
                self.nodes.push(n);
                (self.nodes.len() - 1) as u32
            }
        }
    }

    fn insert(&mut self, addr: u128, len: u8, v: V) -> Option<V> {
        let mut n = 0u32;
        for i in 0..len {
            let b = bit(addr, i);
            let c = self.nodes[n as usize].child[b];
            n = if c == NONE {
                let c = self.alloc();
                self.nodes[n as usize].child[b] = c;
                c
            } else {
                c
            };
        }
        self.nodes[n as usize].value.replace(v)
    }

    /// The longest prefix holding `addr`: its owner and length.
    fn lookup(&self, addr: u128) -> Option<(V, u8)> {
        let mut n = 0u32;
        let mut best = self.nodes[0].value.map(|v| (v, 0));
        for i in 0..self.width {
            let c = self.nodes[n as usize].child[bit(addr, i)];
            if c == NONE {
                break;
            }
            n = c;
            if let Some(v) = self.nodes[n as usize].value {
                best = Some((v, i + 1));
            }
        }
        best
    }

    fn get_exact(&self, addr: u128, len: u8) -> Option<V> {
        let mut n = 0u32;
        for i in 0..len {
            let c = self.nodes[n as usize].child[bit(addr, i)];
            if c == NONE {
                return None;
            }
            n = c;
        }
        self.nodes[n as usize].value
    }

    /// Removes the values `f` selects; prunes empty branches.
    fn retain(&mut self, f: &mut impl FnMut(u128, u8, V) -> bool) {
        self.retain_at(0, 0, 0, f);
    }

    fn retain_at(
        &mut self,
        n: u32,
        prefix: u128,
        depth: u8,
        f: &mut impl FnMut(u128, u8, V) -> bool,
    ) -> bool {
        if let Some(v) = self.nodes[n as usize].value {
            if !f(prefix, depth, v) {
                self.nodes[n as usize].value = None;
            }
        }
        for b in 0..2 {
            let c = self.nodes[n as usize].child[b];
            if c != NONE {
                let p = prefix | ((b as u128) << (127 - depth));
                if self.retain_at(c, p, depth + 1, f) {
                    self.nodes[n as usize].child[b] = NONE;
                    self.free.push(c);
                }
            }
        }
        let node = &self.nodes[n as usize];
        n != 0 && node.value.is_none() && node.child == [NONE, NONE]
    }

    fn walk(&self, n: u32, prefix: u128, depth: u8, out: &mut Vec<(u128, u8, V)>) {
        if let Some(v) = self.nodes[n as usize].value {
            out.push((prefix, depth, v));
        }
        for b in 0..2 {
            let c = self.nodes[n as usize].child[b];
            if c != NONE {
                self.walk(c, prefix | ((b as u128) << (127 - depth)), depth + 1, out);
            }
        }
    }
}

/// The table; `V` is the caller's peer handle.
#[derive(Clone)]
pub struct AllowedIps<V> {
    v4: Trie<V>,
    v6: Trie<V>,
}

impl<V: Copy + PartialEq> Default for AllowedIps<V> {
    fn default() -> Self {
        AllowedIps {
            v4: Trie::new(32),
            v6: Trie::new(128),
        }
    }
}

fn to_prefix(v: u128, len: u8, v4: bool) -> Prefix {
    let ip = if v4 {
        IpAddr::V4(((v >> 96) as u32).into())
    } else {
        IpAddr::V6(v.into())
    };
    Prefix::new(ip, len).expect("length within the family")
}

impl<V: Copy + PartialEq> AllowedIps<V> {
    fn trie(&mut self, p: &Prefix) -> &mut Trie<V> {
        if p.addr().is_ipv4() {
            &mut self.v4
        } else {
            &mut self.v6
        }
    }

    /// Gives `prefix` to `v`; returns the previous owner, if any.
    pub fn insert(&mut self, prefix: Prefix, v: V) -> Option<V> {
        let a = bits(prefix.addr());
        self.trie(&prefix).insert(a, prefix.len(), v)
    }

    /// The owner of the longest prefix containing `ip`.
    pub fn lookup(&self, ip: IpAddr) -> Option<V> {
        self.lookup_len(ip).map(|(v, _)| v)
    }

    /// The owner of the longest prefix containing `ip`, and that prefix's length.
    pub fn lookup_len(&self, ip: IpAddr) -> Option<(V, u8)> {
        match ip {
            IpAddr::V4(_) => self.v4.lookup(bits(ip)),
            IpAddr::V6(_) => self.v6.lookup(bits(ip)),
        }
    }

    /// The owner of exactly `prefix`.
    pub fn get(&self, prefix: &Prefix) -> Option<V> {
        let a = bits(prefix.addr());
        if prefix.addr().is_ipv4() {
            self.v4.get_exact(a, prefix.len())
        } else {
            self.v6.get_exact(a, prefix.len())
        }
    }

    /// Removes every prefix of `v`.
    pub fn remove_owner(&mut self, v: V) {
        self.v4.retain(&mut |_, _, x| x != v);
        self.v6.retain(&mut |_, _, x| x != v);
    }

    /// Removes `prefix` if `v` owns it.
    pub fn remove(&mut self, prefix: &Prefix, v: V) {
        let (a, l) = (bits(prefix.addr()), prefix.len());
        self.trie(prefix)
            .retain(&mut |p, d, x| !(p == a && d == l && x == v));
    }

    /// Every prefix with its owner, IPv4 first, each family in address order: one walk of the
    /// table, where [`AllowedIps::prefixes_of`] for each of N owners would be N walks.
    pub fn entries(&self) -> Vec<(Prefix, V)> {
        let mut out = Vec::new();
        for (t, is4) in [(&self.v4, true), (&self.v6, false)] {
            let mut all = Vec::new();
            t.walk(0, 0, 0, &mut all);
            out.extend(all.into_iter().map(|(p, l, x)| (to_prefix(p, l, is4), x)));
        }
        out
    }

    /// Prefixes of `v`, IPv4 first, each family in address order.
    pub fn prefixes_of(&self, v: V) -> Vec<Prefix> {
        let mut out = Vec::new();
        for (t, is4) in [(&self.v4, true), (&self.v6, false)] {
            let mut all = Vec::new();
            t.walk(0, 0, 0, &mut all);
            out.extend(
                all.into_iter()
                    .filter(|(_, _, x)| *x == v)
                    .map(|(p, l, _)| to_prefix(p, l, is4)),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn entries_are_every_owners_prefixes_in_one_walk() {
        let mut t = AllowedIps::default();
        t.insert("10.1.0.0/16".parse().unwrap(), 2);
        t.insert("10.0.0.0/8".parse().unwrap(), 1);
        t.insert("fd00::/64".parse().unwrap(), 1);
        t.insert("192.168.0.0/24".parse().unwrap(), 2);
        let e = t.entries();
        for owner in [1, 2] {
            let mine: Vec<Prefix> = e
                .iter()
                .filter(|(_, v)| *v == owner)
                .map(|(p, _)| *p)
                .collect();
            assert_eq!(mine, t.prefixes_of(owner));
        }
        assert_eq!(e.len(), 4);
    }

    #[test]
    fn longest_prefix_wins_and_moves() {
        let mut t = AllowedIps::default();
        t.insert("10.0.0.0/8".parse().unwrap(), 1);
        t.insert("10.1.0.0/16".parse().unwrap(), 2);
        t.insert("::/0".parse().unwrap(), 3);
        assert_eq!(t.lookup("10.1.2.3".parse().unwrap()), Some(2));
        assert_eq!(t.lookup_len("10.1.2.3".parse().unwrap()), Some((2, 16)));
        assert_eq!(t.lookup_len("fd00::1".parse().unwrap()), Some((3, 0)));
        assert_eq!(t.lookup("10.2.2.3".parse().unwrap()), Some(1));
        assert_eq!(t.lookup("11.0.0.1".parse().unwrap()), None);
        assert_eq!(t.lookup("fd00::1".parse().unwrap()), Some(3));
        assert_eq!(
            t.insert("10.1.0.0/16".parse().unwrap(), 1),
            Some(2),
            "a prefix moves to its new owner"
        );
        assert_eq!(t.lookup("10.1.2.3".parse().unwrap()), Some(1));
        t.remove_owner(1);
        assert_eq!(t.lookup("10.1.2.3".parse().unwrap()), None);
        assert_eq!(t.prefixes_of(3), vec!["::/0".parse().unwrap()]);
        t.insert("0.0.0.0/0".parse().unwrap(), 4);
        assert_eq!(t.lookup("1.2.3.4".parse().unwrap()), Some(4));
        t.remove(&"0.0.0.0/0".parse().unwrap(), 4);
        assert_eq!(t.lookup("1.2.3.4".parse().unwrap()), None);
    }

    #[test]
    fn matches_naive_list() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut t = AllowedIps::default();
        let mut naive: Vec<(Prefix, u32)> = Vec::new();
        for round in 0..3000 {
            let v6 = rng.gen_bool(0.3);
            let len = if v6 {
                rng.gen_range(0..=128)
            } else {
                rng.gen_range(0..=32)
            };
            // Cluster addresses so prefixes nest and collide.
            let ip: IpAddr = if v6 {
                IpAddr::V6(
                    ((0xfd00u128 << 112)
                        | u128::from(rng.gen::<u16>()) << 96
                        | u128::from(rng.gen::<u8>()))
                    .into(),
                )
            } else {
                IpAddr::V4((0x0a00_0000 | (rng.gen::<u32>() & 0x00ff_00ff)).into())
            };
            let p = Prefix::new(ip, len).unwrap();
            let owner = rng.gen_range(0..8u32);
            if round % 7 == 6 {
                t.remove_owner(owner);
                naive.retain(|(_, o)| *o != owner);
            } else {
                t.insert(p, owner);
                naive.retain(|(q, _)| *q != p);
                naive.push((p, owner));
            }
            for _ in 0..5 {
                let probe: IpAddr = if rng.gen_bool(0.5) {
                    IpAddr::V4((0x0a00_0000 | (rng.gen::<u32>() & 0x00ff_00ff)).into())
                } else {
                    IpAddr::V6(
                        ((0xfd00u128 << 112)
                            | u128::from(rng.gen::<u16>()) << 96
                            | u128::from(rng.gen::<u8>()))
                        .into(),
                    )
                };
                let want = naive
                    .iter()
                    .filter(|(q, _)| q.contains(probe))
                    .max_by_key(|(q, _)| q.len())
                    .map(|(_, o)| *o);
                assert_eq!(t.lookup(probe), want, "probe {probe}");
            }
        }
        for o in 0..8 {
            let mut a: Vec<String> = t.prefixes_of(o).iter().map(|p| p.to_string()).collect();
            let mut b: Vec<String> = naive
                .iter()
                .filter(|(_, x)| *x == o)
                .map(|(p, _)| p.to_string())
                .collect();
            a.sort();
            b.sort();
            assert_eq!(a, b);
        }
    }
}
