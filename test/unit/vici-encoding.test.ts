// VICI wire format against bytes written by hand from the protocol description (the README's
// encoding example and its packet/transport rules), never from the encoder under test.
import t, { type Test } from 'tap';
import { CvlanError } from '../../src/errors.js';
import {
  decodeMessage,
  decodePacket,
  encodeMessage,
  encodePacket,
  frame,
  FrameDecoder,
  PacketType,
  VICI_MAX_SEGMENT,
} from '../../src/strongswan/vici/encoding.js';

const ascii = (s: string): number[] => [...Buffer.from(s, 'ascii')];

// The README's example: key1 = value1, section1 { sub-section { key2 = value2 } list1 = [item1, item2] }
const README_EXAMPLE = Buffer.from([
  3, 4, ...ascii('key1'), 0, 6, ...ascii('value1'),
  1, 8, ...ascii('section1'),
  1, 11, ...ascii('sub-section'),
  3, 4, ...ascii('key2'), 0, 6, ...ascii('value2'),
  2,
  4, 5, ...ascii('list1'),
  5, 0, 5, ...ascii('item1'),
  5, 0, 5, ...ascii('item2'),
  6,
  2,
]);

const README_TREE = {
  key1: 'value1',
  section1: { 'sub-section': { key2: 'value2' }, list1: ['item1', 'item2'] },
};

function protocolError(t: Test, fn: () => unknown, re: RegExp): void {
  try {
    fn();
    t.fail(`expected CVLAN_ERR_VICI_PROTOCOL matching ${re}`);
  } catch (err) {
    t.ok(err instanceof CvlanError, 'is a CvlanError');
    t.equal((err as CvlanError).code, 'CVLAN_ERR_VICI_PROTOCOL');
    t.match((err as Error).message, re);
  }
}

void t.test('README example: encode is byte-exact, decode gives the tree', async (t) => {
  t.same(encodeMessage(README_TREE), README_EXAMPLE);
  t.same(decodeMessage(README_EXAMPLE), README_TREE);
});

void t.test('values: numbers, booleans, Buffers, undefined skipped, binary kept with values=buffer', async (t) => {
  const enc = encodeMessage({ a: 42, b: true, c: false, d: undefined, e: Buffer.from([0, 255]) });
  t.same(
    enc,
    Buffer.from([
      3, 1, ...ascii('a'), 0, 2, ...ascii('42'),
      3, 1, ...ascii('b'), 0, 3, ...ascii('yes'),
      3, 1, ...ascii('c'), 0, 2, ...ascii('no'),
      3, 1, ...ascii('e'), 0, 2, 0, 255,
    ]),
  );
  const dec = decodeMessage(enc, { values: 'buffer' });
  t.same(dec.e, Buffer.from([0, 255]));
  t.same(dec.a, Buffer.from('42'));
  t.same(decodeMessage(Buffer.alloc(0)), {});
  // empty list and empty section are valid
  t.same(decodeMessage(Buffer.from([4, 1, ...ascii('l'), 6, 1, 1, ...ascii('s'), 2])), { l: [], s: {} });
});

void t.test('encoder limits', async (t) => {
  protocolError(t, () => encodeMessage({ ['k'.repeat(256)]: 'v' }), /more than 255/);
  protocolError(t, () => encodeMessage({ k: Buffer.alloc(65536) }), /65536 bytes/);
  protocolError(t, () => encodeMessage({ '': 'v' }), /empty name/);
  protocolError(t, () => encodeMessage({ l: [{} as never] }), /list item/);
  t.equal(encodeMessage({ k: Buffer.alloc(65535) }).length, 1 + 1 + 1 + 2 + 65535);
  // A secret that is too long must not appear in the error.
  try {
    encodeMessage({ data: 'TOPSECRET'.repeat(8000) });
    t.fail('should throw');
  } catch (err) {
    t.notMatch((err as Error).message, /TOPSECRET/);
  }
});

void t.test('malformed messages are CVLAN_ERR_VICI_PROTOCOL', async (t) => {
  // The only strict prefix that is a whole message ends right after `key1 = value1` (14 bytes);
  // every other one is cut inside an element or leaves a section or list open.
  t.same(decodeMessage(README_EXAMPLE.subarray(0, 14)), { key1: 'value1' });
  for (let cut = 1; cut < README_EXAMPLE.length; cut++) {
    if (cut === 14) continue;
    t.throws(() => decodeMessage(README_EXAMPLE.subarray(0, cut)), { code: 'CVLAN_ERR_VICI_PROTOCOL' }, `cut ${cut}`);
  }
  protocolError(t, () => decodeMessage(Buffer.from([9])), /unknown element type 9/);
  protocolError(t, () => decodeMessage(Buffer.from([0])), /unknown element type 0/);
  protocolError(t, () => decodeMessage(Buffer.from([2])), /SECTION_END without open section/);
  protocolError(t, () => decodeMessage(Buffer.from([1, 1, ...ascii('s')])), /1 unclosed section/);
  protocolError(t, () => decodeMessage(Buffer.from([6])), /LIST_END without open list/);
  protocolError(t, () => decodeMessage(Buffer.from([5, 0, 1, ...ascii('x')])), /LIST_ITEM outside a list/);
  protocolError(t, () => decodeMessage(Buffer.from([4, 1, ...ascii('l')])), /open list/);
  // key/value and section inside a list
  protocolError(t, () => decodeMessage(Buffer.from([4, 1, ...ascii('l'), 3, 1, ...ascii('k'), 0, 0, 6])), /inside a list/);
  protocolError(t, () => decodeMessage(Buffer.from([4, 1, ...ascii('l'), 1, 1, ...ascii('s'), 2, 6])), /inside a list/);
  // nested lists
  protocolError(t, () => decodeMessage(Buffer.from([4, 1, ...ascii('l'), 4, 1, ...ascii('m'), 6, 6])), /inside a list/);
  // value length past the end
  protocolError(t, () => decodeMessage(Buffer.from([3, 1, ...ascii('k'), 0, 9, ...ascii('abc')])), /truncated/);
  // name length past the end
  protocolError(t, () => decodeMessage(Buffer.from([3, 9, ...ascii('ab')])), /truncated/);
  protocolError(t, () => decodeMessage(Buffer.from([3, 0, 0, 0])), /empty key name/);
  protocolError(
    t,
    () => decodeMessage(Buffer.from([3, 1, ...ascii('k'), 0, 1, ...ascii('a'), 3, 1, ...ascii('k'), 0, 1, ...ascii('b')])),
    /duplicate key "k"/,
  );
});

void t.test('__proto__ as a key stays plain data', async (t) => {
  const dec = decodeMessage(Buffer.from([3, 9, ...ascii('__proto__'), 0, 1, ...ascii('x')]));
  t.equal(Object.getPrototypeOf(dec), Object.prototype);
  t.equal(Object.getOwnPropertyDescriptor(dec, '__proto__')?.value, 'x');
});

void t.test('packets: hand-built bytes for every type', async (t) => {
  const req = Buffer.from([0, 7, ...ascii('version')]);
  t.same(encodePacket(PacketType.CMD_REQUEST, 'version', {}), req);
  t.same(decodePacket(req), { type: PacketType.CMD_REQUEST, name: 'version', message: {} });

  const resp = Buffer.from([1, 3, 7, ...ascii('success'), 0, 2, ...ascii('no'), 3, 6, ...ascii('errmsg'), 0, 4, ...ascii('oops')]);
  t.same(decodePacket(resp), { type: PacketType.CMD_RESPONSE, message: { success: 'no', errmsg: 'oops' } });
  t.same(encodePacket(PacketType.CMD_RESPONSE, undefined, { success: 'no', errmsg: 'oops' }), resp);

  t.same(decodePacket(Buffer.from([2])), { type: PacketType.CMD_UNKNOWN });
  const reg = Buffer.from([3, 10, ...ascii('ike-updown')]);
  t.same(encodePacket(PacketType.EVENT_REGISTER, 'ike-updown'), reg);
  t.same(decodePacket(reg), { type: PacketType.EVENT_REGISTER, name: 'ike-updown' });
  t.same(decodePacket(Buffer.from([4, 3, ...ascii('log')])), { type: PacketType.EVENT_UNREGISTER, name: 'log' });
  t.same(decodePacket(Buffer.from([5])), { type: PacketType.EVENT_CONFIRM });
  t.same(decodePacket(Buffer.from([6])), { type: PacketType.EVENT_UNKNOWN });
  const ev = Buffer.from([7, 7, ...ascii('list-sa'), 1, 3, ...ascii('gw1'), 3, 5, ...ascii('state'), 0, 11, ...ascii('ESTABLISHED'), 2]);
  t.same(decodePacket(ev), { type: PacketType.EVENT, name: 'list-sa', message: { gw1: { state: 'ESTABLISHED' } } });
});

void t.test('malformed packets are CVLAN_ERR_VICI_PROTOCOL', async (t) => {
  protocolError(t, () => decodePacket(Buffer.alloc(0)), /empty packet/);
  protocolError(t, () => decodePacket(Buffer.from([8])), /unknown packet type 8/);
  protocolError(t, () => decodePacket(Buffer.from([0])), /no name length/);
  protocolError(t, () => decodePacket(Buffer.from([0, 0])), /empty name/);
  protocolError(t, () => decodePacket(Buffer.from([7, 5, ...ascii('abc')])), /truncated EVENT/);
  protocolError(t, () => decodePacket(Buffer.from([5, 0])), /EVENT_CONFIRM packet has 1 trailing/);
  protocolError(t, () => decodePacket(Buffer.from([3, 1, ...ascii('x'), 3])), /EVENT_REGISTER packet has 1 trailing/);
  protocolError(t, () => decodePacket(Buffer.from([1, 2])), /SECTION_END without open section/);
  protocolError(t, () => encodePacket(PacketType.CMD_REQUEST), /needs a name/);
  protocolError(t, () => encodePacket(PacketType.EVENT_CONFIRM, 'x'), /has no name/);
  protocolError(t, () => encodePacket(PacketType.EVENT_REGISTER, 'x', {}), /has no message/);
  protocolError(t, () => encodePacket(PacketType.CMD_REQUEST, 'has space'), /invalid CMD_REQUEST name/);
  protocolError(t, () => encodePacket(9 as PacketType), /unknown packet type 9/);
});

void t.test('transport framing', async (t) => {
  t.same(frame(Buffer.from([5])), Buffer.from([0, 0, 0, 1, 5]));
  const d = new FrameDecoder();
  // two segments split at awkward places, including inside a length header
  const stream = Buffer.from([0, 0, 0, 1, 5, 0, 0, 0, 3, 2, 0xaa, 0xbb]);
  t.same(d.push(stream.subarray(0, 2)), []);
  t.same(d.push(stream.subarray(2, 7)), [Buffer.from([5])]);
  t.equal(d.pending, 2);
  t.same(d.push(stream.subarray(7, 11)), []);
  t.same(d.push(stream.subarray(11)), [Buffer.from([2, 0xaa, 0xbb])]);
  t.equal(d.pending, 0);
  t.same(new FrameDecoder().push(stream), [Buffer.from([5]), Buffer.from([2, 0xaa, 0xbb])]);
  // exactly at the limit is fine (header only, body pending); one more byte is not
  t.same(new FrameDecoder().push(Buffer.from([0, 8, 0, 0])), []);
  t.throws(() => new FrameDecoder().push(Buffer.from([0, 8, 0, 1])), { code: 'CVLAN_ERR_VICI_PROTOCOL' });
  t.throws(() => frame(Buffer.alloc(VICI_MAX_SEGMENT + 1)), { code: 'CVLAN_ERR_VICI_PROTOCOL' });
});
