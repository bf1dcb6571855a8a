// vrouterctl in-process (main) and as a real process, against a real admin API server.

import { execFileSync, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { startAdminServer } from '../../src/api/server.js';
import { SnapshotStateSource } from '../../src/api/state.js';
import { main, EXIT, type CtlIo } from '../../src/cli/vrouterctl.js';
import { findSecret, makeStaleSocket, request, sampleSnapshot, tempSocketDir } from './api-fixture.js';

async function run(argv: string[], opts: { stdin?: string; env?: Record<string, string> } = {}) {
  let out = '';
  let err = '';
  const io: CtlIo = {
    stdout: { write: (s: string) => (out += s) },
    stderr: { write: (s: string) => (err += s) },
    stdin: (async function* () {
      if (opts.stdin !== undefined) yield Buffer.from(opts.stdin);
    })(),
    env: opts.env ?? {},
  };
  const code = await main(argv, io);
  return { code, out, err };
}

const dir = tempSocketDir();
const socketPath = join(dir, 'admin.sock');
const token = 'ctl-test-token-0123456789abcdef';
const server = await startAdminServer({
  source: new SnapshotStateSource(sampleSnapshot()),
  socketPath,
  tcp: { host: '127.0.0.1', port: 0, token },
});
t.teardown(() => server.close());

void t.test('--json output parses and matches the API', async (t) => {
  const cases: Array<[string[], string]> = [
    [['stats'], '/v1/stats'],
    [['tunnels'], '/v1/tunnels'],
    [['sas'], '/v1/tunnels'],
    [['peers'], '/v1/peers'],
    [['routes', '--tenant', 'acme'], '/v1/routes?tenant=acme'],
    [['drops'], '/v1/drops'],
    [['workers'], '/v1/workers'],
  ];
  for (const [args, path] of cases) {
    const r = await run(['--socket', socketPath, '--json', ...args]);
    t.equal(r.code, EXIT.OK, args.join(' '));
    const api = JSON.parse((await request({ socketPath }, path)).body) as Record<string, unknown>;
    const mine = JSON.parse(r.out) as Record<string, unknown>;
    if (path === '/v1/stats') {
      // uptime moves between the two reads
      delete api.uptime_s;
      delete mine.uptime_s;
    }
    t.same(mine, api, `${args.join(' ')} matches GET ${path}`);
    t.equal(findSecret(r.out), undefined);
  }
});

void t.test('human tables', async (t) => {
  let r = await run(['--socket', socketPath, 'tunnels']);
  t.equal(r.code, 0);
  t.match(r.out, /^ID\s+TENANT\s+REMOTE_ID/);
  t.match(r.out, /site-a\s+acme\s+legacy\.acme\.example\s+psk\s+up\s+ESTABLISHED\s+1/);
  r = await run(['--socket', socketPath, 'sas']);
  t.match(r.out, /CHILD_SA net: SPIs c1a2b3d4_i 0badf00d_o/);
  t.match(r.out, /AES_GCM_16_256\/PRF_HMAC_SHA2_256\/CURVE_25519/);
  t.match(r.out, /in {2}117\.7 MiB, 100000 packets/);
  t.match(r.out, /site-b .*connecting[\s\S]*IKE_SA: none/);
  r = await run(['--socket', socketPath, 'peers']);
  t.match(r.out, /HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=\s+acme\s+203\.0\.113\.9:51820\s+10\.20\.0\.2\/32,fd00:20::2\/128/);
  r = await run(['--socket', socketPath, 'routes', '--tenant', 'acme']);
  t.match(r.out, /192\.168\.50\.0\/24\s+ipsec\s+site-a/);
  r = await run(['--socket', socketPath, 'routes', '--tenant', 'globex']);
  t.equal(r.out, '(none)\n');
  r = await run(['--socket', socketPath, 'drops']);
  t.match(r.out, /no_route\s+0\s+acme\s+17/);
  r = await run(['--socket', socketPath, 'workers']);
  t.match(r.out, /^1\s+500\s+480\s+.*\s+2\s+0\s+-$/m);
  t.match(r.out, /^0\s+1000\s+990\s+.*\s+0\s+300\s+25%$/m, 'translated packets per worker');
  r = await run(['--socket', socketPath, 'stats']);
  t.match(r.out, /^ike_rekeys_total\s+5$/m);
  t.match(r.out, /^drops_total\s+21$/m);
  for (const cmd of ['tunnels', 'sas', 'peers', 'stats']) {
    t.equal(findSecret((await run(['--socket', socketPath, cmd])).out), undefined, cmd);
  }
});

void t.test('socket from the environment', async (t) => {
  const r = await run(['--json', 'stats'], { env: { CVLAN_ADMIN_SOCKET: socketPath } });
  t.equal(r.code, 0);
  t.equal(JSON.parse(r.out).config_version, 'v42');
});

void t.test('daemon unreachable: exit 2 with one line naming the socket and cause', async (t) => {
  const missing = join(dir, 'missing.sock');
  let r = await run(['--socket', missing, 'stats']);
  t.equal(r.code, EXIT.UNREACHABLE);
  t.equal(r.out, '');
  t.equal(r.err.split('\n').length, 2, 'one line');
  t.match(r.err, missing);
  t.match(r.err, /no such socket/);

  const stale = join(dir, 'stale.sock');
  await makeStaleSocket(stale);
  r = await run(['--socket', stale, 'tunnels']);
  t.equal(r.code, EXIT.UNREACHABLE);
  t.match(r.err, stale);
  t.match(r.err, /connection refused/);

  r = await run(['--socket', dir, 'tunnels']);
  t.equal(r.code, EXIT.UNREACHABLE, 'a directory is not a socket');
  t.equal(r.err.split('\n').length, 2);
});

void t.test('API errors: exit 3', async (t) => {
  const r = await run(['--socket', socketPath, 'routes', '--tenant', 'nope']);
  t.equal(r.code, EXIT.API);
  t.match(r.err, /CVLAN_ERR_API_NOT_FOUND: no such tenant \(HTTP 404\)/);
});

void t.test('usage errors: exit 1', async (t) => {
  const sock = ['--socket', socketPath];
  for (const argv of [
    [...sock],
    [...sock, 'frobnicate'],
    [...sock, 'routes'],
    [...sock, '--bogus', 'stats'],
    [...sock, 'stats', 'extra'],
    ['--url', 'http://127.0.0.1:1', 'stats'], // no token file
    ['--url', 'ftp://127.0.0.1:1', '--token-file', '/dev/null', 'stats'],
    [...sock, '--url', 'http://127.0.0.1:1', 'stats'],
  ]) {
    const r = await run(argv);
    t.equal(r.code, EXIT.USAGE, JSON.stringify(argv));
    t.match(r.err, /^vrouterctl: /);
  }
  const h = await run(['--help']);
  t.equal(h.code, 0);
  t.match(h.out, /exit codes: 0 ok, 1 usage, 2 daemon unreachable, 3 API error/);
});

void t.test('TCP with a token file', async (t) => {
  const url = `http://127.0.0.1:${server.tcpAddress!.port}`;
  const good = join(dir, 'token');
  writeFileSync(good, `${token}\n`, { mode: 0o600 });
  let r = await run(['--url', url, '--token-file', good, '--json', 'workers']);
  t.equal(r.code, 0);
  t.equal(JSON.parse(r.out).workers.length, 2);

  const bad = join(dir, 'bad-token');
  writeFileSync(bad, 'not-the-token-0123456789abcdef\n');
  r = await run(['--url', url, '--token-file', bad, 'workers']);
  t.equal(r.code, EXIT.API);
  t.match(r.err, /CVLAN_ERR_API_UNAUTHORIZED/);
  t.notOk(r.err.includes('not-the-token'), 'token not echoed');

  r = await run(['--url', url, '--token-file', join(dir, 'nope'), 'workers']);
  t.equal(r.code, EXIT.USAGE);

  r = await run(['--url', 'http://127.0.0.1:1', '--token-file', good, 'workers']);
  t.equal(r.code, EXIT.UNREACHABLE);
  t.match(r.err, /http:\/\/127\.0\.0\.1:1.*connection refused/);
});

void t.test('genkey and pubkey agree with wg', async (t) => {
  const g = await run(['genkey']);
  t.equal(g.code, 0);
  const priv = g.out.trim();
  const wgPub = execFileSync('wg', ['pubkey'], { input: priv, encoding: 'utf8' }).trim();
  const p = await run(['pubkey'], { stdin: `${priv}\n` });
  t.equal(p.code, 0);
  t.equal(p.out, `${wgPub}\n`);
  const wgPriv = execFileSync('wg', ['genkey'], { encoding: 'utf8' });
  const p2 = await run(['pubkey'], { stdin: wgPriv });
  t.equal(p2.out.trim(), execFileSync('wg', ['pubkey'], { input: wgPriv, encoding: 'utf8' }).trim());
  const bad = await run(['pubkey'], { stdin: 'nonsense\n' });
  t.equal(bad.code, EXIT.USAGE);
  t.notOk(bad.err.includes('nonsense'));
});

void t.test('as a real process: exit code and stderr', async (t) => {
  const cli = fileURLToPath(new URL('../../src/cli/vrouterctl.ts', import.meta.url));
  // The same TypeScript loader this test runs under.
  const loader = process.execArgv.filter((a) => a.includes('@tapjs/typescript'));
  const missing = join(dir, 'gone.sock');
  const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>(
    (resolve, reject) => {
      const child = spawn(process.execPath, [...loader, cli, '--socket', missing, 'stats'], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.once('error', reject);
      child.once('close', (c) => resolve({ code: c, stdout, stderr }));
    },
  );
  t.equal(code, 2);
  t.equal(stdout, '');
  t.equal(stderr, `vrouterctl: cannot reach the admin API at ${missing}: no such socket (is cvlan-vrouter running?)\n`);
});
