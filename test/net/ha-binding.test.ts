// The HaSync binding: options checked up front with the field named, two channels over loopback
// that find each other, status without secrets, closed is closed.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { loadBinding } from '../../src/dataplane/binding.js';
import type { BindingHaEvent, BindingHaSyncOptions } from '../../src/dataplane/binding.js';

const b = loadBinding();

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a !== null ? a.port : 0));
    });
  });
}

async function until(what: string, f: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!f()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

t.test('bad options name the field', async (t) => {
  const ok: BindingHaSyncOptions = { listen: '127.0.0.1:0', peer: '127.0.0.1:9', key: randomBytes(32), nodeId: 1 };
  const cases: [Partial<BindingHaSyncOptions>, RegExp][] = [
    [{ key: randomBytes(31) }, /^key: expected 32 bytes, got 31/],
    [{ nodeId: 0 }, /^nodeId: 0 is not in 1\.\.255/],
    [{ nodeId: 256 }, /^nodeId/],
    [{ syncIntervalMs: 0 }, /^syncIntervalMs/],
    [{ leaseMessages: 1.5 }, /^leaseMessages/],
    [{ leaseMessages: 0 }, /^leaseMessages/],
    [{ listen: 'localhost' }, /^listen: "localhost" is not ip:port/],
    [{ peer: '10.0.0.1' }, /^peer:/],
    [{ relay: { bind: '127.0.0.2', deliverTo: '127.0.0.1:4510' } }, /^relay\.bind:/],
  ];
  for (const [bad, msg] of cases) {
    t.throws(() => new b.HaSync({ ...ok, ...bad }, () => {}), { code: 'CVLAN_ERR_INVALID_ARG', message: msg }, JSON.stringify(Object.keys(bad)));
  }
});

t.test('two channels connect, report each other and keep the key out of status', async (t) => {
  const [pa, pb] = [await freePort(), await freePort()];
  const key = randomBytes(32);
  const hex = key.toString('hex');
  const events: BindingHaEvent[] = [];
  const a = new b.HaSync({ listen: `127.0.0.1:${pa}`, peer: `127.0.0.1:${pb}`, key, nodeId: 1, syncIntervalMs: 20 }, (e) => events.push(e));
  const c = new b.HaSync({ listen: `127.0.0.1:${pb}`, peer: `127.0.0.1:${pa}`, key, nodeId: 2, syncIntervalMs: 20 }, () => {});
  key.fill(0);
  a.setGeneration(42);
  c.setRole('active');
  await until('connected', () => a.status().peerConnected && a.status().peerRole === 'active');
  const s = a.status();
  t.equal(s.role, 'standby', 'a channel starts as standby');
  t.equal(c.status().peerGeneration, 42, 'the generation crosses');
  t.ok(s.framesReceived > 0 && s.framesSent > 0, 'frames both ways');
  t.ok((s.lastSyncAgeMs ?? 1e9) < 1000, `last sync ${s.lastSyncAgeMs} ms ago`);
  t.notOk(JSON.stringify(s).includes(hex), 'no key in status');
  t.ok(events.some((e) => e.kind === 'peer-up' && e.detail?.nodeId === 2), 'peer-up with the node id');
  t.throws(() => a.setRole('leader' as 'active'), { code: 'CVLAN_ERR_INVALID_ARG', message: /^role:/ });
  t.throws(() => a.setGeneration(-1), { code: 'CVLAN_ERR_INVALID_ARG', message: /^generation:/ });
  c.close();
  await until('peer-down', () => events.some((e) => e.kind === 'peer-down'));
  t.equal(a.status().peerConnected, false, 'disconnected once the peer closed');
  a.close();
  a.close();
  t.throws(() => a.status(), { code: 'CVLAN_ERR_CLOSED' });
});
