// The role decision (fencing and the generation rule), keepalived's notify FIFO lines, and the
// FIFO reader on a real FIFO.
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compareAddresses, decideRole, type RoleInputs } from '../../src/ha/role.js';
import { NotifyFifo, parseNotifyLine, type VrrpNotice } from '../../src/ha/notify-fifo.js';

const base: RoleInputs = {
  vrrp: 'BACKUP',
  fenced: false,
  currentRole: 'standby',
  sync: { peerConnected: false, peerRole: null, peerGeneration: null },
  generation: 7,
  localAddress: '10.0.0.2',
  peerAddress: '10.0.0.3',
};
const up = (peerRole: 'active' | 'standby', peerGeneration = 7) => ({ peerConnected: true, peerRole, peerGeneration });

t.test('keepalived decides BACKUP/MASTER; fencing only removes a claim', async (t) => {
  t.same(decideRole(base), { role: 'standby', fence: null });
  t.same(decideRole({ ...base, vrrp: 'MASTER' }), { role: 'active', fence: null }, 'no peer ever seen: VRRP alone');
  t.same(decideRole({ ...base, vrrp: 'MASTER', sync: up('standby') }), { role: 'active', fence: null });
  for (const vrrp of ['INIT', 'FAULT', 'STOP', 'UNKNOWN'] as const) t.same(decideRole({ ...base, vrrp }), { role: 'standby', fence: null }, vrrp);
  t.same(decideRole({ ...base, vrrp: 'BACKUP', sync: up('active') }), { role: 'standby', fence: null }, 'a standby next to a live active needs no fence');
});

t.test('VRRP link cut, sync channel alive: the node that sees a live active peer fences itself', async (t) => {
  const d = decideRole({ ...base, vrrp: 'MASTER', sync: up('active') });
  t.same(d, { role: 'standby', fence: 'peer-active' }, 'lower address yields');
  const other = decideRole({ ...base, localAddress: '10.0.0.3', peerAddress: '10.0.0.2', vrrp: 'MASTER', sync: up('active') });
  t.same(other, { role: 'standby', fence: 'peer-active' }, 'a node claiming anew yields whatever its address: the VIP stays where it is');
  const both = { ...base, vrrp: 'MASTER' as const, currentRole: 'active' as const, sync: up('active') };
  t.same(decideRole(both), { role: 'standby', fence: 'peer-active' }, 'two active nodes: the lower address yields');
  t.same(decideRole({ ...both, localAddress: '10.0.0.3', peerAddress: '10.0.0.2' }), { role: 'active', fence: null }, 'the higher address keeps the VIP: exactly one of the two');
  t.same(decideRole({ ...base, vrrp: 'FAULT', fenced: true, sync: up('active') }), { role: 'standby', fence: 'peer-active' }, 'the fence holds while the peer is active');
  t.same(decideRole({ ...base, vrrp: 'FAULT', fenced: true, sync: { ...up('active'), peerConnected: false } }), { role: 'standby', fence: null }, 'peer gone: fence lifted, VRRP decides again');
  t.same(decideRole({ ...base, vrrp: 'FAULT', fenced: true, sync: up('standby') }), { role: 'standby', fence: null }, 'peer went standby: fence lifted');
});

t.test('a standby whose configuration differs from the lost active peer refuses to take over', async (t) => {
  const lost = { peerConnected: false, peerRole: 'active' as const, peerGeneration: 6 };
  t.same(decideRole({ ...base, vrrp: 'MASTER', sync: lost }), { role: 'standby', fence: 'generation-mismatch' });
  t.same(decideRole({ ...base, vrrp: 'MASTER', sync: { ...lost, peerGeneration: 7 } }), { role: 'active', fence: null }, 'same generation: takeover');
  t.same(decideRole({ ...base, vrrp: 'MASTER', sync: { ...lost, peerRole: 'standby' } }), { role: 'active', fence: null }, "a lost standby's generation does not matter");
  t.same(decideRole({ ...base, vrrp: 'BACKUP', sync: { ...up('active', 6) } }), { role: 'standby', fence: null }, 'while the active peer is there, no fence: converging is the controller’s job');
});

t.test('address order', async (t) => {
  t.ok(compareAddresses('10.0.0.9', '10.0.0.10') < 0, 'numeric, not lexical');
  t.ok(compareAddresses('2001:db8::a', '2001:db8::1:0') < 0);
  t.equal(compareAddresses('fe80::1', 'fe80:0:0:0:0:0:0:1'), 0);
});

t.test('notify FIFO lines', async (t) => {
  t.same(parseNotifyLine('INSTANCE "cvlan" MASTER 150'), { type: 'INSTANCE', name: 'cvlan', state: 'MASTER', priority: 150 });
  t.same(parseNotifyLine('INSTANCE "cvlan" STOP 100\n'), { type: 'INSTANCE', name: 'cvlan', state: 'STOP', priority: 100 });
  t.same(parseNotifyLine('GROUP "g" FAULT'), { type: 'GROUP', name: 'g', state: 'FAULT', priority: undefined });
  t.equal(parseNotifyLine('INSTANCE "cvlan" SLEEPING 1'), undefined);
  t.equal(parseNotifyLine('garbage'), undefined);
});

t.test('the FIFO reader: lines split across writes, and no EOF between writers', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cvlan-ha-fifo-'));
  const path = join(dir, 'notify.fifo');
  writeFileSync(path, 'a regular file is replaced by a FIFO');
  const fifo = new NotifyFifo(path);
  t.teardown(() => {
    fifo.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const seen: VrrpNotice[] = [];
  const unknown: string[] = [];
  fifo.on('notice', (n) => seen.push(n));
  fifo.on('unknown', (l) => unknown.push(l));
  fifo.open();
  // Two separate writers, as two keepalived runs would be; the second line arrives in two pieces.
  writeFileSync(path, 'INSTANCE "cvlan" BACKUP 100\nINST');
  writeFileSync(path, 'ANCE "cvlan" MASTER 100\nhello\n');
  for (let i = 0; i < 50 && seen.length < 2; i++) await new Promise((r) => setTimeout(r, 20));
  t.same(seen.map((n) => n.state), ['BACKUP', 'MASTER']);
  t.same(unknown, ['hello']);
});

t.test('uplink cut: a claim on a sync channel as silent as VRRP is not fenced; a live one still is', async (t) => {
  const claim = { ...base, vrrp: 'MASTER' as const, peerSilentAfterMs: 400 };
  t.same(decideRole({ ...claim, sync: { ...up('active'), lastFrameAgeMs: 650 } }), { role: 'active', fence: null }, 'the channel has not timed out yet, but is silent: claim');
  t.same(decideRole({ ...claim, sync: { ...up('active'), lastFrameAgeMs: 60 } }), { role: 'standby', fence: 'peer-active' }, 'live channel: fenced (VRRP alone is cut)');
  t.same(decideRole({ ...claim, sync: { ...up('active'), lastFrameAgeMs: null } }), { role: 'standby', fence: 'peer-active' }, 'age unknown: fenced');
  t.same(decideRole({ ...claim, fenced: true, vrrp: 'FAULT', sync: { ...up('active'), lastFrameAgeMs: 650 } }), { role: 'standby', fence: 'peer-active' }, 'a fence already up holds until the channel calls the peer gone');
  t.same(decideRole({ ...claim, sync: { ...up('active', 8), lastFrameAgeMs: 650 } }), { role: 'standby', fence: 'generation-mismatch' }, 'silent peer of another generation: refused as when it is gone');
});
