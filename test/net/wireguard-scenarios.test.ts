// cvlan-vrouter's WireGuard in the situations a real deployment meets, against wireguard-go and
// boringtun: the peer changes its endpoint (roaming), a hub removes and re-adds one peer while
// another carries iperf3, and a session lives past REKEY_AFTER_TIME (120 s) under traffic. The
// last one runs in real time (≈ 130 s, both implementations at once) on purpose: it is the only
// way to see two implementations agree on the rekey without a shared clock. Roaming is shown
// against wireguard-go only: boringtun 0.7 panics when its peer or port is changed over its UAPI,
// and it sends on a UDP socket connected per peer, so its source cannot move without that.
import t from 'tap';
import { useLab, closeLab } from '../harness/tap.js';
import { twoHosts } from '../harness/topology.js';
import { cvlanWireguard, wireguardGo, boringtun, wgPair, wgShow, genKeyPair } from '../harness/wireguard.js';
import { cvlanTestbedMissing } from '../harness/cvlan.js';
import { missingPrerequisites, tools } from '../harness/tools.js';
import { run, sleep } from '../harness/exec.js';
import { ping, waitForPing, iperfServer, iperfClient } from '../harness/ping.js';

const skip = cvlanTestbedMissing() ?? missingPrerequisites('wg', 'wireguardGo', 'boringtun', 'iperf3');
const PEERS = [
  ['wireguard-go', wireguardGo],
  ['boringtun', boringtun],
] as const;

t.test('roaming: our side follows wireguard-go to its new endpoint', { skip }, async (t) => {
  const lab = useLab(t, { label: 'roam' });
  const h = await twoHosts(lab);
  const [ours, peer] = await wgPair(lab, [h.a, h.b], [cvlanWireguard, wireguardGo], {
    underlay: [h.addrA, h.addrB],
    inner: ['10.99.0.1/24', '10.99.0.2/24'],
  });
  await waitForPing(h.a, '10.99.0.2', 15_000);
  t.equal((await wgShow(h.a, ours.name)).peers[0]?.endpoint, `${h.addrB}:51820`, 'endpoint as configured');

  // B moves to a new source port, as a NAT rebinding makes it look; B speaks first from there.
  await run(tools.wg, ['set', peer.name, 'listen-port', '51999'], { ns: h.b });
  t.ok((await waitForPing(h.b, '10.99.0.1', 15_000)).received > 0, 'B reaches A from its new port');
  t.equal((await wgShow(h.a, ours.name)).peers[0]?.endpoint, `${h.addrB}:51999`, 'our endpoint followed the authenticated packets');
  t.equal((await ping(h.a, '10.99.0.2', { count: 3 })).received, 3, 'A reaches B at the new endpoint');
  await closeLab(t, lab);
});

for (const [name, impl] of PEERS) {
t.test(`hub: removing and re-adding one peer does not disturb another ${name} peer’s flow`, { skip }, async (t) => {
  const lab = useLab(t, { label: 'hub' });
  const h = await twoHosts(lab);
  const c = await lab.namespace('c');
  await lab.veth({ ns: h.a, addresses: ['192.168.78.1/24'] }, { ns: c, addresses: ['192.168.78.2/24'] });
  const [ka, kb, kc] = [await genKeyPair(), await genKeyPair(), await genKeyPair()];
  const peerB = { publicKey: kb.publicKey, endpoint: `${h.addrB}:51820`, allowedIps: ['10.99.0.2/32'] };
  const peerC = { publicKey: kc.publicKey, endpoint: '192.168.78.2:51820', allowedIps: ['10.99.0.3/32'] };
  const hub = await cvlanWireguard(lab, h.a, { keys: ka, addresses: ['10.99.0.1/24'], peers: [peerB, peerC] });
  await impl(lab, h.b, { keys: kb, addresses: ['10.99.0.2/24'], peers: [{ publicKey: ka.publicKey, endpoint: `${h.addrA}:51820`, allowedIps: ['10.99.0.0/24'] }] });
  await impl(lab, c, { keys: kc, addresses: ['10.99.0.3/24'], peers: [{ publicKey: ka.publicKey, endpoint: '192.168.78.1:51820', allowedIps: ['10.99.0.0/24'] }] });
  await waitForPing(h.a, '10.99.0.2', 15_000);
  await waitForPing(h.a, '10.99.0.3', 15_000);

  await iperfServer(lab, h.b);
  const flow = iperfClient(h.a, '10.99.0.2', { duration: 6 });
  await sleep(1500);
  await run(tools.wg, ['set', hub.name, 'peer', kc.publicKey, 'remove'], { ns: h.a });
  t.equal((await ping(h.a, '10.99.0.3', { count: 2, wait: 1 })).received, 0, 'the removed peer is unreachable');
  await hub.setPeer(peerC);
  t.ok((await waitForPing(h.a, '10.99.0.3', 15_000)).received > 0, 'the re-added peer works again');
  const r = await flow;
  const intervals = ((r.json as { intervals?: { sum: { bits_per_second: number } }[] }).intervals ?? []).map((i) => i.sum.bits_per_second);
  t.ok(intervals.length >= 5, `${intervals.length} one-second intervals`);
  t.ok(
    intervals.every((b) => b > 20e6),
    `peer B's flow never stalled: ${intervals.map((b) => (b / 1e6).toFixed(0)).join(', ')} Mbit/s`,
  );
  await closeLab(t, lab);
});
}

t.test('rekey after 120 s under traffic, in real time, without a stall (wireguard-go and boringtun at once)', { skip, timeout: 240_000 }, async (t) => {
  const lab = useLab(t, { label: 'rekey' });
  const runs = await Promise.all(
    PEERS.map(async ([name, impl], i) => {
      const h = await twoHosts(lab, { v4Prefix: `192.168.${80 + i}`, v6Prefix: `fd8${i}::` });
      const [ours] = await wgPair(lab, [h.a, h.b], [cvlanWireguard, impl], {
        underlay: [h.addrA, h.addrB],
        inner: ['10.99.0.1/24', '10.99.0.2/24'],
      });
      await waitForPing(h.a, '10.99.0.2', 15_000);
      return { name, h, ours, first: (await wgShow(h.a, ours.name)).peers[0]!.latestHandshake };
    }),
  );
  // 10 pings a second for 130 s: a stall of a second would lose 10 of them.
  const pings = await Promise.all(runs.map((r) => ping(r.h.a, '10.99.0.2', { count: 1300, intervalMs: 100, wait: 2 })));
  for (const [i, r] of runs.entries()) {
    const p = pings[i]!;
    const after = (await wgShow(r.h.a, r.ours.name)).peers[0]!.latestHandshake;
    t.ok(after - r.first >= 110, `${r.name}: a new handshake ${after - r.first} s after the first`);
    t.ok(p.transmitted - p.received <= 3, `${r.name}: ${p.transmitted - p.received} of ${p.transmitted} pings lost across the rekey`);
  }
  await closeLab(t, lab);
});
