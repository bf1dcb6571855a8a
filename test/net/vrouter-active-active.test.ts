// Active-active: two vrouters with the same configuration behind an ECMP router. Both announce
// the anycast service address over BGP; the router (BIRD, equal-cost paths merged into its kernel,
// hashing on source addresses) spreads the peers over them. Each node terminates the WireGuard
// agents and IPsec sites that reach it and announces their prefixes, so the router's traffic to a
// peer goes to the node that holds its session. One node is SIGKILLed: its speaker dies with it,
// the router drops its paths, and every tunnel comes back on the survivor (WireGuard after the
// agent's own retry timer, IPsec after the site's DPD) with the routes following. Times measured.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { adminGet } from '../../src/api/client.js';
import { useLab, closeLab } from '../harness/tap.js';
import { vrouterRun, type VrouterRun } from '../harness/vrouter.js';
import { wireguardGo, genKeyPair } from '../harness/wireguard.js';
import { strongswanPeer } from '../harness/strongswan.js';
import { birdRouter } from '../harness/bird.js';
import { cvlanTestbedMissing } from '../harness/cvlan.js';
import { until } from '../harness/wait.js';
import { missingPrerequisites } from '../harness/tools.js';
import { ping, iperfServer, iperfClient } from '../harness/ping.js';

const skip = cvlanTestbedMissing() ?? missingPrerequisites('wg', 'wireguardGo', 'bird', 'birdc', 'charon', 'swanctl', 'iperf3');
const SERVICE = '198.51.100.10';
const ROUTER = '192.0.2.254';
const AGENTS = 3;
const SITES = 2;

t.test('active-active behind ECMP: peers spread, one node killed, every tunnel back on the survivor', { skip }, async (t) => {
  const lab = useLab(t, { label: 'aa' });
  const nsE = await lab.namespace('ecmp');
  const nodes = [await lab.namespace('vra'), await lab.namespace('vrb')];
  // The fabric: the router and both nodes on one segment; the service address on each node's lo,
  // the source of everything the node sends outside the segment.
  const br = await lab.bridge(nsE, { addresses: [`${ROUTER}/24`] });
  for (const [i, ns] of nodes.entries()) {
    const [e] = await lab.veth({ ns: nsE }, { ns, addresses: [`192.0.2.${i + 1}/24`] });
    await lab.attach(e, br);
    await lab.addAddress(ns, 'lo', `${SERVICE}/32`);
    await lab.addRoute(ns, 'default', { via: ROUTER, src: SERVICE });
  }
  await lab.forwarding(nsE);
  // L3 hashing: a peer's packets keep their node even when IKE floats from port 500 to 4500.
  await lab.sysctl(nsE, 'net.ipv4.fib_multipath_hash_policy', '0');

  const wgKeys = await genKeyPair();
  const agentKeys = await Promise.all(Array.from({ length: AGENTS }, () => genKeyPair()));
  const psks = Array.from({ length: SITES }, () => randomBytes(24).toString('base64'));
  const doc = {
    vrouter_id: 'vr',
    tenant_id: 'acme',
    wireguard: { listen_port: 51820, private_key: wgKeys.privateKey },
    wireguard_peers: agentKeys.map((k, i) => ({ name: `agent${i}`, public_key: k.publicKey, allowed_ips: [`10.20.${i}.2/32`] })),
    tunnels: psks.map((psk, i) => ({
      id: `site${i}`,
      type: 'ipsec',
      local_id: 'vr.aa.cvlan',
      remote_id: `site${i}.aa.cvlan`,
      auth: { method: 'psk', psk },
      local_subnets: ['192.0.2.0/24'],
      remote_subnets: [`10.10.${i}.0/24`],
      dpd_delay: 2,
    })),
    bgp: { asn: 65001, neighbors: [{ name: 'router', address: ROUTER, asn: 65000, hold_time: 6 }], announce: { static: [`${SERVICE}/32`] } },
  };
  const vr: VrouterRun[] = [];
  for (const ns of nodes) vr.push(await vrouterRun(lab, ns, { document: doc, listenAddress: SERVICE, logLevel: 'info', privateRun: true }));
  const router = await birdRouter(lab, nsE, {
    localAs: 65000,
    routerId: ROUTER,
    ecmp: true,
    sessions: nodes.map((_, i) => ({ name: `node${i}`, neighbor: `192.0.2.${i + 1}`, neighborAs: 65001 })),
  });
  const serviceRoute = async (): Promise<string> => (await lab.ip(nsE, ['route', 'show', `${SERVICE}/32`])).stdout;
  await until('anycast over both nodes', serviceRoute, (r) => (r.match(/nexthop via/g) ?? []).length === 2);
  t.pass('the router has two equal-cost paths to the service address');
  t.same([await router.state('node0'), await router.state('node1')], ['Established', 'Established'], 'a BGP session with each node');

  // Peers behind the router, one /24 each. The router's hash of a peer's address picks its node;
  // each peer gets an address the router sends to the node planned for it (asked with `ip route
  // get`), so both nodes hold both kinds of peer and the failover covers WireGuard and IPsec.
  const plan = { agent: [0, 1, 0], site: [1, 0] };
  const peerLink = async (net: string, node: number): Promise<{ ns: string; addr: string; gw: string }> => {
    const ns = await lab.namespace('peer');
    const gw = `${net}.1`;
    const [e] = await lab.veth({ ns: nsE, addresses: [`${gw}/24`] }, { ns });
    for (let h = 2; h < 250; h++) {
      const r = await lab.ip(nsE, ['route', 'get', SERVICE, 'from', `${net}.${h}`, 'iif', e.name]);
      if (!r.stdout.includes(`via 192.0.2.${node + 1} `)) continue;
      const dev = (await lab.ip(ns, ['-o', 'link', 'show', 'type', 'veth'])).stdout.split(':')[1]?.trim().split('@')[0] as string;
      await lab.addAddress(ns, dev, `${net}.${h}/24`);
      await lab.addRoute(ns, 'default', { via: gw });
      return { ns, addr: `${net}.${h}`, gw };
    }
    throw new Error(`no address in ${net}.0/24 hashes to node ${node}`);
  };
  const peers: { name: string; inner: string; ns: string; planned: number }[] = [];
  for (let i = 0; i < AGENTS; i++) {
    const { ns } = await peerLink(`10.0.${i}`, plan.agent[i]!);
    await wireguardGo(lab, ns, {
      keys: agentKeys[i]!,
      addresses: [`10.20.${i}.2/24`],
      peers: [{ publicKey: wgKeys.publicKey, endpoint: `${SERVICE}:51820`, allowedIps: ['192.0.2.0/24'], persistentKeepalive: 5 }],
      routes: ['192.0.2.0/24'],
    });
    peers.push({ name: `agent${i}`, inner: `10.20.${i}.2`, ns, planned: plan.agent[i]! });
  }
  for (let i = 0; i < SITES; i++) {
    const { ns, addr } = await peerLink(`10.1.${i}`, plan.site[i]!);
    await lab.addAddress(ns, 'lo', `10.10.${i}.1/32`);
    const site = await strongswanPeer(lab, ns, {
      localAddr: addr,
      remoteAddr: SERVICE,
      localId: `site${i}.aa.cvlan`,
      remoteId: 'vr.aa.cvlan',
      localTs: [`10.10.${i}.0/24`],
      remoteTs: ['192.0.2.0/24'],
      auth: { method: 'psk', psk: psks[i]! },
      forceEncap: true,
      dpdDelay: '2s',
      dpdAction: 'restart',
      // Give up on a dead node within seconds (defaults retry for minutes).
      extraCharonConf: '  retransmit_tries = 2\n  retransmit_timeout = 1.0\n  retransmit_base = 1.4',
    });
    await site.initiate(30);
    peers.push({ name: `site${i}`, inner: `10.10.${i}.1`, ns, planned: plan.site[i]! });
  }
  // The agents speak first (their pings make the handshakes); the router then reaches every peer.
  const reach = async (p: (typeof peers)[number]): Promise<boolean> => {
    if (p.name.startsWith('agent')) await ping(p.ns, ROUTER, { count: 1, source: p.inner, wait: 1 }).catch(() => undefined);
    return (await ping(nsE, p.inner, { count: 1, source: ROUTER, wait: 1 })).received === 1;
  };
  for (const p of peers) await until(`${p.name} reachable`, () => reach(p), (ok) => ok, 45_000);
  t.pass('the router reaches every peer through the node that holds it');

  // Which node holds what: the peer's prefix in the node's announcements.
  const announced = async (v: VrouterRun): Promise<string[]> =>
    ((JSON.parse((await adminGet({ kind: 'unix', socketPath: v.admin }, '/v1/routes?tenant=acme')).body) as { bgp: { announced: string[] } | null }).bgp?.announced ?? []);
  const holder = async (p: (typeof peers)[number]): Promise<number> => {
    const prefix = p.name.startsWith('agent') ? `${p.inner}/32` : `${p.inner.replace(/\.1$/, '.0')}/24`;
    const [a, b] = [await announced(vr[0]!), await announced(vr[1]!)];
    return a.includes(prefix) ? (b.includes(prefix) ? -1 : 0) : b.includes(prefix) ? 1 : -2;
  };
  await until('every peer announced by exactly one node', async () => Promise.all(peers.map(holder)), (h) => h.every((x) => x >= 0), 10_000);
  const where = await Promise.all(peers.map(holder));
  t.same(where, peers.map((p) => p.planned), `each peer is held by the node the hash sends it to (${peers.map((p, i) => `${p.name}→node${where[i]}`).join(', ')})`);

  // Traffic through each tunnel.
  for (const p of peers) {
    await iperfServer(lab, p.ns, { bind: p.inner, port: 5301 });
    const r = await iperfClient(nsE, p.inner, { duration: 1, port: 5301 });
    t.ok(r.bitsPerSecond > 1e6, `iperf3 router → ${p.name}: ${(r.bitsPerSecond / 1e6).toFixed(0)} Mbit/s`);
  }

  // Node 0 holds agents and a site.
  const victim = 0;
  const survivor = 1 - victim;
  const moved = peers.filter((_, i) => where[i] === victim);
  const killedAt = Date.now();
  process.kill(vr[victim]!.process.pid, 'SIGKILL');
  const paths = await until('the dead node leaves the ECMP route', serviceRoute, (r) => !r.includes('nexthop') && r.includes(`192.0.2.${survivor + 1}`), 20_000, 100);
  t.comment(`ECMP route converged ${paths.ms} ms after the kill`);

  // Every moved peer back, through the survivor; the others never left.
  const times: Record<string, number> = {};
  await Promise.all(
    moved.map(async (p) => {
      await until(`${p.name} back`, () => reach(p), (ok) => ok, 90_000, 500);
      times[p.name] = Date.now() - killedAt;
    }),
  );
  for (const p of moved) t.pass(`${p.name} back on the survivor after ${((times[p.name] ?? 0) / 1000).toFixed(1)} s`);
  for (const p of peers) if (!moved.includes(p)) t.ok(await reach(p), `${p.name} (on the survivor) kept working`);
  // The survivor's announcements are read once a second: wait for the read that has them all.
  const prefixes = peers.map((p) => (p.name.startsWith('agent') ? `${p.inner}/32` : `${p.inner.replace(/\.1$/, '.0')}/24`));
  const after = await until('the survivor announces every peer', () => announced(vr[survivor]!), (a) => prefixes.every((x) => a.includes(x)), 10_000).catch(() => undefined);
  t.ok(after !== undefined, `the survivor announces every peer's prefix (${prefixes.join(', ')})`);
  t.comment(`failover times: ${JSON.stringify(times)}`);
  await closeLab(t, lab);
});
