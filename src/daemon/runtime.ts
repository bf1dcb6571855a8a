/** What the apply side of a vrouter holds per tenant, shared with its read model (`views.ts`). */
import type { TenantSpec, TunSpec } from '../config/model.js';
import type { TenantTunDevice, WireGuardDevice } from '../dataplane/index.js';
import type { UapiServer } from '../wireguard/uapi-server.js';

/** A tenant as it runs: its spec, its data-plane tag, its WireGuard device and UAPI socket. */
export interface TenantRuntime {
  spec: TenantSpec;
  /** ≥ 1; how the workers name the tenant (`Packet::tag`). */
  tag: number;
  wg?: WireGuardDevice | undefined;
  uapi?: UapiServer | undefined;
  /** The tenant's local networks on TUN devices of their own (`tun[]`). */
  tuns: { spec: TunSpec; dev: TenantTunDevice }[];
}

/** A device name from a prefix and a tenant id; Linux interface names are at most 15 bytes. */
export function ifname(prefix: string, tenant: string): string {
  return `${prefix}${tenant.replace(/[^A-Za-z0-9_.-]/g, '')}`.slice(0, 15);
}
