/**
 * What an operator sees of and does to a running vrouter beyond the read model: the names the
 * configuration gives WireGuard peers (in logs, views and metric labels), the WireGuard events
 * turned into log events (a session that expires is a `tunnel_down`), and starting or stopping
 * an IPsec tunnel by hand (`vrouterctl initiate|terminate`).
 */
import type { Logger } from 'pino';
import type { TenantSpec } from '../config/model.js';
import type { DataplaneEvent } from '../dataplane/index.js';
import { CvlanError } from '../errors.js';
import type { IpsecService } from '../ipsec/service.js';
import type { EventLog } from '../log.js';
import type { TunnelActionView } from '../api/state.js';

/** The configured name of a tenant's peer, if the configuration gives one. */
export function peerName(spec: TenantSpec, publicKey: string): string | undefined {
  return peerNames(spec).get(publicKey);
}

// Built once per configured peer list (a reload makes a new one): per-peer lookups for thousands
// of peers stay O(1) instead of a scan each.
const namesByPeers = new WeakMap<TenantSpec['peers'], ReadonlyMap<string, string>>();

/** Configured peer names by public key (base64); unnamed peers are absent. */
export function peerNames(spec: TenantSpec): ReadonlyMap<string, string> {
  let m = namesByPeers.get(spec.peers);
  if (!m) {
    const names = new Map<string, string>();
    for (const p of spec.peers) if (p.name !== undefined && !names.has(p.publicKey)) names.set(p.publicKey, p.name);
    namesByPeers.set(spec.peers, (m = names));
  }
  return m;
}

/** How logs and metrics name a WireGuard peer: its configured name, else `wg:<public key>`. */
export function wireguardTunnelId(spec: TenantSpec, publicKey: string): string {
  return peerName(spec, publicKey) ?? `wg:${publicKey}`;
}

/**
 * One WireGuard device event as log events. `keys-zeroed` is the data plane erasing a peer's
 * keys after 3 × REJECT_AFTER_TIME (540 s) without a new session (whitepaper §6.3): the tunnel
 * is down until the next handshake, which logs `tunnel_up` again.
 */
export function logWireguardEvent(events: EventLog, logger: Logger, spec: TenantSpec, ev: DataplaneEvent): void {
  const tunnel = ev.peer === undefined ? null : wireguardTunnelId(spec, ev.peer);
  switch (ev.type) {
    case 'handshake-failed':
      events.authFailure({ tenant: spec.id, tunnel, remote: ev.endpoint ?? 'unknown', method: 'wireguard', reason: ev.reason ?? 'handshake failed' });
      return;
    case 'handshake-complete':
      events.tunnelUp({ tenant: spec.id, tunnel: tunnel ?? 'unknown', type: 'wireguard', ...(ev.endpoint ? { remote: ev.endpoint } : {}) });
      return;
    case 'keys-zeroed':
      events.tunnelDown({ tenant: spec.id, tunnel: tunnel ?? 'unknown', type: 'wireguard', reason: 'session expired: no handshake for 540 s, keys erased' });
      return;
    default:
      logger.info({ tenant: spec.id, event: ev.type, worker: ev.worker, reason: ev.reason, ...(tunnel ? { tunnel } : {}) }, `wireguard ${ev.type}`);
  }
}

/** What initiate/terminate report back. */
export type TunnelActionResult = TunnelActionView;

/** How long charon may take to establish a tunnel asked for by hand. */
const INITIATE_TIMEOUT_MS = 15_000;
const TERMINATE_TIMEOUT_MS = 5_000;

function tunnelOf(tenants: readonly TenantSpec[], ipsec: IpsecService | undefined, id: string): IpsecService {
  if (!tenants.some((t) => t.tunnels.some((x) => x.id === id))) {
    throw new CvlanError('CVLAN_ERR_API_NOT_FOUND', `no IPsec tunnel ${JSON.stringify(id)} in the configuration`);
  }
  if (!ipsec) throw new CvlanError('CVLAN_ERR_STATE', 'IPsec is not running');
  return ipsec;
}

/**
 * Brings a configured tunnel up now (IKE_SA and its CHILD_SA), as `swanctl --initiate` does;
 * resolves once charon reports it established. An established tunnel stays as it is.
 */
export async function initiateTunnel(tenants: readonly TenantSpec[], ipsec: IpsecService | undefined, id: string): Promise<TunnelActionResult> {
  await tunnelOf(tenants, ipsec, id).initiate(id, INITIATE_TIMEOUT_MS);
  return { tunnel: id, action: 'initiate' };
}

/**
 * Deletes a tunnel's IKE_SA (and its CHILD_SAs) with a DELETE to the peer, as
 * `swanctl --terminate --ike` does. The tunnel stays configured: a tunnel we initiate comes
 * back with the next `initiate` (or traffic, with charon's trap policies), a responder-only one
 * when the peer starts it again. Refused (CVLAN_ERR_STATE) when the tunnel has no IKE_SA.
 */
export async function terminateTunnel(tenants: readonly TenantSpec[], ipsec: IpsecService | undefined, id: string): Promise<TunnelActionResult> {
  const svc = tunnelOf(tenants, ipsec, id);
  const sas = await svc.listSas();
  if (!sas.some((s) => s.name === id)) throw new CvlanError('CVLAN_ERR_STATE', `IPsec tunnel ${JSON.stringify(id)} has no IKE_SA to terminate`);
  await svc.vici.terminate({ ike: id, timeoutMs: TERMINATE_TIMEOUT_MS });
  return { tunnel: id, action: 'terminate' };
}
