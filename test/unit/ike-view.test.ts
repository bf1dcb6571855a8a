// The IKE view kept by charon's events (src/daemon/ike-view.ts): messages shaped as charon's VICI
// sends them (vici_query.c), applied in the orders charon produces, plus full reads overlapping
// events and resync requests overlapping each other.
import t from 'tap';
import { IkeResync, IkeView, nextSafetyNetMs, SA_REFRESH_COST_FACTOR } from '../../src/daemon/ike-view.js';
import { tunnelState } from '../../src/daemon/views.js';
import type { ViciSection } from '../../src/strongswan/vici/encoding.js';
import { parseListSa, type IkeSaInfo } from '../../src/strongswan/vici/types.js';

const child = (name: string, id: number, state = 'INSTALLED', spi = 'c0000001'): ViciSection => ({
  [`${name}-${id}`]: { name, uniqueid: String(id), state, 'spi-in': spi, 'spi-out': 'd0000001' },
});
const ike = (name: string, id: number, state: string, children: ViciSection = {}): ViciSection => ({
  uniqueid: String(id),
  state,
  'remote-host': '192.0.2.2',
  'child-sas': children,
});
const up = (name: string, sa: ViciSection): ViciSection => ({ up: 'yes', [name]: sa });
const down = (name: string, sa: ViciSection): ViciSection => ({ [name]: sa });
const stateOf = (v: IkeView, name: string): string => tunnelState(v.byName(name));

void t.test('up and down by events, without a read', async (t) => {
  const v = new IkeView();
  t.equal(stateOf(v, 't1'), 'down', 'nothing known: down');
  // charon raises child-updown before ike-updown when the CHILD_SA comes with IKE_AUTH.
  v.apply('child-updown', up('t1', ike('t1', 1, 'ESTABLISHED', child('t1', 1))));
  t.equal(stateOf(v, 't1'), 'up', 'child-updown alone: up');
  v.apply('ike-updown', up('t1', ike('t1', 1, 'ESTABLISHED')));
  t.equal(stateOf(v, 't1'), 'up', 'ike-updown without child-sas keeps the CHILD_SA');
  t.equal(v.byName('t1')?.childSas.length, 1);
  v.apply('child-updown', down('t1', ike('t1', 1, 'ESTABLISHED', child('t1', 1, 'DELETING'))));
  t.equal(stateOf(v, 't1'), 'connecting', 'CHILD_SA gone: the IKE_SA alone is connecting');
  v.apply('ike-updown', down('t1', ike('t1', 1, 'DELETING')));
  t.equal(stateOf(v, 't1'), 'down', 'ike-updown down: gone');
  t.equal(v.list().length, 0);
  v.apply('child-updown', down('t1', ike('t1', 1, 'DELETING', child('t1', 1, 'DELETING'))));
  t.equal(v.list().length, 0, 'a late child-updown of a gone IKE_SA does not bring it back');
  v.apply('log', { msg: 'x' });
  t.equal(v.events, 5, 'events other than the four are not counted');
});

void t.test('rekeys replace the old SA by the new one', async (t) => {
  const v = new IkeView();
  v.apply('child-updown', up('t1', ike('t1', 1, 'ESTABLISHED', child('t1', 1, 'INSTALLED', 'c0000001'))));
  v.apply('child-rekey', { t1: { ...ike('t1', 1, 'ESTABLISHED'), 'child-sas': { 't1-1': { old: child('t1', 1)['t1-1'] as ViciSection, new: child('t1', 2, 'INSTALLED', 'c0000002')['t1-2'] as ViciSection } } } });
  t.same(
    v.byName('t1')?.childSas.map((c) => [c.uniqueId, c.spiIn]),
    [[2, 'c0000002']],
    'child-rekey: only the new CHILD_SA',
  );
  v.apply('ike-rekey', { t1: { old: ike('t1', 1, 'REKEYED'), new: ike('t1', 7, 'ESTABLISHED') } });
  t.same(
    v.list().map((s) => s.uniqueId),
    [7],
    'ike-rekey: only the new IKE_SA',
  );
  t.equal(stateOf(v, 't1'), 'up', 'the CHILD_SA moved to the new IKE_SA');
});

void t.test('several IKE_SAs of one connection: the established one with a CHILD_SA is shown', async (t) => {
  const v = new IkeView();
  v.apply('child-updown', up('t1', ike('t1', 3, 'ESTABLISHED', child('t1', 3))));
  v.apply('ike-updown', up('t1', ike('t1', 4, 'ESTABLISHED')));
  t.equal(v.byName('t1')?.uniqueId, 3);
  t.equal(v.list().length, 2);
});

void t.test('a full read replaces the view; events during the read are applied on top', async (t) => {
  const v = new IkeView();
  v.apply('child-updown', up('stale', ike('stale', 9, 'ESTABLISHED', child('stale', 9))));
  let release!: (l: IkeSaInfo[]) => void;
  const resync = new IkeResync(v, () => new Promise<IkeSaInfo[]>((r) => (release = r)));
  const done = resync.resync();
  t.ok(resync.busy);
  // While charon lists, t2 comes up and t1 goes down.
  v.apply('child-updown', up('t2', ike('t2', 2, 'ESTABLISHED', child('t2', 2))));
  v.apply('ike-updown', down('t1', ike('t1', 1, 'DELETING')));
  // The read (taken before both events) still has t1 and lacks t2.
  release(parseListSa({ t1: ike('t1', 1, 'ESTABLISHED', child('t1', 1)) }));
  await done;
  t.equal(stateOf(v, 'stale'), 'down', 'an SA the read does not have is gone');
  t.equal(stateOf(v, 't1'), 'down', 'the event after the read wins over it');
  t.equal(stateOf(v, 't2'), 'up', 'an SA that came up during the read is kept');
  t.notOk(resync.busy);
  t.equal(resync.reads, 1);
});

void t.test('resync: never two reads at once, one more when asked during a read; a failed read keeps the view', async (t) => {
  const v = new IkeView();
  let running = 0;
  let max = 0;
  let calls = 0;
  const resync = new IkeResync(v, async () => {
    calls++;
    max = Math.max(max, ++running);
    await new Promise((r) => setTimeout(r, 20));
    running--;
    if (calls === 3) throw new Error('charon is away');
    return parseListSa({ t1: ike('t1', calls, 'ESTABLISHED', child('t1', calls)) });
  });
  await Promise.all([resync.resync(), resync.resync(), resync.resync(), resync.resync()]);
  t.equal(max, 1, 'one read at a time');
  t.equal(calls, 2, 'requests during a read fold into one more read');
  t.equal(v.byName('t1')?.uniqueId, 2, 'the later read is the view');
  await resync.resync();
  t.equal(calls, 3);
  t.equal(v.byName('t1')?.uniqueId, 2, 'a failed read leaves the view as it was');
  v.apply('ike-updown', down('t1', ike('t1', 2, 'DELETING')));
  t.equal(v.list().length, 0, 'and events still apply after it');
});

void t.test('the safety-net read: the interval, or a multiple of the last read when reads are expensive', async (t) => {
  t.equal(nextSafetyNetMs(60_000, 20), 60_000, 'a cheap read (few SAs): the interval');
  t.equal(nextSafetyNetMs(60_000, 800), 800 * SA_REFRESH_COST_FACTOR, 'a 0.8 s read (2000 SAs): 500 × its duration');
  t.ok(nextSafetyNetMs(60_000, 800) > 60_000);
});
