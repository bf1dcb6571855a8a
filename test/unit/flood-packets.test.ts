// The flood generator's packet builders: BLAKE2s against Node's unkeyed blake2s256 and the
// reference keyed vector, and the shapes of the datagrams.
import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { blake2s, ikeSaInit, mac1Key, wgInitiation, WG_INITIATION_LEN } from '../../bench/flood-packets.js';
import { parseFloodArgs } from '../../bench/flood-generator.js';

t.test('BLAKE2s matches the reference', async (t) => {
  t.equal(blake2s(Buffer.from('abc')).toString('hex'), '508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982', 'RFC 7693 appendix B');
  for (const len of [0, 1, 63, 64, 65, 128, 129, 1000]) {
    const d = randomBytes(len);
    t.equal(blake2s(d).toString('hex'), createHash('blake2s256').update(d).digest('hex'), `${len} bytes, as node:crypto`);
  }
  const key = Buffer.from(Array.from({ length: 32 }, (_, i) => i));
  t.equal(blake2s(new Uint8Array(0), 32, key).toString('hex'), '48a8997da407876b3d79c0d92325ad3b89cbb754d86ab71aee047ad345fd2c49', 'keyed, reference KAT');
  t.throws(() => blake2s(Buffer.alloc(1), 33));
});

t.test('initiations carry MAC1 for the key, or not; IKE_SA_INIT headers are well formed', async (t) => {
  const pub = randomBytes(32);
  const key = mac1Key(pub);
  const a = wgInitiation(Buffer.alloc(WG_INITIATION_LEN), key);
  t.same([...a.subarray(0, 4)], [1, 0, 0, 0], 'type 1');
  t.same(a.subarray(116, 132), blake2s(a.subarray(0, 116), 16, key), 'MAC1 over the first 116 bytes');
  t.same(a.subarray(132), Buffer.alloc(16), 'no MAC2');
  const b = wgInitiation(Buffer.alloc(WG_INITIATION_LEN), key);
  t.not(a.subarray(4, 8).toString('hex'), b.subarray(4, 8).toString('hex'), 'fresh sender index');
  const bad = wgInitiation(Buffer.alloc(WG_INITIATION_LEN), undefined);
  t.not(bad.subarray(116, 132).toString('hex'), blake2s(bad.subarray(0, 116), 16, key).toString('hex'), 'bad MAC1');
  const ike = ikeSaInit(Buffer.alloc(300));
  t.equal(ike.readUInt32BE(24), 300, 'length field');
  t.same([ike[17], ike[18], ike[19]], [0x20, 34, 0x08], 'IKEv2 IKE_SA_INIT request');
  t.same(ike.subarray(8, 16), Buffer.alloc(8), 'responder SPI zero');
});

t.test('generator arguments', async (t) => {
  const o = parseFloodArgs(['--kind', 'ike-sa-init', '--target', '[fd00::1]:500', '--rate', '100', '--duration', '2']);
  t.same([o.host, o.port, o.rate, o.durationMs, o.threads], ['fd00::1', 500, 100, 2000, 2]);
});
