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
 *     tenant TUN reads) goes out through the device that routes it for the packet's tenant;
 *   - per tenant with `bgp`, a supervised BGP speaker announcing what the tenant reaches now
 *     (`advertise.ts` decides, `../routing/` speaks; docs/routing.md).
 * With one tenant the namespace's IP stack also routes each peer's allowed IPs and each tunnel's
 * remote subnets into the devices (traffic of the vrouter itself, hosts behind it). With several,
 * the namespace has no routes into them: its one table cannot keep overlapping tenants apart, so
 * tenants meet only in the workers, isolated, and inter-tenant rules open single prefix pairs.
 *
 * Apply order is "data plane first, then routes, then charon"; `stop()` runs it backwards.
 * `reconcile()` changes only the peers, tunnels, WireGuard interfaces and tenant TUNs whose
 * specification changed, switches the routing mode when the tenant count crosses one, starts the
 * IPsec service with the first tunnel and stops it after the last (reopening it when its listen
 * address or ESP encapsulation changes), and rolls back a plan that fails half-way.
 */
import type { Logger } from 'pino';
import { ConfigError, CvlanError } from '../errors.js';
import { configVersion } from '../config/load.js';
import { MIN_PSK_BYTES } from '../config/controller.js';
import type { DesiredState, IpsecTunnelSpec, LocalConfig, TenantSpec, TunSpec, WireguardPeerSpec } from '../config/model.js';
import { TenantTunDevice, WireGuardDevice, setHandoff, type totals } from '../dataplane/index.js';
import { IpsecService } from '../ipsec/service.js';
import { eventLog, type EventLog } from '../log.js';
import { plan, type Op } from '../reconcile/plan.js';
import { describeRefusal, startUapiServer } from '../wireguard/uapi-server.js';
import type { ConfigVersionView, CounterSnapshot, DropView, HealthView, PeerView, RouteView, RouterStateSource, TenantView, TunnelView, WorkerView } from '../api/state.js';
import { CharonWatch } from './charon-events.js';
import { RemoteAccess, RemoteAccessRefused, type RemoteAccessView } from '../remote-access/service.js';
import { handoffPlan } from './handoff.js';
import { IkeResync, IkeView, nextSafetyNetMs } from './ike-view.js';
import { checkHostNetworking, reportHostNetworking } from './host-checks.js';
import { addRoute, addRoutes, ip, removeRoute, removeRoutes, routeArgs } from './os.js';
import { ifname, type TenantRuntime } from './runtime.js';
import { ipsecTunnelOf } from './tunnels.js';
import { bgpChanges, reachableOf } from './advertise.js';
import { RoutingService, type RoutingStatus } from '../routing/service.js';
import type { BgpView } from '../api/state.js';
import { RouterViews } from './views.js';
import { DaemonHa, haRefusal } from './ha.js';
import type { HaView } from '../ha/view.js';
import { initiateTunnel, logWireguardEvent, terminateTunnel, type TunnelActionResult } from './operator.js';


export interface VrouterOptions {
  logger: Logger;
  /** charon's configuration, VICI socket and the plugin link (0700). */
  runtimeDir: string;
  /** Worker threads per device. Default: the local `[performance] worker_threads`, else CPUs. */
  workers?: number;
  /**
   * How often at least the IKE view is read from charon in full as a safety net, ms. Default
   * 60000; charon's events keep it current in between (`ike-view.ts`). A read costs charon a
   * counter query per CHILD_SA and the daemon a parse of every SA (0.5–1 s at 2000 tunnels), so
   * the next one waits at least `SA_REFRESH_COST_FACTOR` times as long as the last took (`ike-view.ts`).
   */
  saRefreshMs?: number;
  /** How often BGP announcements are re-evaluated and the speakers' status read, ms. Default 1000. */
  advertiseMs?: number;
  /**
   * With `[ha]`: the configuration generation compared with the peer's before a takeover (both
   * nodes must compute it alike; `ha.ts`). Default 0; `setHaGeneration` follows reconciles.
   */
  haGeneration?: number;
}

/** The reasons this build cannot apply a state it otherwise accepts; empty when it can. */
export function unsupported(state: DesiredState): ConfigError | undefined {
  if (state.tenants.some((t) => t.tunnels.length > 0 || t.remoteAccess) && !state.local.network.listenAddress) {
    return new ConfigError([{ path: 'network.listen_address', reason: 'IPsec tunnels need the address IKE and ESP listen on' }]);
  }
  return haRefusal(state);
}

export class Vrouter implements RouterStateSource {
  readonly #opts: VrouterOptions;
  readonly #events: EventLog;
  #state: DesiredState;
  #appliedAt: string;
  /** Per tenant, in the state's order; tags (≥ 1) are this run's data-plane names of tenants. */
  #tenants = new Map<string, TenantRuntime>();
  #ipsec: IpsecService | undefined;
  /** The address the running IPsec service listens on (what its tunnels' local address is). */
  #ipsecListen: string | undefined;
  /** Several tenants: the namespace routes into no device (see the module doc); a plan step changes it. */
  #sharedMode: boolean;
  #charon: CharonWatch | undefined;
  /** Every tenant's remote-access clients (../remote-access/). */
  #ra: RemoteAccess | undefined;
  /** Tunnel id → if_id; if_ids are never reused within a run (a stale SA cannot match a new tunnel). */
  #ifIds = new Map<string, number>();
  #nextIfId = 1;
  /** Tags of tenants added later continue after the first ones; never reused within a run. */
  #nextTag: number;
  readonly #ike = new IkeView();
  #resync: IkeResync | undefined;
  /** Data-plane devices whose TUN was lost (device name → reason): not ready until restart. */
  #lostDevices = new Map<string, string>();
  #refresh: NodeJS.Timeout | undefined;
  #routes = new Set<string>();
  /** Per tenant TUN in a namespace of its own, the tenant's prefixes routed into it there. */
  readonly #tunRoutes = new WeakMap<TenantTunDevice, Set<string>>();
  #routing: RoutingService | undefined;
  /** The speakers' last status (the API and /metrics never wait on BIRD). */
  #bgp: RoutingStatus | undefined;
  #bgpReading = false;
  #advertiseTimer: NodeJS.Timeout | undefined;
  readonly #views: RouterViews;
  /** Keyed-digest key for fingerprints of secrets; lives only in this process. */
  readonly #fpKey = Buffer.from(crypto.getRandomValues(new Uint8Array(32)));
  /** This node's half of an active-passive pair (`[ha]`), else undefined. */
  #ha: DaemonHa | undefined;

  private constructor(state: DesiredState, opts: VrouterOptions) {
    this.#state = state;
    this.#opts = opts;
    this.#events = eventLog(opts.logger);
    this.#appliedAt = new Date().toISOString();
    state.tenants.forEach((t, i) => this.#tenants.set(t.id, { spec: t, tag: i + 1, tuns: [] }));
    this.#nextTag = state.tenants.length + 1;
    this.#sharedMode = state.tenants.length > 1;
    this.#views = new RouterViews({
      state: () => this.#state,
      appliedAt: () => this.#appliedAt,
      runtimes: () => [...this.#tenants.values()],
      ipsec: () => this.#ipsec,
      ike: () => this.#ike,
      rekeys: () => ({ ike: this.#charon?.ikeRekeys ?? 0, child: this.#charon?.childRekeys ?? 0 }),
      lostDevices: () => this.#lostDevices,
      startedNs: process.hrtime.bigint(),
    });
  }

  /** One tenant: the namespace routes into the devices too. Several: only the workers do. */
  get #shared(): boolean {
    return this.#sharedMode;
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
      // The VIPs are floating before any device binds one; keepalived once the devices exist.
      const ha = state.local.ha;
      if (ha) {
        v.#ha = new DaemonHa(ha, {
          stateDir: state.local.state.dir,
          generation: opts.haGeneration ?? 0,
          events: v.#events,
          logger: opts.logger,
          // charon handles the FIFO command on its own thread: read its IKE_SAs once it has.
          onCharonSegment: () => setTimeout(() => void v.refreshSas(), 250).unref(),
        });
      }
      await v.#up();
      await v.#ha?.start();
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
    // addresses) cross between the devices through this namespace's IP stack. Read, corrected
    // only where wrong and writable (containers mount /proc/sys read-only), else reported with the fix.
    if (!this.#shared) reportHostNetworking(checkHostNetworking(), this.#opts.logger);
    for (const rt of this.#tenants.values()) await this.#openWireguard(rt);
    const withTunnels = [...this.#tenants.values()].filter((rt) => rt.spec.tunnels.length > 0 || rt.spec.remoteAccess);
    if (withTunnels.length > 0) {
      await this.#startIpsec(this.#state.local, ifname('ipsec-', withTunnels[0]!.spec.id));
      for (const rt of withTunnels) await this.#addTunnels(rt, rt.spec.tunnels);
      await this.#applyRemoteAccess(this.#state);
      void this.refreshSas();
    }
    for (const rt of this.#tenants.values()) for (const spec of rt.spec.tuns) await this.#openTun(rt, spec);
    this.#handoff();
    await this.#configureRouting();
    for (const rt of this.#tenants.values()) {
      this.#events.configApplied({ tenant: rt.spec.id, version: configVersion(this.#state), changes: rt.spec.peers.length + rt.spec.tunnels.length });
    }
  }

  /**
   * Opens the IPsec device on `local`'s listen address and starts charon on it (no tunnel loaded
   * yet): at start with the first tenant that has tunnels, live with the first tunnel. When it
   * fails half-way, what it opened is closed again.
   */
  async #startIpsec(local: LocalConfig, tunName: string): Promise<void> {
    const listen = local.network.listenAddress!;
    const svc = await IpsecService.start({
      tunName,
      listenAddress: listen,
      runtimeDir: this.#opts.runtimeDir,
      rawEsp: local.ipsec.espEncapsulation === 'auto',
      ...(this.#workers() !== undefined ? { workers: this.#workers()! } : {}),
      // [ha]: charon's ha plugin carries the IKE state to the other node's charon (ha.ts).
      ...(this.#ha ? { extraPlugins: this.#ha.charonPlugins() } : {}),
      logger: this.#opts.logger,
      // At debug the daemon logs charon's lines; at trace also its per-packet and per-message
      // ones and the routine lines of DPD and NAT keep-alives (`packetLines`).
      packetLines: this.#opts.logger.isLevelEnabled('trace'),
    });
    this.#ha?.ipsecStarted(svc);
    svc.device.on('event', (ev) => {
      if (ev.type === 'tun-lost') this.#deviceLost(this.#shared ? null : ([...this.#tenants.values()].find((rt) => rt.spec.tunnels.length > 0)?.spec.id ?? null), 'ipsec', ev);
      else if (ev.type === 'sas-removed') this.#sasRemoved(ev);
    });
    this.#ipsec = svc;
    this.#ipsecListen = listen;
    try {
      this.#charon = await CharonWatch.start(svc, {
        events: this.#events,
        logger: this.#opts.logger,
        client: (conn) => this.#ra?.has(conn) ?? false,
        tunnel: (conn) => {
          const rt = this.#tenantOfTunnel(conn);
          const spec = rt?.spec.tunnels.find((x) => x.id === conn);
          return rt && spec ? { tenant: rt.spec.id, auth: spec.auth } : undefined;
        },
        changed: (name, msg) => {
          this.#ike.apply(name, msg);
          this.#advertise();
        },
      });
    } catch (e) {
      await this.#stopIpsec().catch(() => undefined);
      throw e;
    }
    const resync = new IkeResync(this.#ike, () => svc.listSas());
    this.#resync = resync;
    // A (re)connected charon may have SAs the view missed, or none of those it shows.
    svc.vici.on('connected', () => void this.refreshSas());
    this.#scheduleRefresh(this.#opts.saRefreshMs ?? 60_000);
  }

  /**
   * The safety net: a full read after `ms`, then again after the interval or, when reads are
   * expensive (many SAs), after a multiple of the last read's duration (`nextSafetyNetMs`), so
   * that it stays a bounded share of idle CPU. It never overlaps a read under way.
   */
  #scheduleRefresh(ms: number): void {
    this.#refresh = setTimeout(() => {
      const resync = this.#resync;
      if (!resync) return;
      const started = performance.now();
      void (resync.busy ? Promise.resolve() : this.refreshSas()).finally(() => {
        if (this.#resync !== resync) return; // IPsec stopped meanwhile
        this.#scheduleRefresh(nextSafetyNetMs(this.#opts.saRefreshMs ?? 60_000, performance.now() - started));
      });
    }, ms);
    this.#refresh.unref();
  }

  /**
   * Stops charon (its shutdown deletes every IKE_SA towards the peers) and closes the IPsec
   * device; no worker hands a packet to it any more before it goes.
   */
  async #stopIpsec(): Promise<void> {
    const svc = this.#ipsec;
    if (this.#refresh) clearTimeout(this.#refresh);
    this.#refresh = undefined;
    this.#resync = undefined;
    this.#charon = undefined;
    this.#ipsec = undefined;
    this.#ipsecListen = undefined;
    // Remote access lives in this charon: the next service gets its own (#applyRemoteAccess).
    this.#ra?.close();
    this.#ra = undefined;
    if (!svc) return;
    this.#ha?.ipsecStopping(svc);
    this.#handoff();
    if (!svc.device.closed) setHandoff(svc.device, null);
    await svc.close();
    this.#ike.replace([]);
    // The kernel dropped the routes with the link.
    for (const key of [...this.#routes]) if (key.endsWith(` ${svc.device.tunName}`)) this.#routes.delete(key);
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
        // Under [ha] on the VIP (ha.ts), so that replies leave from the address peers use.
        ...(this.#ha ? { listenAddress: this.#state.local.network.listenAddress! } : {}),
        ...(this.#workers() !== undefined ? { workers: this.#workers()! } : {}),
        ...(key ? { privateKey: key } : {}),
      });
    } finally {
      key?.fill(0);
    }
    this.#ha?.attach(rt.wg);
    rt.wg.on('event', (ev) => {
      if (ev.type === 'tun-lost') return this.#deviceLost(t.id, 'wireguard', ev);
      logWireguardEvent(this.#events, this.#opts.logger, rt.spec, ev);
      // A new session changes what the tenant announces over BGP.
      if (ev.type === 'handshake-complete') this.#advertise();
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
    const what = `tenant ${rt.spec.id}, TUN ${spec.name}`;
    const netns = { netns: spec.netns };
    if (spec.netns) await ip(['link', 'set', 'dev', spec.name, 'netns', spec.netns], `${what}: cannot move it into netns ${spec.netns}`);
    for (const a of spec.addresses) await ip(['addr', 'replace', a, 'dev', spec.name], `${what}: cannot add the address ${a}`, netns);
    await ip(['link', 'set', 'dev', spec.name, 'mtu', String(spec.mtu), 'up'], `${what}: cannot bring it up`, netns);
    if (spec.netns) {
      const own = new Set(spec.subnets);
      const routed = new Set<string>();
      this.#tunRoutes.set(dev, routed);
      for (const r of rt.spec.routes) {
        if (own.has(r.prefix)) continue;
        await addRoute(r.prefix, spec.name, netns);
        routed.add(r.prefix);
      }
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
        tunnels: [...rt.spec.tunnels.map((x) => x.id), ...(rt.spec.remoteAccess ? [rt.spec.remoteAccess.id] : [])],
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
    this.#advertise();
  }

  /** Starts, reconfigures or stops the tenants' BGP speakers for the current state. */
  async #configureRouting(): Promise<void> {
    const speaking = this.#state.tenants.some((t) => t.bgp !== undefined);
    if (!speaking && !this.#routing) return;
    this.#routing ??= new RoutingService({ runtimeDir: `${this.#opts.runtimeDir}/routing`, events: this.#events, logger: this.#opts.logger });
    this.#routing.on('error', () => undefined); // logged by the service; the next change retries
    await this.#routing.configure(this.#state.tenants);
    this.#advertise();
    if (speaking && !this.#advertiseTimer) {
      // WireGuard sessions expire silently and tunnels go down between charon events: re-evaluate.
      this.#advertiseTimer = setInterval(() => {
        this.#advertise();
        void this.#readBgp();
      }, this.#opts.advertiseMs ?? 1000);
      this.#advertiseTimer.unref();
    } else if (!speaking && this.#advertiseTimer) {
      clearInterval(this.#advertiseTimer);
      this.#advertiseTimer = undefined;
    }
  }

  /** Tells each BGP tenant's speaker what the tenant reaches now (`advertise.ts`). */
  #advertise(): void {
    const routing = this.#routing;
    if (!routing?.active) return;
    const tunnels = this.tunnels();
    const peers = this.wireguardPeers();
    const now = Date.now();
    const pools = this.clients().pools;
    for (const rt of this.#tenants.values()) {
      if (!rt.spec.bgp) continue;
      const open = rt.tuns.filter((t) => !t.dev.closed).map((t) => t.spec.name);
      routing.setReachable(rt.spec.id, reachableOf(rt.spec, tunnels, peers, open, now, pools));
    }
  }

  async #readBgp(): Promise<void> {
    if (!this.#routing?.active || this.#bgpReading) return;
    this.#bgpReading = true;
    try {
      const next = await this.#routing.status();
      for (const e of bgpChanges(this.#bgp, next)) {
        if ('reason' in e) this.#events.bgpImportRefused(e);
        else this.#events.bgpSession(e);
      }
      this.#bgp = next;
    } catch {
      // A speaker is restarting: keep the last status until the next read.
    } finally {
      this.#bgpReading = false;
    }
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

  /**
   * `#route` for many prefixes on one device: the same events, one `ip -batch` (a spawn per
   * prefix made 2000 peers' start-up take 10 s of spawns once 2000 IPsec secrets sat in memory).
   */
  async #routeMany(rt: TenantRuntime, action: 'add' | 'remove', routes: readonly { prefix: string; via: RouteView['via'] }[], dev: string): Promise<void> {
    for (const { prefix, via } of routes) this.#events.routingChange({ tenant: rt.spec.id, tunnel: via.kind === 'ipsec' ? via.id : null, action, prefix, via });
    if (this.#shared) return;
    if (action === 'add') {
      await this.#routeAll(routes.map((r) => r.prefix), dev);
    } else {
      const prefixes = [...new Set(routes.map((r) => r.prefix))];
      await removeRoutes(prefixes, dev);
      for (const p of prefixes) this.#routes.delete(`${p} ${dev}`);
    }
  }

  /** Routes prefixes into `dev` in one `ip -batch` (several tenants: nothing), tracked like `#route`'s. */
  async #routeAll(prefixes: readonly string[], dev: string): Promise<void> {
    if (this.#shared) return;
    const fresh = [...new Set(prefixes)].filter((p) => !this.#routes.has(`${p} ${dev}`));
    await addRoutes(fresh, dev);
    for (const p of fresh) this.#routes.add(`${p} ${dev}`);
  }

  /**
   * One tenant ⇄ several. To several: the namespace's routes into the devices go (its one table
   * cannot keep overlapping tenants apart). To one: the remaining tenant's peers' allowed IPs,
   * tunnels' remote subnets and remote-access pools are routed into its devices again. The workers' handoff does not
   * depend on this (it follows the tenant runtimes), so traffic between devices keeps flowing.
   */
  async #setRoutingMode(shared: boolean): Promise<void> {
    if (shared === this.#sharedMode) return;
    if (shared) {
      this.#sharedMode = true;
      for (const key of [...this.#routes]) {
        const [prefix, dev] = key.split(' ') as [string, string];
        await removeRoute(prefix, dev);
        this.#routes.delete(key);
      }
      return;
    }
    this.#sharedMode = false;
    reportHostNetworking(checkHostNetworking(), this.#opts.logger);
    for (const rt of this.#tenants.values()) {
      if (rt.wg) await this.#routeAll(rt.spec.peers.flatMap((p) => p.allowedIps), rt.wg.tunName);
      if (this.#ipsec) await this.#routeAll([...rt.spec.tunnels.flatMap((x) => x.remoteSubnets), ...(rt.spec.remoteAccess?.pools.map((p) => p.range) ?? [])], this.#ipsec.device.tunName);
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
    // Removals before additions: an allowed IP moving between peers stays routed into the device.
    const dev = wg.tunName;
    await this.#routeMany(rt, 'remove', removed.flatMap((p) => p.allowedIps.map((prefix) => ({ prefix, via: { kind: 'wireguard' as const, id: p.publicKey } }))), dev);
    await this.#routeMany(rt, 'add', changed.flatMap((p) => p.allowedIps.map((prefix) => ({ prefix, via: { kind: 'wireguard' as const, id: p.publicKey } }))), dev);
  }

  /**
   * Every tenant's remote access into charon (`RemoteAccess.apply`): each connection gets an if_id
   * like a tunnel, so the data plane routes a client's leased address inside its tenant; with one
   * tenant the pools are routed into the IPsec TUN here too.
   */
  async #applyRemoteAccess(state: DesiredState): Promise<void> {
    const ipsec = this.#ipsec;
    if (!ipsec) {
      if (state.tenants.some((t) => t.remoteAccess)) this.#opts.logger.warn({ field: 'remote_access' }, 'remote access added to a vrouter running without IPsec; applied at the next start');
      return;
    }
    this.#ra ??= new RemoteAccess(ipsec, {
      logger: this.#opts.logger,
      listenAddress: state.local.network.listenAddress!,
      ifIdOf: (id) => {
        const ifId = this.#ifIds.get(id) ?? this.#nextIfId++;
        this.#ifIds.set(id, ifId);
        return ifId;
      },
    });
    await this.#ra.apply(state.tenants);
    if (!this.#shared) {
      const pools = state.tenants.flatMap((t) => t.remoteAccess?.pools.map((p) => p.range) ?? []).filter((r) => !this.#routes.has(`${r} ${ipsec.device.tunName}`));
      await addRoutes(pools, ipsec.device.tunName);
      for (const r of pools) this.#routes.add(`${r} ${ipsec.device.tunName}`);
    }
  }

  /** The remote-access clients and pool leases (the API's `clients`). */
  clients(): RemoteAccessView {
    return this.#ra?.view() ?? { clients: [], pools: [], exhausted: {} };
  }

  /** Loads a tenant's tunnels into charon in one pipelined batch (`IpsecService.addTunnels`). */
  async #addTunnels(rt: TenantRuntime, specs: readonly IpsecTunnelSpec[]): Promise<void> {
    const svc = this.#ipsec!;
    const listen = this.#ipsecListen!;
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
    // Remote subnets are routed into the IPsec TUN here, only for a vrouter of one tenant, and
    // tracked with the other routes so a routing-mode change can take them away again.
    await svc.addTunnels(tunnels, { route: false });
    if (!this.#shared) await this.#routeAll(specs.flatMap((x) => x.remoteSubnets), svc.device.tunName);
    for (const spec of specs) {
      for (const s of spec.remoteSubnets) this.#events.routingChange({ tenant: rt.spec.id, tunnel: spec.id, action: 'add', prefix: s, via: { kind: 'ipsec', id: spec.id } });
    }
    // An initiating tunnel is started by charon itself (start_action=start, retried forever): a
    // second initiation from here would race it and leave a spurious failed IKE_SA behind.
  }

  /**
   * Moves to `next` changing only what differs (`../reconcile/plan.ts`). A state this build
   * cannot apply (`unsupported`) is refused before anything changes.
   * A step that fails half-way (a port taken, charon refusing a connection) rolls every step
   * already taken back, in reverse, and the error names the field of the failed step: the
   * running state is the previous one again.
   */
  async reconcile(next: DesiredState): Promise<number> {
    const refused = unsupported(next) ?? haRefusal(next, this.#state);
    if (refused) throw refused;
    // Planned in full before anything changes: a refused plan leaves the running state as it is.
    const ops = plan(this.#state, next, this.#fpKey);
    const before = new Map([...this.#tenants].map(([id, rt]) => [id, rt.spec]));
    const undo: { what: string; run: () => Promise<void> }[] = [];
    const has = <K extends Op['kind']>(kind: K): Extract<Op, { kind: K }> | undefined => ops.find((o): o is Extract<Op, { kind: K }> => o.kind === kind);
    const firstWithTunnels = next.tenants.findIndex((x) => x.tunnels.length > 0 || x.remoteAccess !== undefined);
    let field = 'tenants';
    try {
      // One tenant → several: the namespace's routes go before a second tenant appears.
      if (has('routing-mode')?.shared === true) {
        await this.#setRoutingMode(true);
        undo.push({ what: 'routing mode', run: () => this.#setRoutingMode(false) });
      }
      for (const o of ops) {
        if (o.kind !== 'tenant-remove') continue;
        const rt = this.#tenants.get(o.tenant)!;
        await this.#downTenant(rt);
        undo.push({ what: `tenant ${o.tenant}`, run: () => this.#upTenant(o.spec, rt.tag) });
      }
      for (const spec of next.tenants) {
        const rt = this.#tenants.get(spec.id);
        if (rt) rt.spec = spec;
      }
      if (has('ipsec-start')) {
        // The first tunnel: device and charon before any tunnel is loaded.
        field = `tenants[${firstWithTunnels}].tunnels`;
        await this.#startIpsec(next.local, ifname('ipsec-', next.tenants[firstWithTunnels]!.id));
        undo.push({ what: 'IPsec service', run: () => this.#stopIpsec() });
      }
      const restart = has('ipsec-restart');
      if (restart) {
        // Reopened on the new settings with every tunnel of the kept tenants (new tenants bring
        // theirs below); the IKE_SAs are negotiated again, WireGuard and TUNs are not touched.
        field = restart.fields[0]!;
        const [local, tunName] = [this.#state.local, this.#ipsec!.device.tunName];
        const reload = async (): Promise<void> => {
          for (const rt of this.#tenants.values()) if (rt.spec.tunnels.length > 0) await this.#addTunnels(rt, rt.spec.tunnels);
        };
        await this.#stopIpsec();
        undo.push({ what: 'IPsec service', run: async () => {
          await this.#stopIpsec();
          await this.#startIpsec(local, tunName);
          await reload();
          await this.#applyRemoteAccess(this.#state);
        } });
        await this.#startIpsec(next.local, tunName);
        await reload();
      }
      for (const rt of this.#tenants.values()) {
        const i = next.tenants.findIndex((x) => x.id === rt.spec.id);
        const at = `tenants[${i}]`;
        const mine = ops.filter((o) => o.tenant === rt.spec.id);
        if (mine.some((o) => o.kind === 'wireguard-replace')) {
          field = `${at}.wireguard`;
          // One TUN name per tenant: the old device goes before the new one opens.
          await this.#closeWireguard(rt);
          undo.push({ what: `WireGuard of ${rt.spec.id}`, run: async () => {
            await this.#closeWireguard(rt);
            await this.#openWireguard(rt);
          } });
          await this.#openWireguard(rt);
        }
        for (const o of mine) {
          if (o.kind !== 'tun-replace') continue;
          field = `${at}.tun`;
          for (const spec of o.gone) {
            this.#closeTun(rt, spec.name);
            undo.push({ what: `TUN ${spec.name}`, run: () => this.#openTunOrNothing(rt, spec) });
          }
          for (const spec of o.added) {
            await this.#openTunOrNothing(rt, spec);
            undo.push({ what: `TUN ${spec.name}`, run: async () => this.#closeTun(rt, spec.name) });
          }
        }
        const removed = mine.flatMap((o) => (o.kind === 'peer-remove' ? [o.peer] : []));
        const upserts = mine.flatMap((o) => (o.kind === 'peer-upsert' ? [o] : []));
        if (removed.length > 0 || upserts.length > 0) {
          field = `${at}.wireguard_peers`;
          const old = new Set(before.get(rt.spec.id)!.peers.map((p) => p.publicKey));
          undo.push({ what: `WireGuard peers of ${rt.spec.id}`, run: async () => {
            // The old peers as they were (allowed IPs replaced), the new ones gone, and the
            // prefixes a changed peer gained unrouted.
            await this.#applyPeerOps(rt, upserts.filter((o) => !old.has(o.peer.publicKey)).map((o) => o.peer), [...removed, ...upserts.flatMap((o) => (o.previous ? [o.previous] : []))]);
            for (const o of upserts) {
              if (!o.previous || !rt.wg) continue;
              const had = new Set(o.previous.allowedIps);
              for (const prefix of o.peer.allowedIps) if (!had.has(prefix)) await this.#route(rt, 'remove', prefix, rt.wg.tunName, { kind: 'wireguard', id: o.peer.publicKey });
            }
          } });
          await this.#applyPeerOps(rt, removed, upserts.map((o) => o.peer));
          for (const o of upserts) {
            if (!o.previous || !rt.wg) continue;
            const kept = new Set(o.peer.allowedIps);
            for (const prefix of o.previous.allowedIps) {
              if (!kept.has(prefix)) await this.#route(rt, 'remove', prefix, rt.wg.tunName, { kind: 'wireguard', id: o.peer.publicKey });
            }
          }
        }
        for (const o of mine) {
          if (o.kind !== 'tunnel-remove' && o.kind !== 'tunnel-add' && o.kind !== 'tunnel-replace') continue;
          field = `${at}.tunnels[${Math.max(0, rt.spec.tunnels.findIndex((x) => x.id === o.tunnel.id))}]`;
          const gone = o.kind === 'tunnel-remove' ? o.tunnel : o.kind === 'tunnel-replace' ? o.previous : undefined;
          if (gone) {
            await this.#ipsec!.removeTunnel(gone.id);
            undo.push({ what: `tunnel ${gone.id}`, run: () => this.#addTunnels(rt, [gone]) });
          }
          if (o.kind !== 'tunnel-remove') {
            await this.#addTunnels(rt, [o.tunnel]);
            undo.push({ what: `tunnel ${o.tunnel.id}`, run: () => this.#ipsec!.removeTunnel(o.tunnel.id) });
          }
        }
      }
      for (const o of ops) {
        if (o.kind !== 'tenant-add') continue;
        field = `tenants[${next.tenants.findIndex((x) => x.id === o.tenant)}]`;
        await this.#upTenant(o.spec, this.#nextTag++);
        undo.push({ what: `tenant ${o.tenant}`, run: () => this.#downTenant(this.#tenants.get(o.tenant)!) });
      }
      // Remote access follows the tenants (loaded into a charon just started, unloaded before
      // one stops); a part charon refuses rolls everything back like any other step.
      field = 'tenants';
      undo.push({ what: 'remote access', run: () => this.#applyRemoteAccess(this.#state) });
      try {
        await this.#applyRemoteAccess(next);
      } catch (e) {
        if (e instanceof RemoteAccessRefused) field = `tenants[${next.tenants.findIndex((x) => x.id === e.tenant)}].${e.field}`;
        throw e;
      }
      if (has('ipsec-stop')) {
        // The last tunnel went: charon does not keep UDP 500/4500 open for nothing (as at start).
        field = 'tenants';
        const tunName = this.#ipsec!.device.tunName;
        const local = this.#state.local;
        await this.#stopIpsec();
        undo.push({ what: 'IPsec service', run: async () => {
          await this.#startIpsec(local, tunName);
          // The tunnels come back with their own undo steps; remote access lives in this charon.
          await this.#applyRemoteAccess(this.#state);
        } });
      }
      // Several tenants → one: the remaining tenant's routes come once it is complete.
      if (has('routing-mode')?.shared === false) {
        field = 'tenants';
        await this.#setRoutingMode(false);
        undo.push({ what: 'routing mode', run: () => this.#setRoutingMode(true) });
      }
    } catch (e) {
      for (const [id, spec] of before) {
        const rt = this.#tenants.get(id);
        if (rt) rt.spec = spec;
      }
      const failed: string[] = [];
      for (const u of undo.reverse()) {
        try {
          await u.run();
        } catch (x) {
          failed.push(`${u.what}: ${(x as Error).message}`);
        }
      }
      this.#handoff();
      const why = e instanceof CvlanError ? `${e.code}: ${e.message}` : e instanceof Error ? e.message : String(e);
      this.#opts.logger.error({ event: 'reconcile_rolled_back', field, steps: undo.length, failed }, 'applying the new configuration failed half-way; rolled back');
      throw new ConfigError([
        {
          path: field,
          reason: `could not be applied (${why}); ${failed.length === 0 ? 'the previous configuration was restored' : `rolling back failed too: ${failed.join('; ')}`}`,
        },
      ]);
    }
    this.#state = next;
    await this.#pruneIpsecRoutes();
    await this.#syncTunRoutes();
    // New tunnels' if_ids, replaced devices and changed inter-tenant rules reach the workers.
    this.#handoff();
    await this.#configureRouting();
    this.#appliedAt = new Date().toISOString();
    this.#events.configApplied({ tenant: this.#shared ? null : (next.tenants[0]?.id ?? null), version: configVersion(next), changes: ops.length });
    return ops.length;
  }

  /**
   * A tenant's prefixes change live (a peer, a tunnel added or gone): the namespaces of its TUNs
   * route what it reaches now into the TUN, as `#openTun` did at open. A route that cannot be
   * changed is logged; the hosts there then miss that prefix, forwarding elsewhere goes on.
   */
  async #syncTunRoutes(): Promise<void> {
    for (const rt of this.#tenants.values()) {
      for (const { spec, dev } of rt.tuns) {
        const routed = this.#tunRoutes.get(dev);
        if (!routed || !spec.netns) continue;
        const own = new Set(spec.subnets);
        const wanted = new Set(rt.spec.routes.map((r) => r.prefix).filter((p) => !own.has(p)));
        try {
          for (const p of wanted) {
            if (routed.has(p)) continue;
            await addRoute(p, spec.name, { netns: spec.netns });
            routed.add(p);
          }
          for (const p of [...routed]) {
            if (wanted.has(p)) continue;
            routed.delete(p);
            await ip(routeArgs('remove', p, spec.name), `cannot remove the route ${p} on ${spec.name}`, { netns: spec.netns });
          }
        } catch (e) {
          this.#opts.logger.warn({ tenant: rt.spec.id, tun: spec.name, netns: spec.netns, err: (e as Error).message }, 'a route in the TUN namespace could not follow the change');
        }
      }
    }
  }

  /** Routes into the IPsec TUN of remote subnets no tunnel has any more (a tunnel removed or changed). */
  async #pruneIpsecRoutes(): Promise<void> {
    const dev = this.#ipsec?.device.tunName;
    if (dev === undefined) return;
    const wanted = new Set([...this.#tenants.values()].flatMap((rt) => [...rt.spec.tunnels.flatMap((x) => x.remoteSubnets), ...(rt.spec.remoteAccess?.pools.map((p) => p.range) ?? [])]));
    for (const key of [...this.#routes]) {
      const [prefix, d] = key.split(' ') as [string, string];
      if (d !== dev || wanted.has(prefix)) continue;
      await removeRoute(prefix, dev);
      this.#routes.delete(key);
    }
  }

  /** Opens a tenant with all it holds; when that fails half-way, what was opened is closed again. */
  async #upTenant(spec: TenantSpec, tag: number): Promise<void> {
    const rt: TenantRuntime = { spec, tag, tuns: [] };
    this.#tenants.set(spec.id, rt);
    try {
      await this.#openWireguard(rt);
      if (spec.tunnels.length > 0) await this.#addTunnels(rt, spec.tunnels);
      for (const x of spec.tuns) await this.#openTun(rt, x);
    } catch (e) {
      await this.#downTenant(rt).catch(() => undefined);
      throw e;
    }
  }

  /** Closes a tenant: its tunnels go from charon, its devices close, the workers forget it. */
  async #downTenant(rt: TenantRuntime): Promise<void> {
    // Every step is tried (a half-opened tenant lacks some parts); the first failure is thrown at the end.
    const failures: unknown[] = [];
    const step = async (f: () => Promise<void> | void): Promise<void> => {
      try {
        await f();
      } catch (e) {
        failures.push(e);
      }
    };
    const ipsec = this.#ipsec;
    if (ipsec) for (const x of rt.spec.tunnels) await step(() => ipsec.removeTunnel(x.id));
    await step(() => this.#closeWireguard(rt));
    for (const t of [...rt.tuns]) await step(() => this.#closeTun(rt, t.spec.name));
    this.#tenants.delete(rt.spec.id);
    this.#handoff();
    if (failures.length > 0) throw failures[0];
  }

  /** Closes a tenant TUN device (its addresses and routes go with the link); nothing hands packets to it before. */
  #closeTun(rt: TenantRuntime, name: string): void {
    const i = rt.tuns.findIndex((x) => x.spec.name === name);
    if (i < 0) return;
    const [t] = rt.tuns.splice(i, 1);
    this.#handoff();
    if (!t!.dev.closed) setHandoff(t!.dev, null);
    t!.dev.close();
    for (const s of t!.spec.subnets) this.#events.routingChange({ tenant: rt.spec.id, tunnel: null, action: 'remove', prefix: s, via: { kind: 'tun', id: name } });
  }

  /** `#openTun`, and when it fails half-way the device it opened is closed again. */
  async #openTunOrNothing(rt: TenantRuntime, spec: TunSpec): Promise<void> {
    try {
      await this.#openTun(rt, spec);
    } catch (e) {
      this.#closeTun(rt, spec.name);
      throw e;
    }
  }

  /** Closes a tenant's WireGuard device; nothing hands packets to it any more before it goes. */
  async #closeWireguard(rt: TenantRuntime): Promise<void> {
    const wg = rt.wg;
    if (!wg) return;
    rt.wg = undefined;
    this.#handoff();
    if (!wg.closed) setHandoff(wg, null);
    await rt.uapi?.close().catch(() => undefined);
    rt.uapi = undefined;
    this.#ha?.detach(wg);
    wg.close();
    // The kernel dropped the routes with the link.
    for (const key of [...this.#routes]) if (key.endsWith(` ${wg.tunName}`)) this.#routes.delete(key);
  }

  async stop(): Promise<void> {
    // keepalived first: the VIP leaves before the devices that serve it close.
    await this.#ha?.stop().catch((e: unknown) => this.#opts.logger.warn({ err: (e as Error).message }, 'stopping HA'));
    this.#ha = undefined;
    if (this.#refresh) clearTimeout(this.#refresh);
    this.#refresh = undefined;
    if (this.#advertiseTimer) clearInterval(this.#advertiseTimer);
    this.#advertiseTimer = undefined;
    // Speakers first: their sessions close and the neighbours withdraw our routes at once.
    await this.#routing?.stop().catch((e: unknown) => this.#opts.logger.warn({ err: (e as Error).message }, 'stopping the BGP speakers'));
    this.#routing = undefined;
    // Handoff first: no worker hands a packet to a device that is going away.
    for (const rt of this.#tenants.values()) {
      if (rt.wg && !rt.wg.closed) setHandoff(rt.wg, null);
      for (const t of rt.tuns) if (!t.dev.closed) setHandoff(t.dev, null);
    }
    if (this.#ipsec && !this.#ipsec.device.closed) setHandoff(this.#ipsec.device, null);
    this.#ra?.close();
    this.#ra = undefined;
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
    const tenant = tunnel === null ? null : (this.#tenantOfTunnel(tunnel)?.spec.id ?? null);
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

  // --- RouterStateSource (views.ts) ----------------------------------------------------------

  /** `vrouterctl initiate`: see ./operator.ts. */
  initiateTunnel(id: string): Promise<TunnelActionResult> {
    return initiateTunnel(this.#state.tenants, this.#ipsec, id);
  }
  /** `vrouterctl terminate`: see ./operator.ts. */
  terminateTunnel(id: string): Promise<TunnelActionResult> {
    return terminateTunnel(this.#state.tenants, this.#ipsec, id);
  }

  /** A new configuration generation was applied (`VrouterOptions.haGeneration`); no-op without `[ha]`. */
  setHaGeneration(generation: number): void {
    this.#ha?.setGeneration(generation);
  }

  ha(): HaView | null {
    return this.#ha?.view() ?? null;
  }

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
  tenantTag(tenant: string): number | undefined {
    const rt = this.#tenants.get(tenant);
    // With one tenant the data plane tags nothing (`handoffPlan`).
    return rt === undefined ? undefined : this.#tenants.size <= 1 ? 0 : rt.tag;
  }
  routes(tenant: string): RouteView[] | undefined {
    return this.#views.routes(tenant);
  }
  bgp(tenant: string): BgpView | null {
    const t = this.#bgp?.tenants.find((x) => x.tenant === tenant);
    if (!t) return null;
    return {
      running: this.#bgp?.running ?? false,
      announced: t.announced,
      neighbors: t.neighbors.map((n) => ({
        name: n.neighbor,
        address: n.address,
        state: n.state,
        info: n.info,
        announced: n.announced,
        learned: n.learned,
        limited: n.limited,
        filtered: n.filtered,
        import_limit_hit: n.importLimitHit,
      })),
    };
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
