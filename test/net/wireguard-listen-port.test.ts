// `wg set IF listen-port N` on a running cvlan-vrouter WireGuard interface, with wireguard-go as
// the peer: the port moves while ping and iperf3 go on (the peer learns the new port from our
// next datagram), and a port in use is refused with EADDRINUSE, logged, nothing changed.
import t from 'tap';
import { useLab, closeLab } from '../harness/tap.js';
import { twoHosts } from '../harness/topology.js';
import { cvlanWireguard, wireguardGo, wgPair, wgShow } from '../harness/wireguard.js';
import { cvlanTestbedMissing } from '../harness/cvlan.js';
import { missingPrerequisites, tools } from '../harness/tools.js';
import { run, sleep } from '../harness/exec.js';
import { ping, waitForPing, iperfServer, iperfClient } from '../harness/ping.js';

const skip = cvlanTestbedMissing() ?? missingPrerequisites('wireguardGo', 'wg', 'iperf3');

t.test('listen port changed live under traffic; a port in use is refused', { skip }, async (t) => {
  const lab = useLab(t, { label: 'wgport' });
  const h = await twoHosts(lab);
  const [a, b] = await wgPair(lab, [h.a, h.b], [cvlanWireguard, wireguardGo], {
    underlay: [h.addrA, h.addrB],
    inner: ['10.97.0.1/24', '10.97.0.2/24'],
  });
  t.ok((await waitForPing(h.b, '10.97.0.1', 15_000)).received > 0, 'tunnel up');
  const before = (await wgShow(h.a, a.name)).listenPort;
  const moved = before === 51_901 ? 51_902 : 51_901;

  // Ping from wireguard-go's side every 50 ms while our port moves: its requests go to the old
  // port until our first reply from the new one arrives (roaming, whitepaper section 2.1).
  await iperfServer(lab, h.a);
  const traffic = ping(h.b, '10.97.0.1', { count: 80, intervalMs: 50 });
  const transfer = iperfClient(h.b, '10.97.0.1', { duration: 4 });
  await sleep(1500);
  await run(tools.wg, ['set', a.name, 'listen-port', String(moved)], { ns: h.a });
  const pings = await traffic;
  const tcp = await transfer;
  t.equal((await wgShow(h.a, a.name)).listenPort, moved, `wg show: listening on ${moved}`);
  t.ok(pings.received >= 78, `${pings.received}/80 pings across the port change`);
  t.ok(tcp.bitsPerSecond > 20e6, `iperf3 across the change: ${(tcp.bitsPerSecond / 1e6).toFixed(0)} Mbit/s`);
  const peer = (await wgShow(h.b, b.name)).peers[0];
  t.equal(peer?.endpoint, `${h.addrA}:${moved}`, 'wireguard-go roamed to the new port');
  t.equal((await ping(h.a, '10.97.0.2', { count: 3, intervalMs: 100 })).received, 3, 'traffic both ways afterwards');

  // A port another process holds: EADDRINUSE for wg, a log line, the old port kept.
  const holder = lab.spawn('udp-holder', 'python3', ['-c', 'import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(("0.0.0.0",51999))\nprint("bound",flush=True)\ntime.sleep(120)'], { ns: h.a });
  await holder.waitReady({ line: /bound/, timeoutMs: 5000 });
  const refused = await run(tools.wg, ['set', a.name, 'listen-port', '51999'], { ns: h.a }).then(
    () => '',
    (e: unknown) => String((e as { stderr?: string }).stderr ?? e),
  );
  t.match(refused, /Address already in use/, 'wg reports EADDRINUSE');
  t.equal((await wgShow(h.a, a.name)).listenPort, moved, 'still on the previous port');
  t.ok(a.process.output().some((l) => /configuration refused/.test(l.line) && /CVLAN_ERR_ADDR_IN_USE/.test(l.line)), 'the refusal is logged with its code');
  t.equal((await ping(h.b, '10.97.0.1', { count: 3, intervalMs: 100 })).received, 3, 'traffic unaffected');
  await closeLab(t, lab);
});
