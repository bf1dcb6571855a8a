/**
 * JSON schemas of the admin API, one per view in `state.ts`. Response schemas do double duty:
 * fastify serializes with them, and the serializer writes only declared properties, so a secret
 * a source might carry by mistake never reaches the wire. `additionalProperties: false` keeps the
 * published contract honest for clients that validate.
 */

const str = { type: 'string' } as const;
const nstr = { type: ['string', 'null'] } as const;
const count = { type: 'integer', minimum: 0 } as const;
const nsec = { type: ['integer', 'null'] } as const;

function obj<P extends Record<string, unknown>>(properties: P) {
  return { type: 'object', additionalProperties: false, required: Object.keys(properties), properties } as const;
}
const list = <I>(items: I) => ({ type: 'array', items }) as const;

export const errorSchema = obj({
  error: obj({ code: str, message: str }),
});

export const healthSchema = obj({ live: { type: 'boolean' }, ready: { type: 'boolean' }, reasons: list(str) });

const role = { type: 'string', enum: ['active', 'standby'] } as const;
const nrole = { type: ['string', 'null'], enum: ['active', 'standby', null] } as const;
const ncount = { type: ['integer', 'null'], minimum: 0 } as const;

/** `/v1/ha`: this node of an active-passive pair (src/ha/view.ts); `{ ha: null }` without `[ha]`. */
export const haSchema = obj({
  node_id: count,
  role,
  vrrp_state: str,
  fenced: { type: 'boolean' },
  fence_reason: nstr,
  priority: count,
  preempt: { type: 'boolean' },
  vips: list(str),
  peer: str,
  generation: count,
  peer_connected: { type: 'boolean' },
  peer_role: nrole,
  peer_generation: ncount,
  last_sync_age_ms: ncount,
  synced_wireguard_sessions: count,
  synced_esp_sas: count,
  sync_frames_sent: count,
  sync_frames_received: count,
  sync_rejected_forged: count,
  sync_rejected_replayed: count,
  lease_exhausted: count,
  takeovers: count,
  generation_refusals: count,
  keepalived_pid: ncount,
  keepalived_starts: count,
  charon_ha: { type: 'boolean' },
  sync_channel: { type: 'boolean' },
  role_since: str,
});
export const haResponse = obj({ ha: { anyOf: [{ type: 'null' }, haSchema] } });

export const configSchema = obj({ version: nstr, applied_at: nstr });

export const tenantSchema = obj({ id: str, tunnels: count, wireguard_peers: count, tuns: count });

export const childSaSchema = obj({
  name: str,
  spi_in: str,
  spi_out: str,
  algorithms: obj({ encryption: str, integrity: nstr, esn: { type: 'boolean' } }),
  udp_encap: { type: 'boolean' },
  local_ts: list(str),
  remote_ts: list(str),
  bytes_in: count,
  bytes_out: count,
  packets_in: count,
  packets_out: count,
  rekey_in_s: nsec,
});

export const ikeSaSchema = {
  ...obj({
    state: str,
    algorithms: obj({ encryption: str, integrity: nstr, prf: str, dh_group: str }),
    established_at: nstr,
    rekey_in_s: nsec,
  }),
  type: ['object', 'null'],
} as const;

export const tunnelSchema = obj({
  id: str,
  tenant: str,
  type: { type: 'string', enum: ['ipsec'] },
  remote_id: str,
  auth_method: { type: 'string', enum: ['psk', 'pubkey', 'eap'] },
  state: str,
  ike_sa: ikeSaSchema,
  child_sas: list(childSaSchema),
});

export const peerSchema = obj({
  public_key: str,
  name: nstr,
  tenant: str,
  endpoint: nstr,
  allowed_ips: list(str),
  latest_handshake: nstr,
  rx_bytes: count,
  tx_bytes: count,
  persistent_keepalive_s: nsec,
});

export const routeSchema = obj({
  prefix: str,
  via: obj({ kind: { type: 'string', enum: ['wireguard', 'ipsec', 'tun'] }, id: str }),
});

export const dropSchema = obj({ reason: str, count, worker: nsec, tenant: nstr });

export const workerSchema = obj({
  index: count,
  rx_packets: count,
  tx_packets: count,
  rx_bytes: count,
  tx_bytes: count,
  batches: count,
  restarts: count,
  translated: count,
  busy_ratio: { type: ['number', 'null'] },
  crypto_packets: count,
  helped_packets: count,
});

export const statsSchema = obj({
  live: { type: 'boolean' },
  ready: { type: 'boolean' },
  config_version: nstr,
  uptime_s: count,
  tenants: count,
  ipsec_tunnels: count,
  ipsec_tunnels_up: count,
  ike_sa_active: count,
  child_sa_active: count,
  ike_rekeys_total: count,
  child_rekeys_total: count,
  wireguard_peers: count,
  bytes_in: count,
  bytes_out: count,
  packets_in: count,
  packets_out: count,
  drops_total: count,
  workers: count,
  worker_restarts_total: count,
});

export const tenantsResponse = obj({ tenants: list(tenantSchema) });
export const tunnelsResponse = obj({ tunnels: list(tunnelSchema) });
export const peersResponse = obj({ peers: list(peerSchema) });
export const bgpSchema = {
  ...obj({
    running: { type: 'boolean' },
    announced: list(str),
    neighbors: list(
      obj({
        name: str,
        address: str,
        state: str,
        info: str,
        announced: count,
        learned: list(str),
        limited: count,
        filtered: count,
        import_limit_hit: { type: 'boolean' },
      }),
    ),
  }),
  type: ['object', 'null'],
} as const;
export const routesResponse = obj({ tenant: str, routes: list(routeSchema), bgp: bgpSchema });
export const dropsResponse = obj({ drops: list(dropSchema) });
export const workersResponse = obj({ workers: list(workerSchema) });
/** `RemoteAccessView` (../remote-access/service.ts). */
export const clientsResponse = obj({
  clients: list(obj({ tenant: str, connection: str, user: nstr, device: nstr, remote: str, addresses: list(str), established: nsec, ike_id: count })),
  pools: list(
    obj({
      tenant: str,
      pool: str,
      range: str,
      size: count,
      online: count,
      offline: count,
      leases: list(obj({ address: str, identity: str, status: { type: 'string', enum: ['online', 'offline'] } })),
    }),
  ),
  exhausted: { type: 'object', additionalProperties: count },
});

/** No route takes query parameters except /v1/routes; unknown ones are stripped by the validator. */
export const noQuery = { type: 'object', additionalProperties: false, properties: {} } as const;
export const routesQuery = {
  type: 'object',
  additionalProperties: false,
  required: ['tenant'],
  properties: { tenant: { type: 'string', minLength: 1, maxLength: 128 } },
} as const;

export const eventsQuery = {
  type: 'object',
  additionalProperties: false,
  properties: { follow: { type: 'boolean', default: false } },
} as const;

/** Tunnel ids as the configuration allows them (`ID_RE` of ../config/normalize.ts). */
export const tunnelParams = obj({ id: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$' } });

export const tunnelActionResponse = obj({ tunnel: str, action: { type: 'string', enum: ['initiate', 'terminate'] } });

/** `POST /v1/trace/start`: the count and the filter (names resolved by the API, see trace.ts). */
export const traceStartQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    count: { type: 'integer', minimum: 1, maximum: 100000 },
    tenant: { type: 'string', minLength: 1, maxLength: 128 },
    peer: { type: 'string', minLength: 1, maxLength: 128 },
    tunnel: { type: 'string', minLength: 1, maxLength: 128 },
    prefix: { type: 'string', minLength: 1, maxLength: 64 },
  },
} as const;

const opt = <T>(t: T) => t;
const traceStageSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['stage', 'detail'],
  properties: {
    stage: str,
    detail: str,
    device: opt(str),
    worker: opt(count),
    len: opt(count),
    from: opt(str),
    src: opt(str),
    dst: opt(str),
    proto: opt(count),
    tenant: opt(count),
    spi: opt(str),
    seq: opt(count),
    receiver: opt(str),
    counter: opt(count),
    table: opt(str),
    peer: opt(count),
    to: opt(str),
    prefix_len: opt(count),
    reason: opt(str),
    verdict: opt(str),
  },
} as const;

export const traceStatusSchema = obj({
  on: { type: 'boolean' },
  count: count,
  remaining: count,
  lost: count,
  filter: obj({ tenant: nstr, peer: nstr, tunnel: nstr, prefix: nstr }),
});

export const traceResponse = obj({
  status: traceStatusSchema,
  packets: list(obj({ id: str, at_ns: count, stages: list(traceStageSchema) })),
});
