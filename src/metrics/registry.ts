/**
 * Prometheus registry of cvlan-vrouter.
 *
 * Nothing here runs per packet: the data plane keeps its own monotonic totals, and a scrape reads
 * them once through `RouterStateSource.counters()` and copies them into the metrics. Counters are
 * reset and re-set from the snapshot at every scrape, so a tunnel that was removed disappears
 * instead of lingering with a stale value.
 *
 * Label values are bounded by construction: tunnel ids and tenants come from the configuration,
 * drop reasons and handshake results from fixed enums (unknown ones are folded into `other`),
 * workers are indices. No label ever carries a packet's addresses.
 */

import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import {
  DROP_REASONS,
  HANDSHAKE_RESULTS,
  type CounterSnapshot,
  type DropReason,
  type HandshakeResult,
  type RouterStateSource,
} from '../api/state.js';

export interface MetricsOptions {
  /** Add Node.js process metrics (`process_*`, `nodejs_*`). Default true. */
  processMetrics?: boolean;
}

const dropReasons: ReadonlySet<string> = new Set(DROP_REASONS);
const handshakeResults: ReadonlySet<string> = new Set(HANDSHAKE_RESULTS);

function boundedReason(r: string): DropReason {
  return dropReasons.has(r) ? (r as DropReason) : 'other';
}
function boundedResult(r: string): HandshakeResult {
  return handshakeResults.has(r) ? (r as HandshakeResult) : 'other';
}

/** The metric names and label names this module publishes; pinned by the tests. */
export const METRIC_LABELS = {
  cvlan_vrouter_tunnels_active: ['tenant', 'type'],
  cvlan_vrouter_bytes_in_total: ['tunnel'],
  cvlan_vrouter_bytes_out_total: ['tunnel'],
  cvlan_vrouter_packets_in_total: ['tunnel'],
  cvlan_vrouter_packets_out_total: ['tunnel'],
  cvlan_vrouter_ike_sa_active: [],
  cvlan_vrouter_child_sa_active: [],
  cvlan_vrouter_ike_rekeys_total: [],
  cvlan_vrouter_child_rekeys_total: [],
  cvlan_vrouter_drops_total: ['reason'],
  cvlan_vrouter_handshakes_total: ['tenant', 'result'],
  cvlan_vrouter_worker_packets_total: ['worker', 'direction'],
  cvlan_vrouter_worker_restarts_total: ['worker'],
  cvlan_vrouter_worker_crypto_packets_total: ['worker', 'batch'],
  cvlan_vrouter_weak_psk_tunnels: ['tenant'],
  cvlan_vrouter_bgp_session_established: ['tenant', 'neighbor'],
  cvlan_vrouter_bgp_prefixes_announced: ['tenant'],
  cvlan_vrouter_bgp_prefixes_learned: ['tenant', 'neighbor'],
  cvlan_vrouter_bgp_updates_refused: ['tenant', 'neighbor', 'reason'],
  // `node` is `[ha] node_id`: it also keeps a node without [ha] free of HA samples.
  cvlan_vrouter_ha_active: ['node'],
  cvlan_vrouter_ha_fenced: ['node', 'reason'],
  cvlan_vrouter_ha_peer_connected: ['node'],
  cvlan_vrouter_ha_last_sync_age_seconds: ['node'],
  cvlan_vrouter_ha_synced: ['node', 'kind'],
  cvlan_vrouter_ha_takeovers_total: ['node'],
  cvlan_vrouter_ha_generation_refusals_total: ['node'],
  cvlan_vrouter_ha_sync_rejected_total: ['node', 'reason'],
  cvlan_vrouter_ha_lease_exhausted_total: ['node'],
  cvlan_vrouter_client_pool_leases: ['tenant', 'pool'],
  cvlan_vrouter_client_pool_size: ['tenant', 'pool'],
  cvlan_vrouter_clients_connected: ['tenant'],
  cvlan_vrouter_client_pool_exhausted_total: ['tenant'],
} as const satisfies Record<string, readonly string[]>;

export class VrouterMetrics {
  readonly registry: Registry;
  readonly contentType: string;
  readonly #source: RouterStateSource;
  /** Snapshot of the scrape in progress; every collect callback of that scrape reads the same one. */
  #snapshot: CounterSnapshot | undefined;

  constructor(source: RouterStateSource, options: MetricsOptions = {}) {
    this.#source = source;
    this.registry = new Registry();
    this.contentType = this.registry.contentType;
    const registers = [this.registry];
    const snap = () => this.#snapshot ?? this.#source.counters();

    const tunnelsActive = new Gauge({
      name: 'cvlan_vrouter_tunnels_active',
      help: 'Tunnels currently up, by tenant and type (ipsec, wireguard).',
      labelNames: METRIC_LABELS.cvlan_vrouter_tunnels_active,
      registers,
      collect() {
        tunnelsActive.reset();
        for (const t of snap().tunnels_active) tunnelsActive.set({ tenant: t.tenant, type: t.type }, t.count);
      },
    });

    const perTunnel = (
      name: 'bytes_in' | 'bytes_out' | 'packets_in' | 'packets_out',
      help: string,
    ): Counter<'tunnel'> => {
      const c: Counter<'tunnel'> = new Counter({
        name: `cvlan_vrouter_${name}_total`,
        help,
        labelNames: ['tunnel'],
        registers,
        collect() {
          c.reset();
          for (const t of snap().tunnels) c.inc({ tunnel: t.tunnel }, t[name]);
        },
      });
      return c;
    };
    perTunnel('bytes_in', 'Bytes received from the tunnel (inner packets after decryption), total.');
    perTunnel('bytes_out', 'Bytes sent into the tunnel (inner packets before encryption), total.');
    perTunnel('packets_in', 'Packets received from the tunnel, total.');
    perTunnel('packets_out', 'Packets sent into the tunnel, total.');

    const weakPsk = new Gauge({
      name: 'cvlan_vrouter_weak_psk_tunnels',
      help: 'IPsec tunnels whose pre-shared key is shorter than 16 bytes (accepted with allow_weak_psk), by tenant.',
      labelNames: METRIC_LABELS.cvlan_vrouter_weak_psk_tunnels,
      registers,
      collect() {
        weakPsk.reset();
        for (const t of snap().weak_psk_tunnels ?? []) weakPsk.set({ tenant: t.tenant }, t.count);
      },
    });

    // Remote access: the view charon's events keep current (a scrape never waits on charon).
    const clients = () => this.#source.clients?.() ?? { clients: [], pools: [], exhausted: {} };
    const poolLeases = new Gauge({
      name: 'cvlan_vrouter_client_pool_leases',
      help: 'Addresses of a remote-access pool leased to clients online now.',
      labelNames: METRIC_LABELS.cvlan_vrouter_client_pool_leases,
      registers,
      collect() {
        poolLeases.reset();
        for (const p of clients().pools) poolLeases.set({ tenant: p.tenant, pool: p.pool }, p.online);
      },
    });
    const poolSize = new Gauge({
      name: 'cvlan_vrouter_client_pool_size',
      help: 'Addresses a remote-access pool can lease.',
      labelNames: METRIC_LABELS.cvlan_vrouter_client_pool_size,
      registers,
      collect() {
        poolSize.reset();
        for (const p of clients().pools) poolSize.set({ tenant: p.tenant, pool: p.pool }, p.size);
      },
    });
    const connected = new Gauge({
      name: 'cvlan_vrouter_clients_connected',
      help: 'Remote-access clients with an established IKE_SA, by tenant.',
      labelNames: METRIC_LABELS.cvlan_vrouter_clients_connected,
      registers,
      collect() {
        connected.reset();
        const n = new Map<string, number>();
        for (const p of clients().pools) n.set(p.tenant, 0);
        for (const c of clients().clients) n.set(c.tenant, (n.get(c.tenant) ?? 0) + 1);
        for (const [tenant, v] of n) connected.set({ tenant }, v);
      },
    });
    const exhausted = new Counter({
      name: 'cvlan_vrouter_client_pool_exhausted_total',
      help: 'Client logins answered with INTERNAL_ADDRESS_FAILURE (no address left in the pool), by tenant.',
      labelNames: METRIC_LABELS.cvlan_vrouter_client_pool_exhausted_total,
      registers,
      collect() {
        exhausted.reset();
        for (const [tenant, v] of Object.entries(clients().exhausted)) exhausted.inc({ tenant }, v);
      },
    });

    // BGP: the speakers' last status as the source holds it (a scrape never waits on BIRD).
    const bgpViews = () => this.#source.tenants().flatMap((t) => {
      const v = this.#source.bgp?.(t.id);
      return v ? [{ tenant: t.id, v }] : [];
    });
    const bgpUp = new Gauge({
      name: 'cvlan_vrouter_bgp_session_established',
      help: 'BGP sessions of the tenants\' speakers: 1 when Established, else 0.',
      labelNames: METRIC_LABELS.cvlan_vrouter_bgp_session_established,
      registers,
      collect() {
        bgpUp.reset();
        for (const { tenant, v } of bgpViews()) for (const n of v.neighbors) bgpUp.set({ tenant, neighbor: n.name }, n.state === 'Established' ? 1 : 0);
      },
    });
    const bgpAnnounced = new Gauge({
      name: 'cvlan_vrouter_bgp_prefixes_announced',
      help: 'Prefixes the tenant announces now (what it reaches, aggregates applied).',
      labelNames: METRIC_LABELS.cvlan_vrouter_bgp_prefixes_announced,
      registers,
      collect() {
        bgpAnnounced.reset();
        for (const { tenant, v } of bgpViews()) bgpAnnounced.set({ tenant }, v.announced.length);
      },
    });
    const bgpLearned = new Gauge({
      name: 'cvlan_vrouter_bgp_prefixes_learned',
      help: 'Prefixes learned from a neighbour (only with an import filter).',
      labelNames: METRIC_LABELS.cvlan_vrouter_bgp_prefixes_learned,
      registers,
      collect() {
        bgpLearned.reset();
        for (const { tenant, v } of bgpViews()) for (const n of v.neighbors) bgpLearned.set({ tenant, neighbor: n.name }, n.learned.length);
      },
    });
    const bgpRefused = new Gauge({
      name: 'cvlan_vrouter_bgp_updates_refused',
      help: 'Route updates from a neighbour refused since its session came up: over the import limit (limit) or outside the allowed prefixes (filter).',
      labelNames: METRIC_LABELS.cvlan_vrouter_bgp_updates_refused,
      registers,
      collect() {
        bgpRefused.reset();
        for (const { tenant, v } of bgpViews()) {
          for (const n of v.neighbors) {
            bgpRefused.set({ tenant, neighbor: n.name, reason: 'limit' }, n.limited);
            bgpRefused.set({ tenant, neighbor: n.name, reason: 'filter' }, n.filtered);
          }
        }
      },
    });

    const ikeSa = new Gauge({
      name: 'cvlan_vrouter_ike_sa_active',
      help: 'IKE_SAs currently established.',
      registers,
      collect() {
        ikeSa.set(snap().ike_sa_active);
      },
    });
    const childSa = new Gauge({
      name: 'cvlan_vrouter_child_sa_active',
      help: 'CHILD_SAs currently installed in the data plane.',
      registers,
      collect() {
        childSa.set(snap().child_sa_active);
      },
    });
    const rekeys = new Counter({
      name: 'cvlan_vrouter_ike_rekeys_total',
      help: 'IKE_SA rekeys, total.',
      registers,
      collect() {
        rekeys.reset();
        rekeys.inc(snap().ike_rekeys_total);
      },
    });
    const childRekeys = new Counter({
      name: 'cvlan_vrouter_child_rekeys_total',
      help: 'CHILD_SA rekeys, total.',
      registers,
      collect() {
        childRekeys.reset();
        childRekeys.inc(snap().child_rekeys_total);
      },
    });

    const drops = new Counter({
      name: 'cvlan_vrouter_drops_total',
      help: 'Packets dropped by the data plane, by reason, total.',
      labelNames: METRIC_LABELS.cvlan_vrouter_drops_total,
      registers,
      collect() {
        drops.reset();
        for (const d of snap().drops) drops.inc({ reason: boundedReason(d.reason) }, d.count);
      },
    });

    const handshakes = new Counter({
      name: 'cvlan_vrouter_handshakes_total',
      help: 'IKE and WireGuard handshakes, by tenant and result, total.',
      labelNames: METRIC_LABELS.cvlan_vrouter_handshakes_total,
      registers,
      collect() {
        handshakes.reset();
        for (const h of snap().handshakes) {
          handshakes.inc({ tenant: h.tenant, result: boundedResult(h.result) }, h.count);
        }
      },
    });

    const workerPackets = new Counter({
      name: 'cvlan_vrouter_worker_packets_total',
      help: 'Packets handled by each data-plane worker, by direction (rx, tx), total.',
      labelNames: METRIC_LABELS.cvlan_vrouter_worker_packets_total,
      registers,
      collect() {
        workerPackets.reset();
        for (const w of snap().workers) {
          workerPackets.inc({ worker: String(w.worker), direction: 'rx' }, w.rx_packets);
          workerPackets.inc({ worker: String(w.worker), direction: 'tx' }, w.tx_packets);
        }
      },
    });
    const workerRestarts = new Counter({
      name: 'cvlan_vrouter_worker_restarts_total',
      help: 'Restarts of each data-plane worker thread, total.',
      labelNames: METRIC_LABELS.cvlan_vrouter_worker_restarts_total,
      registers,
      collect() {
        workerRestarts.reset();
        for (const w of snap().workers) workerRestarts.inc({ worker: String(w.worker) }, w.restarts);
      },
    });
    const workerCrypto = new Counter({
      name: 'cvlan_vrouter_worker_crypto_packets_total',
      help: 'Packets each data-plane worker sealed or opened, of its own batches (own) or as shares of another worker\'s (helped), total.',
      labelNames: METRIC_LABELS.cvlan_vrouter_worker_crypto_packets_total,
      registers,
      collect() {
        workerCrypto.reset();
        for (const w of snap().workers) {
          workerCrypto.inc({ worker: String(w.worker), batch: 'own' }, w.crypto_packets - w.helped_packets);
          workerCrypto.inc({ worker: String(w.worker), batch: 'helped' }, w.helped_packets);
        }
      },
    });

    // HA: present only on a node with [ha]; the view is the HA node's own state (no I/O).
    const ha = () => this.#source.ha?.() ?? null;
    const haGauge = (name: keyof typeof METRIC_LABELS, help: string, fill: (g: Gauge, v: NonNullable<ReturnType<typeof ha>>) => void) => {
      const g: Gauge = new Gauge({
        name,
        help,
        labelNames: METRIC_LABELS[name],
        registers,
        collect() {
          g.reset();
          const v = ha();
          if (v) fill(g, v);
        },
      });
    };
    const haCounter = (name: keyof typeof METRIC_LABELS, help: string, fill: (c: Counter, v: NonNullable<ReturnType<typeof ha>>) => void) => {
      const c: Counter = new Counter({
        name,
        help,
        labelNames: METRIC_LABELS[name],
        registers,
        collect() {
          c.reset();
          const v = ha();
          if (v) fill(c, v);
        },
      });
    };
    const node = (v: { node_id: number }) => ({ node: String(v.node_id) });
    haGauge('cvlan_vrouter_ha_active', 'HA role of this node: 1 active (holds the VIP and sends), 0 standby (passive).', (g, v) => g.set(node(v), v.role === 'active' ? 1 : 0));
    haGauge('cvlan_vrouter_ha_fenced', 'This node keeps itself out of the VRRP election (1), by reason: peer-active, generation-mismatch.', (g, v) => {
      for (const reason of ['peer-active', 'generation-mismatch'] as const) g.set({ ...node(v), reason }, v.fence_reason === reason ? 1 : 0);
    });
    haGauge('cvlan_vrouter_ha_peer_connected', 'The sync channel to the peer is up and authenticated (1) or not (0).', (g, v) => g.set(node(v), v.peer_connected ? 1 : 0));
    haGauge('cvlan_vrouter_ha_last_sync_age_seconds', 'Seconds since the last frame on the sync channel (absent before the first).', (g, v) => {
      if (v.last_sync_age_ms !== null) g.set(node(v), v.last_sync_age_ms / 1000);
    });
    haGauge('cvlan_vrouter_ha_synced', 'State held from the sync channel: wireguard sessions, esp SAs.', (g, v) => {
      g.set({ ...node(v), kind: 'wireguard' }, v.synced_wireguard_sessions);
      g.set({ ...node(v), kind: 'esp' }, v.synced_esp_sas);
    });
    haCounter('cvlan_vrouter_ha_takeovers_total', 'Times this node became active after having been standby next to a peer.', (c, v) => c.inc(node(v), v.takeovers));
    haCounter('cvlan_vrouter_ha_generation_refusals_total', "Takeovers refused because this node's configuration generation differed from the lost active peer's.", (c, v) =>
      c.inc(node(v), v.generation_refusals),
    );
    haCounter('cvlan_vrouter_ha_sync_rejected_total', 'Sync frames rejected: forged (failed authentication) or replayed.', (c, v) => {
      c.inc({ ...node(v), reason: 'forged' }, v.sync_rejected_forged);
      c.inc({ ...node(v), reason: 'replayed' }, v.sync_rejected_replayed);
    });
    haCounter('cvlan_vrouter_ha_lease_exhausted_total', 'Outbound sessions/SAs that reached their counter lease and stopped sending until rekeyed.', (c, v) =>
      c.inc(node(v), v.lease_exhausted),
    );

    // The event-loop delay histogram samples every 100 ms: prom-client's 10 ms timer woke the idle
    // daemon 100 times a second, and a stall worth an alert is longer than 100 ms.
    if (options.processMetrics ?? true) collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: 100 });
  }

  /** Prometheus text exposition of one consistent snapshot. */
  async scrape(): Promise<string> {
    this.#snapshot = this.#source.counters();
    try {
      return await this.registry.metrics();
    } finally {
      this.#snapshot = undefined;
    }
  }
}
