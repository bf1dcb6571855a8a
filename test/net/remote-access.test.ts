// Remote-access clients (strongSwan charon with kernel-libipsec asking for `vips = 0.0.0.0, ::`)
// on one vrouter with three tenants whose pools are the same range:
//   ta: EAP-MSCHAPv2 users, 12 clients; each a distinct address and its pool's DNS, reaches its
//       tenant's network and nothing of tb's; a wrong password is refused; a client that connects
//       again gets its address back; a user removed from the configuration loses its session; with
//       the tenant's cap set to the 11 left, one more user is refused.
//   tb: device certificate + EAP (RFC 4739), 10 clients; the same addresses as ta's, isolated.
//   tc: device certificates only, a pool of 2: the third device is answered with
//       INTERNAL_ADDRESS_FAILURE; a CRL that revokes a device ends its live session and refuses it.
// Certificates are made here with `pki`. CVLAN_TEST_DUMP=/tmp/x keeps the daemon's whole log in
// /tmp/x.full (and the clients' last lines when they fail to connect); CVLAN_TEST_LOG_LEVEL=debug
// adds charon's lines to it.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { adminGet } from '../../src/api/client.js';
import type { RemoteAccessView } from '../../src/remote-access/service.js';
import { useLab } from '../harness/tap.js';
import type { Lab } from '../harness/lab.js';
import { vrouterRun } from '../harness/vrouter.js';
import { makePki, type Pki } from '../harness/pki.js';
import { ikeClients, type IkeClient } from '../harness/ike-clients.js';
import { cvlanTestbedMissing } from '../harness/cvlan.js';
import { missingPrerequisites, tools } from '../harness/tools.js';
import { ping, waitForPing } from '../harness/ping.js';
import { run } from '../harness/exec.js';

const skip = cvlanTestbedMissing() ?? missingPrerequisites('charon', 'swanctl', 'pki');
const LISTEN = '192.168.40.1';
const POOL = '10.99.0.0/24';
const N = { ta: 12, tb: 10 };

interface Side {
  id: 'ta' | 'tb' | 'tc';
  ns: string;
  net: string;
  /** Client source addresses. */
  addr: (i: number) => string;
}

async function side(lab: Lab, vr: string, id: Side['id'], n: number, count: number): Promise<Side> {
  const ns = await lab.namespace(`c${id}`);
  const net = await lab.namespace(`n${id}`);
  const addr = (i: number): string => `192.168.4${n}.${10 + i}`;
  // A leased IPv6 address is usable at once (charon waits for a tentative one to appear).
  for (const k of ['net.ipv6.conf.all.accept_dad', 'net.ipv6.conf.default.accept_dad']) await lab.sysctl(ns, k, '0');
  await lab.veth({ ns, addresses: [`${addr(0)}/24`] }, { ns: vr, addresses: [`192.168.4${n}.1/24`] });
  const dev = (await lab.ip(ns, ['-o', 'link', 'show', 'type', 'veth'])).stdout.split(':')[1]!.trim().split('@')[0]!;
  for (let i = 1; i < count; i++) await lab.addAddress(ns, dev, `${addr(i)}/24`);
  if (`192.168.4${n}.1` !== LISTEN) await lab.addRoute(ns, `${LISTEN}/32`, { via: `192.168.4${n}.1` });
  return { id, ns, net, addr };
}

const pem = (p: string): string => readFileSync(p, 'utf8');

function raDoc(s: Side, pki: Pki, extra: object): object {
  const lan = s.id === 'ta' ? '10.60.0' : s.id === 'tb' ? '10.61.0' : '10.62.0';
  return {
    tenant_id: s.id,
    tun: [{ name: `${s.id}-lan`, addresses: [`${lan}.1/24`], subnets: [`${lan}.0/24`], netns: s.net }],
    remote_access: {
      local_id: `vpn-${s.id}.test`,
      certificate: pem(pki.entities[`vpn-${s.id}.test`]!.cert),
      private_key: pem(pki.entities[`vpn-${s.id}.test`]!.key),
      // Both tenants' networks are offered, so a client sends tb's into the tunnel too.
      local_subnets: ['10.60.0.0/14'],
      ...extra,
    },
  };
}

t.test('remote access: pools, users, device certificates, isolation, exhaustion, revocation', { skip, timeout: 170_000 }, async (t) => {
  const lab = useLab(t, { label: 'remoteaccess' });
  const vr = await lab.namespace('vr');
  const A = await side(lab, vr, 'ta', 0, N.ta + 2);
  const B = await side(lab, vr, 'tb', 1, N.tb);
  const C = await side(lab, vr, 'tc', 2, 3);
  const started = Date.now();
  const pkiA = await makePki(lab, ['vpn-ta.test'], 'ta CA');
  const devB = Array.from({ length: N.tb }, (_, i) => `dev${i}.tb.test`);
  const pkiB = await makePki(lab, ['vpn-tb.test', ...devB], 'tb CA');
  const devC = ['dev0.tc.test', 'dev1.tc.test', 'dev2.tc.test'];
  const pkiC = await makePki(lab, ['vpn-tc.test', ...devC], 'tc CA');
  t.comment(`certificates: ${Date.now() - started} ms`);

  const secret = (): string => randomBytes(12).toString('base64');
  const usersA = Array.from({ length: N.ta }, (_, i) => ({ name: `user${i}@ta.test`, secret: secret() }));
  // The user the wrong password is tried for (its client charon holds one secret per identity).
  const mallory = { name: 'mallory@ta.test', secret: secret() };
  // A user who logs in only once the tenant is at its cap.
  const late = { name: 'late@ta.test', secret: secret() };
  const usersB = Array.from({ length: N.tb }, (_, i) => ({ name: `user${i}@tb.test`, secret: secret() }));
  const docA = raDoc(A, pkiA, {
    pools: [{ range: POOL, dns: ['10.60.0.53'], search_domains: ['ta.test'] }, { range: 'fd00:99::/120', dns: ['fd00:60::53'] }],
    users: [...usersA, mallory, late],
  });
  const docB = raDoc(B, pkiB, {
    auth: 'pubkey+eap',
    ca: pem(pkiB.ca),
    pools: [{ range: POOL, dns: ['10.61.0.53'] }],
    users: usersB,
    devices: devB.map((id) => ({ id, certificate: pem(pkiB.entities[id]!.cert) })),
  });
  const docC = (crl?: string): object =>
    raDoc(C, pkiC, {
      auth: 'pubkey',
      ca: pem(pkiC.ca),
      ...(crl ? { crl } : {}),
      pools: [{ range: '10.99.0.0/30' }],
      devices: devC.map((id) => ({ id, certificate: pem(pkiC.entities[id]!.cert) })),
    });
  const v = await vrouterRun(lab, vr, { listenAddress: LISTEN, logLevel: process.env.CVLAN_TEST_LOG_LEVEL ?? 'info', timeoutMs: 60_000, document: { vrouter_id: 'vr', tenants: [docA, docB, docC()] } });
  if (process.env.CVLAN_TEST_DUMP) {
    const { appendFileSync } = await import('node:fs');
    v.process.onLine((l) => appendFileSync(`${process.env.CVLAN_TEST_DUMP}.full`, `${l.line}\n`));
  }
  const admin = { kind: 'unix' as const, socketPath: v.admin };
  const view = async (): Promise<RemoteAccessView> => JSON.parse((await adminGet(admin, '/v1/clients')).body) as RemoteAccessView;
  const events = (name: string): Record<string, unknown>[] =>
    v.process
      .output()
      .map((l) => l.line)
      .filter((l) => l.includes(`"event":"${name}"`))
      .map((l) => JSON.parse(l.slice(l.indexOf('{'))) as Record<string, unknown>);

  // ---- tenant ta: EAP users
  const clientsA: IkeClient[] = usersA.map((u, i) => ({ name: `a${i}`, localAddr: A.addr(i), id: u.name, eap: { user: u.name, secret: u.secret } }));
  clientsA.push({ name: 'awrong', localAddr: A.addr(N.ta), id: mallory.name, eap: { user: mallory.name, secret: 'not the password' } });
  clientsA.push({ name: 'alate', localAddr: A.addr(N.ta + 1), id: late.name, eap: { user: late.name, secret: late.secret } });
  const ca = await ikeClients(lab, A.ns, { server: LISTEN, serverId: 'vpn-ta.test', ca: pkiA.ca, remoteTs: ['10.60.0.0/14'], clients: clientsA });
  // ---- tenant tb: certificate + EAP
  const clientsB: IkeClient[] = usersB.map((u, i) => ({
    name: `b${i}`,
    localAddr: B.addr(i),
    id: devB[i]!,
    cert: pkiB.entities[devB[i]!]!,
    eap: { user: u.name, secret: u.secret },
    vips: ['0.0.0.0'],
  }));
  const cb = await ikeClients(lab, B.ns, { server: LISTEN, serverId: 'vpn-tb.test', ca: pkiB.ca, remoteTs: ['10.60.0.0/14'], clients: clientsB });

  const t0 = Date.now();
  // One after the other, as clients arrive; each initiate returns when its CHILD_SA is up.
  const connect = async (): Promise<void> => {
    for (let i = 0; i < N.ta; i++) await ca.initiate(`a${i}`);
    for (let i = 0; i < N.tb; i++) await cb.initiate(`b${i}`);
  };
  await connect().catch((e: unknown) => {
    if (process.env.CVLAN_TEST_DUMP) {
      writeFileSync(`${process.env.CVLAN_TEST_DUMP}.vrouter`, v.process.output().map((l) => l.line).join('\n'));
      writeFileSync(`${process.env.CVLAN_TEST_DUMP}.ta`, ca.process.output().map((l) => l.line).join('\n'));
      writeFileSync(`${process.env.CVLAN_TEST_DUMP}.tb`, cb.process.output().map((l) => l.line).join('\n'));
    }
    throw e;
  });
  t.comment(`${N.ta + N.tb} clients connected in ${Date.now() - t0} ms`);

  const addrA = await Promise.all(usersA.map((_, i) => ca.vips(`a${i}`)));
  const addrB = await Promise.all(usersB.map((_, i) => cb.vips(`b${i}`)));
  const v4 = (l: string[]): string => l.find((x) => !x.includes(':')) ?? '';
  const v6 = (l: string[]): string => l.find((x) => x.includes(':')) ?? '';
  t.equal(new Set(addrA.map(v4)).size, N.ta, 'ta: every client has its own IPv4 address');
  t.ok(addrA.every((l) => /^10\.99\.0\.\d+$/.test(v4(l))), 'ta: from the pool');
  t.equal(new Set(addrA.map(v6)).size, N.ta, 'ta: and its own IPv6 address');
  t.ok(addrA.every((l) => v6(l).startsWith('fd00:99::')), 'ta: from the IPv6 pool');
  t.equal(new Set(addrB.map(v4)).size, N.tb, 'tb: every client has its own address');
  t.ok(addrB.every((l) => /^10\.99\.0\.\d+$/.test(v4(l))), 'tb: from the same range as ta');
  t.ok(addrB.some((l) => addrA.some((a) => v4(a) === v4(l))), 'the tenants lease the same addresses');
  t.match(ca.resolvConf(), /10\.60\.0\.53/, 'ta clients got ta\'s DNS server');
  t.match(ca.resolvConf(), /fd00:60::53/, 'and its IPv6 DNS server');
  t.match(cb.resolvConf(), /10\.61\.0\.53/, 'tb clients got tb\'s DNS server');
  t.notMatch(cb.resolvConf(), /10\.60\.0\.53/, 'and not ta\'s');

  for (let i = 0; i < N.ta; i++) {
    const r = await waitForPing(A.ns, '10.60.0.1', 10_000, v4(addrA[i]!));
    t.ok(r.received > 0, `ta client ${i} (${v4(addrA[i]!)}) reaches its tenant's network`);
  }
  for (let i = 0; i < N.tb; i++) {
    const r = await waitForPing(B.ns, '10.61.0.1', 10_000, v4(addrB[i]!));
    t.ok(r.received > 0, `tb client ${i} (${v4(addrB[i]!)}) reaches its tenant's network`);
  }
  t.equal((await ping(A.ns, '10.61.0.1', { count: 3, source: v4(addrA[0]!) })).received, 0, "ta client: nothing of tb's network");
  t.equal((await ping(B.ns, '10.60.0.1', { count: 3, source: v4(addrB[0]!) })).received, 0, "tb client: nothing of ta's network");

  let vw = await view();
  for (let i = 0; i < 20 && vw.clients.length < N.ta + N.tb; i++) {
    await new Promise((r) => setTimeout(r, 250));
    vw = await view();
  }
  t.equal(vw.clients.filter((c) => c.tenant === 'ta').length, N.ta, 'clients: ta');
  t.equal(vw.clients.filter((c) => c.tenant === 'tb').length, N.tb, 'clients: tb');
  t.ok(vw.clients.filter((c) => c.tenant === 'tb').every((c) => c.device?.endsWith('.tb.test') && c.user?.endsWith('@tb.test')), 'tb clients: device and user');
  const poolA = vw.pools.find((p) => p.tenant === 'ta' && p.range === POOL);
  t.same({ online: poolA?.online, size: poolA?.size }, { online: N.ta, size: 254 }, 'ta pool: leases in use / size');
  t.ok(events('client_connect').filter((e) => e.tenant === 'ta').length >= N.ta, 'client_connect logged');
  t.ok(events('client_connect').some((e) => e.user === usersA[3]!.name), 'with the user name');

  // ---- a wrong password
  await t.rejects(ca.initiate('awrong', 10), 'a wrong password is refused');
  const failed = events('client_auth_failed');
  t.ok(failed.some((e) => e.tenant === 'ta' && e.user === mallory.name), 'client_auth_failed names the user');
  t.notOk(v.process.output().some((l) => l.line.includes(mallory.secret) || l.line.includes('not the password')), 'and no password is logged');

  // ---- the same identity gets its address back
  const before = addrA[3]!;
  await ca.terminate('a3');
  await ca.initiate('a3');
  t.same(await ca.vips('a3'), before, 'a client that connects again keeps its addresses');

  // ---- tc: certificates only; a pool of 2 addresses
  const cc = await ikeClients(lab, C.ns, {
    server: LISTEN,
    serverId: 'vpn-tc.test',
    ca: pkiC.ca,
    remoteTs: ['10.62.0.0/24'],
    clients: devC.map((id, i) => ({ name: `c${i}`, localAddr: C.addr(i), id, cert: pkiC.entities[id]!, vips: ['0.0.0.0'] })),
  });
  await cc.initiate('c0');
  await cc.initiate('c1');
  t.ok((await waitForPing(C.ns, '10.62.0.1', 10_000, v4(await cc.vips('c0')))).received > 0, 'tc: a device with a certificate reaches its network');
  await t.rejects(cc.initiate('c2', 10), 'the third device finds the pool exhausted');
  t.ok(cc.process.output().some((l) => /INTERNAL_ADDRESS_FAILURE/.test(l.line)), 'answered with INTERNAL_ADDRESS_FAILURE');
  t.ok(events('client_pool_exhausted').some((e) => e.tenant === 'tc'), 'client_pool_exhausted logged');
  // Pools are read from charon shortly after each change.
  for (let i = 0; i < 40 && (await view()).pools.find((p) => p.tenant === 'tc')?.online !== 2; i++) await new Promise((r) => setTimeout(r, 250));
  t.same((await view()).pools.find((p) => p.tenant === 'tc'), { tenant: 'tc', pool: 'ra-tc-0', range: '10.99.0.0/30', size: 2, online: 2, offline: 0, leases: (await view()).pools.find((p) => p.tenant === 'tc')?.leases }, 'tc pool: 2 of 2 in use');
  const metrics = (await adminGet(admin, '/metrics')).body;
  t.match(metrics, /cvlan_vrouter_client_pool_exhausted_total\{tenant="tc"\} [1-9]/, 'and counted');
  t.match(metrics, /cvlan_vrouter_client_pool_leases\{tenant="tc",pool="[^"]+"\} 2/, 'pool leases metric');

  // ---- revoke dev1 by a CRL: its live session ends, and it cannot log in again
  const crl = (
    await run(tools.pki, ['--signcrl', '--cacert', pkiC.ca, '--cakey', pkiC.caKey, '--cert', pkiC.entities[devC[1]!]!.cert, '--reason', 'key-compromise', '--outform', 'pem'], { timeoutMs: 20_000 })
  ).stdout;
  writeFileSync(v.config, JSON.stringify({ vrouter_id: 'vr', tenants: [docA, docB, docC(crl)] }));
  v.process.signal('SIGHUP');
  let gone = false;
  for (let i = 0; i < 40 && !gone; i++) {
    await new Promise((r) => setTimeout(r, 250));
    gone = !(await view()).clients.some((c) => c.device === devC[1]);
  }
  t.ok(gone, 'the revoked device\'s session is ended');
  t.ok(events('client_disconnect').some((e) => e.device === devC[1] && /revoked/.test(String(e.reason))), 'client_disconnect says why');
  await t.rejects(cc.initiate('c1', 10), 'the revoked device cannot log in again');
  t.ok((await view()).clients.some((c) => c.device === devC[0]), 'the other device stays');

  // ---- one reload of ta: user 11 removed (its session ends) and a cap of the 11 left, which a
  // further user that charon authenticates then meets. (On ta, whose pool has room, so the cap and
  // not the pool is what that user meets.)
  const cap = N.ta - 1;
  const removed = usersA[N.ta - 1]!;
  const docA1 = { ...(docA as { remote_access: { users: object[] } }) };
  docA1.remote_access = { ...docA1.remote_access, users: [...usersA.slice(0, cap), mallory, late], max_clients: cap } as typeof docA1.remote_access;
  writeFileSync(v.config, JSON.stringify({ vrouter_id: 'vr', tenants: [docA1, docB, docC(crl)] }));
  const applied = events('config_applied').length;
  v.process.signal('SIGHUP');
  for (let i = 0; i < 40 && events('config_applied').length === applied; i++) await new Promise((r) => setTimeout(r, 250));
  let left = false;
  for (let i = 0; i < 40 && !left; i++) {
    left = !(await view()).clients.some((c) => c.user === removed.name);
    if (!left) await new Promise((r) => setTimeout(r, 250));
  }
  t.ok(left, 'a user removed from the configuration loses its session');
  t.ok(events('client_disconnect').some((e) => e.user === removed.name && /user removed/.test(String(e.reason))), 'client_disconnect says why');
  t.equal((await view()).clients.filter((c) => c.tenant === 'ta').length, cap, `ta: at its cap of ${cap} after the reload`);
  await ca.initiate('alate', 10).catch(() => undefined);
  let capped = false;
  for (let i = 0; i < 60 && !capped; i++) {
    await new Promise((r) => setTimeout(r, 250));
    capped = events('client_disconnect').some((e) => e.user === late.name && new RegExp(`limit of ${cap} concurrent`).test(String(e.reason)));
  }
  if (!capped) {
    for (const l of v.process.output().filter((x) => x.line.includes(late.name)).slice(-20)) t.comment(l.line);
    for (const l of ca.process.output().slice(-30)) t.comment(`client: ${l.line}`);
  }
  t.ok(capped, 'a client beyond max_clients is refused, with the reason');
  t.notOk((await view()).clients.some((c) => c.user === late.name), 'and not listed');
  t.equal((await view()).clients.filter((c) => c.tenant === 'ta').length, cap, `the ${cap} stay`);
  t.comment(`whole test ${Date.now() - started} ms`);
});
