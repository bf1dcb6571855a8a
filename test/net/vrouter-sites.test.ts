// Two cvlan-vrouters linking sites, each with a LAN namespace behind it (hosts, not the vrouters,
// talk), and live reconcile on one of them: a tunnel and a WireGuard peer added and removed by
// SIGHUP while a UDP iperf3 flow runs through the site tunnel, which must lose no packet.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { adminGet } from '../../src/api/client.js';
import type { TunnelView } from '../../src/api/state.js';
import { useLab, closeLab } from '../harness/tap.js';
import type { Lab } from '../harness/lab.js';
import { twoHosts } from '../harness/topology.js';
import { vrouterRun, type VrouterRun } from '../harness/vrouter.js';
import { genKeyPair } from '../harness/wireguard.js';
import { cvlanTestbedMissing } from '../harness/cvlan.js';
import { missingPrerequisites } from '../harness/tools.js';
import { ping, waitForPing, iperfServer, iperfClient } from '../harness/ping.js';

const skip = cvlanTestbedMissing() ?? missingPrerequisites('charon', 'iperf3');
const LAN_A = { net: '10.88.1.0/24', gw: '10.88.1.1', host: '10.88.1.10' };
const LAN_B = { net: '10.88.2.0/24', gw: '10.88.2.1', host: '10.88.2.10' };

interface Sites {
  a: VrouterRun;
  b: VrouterRun;
  lanA: string;
  lanB: string;
  docA: Record<string, unknown>;
}

function siteTunnel(self: 'a' | 'b', psk: string, remote?: string): Record<string, unknown> {
  return {
    id: 'site',
    type: 'ipsec',
    local_id: `${self}.sites.cvlan`,
    remote_id: `${self === 'a' ? 'b' : 'a'}.sites.cvlan`,
    ...(remote ? { remote_address: remote } : {}),
    auth: { method: 'psk', psk },
    local_subnets: [self === 'a' ? LAN_A.net : LAN_B.net],
    remote_subnets: [self === 'a' ? LAN_B.net : LAN_A.net],
    proposals: { ike: ['aes256gcm16-prfsha256-x25519'], esp: ['aes256gcm16'] },
  };
}

/** A LAN namespace behind `router` (a host at `lan.host`, the router at `lan.gw`). */
async function lanBehind(lab: Lab, router: string, lan: typeof LAN_A, word: string): Promise<string> {
  const ns = await lab.namespace(word);
  await lab.veth({ ns, addresses: [`${lan.host}/24`] }, { ns: router, addresses: [`${lan.gw}/24`] });
  await lab.addRoute(ns, 'default', { via: lan.gw });
  return ns;
}

async function sites(lab: Lab, extraA: Record<string, unknown> = {}): Promise<Sites> {
  const h = await twoHosts(lab);
  const lanA = await lanBehind(lab, h.a, LAN_A, 'lana');
  const lanB = await lanBehind(lab, h.b, LAN_B, 'lanb');
  const psk = randomBytes(24).toString('base64');
  const b = await vrouterRun(lab, h.b, { listenAddress: h.addrB, document: { vrouter_id: 'b', tenant_id: 'sites', tunnels: [siteTunnel('b', psk)] } });
  const docA = { vrouter_id: 'a', tenant_id: 'sites', tunnels: [siteTunnel('a', psk, h.addrB)], ...extraA };
  const a = await vrouterRun(lab, h.a, { listenAddress: h.addrA, logLevel: 'info', document: docA });
  return { a, b, lanA, lanB, docA };
}

/** Rewrites the document, sends SIGHUP and waits for this reload's `config_applied`. */
async function reload(v: VrouterRun, doc: object): Promise<void> {
  const since = Date.now();
  writeFileSync(v.config, JSON.stringify(doc));
  v.process.signal('SIGHUP');
  await v.process.waitReady({
    line: (l) => {
      const m = /"time":"([^"]+)"/.exec(l);
      return l.includes('"event":"config_applied"') && m !== null && Date.parse(m[1]!) >= since;
    },
    timeoutMs: 10_000,
  });
}

t.test('site to site: hosts behind two cvlan-vrouters reach each other', { skip }, async (t) => {
  const lab = useLab(t, { label: 'sites' });
  const s = await sites(lab);
  t.ok((await waitForPing(s.lanA, LAN_B.host, 20_000)).received > 0, 'host A → host B through both vrouters');
  t.equal((await ping(s.lanB, LAN_A.host, { count: 3 })).received, 3, 'host B → host A');
  await iperfServer(lab, s.lanB, { bind: LAN_B.host });
  const up = await iperfClient(s.lanA, LAN_B.host, { duration: 2 });
  t.ok(up.bitsPerSecond > 100e6, `iperf3 A → B ${(up.bitsPerSecond / 1e6).toFixed(0)} Mbit/s`);
  const down = await iperfClient(s.lanA, LAN_B.host, { duration: 2, reverse: true });
  t.ok(down.bitsPerSecond > 100e6, `iperf3 B → A ${(down.bitsPerSecond / 1e6).toFixed(0)} Mbit/s`);
  const view = (JSON.parse((await adminGet({ kind: 'unix', socketPath: s.a.admin }, '/v1/tunnels')).body) as { tunnels: TunnelView[] }).tunnels[0];
  t.ok((view?.child_sas[0]?.bytes_out ?? 0) >= up.bytes, 'the site tunnel carried the transfer');
  await closeLab(t, lab);
});

t.test('live reconcile: a tunnel and a peer added and removed while UDP flows through another tunnel, no loss', { skip }, async (t) => {
  const lab = useLab(t, { label: 'live' });
  const wgA = await genKeyPair();
  const peer1 = await genKeyPair();
  const s = await sites(lab, {
    wireguard: { listen_port: 51820, private_key: wgA.privateKey },
    wireguard_peers: [{ name: 'agent-1', public_key: peer1.publicKey, allowed_ips: ['10.77.0.1/32'] }],
  });
  await waitForPing(s.lanA, LAN_B.host, 20_000);
  await iperfServer(lab, s.lanB, { bind: LAN_B.host });
  // UDP at a fixed rate: every lost datagram shows (TCP would hide a loss in a retransmission).
  // 30 Mbit/s is lossless here without reloads; at 200 Mbit/s this 2-vCPU machine loses ≈ 2 %
  // with or without reloads (queues under CPU contention), which would hide what is measured.
  // A 2 MiB socket buffer: with the default one the receiving iperf3, descheduled on this loaded
  // machine, overflows its own socket (RcvbufErrors) — a loss that is not the vrouter's.
  const flow = iperfClient(s.lanA, LAN_B.host, { duration: 8, udpBitrate: 30e6, udpLength: 1200, window: 2 << 20 });
  // Settled now, awaited at the end: a failure must not go unhandled while the reloads run.
  const result = flow.then(
    (r) => ({ r }),
    (e: unknown) => ({ e: e as Error }),
  );

  await new Promise((r) => setTimeout(r, 1500));
  const peer2 = await genKeyPair();
  const grown = {
    ...s.docA,
    tunnels: [
      ...(s.docA.tunnels as object[]),
      {
        id: 'branch',
        type: 'ipsec',
        remote_id: 'branch.sites.cvlan',
        auth: { method: 'psk', psk: randomBytes(24).toString('base64') },
        local_subnets: [LAN_A.net],
        remote_subnets: ['10.88.9.0/24'],
      },
    ],
    wireguard_peers: [...(s.docA.wireguard_peers as object[]), { name: 'agent-2', public_key: peer2.publicKey, allowed_ips: ['10.77.0.2/32'] }],
  };
  await reload(s.a, grown);
  const tunnels = (JSON.parse((await adminGet({ kind: 'unix', socketPath: s.a.admin }, '/v1/tunnels')).body) as { tunnels: TunnelView[] }).tunnels;
  t.same(tunnels.map((x) => x.id).sort(), ['branch', 'site'], 'the tunnel was added');
  const peers = JSON.parse((await adminGet({ kind: 'unix', socketPath: s.a.admin }, '/v1/peers')).body) as { peers: { public_key: string }[] };
  t.ok(peers.peers.some((p) => p.public_key === peer2.publicKey), 'the peer was added');

  await new Promise((r) => setTimeout(r, 1500));
  await reload(s.a, s.docA);
  const after = (JSON.parse((await adminGet({ kind: 'unix', socketPath: s.a.admin }, '/v1/tunnels')).body) as { tunnels: TunnelView[] }).tunnels;
  t.same(after.map((x) => x.id), ['site'], 'the tunnel was removed');

  const settled = await result;
  if ('e' in settled) throw settled.e;
  const r = settled.r;
  t.equal(r.lostPercent, 0, `UDP through the untouched tunnel: ${r.lostPercent}% lost at ${(r.bitsPerSecond / 1e6).toFixed(0)} Mbit/s across both reloads`);
  await closeLab(t, lab);
});
