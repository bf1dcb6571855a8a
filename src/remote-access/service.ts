/**
 * The running remote access of every tenant: loads each tenant's pools, secrets, CA/CRL and its one
 * connection into charon, follows charon's events to log clients (`client_connect`,
 * `client_disconnect`, `client_auth_failed`, `client_pool_exhausted`), enforces the tenant's cap
 * and its user and device lists on every login, ends the sessions of users and devices that were
 * removed or revoked, and keeps the clients/leases view the API and /metrics read (a scrape never
 * waits on charon).
 */
import type { Logger } from 'pino';
import { readFile } from 'node:fs/promises';
import type { PemSource, RemoteAccessSpec, SecretPemSource, TenantSpec } from '../config/model.js';
import type { IpsecService } from '../ipsec/service.js';
import type { ViciInputSection, ViciSection } from '../strongswan/vici/encoding.js';
import { isSection } from '../strongswan/vici/encoding.js';
import { list, str } from '../strongswan/vici/types.js';
import { poolSection, remoteAccessConnSection, userSecretId, type RemoteAccessConn } from './connection.js';
import { revokedSerials } from './crl.js';
import { poolSize } from './config.js';

export const ClientEvents = {
  connect: 'client_connect',
  disconnect: 'client_disconnect',
  authFailed: 'client_auth_failed',
  poolExhausted: 'client_pool_exhausted',
} as const;

export interface ClientView {
  tenant: string;
  connection: string;
  /** EAP user name (null for certificate-only logins). */
  user: string | null;
  /** Device identity from its certificate (null for EAP-only logins). */
  device: string | null;
  remote: string;
  addresses: string[];
  /** Seconds since the IKE_SA was established. */
  established: number | null;
  ike_id: number;
}

export interface PoolView {
  tenant: string;
  pool: string;
  range: string;
  size: number;
  /** Leases in use (clients online) and kept for identities that left (given back to them on return). */
  online: number;
  offline: number;
  leases: { address: string; identity: string; status: 'online' | 'offline' }[];
}

export interface RemoteAccessView {
  clients: ClientView[];
  pools: PoolView[];
  /** Logins answered with INTERNAL_ADDRESS_FAILURE, per tenant, since start. */
  exhausted: Record<string, number>;
}

interface Loaded {
  tenant: string;
  spec: RemoteAccessSpec;
  conn: RemoteAccessConn;
  revoked: Set<string>;
}

async function pem(src: PemSource | SecretPemSource): Promise<string> {
  if (src.kind === 'file') return await readFile(src.path, 'utf8');
  return typeof src.pem === 'string' ? src.pem : src.pem.text();
}

/** charon's log lines about a client that failed, `<conn|n>` prefixed. */
const FAILURE_PATTERNS: [RegExp, string][] = [
  // Each failed attempt (the client may retry); the user is the EAP identity charon received.
  [/EAP-MS-CHAPv2 verification failed/, 'wrong password'],
  [/EAP method \S+ failed for peer/, 'EAP failed'],
  [/certificate was revoked/, 'certificate revoked'],
  [/no trusted (?:\S+ )?public key found for '([^']*)'/, 'no trusted certificate'],
  [/constraint check failed/, 'certificate constraints not met'],
];

/** charon refused part of a tenant's remote access; `field` is relative to the tenant. */
export class RemoteAccessRefused extends Error {
  constructor(
    readonly tenant: string,
    readonly field: string,
    message: string,
  ) {
    super(message);
    this.name = 'RemoteAccessRefused';
  }
}

export interface RemoteAccessHooks {
  logger: Logger;
  /** The if_id of a remote-access connection (the daemon keeps one per connection id). */
  ifIdOf(conn: string): number;
  listenAddress: string;
}

export class RemoteAccess {
  readonly #ipsec: IpsecService;
  readonly #hooks: RemoteAccessHooks;
  /** Connection id → what is loaded. */
  #loaded = new Map<string, Loaded>();
  #view: RemoteAccessView = { clients: [], pools: [], exhausted: {} };
  #exhausted = new Map<string, number>();
  /** `conn|n` → EAP identity or peer identity last named by charon for that IKE_SA. */
  #who = new Map<string, string>();
  /** Connection id → its established clients by IKE_SA unique id, kept by `ike-updown` events. */
  #online = new Map<string, Map<number, ClientView>>();
  #refreshing: Promise<void> | undefined;
  #again = false;
  #soon: NodeJS.Timeout | undefined;
  #timer: NodeJS.Timeout;

  constructor(ipsec: IpsecService, hooks: RemoteAccessHooks) {
    this.#ipsec = ipsec;
    this.#hooks = hooks;
    ipsec.vici.on('event', (name, msg) => this.#event(name, msg));
    ipsec.supervisor.on('line', (line: string) => this.#line(line));
    // A restarted charon knows nothing: load everything again.
    ipsec.vici.on('connected', () => void this.#reloadAll());
    this.#timer = setInterval(() => this.refresh(), 15_000);
    this.#timer.unref();
  }

  /** Whether `conn` is a remote-access connection (other watchers leave its events to this one). */
  has(conn: string): boolean {
    return this.#loaded.has(conn);
  }

  /** Clients and exhaustion counts as the events left them; pools as last read from charon. */
  view(): RemoteAccessView {
    const clients = [...this.#loaded.keys()].flatMap((id) => [...(this.#online.get(id)?.values() ?? [])]);
    return { clients, pools: this.#view.pools, exhausted: Object.fromEntries(this.#exhausted) };
  }

  /**
   * Makes charon hold every tenant's remote access as `tenants` says: new and changed ones loaded,
   * removed ones unloaded; users and devices that were removed, and devices a new CRL revokes,
   * lose their sessions.
   */
  async apply(tenants: readonly TenantSpec[]): Promise<void> {
    const want = new Map<string, { tenant: string; spec: RemoteAccessSpec }>();
    for (const t of tenants) if (t.remoteAccess) want.set(t.remoteAccess.id, { tenant: t.id, spec: t.remoteAccess });
    for (const [id, old] of this.#loaded) {
      if (!want.has(id)) await this.#unload(old);
    }
    for (const [id, { tenant, spec }] of want) {
      const old = this.#loaded.get(id);
      const l = await this.#load(tenant, spec, old);
      if (old) await this.#revoke(old, l);
    }
    this.refresh();
  }

  /**
   * Loads one tenant's remote access. When charon refuses a part (a pool whose range changed
   * while clients hold leases from it, a certificate or key it cannot parse), what this load added
   * beyond `prev` is unloaded again and the error names the field; `prev` stays as it was loaded.
   */
  async #load(tenant: string, spec: RemoteAccessSpec, prev?: Loaded): Promise<Loaded> {
    const conn: RemoteAccessConn = {
      id: spec.id,
      ifId: this.#hooks.ifIdOf(spec.id),
      localAddress: this.#hooks.listenAddress,
      localId: spec.localId,
      auth: spec.auth,
      certificate: await pem(spec.certificate),
      ...(spec.ca ? { ca: await pem(spec.ca) } : {}),
      ...(spec.crl ? { crl: spec.crl } : {}),
      pools: spec.pools,
      localSubnets: spec.localSubnets,
      ikeProposals: spec.ikeProposals,
      espProposals: spec.espProposals,
    };
    const key = await pem(spec.privateKey);
    const cmds: { command: string; message: ViciInputSection }[] = [
      ...(conn.ca ? [{ command: 'load-cert', message: { type: 'X509', flag: 'CA', data: conn.ca } }] : []),
      ...(conn.crl ? [{ command: 'load-cert', message: { type: 'X509_CRL', data: conn.crl } }] : []),
      { command: 'load-cert', message: { type: 'X509', data: conn.certificate } },
      { command: 'load-key', message: { type: 'any', data: key } },
      ...spec.pools.map((p) => ({ command: 'load-pool', message: poolSection(p) })),
      ...spec.users.map((u) => ({ command: 'load-shared', message: { id: userSecretId(spec.id, u.name), type: 'EAP', data: u.secret.text(), owners: [u.name] } })),
      { command: 'load-conn', message: { [spec.id]: remoteAccessConnSection(conn, { udpEncap: !this.#ipsec.device.rawEsp }) } },
    ];
    const fields = [
      ...(conn.ca ? ['remote_access.ca'] : []),
      ...(conn.crl ? ['remote_access.crl'] : []),
      'remote_access.certificate',
      'remote_access.private_key',
      ...spec.pools.map((_, i) => `remote_access.pools[${i}]`),
      ...spec.users.map((_, i) => `remote_access.users[${i}]`),
      'remote_access',
    ];
    const results = await this.#ipsec.vici.pipeline(cmds);
    const failed = results.findIndex((r) => r instanceof Error);
    if (failed >= 0) {
      const v = this.#ipsec.vici;
      const hadPools = new Set(prev?.spec.pools.map((p) => p.name));
      const hadUsers = new Set(prev?.spec.users.map((u) => u.name));
      for (const p of spec.pools) if (!hadPools.has(p.name)) await v.request('unload-pool', { name: p.name }).catch(() => undefined);
      for (const u of spec.users) if (!hadUsers.has(u.name)) await v.unloadShared(userSecretId(spec.id, u.name)).catch(() => undefined);
      if (!prev) await v.unloadConn(spec.id).catch(() => undefined);
      throw new RemoteAccessRefused(tenant, fields[failed]!, `charon refused ${cmds[failed]!.command} of remote access ${spec.id}: ${(results[failed] as Error).message}`);
    }
    const l: Loaded = { tenant, spec, conn, revoked: new Set(conn.crl ? revokedSerials(conn.crl) : []) };
    this.#loaded.set(spec.id, l);
    return l;
  }

  async #reloadAll(): Promise<void> {
    this.#online.clear();
    for (const l of [...this.#loaded.values()]) {
      await this.#load(l.tenant, l.spec).catch((e: unknown) => this.#hooks.logger.warn({ tenant: l.tenant, err: (e as Error).message }, 'cannot load remote access into the restarted charon'));
    }
  }

  /** Ends the sessions of users and devices `next` no longer admits; unloads removed users' secrets. */
  async #revoke(prev: Loaded, next: Loaded): Promise<void> {
    const users = new Set(next.spec.users.map((u) => u.name));
    const devices = new Map(next.spec.devices.map((d) => [d.id, d]));
    for (const u of prev.spec.users) if (!users.has(u.name)) await this.#ipsec.vici.unloadShared(userSecretId(prev.spec.id, u.name)).catch(() => undefined);
    const gone = (c: ClientView): string | undefined => {
      if (c.user !== null && (next.spec.auth === 'eap' || next.spec.auth === 'pubkey+eap') && !users.has(c.user)) return 'user removed from the configuration';
      if (c.device === null || next.spec.auth === 'eap') return undefined;
      const d = devices.get(c.device);
      if (!d) return 'device removed from the configuration';
      if (d.serial && next.revoked.has(d.serial)) return 'device certificate revoked (CRL)';
      return undefined;
    };
    for (const c of await this.#clients(next)) {
      const why = gone(c);
      if (why) await this.#disconnect(c, why);
    }
  }

  async #unload(l: Loaded): Promise<void> {
    this.#loaded.delete(l.spec.id);
    const v = this.#ipsec.vici;
    await v.terminate({ ike: l.spec.id, force: true, timeoutMs: -1 }).catch(() => undefined);
    await v.unloadConn(l.spec.id).catch(() => undefined);
    for (const u of l.spec.users) await v.unloadShared(userSecretId(l.spec.id, u.name)).catch(() => undefined);
    for (const p of l.spec.pools) await v.request('unload-pool', { name: p.name }).catch(() => undefined);
  }

  async #disconnect(c: ClientView, reason: string): Promise<void> {
    this.#hooks.logger.warn({ event: ClientEvents.disconnect, tenant: c.tenant, tunnel: c.connection, user: c.user, device: c.device, addresses: c.addresses, reason }, 'client disconnected');
    await this.#ipsec.vici.terminate({ ikeId: c.ike_id, force: true, timeoutMs: -1 }).catch(() => undefined);
  }

  /** The established clients of one connection, from charon (at apply time; events keep `#online` current after). */
  async #clients(l: Loaded): Promise<ClientView[]> {
    const sas = await this.#ipsec.vici.listSas({ ike: l.spec.id, noblock: true });
    const list = sas.filter((sa) => sa.state === 'ESTABLISHED').map((sa) => clientOf(l, sa.raw, sa.uniqueId ?? 0));
    this.#online.set(l.spec.id, new Map(list.map((c) => [c.ike_id, c])));
    return list;
  }

  #event(name: string, msg: ViciSection): void {
    if (name !== 'ike-updown') return;
    for (const [conn, v] of Object.entries(msg)) {
      const l = this.#loaded.get(conn);
      if (!l || !isSection(v)) continue;
      const c = clientOf(l, v, Number(str(v, 'uniqueid') ?? 0));
      const online = this.#online.get(conn) ?? new Map<number, ClientView>();
      this.#online.set(conn, online);
      if (msg.up === 'yes') this.#admit(l, c, online);
      else if (online.delete(c.ike_id)) this.#hooks.logger.info({ event: ClientEvents.disconnect, tenant: l.tenant, tunnel: conn, user: c.user, device: c.device, remote: c.remote, reason: `IKE_SA ${str(v, 'state') ?? 'down'}` }, 'client disconnected');
    }
    this.refresh();
  }

  /** A login charon accepted: held to the tenant's users and devices and to its cap. */
  #admit(l: Loaded, c: ClientView, online: Map<number, ClientView>): void {
    const log = this.#hooks.logger;
    const fail = (reason: string): void => {
      log.warn({ event: ClientEvents.authFailed, tenant: l.tenant, tunnel: l.spec.id, user: c.user, device: c.device, remote: c.remote, reason }, 'client authentication failed');
      void this.#ipsec.vici.terminate({ ikeId: c.ike_id, force: true, timeoutMs: -1 }).catch(() => undefined);
    };
    const eap = l.spec.auth !== 'pubkey';
    const cert = l.spec.auth !== 'eap';
    // charon holds every tenant's EAP secrets and CAs; a login is this tenant's only if it names its own user and device.
    if (eap && (c.user === null || !l.spec.users.some((u) => u.name === c.user))) return fail(`EAP user ${JSON.stringify(c.user)} is not a user of the tenant`);
    const device = cert ? l.spec.devices.find((d) => d.id === c.device) : undefined;
    if (cert && !device) return fail(`device ${JSON.stringify(c.device)} is not a device of the tenant`);
    if (device?.serial && l.revoked.has(device.serial)) return fail('device certificate revoked (CRL)');
    if (online.size >= l.spec.maxClients) {
      log.warn({ event: ClientEvents.disconnect, tenant: l.tenant, tunnel: l.spec.id, user: c.user, device: c.device, remote: c.remote, reason: `the tenant's limit of ${l.spec.maxClients} concurrent clients is reached` }, 'client refused');
      void this.#ipsec.vici.terminate({ ikeId: c.ike_id, force: true, timeoutMs: -1 }).catch(() => undefined);
      return;
    }
    online.set(c.ike_id, c);
    log.info({ event: ClientEvents.connect, tenant: l.tenant, tunnel: l.spec.id, user: c.user, device: c.device, remote: c.remote, addresses: c.addresses }, 'client connected');
  }

  #line(line: string): void {
    const m = /<([^|>]+)\|(\d+)>/.exec(line);
    const l = m ? this.#loaded.get(m[1]!) : undefined;
    if (!m || !l) return;
    const key = `${m[1]}|${m[2]}`;
    const id = /received EAP identity '([^']*)'/.exec(line)?.[1];
    if (id !== undefined) return void this.#who.set(key, id);
    const peer = /authentication of '([^']*)' with /.exec(line)?.[1];
    if (peer !== undefined && !this.#who.has(key)) this.#who.set(key, peer);
    if (/IKE_SA \S+\[\d+\] state change: \S+ => DESTROYING/.test(line)) return void this.#who.delete(key);
    const noVip = /no virtual IP found for (\S+) requested by '([^']*)'/.exec(line);
    // A client asks for both families; a family the tenant has no pool for is not an exhaustion.
    if (noVip && l.spec.pools.some((p) => p.range.includes(':') === (noVip[1]!.includes(':') || noVip[1] === '%any6'))) {
      this.#exhausted.set(l.tenant, (this.#exhausted.get(l.tenant) ?? 0) + 1);
      this.refresh();
      this.#hooks.logger.warn({ event: ClientEvents.poolExhausted, tenant: l.tenant, tunnel: l.spec.id, identity: noVip[2], pools: l.spec.pools.map((p) => p.name) }, 'no address left in the pool: INTERNAL_ADDRESS_FAILURE');
      return;
    }
    for (const [re, reason] of FAILURE_PATTERNS) {
      const f = re.exec(line);
      if (!f) continue;
      const who = f[1] ?? this.#who.get(key) ?? null;
      this.#hooks.logger.warn({ event: ClientEvents.authFailed, tenant: l.tenant, tunnel: l.spec.id, user: who, reason }, 'client authentication failed');
      return;
    }
  }

  /** Reads the pools from charon into the view soon (bursts of events cost one read). */
  refresh(): void {
    this.#soon ??= setTimeout(() => {
      this.#soon = undefined;
      this.#refreshNow();
    }, 200);
  }

  /** One read at a time; a request during one runs once more after it. */
  #refreshNow(): void {
    if (this.#refreshing) {
      this.#again = true;
      return;
    }
    this.#refreshing = this.#read()
      .catch((e: unknown) => this.#hooks.logger.warn({ err: (e as Error).message }, 'remote-access pools not read from charon'))
      .finally(() => {
        this.#refreshing = undefined;
        if (this.#again) {
          this.#again = false;
          this.#refreshNow();
        }
      });
  }

  async #read(): Promise<void> {
    const clients = [...this.#loaded.keys()].flatMap((id) => [...(this.#online.get(id)?.values() ?? [])]);
    const raw = await this.#ipsec.vici.request('get-pools', { leases: 'yes' });
    const pools: PoolView[] = [];
    for (const l of this.#loaded.values()) {
      for (const p of l.spec.pools) {
        const s = raw[p.name];
        const leases: PoolView['leases'] = [];
        const ls = isSection(s) ? s.leases : undefined;
        if (isSection(ls)) {
          for (const x of Object.values(ls)) {
            if (isSection(x)) leases.push({ address: str(x, 'address') ?? '', identity: str(x, 'identity') ?? '', status: str(x, 'status') === 'online' ? 'online' : 'offline' });
          }
        }
        pools.push({
          tenant: l.tenant,
          pool: p.name,
          range: p.range,
          size: isSection(s) ? Number(str(s, 'size') ?? poolSize(p.range)) : poolSize(p.range),
          online: isSection(s) ? Number(str(s, 'online') ?? 0) : 0,
          offline: isSection(s) ? Number(str(s, 'offline') ?? 0) : 0,
          leases,
        });
      }
    }
    this.#view = { clients, pools, exhausted: Object.fromEntries(this.#exhausted) };
  }

  close(): void {
    clearInterval(this.#timer);
    if (this.#soon) clearTimeout(this.#soon);
  }
}

function clientOf(l: Loaded, sa: ViciSection, ikeId: number): ClientView {
  const remoteId = str(sa, 'remote-id') ?? null;
  // charon leaves remote-eap-id out when it equals the IKE identity.
  const eapId = str(sa, 'remote-eap-id') ?? (l.spec.auth === 'eap' ? remoteId : l.spec.auth === 'pubkey+eap' ? null : null);
  const established = str(sa, 'established');
  return {
    tenant: l.tenant,
    connection: l.spec.id,
    user: l.spec.auth === 'pubkey' ? null : eapId,
    device: l.spec.auth === 'eap' ? null : remoteId,
    remote: str(sa, 'remote-host') ?? 'unknown',
    addresses: list(sa, 'remote-vips'),
    established: established !== undefined ? Number(established) : null,
    ike_id: ikeId,
  };
}
