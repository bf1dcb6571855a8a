/**
 * The boundary between the daemon and its observers (admin API, /metrics, vrouterctl).
 *
 * The daemon implements `RouterStateSource`; the API layer only reads through it. Every view is
 * plain JSON-ready data in snake_case with its unit in the name or documented here. No view type
 * has a field for a secret (private key, PSK, EAP password, token): a secret that is not in the
 * type cannot be serialized by accident, and the response schemas drop any property they do not
 * declare.
 *
 * Times are ISO 8601 strings in UTC; durations are whole seconds (`*_s`); counters are monotonic
 * totals since the data plane started (`bytes_*`, `packets_*`), never rates.
 */

import type { HaView } from '../ha/view.js';

export type { HaView };
import type { RemoteAccessView } from '../remote-access/service.js';

export type TunnelType = 'ipsec' | 'wireguard';

/**
 * Why the data plane dropped a packet. A fixed set so the `reason` label of
 * `cvlan_vrouter_drops_total` stays bounded; anything else is reported as `other`.
 */
export const DROP_REASONS = [
  'no_route', // no entry in the tenant's table covers the destination
  'source_not_allowed', // inner source outside the peer's allowed-IPs or the SA's traffic selectors
  'inter_tenant_denied', // destination in another tenant and no rule allows the prefix pair
  'no_sa', // ESP with an SPI that no installed SA owns
  'no_peer', // WireGuard receiver index or key unknown
  'replay', // sequence number/counter outside or already seen in the replay window
  'auth_failed', // ICV/Poly1305 tag mismatch
  'malformed', // truncated or unparsable packet
  'mtu_exceeded', // too big for the outgoing tunnel and DF set
  'ttl_expired',
  'queue_full', // a worker's ring was full
  'rate_limited', // handshake/cookie rate limiter
  'other',
] as const;
export type DropReason = (typeof DROP_REASONS)[number];

/** Outcome of an IKE_AUTH or WireGuard handshake, bounded for the `result` label. */
export const HANDSHAKE_RESULTS = ['success', 'auth_failure', 'timeout', 'other'] as const;
export type HandshakeResult = (typeof HANDSHAKE_RESULTS)[number];

export interface HealthView {
  /** The process runs and its event loop answers. */
  live: boolean;
  /** A configuration is applied and the data plane forwards. */
  ready: boolean;
  /** Human-readable reasons when not live or not ready; empty otherwise. */
  reasons: string[];
}

export interface ConfigVersionView {
  /** Version string of the applied configuration, null before the first apply. */
  version: string | null;
  /** ISO 8601 time the version was applied, null before the first apply. */
  appliedAt: string | null;
}

export interface TenantView {
  id: string;
  /** IPsec tunnels configured for the tenant. */
  tunnels: number;
  /** WireGuard peers configured for the tenant. */
  wireguard_peers: number;
  /** TUN devices attached to the tenant. */
  tuns: number;
}

export interface IkeAlgorithms {
  /** e.g. `AES_GCM_16_256`, `AES_CBC_256`. */
  encryption: string;
  /** null for AEAD ciphers. */
  integrity: string | null;
  /** e.g. `PRF_HMAC_SHA2_256`. */
  prf: string;
  /** e.g. `CURVE_25519`, `MODP_3072`. */
  dh_group: string;
}

export interface IkeSaView {
  /** charon's IKE_SA state: `CREATED`, `CONNECTING`, `ESTABLISHED`, `REKEYING`, `DELETING`, ... */
  state: string;
  algorithms: IkeAlgorithms;
  /** ISO 8601 time the IKE_SA was established, null while connecting. */
  established_at: string | null;
  /** Seconds until the IKE_SA is rekeyed, null if not scheduled. */
  rekey_in_s: number | null;
}

export interface ChildAlgorithms {
  encryption: string;
  /** null for AEAD ciphers. */
  integrity: string | null;
  /** Extended sequence numbers negotiated. */
  esn: boolean;
}

export interface ChildSaView {
  /** CHILD_SA name from the connection (`net`, `net-2`, ...). */
  name: string;
  /** Inbound SPI, 8 lowercase hex digits. */
  spi_in: string;
  /** Outbound SPI, 8 lowercase hex digits. */
  spi_out: string;
  algorithms: ChildAlgorithms;
  /** ESP-in-UDP (RFC 3948); false: ESP directly over IP (protocol 50). */
  udp_encap: boolean;
  /** Traffic selectors as CIDR strings. */
  local_ts: string[];
  remote_ts: string[];
  bytes_in: number;
  bytes_out: number;
  packets_in: number;
  packets_out: number;
  /** Seconds until the CHILD_SA is rekeyed, null if not scheduled. */
  rekey_in_s: number | null;
}

export type TunnelState = 'down' | 'connecting' | 'up' | 'rekeying' | 'deleting';

export interface TunnelView {
  id: string;
  tenant: string;
  type: 'ipsec';
  /** IKE identity of the remote end (FQDN, address, DN). An identity, not a credential. */
  remote_id: string;
  /** Authentication method; the credential itself is never part of a view. */
  auth_method: 'psk' | 'pubkey' | 'eap';
  state: TunnelState;
  /** null while no IKE_SA exists. */
  ike_sa: IkeSaView | null;
  child_sas: ChildSaView[];
}

export interface PeerView {
  /** Public key in WireGuard's base64 form; public by definition. */
  public_key: string;
  /** The peer's name in the configuration (`wireguard_peers[].name`), null when it has none. */
  name: string | null;
  tenant: string;
  /** `host:port` last seen or configured, null if unknown. */
  endpoint: string | null;
  allowed_ips: string[];
  /** ISO 8601 time of the latest completed handshake, null if none yet. */
  latest_handshake: string | null;
  rx_bytes: number;
  tx_bytes: number;
  /** Keepalive interval in seconds, null when off. */
  persistent_keepalive_s: number | null;
}

export type RouteViaKind = 'wireguard' | 'ipsec' | 'tun';

export interface RouteView {
  /** CIDR, IPv4 or IPv6. */
  prefix: string;
  /** Where matching packets go: a WireGuard peer (public key), an IPsec tunnel id or a TUN name. */
  via: { kind: RouteViaKind; id: string };
}

/** A tenant's BGP speaker as `/v1/routes` shows it (`../routing/`). */
export interface BgpView {
  /** Every BGP tenant's speaker runs. */
  running: boolean;
  /** Prefixes announced now (aggregates applied). */
  announced: string[];
  neighbors: {
    name: string;
    address: string;
    /** BGP FSM state: `Established` when routes flow. */
    state: string;
    /** The speaker's note on the session (last error, …). */
    info: string;
    /** Routes exported to the neighbour. */
    announced: number;
    /** Prefixes learned from it (only with an import filter). */
    learned: string[];
    /** Updates refused by the import limit / outside the allowed prefixes. */
    limited: number;
    filtered: number;
    import_limit_hit: boolean;
  }[];
}

export interface DropView {
  reason: DropReason;
  count: number;
  /** Worker index when the data plane counts per worker, else null. */
  worker: number | null;
  /** Tenant when the packet's tenant was known at the drop, else null. */
  tenant: string | null;
}

export interface WorkerView {
  index: number;
  rx_packets: number;
  tx_packets: number;
  rx_bytes: number;
  tx_bytes: number;
  /** Batches handled (one recvmmsg/read batch each). */
  batches: number;
  /** Times the worker thread was restarted after a failure. */
  restarts: number;
  /** Packets this worker translated between the protocols (ESP in → WireGuard out and back). */
  translated: number;
  /** Share of wall time spent working, 0..1, null if the data plane does not measure it. */
  busy_ratio: number | null;
  /** Packets this worker sealed or opened, its own batches' and `helped_packets`. */
  crypto_packets: number;
  /** Of those, shares of another worker's batch (one flow's crypto on every worker). */
  helped_packets: number;
}

/** Everything the /metrics collector needs, taken in one call so a scrape is one consistent read. */
export interface CounterSnapshot {
  tunnels_active: Array<{ tenant: string; type: TunnelType; count: number }>;
  /** Per tunnel (IPsec tunnel id, or the id the daemon gives a WireGuard peer). Totals. */
  tunnels: Array<{ tunnel: string; bytes_in: number; bytes_out: number; packets_in: number; packets_out: number }>;
  ike_sa_active: number;
  child_sa_active: number;
  /** Total IKE_SA rekeys since start. */
  ike_rekeys_total: number;
  /** Total CHILD_SA rekeys since start. */
  child_rekeys_total: number;
  drops: Array<{ reason: DropReason; count: number }>;
  handshakes: Array<{ tenant: string; result: HandshakeResult; count: number }>;
  workers: Array<{ worker: number; rx_packets: number; tx_packets: number; restarts: number; crypto_packets: number; helped_packets: number }>;
  /** Per tenant, IPsec tunnels whose PSK is shorter than 16 bytes, accepted by `allow_weak_psk`. */
  weak_psk_tunnels?: Array<{ tenant: string; count: number }>;
}

/** Implemented by the daemon. Calls are synchronous reads of already-collected state. */
export interface RouterStateSource {
  health(): HealthView;
  configVersion(): ConfigVersionView;
  tenants(): TenantView[];
  tunnels(): TunnelView[];
  wireguardPeers(): PeerView[];
  /** The data plane's tag of a tenant (the packet trace filters by it); undefined: no such tenant. */
  tenantTag?(tenant: string): number | undefined;
  /** undefined when the tenant does not exist (the API answers 404). */
  routes(tenant: string): RouteView[] | undefined;
  /** The tenant's BGP speaker; null when the tenant announces nothing (optional for fixed sources). */
  bgp?(tenant: string): BgpView | null;
  /** This node's half of an active-passive pair; null (or absent) without `[ha]`. */
  ha?(): HaView | null;
  drops(): DropView[];
  workers(): WorkerView[];
  counters(): CounterSnapshot;
  /** Remote-access clients and pool leases (optional for fixed sources). */
  clients?(): RemoteAccessView;
}

/**
 * What an operator may do to a running daemon through the admin API. Each call resolves when
 * done or throws a CvlanError: CVLAN_ERR_API_NOT_FOUND (no such tunnel), CVLAN_ERR_STATE (not
 * possible now), CVLAN_ERR_VICI_* (charon failed or timed out).
 */
export interface RouterControl {
  initiateTunnel(id: string): Promise<TunnelActionView>;
  terminateTunnel(id: string): Promise<TunnelActionView>;
}

export interface TunnelActionView {
  tunnel: string;
  action: 'initiate' | 'terminate';
}

/** All of a source's state as plain data, e.g. for a standby's view or a fixed source. */
export interface StateSnapshot {
  health: HealthView;
  config: ConfigVersionView;
  tenants: TenantView[];
  tunnels: TunnelView[];
  peers: PeerView[];
  routes: Record<string, RouteView[]>;
  drops: DropView[];
  workers: WorkerView[];
  counters: CounterSnapshot;
}

/** A source that serves a snapshot as-is; the snapshot may be replaced with `update`. */
export class SnapshotStateSource implements RouterStateSource {
  #s: StateSnapshot;
  constructor(snapshot: StateSnapshot) {
    this.#s = snapshot;
  }
  update(snapshot: StateSnapshot): void {
    this.#s = snapshot;
  }
  health(): HealthView {
    return this.#s.health;
  }
  configVersion(): ConfigVersionView {
    return this.#s.config;
  }
  tenants(): TenantView[] {
    return this.#s.tenants;
  }
  tunnels(): TunnelView[] {
    return this.#s.tunnels;
  }
  wireguardPeers(): PeerView[] {
    return this.#s.peers;
  }
  /** As the daemon tags them: one tenant untagged (0), else by position from 1. */
  tenantTag(tenant: string): number | undefined {
    const i = this.#s.tenants.findIndex((t) => t.id === tenant);
    return i < 0 ? undefined : this.#s.tenants.length <= 1 ? 0 : i + 1;
  }
  routes(tenant: string): RouteView[] | undefined {
    return Object.prototype.hasOwnProperty.call(this.#s.routes, tenant) ? this.#s.routes[tenant] : undefined;
  }
  drops(): DropView[] {
    return this.#s.drops;
  }
  workers(): WorkerView[] {
    return this.#s.workers;
  }
  counters(): CounterSnapshot {
    return this.#s.counters;
  }
}
