/**
 * The IPsec side of a vrouter: one IPsec data-plane device (TUN + UDP 500/4500 + SA tables),
 * a supervised charon that loads only our `cvlan` plugin as its kernel and socket, and the VICI
 * session that loads tunnels into it. charon restarts (crash, kill) are survived: the data plane
 * keeps forwarding on installed SAs, the connections are loaded again when charon is back, and
 * every tunnel that had an IKE_SA is negotiated again — initiating tunnels in windows
 * (`initiator.ts`), responder tunnels towards the address their last IKE_SA had (a restarted
 * charon knows nothing of them, and their peer may never initiate again).
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { IpsecDevice, type SaInfo, type IpsecCounters, type WorkerStats } from '../dataplane/index.js';
import { CharonSupervisor, type SupervisorLogger } from '../strongswan/supervisor.js';
import { PLUGINS_CVLAN, type ConfScalar } from '../strongswan/conf.js';
import { ViciClient } from '../strongswan/vici/client.js';
import type { IkeSaInfo } from '../strongswan/vici/types.js';
import { addRoutes } from '../daemon/os.js';
import { CvlanError } from '../errors.js';
import type { ViciInputSection } from '../strongswan/vici/encoding.js';
import { connSection, sharedSecrets, type IpsecTunnel, type LastPeer } from './connections.js';
import { LastPeers } from './last-peers.js';
import { Initiator } from './initiator.js';
import { charonSettings, isIkeFailureLine } from '../strongswan/scale.js';

export interface IpsecServiceOptions {
  /** TUN interface for traffic to/from the IPsec tunnels. */
  tunName: string;
  /** Public address for IKE and ESP. */
  listenAddress: string;
  /** Directory for charon's configuration, VICI socket and the plugin link socket (0700). */
  runtimeDir: string;
  /** Worker threads. Default: number of CPUs. */
  workers?: number;
  /** TUN MTU, bytes. Default 1400. */
  mtu?: number;
  /** IKE / NAT-T ports. Default 500 / 4500. */
  ikePort?: number;
  natPort?: number;
  logger?: SupervisorLogger;
  /**
   * charon's per-packet and per-message lines (`sending packet` / `received packet`, its `net`
   * subsystem, and `parsed …` / `generating …`, its `enc` subsystem, both at level 1). Off by
   * default: nothing reads them (the one ENC line the daemon needed, a late AUTH_FAILED, the
   * plugin names in an IKE line), and with 2000 idle tunnels DPD alone made them four of the five
   * lines of each of ~67 exchanges a second, which charon wrote and the daemon read (`docs/benchmarks.md`, "idle CPU taken apart").
   * The fifth, `sending DPD request` (IKE), and NAT keep-alives are left out too: the plugin
   * writes the IKE lines (`quietLiveness` in `../strongswan/conf.ts`).
   */
  packetLines?: boolean;
  /** Supervisor backoff for tests, ms. */
  backoffInitialMs?: number;
  /**
   * ESP without UDP where the path allows it (no NAT) and the host lets the data plane open a raw
   * socket; otherwise (default) every CHILD_SA uses ESP-in-UDP on the NAT-T port.
   */
  rawEsp?: boolean;
  /** IKE_SAs we initiate that may be in flight at once. Default 64. */
  initiateWindow?: number;
  /** How long one initiation may take before the tunnel is looked at again, ms. Default 20000. */
  initiateSettleMs?: number;
  /** charon plugins loaded besides the production set, with their settings (`[ha]`: `ha`). */
  extraPlugins?: readonly { name: string; settings: Readonly<Record<string, ConfScalar>> }[];
}

export class IpsecService {
  readonly device: IpsecDevice;
  readonly supervisor: CharonSupervisor;
  readonly vici: ViciClient;
  #tunnels = new Map<string, IpsecTunnel>();
  #routes = new Set<string>();
  readonly #opts: IpsecServiceOptions;
  readonly #peers = new LastPeers();
  readonly initiator: Initiator;

  private constructor(opts: IpsecServiceOptions, device: IpsecDevice, supervisor: CharonSupervisor) {
    this.#opts = opts;
    this.device = device;
    this.supervisor = supervisor;
    this.vici = new ViciClient({ socketPath: supervisor.viciSocket, ...(opts.logger ? { logger: opts.logger } : {}) });
    this.initiator = new Initiator({
      window: opts.initiateWindow ?? 64,
      settleMs: opts.initiateSettleMs ?? 20_000,
      // Not awaited by charon (timeout -1): the outcome arrives as child-updown / ike-updown.
      initiate: async (ids) =>
        (await this.vici.pipeline(ids.map((id) => ({ command: 'initiate', message: { child: id, ike: id, timeout: -1 } })))).map((r) =>
          r instanceof Error ? r : undefined,
        ),
      read: (id) => this.vici.listSas({ ike: id }),
      ...(opts.logger ? { logger: opts.logger } : {}),
    });
  }

  /** Opens the data-plane device, then starts charon pointed at it. */
  static async start(opts: IpsecServiceOptions): Promise<IpsecService> {
    await mkdir(opts.runtimeDir, { recursive: true, mode: 0o700 });
    const charonSocket = join(opts.runtimeDir, 'charon-link.sock');
    const device = IpsecDevice.open({
      tunName: opts.tunName,
      listenAddress: opts.listenAddress,
      charonSocket,
      ...(opts.workers !== undefined ? { workers: opts.workers } : {}),
      ...(opts.mtu !== undefined ? { mtu: opts.mtu } : {}),
      ...(opts.ikePort !== undefined ? { ikePort: opts.ikePort } : {}),
      ...(opts.natPort !== undefined ? { natPort: opts.natPort } : {}),
      ...(opts.rawEsp ? { rawEsp: true } : {}),
    });
    if (opts.rawEsp && !device.rawEsp) opts.logger?.warn({ reason: device.rawEspError }, 'raw ESP unavailable; every CHILD_SA uses ESP-in-UDP');
    const holder: { service?: IpsecService } = {};
    const supervisor = new CharonSupervisor({
      runtimeDir: join(opts.runtimeDir, 'charon'),
      conf: {
        plugins: [...PLUGINS_CVLAN, ...(opts.extraPlugins ?? []).map((p) => p.name)],
        cvlanSocket: charonSocket,
        port: device.ikePort,
        portNatT: device.natPort,
        pluginSettings: {
          ...Object.fromEntries((opts.extraPlugins ?? []).map((p) => [p.name, p.settings])),
          // Without a raw socket the plugin makes charon encapsulate even where there is no NAT.
          cvlan: { require_udp_encap: !device.rawEsp },
        },
        charonSettings: charonSettings(),
        ...(opts.packetLines ? {} : { logGroups: { net: 0, enc: 0 }, quietLiveness: true }),
      },
      ...(opts.backoffInitialMs !== undefined ? { backoffInitialMs: opts.backoffInitialMs } : {}),
      ...(opts.logger ? { logger: opts.logger } : {}),
      // After every (re)start: everything charon knew is loaded again.
      onStart: async (info) => {
        if (holder.service) await holder.service.#reloadAll(info.generation > 1);
      },
    });
    const service = new IpsecService(opts, device, supervisor);
    holder.service = service;
    try {
      await supervisor.start();
      await service.vici.connect();
      await service.#watchPeers();
      service.#watchFailures();
    } catch (e) {
      await supervisor.stop();
      device.close();
      throw e;
    }
    return service;
  }

  /**
   * Remembers where each tunnel's IKE_SAs are (`ike-updown`, see `LastPeers`), and tells the
   * initiator which initiations are done (`ike-updown`, `child-updown`).
   */
  async #watchPeers(): Promise<void> {
    this.vici.on('event', (name, msg) => {
      this.initiator.event(name, msg);
      if (name !== 'ike-updown') return;
      for (const [conn, v] of Object.entries(msg)) {
        if (typeof v !== 'object' || v === null || Array.isArray(v) || Buffer.isBuffer(v) || !this.#tunnels.has(conn)) continue;
        const sa = v as Record<string, unknown>;
        const id = typeof sa.uniqueid === 'string' ? sa.uniqueid : undefined;
        if (id === undefined) continue;
        if (msg.up === 'yes' && typeof sa['remote-host'] === 'string') this.#peers.up(conn, id, sa['remote-host'], Number(sa['remote-port'] ?? 500) || 500);
        else if (msg.up !== 'yes') this.#peers.down(conn, id);
      }
    });
    await this.vici.subscribe('ike-updown');
    await this.vici.subscribe('child-updown');
  }

  /**
   * charon's own lines about IKE negotiations that failed (timeouts, refusals, half-open SAs
   * dropped), at info: without them a tunnel that never comes up says nothing about why.
   */
  #watchFailures(): void {
    this.supervisor.on('line', (line) => {
      if (isIkeFailureLine(line)) this.#opts.logger?.info({ charon: line }, 'charon: IKE negotiation failed');
    });
  }

  /**
   * After every (re)start: everything charon knew is loaded again. After a restart, responder
   * tunnels that had an IKE_SA are initiated towards their last peer; the IKE_AUTH carries
   * INITIAL_CONTACT, so the peer drops the SAs it still has with the old charon, and the new
   * CHILD_SAs replace the orphans in the data plane before their grace ends.
   */
  async #reloadAll(restarted: boolean): Promise<void> {
    const had = restarted ? this.#peers.take() : new Map<string, LastPeer>();
    this.initiator.reset();
    const all = [...this.#tunnels.values()];
    const started = this.initiator.claim(all.filter((t) => t.initiate).map((t) => t.id));
    const failed = await this.#load(all.map((t) => ({ t, start: started.has(t.id), ...(t.initiate ? {} : { reach: had.get(t.id) }) })));
    for (const [id, err] of failed) this.#opts.logger?.warn({ tunnel: id, err: err.message }, 'cannot load a tunnel into the restarted charon');
    this.initiator.start(all.filter((t) => t.initiate && !failed.has(t.id) && !started.has(t.id)).map((t) => t.id));
    for (const t of this.#tunnels.values()) {
      const peer = had.get(t.id);
      if (t.initiate || !peer) continue;
      this.#peers.pending(t.id, peer);
      // Not awaited by charon (timeout -1): the outcome arrives as ike-updown like any other.
      await this.vici.initiate({ child: t.id, ike: t.id, timeoutMs: -1 }).catch((e: unknown) => {
        this.#opts.logger?.warn({ tunnel: t.id, peer: peer.address, err: (e as Error).message }, 'cannot negotiate a responder tunnel again after a charon restart');
      });
      this.#opts.logger?.info({ tunnel: t.id, peer: peer.address, port: peer.port }, 'negotiating a responder tunnel again after a charon restart');
    }
  }

  /** The VICI commands that load a tunnel: its secrets, certificates and key, then its connection. */
  #commands(t: IpsecTunnel, reach?: LastPeer, start = false): { command: string; message: ViciInputSection }[] {
    const out: { command: string; message: ViciInputSection }[] = sharedSecrets(t).map((s) => ({
      command: 'load-shared',
      message: { id: s.id, type: s.type, data: s.data, owners: s.owners },
    }));
    if (t.auth.method !== 'psk') {
      if (t.auth.ca) out.push({ command: 'load-cert', message: { type: 'X509', flag: 'CA', data: t.auth.ca } });
      if (t.auth.certificate) out.push({ command: 'load-cert', message: { type: 'X509', data: t.auth.certificate } });
      if (t.auth.privateKey) out.push({ command: 'load-key', message: { type: 'any', data: t.auth.privateKey } });
    }
    out.push({ command: 'load-conn', message: { [t.id]: connSection(t, { udpEncap: !this.device.rawEsp, start, ...(reach ? { reach } : {}) }) } });
    return out;
  }

  /**
   * Loads tunnels into charon, pipelined (`ViciClient.pipeline`: one round trip per batch instead
   * of two or more per tunnel). Returns the tunnels that failed, each with its first error.
   */
  async #load(list: readonly { t: IpsecTunnel; reach?: LastPeer | undefined; start?: boolean }[]): Promise<Map<string, Error>> {
    const owners: string[] = [];
    const commands = list.flatMap(({ t, reach, start }) => {
      const c = this.#commands(t, reach, start);
      for (let i = 0; i < c.length; i++) owners.push(t.id);
      return c;
    });
    const results = await this.vici.pipeline(commands);
    const failed = new Map<string, Error>();
    results.forEach((r, i) => {
      if (r instanceof Error && !failed.has(owners[i]!)) failed.set(owners[i]!, r);
    });
    return failed;
  }

  /**
   * Adds or replaces tunnels: secrets, connections, and (unless `route` is false) routes of their
   * remote subnets into the TUN, all routes in one `ip -batch`. The first tunnel charon refuses
   * fails the call, naming it; the others are loaded.
   */
  async addTunnels(ts: readonly IpsecTunnel[], o: { route?: boolean } = {}): Promise<void> {
    // Tunnels with a free slot are started by charon as they load; the rest in windows below.
    const started = this.initiator.claim(ts.filter((t) => t.initiate).map((t) => t.id));
    const failed = await this.#load(ts.map((t) => ({ t, start: started.has(t.id) })));
    const loaded = ts.filter((t) => !failed.has(t.id));
    for (const t of loaded) {
      // A tunnel that stopped initiating (its peer address removed) is only answered from now on.
      if (!t.initiate) this.initiator.forget(t.id);
      this.#tunnels.set(t.id, t);
    }
    for (const id of failed.keys()) if (started.has(id)) this.initiator.forget(id);
    this.initiator.start(loaded.filter((t) => t.initiate && !started.has(t.id)).map((t) => t.id));
    if (o.route !== false) {
      const subnets = [...new Set(loaded.flatMap((t) => t.remoteSubnets))].filter((s) => !this.#routes.has(s));
      await addRoutes(subnets, this.#opts.tunName);
      for (const s of subnets) this.#routes.add(s);
    }
    const [first] = failed;
    if (first) throw new CvlanError('CVLAN_ERR_VICI_COMMAND', `tunnel ${first[0]}: ${first[1].message}`, { cause: first[1] });
  }

  /** Adds or replaces one tunnel (`addTunnels`). */
  async addTunnel(t: IpsecTunnel, o: { route?: boolean } = {}): Promise<void> {
    await this.addTunnels([t], o);
  }

  /** Unloads a tunnel (its SAs are deleted by charon, which removes them from the data plane). */
  async removeTunnel(id: string): Promise<void> {
    const t = this.#tunnels.get(id);
    if (!t) return;
    this.#tunnels.delete(id);
    this.#peers.forget(id);
    this.initiator.forget(id);
    await this.vici.terminate({ ike: id, force: true, timeoutMs: -1 }).catch(() => undefined);
    await this.vici.unloadConn(id).catch(() => undefined);
    for (const s of sharedSecrets(t)) await this.vici.unloadShared(s.id).catch(() => undefined);
  }

  async initiate(id: string, timeoutMs = 15_000): Promise<void> {
    await this.vici.initiate({ child: id, ike: id, timeoutMs });
  }

  /** Every IKE_SA (the daemon's full read); tunnels it shows without a CHILD_SA are started again. */
  async listSas(): Promise<IkeSaInfo[]> {
    const startedAt = Date.now();
    const list = await this.vici.listSas();
    this.#peers.seen(list, (id) => this.#tunnels.has(id));
    this.initiator.seen(list, startedAt);
    return list;
  }

  sas(): SaInfo[] {
    return this.device.sas();
  }
  counters(): IpsecCounters {
    return this.device.counters();
  }
  stats(): WorkerStats[] {
    return this.device.stats();
  }

  /**
   * Stops charon, then the data plane. charon's SIGTERM shutdown sends a DELETE for every IKE_SA
   * and removes its SAs from the data plane itself: one signal instead of a `terminate` per tunnel
   * (each waiting up to 2 s for the peer), so stop time does not grow with the tunnel count.
   */
  async close(): Promise<void> {
    this.initiator.close();
    await this.vici.close().catch(() => undefined);
    await this.supervisor.stop();
    this.device.close();
  }
}
