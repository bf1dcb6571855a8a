/**
 * Configuration of the test/benchmark bed: one TUN device, one UDP port and the plain,
 * unencrypted transport between cvlan-vrouter instances. It exists to measure and test the
 * data plane itself; the production loader (`./production.ts`) refuses it.
 *
 * ```json
 * {"transport":"plain-insecure-test-only",
 *  "tun":{"name":"cvt0","address":"10.77.0.1/24","mtu":1420},
 *  "listen_port":7000,"workers":2,
 *  "peers":[{"endpoint":"192.168.77.2:7000","allowed_ips":["10.77.0.2/32"]}]}
 * ```
 */
import ipaddr from 'ipaddr.js';
import { ConfigError, type ConfigIssue } from '../errors.js';

export const TEST_ONLY_TRANSPORT = 'plain-insecure-test-only';

export interface TestbedConfig {
  transport: typeof TEST_ONLY_TRANSPORT;
  tun: {
    /** Interface name, 1-15 characters. */
    name: string;
    /** Addresses (CIDR, IPv4 or IPv6) put on the TUN interface. */
    addresses: string[];
    /** Bytes. Default 1420. */
    mtu: number;
  };
  /** UDP port, 0 = any. */
  listen_port: number;
  /** Worker threads; default: number of CPUs. */
  workers?: number;
  peers: { endpoint: string; allowed_ips: string[] }[];
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

export function isCidr(s: unknown): s is string {
  if (typeof s !== 'string') return false;
  try {
    ipaddr.parseCIDR(s);
    return true;
  } catch {
    return false;
  }
}

export function isEndpoint(s: unknown): s is string {
  if (typeof s !== 'string') return false;
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(s);
  if (!m) return false;
  const host = m[1] ?? m[2] ?? '';
  return ipaddr.isValid(host) && Number(m[3]) <= 65535 && (m[1] === undefined || ipaddr.parse(host).kind() === 'ipv6');
}

function unknownKeys(o: Obj, allowed: string[], path: string, issues: ConfigIssue[]): void {
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k)) issues.push({ path: path ? `${path}.${k}` : k, reason: 'unknown field' });
  }
}

/** Validates a parsed testbed document; throws ConfigError naming every bad field. */
export function parseTestbedConfig(doc: unknown): TestbedConfig {
  const issues: ConfigIssue[] = [];
  if (!isObj(doc)) throw new ConfigError([{ path: '', reason: 'expected a JSON object' }]);
  unknownKeys(doc, ['transport', 'tun', 'listen_port', 'workers', 'peers'], '', issues);
  if (doc.transport !== TEST_ONLY_TRANSPORT) {
    issues.push({ path: 'transport', reason: `must be "${TEST_ONLY_TRANSPORT}"` });
  }
  const tun = isObj(doc.tun) ? doc.tun : undefined;
  if (!tun) issues.push({ path: 'tun', reason: 'expected an object' });
  else {
    unknownKeys(tun, ['name', 'address', 'addresses', 'mtu'], 'tun', issues);
    if (typeof tun.name !== 'string' || !/^[^\s/:]{1,15}$/.test(tun.name)) {
      issues.push({ path: 'tun.name', reason: 'expected an interface name of 1-15 characters without "/", ":" or spaces' });
    }
    const addrs = tun.addresses ?? (tun.address === undefined ? [] : [tun.address]);
    if (!Array.isArray(addrs)) issues.push({ path: 'tun.addresses', reason: 'expected an array of CIDRs' });
    else addrs.forEach((a, i) => isCidr(a) || issues.push({ path: `tun.addresses[${i}]`, reason: `${JSON.stringify(a)} is not a CIDR` }));
    if (tun.mtu !== undefined && !(Number.isInteger(tun.mtu) && (tun.mtu as number) >= 576 && (tun.mtu as number) <= 65535)) {
      issues.push({ path: 'tun.mtu', reason: 'expected an integer 576..65535' });
    }
  }
  if (!(Number.isInteger(doc.listen_port) && (doc.listen_port as number) >= 0 && (doc.listen_port as number) <= 65535)) {
    issues.push({ path: 'listen_port', reason: 'expected an integer 0..65535' });
  }
  if (doc.workers !== undefined && !(Number.isInteger(doc.workers) && (doc.workers as number) >= 1 && (doc.workers as number) <= 64)) {
    issues.push({ path: 'workers', reason: 'expected an integer 1..64' });
  }
  if (!Array.isArray(doc.peers)) issues.push({ path: 'peers', reason: 'expected an array' });
  else {
    doc.peers.forEach((p: unknown, i) => {
      if (!isObj(p)) return issues.push({ path: `peers[${i}]`, reason: 'expected an object' });
      unknownKeys(p, ['endpoint', 'allowed_ips'], `peers[${i}]`, issues);
      if (!isEndpoint(p.endpoint)) issues.push({ path: `peers[${i}].endpoint`, reason: 'expected "ip:port" or "[ipv6]:port"' });
      if (!Array.isArray(p.allowed_ips)) issues.push({ path: `peers[${i}].allowed_ips`, reason: 'expected an array of CIDRs' });
      else p.allowed_ips.forEach((a, j) => isCidr(a) || issues.push({ path: `peers[${i}].allowed_ips[${j}]`, reason: `${JSON.stringify(a)} is not a CIDR` }));
    });
  }
  if (issues.length) throw new ConfigError(issues);
  const t = doc.tun as Obj;
  return {
    transport: TEST_ONLY_TRANSPORT,
    tun: {
      name: t.name as string,
      addresses: (t.addresses ?? (t.address === undefined ? [] : [t.address])) as string[],
      mtu: (t.mtu as number | undefined) ?? 1420,
    },
    listen_port: doc.listen_port as number,
    ...(doc.workers === undefined ? {} : { workers: doc.workers as number }),
    peers: (doc.peers as { endpoint: string; allowed_ips: string[] }[]).map((p) => ({ endpoint: p.endpoint, allowed_ips: [...p.allowed_ips] })),
  };
}
