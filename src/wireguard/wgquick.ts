/**
 * wg-quick configuration files (wg-quick(8), wg(8) "CONFIGURATION FILE FORMAT"): read into a
 * `WgDeviceUpdate` with the semantics of `wg setconf` (replace all peers, and each peer's allowed
 * IPs), plus the wg-quick interface settings, and written back.
 *
 * As wg and wg-quick read them: `#` starts a comment, section names and keys are
 * case-insensitive, whitespace around `=` and commas does not matter, AllowedIPs, Address and DNS
 * may repeat and accumulate, a later single value replaces an earlier one. Address, DNS, MTU,
 * Table, PreUp, PostUp, PreDown, PostDown and SaveConfig are returned, never executed: routes,
 * addresses and DNS belong to the router's own configuration, and hooks would run shell code.
 * Endpoints must be addresses: host names are refused (nothing here resolves names).
 *
 * Errors are `ConfigError`s whose issues name the line and key (`line 12: AllowedIPs`) and never
 * contain key material.
 */
import { ConfigError, type ConfigIssue } from '../errors.js';
import {
  canonicalAddress,
  canonicalEndpoint,
  canonicalPrefix,
  type WgDeviceState,
  type WgDeviceUpdate,
  type WgPeerUpdate,
} from './control.js';

/** The wg-quick settings of `[Interface]` that are not WireGuard settings. */
export interface WgQuickInterface {
  /** Interface addresses with their prefix length, host bits kept (`10.0.0.1/24`). */
  addresses: string[];
  /** DNS servers (addresses). */
  dns: string[];
  /** DNS search domains (the non-address entries of DNS). */
  dnsSearch: string[];
  /** Bytes; `null` = wg-quick's automatic choice. */
  mtu: number | null;
  /** `off`, `auto`, a table number or name; `null` = not set. */
  table: string | null;
  preUp: string[];
  postUp: string[];
  preDown: string[];
  postDown: string[];
  saveConfig: boolean;
}

export interface WgQuickConfig {
  /** What `wg setconf` would apply: `replacePeers` and every peer's `replaceAllowedIps` set. */
  update: WgDeviceUpdate;
  interface: WgQuickInterface;
}

export function emptyWgQuickInterface(): WgQuickInterface {
  return { addresses: [], dns: [], dnsSearch: [], mtu: null, table: null, preUp: [], postUp: [], preDown: [], postDown: [], saveConfig: false };
}

/** 32 bytes of standard base64 exactly as wg prints them (44 characters, one `=`). */
const BASE64_KEY = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;

const INTERFACE_KEYS = ['PrivateKey', 'ListenPort', 'FwMark', 'Address', 'DNS', 'MTU', 'Table', 'PreUp', 'PostUp', 'PreDown', 'PostDown', 'SaveConfig'] as const;
const PEER_KEYS = ['PublicKey', 'PresharedKey', 'AllowedIPs', 'Endpoint', 'PersistentKeepalive'] as const;
type InterfaceKey = (typeof INTERFACE_KEYS)[number];
type PeerKey = (typeof PEER_KEYS)[number];

const byLowercase = new Map<string, string>([...INTERFACE_KEYS, ...PEER_KEYS].map((k) => [k.toLowerCase(), k]));

const list = (v: string): string[] =>
  v
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');

/** Parses a wg-quick file. Throws `ConfigError` listing every problem found. */
export function parseWgQuick(text: string): WgQuickConfig {
  const issues: ConfigIssue[] = [];
  const update: WgDeviceUpdate = { replacePeers: true, peers: [] };
  const iface = emptyWgQuickInterface();
  let section: 'none' | 'interface' | 'peer' = 'none';
  let sawInterface = false;
  let peer: WgPeerUpdate | undefined;
  let peerLine = 0;

  const closePeer = (): void => {
    if (peer && peer.publicKey.length === 0) issues.push({ path: `line ${peerLine}: [Peer]`, reason: 'PublicKey is missing' });
  };

  text.split(/\r?\n/).forEach((raw, i) => {
    const lineNo = i + 1;
    const hash = raw.indexOf('#');
    const stripped = (hash >= 0 ? raw.slice(0, hash) : raw).trim();
    if (stripped === '') return;
    if (stripped.startsWith('[')) {
      const name = stripped.replace(/\s+/g, '').toLowerCase();
      closePeer();
      peer = undefined;
      if (name === '[interface]') {
        if (sawInterface) issues.push({ path: `line ${lineNo}: [Interface]`, reason: 'only one [Interface] section is allowed' });
        sawInterface = true;
        section = 'interface';
      } else if (name === '[peer]') {
        peer = { publicKey: new Uint8Array(0), replaceAllowedIps: true, allowedIps: [] };
        peerLine = lineNo;
        update.peers.push(peer);
        section = 'peer';
      } else {
        issues.push({ path: `line ${lineNo}`, reason: 'unknown section (expected [Interface] or [Peer])' });
        section = 'none';
      }
      return;
    }
    const eq = stripped.indexOf('=');
    const written = (eq >= 0 ? stripped.slice(0, eq) : stripped).trim();
    const key = byLowercase.get(written.toLowerCase());
    const path = `line ${lineNo}: ${key ?? written.slice(0, 40)}`;
    const fail = (reason: string): void => {
      issues.push({ path, reason });
    };
    if (eq < 0) return fail('expected Key = Value');
    const value = stripped.slice(eq + 1).trim();
    if (section === 'none') return fail('outside of an [Interface] or [Peer] section');
    if (section === 'interface') {
      if (!key || !(INTERFACE_KEYS as readonly string[]).includes(key)) return fail('not a key of [Interface]');
      interfaceLine(key as InterfaceKey, value, update, iface, fail);
    } else {
      if (!key || !(PEER_KEYS as readonly string[]).includes(key)) return fail('not a key of [Peer]');
      peerLineParse(key as PeerKey, value, peer!, fail);
    }
  });
  closePeer();
  if (issues.length > 0) throw new ConfigError(issues);
  return { update, interface: iface };
}

type Fail = (reason: string) => void;

function key32(value: string, fail: Fail): Uint8Array | undefined {
  // Never echo the value: it may be a private key with a typo.
  if (!BASE64_KEY.test(value.replace(/\s+/g, ''))) {
    fail('is not a key (44 characters of base64, as wg genkey prints)');
    return undefined;
  }
  return new Uint8Array(Buffer.from(value.replace(/\s+/g, ''), 'base64'));
}

function integer(value: string, min: number, max: number, fail: Fail, off = false): number | undefined {
  const v = value.replace(/\s+/g, '');
  if (off && v.toLowerCase() === 'off') return 0;
  if (!/^[0-9]+$/.test(v) || Number(v) < min || Number(v) > max) {
    fail(`must be an integer ${min}..${max}${off ? ' or off' : ''}`);
    return undefined;
  }
  return Number(v);
}

function interfaceLine(key: InterfaceKey, value: string, update: WgDeviceUpdate, iface: WgQuickInterface, fail: Fail): void {
  switch (key) {
    case 'PrivateKey': {
      const k = key32(value, fail);
      if (k) update.privateKey = k;
      return;
    }
    case 'ListenPort': {
      const n = integer(value, 0, 0xffff, fail);
      if (n !== undefined) update.listenPort = n;
      return;
    }
    case 'FwMark': {
      const v = value.replace(/\s+/g, '').toLowerCase();
      const n = v === 'off' ? 0 : /^0x[0-9a-f]{1,8}$/.test(v) ? parseInt(v, 16) : /^[0-9]+$/.test(v) ? Number(v) : NaN;
      if (!Number.isInteger(n) || n > 0xffffffff) return fail('must be a number (decimal or 0x hex) up to 0xffffffff, or off');
      update.fwmark = n;
      return;
    }
    case 'Address':
      for (const a of list(value)) {
        const slash = a.indexOf('/');
        const addr = canonicalAddress(slash >= 0 ? a.slice(0, slash) : a);
        const max = addr?.includes(':') ? 128 : 32;
        const bits = slash >= 0 ? a.slice(slash + 1) : String(max);
        if (addr === null || !/^(?:0|[1-9][0-9]{0,2})$/.test(bits) || Number(bits) > max) {
          fail(`${JSON.stringify(a)} is not an address with an optional /prefix length`);
        } else {
          iface.addresses.push(`${addr}/${Number(bits)}`);
        }
      }
      return;
    case 'DNS':
      // wg-quick: an entry that looks like an address is a server, anything else a search domain.
      for (const d of list(value)) {
        const addr = canonicalAddress(d);
        if (addr !== null) iface.dns.push(addr);
        else if (/^[0-9.]+$/.test(d) || d.includes(':')) fail(`${JSON.stringify(d)} is not a valid address`);
        else if (/^[A-Za-z0-9.-]{1,253}$/.test(d)) iface.dnsSearch.push(d);
        else fail(`${JSON.stringify(d.slice(0, 60))} is neither an address nor a domain`);
      }
      return;
    case 'MTU': {
      // 68: the smallest MTU IPv4 allows (RFC 791); wg-quick passes the value to `ip link`.
      const n = integer(value, 68, 0xffff, fail);
      if (n !== undefined) iface.mtu = n;
      return;
    }
    case 'Table':
      if (!/^[A-Za-z0-9_.-]{1,64}$/.test(value)) return fail('must be off, auto, a table number or a table name');
      iface.table = value;
      return;
    case 'PreUp':
      iface.preUp.push(value);
      return;
    case 'PostUp':
      iface.postUp.push(value);
      return;
    case 'PreDown':
      iface.preDown.push(value);
      return;
    case 'PostDown':
      iface.postDown.push(value);
      return;
    case 'SaveConfig':
      if (value !== 'true' && value !== 'false') return fail('must be true or false');
      iface.saveConfig = value === 'true';
      return;
  }
}

function peerLineParse(key: PeerKey, value: string, peer: WgPeerUpdate, fail: Fail): void {
  switch (key) {
    case 'PublicKey': {
      const k = key32(value, fail);
      if (k) peer.publicKey = k;
      return;
    }
    case 'PresharedKey': {
      const k = key32(value, fail);
      if (k) peer.presharedKey = k;
      return;
    }
    case 'AllowedIPs':
      for (const a of list(value)) {
        // As wg: an address without a length is a host route.
        const withLen = a.includes('/') ? a : `${a}/${a.includes(':') ? 128 : 32}`;
        const p = canonicalPrefix(withLen);
        if (p === null) fail(`${JSON.stringify(a.slice(0, 60))} is not an address or CIDR`);
        else if (!peer.allowedIps!.includes(p)) peer.allowedIps!.push(p);
      }
      return;
    case 'Endpoint': {
      const e = canonicalEndpoint(value.replace(/\s+/g, ''));
      if (e === null) return fail('must be ip:port or [ip6]:port (host names are not resolved)');
      peer.endpoint = e;
      return;
    }
    case 'PersistentKeepalive': {
      const n = integer(value, 0, 0xffff, fail, true);
      if (n !== undefined) peer.persistentKeepalive = n;
      return;
    }
  }
}

const b64 = (k: Uint8Array): string => Buffer.from(k).toString('base64');

/**
 * Writes a device state as a wg-quick file. Without `iface` the output is byte for byte what
 * `wg showconf` prints for the same state; with it, the wg-quick settings come first in
 * `[Interface]`, as wg-quick's SaveConfig writes them. The file holds the private key: write it 0600.
 */
export function formatWgQuick(state: WgDeviceState, iface?: Partial<WgQuickInterface>): string {
  const out: string[] = ['[Interface]'];
  if (iface) {
    if (iface.addresses?.length) out.push(`Address = ${iface.addresses.join(', ')}`);
    const dns = [...(iface.dns ?? []), ...(iface.dnsSearch ?? [])];
    if (dns.length) out.push(`DNS = ${dns.join(', ')}`);
    if (iface.mtu != null) out.push(`MTU = ${iface.mtu}`);
    if (iface.table != null) out.push(`Table = ${iface.table}`);
    for (const [k, cmds] of [
      ['PreUp', iface.preUp],
      ['PostUp', iface.postUp],
      ['PreDown', iface.preDown],
      ['PostDown', iface.postDown],
    ] as const) {
      for (const c of cmds ?? []) out.push(`${k} = ${c}`);
    }
    if (iface.saveConfig) out.push('SaveConfig = true');
  }
  if (state.listenPort) out.push(`ListenPort = ${state.listenPort}`);
  if (state.fwmark) out.push(`FwMark = 0x${state.fwmark.toString(16)}`);
  if (state.privateKey) out.push(`PrivateKey = ${b64(state.privateKey)}`);
  out.push('');
  state.peers.forEach((p, i) => {
    out.push('[Peer]', `PublicKey = ${b64(p.publicKey)}`);
    if (p.presharedKey) out.push(`PresharedKey = ${b64(p.presharedKey)}`);
    if (p.allowedIps.length) out.push(`AllowedIPs = ${p.allowedIps.join(', ')}`);
    if (p.endpoint) out.push(`Endpoint = ${p.endpoint}`);
    if (p.persistentKeepalive) out.push(`PersistentKeepalive = ${p.persistentKeepalive}`);
    if (i < state.peers.length - 1) out.push('');
  });
  return `${out.join('\n')}\n`;
}
