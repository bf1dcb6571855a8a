/**
 * Many WireGuard peers from one process, for the sizing benchmark: `node dist/bench/wg-handshakes.js
 * --spec FILE`, run inside the peers' namespace. FILE is JSON `{target: "HOST:PORT", responder:
 * B64 public key, peers: [B64 private key, …], timeout_s}`. Every peer sends a real handshake
 * initiation (Noise IK, whitepaper section 5.4.2: its static key encrypted, a TAI64N timestamp,
 * MAC1 for the responder), again every 5 s until the responder answered it; an answer is a
 * handshake response (type 2) naming that peer's sender index, which the responder sends only
 * after it authenticated the peer's static key and timestamp. Prints one JSON line
 * `{answered, peers, started_at_ms, cookie_replies, seconds, first_s, all_s}` (seconds from the start, when
 * the first initiation was sent).
 */
import { createCipheriv, createHash, createPrivateKey, createPublicKey, diffieHellman, randomBytes, type KeyObject } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { benchArgs, usageExit } from './cli.js';
import { blake2s, mac1Key } from './flood-packets.js';

const CONSTRUCTION = 'Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s';
const IDENTIFIER = 'WireGuard v1 zx2c4 Jason@zx2c4.com';

const hash = (...parts: Uint8Array[]): Buffer => {
  const h = createHash('blake2s256');
  for (const p of parts) h.update(p);
  return h.digest();
};

/** HMAC-BLAKE2s (block 64 bytes; keys here are ≤ 32). */
function hmac(key: Uint8Array, ...data: Uint8Array[]): Buffer {
  const k = Buffer.alloc(64);
  Buffer.from(key).copy(k);
  const ipad = Buffer.from(k.map((b) => b ^ 0x36));
  const opad = Buffer.from(k.map((b) => b ^ 0x5c));
  return hash(opad, hash(ipad, ...data));
}

/** Noise's HKDF: `n` outputs of 32 bytes. */
function kdf(n: number, key: Uint8Array, input: Uint8Array): Buffer[] {
  const prk = hmac(key, input);
  const out: Buffer[] = [];
  let prev: Buffer = Buffer.alloc(0);
  for (let i = 1; i <= n; i++) {
    prev = hmac(prk, prev, Buffer.of(i));
    out.push(prev);
  }
  return out;
}

function aead(key: Uint8Array, plain: Uint8Array, ad: Uint8Array): Buffer {
  const c = createCipheriv('chacha20-poly1305', key, Buffer.alloc(12), { authTagLength: 16 });
  c.setAAD(ad, { plaintextLength: plain.length });
  return Buffer.concat([c.update(plain), c.final(), c.getAuthTag()]);
}

// The raw key is the last 32 bytes of its DER (SPKI / PKCS#8, RFC 8410). Not JWK, and no
// generateKeyPairSync: Node 20 can deadlock in a JWK export when the GC meanwhile destroys a
// key-generation job (both take the same lock), which hung this tool and the benchmark at 2000 keys.
const rawPublic = (k: KeyObject): Buffer => (k.export({ format: 'der', type: 'spki' }) as Buffer).subarray(-32);

export function publicKeyObject(raw: Uint8Array): KeyObject {
  return createPublicKey({ key: Buffer.concat([SPKI_X25519, raw]), format: 'der', type: 'spki' });
}

// SPKI wrapping of a raw X25519 public key (RFC 8410).
const SPKI_X25519 = Buffer.from('302a300506032b656e032100', 'hex');

// PKCS#8 wrapping of a raw X25519 private key (RFC 8410).
const PKCS8_X25519 = Buffer.from('302e020100300506032b656e04220420', 'hex');

export function privateKeyObject(raw: Uint8Array): KeyObject {
  return createPrivateKey({ key: Buffer.concat([PKCS8_X25519, raw]), format: 'der', type: 'pkcs8' });
}

/** 32 random bytes clamped as X25519 (and `wg genkey`) does. */
function x25519Private(): Buffer {
  const d = randomBytes(32);
  d[0] = d[0]! & 248;
  d[31] = (d[31]! & 127) | 64;
  return d;
}

/** A fresh X25519 key pair as WireGuard writes them (base64 of the raw 32 bytes). */
export function wgKeyPair(): { privateKey: string; publicKey: string } {
  const d = x25519Private();
  return { privateKey: d.toString('base64'), publicKey: rawPublic(createPublicKey(privateKeyObject(d))).toString('base64') };
}

function tai64n(): Buffer {
  const now = Date.now();
  const b = Buffer.alloc(12);
  b.writeBigUInt64BE(0x400000000000000an + BigInt(Math.floor(now / 1000)), 0);
  b.writeUInt32BE((now % 1000) * 1_000_000, 8);
  return b;
}

/** One handshake initiation (148 bytes) from `staticPriv` to the responder `responderPub`. */
export function initiation(staticPriv: KeyObject, responderPub: Uint8Array, sender: number): Buffer {
  const spubI = rawPublic(createPublicKey(staticPriv));
  const respKey = publicKeyObject(responderPub);
  let c = hash(Buffer.from(CONSTRUCTION));
  let h = hash(c, Buffer.from(IDENTIFIER));
  h = hash(h, responderPub);
  const e = { privateKey: privateKeyObject(x25519Private()) };
  const epub = rawPublic(createPublicKey(e.privateKey));
  [c] = kdf(1, c, epub) as [Buffer];
  h = hash(h, epub);
  let k: Buffer;
  [c, k] = kdf(2, c, diffieHellman({ privateKey: e.privateKey, publicKey: respKey })) as [Buffer, Buffer];
  const encStatic = aead(k, spubI, h);
  h = hash(h, encStatic);
  [c, k] = kdf(2, c, diffieHellman({ privateKey: staticPriv, publicKey: respKey })) as [Buffer, Buffer];
  const encTime = aead(k, tai64n(), h);
  const msg = Buffer.alloc(148);
  msg.writeUInt32LE(1, 0);
  msg.writeUInt32LE(sender, 4);
  epub.copy(msg, 8);
  encStatic.copy(msg, 40);
  encTime.copy(msg, 88);
  blake2s(msg.subarray(0, 116), 16, mac1Key(responderPub)).copy(msg, 116);
  return msg;
}

async function main(): Promise<void> {
  const values = benchArgs(
    'wg-handshakes',
    `usage: node dist/bench/wg-handshakes.js --spec FILE   (inside the peers' namespace; the sizing benchmark runs it)

  --spec FILE   JSON {target: "HOST:PORT", responder: B64 public key, peers: [B64 private key, …], timeout_s}
  -h, --help    this text`,
    { spec: { type: 'string' } },
  );
  if (!values.spec) usageExit('wg-handshakes', '--spec FILE is required');
  const spec = JSON.parse(readFileSync(values.spec, 'utf8')) as { target: string; responder: string; peers: string[]; timeout_s: number };
  const at = spec.target.lastIndexOf(':');
  const host = spec.target.slice(0, at);
  const port = Number(spec.target.slice(at + 1));
  const responder = Buffer.from(spec.responder, 'base64');
  const keys = spec.peers.map((p) => privateKeyObject(Buffer.from(p, 'base64')));
  const sock = createSocket(host.includes(':') ? 'udp6' : 'udp4');
  const t0 = Date.now();
  const answered = new Set<number>();
  let first: number | null = null;
  // A responder under load answers with a cookie reply (type 3) and wants MAC2 next time, which
  // this tool does not compute: counted, so a reference that asks for cookies shows as such.
  let cookies = 0;
  let all: number | null = null;
  // Sender index i + 1 for peer i: the answer names it as its receiver index.
  sock.on('message', (m) => {
    if (m.length === 64 && m.readUInt32LE(0) === 3) cookies++;
    if (m.length !== 92 || m.readUInt32LE(0) !== 2) return;
    const i = m.readUInt32LE(8) - 1;
    if (i < 0 || i >= keys.length || answered.has(i)) return;
    answered.add(i);
    first ??= (Date.now() - t0) / 1000;
    if (answered.size === keys.length) all = (Date.now() - t0) / 1000;
  });
  await new Promise<void>((resolve) => sock.bind(0, resolve));
  const send = (m: Buffer): Promise<void> => new Promise((resolve) => sock.send(m, port, host, () => resolve()));
  const deadline = t0 + spec.timeout_s * 1000;
  while (answered.size < keys.length && Date.now() < deadline) {
    for (let i = 0; i < keys.length && Date.now() < deadline; i++) {
      if (answered.has(i)) continue;
      await send(initiation(keys[i]!, responder, i + 1));
      // A few hundred per tick, so answers are read while sending.
      if (i % 200 === 199) await new Promise((r) => setImmediate(r));
    }
    const wait = Date.now() + 5000;
    while (answered.size < keys.length && Date.now() < Math.min(wait, deadline)) await new Promise((r) => setTimeout(r, 100));
  }
  sock.close();
  process.stdout.write(`${JSON.stringify({ answered: answered.size, peers: keys.length, started_at_ms: t0, cookie_replies: cookies, seconds: (Date.now() - t0) / 1000, first_s: first, all_s: all })}\n`);
}

if (process.argv[1]?.endsWith('wg-handshakes.js')) await main();
