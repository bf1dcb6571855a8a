/**
 * Desired state vs applied state → the smallest list of operations, computed before anything is
 * touched. Pure: no I/O, no clock. Secrets are compared through keyed digests (`Secret.keyedDigest`),
 * so a changed PSK is a change, and nothing about the PSK leaks into the plan.
 *
 * A tenant's WireGuard interface whose port or key changed (or that appears or goes) is one
 * `wireguard-replace`: its device is closed and opened again with every peer, so its peers
 * handshake anew; other tenants and tunnels are untouched.
 *
 * A tenant TUN device that changed (or appears or goes) is closed and opened again; the tenant's
 * other TUNs stay.
 *
 * Tenants come and go as `tenant-add` / `tenant-remove` with everything they hold. One tenant
 * routes through the namespace, several do not: going from one to several or back is a
 * `routing-mode` step (the namespace's routes into the devices go, or come).
 *
 * The IPsec service (device + charon) runs while there are tunnels or remote-access sections:
 * `ipsec-start` with the first, `ipsec-stop` after the last, `ipsec-restart` when what it was opened with changes
 * (`[network] listen_address`, `[ipsec] esp_encapsulation`) — it then loads every tunnel of the
 * desired state itself, so no tunnel steps besides.
 */
import { randomBytes } from 'node:crypto';
import { Secret, type DesiredState, type IpsecTunnelSpec, type TenantSpec, type TunSpec, type WireguardInterfaceSpec, type WireguardPeerSpec } from '../config/model.js';

export type Op =
  /** A tenant that goes: its tunnels, WireGuard interface and TUNs; applied before everything else. */
  | { kind: 'tenant-remove'; tenant: string; spec: TenantSpec }
  /** A new tenant with everything it has; applied after everything else. */
  | { kind: 'tenant-add'; tenant: string; spec: TenantSpec }
  | { kind: 'wireguard-replace'; tenant: string; wireguard: WireguardInterfaceSpec | undefined; previous: WireguardInterfaceSpec | undefined }
  /** Tenant TUN devices: `gone` are closed (changed ones too), then `added` opened; the others stay. */
  | { kind: 'tun-replace'; tenant: string; gone: TunSpec[]; added: TunSpec[] }
  | { kind: 'peer-remove'; tenant: string; peer: WireguardPeerSpec }
  | { kind: 'peer-upsert'; tenant: string; peer: WireguardPeerSpec; previous?: WireguardPeerSpec }
  | { kind: 'tunnel-remove'; tenant: string; tunnel: IpsecTunnelSpec }
  | { kind: 'tunnel-add'; tenant: string; tunnel: IpsecTunnelSpec }
  | { kind: 'tunnel-replace'; tenant: string; tunnel: IpsecTunnelSpec; previous: IpsecTunnelSpec }
  /** One tenant ⇄ several: the namespace's routes into the devices go (`shared`) or come. */
  | { kind: 'routing-mode'; tenant?: undefined; shared: boolean }
  /** The first tunnel appears: device and charon start, before any tunnel is loaded. */
  | { kind: 'ipsec-start'; tenant?: undefined }
  /** The last tunnel went: charon and the device stop, after every tunnel is unloaded. */
  | { kind: 'ipsec-stop'; tenant?: undefined }
  /** The service reopens on changed settings (`fields`) with every tunnel of the desired state. */
  | { kind: 'ipsec-restart'; tenant?: undefined; fields: string[] };

/**
 * Canonical JSON of a spec with every secret replaced by its keyed digest. (A JSON.stringify
 * replacer would come too late: it sees what `Secret.toJSON()` returned, `<redacted>`, so every
 * secret would compare equal.)
 */
export function fingerprint(v: unknown, key: Buffer): string {
  const walk = (x: unknown): unknown => {
    if (x instanceof Secret) return { secret: x.keyedDigest(key) };
    if (Array.isArray(x)) return x.map(walk);
    if (x !== null && typeof x === 'object') return Object.fromEntries(Object.keys(x).sort().map((k) => [k, walk((x as Record<string, unknown>)[k])]));
    return x;
  };
  return JSON.stringify(walk(v)) ?? 'undefined';
}

export function plan(applied: DesiredState, desired: DesiredState, key: Buffer = randomBytes(32)): Op[] {
  const fp = (v: unknown): string => fingerprint(v, key);
  const ops: Op[] = [];
  const oldIds = new Set(applied.tenants.map((t) => t.id));
  const newIds = new Set(desired.tenants.map((t) => t.id));
  const shared = desired.tenants.length > 1;
  if (applied.tenants.length > 1 !== shared) ops.push({ kind: 'routing-mode', shared });
  // Remote-access clients are served by the same charon as the tunnels.
  const hadTunnels = applied.tenants.some((t) => t.tunnels.length > 0 || t.remoteAccess !== undefined);
  const hasTunnels = desired.tenants.some((t) => t.tunnels.length > 0 || t.remoteAccess !== undefined);
  const reopened: string[] = [];
  if (applied.local.network.listenAddress !== desired.local.network.listenAddress) reopened.push('network.listen_address');
  if (applied.local.ipsec.espEncapsulation !== desired.local.ipsec.espEncapsulation) reopened.push('ipsec.esp_encapsulation');
  const restart = hadTunnels && hasTunnels && reopened.length > 0;
  if (!hadTunnels && hasTunnels) ops.push({ kind: 'ipsec-start' });
  if (restart) ops.push({ kind: 'ipsec-restart', fields: reopened });
  if (hadTunnels && !hasTunnels) ops.push({ kind: 'ipsec-stop' });
  for (const a of applied.tenants) if (!newIds.has(a.id)) ops.push({ kind: 'tenant-remove', tenant: a.id, spec: a });
  for (const b of desired.tenants) if (!oldIds.has(b.id)) ops.push({ kind: 'tenant-add', tenant: b.id, spec: b });
  desired.tenants.forEach((b) => {
    const a = applied.tenants.find((t) => t.id === b.id);
    if (!a) return;
    const wgReplaced = fp(a.wireguard) !== fp(b.wireguard);
    if (wgReplaced) ops.push({ kind: 'wireguard-replace', tenant: b.id, wireguard: b.wireguard, previous: a.wireguard });
    const oldTuns = new Map(a.tuns.map((x) => [x.name, fp(x)]));
    const newTuns = new Map(b.tuns.map((x) => [x.name, fp(x)]));
    const gone = a.tuns.filter((x) => newTuns.get(x.name) !== oldTuns.get(x.name));
    const added = b.tuns.filter((x) => newTuns.get(x.name) !== oldTuns.get(x.name));
    if (gone.length > 0 || added.length > 0) ops.push({ kind: 'tun-replace', tenant: b.id, gone, added });

    // A replaced interface is opened with all of its peers: no peer operations besides.
    const oldPeers = new Map((wgReplaced ? [] : a.peers).map((p) => [p.publicKey, p]));
    const newKeys = new Set(b.peers.map((p) => p.publicKey));
    if (!wgReplaced) for (const p of a.peers) if (!newKeys.has(p.publicKey)) ops.push({ kind: 'peer-remove', tenant: b.id, peer: p });
    for (const p of wgReplaced ? [] : b.peers) {
      const prev = oldPeers.get(p.publicKey);
      if (!prev) ops.push({ kind: 'peer-upsert', tenant: b.id, peer: p });
      else if (fp(prev) !== fp(p)) ops.push({ kind: 'peer-upsert', tenant: b.id, peer: p, previous: prev });
    }

    // A restarted service loads every desired tunnel itself.
    if (restart) return;
    const oldTunnels = new Map(a.tunnels.map((x) => [x.id, x]));
    const newIds = new Set(b.tunnels.map((x) => x.id));
    for (const x of a.tunnels) if (!newIds.has(x.id)) ops.push({ kind: 'tunnel-remove', tenant: b.id, tunnel: x });
    for (const x of b.tunnels) {
      const prev = oldTunnels.get(x.id);
      if (!prev) ops.push({ kind: 'tunnel-add', tenant: b.id, tunnel: x });
      else if (fp(prev) !== fp(x)) ops.push({ kind: 'tunnel-replace', tenant: b.id, tunnel: x, previous: prev });
    }
  });
  return ops;
}
