// The slabs small secrets share (src/secrets/pool.ts): slots apart, zeroed on release, slabs
// unmapped when empty, and the mappings a process holds for thousands of secrets.

import { readFileSync } from 'node:fs';
import t from 'tap';
import { SecretPool, SLAB_BYTES, SLOT_CLASSES } from '../../src/secrets/pool.js';
import { secureBuffer } from '../../src/secrets/keys.js';

void t.test('a secret gets the smallest slot that holds it, a view of exactly its length', async (t) => {
  const pool = new SecretPool();
  const a = pool.alloc(24)!;
  const b = pool.alloc(33)!;
  const c = pool.alloc(1024)!;
  t.equal(a.bytes.length, 24);
  t.equal(b.bytes.length, 33);
  t.same(
    pool.stats().map((s) => [s.slot, s.used]),
    [
      [32, 1],
      [64, 1],
      [1024, 1],
    ],
  );
  t.equal(pool.alloc(SLOT_CLASSES.at(-1)! + 1), undefined, 'above the largest slot: not pooled');
  t.ok(a.bytes.every((x) => x === 0) && b.bytes.every((x) => x === 0), 'zero-filled');
  t.equal((a.bytes as Buffer & { secure?: boolean }).secure, true, 'marked secure as sodium_malloc marks its own');
  for (const x of [a, b, c]) x.release();
});

void t.test('slots do not overlap; writing one leaves its neighbours alone', async (t) => {
  const pool = new SecretPool();
  const slots = Array.from({ length: 100 }, () => pool.alloc(32)!);
  slots.forEach((s, i) => s.bytes.fill(i + 1));
  t.ok(
    slots.every((s, i) => s.bytes.every((x) => x === i + 1)),
    'each slot holds what was written to it',
  );
  for (const s of slots) s.release();
});

void t.test('release zeroes the whole slot, once; a second release is a no-op', async (t) => {
  const pool = new SecretPool();
  const a = pool.alloc(20)!;
  // The slot is 32 bytes; the view is 20. Fill the full slot through the shared memory.
  const whole = Buffer.from(a.bytes.buffer, a.bytes.byteOffset, 32);
  whole.fill(0xab);
  a.release();
  t.ok(whole.every((x) => x === 0), 'all 32 bytes zeroed');
  a.release();
  t.equal(pool.stats()[0]!.used, 0);
  const b = pool.alloc(20)!;
  t.equal(b.bytes.byteOffset, a.bytes.byteOffset, 'the freed slot is reused');
  b.release();
});

void t.test('slabs: a second when the first is full; an empty one unmapped, the last kept', async (t) => {
  const pool = new SecretPool();
  const perSlab = SLAB_BYTES / 1024;
  const held = Array.from({ length: perSlab + 1 }, () => pool.alloc(1000)!);
  t.same(pool.stats(), [{ slot: 1024, slabs: 2, used: perSlab + 1 }]);
  held.pop()!.release();
  t.same(pool.stats(), [{ slot: 1024, slabs: 1, used: perSlab }], 'the emptied second slab is unmapped');
  for (const h of held) h.release();
  t.same(pool.stats(), [{ slot: 1024, slabs: 1, used: 0 }], "the class's last slab stays");
});

void t.test('2000 PSK-sized secrets: a few mappings, not four per secret', async (t) => {
  const maps = (): number => readFileSync('/proc/self/maps', 'utf8').split('\n').length;
  const before = maps();
  const keys = Array.from({ length: 2000 }, () => secureBuffer(32));
  const grown = maps() - before;
  t.ok(grown < 40, `mappings grew by ${grown}`);
  for (const k of keys) k.dispose();
  const big = secureBuffer(4096);
  t.equal(big.bytes.length, 4096, 'above the largest slot: its own sodium_malloc');
  big.dispose();
});
