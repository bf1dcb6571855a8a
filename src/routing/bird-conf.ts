/**
 * Renders a tenant's BGP speaker configuration (BIRD 2) from its `bgp` section and the prefixes
 * it reaches right now. Pure: the same input gives the same text, so a change is a new file plus
 * BIRD's `configure`, which keeps every session whose protocol did not change and only
 * re-announces or withdraws routes.
 *
 * Every BGP tenant has a BIRD of its own: one BIRD serialises sessions to the same neighbour
 * address (its TCP lock is keyed by the remote address and port only), so two tenants peering with
 * the same VPC router need two speakers; a process per tenant also keeps them apart like a VRF.
 * With source addresses given, the listening socket binds them (`strict bind`), so the
 * speakers of several tenants share port 179 on different addresses.
 *
 * In the tenant's speaker:
 *   ipv4/ipv6 table <T>_v4/_v6       the tenant's view in the speaker
 *   protocol static <T>_s4/_s6       one blackhole route per prefix to announce (never installed
 *                                     anywhere: there is no kernel protocol; it only feeds the export)
 *   protocol kernel <T>_k4/_k6       only when a neighbour's import says `install`: learned routes
 *                                     into the namespace's routing table (one tenant only)
 *   protocol bgp <T>_<neighbour>     one session; exports only the static routes of its own table,
 *                                     imports nothing unless `import` is set (then only inside
 *                                     `allow`, at most `max_prefixes`, further routes blocked)
 */

import { createHash } from 'node:crypto';
import type { TenantBgpSpec } from '../config/model.js';

/** What one tenant tells its neighbours now. */
export interface TenantAnnouncements {
  tenant: string;
  bgp: TenantBgpSpec;
  /** Canonical prefixes to announce (aggregation already applied), either family. */
  prefixes: readonly string[];
}

export interface BirdConfOptions {
  /** The speaker's router id; undefined = BIRD picks the lowest IPv4 address of the host. */
  routerId?: string;
}

/** BIRD symbols: a letter, then letters, digits and `_`; BIRD keeps at most 64 characters. */
const SYMBOL_MAX = 64;

/** A stable BIRD symbol for `parts` (readable, unique by a hash of the exact input). */
export function symbolOf(...parts: string[]): string {
  const readable = parts.map((p) => p.replace(/[^A-Za-z0-9]/g, '_').slice(0, 16)).join('_');
  const hash = createHash('sha256').update(parts.join('\0')).digest('hex').slice(0, 8);
  return `c_${readable}_${hash}`.slice(0, SYMBOL_MAX);
}

/** Symbols of one tenant (tables, static protocols) and its sessions. */
export function tenantSymbols(tenant: string): { v4: string; v6: string; s4: string; s6: string; k4: string; k6: string } {
  const t = symbolOf(tenant);
  return { v4: `${t}_v4`, v6: `${t}_v6`, s4: `${t}_s4`, s6: `${t}_s6`, k4: `${t}_k4`, k6: `${t}_k6` };
}

export function sessionSymbol(tenant: string, neighbor: string): string {
  return symbolOf(tenant, neighbor);
}

export function renderBirdConf(t: TenantAnnouncements, opts: BirdConfOptions = {}): string {
  const out: string[] = [
    `# BGP speaker of cvlan-vrouter for tenant ${JSON.stringify(t.tenant)}: generated, rewritten on every change and applied with \`configure\`.`,
    '# Secrets (TCP MD5 keys) are in this file: it is written 0600 into the runtime directory.',
    'log stderr all;',
    'debug protocols { states, events };',
  ];
  const routerId = t.bgp.routerId ?? opts.routerId;
  if (routerId !== undefined) out.push(`router id ${routerId};`);
  out.push('', 'protocol device { scan time 10; }', '', ...renderTenant(t));
  return `${out.join('\n')}\n`;
}

function renderTenant(t: TenantAnnouncements): string[] {
  const sym = tenantSymbols(t.tenant);
  const v4 = [...t.prefixes].filter((p) => !p.includes(':')).sort();
  const v6 = [...t.prefixes].filter((p) => p.includes(':')).sort();
  const out = [
    `# tenant ${JSON.stringify(t.tenant)}`,
    `ipv4 table ${sym.v4};`,
    `ipv6 table ${sym.v6};`,
    `protocol static ${sym.s4} {`,
    `  ipv4 { table ${sym.v4}; };`,
    ...v4.map((p) => `  route ${p} blackhole;`),
    '}',
    `protocol static ${sym.s6} {`,
    `  ipv6 { table ${sym.v6}; };`,
    ...v6.map((p) => `  route ${p} blackhole;`),
    '}',
  ];
  if (t.bgp.neighbors.some((n) => n.import?.install)) {
    // Learned routes into the namespace's main table (a vrouter of one tenant: what the workers do
    // not hand off reaches that table through the TUN). Only learned routes, never our own.
    out.push(
      `protocol kernel ${sym.k4} { ipv4 { table ${sym.v4}; export where source = RTS_BGP; import none; }; learn off; }`,
      `protocol kernel ${sym.k6} { ipv6 { table ${sym.v6}; export where source = RTS_BGP; import none; }; learn off; }`,
    );
  }
  for (const n of t.bgp.neighbors) {
    const family = n.address.includes(':') ? 'ipv6' : 'ipv4';
    const table = family === 'ipv6' ? sym.v6 : sym.v4;
    const exportActions = [
      ...t.bgp.announce.communities.map(([hi, lo]) => `bgp_community.add((${hi},${lo}));`),
      ...(t.bgp.announce.med !== undefined ? [`bgp_med = ${t.bgp.announce.med};`] : []),
    ];
    out.push(
      `protocol bgp ${sessionSymbol(t.tenant, n.name)} {`,
      `  description ${JSON.stringify(`${t.tenant}/${n.name}`)};`,
      `  local ${n.localAddress ?? ''}${n.localAddress !== undefined ? ' ' : ''}as ${t.bgp.asn};`,
      `  neighbor ${n.address} as ${n.asn};`,
      ...(n.localAddress !== undefined ? ['  strict bind yes;'] : []),
      `  hold time ${n.holdTime};`,
      `  keepalive time ${Math.max(1, Math.floor(n.holdTime / 3))};`,
      ...(n.password !== undefined ? [`  password "${n.password.text()}";`] : []),
      `  ${family} {`,
      `    table ${table};`,
      ...renderImport(n.import, family),
      // Only what this tenant reaches: never a learned route, never another tenant's.
      `    export filter { if source != RTS_STATIC then reject; ${exportActions.join(' ')}${exportActions.length > 0 ? ' ' : ''}accept; };`,
      ...(family === 'ipv4' ? ['    next hop self;'] : []),
      '  };',
      '}',
    );
  }
  return out;
}

function renderImport(spec: TenantBgpSpec['neighbors'][number]['import'], family: 'ipv4' | 'ipv6'): string[] {
  if (spec === undefined) return ['    import none;'];
  const allow = spec.allow.filter((p) => p.includes(':') === (family === 'ipv6'));
  if (allow.length === 0) return ['    import none;'];
  // `+` matches the prefix and everything more specific inside it.
  return [
    `    import filter { if net ~ [ ${allow.map((p) => `${p}+`).join(', ')} ] then accept; reject; };`,
    `    import limit ${spec.maxPrefixes} action block;`,
  ];
}
