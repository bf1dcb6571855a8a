// cvlan-vrouter's IPsec (charon + cvlan plugin for IKEv2, ESP in the Rust workers) against
// strongSwan charon with kernel-libipsec as the legacy router, in namespaces: every ESP cipher
// the issue names, in both initiator roles; the legacy router behind NAT; `swanctl --list-sas` on
// our charon reporting the data plane's counters; our charon SIGKILLed during traffic; ESN
// between two cvlan-vrouters (kernel-libipsec refuses ESN); and ESP without UDP between two
// cvlan-vrouters (kernel-libipsec only does ESP-in-UDP), falling back to UDP through NAT.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { adminGet } from '../../src/api/client.js';
import type { TunnelView } from '../../src/api/state.js';
import { useLab, closeLab } from '../harness/tap.js';
import { twoHosts, natTopology } from '../harness/topology.js';
import { vrouterRun } from '../harness/vrouter.js';
import { site, waitUp, OURS, LEGACY } from '../harness/ipsec-site.js';
import { cvlanTestbedMissing } from '../harness/cvlan.js';
import { missingPrerequisites, tools } from '../harness/tools.js';
import { run } from '../harness/exec.js';
import { ping, waitForPing, iperfServer, iperfClient } from '../harness/ping.js';

const skip = cvlanTestbedMissing() ?? missingPrerequisites('charon', 'swanctl', 'iperf3', 'nft');
const CIPHERS: [string, RegExp][] = [
  ['aes128gcm16', /AES_GCM_16_128/],
  ['aes256gcm16', /AES_GCM_16_256/],
  ['chacha20poly1305', /CHACHA20_POLY1305/],
  ['aes256-sha256', /AES_CBC_256/],
];

for (const [esp, alg] of CIPHERS) {
  for (const weInitiate of [false, true]) {
    t.test(`${esp}, ${weInitiate ? 'we' : 'the legacy router'} initiate${weInitiate ? '' : 's'}`, { skip }, async (t) => {
      const lab = useLab(t, { label: 'esp' });
      const h = await twoHosts(lab);
      const s = await site(lab, { esp, weInitiate, ours: [h.a, h.addrA], legacy: [h.b, h.addrB] });
      const view = await waitUp(s);
      t.match(view.child_sas[0]?.algorithms.encryption ?? '', alg, `negotiated ${esp}`);
      if (esp === 'aes256-sha256') t.match(view.child_sas[0]?.algorithms.integrity ?? '', /HMAC_SHA2_256/, 'integrity HMAC-SHA-256');
      t.ok((await waitForPing(h.a, LEGACY.lan, 15_000, OURS.lan)).received > 0, 'ours → legacy');
      t.equal((await ping(h.b, OURS.lan, { count: 3, source: LEGACY.lan })).received, 3, 'legacy → ours');
      await iperfServer(lab, h.b, { bind: LEGACY.lan });
      const up = await iperfClient(h.a, LEGACY.lan, { duration: 1 });
      t.ok(up.bitsPerSecond > 20e6, `iperf3 ${(up.bitsPerSecond / 1e6).toFixed(0)} Mbit/s`);
      await closeLab(t, lab);
    });
  }
}

t.test('legacy router behind NAT: ESP-in-UDP through masquerade', { skip }, async (t) => {
  const lab = useLab(t, { label: 'espnat' });
  const n = await natTopology(lab);
  // The legacy router sits inside, we are outside; only it can initiate.
  const s = await site(lab, { esp: 'aes256gcm16', weInitiate: false, ours: [n.outside, n.outsideAddr], legacy: [n.inside, n.insideAddr] });
  const view = await waitUp(s);
  t.ok(view.ike_sa !== null, 'IKE_SA through NAT');
  const raw = (await run(tools.swanctl, ['--list-sas', '--uri', `unix://${s.ours.charonVici}`], { ns: n.outside })).stdout;
  t.match(raw, /203\.0\.113\.1\[4500\]|NAT|UDP_ENCAP/, 'our charon sees the peer at the NAT router, on 4500');
  t.ok((await waitForPing(n.outside, LEGACY.lan, 15_000, OURS.lan)).received > 0, 'ours → legacy through NAT');
  t.equal((await ping(n.inside, OURS.lan, { count: 3, source: LEGACY.lan })).received, 3, 'legacy → ours through NAT');
  await closeLab(t, lab);
});

t.test('swanctl --list-sas on our charon shows the data plane counters; charon killed, traffic goes on', { skip }, async (t) => {
  const lab = useLab(t, { label: 'espkill' });
  const h = await twoHosts(lab);
  const s = await site(lab, { esp: 'aes256gcm16', weInitiate: true, ours: [h.a, h.addrA], legacy: [h.b, h.addrB] });
  await waitUp(s);
  await waitForPing(h.a, LEGACY.lan, 15_000, OURS.lan);
  await iperfServer(lab, h.b, { bind: LEGACY.lan });
  const up = await iperfClient(h.a, LEGACY.lan, { duration: 1 });
  const listed = (await run(tools.swanctl, ['--list-sas', '--uri', `unix://${s.ours.charonVici}`], { ns: h.a })).stdout;
  // swanctl prints `out  c0ffee01,  80180388 bytes,  55000 packets, ...` per CHILD_SA.
  const bytesOut = Number(/\bout\s+[0-9a-f]{8}[^,\n]*,\s+(\d+) bytes/.exec(listed)?.[1] ?? 0);
  t.ok(bytesOut >= up.bytes, `swanctl: ${bytesOut} bytes out ≥ iperf3's ${up.bytes}`, { listed });

  // Our charon: the one process named charon in our namespace.
  const pids = (await run(tools.ip, ['netns', 'pids', h.a])).stdout.trim().split('\n').map(Number);
  const charon = pids.find((p) => {
    try {
      return readFileSync(`/proc/${p}/comm`, 'utf8').trim() === 'charon';
    } catch {
      return false;
    }
  });
  t.ok(charon !== undefined, 'found our charon');
  process.kill(charon!, 'SIGKILL');
  // charon is restarted after a 500 ms backoff: these pings all fall into the time it is gone.
  const down = await ping(h.a, LEGACY.lan, { count: 3, intervalMs: 100, source: OURS.lan });
  t.equal(down.received, 3, 'installed SAs keep forwarding while charon is down');
  // The new charon flushes the SAs it does not know and negotiates fresh ones; the data plane
  // keeps the old ones forwarding until they are replaced (docs/charon-plugin.md, "charon
  // restarts"). The legacy router deletes its old SAs when the new IKE_SA arrives, which can
  // cost a packet in flight; a gap (≈ 200 ms, 2 pings, before orphaning) would cost more.
  const across = await ping(h.a, LEGACY.lan, { count: 40, intervalMs: 100, source: OURS.lan });
  t.ok(across.received >= 39, `${across.received}/40 pings across charon's restart and re-negotiation`);
  await s.ours.process.waitReady({ line: /"event":"charon_restart"/, timeoutMs: 10_000 });
  t.pass('charon restart logged');
  const back = await waitUp(s, 30_000);
  t.ok(back.ike_sa !== null, 'the tunnel is listed again by the new charon');
  t.ok(readdirSync('/proc').includes(String(s.ours.process.pid)), 'the daemon kept running');
  t.equal((await ping(h.a, LEGACY.lan, { count: 3, source: OURS.lan })).received, 3, 'traffic after the restart');
  await closeLab(t, lab);
});

/**
 * Two cvlan-vrouters, A (initiating to B at `bSeenByA`) and B, 10.88.1.0/24 behind A and
 * 10.88.2.0/24 behind B; resolves once traffic passes, with A's tunnel view.
 */
async function vrouterPair(
  lab: Parameters<typeof vrouterRun>[0],
  a: [string, string],
  b: [string, string],
  bSeenByA: string,
  o: { esp?: string; espEncapsulation?: 'udp' | 'auto' } = {},
): Promise<{ view: TunnelView | undefined; ping: number }> {
  const psk = randomBytes(24).toString('base64');
  const doc = (self: 'a' | 'b', remote?: string): object => ({
    vrouter_id: self,
    tenant_id: 't1',
    tunnels: [
      {
        id: 'site',
        type: 'ipsec',
        local_id: `${self}.test.cvlan`,
        remote_id: `${self === 'a' ? 'b' : 'a'}.test.cvlan`,
        ...(remote ? { remote_address: remote } : {}),
        auth: { method: 'psk', psk },
        local_subnets: [self === 'a' ? OURS.net : LEGACY.net],
        remote_subnets: [self === 'a' ? LEGACY.net : OURS.net],
        ...(o.esp ? { proposals: { ike: ['aes256gcm16-prfsha256-x25519'], esp: [o.esp] } } : {}),
      },
    ],
  });
  const encap = o.espEncapsulation ? { espEncapsulation: o.espEncapsulation } : {};
  const vb = await vrouterRun(lab, b[0], { document: doc('b'), listenAddress: b[1], ...encap });
  const va = await vrouterRun(lab, a[0], { document: doc('a', bSeenByA), listenAddress: a[1], ...encap });
  await lab.addAddress(a[0], va.ready.ipsec!.interface, `${OURS.lan}/32`);
  await lab.addAddress(b[0], vb.ready.ipsec!.interface, `${LEGACY.lan}/32`);
  const received = (await waitForPing(a[0], LEGACY.lan, 20_000, OURS.lan)).received;
  const view = (JSON.parse((await adminGet({ kind: 'unix', socketPath: va.admin }, '/v1/tunnels')).body) as { tunnels: TunnelView[] }).tunnels[0];
  return { view, ping: received };
}

t.test('ESN between two cvlan-vrouters', { skip }, async (t) => {
  const lab = useLab(t, { label: 'esn' });
  const h = await twoHosts(lab);
  const pair = await vrouterPair(lab, [h.a, h.addrA], [h.b, h.addrB], h.addrB, { esp: 'aes256gcm16-esn' });
  t.ok(pair.ping > 0, 'traffic with ESN');
  t.equal(pair.view?.child_sas[0]?.algorithms.esn, true, 'ESN negotiated and reported');
  await closeLab(t, lab);
});

t.test('esp_encapsulation "auto": ESP without UDP between two cvlan-vrouters, ESP-in-UDP through NAT', { skip }, async (t) => {
  const lab = useLab(t, { label: 'rawesp' });
  const h = await twoHosts(lab);
  const direct = await vrouterPair(lab, [h.a, h.addrA], [h.b, h.addrB], h.addrB, { espEncapsulation: 'auto' });
  t.ok(direct.ping > 0, 'traffic over raw ESP');
  t.equal(direct.view?.child_sas[0]?.udp_encap, false, 'no NAT: ESP directly over IP (protocol 50)');
  await iperfServer(lab, h.b, { bind: LEGACY.lan });
  const up = await iperfClient(h.a, LEGACY.lan, { duration: 2 });
  t.ok(up.bitsPerSecond > 100e6, `iperf3 over raw ESP ${(up.bitsPerSecond / 1e6).toFixed(0)} Mbit/s`);
  await closeLab(t, lab);

  const lab2 = useLab(t, { label: 'rawnat' });
  const n = await natTopology(lab2);
  // A (inside, behind masquerade) initiates to B (outside): charon detects the NAT.
  const natted = await vrouterPair(lab2, [n.inside, n.insideAddr], [n.outside, n.outsideAddr], n.outsideAddr, { espEncapsulation: 'auto' });
  t.ok(natted.ping > 0, 'traffic through NAT');
  t.equal(natted.view?.child_sas[0]?.udp_encap, true, 'NAT detected: ESP-in-UDP');
  await closeLab(t, lab2);

  // kernel-libipsec requires UDP encapsulation (it fakes NAT detection): "auto" still interoperates.
  const lab3 = useLab(t, { label: 'rawlib' });
  const h3 = await twoHosts(lab3);
  const s = await site(lab3, { esp: 'aes256gcm16', weInitiate: true, ours: [h3.a, h3.addrA], legacy: [h3.b, h3.addrB], espEncapsulation: 'auto' });
  const view = await waitUp(s);
  t.equal(view.child_sas[0]?.udp_encap, true, 'with kernel-libipsec: ESP-in-UDP');
  t.ok((await waitForPing(h3.a, LEGACY.lan, 15_000, OURS.lan)).received > 0, 'traffic with kernel-libipsec');
  await closeLab(t, lab3);
});
