//! Fuzz targets for every parser that takes bytes from the network or another process.
//!
//! Each target is a `run(&[u8])` that must return for any input: a panic (out-of-bounds
//! index, overflow in debug builds, a failed invariant below) is a finding. The binaries in
//! `src/bin/` wrap them for AFL++ (feature `afl`, `cargo afl build`); without the feature they
//! replay files, which is how the corpus is checked in the normal test run and how a crash
//! found by AFL++ is reproduced (`cargo run -p cvlan-fuzz --bin esp -- crash-file`).

use std::path::Path;

pub mod charon_protocol;
pub mod esp;
pub mod ip_icmp;
pub mod offload;
pub mod rng;
pub mod wireguard;

/// A target: takes any bytes, panics only on a finding.
pub type Target = fn(&[u8]);

/// Every target by name, in the order `scripts/fuzz.sh` runs them.
pub const TARGETS: [(&str, Target); 5] = [
    ("wireguard", wireguard::run),
    ("esp", esp::run),
    ("charon_protocol", charon_protocol::run),
    ("ip_icmp", ip_icmp::run),
    ("offload", offload::run),
];

/// `main` of a target binary: AFL++'s persistent loop with the `afl` feature, otherwise a
/// replay of the files and directories named on the command line (stdin if none).
#[macro_export]
macro_rules! fuzz_main {
    ($run:path) => {
        #[cfg(feature = "afl")]
        fn main() {
            afl::fuzz!(|data: &[u8]| $run(data));
        }
        #[cfg(not(feature = "afl"))]
        fn main() {
            let args: Vec<std::path::PathBuf> =
                std::env::args_os().skip(1).map(Into::into).collect();
            match $crate::replay(&args, $run) {
                Ok(n) => eprintln!("replayed {n} inputs"),
                Err(e) => {
                    eprintln!("replay: {e}");
                    std::process::exit(2);
                }
            }
        }
    };
}

/// Runs `target` on every file in `paths` (directories: every file in them, sorted), or on
/// stdin if `paths` is empty. Returns how many inputs ran.
pub fn replay(paths: &[std::path::PathBuf], target: Target) -> std::io::Result<usize> {
    if paths.is_empty() {
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut data)?;
        target(&data);
        return Ok(1);
    }
    let mut n = 0;
    for p in paths {
        n += replay_path(p, target)?;
    }
    Ok(n)
}

fn replay_path(p: &Path, target: Target) -> std::io::Result<usize> {
    if p.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(p)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        entries.sort();
        let mut n = 0;
        for e in entries {
            n += replay_path(&e, target)?;
        }
        return Ok(n);
    }
    target(&std::fs::read(p)?);
    Ok(1)
}
