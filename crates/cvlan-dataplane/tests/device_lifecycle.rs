//! Device start/stop against the real kernel: needs root for TUN devices (ignored otherwise).

mod support;

use cvlan_dataplane::device::no_events;
use cvlan_dataplane::plain::PlainTransport;
use cvlan_dataplane::{Code, Device, DeviceConfig};
use std::sync::Arc;

fn cfg(name: &str, workers: usize) -> DeviceConfig {
    DeviceConfig {
        tun_name: name.to_string(),
        mtu: 1420,
        listen: None,
        listen_ports: vec![0],
        workers,
        offload: true,
        raw_esp: false,
    }
}

fn exists(name: &str) -> bool {
    std::path::Path::new(&format!("/sys/class/net/{name}")).exists()
}

#[test]
#[ignore = "needs root"]
fn start_resize_stop_leaves_nothing() {
    support::require_root(&[]);
    let name = format!("cvrt{}", std::process::id() % 100_000);
    let t = Arc::new(PlainTransport::new(vec![]));
    let mut dev = Device::start(cfg(&name, 2), t.clone(), no_events()).expect("start");
    assert!(exists(&name));
    assert_ne!(dev.listen_port(), 0);
    dev.set_workers(4).unwrap();
    assert_eq!(dev.stats().iter().filter(|s| s.active).count(), 4);
    dev.set_workers(1).unwrap();
    assert_eq!(dev.worker_count(), 1);
    assert!(exists(&name));

    let busy = Device::start(cfg(&name, 1), t.clone(), no_events())
        .err()
        .expect("name in use");
    assert_eq!(busy.code, Code::TunBusy);
    let port = DeviceConfig {
        listen_ports: vec![dev.listen_port()],
        ..cfg(&format!("{name}b"), 1)
    };
    let in_use = Device::start(port, t.clone(), no_events())
        .err()
        .expect("port in use");
    assert_eq!(in_use.code, Code::AddrInUse);
    assert!(
        !exists(&format!("{name}b")),
        "failed start leaves no TUN device"
    );

    drop(dev);
    assert!(!exists(&name), "TUN device gone with the last queue");
}

#[test]
fn invalid_config_is_refused_before_touching_the_system() {
    let t = Arc::new(PlainTransport::new(vec![]));
    for c in [
        cfg("", 1),
        cfg("a/b", 1),
        cfg("x", 0),
        cfg("x", 65),
        DeviceConfig {
            mtu: 100,
            ..cfg("x", 1)
        },
        DeviceConfig {
            listen_ports: vec![7000, 7001, 7000],
            ..cfg("x", 1)
        },
        DeviceConfig {
            listen_ports: vec![0; 9],
            ..cfg("x", 1)
        },
    ] {
        let e = Device::start(c, t.clone(), no_events())
            .err()
            .expect("refused");
        assert_eq!(e.code, Code::InvalidArg, "{}", e.message);
    }
}

/// A tenant's local network: a TUN-only device, no ports, fed by other devices' workers.
#[test]
#[ignore = "needs root"]
fn a_device_without_ports_is_a_tun_only_device() {
    support::require_root(&[]);
    let name = format!("cvtt{}", std::process::id() % 100_000);
    let t = cvlan_dataplane::tenant_tun::TenantTun::new(&["10.30.0.0/24".parse().unwrap()]);
    let mut dev = Device::start(
        DeviceConfig {
            listen_ports: vec![],
            offload: false,
            ..cfg(&name, 2)
        },
        t,
        no_events(),
    )
    .expect("start");
    assert!(exists(&name));
    assert_eq!(dev.listen_port(), 0);
    assert!(
        dev.handoff_target(1, Vec::new()).is_some(),
        "a target for other devices"
    );
    dev.stop();
    assert!(!exists(&name), "the TUN vanishes with its last queue");
}
