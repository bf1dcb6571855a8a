// The admin API's TCP listener: bearer token on every request, nothing revealed without it.

import t from 'tap';
import { startAdminServer } from '../../src/api/server.js';
import { SnapshotStateSource } from '../../src/api/state.js';
import { findSecret, request, sampleSnapshot } from './api-fixture.js';

const token = 'tok-0123456789abcdefghijklmnop';
const server = await startAdminServer({
  source: new SnapshotStateSource(sampleSnapshot()),
  socketPath: null,
  tcp: { host: '127.0.0.1', port: 0, token },
});
t.teardown(() => server.close());
const addr = server.tcpAddress!;
t.equal(addr.address, '127.0.0.1');
t.ok(addr.port > 0);
const to = { host: '127.0.0.1', port: addr.port };

const UNAUTHORIZED = { error: { code: 'CVLAN_ERR_API_UNAUTHORIZED', message: 'unauthorized' } };

void t.test('requests without a valid token get the same bare 401', async (t) => {
  const cases: Array<[string, string, Record<string, string>]> = [
    ['no header', '/v1/tunnels', {}],
    ['wrong token', '/v1/tunnels', { authorization: `Bearer ${token.slice(0, -1)}x` }],
    ['token prefix', '/v1/tunnels', { authorization: `Bearer ${token.slice(0, 10)}` }],
    ['token with suffix', '/v1/tunnels', { authorization: `Bearer ${token}x` }],
    ['wrong scheme', '/v1/tunnels', { authorization: `Basic ${token}` }],
    ['bare token', '/v1/tunnels', { authorization: token }],
    ['unknown route', '/v1/secret-admin', {}],
    ['health', '/healthz', {}],
    ['metrics', '/metrics', {}],
    ['routes of a tenant', '/v1/routes?tenant=acme', {}],
    ['routes of an unknown tenant', '/v1/routes?tenant=nope', {}],
  ];
  const seen = new Set<string>();
  for (const [name, path, headers] of cases) {
    const r = await request(to, path, { headers });
    t.equal(r.status, 401, name);
    t.same(JSON.parse(r.body), UNAUTHORIZED, `${name}: body`);
    t.equal(r.headers['www-authenticate'], 'Bearer');
    t.equal(findSecret(r.body), undefined);
    t.notOk(r.body.includes(token.slice(0, 8)), 'token not echoed');
    seen.add(r.body);
  }
  t.equal(seen.size, 1, 'byte-identical bodies: no hint what was wrong or what exists');

  const big = 'x'.repeat(64 * 1024);
  const r = await request(to, '/v1/tunnels', { body: big, headers: { 'content-length': String(big.length) } });
  t.equal(r.status, 401, 'a body does not get past authentication');
});

void t.test('the right token opens every route', async (t) => {
  const headers = { authorization: `Bearer ${token}` };
  for (const path of ['/healthz', '/readyz', '/v1/tenants', '/v1/tunnels', '/v1/peers', '/v1/drops', '/v1/workers', '/v1/config', '/v1/stats', '/v1/routes?tenant=acme', '/metrics']) {
    const r = await request(to, path, { headers });
    t.equal(r.status, 200, path);
    t.equal(findSecret(r.body), undefined, `${path}: no secret`);
  }
  const nf = await request(to, '/nope', { headers });
  t.equal(nf.status, 404, 'authenticated unknown route is a 404');
  t.equal(JSON.parse(nf.body).error.code, 'CVLAN_ERR_API_NOT_FOUND');
});
