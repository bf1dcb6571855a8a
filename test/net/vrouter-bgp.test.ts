// The daemon announces what a tenant reaches to a LAN router over BGP, and the LAN's traffic
// follows: a WireGuard agent's allowed IPs are announced once its session is live (not before),
// the LAN router (BIRD, installing what it learns into its kernel) reaches the agent through the
// vrouter; an IPsec site's subnet is announced while its tunnel is up and withdrawn when the site
// takes it down; the LAN's own subnet, learned with `install`, carries the agent's traffic to the
// LAN; the admin API and /metrics show the session, a reload that removes the peer withdraws the
// prefix within seconds, and stopping the daemon takes its speaker (and routes) away.
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { adminGet } from '../../src/api/client.js';
import { useLab, closeLab } from '../harness/tap.js';
import { vrouterRun } from '../harness/vrouter.js';
import { wireguardGo, genKeyPair } from '../harness/wireguard.js';
import { strongswanPeer } from '../harness/strongswan.js';
import { randomBytes } from 'node:crypto';
import { birdRouter } from '../harness/bird.js';
import { cvlanTestbedMissing } from '../harness/cvlan.js';
import { until } from '../harness/wait.js';
import { missingPrerequisites } from '../harness/tools.js';
import { ping, waitForPing } from '../harness/ping.js';

const skip = cvlanTestbedMissing() ?? missingPrerequisites('wg', 'wireguardGo', 'bird', 'birdc', 'charon', 'swanctl');
const AGENT = '10.20.0.2';
const LAN = '192.0.2.254';

t.test('a tenant announces its live WireGuard peer over BGP; the LAN follows the route', { skip }, async (t) => {
  const lab = useLab(t, { label: 'vbgp' });
  const [nsA, nsR, nsL] = [await lab.namespace('agent'), await lab.namespace('vr'), await lab.namespace('lan')];
  await lab.veth({ ns: nsA, addresses: ['192.168.42.2/24'] }, { ns: nsR, addresses: ['192.168.42.1/24'] });
  await lab.veth({ ns: nsR, addresses: ['192.0.2.1/24'] }, { ns: nsL, addresses: [`${LAN}/24`] });
  const nsS = await lab.namespace('site');
  await lab.veth({ ns: nsS, addresses: ['192.168.43.2/24'] }, { ns: nsR, addresses: ['192.168.43.1/24'] });
  await lab.addAddress(nsS, 'lo', '10.10.0.1/32');
  // The LAN's own subnet behind the LAN router, which it announces to the vrouter.
  await lab.addAddress(nsL, 'lo', '10.50.1.1/32');
  const psk = randomBytes(24).toString('base64');
  const [vrKeys, agentKeys] = [await genKeyPair(), await genKeyPair()];
  const peer = { name: 'agent', public_key: agentKeys.publicKey, allowed_ips: [`${AGENT}/32`] };
  const doc = (peers: unknown[]): unknown => ({
    vrouter_id: 'vr',
    tenant_id: 'acme',
    wireguard: { listen_port: 51820, private_key: vrKeys.privateKey },
    wireguard_peers: peers,
    tunnels: [
      {
        id: 'site',
        type: 'ipsec',
        local_id: 'vr.vbgp.cvlan',
        remote_id: 'site.vbgp.cvlan',
        auth: { method: 'psk', psk },
        local_subnets: ['192.0.2.0/24'],
        remote_subnets: ['10.10.0.0/24'],
      },
    ],
    bgp: {
      asn: 65001,
      neighbors: [{ name: 'lan', address: LAN, asn: 65000, hold_time: 6, import: { max_prefixes: 10, allow: ['10.50.0.0/16'], install: true } }],
    },
  });
  const lan = await birdRouter(lab, nsL, {
    localAs: 65000,
    routerId: LAN,
    sessions: [{ name: 'acme', neighbor: '192.0.2.1', neighborAs: 65001, kernel: true, announce: ['10.50.1.0/24'] }],
  });
  const v = await vrouterRun(lab, nsR, { document: doc([peer]), listenAddress: '192.168.43.1', logLevel: 'info' });
  const api = { kind: 'unix' as const, socketPath: v.admin };
  const routesView = async () =>
    JSON.parse((await adminGet(api, '/v1/routes?tenant=acme')).body) as { bgp: { announced: string[]; neighbors: { name: string; state: string }[] } | null };

  await until('BGP session', () => lan.state('acme'), (s) => s === 'Established');
  t.same(await lan.learned('acme'), [], 'a peer without a session, a tunnel that is down: nothing announced');
  await until('learned route installed', async () => (await lab.ip(nsR, ['route', 'show', '10.50.1.0/24'])).stdout, (r) => r.includes(`via ${LAN}`));
  t.pass("the LAN's subnet, learned with install, is in the vrouter's routing table");

  // The IPsec site: announced while its tunnel is up, withdrawn when the site takes it down.
  const site = await strongswanPeer(lab, nsS, {
    localAddr: '192.168.43.2',
    remoteAddr: '192.168.43.1',
    localId: 'site.vbgp.cvlan',
    remoteId: 'vr.vbgp.cvlan',
    localTs: ['10.10.0.0/24'],
    remoteTs: ['192.0.2.0/24'],
    auth: { method: 'psk', psk },
    forceEncap: true,
  });
  await site.initiate(30);
  await until('site announced', () => lan.learned('acme'), (p) => p.includes('10.10.0.0/24'), 15_000);
  t.equal((await ping(nsL, '10.10.0.1', { count: 3, source: LAN })).received, 3, 'LAN → IPsec site through the announced route');
  const down = Date.now();
  await site.swanctl(['--terminate', '--ike', site.name]);
  await until('site withdrawn', () => lan.learned('acme'), (p) => !p.includes('10.10.0.0/24'), 10_000);
  const siteMs = Date.now() - down;
  t.ok(siteMs < 3000, `the site's subnet withdrawn ${siteMs} ms after its tunnel went down`);

  // The agent's first packet makes the handshake; the announcement follows, then the reply.
  await wireguardGo(lab, nsA, {
    keys: agentKeys,
    addresses: [`${AGENT}/24`],
    peers: [{ publicKey: vrKeys.publicKey, endpoint: '192.168.42.1:51820', allowedIps: ['192.0.2.0/24', '10.50.0.0/16'] }],
    routes: ['192.0.2.0/24', '10.50.0.0/16'],
  });
  t.ok((await waitForPing(nsA, LAN, 30_000, AGENT)).received > 0, 'agent → LAN router, the reply routed back by the learned route');
  t.equal((await ping(nsA, '10.50.1.1', { count: 3, source: AGENT })).received, 3, "agent → the LAN's subnet, by the route the vrouter learned");
  const learned = await until('announcement', () => lan.learned('acme'), (p) => p.length > 0);
  t.same(learned.value, [`${AGENT}/32`], "the live peer's allowed IPs are announced (the learned route is not re-announced)");
  t.match((await lab.ip(nsL, ['route', 'show', `${AGENT}/32`])).stdout, /via 192\.0\.2\.1/, 'the LAN router installed it');
  t.equal((await ping(nsL, AGENT, { count: 3, source: LAN })).received, 3, 'LAN → agent follows the learned route');

  const view = await until('bgp view', routesView, (r) => r.bgp?.neighbors[0]?.state === 'Established');
  t.same(view.value.bgp?.announced, [`${AGENT}/32`], 'the admin API shows the announcement');
  t.same((view.value.bgp?.neighbors[0] as { learned?: string[] } | undefined)?.learned, ['10.50.1.0/24'], 'and the learned route');
  t.ok(
    v.process.output().some((l) => /"event":"bgp_session"/.test(l.line) && /"state":"Established"/.test(l.line) && /"neighbor":"lan"/.test(l.line)),
    'bgp_session Established logged',
  );
  const metrics = (await adminGet(api, '/metrics')).body;
  t.match(metrics, /cvlan_vrouter_bgp_session_established\{tenant="acme",neighbor="lan"\} 1/, 'metric: session established');
  t.match(metrics, /cvlan_vrouter_bgp_prefixes_announced\{tenant="acme"\} 1/, 'metric: one prefix announced');

  // The peer removed by a reload: withdrawn within seconds, logged.
  writeFileSync(v.config, JSON.stringify(doc([]), null, 2));
  const hup = Date.now();
  process.kill(v.process.pid, 'SIGHUP');
  const gone = await until('withdrawal', () => lan.learned('acme'), (p) => p.length === 0, 10_000);
  const withdrawMs = Date.now() - hup;
  t.ok(withdrawMs < 3000, `withdrawn ${withdrawMs} ms after the reload`);
  t.same(gone.value, []);
  t.ok(
    v.process.output().some((l) => /"event":"routing_change"/.test(l.line) && /"action":"withdraw"/.test(l.line) && l.line.includes(`${AGENT}/32`)),
    'routing_change withdraw logged',
  );
  t.equal(await lan.state('acme'), 'Established', 'the session stayed up across the reload');

  // Stop: the speaker goes with the daemon.
  t.equal((await v.process.stop(15_000)).code, 0, 'the daemon stops cleanly');
  await until('session down', () => lan.state('acme'), (s) => s !== 'Established', 15_000);
  t.pass('the LAN router saw the session close');
  await closeLab(t, lab);
});
