//! Test helpers shared by the offload tests: an obviously correct checksum, a tiny seeded
//! generator, and hex decoding for the reference packets in `testdata/`.

/// RFC 1071 straight from the text: add big-endian 16-bit words into a wide accumulator,
/// pad an odd byte with zero, fold the carries. Deliberately naive.
pub fn reference_sum(data: &[u8], initial: u16) -> u16 {
    let mut acc: u64 = initial as u64;
    let mut i = 0;
    while i + 1 < data.len() {
        acc += ((data[i] as u64) << 8) | data[i + 1] as u64;
        i += 2;
    }
    if i < data.len() {
        acc += (data[i] as u64) << 8;
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Numerical Recipes' 32-bit LCG: deterministic test data without a dependency.
pub struct Lcg(pub u32);

impl Lcg {
    pub fn next(&mut self) -> u32 {
        self.0 = self.0.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        self.0
    }
    pub fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b = (self.next() >> 24) as u8;
        }
    }
}

pub fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Named hex records from a `testdata/*.hex` file: lines `name hex`; `#` starts a comment.
pub fn records(text: &str) -> Vec<(String, Vec<u8>)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (name, hex) = l.split_once(' ').unwrap();
            (name.to_string(), unhex(hex))
        })
        .collect()
}

pub fn record<'a>(recs: &'a [(String, Vec<u8>)], name: &str) -> &'a [u8] {
    &recs
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no record {name}"))
        .1
}
