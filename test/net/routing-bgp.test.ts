// Subnet advertisement against a real BGP router (BIRD 2 standing for a VPC/LAN router): two
// tenants announce the same prefix and it arrives separately, one per session and table; a
// prefix that goes down is withdrawn within the coalescing delay and comes back on recovery; an
// aggregate replaces what it covers; a neighbour that floods prefixes or sends a forbidden one is
// limited and filtered, and nothing it sends reaches the other tenant; a killed BIRD is restarted
// and the announcements return.
import t from 'tap';
import { useLab, closeLab } from '../harness/tap.js';
import { until } from '../harness/wait.js';
import { missingPrerequisites } from '../harness/tools.js';
import { birdRouter } from '../harness/bird.js';
import { parseControllerDocs } from '../../src/config/controller.js';
import { RoutingService } from '../../src/routing/service.js';
import type { EventLog } from '../../src/log.js';

const skip = missingPrerequisites('bird', 'birdc');

t.test('two tenants announce over BGP to a BIRD router: separate, live, filtered', { skip }, async (t) => {
  const lab = useLab(t, { label: 'bgp' });
  const [nsV, nsR] = [await lab.namespace('vr'), await lab.namespace('lan')];
  await lab.veth({ ns: nsV, addresses: ['192.0.2.1/24'] }, { ns: nsR, addresses: ['192.0.2.254/24'] });
  const vIf = (await lab.ip(nsV, ['-o', 'link', 'show', 'type', 'veth'])).stdout.split(':')[1]?.trim().split('@')[0] as string;
  await lab.addAddress(nsV, vIf, '192.0.2.2/24');

  // The LAN router: one session (and table) per tenant; it offers the red tenant 10.50.1.0/24
  // (allowed), 10.60.0.0/24 (forbidden) and a flood of 10.50.x.0/24 beyond red's limit, and blue
  // the same (blue imports nothing).
  const flood = Array.from({ length: 40 }, (_, i) => `10.50.${100 + i}.0/24`);
  const lan = await birdRouter(lab, nsR, {
    localAs: 65000,
    routerId: '192.0.2.254',
    sessions: [
      { name: 'red', neighbor: '192.0.2.1', neighborAs: 65001, announce: ['10.50.1.0/24', '10.60.0.0/24', ...flood] },
      { name: 'blue', neighbor: '192.0.2.2', neighborAs: 65002, announce: ['10.50.1.0/24'] },
    ],
  });

  const docs = [
    {
      tenant_id: 'red',
      tun: [{ name: 'tr', addresses: ['10.20.0.1/24'], subnets: ['10.20.0.0/24'] }],
      bgp: {
        asn: 65001,
        neighbors: [{ name: 'lan', address: '192.0.2.254', asn: 65000, local_address: '192.0.2.1', import: { max_prefixes: 10, allow: ['10.50.0.0/16'] } }],
        announce: { aggregate: ['10.40.0.0/16'], communities: ['65001:7'] },
      },
    },
    {
      tenant_id: 'blue',
      tun: [{ name: 'tb', addresses: ['10.20.0.1/24'], subnets: ['10.20.0.0/24'] }],
      bgp: { asn: 65002, neighbors: [{ name: 'lan', address: '192.0.2.254', asn: 65000, local_address: '192.0.2.2' }] },
    },
  ];
  const cfg = parseControllerDocs(docs);
  const events: { action: string; tenant: string; prefix: string }[] = [];
  const log = { routingChange: (e: { action: string; tenant: string; prefix: string }) => events.push(e) } as unknown as EventLog;
  const routing = new RoutingService({ runtimeDir: `${lab.dir}/routing`, netns: nsV, routerId: '192.0.2.1', coalesceMs: 100, events: log });
  lab.onTeardown('routing service', () => undefined, () => routing.stop());
  await routing.configure(cfg.tenants);

  // Both tenants reach 10.20.0.0/24 (overlapping prefixes) and red also two site subnets inside its aggregate.
  routing.setReachable('red', [
    { prefix: '10.20.0.0/24', source: 'tun', via: 'tr' },
    { prefix: '10.40.1.0/24', source: 'ipsec', via: 'site-a' },
    { prefix: '10.40.2.0/24', source: 'wireguard', via: 'agent' },
  ]);
  routing.setReachable('blue', [{ prefix: '10.20.0.0/24', source: 'tun', via: 'tb' }]);
  await routing.flush();

  const red = await until('red session', () => lan.learned('red'), (p) => p.length === 2).catch(async (e: Error) => {
    t.comment(await lan.birdc('show', 'protocols', 'all'));
    t.comment(JSON.stringify(await routing.status(), null, 1));
    t.comment(JSON.stringify(lan.process.output()));
    t.comment(routing.recentOutput('red').join('\n'));
    throw e;
  });
  t.same(red.value, ['10.20.0.0/24', '10.40.0.0/16'], 'red: its prefix and the aggregate instead of the two sites');
  const blue = await until('blue session', () => lan.learned('blue'), (p) => p.length === 1);
  t.same(blue.value, ['10.20.0.0/24'], 'blue: the same prefix, in its own session and table');
  t.match(await lan.birdc('show', 'route', 'table', 't_red', 'all', '10.20.0.0/24'), /BGP.community: \(65001,7\)/, 'community attached');
  t.match(await lan.birdc('show', 'route', 'table', 't_blue', 'all', '10.20.0.0/24'), /BGP.next_hop: 192\.0\.2\.2/, 'blue announces from its own address');
  t.ok(events.some((e) => e.action === 'announce' && e.tenant === 'red' && e.prefix === '10.40.0.0/16'), 'routing_change announce logged');

  // Imports: only inside `allow`, at most max_prefixes; blue imports nothing; no leak between tenants.
  const st = await until('red imports', () => routing.status(), (s) => (s.tenants.find((x) => x.tenant === 'red')?.neighbors[0]?.learned.length ?? 0) >= 10);
  const redN = st.value.tenants.find((x) => x.tenant === 'red')?.neighbors[0];
  t.equal(redN?.state, 'Established');
  t.equal(redN?.learned.length, 10, 'red learned exactly max_prefixes routes');
  t.notOk(redN?.learned.includes('10.60.0.0/24'), 'the forbidden prefix was filtered');
  t.ok((redN?.filtered ?? 0) >= 1, 'filtered updates counted');
  t.ok(redN?.importLimitHit, 'the import limit was hit (flood blocked)');
  const blueN = st.value.tenants.find((x) => x.tenant === 'blue')?.neighbors[0];
  t.same(blueN?.learned, [], 'blue learned nothing');
  t.same(await lan.learned('blue'), ['10.20.0.0/24'], "red's learned routes never reach blue's neighbour");
  t.same(await lan.learned('red'), ['10.20.0.0/24', '10.40.0.0/16'], 'learned routes are never re-announced');

  // Liveness: red's TUN prefix goes down → withdrawn; the aggregate stays while one site is live.
  events.length = 0;
  routing.setReachable('red', [
    { prefix: '10.40.1.0/24', source: 'ipsec', via: 'site-a' },
  ]);
  const gone = await until('withdrawal', () => lan.learned('red'), (p) => !p.includes('10.20.0.0/24'));
  t.same(gone.value, ['10.40.0.0/16'], 'withdrawn, aggregate kept');
  t.ok(gone.ms < 3000, `withdrawn within 3 s of going down (${gone.ms} ms)`);
  t.same(await lan.learned('blue'), ['10.20.0.0/24'], "blue's identical prefix is untouched");
  t.ok(events.some((e) => e.action === 'withdraw' && e.prefix === '10.20.0.0/24'), 'routing_change withdraw logged');
  t.equal(await lan.state('blue'), 'Established', 'the other session never reset');
  routing.setReachable('red', [
    { prefix: '10.20.0.0/24', source: 'tun', via: 'tr' },
    { prefix: '10.40.1.0/24', source: 'ipsec', via: 'site-a' },
  ]);
  const back = await until('re-announcement', () => lan.learned('red'), (p) => p.includes('10.20.0.0/24'));
  t.ok(back.ms < 3000, `re-announced within 3 s (${back.ms} ms)`);

  // A BIRD crash: restarted by the supervisor, announcements return.
  const before = (await routing.status()).starts;
  const pidFile = (routing.controlSocket('red') as string).replace(/bird\.ctl$/, 'bird.pid');
  const pid = Number((await lab.exec(nsV, 'cat', [pidFile])).stdout.trim());
  process.kill(pid, 'SIGKILL');
  await until('bird restarted', () => routing.status().catch(() => ({ starts: before, running: false, tenants: [] })), (s) => s.starts > before && s.running);
  const again = await until('announcements after restart', () => lan.learned('red'), (p) => p.length === 2, 40_000);
  t.same(again.value, ['10.20.0.0/24', '10.40.0.0/16'], 'announced again after a BIRD crash');
  t.same(await lan.learned('blue'), ['10.20.0.0/24'], "the other tenant's speaker was not affected");

  await routing.stop();
  await closeLab(t, lab);
});
