/**
 * The V8 flags the daemon runs with, wherever it is started: the `cvlan-vrouter` script's
 * shebang, `deploy/install.sh`'s wrapper and the test harness (`test/unit/node-flags.test.ts`
 * keeps the three in step). V8 reads them when the isolate is made, so they cannot be set from
 * inside the program (`v8.setFlagsFromString` leaves the heap's sizes as they are).
 *
 * `--max-semi-space-size=2` (MiB): a bring-up of thousands of tunnels allocates fast, and V8 grew
 * its young generation to its 64-bit default, 3 × 16 MiB, which stayed mapped long after. Capped,
 * node held 134 MiB instead of 189–193 at 2000 IPsec tunnels and 2000 WireGuard peers, for more
 * and shorter scavenges (bring-up CPU 7.0 s against 6.3–6.9 s; `docs/benchmarks.md`). No packet
 * passes through JavaScript, so the data plane does not notice.
 */
export const DAEMON_NODE_FLAGS = ['--max-semi-space-size=2'] as const;
