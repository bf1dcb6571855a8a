// The names the configuration gives WireGuard peers reach the peer view (`vrouterctl peers`)
// and the per-tunnel metric label: cvlan_vrouter_bytes_in_total{tunnel="<name>"}, with
// `wg:<public key>` for a peer without a name.
import t from 'tap';
import type { DesiredState, TenantSpec } from '../../src/config/model.js';
import { RouterViews, type RouterReader } from '../../src/daemon/views.js';
import type { TenantRuntime } from '../../src/daemon/runtime.js';
import { IkeView } from '../../src/daemon/ike-view.js';
import { VrouterMetrics } from '../../src/metrics/registry.js';

const NAMED = 'HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=';
const ANON = 'xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=';
const spec = {
  id: 'acme',
  tunnels: [],
  peers: [
    { publicKey: NAMED, name: 'laptop', allowedIps: ['10.1.0.2/32'], persistentKeepalive: 0 },
    { publicKey: ANON, allowedIps: ['10.1.0.3/32'], persistentKeepalive: 0 },
  ],
  tuns: [],
  routes: [],
} as unknown as TenantSpec;

const peer = (key: string, rx: bigint) => ({
  publicKey: new Uint8Array(Buffer.from(key, 'base64')),
  presharedKey: null,
  endpoint: '198.51.100.7:51820',
  allowedIps: [],
  persistentKeepalive: 0,
  lastHandshake: null,
  rxBytes: rx,
  txBytes: 7n,
  protocolVersion: 1 as const,
});
const wg = {
  closed: false,
  state: () => ({ privateKey: null, listenPort: 51820, fwmark: 0, peers: [peer(NAMED, 1000n), peer(ANON, 2000n)] }),
  counters: () => ({ handshakesCompleted: 0n, handshakesFailed: 0n, handshakeMessages: 0n, drops: [] }),
  stats: () => [],
  // The batched columns the metrics read; the named peer shook hands 10 s ago, the other never.
  traffic: () => ({
    publicKeys: Buffer.concat([Buffer.from(NAMED, 'base64'), Buffer.from(ANON, 'base64')]),
    rxBytes: Float64Array.of(1000, 2000),
    txBytes: Float64Array.of(7, 7),
    lastHandshakeMs: Float64Array.of(Date.now() - 10_000, NaN),
  }),
};
const runtime = { spec, tag: 1, wg, tuns: [] } as unknown as TenantRuntime;
const reader: RouterReader = {
  state: () => ({ tenants: [spec], rules: [], local: {} }) as unknown as DesiredState,
  appliedAt: () => '2026-01-01T00:00:00.000Z',
  runtimes: () => [runtime],
  ipsec: () => undefined,
  ike: () => new IkeView(),
  rekeys: () => ({ ike: 0, child: 0 }),
  lostDevices: () => new Map(),
  startedNs: process.hrtime.bigint(),
};

t.test('peer view and metric labels carry the configured names', async (t) => {
  const views = new RouterViews(reader);
  const peers = views.wireguardPeers();
  t.same(
    peers.map((p) => [p.name, p.public_key]),
    [
      ['laptop', NAMED],
      [null, ANON],
    ],
  );
  const text = await new VrouterMetrics(views).scrape();
  t.match(text, /cvlan_vrouter_bytes_in_total\{tunnel="laptop"\} 1000/, 'the name as the label');
  t.match(text, new RegExp(`cvlan_vrouter_bytes_in_total\\{tunnel="wg:${ANON.replace(/[+/=]/g, (c) => `\\${c}`)}"\\} 2000`), 'the key when there is no name');
  t.match(text, /cvlan_vrouter_tunnels_active\{tenant="acme",type="wireguard"\} 1\n/, 'a peer without a handshake is not active');
  t.notMatch(text, new RegExp(`wg:${NAMED.replace(/[+/=]/g, (c) => `\\${c}`)}`), 'a named peer is not also labelled by its key');
});
