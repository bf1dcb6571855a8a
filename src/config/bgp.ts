/**
 * The `bgp` section of a tenant document: who the tenant's BGP neighbours are and what the vrouter
 * tells them. Validated here like every other field (path + reason, all issues at once); rendered
 * for BIRD by ../routing/bird-conf.ts.
 *
 *   "bgp": {
 *     "asn": 65001,                          local AS of this tenant's sessions (RFC 6793: 1..4294967295)
 *     "router_id": "192.0.2.1",              optional, per tenant (default: BIRD picks one per instance)
 *     "neighbors": [{
 *       "name": "vpc-router",                unique in the tenant; names the session in logs and metrics
 *       "address": "192.0.2.254", "asn": 65000,
 *       "local_address": "192.0.2.1",        optional source address (two tenants towards one router need two)
 *       "hold_time": 9,                      s, 3..65535 (RFC 4271 §4.2; 0 is not offered: liveness matters here)
 *       "password": "…",                     optional TCP MD5 (RFC 2385); a secret, never logged
 *       "import": { "max_prefixes": 100, "allow": ["10.50.0.0/16"], "install": true }   optional: learn
 *                                            routes (and with `install`, route by them: one tenant only)
 *     }],
 *     "announce": {
 *       "ipsec": true, "wireguard": true, "tun": true,   which reachable prefixes to announce (default all)
 *       "aggregate": ["10.0.0.0/8"],                     announce this instead of the reachable prefixes inside it
 *       "static": ["198.51.100.10/32"],                  announced while the vrouter runs (e.g. an anycast
 *                                                        service address behind ECMP: a dead node's path goes)
 *       "communities": ["65001:100"], "med": 50          attached to every announcement
 *     }
 *   }
 */

import { ID_EXPECTED, ID_RE, Issues, at, isIpAddress, parsePrefix, show, type Obj, type Prefix } from './normalize.js';
import { Secret, type TenantBgpSpec, type TenantSpec } from './model.js';

const BGP_KEYS = ['asn', 'router_id', 'neighbors', 'announce'] as const;
const NEIGHBOR_KEYS = ['name', 'address', 'asn', 'local_address', 'hold_time', 'password', 'import'] as const;
const IMPORT_KEYS = ['max_prefixes', 'allow', 'install'] as const;
const ANNOUNCE_KEYS = ['ipsec', 'wireguard', 'tun', 'aggregate', 'static', 'communities', 'med'] as const;

/** RFC 6793 four-octet AS numbers; 0 and 4294967295 are reserved (RFC 7607, RFC 7300). */
const ASN_MIN = 1;
const ASN_MAX = 4294967294;
/** s; RFC 4271 §4.2: 0 or at least 3. Zero (no keepalives) is refused: a dead tunnel's routes must go. */
const HOLD_MIN = 3;
const HOLD_MAX = 65535;
/** Default hold time, s: short, so a vrouter that dies stops attracting traffic within seconds. */
export const DEFAULT_HOLD_TIME = 9;
/** Largest `max_prefixes`: a tenant table is not a full Internet table. */
const MAX_PREFIXES_MAX = 1_000_000;
/** Standard communities (RFC 1997): two 16-bit halves. */
const COMMUNITY_RE = /^(\d{1,5}):(\d{1,5})$/;
/** RFC 2385 TCP MD5 keys are at most 80 bytes (the Linux TCP_MD5SIG_MAXKEYLEN). */
const PASSWORD_MAX = 80;

/**
 * Parses `raw` (the value of `bgp`) at `path`. `made` collects every Secret created, so the
 * caller can dispose of them when the document is refused.
 */
export function parseBgp(raw: unknown, path: string, issues: Issues, made: Secret[]): TenantBgpSpec | undefined {
  const o = issues.object(raw, path);
  if (!o) return undefined;
  const before = issues.count;
  issues.unknownKeys(o, BGP_KEYS, path);
  const asn = issues.integer(o.asn, at(path, 'asn'), ASN_MIN, ASN_MAX, { unit: 'AS number' });
  const routerId = o.router_id === undefined ? undefined : ipv4(o.router_id, at(path, 'router_id'), issues);

  const neighbors: TenantBgpSpec['neighbors'][number][] = [];
  const names = new Map<string, string>();
  issues.array(o.neighbors, at(path, 'neighbors'), { nonEmpty: true })?.forEach((n, i) => {
    const np = at(at(path, 'neighbors'), i);
    // Duplicates are named even when the neighbour has other problems.
    const name = (n as { name?: unknown } | null)?.name;
    const prev = typeof name === 'string' ? names.get(name) : undefined;
    if (prev !== undefined) issues.add(at(np, 'name'), `${show(name)} is already the neighbour at ${prev}; names are unique in a tenant`);
    else if (typeof name === 'string') names.set(name, np);
    const nb = parseNeighbor(n, np, issues, made);
    if (!nb) return;
    const same = neighbors.findIndex((x) => x.address === nb.address);
    if (same >= 0) issues.add(at(np, 'address'), `${show(nb.address)} is already the neighbour at ${at(at(path, 'neighbors'), same)}; one session per neighbour address`);
    neighbors.push(nb);
  });
  // BIRD binds its listening socket to the source address only if every session names one.
  if (neighbors.some((n) => n.localAddress !== undefined) && neighbors.some((n) => n.localAddress === undefined)) {
    issues.add(at(path, 'neighbors'), 'either every neighbour gives local_address or none does');
  }

  const announce = parseAnnounce(o.announce, at(path, 'announce'), issues);
  if (issues.count > before || asn === undefined || announce === undefined) return undefined;
  return { asn, ...(routerId !== undefined ? { routerId } : {}), neighbors, announce };
}

/**
 * Each BGP tenant gets a BGP speaker of its own (a separate BIRD: one BIRD cannot hold two
 * sessions to the same neighbour address, and a process per tenant keeps them apart like a VRF).
 * Their listening sockets then bind the tenant's source address, so with several BGP tenants every
 * neighbour names a `local_address`, and no address serves two tenants.
 */
export function checkBgpAcrossTenants(tenants: readonly TenantSpec[], tenantPaths: ReadonlyMap<string, string>, issues: Issues): void {
  const pathOf = (t: TenantSpec): string => {
    const base = tenantPaths.get(t.id);
    return base === undefined || base === '(document)' ? '' : base;
  };
  // Learned routes go into the namespace's one routing table, which only a vrouter of one tenant has to itself.
  if (tenants.length > 1) {
    for (const t of tenants) {
      t.bgp?.neighbors.forEach((n, i) => {
        if (n.import?.install) {
          issues.add(at(at(at(at(at(pathOf(t), 'bgp'), 'neighbors'), i), 'import'), 'install'), "needs a vrouter of one tenant: with several, the namespace's routing table cannot keep their learned routes apart");
        }
      });
    }
  }
  const speakers = tenants.filter((t) => t.bgp !== undefined);
  if (speakers.length < 2) return;
  const owner = new Map<string, string>();
  for (const t of speakers) {
    const tp = pathOf(t);
    t.bgp?.neighbors.forEach((n, i) => {
      const np = at(at(at(tp, 'bgp'), 'neighbors'), i);
      if (n.localAddress === undefined) {
        issues.add(at(np, 'local_address'), 'missing; with BGP in several tenants each session needs its own source address (each tenant has its own BGP speaker)');
        return;
      }
      const prev = owner.get(n.localAddress);
      if (prev !== undefined && prev !== t.id) issues.add(at(np, 'local_address'), `${show(n.localAddress)} is already a BGP source address of tenant ${show(prev)}; tenants need distinct addresses`);
      else owner.set(n.localAddress, t.id);
    });
  }
}

function parseNeighbor(raw: unknown, np: string, issues: Issues, made: Secret[]): TenantBgpSpec['neighbors'][number] | undefined {
  const o = issues.object(raw, np);
  if (!o) return undefined;
  const before = issues.count;
  issues.unknownKeys(o, NEIGHBOR_KEYS, np);
  const name = issues.string(o.name, at(np, 'name'), { re: ID_RE, expected: ID_EXPECTED });
  const address = ipAddress(o.address, at(np, 'address'), issues);
  const asn = issues.integer(o.asn, at(np, 'asn'), ASN_MIN, ASN_MAX, { unit: 'AS number' });
  const localAddress = o.local_address === undefined ? undefined : ipAddress(o.local_address, at(np, 'local_address'), issues);
  if (address !== undefined && localAddress !== undefined && address.includes(':') !== localAddress.includes(':')) {
    issues.add(at(np, 'local_address'), `${show(localAddress)} is not of the same address family as address ${show(address)}`);
  }
  const holdTime = issues.integer(o.hold_time, at(np, 'hold_time'), HOLD_MIN, HOLD_MAX, { optional: true, unit: 'seconds' });
  let password: Secret | undefined;
  if (o.password !== undefined) {
    const text = issues.string(o.password, at(np, 'password'), { secret: true, max: PASSWORD_MAX, expected: `a TCP MD5 key of 1-${PASSWORD_MAX} characters` });
    // BIRD's configuration language quotes strings with "…" and has no escape for a quote.
    if (text !== undefined && /["\\\p{Cc}]/u.test(text)) {
      issues.add(at(np, 'password'), 'invalid value (not shown: secret); expected no quote, backslash or control character');
    } else if (text !== undefined) {
      password = Secret.fromText(text, 'plain');
      made.push(password);
    }
  }
  let importSpec: { maxPrefixes: number; allow: readonly string[]; install: boolean } | undefined;
  if (o.import !== undefined) {
    const ip = at(np, 'import');
    const im = issues.object(o.import, ip);
    if (im) {
      issues.unknownKeys(im, IMPORT_KEYS, ip);
      const maxPrefixes = issues.integer(im.max_prefixes, at(ip, 'max_prefixes'), 1, MAX_PREFIXES_MAX, { unit: 'routes' });
      const allow = prefixes(im.allow, at(ip, 'allow'), issues, true);
      if (im.install !== undefined && typeof im.install !== 'boolean') issues.add(at(ip, 'install'), `${show(im.install)} is not valid; expected true or false`);
      if (maxPrefixes !== undefined && allow !== undefined) importSpec = { maxPrefixes, allow: allow.map((p) => p.text), install: im.install === true };
    }
  }
  if (issues.count > before || name === undefined || address === undefined || asn === undefined) return undefined;
  return {
    name,
    address,
    asn,
    ...(localAddress !== undefined ? { localAddress } : {}),
    holdTime: holdTime ?? DEFAULT_HOLD_TIME,
    ...(password ? { password } : {}),
    ...(importSpec ? { import: importSpec } : {}),
  };
}

function parseAnnounce(raw: unknown, ap: string, issues: Issues): TenantBgpSpec['announce'] | undefined {
  const o: Obj | undefined = raw === undefined ? {} : issues.object(raw, ap);
  if (!o) return undefined;
  const before = issues.count;
  issues.unknownKeys(o, ANNOUNCE_KEYS, ap);
  const flag = (k: 'ipsec' | 'wireguard' | 'tun'): boolean => {
    const v = o[k];
    if (v === undefined) return true;
    if (typeof v !== 'boolean') issues.add(at(ap, k), `${show(v)} is not valid; expected true or false`);
    return v === true;
  };
  const sources = { ipsec: flag('ipsec'), wireguard: flag('wireguard'), tun: flag('tun') };
  const aggregate = prefixes(o.aggregate, at(ap, 'aggregate'), issues, false) ?? [];
  const always = prefixes(o.static, at(ap, 'static'), issues, false) ?? [];
  const communities: [number, number][] = [];
  issues.array(o.communities, at(ap, 'communities'), { optional: true })?.forEach((c, i) => {
    const m = typeof c === 'string' ? COMMUNITY_RE.exec(c) : null;
    const hi = m ? Number(m[1]) : NaN;
    const lo = m ? Number(m[2]) : NaN;
    if (!m || hi > 65535 || lo > 65535) issues.add(at(at(ap, 'communities'), i), `${show(c)} is not a community; expected "ASN:value" with both parts 0..65535 (RFC 1997)`);
    else communities.push([hi, lo]);
  });
  const med = issues.integer(o.med, at(ap, 'med'), 0, 4294967295, { optional: true, unit: 'MULTI_EXIT_DISC' });
  if (issues.count > before) return undefined;
  return { ...sources, aggregate: aggregate.map((p) => p.text), static: always.map((p) => p.text), communities, ...(med !== undefined ? { med } : {}) };
}

function prefixes(v: unknown, path: string, issues: Issues, nonEmpty: boolean): Prefix[] | undefined {
  const list = issues.array(v, path, { optional: !nonEmpty, nonEmpty });
  if (!list) return undefined;
  const out: Prefix[] = [];
  list.forEach((s, i) => {
    if (typeof s !== 'string') return issues.add(at(path, i), `${show(s)} is not a prefix; expected a string like "10.0.0.0/16"`);
    const r = parsePrefix(s);
    if ('error' in r) issues.add(at(path, i), r.error);
    else out.push(r.prefix);
  });
  return out.length === list.length ? out : undefined;
}

function ipAddress(v: unknown, path: string, issues: Issues): string | undefined {
  const s = issues.string(v, path, { expected: 'an IPv4 or IPv6 address' });
  if (s === undefined) return undefined;
  if (!isIpAddress(s)) {
    issues.add(path, `${show(s)} is not an IPv4 or IPv6 address`);
    return undefined;
  }
  return s;
}

function ipv4(v: unknown, path: string, issues: Issues): string | undefined {
  const s = ipAddress(v, path, issues);
  if (s !== undefined && s.includes(':')) {
    issues.add(path, `${show(s)} is not valid; a BGP router id is an IPv4 address (RFC 4271 §4.2)`);
    return undefined;
  }
  return s;
}
