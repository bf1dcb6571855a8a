//! charon with the "cvlan" plugin against a real strongSwan peer.
//!
//! Two network namespaces joined by a veth pair. In ours: the `charon_echo` example (owns UDP
//! 500/4500, serves the plugin socket with an in-memory SA table) and Debian's charon loading
//! the plugin built by `native/strongswan/build.sh`. In the peer's: charon with
//! kernel-libipsec, which initiates a PSK IKEv2 connection. Each charon runs in its own mount
//! namespace with a private /run. Checks that the IKE_SA comes up through the plugin's socket,
//! that get_spi/add_sa (36-byte AES-256-GCM-16 keys) and add_policy with the traffic selectors
//! reach the data plane keyed with the CHILD_SA's if_id, and that query_sa counters — ESP the
//! peer sends, counted by the echo server — show in `swanctl --list-sas` on our side.
//!
//! Ignored unless included (`-- --include-ignored`, as scripts/test.sh does as root); included,
//! it fails naming what is missing: root, the installed plugin, charon or swanctl.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const PLUGIN: &str = "/usr/lib/ipsec/plugins/libstrongswan-cvlan.so";
const CHARON: &str = "/usr/lib/ipsec/charon";
const OUR_ADDR: &str = "192.168.77.1";
const PEER_ADDR: &str = "192.168.77.2";
const OUR_NET: &str = "10.99.0.0/24";
const PEER_NET: &str = "10.98.0.0/24";
const IF_ID: u32 = 42;

/// Panics naming the first prerequisite that is missing.
fn require_prerequisites() {
    if let Some(reason) = missing() {
        panic!("charon plugin test: {reason}");
    }
}

fn missing() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root (network namespaces)".into());
    }
    for (path, what) in [
        (PLUGIN, "the plugin (run native/strongswan/build.sh)"),
        (CHARON, "charon (strongswan-charon)"),
        (
            "/usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so",
            "libcharon-extra-plugins",
        ),
        ("/usr/sbin/swanctl", "swanctl (strongswan-swanctl)"),
    ] {
        if !Path::new(path).exists() {
            return Some(format!("{path} missing: install {what}"));
        }
    }
    None
}

fn suffix() -> String {
    let mut b = [0u8; 3];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .expect("urandom");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd} {args:?}: {e}"))
}

fn must(cmd: &str, args: &[&str]) -> String {
    let out = run(cmd, args);
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Everything the test created; torn down on drop, also when an assertion fails.
struct Lab {
    dir: PathBuf,
    namespaces: Vec<String>,
    children: Vec<(String, Child)>,
    keep_logs: bool,
}

impl Lab {
    fn spawn(&mut self, name: &str, mut cmd: Command) {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        self.children.push((name.into(), child));
    }

    /// Stops one process by PID: SIGTERM, then SIGKILL after a grace period.
    fn stop(&mut self, name: &str) {
        if let Some(at) = self.children.iter().position(|(n, _)| n == name) {
            let (_, mut child) = self.children.remove(at);
            terminate(&mut child);
        }
    }

    fn check_alive(&mut self) {
        for (name, child) in &mut self.children {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "{name} exited early with {status}; logs in {}",
                    self.dir.display()
                );
            }
        }
    }

    fn dump_logs(&self) {
        for f in ["echo.log", "ours/charon.log", "peer/charon.log"] {
            let p = self.dir.join(f);
            if let Ok(s) = fs::read_to_string(&p) {
                let tail: Vec<&str> = s.lines().rev().take(60).collect();
                eprintln!("---- {} (last lines) ----", p.display());
                for l in tail.into_iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if thread::panicking() {
            self.dump_logs();
        }
        // Newest first: charon deletes its SAs while the data plane still listens.
        while let Some((_, mut child)) = self.children.pop() {
            terminate(&mut child);
        }
        for ns in &self.namespaces {
            let _ = run("ip", &["netns", "del", ns]);
        }
        if !self.keep_logs {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

fn terminate(child: &mut Child) {
    // SAFETY: signalling a child we spawned and have not reaped yet.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn example_binary() -> PathBuf {
    // tests run from target/<profile>/deps/; examples are built to target/<profile>/examples/.
    let exe = std::env::current_exe().expect("test binary path");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("examples/charon_echo");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/charon_echo.rs");
    let mtime = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    // `cargo test --test charon_plugin` alone does not build examples.
    if mtime(&bin).is_none() || mtime(&bin) < mtime(&src) {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "cvlan-dataplane", "--example", "charon_echo"])
            .status()
            .expect("cargo build");
        assert!(status.success(), "building the charon_echo example failed");
    }
    bin
}

fn strongswan_conf(dir: &Path, load: &str, extra_plugins: &str) -> String {
    format!(
        "charon {{\n\
         \x20 load = {load}\n\
         \x20 install_routes = yes\n\
         \x20 retransmit_tries = 3\n\
         \x20 filelog {{\n\
         \x20   log {{\n\
         \x20     path = {log}\n\
         \x20     default = 1\n\
         \x20     knl = 2\n\
         \x20     net = 2\n\
         \x20     ike = 2\n\
         \x20     flush_line = yes\n\
         \x20     append = no\n\
         \x20   }}\n\
         \x20 }}\n\
         \x20 syslog {{\n\
         \x20   daemon {{\n\
         \x20     default = -1\n\
         \x20   }}\n\
         \x20 }}\n\
         \x20 plugins {{\n\
         \x20   vici {{\n\
         \x20     socket = unix://{vici}\n\
         \x20   }}\n\
         {extra_plugins}\
         \x20 }}\n\
         }}\n",
        log = dir.join("charon.log").display(),
        vici = dir.join("vici").display(),
    )
}

#[allow(clippy::too_many_arguments)]
fn swanctl_conf(
    local_addr: &str,
    remote_addr: &str,
    local_id: &str,
    remote_id: &str,
    local_ts: &str,
    remote_ts: &str,
    if_id: Option<u32>,
    psk: &str,
) -> String {
    let if_ids = if_id
        .map(|i| format!("        if_id_in = {i}\n        if_id_out = {i}\n"))
        .unwrap_or_default();
    format!(
        "connections {{\n\
         \x20 t {{\n\
         \x20   version = 2\n\
         \x20   local_addrs = {local_addr}\n\
         \x20   remote_addrs = {remote_addr}\n\
         \x20   proposals = aes256gcm16-prfsha256-x25519\n\
         \x20   local {{\n\
         \x20     auth = psk\n\
         \x20     id = {local_id}\n\
         \x20   }}\n\
         \x20   remote {{\n\
         \x20     auth = psk\n\
         \x20     id = {remote_id}\n\
         \x20   }}\n\
         \x20   children {{\n\
         \x20     c {{\n\
         \x20       local_ts = {local_ts}\n\
         \x20       remote_ts = {remote_ts}\n\
         \x20       esp_proposals = aes256gcm16\n\
         {if_ids}\
         \x20     }}\n\
         \x20   }}\n\
         \x20 }}\n\
         }}\n\
         secrets {{\n\
         \x20 ike-1 {{\n\
         \x20   id-1 = {local_id}\n\
         \x20   id-2 = {remote_id}\n\
         \x20   secret = \"{psk}\"\n\
         \x20 }}\n\
         }}\n"
    )
}

fn start_echo(lab: &mut Lab, bin: &Path, ns: &str, sock: &Path, log: &Path) {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns])
        .arg(bin)
        .args(["--socket", sock.to_str().unwrap(), "--listen", OUR_ADDR])
        .stdin(Stdio::null())
        .stdout(fs::File::create(log).unwrap())
        .stderr(fs::File::create(log.with_extension("stderr")).unwrap());
    lab.spawn("charon_echo", cmd);
    wait_for(lab, "charon_echo ready", Duration::from_secs(10), || {
        fs::read_to_string(log)
            .unwrap_or_default()
            .contains("ready ")
    });
}

fn start_charon(lab: &mut Lab, ns: &str, dir: &Path, name: &str) {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, "unshare", "-m", "sh", "-c"])
        .arg(format!("mount -t tmpfs tmpfs /run && exec {CHARON}"))
        .env("STRONGSWAN_CONF", dir.join("strongswan.conf"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(dir.join("stderr.log")).unwrap());
    lab.spawn(name, cmd);
}

fn wait_for(lab: &mut Lab, what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        lab.check_alive();
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(100));
    }
}

fn swanctl(uri: &Path, args: &[&str]) -> Output {
    let uri = format!("unix://{}", uri.display());
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--uri", &uri]);
    run("swanctl", &all)
}

/// `key=value` pairs of one echo log line.
fn fields(line: &str) -> std::collections::HashMap<&str, &str> {
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .collect()
}

#[test]
#[ignore = "needs root and the installed charon plugin"]
fn charon_negotiates_through_the_plugin() {
    require_prerequisites();
    let echo_bin = example_binary();
    let suf = suffix();
    let dir = std::env::temp_dir().join(format!("cvlan-charon-{suf}"));
    fs::create_dir_all(dir.join("ours")).unwrap();
    fs::create_dir_all(dir.join("peer")).unwrap();
    let ours = format!("cvo{suf}");
    let peer = format!("cvp{suf}");
    let mut lab = Lab {
        dir: dir.clone(),
        namespaces: vec![],
        children: vec![],
        keep_logs: std::env::var_os("CVLAN_KEEP_LOGS").is_some(),
    };

    for ns in [&ours, &peer] {
        must("ip", &["netns", "add", ns]);
        lab.namespaces.push(ns.clone());
        must("ip", &["-n", ns, "link", "set", "lo", "up"]);
    }
    let (va, vb) = (format!("cva{suf}"), format!("cvb{suf}"));
    must(
        "ip",
        &[
            "link", "add", &va, "netns", &ours, "type", "veth", "peer", &vb, "netns", &peer,
        ],
    );
    must(
        "ip",
        &[
            "-n",
            &ours,
            "addr",
            "add",
            &format!("{OUR_ADDR}/24"),
            "dev",
            &va,
        ],
    );
    must(
        "ip",
        &[
            "-n",
            &peer,
            "addr",
            "add",
            &format!("{PEER_ADDR}/24"),
            "dev",
            &vb,
        ],
    );
    must("ip", &["-n", &ours, "link", "set", &va, "up"]);
    must("ip", &["-n", &peer, "link", "set", &vb, "up"]);
    // The peer needs an address inside its traffic selector to source tunnel traffic from.
    must(
        "ip",
        &["-n", &peer, "addr", "add", "10.98.0.1/32", "dev", "lo"],
    );

    // Our side: the stand-in data plane, then charon with the plugin.
    let sock = dir.join("charon.sock");
    let echo_log = dir.join("echo.log");
    start_echo(&mut lab, &echo_bin, &ours, &sock, &echo_log);
    let read_echo = || fs::read_to_string(&echo_log).unwrap_or_default();

    let psk = format!("cvlan-test-{suf}-{}", suffix());
    let ours_dir = dir.join("ours");
    let cvlan_plugin = format!("    cvlan {{\n      socket = {}\n    }}\n", sock.display());
    // cvlan ahead of kernel-netlink: the first kernel-ipsec registered is the one charon uses;
    // kernel-netlink still provides kernel-net. No socket-default: the data plane owns the ports.
    let load = "cvlan random nonce aes sha1 sha2 hmac gcm kdf curve25519 x509 pubkey pem pkcs1 \
                openssl kernel-netlink vici";
    fs::write(
        ours_dir.join("strongswan.conf"),
        strongswan_conf(&ours_dir, load, &cvlan_plugin),
    )
    .unwrap();
    fs::write(
        ours_dir.join("swanctl.conf"),
        swanctl_conf(
            OUR_ADDR,
            PEER_ADDR,
            "ours",
            "peer",
            OUR_NET,
            PEER_NET,
            Some(IF_ID),
            &psk,
        ),
    )
    .unwrap();
    start_charon(&mut lab, &ours, &ours_dir, "charon (ours)");

    let peer_dir = dir.join("peer");
    let load = "random nonce aes sha1 sha2 hmac gcm kdf curve25519 x509 pubkey pem pkcs1 openssl \
                kernel-libipsec kernel-netlink socket-default vici";
    fs::write(
        peer_dir.join("strongswan.conf"),
        strongswan_conf(&peer_dir, load, ""),
    )
    .unwrap();
    fs::write(
        peer_dir.join("swanctl.conf"),
        swanctl_conf(
            PEER_ADDR, OUR_ADDR, "peer", "ours", PEER_NET, OUR_NET, None, &psk,
        ),
    )
    .unwrap();
    start_charon(&mut lab, &peer, &peer_dir, "charon (peer)");

    let (our_vici, peer_vici) = (ours_dir.join("vici"), peer_dir.join("vici"));
    wait_for(
        &mut lab,
        "both vici sockets",
        Duration::from_secs(15),
        || our_vici.exists() && peer_vici.exists(),
    );
    wait_for(
        &mut lab,
        "the plugin's connection",
        Duration::from_secs(10),
        || read_echo().contains("hello name=\"charon 5.9.8\""),
    );
    for (vici, d) in [(&our_vici, &ours_dir), (&peer_vici, &peer_dir)] {
        let out = swanctl(
            vici,
            &[
                "--load-all",
                "--noprompt",
                "--file",
                d.join("swanctl.conf").to_str().unwrap(),
            ],
        );
        assert!(
            out.status.success(),
            "swanctl --load-all: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    let out = swanctl(
        &peer_vici,
        &["--initiate", "--child", "c", "--timeout", "20"],
    );
    assert!(
        out.status.success(),
        "initiate failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let log = read_echo();
    let lines: Vec<&str> = log.lines().collect();
    // IKE went both ways through the data plane's sockets, and moved to 4500 (kernel-libipsec
    // forces UDP encapsulation, so NAT-T is used).
    assert!(lines
        .iter()
        .any(|l| l.starts_with("ike_in ") && l.contains(":500 ")));
    assert!(lines
        .iter()
        .any(|l| l.starts_with("ike_out ") && l.contains("natt=true")));

    let spis: Vec<String> = lines
        .iter()
        .filter(|l| l.starts_with("get_spi "))
        .map(|l| fields(l)["spi"].to_string())
        .collect();
    assert!(!spis.is_empty(), "no get_spi: {log}");
    let add_sas: Vec<_> = lines
        .iter()
        .filter(|l| l.starts_with("add_sa "))
        .map(|l| fields(l))
        .collect();
    assert_eq!(add_sas.len(), 2, "one inbound and one outbound SA: {log}");
    for sa in &add_sas {
        assert_eq!(sa["enc_alg"], "20", "ENCR_AES_GCM_16");
        assert_eq!(sa["enc_key_len"], "36", "AES-256 key + 4-byte salt");
        assert_eq!(sa["int_key_len"], "0");
        assert_eq!(sa["if_id"], IF_ID.to_string());
        assert_eq!(sa["mode"], "Tunnel");
        assert_eq!(sa["encap"], "true");
        assert_eq!(sa["proto"], "50");
    }
    let inbound = add_sas
        .iter()
        .find(|s| s["inbound"] == "true")
        .expect("inbound SA");
    assert!(
        spis.contains(&inbound["spi"].to_string()),
        "inbound SA uses an SPI we allocated"
    );
    assert!(inbound["dst"].starts_with(OUR_ADDR));
    assert_eq!(inbound["src_ts"], "10.98.0.0-10.98.0.255/0/0-65535");
    assert_eq!(inbound["dst_ts"], "10.99.0.0-10.99.0.255/0/0-65535");
    let policies: Vec<_> = lines
        .iter()
        .filter(|l| l.starts_with("add_policy "))
        .map(|l| fields(l))
        .collect();
    for dir in ["In", "Out", "Fwd"] {
        let p = policies
            .iter()
            .find(|p| p["dir"] == dir && p["type"] == "Ipsec")
            .unwrap_or_else(|| panic!("no {dir} policy: {log}"));
        assert_eq!(p["if_id"], IF_ID.to_string());
        let (src, dst) = if dir == "Out" {
            (
                "10.99.0.0-10.99.0.255/0/0-65535",
                "10.98.0.0-10.98.0.255/0/0-65535",
            )
        } else {
            (
                "10.98.0.0-10.98.0.255/0/0-65535",
                "10.99.0.0-10.99.0.255/0/0-65535",
            )
        };
        assert_eq!(
            (p["src_ts"], p["dst_ts"]),
            (src, dst),
            "{dir} policy selectors"
        );
    }
    assert!(
        !log.contains(&psk),
        "the PSK must never reach the data plane's log"
    );

    // The peer tunnels a few packets; the echo server counts the ESP on our inbound SA and
    // charon reports the counters it queried.
    let ping = run(
        "ip",
        &[
            "netns",
            "exec",
            &peer,
            "ping",
            "-c",
            "3",
            "-i",
            "0.2",
            "-W",
            "1",
            "-I",
            "10.98.0.1",
            "10.99.0.1",
        ],
    );
    let _ = ping; // nobody answers inside the tunnel; only the ESP matters
    let spi = inbound["spi"].to_string();
    wait_for(
        &mut lab,
        "ESP on the inbound SA",
        Duration::from_secs(5),
        || {
            read_echo()
                .lines()
                .filter(|l| l.starts_with(&format!("esp_in spi={spi}")))
                .count()
                >= 3
        },
    );
    let esp_lines: Vec<String> = read_echo()
        .lines()
        .filter(|l| l.starts_with(&format!("esp_in spi={spi}")))
        .map(String::from)
        .collect();
    let esp_bytes: u64 = esp_lines
        .iter()
        .map(|l| fields(l)["len"].parse::<u64>().unwrap())
        .sum();

    let out = swanctl(&our_vici, &["--list-sas"]);
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "list-sas: {listing}");
    assert!(listing.contains("ESTABLISHED"), "{listing}");
    assert!(listing.contains("INSTALLED"), "{listing}");
    let in_line = listing
        .lines()
        .find(|l| l.trim_start().starts_with("in ") && l.contains(&spi[..]))
        .unwrap_or_else(|| panic!("no inbound line for SPI {spi}: {listing}"));
    let expect = format!("{esp_bytes} bytes,     {} packets", esp_lines.len());
    let compact = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        compact(in_line).contains(&compact(&expect)),
        "swanctl shows the data plane's counters ({expect}): {in_line}"
    );
    assert!(read_echo().contains(&format!("query_sa spi={spi} bytes={esp_bytes}")));

    // A restarted data plane gets everything replayed: the plugin reconnects, flushes and
    // reinstalls both SAs (same SPIs, same keys) and the three policies.
    lab.stop("charon_echo");
    let echo2_log = dir.join("echo2.log");
    start_echo(&mut lab, &echo_bin, &ours, &sock, &echo2_log);
    let read_echo2 = || fs::read_to_string(&echo2_log).unwrap_or_default();
    wait_for(
        &mut lab,
        "replay to the restarted data plane",
        Duration::from_secs(10),
        || {
            read_echo2()
                .lines()
                .filter(|l| l.starts_with("add_policy "))
                .count()
                == 3
        },
    );
    let log2 = read_echo2();
    assert!(
        log2.contains("flush_policies") && log2.contains("flush_sas"),
        "{log2}"
    );
    let replayed: Vec<String> = log2
        .lines()
        .filter(|l| l.starts_with("add_sa "))
        .map(|l| {
            let f = fields(l);
            format!("{}/{}/{}", f["spi"], f["enc_key_len"], f["if_id"])
        })
        .collect();
    let mut want: Vec<String> = add_sas
        .iter()
        .map(|f| format!("{}/{}/{}", f["spi"], f["enc_key_len"], f["if_id"]))
        .collect();
    let mut got = replayed.clone();
    want.sort();
    got.sort();
    assert_eq!(got, want, "replayed SAs");
    let out = swanctl(&our_vici, &["--list-sas"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("INSTALLED"));

    // Tearing the tunnel down removes SAs and policies from the data plane.
    let out = swanctl(&our_vici, &["--terminate", "--ike", "t", "--timeout", "10"]);
    assert!(
        out.status.success(),
        "terminate: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    wait_for(
        &mut lab,
        "del_sa and del_policy",
        Duration::from_secs(10),
        || {
            let l = read_echo2();
            l.lines().filter(|l| l.starts_with("del_sa ")).count() == 2
                && l.lines().filter(|l| l.starts_with("del_policy ")).count() == 3
        },
    );
}

mod misbehaving {
    //! The plugin against a data plane that sends garbage: it must refuse and log every bad
    //! message, drop a connection whose framing is broken, refuse a protocol version it does
    //! not speak, reconnect with backoff, and keep charon alive throughout.

    use super::*;
    use cvlan_dataplane::charon::protocol::{
        self, Frame, MsgType, Reply, Request, Response, Status, PROTOCOL_VERSION,
    };
    use std::io::Write;
    use std::os::unix::net::{UnixListener, UnixStream};

    fn accept_within(lab: &mut Lab, listener: &UnixListener, timeout: Duration) -> UnixStream {
        listener.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + timeout;
        loop {
            match listener.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    return s;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    lab.check_alive();
                    assert!(Instant::now() < deadline, "the plugin did not connect");
                    thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
    }

    fn read_frame(s: &mut UnixStream) -> Frame {
        let mut word = [0u8; 4];
        s.read_exact(&mut word).expect("frame length");
        let mut body = vec![0u8; protocol::frame_len(word).expect("sane length")];
        s.read_exact(&mut body).expect("frame body");
        protocol::decode(&body).expect("well-formed frame from the plugin")
    }

    fn expect_request(s: &mut UnixStream, kind: MsgType) -> (u32, Request) {
        match read_frame(s) {
            Frame::Request { id, req } if req.msg_type() == kind => (id, req),
            other => panic!("expected {kind:?}, got {other:?}"),
        }
    }

    fn answer(s: &mut UnixStream, id: u32, kind: MsgType, status: Status, reply: Reply) {
        let frame = Frame::Response {
            id,
            resp: Response {
                kind,
                status,
                reply,
            },
        };
        s.write_all(&protocol::encode(&frame)).unwrap();
    }

    fn hello(s: &mut UnixStream, status: Status, version: u16, instance: u64) {
        let (id, req) = expect_request(s, MsgType::Hello);
        match req {
            Request::Hello { version: v, name } => {
                assert_eq!(v, PROTOCOL_VERSION);
                assert!(name.starts_with("charon "), "{name}");
            }
            other => panic!("{other:?}"),
        }
        answer(
            s,
            id,
            MsgType::Hello,
            status,
            Reply::Hello { version, instance },
        );
    }

    fn expect_flushes(s: &mut UnixStream) {
        for kind in [MsgType::FlushPolicies, MsgType::FlushSas] {
            let (id, _) = expect_request(s, kind);
            answer(s, id, kind, Status::Ok, Reply::None);
        }
    }

    fn expect_closed(s: &mut UnixStream) {
        let mut rest = Vec::new();
        let n = s
            .read_to_end(&mut rest)
            .expect("the plugin closes the connection");
        assert_eq!(n, 0, "nothing after a refused frame");
    }

    /// A frame with a valid header and the given body.
    fn raw(kind: u16, id: u32, body: &[u8]) -> Vec<u8> {
        let mut f = ((protocol::HEADER_LEN + body.len()) as u32)
            .to_be_bytes()
            .to_vec();
        f.extend_from_slice(&kind.to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(&id.to_be_bytes());
        f.extend_from_slice(body);
        f
    }

    fn wait_log(lab: &mut Lab, log: &Path, needle: &str) {
        wait_for(lab, needle, Duration::from_secs(5), || {
            fs::read_to_string(log).unwrap_or_default().contains(needle)
        });
    }

    #[test]
    #[ignore = "needs root and the installed charon plugin"]
    fn plugin_survives_a_misbehaving_data_plane() {
        require_prerequisites();
        let suf = suffix();
        let dir = std::env::temp_dir().join(format!("cvlan-charon-bad-{suf}"));
        fs::create_dir_all(&dir).unwrap();
        let ns = format!("cvx{suf}");
        let mut lab = Lab {
            dir: dir.clone(),
            namespaces: vec![],
            children: vec![],
            keep_logs: std::env::var_os("CVLAN_KEEP_LOGS").is_some(),
        };
        must("ip", &["netns", "add", &ns]);
        lab.namespaces.push(ns.clone());

        let sock = dir.join("dp.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        let plugin = format!("    cvlan {{\n      socket = {}\n    }}\n", sock.display());
        fs::write(
            dir.join("strongswan.conf"),
            strongswan_conf(
                &dir,
                "cvlan random nonce sha1 sha2 hmac kernel-netlink",
                &plugin,
            ),
        )
        .unwrap();
        start_charon(&mut lab, &ns, &dir, "charon");
        let log = dir.join("charon.log");

        // First connection: a fresh charon clears whatever an earlier one left behind.
        let mut c = accept_within(&mut lab, &listener, Duration::from_secs(10));
        hello(&mut c, Status::Ok, PROTOCOL_VERSION, 1);
        expect_flushes(&mut c);
        wait_log(&mut lab, &log, "cvlan: connected to data plane");

        // Garbage with intact framing is refused one message at a time.
        let mut bad_family = vec![9u8];
        bad_family.extend_from_slice(&[0; 30]);
        c.write_all(&raw(MsgType::IkePacket as u16, 0, &bad_family))
            .unwrap();
        c.write_all(&raw(0x0777, 0, b"who knows")).unwrap();
        let mut expire = vec![50, 0xc0, 0, 0, 1, 4, 192, 0, 2, 1, 0, 0, 1];
        expire.push(0xee); // trailing byte
        c.write_all(&raw(MsgType::Expire as u16, 0, &expire))
            .unwrap();
        c.write_all(&raw(
            MsgType::GetSpi as u16 | protocol::RESPONSE_BIT,
            999_999,
            &[0, 0xc0, 0, 0, 1],
        ))
        .unwrap();
        // An IKE packet whose length field runs past the frame.
        let mut short = vec![4, 192, 0, 2, 2, 1, 244, 4, 192, 0, 2, 1, 1, 244];
        short.extend_from_slice(&1000u32.to_be_bytes());
        short.extend_from_slice(&[0; 10]);
        c.write_all(&raw(MsgType::IkePacket as u16, 0, &short))
            .unwrap();
        for needle in [
            "cvlan: refusing malformed IKE_PACKET",
            "cvlan: refusing unexpected message type 1911",
            "cvlan: refusing malformed EXPIRE",
            "cvlan: dropping response to unknown request 999999",
        ] {
            wait_log(&mut lab, &log, needle);
        }
        let refused = fs::read_to_string(&log)
            .unwrap()
            .matches("refusing malformed IKE_PACKET")
            .count();
        assert_eq!(refused, 2, "both bad IKE packets refused");
        lab.check_alive();

        // A length word out of bounds leaves no way to resynchronize: the plugin hangs up.
        c.write_all(&u32::MAX.to_be_bytes()).unwrap();
        expect_closed(&mut c);
        wait_log(&mut lab, &log, "refusing frame of length 4294967295");

        // It comes back, and refuses a data plane speaking another protocol version.
        let mut c = accept_within(&mut lab, &listener, Duration::from_secs(10));
        hello(&mut c, Status::VersionMismatch, 99, 1);
        expect_closed(&mut c);
        wait_log(
            &mut lab,
            &log,
            "speaks protocol version 99, we speak 1: refused",
        );

        // After backoff it connects again; a different instance (a restarted data plane) gets
        // the state replayed, which starts with the flushes.
        let mut c = accept_within(&mut lab, &listener, Duration::from_secs(10));
        hello(&mut c, Status::Ok, PROTOCOL_VERSION, 2);
        expect_flushes(&mut c);
        lab.check_alive();
    }
}
