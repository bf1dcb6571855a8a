// Sealed secrets: libsodium sealed boxes to the vrouter's secrets key, and the key file.
import t from 'tap';
import { createRequire } from 'node:module';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CvlanError } from '../../src/errors.js';
import {
  SEALED_PREFIX,
  SEAL_OVERHEAD,
  generateSealKeypair,
  isSealed,
  loadOrCreateSealKeypair,
  open,
  seal,
  sealKeypairFromSecret,
} from '../../src/secrets/sealed.js';

const sodium = createRequire(import.meta.url)('sodium-native') as {
  crypto_box_seal(c: Buffer, m: Buffer, pk: Buffer): void;
  crypto_box_keypair(pk: Buffer, sk: Buffer): void;
};

function tmp(t: { teardown(fn: () => void): void }): string {
  const d = mkdtempSync(join(tmpdir(), 'cvlan-sealed-'));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

t.test('seal then open round trip, into secure memory', async (t) => {
  const kp = generateSealKeypair();
  t.teardown(() => kp.secretKey.dispose());
  const sealed = seal(kp.publicKey, 'a pre-shared key of some length');
  t.ok(isSealed(sealed));
  t.ok(sealed.startsWith(SEALED_PREFIX));
  t.equal(Buffer.from(sealed.slice(SEALED_PREFIX.length), 'base64').length, 31 + SEAL_OVERHEAD);
  const o = open(kp, sealed);
  t.equal(o.bytes.toString(), 'a pre-shared key of some length');
  t.equal((o.bytes as Buffer & { secure?: boolean }).secure, true, 'sodium_malloc memory');
  o.dispose();
  // Two seals of the same value differ (fresh ephemeral key each time).
  t.not(seal(kp.publicKey, 'x'), seal(kp.publicKey, 'x'));
  // The bare base64 opens too.
  const bare = open(kp, seal(kp.publicKey, Buffer.from([1, 2, 3])).slice(SEALED_PREFIX.length));
  t.same([...bare.bytes], [1, 2, 3]);
  bare.dispose();
});

t.test('a value sealed with sodium-native directly opens', async (t) => {
  const pk = Buffer.alloc(32);
  const sk = Buffer.alloc(32);
  sodium.crypto_box_keypair(pk, sk);
  const m = Buffer.from('sealed by the controller');
  const c = Buffer.alloc(m.length + 48);
  sodium.crypto_box_seal(c, m, pk);
  const kp = sealKeypairFromSecret(sk);
  t.teardown(() => kp.secretKey.dispose());
  t.ok(kp.publicKey.equals(pk), 'public key derived from the secret key matches crypto_box_keypair');
  const o = open(kp, `encrypted:${c.toString('base64')}`);
  t.equal(o.bytes.toString(), 'sealed by the controller');
  o.dispose();
});

t.test('wrong key, tampering and garbage are clear errors, not crashes', async (t) => {
  const a = generateSealKeypair();
  const b = generateSealKeypair();
  t.teardown(() => (a.secretKey.dispose(), b.secretKey.dispose()));
  const sealed = seal(a.publicKey, 'top secret value');
  const err = (() => {
    try {
      open(b, sealed);
    } catch (e) {
      return e;
    }
    return undefined;
  })();
  t.ok(err instanceof CvlanError, 'a CvlanError');
  t.equal((err as CvlanError).code, 'CVLAN_ERR_KEY');
  t.match((err as CvlanError).message, b.publicKey.toString('base64'), 'names the public key it tried');
  t.notMatch((err as CvlanError).message, 'top secret');
  const raw = Buffer.from(sealed.slice(SEALED_PREFIX.length), 'base64');
  raw[raw.length - 1]! ^= 1;
  t.throws(() => open(a, SEALED_PREFIX + raw.toString('base64')), { code: 'CVLAN_ERR_KEY' });
  t.throws(() => open(a, 'encrypted:not base64!'), { code: 'CVLAN_ERR_KEY', message: /base64/ });
  t.throws(() => open(a, 'encrypted:' + Buffer.alloc(48).toString('base64')), { code: 'CVLAN_ERR_KEY', message: /too short/ });
  t.throws(() => seal(Buffer.alloc(31), 'x'), { code: 'CVLAN_ERR_KEY' });
});

t.test('the secrets key file: created 0600 in a 0700 directory, loaded back, loose modes refused', async (t) => {
  const dir = tmp(t);
  const path = join(dir, 'state', 'secrets.key');
  const kp = loadOrCreateSealKeypair(path);
  t.equal(statSync(path).mode & 0o777, 0o600);
  t.equal(statSync(join(dir, 'state')).mode & 0o777, 0o700);
  t.match(readFileSync(path, 'latin1'), /^[A-Za-z0-9+/]{43}=\n$/);
  const again = loadOrCreateSealKeypair(path);
  t.ok(again.publicKey.equals(kp.publicKey), 'same key on the second load');
  const o = open(again, seal(kp.publicKey, 'survives a restart'));
  t.equal(o.bytes.toString(), 'survives a restart');
  o.dispose();
  kp.secretKey.dispose();
  again.secretKey.dispose();

  chmodSync(path, 0o644);
  t.throws(() => loadOrCreateSealKeypair(path), { code: 'CVLAN_ERR_KEY', message: /chmod 600/ });
  const bad = join(dir, 'bad.key');
  writeFileSync(bad, 'not a key\n', { mode: 0o600 });
  t.throws(() => loadOrCreateSealKeypair(bad), { code: 'CVLAN_ERR_KEY', message: /44 characters/ });
});

const hasPyNacl = spawnSync('python3', ['-c', 'import nacl.public'], { stdio: 'ignore' }).status === 0;

t.test('cross-check with an independent binding (PyNaCl), when installed', { skip: hasPyNacl ? false : 'python3 PyNaCl is not installed' }, async (t) => {
  const kp = generateSealKeypair();
  t.teardown(() => kp.secretKey.dispose());
  // PyNaCl seals to our public key; we open. Then we seal and PyNaCl opens with our secret key.
  const py = `
import sys, base64
from nacl.public import PublicKey, PrivateKey, SealedBox
mode, key, data = sys.argv[1], base64.b64decode(sys.argv[2]), sys.argv[3]
if mode == 'seal':
    print(base64.b64encode(SealedBox(PublicKey(key)).encrypt(data.encode())).decode())
else:
    print(SealedBox(PrivateKey(key)).decrypt(base64.b64decode(data)).decode())
`;
  const fromPy = execFileSync('python3', ['-c', py, 'seal', kp.publicKey.toString('base64'), 'sealed by PyNaCl'], { encoding: 'utf8' }).trim();
  const o = open(kp, `encrypted:${fromPy}`);
  t.equal(o.bytes.toString(), 'sealed by PyNaCl');
  o.dispose();
  const ours = seal(kp.publicKey, 'sealed by cvlan').slice(SEALED_PREFIX.length);
  const opened = execFileSync('python3', ['-c', py, 'open', kp.secretKey.bytes.toString('base64'), ours], { encoding: 'utf8' }).trim();
  t.equal(opened, 'sealed by cvlan');
});
