/**
 * The running vrouter: the desired state (`../config/model.ts`) applied to the data plane and
 * to charon, and read back for the admin API and /metrics (`RouterStateSource`).
 *
 * What this build applies, per vrouter:
 *   - per tenant, its WireGuard interface: a userspace WireGuard device `wg-<tenant>` with the
 *     UAPI socket, so `wg show` works;
 *   - every tenant's IPsec tunnels on one IPsec device `ipsec-<first tenant>` (UDP 500/4500, ESP
 *     in Rust) and one supervised charon with the `cvlan` plugin; each tunnel's CHILD_SAs carry
 *     its own if_id, which tells the data plane the tenant;
 *   - per tenant TUN (`tun[]`), a TUN-only device for a local network, moved into its `netns`
 *     and addressed there, with the tenant's other prefixes routed into it;
 *   - translation on the workers (docs/translation.md): a packet one device decapsulates (or a
 *     tenant TUN reads) goes out through the device that routes it for the packet's tenant.
 * With one tenant the namespace's IP stack also routes each peer's allowed IPs and each tunnel's
 * remote subnets into the devices (traffic of the vrouter itself, hosts behind it). With several,
 * the namespace has no routes into them: its one table cannot keep overlapping tenants apart, so
 * tenants meet only in the workers, isolated, and inter-tenant rules open single prefix pairs.
 *
 * Apply order is "data plane first, then routes, then charon"; `stop()` runs it backwards.
 * `reconcile()` changes only the peers and tunnels whose specification changed.
 */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import type { Logger } from 'pino';
import { ConfigError, CvlanError } from '../errors.js';
import { configVersion } from '../config/load.js';
import type { DesiredState, IpsecTunnelSpec, PemSource, SecretPemSource, TenantSpec, TunSpec, WireguardPeerSpec } from '../config/model.js';
import { TenantTunDevice, WireGuardDevice, setTranslation, totals, type TranslationTarget, type WorkerStats } from '../dataplane/index.js';
import { IpsecService } from '../ipsec/service.js';
import type { IpsecAuth, IpsecTunnel } from '../ipsec/connections.js';
import { eventLog, type EventLog } from '../log.js';
import { plan } from '../reconcile/plan.js';
import { describeRefusal, startUapiServer, type UapiServer } from '../wireguard/uapi-server.js';
import { str as viciStr, type IkeSaInfo } from '../strongswan/vici/types.js';
import { dropReasonOf } from './drops.js';
import {
  type ConfigVersionView,
  type CounterSnapshot,
  type DropReason,
  type DropView,
  type HealthView,
  type PeerView,
  type RouteView,
  type RouterStateSource,
  type TenantView,
  type TunnelState,
  type TunnelView,
  type WorkerView,
} from '../api/state.js';

const exec = promisify(execFile);

export interface VrouterOptions {
  logger: Logger;
  /** charon's configuration, VICI socket and the plugin link (0700). */
  runtimeDir: string;
  /** Worker threads per device. Default: the local `[performance] worker_threads`, else CPUs. */
  workers?: number;
  /** How often the IKE view is refreshed from charon, ms. Default 2000. */
  saRefreshMs?: number;
}

/** Linux interface names are at most 15 bytes. */
function ifname(prefix: string, tenant: string): string {
  return `${prefix}${tenant.replace(/[^A-Za-z0-9_.-]/g, '')}`.slice(0, 15);
}

/** The reasons this build cannot apply a state it otherwise accepts; empty when it can. */
export function unsupported(state: DesiredState): ConfigError | undefined {
  if (state.tenants.some((t) => t.tunnels.length > 0) && !state.local.network.listenAddress) {
    return new ConfigError([{ path: 'network.listen_address', reason: 'IPsec tunnels need the address IKE and ESP listen on' }]);
  }
  return undefined;
}

async function pem(src: PemSource | SecretPemSource): Promise<string> {
  if (src.kind === 'file') return await readFile(src.path, 'utf8');
  return typeof src.pem === 'string' ? src.pem : src.pem.text();
}

async function ipsecAuth(spec: IpsecTunnelSpec): Promise<IpsecAuth> {
  const a = spec.auth;
  switch (a.method) {
    case 'psk':
      return { method: 'psk', psk: a.psk.text() };
    case 'pubkey':
      return { method: 'pubkey', certificate: await pem(a.certificate), privateKey: await pem(a.privateKey), ca: await pem(a.ca) };
    case 'eap':
      // The loader guarantees the server its certificate and key and the client its CA.
      return {
        method: 'eap',
        role: a.role,
        eapIdentity: a.eapIdentity,
        eapSecret: a.eapSecret.text(),
        ...(a.certificate ? { certificate: await pem(a.certificate) } : {}),
        ...(a.privateKey ? { privateKey: await pem(a.privateKey) } : {}),
        ...(a.ca ? { ca: await pem(a.ca) } : {}),
      };
  }
}

/** The charon-facing description of a configured tunnel. `ifId` tells tunnels apart in the data plane. */
export async function ipsecTunnelOf(spec: IpsecTunnelSpec, ifId: number, localAddress: string): Promise<IpsecTunnel> {
  return {
    id: spec.id,
    ifId,
    localAddress,
    ...(spec.remoteAddress !== undefined ? { remoteAddress: spec.remoteAddress } : {}),
    localId: spec.localId ?? localAddress,
    remoteId: spec.remoteId,
    auth: await ipsecAuth(spec),
    localSubnets: [...spec.localSubnets],
    remoteSubnets: [...spec.remoteSubnets],
    ikeProposals: [...spec.ikeProposals],
    espProposals: [...spec.espProposals],
    initiate: spec.remoteAddress !== undefined,
    ...(spec.dpdDelay !== undefined ? { dpdDelay: spec.dpdDelay } : {}),
    ...(spec.ikeRekeySeconds !== undefined ? { ikeRekeyTime: spec.ikeRekeySeconds } : {}),
    ...(spec.childRekeySeconds !== undefined ? { childRekeyTime: spec.childRekeySeconds } : {}),
    ...(spec.childRekeyBytes !== undefined ? { childRekeyBytes: spec.childRekeyBytes } : {}),
    ...(spec.childRekeyPackets !== undefined ? { childRekeyPackets: spec.childRekeyPackets } : {}),
  };
}

/**
 * charon's level-1 lines that mean "the peer failed to authenticate (or we failed to)". The IKE_SA
 * name comes from the `<conn|n>` prefix; identities in quotes are identities, never secrets.
 */
const AUTH_FAILURE_PATTERNS: [RegExp, string][] = [
  [/tried \d+ shared keys? for '([^']*)' - '([^']*)', but MAC mismatched/, 'PSK mismatch'],
  [/received AUTHENTICATION_FAILED notify/, 'the peer refused our authentication'],
  // the server's wording, then the client's
  [/EAP method \S+ failed|EAP_\S+ method failed/, 'EAP failed'],
  [/EAP-MS-CHAPv2 verification failed/, 'EAP-MSCHAPv2 password mismatch'],
  [/parsed INFORMATIONAL request \d+ \[ N\(AUTH_FAILED\) \]/, 'the peer refused our authentication'],
  [/no trusted (?:\S+ )?public key found for '([^']*)'/, 'no trusted public key for the peer'],
  [/constraint check failed/, 'certificate constraints not met'],
  [/no shared key found for '([^']*)'/, 'no PSK configured for the identities'],
];

export function authFailure(line: string): { conn?: string; remote?: string; reason: string } | undefined {
  for (const [re, reason] of AUTH_FAILURE_PATTERNS) {
    const m = re.exec(line);
    if (!m) continue;
    const conn = /<([^|>]+)\|\d+>/.exec(line)?.[1];
    const remote = m[2] ?? m[1];
    return { ...(conn ? { conn } : {}), ...(remote && !reason.startsWith('EAP') && !reason.startsWith('the peer') ? { remote } : {}), reason };
  }
  return undefined;
}

const seconds = (v: string | undefined): number | null => (v !== undefined && /^\d+$/.test(v) ? Number(v) : null);
/** `AES_GCM_16` + 256 → `AES_GCM_16_256`, as charon's own log prints it. */
const keyed = (alg: string | undefined, size: string | number | undefined): string => (alg ? (size !== undefined ? `${alg}_${size}` : alg) : '');

const hex8 = (s: string | undefined): string => (s ?? '').padStart(8, '0').slice(-8);

function tunnelState(sa: IkeSaInfo | undefined): TunnelState {
  switch (sa?.state) {
    case undefined:
      return 'down';
    case 'ESTABLISHED':
      return sa.childSas.some((c) => c.state === 'INSTALLED') ? 'up' : 'connecting';
    case 'REKEYING':
    case 'REKEYED':
      return 'rekeying';
    case 'DELETING':
    case 'DESTROYING':
      return 'deleting';
    default:
      return 'connecting';
  }
}

/** A tenant as it runs: its spec, its data-plane tag, its WireGuard device and UAPI socket. */
interface TenantRuntime {
  spec: TenantSpec;
  /** ≥ 1; how the workers name the tenant (`Packet::tag`). */
  tag: number;
  wg?: WireGuardDevice | undefined;
  uapi?: UapiServer | undefined;
  /** The tenant's local networks on TUN devices of their own (`tun[]`). */
  tuns: { spec: TunSpec; dev: TenantTunDevice }[];
}

export class Vrouter implements RouterStateSource {
  readonly #opts: VrouterOptions;
  readonly #events: EventLog;
  #state: DesiredState;
  #appliedAt: string;
  /** Per tenant, in the state's order; tags (≥ 1) are this run's data-plane names of tenants. */
  #tenants = new Map<string, TenantRuntime>();
  #ipsec: IpsecService | undefined;
  /** Tunnel id → if_id; if_ids are never reused within a run (a stale SA cannot match a new tunnel). */
  #ifIds = new Map<string, number>();
  #nextIfId = 1;
  #ikeSas: IkeSaInfo[] = [];
  /** Data-plane devices whose TUN was lost (device name → reason): not ready until restart. */
  #lostDevices = new Map<string, string>();
  #ikeRekeys = 0;
  #childRekeys = 0;
  #refresh: NodeJS.Timeout | undefined;
  #routes = new Set<string>();
  readonly #startedNs = process.hrtime.bigint();
  /** Keyed-digest key for fingerprints of secrets; lives only in this process. */
  readonly #fpKey = Buffer.from(crypto.getRandomValues(new Uint8Array(32)));

  private constructor(state: DesiredState, opts: VrouterOptions) {
    this.#state = state;
    this.#opts = opts;
    this.#events = eventLog(opts.logger);
    this.#appliedAt = new Date().toISOString();
    state.tenants.forEach((t, i) => this.#tenants.set(t.id, { spec: t, tag: i + 1, tuns: [] }));
  }

  /** One tenant: the namespace routes into the devices too. Several: only the workers do. */
  get #shared(): boolean {
    return this.#tenants.size > 1;
  }

  #tenantOfTunnel(id: string): TenantRuntime | undefined {
    for (const t of this.#tenants.values()) if (t.spec.tunnels.some((x) => x.id === id)) return t;
    return undefined;
  }

  /** Applies `state` from nothing. On failure everything already created is removed again. */
  static async start(state: DesiredState, opts: VrouterOptions): Promise<Vrouter> {
    const refused = unsupported(state);
    if (refused) throw refused;
    const v = new Vrouter(state, opts);
    try {
      await v.#up();
    } catch (e) {
      await v.stop();
      throw e;
    }
    return v;
  }

  get state(): DesiredState {
    return this.#state;
  }
  /** The first tenant's WireGuard device (what `run`'s ready line reports). */
  get wireguard(): WireGuardDevice | undefined {
    return [...this.#tenants.values()][0]?.wg;
  }
  get ipsec(): IpsecService | undefined {
    return this.#ipsec;
  }

  #workers(): number | undefined {
    const w = this.#opts.workers ?? this.#state.local.performance.workerThreads;
    return w > 0 ? w : undefined;
  }

  async #up(): Promise<void> {
    if (this.#tenants.size === 0) return;
    if (!this.#shared) {
      // Packets the workers do not translate themselves (to local subnets, the vrouter's own
      // addresses) cross between the devices through this namespace's IP stack.
      writeFileSync('/proc/sys/net/ipv4/ip_forward', '1\n');
      writeFileSync('/proc/sys/net/ipv6/conf/all/forwarding', '1\n');
    }
    for (const rt of this.#tenants.values()) await this.#openWireguard(rt);
    const withTunnels = [...this.#tenants.values()].filter((rt) => rt.spec.tunnels.length > 0);
    if (withTunnels.length > 0) {
      this.#ipsec = await IpsecService.start({
        tunName: ifname('ipsec-', withTunnels[0]!.spec.id),
        listenAddress: this.#state.local.network.listenAddress!,
        runtimeDir: this.#opts.runtimeDir,
        rawEsp: this.#state.local.ipsec.espEncapsulation === 'auto',
        ...(this.#workers() !== undefined ? { workers: this.#workers()! } : {}),
        logger: this.#opts.logger,
      });
      this.#ipsec.device.on('event', (ev) => {
        if (ev.type === 'tun-lost') this.#deviceLost(this.#shared ? null : (withTunnels[0]?.spec.id ?? null), 'ipsec', ev);
        else if (ev.type === 'sas-removed') this.#sasRemoved(ev);
      });
      await this.#watchCharon();
      for (const rt of withTunnels) for (const spec of rt.spec.tunnels) await this.#addTunnel(rt, spec);
      this.#refresh = setInterval(() => void this.refreshSas(), this.#opts.saRefreshMs ?? 2000);
      this.#refresh.unref();
    }
    for (const rt of this.#tenants.values()) for (const spec of rt.spec.tuns) await this.#openTun(rt, spec);
    this.#translate();
    for (const rt of this.#tenants.values()) {
      this.#events.configApplied({ tenant: rt.spec.id, version: configVersion(this.#state), changes: rt.spec.peers.length + rt.spec.tunnels.length });
    }
  }

  async #openWireguard(rt: TenantRuntime): Promise<void> {
    const t = rt.spec;
    if (!t.wireguard) return;
    // A short-lived copy for the addon (which keeps its own zeroed-on-drop copy).
    const key = t.wireguard.privateKey?.use((b) => Buffer.from(b));
    try {
      rt.wg = WireGuardDevice.open({
        tunName: ifname('wg-', t.id),
        listenPort: t.wireguard.listenPort,
        ...(this.#workers() !== undefined ? { workers: this.#workers()! } : {}),
        ...(key ? { privateKey: key } : {}),
      });
    } finally {
      key?.fill(0);
    }
    rt.wg.on('event', (ev) => {
      if (ev.type === 'handshake-failed') {
        this.#events.authFailure({ tenant: t.id, tunnel: ev.peer ?? null, remote: ev.endpoint ?? 'unknown', method: 'wireguard', reason: ev.reason ?? 'handshake failed' });
      } else if (ev.type === 'handshake-complete') {
        this.#events.tunnelUp({ tenant: t.id, tunnel: ev.peer ?? 'unknown', type: 'wireguard', ...(ev.endpoint ? { remote: ev.endpoint } : {}) });
      } else if (ev.type === 'tun-lost') {
        this.#deviceLost(t.id, 'wireguard', ev);
      } else {
        this.#opts.logger.info({ tenant: t.id, event: ev.type, worker: ev.worker, reason: ev.reason }, `wireguard ${ev.type}`);
      }
    });
    rt.uapi = await startUapiServer(rt.wg, {
      onRefused: (e, errno) => this.#opts.logger.warn({ tenant: t.id, interface: rt.wg?.name, ...describeRefusal(e, errno) }, 'UAPI set refused'),
    });
    await this.#applyPeerOps(rt, [], t.peers);
  }

  /**
   * A tenant's local network on a TUN of its own: opened here, moved into `netns` when given,
   * addressed and brought up there, with the tenant's other prefixes routed into it in that
   * namespace (the hosts there reach the tunnels through it).
   */
  async #openTun(rt: TenantRuntime, spec: TunSpec): Promise<void> {
    const dev = TenantTunDevice.open({
      tunName: spec.name,
      mtu: spec.mtu,
      subnets: [...spec.subnets],
      ...(this.#workers() !== undefined ? { workers: this.#workers()! } : {}),
    });
    rt.tuns.push({ spec, dev });
    dev.on('event', (ev) => {
      if (ev.type === 'tun-lost') this.#deviceLost(rt.spec.id, 'tun', ev);
    });
    const ip = async (args: string[]): Promise<void> => {
      await exec('ip', [...(spec.netns ? ['-n', spec.netns] : []), ...args]).catch((e: unknown) => {
        throw new CvlanError('CVLAN_ERR_TUN', `tenant ${rt.spec.id}, TUN ${spec.name}: ip ${args.join(' ')}: ${String((e as { stderr?: string }).stderr ?? e).trim()}`);
      });
    };
    if (spec.netns) {
      await exec('ip', ['link', 'set', 'dev', spec.name, 'netns', spec.netns]).catch((e: unknown) => {
        throw new CvlanError('CVLAN_ERR_TUN', `tenant ${rt.spec.id}, TUN ${spec.name}: cannot move it into netns ${spec.netns}: ${String((e as { stderr?: string }).stderr ?? e).trim()}`);
      });
    }
    for (const a of spec.addresses) await ip(['addr', 'replace', a, 'dev', spec.name]);
    await ip(['link', 'set', 'dev', spec.name, 'mtu', String(spec.mtu), 'up']);
    if (spec.netns) {
      const own = new Set(spec.subnets);
      for (const r of rt.spec.routes) {
        if (own.has(r.prefix)) continue;
        await ip([...(r.prefix.includes(':') ? ['-6'] : []), 'route', 'replace', r.prefix, 'dev', spec.name]);
      }
    }
    for (const s of spec.subnets) this.#events.routingChange({ tenant: rt.spec.id, tunnel: null, action: 'add', prefix: s, via: { kind: 'tun', id: spec.name } });
  }

  /**
   * Where each device's workers send what they decapsulate (docs/translation.md). One tenant: the
   * WireGuard and IPsec devices are a pair, and what neither routes goes to the namespace. Several:
   * every device may hand to every tenant's devices, a packet is taken by its own tenant's (or by
   * another's when an inter-tenant rule admits its prefix pair), and the rest is dropped.
   */
  #translate(): void {
    const ipsec = this.#ipsec && !this.#ipsec.device.closed ? this.#ipsec.device : undefined;
    const tenants = [...this.#tenants.values()];
    const tunsOf = (rt: TenantRuntime): TenantTunDevice[] => rt.tuns.map((t) => t.dev).filter((d) => !d.closed);
    if (!this.#shared) {
      const rt = tenants[0];
      if (!rt) return;
      ipsec?.setTenants([]);
      // One tenant: every device hands to every other; a TUN's leftovers are dropped.
      const devices = [...(rt.wg ? [rt.wg] : []), ...(ipsec ? [ipsec] : []), ...tunsOf(rt)];
      for (const d of devices) {
        const targets = devices.filter((x) => x !== d).map((x) => ({ device: x, tenant: 0 }));
        setTranslation(d, targets.length > 0 ? { stamp: 0, isolated: d instanceof TenantTunDevice, targets } : null);
      }
      return;
    }
    const tagOf = new Map(tenants.map((rt) => [rt.spec.id, rt.tag]));
    ipsec?.setTenants(tenants.flatMap((rt) => rt.spec.tunnels.map((x) => ({ ifId: this.#ifIds.get(x.id)!, tenant: rt.tag }))).filter((x) => x.ifId !== undefined));
    const rulesInto = (rt: TenantRuntime): TranslationTarget['rules'] =>
      this.#state.rules
        .filter((r) => r.toTenant === rt.spec.id && tagOf.has(r.fromTenant))
        .map((r) => ({ fromTenant: tagOf.get(r.fromTenant)!, source: r.fromPrefix, destination: r.toPrefix }));
    const targets: TranslationTarget[] = tenants.flatMap((rt) => [
      ...(rt.wg ? [{ device: rt.wg, tenant: rt.tag, rules: rulesInto(rt) }] : []),
      ...(ipsec && rt.spec.tunnels.length > 0 ? [{ device: ipsec, tenant: rt.tag, rules: rulesInto(rt) }] : []),
      ...tunsOf(rt).map((d) => ({ device: d, tenant: rt.tag, rules: rulesInto(rt) })),
    ]);
    for (const rt of tenants) {
      if (rt.wg) setTranslation(rt.wg, { stamp: rt.tag, isolated: true, targets });
      for (const d of tunsOf(rt)) setTranslation(d, { stamp: rt.tag, isolated: true, targets });
    }
    if (ipsec) setTranslation(ipsec, { stamp: 0, isolated: true, targets });
  }

  /**
   * An EAP server asks the client for its identity (`eap_id = %any`: charon skips EAP-Identity
   * when a fixed one is configured, and clients then log in with their IKE identity), so any user
   * whose password charon holds could authenticate. Here the login is held to the tunnel's
   * configured user: another one is torn down at once and logged as an authentication failure.
   */
  #wrongEapIdentity(conn: string, sa: { 'remote-host'?: string; 'remote-eap-id'?: string; uniqueid?: string }): boolean {
    const rt = this.#tenantOfTunnel(conn);
    const auth = rt?.spec.tunnels.find((x) => x.id === conn)?.auth;
    if (auth?.method !== 'eap' || auth.role !== 'server') return false;
    const got = sa['remote-eap-id'];
    if (got === auth.eapIdentity) return false;
    this.#events.authFailure({
      tenant: rt!.spec.id,
      tunnel: conn,
      remote: sa['remote-host'] ?? 'unknown',
      method: 'ike',
      reason: `EAP identity ${JSON.stringify(got ?? null)} is not the tunnel's user`,
    });
    void this.#ipsec?.vici
      .terminate({ ...(sa.uniqueid ? { ikeId: Number(sa.uniqueid) } : { ike: conn }), force: true, timeoutMs: -1 })
      .catch((e: unknown) => this.#opts.logger.warn({ tunnel: conn, err: (e as Error).message }, 'terminating an IKE_SA with the wrong EAP identity'));
    return true;
  }

  async #watchCharon(): Promise<void> {
    const vici = this.#ipsec!.vici;
    const supervisor = this.#ipsec!.supervisor;
    const tenantOf = (tunnel: string | undefined): string | null => (tunnel ? (this.#tenantOfTunnel(tunnel)?.spec.id ?? null) : null);
    let lastExit: { code: number | null; signal: string | null } = { code: null, signal: null };
    supervisor.on('exited', (e) => (lastExit = { code: e.code, signal: e.signal }));
    supervisor.on('restarting', (r) => this.#events.charonRestart({ attempt: r.attempt, backoff_ms: r.delayMs, exit_code: lastExit.code, signal: lastExit.signal }));
    supervisor.on('line', (line) => {
      const failure = authFailure(line);
      if (failure) this.#events.authFailure({ tenant: tenantOf(failure.conn), tunnel: failure.conn ?? null, remote: failure.remote ?? 'unknown', method: 'ike', reason: failure.reason });
    });
    vici.on('event', (name, msg) => {
      for (const [conn, v] of Object.entries(msg)) {
        if (typeof v !== 'object' || v === null) continue;
        const sa = v as { state?: string; 'remote-host'?: string; 'remote-eap-id'?: string; uniqueid?: string };
        const tenant = tenantOf(conn) ?? 'unknown';
        if (name === 'ike-updown') {
          if (msg.up === 'yes') {
            if (this.#wrongEapIdentity(conn, sa)) continue;
            this.#events.tunnelUp({ tenant, tunnel: conn, type: 'ipsec', ...(sa['remote-host'] ? { remote: sa['remote-host'] } : {}) });
          } else this.#events.tunnelDown({ tenant, tunnel: conn, type: 'ipsec', reason: `IKE_SA ${sa.state ?? 'down'}` });
        } else if (name === 'ike-rekey') {
          this.#ikeRekeys++;
        } else if (name === 'child-rekey') {
          this.#childRekeys++;
        }
      }
      void this.refreshSas();
    });
    for (const ev of ['ike-updown', 'child-updown', 'ike-rekey', 'child-rekey']) await vici.subscribe(ev);
  }

  /** Reads the IKE view from charon; the API serves the last one read (a scrape never waits on charon). */
  async refreshSas(): Promise<void> {
    if (!this.#ipsec) return;
    try {
      this.#ikeSas = await this.#ipsec.listSas();
    } catch {
      // charon is restarting; the supervisor brings it back and the next refresh fills the view.
    }
  }

  async #route(rt: TenantRuntime, action: 'add' | 'remove', prefix: string, dev: string, via: RouteView['via']): Promise<void> {
    this.#events.routingChange({ tenant: rt.spec.id, tunnel: via.kind === 'ipsec' ? via.id : null, action, prefix, via });
    // Several tenants: the tables live in the workers only (see the module doc).
    if (this.#shared) return;
    const key = `${prefix} ${dev}`;
    if (action === 'add' && this.#routes.has(key)) return;
    const v6 = prefix.includes(':');
    const args = [...(v6 ? ['-6'] : []), 'route', action === 'add' ? 'replace' : 'del', prefix, 'dev', dev];
    await exec('ip', args).catch((e: unknown) => {
      if (action === 'remove') return;
      throw new CvlanError('CVLAN_ERR_TUN', `cannot route ${prefix} into ${dev}: ${String((e as { stderr?: string }).stderr ?? e).trim()}`);
    });
    if (action === 'add') this.#routes.add(key);
    else this.#routes.delete(key);
  }

  async #applyPeerOps(rt: TenantRuntime, removed: readonly WireguardPeerSpec[], changed: readonly WireguardPeerSpec[]): Promise<void> {
    const wg = rt.wg;
    if (!wg || (removed.length === 0 && changed.length === 0)) return;
    const k = (b64: string): Uint8Array => new Uint8Array(Buffer.from(b64, 'base64'));
    wg.apply({
      peers: [
        ...removed.map((p) => ({ publicKey: k(p.publicKey), remove: true })),
        ...changed.map((p) => ({
          publicKey: k(p.publicKey),
          presharedKey: p.presharedKey ? p.presharedKey.use((b) => new Uint8Array(b)) : null,
          ...(p.endpoint !== undefined ? { endpoint: p.endpoint } : {}),
          persistentKeepalive: p.persistentKeepalive,
          replaceAllowedIps: true,
          allowedIps: [...p.allowedIps],
        })),
      ],
    });
    const dev = wg.tunName;
    for (const p of removed) for (const a of p.allowedIps) await this.#route(rt, 'remove', a, dev, { kind: 'wireguard', id: p.publicKey });
    for (const p of changed) for (const a of p.allowedIps) await this.#route(rt, 'add', a, dev, { kind: 'wireguard', id: p.publicKey });
  }

  async #addTunnel(rt: TenantRuntime, spec: IpsecTunnelSpec): Promise<void> {
    const svc = this.#ipsec!;
    const ifId = this.#ifIds.get(spec.id) ?? this.#nextIfId++;
    this.#ifIds.set(spec.id, ifId);
    // The service routes remote subnets into its TUN only for a vrouter of one tenant.
    await svc.addTunnel(await ipsecTunnelOf(spec, ifId, this.#state.local.network.listenAddress!), { route: !this.#shared });
    for (const s of spec.remoteSubnets) this.#events.routingChange({ tenant: rt.spec.id, tunnel: spec.id, action: 'add', prefix: s, via: { kind: 'ipsec', id: spec.id } });
    // An initiating tunnel is started by charon itself (start_action=start, retried forever): a
    // second initiation from here would race it and leave a spurious failed IKE_SA behind.
  }

  /**
   * Moves to `next` changing only what differs. A state this build cannot apply, or whose
   * device-level settings (listen port, private key, addresses) differ, is refused before anything
   * changes; the running state stays.
   */
  async reconcile(next: DesiredState): Promise<number> {
    const refused = unsupported(next);
    if (refused) throw refused;
    // Planned in full before anything changes: a refused plan leaves the running state as it is.
    // The tenant set is the same (plan refuses otherwise), so the runtimes and tags stay.
    const ops = plan(this.#state, next, this.#fpKey);
    for (const spec of next.tenants) this.#tenants.get(spec.id)!.spec = spec;
    for (const rt of this.#tenants.values()) {
      const mine = ops.filter((o) => o.tenant === rt.spec.id);
      const removed = mine.flatMap((o) => (o.kind === 'peer-remove' ? [o.peer] : []));
      const upserted = mine.flatMap((o) => (o.kind === 'peer-upsert' ? [o.peer] : []));
      await this.#applyPeerOps(rt, removed, upserted);
      for (const o of mine) {
        if (o.kind !== 'peer-upsert' || !o.previous || !rt.wg) continue;
        const kept = new Set(o.peer.allowedIps);
        for (const prefix of o.previous.allowedIps) {
          if (!kept.has(prefix)) await this.#route(rt, 'remove', prefix, rt.wg.tunName, { kind: 'wireguard', id: o.peer.publicKey });
        }
      }
      for (const o of mine) {
        if (o.kind === 'tunnel-remove' || o.kind === 'tunnel-replace') await this.#ipsec!.removeTunnel(o.kind === 'tunnel-remove' ? o.tunnel.id : o.previous.id);
        if (o.kind === 'tunnel-add' || o.kind === 'tunnel-replace') await this.#addTunnel(rt, o.tunnel);
      }
    }
    this.#state = next;
    // New tunnels' if_ids and changed inter-tenant rules reach the workers.
    this.#translate();
    this.#appliedAt = new Date().toISOString();
    this.#events.configApplied({ tenant: this.#shared ? null : (next.tenants[0]?.id ?? null), version: configVersion(next), changes: ops.length });
    return ops.length;
  }

  async stop(): Promise<void> {
    if (this.#refresh) clearInterval(this.#refresh);
    this.#refresh = undefined;
    // Translation first: no worker hands a packet to a device that is going away.
    for (const rt of this.#tenants.values()) {
      if (rt.wg && !rt.wg.closed) setTranslation(rt.wg, null);
      for (const t of rt.tuns) if (!t.dev.closed) setTranslation(t.dev, null);
    }
    if (this.#ipsec && !this.#ipsec.device.closed) setTranslation(this.#ipsec.device, null);
    if (this.#ipsec) await this.#ipsec.close().catch((e: unknown) => this.#opts.logger.warn({ err: (e as Error).message }, 'closing IPsec'));
    this.#ipsec = undefined;
    for (const rt of this.#tenants.values()) {
      if (rt.uapi) await rt.uapi.close().catch(() => undefined);
      rt.uapi = undefined;
      rt.wg?.close();
      rt.wg = undefined;
      for (const t of rt.tuns) t.dev.close();
      rt.tuns = [];
    }
  }

  /** The data plane removed a tunnel's SAs on its own (orphans of a charon restart). */
  #sasRemoved(ev: { ifId?: number; spis?: string[]; reason?: string }): void {
    const tunnel = [...this.#ifIds].find(([, ifId]) => ifId === ev.ifId)?.[0] ?? null;
    const tenant = tunnel === null ? null : ([...this.#tenants.values()].find((rt) => rt.spec.tunnels.some((s) => s.id === tunnel))?.spec.id ?? null);
    this.#events.sasRemoved({ tenant, tunnel, spis: ev.spis ?? [], reason: ev.reason ?? 'removed by the data plane' });
  }

  /** Every worker reports the loss of its own queue: logged once per device. */
  #deviceLost(tenant: string | null, kind: 'wireguard' | 'ipsec' | 'tun', ev: { device?: string; reason?: string }): void {
    const device = ev.device ?? 'unknown';
    if (this.#lostDevices.has(device)) return;
    const reason = ev.reason ?? 'TUN lost';
    this.#lostDevices.set(device, reason);
    this.#events.deviceLost({ tenant, device, kind, reason });
  }

  // --- RouterStateSource -------------------------------------------------------------------

  health(): HealthView {
    const reasons: string[] = [];
    for (const rt of this.#tenants.values()) {
      if (rt.spec.wireguard && (!rt.wg || rt.wg.closed)) reasons.push(`tenant ${rt.spec.id}: the WireGuard device is not open`);
      for (const t of rt.tuns) if (t.dev.closed) reasons.push(`tenant ${rt.spec.id}: TUN ${t.spec.name} is not open`);
    }
    if ([...this.#tenants.values()].some((rt) => rt.spec.tunnels.length > 0)) {
      if (!this.#ipsec) reasons.push('the IPsec device is not open');
      else if (this.#ipsec.supervisor.pid === undefined) reasons.push('charon is not running (installed SAs keep forwarding)');
    }
    for (const [device, reason] of this.#lostDevices) reasons.push(`TUN ${device} lost (${reason}); restart the daemon`);
    return { live: true, ready: reasons.length === 0, reasons };
  }

  configVersion(): ConfigVersionView {
    return { version: configVersion(this.#state), appliedAt: this.#appliedAt };
  }

  tenants(): TenantView[] {
    return this.#state.tenants.map((t) => ({ id: t.id, tunnels: t.tunnels.length, wireguard_peers: t.peers.length, tuns: t.tuns.length }));
  }

  tunnels(): TunnelView[] {
    return [...this.#tenants.values()].flatMap(({ spec: t }) => this.#tunnelsOf(t));
  }

  #tunnelsOf(t: TenantSpec): TunnelView[] {
    return t.tunnels.map((spec) => {
      const sa = this.#ikeSas.find((s) => s.name === spec.id);
      const now = Date.now() / 1000;
      return {
        id: spec.id,
        tenant: t.id,
        type: 'ipsec' as const,
        remote_id: spec.remoteId,
        auth_method: spec.auth.method,
        state: tunnelState(sa),
        ike_sa: sa
          ? {
              state: sa.state ?? 'UNKNOWN',
              algorithms: { encryption: keyed(sa.encrAlg, viciStr(sa.raw, 'encr-keysize')), integrity: viciStr(sa.raw, 'integ-alg') ?? null, prf: sa.prfAlg ?? '', dh_group: sa.dhGroup ?? '' },
              established_at: sa.established !== undefined ? new Date((now - sa.established) * 1000).toISOString() : null,
              rekey_in_s: seconds(viciStr(sa.raw, 'rekey-time')),
            }
          : null,
        child_sas: (sa?.childSas ?? []).map((c) => ({
          name: c.name,
          spi_in: hex8(c.spiIn),
          spi_out: hex8(c.spiOut),
          algorithms: { encryption: keyed(c.encrAlg, c.encrKeysize), integrity: viciStr(c.raw, 'integ-alg') ?? null, esn: viciStr(c.raw, 'esn') === '1' },
          udp_encap: c.encap,
          local_ts: c.localTs ?? [],
          remote_ts: c.remoteTs ?? [],
          bytes_in: c.bytesIn ?? 0,
          bytes_out: c.bytesOut ?? 0,
          packets_in: c.packetsIn ?? 0,
          packets_out: c.packetsOut ?? 0,
          rekey_in_s: seconds(viciStr(c.raw, 'rekey-time')),
        })),
      };
    });
  }

  wireguardPeers(): PeerView[] {
    return [...this.#tenants.values()].flatMap((rt) => this.#peersOf(rt));
  }

  #peersOf(rt: TenantRuntime): PeerView[] {
    if (!rt.wg || rt.wg.closed) return [];
    return rt.wg.state().peers.map((p) => ({
      public_key: Buffer.from(p.publicKey).toString('base64'),
      tenant: rt.spec.id,
      endpoint: p.endpoint,
      allowed_ips: p.allowedIps,
      latest_handshake: p.lastHandshake ? new Date(p.lastHandshake.sec * 1000).toISOString() : null,
      rx_bytes: Number(p.rxBytes),
      tx_bytes: Number(p.txBytes),
      persistent_keepalive_s: p.persistentKeepalive > 0 ? p.persistentKeepalive : null,
    }));
  }

  routes(tenant: string): RouteView[] | undefined {
    const t = this.#state.tenants.find((x) => x.id === tenant);
    if (!t) return undefined;
    return t.routes.map((r) => ({
      prefix: r.prefix,
      via: r.via.kind === 'wireguard' ? { kind: 'wireguard', id: r.via.peer } : r.via.kind === 'ipsec' ? { kind: 'ipsec', id: r.via.tunnel } : { kind: 'tun', id: r.via.device },
    }));
  }

  #allStats(): WorkerStats[] {
    const out: WorkerStats[] = [];
    const rts = [...this.#tenants.values()];
    for (const d of [...rts.map((rt) => rt.wg), this.#ipsec?.device, ...rts.flatMap((rt) => rt.tuns.map((t) => t.dev))]) if (d && !d.closed) out.push(...d.stats());
    return out;
  }

  drops(): DropView[] {
    // Worker counters are per device, not per tenant: a tenant only when there is one.
    const tenant = this.#shared ? null : ([...this.#tenants.keys()][0] ?? null);
    // Summed per (reason, worker): several data-plane codes share one API reason.
    const sums = new Map<string, DropView>();
    const add = (code: string, count: bigint, worker: number | null): void => {
      if (count === 0n) return;
      const reason = dropReasonOf(code);
      const key = `${reason}/${worker ?? '-'}`;
      const v = sums.get(key) ?? { reason, count: 0, worker, tenant };
      v.count += Number(count);
      sums.set(key, v);
    };
    this.#allStats().forEach((w, i) => {
      for (const d of w.drops) add(d.reason, d.count, i);
    });
    const extra = [
      ...[...this.#tenants.values()].flatMap((rt) => (rt.wg && !rt.wg.closed ? rt.wg.counters().drops : [])),
      ...(this.#ipsec && !this.#ipsec.device.closed ? this.#ipsec.counters().drops : []),
    ];
    for (const d of extra) add(d.reason, d.count, null);
    return [...sums.values()];
  }

  workers(): WorkerView[] {
    const wallNs = Number(process.hrtime.bigint() - this.#startedNs);
    return this.#allStats().map((w, i) => ({
      index: i,
      rx_packets: Number(w.tunRxPackets + w.udpRxPackets),
      tx_packets: Number(w.tunTxPackets + w.udpTxPackets),
      rx_bytes: Number(w.tunRxBytes + w.udpRxBytes),
      tx_bytes: Number(w.tunTxBytes + w.udpTxBytes),
      batches: Number(w.batches),
      restarts: Number(w.restarts),
      translated: Number(w.forwarded),
      // Average since the devices opened (a restarted worker's time counts from its first start).
      busy_ratio: wallNs > 0 ? Math.min(1, Number(w.busyNs) / wallNs) : null,
    }));
  }

  counters(): CounterSnapshot {
    const peers = this.wireguardPeers();
    const tunnels = this.tunnels();
    const drops = new Map<DropReason, number>();
    for (const d of this.drops()) drops.set(d.reason, (drops.get(d.reason) ?? 0) + d.count);
    const rts = [...this.#tenants.values()];
    return {
      tunnels_active: rts.flatMap((rt) => [
        { tenant: rt.spec.id, type: 'ipsec' as const, count: tunnels.filter((x) => x.tenant === rt.spec.id && (x.state === 'up' || x.state === 'rekeying')).length },
        {
          tenant: rt.spec.id,
          type: 'wireguard' as const,
          count: peers.filter((p) => p.tenant === rt.spec.id && p.latest_handshake !== null && Date.now() - Date.parse(p.latest_handshake) < 180_000).length,
        },
      ]),
      tunnels: [
        ...tunnels.map((x) => ({
          tunnel: x.id,
          bytes_in: x.child_sas.reduce((s, c) => s + c.bytes_in, 0),
          bytes_out: x.child_sas.reduce((s, c) => s + c.bytes_out, 0),
          packets_in: x.child_sas.reduce((s, c) => s + c.packets_in, 0),
          packets_out: x.child_sas.reduce((s, c) => s + c.packets_out, 0),
        })),
        ...peers.map((p) => ({ tunnel: `wg:${p.public_key}`, bytes_in: p.rx_bytes, bytes_out: p.tx_bytes, packets_in: 0, packets_out: 0 })),
      ],
      ike_sa_active: this.#ikeSas.filter((s) => s.state === 'ESTABLISHED').length,
      child_sa_active: this.#ikeSas.reduce((n, s) => n + s.childSas.filter((c) => c.state === 'INSTALLED').length, 0),
      ike_rekeys_total: this.#ikeRekeys,
      child_rekeys_total: this.#childRekeys,
      drops: [...drops].map(([reason, count]) => ({ reason, count })),
      handshakes: rts.flatMap((rt) => {
        const c = rt.wg && !rt.wg.closed ? rt.wg.counters() : undefined;
        return c
          ? [
              { tenant: rt.spec.id, result: 'success' as const, count: Number(c.handshakesCompleted) },
              { tenant: rt.spec.id, result: 'auth_failure' as const, count: Number(c.handshakesFailed) },
            ]
          : [];
      }),
      workers: this.workers().map((w) => ({ worker: w.index, rx_packets: w.rx_packets, tx_packets: w.tx_packets, restarts: w.restarts })),
    };
  }

  /** A short human summary for the demo and `run`'s stop line. */
  summary(): { tunnels: TunnelView[]; peers: PeerView[]; workers: ReturnType<typeof totals> } {
    return { tunnels: this.tunnels(), peers: this.wireguardPeers(), workers: totals(this.#allStats()) };
  }
}

