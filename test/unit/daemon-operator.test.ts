// WireGuard device events as the daemon logs them: named after the configured peer, and an
// expired session (the data plane's `keys-zeroed`) is a `tunnel_down`.
import { Writable } from 'node:stream';
import t from 'tap';
import type { TenantSpec } from '../../src/config/model.js';
import { logWireguardEvent, peerName, wireguardTunnelId, initiateTunnel, terminateTunnel } from '../../src/daemon/operator.js';
import { createLogger, eventLog } from '../../src/log.js';

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

function capture() {
  const lines: Record<string, unknown>[] = [];
  const dest = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  const logger = createLogger({ level: 'info', destination: dest });
  return { logger, events: eventLog(logger), lines };
}

t.test('peer names', async (t) => {
  t.equal(peerName(spec, NAMED), 'laptop');
  t.equal(peerName(spec, ANON), undefined);
  t.equal(wireguardTunnelId(spec, NAMED), 'laptop');
  t.equal(wireguardTunnelId(spec, ANON), `wg:${ANON}`);
});

t.test('events: tunnel_up, tunnel_down on an expired session, auth_failure', async (t) => {
  const { logger, events, lines } = capture();
  logWireguardEvent(events, logger, spec, { type: 'handshake-complete', peer: NAMED, endpoint: '198.51.100.7:51820' });
  logWireguardEvent(events, logger, spec, { type: 'keys-zeroed', peer: NAMED });
  logWireguardEvent(events, logger, spec, { type: 'keys-zeroed', peer: ANON });
  logWireguardEvent(events, logger, spec, { type: 'handshake-failed', peer: ANON, endpoint: '203.0.113.1:4000', reason: 'bad mac1' });
  logWireguardEvent(events, logger, spec, { type: 'worker-started', worker: 0 });
  await new Promise((r) => setImmediate(r));
  t.match(lines[0], { event: 'tunnel_up', tenant: 'acme', tunnel: 'laptop', type: 'wireguard', remote: '198.51.100.7:51820' });
  t.match(lines[1], { event: 'tunnel_down', tenant: 'acme', tunnel: 'laptop', type: 'wireguard', reason: /session expired/ });
  t.match(lines[2], { event: 'tunnel_down', tunnel: `wg:${ANON}` }, 'an unnamed peer by its key');
  t.match(lines[3], { event: 'auth_failure', tunnel: `wg:${ANON}`, method: 'wireguard', reason: 'bad mac1' });
  t.match(lines[4], { msg: 'wireguard worker-started', worker: 0 });
  t.equal(lines.length, 5);
});

t.test('initiate/terminate refuse what is not a configured tunnel, or without IPsec', async (t) => {
  await t.rejects(initiateTunnel([spec], undefined, 'nowhere'), { code: 'CVLAN_ERR_API_NOT_FOUND' });
  await t.rejects(terminateTunnel([spec], undefined, 'nowhere'), { code: 'CVLAN_ERR_API_NOT_FOUND' });
  const withTunnel = { ...spec, tunnels: [{ id: 'site-a' }] } as unknown as TenantSpec;
  await t.rejects(initiateTunnel([withTunnel], undefined, 'site-a'), { code: 'CVLAN_ERR_STATE', message: /IPsec is not running/ });
});
