/**
 * IPsec and translation systems of the throughput benchmark (see ./systems.ts for the contract).
 *
 *   cvlan-ipsec         `cvlan-vrouter run` ⇄ `cvlan-vrouter run`, site to site, AES-256-GCM
 *                       (ESP-in-UDP; IKE by each side's supervised charon with the cvlan plugin)
 *   cvlan-ipsec-esn     the same with 64-bit extended sequence numbers
 *   cvlan-ipsec-raw     the same with ESP directly over IP (protocol 50, `esp_encapsulation =
 *                       "auto"`, no NAT): no UDP GSO/GRO on that path
 *   strongswan-libipsec charon + kernel-libipsec ⇄ charon + kernel-libipsec, AES-256-GCM, the
 *                       userspace ESP a host without kernel ESP would otherwise use
 *   cvlan-translate     ours-ESP site (A) ⇄ ours translator (B) ⇄ ours WireGuard agent (C, behind
 *                       B): IPsec in, WireGuard out, through one vrouter
 *   cvlan-wireguard-hub ours WireGuard agent (A) ⇄ ours hub (B) ⇄ ours WireGuard agent (C, behind
 *                       B): translation's like-for-like reference, the same three hops and four
 *                       ciphers per packet with WireGuard on both legs
 *
 * Inner prefixes: A has 10.88.1.1, B 10.88.2.1 (C 10.88.3.1 for translation), each on the
 * receiving device or `lo`, so the inner source lies in the traffic selectors.
 */
import { randomBytes } from 'node:crypto';
import type { Lab } from '../test/harness/lab.js';
import type { TwoHosts } from '../test/harness/topology.js';
import { cvlanTestbedMissing } from '../test/harness/cvlan.js';
import { missingPrerequisites } from '../test/harness/tools.js';
import { waitForPing } from '../test/harness/ping.js';
import { strongswanPeer } from '../test/harness/strongswan.js';
import { vrouterRun } from '../test/harness/vrouter.js';
import { adminRequest } from '../src/api/client.js';
import { genKeyPair, cvlanWireguard } from '../test/harness/wireguard.js';
import type { SystemUnderTest } from './systems.js';

const psk = (): string => randomBytes(24).toString('base64');

function siteDoc(o: { self: 'a' | 'b'; remote?: string; psk: string; local: string; remote_subnet: string; esp: string }): object {
  return {
    vrouter_id: `bench-${o.self}`,
    tenant_id: 'bench',
    tunnels: [
      {
        id: 'site',
        type: 'ipsec',
        local_id: `${o.self}.bench.cvlan`,
        remote_id: `${o.self === 'a' ? 'b' : 'a'}.bench.cvlan`,
        ...(o.remote ? { remote_address: o.remote } : {}),
        auth: { method: 'psk', psk: o.psk },
        local_subnets: [o.local],
        remote_subnets: [o.remote_subnet],
        proposals: { ike: ['aes256gcm16-prfsha256-x25519'], esp: [o.esp] },
      },
    ],
  };
}

async function cvlanSites(lab: Lab, h: TwoHosts, esp: string, espEncapsulation: 'udp' | 'auto' = 'udp'): Promise<string> {
  const key = psk();
  // B answers, A initiates (remote_address set): the order matters only for who dials.
  const b = await vrouterRun(lab, h.b, {
    document: siteDoc({ self: 'b', psk: key, local: '10.88.2.0/24', remote_subnet: '10.88.1.0/24', esp }),
    listenAddress: h.addrB,
    espEncapsulation,
  });
  const a = await vrouterRun(lab, h.a, {
    document: siteDoc({ self: 'a', remote: h.addrB, psk: key, local: '10.88.1.0/24', remote_subnet: '10.88.2.0/24', esp }),
    listenAddress: h.addrA,
    espEncapsulation,
  });
  await lab.addAddress(h.a, a.ready.ipsec!.interface, '10.88.1.1/32');
  await lab.addAddress(h.b, b.ready.ipsec!.interface, '10.88.2.1/32');
  await waitForPing(h.a, '10.88.2.1', 20_000, '10.88.1.1');
  return '10.88.2.1';
}

export const IPSEC_SYSTEMS: SystemUnderTest[] = [
  {
    name: 'cvlan-ipsec',
    description: 'cvlan-vrouter ⇄ cvlan-vrouter, IKEv2 by charon + cvlan plugin, ESP AES-256-GCM in the Rust workers',
    missing: () => cvlanTestbedMissing() ?? missingPrerequisites('charon'),
    setup: (lab, h) => cvlanSites(lab, h, 'aes256gcm16'),
  },
  {
    name: 'cvlan-ipsec-esn',
    description: 'the same with extended sequence numbers (aes256gcm16-esn)',
    missing: () => cvlanTestbedMissing() ?? missingPrerequisites('charon'),
    setup: (lab, h) => cvlanSites(lab, h, 'aes256gcm16-esn'),
  },
  {
    name: 'cvlan-ipsec-raw',
    description: 'the same as cvlan-ipsec with ESP directly over IP (protocol 50) instead of ESP-in-UDP',
    missing: () => cvlanTestbedMissing() ?? missingPrerequisites('charon'),
    setup: (lab, h) => cvlanSites(lab, h, 'aes256gcm16', 'auto'),
  },
  {
    name: 'strongswan-libipsec',
    description: 'strongSwan charon + kernel-libipsec ⇄ the same, ESP AES-256-GCM (userspace ESP in charon)',
    missing: () => missingPrerequisites('charon', 'swanctl'),
    setup: async (lab, h) => {
      const key = psk();
      await lab.addAddress(h.a, 'lo', '10.88.1.1/32');
      await lab.addAddress(h.b, 'lo', '10.88.2.1/32');
      const common = { auth: { method: 'psk' as const, psk: key }, espProposals: 'aes256gcm16' };
      await strongswanPeer(lab, h.b, { ...common, localAddr: h.addrB, remoteAddr: h.addrA, localTs: ['10.88.2.0/24'], remoteTs: ['10.88.1.0/24'] });
      const a = await strongswanPeer(lab, h.a, { ...common, localAddr: h.addrA, remoteAddr: h.addrB, localTs: ['10.88.1.0/24'], remoteTs: ['10.88.2.0/24'] });
      await a.initiate(20);
      await waitForPing(h.a, '10.88.2.1', 20_000, '10.88.1.1');
      return '10.88.2.1';
    },
  },
  translate('cvlan-translate', 'ours-ESP site ⇄ ours translator (ESP in, WireGuard out) ⇄ ours WireGuard agent behind it', false),
  // The packet trace's cost when on but excluding everything (docs/benchmarks.md).
  translate('cvlan-translate-traced', 'cvlan-translate with a packet trace running on every vrouter, its filter matching no packet', true),
  {
    name: 'cvlan-wireguard-hub',
    description: 'ours WireGuard agent ⇄ ours hub (relaying between its two peers through its TUN) ⇄ ours WireGuard agent behind it: cvlan-translate with WireGuard on both legs',
    missing: () => cvlanTestbedMissing() ?? missingPrerequisites('wg'),
    setup: async (lab, h) => {
      const c = await lab.namespace('c');
      await lab.veth({ ns: h.b, addresses: ['198.51.100.1/24'] }, { ns: c, addresses: ['198.51.100.2/24'] });
      const [ak, bk, ck] = [await genKeyPair(), await genKeyPair(), await genKeyPair()];
      const bDoc = {
        vrouter_id: 'bench-b',
        tenant_id: 'bench',
        tunnels: [],
        wireguard: { listen_port: 51820, private_key: bk.privateKey },
        wireguard_peers: [
          { name: 'site', public_key: ak.publicKey, allowed_ips: ['10.88.1.1/32'] },
          { name: 'agent', public_key: ck.publicKey, allowed_ips: ['10.88.3.1/32'] },
        ],
      };
      await vrouterRun(lab, h.b, { document: bDoc, privateRun: true });
      const agent = (keys: typeof ak, address: string, endpoint: string, remote: string) => ({
        keys,
        addresses: [address],
        peers: [{ publicKey: bk.publicKey, endpoint, allowedIps: [remote], persistentKeepalive: 25 }],
        routes: [remote],
      });
      await cvlanWireguard(lab, c, agent(ck, '10.88.3.1/24', '198.51.100.1:51820', '10.88.1.0/24'));
      await cvlanWireguard(lab, h.a, agent(ak, '10.88.1.1/24', `${h.addrB}:51820`, '10.88.3.0/24'));
      await waitForPing(h.a, '10.88.3.1', 20_000, '10.88.1.1');
      return { target: '10.88.3.1', serverNs: c };
    },
  },
];

function translate(name: string, description: string, traced: boolean): SystemUnderTest {
  return {
    name,
    description,
    thisBuildOnly: traced,
    missing: () => cvlanTestbedMissing() ?? missingPrerequisites('charon', 'wg'),
    setup: async (lab, h) => {
      const key = psk();
      const c = await lab.namespace('c');
      await lab.veth({ ns: h.b, addresses: ['198.51.100.1/24'] }, { ns: c, addresses: ['198.51.100.2/24'] });
      const [bk, ck] = [await genKeyPair(), await genKeyPair()];
      const bDoc = {
        ...siteDoc({ self: 'b', psk: key, local: '10.88.3.0/24', remote_subnet: '10.88.1.0/24', esp: 'aes256gcm16' }),
        wireguard: { listen_port: 51820, private_key: bk.privateKey },
        wireguard_peers: [{ name: 'agent', public_key: ck.publicKey, allowed_ips: ['10.88.3.1/32'] }],
      };
      // A private /run: the translator's UAPI socket (/var/run/wireguard/wg-bench.sock) is per host,
      // and a compared build runs a second translator of the same tenant in the same run.
      const b = await vrouterRun(lab, h.b, { document: bDoc, listenAddress: h.addrB, privateRun: true });
      await cvlanWireguard(lab, c, {
        keys: ck,
        addresses: ['10.88.3.1/24'],
        peers: [{ publicKey: bk.publicKey, endpoint: '198.51.100.1:51820', allowedIps: ['10.88.1.0/24'], persistentKeepalive: 25 }],
        routes: ['10.88.1.0/24'],
      });
      const a = await vrouterRun(lab, h.a, {
        document: siteDoc({ self: 'a', remote: h.addrB, psk: key, local: '10.88.1.0/24', remote_subnet: '10.88.3.0/24', esp: 'aes256gcm16' }),
        listenAddress: h.addrA,
      });
      await lab.addAddress(h.a, a.ready.ipsec!.interface, '10.88.1.1/32');
      await waitForPing(h.a, '10.88.3.1', 20_000, '10.88.1.1');
      if (traced) {
        for (const v of [a, b]) {
          const r = await adminRequest({ kind: 'unix', socketPath: v.admin }, 'POST', '/v1/trace/start?count=100000&prefix=192.0.2.0/24');
          if (r.status !== 200) throw new Error(`${name}: trace start answered ${r.status} ${r.body}`);
        }
      }
      return { target: '10.88.3.1', serverNs: c };
    },
  };
}

