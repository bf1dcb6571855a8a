/**
 * Sealed secrets: the controller never sends a PSK, EAP password or private key in the clear.
 * It seals each one to the vrouter's *secrets key* (an X25519 key pair of its own, separate from
 * any WireGuard key) with libsodium's `crypto_box_seal` and sends `"encrypted:<base64>"`.
 *
 * A sealed box (libsodium "Sealed boxes") is `ephemeral_pk(32) || crypto_box(m)` with the nonce
 * `BLAKE2b-192(ephemeral_pk || recipient_pk)`; it is 48 bytes longer than the plaintext and only
 * the holder of the recipient's secret key can open it. The sender stays anonymous, which is fine:
 * the controller's authority comes from the authenticated channel that delivers the document.
 *
 * Opened plaintext lands in `sodium_malloc` memory (guarded pages, mlock'd where allowed) and is
 * zeroed by `dispose()`. The secrets key file holds the base64 secret key, mode 0600, in the
 * state directory; the public key is derived from it.
 */

import { createRequire } from 'node:module';
import { closeSync, fstatSync, fsyncSync, mkdirSync, openSync, readFileSync, writeSync, constants as fsc } from 'node:fs';
import { dirname } from 'node:path';
import { CvlanError } from '../errors.js';
import { secureBuffer, type SecureKey } from './keys.js';

/** The slice of sodium-native used here (the package ships no type declarations). */
interface Sodium {
  crypto_box_SEALBYTES: number;
  crypto_box_PUBLICKEYBYTES: number;
  crypto_box_SECRETKEYBYTES: number;
  crypto_box_keypair(pk: Buffer, sk: Buffer): void;
  crypto_box_seal(c: Buffer, m: Buffer, pk: Buffer): void;
  crypto_box_seal_open(m: Buffer, c: Buffer, pk: Buffer, sk: Buffer): boolean;
  crypto_scalarmult_base(q: Buffer, n: Buffer): void;
  sodium_memzero(buf: Buffer): void;
}

const sodium = createRequire(import.meta.url)('sodium-native') as Sodium;

/** Prefix that marks a sealed value in controller JSON. */
export const SEALED_PREFIX = 'encrypted:';
/** Overhead of a sealed box over its plaintext: ephemeral public key + Poly1305 tag. */
export const SEAL_OVERHEAD = 48;
/** Name of the secrets key file inside the state directory. */
export const SECRETS_KEY_FILE = 'secrets.key';

/** The vrouter's secrets key pair. `secretKey` lives in secure memory; dispose it when done. */
export interface SealKeypair {
  readonly publicKey: Buffer;
  readonly secretKey: SecureKey;
}

/** Opened plaintext in secure memory. */
export type OpenedSecret = SecureKey;

export function isSealed(value: unknown): value is string {
  return typeof value === 'string' && value.startsWith(SEALED_PREFIX);
}

/** A fresh secrets key pair. */
export function generateSealKeypair(): SealKeypair {
  const publicKey = Buffer.alloc(sodium.crypto_box_PUBLICKEYBYTES);
  const secretKey = secureBuffer(sodium.crypto_box_SECRETKEYBYTES);
  sodium.crypto_box_keypair(publicKey, secretKey.bytes);
  return { publicKey, secretKey };
}

/** The key pair of a 32-byte secret key (copied into secure memory). */
export function sealKeypairFromSecret(secret: Buffer): SealKeypair {
  if (secret.length !== sodium.crypto_box_SECRETKEYBYTES) {
    throw new CvlanError('CVLAN_ERR_KEY', `a secrets key is ${sodium.crypto_box_SECRETKEYBYTES} bytes, got ${secret.length}`);
  }
  const secretKey = secureBuffer(sodium.crypto_box_SECRETKEYBYTES);
  secret.copy(secretKey.bytes);
  const publicKey = Buffer.alloc(sodium.crypto_box_PUBLICKEYBYTES);
  sodium.crypto_scalarmult_base(publicKey, secretKey.bytes);
  return { publicKey, secretKey };
}

/**
 * Seals `plaintext` to `publicKey` and returns `"encrypted:<base64>"` — what the controller does.
 * Used by tests and to keep the applied configuration sealed on disk.
 */
export function seal(publicKey: Buffer, plaintext: Buffer | string): string {
  if (!Buffer.isBuffer(publicKey) || publicKey.length !== sodium.crypto_box_PUBLICKEYBYTES) {
    throw new CvlanError('CVLAN_ERR_KEY', `a secrets public key is ${sodium.crypto_box_PUBLICKEYBYTES} bytes`);
  }
  const m = typeof plaintext === 'string' ? Buffer.from(plaintext, 'utf8') : plaintext;
  const c = Buffer.alloc(m.length + SEAL_OVERHEAD);
  try {
    sodium.crypto_box_seal(c, m, publicKey);
  } finally {
    if (typeof plaintext === 'string') sodium.sodium_memzero(m);
  }
  return SEALED_PREFIX + c.toString('base64');
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * Opens a sealed value (`"encrypted:<base64>"`, or the bare base64) with the key pair. Throws
 * CVLAN_ERR_KEY with a message that never quotes the value; the caller names the field.
 */
export function open(keypair: SealKeypair, sealed: string): OpenedSecret {
  const b64 = sealed.startsWith(SEALED_PREFIX) ? sealed.slice(SEALED_PREFIX.length) : sealed;
  if (b64.length % 4 !== 0 || !BASE64.test(b64)) {
    throw new CvlanError('CVLAN_ERR_KEY', 'the sealed value is not valid base64 after "encrypted:"');
  }
  const c = Buffer.from(b64, 'base64');
  if (c.length <= SEAL_OVERHEAD) {
    throw new CvlanError('CVLAN_ERR_KEY', `the sealed value is too short (a sealed box is ${SEAL_OVERHEAD} bytes longer than its non-empty plaintext)`);
  }
  const out = secureBuffer(c.length - SEAL_OVERHEAD);
  if (!sodium.crypto_box_seal_open(out.bytes, c, keypair.publicKey, keypair.secretKey.bytes)) {
    out.dispose();
    throw new CvlanError(
      'CVLAN_ERR_KEY',
      `the sealed value does not open with this vrouter's secrets key (public key ${keypair.publicKey.toString('base64')}): sealed to another key or corrupted`,
    );
  }
  return out;
}

/**
 * Loads the secrets key from `path`, or creates it (mode 0600, parent directory 0700) when the
 * file does not exist. A key file readable by group or others is refused, as ssh refuses
 * private keys with loose permissions.
 */
export function loadOrCreateSealKeypair(path: string): SealKeypair {
  let fd: number;
  try {
    fd = openSync(path, fsc.O_RDONLY | fsc.O_NOFOLLOW);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new CvlanError('CVLAN_ERR_KEY', `cannot read the secrets key ${path}: ${(e as Error).message}`, { cause: e });
    }
    return createKeyFile(path);
  }
  let raw: Buffer | undefined;
  try {
    const st = fstatSync(fd);
    if ((st.mode & 0o077) !== 0) {
      throw new CvlanError('CVLAN_ERR_KEY', `the secrets key ${path} is accessible to group or others (mode ${(st.mode & 0o777).toString(8)}); chmod 600 it`);
    }
    raw = readFileSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    const text = raw.toString('latin1').trim();
    if (!/^[A-Za-z0-9+/]{43}=$/.test(text)) {
      throw new CvlanError('CVLAN_ERR_KEY', `the secrets key ${path} is not 44 characters of base64 (32 bytes)`);
    }
    const secret = Buffer.from(text, 'base64');
    try {
      return sealKeypairFromSecret(secret);
    } finally {
      sodium.sodium_memzero(secret);
    }
  } finally {
    sodium.sodium_memzero(raw);
  }
}

function createKeyFile(path: string): SealKeypair {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const kp = generateSealKeypair();
  const text = Buffer.from(kp.secretKey.bytes.toString('base64') + '\n', 'latin1');
  let fd: number;
  try {
    // O_EXCL: two processes racing to create the key must not both win with different keys.
    fd = openSync(path, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o600);
  } catch (e) {
    kp.secretKey.dispose();
    sodium.sodium_memzero(text);
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return loadOrCreateSealKeypair(path);
    throw new CvlanError('CVLAN_ERR_KEY', `cannot create the secrets key ${path}: ${(e as Error).message}`, { cause: e });
  }
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
    sodium.sodium_memzero(text);
  }
  return kp;
}
