// The spine end to end: two cvlan-vrouter instances (2 workers each) in two namespaces, joined
// by the plain test transport; ping and iperf3 through it, IPv4 and IPv6 inside, live reload,
// counters, and a clean exit that leaves no TUN device behind.
import t from 'tap';
import { useLab, closeLab } from '../harness/tap.js';
import { twoHosts } from '../harness/topology.js';
import { cvlanTestbed, cvlanTestbedMissing, type CvlanTestbed, type TestbedConfig } from '../harness/cvlan.js';
import { ping, iperfServer, iperfClient } from '../harness/ping.js';
import { run } from '../harness/exec.js';
import { writeFileSync } from 'node:fs';

interface StatsLine {
  workers: { index: number; active: boolean; tunRxPackets: number; udpRxPackets: number; udpRxBytes: number; tunTxBytes: number }[];
  totals: { tunRxPackets: number; tunTxPackets: number; udpRxBytes: number; udpTxBytes: number; drops: { reason: string; count: number }[] };
}

async function stats(tb: CvlanTestbed): Promise<StatsLine> {
  const seen = tb.process.output().length;
  tb.process.signal('SIGUSR1');
  const end = Date.now() + 5000;
  while (Date.now() < end) {
    for (const l of tb.process.output().slice(seen)) {
      if (l.line.includes('"msg":"stats"')) return JSON.parse(l.line) as StatsLine;
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`no stats line from ${tb.process.name}: ${tb.process.lastOutput()}`);
}

const drop = (s: StatsLine, reason: string): number => s.totals.drops.find((d) => d.reason === reason)?.count ?? 0;

t.test('two instances forward ping and iperf3 over the plain transport with 2 workers each', { skip: cvlanTestbedMissing() }, async (t) => {
  const lab = useLab(t);
  const h = await twoHosts(lab);
  const tun = lab.ifname('cvt');
  // `addresses` (several, v4 + v6) is accepted beside the harness contract's single `address`.
  const cfg = (self: string, self6: string, peer: string, peerIn: string, peerIn6: string): TestbedConfig => ({
    transport: 'plain-insecure-test-only',
    tun: { name: tun, mtu: 1420, addresses: [self, self6] } as unknown as TestbedConfig['tun'],
    listen_port: 7000,
    workers: 2,
    peers: [{ endpoint: `${peer}:7000`, allowed_ips: [peerIn, peerIn6] }],
  });
  const a = await cvlanTestbed(lab, h.a, cfg('10.77.0.1/24', 'fd00:77::1/64', h.addrB, '10.77.0.2/32', 'fd00:77::2/128'));
  const b = await cvlanTestbed(lab, h.b, cfg('10.77.0.2/24', 'fd00:77::2/64', h.addrA, '10.77.0.1/32', 'fd00:77::1/128'));
  t.equal(a.ready.workers, 2);

  const p4 = await ping(h.a, '10.77.0.2', { count: 5, interval: 0.2 });
  t.equal(p4.received, 5, 'IPv4 ping through the tunnel');
  const p6 = await ping(h.a, 'fd00:77::2', { count: 3, interval: 0.2 });
  t.equal(p6.received, 3, 'IPv6 ping through the tunnel');

  const srv = await iperfServer(lab, h.b);
  const one = await iperfClient(h.a, '10.77.0.2', { duration: 3 });
  t.ok(one.bitsPerSecond > 50e6, `single TCP flow: ${(one.bitsPerSecond / 1e9).toFixed(2)} Gbit/s`);
  const four = await iperfClient(h.a, '10.77.0.2', { duration: 3, streams: 4 });
  t.ok(four.bitsPerSecond > 50e6, `4 TCP flows: ${(four.bitsPerSecond / 1e9).toFixed(2)} Gbit/s`);
  void srv;

  // The kernel pins a flow to the TUN queue its replies were written on (tun_flow_update), and
  // every reply from B arrives on one socket of A: only a flow's first packets are spread by
  // hash. 64 one-datagram flows make "all on one queue" a 2^-63 event instead of a likely one.
  await run('ip', ['netns', 'exec', h.a, 'python3', '-c',
    'import socket\nfor p in range(64):\n s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b"x", ("10.77.0.2", 9)); s.close()']);
  const sa = await stats(a);
  const sb = await stats(b);
  t.equal(sa.workers.filter((w) => w.active).length, 2, 'both workers of A running');
  t.ok(sa.totals.tunRxPackets > 1000, 'A read packets from its TUN');
  t.ok(sb.totals.udpRxBytes >= one.bytes + four.bytes, 'B received at least the payload iperf3 counted');
  t.ok(sa.workers.every((w) => w.tunRxPackets > 0), 'the multi-queue TUN spread flows over both of A\'s workers');

  // Garbage on the port is dropped and counted, and forwarding goes on.
  await run('ip', ['netns', 'exec', h.a, 'python3', '-c',
    `import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); [s.sendto(b"junk"*i, ("${h.addrB}", 7000)) for i in range(1, 20)]`]);
  const sb2 = await stats(b);
  t.ok(drop(sb2, 'bad_header') >= 19, 'junk datagrams counted as bad_header');
  t.equal((await ping(h.a, '10.77.0.2', { count: 2, interval: 0.1 })).received, 2, 'still forwarding');

  // Reload without restart: drop the peer → packets are refused (no_route), restore → flows again.
  const noPeers = { ...JSON.parse(JSON.stringify(a.config)), peers: [] };
  writeFileSync(a.configPath, JSON.stringify(noPeers));
  a.process.signal('SIGHUP');
  await a.process.waitReady({ line: (l) => l.includes('"msg":"reloaded"'), timeoutMs: 5000 });
  t.equal((await ping(h.a, '10.77.0.2', { count: 2, interval: 0.1, wait: 1 })).received, 0, 'no peer, no forwarding');
  t.ok(drop(await stats(a), 'no_route') >= 2, 'counted as no_route');
  writeFileSync(a.configPath, JSON.stringify({ ...a.config, tun: { ...a.config.tun, addresses: undefined }, workers: 1 }));
  a.process.signal('SIGHUP');
  await a.process.waitReady({ line: (l) => l.includes('"msg":"reloaded"') && l.includes('"workers":1'), timeoutMs: 5000 });
  t.equal((await ping(h.a, '10.77.0.2', { count: 2, interval: 0.1 })).received, 2, 'forwarding again with 1 worker');

  // A bad reload is refused and the running configuration stays.
  writeFileSync(a.configPath, '{"transport":"plain-insecure-test-only","tun":{"name":"x"},"listen_port":-1,"peers":"no"}');
  a.process.signal('SIGHUP');
  await a.process.waitReady({ line: (l) => l.includes('reload refused') && l.includes('listen_port'), timeoutMs: 5000 });
  t.equal((await ping(h.a, '10.77.0.2', { count: 2, interval: 0.1 })).received, 2, 'old configuration still forwarding');

  const exitA = await a.stop();
  const exitB = await b.stop();
  t.same(exitA, { code: 0, signal: null }, 'A exits 0 on SIGTERM');
  t.same(exitB, { code: 0, signal: null });
  const links = await run('ip', ['netns', 'exec', h.a, 'ip', '-o', 'link']);
  t.notMatch(links.stdout, tun, 'TUN device removed');
  await closeLab(t, lab);
});
