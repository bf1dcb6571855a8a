// The controller client against the reference controller over HTTPS on loopback (a throw-away
// CA), and against hostile servers: every exchange with the reference is checked against the
// OpenAPI document; every failure must be a clear error with its own code.
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:https';
import { createServer as createTcpServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ControllerClient } from '../../src/controller/client.js';
import { tokenDigest, type Credential } from '../../src/controller/credential.js';
import { makePki } from '../../src/controller/reference/pki.js';
import { startReferenceController, type Exchange, type ReferenceController } from '../../src/controller/reference/server.js';
import type { StatusReport } from '../../src/controller/protocol.js';
import { problems } from './controller-openapi.js';

const dir = mkdtempSync(join(tmpdir(), 'cvlan-ctrl-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const exchanges: Exchange[] = [];
let ref: ReferenceController;

t.before(async () => {
  ref = await startReferenceController({ stateDir: join(dir, 'ref'), observe: (e) => exchanges.push(e) });
});
t.teardown(() => ref.close());

const client = (o: { ca?: string; maxResponseBytes?: number; url?: string } = {}): ControllerClient => new ControllerClient({ url: o.url ?? ref.url, ca: 'ca' in o ? o.ca! : ref.ca, ...(o.maxResponseBytes ? { maxResponseBytes: o.maxResponseBytes } : {}) });

async function registered(id: string): Promise<Credential> {
  const token = ref.mintToken(id);
  const c = await client().register(token);
  return { ...c, tokenSha256: tokenDigest(token) };
}

const report = (generation: number | null): StatusReport => ({
  reported_at: new Date().toISOString(),
  applied_generation: generation,
  config_version: generation === null ? null : 'abc',
  refused: null,
  tunnels: [{ id: 'site-a', tenant: 'acme', state: 'up', child_sas: 1, bytes_in: 10, bytes_out: 20, packets_in: 1, packets_out: 2 }],
  peers: [{ public_key: 'x'.repeat(43) + '=', tenant: 'acme', state: 'down', endpoint: null, latest_handshake: null, rx_bytes: 0, tx_bytes: 0 }],
  counters: { udp_rx_bytes: 1, udp_tx_bytes: 2, tun_rx_bytes: 3, tun_tx_bytes: 4, translated: 5, dropped: 0 },
});

t.test('register, fetch, long poll, report, rotate — each exchange as the document says', async (t) => {
  exchanges.length = 0;
  const c = client();
  const token = ref.mintToken('vr-1');
  const cred = { ...(await c.register(token)), tokenSha256: tokenDigest(token) };
  t.equal(cred.vrouterId, 'vr-1');
  t.equal(ref.record('vr-1')?.public_key, cred.publicKey, 'the controller holds the public key only');

  const none = await c.getConfig(cred);
  t.same(none, { changed: false, etag: '"g0"' }, 'nothing assigned yet');

  ref.setDocument('vr-1', { tenant_id: 'acme', wireguard_peers: [] });
  const first = await c.getConfig(cred, { etag: none.etag, waitS: 5 });
  t.ok(first.changed);
  if (!first.changed) return;
  t.equal(first.generation, 1);
  t.same(first.document, { tenant_id: 'acme', wireguard_peers: [] });

  const t0 = Date.now();
  const unchanged = await c.getConfig(cred, { etag: first.etag, waitS: 1 });
  t.same(unchanged, { changed: false, etag: first.etag });
  t.ok(Date.now() - t0 >= 950, 'the controller held the poll for the wait');

  const t1 = Date.now();
  const poll = c.getConfig(cred, { etag: first.etag, waitS: 30 });
  setTimeout(() => ref.setDocument('vr-1', { tenant_id: 'acme', wireguard_peers: [], tun: [] }), 200);
  const second = await poll;
  t.ok(second.changed && second.generation === 2, 'a change ends the long poll');
  t.ok(Date.now() - t1 < 5000, `at once (${Date.now() - t1} ms), not after the wait`);

  await c.reportStatus(cred, report(2));
  t.equal(ref.record('vr-1')?.status?.applied_generation, 2);

  const rotated = await c.rotate(cred);
  t.not(rotated.publicKey, cred.publicKey);
  t.equal(ref.record('vr-1')?.public_key, rotated.publicKey);
  await c.reportStatus(rotated, report(2));
  await t.rejects(c.reportStatus(cred, report(2)), { code: 'CVLAN_ERR_CONTROLLER_CREDENTIAL', message: /bad_signature/ }, 'the old key is dead');

  t.ok(exchanges.length >= 8, `${exchanges.length} exchanges seen`);
  t.same(exchanges.flatMap(problems), [], 'every request and answer conforms to api/controller.openapi.json');
});

t.test('the document check is not vacuous', async (t) => {
  const ok = exchanges.find((e) => e.route.endsWith('/status') && e.status === 204);
  t.ok(ok, 'a status exchange was seen');
  if (!ok) return;
  t.same(problems(ok), []);
  const { counters: _c, ...noCounters } = ok.requestBody as StatusReport;
  t.match(problems({ ...ok, requestBody: noCounters }), [/reportStatus request body: .*counters/]);
  t.match(problems({ ...ok, responseHeaders: {} }), [/header CVLAN-API-Version missing/]);
  t.match(problems({ ...ok, status: 200 }), [/status 200 is not in the document/]);
  const cfg = exchanges.find((e) => e.route.endsWith('/config') && e.status === 200)!;
  t.match(problems({ ...cfg, responseBody: JSON.stringify({ generation: 0, document: {} }) }), [/getConfig 200 body: \/generation must be >= 1/]);
});

t.test('a token works once, for one key; the same key may repeat the call', async (t) => {
  const token = ref.mintToken('vr-2');
  const c = client();
  const kp = (await import('../../src/controller/credential.js')).newKeyPair();
  const a = await c.register(token, { keyPair: kp });
  const b = await c.register(token, { keyPair: kp });
  t.equal(a.vrouterId, b.vrouterId, 'a retried registration gets the same id');
  await t.rejects(c.register(token), { code: 'CVLAN_ERR_CONTROLLER_TOKEN', message: /401 bad_token.*already used/ });
  await t.rejects(c.register('cvt_not-a-token-anyone-minted'), { code: 'CVLAN_ERR_CONTROLLER_TOKEN', message: /unknown token/ });
});

t.test('expired and revoked credentials are refused with their reason', async (t) => {
  const a = await registered('vr-exp');
  ref.expire('vr-exp');
  await t.rejects(client().getConfig(a), { code: 'CVLAN_ERR_CONTROLLER_CREDENTIAL', message: /credential_expired/ });
  const b = await registered('vr-rev');
  ref.revoke('vr-rev');
  await t.rejects(client().getConfig(b), { code: 'CVLAN_ERR_CONTROLLER_CREDENTIAL', message: /credential_revoked/ });
  const c = await registered('vr-other');
  await t.rejects(client().getConfig({ ...c, vrouterId: 'vr-1' }), { code: 'CVLAN_ERR_CONTROLLER_CREDENTIAL', message: /bad_signature/ }, 'a key signs for its own vrouter only');
});

t.test('a certificate from another CA, or none pinned, is a TLS error', async (t) => {
  const other = makePki(join(dir, 'other-ca'));
  await t.rejects(client({ ca: other.ca }).register('cvt_xxxxxxxxxxxxxxxx'), { code: 'CVLAN_ERR_CONTROLLER_TLS', message: /pinned CA/ });
  await t.rejects(new ControllerClient({ url: ref.url }).register('cvt_xxxxxxxxxxxxxxxx'), { code: 'CVLAN_ERR_CONTROLLER_TLS', message: /system trust store/ });
});

t.test('nobody listening is unreachable', async (t) => {
  const srv = createTcpServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  await t.rejects(client({ url: `https://127.0.0.1:${port}` }).register('cvt_xxxxxxxxxxxxxxxx'), { code: 'CVLAN_ERR_CONTROLLER_UNREACHABLE', message: /ECONNREFUSED/ });
});

t.test('a controller of another API version', async (t) => {
  const v2 = await startReferenceController({ stateDir: join(dir, 'v2'), apiVersion: '2' });
  t.teardown(() => v2.close());
  await t.rejects(new ControllerClient({ url: v2.url, ca: v2.ca }).register(v2.mintToken('x')), {
    code: 'CVLAN_ERR_CONTROLLER_VERSION',
    message: /speaks API version 2, this vrouter speaks version 1/,
  });
});

t.test('hostile answers: 50 MB, malformed JSON, no version header', async (t) => {
  const pki = makePki(join(dir, 'hostile'));
  let mode = '';
  let written = 0;
  let socketClosed: Promise<void> = Promise.resolve();
  const srv = createServer({ key: pki.key, cert: pki.cert }, (req, res) => {
    req.resume();
    if (mode === 'huge' || mode === 'huge-declared') {
      res.writeHead(201, { 'content-type': 'application/json', 'cvlan-api-version': '1', ...(mode === 'huge-declared' ? { 'content-length': String(50 * 1024 * 1024) } : {}) });
      const chunk = Buffer.alloc(64 * 1024, 0x20);
      written = 0;
      socketClosed = new Promise((resolve) => res.on('close', () => resolve()));
      const pump = (): void => {
        while (written < 50 * 1024 * 1024) {
          written += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
        res.end();
      };
      pump();
    } else if (mode === 'malformed') {
      res.writeHead(201, { 'content-type': 'application/json', 'cvlan-api-version': '1' });
      res.end('{"vrouter_id": "x", "credential": ');
    } else {
      res.writeHead(404, { 'content-type': 'text/html' });
      res.end('<html>not here</html>');
    }
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => srv.close(() => r())));
  const url = `https://127.0.0.1:${(srv.address() as AddressInfo).port}`;
  const c = new ControllerClient({ url, ca: pki.ca, maxResponseBytes: 1024 * 1024 });

  mode = 'huge';
  const rss0 = process.memoryUsage().rss;
  await t.rejects(c.register('cvt_xxxxxxxxxxxxxxxx'), { code: 'CVLAN_ERR_CONTROLLER_PROTOCOL', message: /exceeds the limit of 1048576 bytes/ });
  await socketClosed;
  t.ok(written < 20 * 1024 * 1024, `the client hung up early: the server wrote ${(written / 1048576).toFixed(1)} MiB of 50`);
  t.ok(process.memoryUsage().rss - rss0 < 40 * 1024 * 1024, 'the answer was not buffered whole');

  mode = 'huge-declared';
  await t.rejects(c.register('cvt_xxxxxxxxxxxxxxxx'), { code: 'CVLAN_ERR_CONTROLLER_PROTOCOL', message: /52428800 bytes, more than the limit/ });
  await socketClosed;

  mode = 'malformed';
  await t.rejects(c.register('cvt_xxxxxxxxxxxxxxxx'), { code: 'CVLAN_ERR_CONTROLLER_PROTOCOL', message: /not valid JSON/ });

  mode = 'html';
  await t.rejects(c.register('cvt_xxxxxxxxxxxxxxxx'), { code: 'CVLAN_ERR_CONTROLLER_VERSION', message: /without a CVLAN-API-Version header/ });
});
