//! TUN offload switches (`linux/if_tun.h`): a queue opened with `IFF_VNET_HDR` prefixes every
//! packet with a [`virtio_net_hdr`](super::virtio), and `TUNSETOFFLOAD` tells the kernel which
//! super-packets the reader can take (TSO, USO) so it stops segmenting them itself.
//!
//! Wiring, for the owner of `tun.rs`: or [`tun_vnet_flags`] into the `TUNSETIFF` flags, call
//! [`set_vnet_hdr_size`] with [`VIRTIO_NET_HDR_LEN`](super::virtio::VIRTIO_NET_HDR_LEN), then
//! [`enable_tun_offload`]. From then on every read starts with a virtio header (split with
//! [`tso::split`](super::tso::split)) and every write must start with one (zero for a plain
//! packet, or from [`gro::Coalescer`](super::gro::Coalescer)).

use std::io;
use std::os::fd::RawFd;

/// `IFF_VNET_HDR`, for the `TUNSETIFF` flags.
pub const IFF_VNET_HDR: libc::c_short = 0x4000;
/// `_IOW('T', 208, unsigned int)`.
pub const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
/// `_IOR('T', 215, int)`.
pub const TUNGETVNETHDRSZ: libc::c_ulong = 0x8004_54d7;
/// `_IOW('T', 216, int)`.
pub const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8;

/// `TUNSETOFFLOAD` bits.
pub const TUN_F_CSUM: libc::c_uint = 0x01;
pub const TUN_F_TSO4: libc::c_uint = 0x02;
pub const TUN_F_TSO6: libc::c_uint = 0x04;
pub const TUN_F_TSO_ECN: libc::c_uint = 0x08;
/// Linux 6.2.
pub const TUN_F_USO4: libc::c_uint = 0x20;
pub const TUN_F_USO6: libc::c_uint = 0x40;

/// Flags to add to `IFF_TUN | IFF_NO_PI [| IFF_MULTI_QUEUE]` when opening a queue whose reads
/// and writes carry a virtio header.
pub fn tun_vnet_flags() -> libc::c_short {
    IFF_VNET_HDR
}

fn ioctl_int(fd: RawFd, req: libc::c_ulong, v: &mut libc::c_int) -> io::Result<()> {
    // SAFETY: v is a live int for the call; the request takes a pointer to int.
    if unsafe { libc::ioctl(fd, req, v as *mut libc::c_int) } < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `TUNSETVNETHDRSZ`: the size of the header in front of every packet (10, or 12 with
/// `num_buffers`). The kernel's default is 10.
pub fn set_vnet_hdr_size(fd: RawFd, size: usize) -> io::Result<()> {
    ioctl_int(fd, TUNSETVNETHDRSZ, &mut (size as libc::c_int))
}

/// `TUNGETVNETHDRSZ`.
pub fn vnet_hdr_size(fd: RawFd) -> io::Result<usize> {
    let mut v = 0;
    ioctl_int(fd, TUNGETVNETHDRSZ, &mut v)?;
    Ok(v as usize)
}

/// The offloads a TUN queue has on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TunOffload {
    /// Raw `TUN_F_*` bits accepted by the kernel.
    pub flags: libc::c_uint,
}

impl TunOffload {
    /// Partial checksums (`NEEDS_CSUM`) may be read and written.
    pub fn csum(&self) -> bool {
        self.flags & TUN_F_CSUM != 0
    }
    /// TCP super-packets (v4 and v6).
    pub fn tso(&self) -> bool {
        self.flags & (TUN_F_TSO4 | TUN_F_TSO6) == TUN_F_TSO4 | TUN_F_TSO6
    }
    /// UDP super-packets (v4 and v6).
    pub fn uso(&self) -> bool {
        self.flags & (TUN_F_USO4 | TUN_F_USO6) == TUN_F_USO4 | TUN_F_USO6
    }
}

fn set_offload(fd: RawFd, flags: libc::c_uint) -> io::Result<()> {
    // SAFETY: TUNSETOFFLOAD takes the flags as the ioctl argument itself, no memory.
    if unsafe { libc::ioctl(fd, TUNSETOFFLOAD, flags as libc::c_ulong) } < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Switches the richest offload set the kernel accepts on: checksum + TSO + USO (Linux ≥ 6.2),
/// else checksum + TSO. ECN-marked TSO (`TUN_F_TSO_ECN`) stays off: the kernel then segments
/// such rare packets itself. The queue must have been opened with `IFF_VNET_HDR`.
pub fn enable_tun_offload(fd: RawFd) -> io::Result<TunOffload> {
    let tso = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
    let mut last = None;
    for flags in [tso | TUN_F_USO4 | TUN_F_USO6, tso] {
        match set_offload(fd, flags) {
            Ok(()) => return Ok(TunOffload { flags }),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("TUNSETOFFLOAD")))
}

/// Turns every offload off again (reads are then plain packets behind a zero header).
pub fn disable_tun_offload(fd: RawFd) -> io::Result<()> {
    set_offload(fd, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_follow_the_ioc_encoding() {
        // _IOC(dir, type, nr, size) = dir << 30 | size << 16 | type << 8 | nr.
        let ioc =
            |dir: u64, nr: u64| (dir << 30 | 4 << 16 | (b'T' as u64) << 8 | nr) as libc::c_ulong;
        assert_eq!(TUNSETOFFLOAD, ioc(1, 208));
        assert_eq!(TUNGETVNETHDRSZ, ioc(2, 215));
        assert_eq!(TUNSETVNETHDRSZ, ioc(1, 216));
    }

    #[test]
    fn offload_predicates() {
        let o = TunOffload {
            flags: TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6,
        };
        assert!(o.csum() && o.tso() && !o.uso());
        assert!(TunOffload { flags: 0x67 }.uso());
    }
}
