/**
 * strongswan.conf for one charon instance. Written fresh for every start, never merged with the
 * system's /etc/strongswan.conf: the instance loads exactly the plugins listed (charon.load, which
 * charon honours when load_modular is off, its default), so a plugin a package happens to install
 * (bypass-lan, ha, ...) cannot change behaviour behind our back.
 */

import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { CvlanError } from '../errors.js';

/**
 * Plugins of the production instance: crypto, certificates, VICI, and the project's own `cvlan`
 * plugin, which provides kernel-ipsec (SAs go to the data plane) and the IKE socket. Order is
 * priority: `cvlan` precedes kernel-netlink so its kernel-ipsec wins; kernel-netlink stays for
 * kernel-net (addresses, routes).
 */
export const PLUGINS_CVLAN: readonly string[] = Object.freeze([
  'random', 'nonce', 'openssl', 'aes', 'gcm', 'sha1', 'sha2', 'hmac', 'kdf', 'curve25519',
  'pem', 'pkcs1', 'pkcs8', 'x509', 'pubkey', 'revocation', 'constraints',
  'eap-identity', 'eap-mschapv2', 'eap-md5',
  'cvlan', 'kernel-netlink', 'vici',
]);

/**
 * Plugins of a stock userspace-ESP charon (the "legacy router" in tests): kernel-libipsec does ESP
 * through a TUN device (ipsec0) because this kernel has no ESP; kernel-netlink must stay for
 * kernel-net. bypass-lan and ha are absent on purpose (bypass-lan routes the underlay into ipsec0).
 */
export const PLUGINS_KERNEL_LIBIPSEC: readonly string[] = Object.freeze([
  'random', 'nonce', 'openssl', 'aes', 'gcm', 'sha1', 'sha2', 'hmac', 'kdf', 'curve25519',
  'pem', 'pkcs1', 'pkcs8', 'x509', 'pubkey', 'revocation', 'constraints',
  'kernel-libipsec', 'kernel-netlink', 'socket-default', 'vici',
]);

export type ConfScalar = string | number | boolean;

export interface CharonConfOptions {
  /** Absolute path of this instance's VICI unix socket. */
  viciSocket: string;
  /** Plugins to load, in priority order (see PLUGINS_CVLAN, PLUGINS_KERNEL_LIBIPSEC). */
  plugins: readonly string[];
  /** Path of the data plane's socket for the `cvlan` plugin (`charon.plugins.cvlan.socket`). */
  cvlanSocket?: string;
  /** Extra `charon.plugins.<name>.<key>` settings. */
  pluginSettings?: Readonly<Record<string, Readonly<Record<string, ConfScalar>>>>;
  /** Extra top-level `charon.<key>` settings (e.g. `install_routes`, `retransmit_tries`). */
  charonSettings?: Readonly<Record<string, ConfScalar>>;
  /** UDP port for IKE. Default 500. */
  port?: number;
  /** UDP port for NAT-T. Default 4500. */
  portNatT?: number;
  /**
   * charon's log level on stderr, -1..2. Default 1. Levels 3 and 4 are refused: they dump raw
   * IKE payloads and private key material, and charon's output ends up in our logs.
   */
  logLevel?: -1 | 0 | 1 | 2;
  /** Levels of single subsystems (`net`, `enc`, `ike`, …) over `logLevel`, -1..2. */
  logGroups?: Readonly<Record<string, -1 | 0 | 1 | 2>>;
  /**
   * The IKE subsystem's lines are written by the cvlan plugin (on charon's stdout, read like
   * stderr) at the level they would have had, without the routine lines of liveness checks
   * (`sending DPD request`, `sending keep alive to …`); charon's own stderr logger leaves IKE
   * out. With 2000 idle tunnels and 30 s DPD those were ~67 lines a second, written by charon and
   * read by the daemon only to be discarded (`native/strongswan/cvlan_ike_log.c`).
   */
  quietLiveness?: boolean;
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
// strongswan.conf treats { } # = and line breaks as syntax; anything else is a plain value.
const VALUE_RE = /^[^\n\r{}#="\\]*$/;

function confError(reason: string): CvlanError {
  return new CvlanError('CVLAN_ERR_CONFIG', `strongswan.conf: ${reason}`);
}

function name(n: string, what: string): string {
  if (!NAME_RE.test(n)) throw confError(`invalid ${what} name "${n}"`);
  return n;
}

function value(v: ConfScalar, what: string): string {
  const s = typeof v === 'boolean' ? (v ? 'yes' : 'no') : String(v);
  if (typeof v === 'number' && !Number.isFinite(v)) throw confError(`${what} must be a finite number`);
  if (!VALUE_RE.test(s)) throw confError(`${what} contains a character strongswan.conf cannot hold`);
  return s;
}

function port(p: number | undefined, fallback: number, what: string): number {
  const v = p ?? fallback;
  if (!Number.isInteger(v) || v < 0 || v > 65535) throw confError(`${what} must be a port number 0..65535`);
  return v;
}

/** Renders the strongswan.conf text. Pure; validates every name and value. */
export function renderStrongswanConf(opts: CharonConfOptions): string {
  if (!path.isAbsolute(opts.viciSocket)) throw confError('viciSocket must be an absolute path');
  if (opts.plugins.length === 0) throw confError('plugins must not be empty');
  const logLevel = opts.logLevel ?? 1;
  if (![-1, 0, 1, 2].includes(logLevel)) throw confError('logLevel must be -1, 0, 1 or 2');
  const levels = new Map(Object.entries(opts.logGroups ?? {}));
  for (const [g, l] of levels) {
    if (!/^[a-z]{3}$/.test(g)) throw confError(`invalid log subsystem "${g}"`);
    if (![-1, 0, 1, 2].includes(l)) throw confError(`the level of log subsystem ${g} must be -1, 0, 1 or 2`);
  }
  const plugins = opts.plugins.map((p) => name(p, 'plugin'));
  if (!plugins.includes('vici')) throw confError('the vici plugin must be loaded: it is how charon is controlled');
  const ikeLevel = levels.get('ike') ?? logLevel;
  const ikeByPlugin = opts.quietLiveness === true && ikeLevel >= 0;
  if (ikeByPlugin) {
    if (!plugins.includes('cvlan')) throw confError('quietLiveness needs the cvlan plugin: it writes the IKE lines');
    levels.set('ike', -1);
  }
  const groups = [...levels].map(([g, l]) => `      ${g} = ${l}`);

  const settings = new Map<string, Record<string, ConfScalar>>();
  for (const [p, kv] of Object.entries(opts.pluginSettings ?? {})) settings.set(name(p, 'plugin'), { ...kv });
  settings.set('vici', { ...(settings.get('vici') ?? {}), socket: `unix://${opts.viciSocket}` });
  if (opts.cvlanSocket !== undefined) {
    if (!path.isAbsolute(opts.cvlanSocket)) throw confError('cvlanSocket must be an absolute path');
    settings.set('cvlan', { ...(settings.get('cvlan') ?? {}), socket: opts.cvlanSocket });
  }
  if (ikeByPlugin) settings.set('cvlan', { ...(settings.get('cvlan') ?? {}), ike_log_level: ikeLevel });

  const lines: string[] = [
    '# Generated by cvlan-vrouter for one charon instance; rewritten at every start.',
    'charon {',
    `  load = ${plugins.join(' ')}`,
    `  port = ${port(opts.port, 500, 'port')}`,
    `  port_nat_t = ${port(opts.portNatT, 4500, 'portNatT')}`,
  ];
  for (const [k, v] of Object.entries(opts.charonSettings ?? {})) {
    lines.push(`  ${name(k, 'setting')} = ${value(v, `charon.${k}`)}`);
  }
  lines.push(
    '  filelog {',
    '    stderr {',
    `      default = ${logLevel}`,
    ...groups,
    '      ike_name = yes',
    '    }',
    '  }',
    '  plugins {',
  );
  for (const [p, kv] of settings) {
    lines.push(`    ${p} {`);
    for (const [k, v] of Object.entries(kv)) lines.push(`      ${name(k, 'setting')} = ${value(v, `plugins.${p}.${k}`)}`);
    lines.push('    }');
  }
  lines.push('  }', '}', '');
  return lines.join('\n');
}

/** Writes the file (mode 0600: it names sockets, and owners may add settings) and returns its path. */
export async function writeStrongswanConf(file: string, opts: CharonConfOptions): Promise<string> {
  const text = renderStrongswanConf(opts);
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  await writeFile(file, text, { mode: 0o600 });
  return file;
}
