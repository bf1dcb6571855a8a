// Active-passive as the daemon runs it: two `cvlan-vrouter run` with `[ha]` in two namespaces on a
// bridge, a wireguard-go peer on a third reaching the pair on the VIP. The daemon declares the VIP
// floating, binds WireGuard to it on both nodes, attaches the device to the sync channel and
// starts keepalived; `vrouterctl ha --json` shows the roles. The active daemon is SIGKILLed (its
// keepalived dies with it): the standby takes over and the same WireGuard session continues.
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { useLab, closeLab } from '../harness/tap.js';
import { vrouterRun, type VrouterRun } from '../harness/vrouter.js';
import { wireguardGo, genKeyPair } from '../harness/wireguard.js';
import { cvlanTestbedMissing } from '../harness/cvlan.js';
import { adminGet } from '../../src/api/client.js';
import { ping, waitForPing } from '../harness/ping.js';
import { missingPrerequisites, resolveTool, tools } from '../harness/tools.js';
import { HA_VIP as VIP, haPairLab, haPairToml, hasVip, haView, longestGap, pingReplies, settleWireguardGo, until } from '../harness/ha-pair.js';

const skip =
  cvlanTestbedMissing() ?? missingPrerequisites('wg', 'wireguardGo', 'ping', 'setpriv') ?? (resolveTool('/usr/sbin/keepalived') ? undefined : 'keepalived is not installed (scripts/setup.sh)');
/** The same address on both nodes' lo: what the peer reaches through the tunnel. */
const SERVICE = '10.99.0.1';

t.test('two daemons with [ha]: the standby takes over the WireGuard session when the active one is killed', { skip }, async (t) => {
  const lab = useLab(t, { label: 'hadmn' });
  const pair = await haPairLab(lab, { service: SERVICE });
  const { nsA, nsB, nsP } = pair;
  const [node, agent] = [await genKeyPair(), await genKeyPair()];
  const doc = {
    vrouter_id: 'vr',
    tenant_id: 'acme',
    // Started on another port: the reload below replaces the device (see there).
    wireguard: { listen_port: 51821, private_key: node.privateKey },
    wireguard_peers: [{ name: 'agent', public_key: agent.publicKey, allowed_ips: ['10.98.0.2/32'] }],
  };
  const start = (ns: string, toml: string): Promise<VrouterRun> => vrouterRun(lab, ns, { document: doc, logLevel: 'info', privateRun: true, extraToml: toml });

  const a = await start(nsA, haPairToml(pair, 1));
  await until('A active', async () => (await haView(a)).role === 'active');
  const b = await start(nsB, haPairToml(pair, 2));
  t.ok(await hasVip(lab, nsA), 'keepalived (started by the daemon) put the VIP on A');
  t.notOk(await hasVip(lab, nsB), 'and not on B');

  // A reload that moves the port replaces each node's WireGuard device: the new device must be
  // under the sync channel too (else the standby would hold no session, or not be passive).
  const g0 = (await haView(a)).generation;
  for (const v of [a, b]) {
    writeFileSync(v.config, JSON.stringify({ ...doc, wireguard: { ...doc.wireguard, listen_port: 51820 } }));
    v.process.signal('SIGHUP');
  }
  await until('both nodes on the new generation', async () => {
    const [ga, gb] = [(await haView(a)).generation, (await haView(b)).generation];
    return ga !== g0 && ga === gb;
  });

  const peer = await wireguardGo(lab, nsP, {
    keys: agent,
    addresses: ['10.98.0.2/24'],
    peers: [{ publicKey: node.publicKey, endpoint: `${VIP}:51820`, allowedIps: [`${SERVICE}/32`] }],
    routes: [`${SERVICE}/32`],
  });
  await waitForPing(nsP, SERVICE, 15_000);
  await settleWireguardGo(peer);
  const hs0 = (await peer.show()).peers[0]?.latestHandshake ?? 0;
  t.ok(hs0 > 0, 'a handshake with the active node through the VIP');
  // The agent's keypairs the active holds (2 after a wireguard-go retransmit): the standby holds as many.
  await until('the standby to hold the session', async () => {
    const keypairs = Number((await haView(a)).synced_wireguard_sessions);
    return keypairs >= 1 && (await haView(b)).synced_wireguard_sessions === keypairs;
  });
  const vb = await haView(b);
  t.match(vb, { role: 'standby', vrrp_state: 'BACKUP', peer_connected: true, peer_role: 'active', fenced: false, sync_channel: true }, 'vrouterctl ha --json on B: standby');
  t.equal(vb.generation, (await haView(a)).generation, 'both nodes run the same configuration generation');
  t.not(vb.generation, g0, 'the reload changed it');
  t.notOk(JSON.stringify(vb).includes(node.privateKey), 'no key material in the view');
  const readyB = await adminGet({ kind: 'unix', socketPath: b.admin }, '/readyz');
  t.equal(readyB.status, 503, "the standby's /readyz: 503");
  t.match(readyB.body, /HA standby/, 'and says why');

  // The active daemon killed outright under a ping every 20 ms: no handler runs; keepalived goes
  // by its parent-death signal. The gap is the longest silence between two replies.
  const pingLog = join(lab.dir, 'ping.log');
  const pinger = lab.spawn('ping', 'sh', ['-c', `exec ${tools.ping} -D -n -i 0.02 -w 6 ${SERVICE} > ${pingLog}`], { ns: nsP });
  await new Promise((r) => setTimeout(r, 1500));
  const killedAt = Date.now();
  a.process.signal('SIGKILL');
  await a.process.exited;
  await until('B active', async () => (await haView(b)).role === 'active');
  t.ok(await hasVip(lab, nsB), 'the VIP moved to B');
  await pinger.exited;
  const replies = pingReplies(pingLog);
  const gap = longestGap(replies);
  const before = replies.filter((x) => x < killedAt).length;
  t.comment(`failover: longest gap between replies ${gap.toFixed(0)} ms, ${before} replies before the kill, ${replies.length - before} after`);
  t.ok(before > 10 && replies.length - before > 10, 'replies before and after the kill');
  t.ok(gap <= 3000, `traffic gap ${gap.toFixed(0)} ms <= 3000 ms`);
  const r = await ping(nsP, SERVICE, { count: 5, interval: 0.2, wait: 3 });
  t.ok(r.received >= 4, `traffic continues through B (${r.received}/5 replies)`);
  t.equal((await peer.show()).peers[0]?.latestHandshake ?? 0, hs0, "wireguard-go's latest handshake unchanged: the same session continues");
  t.match(await haView(b), { role: 'active', vrrp_state: 'MASTER', takeovers: 1 }, 'vrouterctl ha --json on B: active, one takeover');
  t.equal((await adminGet({ kind: 'unix', socketPath: b.admin }, '/readyz')).status, 200, "the new active's /readyz: 200");
  t.equal((await lab.exec(undefined, tools.ip, ['netns', 'pids', nsA])).stdout.trim(), '', 'nothing of A survived, keepalived included');

  // A clean stop: keepalived stopped by its PID releases the VIP; nothing of B is left.
  const exit = await b.process.stop(10_000);
  t.match(exit, { code: 0 }, 'B stopped on SIGTERM with exit 0');
  t.notOk(await hasVip(lab, nsB), 'B released the VIP');
  t.equal((await lab.exec(undefined, tools.ip, ['netns', 'pids', nsB])).stdout.trim(), '', 'nothing of B left running, keepalived included');

  await closeLab(t, lab);
});
