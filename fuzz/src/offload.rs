//! The offload parsers: a read from a TUN with `IFF_VNET_HDR` (virtio header, then a packet
//! or a TSO/USO super-packet: `VirtioNetHdr::decode`, `tso::segment_count`, `tso::split`,
//! `tso::complete_checksum`) and a batch of decrypted packets on its way to TUN
//! (`gro::Coalescer::coalesce`).
//!
//! The first input byte picks the path: even, the rest is one TUN read; odd, the rest is a
//! batch of packets, each preceded by its length (2 bytes, big-endian). A coalesced packet
//! must split again into valid segments, as the kernel would segment it.

use cvlan_dataplane::offload::gro::Coalescer;
use cvlan_dataplane::offload::tso;
use cvlan_dataplane::offload::virtio::{VirtioNetHdr, VIRTIO_NET_HDR_LEN};

/// Headroom in front of every packet, as the worker leaves for tunnel headers.
const OFFSET: usize = 64;
/// Room a coalesced packet may grow into (the worker's buffers hold 64 KiB).
const TAILROOM: usize = 4096;
/// More segments than this are refused by the worker's batch anyway.
const MAX_SEGMENTS: usize = 64;

pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        tun_read(rest);
    } else {
        to_tun(rest);
    }
}

fn tun_read(read: &[u8]) {
    let Ok(hdr) = VirtioNetHdr::decode(read) else {
        return;
    };
    let pkt = &read[VIRTIO_NET_HDR_LEN..];
    let _ = tso::complete_checksum(&hdr, &mut pkt.to_vec());
    let _ = split(&hdr, pkt);
}

/// Splits `pkt` into fresh buffers; the segments, or `None` if `split` refused it.
fn split(hdr: &VirtioNetHdr, pkt: &[u8]) -> Option<Vec<Vec<u8>>> {
    let n = tso::segment_count(hdr, pkt).ok()?;
    if n == 0 || n > MAX_SEGMENTS {
        return None;
    }
    let mut out = vec![vec![0u8; OFFSET + pkt.len()]; n];
    let mut sizes = vec![0usize; n];
    let k = tso::split(hdr, pkt, &mut out, &mut sizes, OFFSET).ok()?;
    assert_eq!(k, n, "split produced the segments it counted");
    Some(
        out.iter()
            .zip(&sizes)
            .map(|(b, &s)| {
                assert!(s <= b.len() - OFFSET, "segment within its buffer");
                b[OFFSET..OFFSET + s].to_vec()
            })
            .collect(),
    )
}

fn to_tun(mut batch: &[u8]) {
    let mut bufs: Vec<Vec<u8>> = Vec::new();
    let mut lens = Vec::new();
    while let Some((len, rest)) = batch.split_first_chunk::<2>() {
        let len = usize::from(u16::from_be_bytes(*len)).min(rest.len());
        let mut b = vec![0u8; OFFSET + len + TAILROOM];
        b[OFFSET..OFFSET + len].copy_from_slice(&rest[..len]);
        bufs.push(b);
        lens.push(len);
        batch = &rest[len..];
    }
    if bufs.is_empty() {
        return;
    }
    let mut writes = Vec::new();
    Coalescer::new().coalesce(&mut bufs, &mut lens, OFFSET, &mut writes);
    for &i in &writes {
        let b = &bufs[i];
        assert!(
            OFFSET + lens[i] <= b.len(),
            "coalesced packet within its buffer"
        );
        let hdr = VirtioNetHdr::decode(&b[OFFSET - VIRTIO_NET_HDR_LEN..]).expect("header");
        let pkt = &b[OFFSET..OFFSET + lens[i]];
        if hdr.gso_type != 0 {
            assert!(
                split(&hdr, pkt).is_some(),
                "a coalesced packet splits again: {hdr:?}"
            );
        }
    }
}
