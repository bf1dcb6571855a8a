// The harness's own building blocks: namespaces over veth (IPv4 + IPv6), a bridge, a NAT router,
// injected loss, and the cvlan-vrouter testbed once it is built.
import t from 'tap';
import { closeLab, useLab } from '../harness/tap.js';
import { natTopology, twoHosts } from '../harness/topology.js';
import { dropPercent } from '../harness/nft.js';
import { ping, waitForPing } from '../harness/ping.js';
import { run } from '../harness/exec.js';
import { missingPrerequisites, tools } from '../harness/tools.js';
import { cvlanTestbed, cvlanTestbedMissing } from '../harness/cvlan.js';

const skip = missingPrerequisites('ping', 'nft', 'setpriv');

t.test('two namespaces over veth, IPv4 and IPv6', { skip }, async (t) => {
  const lab = useLab(t, { label: 'basic' });
  const h = await twoHosts(lab);
  t.equal((await ping(h.a, h.addrB, { count: 3, interval: 0.05 })).received, 3, 'IPv4 ping');
  t.equal((await ping(h.a, h.addr6B, { count: 3, interval: 0.05 })).received, 3, 'IPv6 ping');
  // a negative control, so the assertions above can fail: nothing answers on an unused address
  t.equal((await ping(h.a, '192.168.77.3', { count: 1, wait: 1 })).received, 0, 'unused address is silent');
  t.match(h.link[0].name, /^v[a-z0-9]{5}$/, 'interface names carry a random suffix');
  await closeLab(t, lab);
});

t.test('three namespaces on a bridge in a fourth', { skip }, async (t) => {
  const lab = useLab(t, { label: 'br' });
  const sw = await lab.namespace('sw');
  const br = await lab.bridge(sw);
  const hosts: string[] = [];
  for (let i = 1; i <= 3; i++) {
    const ns = await lab.namespace(`h${i}`);
    const [, port] = await lab.veth({ ns, addresses: [`10.5.0.${i}/24`] }, { ns: sw });
    await lab.attach(port, br);
    hosts.push(ns);
  }
  await waitForPing(hosts[0], '10.5.0.3', 5000);
  t.equal((await ping(hosts[1], '10.5.0.1', { count: 2, interval: 0.05 })).received, 2, 'hosts reach each other through the bridge');
  await closeLab(t, lab);
});

t.test('a host behind masquerade NAT reaches the outside', { skip }, async (t) => {
  const lab = useLab(t, { label: 'nat' });
  const n = await natTopology(lab);
  t.equal((await ping(n.inside, n.outsideAddr, { count: 3, interval: 0.05 })).received, 3, 'inside → outside through NAT');
  const rules = await run(tools.nft, ['list', 'ruleset'], { ns: n.router });
  t.match(rules.stdout, /masquerade/, 'masquerade rule present in the router');
  // Without the NAT rule the outside host has no route back to 10.0.1.0/24, so replies vanish:
  // this is what proves the first ping went through NAT.
  const table = /table inet (cvlan_nat_\w+)/.exec(rules.stdout)?.[1];
  t.ok(table, 'NAT table found');
  await run(tools.nft, ['delete', 'table', 'inet', table as string], { ns: n.router });
  t.equal((await ping(n.inside, n.outsideAddr, { count: 2, wait: 1 })).received, 0, 'no NAT, no replies');
  await closeLab(t, lab);
});

t.test('loss rule drops roughly the stated share', { skip }, async (t) => {
  const lab = useLab(t, { label: 'loss' });
  const h = await twoHosts(lab);
  const rule = await dropPercent(lab, h.link[1], { percent: 30 });
  const n = 300;
  const p = await ping(h.a, h.addrB, { count: n, interval: 0.002, wait: 1 });
  // 300 trials at p = 0.3: sd ≈ 2.6 points; ±12 points is beyond 4 sd
  t.ok(p.loss > 0.18 && p.loss < 0.42, `loss ${(p.loss * 100).toFixed(1)} % for a 30 % rule`);
  const dropped = await rule.dropped();
  // IPv6 neighbour/router traffic may add a stray count; echo requests make up the rest
  const lost = p.transmitted - p.received;
  t.ok(dropped >= lost && dropped <= lost + 5, `the rule counted the lost echo requests (${dropped} dropped, ${lost} lost)`);
  await closeLab(t, lab);
});

t.test('cvlan-vrouter testbed ⇄ testbed over the plain transport', { skip: skip ?? cvlanTestbedMissing() }, async (t) => {
  const lab = useLab(t, { label: 'cvt' });
  const h = await twoHosts(lab);
  const cfg = (self: 1 | 2, peer: string) => ({
    transport: 'plain-insecure-test-only' as const,
    tun: { name: 'cvt0', address: `10.77.0.${self}/24`, mtu: 1420 },
    listen_port: 7000,
    workers: 2,
    peers: [{ endpoint: `${peer}:7000`, allowed_ips: [`10.77.0.${self === 1 ? 2 : 1}/32`] }],
  });
  const a = await cvlanTestbed(lab, h.a, cfg(1, h.addrB));
  const b = await cvlanTestbed(lab, h.b, cfg(2, h.addrA));
  await waitForPing(h.a, '10.77.0.2', 10_000);
  t.equal((await ping(h.a, '10.77.0.2', { count: 5, interval: 0.05 })).received, 5, 'ping through the testbed');
  t.same(await b.stop(), { code: 0, signal: null }, 'testbed exits 0 on SIGTERM');
  t.same(await a.stop(), { code: 0, signal: null }, 'testbed exits 0 on SIGTERM');
  const links = await lab.ip(h.a, ['link', 'show']);
  t.notMatch(links.stdout, /cvt0/, 'TUN device removed on exit');
  await closeLab(t, lab);
});
