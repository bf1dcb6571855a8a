// What a tenant announces: the liveness rules of advertise.ts, and the log events for BGP changes.
import t from 'tap';
import { parseControllerDocs } from '../../src/config/controller.js';
import { bgpChanges, reachableOf, WG_SESSION_LIFETIME_S } from '../../src/daemon/advertise.js';
import type { PeerView, TunnelView } from '../../src/api/state.js';
import type { RoutingStatus } from '../../src/routing/service.js';
import type { PoolView } from '../../src/remote-access/service.js';
import { genkey, pubkey } from '../../src/secrets/keys.js';

const PEER = pubkey(genkey());
const OTHER = pubkey(genkey());
const [tenant] = parseControllerDocs([
  {
    tenant_id: 'acme',
    wireguard_peers: [
      { name: 'agent', public_key: PEER, allowed_ips: ['10.20.0.2/32'] },
      { public_key: OTHER, allowed_ips: ['10.20.0.3/32'] },
    ],
    tunnels: [{ id: 'site', type: 'ipsec', remote_id: 'site.example', auth: { method: 'psk', psk: 'a-psk-of-sufficient-length' }, local_subnets: ['10.20.0.0/24'], remote_subnets: ['10.10.0.0/24', '10.11.0.0/24'] }],
    tun: [{ name: 'tun0', addresses: ['10.30.0.1/24'], subnets: ['10.30.0.0/24'] }],
  },
]).tenants;

const tunnel = (state: TunnelView['state'], tenantId = 'acme'): TunnelView => ({ id: 'site', tenant: tenantId, type: 'ipsec', remote_id: 'site.example', auth_method: 'psk', state, ike_sa: null, child_sas: [] });
const peer = (key: string, handshakeAgoS: number | null): PeerView => ({
  public_key: key,
  name: null,
  tenant: 'acme',
  endpoint: null,
  allowed_ips: [],
  latest_handshake: handshakeAgoS === null ? null : new Date(NOW - handshakeAgoS * 1000).toISOString(),
  rx_bytes: 0,
  tx_bytes: 0,
  persistent_keepalive_s: null,
});
const NOW = Date.parse('2026-12-05T00:00:00Z');

t.test('liveness: tunnels up, sessions within 180 s, open TUNs', async (t) => {
  const spec = tenant!;
  t.same(reachableOf(spec, [], [], [], NOW), [], 'nothing live, nothing reachable');
  t.same(
    reachableOf(spec, [tunnel('up')], [], [], NOW).map((r) => r.prefix),
    ['10.10.0.0/24', '10.11.0.0/24'],
    'an IPsec tunnel that is up: its remote subnets',
  );
  t.same(reachableOf(spec, [tunnel('rekeying')], [], [], NOW).length, 2, 'rekeying counts as up');
  for (const s of ['down', 'connecting', 'deleting'] as const) t.same(reachableOf(spec, [tunnel(s)], [], [], NOW), [], `${s}: not reachable`);
  t.same(reachableOf(spec, [tunnel('up', 'other')], [], [], NOW), [], "another tenant's tunnel of the same id does not count");
  const live = reachableOf(spec, [], [peer(PEER, 10), peer(OTHER, WG_SESSION_LIFETIME_S + 1)], [], NOW);
  t.same(live, [{ prefix: '10.20.0.2/32', source: 'wireguard', via: 'agent' }], 'a recent handshake is live (named by the peer name); an expired one is not');
  t.same(reachableOf(spec, [], [peer(PEER, null)], [], NOW), [], 'never handshaken: not reachable');
  t.same(reachableOf(spec, [], [], ['tun0'], NOW), [{ prefix: '10.30.0.0/24', source: 'tun', via: 'tun0' }], 'an open TUN');
});

t.test('remote access: a pool is announced while a client holds a lease from it', async (t) => {
  const [ra] = parseControllerDocs([
    {
      tenant_id: 'acme',
      remote_access: {
        local_id: 'vpn.acme.example',
        certificate: 'file:/etc/cvlan/vpn.pem',
        private_key: 'file:/etc/cvlan/vpn.key',
        pools: [{ range: '10.99.0.0/24' }, { range: 'fd00:99::/120' }],
        local_subnets: ['10.1.0.0/16'],
        users: [{ name: 'alice', secret: 'correct horse battery staple' }],
      },
    },
  ]).tenants;
  const pool = (name: string, tenantId: string, online: number): PoolView => ({ tenant: tenantId, pool: name, range: '', size: 254, online, offline: 0, leases: [] });
  t.same(reachableOf(ra!, [], [], [], NOW), [], 'no pool read yet: nothing');
  t.same(reachableOf(ra!, [], [], [], NOW, [pool('ra-acme-0', 'acme', 0), pool('ra-acme-1', 'acme', 0)]), [], 'no lease online: nothing');
  t.same(
    reachableOf(ra!, [], [], [], NOW, [pool('ra-acme-0', 'acme', 2), pool('ra-acme-1', 'acme', 0)]),
    [{ prefix: '10.99.0.0/24', source: 'ipsec', via: 'ra-acme' }],
    'the pool with leases in use, under the ipsec switch; the idle one not',
  );
  t.same(reachableOf(ra!, [], [], [], NOW, [pool('ra-acme-0', 'other', 3)]), [], "another tenant's pool of the same name does not count");
});

t.test('BGP changes become log events', async (t) => {
  const st = (state: string, filtered: number, limited: number, hit: boolean): RoutingStatus => ({
    running: true,
    starts: 1,
    tenants: [{ tenant: 'acme', announced: [], neighbors: [{ tenant: 'acme', neighbor: 'lan', address: '192.0.2.254', state, info: '', announced: 0, learned: [], limited, filtered, importLimitHit: hit }] }],
  });
  t.same(bgpChanges(undefined, st('Active', 0, 0, false)), [], 'never established: nothing to say yet');
  t.same(bgpChanges(st('Active', 0, 0, false), st('Established', 0, 0, false)), [{ tenant: 'acme', neighbor: 'lan', state: 'Established', info: '' }], 'up');
  t.same(bgpChanges(st('Established', 0, 0, false), st('Established', 2, 0, false)), [{ tenant: 'acme', neighbor: 'lan', reason: 'filter', count: 2 }], 'filtered updates');
  t.same(bgpChanges(st('Established', 2, 0, false), st('Established', 2, 5, true)), [{ tenant: 'acme', neighbor: 'lan', reason: 'limit', count: 5 }], 'limit hit');
  t.same(bgpChanges(st('Established', 2, 5, true), st('Established', 2, 5, true)), [], 'nothing new, nothing logged');
  t.same(bgpChanges(st('Established', 2, 5, true), st('Active', 2, 5, true)), [{ tenant: 'acme', neighbor: 'lan', state: 'Active', info: '' }], 'down');
});
