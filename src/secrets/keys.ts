/**
 * WireGuard-compatible Curve25519 keys (whitepaper §5.4: static keys are X25519 key pairs; the
 * base64 text form is the one `wg genkey` / `wg pubkey` read and write).
 *
 * Private keys live in sodium_malloc'd memory (guarded pages, never swapped where mlock works)
 * and are zeroed as soon as the caller is done with them. The base64 *string* of a private key is
 * a JavaScript string and cannot be wiped; it exists only where the text form is the product
 * (`vrouterctl genkey`) or the input (`vrouterctl pubkey`).
 */

import { createRequire } from 'node:module';
import { CvlanError } from '../errors.js';
import { SecretPool } from './pool.js';

/** The slice of sodium-native used here (the package ships no type declarations). */
interface Sodium {
  crypto_scalarmult_BYTES: number;
  crypto_scalarmult_SCALARBYTES: number;
  sodium_malloc(size: number): Buffer;
  sodium_free(buf: Buffer): void;
  sodium_memzero(buf: Buffer): void;
  randombytes_buf(buf: Buffer): void;
  crypto_scalarmult_base(q: Buffer, n: Buffer): void;
}

const sodium = createRequire(import.meta.url)('sodium-native') as Sodium;

/** Curve25519 key length in bytes (RFC 7748 §5). */
export const KEY_BYTES = 32;
/** Length of a 32-byte key in padded base64. */
export const KEY_BASE64_CHARS = 44;

const BASE64_KEY = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;

/** A buffer from sodium_malloc; `dispose()` zeroes and frees it. */
export interface SecureKey {
  readonly bytes: Buffer;
  dispose(): void;
}

/** The process's slabs for small secrets (`./pool.ts`). */
const pool = new SecretPool();

/**
 * Secure memory of `size` bytes: a slot of a shared slab up to 1 KiB (PSKs, keys, passwords), its
 * own sodium_malloc above that (certificate keys).
 */
export function secureBuffer(size: number): SecureKey {
  const slot = pool.alloc(size);
  if (slot) return { bytes: slot.bytes, dispose: slot.release };
  const bytes = sodium.sodium_malloc(size);
  let live = true;
  return {
    bytes,
    dispose() {
      if (!live) return;
      live = false;
      sodium.sodium_memzero(bytes);
      sodium.sodium_free(bytes);
    },
  };
}

/**
 * Clamps a scalar as RFC 7748 §5 decodeScalar25519 does and as `wg genkey` stores it: clear the
 * three low bits (cofactor 8), clear bit 255, set bit 254.
 */
export function clamp(key: Buffer): void {
  if (key.length !== KEY_BYTES) throw new CvlanError('CVLAN_ERR_KEY', `a key is ${KEY_BYTES} bytes, got ${key.length}`);
  key[0] = key[0]! & 248;
  key[31] = (key[31]! & 127) | 64;
}

/** A fresh clamped private key in secure memory. Dispose it when done. */
export function generatePrivateKey(): SecureKey {
  const k = secureBuffer(KEY_BYTES);
  sodium.randombytes_buf(k.bytes);
  clamp(k.bytes);
  return k;
}

/** X25519 public key of `privateKey` (libsodium clamps a copy, so unclamped input gives wg's answer too). */
export function publicKeyOf(privateKey: Buffer): Buffer {
  if (privateKey.length !== KEY_BYTES) {
    throw new CvlanError('CVLAN_ERR_KEY', `a key is ${KEY_BYTES} bytes, got ${privateKey.length}`);
  }
  const pub = Buffer.alloc(sodium.crypto_scalarmult_BYTES);
  try {
    sodium.crypto_scalarmult_base(pub, privateKey);
  } catch (cause) {
    // libsodium refuses scalars whose product is the identity; no clamped key hits this.
    throw new CvlanError('CVLAN_ERR_KEY', 'the private key yields no valid public key', { cause });
  }
  return pub;
}

/** Strict parse of WireGuard's key text (44 chars of padded base64 decoding to 32 bytes). */
export function isKeyText(text: string): boolean {
  return BASE64_KEY.test(text);
}

/**
 * Decodes key text into secure memory. The error never quotes the input: it may be a private key.
 */
export function decodeKey(text: string): SecureKey {
  const trimmed = text.trim();
  if (!isKeyText(trimmed)) {
    throw new CvlanError('CVLAN_ERR_KEY', `a key is ${KEY_BASE64_CHARS} characters of base64 encoding ${KEY_BYTES} bytes`);
  }
  const k = secureBuffer(KEY_BYTES);
  const tmp = Buffer.from(trimmed, 'base64');
  tmp.copy(k.bytes);
  sodium.sodium_memzero(tmp);
  return k;
}

export function encodeKey(key: Buffer): string {
  if (key.length !== KEY_BYTES) throw new CvlanError('CVLAN_ERR_KEY', `a key is ${KEY_BYTES} bytes, got ${key.length}`);
  return key.toString('base64');
}

/** `wg genkey`: a new private key as text. */
export function genkey(): string {
  const k = generatePrivateKey();
  try {
    return encodeKey(k.bytes);
  } finally {
    k.dispose();
  }
}

/** `wg pubkey`: the public key text of a private key text. */
export function pubkey(privateKeyText: string): string {
  const k = decodeKey(privateKeyText);
  try {
    return encodeKey(publicKeyOf(k.bytes));
  } finally {
    k.dispose();
  }
}
