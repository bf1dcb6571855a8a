//! Multi-queue TUN devices (`IFF_TUN | IFF_NO_PI | IFF_MULTI_QUEUE`): one queue per worker,
//! so each worker reads and writes its own file descriptor and the kernel spreads flows
//! across queues by hash. The device is not persistent: it disappears with its last queue.
//!
//! With offload on, queues are opened with `IFF_VNET_HDR`: every read and write starts with a
//! 10-byte `virtio_net_hdr`, and `TUNSETOFFLOAD` lets the kernel hand over TCP (and, from Linux
//! 6.2, UDP) super-packets of up to 64 KB instead of segmenting them first. Header and offload
//! flags belong to the device, so every queue of one device is opened the same way.

use crate::error::{Code, Error, Result};
use crate::offload::tun_vnet::{self, TunOffload};
use crate::offload::virtio::VIRTIO_NET_HDR_LEN;
use crate::sys::{cvt, set_nonblocking};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};

// linux/if_tun.h
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_MULTI_QUEUE: libc::c_short = 0x0100;
/// linux/if.h IFNAMSIZ, including the terminating NUL.
const IFNAMSIZ: usize = 16;

#[repr(C)]
struct IfReqFlags {
    name: [u8; IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

#[repr(C)]
struct IfReqInt {
    name: [u8; IFNAMSIZ],
    value: libc::c_int,
    _pad: [u8; 20],
}

/// Checks an interface name the way the kernel will (dev_valid_name).
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() < IFNAMSIZ
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
    if ok {
        Ok(())
    } else {
        Err(Error::new(
            Code::InvalidArg,
            format!(
                "invalid interface name {name:?}: 1-15 printable characters, no '/', ':' or spaces"
            ),
        ))
    }
}

/// Index of an existing interface, or `None`.
pub fn if_index(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: c is a valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (idx != 0).then_some(idx)
}

/// One queue of a multi-queue TUN device.
pub struct TunQueue {
    fd: OwnedFd,
    vnet: bool,
    offload: TunOffload,
    name: String,
    /// errno of the read that found the queue unusable (0: usable). A deleted device makes
    /// every read fail (`EBADFD`) and epoll report the queue ready forever; the worker stops
    /// polling it once this is set (see [`TunQueue::lost`]).
    lost: AtomicI32,
}

impl TunQueue {
    /// Reads and writes carry a `virtio_net_hdr` (`IFF_VNET_HDR`).
    pub fn vnet(&self) -> bool {
        self.vnet
    }

    /// The offloads the kernel accepted (all off without `IFF_VNET_HDR` or when
    /// `TUNSETOFFLOAD` was refused; the header is still there in that case).
    pub fn offload(&self) -> TunOffload {
        self.offload
    }

    /// The device name the queue was opened on.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads one IP packet; `WouldBlock` when the queue is empty. Any other error but
    /// `Interrupted` marks the queue lost.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: buf is valid for buf.len() bytes.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr() as *mut _, buf.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if read_error_is_fatal(&e) {
                self.lost
                    .store(e.raw_os_error().unwrap_or(libc::EIO), Ordering::Relaxed);
            }
            Err(e)
        } else {
            Ok(n as usize)
        }
    }

    /// Why the queue can no longer be read (the device was deleted, or the descriptor is
    /// broken), once a read found out; `None` while it works.
    pub fn lost(&self) -> Option<io::Error> {
        match self.lost.load(Ordering::Relaxed) {
            0 => None,
            errno => Some(io::Error::from_raw_os_error(errno)),
        }
    }

    /// A second descriptor of the same queue (writes from another thread land in this queue).
    pub fn try_clone(&self) -> io::Result<TunQueue> {
        // SAFETY: F_DUPFD_CLOEXEC on a valid descriptor returns a new owned one.
        let fd = unsafe { libc::fcntl(self.fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(TunQueue {
            // SAFETY: fd is fresh and valid.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            vnet: self.vnet,
            offload: self.offload,
            name: self.name.clone(),
            lost: AtomicI32::new(self.lost.load(Ordering::Relaxed)),
        })
    }

    /// Writes one plain IP packet, with an all-zero `virtio_net_hdr` in front when the queue
    /// has `IFF_VNET_HDR` (no segmentation, no checksum to complete).
    pub fn write_packet(&self, pkt: &[u8]) -> io::Result<usize> {
        if !self.vnet {
            return self.write(pkt);
        }
        let hdr = [0u8; crate::offload::virtio::VIRTIO_NET_HDR_LEN];
        let iov = [
            libc::iovec {
                iov_base: hdr.as_ptr() as *mut _,
                iov_len: hdr.len(),
            },
            libc::iovec {
                iov_base: pkt.as_ptr() as *mut _,
                iov_len: pkt.len(),
            },
        ];
        // SAFETY: both iovecs point at live buffers of the given lengths.
        let n = unsafe { libc::writev(self.fd.as_raw_fd(), iov.as_ptr(), 2) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok((n as usize).saturating_sub(hdr.len()))
        }
    }

    /// Writes one IP packet toward the host stack.
    pub fn write(&self, pkt: &[u8]) -> io::Result<usize> {
        // SAFETY: pkt is valid for pkt.len() bytes.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), pkt.as_ptr() as *const _, pkt.len()) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

impl AsRawFd for TunQueue {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

fn name_bytes(name: &str) -> [u8; IFNAMSIZ] {
    let mut b = [0u8; IFNAMSIZ];
    b[..name.len()].copy_from_slice(name.as_bytes());
    b
}

/// Opens one more queue of device `name` (creating it on the first call). `vnet` adds
/// `IFF_VNET_HDR` and switches on the TSO/USO/checksum offloads the kernel accepts.
pub fn open_queue(name: &str, vnet: bool) -> Result<TunQueue> {
    validate_name(name)?;
    let path = c"/dev/net/tun";
    // SAFETY: path is a valid C string.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        let e = io::Error::last_os_error();
        let code = match e.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENODEV) | Some(libc::ENXIO) => Code::NoTun,
            Some(libc::EACCES) | Some(libc::EPERM) => Code::Permission,
            _ => Code::Tun,
        };
        return Err(Error::new(code, format!("cannot open /dev/net/tun: {e}")));
    }
    // SAFETY: fd is a fresh valid descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut req = IfReqFlags {
        name: name_bytes(name),
        flags: IFF_TUN
            | IFF_NO_PI
            | IFF_MULTI_QUEUE
            | if vnet { tun_vnet::tun_vnet_flags() } else { 0 },
        _pad: [0; 22],
    };
    // SAFETY: req is a properly laid out struct ifreq prefix and lives across the call.
    if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF, &mut req) } < 0 {
        let e = io::Error::last_os_error();
        let code = match e.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => Code::Permission,
            Some(libc::EBUSY) | Some(libc::EINVAL) => Code::TunBusy,
            _ => Code::Tun,
        };
        let hint = match code {
            Code::Permission => " (needs root or CAP_NET_ADMIN)",
            Code::TunBusy => " (the name belongs to another device or a single-queue TUN)",
            _ => "",
        };
        return Err(Error::new(
            code,
            format!("cannot create TUN queue on {name:?}: {e}{hint}"),
        ));
    }
    set_nonblocking(fd.as_raw_fd()).map_err(|e| {
        Error::os(
            Code::Tun,
            format!("cannot make TUN {name:?} non-blocking"),
            e,
        )
    })?;
    let mut offload = TunOffload::default();
    if vnet {
        tun_vnet::set_vnet_hdr_size(fd.as_raw_fd(), VIRTIO_NET_HDR_LEN).map_err(|e| {
            Error::os(
                Code::Tun,
                format!("cannot set the vnet header size on {name:?}"),
                e,
            )
        })?;
        // A kernel that refuses the offloads still prefixes every packet with the header
        // (all-zero GSO fields), so the worker keeps its vnet framing either way.
        offload = tun_vnet::enable_tun_offload(fd.as_raw_fd()).unwrap_or_default();
    }
    Ok(TunQueue {
        fd,
        vnet,
        offload,
        name: name.to_string(),
        lost: AtomicI32::new(0),
    })
}

/// Called by worker `worker` after reading its queue: a lost queue leaves its epoll set (it
/// would be reported ready forever) and the loss is reported once.
pub(crate) fn stop_polling_if_lost(
    worker: usize,
    queue: &TunQueue,
    epoll: &crate::sys::Epoll,
    events: &crate::EventSink,
) {
    let Some(e) = queue.lost() else { return };
    if epoll.del(queue.as_raw_fd()).is_ok() {
        events(crate::Event::TunLost {
            worker,
            device: queue.name.clone(),
            reason: format!("TUN read failed: {e}"),
        });
    }
}

/// Whether a failed TUN read means the queue is unusable for good: anything but an empty
/// queue or a signal (`EBADFD` after the device was deleted, `EIO`, `EBADF`, ...). Retrying
/// such a read under level-triggered epoll would spin.
pub fn read_error_is_fatal(e: &io::Error) -> bool {
    !matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

fn ctl_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall.
    let fd = cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: fresh valid descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sets the MTU of `name` and brings it up (SIOCSIFMTU, SIOCSIFFLAGS).
pub fn set_mtu_up(name: &str, mtu: u32) -> Result<()> {
    let s = ctl_socket().map_err(|e| Error::os(Code::Tun, "control socket", e))?;
    let mut m = IfReqInt {
        name: name_bytes(name),
        value: mtu as libc::c_int,
        _pad: [0; 20],
    };
    // SAFETY: m is a valid ifreq for SIOCSIFMTU.
    cvt(unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCSIFMTU, &mut m) })
        .map_err(|e| Error::os(Code::Tun, format!("cannot set MTU {mtu} on {name}"), e))?;
    let mut f = IfReqFlags {
        name: name_bytes(name),
        flags: 0,
        _pad: [0; 22],
    };
    // SAFETY: f is a valid ifreq for SIOCGIFFLAGS/SIOCSIFFLAGS.
    cvt(unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCGIFFLAGS, &mut f) })
        .map_err(|e| Error::os(Code::Tun, format!("cannot read flags of {name}"), e))?;
    f.flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    // SAFETY: as above.
    cvt(unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCSIFFLAGS, &mut f) })
        .map_err(|e| Error::os(Code::Tun, format!("cannot bring {name} up"), e))?;
    Ok(())
}
