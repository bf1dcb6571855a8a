// Remote access at its limits (strongSwan clients with kernel-libipsec, as remote-access.test.ts):
//   1. many clients of one client charon initiate at the same instant: all connected within seconds;
//      a client asking for an address outside its tenant's pool gets a pool address, never the
//      one it asked for; the tenant's BGP neighbour (BIRD) learns the pool prefix while a client
//      holds a lease, and loses it when the last client leaves and when the section is removed.
//   2. remote access added live to a vrouter that started without IPsec: a client connects and
//      reaches its tenant; a client asking for another tenant's pool address gets its own
//      tenant's; a reload charon partly refuses (a pool's range changed under a live lease) is
//      rolled back with the field and reason; removing the section ends the client's session and
//      unloads the pool from charon.
// CVLAN_TEST_DUMP=/tmp/x writes the daemon's and the clients' logs of the first test to /tmp/x.*;
// CVLAN_TEST_LOG_LEVEL=debug adds charon's lines to the daemon's.
import t, { type Test } from 'tap';
import { randomBytes } from 'node:crypto';
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { adminGet } from '../../src/api/client.js';
import type { RemoteAccessView } from '../../src/remote-access/service.js';
import { useLab } from '../harness/tap.js';
import type { Lab } from '../harness/lab.js';
import { vrouterRun, type VrouterRun } from '../harness/vrouter.js';
import { makePki } from '../harness/pki.js';
import { ikeClients, type IkeClients } from '../harness/ike-clients.js';
import { birdRouter } from '../harness/bird.js';
import { cvlanTestbedMissing } from '../harness/cvlan.js';
import { missingPrerequisites, tools } from '../harness/tools.js';
import { until } from '../harness/wait.js';
import { waitForPing } from '../harness/ping.js';
import { run } from '../harness/exec.js';

const skip = cvlanTestbedMissing() ?? missingPrerequisites('charon', 'swanctl', 'pki', 'bird', 'birdc');
const LISTEN = '192.168.40.1';
const POOL = '10.99.0.0/28';
const PARALLEL = 12;

const pem = (p: string): string => readFileSync(p, 'utf8');
// Each password starts as swanctl's base64 prefix does ("0s"): the client must still be given the
// password itself, not what swanctl would decode from it (`swanctlSecret`).
const secret = (): string => `0s${randomBytes(12).toString('base64')}`;

/** A namespace for a client charon with `count` source addresses on a link to the vrouter. */
async function clientSide(lab: Lab, vr: string, count: number): Promise<{ ns: string; addr: (i: number) => string }> {
  const ns = await lab.namespace('cl');
  const addr = (i: number): string => `192.168.40.${10 + i}`;
  await lab.veth({ ns, addresses: [`${addr(0)}/24`] }, { ns: vr, addresses: [`${LISTEN}/24`] });
  const dev = (await lab.ip(ns, ['-o', 'link', 'show', 'type', 'veth'])).stdout.split(':')[1]!.trim().split('@')[0]!;
  for (let i = 1; i < count; i++) await lab.addAddress(ns, dev, `${addr(i)}/24`);
  return { ns, addr };
}

function viewOf(v: VrouterRun): () => Promise<RemoteAccessView> {
  const admin = { kind: 'unix' as const, socketPath: v.admin };
  return async () => JSON.parse((await adminGet(admin, '/v1/clients')).body) as RemoteAccessView;
}

function eventsOf(v: VrouterRun): (name: string) => Record<string, unknown>[] {
  return (name) =>
    v.process
      .output()
      .map((l) => l.line)
      .filter((l) => l.includes(`"event":"${name}"`))
      .map((l) => JSON.parse(l.slice(l.indexOf('{'))) as Record<string, unknown>);
}

/** With CVLAN_TEST_DUMP, every line of the daemon and the client charon from now on, to files. */
function dump(v: VrouterRun, clients: IkeClients): void {
  const to = process.env.CVLAN_TEST_DUMP;
  if (!to) return;
  writeFileSync(`${to}.vrouter`, '');
  writeFileSync(`${to}.clients`, '');
  v.process.onLine((l) => appendFileSync(`${to}.vrouter`, `${l.line}\n`));
  clients.process.onLine((l) => appendFileSync(`${to}.clients`, `${l.line}\n`));
}

const v4 = (l: string[]): string => l.find((x) => !x.includes(':')) ?? '';
const inPool = (a: string): boolean => /^10\.99\.0\.(\d+)$/.test(a) && Number(a.split('.')[3]) >= 1 && Number(a.split('.')[3]) <= 14;

/** Reloads the daemon with `doc` and waits for it to apply or refuse it. */
async function reload(t: Test, v: VrouterRun, doc: object): Promise<'applied' | 'refused'> {
  const events = eventsOf(v);
  const [applied, refused] = [events('config_applied').length, events('config_refused').length];
  writeFileSync(v.config, JSON.stringify(doc));
  v.process.signal('SIGHUP');
  const r = await until(
    'reload',
    async () => (events('config_refused').length > refused ? 'refused' : events('config_applied').length > applied ? 'applied' : undefined),
    (x) => x !== undefined,
    60_000,
    100,
  );
  if (r.value === 'refused') t.comment(`refused: ${JSON.stringify(events('config_refused').at(-1))}`);
  return r.value!;
}

t.test('many clients at once, an out-of-pool request, the pool announced over BGP', { skip, timeout: 90_000 }, async (t) => {
  const lab = useLab(t, { label: 'ralimits' });
  const vr = await lab.namespace('vr');
  const cl = await clientSide(lab, vr, PARALLEL + 1);
  const lanNs = await lab.namespace('lan');
  await lab.veth({ ns: vr, addresses: ['192.0.2.1/24'] }, { ns: lanNs, addresses: ['192.0.2.254/24'] });
  const pki = await makePki(lab, ['vpn-ta.test'], 'ta CA');
  const users = Array.from({ length: PARALLEL + 1 }, (_, i) => ({ name: `user${i}@ta.test`, secret: secret() }));
  const bgp = { asn: 65001, neighbors: [{ name: 'lan', address: '192.0.2.254', asn: 65000, hold_time: 6 }] };
  const tenant = (withRa: boolean): object => ({
    tenant_id: 'ta',
    bgp,
    ...(withRa
      ? {
          remote_access: {
            local_id: 'vpn-ta.test',
            certificate: pem(pki.entities['vpn-ta.test']!.cert),
            private_key: pem(pki.entities['vpn-ta.test']!.key),
            local_subnets: ['10.60.0.0/24'],
            pools: [{ range: POOL }],
            users,
          },
        }
      : {}),
  });
  const lan = await birdRouter(lab, lanNs, { localAs: 65000, routerId: '192.0.2.254', sessions: [{ name: 'ta', neighbor: '192.0.2.1', neighborAs: 65001 }] });
  const v = await vrouterRun(lab, vr, { listenAddress: LISTEN, logLevel: process.env.CVLAN_TEST_LOG_LEVEL ?? 'info', timeoutMs: 60_000, document: { vrouter_id: 'vr', tenants: [tenant(true)] } });
  const view = viewOf(v);
  const ca = await ikeClients(lab, cl.ns, {
    server: LISTEN,
    serverId: 'vpn-ta.test',
    ca: pki.ca,
    remoteTs: ['10.60.0.0/24'],
    clients: users.map((u, i) => ({
      name: `a${i}`,
      localAddr: cl.addr(i),
      id: u.name,
      eap: { user: u.name, secret: u.secret },
      // The last one asks for an address outside the tenant's pool.
      vips: i === PARALLEL ? ['10.200.0.7'] : ['0.0.0.0'],
    })),
  });

  dump(v, ca);
  await until('BGP session', () => lan.state('ta'), (s) => s === 'Established');
  t.notOk((await lan.learned('ta')).includes(POOL), 'no client yet: the pool is not announced');

  // ---- all at the same instant
  const t0 = Date.now();
  const results = await Promise.allSettled(Array.from({ length: PARALLEL }, (_, i) => ca.initiate(`a${i}`, 30)));
  const ms = Date.now() - t0;
  const failed = results.flatMap((r, i) => (r.status === 'rejected' ? [`a${i}: ${String(r.reason).slice(0, 200)}`] : []));
  t.same(failed, [], `${PARALLEL} clients initiated at once all connected`);
  t.comment(`${PARALLEL} clients initiated at once, all connected in ${ms} ms`);
  t.ok(ms < 10_000, `within a few seconds (${ms} ms)`);
  const addrs = await Promise.all(Array.from({ length: PARALLEL }, (_, i) => ca.vips(`a${i}`)));
  t.equal(new Set(addrs.map(v4)).size, PARALLEL, 'each its own address');
  t.ok(addrs.every((l) => inPool(v4(l))), 'all from the pool');

  // ---- an address outside the pool is asked for
  await ca.initiate(`a${PARALLEL}`, 30);
  const got = await ca.vips(`a${PARALLEL}`);
  t.notOk(got.includes('10.200.0.7'), `the client asking for 10.200.0.7 did not get it (got ${got.join(' ')})`);
  t.ok(got.length === 1 && inPool(got[0]!), 'it got an address of its pool');
  const { value: vw } = await until('lease of the out-of-pool client', view, (w) => w.pools[0]?.leases.some((l) => l.identity === users[PARALLEL]!.name) ?? false, 10_000);
  const lease = vw.pools[0]!.leases.find((l) => l.identity === users[PARALLEL]!.name);
  t.equal(lease?.address, got[0], 'our lease view shows the pool address for it');
  t.notOk(vw.pools.some((p) => p.leases.some((l) => l.address === '10.200.0.7')), 'and no lease of 10.200.0.7');
  t.notOk(vw.clients.some((c) => c.addresses.includes('10.200.0.7')), 'no client holds 10.200.0.7');

  // ---- the pool is announced while leases are held, withdrawn with the section
  await until('pool announced', () => lan.learned('ta'), (l) => l.includes(POOL), 15_000);
  t.pass(`the BGP neighbour learned ${POOL}`);
  for (let i = 0; i <= PARALLEL; i++) await ca.terminate(`a${i}`);
  await until('pool withdrawn', () => lan.learned('ta'), (l) => !l.includes(POOL), 15_000);
  t.pass('withdrawn when the last client left');
  await ca.initiate('a0', 20);
  await until('pool announced again', () => lan.learned('ta'), (l) => l.includes(POOL), 15_000);
  t.pass('announced again with the next client');
  t.equal(await reload(t, v, { vrouter_id: 'vr', tenants: [tenant(false)] }), 'applied', 'remote access removed by reload');
  await until('pool withdrawn', () => lan.learned('ta'), (l) => !l.includes(POOL), 15_000);
  t.pass('withdrawn once the remote-access section is removed');
  await until('client session ended', () => ca.vips('a0'), (l) => l.length === 0, 15_000);
  t.pass('and the clients\' sessions ended');
});

t.test('remote access added live, partly refused and rolled back, removed live', { skip, timeout: 90_000 }, async (t) => {
  const lab = useLab(t, { label: 'ralive' });
  const vr = await lab.namespace('vr');
  const cl = await clientSide(lab, vr, 2);
  const nets = { ta: await lab.namespace('nta'), tb: await lab.namespace('ntb') };
  const pkis = { ta: await makePki(lab, ['vpn-ta.test'], 'ta CA'), tb: await makePki(lab, ['vpn-tb.test'], 'tb CA') };
  const users = [{ name: 'user0@ta.test', secret: secret() }, { name: 'user1@ta.test', secret: secret() }];
  const ra = (id: 'ta' | 'tb', range: string, u: typeof users): object => ({
    local_id: `vpn-${id}.test`,
    certificate: pem(pkis[id].entities[`vpn-${id}.test`]!.cert),
    private_key: pem(pkis[id].entities[`vpn-${id}.test`]!.key),
    local_subnets: [id === 'ta' ? '10.60.0.0/24' : '10.61.0.0/24'],
    pools: [{ range }],
    users: u,
  });
  const doc = (o: { ta?: object; tb?: object }): object => ({
    vrouter_id: 'vr',
    tenants: (['ta', 'tb'] as const).map((id) => ({
      tenant_id: id,
      tun: [{ name: `${id}-lan`, addresses: [id === 'ta' ? '10.60.0.1/24' : '10.61.0.1/24'], subnets: [id === 'ta' ? '10.60.0.0/24' : '10.61.0.0/24'], netns: nets[id] }],
      ...(o[id] ? { remote_access: o[id] } : {}),
    })),
  });
  const v = await vrouterRun(lab, vr, { listenAddress: LISTEN, logLevel: process.env.CVLAN_TEST_LOG_LEVEL ?? 'info', timeoutMs: 60_000, document: doc({}) });
  t.equal(v.ready.ipsec, null, 'started without IPsec');
  const view = viewOf(v);
  const events = eventsOf(v);
  const daemonPools = async (): Promise<string> =>
    (await run(tools.swanctl, ['--list-pools', '--uri', `unix://${v.charonVici}`], { ns: vr, timeoutMs: 10_000 })).stdout;

  // ---- added live
  const both = { ta: ra('ta', POOL, users), tb: ra('tb', '10.98.0.0/28', [{ name: 'user0@tb.test', secret: secret() }]) };
  t.equal(await reload(t, v, doc(both)), 'applied', 'remote access added by reload');
  const ca = await ikeClients(lab, cl.ns, {
    server: LISTEN,
    serverId: 'vpn-ta.test',
    ca: pkis.ta.ca,
    remoteTs: ['10.60.0.0/24'],
    clients: users.map((u, i) => ({
      name: `a${i}`,
      localAddr: cl.addr(i),
      id: u.name,
      eap: { user: u.name, secret: u.secret },
      // The second asks for an address of tb's pool.
      vips: i === 1 ? ['10.98.0.3'] : ['0.0.0.0'],
    })),
  });
  await ca.initiate('a0', 20);
  const a0 = v4(await ca.vips('a0'));
  t.ok(inPool(a0), `a client connects to the remote access added live (${a0})`);
  t.ok((await waitForPing(cl.ns, '10.60.0.1', 10_000, a0)).received > 0, "and reaches its tenant's network");
  await ca.initiate('a1', 20);
  const a1 = await ca.vips('a1');
  t.notOk(a1.includes('10.98.0.3'), `asking for tb's pool address 10.98.0.3, it did not get it (got ${a1.join(' ')})`);
  t.ok(a1.length === 1 && inPool(a1[0]!), "it got one of its own tenant's pool");
  const { value: vw } = await until('leases', view, (w) => (w.pools.find((p) => p.tenant === 'ta')?.online ?? 0) === 2, 10_000);
  t.notOk(vw.pools.some((p) => p.leases.some((l) => l.address === '10.98.0.3')), 'no lease of 10.98.0.3 in any pool');
  t.equal(vw.pools.find((p) => p.tenant === 'tb')?.online, 0, "tb's pool leased nothing");

  // ---- a pool's range changed under live leases: charon refuses, the reload is rolled back
  t.equal(await reload(t, v, doc({ ...both, ta: ra('ta', '10.97.0.0/28', users) })), 'refused', 'a pool charon refuses: the reload is refused');
  const refusal = events('config_refused').at(-1)!;
  const issue = (refusal.issues as { path: string; reason: string }[] | undefined)?.[0];
  t.equal(issue?.path, 'tenants[0].remote_access.pools[0]', 'the refusal names the field');
  t.match(issue?.reason ?? '', /load-pool.*previous configuration was restored/, 'and the reason, and that the previous state is back');
  t.ok(events('reconcile_rolled_back').length > 0, 'rolled back');
  t.match(await daemonPools(), /10\.99\.0\.0/, "charon still holds ta's pool");
  t.ok((await waitForPing(cl.ns, '10.60.0.1', 10_000, a0)).received > 0, 'the client is still connected and reaches its network');
  await until('view', view, (w) => w.pools.find((p) => p.tenant === 'ta')?.range === POOL, 5_000);

  // ---- removed live: ta's first (charon stays for tb), then tb's (charon stops)
  t.equal(await reload(t, v, doc({ tb: both.tb })), 'applied', "ta's remote access removed by reload");
  await until("the client's session ended", () => ca.vips('a0'), (l) => l.length === 0, 15_000);
  t.pass("the client's session ended");
  const pools = await daemonPools();
  t.notMatch(pools, /10\.99\.0\.0/, "charon no longer holds ta's pool");
  t.match(pools, /10\.98\.0\.0/, "and still holds tb's");
  t.notOk((await view()).pools.some((p) => p.tenant === 'ta'), 'the view lists no pool of ta');
  await t.rejects(ca.initiate('a0', 8), 'a client of ta can no longer connect');
  t.equal(await reload(t, v, doc({})), 'applied', 'the last remote access removed');
  await until('IPsec stopped', async () => (await lab.ip(vr, ['-o', 'link', 'show'])).stdout, (s) => !/ipsec-/.test(s), 15_000);
  t.pass('the IPsec service stopped with it');
});
