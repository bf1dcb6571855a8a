// Split brain of an active-passive pair with IPsec and WireGuard peers: the sync channel between
// the two nodes is cut (its TCP port dropped by nftables in both namespaces) while both nodes live
// and VRRP still passes. The setup of `ha-failover.test.ts` (`haTunnelPair`), iperf3 UDP both
// ways between the WireGuard agent and the IPsec router (through both tunnels) over the cut:
//
//   - exactly one node holds the VIP at every sample (the active; the standby stays passive);
//   - the flow goes on through the active in both directions;
//   - in the capture of everything both nodes sent, no (receiver index, counter) and no
//     (SPI, sequence number) twice, and nothing at all from the standby;
//   - when the cut heals, the standby is resynced (the channel live again, the WireGuard session,
//     the ESP SAs, the PASSIVE IKE_SA) and the router's IKE_SA is the one it had: no new IKE_SA
//     (charon's ha plugin resyncs by rekeying the CHILD_SA under it);
//   - the resync is real: the active SIGKILLed after the heal, the standby takes over with the
//     counters it got back (no nonce twice across the cut and the takeover, the IKE_SA unchanged).
import t from 'tap';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { useLab, closeLab } from '../harness/tap.js';
import { cvlanTestbedMissing } from '../harness/cvlan.js';
import { sleep } from '../harness/exec.js';
import { waitForPing } from '../harness/ping.js';
import { missingPrerequisites, resolveTool, tools } from '../harness/tools.js';
import {
  HA_LEGACY as LEGACY,
  HA_OURS as OURS,
  HA_SERVICE as SERVICE,
  HA_WG_PORT as WG_PORT,
  capturedPackets,
  haTunnelPair,
  hasVip,
  haView,
  iperfSilence,
  killTree,
  nodeSas,
  repeatedNonces,
  saIds,
  translatedIperf,
  until,
} from '../harness/ha-pair.js';

const skip =
  cvlanTestbedMissing() ??
  missingPrerequisites('wg', 'wireguardGo', 'ping', 'setpriv', 'charon', 'swanctl', 'iperf3', 'nft') ??
  (resolveTool('/usr/sbin/keepalived') ? undefined : 'keepalived is not installed (scripts/setup.sh)') ??
  (resolveTool('tcpdump') ? undefined : 'tcpdump is not installed (scripts/setup.sh)');

/** `[ha] sync_port` of `haPairToml`. */
const SYNC_PORT = 4611;

t.test('split brain: sync channel cut, both nodes alive: one node on the VIP, traffic on, no nonce twice, resync without a new IKE_SA', { skip }, async (t) => {
  const lab = useLab(t, { label: 'hasb' });
  const setup = await haTunnelPair(lab, 'split');
  const { pair, nsS, a, b, legacy, dump, capture } = setup;
  const { nsA, nsB, nsP } = pair;
  const sas0 = saIds((await legacy.listSas()).raw);
  t.ok(sas0, `IPsec: the router's IKE_SA (${JSON.stringify(sas0)})`);
  const synced0 = await haView(b);

  const flows = await translatedIperf(lab, setup, { seconds: 10 });
  await sleep(1500);

  // The cut: the sync channel's TCP port dropped both ways on both nodes; VRRP untouched.
  const cut = join(lab.dir, 'sync-cut.nft');
  writeFileSync(
    cut,
    `table inet hafo_sync {\n  chain input {\n    type filter hook input priority 0; policy accept;\n    tcp dport ${SYNC_PORT} drop\n    tcp sport ${SYNC_PORT} drop\n  }\n` +
      `  chain output {\n    type filter hook output priority 0; policy accept;\n    tcp dport ${SYNC_PORT} drop\n    tcp sport ${SYNC_PORT} drop\n  }\n}\n`,
  );
  for (const ns of [nsA, nsB]) await lab.exec(ns, tools.nft, ['-f', cut]);
  const cutAt = Date.now();
  await until('both nodes to lose the sync peer', async () => (await haView(a)).peer_connected === false && (await haView(b)).peer_connected === false, 15_000);
  t.comment(`sync peer lost on both nodes ${Date.now() - cutAt} ms after the cut`);

  const samples: Array<[boolean, boolean]> = [];
  for (let i = 0; i < 15; i++) {
    samples.push([await hasVip(lab, nsA), await hasVip(lab, nsB)]);
    await sleep(200);
  }
  t.same(samples.filter(([x, y]) => x === y), [], 'sync cut: exactly one node holds the VIP at every sample');
  t.ok(samples.every(([x]) => x), 'it is A, the active');
  t.match(await haView(a), { role: 'active', peer_connected: false }, 'A: active, alone');
  const bCut = await haView(b);
  const framesAtCut = Number(bCut.sync_frames_received);
  t.match(bCut, { role: 'standby', peer_connected: false }, 'B: standby, passive');
  t.comment(`B over the cut: ${String(bCut.synced_wireguard_sessions)} WireGuard sessions, ${String(bCut.synced_esp_sas)} ESP SAs kept`);

  for (const f of flows) await f.process.exited;
  for (const f of flows) {
    const s = iperfSilence(f);
    t.comment(
      `iperf3 ${f.what}: ${s.datagrams} datagrams received in ${s.intervals} intervals, ${s.lostPercent.toFixed(1)} % lost; ` +
        `${s.lostMs.toFixed(0)} ms of it; longest silence ${s.silentMs.toFixed(0)} ms (gap < ${s.gapBoundMs.toFixed(0)} ms)`,
    );
    t.equal(s.error, undefined, `iperf3 ${f.what}: ran to the end`);
    t.ok(s.intervals >= 90 && s.datagrams > 1000, `iperf3 ${f.what}: received through the whole run`);
    t.ok(s.gapBoundMs <= 3000, `iperf3 ${f.what}: gap < ${s.gapBoundMs.toFixed(0)} ms <= 3000 ms over the cut`);
  }

  // The cut heals: the channel reconnects, the active sends its snapshot, its charon resyncs the
  // standby's (the IKE_SA PASSIVE there again).
  for (const ns of [nsA, nsB]) await lab.exec(ns, tools.nft, ['delete', 'table', 'inet', 'hafo_sync']);
  const healedAt = Date.now();
  await until('B resynced', async () => {
    const v = await haView(b);
    return v.peer_connected === true && v.synced_wireguard_sessions === synced0.synced_wireguard_sessions && Number(v.synced_esp_sas) >= 2 && / PASSIVE, /.test(await nodeSas(lab, b));
  }, 30_000);
  const bHealed = await haView(b);
  t.comment(`B resynced ${Date.now() - healedAt} ms after the heal: ${String(bHealed.synced_wireguard_sessions)} sessions, ${String(bHealed.synced_esp_sas)} ESP SAs (before the cut ${String(synced0.synced_esp_sas)})`);
  t.match(bHealed, { role: 'standby', peer_connected: true, synced_wireguard_sessions: synced0.synced_wireguard_sessions }, 'B: standby with the session again');
  t.ok(Number(bHealed.sync_frames_received) > framesAtCut && Number(bHealed.last_sync_age_ms) < 2000, `B: syncing again (${String(bHealed.sync_frames_received)} frames, last ${String(bHealed.last_sync_age_ms)} ms ago)`);
  t.ok(Number(bHealed.synced_esp_sas) >= 2, 'B: the ESP SAs again');
  t.match(await haView(a), { role: 'active', peer_connected: true, takeovers: 0 }, 'A: still active, never taken over');
  const sas1 = saIds((await legacy.listSas()).raw);
  t.equal(sas1?.ike, sas0!.ike, "the router's IKE_SA unchanged (unique id, SPIs): no new IKE_SA");
  t.equal(sas1?.ikeState, 'ESTABLISHED', "the router's IKE_SA established");
  // The active charon's ha plugin resyncs the standby's by rekeying each CHILD_SA (its design:
  // the sequence numbers are not in its sync): CREATE_CHILD_SA under the same IKE_SA.
  let installed: string[] = [];
  await until('one CHILD_SA installed at the router', async () => {
    installed = [...(await legacy.listSas()).raw.matchAll(/^\s+\S+: #(\d+), reqid \d+, INSTALLED,/gm)].map((m) => `#${m[1]}`);
    return installed.length === 1;
  }, 10_000);
  t.comment(`the router's CHILD_SA: ${installed.join(', ')} (${sas0!.child.split(' ')[0]} before the cut)`);
  await waitForPing(nsP, SERVICE, 10_000);
  await waitForPing(nsS, OURS.lan, 10_000, LEGACY.lan);

  // The standby's counters came back with the resync: a takeover now continues every flow beyond
  // whatever A sent over the cut. Pings through both tunnels while A is SIGKILLed.
  const pingers = [
    lab.spawn('ping-wg', tools.ping, ['-n', '-q', '-i', '0.05', '-w', '5', SERVICE], { ns: nsP }),
    lab.spawn('ping-esp', tools.ping, ['-n', '-q', '-i', '0.05', '-w', '5', '-I', LEGACY.lan, OURS.lan], { ns: nsS }),
  ];
  await sleep(1000);
  const killedAt = killTree(a.process.pid);
  await a.process.exited;
  await until('B active', async () => (await haView(b)).role === 'active');
  for (const p of pingers) await p.exited;
  await waitForPing(nsP, SERVICE, 10_000);
  await waitForPing(nsS, OURS.lan, 10_000, LEGACY.lan);
  t.equal(saIds((await legacy.listSas()).raw)?.ike, sas0!.ike, "after the takeover: the router's IKE_SA unchanged");

  await sleep(500);
  await dump.stop();
  const sent = capturedPackets(capture, { wgPort: WG_PORT }).filter((p) => p.srcMac === pair.macA || p.srcMac === pair.macB);
  for (const kind of ['wireguard', 'esp'] as const) {
    const fromA = sent.filter((p) => p.kind === kind && p.srcMac === pair.macA);
    const fromB = sent.filter((p) => p.kind === kind && p.srcMac === pair.macB);
    t.ok(fromA.length > 1000, `${kind}: ${fromA.length} packets from A`);
    t.equal(fromB.filter((p) => p.at < killedAt).length, 0, `${kind}: nothing from the standby before the takeover, cut or not`);
    t.ok(fromB.length > 20, `${kind}: ${fromB.length} packets from B after the takeover`);
  }
  t.same(repeatedNonces(sent), [], 'no (receiver index, counter) and no (SPI, sequence number) sent twice, across the cut and the takeover');

  await closeLab(t, lab);
});
