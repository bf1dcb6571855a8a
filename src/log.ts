/**
 * Structured JSON logs (pino). One line per event, `msg` as pino's message key, so the daemon's
 * `{"msg":"ready"}` line and every event below can be parsed by a log pipeline without regexes.
 *
 * Secrets are removed twice: pino's `redact` censors the well-known paths cheaply, and a
 * formatter walks the whole merge object so a secret nested deeper than the listed paths (a
 * whole tunnel config logged by mistake) is censored too. Neither can help a secret interpolated
 * into the message string: pass data as fields, never in `msg`.
 */

import pino, { type DestinationStream, type Level, type Logger } from 'pino';

/** Keys whose values are secrets wherever they appear. Compared case-insensitively. */
export const SECRET_KEYS = [
  'psk',
  'preshared_key',
  'presharedKey',
  'private_key',
  'privateKey',
  'secret',
  'secrets',
  'token',
  'password',
  'passphrase',
  'eap_password',
  'authorization',
  'key_material',
] as const;

export const REDACTED = '[redacted]';

const secretKeySet: ReadonlySet<string> = new Set(SECRET_KEYS.map((k) => k.toLowerCase()));

function redactPaths(): string[] {
  const paths: string[] = [];
  for (const k of SECRET_KEYS) paths.push(k, `*.${k}`, `*.*.${k}`);
  // The admin API's request serializer would carry the header here.
  paths.push('req.headers.authorization', 'headers.authorization');
  return paths;
}

/** Returns a copy of `value` with every secret-named key censored; cycles are cut, not followed. */
export function scrubSecrets(value: unknown, seen: WeakSet<object> = new WeakSet()): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (value instanceof Error) return value; // pino's err serializer handles these; CvlanError.details holds no secrets
  if (seen.has(value)) return '[circular]';
  seen.add(value);
  if (Array.isArray(value)) return value.map((v) => scrubSecrets(v, seen));
  if (Buffer.isBuffer(value) || ArrayBuffer.isView(value)) return REDACTED; // raw bytes are key material more often than not
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    out[k] = secretKeySet.has(k.toLowerCase()) ? REDACTED : scrubSecrets(v, seen);
  }
  return out;
}

export interface LoggerOptions {
  /** Minimum level written. Default `info`; env `CVLAN_LOG_LEVEL` is the daemon's business, not read here. */
  level?: Level | 'silent';
  /** Where lines go. Default stdout (pino's default destination). */
  destination?: DestinationStream;
  /** `name` field on every line. Default `cvlan-vrouter`. */
  name?: string;
}

const LEVELS: ReadonlySet<string> = new Set(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);

export function createLogger(options: LoggerOptions = {}): Logger {
  const level = options.level ?? 'info';
  if (!LEVELS.has(level)) {
    throw new TypeError(`log level must be one of ${[...LEVELS].join(', ')}; got ${String(level)}`);
  }
  const opts: pino.LoggerOptions = {
    level,
    name: options.name ?? 'cvlan-vrouter',
    redact: { paths: redactPaths(), censor: REDACTED },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: {
      log: (obj) => scrubSecrets(obj) as Record<string, unknown>,
    },
  };
  return options.destination ? pino(opts, options.destination) : pino(opts);
}

/** Stable event names: the `event` field of each line, for log queries and alerts. */
export const LogEvents = {
  tunnelUp: 'tunnel_up',
  tunnelDown: 'tunnel_down',
  authFailure: 'auth_failure',
  routingChange: 'routing_change',
  configApplied: 'config_applied',
  configRefused: 'config_refused',
  charonRestart: 'charon_restart',
  haFailover: 'ha_failover',
  weakPsk: 'weak_psk',
  bgpSession: 'bgp_session',
  bgpImportRefused: 'bgp_import_refused',
  deviceLost: 'device_lost',
  sasRemoved: 'sas_removed',
  haRole: 'ha_role',
  haFence: 'ha_fence',
  haSync: 'ha_sync',
} as const;

/**
 * Every event line carries `tenant` and `tunnel` (null when the event is not about one), so a
 * query by tenant or tunnel finds all of its lines.
 */
interface Scope {
  tenant: string | null;
  tunnel: string | null;
}

export interface EventLog {
  tunnelUp(e: { tenant: string; tunnel: string; type: 'ipsec' | 'wireguard'; remote?: string }): void;
  tunnelDown(e: { tenant: string; tunnel: string; type: 'ipsec' | 'wireguard'; reason: string }): void;
  /** `remote` is the peer's address or identity; the credential that failed is never logged. */
  authFailure(e: { tenant: string | null; tunnel: string | null; remote: string; method: string; reason: string }): void;
  /** `add`/`remove`/`replace`: the tenant's table; `announce`/`withdraw`: its BGP announcements. */
  routingChange(e: {
    tenant: string;
    tunnel: string | null;
    action: 'add' | 'remove' | 'replace' | 'announce' | 'withdraw';
    prefix: string;
    via: { kind: 'wireguard' | 'ipsec' | 'tun' | 'aggregate' | 'static'; id: string };
  }): void;
  configApplied(e: { tenant: string | null; version: string; changes: number }): void;
  configRefused(e: { tenant: string | null; version: string | null; reason: string; issues?: Array<{ path: string; reason: string }> }): void;
  charonRestart(e: { attempt: number; backoff_ms: number; exit_code: number | null; signal: string | null }): void;
  haFailover(e: { from_role: 'active' | 'standby'; to_role: 'active' | 'standby'; reason: string }): void;
  /** Every change of this node's HA role, with keepalived's VRRP state and the reason. */
  haRole(e: { from_role: 'active' | 'standby' | null; to_role: 'active' | 'standby'; vrrp: string; reason: string }): void;
  /** This node fenced itself (`fenced: true`, keepalived forced to FAULT) or lifted its fence. */
  haFence(e: { fenced: boolean; reason: string }): void;
  /** The sync channel to the peer came up or was lost, or refused a frame. */
  haSync(e: { state: 'up' | 'down' | 'rejected'; reason: string }): void;
  /** A tunnel accepted a PSK shorter than `min_bytes` (`allow_weak_psk`); the key is never logged. */
  weakPsk(e: { tenant: string; tunnel: string; min_bytes: number }): void;
  /** A BGP session of a tenant's speaker changed state (`Established`, or what it fell back to and why). */
  bgpSession(e: { tenant: string; neighbor: string; state: string; info: string }): void;
  /** A neighbour sent routes the tenant refuses: over its import limit, or outside its allowed prefixes. */
  bgpImportRefused(e: { tenant: string; neighbor: string; reason: 'limit' | 'filter'; count: number }): void;
  /** A data-plane device's TUN can no longer be used (deleted under the daemon, usually). */
  deviceLost(e: { tenant: string | null; device: string; kind: 'wireguard' | 'ipsec' | 'tun'; reason: string }): void;
  /** The data plane removed SAs on its own (orphans of a restarted charon not replaced in time). */
  sasRemoved(e: { tenant: string | null; tunnel: string | null; spis: string[]; reason: string }): void;
}

export function eventLog(logger: Logger): EventLog {
  const emit = (level: 'info' | 'warn' | 'error', event: string, scope: Scope, fields: object, msg: string) => {
    logger[level]({ event, tenant: scope.tenant, tunnel: scope.tunnel, ...fields }, msg);
  };
  return {
    tunnelUp: ({ tenant, tunnel, ...f }) => emit('info', LogEvents.tunnelUp, { tenant, tunnel }, f, 'tunnel up'),
    tunnelDown: ({ tenant, tunnel, ...f }) => emit('warn', LogEvents.tunnelDown, { tenant, tunnel }, f, 'tunnel down'),
    authFailure: ({ tenant, tunnel, ...f }) =>
      emit('warn', LogEvents.authFailure, { tenant, tunnel }, f, 'authentication failed'),
    routingChange: ({ tenant, tunnel, ...f }) =>
      emit('info', LogEvents.routingChange, { tenant, tunnel }, f, 'routing changed'),
    configApplied: ({ tenant, ...f }) =>
      emit('info', LogEvents.configApplied, { tenant, tunnel: null }, f, 'configuration applied'),
    configRefused: ({ tenant, ...f }) =>
      emit('error', LogEvents.configRefused, { tenant, tunnel: null }, f, 'configuration refused'),
    charonRestart: (f) => emit('warn', LogEvents.charonRestart, { tenant: null, tunnel: null }, f, 'charon restarted'),
    haFailover: (f) => emit('warn', LogEvents.haFailover, { tenant: null, tunnel: null }, f, 'HA failover'),
    haRole: (f) => emit('info', LogEvents.haRole, { tenant: null, tunnel: null }, f, `HA role ${f.to_role}`),
    haFence: (f) => emit('warn', LogEvents.haFence, { tenant: null, tunnel: null }, f, f.fenced ? 'HA fence up' : 'HA fence lifted'),
    haSync: (f) => emit(f.state === 'up' ? 'info' : 'warn', LogEvents.haSync, { tenant: null, tunnel: null }, f, `HA sync ${f.state}`),
    weakPsk: ({ tenant, tunnel, ...f }) => emit('warn', LogEvents.weakPsk, { tenant, tunnel }, f, 'weak pre-shared key accepted (allow_weak_psk)'),
    bgpSession: ({ tenant, ...f }) =>
      emit(f.state === 'Established' ? 'info' : 'warn', LogEvents.bgpSession, { tenant, tunnel: null }, f, `BGP session ${f.state}`),
    bgpImportRefused: ({ tenant, ...f }) => emit('warn', LogEvents.bgpImportRefused, { tenant, tunnel: null }, f, 'BGP routes refused'),
    deviceLost: ({ tenant, ...f }) => emit('error', LogEvents.deviceLost, { tenant, tunnel: null }, f, 'data-plane device lost'),
    sasRemoved: ({ tenant, tunnel, ...f }) => emit('warn', LogEvents.sasRemoved, { tenant, tunnel }, f, 'SAs removed'),
  };
}
