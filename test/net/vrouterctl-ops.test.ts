// vrouterctl against a running cvlan-vrouter with a live IPsec tunnel to strongSwan: `logs -f`
// follows the event log as it happens; `terminate` deletes the tunnel's SAs (tunnel_down on the
// stream, traffic stops), `initiate` brings it back (tunnel_up, traffic again); refusals for a
// tunnel without SAs and an unknown tunnel; no secret in the stream.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { useLab, closeLab } from '../harness/tap.js';
import { twoHosts } from '../harness/topology.js';
import { site, tunnels, waitUp, OURS, LEGACY } from '../harness/ipsec-site.js';
import { cvlanTestbedMissing, REPO_ROOT } from '../harness/cvlan.js';
import { missingPrerequisites, tools } from '../harness/tools.js';
import { run, sleep } from '../harness/exec.js';
import { ping, waitForPing } from '../harness/ping.js';

const CTL = join(REPO_ROOT, 'dist', 'src', 'cli', 'vrouterctl.js');
const skip = cvlanTestbedMissing() ?? missingPrerequisites('charon', 'swanctl');

t.test('vrouterctl logs -f, terminate and initiate on a live IPsec tunnel', { skip }, async (t) => {
  const lab = useLab(t, { label: 'ctlops' });
  const h = await twoHosts(lab);
  const s = await site(lab, { esp: 'aes256gcm16', weInitiate: true, ours: [h.a, h.addrA], legacy: [h.b, h.addrB] });
  await waitUp(s);
  const ctl = (...args: string[]) => run(tools.node, [CTL, '--socket', s.ours.admin, ...args], { allowFailure: true, timeoutMs: 40_000 });
  const psk = (JSON.parse(readFileSync(s.ours.config, 'utf8')) as { tunnels: { auth: { psk: string } }[] }).tunnels[0]!.auth.psk;

  // Follow the event stream from a process of its own, as an operator would.
  const follower = spawn(tools.node, [CTL, '--socket', s.ours.admin, '--json', 'logs', '-f'], { stdio: ['ignore', 'pipe', 'pipe'] });
  lab.onTeardown('stop vrouterctl logs -f', () => {
    if (follower.exitCode === null) follower.kill('SIGKILL');
  });
  let streamed = '';
  follower.stdout.setEncoding('utf8');
  follower.stdout.on('data', (d: string) => (streamed += d));
  const events = () =>
    streamed
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { event: string; tunnel: string | null; reason?: string });
  const waitEvent = async (event: string, from: number, tunnel: string | null = 'legacy'): Promise<void> => {
    const end = Date.now() + 20_000;
    while (!events().slice(from).some((e) => e.event === event && e.tunnel === tunnel)) {
      if (Date.now() > end) throw new Error(`no ${event} for ${tunnel ?? 'the tenant'} after event ${from}: ${streamed}`);
      await sleep(100);
    }
  };
  // Both were logged before the daemon said ready (this vrouter initiates, so its tunnel_up may
  // precede config_applied); the stream replays them in that order, one line per chunk, so
  // wait for each rather than read the stream at the instant the first arrives.
  await waitEvent('tunnel_up', 0);
  await waitEvent('config_applied', 0, null).then(
    () => t.pass('logs -f starts with the recent events: config_applied'),
    (e: Error) => t.fail(`logs -f starts with the recent events: config_applied (${e.message})`),
  );
  t.ok(events().some((e) => e.event === 'tunnel_up' && e.tunnel === 'legacy'), 'and the tunnel_up of the running tunnel');

  const recent = await ctl('logs');
  t.equal(recent.code, 0, 'logs: exit 0');
  t.match(recent.stdout, /\binfo\s+tunnel_up\s+t1\/legacy\s+tunnel up/, 'logs: human lines');

  t.ok((await waitForPing(h.a, LEGACY.lan, 15_000, OURS.lan)).received > 0, 'traffic through the tunnel');

  let mark = events().length;
  const term = await ctl('terminate', 'legacy');
  t.equal(term.code, 0, `terminate: exit 0 ${term.stderr}`);
  t.equal(term.stdout, 'tunnel legacy: terminated\n');
  await waitEvent('tunnel_down', mark);
  t.pass('logs -f shows tunnel_down as it happens');
  t.not((await tunnels(s))[0]!.state, 'up', 'the tunnel is no longer up');
  t.equal((await ping(h.a, LEGACY.lan, { count: 2, wait: 1, source: OURS.lan })).received, 0, 'no traffic without SAs');

  const again = await ctl('terminate', 'legacy');
  t.equal(again.code, 3, 'terminating a tunnel without SAs: API error');
  t.match(again.stderr, /CVLAN_ERR_STATE: IPsec tunnel "legacy" has no IKE_SA to terminate \(HTTP 409\)/);

  mark = events().length;
  const init = await ctl('--json', 'initiate', 'legacy');
  t.equal(init.code, 0, `initiate: exit 0 ${init.stderr}`);
  t.same(JSON.parse(init.stdout), { tunnel: 'legacy', action: 'initiate' });
  t.equal((await tunnels(s))[0]!.state, 'up', 'initiate returns once the tunnel is up');
  await waitEvent('tunnel_up', mark);
  t.pass('logs -f shows the new tunnel_up');
  t.ok((await waitForPing(h.a, LEGACY.lan, 15_000, OURS.lan)).received > 0, 'traffic again');
  t.equal((await ping(h.b, OURS.lan, { count: 3, source: LEGACY.lan })).received, 3, 'both ways');

  const unknown = await ctl('initiate', 'nowhere');
  t.equal(unknown.code, 3);
  t.match(unknown.stderr, /CVLAN_ERR_API_NOT_FOUND: no IPsec tunnel "nowhere" in the configuration \(HTTP 404\)/);

  t.notOk(streamed.includes(psk), 'the PSK is nowhere in the event stream');
  const exited = new Promise<number | null>((resolve) => follower.once('close', (c) => resolve(c)));
  follower.kill('SIGINT');
  t.equal(await exited, 0, 'logs -f ends with exit 0 on Ctrl-C');
  await closeLab(t, lab);
});
