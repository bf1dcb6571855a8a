// Failover of an active-passive pair as peers see it: two `cvlan-vrouter run` with `[ha]` behind
// the VIP, a WireGuard agent (wireguard-go) and a legacy IPsec router (strongSwan charon with
// kernel-libipsec, initiating to the VIP, DPD every 2 s). Traffic through both tunnels while the
// active daemon and everything it started (charon, keepalived) are SIGKILLed at once: a ping every
// 20 ms through each tunnel, and iperf3 UDP both ways between the agent and the router (translated
// by the pair: WireGuard in, ESP out, and back):
//
//   - the longest gap per protocol: between ping replies (round trip), between the packets the
//     pair sent (pair → peer, from a capture on the bridge), and per direction of the iperf3 flow
//     (its receiver's 0.1 s intervals);
//   - wireguard-go's latest handshake unchanged; the strongSwan router's IKE_SA (unique id, SPIs)
//     and CHILD_SA (unique id, SPIs) unchanged: no peer negotiated anything because of the failover;
//   - in the capture of everything both nodes sent, no (receiver index, counter) and no
//     (SPI, sequence number) twice;
//   - the new active's charon owns the IKE_SA: it answers a CHILD_SA rekey the router asks for;
//   - rejoin: the old active, started again, comes back standby and receives the IKE_SA (charon's
//     ha plugin) and the WireGuard session (the sync channel) again.
import t from 'tap';
import { join } from 'node:path';
import { useLab, closeLab } from '../harness/tap.js';
import { cvlanTestbedMissing } from '../harness/cvlan.js';
import { run, sleep } from '../harness/exec.js';
import { waitForPing } from '../harness/ping.js';
import { missingPrerequisites, resolveTool, tools } from '../harness/tools.js';
import {
  HA_LEGACY as LEGACY,
  HA_OURS as OURS,
  HA_SERVICE as SERVICE,
  HA_WG_PORT as WG_PORT,
  capturedPackets,
  childSpis,
  haTunnelPair,
  hasVip,
  haView,
  iperfSilence,
  killTree,
  longestGap,
  nodeSas,
  pingReplies,
  repeatedNonces,
  saIds,
  translatedIperf,
  until,
} from '../harness/ha-pair.js';

const skip =
  cvlanTestbedMissing() ??
  missingPrerequisites('wg', 'wireguardGo', 'ping', 'setpriv', 'charon', 'swanctl', 'iperf3') ??
  (resolveTool('/usr/sbin/keepalived') ? undefined : 'keepalived is not installed (scripts/setup.sh)') ??
  (resolveTool('tcpdump') ? undefined : 'tcpdump is not installed (scripts/setup.sh)');

t.test('failover: the standby carries the WireGuard session and the IKE_SA/CHILD_SA on; no peer negotiates, no nonce twice', { skip }, async (t) => {
  const lab = useLab(t, { label: 'hafo' });
  const setup = await haTunnelPair(lab, 'failover');
  const { pair, nsS, a, b, agent: peer, legacy, dump, capture } = setup;
  const { nsA, nsP } = pair;
  const hs0 = (await peer.show()).peers[0]?.latestHandshake ?? 0;
  t.ok(hs0 > 0, 'WireGuard: a handshake with the active node through the VIP');
  const sas0 = saIds((await legacy.listSas()).raw);
  t.ok(sas0, `IPsec: the router's IKE_SA and CHILD_SA (${JSON.stringify(sas0)})`);
  const onB = await nodeSas(lab, b);
  t.match(onB, new RegExp(`${sas0!.ike.split(' ')[1]!.replace('_i', '_i\\*?')} ${sas0!.ike.split(' ')[2]!.replace('_r', '_r\\*?')}`), "B's charon: the same IKE_SA SPIs");
  t.same(childSpis(onB), childSpis((await legacy.listSas()).raw), "B's charon: the same CHILD_SA SPIs, installed");

  // Both tunnels busy for the whole failover: a ping every 20 ms through each, and iperf3 UDP
  // (2 Mbit/s each way) through both at once.
  const flows = await translatedIperf(lab, setup, { seconds: 9 });
  const wgLog = join(lab.dir, 'ping-wg.log');
  const espLog = join(lab.dir, 'ping-esp.log');
  const pingers = [
    lab.spawn('ping-wg', 'sh', ['-c', `exec ${tools.ping} -D -n -i 0.02 -w 8 ${SERVICE} > ${wgLog}`], { ns: nsP }),
    lab.spawn('ping-esp', 'sh', ['-c', `exec ${tools.ping} -D -n -i 0.02 -w 8 -I ${LEGACY.lan} ${OURS.lan} > ${espLog}`], { ns: nsS }),
  ];
  await sleep(2500);

  // The active daemon and everything under it in one go: no handler runs anywhere.
  const killedAt = killTree(a.process.pid);
  await a.process.exited;
  await until('B active', async () => (await haView(b)).role === 'active');
  t.ok(await hasVip(lab, pair.nsB), 'the VIP moved to B');
  for (const p of pingers) await p.exited;
  for (const f of flows) await f.process.exited;

  /** Per protocol, the time span of the ping flow (first to last reply): the window of the capture gaps. */
  const flow = new Map<string, [number, number]>();
  for (const [what, log] of [
    ['wireguard', wgLog],
    ['esp', espLog],
  ] as const) {
    const replies = pingReplies(log);
    flow.set(what, [replies[0] ?? 0, replies.at(-1) ?? 0]);
    const before = replies.filter((x) => x < killedAt).length;
    const gap = longestGap(replies);
    t.comment(`${what}: longest gap between replies ${gap.toFixed(0)} ms (${before} replies before the kill, ${replies.length - before} after)`);
    t.ok(before > 20 && replies.length - before > 20, `${what}: replies before and after the kill`);
    t.ok(gap <= 3000, `${what}: round-trip gap ${gap.toFixed(0)} ms <= 3000 ms`);
  }
  // iperf3: what each direction's receiver got, 0.1 s at a time.
  for (const f of flows) {
    const s = iperfSilence(f);
    t.comment(
      `iperf3 ${f.what}: ${s.datagrams} datagrams received in ${s.intervals} intervals, ${s.lostPercent.toFixed(1)} % lost; ` +
        `${s.lostMs.toFixed(0)} ms of it; longest silence ${s.silentMs.toFixed(0)} ms` +
        (s.silentMs > 0 ? ` from ${(s.silentFrom - killedAt).toFixed(0)} ms after the kill` : '') +
        ` (gap < ${s.gapBoundMs.toFixed(0)} ms)`,
    );
    t.equal(s.error, undefined, `iperf3 ${f.what}: ran to the end`);
    t.ok(s.intervals >= 80 && s.datagrams > 1000, `iperf3 ${f.what}: received through the whole run`);
    t.ok(s.gapBoundMs <= 3000, `iperf3 ${f.what}: gap < ${s.gapBoundMs.toFixed(0)} ms <= 3000 ms`);
  }
  t.equal((await peer.show()).peers[0]?.latestHandshake ?? 0, hs0, "wireguard-go's latest handshake unchanged");
  const sas1 = saIds((await legacy.listSas()).raw);
  t.same(sas1, sas0, "the router's IKE_SA and CHILD_SA unchanged (unique ids, SPIs): nothing negotiated");
  t.match(await haView(b), { role: 'active', takeovers: 1 }, 'B: active, one takeover');
  t.equal((await lab.exec(undefined, tools.ip, ['netns', 'pids', nsA])).stdout.trim(), '', 'nothing of A survived');

  // What the pair sent, both nodes: no nonce twice, nothing from B before the kill.
  await sleep(500);
  await dump.stop();
  const sent = capturedPackets(capture, { wgPort: WG_PORT }).filter((p) => p.srcMac === pair.macA || p.srcMac === pair.macB);
  for (const kind of ['wireguard', 'esp'] as const) {
    const fromA = sent.filter((p) => p.kind === kind && p.srcMac === pair.macA);
    const fromB = sent.filter((p) => p.kind === kind && p.srcMac === pair.macB);
    const [from, to] = flow.get(kind)!;
    const gap = longestGap(sent.filter((p) => p.kind === kind && p.at >= from && p.at <= to).map((p) => p.at));
    t.comment(`${kind}: ${fromA.length} packets from A, ${fromB.length} from B; longest gap pair → peer ${gap.toFixed(0)} ms`);
    // 2 Mbit/s of 1200-byte datagrams for 2.5 s before the kill: several hundred from A alone.
    t.ok(fromA.length > 300 && fromB.length > 300, `${kind}: the pings and the iperf3 flow sent by A, then by B`);
    t.equal(fromB.filter((p) => p.at < killedAt).length, 0, `${kind}: the standby sent nothing while passive`);
    t.ok(gap <= 3000, `${kind}: gap pair → peer ${gap.toFixed(0)} ms <= 3000 ms`);
  }
  t.same(repeatedNonces(sent), [], 'no (receiver index, counter) and no (SPI, sequence number) sent twice');

  // B's charon owns the IKE_SA: it answers a CHILD_SA rekey (and the DPDs before it).
  await legacy.swanctl(['--rekey', '--child', legacy.name]);
  await until('a new CHILD_SA', async () => {
    const s = saIds((await legacy.listSas()).raw);
    return s !== undefined && s.childState === 'INSTALLED' && s.child !== sas0!.child;
  });
  t.equal(saIds((await legacy.listSas()).raw)?.ike, sas0!.ike, 'rekeyed under the same IKE_SA');
  await waitForPing(nsS, OURS.lan, 10_000, LEGACY.lan);

  // Rejoin: A comes back standby and gets the IKE_SA from B's charon and the session from B's data plane.
  const a2 = await setup.start(nsA, 1);
  await until('A standby again with the session and the IKE_SA', async () => {
    const v = await haView(a2);
    return v.role === 'standby' && v.synced_wireguard_sessions === setup.keypairs && Number(v.synced_esp_sas) >= 2 && / PASSIVE, /.test(await nodeSas(lab, a2));
  }, 30_000);
  t.notOk(await hasVip(lab, nsA), 'A did not take the VIP back (no preemption)');
  t.equal(saIds((await legacy.listSas()).raw)?.ike, sas0!.ike, 'the same IKE_SA after the rejoin');
  const r = await run(tools.ping, ['-c', '5', '-i', '0.2', '-W', '2', '-I', LEGACY.lan, OURS.lan], { ns: nsS, timeoutMs: 10_000 }).catch((e: unknown) => e as Error);
  t.notOk(r instanceof Error, 'IPsec traffic still through B');

  await closeLab(t, lab);
});
