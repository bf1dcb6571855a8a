//! What the integration tests share. Tests that need root are `#[ignore = "needs root"]`, so a
//! run without root reports them as ignored instead of passing them unrun; as root, run them
//! with `cargo test -- --include-ignored` (scripts/test.sh does). A test included that way
//! fails loudly if what it needs is missing.

use std::path::Path;
use std::process::Command;

/// Panics unless the process is root and every tool in `tools` runs (`<tool> -V`).
pub fn require_root(tools: &[&str]) {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test needs root (CAP_NET_ADMIN, network namespaces); run it as root or leave it ignored"
    );
    assert!(
        Path::new("/dev/net/tun").exists(),
        "this test needs /dev/net/tun"
    );
    for tool in tools {
        assert!(
            Command::new(tool).arg("-V").output().is_ok(),
            "this test needs `{tool}` on PATH"
        );
    }
}
