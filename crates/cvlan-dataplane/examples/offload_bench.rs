//! Micro-benchmark of the offload building blocks: checksum of 1500 bytes (against a naive
//! 16-bit-at-a-time loop), splitting a 64 KB TCP super-packet into MSS-sized segments, and
//! coalescing them back. Run with `cargo run --release -p cvlan-dataplane --example
//! offload_bench`; figures go in docs/offload.md.

use cvlan_dataplane::offload::checksum::{checksum, pseudo_header_sum};
use cvlan_dataplane::offload::gro::Coalescer;
use cvlan_dataplane::offload::tso::split;
use cvlan_dataplane::offload::virtio::{GsoType, VirtioNetHdr, F_NEEDS_CSUM};
use std::hint::black_box;
use std::time::Instant;

fn naive(data: &[u8]) -> u16 {
    let mut acc: u32 = 0;
    for c in data.chunks(2) {
        acc += (c[0] as u32) << 8 | *c.get(1).unwrap_or(&0) as u32;
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// Best of 5 runs of `iters` calls, in ns per call.
fn time(iters: u32, mut f: impl FnMut()) -> f64 {
    (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            t.elapsed().as_nanos() as f64 / iters as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let data: Vec<u8> = (0..1500u32).map(|i| (i * 7 + 3) as u8).collect();
    assert_eq!(checksum(&data, 0), naive(&data));
    let fast = time(200_000, || {
        black_box(checksum(black_box(&data), 0));
    });
    let slow = time(200_000, || {
        black_box(naive(black_box(&data)));
    });
    println!(
        "checksum 1500 B: {fast:.0} ns ({:.1} Gbit/s); naive 16-bit loop {slow:.0} ns",
        1500.0 * 8.0 / fast
    );

    // A 64 KB IPv4 TCP super-packet with timestamps (52 bytes of headers), MSS 1448.
    let mss = 1448usize;
    let payload = 65535 - 52;
    let mut sup = vec![0u8; 52 + payload];
    sup[..20].copy_from_slice(&[
        0x45, 0, 0xff, 0xff, 0, 1, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ]);
    sup[20..34].copy_from_slice(&[0x9c, 0x40, 1, 0xbb, 0, 0, 0, 1, 0, 0, 0, 1, 0x80, 0x18]);
    sup[34..36].copy_from_slice(&[0x01, 0xf5]);
    sup[40..52].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
    for (i, b) in sup[52..].iter_mut().enumerate() {
        *b = (i * 13) as u8;
    }
    let ph = pseudo_header_sum(&sup, 6, sup.len() - 20).unwrap();
    sup[36..38].copy_from_slice(&ph.to_be_bytes());
    let hdr = VirtioNetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: GsoType::TcpV4.to_raw(),
        hdr_len: 52,
        gso_size: mss as u16,
        csum_start: 20,
        csum_offset: 16,
    };
    const OFF: usize = 64;
    let mut out = vec![vec![0u8; OFF + 65536 + 64]; 64];
    let mut sizes = [0usize; 64];
    let n = split(&hdr, &sup, &mut out, &mut sizes, OFF).unwrap();
    let t_split = time(2_000, || {
        black_box(split(&hdr, black_box(&sup), &mut out, &mut sizes, OFF).unwrap());
    });
    println!(
        "split 64 KB super-packet into {n} segments: {:.1} µs ({:.0} ns/segment, {:.1} Gbit/s)",
        t_split / 1000.0,
        t_split / n as f64,
        sup.len() as f64 * 8.0 / t_split
    );

    // Coalesce the segments back (the copy into out[] is part of the measured loop, as in a
    // worker that decrypts into its buffers first).
    let segs: Vec<Vec<u8>> = (0..n)
        .map(|i| out[i][OFF..OFF + sizes[i]].to_vec())
        .collect();
    let mut lens = vec![0usize; n];
    let mut writes = Vec::new();
    let mut gro = Coalescer::new();
    let mut bufs = out;
    bufs.truncate(n);
    let t_gro = time(2_000, || {
        for (i, s) in segs.iter().enumerate() {
            bufs[i][OFF..OFF + s.len()].copy_from_slice(s);
            lens[i] = s.len();
        }
        gro.coalesce(&mut bufs, &mut lens, OFF, &mut writes);
        black_box(&writes);
    });
    assert_eq!(writes.len(), 1);
    println!(
        "coalesce {n} segments into 1 write: {:.1} µs ({:.0} ns/segment, incl. copying them in)",
        t_gro / 1000.0,
        t_gro / n as f64
    );
}
