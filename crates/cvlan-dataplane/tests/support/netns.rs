//! A named network namespace, and a two-worker device started in it, for the root integration
//! tests that move traffic between devices (`#[path]`-included by those that use it, so the
//! others carry no dead code).

use cvlan_dataplane::device::no_events;
use cvlan_dataplane::transport::Transport;
use cvlan_dataplane::{Device, DeviceConfig};
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::Arc;

pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A named network namespace, deleted on drop.
pub struct Netns(pub String);

impl Netns {
    pub fn new(name: String) -> Netns {
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        ip(&["netns", "add", &name]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        Netns(name)
    }

    /// Runs `f` on a thread inside the namespace.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/var/run/netns/{}", self.0);
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).expect("open netns");
            // SAFETY: a valid namespace fd; only this thread moves.
            let r = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("namespace thread")
    }

    /// Starts a two-worker device on `listen`:`port` in the namespace, so its TUN device and
    /// sockets live there (the workers only use the fds).
    pub fn device(
        &self,
        tun: &str,
        listen: &str,
        port: u16,
        offload: bool,
        transport: Arc<dyn Transport>,
    ) -> Device {
        let (tun, listen): (String, IpAddr) = (tun.to_string(), listen.parse().unwrap());
        self.run(move || {
            Device::start(
                DeviceConfig {
                    tun_name: tun,
                    mtu: 1420,
                    listen: Some(listen),
                    listen_ports: vec![port],
                    workers: 2,
                    offload,
                    raw_esp: false,
                },
                transport,
                no_events(),
            )
            .expect("start device")
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}
