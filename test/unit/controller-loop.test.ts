// The controller loop: generations applied or refused (with the field) and reported, the
// backoff while the controller is away (virtual clock, chosen randomness), credential rotation,
// and `init` (idempotence, exit codes) against the reference controller.
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import pino from 'pino';
import { ControllerClient } from '../../src/controller/client.js';
import { backoffDelay } from '../../src/controller/backoff.js';
import { readCredential, tokenDigest, writeCredential, type Credential } from '../../src/controller/credential.js';
import { ControllerLoop, type ApplyResult, type Clock } from '../../src/controller/loop.js';
import { startReferenceController, type Exchange, type ReferenceController } from '../../src/controller/reference/server.js';
import { loadDesiredState } from '../../src/config/load.js';
import { parseLocalToml } from '../../src/config/local.js';
import { ConfigError } from '../../src/errors.js';
import { init, INIT_EXIT } from '../../src/cli/init.js';
import { makePki } from '../../src/controller/reference/pki.js';
import { problems } from './controller-openapi.js';

const dir = mkdtempSync(join(tmpdir(), 'cvlan-loop-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const exchanges: Exchange[] = [];
let ref: ReferenceController;
t.before(async () => {
  ref = await startReferenceController({ stateDir: join(dir, 'ref'), credentialLifetimeS: 3600, observe: (e) => exchanges.push(e) });
});
t.teardown(() => ref.close());
const quiet = pino({ level: 'silent' });
const noObservation = () => ({ tunnels: [], peers: [], counters: { udp_rx_bytes: 0, udp_tx_bytes: 0, tun_rx_bytes: 0, tun_tx_bytes: 0, translated: 0, dropped: 0 } });

const KEY = 'pDcB2nd8kxyN7v7jwO26d7jRF0jOT0s7dDhgzA9S6Ec=';
const peerDoc = (allowed: string) => ({ tenant_id: 'acme', wireguard: { listen_port: 51999 }, wireguard_peers: [{ public_key: KEY, allowed_ips: [allowed] }] });

async function credentialFor(id: string): Promise<Credential> {
  const token = ref.mintToken(id);
  return { ...(await new ControllerClient({ url: ref.url, ca: ref.ca }).register(token)), tokenSha256: tokenDigest(token) };
}

t.test('backoffDelay: doubling, capped, half fixed and half random', async (t) => {
  const o = { baseMs: 1000, maxMs: 8000 };
  t.same([1, 2, 3, 4, 5, 6].map((a) => backoffDelay(a, o, () => 0)), [500, 1000, 2000, 4000, 4000, 4000]);
  t.same([1, 2, 3, 4, 5].map((a) => backoffDelay(a, o, () => 0.999999)), [999, 1999, 3999, 7999, 7999]);
});

t.test('while the controller is away the loop backs off on the virtual clock', async (t) => {
  const cred = await credentialFor('vr-away');
  let now = Date.now();
  const clock: Clock = { now: () => now, sleep: async (ms) => void (now += ms) };
  const randoms = [0.5, 0.25, 0, 0.75, 0.5, 0.5];
  let i = 0;
  let applied = 0;
  const loop = new ControllerLoop({
    client: new ControllerClient({ url: 'https://127.0.0.1:1', ca: ref.ca }),
    credential: cred,
    credentialPath: join(dir, 'away.json'),
    apply: async () => {
      applied++;
      return { applied: true, version: 'v' };
    },
    observe: noObservation,
    backoff: { baseMs: 1000, maxMs: 8000 },
    statusIntervalS: 3600,
    clock,
    random: () => randoms[i++ % randoms.length]!,
    logger: quiet,
  });
  loop.start();
  while (loop.delays.length < 6) await new Promise((r) => setTimeout(r, 5));
  await loop.stop();
  t.same(loop.delays.slice(0, 6), [750, 1250, 2000, 7000, 6000, 6000], 'base·2^(n-1) capped at 8 s, half of it jittered');
  t.equal(applied, 0, 'nothing was applied');
});

t.test('generations applied, a bad one refused with its field, all reported', async (t) => {
  const cred = await credentialFor('vr-loop');
  exchanges.length = 0;
  const seen: number[] = [];
  const apply = async (generation: number, document: unknown): Promise<ApplyResult> => {
    try {
      loadDesiredState({ controllerDocs: [document], stateDir: null, localToml: parseLocalToml('') });
    } catch (e) {
      if (e instanceof ConfigError) return { applied: false, issues: e.issues.map((i) => ({ field: i.path, reason: i.reason })) };
      throw e;
    }
    seen.push(generation);
    return { applied: true, version: `v${generation}` };
  };
  const loop = new ControllerLoop({ client: new ControllerClient({ url: ref.url, ca: ref.ca }), credential: cred, credentialPath: join(dir, 'loop.json'), apply, observe: noObservation, pollWaitS: 5, statusIntervalS: 3600, rotateBeforeS: 0, logger: quiet });
  loop.start();
  t.teardown(() => loop.stop());
  await ref.waitStatus('vr-loop', (s) => s.applied_generation === null, 5000);
  ref.setDocument('vr-loop', peerDoc('10.1.0.0/24'));
  await ref.waitStatus('vr-loop', (s) => s.applied_generation === 1 && s.refused === null, 5000);
  ref.setDocument('vr-loop', peerDoc('10.1.0.1/24'));
  const refused = await ref.waitStatus('vr-loop', (s) => s.refused !== null, 5000);
  t.equal(refused.applied_generation, 1, 'the old generation stays');
  t.equal(refused.refused?.generation, 2);
  t.match(refused.refused?.issues, [{ field: 'wireguard_peers[0].allowed_ips[0]', reason: /host bits/ }]);
  ref.setDocument('vr-loop', peerDoc('10.2.0.0/24'));
  const fixed = await ref.waitStatus('vr-loop', (s) => s.applied_generation === 3, 5000);
  t.equal(fixed.refused, null, 'the refusal clears with a good generation');
  t.same(seen, [1, 3]);
  await loop.stop();
  t.same(exchanges.flatMap(problems), [], 'the loop speaks the document');
});

t.test('while running, a 50 MB or malformed answer, an expired credential and a wrong CA are clear errors; nothing is applied', async (t) => {
  const pki = makePki(join(dir, 'hostile'));
  let mode: 'huge' | 'malformed' | 'expired' = 'huge';
  const srv = createServer({ key: pki.key, cert: pki.cert }, (req, res) => {
    req.resume();
    const headers = { 'content-type': 'application/json', 'cvlan-api-version': '1' };
    if (mode === 'huge') {
      res.writeHead(200, { ...headers, etag: '"g9"' });
      const chunk = Buffer.alloc(64 * 1024, 0x20);
      let written = 0;
      res.on('close', () => (written = Infinity));
      const pump = (): void => {
        while (written < 50 * 1024 * 1024) {
          written += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
        res.end();
      };
      pump();
    } else if (mode === 'malformed') {
      res.writeHead(200, { ...headers, etag: '"g9"' });
      res.end('{"generation": 9, "document": ');
    } else {
      res.writeHead(401, headers);
      res.end(JSON.stringify({ code: 'credential_expired', message: 'the credential expired' }));
    }
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => srv.close(() => r())));
  const lines: { event?: string; err?: { code?: string; message: string } }[] = [];
  const logger = pino({ level: 'info' }, { write: (l: string) => void lines.push(JSON.parse(l) as (typeof lines)[number]) });
  const failure = async (code: string, message: RegExp): Promise<void> => {
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      if (lines.some((l) => l.event === 'controller_unreachable' && l.err?.code === code && message.test(l.err.message))) return;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`no ${code} ${String(message)} within 10 s: ${JSON.stringify(lines.slice(-3))}`);
  };
  let applied = 0;
  const running = { generation: 1, etag: '"g1"', version: 'v1' };
  const loopAt = (client: ControllerClient, credential: Credential): ControllerLoop =>
    new ControllerLoop({
      client,
      credential,
      credentialPath: join(dir, 'hostile.json'),
      apply: async () => {
        applied++;
        return { applied: true, version: 'v9' };
      },
      observe: noObservation,
      applied: running,
      backoff: { baseMs: 20, maxMs: 40 },
      statusIntervalS: 3600,
      rotateBeforeS: 0,
      logger,
    });
  const loop = loopAt(new ControllerClient({ url: `https://127.0.0.1:${(srv.address() as AddressInfo).port}`, ca: pki.ca, maxResponseBytes: 1024 * 1024 }), await credentialFor('vr-hostile'));
  loop.start();
  await failure('CVLAN_ERR_CONTROLLER_PROTOCOL', /exceeds the limit of 1048576 bytes/);
  mode = 'malformed';
  await failure('CVLAN_ERR_CONTROLLER_PROTOCOL', /not valid JSON/);
  mode = 'expired';
  await failure('CVLAN_ERR_CONTROLLER_CREDENTIAL', /credential_expired.*cvlan-vrouter init/);
  await loop.stop();
  // The reference controller itself, under a CA the vrouter does not pin.
  const other = makePki(join(dir, 'other-ca'));
  const wrongCa = loopAt(new ControllerClient({ url: ref.url, ca: other.ca }), await credentialFor('vr-wrong-ca'));
  wrongCa.start();
  await failure('CVLAN_ERR_CONTROLLER_TLS', /pinned CA/);
  await wrongCa.stop();
  t.equal(applied, 0, 'nothing was applied: the running generation stays');
  t.ok(loop.delays.length >= 3 && wrongCa.delays.length >= 1, 'each failure backed off and retried');
});

t.test('a credential near its expiry is rotated and stored', async (t) => {
  const cred = await credentialFor('vr-rot');
  const path = join(dir, 'rot', 'credential.json');
  writeCredential(path, cred);
  const loop = new ControllerLoop({
    client: new ControllerClient({ url: ref.url, ca: ref.ca }),
    credential: cred,
    credentialPath: path,
    apply: async () => ({ applied: true, version: 'v' }),
    observe: noObservation,
    pollWaitS: 5,
    statusIntervalS: 3600,
    rotateBeforeS: 7200, // the reference issues 3600 s credentials: due at once
    logger: quiet,
  });
  loop.start();
  await ref.waitStatus('vr-rot', () => true, 5000);
  await loop.stop();
  const stored = readCredential(path)!;
  t.not(stored.publicKey, cred.publicKey, 'a new key');
  t.equal(ref.record('vr-rot')?.public_key, stored.publicKey, 'the controller has it');
  t.equal(statSync(path).mode & 0o777, 0o600);
});

t.test('init: registers, writes [controller], is idempotent, and tells failures apart', async (t) => {
  const lines: string[] = [];
  const out = { out: (l: string) => lines.push(l), err: (l: string) => lines.push(l) };
  const cfg = join(dir, 'etc');
  const state = join(dir, 'state');
  const token = ref.mintToken('vr-init');
  const args = ['--controller', ref.url, '--token', token, '--ca', ref.caFile, '--config-dir', cfg, '--state-dir', state, '--no-enable'];
  t.equal(await init(args, out), INIT_EXIT.ok, lines.join('\n'));
  const toml = parseLocalToml(readFileSync(join(cfg, 'vrouter.toml'), 'utf8'));
  t.equal(toml.controller.url, ref.url);
  t.equal(toml.controller.ca, join(cfg, 'controller-ca.pem'));
  t.equal(toml.state.dir, state);
  const cred = readCredential(toml.controller.credentialFile!)!;
  t.equal(cred.vrouterId, 'vr-init');
  t.equal(statSync(toml.controller.credentialFile!).mode & 0o777, 0o600);
  t.notOk(readFileSync(toml.controller.credentialFile!, 'utf8').includes(token), 'the token itself is not kept');

  const before = exchanges.length;
  lines.length = 0;
  t.equal(await init(args, out), INIT_EXIT.ok);
  t.match(lines[0], /already registered .* as vr-init; not registering again/);
  t.equal(exchanges.length, before, 'no request to the controller');
  t.equal(readCredential(toml.controller.credentialFile!)!.publicKey, cred.publicKey, 'the same credential');

  const other = makePki(join(dir, 'other'));
  const cases: [string, string[], number, RegExp][] = [
    ['bad token', ['--controller', ref.url, '--token', 'cvt_never-minted-token', '--ca', ref.caFile], INIT_EXIT.badToken, /bad_token/],
    ['wrong CA', ['--controller', ref.url, '--token', 'cvt_never-minted-token', '--ca', other.caFile], INIT_EXIT.tls, /CVLAN_ERR_CONTROLLER_TLS/],
    ['unreachable', ['--controller', 'https://127.0.0.1:1', '--token', 'cvt_never-minted-token'], INIT_EXIT.unreachable, /ECONNREFUSED/],
    ['no token', ['--controller', ref.url], INIT_EXIT.usage, /missing --token/],
  ];
  for (const [what, a, code, msg] of cases) {
    lines.length = 0;
    const got = await init([...a, '--config-dir', join(dir, 'etc2'), '--state-dir', join(dir, 'state2'), '--no-enable'], out);
    t.equal(got, code, `${what}: exit ${code}`);
    t.match(lines.join('\n'), msg, what);
  }
  const v2 = await startReferenceController({ stateDir: join(dir, 'v2'), apiVersion: '2' });
  lines.length = 0;
  t.equal(await init(['--controller', v2.url, '--token', v2.mintToken('x'), '--ca', v2.caFile, '--config-dir', join(dir, 'etc3'), '--state-dir', join(dir, 'state3'), '--no-enable'], out), INIT_EXIT.apiVersion);
  t.match(lines.join('\n'), /speaks API version 2/);
  await v2.close();
});

t.test('init rewrites url, ca and credential_file of [controller] and keeps the rest', async (t) => {
  const { withControllerSection } = await import('../../src/cli/init.js');
  const text = '# this machine\n[network]\nlisten_address = "192.0.2.1"\n\n[controller]\nurl = "https://old"\npoll_interval = 10 # faster\n\n[state]\ndir = "/srv/cvlan"\n';
  const out = withControllerSection(text, ['url = "https://new"', 'credential_file = "/srv/cvlan/c.json"']);
  t.equal(out, '# this machine\n[network]\nlisten_address = "192.0.2.1"\n\n[state]\ndir = "/srv/cvlan"\n\n[controller]\nurl = "https://new"\ncredential_file = "/srv/cvlan/c.json"\npoll_interval = 10 # faster\n');
  const local = parseLocalToml(out);
  t.equal(local.controller.pollInterval, 10);
  t.equal(local.state.dir, '/srv/cvlan');
});
