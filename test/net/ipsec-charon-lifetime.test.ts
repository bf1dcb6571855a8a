// charon lives exactly as long as the daemon: a stop leaves it to charon's own shutdown to delete
// the IKE_SAs at the peer (no per-tunnel terminate), and a daemon killed outright takes its charon
// with it (parent-death signal), so no charon is left holding the plugin's socket.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { useLab, closeLab } from '../harness/tap.js';
import { twoHosts } from '../harness/topology.js';
import { site, waitUp } from '../harness/ipsec-site.js';
import { cvlanTestbedMissing } from '../harness/cvlan.js';
import { missingPrerequisites, tools } from '../harness/tools.js';
import { run, sleep } from '../harness/exec.js';
import { alive } from '../harness/process.js';

const skip = cvlanTestbedMissing() ?? missingPrerequisites('charon', 'swanctl');

async function charonIn(ns: string): Promise<number | undefined> {
  const pids = (await run(tools.ip, ['netns', 'pids', ns])).stdout.trim().split('\n').filter(Boolean).map(Number);
  return pids.find((p) => {
    try {
      return readFileSync(`/proc/${p}/comm`, 'utf8').trim() === 'charon';
    } catch {
      return false;
    }
  });
}

async function gone(pid: number, timeoutMs: number): Promise<number | undefined> {
  const start = Date.now();
  while (Date.now() - start < timeoutMs) {
    if (!alive(pid)) return Date.now() - start;
    await sleep(50);
  }
  return undefined;
}

t.test('SIGTERM: charon deletes the IKE_SA at the peer on its way out', { skip }, async (t) => {
  const lab = useLab(t, { label: 'chstop' });
  const h = await twoHosts(lab);
  const s = await site(lab, { esp: 'aes256gcm16', weInitiate: true, ours: [h.a, h.addrA], legacy: [h.b, h.addrB] });
  await waitUp(s);
  const charon = await charonIn(h.a);
  t.ok(charon !== undefined, 'found our charon');
  const before = await s.legacy.listSas();
  t.ok(before.ike.some((x) => x.state === 'ESTABLISHED'), 'the legacy router has the IKE_SA');
  const started = Date.now();
  const exit = await s.ours.process.stop(10_000);
  t.equal(exit.code, 0, `daemon stopped cleanly in ${Date.now() - started} ms`);
  t.notOk(alive(charon!), 'charon is gone with it');
  let after = await s.legacy.listSas();
  for (let i = 0; i < 20 && after.ike.length > 0; i++) {
    await sleep(250);
    after = await s.legacy.listSas();
  }
  t.equal(after.ike.length, 0, 'the legacy router has no IKE_SA left: charon sent the DELETE', { listed: after.raw });
  await closeLab(t, lab);
});

t.test('SIGKILL of the daemon: charon goes too (parent-death signal)', { skip }, async (t) => {
  const lab = useLab(t, { label: 'chkilld' });
  const h = await twoHosts(lab);
  const s = await site(lab, { esp: 'aes256gcm16', weInitiate: true, ours: [h.a, h.addrA], legacy: [h.b, h.addrB] });
  await waitUp(s);
  const charon = await charonIn(h.a);
  t.ok(charon !== undefined, 'found our charon');
  s.ours.process.signal('SIGKILL');
  await s.ours.process.exited;
  const ms = await gone(charon!, 10_000);
  t.ok(ms !== undefined, `charon exited ${ms ?? '-'} ms after the daemon was killed`);
  t.equal(await charonIn(h.a), undefined, 'no charon left in the namespace');
  await closeLab(t, lab);
});
