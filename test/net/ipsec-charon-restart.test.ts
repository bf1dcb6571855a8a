// charon SIGKILLed under traffic on a tunnel where cvlan-vrouter is only the responder (the demo's
// own configuration: the legacy router, strongSwan with kernel-libipsec, initiates and never
// again). The restarted charon knows nothing; the vrouter negotiates the tunnel again towards the
// address of its last IKE_SA, so traffic still flows after the data plane's orphan grace (60 s)
// has removed the old SAs.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { useLab, closeLab } from '../harness/tap.js';
import { twoHosts } from '../harness/topology.js';
import { site, tunnels, waitUp, OURS, LEGACY } from '../harness/ipsec-site.js';
import { cvlanTestbedMissing } from '../harness/cvlan.js';
import { missingPrerequisites, tools } from '../harness/tools.js';
import { run } from '../harness/exec.js';
import { ping, waitForPing } from '../harness/ping.js';

const skip = cvlanTestbedMissing() ?? missingPrerequisites('charon', 'swanctl');

/** A JSON log line written at or after `ms` (ms since the epoch). */
const after = (line: string, ms: number): boolean => {
  const m = /"time":"([^"]+)"/.exec(line);
  return m !== null && Date.parse(m[1]!) >= ms;
};

t.test('charon killed: a responder-only tunnel is negotiated again and still carries traffic at 90 s', { skip }, async (t) => {
  const lab = useLab(t, { label: 'chkill' });
  const h = await twoHosts(lab);
  const s = await site(lab, { esp: 'aes256gcm16', weInitiate: false, ours: [h.a, h.addrA], legacy: [h.b, h.addrB] });
  await waitUp(s);
  t.ok((await waitForPing(h.a, LEGACY.lan, 15_000, OURS.lan)).received > 0, 'traffic before');

  const pids = (await run(tools.ip, ['netns', 'pids', h.a])).stdout.trim().split('\n').map(Number);
  const charon = pids.find((p) => {
    try {
      return readFileSync(`/proc/${p}/comm`, 'utf8').trim() === 'charon';
    } catch {
      return false;
    }
  });
  t.ok(charon !== undefined, 'found our charon');
  const killedAt = Date.now();
  process.kill(charon!, 'SIGKILL');

  // 90 s of pings, 5 per second, across the restart, the renegotiation and the orphan grace.
  const flow = ping(h.a, LEGACY.lan, { count: 450, intervalMs: 200, source: OURS.lan });
  await s.ours.process.waitReady({ line: (l) => /"event":"charon_restart"/.test(l) && after(l, killedAt), timeoutMs: 10_000 });
  t.pass('charon restart logged');
  await s.ours.process.waitReady({ line: (l) => /"event":"tunnel_up".*"tunnel":"legacy"/.test(l) && after(l, killedAt), timeoutMs: 30_000 });
  t.pass('tunnel_up logged again after the restart');
  const across = await flow;
  const elapsed = (Date.now() - killedAt) / 1000;
  t.ok(elapsed >= 89, `${elapsed.toFixed(0)} s since charon was killed (the orphan grace is 60 s)`);
  t.ok(across.received >= 440, `${across.received}/450 pings across the kill, the renegotiation and the orphan grace`);
  t.equal((await ping(h.a, LEGACY.lan, { count: 5, source: OURS.lan })).received, 5, 'ours → legacy after 90 s');
  t.equal((await ping(h.b, OURS.lan, { count: 5, source: LEGACY.lan })).received, 5, 'legacy → ours after 90 s');

  const legacy = await s.legacy.listSas();
  t.ok(
    legacy.ike.some((x) => x.state === 'ESTABLISHED') && legacy.child.some((x) => x.state === 'INSTALLED'),
    'swanctl --list-sas on the legacy router: an established IKE_SA with an installed CHILD_SA',
    { listed: legacy.raw },
  );
  const view = (await tunnels(s))[0];
  t.equal(view?.state, 'up', 'our tunnel view: up');
  t.ok(view?.ike_sa !== null, 'with an IKE_SA from the new charon');
  await closeLab(t, lab);
});
