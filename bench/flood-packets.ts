/**
 * Datagrams a flood sends: WireGuard handshake initiations (whitepaper section 5.4.2) with a
 * MAC1 that is wrong or right for the target's public key (section 5.4.4; the rest is random,
 * so the target's DH work fails at the static key), and IKE_SA_INIT requests (RFC 7296 section
 * 3.1 header, random initiator SPI). Pure functions; randomness from node:crypto.
 */
import { createHash, randomFillSync } from 'node:crypto';

export type FloodKind = 'wg-bad-mac1' | 'wg-mac1' | 'ike-sa-init';
export const FLOOD_KINDS: readonly FloodKind[] = ['wg-bad-mac1', 'wg-mac1', 'ike-sa-init'];

export const WG_INITIATION_LEN = 148;
const WG_MAC1_AT = 116;
export const WG_COOKIE_REPLY_LEN = 64;

// BLAKE2s (RFC 7693), keyed, any output length 1..32: Node's crypto has only unkeyed
// blake2s256, and WireGuard's MAC is keyed BLAKE2s-128.
const IV = Uint32Array.from([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
const SIGMA = [
  [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
  [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3],
  [11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4],
  [7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8],
  [9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13],
  [2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9],
  [12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11],
  [13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10],
  [6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5],
  [10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0],
] as const;

const rotr = (x: number, n: number): number => ((x >>> n) | (x << (32 - n))) >>> 0;

function compress(h: Uint32Array, block: Uint8Array, t: number, last: boolean): void {
  const v = new Uint32Array(16);
  v.set(h);
  v.set(IV, 8);
  v[12]! ^= t >>> 0;
  v[13]! ^= Math.floor(t / 0x1_0000_0000) >>> 0;
  if (last) v[14]! ^= 0xffffffff;
  const m = new Uint32Array(16);
  for (let i = 0; i < 16; i++) m[i] = (block[4 * i]! | (block[4 * i + 1]! << 8) | (block[4 * i + 2]! << 16) | (block[4 * i + 3]! << 24)) >>> 0;
  const g = (a: number, b: number, c: number, d: number, x: number, y: number): void => {
    v[a] = (v[a]! + v[b]! + x) >>> 0;
    v[d] = rotr(v[d]! ^ v[a]!, 16);
    v[c] = (v[c]! + v[d]!) >>> 0;
    v[b] = rotr(v[b]! ^ v[c]!, 12);
    v[a] = (v[a]! + v[b]! + y) >>> 0;
    v[d] = rotr(v[d]! ^ v[a]!, 8);
    v[c] = (v[c]! + v[d]!) >>> 0;
    v[b] = rotr(v[b]! ^ v[c]!, 7);
  };
  for (const s of SIGMA) {
    g(0, 4, 8, 12, m[s[0]]!, m[s[1]]!);
    g(1, 5, 9, 13, m[s[2]]!, m[s[3]]!);
    g(2, 6, 10, 14, m[s[4]]!, m[s[5]]!);
    g(3, 7, 11, 15, m[s[6]]!, m[s[7]]!);
    g(0, 5, 10, 15, m[s[8]]!, m[s[9]]!);
    g(1, 6, 11, 12, m[s[10]]!, m[s[11]]!);
    g(2, 7, 8, 13, m[s[12]]!, m[s[13]]!);
    g(3, 4, 9, 14, m[s[14]]!, m[s[15]]!);
  }
  for (let i = 0; i < 8; i++) h[i] = (h[i]! ^ v[i]! ^ v[i + 8]!) >>> 0;
}

/** BLAKE2s of `data` with an optional key (≤ 32 bytes), `outLen` bytes (1..32). */
export function blake2s(data: Uint8Array, outLen = 32, key: Uint8Array = new Uint8Array(0)): Buffer {
  if (outLen < 1 || outLen > 32 || key.length > 32) throw new RangeError('blake2s: outLen 1..32, key ≤ 32 bytes');
  const h = Uint32Array.from(IV);
  h[0]! ^= 0x01010000 ^ (key.length << 8) ^ outLen;
  const input = new Uint8Array((key.length > 0 ? 64 : 0) + data.length);
  input.set(key);
  input.set(data, key.length > 0 ? 64 : 0);
  const blocks = Math.max(1, Math.ceil(input.length / 64));
  for (let i = 0; i < blocks; i++) {
    const block = new Uint8Array(64);
    block.set(input.subarray(i * 64, i * 64 + 64));
    const last = i === blocks - 1;
    compress(h, block, last ? input.length : (i + 1) * 64, last);
  }
  const out = Buffer.alloc(32);
  for (let i = 0; i < 8; i++) out.writeUInt32LE(h[i]!, 4 * i);
  return out.subarray(0, outLen);
}

/** The key WireGuard peers compute MAC1 with for `publicKey`: HASH("mac1----" || key). */
export function mac1Key(publicKey: Uint8Array): Buffer {
  return createHash('blake2s256').update('mac1----').update(publicKey).digest();
}

/**
 * Fills `buf` (WG_INITIATION_LEN bytes) with a fresh initiation: random sender, ephemeral and
 * encrypted fields, MAC1 made with `key` (from `mac1Key`) or random when `key` is undefined,
 * MAC2 zero.
 */
export function wgInitiation(buf: Buffer, key: Uint8Array | undefined): Buffer {
  randomFillSync(buf, 4, WG_MAC1_AT - 4);
  buf.writeUInt32LE(1, 0);
  if (key) blake2s(buf.subarray(0, WG_MAC1_AT), 16, key).copy(buf, WG_MAC1_AT);
  else randomFillSync(buf, WG_MAC1_AT, 16);
  buf.fill(0, WG_MAC1_AT + 16);
  return buf;
}

/** Fills `buf` with an IKE_SA_INIT request header (a fresh initiator SPI) and random payload bytes. */
export function ikeSaInit(buf: Buffer): Buffer {
  randomFillSync(buf);
  buf.fill(0, 8, 16); // responder SPI: a new IKE_SA
  buf[16] = 33; // next payload: SA
  buf[17] = 0x20; // IKEv2
  buf[18] = 34; // IKE_SA_INIT
  buf[19] = 0x08; // initiator, request
  buf.writeUInt32BE(0, 20); // message id
  buf.writeUInt32BE(buf.length, 24);
  return buf;
}
