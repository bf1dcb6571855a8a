/**
 * The systems under test of the throughput benchmark. Every system gets the same underlay (two
 * namespaces A —veth— B, see twoHosts) and must leave an address in B that iperf3 in A can reach
 * through the system's tunnel. Adding a system is one entry in `SYSTEMS`.
 */
import type { Lab } from '../test/harness/lab.js';
import type { TwoHosts } from '../test/harness/topology.js';
import { boringtun, cvlanWireguard, wgPair, wireguardGo } from '../test/harness/wireguard.js';
import { cvlanTestbed, cvlanTestbedMissing } from '../test/harness/cvlan.js';
import { missingPrerequisites } from '../test/harness/tools.js';
import { waitForPing } from '../test/harness/ping.js';

export interface SystemUnderTest {
  name: string;
  description: string;
  /** Why the system cannot run here, or undefined. */
  missing(): string | undefined;
  /**
   * Builds the tunnel over `h`; resolves with the address in B that iperf3 targets, or with the
   * target and the namespace its iperf3 server runs in when that is not B (a host behind B).
   */
  setup(lab: Lab, h: TwoHosts): Promise<string | { target: string; serverNs: string }>;
  /** Needs this build's features: no twin from a `--compare` build. */
  thisBuildOnly?: boolean;
}

const INNER: [string, string] = ['10.99.0.1/24', '10.99.0.2/24'];

export const SYSTEMS: SystemUnderTest[] = [
  {
    name: 'veth',
    description: 'no tunnel: the bare veth underlay (upper bound)',
    missing: () => undefined,
    setup: async (_lab, h) => h.addrB,
  },
  {
    name: 'wireguard-go',
    description: 'wireguard-go ⇄ wireguard-go (TUN and UDP offloads)',
    missing: () => missingPrerequisites('wireguardGo', 'wg'),
    setup: async (lab, h) => {
      await wgPair(lab, [h.a, h.b], [wireguardGo, wireguardGo], { underlay: [h.addrA, h.addrB], inner: INNER });
      await waitForPing(h.a, '10.99.0.2', 10_000);
      return '10.99.0.2';
    },
  },
  {
    name: 'boringtun',
    description: 'boringtun-cli ⇄ boringtun-cli (2 threads each)',
    missing: () => missingPrerequisites('boringtun', 'wg'),
    setup: async (lab, h) => {
      await wgPair(lab, [h.a, h.b], [boringtun, boringtun], { underlay: [h.addrA, h.addrB], inner: INNER });
      await waitForPing(h.a, '10.99.0.2', 10_000);
      return '10.99.0.2';
    },
  },
  {
    name: 'cvlan-wireguard',
    description: 'cvlan-vrouter wireguard ⇄ cvlan-vrouter wireguard (Rust workers, 2 each, offloads)',
    missing: () => cvlanTestbedMissing() ?? missingPrerequisites('wg'),
    setup: async (lab, h) => {
      await wgPair(lab, [h.a, h.b], [cvlanWireguard, cvlanWireguard], { underlay: [h.addrA, h.addrB], inner: INNER });
      await waitForPing(h.a, '10.99.0.2', 10_000);
      return '10.99.0.2';
    },
  },
  {
    name: 'cvlan-plain',
    description: 'cvlan-vrouter testbed ⇄ testbed, plain UDP transport (no crypto: framing and I/O cost)',
    missing: () => cvlanTestbedMissing(),
    setup: async (lab, h) => {
      const cfg = (self: 1 | 2, peer: string) => ({
        transport: 'plain-insecure-test-only' as const,
        tun: { name: 'cvt0', address: `10.77.0.${self}/24`, mtu: 1420 },
        listen_port: 7000,
        workers: 2,
        peers: [{ endpoint: `${peer}:7000`, allowed_ips: [`10.77.0.${self === 1 ? 2 : 1}/32`] }],
      });
      await cvlanTestbed(lab, h.a, cfg(1, h.addrB));
      await cvlanTestbed(lab, h.b, cfg(2, h.addrA));
      await waitForPing(h.a, '10.77.0.2', 10_000);
      return '10.77.0.2';
    },
  },
];
