/**
 * The control surface of one WireGuard interface: read its state, apply an update. The native
 * device implements it; the UAPI server (`uapi-server.ts`) and the wg-quick loader
 * (`wgquick.ts`) only speak to this interface.
 *
 * `InMemoryWireGuard` is the reference implementation: it carries no packets, but it applies
 * updates with the semantics wireguard-go gives the same `set=1` lines (device/uapi.go and
 * device/allowedips.go), so the native device must produce the same `state()` for the same
 * sequence of updates.
 *
 * Addresses are canonical everywhere in a state: endpoints and prefixes are written the way
 * wireguard-go writes them in `get=1` (Go's netip formatting: RFC 5952 for IPv6, IPv4-mapped
 * addresses as `::ffff:a.b.c.d`, prefixes masked to their length).
 */
import { CvlanError } from '../errors.js';
import { clamp, publicKeyOf } from '../secrets/keys.js';

/** Curve25519 keys and the preshared key are 32 bytes (WireGuard whitepaper §5.4). */
export const WG_KEY_BYTES = 32;

export interface WgPeerState {
  publicKey: Uint8Array;
  /** `null`: no preshared key (wireguard-go reports 32 zero bytes). */
  presharedKey: Uint8Array | null;
  /** `ip:port` or `[ip6%zone]:port`, canonical; `null` until set or learnt from a packet. */
  endpoint: string | null;
  /** Canonical CIDRs in the order the peer acquired them. */
  allowedIps: string[];
  /** Seconds; 0 = off. */
  persistentKeepalive: number;
  /** Wall-clock time of the last completed handshake; `null` = never. */
  lastHandshake: { sec: number; nsec: number } | null;
  rxBytes: bigint;
  txBytes: bigint;
  protocolVersion: 1;
}

export interface WgDeviceState {
  /** Clamped; `null` = none. */
  privateKey: Uint8Array | null;
  /** UDP port; 0 = none chosen. */
  listenPort: number;
  /** 0 = off. */
  fwmark: number;
  peers: WgPeerState[];
}

export interface WgPeerUpdate {
  publicKey: Uint8Array;
  /** Remove the peer (a missing peer is no error); every other field is ignored. */
  remove?: boolean;
  /** Change the peer only if it exists; never create it. */
  updateOnly?: boolean;
  /** `null` or 32 zero bytes: remove the preshared key. */
  presharedKey?: Uint8Array | null;
  /** `ip:port` or `[ip6]:port`. */
  endpoint?: string;
  /** Seconds, 0..65535; 0 = off. */
  persistentKeepalive?: number;
  /** Drop every allowed IP of the peer before adding `allowedIps`. */
  replaceAllowedIps?: boolean;
  /** CIDRs to add (host bits are masked). A prefix another peer holds moves to this one. */
  allowedIps?: string[];
  /** CIDRs to remove, applied after `allowedIps`; only removed if this peer holds them (UAPI `allowed_ip=-…`). */
  removeAllowedIps?: string[];
}

export interface WgDeviceUpdate {
  /** `null` or 32 zero bytes: remove the private key. Peers whose public key matches the new key's are removed. */
  privateKey?: Uint8Array | null;
  /** 0..65535. */
  listenPort?: number;
  /** 0..2^32-1; 0 = off. */
  fwmark?: number;
  /** Remove all peers before applying `peers`. */
  replacePeers?: boolean;
  /** Applied in order; a peer may appear more than once. */
  peers: WgPeerUpdate[];
}

export interface WireGuardControl {
  /** Interface name (also the UAPI socket's name). */
  readonly name: string;
  /** A snapshot, including key material: only for root-only management paths. */
  state(): WgDeviceState;
  /** Atomic: validates everything first; throws `CvlanError` and changes nothing on error. */
  apply(update: WgDeviceUpdate): void;
}

// --- addresses, written the way Go's net/netip writes them ---------------------------------

interface ParsedAddr {
  bytes: Uint8Array; // 4 or 16
  zone: string;
}

const V4_OCTET = '(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])';
const V4 = new RegExp(`^${V4_OCTET}(?:\\.${V4_OCTET}){3}$`);

function parseV4(s: string): Uint8Array | null {
  return V4.test(s) ? Uint8Array.from(s.split('.').map(Number)) : null;
}

/** IPv6 text (no zone) to 16 bytes; `null` if invalid. Accepts an embedded dotted quad at the end. */
function parseV6(s: string): Uint8Array | null {
  if (!/^[0-9a-fA-F:.]+$/.test(s)) return null;
  const halves = s.split('::');
  if (halves.length > 2) return null;
  const groups = (part: string): number[] | null => {
    if (part === '') return [];
    const out: number[] = [];
    const fields = part.split(':');
    for (let i = 0; i < fields.length; i++) {
      const f = fields[i]!;
      if (i === fields.length - 1 && f.includes('.')) {
        const v4 = parseV4(f);
        if (!v4) return null;
        out.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
      } else if (/^[0-9a-fA-F]{1,4}$/.test(f)) {
        out.push(parseInt(f, 16));
      } else {
        return null;
      }
    }
    return out;
  };
  const head = groups(halves[0]!);
  const tail = halves.length === 2 ? groups(halves[1]!) : [];
  if (!head || !tail) return null;
  // A dotted quad may only end the address.
  if (halves.length === 2 && halves[0]!.includes('.')) return null;
  let all: number[];
  if (halves.length === 2) {
    if (head.length + tail.length > 7) return null;
    all = [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
  } else {
    if (head.length !== 8) return null;
    all = head;
  }
  const bytes = new Uint8Array(16);
  all.forEach((g, i) => {
    bytes[2 * i] = g >> 8;
    bytes[2 * i + 1] = g & 0xff;
  });
  return bytes;
}

function parseAddr(s: string, allowZone: boolean): ParsedAddr | null {
  const v4 = parseV4(s);
  if (v4) return { bytes: v4, zone: '' };
  const pct = s.indexOf('%');
  let zone = '';
  let addr = s;
  if (pct >= 0) {
    zone = s.slice(pct + 1);
    addr = s.slice(0, pct);
    if (!allowZone || zone === '') return null;
  }
  const v6 = parseV6(addr);
  return v6 ? { bytes: v6, zone } : null;
}

function formatAddr(a: ParsedAddr): string {
  const b = a.bytes;
  if (b.length === 4) return b.join('.');
  const zone = a.zone ? `%${a.zone}` : '';
  if (b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff) {
    return `::ffff:${b.subarray(12).join('.')}${zone}`;
  }
  const g: number[] = [];
  for (let i = 0; i < 16; i += 2) g.push((b[i]! << 8) | b[i + 1]!);
  // RFC 5952 §4.2: compress the longest run of two or more zero groups, the first on a tie.
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (xs: number[]): string => xs.map((x) => x.toString(16)).join(':');
  const text = best < 0 ? hex(g) : `${hex(g.slice(0, best))}::${hex(g.slice(best + bestLen))}`;
  return text + zone;
}

/** `ip:port` / `[ip6%zone]:port` (as Go's netip.ParseAddrPort) in canonical form, or `null`. */
export function canonicalEndpoint(s: string): string | null {
  const colon = s.lastIndexOf(':');
  if (colon < 0) return null;
  const host = s.slice(0, colon);
  const port = s.slice(colon + 1);
  if (!/^[0-9]{1,5}$/.test(port) || Number(port) > 65535) return null;
  let a: ParsedAddr | null;
  if (host.startsWith('[') && host.endsWith(']')) {
    a = parseAddr(host.slice(1, -1), true);
    if (!a || a.bytes.length !== 16) return null;
    return `[${formatAddr(a)}]:${Number(port)}`;
  }
  a = parseV4(host) ? parseAddr(host, false) : null;
  return a ? `${formatAddr(a)}:${Number(port)}` : null;
}

/** An IPv4 or IPv6 address without zone in canonical form, or `null`. */
export function canonicalAddress(s: string): string | null {
  const a = parseAddr(s, false);
  return a ? formatAddr(a) : null;
}

/** `addr/bits` (as Go's netip.ParsePrefix) masked to its length, or `null`. */
export function canonicalPrefix(s: string): string | null {
  const slash = s.indexOf('/');
  if (slash < 0) return null;
  const a = parseAddr(s.slice(0, slash), false);
  const bitsText = s.slice(slash + 1);
  if (!a || !/^(?:0|[1-9][0-9]{0,2})$/.test(bitsText)) return null;
  const bits = Number(bitsText);
  if (bits > a.bytes.length * 8) return null;
  const masked = a.bytes.map((x, i) => {
    const keep = Math.max(0, Math.min(8, bits - 8 * i));
    return x & ((0xff << (8 - keep)) & 0xff);
  });
  return `${formatAddr({ bytes: masked, zone: '' })}/${bits}`;
}

// --- the reference implementation -----------------------------------------------------------

interface Peer {
  publicKey: Uint8Array;
  presharedKey: Uint8Array | null;
  endpoint: string | null;
  allowedIps: string[];
  persistentKeepalive: number;
  lastHandshake: { sec: number; nsec: number } | null;
  rxBytes: bigint;
  txBytes: bigint;
}

interface Device {
  privateKey: Uint8Array | null;
  publicKey: string | null; // hex, derived from privateKey
  listenPort: number;
  fwmark: number;
  peers: Map<string, Peer>; // by public key (hex), insertion order
  owner: Map<string, string>; // canonical prefix -> public key (hex) of the peer holding it
}

const hex = (k: Uint8Array): string => Buffer.from(k).toString('hex');
const isZero = (k: Uint8Array): boolean => k.every((b) => b === 0);

function invalid(path: string, reason: string): CvlanError {
  return new CvlanError('CVLAN_ERR_INVALID_ARG', `${path}: ${reason}`, { details: { path } });
}

function checkKey(k: unknown, path: string): void {
  if (!(k instanceof Uint8Array) || k.length !== WG_KEY_BYTES) throw invalid(path, `must be ${WG_KEY_BYTES} bytes`);
}

function checkInt(v: unknown, max: number, path: string): void {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) throw invalid(path, `must be an integer 0..${max}`);
}

function prefixes(list: unknown, path: string): string[] {
  if (!Array.isArray(list)) throw invalid(path, 'must be a list of CIDRs');
  return list.map((p, i) => {
    const c = typeof p === 'string' ? canonicalPrefix(p) : null;
    if (c === null) throw invalid(`${path}[${i}]`, 'is not a CIDR (addr/bits)');
    return c;
  });
}

/** Validates an update and returns a copy with canonical addresses; throws on the first problem. */
function validated(u: WgDeviceUpdate): WgDeviceUpdate {
  const out: WgDeviceUpdate = { ...u, peers: [] };
  if (u.privateKey != null) checkKey(u.privateKey, 'privateKey');
  if (u.listenPort !== undefined) checkInt(u.listenPort, 0xffff, 'listenPort');
  if (u.fwmark !== undefined) checkInt(u.fwmark, 0xffffffff, 'fwmark');
  if (!Array.isArray(u.peers)) throw invalid('peers', 'must be a list');
  u.peers.forEach((p, i) => {
    const path = `peers[${i}]`;
    checkKey(p.publicKey, `${path}.publicKey`);
    const q: WgPeerUpdate = { ...p };
    if (p.presharedKey != null) checkKey(p.presharedKey, `${path}.presharedKey`);
    if (p.endpoint !== undefined) {
      const e = typeof p.endpoint === 'string' ? canonicalEndpoint(p.endpoint) : null;
      if (e === null) throw invalid(`${path}.endpoint`, 'is not ip:port or [ip6]:port');
      q.endpoint = e;
    }
    if (p.persistentKeepalive !== undefined) checkInt(p.persistentKeepalive, 0xffff, `${path}.persistentKeepalive`);
    if (p.allowedIps !== undefined) q.allowedIps = prefixes(p.allowedIps, `${path}.allowedIps`);
    if (p.removeAllowedIps !== undefined) q.removeAllowedIps = prefixes(p.removeAllowedIps, `${path}.removeAllowedIps`);
    out.peers.push(q);
  });
  return out;
}

function clonePeer(p: Peer): Peer {
  return {
    ...p,
    publicKey: Uint8Array.from(p.publicKey),
    presharedKey: p.presharedKey && Uint8Array.from(p.presharedKey),
    allowedIps: [...p.allowedIps],
    lastHandshake: p.lastHandshake && { ...p.lastHandshake },
  };
}

function cloneDevice(d: Device): Device {
  return {
    ...d,
    privateKey: d.privateKey && Uint8Array.from(d.privateKey),
    peers: new Map([...d.peers].map(([k, p]) => [k, clonePeer(p)])),
    owner: new Map(d.owner),
  };
}

function removePeer(d: Device, key: string): void {
  const p = d.peers.get(key);
  if (!p) return;
  for (const a of p.allowedIps) d.owner.delete(a);
  d.peers.delete(key);
}

function dropAllowed(d: Device, prefix: string): void {
  const holder = d.owner.get(prefix);
  if (holder === undefined) return;
  const p = d.peers.get(holder)!;
  p.allowedIps = p.allowedIps.filter((a) => a !== prefix);
  d.owner.delete(prefix);
}

/** Counters and handshake time as the data plane would report them (what `wg show` prints). */
export interface WgPeerStatistics {
  rxBytes?: bigint;
  txBytes?: bigint;
  lastHandshake?: { sec: number; nsec: number } | null;
  /** An endpoint learnt from an authenticated packet (roaming). */
  endpoint?: string;
}

/**
 * A WireGuard interface that only holds configuration: the reference semantics of
 * `WireGuardControl.apply`, and the device the UAPI protocol tests drive.
 */
export class InMemoryWireGuard implements WireGuardControl {
  readonly name: string;
  #dev: Device = { privateKey: null, publicKey: null, listenPort: 0, fwmark: 0, peers: new Map(), owner: new Map() };

  constructor(name: string) {
    this.name = name;
  }

  state(): WgDeviceState {
    const d = cloneDevice(this.#dev);
    return {
      privateKey: d.privateKey,
      listenPort: d.listenPort,
      fwmark: d.fwmark,
      peers: [...d.peers.values()].map((p) => ({ ...p, protocolVersion: 1 as const })),
    };
  }

  apply(update: WgDeviceUpdate): void {
    const u = validated(update);
    const d = cloneDevice(this.#dev);
    if (u.privateKey !== undefined) {
      if (u.privateKey === null || isZero(u.privateKey)) {
        d.privateKey = null;
        d.publicKey = null;
      } else {
        const k = Buffer.from(u.privateKey);
        clamp(k);
        d.privateKey = new Uint8Array(k);
        d.publicKey = publicKeyOf(k).toString('hex');
        // wireguard-go (Device.SetPrivateKey): a peer cannot be the interface itself.
        removePeer(d, d.publicKey);
      }
    }
    if (u.listenPort !== undefined) d.listenPort = u.listenPort;
    if (u.fwmark !== undefined) d.fwmark = u.fwmark;
    if (u.replacePeers) for (const k of [...d.peers.keys()]) removePeer(d, k);
    for (const pu of u.peers) {
      const key = hex(pu.publicKey);
      // wireguard-go ignores a section naming the interface's own public key.
      if (key === d.publicKey) continue;
      if (pu.remove) {
        removePeer(d, key);
        continue;
      }
      let p = d.peers.get(key);
      if (!p) {
        if (pu.updateOnly) continue;
        p = {
          publicKey: Uint8Array.from(pu.publicKey),
          presharedKey: null,
          endpoint: null,
          allowedIps: [],
          persistentKeepalive: 0,
          lastHandshake: null,
          rxBytes: 0n,
          txBytes: 0n,
        };
        d.peers.set(key, p);
      }
      if (pu.presharedKey !== undefined) {
        p.presharedKey = pu.presharedKey === null || isZero(pu.presharedKey) ? null : Uint8Array.from(pu.presharedKey);
      }
      if (pu.endpoint !== undefined) p.endpoint = pu.endpoint;
      if (pu.persistentKeepalive !== undefined) p.persistentKeepalive = pu.persistentKeepalive;
      if (pu.replaceAllowedIps) for (const a of [...p.allowedIps]) dropAllowed(d, a);
      for (const a of pu.allowedIps ?? []) {
        const holder = d.owner.get(a);
        if (holder === key) continue; // already ours: keeps its place
        if (holder !== undefined) dropAllowed(d, a); // moves, as in WireGuard's allowed-IPs table
        p.allowedIps.push(a);
        d.owner.set(a, key);
      }
      for (const a of pu.removeAllowedIps ?? []) if (d.owner.get(a) === key) dropAllowed(d, a);
    }
    this.#dev = d;
  }

  /** Sets what the data plane would measure for a peer; throws if the peer does not exist. */
  setPeerStatistics(publicKey: Uint8Array, stats: WgPeerStatistics): void {
    const p = this.#dev.peers.get(hex(publicKey));
    if (!p) throw new CvlanError('CVLAN_ERR_STATE', 'no such peer');
    let endpoint: string | null | undefined;
    if (stats.endpoint !== undefined) {
      endpoint = canonicalEndpoint(stats.endpoint);
      if (endpoint === null) throw invalid('endpoint', 'is not ip:port or [ip6]:port');
    }
    if (stats.rxBytes !== undefined) p.rxBytes = stats.rxBytes;
    if (stats.txBytes !== undefined) p.txBytes = stats.txBytes;
    if (stats.lastHandshake !== undefined) p.lastHandshake = stats.lastHandshake && { ...stats.lastHandshake };
    if (endpoint != null) p.endpoint = endpoint;
  }
}
