// Two tenants on one cvlan-vrouter with the same prefixes on both sides: each tenant has a legacy
// IPsec site (strongSwan kernel-libipsec) with LAN 10.0.1.0/24 and a WireGuard agent
// (wireguard-go) at 10.0.2.2. Traffic in each tenant reaches its own site only; a spoofed source
// and a cross-tenant attempt are dropped and counted; an inter-tenant rule lets exactly one
// prefix pair through (agent B's 10.9.9.2 ⇄ tenant A's 10.50.0.0/24).
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { adminGet } from '../../src/api/client.js';
import type { TunnelView } from '../../src/api/state.js';
import { useLab, closeLab } from '../harness/tap.js';
import type { Lab } from '../harness/lab.js';
import { vrouterRun } from '../harness/vrouter.js';
import { strongswanPeer } from '../harness/strongswan.js';
import { wireguardGo, genKeyPair, type KeyPair } from '../harness/wireguard.js';
import { cvlanTestbedMissing } from '../harness/cvlan.js';
import { missingPrerequisites } from '../harness/tools.js';
import { ping, waitForPing } from '../harness/ping.js';

const skip = cvlanTestbedMissing() ?? missingPrerequisites('charon', 'swanctl', 'wg', 'wireguardGo');
const LAN = '10.0.1.1';
const AGENT = '10.0.2.2';
const A_ONLY = '10.50.0.1';
const B_EXTRA = '10.9.9.2';
const LISTEN = '192.168.11.1';

interface TenantSide {
  id: 'ta' | 'tb';
  legacyNs: string;
  legacyAddr: string;
  agentNs: string;
  agentLink: string;
  psk: string;
  agentKeys: KeyPair;
  vrKeys: KeyPair;
  port: number;
}

async function side(lab: Lab, vr: string, id: 'ta' | 'tb', n: number): Promise<TenantSide> {
  const legacyNs = await lab.namespace(`l${id}`);
  const agentNs = await lab.namespace(`w${id}`);
  await lab.veth({ ns: legacyNs, addresses: [`192.168.1${n}.2/24`] }, { ns: vr, addresses: [`192.168.1${n}.1/24`] });
  await lab.veth({ ns: agentNs, addresses: [`192.168.2${n}.2/24`] }, { ns: vr, addresses: [`192.168.2${n}.1/24`] });
  // Both legacy routers reach IKE at the one listen address.
  if (`192.168.1${n}.1` !== LISTEN) await lab.addRoute(legacyNs, `${LISTEN}/32`, { via: `192.168.1${n}.1` });
  await lab.addAddress(legacyNs, 'lo', `${LAN}/32`);
  if (id === 'ta') await lab.addAddress(legacyNs, 'lo', `${A_ONLY}/32`);
  return {
    id,
    legacyNs,
    legacyAddr: `192.168.1${n}.2`,
    agentNs,
    agentLink: `192.168.2${n}.1`,
    psk: randomBytes(24).toString('base64'),
    agentKeys: await genKeyPair(),
    vrKeys: await genKeyPair(),
    port: 51820 + n,
  };
}

function tenantDoc(s: TenantSide): object {
  const a = s.id === 'ta';
  return {
    tenant_id: s.id,
    tunnels: [
      {
        id: `${s.id}-site`,
        type: 'ipsec',
        local_id: `vr-${s.id}.test.cvlan`,
        remote_id: `legacy-${s.id}.test.cvlan`,
        auth: { method: 'psk', psk: s.psk },
        local_subnets: a ? ['10.0.2.0/24', '10.9.9.0/24'] : ['10.0.2.0/24'],
        remote_subnets: a ? ['10.0.1.0/24', '10.50.0.0/24'] : ['10.0.1.0/24'],
      },
    ],
    wireguard: { listen_port: s.port, private_key: s.vrKeys.privateKey },
    wireguard_peers: [{ name: `agent-${s.id}`, public_key: s.agentKeys.publicKey, allowed_ips: a ? [`${AGENT}/32`] : [`${AGENT}/32`, `${B_EXTRA}/32`] }],
  };
}

t.test('two tenants, overlapping prefixes: isolation, spoofing, cross-tenant denial, one rule', { skip }, async (t) => {
  const lab = useLab(t, { label: 'tenants' });
  const vr = await lab.namespace('vr');
  const A = await side(lab, vr, 'ta', 1);
  const B = await side(lab, vr, 'tb', 2);
  const rules = [
    { from_tenant: 'tb', from_prefix: `${B_EXTRA}/32`, to_tenant: 'ta', to_prefix: '10.50.0.0/24' },
    { from_tenant: 'ta', from_prefix: '10.50.0.0/24', to_tenant: 'tb', to_prefix: `${B_EXTRA}/32` },
  ];
  const v = await vrouterRun(lab, vr, { listenAddress: LISTEN, logLevel: 'info', document: { vrouter_id: 'vr', tenants: [tenantDoc(A), tenantDoc(B)], rules } });

  for (const s of [A, B]) {
    const legacy = await strongswanPeer(lab, s.legacyNs, {
      localAddr: s.legacyAddr,
      remoteAddr: LISTEN,
      localId: `legacy-${s.id}.test.cvlan`,
      remoteId: `vr-${s.id}.test.cvlan`,
      localTs: s.id === 'ta' ? ['10.0.1.0/24', '10.50.0.0/24'] : ['10.0.1.0/24'],
      remoteTs: s.id === 'ta' ? ['10.0.2.0/24', '10.9.9.0/24'] : ['10.0.2.0/24'],
      auth: { method: 'psk', psk: s.psk },
      forceEncap: true,
    });
    await legacy.initiate(20);
    await wireguardGo(lab, s.agentNs, {
      keys: s.agentKeys,
      addresses: s.id === 'ta' ? [`${AGENT}/24`, '10.0.7.7/32'] : [`${AGENT}/24`, `${B_EXTRA}/32`],
      // 10.60.0.0/24 goes into the tunnel but no tenant routes it.
      peers: [{ publicKey: s.vrKeys.publicKey, endpoint: `${s.agentLink}:${s.port}`, allowedIps: ['10.0.1.0/24', '10.50.0.0/24', '10.60.0.0/24'], persistentKeepalive: 25 }],
      routes: ['10.0.1.0/24', '10.50.0.0/24', '10.60.0.0/24'],
    });
  }
  const admin = { kind: 'unix' as const, socketPath: v.admin };
  const siteBytes = async (): Promise<Record<string, number>> => {
    const { tunnels } = JSON.parse((await adminGet(admin, '/v1/tunnels')).body) as { tunnels: TunnelView[] };
    return Object.fromEntries(tunnels.map((x) => [x.id, x.child_sas.reduce((n, c) => n + c.packets_in + c.packets_out, 0)]));
  };
  // The IKE view (and its counters) is read from charon every 2 s: a read 2.5 s after the
  // traffic stopped holds all of it.
  const settled = async (): Promise<Record<string, number>> => {
    await new Promise((r) => setTimeout(r, 2500));
    return siteBytes();
  };
  const drops = async (): Promise<Record<string, number>> => {
    const d = JSON.parse((await adminGet(admin, '/v1/drops')).body) as { drops: { reason: string; count: number }[] };
    const out: Record<string, number> = {};
    for (const x of d.drops) out[x.reason] = (out[x.reason] ?? 0) + x.count;
    return out;
  };

  // Each tenant reaches its own site; the same addresses exist in both.
  t.ok((await waitForPing(A.agentNs, LAN, 20_000, AGENT)).received > 0, 'tenant A: agent → its site');
  t.ok((await waitForPing(B.agentNs, LAN, 20_000, AGENT)).received > 0, 'tenant B: agent → its site');
  let before = await settled();
  t.equal((await ping(A.agentNs, LAN, { count: 5, source: AGENT })).received, 5, 'tenant A: 5/5');
  let after = await settled();
  t.ok(after['ta-site']! - before['ta-site']! >= 10, 'tenant A\'s packets crossed tenant A\'s tunnel');
  t.equal(after['tb-site'], before['tb-site'], 'and none crossed tenant B\'s');
  before = after;
  t.equal((await ping(B.agentNs, LAN, { count: 5, source: AGENT })).received, 5, 'tenant B: 5/5');
  after = await settled();
  t.ok(after['tb-site']! - before['tb-site']! >= 10, 'tenant B\'s packets crossed tenant B\'s tunnel');
  t.equal(after['ta-site'], before['ta-site'], 'and none crossed tenant A\'s');
  t.equal((await ping(A.legacyNs, AGENT, { count: 3, source: LAN })).received, 3, 'site A → agent A (ESP in, WireGuard out, tenant A)');
  t.equal((await ping(B.legacyNs, AGENT, { count: 3, source: LAN })).received, 3, 'site B → agent B');

  // A spoofed source: agent A sends from an address outside its allowed IPs.
  const d0 = await drops();
  t.equal((await ping(A.agentNs, LAN, { count: 3, source: '10.0.7.7' })).received, 0, 'spoofed source: no reply');
  const d1 = await drops();
  t.ok((d1.source_not_allowed ?? 0) - (d0.source_not_allowed ?? 0) >= 3, 'counted as source_not_allowed');

  // Nobody routes it: dropped as no_route and answered with "net unreachable" (from the address
  // asked for: the only source the agent's tunnel accepts from us).
  const d5 = await drops();
  const unrouted = await ping(A.agentNs, '10.60.0.1', { count: 3, source: AGENT });
  t.equal(unrouted.received, 0, 'an unrouted destination: no reply');
  t.match(unrouted.output, /\+3 errors/, 'but three ICMP errors came back');
  t.ok(((await drops()).no_route ?? 0) - (d5.no_route ?? 0) >= 3, 'counted as no_route');

  // Cross-tenant: agent B asks for a prefix only tenant A routes, from a source no rule allows.
  t.equal((await ping(B.agentNs, A_ONLY, { count: 3, source: AGENT })).received, 0, 'tenant B → tenant A\'s 10.50.0.1: denied');
  const d2 = await drops();
  t.ok((d2.inter_tenant_denied ?? 0) - (d1.inter_tenant_denied ?? 0) >= 3, 'counted as inter_tenant_denied');

  // The rule's prefix pair: agent B's 10.9.9.2 ⇄ tenant A's 10.50.0.0/24, both ways.
  t.equal((await ping(B.agentNs, A_ONLY, { count: 3, source: B_EXTRA })).received, 3, 'the rule lets 10.9.9.2 → 10.50.0.1 through, and the replies back');
  const d3 = await drops();
  t.equal((await ping(B.agentNs, LAN, { count: 3, source: B_EXTRA })).received, 0, 'but only that pair: 10.9.9.2 → tenant A\'s 10.0.1.1 is denied');
  const d4 = await drops();
  t.ok((d4.inter_tenant_denied ?? 0) - (d3.inter_tenant_denied ?? 0) >= 3, 'counted as inter_tenant_denied');
  await closeLab(t, lab);
});
