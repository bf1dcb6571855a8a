/**
 * The running vrouter: the desired state (`../config/model.ts`) applied to the data plane and
 * to charon. This module applies (`start`, `reconcile`, `stop`); the rest of the daemon is split
 * by job:
 *   - `handoff.ts`: where each device's workers hand packets (pure, the tenant decision's inputs);
 *   - `charon-events.ts`: charon's VICI events and log lines as the vrouter's events;
 *   - `views.ts`: the read model for the admin API and /metrics (`RouterStateSource`);
 *   - `os.ts`: `ip` and sysctls; `tunnels.ts`: configured tunnels as charon is told about them.
 *
 * What this build applies, per vrouter:
 *   - per tenant, its WireGuard interface: a userspace WireGuard device `wg-<tenant>` with the
 *     UAPI socket, so `wg show` works;
 *   - every tenant's IPsec tunnels on one IPsec device `ipsec-<first tenant>` (UDP 500/4500, ESP
 *     in Rust) and one supervised charon with the `cvlan` plugin; each tunnel's CHILD_SAs carry
 *     its own if_id, which tells the data plane the tenant;
 *   - per tenant TUN (`tun[]`), a TUN-only device for a local network, moved into its `netns`
 *     and addressed there, with the tenant's other prefixes routed into it;
 *   - handoff on the workers (docs/translation.md): a packet one device decapsulates (or a
 *     tenant TUN reads) goes out through the device that routes it for the packet's tenant.
 * With one tenant the namespace's IP stack also routes each peer's allowed IPs and each tunnel's
 * remote subnets into the devices (traffic of the vrouter itself, hosts behind it). With several,
 * the namespace has no routes into them: its one table cannot keep overlapping tenants apart, so
 * tenants meet only in the workers, isolated, and inter-tenant rules open single prefix pairs.
 *
 * Apply order is "data plane first, then routes, then charon"; `stop()` runs it backwards.
 * `reconcile()` changes only the peers and tunnels whose specification changed.
 */
import type { Logger } from 'pino';
import { ConfigError } from '../errors.js';
import { configVersion } from '../config/load.js';
import { MIN_PSK_BYTES } from '../config/controller.js';
import type { DesiredState, IpsecTunnelSpec, TunSpec, WireguardPeerSpec } from '../config/model.js';
import { TenantTunDevice, WireGuardDevice, setHandoff, type totals } from '../dataplane/index.js';
import { IpsecService } from '../ipsec/service.js';
import { eventLog, type EventLog } from '../log.js';
import { plan } from '../reconcile/plan.js';
import { startUapiServer } from '../wireguard/uapi-server.js';
import type { ConfigVersionView, CounterSnapshot, DropView, HealthView, PeerView, RouteView, RouterStateSource, TenantView, TunnelView, WorkerView } from '../api/state.js';
import { CharonWatch } from './charon-events.js';
import { handoffPlan } from './handoff.js';
import { IkeResync, IkeView } from './ike-view.js';
import { addRoute, enableForwarding, ip, removeRoute } from './os.js';
import { ifname, type TenantRuntime } from './runtime.js';
import { ipsecTunnelOf } from './tunnels.js';
import { RouterViews } from './views.js';


export interface VrouterOptions {
  logger: Logger;
  /** charon's configuration, VICI socket and the plugin link (0700). */
  runtimeDir: string;
  /** Worker threads per device. Default: the local `[performance] worker_threads`, else CPUs. */
  workers?: number;
  /**
   * How often the IKE view is read from charon in full as a safety net, ms. Default 60000; charon's
   * events keep it current in between (`ike-view.ts`).
   */
  saRefreshMs?: number;
}

/** The reasons this build cannot apply a state it otherwise accepts; empty when it can. */
export function unsupported(state: DesiredState): ConfigError | undefined {
  if (state.tenants.some((t) => t.tunnels.length > 0) && !state.local.network.listenAddress) {
    return new ConfigError([{ path: 'network.listen_address', reason: 'IPsec tunnels need the address IKE and ESP listen on' }]);
  }
  return undefined;
}

export class Vrouter implements RouterStateSource {
  readonly #opts: VrouterOptions;
  readonly #events: EventLog;
  #state: DesiredState;
  #appliedAt: string;
  /** Per tenant, in the state's order; tags (≥ 1) are this run's data-plane names of tenants. */
  #tenants = new Map<string, TenantRuntime>();
  #ipsec: IpsecService | undefined;
  #charon: CharonWatch | undefined;
  /** Tunnel id → if_id; if_ids are never reused within a run (a stale SA cannot match a new tunnel). */
  #ifIds = new Map<string, number>();
  #nextIfId = 1;
  readonly #ike = new IkeView();
  #resync: IkeResync | undefined;
  #refresh: NodeJS.Timeout | undefined;
  #routes = new Set<string>();
  readonly #views: RouterViews;
  /** Keyed-digest key for fingerprints of secrets; lives only in this process. */
  readonly #fpKey = Buffer.from(crypto.getRandomValues(new Uint8Array(32)));

  private constructor(state: DesiredState, opts: VrouterOptions) {
    this.#state = state;
    this.#opts = opts;
    this.#events = eventLog(opts.logger);
    this.#appliedAt = new Date().toISOString();
    state.tenants.forEach((t, i) => this.#tenants.set(t.id, { spec: t, tag: i + 1, tuns: [] }));
    this.#views = new RouterViews({
      state: () => this.#state,
      appliedAt: () => this.#appliedAt,
      runtimes: () => [...this.#tenants.values()],
      ipsec: () => this.#ipsec,
      ike: () => this.#ike,
      rekeys: () => ({ ike: this.#charon?.ikeRekeys ?? 0, child: this.#charon?.childRekeys ?? 0 }),
      startedNs: process.hrtime.bigint(),
    });
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
    // Packets the workers do not hand off themselves (to local subnets, the vrouter's own
    // addresses) cross between the devices through this namespace's IP stack.
    if (!this.#shared) enableForwarding();
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
      this.#charon = await CharonWatch.start(this.#ipsec, {
        events: this.#events,
        logger: this.#opts.logger,
        tunnel: (conn) => {
          const rt = this.#tenantOfTunnel(conn);
          const spec = rt?.spec.tunnels.find((x) => x.id === conn);
          return rt && spec ? { tenant: rt.spec.id, auth: spec.auth } : undefined;
        },
        changed: (name, msg) => this.#ike.apply(name, msg),
      });
      const ipsec = this.#ipsec;
      this.#resync = new IkeResync(this.#ike, () => ipsec.listSas());
      // A (re)connected charon may have SAs the view missed, or none of those it shows.
      ipsec.vici.on('connected', () => void this.refreshSas());
      for (const rt of withTunnels) await this.#addTunnels(rt, rt.spec.tunnels);
      void this.refreshSas();
      // The safety net never overlaps a read under way.
      this.#refresh = setInterval(() => {
        if (!this.#resync?.busy) void this.refreshSas();
      }, this.#opts.saRefreshMs ?? 60_000);
      this.#refresh.unref();
    }
    for (const rt of this.#tenants.values()) for (const spec of rt.spec.tuns) await this.#openTun(rt, spec);
    this.#handoff();
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
      } else {
        this.#opts.logger.info({ tenant: t.id, event: ev.type, worker: ev.worker, reason: ev.reason }, `wireguard ${ev.type}`);
      }
    });
    rt.uapi = await startUapiServer(rt.wg);
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
    const what = `tenant ${rt.spec.id}, TUN ${spec.name}`;
    const netns = { netns: spec.netns };
    if (spec.netns) await ip(['link', 'set', 'dev', spec.name, 'netns', spec.netns], `${what}: cannot move it into netns ${spec.netns}`);
    for (const a of spec.addresses) await ip(['addr', 'replace', a, 'dev', spec.name], `${what}: cannot add the address ${a}`, netns);
    await ip(['link', 'set', 'dev', spec.name, 'mtu', String(spec.mtu), 'up'], `${what}: cannot bring it up`, netns);
    if (spec.netns) {
      const own = new Set(spec.subnets);
      for (const r of rt.spec.routes) if (!own.has(r.prefix)) await addRoute(r.prefix, spec.name, netns);
    }
    for (const s of spec.subnets) this.#events.routingChange({ tenant: rt.spec.id, tunnel: null, action: 'add', prefix: s, via: { kind: 'tun', id: spec.name } });
  }

  /** Tells every device's workers where to hand packets (`handoff.ts`). */
  #handoff(): void {
    const ipsec = this.#ipsec && !this.#ipsec.device.closed ? this.#ipsec.device : undefined;
    const p = handoffPlan(
      [...this.#tenants.values()].map((rt) => ({
        id: rt.spec.id,
        tag: rt.tag,
        tunnels: rt.spec.tunnels.map((x) => x.id),
        wg: rt.wg,
        tuns: rt.tuns.map((t) => t.dev).filter((d) => !d.closed),
      })),
      ipsec,
      this.#state.rules,
      this.#ifIds,
    );
    ipsec?.setTenants(p.ipsecTenants);
    for (const { device, handoff } of p.devices) setHandoff(device, handoff);
  }

  /**
   * Reads the IKE view from charon in full (`ike-view.ts`: one read at a time); the API serves the
   * view as it is (a scrape never waits on charon). A read while charon is away fails quietly: the
   * reconnect reads again.
   */
  async refreshSas(): Promise<void> {
    await this.#resync?.resync();
  }

  async #route(rt: TenantRuntime, action: 'add' | 'remove', prefix: string, dev: string, via: RouteView['via']): Promise<void> {
    this.#events.routingChange({ tenant: rt.spec.id, tunnel: via.kind === 'ipsec' ? via.id : null, action, prefix, via });
    // Several tenants: the tables live in the workers only (see the module doc).
    if (this.#shared) return;
    const key = `${prefix} ${dev}`;
    if (action === 'add') {
      if (this.#routes.has(key)) return;
      await addRoute(prefix, dev);
      this.#routes.add(key);
    } else {
      await removeRoute(prefix, dev);
      this.#routes.delete(key);
    }
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

  /** Loads a tenant's tunnels into charon in one pipelined batch (`IpsecService.addTunnels`). */
  async #addTunnels(rt: TenantRuntime, specs: readonly IpsecTunnelSpec[]): Promise<void> {
    const svc = this.#ipsec!;
    const listen = this.#state.local.network.listenAddress!;
    const tunnels = [];
    for (const spec of specs) {
      if (spec.auth.method === 'psk' && spec.auth.weak) {
        // Accepted only because the tunnel says allow_weak_psk; counted in cvlan_vrouter_weak_psk_tunnels.
        this.#events.weakPsk({ tenant: rt.spec.id, tunnel: spec.id, min_bytes: MIN_PSK_BYTES });
      }
      const ifId = this.#ifIds.get(spec.id) ?? this.#nextIfId++;
      this.#ifIds.set(spec.id, ifId);
      tunnels.push(await ipsecTunnelOf(spec, ifId, listen));
    }
    // The service routes remote subnets into its TUN only for a vrouter of one tenant.
    await svc.addTunnels(tunnels, { route: !this.#shared });
    for (const spec of specs) {
      for (const s of spec.remoteSubnets) this.#events.routingChange({ tenant: rt.spec.id, tunnel: spec.id, action: 'add', prefix: s, via: { kind: 'ipsec', id: spec.id } });
    }
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
        if (o.kind === 'tunnel-add' || o.kind === 'tunnel-replace') await this.#addTunnels(rt, [o.tunnel]);
      }
    }
    this.#state = next;
    // New tunnels' if_ids and changed inter-tenant rules reach the workers.
    this.#handoff();
    this.#appliedAt = new Date().toISOString();
    this.#events.configApplied({ tenant: this.#shared ? null : (next.tenants[0]?.id ?? null), version: configVersion(next), changes: ops.length });
    return ops.length;
  }

  async stop(): Promise<void> {
    if (this.#refresh) clearInterval(this.#refresh);
    this.#refresh = undefined;
    // Handoff first: no worker hands a packet to a device that is going away.
    for (const rt of this.#tenants.values()) {
      if (rt.wg && !rt.wg.closed) setHandoff(rt.wg, null);
      for (const t of rt.tuns) if (!t.dev.closed) setHandoff(t.dev, null);
    }
    if (this.#ipsec && !this.#ipsec.device.closed) setHandoff(this.#ipsec.device, null);
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

  // --- RouterStateSource (views.ts) ----------------------------------------------------------

  health(): HealthView {
    return this.#views.health();
  }
  configVersion(): ConfigVersionView {
    return this.#views.configVersion();
  }
  tenants(): TenantView[] {
    return this.#views.tenants();
  }
  tunnels(): TunnelView[] {
    return this.#views.tunnels();
  }
  wireguardPeers(): PeerView[] {
    return this.#views.wireguardPeers();
  }
  routes(tenant: string): RouteView[] | undefined {
    return this.#views.routes(tenant);
  }
  drops(): DropView[] {
    return this.#views.drops();
  }
  workers(): WorkerView[] {
    return this.#views.workers();
  }
  counters(): CounterSnapshot {
    return this.#views.counters();
  }

  /** A short human summary for the demo and `run`'s stop line. */
  summary(): { tunnels: TunnelView[]; peers: PeerView[]; workers: ReturnType<typeof totals> } {
    return { tunnels: this.tunnels(), peers: this.wireguardPeers(), workers: this.#views.totals() };
  }
}
