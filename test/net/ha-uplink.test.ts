// The active node loses its uplink while its daemon keeps running: the cable between it and the
// shared segment goes dead (its port on the bridge down, so the node's interface loses carrier —
// what a pulled cable or a dead switch port does; an administrative `ip link set down` on the
// node itself would be an operator's act, not a failure). The sync channel runs over the same
// link, so the standby hears neither VRRP nor the sync channel and takes over; the cut node's
// keepalived sees its interface go down (FAULT) and the node goes passive on its own. Peers see
// the same as for a SIGKILL (ha-failover.test.ts):
//
//   - the longest gap per protocol ≤ 3 s (round trip, ping every 20 ms through each tunnel);
//   - wireguard-go's latest handshake unchanged; the strongSwan router's IKE_SA and CHILD_SA
//     (unique ids, SPIs) unchanged;
//   - in a capture of the bridge, no (receiver index, counter) and no (SPI, sequence number) twice,
//     nothing from the standby before the cut, nothing from the cut node after it.
//
// Then the link comes back: the old active stays standby (no preemption), exactly one node holds
// the VIP, traffic goes on, it is resynced, and still no nonce twice.
import t from 'tap';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { useLab, closeLab } from '../harness/tap.js';
import { vrouterRun, type VrouterRun } from '../harness/vrouter.js';
import { wireguardGo, genKeyPair } from '../harness/wireguard.js';
import { strongswanPeer } from '../harness/strongswan.js';
import { cvlanTestbedMissing } from '../harness/cvlan.js';
import { sleep } from '../harness/exec.js';
import { waitForPing } from '../harness/ping.js';
import { missingPrerequisites, resolveTool, tools } from '../harness/tools.js';
import {
  HA_VIP as VIP,
  capturedPackets,
  haPairLab,
  haPairPeerNamespace,
  haPairToml,
  hasVip,
  haView,
  longestGap,
  pingReplies,
  settleWireguardGo,
  repeatedNonces,
  until,
} from '../harness/ha-pair.js';
import type { Lab } from '../harness/lab.js';

const skip =
  cvlanTestbedMissing() ??
  missingPrerequisites('wg', 'wireguardGo', 'ping', 'setpriv', 'charon', 'swanctl') ??
  (resolveTool('/usr/sbin/keepalived') ? undefined : 'keepalived is not installed (scripts/setup.sh)') ??
  (resolveTool('tcpdump') ? undefined : 'tcpdump is not installed (scripts/setup.sh)');

const SERVICE = '10.99.0.1';
const OURS = { lan: '10.88.1.1', net: '10.88.1.0/24', id: 'pair.test.cvlan' };
const LEGACY = { lan: '10.88.2.1', net: '10.88.2.0/24', id: 'legacy.test.cvlan', addr: '10.79.0.8' };
const WG_PORT = 51820;
/** How long the uplink stays cut, ms. */
const CUT_MS = 4000;

/** The router's IKE_SA and CHILD_SA identity in `swanctl --list-sas` (unique ids, SPIs). */
function saIds(listing: string): { ike: string; child: string } | undefined {
  const ike = /^\S+: #(\d+), \w+, IKEv2, ([0-9a-f]{16})_i\*? ([0-9a-f]{16})_r/m.exec(listing);
  const child = /^\s+\S+: #(\d+), reqid \d+, \w+,/m.exec(listing);
  const spiIn = /^\s+in\s+([0-9a-f]{8})/m.exec(listing);
  const spiOut = /^\s+out\s+([0-9a-f]{8})/m.exec(listing);
  if (!ike || !child || !spiIn || !spiOut) return undefined;
  return { ike: `#${ike[1]} ${ike[2]}_i ${ike[3]}_r`, child: `#${child[1]} in ${spiIn[1]} out ${spiOut[1]}` };
}

async function nodeSas(lab: Lab, v: VrouterRun): Promise<string> {
  return (await lab.exec(v.ns, tools.swanctl, ['--list-sas', '--uri', `unix://${v.charonVici}`])).stdout;
}

/** The bridge port (in the peers' namespace) that is the other end of `dev` in `ns`. */
async function bridgePortOf(lab: Lab, ns: string, dev: string, nsBridge: string): Promise<string> {
  const peerIndex = /@if(\d+):/.exec((await lab.ip(ns, ['-o', 'link', 'show', dev])).stdout)?.[1];
  const line = (await lab.ip(nsBridge, ['-o', 'link'])).stdout.split('\n').find((l) => l.startsWith(`${peerIndex}: `));
  const name = line ? /^\d+: ([^@:]+)/.exec(line)?.[1] : undefined;
  if (peerIndex === undefined || name === undefined) throw new Error(`no bridge port for ${dev} in ${ns}`);
  return name;
}

t.test('uplink cut: the standby takes over from a running active node; after the link is back exactly one holds the VIP; no peer negotiates, no nonce twice', { skip }, async (t) => {
  const lab = useLab(t, { label: 'haup' });
  const pair = await haPairLab(lab, { service: SERVICE });
  const { nsA, nsB, nsP } = pair;
  const nsS = await haPairPeerNamespace(lab, pair, 's', LEGACY.addr);
  await lab.addAddress(nsS, 'lo', `${LEGACY.lan}/32`);
  const portA = await bridgePortOf(lab, nsA, pair.ethA, nsP);

  const [node, agent] = [await genKeyPair(), await genKeyPair()];
  const psk = randomBytes(24).toString('base64');
  const doc = {
    vrouter_id: 'vr',
    tenant_id: 'acme',
    wireguard: { listen_port: WG_PORT, private_key: node.privateKey },
    wireguard_peers: [{ name: 'agent', public_key: agent.publicKey, allowed_ips: ['10.98.0.2/32'] }],
    tunnels: [
      {
        id: 'legacy',
        type: 'ipsec',
        local_id: OURS.id,
        remote_id: LEGACY.id,
        auth: { method: 'psk', psk },
        local_subnets: [OURS.net],
        remote_subnets: [LEGACY.net],
        proposals: { ike: ['aes256gcm16-prfsha256-ecp256'], esp: ['aes256gcm16'] },
      },
    ],
  };
  const start = async (ns: string, id: 1 | 2): Promise<VrouterRun> => {
    const v = await vrouterRun(lab, ns, { document: doc, logLevel: 'info', privateRun: true, extraToml: haPairToml(pair, id) });
    await lab.addAddress(ns, v.ready.ipsec!.interface, `${OURS.lan}/32`);
    return v;
  };

  const a = await start(nsA, 1);
  await until('A active', async () => (await haView(a)).role === 'active');
  const b = await start(nsB, 2);
  await until('B standby with the peer connected', async () => {
    const v = await haView(b);
    return v.role === 'standby' && v.peer_connected === true;
  });

  const capture = join(lab.dir, 'uplink.pcap');
  const dump = lab.spawn('tcpdump', 'tcpdump', ['-i', pair.bridge, '-U', '--immediate-mode', '-n', '-w', capture, `udp port ${WG_PORT} or udp port 4500 or esp`], { ns: nsP });
  await sleep(500);

  const peer = await wireguardGo(lab, nsP, {
    keys: agent,
    addresses: ['10.98.0.2/24'],
    peers: [{ publicKey: node.publicKey, endpoint: `${VIP}:${WG_PORT}`, allowedIps: [`${SERVICE}/32`] }],
    routes: [`${SERVICE}/32`],
  });
  const legacy = await strongswanPeer(lab, nsS, {
    localAddr: LEGACY.addr,
    remoteAddr: VIP,
    localId: LEGACY.id,
    remoteId: OURS.id,
    localTs: [LEGACY.net],
    remoteTs: [OURS.net],
    auth: { method: 'psk', psk },
    ikeProposals: 'aes256gcm16-prfsha256-ecp256',
    espProposals: 'aes256gcm16',
    forceEncap: true,
    dpdDelay: '2s',
  });
  await legacy.initiate(20);
  await waitForPing(nsP, SERVICE, 15_000);
  await waitForPing(nsS, OURS.lan, 15_000, LEGACY.lan);
  await settleWireguardGo(peer);
  const hs0 = (await peer.show()).peers[0]?.latestHandshake ?? 0;
  t.ok(hs0 > 0, 'WireGuard: a handshake with the active node through the VIP');
  const sas0 = saIds((await legacy.listSas()).raw);
  t.ok(sas0, `IPsec: the router's IKE_SA and CHILD_SA (${JSON.stringify(sas0)})`);
  // The agent's keypairs the active holds (2 after a wireguard-go retransmit): the standby holds as many.
  let keypairs = 0;
  await until('the standby to hold the session and the SAs', async () => {
    keypairs = Number((await haView(a)).synced_wireguard_sessions);
    const v = await haView(b);
    return keypairs >= 1 && v.synced_wireguard_sessions === keypairs && Number(v.synced_esp_sas) >= 2 && / PASSIVE, /.test(await nodeSas(lab, b));
  });

  // A ping every 20 ms through each tunnel: 2 s before the cut, the cut, the link back, 3 s after.
  const pingS = Math.ceil((2000 + CUT_MS + 3000) / 1000);
  const wgLog = join(lab.dir, 'ping-wg.log');
  const espLog = join(lab.dir, 'ping-esp.log');
  const pingers = [
    lab.spawn('ping-wg', 'sh', ['-c', `exec ${tools.ping} -D -n -i 0.02 -w ${pingS} ${SERVICE} > ${wgLog}`], { ns: nsP }),
    lab.spawn('ping-esp', 'sh', ['-c', `exec ${tools.ping} -D -n -i 0.02 -w ${pingS} -I ${LEGACY.lan} ${OURS.lan} > ${espLog}`], { ns: nsS }),
  ];
  await sleep(2000);

  const cutAt = Date.now();
  await lab.ip(nsP, ['link', 'set', portA, 'down']);
  // From here on nothing of A reaches the bridge; what it sent just before is still on the wire.
  const cutDone = Date.now();
  await until('B active', async () => (await haView(b)).role === 'active', 10_000);
  const tookOverMs = Date.now() - cutAt;
  t.ok(await hasVip(lab, nsB), 'the VIP moved to B');
  t.notOk(await hasVip(lab, nsA), 'the cut node dropped the VIP');
  t.ok(a.process.running, 'the cut node is still running');
  const viewA = await haView(a);
  t.comment(`B active ${tookOverMs} ms after the cut (observed by polling); A: ${JSON.stringify({ role: viewA.role, vrrp: viewA.vrrp_state, peer_connected: viewA.peer_connected })}`);
  // How B got there: with the sync channel on the cut link, B may claim before it notices the
  // channel is silent (fence: peer-active), then lift the fence and claim again.
  const seenByB = b.process
    .output()
    .flatMap((l) => {
      try {
        const e = JSON.parse(l.line) as { time?: string; event?: string; reason?: string; state?: string };
        return e.time && Date.parse(e.time) >= cutAt && /^ha_(fence|role|failover|sync)$/.test(e.event ?? '') ? [`${e.event}: ${e.reason ?? e.state ?? ''}`] : [];
      } catch {
        return [];
      }
    });
  t.comment(`B after the cut: ${seenByB.join(' | ')}`);
  t.equal(viewA.role, 'standby', 'the cut node went passive on its own (its keepalived: interface down → FAULT)');

  await sleep(Math.max(0, cutAt + CUT_MS - Date.now()));
  const backAt = Date.now();
  await lab.ip(nsP, ['link', 'set', portA, 'up']);
  await until('A standby with the peer connected again, resynced', async () => {
    const v = await haView(a);
    return v.role === 'standby' && v.peer_connected === true && v.synced_wireguard_sessions === keypairs && Number(v.synced_esp_sas) >= 2 && / PASSIVE, /.test(await nodeSas(lab, a));
  }, 30_000).catch(async (e: unknown) => {
    t.comment(`A: ${JSON.stringify(await haView(a))}`);
    t.comment(`A's charon: ${await nodeSas(lab, a)}`);
    t.comment(`B's charon: ${await nodeSas(lab, b)}`);
    for (const l of a.process.output().slice(-40)) t.comment(`A: ${l.line}`);
    throw e;
  });
  // Exactly one VIP holder, checked for a while: the returning node must not claim it, even briefly.
  let bothOrNone = 0;
  for (let k = 0; k < 10; k++) {
    const [onA, onB] = [await hasVip(lab, nsA), await hasVip(lab, nsB)];
    if (onA === onB || onA) bothOrNone += 1;
    await sleep(100);
  }
  t.equal(bothOrNone, 0, 'after the link is back: the VIP on B only (no preemption)');
  t.match(await haView(b), { role: 'active', takeovers: 1 }, 'B: active, one takeover');
  t.match(await haView(a), { role: 'standby', peer_role: 'active' }, 'A: standby, sees B active');
  for (const p of pingers) await p.exited;

  const flow = new Map<string, [number, number]>();
  for (const [what, log] of [
    ['wireguard', wgLog],
    ['esp', espLog],
  ] as const) {
    const replies = pingReplies(log);
    flow.set(what, [replies[0] ?? 0, replies.at(-1) ?? 0]);
    const [before, after] = [replies.filter((x) => x < cutAt).length, replies.filter((x) => x > backAt).length];
    const gapCut = longestGap(replies.filter((x) => x < backAt));
    const gapBack = longestGap(replies.filter((x) => x > cutAt + 500));
    t.comment(`${what}: longest gap between replies ${gapCut.toFixed(0)} ms around the cut, ${gapBack.toFixed(0)} ms around the link's return (${before} replies before the cut, ${after} after the return)`);
    t.ok(before > 20 && after > 20, `${what}: replies before the cut and after the link is back`);
    t.ok(gapCut <= 3000, `${what}: round-trip gap at the cut ${gapCut.toFixed(0)} ms <= 3000 ms`);
    t.ok(gapBack <= 1000, `${what}: no gap when the link comes back (${gapBack.toFixed(0)} ms <= 1000 ms)`);
  }
  t.equal((await peer.show()).peers[0]?.latestHandshake ?? 0, hs0, "wireguard-go's latest handshake unchanged");
  t.same(saIds((await legacy.listSas()).raw), sas0, "the router's IKE_SA and CHILD_SA unchanged (unique ids, SPIs): nothing negotiated");

  await sleep(500);
  await dump.stop();
  const sent = capturedPackets(capture, { wgPort: WG_PORT }).filter((p) => p.srcMac === pair.macA || p.srcMac === pair.macB);
  for (const kind of ['wireguard', 'esp'] as const) {
    const fromA = sent.filter((p) => p.kind === kind && p.srcMac === pair.macA);
    const fromB = sent.filter((p) => p.kind === kind && p.srcMac === pair.macB);
    const [from, to] = flow.get(kind)!;
    const gap = longestGap(sent.filter((p) => p.kind === kind && p.at >= from && p.at <= to).map((p) => p.at));
    t.comment(`${kind}: ${fromA.length} packets from A, ${fromB.length} from B; longest gap pair → peer ${gap.toFixed(0)} ms`);
    t.ok(fromA.length > 20 && fromB.length > 20, `${kind}: sent by A, then by B`);
    t.equal(fromB.filter((p) => p.at < cutAt).length, 0, `${kind}: B sent nothing while standby`);
    t.same(fromA.filter((p) => p.at > cutDone).map((p) => p.at - cutAt), [], `${kind}: A sent nothing after the cut, nor after the link came back`);
    t.ok(gap <= 3000, `${kind}: gap pair → peer ${gap.toFixed(0)} ms <= 3000 ms`);
  }
  t.same(repeatedNonces(sent), [], 'no (receiver index, counter) and no (SPI, sequence number) sent twice');

  await closeLab(t, lab);
});
