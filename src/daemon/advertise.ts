/**
 * What a tenant reaches right now, for its BGP announcements (`../routing/service.ts`): pure, from
 * the read model's views, so the rule is tested without a data plane.
 *
 *   - an IPsec tunnel's remote subnets while a CHILD_SA is installed (`up` or `rekeying`);
 *   - a WireGuard peer's allowed IPs while its session is live: a handshake within
 *     REJECT_AFTER_TIME (180 s, WireGuard whitepaper §6.1) — after that no data can flow until
 *     the next handshake, and the LAN should send its traffic to a node that has one;
 *   - a tenant TUN device's subnets while the device is open;
 *   - a remote-access pool's prefix while at least one client holds a lease from it (under
 *     `announce.ipsec`: the clients are reached over IPsec). The prefix, not each leased /32: one
 *     route however many clients, and no update per login.
 */
import type { TenantSpec } from '../config/model.js';
import type { PeerView, TunnelView } from '../api/state.js';
import type { EventLog } from '../log.js';
import type { Reachable, RoutingStatus } from '../routing/service.js';
import type { PoolView } from '../remote-access/service.js';

/** s; WireGuard's REJECT_AFTER_TIME. */
export const WG_SESSION_LIFETIME_S = 180;

export function reachableOf(
  tenant: TenantSpec,
  tunnels: readonly TunnelView[],
  peers: readonly PeerView[],
  openTuns: readonly string[],
  nowMs: number,
  pools: readonly PoolView[] = [],
): Reachable[] {
  const out: Reachable[] = [];
  for (const spec of tenant.tunnels) {
    const v = tunnels.find((x) => x.id === spec.id && x.tenant === tenant.id);
    if (v?.state !== 'up' && v?.state !== 'rekeying') continue;
    for (const prefix of spec.remoteSubnets) out.push({ prefix, source: 'ipsec', via: spec.id });
  }
  for (const spec of tenant.peers) {
    const v = peers.find((x) => x.public_key === spec.publicKey && x.tenant === tenant.id);
    const at = v?.latest_handshake ? Date.parse(v.latest_handshake) : NaN;
    if (!(nowMs - at < WG_SESSION_LIFETIME_S * 1000)) continue;
    for (const prefix of spec.allowedIps) out.push({ prefix, source: 'wireguard', via: spec.name ?? spec.publicKey });
  }
  for (const spec of tenant.tuns) {
    if (!openTuns.includes(spec.name)) continue;
    for (const prefix of spec.subnets) out.push({ prefix, source: 'tun', via: spec.name });
  }
  const ra = tenant.remoteAccess;
  for (const p of ra?.pools ?? []) {
    const v = pools.find((x) => x.tenant === tenant.id && x.pool === p.name);
    if (v && v.online > 0) out.push({ prefix: p.range, source: 'ipsec', via: ra!.id });
  }
  return out;
}

/**
 * Log events for what changed between two reads of the speakers' status: session state changes,
 * and routes a neighbour sent that the tenant refused (import limit hit, updates filtered).
 */
export function bgpChanges(prev: RoutingStatus | undefined, next: RoutingStatus): Parameters<EventLog['bgpSession'] | EventLog['bgpImportRefused']>[0][] {
  const out: (Parameters<EventLog['bgpSession']>[0] | Parameters<EventLog['bgpImportRefused']>[0])[] = [];
  for (const t of next.tenants) {
    for (const n of t.neighbors) {
      const p = prev?.tenants.find((x) => x.tenant === t.tenant)?.neighbors.find((x) => x.neighbor === n.neighbor);
      const was = p?.state ?? 'down';
      if (n.state !== was && (n.state === 'Established' || was === 'Established')) {
        out.push({ tenant: t.tenant, neighbor: n.neighbor, state: n.state, info: n.info });
      }
      // Counters start over with a session: a smaller value is a new session, all of it new.
      const since = (now: number, before: number | undefined): number => (before === undefined || now < before ? now : now - before);
      const filtered = since(n.filtered, p?.filtered);
      if (filtered > 0) out.push({ tenant: t.tenant, neighbor: n.neighbor, reason: 'filter', count: filtered });
      const limited = since(n.limited, p?.limited);
      if (limited > 0 || (n.importLimitHit && !p?.importLimitHit)) out.push({ tenant: t.tenant, neighbor: n.neighbor, reason: 'limit', count: limited });
    }
  }
  return out;
}
