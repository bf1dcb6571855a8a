// Failover of an active-passive pair as peers see it: two `cvlan-vrouter run` with `[ha]` behind
// the VIP, a WireGuard agent (wireguard-go) and a legacy IPsec router (strongSwan charon with
// kernel-libipsec, initiating to the VIP, DPD every 2 s). Traffic through both tunnels while the
// active daemon and everything it started (charon, keepalived) are SIGKILLed at once:
//
//   - the longest gap per protocol: between replies (round trip) and between the packets the pair
//     sent (pair → peer, from a capture on the bridge);
//   - wireguard-go's latest handshake unchanged; the strongSwan router's IKE_SA (unique id, SPIs)
//     and CHILD_SA (unique id, SPIs) unchanged: no peer negotiated anything because of the failover;
//   - in the capture of everything both nodes sent, no (receiver index, counter) and no
//     (SPI, sequence number) twice;
//   - the new active's charon owns the IKE_SA: it answers a CHILD_SA rekey the router asks for;
//   - rejoin: the old active, started again, comes back standby and receives the IKE_SA (charon's
//     ha plugin) and the WireGuard session (the sync channel) again.
import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { useLab, closeLab } from '../harness/tap.js';
import { vrouterRun, type VrouterRun } from '../harness/vrouter.js';
import { wireguardGo, genKeyPair } from '../harness/wireguard.js';
import { strongswanPeer } from '../harness/strongswan.js';
import { cvlanTestbedMissing } from '../harness/cvlan.js';
import { run, sleep } from '../harness/exec.js';
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
  repeatedNonces,
  until,
} from '../harness/ha-pair.js';
import type { Lab } from '../harness/lab.js';

const skip =
  cvlanTestbedMissing() ??
  missingPrerequisites('wg', 'wireguardGo', 'ping', 'setpriv', 'charon', 'swanctl') ??
  (resolveTool('/usr/sbin/keepalived') ? undefined : 'keepalived is not installed (scripts/setup.sh)') ??
  (resolveTool('tcpdump') ? undefined : 'tcpdump is not installed (scripts/setup.sh)');

/** On both nodes' lo: what the WireGuard agent reaches through its tunnel. */
const SERVICE = '10.99.0.1';
/** The pair's side of the IPsec tunnel (on both nodes' IPsec TUN) and the legacy router's. */
const OURS = { lan: '10.88.1.1', net: '10.88.1.0/24', id: 'pair.test.cvlan' };
const LEGACY = { lan: '10.88.2.1', net: '10.88.2.0/24', id: 'legacy.test.cvlan', addr: '10.79.0.8' };
const WG_PORT = 51820;

/** The identity of the strongSwan router's SAs in `swanctl --list-sas`: what must not change. */
interface SaIds {
  ike: string;
  ikeState: string;
  child: string;
  childState: string;
}

function saIds(listing: string): SaIds | undefined {
  const ike = /^\S+: #(\d+), (\w+), IKEv2, ([0-9a-f]{16})_i\*? ([0-9a-f]{16})_r/m.exec(listing);
  const child = /^\s+\S+: #(\d+), reqid \d+, (\w+),/m.exec(listing);
  const spiIn = /^\s+in\s+([0-9a-f]{8})/m.exec(listing);
  const spiOut = /^\s+out\s+([0-9a-f]{8})/m.exec(listing);
  if (!ike || !child || !spiIn || !spiOut) return undefined;
  return { ike: `#${ike[1]} ${ike[3]}_i ${ike[4]}_r`, ikeState: ike[2]!, child: `#${child[1]} in ${spiIn[1]} out ${spiOut[1]}`, childState: child[2]! };
}

/** SPIs of the first CHILD_SA in a listing, as a set (the other side lists them swapped). */
function childSpis(listing: string): string[] {
  return [/^\s+in\s+([0-9a-f]{8})/m.exec(listing)?.[1], /^\s+out\s+([0-9a-f]{8})/m.exec(listing)?.[1]].filter((x): x is string => x !== undefined).sort();
}

/** A node's charon as `swanctl --list-sas` shows it (its VICI socket is in the lab dir). */
async function nodeSas(lab: Lab, v: VrouterRun): Promise<string> {
  return (await lab.exec(v.ns, tools.swanctl, ['--list-sas', '--uri', `unix://${v.charonVici}`])).stdout;
}

/** Every process under `pid` (charon, keepalived, their wrappers), children before parents. */
function descendants(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(d)]);
    } catch {
      // gone meanwhile
    }
  }
  const out: number[] = [];
  const walk = (p: number): void => {
    for (const c of children.get(p) ?? []) {
      walk(c);
      out.push(c);
    }
  };
  walk(pid);
  return out;
}

t.test('failover: the standby carries the WireGuard session and the IKE_SA/CHILD_SA on; no peer negotiates, no nonce twice', { skip }, async (t) => {
  const lab = useLab(t, { label: 'hafo' });
  const pair = await haPairLab(lab, { service: SERVICE });
  const { nsA, nsB, nsP } = pair;
  const nsS = await haPairPeerNamespace(lab, pair, 's', LEGACY.addr);
  await lab.addAddress(nsS, 'lo', `${LEGACY.lan}/32`);

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

  const capture = join(lab.dir, 'failover.pcap');
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
  const hs0 = (await peer.show()).peers[0]?.latestHandshake ?? 0;
  t.ok(hs0 > 0, 'WireGuard: a handshake with the active node through the VIP');
  const sas0 = saIds((await legacy.listSas()).raw);
  t.ok(sas0, `IPsec: the router's IKE_SA and CHILD_SA (${JSON.stringify(sas0)})`);

  // The standby: charon holds the IKE_SA PASSIVE (its ha plugin, relayed through the sync
  // channel) and installed the CHILD_SA through our kernel plugin into its passive data plane.
  await until('the standby to hold the session and the SAs', async () => {
    const v = await haView(b);
    return v.synced_wireguard_sessions === 1 && Number(v.synced_esp_sas) >= 2 && / PASSIVE, /.test(await nodeSas(lab, b));
  });
  const onB = await nodeSas(lab, b);
  t.match(onB, new RegExp(`${sas0!.ike.split(' ')[1]!.replace('_i', '_i\\*?')} ${sas0!.ike.split(' ')[2]!.replace('_r', '_r\\*?')}`), "B's charon: the same IKE_SA SPIs");
  t.same(childSpis(onB), childSpis((await legacy.listSas()).raw), "B's charon: the same CHILD_SA SPIs, installed");

  // Both tunnels busy: a ping every 20 ms through each, for the whole failover.
  const wgLog = join(lab.dir, 'ping-wg.log');
  const espLog = join(lab.dir, 'ping-esp.log');
  const pingers = [
    lab.spawn('ping-wg', 'sh', ['-c', `exec ${tools.ping} -D -n -i 0.02 -w 8 ${SERVICE} > ${wgLog}`], { ns: nsP }),
    lab.spawn('ping-esp', 'sh', ['-c', `exec ${tools.ping} -D -n -i 0.02 -w 8 -I ${LEGACY.lan} ${OURS.lan} > ${espLog}`], { ns: nsS }),
  ];
  await sleep(2000);

  // The active daemon and everything under it in one go: no handler runs anywhere.
  const tree = [a.process.pid, ...descendants(a.process.pid)];
  const killedAt = Date.now();
  for (const pid of tree) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await a.process.exited;
  await until('B active', async () => (await haView(b)).role === 'active');
  t.ok(await hasVip(lab, nsB), 'the VIP moved to B');
  for (const p of pingers) await p.exited;

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
    t.ok(fromA.length > 20 && fromB.length > 20, `${kind}: sent by A, then by B`);
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
  const a2 = await start(nsA, 1);
  await until('A standby again with the session and the IKE_SA', async () => {
    const v = await haView(a2);
    return v.role === 'standby' && v.synced_wireguard_sessions === 1 && Number(v.synced_esp_sas) >= 2 && / PASSIVE, /.test(await nodeSas(lab, a2));
  }, 30_000);
  t.notOk(await hasVip(lab, nsA), 'A did not take the VIP back (no preemption)');
  t.equal(saIds((await legacy.listSas()).raw)?.ike, sas0!.ike, 'the same IKE_SA after the rejoin');
  const r = await run(tools.ping, ['-c', '5', '-i', '0.2', '-W', '2', '-I', LEGACY.lan, OURS.lan], { ns: nsS, timeoutMs: 10_000 }).catch((e: unknown) => e as Error);
  t.notOk(r instanceof Error, 'IPsec traffic still through B');

  await closeLab(t, lab);
});
