/**
 * Controller JSON → validated tenants, tunnels, peers, TUN devices and inter-tenant rules.
 *
 * Input shapes (any mix, as a list of parsed documents):
 *   - one tenant document `{ "vrouter_id", "tenant_id", "tunnels", "wireguard", "wireguard_peers", "tun", "rules" }`
 *   - `{ "vrouter_id"?, "tenants": [ <tenant document>... ], "rules"?: [...] }`
 *   - `[ <tenant document>... ]`
 * Issue paths follow the document as written (`tenants[1].wireguard_peers[0].public_key`; a
 * bare tenant document has no prefix; with several documents each path starts `docs[k].`).
 *
 * Every problem is collected and thrown at once as one ConfigError. Secret fields (`psk`,
 * `eap_secret`, `private_key`, `preshared_key`) may be `"encrypted:<base64>"` sealed boxes to the
 * vrouter's secrets key; they are opened here into `Secret`s and their values never reach an
 * issue. Decisions (documented in docs/configuration.md, pinned by tests):
 *   - CIDRs with host bits set are refused, naming the canonical prefix (interface addresses of
 *     TUN devices excepted: there the host bits are the address).
 *   - Within a tenant, one prefix has one next hop: the same prefix from two WireGuard peers, two
 *     tunnels or a TUN is refused; nested prefixes are allowed and resolved by longest prefix.
 *     Tenants are separate routing tables: overlaps across tenants are fine.
 *   - Tunnel ids and TUN names (per network namespace) are unique on the vrouter: they name
 *     charon connections and kernel interfaces. WireGuard listen ports too: the port decides
 *     the tenant of an arriving packet.
 */

import { X509Certificate, createPrivateKey } from 'node:crypto';
import { isAbsolute } from 'node:path';
import { createRequire } from 'node:module';
import { ConfigError, CvlanError } from '../errors.js';
import { refuseTestOnly } from './production.js';
import { checkBgpAcrossTenants, parseBgp } from './bgp.js';
import { parseRemoteAccess } from '../remote-access/config.js';
import { isSealed, open, type SealKeypair } from '../secrets/sealed.js';
import { publicKeyOf } from '../secrets/keys.js';
import {
  DEFAULT_ESP_PROPOSALS,
  DEFAULT_IKE_PROPOSALS,
  ID_EXPECTED,
  ID_RE,
  IFNAME_EXPECTED,
  IFNAME_RE,
  Issues,
  at,
  comparePrefixes,
  isHost,
  isKeyText,
  isObj,
  parseEndpoint,
  parsePrefix,
  proposalProblem,
  publicKeyProblem,
  show,
  type Obj,
  type Prefix,
} from './normalize.js';
import {
  Secret,
  type InterTenantRule,
  type IpsecTunnelSpec,
  type NextHop,
  type PemSource,
  type RouteSpec,
  type SecretPemSource,
  type TenantSpec,
  type TunSpec,
  type TunnelAuth,
  type WireguardPeerSpec,
} from './model.js';

const sodium = createRequire(import.meta.url)('sodium-native') as { sodium_memzero(b: Buffer): void };

/** WireGuard's customary port; the default `wireguard.listen_port`. */
export const DEFAULT_WIREGUARD_PORT = 51820;
/** Bytes; the default TUN MTU (1500 minus WireGuard-over-IPv6 overhead, as wg-quick picks). */
export const DEFAULT_TUN_MTU = 1420;
/** Shortest accepted PSK, bytes: below this an offline dictionary attack on IKE_AUTH is cheap. */
export const MIN_PSK_BYTES = 16;
/** UDP ports the data plane keeps for IKE and NAT-T ESP (RFC 7296 §2, RFC 3948). */
const IKE_PORTS = [500, 4500];

const TENANT_KEYS = ['vrouter_id', 'tenant_id', 'tunnels', 'wireguard', 'wireguard_peers', 'tun', 'rules', 'bgp', 'remote_access'] as const;
const WRAPPER_KEYS = ['vrouter_id', 'tenants', 'rules'] as const;
const TUNNEL_KEYS = ['id', 'type', 'remote_id', 'remote_address', 'local_id', 'auth', 'local_subnets', 'remote_subnets', 'proposals', 'dpd_delay', 'rekey'] as const;
const REKEY_KEYS = ['ike_seconds', 'child_seconds', 'child_bytes', 'child_packets'] as const;
/** Shortest rekey interval accepted, s: charon subtracts up to 10% jitter and needs time to negotiate. */
const MIN_REKEY_SECONDS = 10;
const PEER_KEYS = ['public_key', 'allowed_ips', 'endpoint', 'preshared_key', 'persistent_keepalive', 'name'] as const;
const TUN_KEYS = ['name', 'addresses', 'mtu', 'subnets', 'netns'] as const;
const RULE_KEYS = ['from_tenant', 'from_prefix', 'to_tenant', 'to_prefix'] as const;

/** IKE identities: printable, no control characters (IP, FQDN, user@FQDN, DN, `%any`). */
export const IDENTITY_RE = /^[^\p{Cc}]{1,255}$/u;
const PLACEHOLDER_RE = /\$\{([A-Za-z_][A-Za-z0-9_]*)\}/;

export interface ControllerConfig {
  vrouterId?: string;
  tenants: TenantSpec[];
  rules: InterTenantRule[];
}

export interface ParseControllerOptions {
  /** The vrouter's secrets key pair; needed when any value is `"encrypted:..."`. */
  secretsKey?: SealKeypair;
}

interface TenantInput {
  doc: unknown;
  path: string;
  vrouterId?: { value: unknown; path: string };
}

/** Issues, with the ability to silence fields already reported (unsubstituted placeholders). */
class ConfigIssues extends Issues {
  readonly silenced = new Set<string>();
  override add(path: string, reason: string): void {
    for (const s of this.silenced) if (path === s || path.startsWith(`${s}.`) || path.startsWith(`${s}[`)) return;
    super.add(path, reason);
  }
}

/**
 * Validates controller documents. Throws one ConfigError with every issue (code
 * CVLAN_ERR_CONFIG_TEST_ONLY when any of them is a test-only transport, else CVLAN_ERR_CONFIG).
 */
export function parseControllerDocs(docs: readonly unknown[], opts: ParseControllerOptions = {}): ControllerConfig {
  const issues = new ConfigIssues();
  const made: Secret[] = [];
  let testOnly = false;
  const prefixOf = (k: number): string => (docs.length > 1 ? `docs[${k}]` : '');

  docs.forEach((d, k) => {
    try {
      refuseTestOnly(d, prefixOf(k));
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      testOnly = true;
      for (const i of e.issues) {
        issues.add(i.path, i.reason);
        // One reason is enough for such a field; the type checks would only repeat it.
        issues.silenced.add(i.path);
      }
    }
    findPlaceholders(d, prefixOf(k), issues);
  });

  const inputs: TenantInput[] = [];
  const ruleInputs: { doc: unknown; path: string; owner?: string }[] = [];
  docs.forEach((d, k) => {
    const base = prefixOf(k);
    if (Array.isArray(d)) {
      d.forEach((t, i) => inputs.push({ doc: t, path: at(base, i) }));
    } else if (isObj(d) && 'tenants' in d) {
      issues.unknownKeys(d, WRAPPER_KEYS, base);
      const vr = d.vrouter_id === undefined ? undefined : { value: d.vrouter_id, path: at(base, 'vrouter_id') };
      const list = issues.array(d.tenants, at(base, 'tenants'));
      list?.forEach((t, i) => inputs.push({ doc: t, path: at(at(base, 'tenants'), i), ...(vr ? { vrouterId: vr } : {}) }));
      issues.array(d.rules, at(base, 'rules'), { optional: true })?.forEach((r, i) => ruleInputs.push({ doc: r, path: at(at(base, 'rules'), i) }));
    } else if (isObj(d)) {
      inputs.push({ doc: d, path: base });
    } else {
      issues.add(base || '(document)', `expected a tenant document (object), {"tenants": [...]} or an array of tenant documents, got ${show(d)}`);
    }
  });

  // ---- vrouter id: every document must be for this one vrouter
  let vrouterId: { value: string; path: string } | undefined;
  const checkVrouter = (v: unknown, path: string): void => {
    const s = issues.string(v, path, { re: ID_RE, expected: ID_EXPECTED });
    if (s === undefined) return;
    if (vrouterId === undefined) vrouterId = { value: s, path };
    else if (vrouterId.value !== s) issues.add(path, `${show(s)} differs from ${show(vrouterId.value)} at ${vrouterId.path}; all documents must be for one vrouter`);
  };

  const tenants: TenantSpec[] = [];
  const tenantPaths = new Map<string, string>();
  const tunnelIds = new Map<string, string>();
  const tunNames = new Map<string, string>();
  const listenPorts = new Map<number, string>();
  const identities: { remoteId: string; localId: string; remoteAddress?: string; path: string }[] = [];
  const raLocalIds = new Map<string, string>();
  const raPools = new Map<string, string>();
  const raUsers = new Map<string, string>();

  for (const input of inputs) {
    const t = issues.object(input.doc, input.path || '(document)');
    if (!t) continue;
    const p = input.path;
    issues.unknownKeys(t, TENANT_KEYS, p);
    if (t.vrouter_id !== undefined) checkVrouter(t.vrouter_id, at(p, 'vrouter_id'));
    else if (input.vrouterId) checkVrouter(input.vrouterId.value, input.vrouterId.path);
    const id = issues.string(t.tenant_id, at(p, 'tenant_id'), { re: ID_RE, expected: ID_EXPECTED });
    if (id !== undefined) {
      const prev = tenantPaths.get(id);
      if (prev !== undefined) issues.add(at(p, 'tenant_id'), `tenant ${show(id)} is already defined at ${prev || '(document)'}; tenant ids are unique`);
      else tenantPaths.set(id, p || '(document)');
    }
    const spec = parseTenant(t, p, id ?? '', issues, made, opts, { tunnelIds, tunNames, listenPorts, identities, raLocalIds, raPools, raUsers });
    if (spec) tenants.push(spec);
    issues.array(t.rules, at(p, 'rules'), { optional: true })?.forEach((r, i) => ruleInputs.push({ doc: r, path: at(at(p, 'rules'), i), ...(id ? { owner: id } : {}) }));
  }

  checkBgpAcrossTenants(tenants, tenantPaths, issues);

  const rules: InterTenantRule[] = [];
  for (const r of ruleInputs) {
    const rule = parseRule(r.doc, r.path, r.owner, tenantPaths, issues);
    if (rule) rules.push(rule);
  }

  if (issues.count > 0) {
    for (const s of made) s.dispose();
    throw new ConfigError(issues.list, testOnly ? 'CVLAN_ERR_CONFIG_TEST_ONLY' : 'CVLAN_ERR_CONFIG');
  }
  return { ...(vrouterId ? { vrouterId: vrouterId.value } : {}), tenants, rules };
}

function findPlaceholders(v: unknown, path: string, issues: ConfigIssues): void {
  if (Array.isArray(v)) v.forEach((x, i) => findPlaceholders(x, at(path, i), issues));
  else if (isObj(v)) for (const [k, x] of Object.entries(v)) findPlaceholders(x, at(path, k), issues);
  else if (typeof v === 'string') {
    const m = PLACEHOLDER_RE.exec(v);
    if (m) {
      issues.add(path, `placeholder \${${m[1]}} was not substituted; fill it in before loading (see substitutePlaceholders)`);
      issues.silenced.add(path);
    }
  }
}

interface VrouterWide {
  tunnelIds: Map<string, string>;
  tunNames: Map<string, string>;
  listenPorts: Map<number, string>;
  identities: { remoteId: string; localId: string; remoteAddress?: string; path: string }[];
  raLocalIds: Map<string, string>;
  raPools: Map<string, string>;
  raUsers: Map<string, string>;
}

/** Per-tenant routing claims: one next hop per prefix. */
class RouteClaims {
  private readonly claims: { prefix: Prefix; via: NextHop; path: string }[] = [];
  constructor(private readonly issues: Issues) {}
  claim(prefix: Prefix, via: NextHop, path: string): void {
    const same = this.claims.find((c) => c.prefix.text === prefix.text);
    if (same) {
      this.issues.add(
        path,
        `${prefix.text} is already routed in this tenant by ${same.path}; one prefix has one next hop per tenant (nested prefixes are allowed: the longest match wins)`,
      );
      return;
    }
    this.claims.push({ prefix, via, path });
  }
  routes(): RouteSpec[] {
    return [...this.claims].sort((a, b) => comparePrefixes(a.prefix, b.prefix)).map((c) => ({ prefix: c.prefix.text, via: c.via }));
  }
}

function parseTenant(
  t: Obj,
  p: string,
  tenantId: string,
  issues: ConfigIssues,
  made: Secret[],
  opts: ParseControllerOptions,
  wide: VrouterWide,
): TenantSpec | undefined {
  const routes = new RouteClaims(issues);
  const before = issues.count;

  // ---- WireGuard interface
  let wireguard: TenantSpec['wireguard'];
  const peersRaw = issues.array(t.wireguard_peers, at(p, 'wireguard_peers'), { optional: true }) ?? [];
  if (t.wireguard !== undefined || peersRaw.length > 0) {
    const wp = at(p, 'wireguard');
    const w = t.wireguard === undefined ? {} : issues.object(t.wireguard, wp);
    if (w) {
      issues.unknownKeys(w, ['listen_port', 'private_key'], wp);
      const port = issues.integer(w.listen_port ?? DEFAULT_WIREGUARD_PORT, at(wp, 'listen_port'), 1, 65535, { unit: 'UDP port' });
      if (port !== undefined) {
        const portPath = w.listen_port === undefined ? `${wp} (default listen_port ${DEFAULT_WIREGUARD_PORT})` : at(wp, 'listen_port');
        const prev = wide.listenPorts.get(port);
        if (IKE_PORTS.includes(port)) issues.add(at(wp, 'listen_port'), `UDP ${port} is kept for IKE/NAT-T; choose another port`);
        else if (prev !== undefined) {
          issues.add(at(wp, 'listen_port'), `UDP ${port} is already the WireGuard port of ${prev}; each tenant needs its own listen_port (the port decides the tenant)`);
        } else wide.listenPorts.set(port, portPath);
      }
      let privateKey: Secret | undefined;
      let publicKey: string | undefined;
      if (w.private_key !== undefined) {
        privateKey = readSecret(w.private_key, at(wp, 'private_key'), 'key32', issues, made, opts);
        if (privateKey) {
          try {
            publicKey = privateKey.use((b) => publicKeyOf(b)).toString('base64');
          } catch {
            issues.add(at(wp, 'private_key'), 'invalid private key (not shown: secret); it yields no public key. Generate one with `wg genkey`');
          }
        }
      }
      wireguard = { listenPort: port ?? DEFAULT_WIREGUARD_PORT, ...(privateKey ? { privateKey } : {}), ...(publicKey ? { publicKey } : {}) };
    }
  }

  // ---- WireGuard peers
  const peers: WireguardPeerSpec[] = [];
  const peerKeys = new Map<string, string>();
  peersRaw.forEach((raw, i) => {
    const pp = at(at(p, 'wireguard_peers'), i);
    const o = issues.object(raw, pp);
    if (!o) return;
    issues.unknownKeys(o, PEER_KEYS, pp);
    let publicKey: string | undefined;
    if (typeof o.public_key === 'string') {
      const problem = publicKeyProblem(o.public_key);
      if (problem) issues.add(at(pp, 'public_key'), `${show(o.public_key)} ${problem.startsWith('expected') ? 'is not a public key; ' : ''}${problem}`);
      else publicKey = o.public_key;
    } else issues.string(o.public_key, at(pp, 'public_key'), { expected: 'a base64 public key (44 characters)' });
    if (publicKey !== undefined) {
      const prev = peerKeys.get(publicKey);
      if (prev !== undefined) issues.add(at(pp, 'public_key'), `the same public key is already the peer at ${prev}; one peer per key in a tenant`);
      else peerKeys.set(publicKey, pp);
      if (wireguard?.publicKey === publicKey) issues.add(at(pp, 'public_key'), "is this tenant's own WireGuard public key; a peer must be another node");
    }
    const allowed = prefixList(o.allowed_ips, at(pp, 'allowed_ips'), issues, { nonEmpty: false });
    const name = issues.string(o.name, at(pp, 'name'), { optional: true, re: ID_RE, expected: ID_EXPECTED });
    let endpoint: string | undefined;
    if (o.endpoint !== undefined) {
      if (typeof o.endpoint === 'string' && parseEndpoint(o.endpoint)) endpoint = o.endpoint;
      else issues.add(at(pp, 'endpoint'), `${show(o.endpoint)} is not an endpoint; expected "host:port", "ip:port" or "[ipv6]:port" with port 1..65535`);
    }
    const presharedKey = o.preshared_key === undefined ? undefined : readSecret(o.preshared_key, at(pp, 'preshared_key'), 'key32', issues, made, opts);
    const keepalive = issues.integer(o.persistent_keepalive, at(pp, 'persistent_keepalive'), 0, 65535, { optional: true, unit: 'seconds, 0 = off' });
    if (publicKey === undefined || allowed === undefined) return;
    allowed.forEach((a, j) => routes.claim(a, { kind: 'wireguard', peer: publicKey }, at(at(pp, 'allowed_ips'), j)));
    peers.push({
      publicKey,
      ...(name !== undefined ? { name } : {}),
      allowedIps: allowed.map((a) => a.text),
      ...(endpoint !== undefined ? { endpoint } : {}),
      ...(presharedKey ? { presharedKey } : {}),
      persistentKeepalive: keepalive ?? 0,
    });
  });

  // ---- IPsec tunnels
  const tunnels: IpsecTunnelSpec[] = [];
  issues.array(t.tunnels, at(p, 'tunnels'), { optional: true })?.forEach((raw, i) => {
    const tp = at(at(p, 'tunnels'), i);
    const o = issues.object(raw, tp);
    if (!o) return;
    issues.unknownKeys(o, TUNNEL_KEYS, tp);
    const id = issues.string(o.id, at(tp, 'id'), { re: ID_RE, expected: ID_EXPECTED });
    if (id !== undefined) {
      const prev = wide.tunnelIds.get(id);
      if (prev !== undefined) issues.add(at(tp, 'id'), `tunnel id ${show(id)} is already used by ${prev}; tunnel ids name charon connections and are unique on the vrouter`);
      else wide.tunnelIds.set(id, tp);
    }
    if (o.type !== 'ipsec') issues.add(at(tp, 'type'), o.type === undefined ? 'missing; expected "ipsec"' : `${show(o.type)} is not supported; expected "ipsec"`);
    const remoteId = issues.string(o.remote_id, at(tp, 'remote_id'), { re: IDENTITY_RE, expected: 'the peer\'s IKE identity (IP address, FQDN, user@FQDN or DN), up to 255 characters' });
    const localId = issues.string(o.local_id, at(tp, 'local_id'), { optional: true, re: IDENTITY_RE, expected: 'our IKE identity, up to 255 characters' });
    let remoteAddress: string | undefined;
    if (o.remote_address !== undefined) {
      if (typeof o.remote_address === 'string' && isHost(o.remote_address)) remoteAddress = o.remote_address;
      else issues.add(at(tp, 'remote_address'), `${show(o.remote_address)} is not a host name or IP address (no port: IKE uses UDP 500/4500)`);
    }
    const auth = parseAuth(o.auth, at(tp, 'auth'), issues, made, opts);
    const local = prefixList(o.local_subnets, at(tp, 'local_subnets'), issues, { nonEmpty: true });
    const remote = prefixList(o.remote_subnets, at(tp, 'remote_subnets'), issues, { nonEmpty: true });
    const proposals = parseProposals(o.proposals, at(tp, 'proposals'), issues);
    const dpdDelay = issues.integer(o.dpd_delay, at(tp, 'dpd_delay'), 0, 3600, { optional: true, unit: 'seconds between liveness checks of an idle peer, 0 = off' });
    const rekey = parseRekey(o.rekey, at(tp, 'rekey'), issues);
    if (remoteId !== undefined) {
      const clash = wide.identities.find(
        (x) => x.remoteId === remoteId && x.localId === (localId ?? '') && !(x.remoteAddress && remoteAddress && x.remoteAddress !== remoteAddress),
      );
      if (clash) {
        issues.add(at(tp, 'remote_id'), `${show(remoteId)} (with the same local_id) is already the peer identity of ${clash.path}; charon could not tell the tunnels apart. Use distinct identities or distinct remote_address values`);
      } else wide.identities.push({ remoteId, localId: localId ?? '', ...(remoteAddress ? { remoteAddress } : {}), path: tp });
    }
    if (id === undefined || remoteId === undefined || !auth || !local || !remote || !proposals || !rekey) return;
    remote.forEach((r, j) => routes.claim(r, { kind: 'ipsec', tunnel: id }, at(at(tp, 'remote_subnets'), j)));
    tunnels.push({
      id,
      type: 'ipsec',
      remoteId,
      ...(remoteAddress !== undefined ? { remoteAddress } : {}),
      ...(localId !== undefined ? { localId } : {}),
      auth,
      localSubnets: local.map((x) => x.text),
      remoteSubnets: remote.map((x) => x.text),
      ikeProposals: proposals.ike,
      espProposals: proposals.esp,
      ...(dpdDelay !== undefined ? { dpdDelay } : {}),
      ...rekey,
    });
  });

  // ---- TUN devices
  const tuns: TunSpec[] = [];
  issues.array(t.tun, at(p, 'tun'), { optional: true })?.forEach((raw, i) => {
    const up = at(at(p, 'tun'), i);
    const o = issues.object(raw, up);
    if (!o) return;
    issues.unknownKeys(o, TUN_KEYS, up);
    const name = issues.string(o.name, at(up, 'name'), { re: IFNAME_RE, expected: IFNAME_EXPECTED });
    const netns = issues.string(o.netns, at(up, 'netns'), { optional: true, re: /^[A-Za-z0-9_.-]{1,64}$/, expected: 'a network namespace name (letters, digits, "_", ".", "-")' });
    if (name !== undefined) {
      const key = `${netns ?? ''}/${name}`;
      const prev = wide.tunNames.get(key);
      if (prev !== undefined) issues.add(at(up, 'name'), `interface ${show(name)} is already defined at ${prev}${netns ? ` in netns ${show(netns)}` : ''}; interface names are unique per namespace`);
      else wide.tunNames.set(key, up);
    }
    const addrs = issues.array(o.addresses, at(up, 'addresses'), { optional: true });
    const addresses: string[] = [];
    addrs?.forEach((a, j) => {
      const ap = at(at(up, 'addresses'), j);
      if (typeof a !== 'string') return issues.add(ap, `expected an interface address in CIDR notation ("10.20.0.1/24"), got ${show(a)}`);
      const r = parsePrefix(a, 'allow');
      if ('error' in r) issues.add(ap, r.error);
      else if (addresses.includes(r.prefix.text)) issues.add(ap, `${r.prefix.text} is listed twice`);
      else addresses.push(r.prefix.text);
    });
    const mtu = issues.integer(o.mtu, at(up, 'mtu'), 576, 65535, { optional: true, unit: 'bytes' });
    const subnets = prefixList(o.subnets, at(up, 'subnets'), issues, { nonEmpty: false, optional: true });
    if (name === undefined || !subnets) return;
    subnets.forEach((s, j) => routes.claim(s, { kind: 'tun', device: name }, at(at(up, 'subnets'), j)));
    tuns.push({ name, addresses, mtu: mtu ?? DEFAULT_TUN_MTU, subnets: subnets.map((s) => s.text), ...(netns !== undefined ? { netns } : {}) });
  });

  // ---- BGP (../routing/)
  const bgp = t.bgp === undefined ? undefined : parseBgp(t.bgp, at(p, 'bgp'), issues, made);

  // ---- remote-access clients (../remote-access/)
  const remoteAccess =
    t.remote_access === undefined ? undefined : parseRemoteAccess(t.remote_access, at(p, 'remote_access'), tenantId, issues, made, opts, wide, (x, via, path) => routes.claim(x, via, path));

  if (issues.count > before || !tenantId) return undefined;
  return { id: tenantId, tunnels, ...(wireguard ? { wireguard } : {}), peers, tuns, routes: routes.routes(), ...(bgp ? { bgp } : {}), ...(remoteAccess ? { remoteAccess } : {}) };
}

/** An array of canonical prefixes, each listed once. */
export function prefixList(v: unknown, path: string, issues: Issues, opts: { nonEmpty: boolean; optional?: boolean }): Prefix[] | undefined {
  const arr = issues.array(v, path, { nonEmpty: opts.nonEmpty, ...(opts.optional ? { optional: true } : {}) });
  if (!arr) return undefined;
  const out: Prefix[] = [];
  let ok = true;
  arr.forEach((a, j) => {
    const ap = at(path, j);
    if (typeof a !== 'string') {
      ok = false;
      return issues.add(ap, `expected a prefix such as "10.0.0.0/24", got ${show(a)}`);
    }
    const r = parsePrefix(a, 'refuse');
    if ('error' in r) {
      ok = false;
      return issues.add(ap, r.error);
    }
    if (out.some((x) => x.text === r.prefix.text)) {
      ok = false;
      return issues.add(ap, `${r.prefix.text} is listed twice`);
    }
    out.push(r.prefix);
  });
  return ok ? out : undefined;
}

export function parseProposals(v: unknown, path: string, issues: Issues): { ike: string[]; esp: string[] } | undefined {
  if (v === undefined) return { ike: [...DEFAULT_IKE_PROPOSALS], esp: [...DEFAULT_ESP_PROPOSALS] };
  const o = issues.object(v, path);
  if (!o) return undefined;
  issues.unknownKeys(o, ['ike', 'esp'], path);
  let ok = true;
  const list = (kind: 'ike' | 'esp', defaults: readonly string[]): string[] => {
    const kp = at(path, kind);
    if (o[kind] === undefined) return [...defaults];
    const arr = issues.array(o[kind], kp, { nonEmpty: true });
    if (!arr || arr.length === 0) {
      ok = false;
      return [];
    }
    return arr.map((x, i) => {
      if (typeof x !== 'string') {
        ok = false;
        issues.add(at(kp, i), `expected a proposal string such as ${show(defaults[0])}, got ${show(x)}`);
        return '';
      }
      const problem = proposalProblem(kind, x);
      if (problem) {
        ok = false;
        issues.add(at(kp, i), problem);
      }
      return x.toLowerCase();
    });
  };
  const ike = list('ike', DEFAULT_IKE_PROPOSALS);
  const esp = list('esp', DEFAULT_ESP_PROPOSALS);
  return ok ? { ike, esp } : undefined;
}

type RekeySpec = Pick<IpsecTunnelSpec, 'ikeRekeySeconds' | 'childRekeySeconds' | 'childRekeyBytes' | 'childRekeyPackets'>;

/** `rekey`: when charon renews the IKE_SA and the CHILD_SA (by time, and the CHILD_SA also by volume). */
function parseRekey(v: unknown, path: string, issues: Issues): RekeySpec | undefined {
  if (v === undefined) return {};
  const o = issues.object(v, path);
  if (!o) return undefined;
  issues.unknownKeys(o, REKEY_KEYS, path);
  const before = issues.count;
  const secs = (k: 'ike_seconds' | 'child_seconds'): number | undefined =>
    issues.integer(o[k], at(path, k), MIN_REKEY_SECONDS, 7 * 86400, { optional: true, unit: 'seconds' });
  const ikeRekeySeconds = secs('ike_seconds');
  const childRekeySeconds = secs('child_seconds');
  const childRekeyBytes = issues.integer(o.child_bytes, at(path, 'child_bytes'), 0, Number.MAX_SAFE_INTEGER, { optional: true, unit: 'bytes, 0 = off' });
  const childRekeyPackets = issues.integer(o.child_packets, at(path, 'child_packets'), 0, Number.MAX_SAFE_INTEGER, { optional: true, unit: 'packets, 0 = off' });
  if (issues.count !== before) return undefined;
  return {
    ...(ikeRekeySeconds !== undefined ? { ikeRekeySeconds } : {}),
    ...(childRekeySeconds !== undefined ? { childRekeySeconds } : {}),
    ...(childRekeyBytes !== undefined ? { childRekeyBytes } : {}),
    ...(childRekeyPackets !== undefined ? { childRekeyPackets } : {}),
  };
}

function parseAuth(v: unknown, path: string, issues: Issues, made: Secret[], opts: ParseControllerOptions): TunnelAuth | undefined {
  const o = issues.object(v, path);
  if (!o) return undefined;
  const method = o.method;
  const before = issues.count;
  switch (method) {
    case 'psk': {
      issues.unknownKeys(o, ['method', 'psk', 'allow_weak_psk'], path);
      // A legacy peer's short PSK is accepted only when the operator says so for this tunnel.
      const allowWeak = o.allow_weak_psk ?? false;
      if (typeof allowWeak !== 'boolean') issues.add(at(path, 'allow_weak_psk'), `expected true or false, got ${show(allowWeak)}`);
      const psk = readSecret(o.psk, at(path, 'psk'), allowWeak === true ? 'weak-psk' : 'psk', issues, made, opts);
      return psk && issues.count === before ? { method, psk, weak: psk.length < MIN_PSK_BYTES } : undefined;
    }
    case 'pubkey': {
      issues.unknownKeys(o, ['method', 'certificate', 'private_key', 'ca'], path);
      const certificate = readCert(o.certificate, at(path, 'certificate'), issues, false);
      const privateKey = readPrivateKey(o.private_key, at(path, 'private_key'), issues, made, opts, false);
      const ca = readCert(o.ca, at(path, 'ca'), issues, false);
      return certificate && privateKey && ca && issues.count === before ? { method, certificate, privateKey, ca } : undefined;
    }
    case 'eap': {
      issues.unknownKeys(o, ['method', 'eap_method', 'eap_role', 'eap_identity', 'eap_secret', 'certificate', 'private_key', 'ca'], path);
      if (o.eap_method !== undefined && o.eap_method !== 'mschapv2') {
        issues.add(at(path, 'eap_method'), `${show(o.eap_method)} is not supported; expected "mschapv2"`);
      }
      const role = o.eap_role ?? 'server';
      if (role !== 'server' && role !== 'client') issues.add(at(path, 'eap_role'), `${show(role)} is not valid; expected "server" (we verify the peer) or "client"`);
      const eapIdentity = issues.string(o.eap_identity, at(path, 'eap_identity'), { re: IDENTITY_RE, expected: 'the EAP user name, up to 255 characters' });
      const eapSecret = readSecret(o.eap_secret, at(path, 'eap_secret'), 'text', issues, made, opts);
      // An EAP server still authenticates itself to the client with a certificate (RFC 7296 §2.16).
      const server = role === 'server';
      const certificate = readCert(o.certificate, at(path, 'certificate'), issues, !server, 'the EAP server (eap_role "server") authenticates with a certificate; give certificate and private_key');
      const privateKey = readPrivateKey(o.private_key, at(path, 'private_key'), issues, made, opts, !server);
      const ca = readCert(o.ca, at(path, 'ca'), issues, server, 'an EAP client verifies the server\'s certificate; give ca');
      if (issues.count !== before || !eapIdentity || !eapSecret || (role !== 'server' && role !== 'client')) return undefined;
      return {
        method,
        eapMethod: 'mschapv2',
        role,
        eapIdentity,
        eapSecret,
        ...(certificate ? { certificate } : {}),
        ...(privateKey ? { privateKey } : {}),
        ...(ca ? { ca } : {}),
      };
    }
    default:
      issues.add(at(path, 'method'), method === undefined ? 'missing; expected "psk", "pubkey" or "eap"' : `${show(method)} is not supported; expected "psk", "pubkey" or "eap"`);
      return undefined;
  }
}

const FILE_REF_RE = /^file:(\/[^\0]*)$/;

export function readCert(v: unknown, path: string, issues: Issues, optional: boolean, missing?: string): PemSource | undefined {
  if (v === undefined) {
    if (!optional) issues.add(path, missing ? `missing; ${missing}` : 'missing; expected a PEM certificate or "file:/absolute/path.pem"');
    return undefined;
  }
  if (typeof v !== 'string') {
    issues.add(path, `expected a PEM certificate or "file:/absolute/path.pem", got ${show(v)}`);
    return undefined;
  }
  const ref = FILE_REF_RE.exec(v);
  if (ref && isAbsolute(ref[1]!)) return { kind: 'file', path: ref[1]! };
  if (!v.includes('-----BEGIN CERTIFICATE-----')) {
    issues.add(path, `${show(v)} is neither a PEM certificate ("-----BEGIN CERTIFICATE-----...") nor "file:/absolute/path.pem"`);
    return undefined;
  }
  try {
    new X509Certificate(v);
  } catch (e) {
    issues.add(path, `the PEM certificate does not parse (${(e as Error).message}); expected an X.509 certificate in PEM`);
    return undefined;
  }
  return { kind: 'pem', pem: v };
}

export function readPrivateKey(
  v: unknown,
  path: string,
  issues: Issues,
  made: Secret[],
  opts: ParseControllerOptions,
  optional: boolean,
): SecretPemSource | undefined {
  if (v === undefined) {
    if (!optional) issues.add(path, 'missing; expected a PEM private key (plain or "encrypted:...") or "file:/absolute/path.pem"');
    return undefined;
  }
  if (typeof v === 'string') {
    const ref = FILE_REF_RE.exec(v);
    if (ref) return { kind: 'file', path: ref[1]! };
  }
  const pem = readSecret(v, path, 'pem-key', issues, made, opts);
  return pem ? { kind: 'pem', pem } : undefined;
}

type SecretKind = 'psk' | 'weak-psk' | 'text' | 'key32' | 'pem-key';

const SECRET_EXPECTED: Record<SecretKind, string> = {
  psk: `a pre-shared key of at least ${MIN_PSK_BYTES} bytes (a legacy peer's shorter one only with "allow_weak_psk": true in this auth), or "encrypted:<base64>" sealed to this vrouter's secrets key`,
  'weak-psk': 'a non-empty pre-shared key of at most 1024 bytes, or "encrypted:<base64>" sealed to this vrouter\'s secrets key',
  text: 'a non-empty string of at most 1024 bytes, or "encrypted:<base64>" sealed to this vrouter\'s secrets key',
  key32: 'a base64 key of 44 characters (32 bytes, as `wg genkey` prints), or "encrypted:<base64>" sealed to this vrouter\'s secrets key',
  'pem-key': 'a PEM private key, or "encrypted:<base64>" of one sealed to this vrouter\'s secrets key',
};

/**
 * Reads a secret field, plain or sealed, into a Secret (raw 32 bytes for `key32`; UTF-8 bytes
 * otherwise). A sealed `key32` may hold the 32 raw bytes or their 44-character base64 text.
 * Reasons never contain the value.
 */
export function readSecret(v: unknown, path: string, kind: SecretKind, issues: Issues, made: Secret[], opts: ParseControllerOptions): Secret | undefined {
  if (v === undefined) {
    issues.add(path, `missing; expected ${SECRET_EXPECTED[kind]}`);
    return undefined;
  }
  if (typeof v !== 'string' || v.length === 0) {
    issues.add(path, `expected ${SECRET_EXPECTED[kind]}, got ${typeof v === 'string' ? 'an empty string' : `a ${Array.isArray(v) ? 'array' : v === null ? 'null' : typeof v}`}`);
    return undefined;
  }
  let bytes: Buffer;
  let origin: Secret['origin'];
  let opened: { dispose(): void } | undefined;
  if (isSealed(v)) {
    if (!opts.secretsKey) {
      issues.add(path, 'the value is sealed ("encrypted:...") but no secrets key was given to the loader; the vrouter keeps it as secrets.key in its state directory');
      return undefined;
    }
    try {
      const o = open(opts.secretsKey, v);
      opened = o;
      bytes = o.bytes;
    } catch (e) {
      if (!(e instanceof CvlanError)) throw e;
      issues.add(path, `cannot decrypt: ${e.message}; expected a value sealed with crypto_box_seal to this vrouter's secrets public key`);
      return undefined;
    }
    origin = 'sealed';
  } else {
    bytes = Buffer.from(v, 'utf8');
    origin = 'plain';
  }
  try {
    const problem = secretProblem(kind, bytes, origin);
    if (problem) {
      issues.add(path, `${problem} (value not shown: secret); expected ${SECRET_EXPECTED[kind]}`);
      return undefined;
    }
    let s: Secret;
    if (kind === 'key32' && bytes.length !== 32) {
      const raw = Buffer.from(bytes.toString('latin1'), 'base64');
      s = Secret.fromBytes(raw, origin);
      sodium.sodium_memzero(raw);
    } else s = Secret.fromBytes(bytes, origin);
    made.push(s);
    return s;
  } finally {
    if (opened) opened.dispose();
    else sodium.sodium_memzero(bytes);
  }
}

function secretProblem(kind: SecretKind, bytes: Buffer, origin: Secret['origin']): string | undefined {
  switch (kind) {
    case 'psk':
      return bytes.length < MIN_PSK_BYTES ? `the pre-shared key is ${bytes.length} bytes, shorter than ${MIN_PSK_BYTES}` : undefined;
    case 'weak-psk':
      return bytes.length === 0 || bytes.length > 1024 ? `the pre-shared key is ${bytes.length} bytes` : undefined;
    case 'text':
      return bytes.length === 0 || bytes.length > 1024 ? `the secret is ${bytes.length} bytes` : undefined;
    case 'key32':
      if (origin === 'sealed' && bytes.length === 32) return undefined;
      return isKeyText(bytes.toString('latin1')) ? undefined : 'not a 32-byte key in base64';
    case 'pem-key': {
      const text = bytes.toString('utf8');
      if (!/-----BEGIN ([A-Z]+ )?PRIVATE KEY-----/.test(text)) return 'not a PEM private key';
      try {
        createPrivateKey({ key: text, format: 'pem' });
      } catch {
        // OpenSSL's message could in principle quote key material; say only that it failed.
        return 'the PEM private key does not parse (encrypted PEM keys are not supported)';
      }
      return undefined;
    }
  }
}

function parseRule(v: unknown, path: string, owner: string | undefined, tenants: Map<string, string>, issues: Issues): InterTenantRule | undefined {
  const o = issues.object(v, path);
  if (!o) return undefined;
  issues.unknownKeys(o, RULE_KEYS, path);
  const before = issues.count;
  const tenant = (k: 'from_tenant' | 'to_tenant'): string | undefined => {
    const s = issues.string(o[k], at(path, k), { re: ID_RE, expected: 'a tenant id' });
    if (s !== undefined && !tenants.has(s)) {
      issues.add(at(path, k), `references unknown tenant ${show(s)}; known tenants: ${[...tenants.keys()].map((x) => show(x)).join(', ') || '(none)'}`);
    }
    return s;
  };
  const prefix = (k: 'from_prefix' | 'to_prefix'): Prefix | undefined => {
    if (typeof o[k] !== 'string') {
      issues.add(at(path, k), o[k] === undefined ? 'missing; expected a prefix such as "10.0.0.0/24"' : `expected a prefix such as "10.0.0.0/24", got ${show(o[k])}`);
      return undefined;
    }
    const r = parsePrefix(o[k], 'refuse');
    if ('error' in r) {
      issues.add(at(path, k), r.error);
      return undefined;
    }
    return r.prefix;
  };
  const fromTenant = tenant('from_tenant');
  const toTenant = tenant('to_tenant');
  const fromPrefix = prefix('from_prefix');
  const toPrefix = prefix('to_prefix');
  if (fromTenant !== undefined && fromTenant === toTenant) {
    issues.add(at(path, 'to_tenant'), 'a rule joins two different tenants; traffic inside one tenant needs no rule');
  }
  if (owner !== undefined && fromTenant !== undefined && toTenant !== undefined && fromTenant !== owner && toTenant !== owner) {
    issues.add(path, `a rule in tenant ${show(owner)}'s document must have ${show(owner)} as from_tenant or to_tenant; put rules between other tenants at the top level`);
  }
  if (fromPrefix && toPrefix && fromPrefix.family !== toPrefix.family) {
    issues.add(at(path, 'to_prefix'), `${toPrefix.text} and from_prefix ${fromPrefix.text} are of different address families; such a rule never matches`);
  }
  if (issues.count > before || !fromTenant || !toTenant || !fromPrefix || !toPrefix) return undefined;
  return { fromTenant, fromPrefix: fromPrefix.text, toTenant, toPrefix: toPrefix.text };
}
