/**
 * Local overrides: `/etc/cvlan/vrouter.toml`, the settings that belong to this machine rather
 * than to the controller (where to reach it, which interfaces, where charon lives, how many
 * workers). Every key is optional; `docs/configuration.md` lists them with defaults.
 *
 * Syntax errors carry smol-toml's line and column; validation issues name the field
 * (`performance.worker_threads`) and end with the file and line of the key.
 */

import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { isAbsolute } from 'node:path';
import { parse, TomlError } from 'smol-toml';
import { ConfigError, CvlanError } from '../errors.js';
import { refuseTestOnly } from './production.js';
import { IFNAME_EXPECTED, IFNAME_RE, Issues, isIpAddress, isObj, parseEndpoint, show, typeName, type Obj } from './normalize.js';
import type { HaConfig, LocalConfig } from './model.js';

export const DEFAULT_LOCAL_TOML = '/etc/cvlan/vrouter.toml';
export const DEFAULT_STATE_DIR = '/var/lib/cvlan';
export const DEFAULT_ADMIN_SOCKET = '/run/cvlan/admin.sock';
export const DEFAULT_STRONGSWAN_SOCKET = '/run/cvlan/charon.vici';
export const DEFAULT_CHARON_PATH = '/usr/lib/ipsec/charon';
/** Seconds the controller holds a long poll (docs/controller-api.md). */
export const DEFAULT_POLL_INTERVAL = 30;
/** Seconds between periodic status reports to the controller. */
export const DEFAULT_STATUS_INTERVAL = 60;
/** Seconds; the longest wait between retries while the controller is away. */
export const DEFAULT_BACKOFF_MAX = 60;

const SECTIONS: Record<string, readonly string[]> = {
  controller: ['url', 'token_file', 'poll_interval', 'ca', 'credential_file', 'status_interval', 'backoff_max'],
  network: ['public_interface', 'private_interface', 'listen_address'],
  ipsec: ['backend', 'strongswan_socket', 'charon_path', 'esp_encapsulation'],
  performance: ['worker_threads'],
  admin: ['socket', 'tcp', 'token_file'],
  state: ['dir'],
  ha: [
    'node_id',
    'local_address',
    'peer_address',
    'interface',
    'vips',
    'private_vips',
    'virtual_router_id',
    'priority',
    'preempt',
    'advert_interval_ms',
    'sync_key_file',
    'sync_port',
    'sync_interval_ms',
    'lease_messages',
    'charon_ha',
    'keepalived_path',
  ],
};

export const DEFAULT_HA_VIRTUAL_ROUTER_ID = 51;
export const DEFAULT_HA_PRIORITY = 100;
/** keepalived's own default advert_int (1 s). */
export const DEFAULT_HA_ADVERT_INTERVAL_MS = 1000;
export const DEFAULT_HA_SYNC_PORT = 4610;
export const DEFAULT_HA_SYNC_INTERVAL_MS = 100;
/** 2^20 messages: at 1 Mpps a lease lasts about a second without an ack. */
export const DEFAULT_HA_LEASE_MESSAGES = 1 << 20;
export const DEFAULT_KEEPALIVED_PATH = '/usr/sbin/keepalived';

/** Finds the line (1-based) of `[section]` or of `key` inside it, for messages. */
function lineOf(text: string, section: string, key?: string): number | undefined {
  const lines = text.split(/\r?\n/);
  let current = '';
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i]!;
    const h = /^\s*\[\s*([A-Za-z0-9_."-]+?)\s*\]/.exec(l);
    if (h && !l.trimStart().startsWith('[[')) {
      current = h[1]!.replace(/"/g, '');
      if (key === undefined && current === section) return i + 1;
      continue;
    }
    const k = /^\s*("?)([A-Za-z0-9_.-]+)\1\s*=/.exec(l);
    if (!k) continue;
    const full = current ? `${current}.${k[2]}` : k[2]!;
    if (key === undefined ? full === section || full.startsWith(`${section}.`) : full === `${section}.${key}`) return i + 1;
  }
  return undefined;
}

/** Issues whose reasons end with the file and line of the field they name. */
class LocatedIssues extends Issues {
  constructor(
    private readonly text: string,
    private readonly file: string,
  ) {
    super();
  }
  override add(path: string, reason: string): void {
    const [section, ...rest] = path.split('.');
    // `ha.vips[2]` is on the line of `vips`.
    const key = rest.length ? rest.join('.').replace(/\[\d+\]$/, '') : undefined;
    const line = lineOf(this.text, section!, key);
    super.add(path, `${reason} ${line === undefined ? `(in ${this.file})` : `(at ${this.file}:${line})`}`);
  }
}

/** Validates TOML text into LocalConfig with defaults filled in. Throws ConfigError with every issue. */
export function parseLocalToml(text: string, file = DEFAULT_LOCAL_TOML): LocalConfig {
  let doc: Obj;
  try {
    doc = parse(text) as Obj;
  } catch (e) {
    if (e instanceof TomlError) {
      const first = e.message.split('\n')[0] ?? 'syntax error';
      throw new ConfigError([{ path: `${file}:${e.line}:${e.column}`, reason: `TOML syntax error: ${first}` }]);
    }
    throw e;
  }
  refuseTestOnly(doc);
  const located = new LocatedIssues(text, file);
  const issues = located;
  for (const [name, value] of Object.entries(doc)) {
    const allowed = SECTIONS[name];
    if (!allowed) {
      located.add(name, `unknown section or key; expected one of the sections [${Object.keys(SECTIONS).join('], [')}]`);
      continue;
    }
    if (!isObj(value)) {
      located.add(name, `expected a table [${name}], got ${typeName(value)}`);
      continue;
    }
    located.unknownKeys(value, allowed, name);
  }
  const sec = (name: string): Obj => (isObj(doc[name]) ? doc[name] : {});
  const absPath = (v: unknown, path: string): string | undefined => {
    const s = located.string(v, path, { optional: true, expected: 'an absolute path' });
    if (s !== undefined && (!isAbsolute(s) || s.includes('\0'))) {
      located.add(path, `${show(s)} is not an absolute path`);
      return undefined;
    }
    return s;
  };

  const c = sec('controller');
  let url: string | undefined;
  if (c.url !== undefined) {
    let ok = false;
    if (typeof c.url === 'string') {
      try {
        const u = new URL(c.url);
        ok = u.protocol === 'https:' || u.protocol === 'http:';
      } catch {
        ok = false;
      }
    }
    if (ok) url = c.url as string;
    else located.add('controller.url', `${show(c.url)} is not valid; expected an http:// or https:// URL`);
  }
  const controllerToken = absPath(c.token_file, 'controller.token_file');
  // The API caps a long poll at 300 s (MAX_WAIT_S in src/controller/protocol.ts).
  const poll = located.integer(c.poll_interval, 'controller.poll_interval', 1, 300, { optional: true, unit: 'seconds' });
  const controllerCa = absPath(c.ca, 'controller.ca');
  const credentialFile = absPath(c.credential_file, 'controller.credential_file');
  const statusInterval = located.integer(c.status_interval, 'controller.status_interval', 1, 86400, { optional: true, unit: 'seconds' });
  const backoffMax = located.integer(c.backoff_max, 'controller.backoff_max', 1, 3600, { optional: true, unit: 'seconds' });

  const n = sec('network');
  const pub = located.string(n.public_interface, 'network.public_interface', { optional: true, re: IFNAME_RE, expected: IFNAME_EXPECTED });
  const priv = located.string(n.private_interface, 'network.private_interface', { optional: true, re: IFNAME_RE, expected: IFNAME_EXPECTED });
  let listen: string | undefined;
  if (n.listen_address !== undefined) {
    if (typeof n.listen_address === 'string' && isIpAddress(n.listen_address)) listen = n.listen_address;
    else located.add('network.listen_address', `${show(n.listen_address)} is not valid; expected an IPv4 or IPv6 address (no port)`);
  }

  const ip = sec('ipsec');
  if (ip.backend !== undefined && ip.backend !== 'strongswan') {
    located.add('ipsec.backend', `${show(ip.backend)} is not supported; expected "strongswan"`);
  }
  const sock = absPath(ip.strongswan_socket, 'ipsec.strongswan_socket');
  const charon = absPath(ip.charon_path, 'ipsec.charon_path');
  if (ip.esp_encapsulation !== undefined && ip.esp_encapsulation !== 'udp' && ip.esp_encapsulation !== 'auto') {
    located.add('ipsec.esp_encapsulation', `${show(ip.esp_encapsulation)} is not valid; expected "udp" (always ESP-in-UDP) or "auto" (ESP without UDP unless NAT is detected)`);
  }

  const perf = sec('performance');
  const workers = located.integer(perf.worker_threads, 'performance.worker_threads', 1, 256, { optional: true, unit: 'threads' });

  const a = sec('admin');
  let adminSocket: string | null | undefined;
  if (a.socket === false) adminSocket = null;
  else if (a.socket !== undefined && typeof a.socket !== 'string') {
    located.add('admin.socket', `expected an absolute path, or false for no unix socket, got ${typeName(a.socket)}`);
  } else adminSocket = absPath(a.socket, 'admin.socket');
  let tcp: { host: string; port: number } | undefined;
  if (a.tcp !== undefined) {
    const ep = typeof a.tcp === 'string' ? parseEndpoint(a.tcp) : undefined;
    if (ep) tcp = ep;
    else located.add('admin.tcp', `${show(a.tcp)} is not valid; expected "host:port" or "[ipv6]:port", e.g. "127.0.0.1:9180"`);
  }
  const adminToken = absPath(a.token_file, 'admin.token_file');
  if (a.tcp !== undefined && a.token_file === undefined) {
    located.add('admin.token_file', 'missing; the TCP listener (admin.tcp) requires a bearer token file');
  }
  if (adminSocket === null && a.tcp === undefined) {
    located.add('admin.socket', 'false leaves the admin API with nothing to listen on; set admin.tcp or keep the socket');
  }

  const st = sec('state');
  const stateDir = absPath(st.dir, 'state.dir');

  const ha = isObj(doc.ha) ? parseHa(doc.ha, located, absPath, { publicInterface: pub, privateInterface: priv, listenAddress: listen }) : undefined;

  if (issues.count > 0) throw new ConfigError(issues.list);
  return {
    controller: {
      ...(url !== undefined ? { url } : {}),
      ...(controllerToken !== undefined ? { tokenFile: controllerToken } : {}),
      pollInterval: poll ?? DEFAULT_POLL_INTERVAL,
      ...(controllerCa !== undefined ? { ca: controllerCa } : {}),
      ...(credentialFile !== undefined ? { credentialFile } : {}),
      statusInterval: statusInterval ?? DEFAULT_STATUS_INTERVAL,
      backoffMax: backoffMax ?? DEFAULT_BACKOFF_MAX,
    },
    network: {
      ...(pub !== undefined ? { publicInterface: pub } : {}),
      ...(priv !== undefined ? { privateInterface: priv } : {}),
      ...(listen !== undefined ? { listenAddress: listen } : {}),
    },
    ipsec: {
      backend: 'strongswan',
      strongswanSocket: sock ?? DEFAULT_STRONGSWAN_SOCKET,
      charonPath: charon ?? DEFAULT_CHARON_PATH,
      espEncapsulation: ip.esp_encapsulation === 'auto' ? 'auto' : 'udp',
    },
    performance: { workerThreads: workers ?? availableParallelism() },
    admin: {
      socket: adminSocket === undefined ? DEFAULT_ADMIN_SOCKET : adminSocket,
      ...(tcp ? { tcp } : {}),
      ...(adminToken !== undefined ? { tokenFile: adminToken } : {}),
    },
    state: { dir: stateDir ?? DEFAULT_STATE_DIR },
    ...(ha ? { ha } : {}),
  };
}

/** A host address with its prefix length ("192.0.2.10/24"), as VRRP adds it to the interface. */
function vipProblem(v: unknown): string | undefined {
  if (typeof v !== 'string') return `expected "address/prefix-length", got ${typeName(v)}`;
  const m = /^([^/]+)\/(\d{1,3})$/.exec(v);
  if (!m || !isIpAddress(m[1]!)) return `${show(v)} is not valid; expected "address/prefix-length", e.g. "192.0.2.10/24"`;
  const max = m[1]!.includes(':') ? 128 : 32;
  if (Number(m[2]) > max) return `${show(v)} has a prefix length over ${max}`;
  return undefined;
}

function parseHa(
  h: Obj,
  issues: Issues,
  absPath: (v: unknown, path: string) => string | undefined,
  network: { publicInterface: string | undefined; privateInterface: string | undefined; listenAddress: string | undefined },
): HaConfig | undefined {
  const before = issues.count;
  const nodeId = issues.integer(h.node_id, 'ha.node_id', 1, 255);
  const address = (v: unknown, path: string): string | undefined => {
    if (v === undefined) issues.add(path, 'missing; expected an IPv4 or IPv6 address (no port)');
    else if (typeof v !== 'string' || !isIpAddress(v)) issues.add(path, `${show(v)} is not valid; expected an IPv4 or IPv6 address (no port)`);
    else return v;
    return undefined;
  };
  const localAddress = address(h.local_address, 'ha.local_address');
  const peerAddress = address(h.peer_address, 'ha.peer_address');
  if (localAddress !== undefined && localAddress === peerAddress) issues.add('ha.peer_address', 'is the same as ha.local_address; expected the other node');
  if (localAddress !== undefined && peerAddress !== undefined && localAddress.includes(':') !== peerAddress.includes(':')) {
    issues.add('ha.peer_address', 'is not of the same address family as ha.local_address (VRRP runs over one family)');
  }
  let iface = issues.string(h.interface, 'ha.interface', { optional: true, re: IFNAME_RE, expected: IFNAME_EXPECTED });
  if (h.interface === undefined) {
    iface = network.publicInterface;
    if (iface === undefined) issues.add('ha.interface', 'missing; expected the interface VRRP runs on (or set network.public_interface)');
  }
  const vipList = (v: unknown, path: string, required: boolean): string[] => {
    const arr = issues.array(v, path, { optional: !required, nonEmpty: required });
    const out: string[] = [];
    (arr ?? []).forEach((x, i) => {
      const problem = vipProblem(x);
      if (problem) issues.add(`${path}[${i}]`, problem);
      else if (out.includes(x as string)) issues.add(`${path}[${i}]`, `${show(x)} is listed twice`);
      else out.push(x as string);
    });
    return out;
  };
  const vips = vipList(h.vips, 'ha.vips', true);
  const privateVips = vipList(h.private_vips, 'ha.private_vips', false);
  if (privateVips.length > 0 && network.privateInterface === undefined) {
    issues.add('ha.private_vips', 'needs network.private_interface, the interface these addresses float on');
  }
  // The data plane binds the VIP (IP_FREEBIND) so that replies leave from the service address.
  if (network.listenAddress !== undefined && vips.length > 0 && !vips.some((v) => v.split('/')[0] === network.listenAddress)) {
    issues.add('network.listen_address', `${show(network.listenAddress)} is not one of ha.vips; peers reach the pair on a VIP, and replies must leave from it`);
  }
  const virtualRouterId = issues.integer(h.virtual_router_id, 'ha.virtual_router_id', 1, 255, { optional: true });
  const priority = issues.integer(h.priority, 'ha.priority', 1, 254, { optional: true });
  let preempt = false;
  if (h.preempt !== undefined) {
    if (typeof h.preempt === 'boolean') preempt = h.preempt;
    else issues.add('ha.preempt', `expected true or false, got ${typeName(h.preempt)}`);
  }
  const advert = issues.integer(h.advert_interval_ms, 'ha.advert_interval_ms', 10, 40950, { optional: true, unit: 'milliseconds' });
  if (advert !== undefined && advert % 10 !== 0) issues.add('ha.advert_interval_ms', `${advert} is not valid; expected a multiple of 10 ms (VRRPv3 counts centiseconds)`);
  const syncKeyFile = absPath(h.sync_key_file, 'ha.sync_key_file');
  if (h.sync_key_file === undefined) issues.add('ha.sync_key_file', 'missing; expected the absolute path of a file with the 32-byte sync key in base64 (`head -c 32 /dev/urandom | base64`)');
  const syncPort = issues.integer(h.sync_port, 'ha.sync_port', 1, 65535, { optional: true });
  const syncIntervalMs = issues.integer(h.sync_interval_ms, 'ha.sync_interval_ms', 10, 10_000, { optional: true, unit: 'milliseconds' });
  const leaseMessages = issues.integer(h.lease_messages, 'ha.lease_messages', 1024, 2 ** 31, { optional: true, unit: 'messages' });
  let charonHa = true;
  if (h.charon_ha !== undefined) {
    if (typeof h.charon_ha === 'boolean') charonHa = h.charon_ha;
    else issues.add('ha.charon_ha', `expected true or false, got ${typeName(h.charon_ha)}`);
  }
  const keepalivedPath = absPath(h.keepalived_path, 'ha.keepalived_path');
  if (issues.count > before) return undefined;
  return {
    nodeId: nodeId!,
    localAddress: localAddress!,
    peerAddress: peerAddress!,
    interface: iface!,
    vips,
    privateVips,
    ...(privateVips.length > 0 ? { privateInterface: network.privateInterface! } : {}),
    virtualRouterId: virtualRouterId ?? DEFAULT_HA_VIRTUAL_ROUTER_ID,
    priority: priority ?? DEFAULT_HA_PRIORITY,
    preempt,
    advertIntervalMs: advert ?? DEFAULT_HA_ADVERT_INTERVAL_MS,
    syncKeyFile: syncKeyFile!,
    syncPort: syncPort ?? DEFAULT_HA_SYNC_PORT,
    syncIntervalMs: syncIntervalMs ?? DEFAULT_HA_SYNC_INTERVAL_MS,
    leaseMessages: leaseMessages ?? DEFAULT_HA_LEASE_MESSAGES,
    charonHa,
    keepalivedPath: keepalivedPath ?? DEFAULT_KEEPALIVED_PATH,
  };
}

/** The defaults, as an empty file gives them. */
export function defaultLocalConfig(): LocalConfig {
  return parseLocalToml('', '(defaults)');
}

/**
 * Reads and validates the TOML file. A missing file at the default path means "all defaults";
 * a missing file that was asked for explicitly is an error.
 */
export function loadLocalToml(path = DEFAULT_LOCAL_TOML): LocalConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' && path === DEFAULT_LOCAL_TOML) return defaultLocalConfig();
    throw new CvlanError('CVLAN_ERR_CONFIG', `cannot read ${path}: ${(e as Error).message}`, { cause: e, details: { path } });
  }
  return parseLocalToml(text, path);
}
