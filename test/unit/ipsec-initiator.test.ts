// Windowed, self-healing initiation (src/ipsec/initiator.ts) against a scripted charon: events
// shaped as charon's VICI sends them, `list-sas` answers chosen per test.
import t from 'tap';
import { Initiator, progressOf } from '../../src/ipsec/initiator.js';
import type { ViciSection } from '../../src/strongswan/vici/encoding.js';
import type { IkeSaInfo } from '../../src/strongswan/vici/types.js';
import { isIkeFailureLine } from '../../src/strongswan/scale.js';

const sa = (name: string, state: string, children: string[] = []): IkeSaInfo =>
  ({ name, uniqueId: 1, state, childSas: children.map((c, i) => ({ name, key: `${name}-${i}`, uniqueId: i, state: c })) }) as unknown as IkeSaInfo;
const childUp = (name: string): ViciSection => ({ up: 'yes', [name]: { uniqueid: '1', state: 'ESTABLISHED', 'child-sas': { [`${name}-1`]: { name, uniqueid: '1', state: 'INSTALLED' } } } });
const ikeDown = (name: string): ViciSection => ({ [name]: { uniqueid: '1', state: 'DELETING' } });
const tick = (ms = 0): Promise<void> => new Promise((r) => setTimeout(r, ms));

function scripted(window: number, settleMs: number, held: (id: string) => IkeSaInfo[] = () => []) {
  const sent: string[] = [];
  const reads: string[] = [];
  const init = new Initiator({
    window,
    settleMs,
    initiate: (ids) => {
      sent.push(...ids);
      return Promise.resolve(ids.map(() => undefined));
    },
    read: (id) => {
      reads.push(id);
      return Promise.resolve(held(id));
    },
  });
  return { init, sent, reads };
}

void t.test('classifies what charon holds for a connection', async (t) => {
  t.equal(progressOf([]), 'none');
  t.equal(progressOf([sa('a', 'CONNECTING')]), 'connecting');
  t.equal(progressOf([sa('a', 'ESTABLISHED')]), 'ike-only');
  t.equal(progressOf([sa('a', 'ESTABLISHED', ['CREATED'])]), 'connecting', 'a CHILD_SA under negotiation');
  t.equal(progressOf([sa('a', 'ESTABLISHED', ['INSTALLED'])]), 'up');
  t.equal(progressOf([sa('a', 'CONNECTING'), sa('a', 'ESTABLISHED', ['INSTALLED'])]), 'up', 'any IKE_SA with a CHILD_SA');
  t.equal(progressOf([sa('a', 'DESTROYING')]), 'none');
});

void t.test('at most `window` in flight; each CHILD_SA up lets the next one in', async (t) => {
  const { init, sent } = scripted(3, 60_000);
  init.start(['t0', 't1', 't2', 't3', 't4']);
  t.same(sent, ['t0', 't1', 't2'], 'the first window');
  init.event('ike-updown', { up: 'yes', t0: { uniqueid: '1', state: 'ESTABLISHED' } });
  t.equal(sent.length, 3, 'an IKE_SA up is not done yet');
  init.event('child-updown', childUp('t1'));
  t.same(sent, ['t0', 't1', 't2', 't3'], 'a CHILD_SA up frees a slot');
  init.event('child-updown', childUp('elsewhere'));
  t.equal(sent.length, 4, 'events of other connections change nothing');
  init.event('ike-updown', ikeDown('t0'));
  t.same(sent, ['t0', 't1', 't2', 't3', 't4'], 'an IKE_SA down frees a slot too');
  t.equal(init.pending, 3);
  init.close();
});

void t.test('a slot is freed after settleMs; the tunnel is started again only if charon holds nothing for it', async (t) => {
  let holds: IkeSaInfo[] = [sa('t0', 'CONNECTING')];
  const { init, sent, reads } = scripted(1, 30, () => holds);
  init.start(['t0', 't1']);
  t.same(sent, ['t0']);
  await tick(45);
  t.same(sent, ['t0', 't1'], 'settled: the next one goes');
  t.same(reads, ['t0'], 'and the first one is looked at');
  t.equal(sent.filter((s) => s === 't0').length, 1, 'connecting: left to charon');
  init.event('child-updown', childUp('t1'));
  holds = [];
  await tick(80);
  t.ok(sent.filter((s) => s === 't0').length >= 2, 'no IKE_SA any more: initiated again');
  t.ok(init.retried >= 1);
  init.close();
});

void t.test('an IKE_SA up whose CHILD_SA was refused frees its slot after childGraceMs, and gets its CHILD_SA again', async (t) => {
  const state = new Map<string, IkeSaInfo[]>();
  const sent: string[] = [];
  const init = new Initiator({
    window: 1,
    settleMs: 60_000,
    childGraceMs: 20,
    initiate: (ids) => {
      sent.push(...ids);
      return Promise.resolve(ids.map(() => undefined));
    },
    read: (id) => Promise.resolve(state.get(id) ?? []),
  });
  init.start(['t0', 't1']);
  t.same(sent, ['t0']);
  // IKE_AUTH done, the peer answered TS_UNACCEPTABLE: charon keeps the IKE_SA and says nothing more.
  state.set('t0', [sa('t0', 'ESTABLISHED')]);
  init.event('ike-updown', { up: 'yes', t0: { uniqueid: '1', state: 'ESTABLISHED' } });
  t.same(sent, ['t0'], 'not settled at once: the CHILD_SA may still come');
  // Waits for the timers however loaded the machine is; settleMs (60 s) is far beyond.
  const until = async (n: number): Promise<void> => {
    for (let i = 0; i < 1000 && sent.length < n; i++) await tick(5);
  };
  await until(2);
  t.same(sent, ['t0', 't1'], 'the slot went to the next tunnel long before settleMs');
  init.event('child-updown', childUp('t1'));
  await until(3);
  t.same(sent, ['t0', 't1', 't0'], 'an IKE_SA without a CHILD_SA: initiated again (charon adds the CHILD_SA)');
  t.equal(init.retried, 1);
  init.close();
});

void t.test('down with nothing under way: started again; up meanwhile: not', async (t) => {
  const state = new Map<string, IkeSaInfo[]>([['t1', [sa('t1', 'ESTABLISHED', ['INSTALLED'])]]]);
  const { init, sent } = scripted(4, 20, (id) => state.get(id) ?? []);
  init.start(['t0', 't1']);
  init.event('child-updown', childUp('t0'));
  init.event('child-updown', childUp('t1'));
  init.event('ike-updown', ikeDown('t0'));
  init.event('ike-updown', ikeDown('t1'));
  // The second try succeeds: its CHILD_SA up settles it (no further look).
  const n = sent.length;
  while (sent.length === n) await tick(5);
  init.event('child-updown', childUp('t0'));
  await tick(60);
  t.same(sent, ['t0', 't1', 't0'], 't0 had nothing: initiated again; t1 up again (charon restarted it): left alone');
  init.close();
});

void t.test('a tunnel loaded again is looked at first, not initiated twice', async (t) => {
  const { init, sent, reads } = scripted(4, 60_000, (id) => [sa(id, 'ESTABLISHED', ['INSTALLED'])]);
  init.start(['t0']);
  init.event('child-updown', childUp('t0'));
  init.start(['t0']);
  await tick(10);
  t.same(sent, ['t0']);
  t.same(reads, ['t0']);
  init.forget('t0');
  init.start(['t0']);
  t.same(sent, ['t0', 't0'], 'forgotten, then loaded again: a new tunnel');
  init.close();
});

void t.test('the safety-net read starts tunnels without an IKE_SA or a CHILD_SA', async (t) => {
  const { init, sent } = scripted(10, 60_000);
  init.start(['a', 'b', 'c', 'd']);
  for (const id of ['a', 'b', 'c', 'd']) init.event('child-updown', childUp(id));
  const before = Date.now();
  await tick(5);
  init.seen([sa('a', 'ESTABLISHED', ['INSTALLED']), sa('b', 'ESTABLISHED'), sa('c', 'CONNECTING')], before - 1);
  t.same(sent.slice(4), [], 'a read that began before the last initiation says nothing');
  init.seen([sa('a', 'ESTABLISHED', ['INSTALLED']), sa('b', 'ESTABLISHED'), sa('c', 'CONNECTING')], Date.now() + 1);
  t.same(sent.slice(4).sort(), ['b', 'd'], 'IKE_SA without CHILD_SA and no IKE_SA: again; connecting: left to charon');
  t.equal(init.retried, 2);
  init.close();
});

void t.test('after a charon restart everything starts over', async (t) => {
  const { init, sent } = scripted(2, 60_000);
  init.start(['a', 'b', 'c']);
  init.reset();
  init.start(['a', 'b', 'c']);
  t.same(sent, ['a', 'b', 'a', 'b'], 'the old in-flight slots are gone with the old charon');
  init.close();
  t.throws(() => scripted(0, 1), /window/);
});

void t.test('charon lines that say a negotiation failed', async (t) => {
  t.ok(isIkeFailureLine('09[IKE] <t12|1> giving up after 3 retransmits'));
  t.ok(isIkeFailureLine('09[IKE] <t12|1> establishing IKE_SA failed, peer not responding'));
  t.ok(isIkeFailureLine('05[IKE] <t3|7> received AUTHENTICATION_FAILED notify error'));
  t.notOk(isIkeFailureLine('09[IKE] <t12|1> sending retransmit 1 of request message ID 1, seq 1'));
  t.notOk(isIkeFailureLine('11[IKE] <t12|1> IKE_SA t12[1] established between 10.0.0.1[a]...10.0.0.2[b]'));
});

void t.test('claimed tunnels take slots without an initiate of ours (charon starts them on load)', async (t) => {
  const { init, sent } = scripted(2, 60_000);
  const got = init.claim(['a', 'b', 'c']);
  t.same([...got], ['a', 'b'], 'as many as the window has room for');
  init.start(['c']);
  t.same(sent, [], 'c waits for a slot');
  init.event('child-updown', childUp('a'));
  t.same(sent, ['c'], 'a claimed tunnel settles like any other');
  t.equal(init.claim(['d']).size, 0, 'a full window claims nothing');
  init.close();
});
