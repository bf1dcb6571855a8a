// The read model (src/daemon/views.ts): a tunnel's state and view from charon's IKE_SA, and data
// plane drop codes summed into API reasons.
import t from 'tap';
import { dropViews, saCounters, tunnelState, tunnelView, weakPskTunnels } from '../../src/daemon/views.js';
import { parseIkeSa } from '../../src/strongswan/vici/types.js';
import { Secret, type IpsecTunnelSpec, type TenantSpec } from '../../src/config/model.js';

const spec: IpsecTunnelSpec = {
  id: 'site-a',
  remoteId: 'legacy.example',
  auth: { method: 'psk', psk: Secret.fromText('0123456789abcdef0123', 'plain') },
  localSubnets: ['10.1.0.0/24'],
  remoteSubnets: ['10.2.0.0/24'],
  ikeProposals: ['aes256gcm16-prfsha256-x25519'],
  espProposals: ['aes256gcm16'],
} as unknown as IpsecTunnelSpec;

const sa = parseIkeSa('site-a', {
  uniqueid: '3',
  state: 'ESTABLISHED',
  'remote-host': '192.0.2.2',
  'encr-alg': 'AES_GCM_16',
  'encr-keysize': '256',
  'prf-alg': 'PRF_HMAC_SHA2_256',
  'dh-group': 'CURVE_25519',
  established: '30',
  'rekey-time': '14000',
  'child-sas': {
    'site-a-4': {
      name: 'site-a',
      state: 'INSTALLED',
      encap: 'yes',
      'spi-in': 'c1a2b3',
      'spi-out': 'ffd0e1f2',
      'encr-alg': 'AES_GCM_16',
      'encr-keysize': '256',
      esn: '1',
      'bytes-in': '1000',
      'bytes-out': '2000',
      'packets-in': '10',
      'packets-out': '20',
      'local-ts': ['10.1.0.0/24'],
      'remote-ts': ['10.2.0.0/24'],
      'rekey-time': 'x',
    },
  },
});

t.test('tunnel state follows the IKE_SA and its CHILD_SAs', async (t) => {
  t.equal(tunnelState(undefined), 'down');
  t.equal(tunnelState(sa), 'up');
  t.equal(tunnelState({ ...sa, childSas: [] }), 'connecting', 'IKE_SA without an installed CHILD_SA');
  t.equal(tunnelState({ ...sa, state: 'REKEYING' }), 'rekeying');
  t.equal(tunnelState({ ...sa, state: 'DELETING' }), 'deleting');
  t.equal(tunnelState({ ...sa, state: 'CONNECTING' }), 'connecting');
});

t.test('a tunnel view carries algorithms, SPIs and counters, and no secret', async (t) => {
  const v = tunnelView('acme', spec, sa, 1_000_000);
  t.equal(v.state, 'up');
  t.same(v.ike_sa, {
    state: 'ESTABLISHED',
    algorithms: { encryption: 'AES_GCM_16_256', integrity: null, prf: 'PRF_HMAC_SHA2_256', dh_group: 'CURVE_25519' },
    established_at: new Date((1_000_000 - 30) * 1000).toISOString(),
    rekey_in_s: 14000,
  });
  t.same(v.child_sas[0], {
    name: 'site-a',
    spi_in: '00c1a2b3',
    spi_out: 'ffd0e1f2',
    algorithms: { encryption: 'AES_GCM_16_256', integrity: null, esn: true },
    udp_encap: true,
    local_ts: ['10.1.0.0/24'],
    remote_ts: ['10.2.0.0/24'],
    bytes_in: 1000,
    bytes_out: 2000,
    packets_in: 10,
    packets_out: 20,
    rekey_in_s: null,
  });
  t.notMatch(JSON.stringify(v), /0123456789abcdef/, 'the PSK is not in the view');
  const down = tunnelView('acme', spec, undefined, 0);
  t.equal(down.state, 'down');
  t.equal(down.ike_sa, null);
  t.same(down.child_sas, []);
});

t.test("traffic counts come from the data plane's SAs; charon's only where the data plane has none", async (t) => {
  const dp = saCounters([
    { spi: 0xc1a2b3, inbound: true, bytes: 5000n, packets: 50n },
    // the same SPI outbound is another SA
    { spi: 0xc1a2b3, inbound: false, bytes: 1n, packets: 1n },
  ]);
  const c = tunnelView('acme', spec, sa, 1_000_000, dp).child_sas[0]!;
  t.same([c.bytes_in, c.packets_in], [5000, 50], 'inbound from the data plane, by SPI');
  t.same([c.bytes_out, c.packets_out], [2000, 20], "outbound SA unknown to the data plane: charon's figures");
});

t.test('drop codes are summed per API reason and worker; zero counts are left out', async (t) => {
  const v = dropViews(
    [
      { code: 'esp_replayed', count: 3n, worker: 0 },
      { code: 'esp_too_old', count: 2n, worker: 0 },
      { code: 'wg_replayed', count: 4n, worker: 1 },
      { code: 'esp_unknown_spi', count: 0n, worker: 1 },
      { code: 'esp_unknown_spi', count: 5n, worker: null },
    ],
    'acme',
  );
  t.same(v, [
    { reason: 'replay', count: 5, worker: 0, tenant: 'acme' },
    { reason: 'replay', count: 4, worker: 1, tenant: 'acme' },
    { reason: 'no_sa', count: 5, worker: null, tenant: 'acme' },
  ]);
  t.same(dropViews([{ code: 'never-heard-of-it', count: 1n, worker: 0 }], null), [{ reason: 'other', count: 1, worker: 0, tenant: null }]);
});

t.test('weak PSK tunnels are the PSK tunnels marked weak', async (t) => {
  const weak = { ...spec, id: 'old-router', auth: { method: 'psk', psk: Secret.fromText('legacy12', 'plain'), weak: true } } as IpsecTunnelSpec;
  const strong = { ...spec, auth: { ...(spec.auth as object), weak: false } } as IpsecTunnelSpec;
  const eap = { ...spec, id: 'eap', auth: { method: 'eap' } } as unknown as IpsecTunnelSpec;
  t.same(weakPskTunnels({ id: 'acme', tunnels: [strong, weak, eap] } as unknown as TenantSpec), ['old-router']);
});
