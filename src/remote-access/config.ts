/**
 * A tenant's `remote_access` section of the controller JSON → `RemoteAccessSpec`
 * (`../config/model.ts`). Called by `../config/controller.ts` for each tenant; every problem is an
 * issue naming the field and the reason, secrets never shown.
 */
import { X509Certificate } from 'node:crypto';
import {
  IDENTITY_RE,
  parseProposals,
  prefixList,
  readCert,
  readPrivateKey,
  readSecret,
  type ParseControllerOptions,
} from '../config/controller.js';
import { ID_EXPECTED, ID_RE, Issues, at, isIpAddress, parsePrefix, show, type Prefix } from '../config/normalize.js';
import type { NextHop, RemoteAccessAuth, RemoteAccessPoolSpec, RemoteAccessSpec, Secret } from '../config/model.js';
import { normalizeSerial, revokedSerials } from './crl.js';

const KEYS = [
  'id', 'local_id', 'auth', 'certificate', 'private_key', 'ca', 'crl', 'pools', 'local_subnets', 'users', 'devices', 'max_clients', 'proposals',
] as const;
const POOL_KEYS = ['name', 'range', 'dns', 'search_domains'] as const;
const AUTHS: readonly RemoteAccessAuth[] = ['eap', 'pubkey', 'pubkey+eap'];
/** The default cap on concurrent clients of a tenant. */
export const DEFAULT_MAX_CLIENTS = 1024;
/** RFC 1035 host names, for search domains. */
const DOMAIN_RE = /^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

/** Names that must be unique on the vrouter, across tenants. */
export interface RemoteAccessWide {
  tunnelIds: Map<string, string>;
  raLocalIds: Map<string, string>;
  raPools: Map<string, string>;
  raUsers: Map<string, string>;
}

/**
 * Addresses charon leases from a pool of `prefix` (`mem_pool.c`: the network and broadcast
 * addresses are skipped; at most 2^31 addresses).
 */
export function poolSize(range: string): number {
  const len = Number(range.split('/')[1]);
  const size = 2 ** Math.min((range.includes(':') ? 128 : 32) - len, 31);
  return size > 2 ? size - 2 : 1;
}

export function parseRemoteAccess(
  v: unknown,
  p: string,
  tenantId: string,
  issues: Issues,
  made: Secret[],
  opts: ParseControllerOptions,
  wide: RemoteAccessWide,
  claim: (prefix: Prefix, via: NextHop, path: string) => void,
): RemoteAccessSpec | undefined {
  const o = issues.object(v, p);
  if (!o) return undefined;
  const before = issues.count;
  issues.unknownKeys(o, KEYS, p);
  const id = issues.string(o.id ?? `ra-${tenantId}`, at(p, 'id'), { re: ID_RE, expected: ID_EXPECTED });
  if (id !== undefined) {
    const prev = wide.tunnelIds.get(id);
    if (prev !== undefined) issues.add(at(p, 'id'), `${show(id)} is already used by ${prev}; it names a charon connection and is unique on the vrouter with the tunnel ids`);
    else wide.tunnelIds.set(id, p);
  }
  const localId = issues.string(o.local_id, at(p, 'local_id'), { re: IDENTITY_RE, expected: 'our IKE identity towards the clients (the server certificate\'s subjectAltName), up to 255 characters' });
  if (localId !== undefined) {
    const prev = wide.raLocalIds.get(localId);
    if (prev !== undefined) issues.add(at(p, 'local_id'), `${show(localId)} is already the remote-access identity at ${prev}; clients pick their tenant by it, so it is unique on the vrouter`);
    else wide.raLocalIds.set(localId, at(p, 'local_id'));
  }
  const auth = (o.auth ?? 'eap') as RemoteAccessAuth;
  if (!AUTHS.includes(auth)) issues.add(at(p, 'auth'), `${show(o.auth)} is not supported; expected "eap" (EAP-MSCHAPv2 users), "pubkey" (device certificates) or "pubkey+eap" (both, RFC 4739)`);
  const certificate = readCert(o.certificate, at(p, 'certificate'), issues, false, 'clients verify the vrouter by its certificate; give certificate and private_key');
  const privateKey = readPrivateKey(o.private_key, at(p, 'private_key'), issues, made, opts, false);
  const withCerts = auth === 'pubkey' || auth === 'pubkey+eap';
  const withEap = auth === 'eap' || auth === 'pubkey+eap';
  const ca = readCert(o.ca, at(p, 'ca'), issues, !withCerts, `auth ${show(auth)} needs the tenant's CA that issues device certificates`);
  const caX509 = ca?.kind === 'pem' ? new X509Certificate(ca.pem) : undefined;

  let crl: string | undefined;
  if (o.crl !== undefined) {
    if (typeof o.crl !== 'string') issues.add(at(p, 'crl'), `expected a PEM CRL ("-----BEGIN X509 CRL-----..."), got ${show(o.crl)}`);
    else if (!ca) issues.add(at(p, 'crl'), 'a CRL needs the ca it was issued by');
    else {
      try {
        revokedSerials(o.crl);
        crl = o.crl;
      } catch (e) {
        issues.add(at(p, 'crl'), `the CRL does not parse (${(e as Error).message}); expected a PEM X.509 CRL`);
      }
    }
  }

  // ---- pools
  const pools: RemoteAccessPoolSpec[] = [];
  let capacity = 0;
  const poolsRaw = issues.array(o.pools, at(p, 'pools'), { nonEmpty: true });
  poolsRaw?.forEach((raw, i) => {
    const pp = at(at(p, 'pools'), i);
    const po = issues.object(raw, pp);
    if (!po) return;
    issues.unknownKeys(po, POOL_KEYS, pp);
    const name = issues.string(po.name ?? `${id ?? tenantId}-${i}`, at(pp, 'name'), { re: ID_RE, expected: ID_EXPECTED });
    if (name !== undefined) {
      const prev = wide.raPools.get(name);
      if (prev !== undefined) issues.add(at(pp, 'name'), `pool ${show(name)} is already defined at ${prev}; pool names are unique on the vrouter`);
      else wide.raPools.set(name, pp);
    }
    let r: Prefix | undefined;
    if (typeof po.range !== 'string') issues.add(at(pp, 'range'), `${po.range === undefined ? 'missing' : `expected a prefix, got ${show(po.range)}`}; expected the prefix addresses are leased from, e.g. "10.99.0.0/24"`);
    else {
      const x = parsePrefix(po.range, 'refuse');
      if ('error' in x) issues.add(at(pp, 'range'), x.error);
      else r = x.prefix;
    }
    if (r) {
      const v6 = r.text.includes(':');
      const len = Number(r.text.split('/')[1]);
      if (len > (v6 ? 126 : 30)) issues.add(at(pp, 'range'), `${r.text} leaves no address to lease; expected at most /${v6 ? 126 : 30}`);
      else if (pools.some((x) => x.range.includes(':') === v6)) issues.add(at(pp, 'range'), `a second IPv${v6 ? 6 : 4} pool; a client is given at most one address per family, so one pool per family`);
      else {
        claim(r, { kind: 'ipsec', tunnel: id ?? '' }, at(pp, 'range'));
        if (!v6) capacity += poolSize(r.text);
      }
    }
    const dns: string[] = [];
    issues.array(po.dns, at(pp, 'dns'), { optional: true })?.forEach((d, j) => {
      if (typeof d === 'string' && isIpAddress(d)) dns.push(d.toLowerCase());
      else issues.add(at(at(pp, 'dns'), j), `${show(d)} is not an IP address; expected a DNS server's address`);
    });
    const searchDomains: string[] = [];
    issues.array(po.search_domains, at(pp, 'search_domains'), { optional: true })?.forEach((d, j) => {
      if (typeof d === 'string' && DOMAIN_RE.test(d)) searchDomains.push(d.toLowerCase());
      else issues.add(at(at(pp, 'search_domains'), j), `${show(d)} is not a domain name; expected e.g. "corp.example.com"`);
    });
    if (name !== undefined && r) pools.push({ name, range: r.text, dns, searchDomains });
  });

  const local = prefixList(o.local_subnets, at(p, 'local_subnets'), issues, { nonEmpty: true });
  const proposals = parseProposals(o.proposals, at(p, 'proposals'), issues);

  // ---- users
  const users: { name: string; secret: Secret }[] = [];
  const usersRaw = issues.array(o.users, at(p, 'users'), { optional: !withEap, nonEmpty: withEap });
  if (!withEap && (usersRaw?.length ?? 0) > 0) issues.add(at(p, 'users'), `auth ${show(auth)} does not use EAP; users would never be asked for`);
  usersRaw?.forEach((raw, i) => {
    const up = at(at(p, 'users'), i);
    const uo = issues.object(raw, up);
    if (!uo) return;
    issues.unknownKeys(uo, ['name', 'secret'], up);
    const name = issues.string(uo.name, at(up, 'name'), { re: IDENTITY_RE, expected: 'the EAP user name, up to 255 characters' });
    if (name !== undefined) {
      const prev = wide.raUsers.get(name);
      if (prev !== undefined) issues.add(at(up, 'name'), `user ${show(name)} is already defined at ${prev}; charon keeps EAP secrets by user name, so names are unique on the vrouter`);
      else wide.raUsers.set(name, up);
    }
    const secret = readSecret(uo.secret, at(up, 'secret'), 'text', issues, made, opts);
    if (name !== undefined && secret) users.push({ name, secret });
  });

  // ---- devices
  const devices: { id: string; certificate?: string; serial?: string }[] = [];
  const devicesRaw = issues.array(o.devices, at(p, 'devices'), { optional: !withCerts, nonEmpty: withCerts });
  if (!withCerts && (devicesRaw?.length ?? 0) > 0) issues.add(at(p, 'devices'), `auth ${show(auth)} does not use certificates; devices would never be asked for`);
  const deviceIds = new Set<string>();
  devicesRaw?.forEach((raw, i) => {
    const dp = at(at(p, 'devices'), i);
    const d = issues.object(raw, dp);
    if (!d) return;
    issues.unknownKeys(d, ['id', 'certificate'], dp);
    const did = issues.string(d.id, at(dp, 'id'), { re: IDENTITY_RE, expected: "the device's IKE identity (a subjectAltName of its certificate), up to 255 characters" });
    if (did !== undefined) {
      if (deviceIds.has(did)) issues.add(at(dp, 'id'), `device ${show(did)} is listed twice`);
      deviceIds.add(did);
    }
    let serial: string | undefined;
    let pem: string | undefined;
    if (d.certificate !== undefined) {
      const c = readCert(d.certificate, at(dp, 'certificate'), issues, false);
      if (c?.kind === 'file') issues.add(at(dp, 'certificate'), 'expected the PEM certificate itself (its serial number ends live sessions when a CRL revokes it)');
      else if (c && did !== undefined) {
        const x = new X509Certificate(c.pem);
        const sans = (x.subjectAltName ?? '').split(', ').map((s) => s.replace(/^[^:]+:/, ''));
        if (!sans.includes(did)) issues.add(at(dp, 'certificate'), `the certificate's subjectAltName (${x.subjectAltName ?? 'none'}) does not name ${show(did)}; the device's id must be one of them`);
        else if (caX509 && !x.verify(caX509.publicKey)) issues.add(at(dp, 'certificate'), "is not issued by this tenant's ca");
        serial = normalizeSerial(x.serialNumber);
        pem = c.pem;
      }
    }
    if (did !== undefined) devices.push({ id: did, ...(pem ? { certificate: pem } : {}), ...(serial ? { serial } : {}) });
  });

  const maxClients = issues.integer(o.max_clients, at(p, 'max_clients'), 1, 1_000_000, { optional: true, unit: 'concurrent clients of the tenant' });
  if (maxClients !== undefined && capacity > 0 && maxClients > capacity) {
    issues.add(at(p, 'max_clients'), `${maxClients} is more than the IPv4 pool leases (${capacity}); expected at most ${capacity}`);
  }
  if (issues.count > before || id === undefined || localId === undefined || !certificate || !privateKey || !local || !proposals) return undefined;
  return {
    id,
    localId,
    auth,
    certificate,
    privateKey,
    ...(ca ? { ca } : {}),
    ...(crl ? { crl } : {}),
    pools,
    localSubnets: local.map((x) => x.text),
    users,
    devices,
    maxClients: maxClients ?? Math.min(DEFAULT_MAX_CLIENTS, capacity > 0 ? capacity : DEFAULT_MAX_CLIENTS),
    ikeProposals: proposals.ike,
    espProposals: proposals.esp,
  };
}

