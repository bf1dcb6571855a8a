// vrouterctl's command rules and its new commands, as a real process (the built CLI) against a
// real admin API server: per-command --help, options refused where they do not belong, names of
// peers, `initiate`/`terminate` (success and each failure), and `logs` / `logs -f` streaming
// events as they are logged, with secrets censored and --json giving the raw lines.
// Needs dist/ (`npx tsc -p tsconfig.json`).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { EventStream } from '../../src/api/events.js';
import { startAdminServer } from '../../src/api/server.js';
import { SnapshotStateSource, type RouterControl } from '../../src/api/state.js';
import { CvlanError } from '../../src/errors.js';
import { createLogger, eventLog } from '../../src/log.js';
import { REPO_ROOT } from '../harness/cvlan.js';
import { sampleSnapshot, tempSocketDir } from './api-fixture.js';

const CTL = join(REPO_ROOT, 'dist', 'src', 'cli', 'vrouterctl.js');
const skip = existsSync(CTL) ? undefined : `${CTL} is not built (npx tsc -p tsconfig.json)`;

const dir = tempSocketDir();
const socketPath = join(dir, 'admin.sock');
const events = new EventStream({ capacity: 50 });
const log = createLogger({ level: 'info', destination: events });
const ev = eventLog(log);

const actions: string[] = [];
const control: RouterControl = {
  async initiateTunnel(id) {
    actions.push(`initiate ${id}`);
    if (id === 'slow-site') throw new CvlanError('CVLAN_ERR_VICI_TIMEOUT', 'charon did not establish slow-site in time');
    if (id !== 'site-a') throw new CvlanError('CVLAN_ERR_API_NOT_FOUND', `no IPsec tunnel "${id}" in the configuration`);
    return { tunnel: id, action: 'initiate' };
  },
  async terminateTunnel(id) {
    actions.push(`terminate ${id}`);
    if (id === 'idle-site') throw new CvlanError('CVLAN_ERR_STATE', `IPsec tunnel "${id}" has no IKE_SA to terminate`);
    return { tunnel: id, action: 'terminate' };
  },
};
const server = await startAdminServer({ source: new SnapshotStateSource(sampleSnapshot()), socketPath, events, control });
t.teardown(() => server.close());

/** The built vrouterctl as a process; asynchronous, since the server answers from this process. */
function ctl(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CTL, '--socket', socketPath, ...args], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 20_000 });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, out, err }));
  });
}

t.test('per-command --help and misplaced options', { skip }, async (t) => {
  for (const c of ['stats', 'tunnels', 'sas', 'peers', 'routes', 'drops', 'workers', 'logs', 'initiate', 'terminate', 'genkey', 'pubkey']) {
    const r = await ctl([c, '--help']);
    t.equal(r.code, 0, `${c} --help: exit 0`);
    t.match(r.out, new RegExp(`^usage: vrouterctl \\[options\\] ${c}\\b`), `${c} --help: its own usage`);
    t.equal(r.err, '');
  }
  t.match((await ctl(['logs', '--help'])).out, /-f, --follow/, 'logs --help names -f');
  t.equal(actions.length, 0, '--help took no action');
  const cases: Array<[string[], RegExp]> = [
    [['stats', '-f'], /--follow is not an option of stats/],
    [['logs', '--tenant', 'acme'], /--tenant is not an option of logs/],
    [['initiate'], /initiate needs TUNNEL/],
    [['terminate', 'a', 'b'], /unexpected argument: b/],
    [['logs', '--since', '1h'], /Unknown option '--since'/],
  ];
  for (const [args, message] of cases) {
    const r = await ctl(args);
    t.equal(r.code, 1, `${args.join(' ')}: usage error (exit 1)`);
    t.match(r.err, message);
  }
});

t.test('peers show the configured names', { skip }, async (t) => {
  const r = await ctl(['peers']);
  t.equal(r.code, 0);
  t.match(r.out, /^NAME\s+PUBLIC_KEY/);
  t.match(r.out, /\nagent-7\s+HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=/);
  const j = JSON.parse((await ctl(['--json', 'peers'])).out) as { peers: { name: string | null }[] };
  t.equal(j.peers[0]!.name, 'agent-7', '--json carries the name');
});

t.test('initiate and terminate', { skip }, async (t) => {
  let r = await ctl(['initiate', 'site-a']);
  t.equal(r.code, 0);
  t.equal(r.out, 'tunnel site-a: initiated (established)\n');
  r = await ctl(['--json', 'terminate', 'site-a']);
  t.equal(r.code, 0);
  t.same(JSON.parse(r.out), { tunnel: 'site-a', action: 'terminate' });
  t.same(actions.splice(0), ['initiate site-a', 'terminate site-a'], 'the daemon got both actions');

  r = await ctl(['initiate', 'nowhere']);
  t.equal(r.code, 3, 'unknown tunnel: API error');
  t.match(r.err, /CVLAN_ERR_API_NOT_FOUND: no IPsec tunnel "nowhere" in the configuration \(HTTP 404\)/);
  r = await ctl(['terminate', 'idle-site']);
  t.equal(r.code, 3);
  t.match(r.err, /CVLAN_ERR_STATE: .*no IKE_SA to terminate \(HTTP 409\)/);
  r = await ctl(['initiate', 'slow-site']);
  t.equal(r.code, 3);
  t.match(r.err, /CVLAN_ERR_VICI_TIMEOUT: .* \(HTTP 504\)/);
  r = await ctl(['initiate', 'bad/id']);
  t.equal(r.code, 3, 'an id that cannot be a tunnel id is refused by the API');
  t.equal(actions.filter((a) => a.includes('bad')).length, 0, 'and never reaches the daemon');
});

t.test('logs and logs -f', { skip }, async (t) => {
  ev.tunnelUp({ tenant: 'acme', tunnel: 'site-a', type: 'ipsec', remote: '192.0.2.1' });
  log.info({ psk: 'hunter2-hunter2-hunter2' }, 'not an event: never in the stream');
  ev.configRefused({ tenant: null, version: null, reason: 'bad', issues: [{ path: 'x', reason: 'y' }] });
  let r = await ctl(['logs']);
  t.equal(r.code, 0);
  const lines = r.out.trim().split('\n');
  t.equal(lines.length, 2, 'two events so far');
  t.match(lines[0], /\binfo\s+tunnel_up\s+acme\/site-a\s+tunnel up\s+type=ipsec remote=192\.0\.2\.1/);
  t.match(lines[1], /\berror\s+config_refused\s+-\s+configuration refused/);
  r = await ctl(['--json', 'logs']);
  t.same(
    r.out.trim().split('\n').map((l) => (JSON.parse(l) as { event: string }).event),
    ['tunnel_up', 'config_refused'],
    '--json: the raw event lines',
  );

  // Follow: the recent events at once, then new ones as they are logged, until Ctrl-C.
  const child = spawn(process.execPath, [CTL, '--socket', socketPath, '--json', 'logs', '-f'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const seen = (n: number) =>
    new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${n} lines: ${out}`)), 10_000);
      const check = (): void => {
        if (out.split('\n').filter(Boolean).length >= n) {
          clearTimeout(timer);
          child.stdout.off('data', check);
          resolve();
        }
      };
      child.stdout.on('data', check);
      check();
    });
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (d: string) => (out += d));
  await seen(2);
  t.equal(events.followers, 1, 'the daemon has one follower');
  ev.tunnelDown({ tenant: 'acme', tunnel: 'laptop', type: 'wireguard', reason: 'session expired: no handshake for 540 s, keys erased' });
  ev.authFailure({ tenant: 'acme', tunnel: 'site-a', remote: '192.0.2.9', method: 'ike', reason: 'wrong psk', psk: 'hunter2-hunter2-hunter2' } as never);
  await seen(4);
  const got = out.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  t.match(got[2], { event: 'tunnel_down', tenant: 'acme', tunnel: 'laptop', type: 'wireguard' }, 'a new event arrives while following');
  t.equal(got[3]!.event, 'auth_failure');
  t.equal(got[3]!.psk, '[redacted]', 'a secret in an event line is censored in the stream as in the log');
  t.notOk(out.includes('hunter2'), 'no secret in the stream');
  const exited = new Promise<number | null>((resolve) => child.once('close', (c) => resolve(c)));
  child.kill('SIGINT');
  t.equal(await exited, 0, 'Ctrl-C ends logs -f with exit 0');
  for (let i = 0; i < 50 && events.followers > 0; i++) await new Promise((r) => setTimeout(r, 20));
  t.equal(events.followers, 0, 'the daemon forgot the follower');
});

t.test('the ring is bounded; a follower that does not read is cut off', async (t) => {
  const s = new EventStream({ capacity: 3 });
  for (let i = 0; i < 5; i++) s.write(`${JSON.stringify({ event: 'tunnel_up', n: i })}\n`);
  s.write('{"msg":"no event field"}\n');
  s.write('not json "event": at all\n');
  t.same(
    s.recent().map((l) => (JSON.parse(l) as { n: number }).n),
    [2, 3, 4],
    'the last three events, nothing else',
  );
  t.equal(s.dropped, 2);
  let ended = '';
  const lines: string[] = [];
  s.follow({ line: (l) => lines.push(l), end: (why) => (ended = why) });
  s.write(`${JSON.stringify({ event: 'tunnel_down' })}\n`);
  t.equal(lines.length, 1);
  s.close();
  t.match(ended, /stopping/);
  t.equal(s.followers, 0);
});
