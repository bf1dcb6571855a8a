// The stock `wg` tool against a cvlan-vrouter WireGuard interface with a live wireguard-go peer:
// `wg show` reports the handshake and the transfer counters our device keeps (and they grow with
// traffic), `wg showconf` round-trips through `wg syncconf`, and `wg set` changes (allowed-ips,
// keepalive, peer removal and re-add) take effect on the data plane.
import t from 'tap';
import { useLab, closeLab } from '../harness/tap.js';
import { twoHosts } from '../harness/topology.js';
import { cvlanWireguard, wireguardGo, wgPair, wgShow, uapiGet } from '../harness/wireguard.js';
import { cvlanTestbedMissing } from '../harness/cvlan.js';
import { missingPrerequisites, tools } from '../harness/tools.js';
import { run } from '../harness/exec.js';
import { ping, waitForPing, iperfServer, iperfClient } from '../harness/ping.js';

const skip = cvlanTestbedMissing() ?? missingPrerequisites('wg', 'wireguardGo', 'iperf3');

t.test('wg show / showconf / syncconf / set against our interface', { skip }, async (t) => {
  const lab = useLab(t, { label: 'wgtool' });
  const h = await twoHosts(lab);
  const [ours, peer] = await wgPair(lab, [h.a, h.b], [cvlanWireguard, wireguardGo], {
    underlay: [h.addrA, h.addrB],
    inner: ['10.99.0.1/24', '10.99.0.2/24'],
    psk: true,
  });
  const wg = async (...args: string[]): Promise<string> => (await run(tools.wg, args, { ns: h.a })).stdout;
  await waitForPing(h.a, '10.99.0.2', 15_000);

  const s1 = await wgShow(h.a, ours.name);
  t.equal(s1.publicKey, ours.keys.publicKey, 'wg show: our public key');
  t.equal(s1.listenPort, ours.listenPort, 'wg show: listen port');
  const p1 = s1.peers[0]!;
  t.equal(p1.publicKey, peer.keys.publicKey);
  t.equal(p1.endpoint, `${h.addrB}:51820`);
  t.ok(Math.abs(p1.latestHandshake - Date.now() / 1000) < 30, 'wg show: handshake time is now');

  await iperfServer(lab, h.b);
  const up = await iperfClient(h.a, '10.99.0.2', { duration: 2 });
  const s2 = await wgShow(h.a, ours.name);
  const p2 = s2.peers[0]!;
  t.ok(p2.txBytes - p1.txBytes >= up.bytes, `tx grew by at least the iperf3 payload (${p2.txBytes - p1.txBytes} ≥ ${up.bytes})`);
  // What wg prints is exactly what the device reports on the UAPI socket.
  const kv = await uapiGet(ours.name);
  const num = (k: string): number => Number(kv.find(([key]) => key === k)?.[1]);
  const s3 = await wgShow(h.a, ours.name);
  t.ok(num('tx_bytes') <= s3.peers[0]!.txBytes && num('tx_bytes') >= p2.txBytes, 'wg show tx_bytes = device counter');
  t.equal(num('last_handshake_time_sec'), s3.peers[0]!.latestHandshake, 'wg show handshake = device handshake time');
  // The peer's view agrees in the other direction (its rx ≥ our tx before the read).
  const theirs = await wgShow(h.b, peer.name);
  t.ok(theirs.peers[0]!.rxBytes >= p2.txBytes - 1e6, 'wireguard-go received what we sent');

  const conf = await wg('showconf', ours.name);
  t.match(conf, /\[Interface\]\nListenPort = 51820\nPrivateKey = /, 'showconf: interface section');
  t.match(conf, /PresharedKey = /, 'showconf: preshared key (root-only socket)');
  t.match(conf, /AllowedIPs = 10\.99\.0\.2\/32/);
  const confFile = lab.writeFile('ours.conf', conf);

  await wg('set', ours.name, 'peer', peer.keys.publicKey, 'allowed-ips', '10.99.0.2/32,10.98.0.0/16', 'persistent-keepalive', '7');
  const s4 = (await wgShow(h.a, ours.name)).peers[0]!;
  t.same([...s4.allowedIps].sort(), ['10.98.0.0/16', '10.99.0.2/32'], 'wg set: allowed-ips');
  t.equal(s4.persistentKeepalive, 7, 'wg set: keepalive');

  await wg('syncconf', ours.name, confFile);
  const s5 = (await wgShow(h.a, ours.name)).peers[0]!;
  t.same(s5.allowedIps, ['10.99.0.2/32'], 'syncconf restores allowed-ips');
  // A file without PersistentKeepalive does not reset it: compare with wireguard-go doing the same.
  const wgB = async (...args: string[]): Promise<string> => (await run(tools.wg, args, { ns: h.b })).stdout;
  const theirConf = lab.writeFile('theirs.conf', await wgB('showconf', peer.name));
  await wgB('set', peer.name, 'peer', ours.keys.publicKey, 'persistent-keepalive', '7');
  await wgB('syncconf', peer.name, theirConf);
  t.equal(s5.persistentKeepalive, (await wgShow(h.b, peer.name)).peers[0]!.persistentKeepalive, 'keepalive after syncconf as in wireguard-go');
  t.equal(s5.txBytes >= s4.txBytes, true, 'syncconf keeps the session (counters not reset)');
  t.equal((await ping(h.a, '10.99.0.2', { count: 3 })).received, 3, 'traffic after syncconf');

  await wg('set', ours.name, 'peer', peer.keys.publicKey, 'remove');
  t.same((await wgShow(h.a, ours.name)).peers, [], 'wg set remove: peer gone');
  t.equal((await ping(h.a, '10.99.0.2', { count: 2, wait: 1 })).received, 0, 'no traffic to a removed peer');
  await wg('syncconf', ours.name, confFile);
  t.ok((await waitForPing(h.a, '10.99.0.2', 15_000)).received > 0, 're-added by syncconf: traffic again');
  await closeLab(t, lab);
});
