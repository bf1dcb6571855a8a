/**
 * Small, pure building blocks of the validators: an issue collector, typed field readers that
 * record what they expected, canonical prefixes, endpoints, WireGuard public keys and IPsec
 * proposal tokens. Reasons say what is wrong and what is expected; values of secret fields are
 * never quoted (the readers take `secret: true` for those).
 */

import ipaddr from 'ipaddr.js';
import type { ConfigIssue } from '../errors.js';

export type Obj = Record<string, unknown>;
export const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Joins a path and a key the way the issues name fields: `a.b`, `a[0]`. */
export function at(path: string, key: string | number): string {
  if (typeof key === 'number') return `${path}[${key}]`;
  return path ? `${path}.${key}` : key;
}

/** A short, safe rendering of a non-secret value for a reason text. */
export function show(v: unknown): string {
  let s: string;
  try {
    s = JSON.stringify(v) ?? String(v);
  } catch {
    s = String(v);
  }
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

export function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  return `a ${typeof v}`;
}

export class Issues {
  readonly list: ConfigIssue[] = [];
  add(path: string, reason: string): void {
    this.list.push({ path, reason });
  }
  get count(): number {
    return this.list.length;
  }

  /** Records every key of `o` not in `allowed`. */
  unknownKeys(o: Obj, allowed: readonly string[], path: string): void {
    for (const k of Object.keys(o)) {
      if (!allowed.includes(k)) this.add(at(path, k), `unknown field; expected one of: ${allowed.join(', ')}`);
    }
  }

  object(v: unknown, path: string): Obj | undefined {
    if (isObj(v)) return v;
    this.add(path, v === undefined ? 'missing; expected an object' : `expected an object, got ${typeName(v)}`);
    return undefined;
  }

  array(v: unknown, path: string, opts: { optional?: boolean; nonEmpty?: boolean } = {}): unknown[] | undefined {
    if (v === undefined && opts.optional) return [];
    if (!Array.isArray(v)) {
      this.add(path, v === undefined ? 'missing; expected an array' : `expected an array, got ${typeName(v)}`);
      return undefined;
    }
    if (opts.nonEmpty && v.length === 0) this.add(path, 'expected at least one entry');
    return v;
  }

  /**
   * A string matching `re` (when given). `expected` completes "expected ..." in the reason.
   * `secret` keeps the value out of the reason.
   */
  string(
    v: unknown,
    path: string,
    opts: { optional?: boolean; re?: RegExp; expected?: string; secret?: boolean; max?: number } = {},
  ): string | undefined {
    const expected = opts.expected ?? 'a string';
    if (v === undefined) {
      if (!opts.optional) this.add(path, `missing; expected ${expected}`);
      return undefined;
    }
    if (typeof v !== 'string') {
      this.add(path, `expected ${expected}, got ${typeName(v)}`);
      return undefined;
    }
    const bad = (opts.re && !opts.re.test(v)) || (opts.max !== undefined && v.length > opts.max) || v.length === 0;
    if (bad) {
      this.add(path, opts.secret ? `invalid value (not shown: secret); expected ${expected}` : `${show(v)} is not valid; expected ${expected}`);
      return undefined;
    }
    return v;
  }

  integer(v: unknown, path: string, min: number, max: number, opts: { optional?: boolean; unit?: string } = {}): number | undefined {
    const expected = `an integer ${min}..${max}${opts.unit ? ` (${opts.unit})` : ''}`;
    if (v === undefined) {
      if (!opts.optional) this.add(path, `missing; expected ${expected}`);
      return undefined;
    }
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      this.add(path, `${typeof v === 'number' || typeof v === 'bigint' ? String(v) : typeName(v)} is not valid; expected ${expected}`);
      return undefined;
    }
    return v;
  }
}

// ---------------------------------------------------------------- names

/** Tenant ids, tunnel ids, peer names: safe in VICI names, metrics labels and file names. */
export const ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
export const ID_EXPECTED = '1-63 characters of letters, digits, "_", "." or "-", starting with a letter or digit';
/** Linux interface names (IFNAMSIZ - 1). */
export const IFNAME_RE = /^[A-Za-z0-9_.-]{1,15}$/;
export const IFNAME_EXPECTED = 'an interface name of 1-15 letters, digits, "_", "." or "-"';

// ---------------------------------------------------------------- prefixes

export type Family = 'ipv4' | 'ipv6';

export interface Prefix {
  /** Canonical text: `10.0.0.0/24`, `2001:db8::/32`. */
  text: string;
  family: Family;
  bits: number;
  /** The address as bytes (4 or 16). */
  bytes: number[];
}

function maskBytes(bytes: number[], bits: number): number[] {
  return bytes.map((b, i) => {
    const keep = Math.max(0, Math.min(8, bits - i * 8));
    return b & ((0xff << (8 - keep)) & 0xff);
  });
}

function fromBytes(bytes: number[]): ipaddr.IPv4 | ipaddr.IPv6 {
  return ipaddr.fromByteArray(bytes);
}

/**
 * Parses a CIDR. With `hostBits: 'refuse'` (routes, selectors, allowed IPs) a prefix with host
 * bits set is an error that names the canonical form; with `'allow'` (interface addresses) the
 * address is kept as written. A bare address is not a prefix: the length must be explicit.
 */
export function parsePrefix(s: string, hostBits: 'refuse' | 'allow' = 'refuse'): { prefix: Prefix } | { error: string } {
  const m = /^([^/\s]+)\/(\d{1,3})$/.exec(s);
  if (!m) return { error: `${show(s)} is not a prefix; expected address/length, e.g. "10.0.0.0/24" or "2001:db8::/64"` };
  const addrText = m[1]!;
  if (!ipaddr.isValid(addrText) || (addrText.includes('.') && !ipaddr.IPv4.isValidFourPartDecimal(addrText) && !addrText.includes(':'))) {
    return { error: `${show(s)} is not a prefix: ${show(addrText)} is not an IPv4 or IPv6 address in standard notation` };
  }
  let addr = ipaddr.parse(addrText);
  // An IPv4-mapped IPv6 address names an IPv4 host; keep it IPv6 (it is written as one).
  const family: Family = addr.kind();
  const max = family === 'ipv4' ? 32 : 128;
  const bits = Number(m[2]);
  if (bits > max) return { error: `${show(s)}: prefix length ${bits} is out of range; expected 0..${max} for ${family === 'ipv4' ? 'IPv4' : 'IPv6'}` };
  const bytes = addr.toByteArray();
  const masked = maskBytes(bytes, bits);
  if (hostBits === 'refuse' && masked.some((b, i) => b !== bytes[i])) {
    const canonical = `${fromBytes(masked).toString()}/${bits}`;
    return { error: `${show(s)} has host bits set; the prefix is ${show(canonical)} (write that, or a longer length for a host)` };
  }
  if (hostBits === 'refuse') addr = fromBytes(masked);
  return { prefix: { text: `${addr.toString()}/${bits}`, family, bits, bytes: hostBits === 'refuse' ? masked : bytes } };
}

/** True when one prefix contains the other (or they are equal). Prefixes of different families never overlap. */
export function overlaps(a: Prefix, b: Prefix): boolean {
  if (a.family !== b.family) return false;
  const bits = Math.min(a.bits, b.bits);
  const ma = maskBytes(a.bytes, bits);
  const mb = maskBytes(b.bytes, bits);
  return ma.every((x, i) => x === mb[i]);
}

/** Sorts most specific first, then by family and address: the order routes are listed in. */
export function comparePrefixes(a: Prefix, b: Prefix): number {
  if (a.family !== b.family) return a.family === 'ipv4' ? -1 : 1;
  if (a.bits !== b.bits) return b.bits - a.bits;
  for (let i = 0; i < a.bytes.length; i++) if (a.bytes[i] !== b.bytes[i]) return a.bytes[i]! - b.bytes[i]!;
  return 0;
}

// ---------------------------------------------------------------- hosts and endpoints

const HOSTNAME_RE = /^(?=.{1,253}$)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;

export function isIpAddress(s: string): boolean {
  return ipaddr.IPv4.isValidFourPartDecimal(s) || (s.includes(':') && ipaddr.IPv6.isValid(s));
}

/** A DNS host name or an IP address (no port). */
export function isHost(s: string): boolean {
  if (isIpAddress(s)) return true;
  // All-numeric dotted names are mistyped IPv4 addresses, not host names.
  if (/^[0-9.]+$/.test(s)) return false;
  return HOSTNAME_RE.test(s);
}

/** `host:port`, `ip:port` or `[ipv6]:port` with port 1..65535; returns the parts or undefined. */
export function parseEndpoint(s: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(s);
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port < 1 || port > 65535) return undefined;
  if (m[1] !== undefined) return ipaddr.IPv6.isValid(m[1]) ? { host: m[1], port } : undefined;
  const host = m[2]!;
  return isHost(host) ? { host, port } : undefined;
}

// ---------------------------------------------------------------- WireGuard public keys

/**
 * Curve25519 points of small order (and their non-canonical encodings p-1, p, p+1): a peer
 * with one of these as its static key would make every Diffie-Hellman result predictable.
 * Same list as libsodium's X25519 blocklist; bit 255 is ignored when comparing, as X25519 does.
 */
export const SMALL_ORDER_POINTS: readonly string[] = [
  '0000000000000000000000000000000000000000000000000000000000000000',
  '0100000000000000000000000000000000000000000000000000000000000000',
  'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800',
  '5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157',
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
];

const KEY_TEXT_RE = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;

/** Returns undefined for a usable public key, or the reason it is not one. */
export function publicKeyProblem(text: string): string | undefined {
  if (!KEY_TEXT_RE.test(text)) return 'expected 44 characters of base64 encoding 32 bytes (the output of `wg pubkey`)';
  const k = Buffer.from(text, 'base64');
  const top = k[31]! & 0x7f;
  for (const hex of SMALL_ORDER_POINTS) {
    const p = Buffer.from(hex, 'hex');
    if (k.subarray(0, 31).equals(p.subarray(0, 31)) && top === p[31]) {
      return 'is a point of small order (all-zero or another low-order key) and cannot be a peer identity; use the peer\'s real `wg pubkey` output';
    }
  }
  return undefined;
}

/** True for 44 characters of base64 encoding 32 bytes (private keys, preshared keys). */
export function isKeyText(text: string): boolean {
  return KEY_TEXT_RE.test(text);
}

// ---------------------------------------------------------------- IPsec proposals

/** AEAD ciphers (RFC 4106 AES-GCM with 16-byte ICV, RFC 7634 ChaCha20-Poly1305). */
export const AEAD = ['aes128gcm16', 'aes256gcm16', 'chacha20poly1305'] as const;
/** AES-CBC (RFC 3602), only with an integrity algorithm. */
export const CBC = ['aes128', 'aes256'] as const;
/** HMAC-SHA-2 integrity (RFC 4868). */
export const INTEGRITY = ['sha256', 'sha384', 'sha512'] as const;
/** IKE pseudo-random functions. */
export const PRF = ['prfsha256', 'prfsha384'] as const;
/** Key exchange groups: NIST P-256/P-384 (RFC 5903), Curve25519 (RFC 8031). */
export const DH = ['ecp256', 'ecp384', 'x25519'] as const;
/** ESP extended sequence numbers (RFC 4303 §2.2.1). */
export const ESN = ['esn', 'noesn'] as const;

export const DEFAULT_IKE_PROPOSALS = ['aes256gcm16-prfsha256-x25519'] as const;
export const DEFAULT_ESP_PROPOSALS = ['aes256gcm16'] as const;

const has = (list: readonly string[], t: string): boolean => list.includes(t);

/**
 * Checks one strongSwan-style proposal (`-`-separated tokens, any order). Returns the reason
 * it is refused, or undefined. The proposal is returned lower-cased by the caller.
 */
export function proposalProblem(kind: 'ike' | 'esp', proposal: string): string | undefined {
  const tokens = proposal.toLowerCase().split('-');
  const enc: string[] = [];
  const integ: string[] = [];
  const prf: string[] = [];
  const dh: string[] = [];
  const esn: string[] = [];
  const seen = new Set<string>();
  for (const t of tokens) {
    if (seen.has(t)) return `${show(t)} appears twice in ${show(proposal)}`;
    seen.add(t);
    if (has(AEAD, t) || has(CBC, t)) enc.push(t);
    else if (has(INTEGRITY, t)) integ.push(t);
    else if (kind === 'ike' && has(PRF, t)) prf.push(t);
    else if (has(DH, t)) dh.push(t);
    else if (kind === 'esp' && has(ESN, t)) esn.push(t);
    else {
      const known =
        kind === 'ike'
          ? [...AEAD, ...CBC, ...INTEGRITY, ...PRF, ...DH]
          : [...AEAD, ...CBC, ...INTEGRITY, ...DH, ...ESN];
      return `unsupported algorithm ${show(t)} in ${show(proposal)}; supported ${kind.toUpperCase()} tokens: ${known.join(', ')}`;
    }
  }
  if (enc.length === 0) return `${show(proposal)} has no encryption algorithm; expected one of ${[...AEAD, ...CBC].join(', ')}`;
  const aead = enc.filter((e) => has(AEAD, e));
  if (aead.length > 0 && aead.length < enc.length) return `${show(proposal)} mixes AEAD and CBC ciphers; put them in separate proposals`;
  if (aead.length > 0 && integ.length > 0) return `${show(proposal)}: AEAD ciphers (${aead.join(', ')}) carry their own integrity; remove ${integ.join(', ')}`;
  if (aead.length === 0 && integ.length === 0) return `${show(proposal)}: CBC ciphers need an integrity algorithm; add one of ${INTEGRITY.join(', ')}`;
  if (kind === 'ike') {
    if (dh.length === 0) return `${show(proposal)} has no key exchange group; expected one of ${DH.join(', ')}`;
    // Without an explicit PRF strongSwan derives it from the integrity algorithm; AEAD has none to derive from.
    const derived = integ.every((i) => has(PRF, `prf${i}`));
    if (prf.length === 0 && (aead.length > 0 || !derived)) {
      return `${show(proposal)} needs a PRF; add one of ${PRF.join(', ')}`;
    }
  }
  if (esn.length > 0 && kind !== 'esp') return `${show(proposal)}: esn/noesn are ESP options`;
  return undefined;
}
