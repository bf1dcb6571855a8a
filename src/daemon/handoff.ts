/**
 * The handoff plan: where each device's workers send the packets it decapsulates (or, for a
 * tenant TUN, reads) — docs/translation.md. Pure: devices are opaque values here, so the plan is
 * tested without a data plane; `vrouter.ts` applies it with `setHandoff`.
 *
 * One tenant: every device hands to every other, and what none routes goes to the namespace's
 * IP stack (a tenant TUN's leftovers are dropped). Several: every device may hand to every
 * tenant's devices, a packet is taken by its own tenant's (or by another's when an inter-tenant
 * rule admits its prefix pair), and the rest is dropped.
 */
import type { InterTenantRule } from '../config/model.js';

/** A tenant's devices as the plan sees them. */
export interface HandoffTenant<D> {
  id: string;
  /** ≥ 1; the workers' name of the tenant. */
  tag: number;
  /** Ids of the tenant's IPsec tunnels (carried by the shared IPsec device). */
  tunnels: readonly string[];
  wg?: D | undefined;
  /** Its open tenant TUN devices. */
  tuns: readonly D[];
}

export interface HandoffTargetPlan<D> {
  device: D;
  /** Tenant tag whose packets it takes (≥ 1); 0 = every packet (one tenant). */
  tenant: number;
  /** Packets of other tenants it also takes: from tenant `fromTenant`, `source` → `destination`. */
  rules?: { fromTenant: number; source: string; destination: string }[];
}

export interface HandoffPlan<D> {
  /** Per device, its handoff (`null`: none). */
  devices: { device: D; handoff: { stamp: number; isolated: boolean; targets: HandoffTargetPlan<D>[] } | null }[];
  /** Which tenant each IPsec tunnel (CHILD_SA if_id) belongs to; empty with one tenant. */
  ipsecTenants: { ifId: number; tenant: number }[];
}

export function handoffPlan<D>(tenants: readonly HandoffTenant<D>[], ipsec: D | undefined, rules: readonly InterTenantRule[], ifIds: ReadonlyMap<string, number>): HandoffPlan<D> {
  if (tenants.length <= 1) {
    const rt = tenants[0];
    if (!rt) return { devices: [], ipsecTenants: [] };
    const tuns = new Set(rt.tuns);
    const all = [...(rt.wg ? [rt.wg] : []), ...(ipsec !== undefined ? [ipsec] : []), ...rt.tuns];
    return {
      devices: all.map((d) => {
        const targets = all.filter((x) => x !== d).map((x) => ({ device: x, tenant: 0 }));
        return { device: d, handoff: targets.length > 0 ? { stamp: 0, isolated: tuns.has(d), targets } : null };
      }),
      ipsecTenants: [],
    };
  }
  const tagOf = new Map(tenants.map((rt) => [rt.id, rt.tag]));
  const rulesInto = (rt: HandoffTenant<D>): HandoffTargetPlan<D>['rules'] =>
    rules.filter((r) => r.toTenant === rt.id && tagOf.has(r.fromTenant)).map((r) => ({ fromTenant: tagOf.get(r.fromTenant)!, source: r.fromPrefix, destination: r.toPrefix }));
  const targets: HandoffTargetPlan<D>[] = tenants.flatMap((rt) => [
    ...(rt.wg ? [{ device: rt.wg, tenant: rt.tag, rules: rulesInto(rt) }] : []),
    ...(ipsec !== undefined && rt.tunnels.length > 0 ? [{ device: ipsec, tenant: rt.tag, rules: rulesInto(rt) }] : []),
    ...rt.tuns.map((d) => ({ device: d, tenant: rt.tag, rules: rulesInto(rt) })),
  ]);
  const devices: HandoffPlan<D>['devices'] = [];
  for (const rt of tenants) {
    if (rt.wg) devices.push({ device: rt.wg, handoff: { stamp: rt.tag, isolated: true, targets } });
    for (const d of rt.tuns) devices.push({ device: d, handoff: { stamp: rt.tag, isolated: true, targets } });
  }
  if (ipsec !== undefined) devices.push({ device: ipsec, handoff: { stamp: 0, isolated: true, targets } });
  const ipsecTenants = tenants.flatMap((rt) => rt.tunnels.flatMap((id) => (ifIds.has(id) ? [{ ifId: ifIds.get(id)!, tenant: rt.tag }] : [])));
  return { devices, ipsecTenants };
}
