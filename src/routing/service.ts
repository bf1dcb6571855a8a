/**
 * Subnet advertisement: each tenant announces over BGP what it can reach right now, through a
 * supervised BIRD 2 of its own (one speaker per BGP tenant; why in ./bird-conf.ts).
 *
 * Pipeline, in order, on every change:
 *   1. reachable    — the daemon reports per tenant which prefixes are live (IPsec tunnel up,
 *                     WireGuard peer with a session, tenant TUN device up): `setReachable`
 *   2. select       — keep the sources the tenant announces (`announce.ipsec/wireguard/tun`)
 *   3. aggregate    — a configured aggregate replaces the live prefixes it covers; `static`
 *                     prefixes are announced whatever is live
 *   4. diff + log   — one `routing_change` event per prefix announced or withdrawn
 *   5. render+apply — write the tenant's bird.conf (0600, atomically) and `configure` its BIRD;
 *                     coalesced, so a burst of tunnel events costs one reconfiguration
 *
 * BIRD keeps sessions whose protocol text did not change across `configure`, so a withdrawal is a
 * BGP UPDATE within the coalescing delay, not a session reset. A BIRD crash costs the sessions
 * until the supervisor restarts it (with the current file); forwarding never waits for it.
 */

import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { CvlanError } from '../errors.js';
import type { TenantBgpSpec } from '../config/model.js';
import { parsePrefix, type Prefix } from '../config/normalize.js';
import type { EventLog } from '../log.js';
import { EngineSupervisor, type EngineLogger } from '../supervise/engine.js';
import { renderBirdConf, sessionSymbol, tenantSymbols } from './bird-conf.js';
import { birdCommand, parseBgpSessions, parseRoutePrefixes, type BgpSessionStatus } from './birdc.js';

/** A prefix a tenant reaches now, and through what. */
export interface Reachable {
  prefix: string;
  source: 'ipsec' | 'wireguard' | 'tun';
  /** Tunnel id, peer name/key or TUN device name. */
  via: string;
}

export interface RoutingOptions {
  /** Directory for each speaker's bird.conf and control socket (`bgp-<hash>/`, created 0700). */
  runtimeDir: string;
  /** Default `bird` from PATH. */
  birdPath?: string;
  /** util-linux `setpriv` (parent-death signal for the speakers); null to run without. Default from PATH. */
  setprivPath?: string | null;
  /** Run BIRD in this network namespace (`ip netns exec`); default the daemon's. */
  netns?: string;
  /** BIRD's router id; undefined = BIRD's choice (lowest IPv4 address). */
  routerId?: string;
  /** Changes within this window are applied together, ms. Default 200. */
  coalesceMs?: number;
  events?: EventLog;
  logger?: EngineLogger;
}

export interface NeighborStatus {
  tenant: string;
  neighbor: string;
  address: string;
  /** BGP FSM state; `Established` when routes flow. */
  state: string;
  info: string;
  announced: number;
  learned: string[];
  /** Updates refused by the import limit or filtered out (outside `allow`). */
  limited: number;
  filtered: number;
  importLimitHit: boolean;
}

export interface RoutingStatus {
  /** True when every BGP tenant's speaker runs. */
  running: boolean;
  /** BIRD (re)starts so far, all speakers. */
  starts: number;
  tenants: { tenant: string; announced: string[]; neighbors: NeighborStatus[] }[];
}

/** One tenant's speaker and what it announces. */
interface TenantState {
  bgp: TenantBgpSpec;
  reachable: readonly Reachable[];
  /** prefix → what it stands for (the source, or `aggregate`). */
  announced: Map<string, { kind: Reachable['source'] | 'aggregate' | 'static'; id: string }>;
  dir: string;
  confPath: string;
  socket: string;
  supervisor: EngineSupervisor | null;
  /** Announcements changed since the file was last written. */
  dirty: boolean;
}

export class RoutingService extends EventEmitter<{ applied: [{ tenant: string; generation: number }]; error: [Error] }> {
  private readonly opts: RoutingOptions;
  private readonly tenants = new Map<string, TenantState>();
  private timer: NodeJS.Timeout | null = null;
  private applying: Promise<void> = Promise.resolve();
  private generation = 0;
  private stopped = false;

  constructor(opts: RoutingOptions) {
    super();
    if (!path.isAbsolute(opts.runtimeDir)) throw new CvlanError('CVLAN_ERR_CONFIG', 'routing: runtimeDir must be an absolute path');
    // `<runtimeDir>/bgp-<8 hex>/bird.ctl` must fit a unix socket path (108 bytes with the NUL).
    if (Buffer.byteLength(opts.runtimeDir) > 107 - '/bgp-01234567/bird.ctl'.length) {
      throw new CvlanError('CVLAN_ERR_CONFIG', 'routing: runtimeDir is too long for a unix socket path');
    }
    this.opts = opts;
  }

  /** True while any tenant has a `bgp` section. */
  get active(): boolean {
    return this.tenants.size > 0;
  }

  /** The control socket of a tenant's speaker (for `birdc -s`), if it speaks BGP. */
  controlSocket(tenant: string): string | undefined {
    return this.tenants.get(tenant)?.socket;
  }

  /**
   * Sets which tenants speak BGP and how (a new configuration): starts a speaker for each new BGP
   * tenant, stops those of tenants that no longer have one; a tenant that stays keeps what it
   * reaches and its sessions (BIRD's `configure` restarts only the sessions whose text changed).
   */
  async configure(tenants: readonly { id: string; bgp?: TenantBgpSpec | undefined }[]): Promise<void> {
    const want = new Map(tenants.filter((t) => t.bgp !== undefined).map((t) => [t.id, t.bgp as TenantBgpSpec]));
    for (const [id, st] of [...this.tenants]) {
      if (want.has(id)) continue;
      this.diff(id, st, new Map());
      this.tenants.delete(id);
      await st.supervisor?.stop();
    }
    for (const [id, bgp] of want) {
      let st = this.tenants.get(id);
      if (st) {
        st.bgp = bgp;
        this.select(id, st);
      } else {
        const dir = path.join(this.opts.runtimeDir, `bgp-${createHash('sha256').update(id).digest('hex').slice(0, 8)}`);
        st = { bgp, reachable: [], announced: new Map(), dir, confPath: path.join(dir, 'bird.conf'), socket: path.join(dir, 'bird.ctl'), supervisor: null, dirty: true };
        this.tenants.set(id, st);
      }
      st.dirty = true;
    }
    await this.apply();
  }

  /** What `tenant` reaches now (replaces the previous list). Applied after the coalescing delay. */
  setReachable(tenant: string, reachable: readonly Reachable[]): void {
    const st = this.tenants.get(tenant);
    if (!st) return;
    st.reachable = reachable;
    if (this.select(tenant, st)) {
      st.dirty = true;
      this.schedule();
    }
  }

  /** Applies what is pending now (tests and shutdown). */
  async flush(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
      await this.apply();
    }
    await this.applying;
  }

  /** A tenant's speaker's last lines of output (session errors, refused configurations). */
  recentOutput(tenant: string): string[] {
    return this.tenants.get(tenant)?.supervisor?.recentOutput() ?? [];
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.applying.catch(() => undefined);
    await Promise.all([...this.tenants.values()].map((st) => st.supervisor?.stop()));
  }

  /** Sessions, announced and learned prefixes per tenant, read from each speaker. */
  async status(): Promise<RoutingStatus> {
    const tenants: RoutingStatus['tenants'] = [];
    let starts = 0;
    let running = this.tenants.size > 0;
    for (const [id, st] of [...this.tenants].sort(([a], [b]) => a.localeCompare(b))) {
      starts += st.supervisor?.starts ?? 0;
      const up = st.supervisor?.pid !== undefined;
      running &&= up;
      const sessions: BgpSessionStatus[] = up ? parseBgpSessions(await birdCommand(st.socket, 'show protocols all')) : [];
      const neighbors: NeighborStatus[] = [];
      for (const n of st.bgp.neighbors) {
        const sym = sessionSymbol(id, n.name);
        const s = sessions.find((x) => x.protocol === sym);
        const table = n.address.includes(':') ? tenantSymbols(id).v6 : tenantSymbols(id).v4;
        const learned = up && n.import !== undefined ? parseRoutePrefixes(await birdCommand(st.socket, `show route table ${table} protocol ${sym}`)) : [];
        neighbors.push({
          tenant: id,
          neighbor: n.name,
          address: n.address,
          state: s?.bgpState || s?.state || (up ? 'unknown' : 'down'),
          info: s?.info ?? '',
          announced: s?.exported ?? 0,
          learned,
          limited: s?.rejected ?? 0,
          filtered: s?.filtered ?? 0,
          importLimitHit: s?.importLimitHit ?? false,
        });
      }
      tenants.push({ tenant: id, announced: [...st.announced.keys()].sort(), neighbors });
    }
    return { running, starts, tenants };
  }

  // ------------------------------------------------------------------ pipeline

  /** Steps 2–4 for one tenant; true when its announcements changed. */
  private select(tenant: string, st: TenantState): boolean {
    const a = st.bgp.announce;
    const aggregates = a.aggregate.map((p) => prefixOf(p));
    const next: TenantState['announced'] = new Map();
    for (const p of a.static) next.set(p, { kind: 'static', id: p });
    for (const r of st.reachable) {
      if (!a[r.source]) continue;
      const p = prefixOf(r.prefix);
      const agg = aggregates.find((g) => covers(g, p));
      if (agg !== undefined) next.set(agg.text, { kind: 'aggregate', id: agg.text });
      else if (!next.has(p.text)) next.set(p.text, { kind: r.source, id: r.via });
    }
    return this.diff(tenant, st, next);
  }

  private diff(tenant: string, st: TenantState, next: TenantState['announced']): boolean {
    let changed = false;
    for (const [prefix, via] of st.announced) {
      if (next.has(prefix)) continue;
      changed = true;
      this.opts.events?.routingChange({ tenant, tunnel: via.kind === 'ipsec' ? via.id : null, action: 'withdraw', prefix, via });
    }
    for (const [prefix, via] of next) {
      if (st.announced.has(prefix)) continue;
      changed = true;
      this.opts.events?.routingChange({ tenant, tunnel: via.kind === 'ipsec' ? via.id : null, action: 'announce', prefix, via });
    }
    st.announced = next;
    return changed;
  }

  private schedule(): void {
    if (this.timer || this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.apply();
    }, this.opts.coalesceMs ?? 200);
    this.timer.unref();
  }

  /** Step 5 for every changed tenant, serialized: a new apply waits for the one in flight. */
  private apply(): Promise<void> {
    this.applying = this.applying.then(async () => {
      for (const [tenant, st] of this.tenants) {
        if (!st.dirty || this.stopped) continue;
        st.dirty = false;
        try {
          await this.writeConf(tenant, st);
          if (st.supervisor === null) await this.startSpeaker(tenant, st);
          else if (st.supervisor.pid !== undefined) {
            await birdCommand(st.socket, 'configure');
            this.generation += 1;
            this.emit('applied', { tenant, generation: this.generation });
          }
          // A speaker that is restarting reads the file it finds.
        } catch (err) {
          st.dirty = true;
          this.opts.logger?.warn({ tenant, err: (err as Error).message }, 'routing: applying announcements failed');
          this.emit('error', err as Error);
        }
      }
    });
    return this.applying;
  }

  private async writeConf(tenant: string, st: TenantState): Promise<void> {
    await mkdir(st.dir, { recursive: true, mode: 0o700 });
    const text = renderBirdConf({ tenant, bgp: st.bgp, prefixes: [...st.announced.keys()] }, this.opts.routerId !== undefined ? { routerId: this.opts.routerId } : {});
    // Atomic: a BIRD (re)starting meanwhile reads the old file or the new one, never half of one.
    const tmp = `${st.confPath}.tmp`;
    await writeFile(tmp, text, { mode: 0o600 });
    await rename(tmp, st.confPath);
  }

  private async startSpeaker(tenant: string, st: TenantState): Promise<void> {
    // The speaker must not outlive the daemon (a killed vrouter would keep attracting traffic it
    // can no longer forward): the kernel sends it SIGTERM when we die, and BIRD's Cease makes the
    // neighbours withdraw at once instead of after the hold time.
    const bird = [
      ...(this.opts.setprivPath !== null ? [this.opts.setprivPath ?? 'setpriv', '--pdeathsig', 'TERM', '--'] : []),
      this.opts.birdPath ?? 'bird', '-f', '-c', st.confPath, '-s', st.socket, '-P', path.join(st.dir, 'bird.pid'),
    ];
    const sup = new EngineSupervisor({
      name: `bird[${tenant}]`,
      errorCode: 'CVLAN_ERR_ROUTING',
      argv: this.opts.netns ? ['ip', 'netns', 'exec', this.opts.netns, ...bird] : bird,
      readySocket: st.socket,
      // A restarted BIRD read the file at start; one `configure` covers a change written meanwhile.
      onStart: () => birdCommand(st.socket, 'configure').then(() => undefined),
      ...(this.opts.logger ? { logger: this.opts.logger } : {}),
    });
    await sup.start();
    st.supervisor = sup;
  }
}

function prefixOf(text: string): Prefix {
  const r = parsePrefix(text);
  if ('error' in r) throw new CvlanError('CVLAN_ERR_INVALID_ARG', `routing: ${r.error}`);
  return r.prefix;
}

/** `outer` contains `inner` (same family, at most as long, same leading bits). */
export function covers(outer: Prefix, inner: Prefix): boolean {
  if (outer.family !== inner.family || outer.bits > inner.bits) return false;
  for (let i = 0; i < outer.bytes.length; i++) {
    const keep = Math.max(0, Math.min(8, outer.bits - i * 8));
    const mask = (0xff << (8 - keep)) & 0xff;
    if (((outer.bytes[i] as number) & mask) !== ((inner.bytes[i] as number) & mask)) return false;
  }
  return true;
}
