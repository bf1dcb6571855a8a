// Admin API over its unix socket, against a plain-data RouterStateSource.

import { mkdirSync, statSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import { startAdminServer, DEFAULT_ADMIN_SOCKET } from '../../src/api/server.js';
import { SnapshotStateSource, type RouterStateSource } from '../../src/api/state.js';
import { ErrorCodes } from '../../src/errors.js';
import { findSecret, makeStaleSocket, request, sampleSnapshot, tempSocketDir } from './api-fixture.js';

const pick = (o: object, keys: string[]) =>
  Object.fromEntries(keys.map((k) => [k, (o as Record<string, unknown>)[k]]));

const snap = sampleSnapshot();
const source = new SnapshotStateSource(snap);
const dir = tempSocketDir();
// A parent directory that does not exist yet: the server creates it 0700.
const socketPath = join(dir, 'run', 'admin.sock');
const server = await startAdminServer({ source, socketPath });
t.teardown(() => server.close());
const to = { socketPath };
const bodies: string[] = [];

async function getJson(path: string, init?: Parameters<typeof request>[2]) {
  const res = await request(to, path, init);
  bodies.push(res.body);
  return { ...res, json: JSON.parse(res.body) as Record<string, unknown> };
}

void t.test('socket and its directory are private', async (t) => {
  t.equal(statSync(socketPath).mode & 0o777, 0o600, 'socket 0600');
  t.equal(statSync(join(dir, 'run')).mode & 0o777, 0o700, 'parent 0700');
  t.equal(DEFAULT_ADMIN_SOCKET, '/run/cvlan/admin.sock');
});

void t.test('every route answers with its schema', async (t) => {
  const tenantKeys = ['id', 'tunnels', 'wireguard_peers', 'tuns'];
  const tunnelKeys = ['id', 'tenant', 'type', 'remote_id', 'auth_method', 'state', 'ike_sa', 'child_sas'];
  const childKeys = [
    'name', 'spi_in', 'spi_out', 'algorithms', 'udp_encap', 'local_ts', 'remote_ts',
    'bytes_in', 'bytes_out', 'packets_in', 'packets_out', 'rekey_in_s',
  ];
  const peerKeys = [
    'public_key', 'name', 'tenant', 'endpoint', 'allowed_ips', 'latest_handshake', 'rx_bytes', 'tx_bytes', 'persistent_keepalive_s',
  ];

  let r = await getJson('/healthz');
  t.equal(r.status, 200);
  t.match(r.headers['content-type'], /^application\/json/);
  t.same(r.json, { live: true, ready: true, reasons: [] });

  r = await getJson('/readyz');
  t.equal(r.status, 200);
  t.same(r.json, { live: true, ready: true, reasons: [] });

  r = await getJson('/v1/tenants');
  t.equal(r.status, 200);
  t.same(r.json, { tenants: snap.tenants.map((x) => pick(x, tenantKeys)) }, 'undeclared fields dropped');

  r = await getJson('/v1/tunnels');
  t.equal(r.status, 200);
  t.same(r.json, {
    tunnels: snap.tunnels.map((x) => ({
      ...pick(x, tunnelKeys),
      child_sas: x.child_sas.map((c) => pick(c, childKeys)),
    })),
  });
  const first = (r.json.tunnels as Array<{ ike_sa: unknown }>)[0]!;
  t.same(first.ike_sa, snap.tunnels[0]!.ike_sa, 'IKE SA with algorithms, established, rekey_in');
  t.equal((r.json.tunnels as Array<{ ike_sa: unknown }>)[1]!.ike_sa, null, 'no IKE SA serializes as null');

  r = await getJson('/v1/peers');
  t.equal(r.status, 200);
  t.same(r.json, { peers: snap.peers.map((x) => pick(x, peerKeys)) });

  r = await getJson('/v1/routes?tenant=acme');
  t.equal(r.status, 200);
  t.same(r.json, { tenant: 'acme', routes: snap.routes.acme, bgp: null }, 'a tenant without BGP: bgp is null');

  r = await getJson('/v1/routes?tenant=globex');
  t.same(r.json, { tenant: 'globex', routes: [], bgp: null }, 'known tenant without routes is 200 and empty');

  r = await getJson('/v1/drops');
  t.same(r.json, { drops: snap.drops });

  r = await getJson('/v1/workers');
  t.same(r.json, { workers: snap.workers });

  r = await getJson('/v1/config');
  t.same(r.json, { version: 'v42', applied_at: '2026-01-01T00:00:00.000Z' }, 'version only, snake_case');

  r = await getJson('/v1/stats');
  t.equal(r.status, 200);
  t.match(r.json, {
    live: true,
    ready: true,
    config_version: 'v42',
    tenants: 2,
    ipsec_tunnels: 2,
    ipsec_tunnels_up: 1,
    ike_sa_active: 1,
    child_sa_active: 1,
    ike_rekeys_total: 5,
    child_rekeys_total: 7,
    wireguard_peers: 1,
    bytes_in: 123456789,
    bytes_out: 987654,
    packets_in: 100000,
    packets_out: 2000,
    drops_total: 21,
    workers: 2,
    worker_restarts_total: 2,
  });
  t.type(r.json.uptime_s, 'number');

  const m = await request(to, '/metrics');
  bodies.push(m.body);
  t.equal(m.status, 200);
  t.match(m.headers['content-type'], /^text\/plain/);
  t.match(m.body, /^# HELP /, 'exposition text, not a JSON string');
  t.match(m.body, /cvlan_vrouter_bytes_in_total\{tunnel="site-a"\} 123456789\n/);

  r = await getJson('/v1/tenants?verbose=1');
  t.equal(r.status, 200, 'unknown query parameters are ignored');
});

void t.test('query validation and unknown tenants', async (t) => {
  let r = await getJson('/v1/routes?tenant=nope');
  t.equal(r.status, 404);
  t.same(r.json, { error: { code: 'CVLAN_ERR_API_NOT_FOUND', message: 'no such tenant' } });

  r = await getJson('/v1/routes');
  t.equal(r.status, 400);
  t.equal((r.json.error as { code: string }).code, 'CVLAN_ERR_API_BAD_REQUEST');

  r = await getJson('/v1/routes?tenant=');
  t.equal(r.status, 400);

  r = await getJson(`/v1/routes?tenant=${'x'.repeat(200)}`);
  t.equal(r.status, 400, 'over-long tenant rejected');

  r = await getJson('/v1/routes?tenant=%zz');
  t.ok(r.status === 400 || r.status === 404, `malformed escape is a 4xx (${r.status})`);
});

void t.test('unknown routes and methods are 404 JSON', async (t) => {
  for (const [method, path] of [
    ['GET', '/nope'],
    ['GET', '/v1'],
    ['GET', '/v2/tenants'],
    ['POST', '/v1/tenants'],
    ['DELETE', '/v1/tunnels'],
  ] as const) {
    const r = await getJson(path, { method });
    t.equal(r.status, 404, `${method} ${path}`);
    t.match(r.headers['content-type'], /^application\/json/);
    t.same(r.json, { error: { code: 'CVLAN_ERR_API_NOT_FOUND', message: 'no such route' } });
  }
  t.ok('CVLAN_ERR_API_NOT_FOUND' in ErrorCodes);
});

void t.test('request bodies are refused and the server keeps answering', async (t) => {
  // node's client sends no content-length for a GET body unless told; without it the body
  // would be parsed as the next request.
  const big = 'x'.repeat(1 << 20);
  let r = await getJson('/v1/tenants', { body: big, headers: { 'content-type': 'text/plain', 'content-length': String(big.length) } });
  t.equal(r.status, 413, 'oversized body');
  t.equal((r.json.error as { code: string }).code, 'CVLAN_ERR_API_BAD_REQUEST');

  r = await getJson('/v1/tenants', { body: '{"a":', headers: { 'content-type': 'application/json', 'content-length': '5' } });
  t.equal(r.status, 400, 'small/malformed body');

  r = await getJson('/v1/tenants', {
    method: 'POST',
    body: '{"not json',
    headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' },
  });
  t.equal(r.status, 413, 'chunked body of unknown size');

  r = await getJson('/v1/tenants', { body: 'x'.repeat(100), headers: { 'content-length': '10' } });
  t.equal(r.status, 400, 'bytes after a declared body are a malformed request');
  t.equal((r.json.error as { code: string }).code, 'CVLAN_ERR_API_BAD_REQUEST');

  // Not HTTP at all: node answers 400 and closes the connection.
  const raw = await new Promise<string>((resolve, reject) => {
    const c = net.connect(socketPath);
    let got = '';
    c.on('data', (d) => (got += d.toString()));
    c.on('end', () => resolve(got));
    c.on('error', reject);
    c.write('\x00\x01garbage \r\n\r\n');
  });
  t.match(raw, /^HTTP\/1\.1 400/);

  const ok = await getJson('/healthz');
  t.equal(ok.status, 200, 'still answering');
});

void t.test('readiness follows the source', async (t) => {
  const s2 = sampleSnapshot();
  s2.health = { live: true, ready: false, reasons: ['charon not connected'] };
  source.update(s2);
  t.teardown(() => source.update(snap));
  let r = await getJson('/readyz');
  t.equal(r.status, 503);
  t.same(r.json, { live: true, ready: false, reasons: ['charon not connected'] });
  r = await getJson('/healthz');
  t.equal(r.status, 200, 'live while not ready');
  s2.health = { live: false, ready: false, reasons: ['event loop stalled'] };
  r = await getJson('/healthz');
  t.equal(r.status, 503);
});

void t.test('a failing source is a 500 without internals', async (t) => {
  const dir2 = tempSocketDir();
  class Broken extends SnapshotStateSource {
    override tunnels(): never {
      throw new Error('boom at /var/lib/cvlan/internal/path');
    }
  }
  const broken: RouterStateSource = new Broken(sampleSnapshot());
  const s = await startAdminServer({ source: broken, socketPath: join(dir2, 'a.sock') });
  t.teardown(() => s.close());
  const r = await request({ socketPath: join(dir2, 'a.sock') }, '/v1/tunnels');
  t.equal(r.status, 500);
  t.same(JSON.parse(r.body), { error: { code: 'CVLAN_ERR_INTERNAL', message: 'internal error' } });
  t.notMatch(r.body, /boom|internal\/path|at /, 'no message or stack');
  const ok = await request({ socketPath: join(dir2, 'a.sock') }, '/v1/tenants');
  t.equal(ok.status, 200);
});

void t.test('stale sockets are replaced, live ones and other files are not', async (t) => {
  const d = tempSocketDir();
  const stale = join(d, 'stale.sock');
  await makeStaleSocket(stale);
  t.ok(statSync(stale).isSocket(), 'stale socket file exists');
  const s = await startAdminServer({ source, socketPath: stale });
  const r = await request({ socketPath: stale }, '/healthz');
  t.equal(r.status, 200, 'took over the stale path');

  await t.rejects(startAdminServer({ source, socketPath: stale }), { code: 'CVLAN_ERR_API_SOCKET_IN_USE' });
  const still = await request({ socketPath: stale }, '/healthz');
  t.equal(still.status, 200, 'the running server was left alone');
  await s.close();
  t.notOk(existsSync(stale), 'socket removed on close');

  const file = join(d, 'not-a-socket');
  writeFileSync(file, 'keep me');
  await t.rejects(startAdminServer({ source, socketPath: file }), { code: 'CVLAN_ERR_API_OPTIONS' });
  t.equal(readFileSync(file, 'utf8'), 'keep me');
});

void t.test('options are validated up front', async (t) => {
  const d = tempSocketDir();
  mkdirSync(join(d, 'x'));
  await t.rejects(startAdminServer({ source, socketPath: 'relative.sock' }), { code: 'CVLAN_ERR_API_OPTIONS' });
  await t.rejects(
    startAdminServer({ source, socketPath: null, tcp: { host: '127.0.0.1', port: 0, token: 'short' } }),
    { code: 'CVLAN_ERR_API_OPTIONS' },
  );
  await t.rejects(startAdminServer({ source, socketPath: null }), { code: 'CVLAN_ERR_API_OPTIONS' });
  await t.rejects(
    startAdminServer({ source, socketPath: join(d, 'x', 's.sock'), bodyLimit: -1 }),
    { code: 'CVLAN_ERR_API_OPTIONS' },
  );
});

void t.test('no secret in any response', async (t) => {
  t.ok(bodies.length > 15, `checked ${bodies.length} responses`);
  for (const b of bodies) t.equal(findSecret(b), undefined);
});
