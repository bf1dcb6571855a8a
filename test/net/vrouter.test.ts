// `cvlan-vrouter run` as an operator runs it: the demo topology (strongSwan kernel-libipsec as the
// legacy router, wireguard-go as the agent) with traffic translated both ways through the vrouter;
// /metrics and `vrouterctl stats` agreeing with iperf3; no secret in any response or log line;
// a bad configuration refused on SIGHUP while traffic keeps flowing, a good one applied; a clean
// SIGTERM. And the README's main job, `cvlan-vrouter demo`, end to end.
import t from 'tap';
import { execFile } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { adminGet } from '../../src/api/client.js';
import { METRIC_LABELS } from '../../src/metrics/registry.js';
import { demo, startDemoTopology, DEMO_NET } from '../../src/cli/demo.js';
import { useLab, closeLab } from '../harness/tap.js';
import { missingPrerequisites, tools } from '../harness/tools.js';
import { genKeyPair } from '../harness/wireguard.js';
import { strongswanPeer } from '../harness/strongswan.js';
import { ping, waitForPing, iperfServer, iperfClient } from '../harness/ping.js';
import { sleep } from '../harness/exec.js';
import { cvlanTestbedMissing, CVLAN_CLI } from '../harness/cvlan.js';

const exec = promisify(execFile);
const VROUTERCTL = join(dirname(CVLAN_CLI), 'vrouterctl.js');
const skip = cvlanTestbedMissing() ?? missingPrerequisites('charon', 'swanctl', 'wg', 'wireguardGo', 'iperf3');

/** Sum of a counter's samples whose labels match `match`. */
function metric(text: string, name: string, match: (labels: string) => boolean = () => true): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = new RegExp(`^${name}(?:\\{([^}]*)\\})? ([0-9.e+]+)$`).exec(line);
    if (m && match(m[1] ?? '')) sum += Number(m[2]);
  }
  return sum;
}

t.test('run: IPsec ⇄ WireGuard through the vrouter, metrics, vrouterctl, reload, stop', { skip }, async (t) => {
  const lab = useLab(t, { label: 'vrouter' });
  const topo = await startDemoTopology(lab, undefined, { logLevel: 'info' });
  const target = { kind: 'unix' as const, socketPath: topo.admin };
  const scrape = async (): Promise<string> => (await adminGet(target, '/metrics')).body;

  await waitForPing(topo.nsA, DEMO_NET.legacyLan, 20_000);
  t.equal((await ping(topo.nsL, DEMO_NET.agentInner, { count: 3, source: DEMO_NET.legacyLan })).received, 3, 'legacy LAN → agent (ESP in, WireGuard out)');

  const before = await scrape();
  for (const [name, labels] of Object.entries(METRIC_LABELS)) {
    t.ok(new RegExp(`^# TYPE ${name} `, 'm').test(before), `${name} is exported`);
    for (const l of labels) {
      if (new RegExp(`^${name}\\{`, 'm').test(before)) t.match(before, new RegExp(`^${name}\\{[^}]*${l}="`, 'm'), `${name} has label ${l}`);
    }
  }
  const ipsecOut = (s: string): number => metric(s, 'cvlan_vrouter_bytes_out_total', (l) => l.includes('tunnel="legacy-site"'));
  // The demo names its WireGuard peer "agent": the label is the name, not the key.
  const wgIn = (s: string): number => metric(s, 'cvlan_vrouter_bytes_in_total', (l) => l.includes('tunnel="agent"'));

  await iperfServer(lab, topo.nsL, { bind: DEMO_NET.legacyLan });
  const up = await iperfClient(topo.nsA, DEMO_NET.legacyLan, { duration: 3 });
  t.ok(up.bitsPerSecond > 50e6, `agent → legacy through the vrouter: ${(up.bitsPerSecond / 1e6).toFixed(0)} Mbit/s`);

  // Path MTU across the translation: a 1420-byte DF packet fits the agent's WireGuard (MTU 1420)
  // but not the ESP tunnel (1400). The workers answer it with "fragmentation needed" (from the
  // original destination, through WireGuard back to the agent), whose kernel then caches the MTU.
  await ping(topo.nsA, DEMO_NET.legacyLan, { count: 2, size: 1392, dontFragment: true });
  const route = (await exec('ip', ['netns', 'exec', topo.nsA, 'ip', 'route', 'get', DEMO_NET.legacyLan])).stdout;
  t.match(route, /mtu 1400/, 'the agent learned the ESP tunnel\'s MTU from our ICMP error');
  const dropped = JSON.parse((await adminGet(target, '/v1/drops')).body) as { drops: { reason: string; count: number }[] };
  t.ok(dropped.drops.some((d) => d.reason === 'mtu_exceeded' && d.count >= 1), 'the oversized packet is counted as mtu_exceeded');
  t.equal((await ping(topo.nsA, DEMO_NET.legacyLan, { count: 3, size: 1372, dontFragment: true })).received, 3, '1400-byte DF packets pass');
  // The IKE view is refreshed every 2 s; wait until the scrape has the whole transfer.
  let after = await scrape();
  for (let i = 0; i < 20 && ipsecOut(after) - ipsecOut(before) < up.bytes; i++) {
    await sleep(250);
    after = await scrape();
  }
  const dOut = ipsecOut(after) - ipsecOut(before);
  const dIn = wgIn(after) - wgIn(before);
  // What crossed the tunnel: the sender's bytes (retransmissions included) plus per-packet
  // headers — inner IPv4+TCP with timestamps (52 B) for ESP's inner counters, and on top of that
  // WireGuard's header, tag and padding (at most 48 B) for its wire counters — plus the pings
  // and the iperf3 control connection (well under 1 MB).
  const sent = (up.json as { end?: { sum_sent?: { bytes?: number } } }).end?.sum_sent?.bytes ?? up.bytes;
  // TCP retransmissions cross the tunnel again but are not in iperf3's byte counts.
  const wire = sent + up.retransmits * 1400;
  const segments = wire / 1300;
  t.ok(dOut >= up.bytes && dOut <= wire + segments * 52 + 1e6, `ESP out grew by ${dOut} B; iperf3 received ${up.bytes} B, sent ${sent} B, ${up.retransmits} retransmits`);
  t.ok(dIn >= up.bytes && dIn <= wire + segments * 100 + 1e6, `WireGuard in grew by ${dIn} B; iperf3 received ${up.bytes} B, sent ${sent} B`);
  t.ok(metric(after, 'cvlan_vrouter_ike_sa_active') >= 1, 'an IKE_SA is active');
  t.ok(metric(after, 'cvlan_vrouter_child_sa_active') >= 1, 'a CHILD_SA is active');
  t.ok(metric(after, 'cvlan_vrouter_tunnels_active', (l) => l.includes('type="wireguard"')) >= 1, 'the WireGuard peer counts as active');

  const ctl = JSON.parse((await exec(process.execPath, [VROUTERCTL, '--socket', topo.admin, 'stats', '--json'])).stdout) as Record<string, number>;
  t.equal(ctl.ike_sa_active, 1, 'vrouterctl stats: one IKE_SA');
  t.ok((ctl.bytes_out ?? 0) >= dOut, 'vrouterctl stats: bytes out cover the transfer');
  const workers = JSON.parse((await adminGet(target, '/v1/workers')).body) as { workers: { busy_ratio: number | null; rx_packets: number; translated: number }[] };
  const translated = workers.workers.reduce((s, w) => s + w.translated, 0);
  // Every data segment of the transfer was ESP in → WireGuard out on an IPsec worker.
  t.ok(translated >= up.bytes / 1500, `${translated} packets translated on the workers (not through the TUN devices)`);
  t.equal(workers.workers.length, 4, 'two workers per device (WireGuard, IPsec)');
  t.ok(workers.workers.every((w) => w.busy_ratio !== null && w.busy_ratio >= 0 && w.busy_ratio <= 1), 'worker load is a share of wall time');
  t.ok(workers.workers.some((w) => (w.busy_ratio ?? 0) > 0 && w.rx_packets > 0), 'workers that moved packets show load');
  const table = (await exec(process.execPath, [VROUTERCTL, '--socket', topo.admin, 'tunnels'])).stdout;
  t.match(table, /legacy-site/, 'vrouterctl tunnels lists the tunnel');

  // No secret anywhere an operator looks.
  const doc = JSON.parse(readFileSync(topo.config, 'utf8')) as { tunnels: [{ auth: { psk: string } }]; wireguard: { private_key: string } };
  const secrets = [doc.tunnels[0].auth.psk, doc.wireguard.private_key];
  const responses = await Promise.all(['/v1/tunnels', '/v1/peers', '/v1/stats', '/v1/config', '/v1/routes?tenant=demo', '/metrics'].map((p) => adminGet(target, p)));
  const log = topo.daemon.lastOutput(10_000);
  for (const s of secrets) {
    t.notOk(responses.some((r) => r.body.includes(s)), 'no secret in any API response');
    t.notOk(log.includes(s), 'no secret in the log');
  }

  // SIGHUP with an invalid document: refused with the field named, the running state stays.
  const good = readFileSync(topo.config, 'utf8');
  const bad = JSON.parse(good) as { wireguard_peers: [{ allowed_ips: string[] }] };
  bad.wireguard_peers[0].allowed_ips = ['10.20.0.300/32'];
  writeFileSync(topo.config, JSON.stringify(bad));
  topo.daemon.signal('SIGHUP');
  await topo.daemon.waitReady({ line: /"event":"config_refused".*wireguard_peers\[0\]\.allowed_ips\[0\]/, timeoutMs: 10_000 });
  t.pass('invalid reload refused with the field named');
  t.equal((await ping(topo.nsA, DEMO_NET.legacyLan, { count: 3 })).received, 3, 'traffic still flows after the refused reload');

  // A valid change: a second WireGuard peer added, the first one's traffic untouched.
  const extra = await genKeyPair();
  const next = JSON.parse(good) as { wireguard_peers: object[] };
  next.wireguard_peers.push({ name: 'second', public_key: extra.publicKey, allowed_ips: ['10.20.0.3/32'] });
  writeFileSync(topo.config, JSON.stringify(next));
  topo.daemon.signal('SIGHUP');
  await topo.daemon.waitReady({ line: /"event":"config_applied".*"changes":1/, timeoutMs: 10_000 });
  const peers = JSON.parse((await adminGet(target, '/v1/peers')).body) as { peers: { public_key: string }[] };
  t.ok(peers.peers.some((p) => p.public_key === extra.publicKey), 'the new peer is configured');
  t.equal((await ping(topo.nsA, DEMO_NET.legacyLan, { count: 3 })).received, 3, 'the first peer still forwards');

  // A second "legacy router" with the wrong PSK: refused, logged as an authentication failure of
  // that tunnel, and the established tunnel is not disturbed.
  const nsX = await lab.namespace('impostor');
  await lab.veth({ ns: nsX, addresses: ['203.0.113.1/24'] }, { ns: topo.nsR, addresses: ['203.0.113.2/24'] });
  await lab.addRoute(nsX, `${DEMO_NET.vrouterLegacy}/32`, { via: '203.0.113.2' });
  const impostor = await strongswanPeer(lab, nsX, {
    localAddr: '203.0.113.1',
    remoteAddr: DEMO_NET.vrouterLegacy,
    localId: 'legacy.demo.cvlan',
    remoteId: 'vrouter.demo.cvlan',
    localTs: ['10.10.0.0/24'],
    remoteTs: ['10.20.0.0/24'],
    auth: { method: 'psk', psk: 'not-the-right-pre-shared-key' },
    forceEncap: true,
  });
  await t.rejects(impostor.initiate(10), 'the impostor is refused');
  await topo.daemon.waitReady({ line: /"event":"auth_failure".*"tunnel":"legacy-site"/, timeoutMs: 10_000 });
  t.pass('auth_failure logged with tenant and tunnel');
  t.equal((await ping(topo.nsA, DEMO_NET.legacyLan, { count: 3 })).received, 3, 'the real tunnel still forwards');

  const st = await topo.daemon.stop(15_000);
  t.equal(st.code, 0, 'SIGTERM: clean exit');
  t.match(topo.daemon.lastOutput(50), /"msg":"stopped"/, 'stop logged');
  const links = (await lab.ip(topo.nsR, ['-o', 'link', 'show'])).stdout;
  t.notMatch(links, /wg-demo|ipsec-demo/, 'TUN devices removed');

  // Restart without the file: the last applied configuration (with the peer added by SIGHUP)
  // comes back from the state dir, secrets sealed there.
  const stored = readFileSync(`${lab.dir}/state/applied.json`, 'utf8');
  for (const x of secrets) t.notOk(stored.includes(x), 'no secret in clear in the stored configuration');
  rmSync(topo.config);
  const again = lab.spawn('cvlan-vrouter run (restart)', tools.node, [CVLAN_CLI, 'run', '--config', topo.config, '--local', topo.local, '--runtime-dir', `${lab.dir}/run2`], {
    ns: topo.nsR,
    env: { CVLAN_LOG_LEVEL: 'info' },
  });
  await again.waitReady({ line: /"event":"ready"/, timeoutMs: 30_000 });
  t.match(again.lastOutput(200), /using the last applied configuration/, 'restarted from the stored configuration');
  const peersAgain = JSON.parse((await adminGet(target, '/v1/peers')).body) as { peers: { public_key: string }[] };
  t.equal(peersAgain.peers.length, 2, 'both peers are back, including the one added by reload');
  await topo.legacy.initiate(20);
  // wireguard-go notices the lost session by itself (keepalive + rekey timeout, ≈ 15 s).
  t.ok((await waitForPing(topo.nsA, DEMO_NET.legacyLan, 40_000)).received > 0, 'traffic flows again after the restart');
  t.equal((await again.stop(15_000)).code, 0, 'the restarted daemon stops cleanly');
  await closeLab(t, lab);
});

t.test('demo: the README main job', { skip }, async (t) => {
  const lines: string[] = [];
  const code = await demo((l) => lines.push(l));
  const out = lines.join('\n');
  t.equal(code, 0, 'demo exits 0');
  t.match(out, /legacy LAN 10\.10\.0\.1 → agent 10\.20\.0\.2: 5\/5 replies/);
  t.match(out, /ipsec legacy-site \(legacy\.demo\.cvlan, psk\): up/);
  t.match(out, /wireguard peer .* handshake 20\d\d-/);
  t.match(out, /torn down: namespaces, interfaces and processes removed/);
  const ns = (await exec('ip', ['netns', 'list'])).stdout;
  t.notMatch(ns, /cvl-demo-/, 'no demo namespace left');
});
