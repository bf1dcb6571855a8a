/**
 * What a tenant reaches right now, for its BGP announcements (`../routing/service.ts`): pure, from
 * the read model's views, so the rule is tested without a data plane.
 *
 *   - an IPsec tunnel's remote subnets while a CHILD_SA is installed (`up` or `rekeying`);
 *   - a WireGuard peer's allowed IPs while its session is live: a handshake within
 *     REJECT_AFTER_TIME (180 s, WireGuard whitepaper §6.1) — after that no data can flow until
 *     the next handshake, and the LAN should send its traffic to a node that has one;
 *   - a tenant TUN device's subnets while the device is open.
 */
import type { TenantSpec } from '../config/model.js';
import type { PeerView, TunnelView } from '../api/state.js';
import type { Reachable } from '../routing/service.js';

/** s; WireGuard's REJECT_AFTER_TIME. */
export const WG_SESSION_LIFETIME_S = 180;

export function reachableOf(
  tenant: TenantSpec,
  tunnels: readonly TunnelView[],
  peers: readonly PeerView[],
  openTuns: readonly string[],
  nowMs: number,
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
  return out;
}
