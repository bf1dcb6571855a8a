/**
 * The read model of a running vrouter: the admin API's and /metrics' views (`RouterStateSource`)
 * computed from what the apply side holds. Reads only: nothing here changes a device or charon,
 * and nothing waits on charon (the IKE view is the last one read).
 */
import { configVersion } from '../config/load.js';
import type { DesiredState, IpsecTunnelSpec, TenantSpec } from '../config/model.js';
import { totals, type WorkerStats } from '../dataplane/index.js';
import { peerNames } from './operator.js';
import type { IpsecService } from '../ipsec/service.js';
import { str as viciStr, type IkeSaInfo } from '../strongswan/vici/types.js';
import { dropReasonOf } from './drops.js';
import type { IkeView } from './ike-view.js';
import type { TenantRuntime } from './runtime.js';
import type {
  ConfigVersionView,
  CounterSnapshot,
  DropReason,
  DropView,
  HealthView,
  PeerView,
  RouteView,
  RouterStateSource,
  TenantView,
  TunnelState,
  TunnelView,
  WorkerView,
} from '../api/state.js';

/** What the views read from the apply side. */
export interface RouterReader {
  state(): DesiredState;
  appliedAt(): string;
  runtimes(): readonly TenantRuntime[];
  ipsec(): IpsecService | undefined;
  /** charon's IKE_SAs, kept current by its events (`ike-view.ts`). */
  ike(): IkeView;
  rekeys(): { ike: number; child: number };
  /** Devices whose TUN was lost (name → reason): not ready until a restart. */
  lostDevices(): ReadonlyMap<string, string>;
  /** `process.hrtime.bigint()` when the devices opened. */
  readonly startedNs: bigint;
}

const seconds = (v: string | undefined): number | null => (v !== undefined && /^\d+$/.test(v) ? Number(v) : null);
/** `AES_GCM_16` + 256 → `AES_GCM_16_256`, as charon's own log prints it. */
const keyed = (alg: string | undefined, size: string | number | undefined): string => (alg ? (size !== undefined ? `${alg}_${size}` : alg) : '');
const hex8 = (s: string | undefined): string => (s ?? '').padStart(8, '0').slice(-8);

export function tunnelState(sa: IkeSaInfo | undefined): TunnelState {
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

/** Per-SA traffic counters of the data plane, by direction and SPI. */
export interface SaCounters {
  get(inbound: boolean, spi: number): { bytes: number; packets: number } | undefined;
}

/** The data plane's SAs as `SaCounters`. */
export function saCounters(sas: readonly { spi: number; inbound: boolean; bytes: bigint; packets: bigint }[]): SaCounters {
  const m = new Map<string, { bytes: number; packets: number }>();
  for (const s of sas) m.set(`${s.inbound ? 'i' : 'o'}${s.spi}`, { bytes: Number(s.bytes), packets: Number(s.packets) });
  return { get: (inbound, spi) => m.get(`${inbound ? 'i' : 'o'}${spi}`) };
}

/**
 * One configured tunnel with its IKE_SA (if charon has one), at `nowSec` (Unix seconds). Traffic
 * counts come from the data plane (`dp`), which carries the packets; charon's figures (as of the
 * event or read that reported the CHILD_SA) only where the data plane has no such SA.
 */
export function tunnelView(tenant: string, spec: IpsecTunnelSpec, sa: IkeSaInfo | undefined, nowSec: number, dp?: SaCounters): TunnelView {
  const spi = (s: string | undefined): number => parseInt(s ?? '', 16);
  return {
    id: spec.id,
    tenant,
    type: 'ipsec' as const,
    remote_id: spec.remoteId,
    auth_method: spec.auth.method,
    state: tunnelState(sa),
    ike_sa: sa
      ? {
          state: sa.state ?? 'UNKNOWN',
          algorithms: { encryption: keyed(sa.encrAlg, viciStr(sa.raw, 'encr-keysize')), integrity: viciStr(sa.raw, 'integ-alg') ?? null, prf: sa.prfAlg ?? '', dh_group: sa.dhGroup ?? '' },
          established_at: sa.established !== undefined ? new Date((nowSec - sa.established) * 1000).toISOString() : null,
          rekey_in_s: seconds(viciStr(sa.raw, 'rekey-time')),
        }
      : null,
    child_sas: (sa?.childSas ?? []).map((c) => {
      const rx = dp?.get(true, spi(c.spiIn));
      const tx = dp?.get(false, spi(c.spiOut));
      return {
      name: c.name,
      spi_in: hex8(c.spiIn),
      spi_out: hex8(c.spiOut),
      algorithms: { encryption: keyed(c.encrAlg, c.encrKeysize), integrity: viciStr(c.raw, 'integ-alg') ?? null, esn: viciStr(c.raw, 'esn') === '1' },
      udp_encap: c.encap,
      local_ts: c.localTs ?? [],
      remote_ts: c.remoteTs ?? [],
      bytes_in: rx?.bytes ?? c.bytesIn ?? 0,
      bytes_out: tx?.bytes ?? c.bytesOut ?? 0,
      packets_in: rx?.packets ?? c.packetsIn ?? 0,
      packets_out: tx?.packets ?? c.packetsOut ?? 0,
      rekey_in_s: seconds(viciStr(c.raw, 'rekey-time')),
      };
    }),
  };
}

/**
 * Data-plane drop counters as API drops: summed per (reason, worker), since several data-plane
 * codes share one API reason. `worker` null: a device-level counter.
 */
export function dropViews(counts: readonly { code: string; count: bigint; worker: number | null }[], tenant: string | null): DropView[] {
  const sums = new Map<string, DropView>();
  for (const { code, count, worker } of counts) {
    if (count === 0n) continue;
    const reason = dropReasonOf(code);
    const key = `${reason}/${worker ?? '-'}`;
    const v = sums.get(key) ?? { reason, count: 0, worker, tenant };
    v.count += Number(count);
    sums.set(key, v);
  }
  return [...sums.values()];
}

/** A tenant's tunnels whose PSK is shorter than the safe minimum (accepted with `allow_weak_psk`). */
export function weakPskTunnels(t: TenantSpec): string[] {
  return t.tunnels.flatMap((x) => (x.auth.method === 'psk' && x.auth.weak ? [x.id] : []));
}

export class RouterViews implements RouterStateSource {
  readonly #r: RouterReader;

  constructor(reader: RouterReader) {
    this.#r = reader;
  }

  /** One tenant: its id; several: null (worker counters are per device, not per tenant). */
  get #soleTenant(): string | null {
    return this.#r.runtimes().length === 1 ? this.#r.runtimes()[0]!.spec.id : null;
  }

  health(): HealthView {
    const reasons: string[] = [];
    for (const rt of this.#r.runtimes()) {
      if (rt.spec.wireguard && (!rt.wg || rt.wg.closed)) reasons.push(`tenant ${rt.spec.id}: the WireGuard device is not open`);
      for (const t of rt.tuns) if (t.dev.closed) reasons.push(`tenant ${rt.spec.id}: TUN ${t.spec.name} is not open`);
    }
    if (this.#r.runtimes().some((rt) => rt.spec.tunnels.length > 0)) {
      const ipsec = this.#r.ipsec();
      if (!ipsec) reasons.push('the IPsec device is not open');
      else if (ipsec.supervisor.pid === undefined) reasons.push('charon is not running (installed SAs keep forwarding)');
    }
    for (const [device, reason] of this.#r.lostDevices()) reasons.push(`TUN ${device} lost (${reason}); restart the daemon`);
    return { live: true, ready: reasons.length === 0, reasons };
  }

  configVersion(): ConfigVersionView {
    return { version: configVersion(this.#r.state()), appliedAt: this.#r.appliedAt() };
  }

  tenants(): TenantView[] {
    return this.#r.state().tenants.map((t) => ({ id: t.id, tunnels: t.tunnels.length, wireguard_peers: t.peers.length, tuns: t.tuns.length }));
  }

  tunnels(): TunnelView[] {
    const now = Date.now() / 1000;
    const ike = this.#r.ike();
    const ipsec = this.#r.ipsec();
    const dp = ipsec && !ipsec.device.closed ? saCounters(ipsec.sas()) : undefined;
    return this.#r.runtimes().flatMap(({ spec: t }) => t.tunnels.map((spec) => tunnelView(t.id, spec, ike.byName(spec.id), now, dp)));
  }

  wireguardPeers(): PeerView[] {
    return this.#r.runtimes().flatMap((rt) => {
      if (!rt.wg || rt.wg.closed) return [];
      const names = peerNames(rt.spec);
      return rt.wg.state().peers.map((p) => {
        const key = Buffer.from(p.publicKey).toString('base64');
        return {
        public_key: key,
        name: names.get(key) ?? null,
        tenant: rt.spec.id,
        endpoint: p.endpoint,
        allowed_ips: p.allowedIps,
        latest_handshake: p.lastHandshake ? new Date(p.lastHandshake.sec * 1000).toISOString() : null,
        rx_bytes: Number(p.rxBytes),
        tx_bytes: Number(p.txBytes),
        persistent_keepalive_s: p.persistentKeepalive > 0 ? p.persistentKeepalive : null,
        };
      });
    });
  }

  routes(tenant: string): RouteView[] | undefined {
    const t = this.#r.state().tenants.find((x) => x.id === tenant);
    if (!t) return undefined;
    return t.routes.map((r) => ({
      prefix: r.prefix,
      via: r.via.kind === 'wireguard' ? { kind: 'wireguard', id: r.via.peer } : r.via.kind === 'ipsec' ? { kind: 'ipsec', id: r.via.tunnel } : { kind: 'tun', id: r.via.device },
    }));
  }

  /** Every open device's per-worker counters: WireGuard, IPsec, then tenant TUNs. */
  allStats(): WorkerStats[] {
    const out: WorkerStats[] = [];
    const rts = this.#r.runtimes();
    for (const d of [...rts.map((rt) => rt.wg), this.#r.ipsec()?.device, ...rts.flatMap((rt) => rt.tuns.map((t) => t.dev))]) if (d && !d.closed) out.push(...d.stats());
    return out;
  }

  drops(): DropView[] {
    const ipsec = this.#r.ipsec();
    return dropViews(
      [
        ...this.allStats().flatMap((w, i) => w.drops.map((d) => ({ code: d.reason, count: d.count, worker: i }))),
        ...this.#r.runtimes().flatMap((rt) => (rt.wg && !rt.wg.closed ? rt.wg.counters().drops : [])).map((d) => ({ code: d.reason, count: d.count, worker: null })),
        ...(ipsec && !ipsec.device.closed ? ipsec.counters().drops : []).map((d) => ({ code: d.reason, count: d.count, worker: null })),
      ],
      this.#soleTenant,
    );
  }

  workers(): WorkerView[] {
    const wallNs = Number(process.hrtime.bigint() - this.#r.startedNs);
    return this.allStats().map((w, i) => ({
      index: i,
      rx_packets: Number(w.tunRxPackets + w.udpRxPackets),
      tx_packets: Number(w.tunTxPackets + w.udpTxPackets),
      rx_bytes: Number(w.tunRxBytes + w.udpRxBytes),
      tx_bytes: Number(w.tunTxBytes + w.udpTxBytes),
      batches: Number(w.batches),
      restarts: Number(w.restarts),
      // Packets handed off between devices on the workers (the API's name predates "handoff").
      translated: Number(w.translated),
      // Average since the devices opened (a restarted worker's time counts from its first start).
      busy_ratio: wallNs > 0 ? Math.min(1, Number(w.busyNs) / wallNs) : null,
      crypto_packets: Number(w.cryptoPackets),
      helped_packets: Number(w.helpedPackets),
    }));
  }

  /**
   * Every WireGuard peer's metric name and traffic, by one batched data-plane call per tenant
   * (`traffic()`: columns, no allowed IPs or keys): a scrape of 2000 peers through `state()` and a
   * name lookup per peer took ~300 ms.
   */
  #wireguardTraffic(): { tenant: string; tunnel: string; rx: number; tx: number; handshakeMs: number }[] {
    const out: { tenant: string; tunnel: string; rx: number; tx: number; handshakeMs: number }[] = [];
    for (const rt of this.#r.runtimes()) {
      if (!rt.wg || rt.wg.closed) continue;
      const names = peerNames(rt.spec);
      const t = rt.wg.traffic();
      for (let i = 0; i < t.rxBytes.length; i++) {
        const key = t.publicKeys.toString('base64', 32 * i, 32 * i + 32);
        out.push({ tenant: rt.spec.id, tunnel: names.get(key) ?? `wg:${key}`, rx: t.rxBytes[i]!, tx: t.txBytes[i]!, handshakeMs: t.lastHandshakeMs[i]! });
      }
    }
    return out;
  }

  counters(): CounterSnapshot {
    const peers = this.#wireguardTraffic();
    const now = Date.now();
    const tunnels = this.tunnels();
    const drops = new Map<DropReason, number>();
    for (const d of this.drops()) drops.set(d.reason, (drops.get(d.reason) ?? 0) + d.count);
    const rts = this.#r.runtimes();
    const ikeSas = this.#r.ike().list();
    return {
      tunnels_active: rts.flatMap((rt) => [
        { tenant: rt.spec.id, type: 'ipsec' as const, count: tunnels.filter((x) => x.tenant === rt.spec.id && (x.state === 'up' || x.state === 'rekeying')).length },
        {
          tenant: rt.spec.id,
          type: 'wireguard' as const,
          // NaN (no handshake yet) compares false.
          count: peers.filter((p) => p.tenant === rt.spec.id && now - p.handshakeMs < 180_000).length,
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
        ...peers.map((p) => ({ tunnel: p.tunnel, bytes_in: p.rx, bytes_out: p.tx, packets_in: 0, packets_out: 0 })),
      ],
      ike_sa_active: ikeSas.filter((s) => s.state === 'ESTABLISHED').length,
      child_sa_active: ikeSas.reduce((n, s) => n + s.childSas.filter((c) => c.state === 'INSTALLED').length, 0),
      ike_rekeys_total: this.#r.rekeys().ike,
      child_rekeys_total: this.#r.rekeys().child,
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
      workers: this.workers().map((w) => ({
        worker: w.index,
        rx_packets: w.rx_packets,
        tx_packets: w.tx_packets,
        restarts: w.restarts,
        crypto_packets: w.crypto_packets,
        helped_packets: w.helped_packets,
      })),
      weak_psk_tunnels: this.#r.state().tenants.map((t) => ({ tenant: t.id, count: weakPskTunnels(t).length })),
    };
  }

  /** Sums over every worker (drops merged by reason). */
  totals(): ReturnType<typeof totals> {
    return totals(this.allStats());
  }
}
