// The UAPI protocol layer: byte-exact `get=1` replies, `set=1` parsing with wireguard-go's errno
// for every class of error, Go-compatible address canonicalization, and the reference semantics
// of InMemoryWireGuard.apply. Fixtures are written from the protocol description
// (wireguard.com/xplatform) and checked against wireguard-go's answers for the same lines.
import t from 'tap';
import { CvlanError } from '../../src/errors.js';
import {
  canonicalEndpoint,
  canonicalPrefix,
  InMemoryWireGuard,
  type WgDeviceState,
  type WgDeviceUpdate,
} from '../../src/wireguard/control.js';
import { errnoOf, formatGetResponse, parseSetRequest, statusLine, UapiErrno, UapiError } from '../../src/wireguard/uapi.js';

// Keys made with `wg genkey` / `wg pubkey` / `wg genpsk` for these tests only.
const DEV_PRIV = '28c46aa5d14f01c9a406f7a84874db73a0ffdf13029c302a4cc81c686e39d67d';
const DEV_PUB = '64dcdc63333a096890764d9c86d574c55104ce51eed64242b46a821af76a1a73';
const A_PUB = '57537aa7110d1ecd158cbfc873ea1249e59d0bd6f6be0c178e5feebdbf94686d';
const B_PUB = '57d0e938bcc6ab69b838fbcc15826ba782517b9c561f2f06af821a383b534346';
const PSK = 'fb14faeb0b4c5e41cb9ed08558b6fd55ed3e098a6fc77ac88e9f3e2ddd1221f3';
const ZERO = '0'.repeat(64);
const bytes = (h: string): Uint8Array => new Uint8Array(Buffer.from(h, 'hex'));
const hex = (k: Uint8Array | null | undefined): string | null => (k ? Buffer.from(k).toString('hex') : null);

t.test('get=1: byte-exact reply, wireguard-go key order', async (t) => {
  const state: WgDeviceState = {
    privateKey: bytes(DEV_PRIV),
    listenPort: 51820,
    fwmark: 0x1234,
    peers: [
      {
        publicKey: bytes(A_PUB),
        presharedKey: bytes(PSK),
        endpoint: '[2001:db8::1]:51820',
        allowedIps: ['10.1.0.0/16', 'fd00::/64'],
        persistentKeepalive: 25,
        lastHandshake: { sec: 1700000000, nsec: 123456789 },
        rxBytes: 18446744073709551615n,
        txBytes: 42n,
        protocolVersion: 1,
      },
      {
        publicKey: bytes(B_PUB),
        presharedKey: null,
        endpoint: null,
        allowedIps: [],
        persistentKeepalive: 0,
        lastHandshake: null,
        rxBytes: 0n,
        txBytes: 0n,
        protocolVersion: 1,
      },
    ],
  };
  const expected =
    `private_key=${DEV_PRIV}\n` +
    'listen_port=51820\n' +
    'fwmark=4660\n' +
    `public_key=${A_PUB}\n` +
    `preshared_key=${PSK}\n` +
    'protocol_version=1\n' +
    'endpoint=[2001:db8::1]:51820\n' +
    'last_handshake_time_sec=1700000000\n' +
    'last_handshake_time_nsec=123456789\n' +
    'tx_bytes=42\n' +
    'rx_bytes=18446744073709551615\n' +
    'persistent_keepalive_interval=25\n' +
    'allowed_ip=10.1.0.0/16\n' +
    'allowed_ip=fd00::/64\n' +
    `public_key=${B_PUB}\n` +
    `preshared_key=${ZERO}\n` +
    'protocol_version=1\n' +
    'last_handshake_time_sec=0\n' +
    'last_handshake_time_nsec=0\n' +
    'tx_bytes=0\n' +
    'rx_bytes=0\n' +
    'persistent_keepalive_interval=0\n' +
    'errno=0\n\n';
  t.equal(formatGetResponse(state), expected);
  // No key, port 0, fwmark 0: those lines are left out, as wireguard-go does.
  t.equal(formatGetResponse({ privateKey: null, listenPort: 0, fwmark: 0, peers: [] }), 'errno=0\n\n');
  t.equal(formatGetResponse({ privateKey: bytes(ZERO), listenPort: 0, fwmark: 0, peers: [] }), 'errno=0\n\n');
});

t.test('set=1: what `wg set` sends parses into the update', async (t) => {
  const lines = [
    `private_key=${DEV_PRIV}`,
    'listen_port=51820',
    'fwmark=0',
    'replace_peers=true',
    `public_key=${A_PUB}`,
    `preshared_key=${PSK}`,
    'endpoint=192.0.2.1:51820',
    'persistent_keepalive_interval=25',
    'replace_allowed_ips=true',
    'allowed_ip=10.1.2.3/16',
    'allowed_ip=fd00::1/64',
    'protocol_version=1',
    `public_key=${B_PUB.toUpperCase()}`,
    'update_only=true',
    `preshared_key=${ZERO}`,
    `public_key=${B_PUB}`,
    'remove=true',
  ];
  const u = parseSetRequest(lines);
  t.equal(hex(u.privateKey), DEV_PRIV);
  t.equal(u.listenPort, 51820);
  t.equal(u.fwmark, 0);
  t.equal(u.replacePeers, true);
  t.equal(u.peers.length, 3);
  const [a, b, c] = u.peers;
  t.equal(hex(a!.publicKey), A_PUB);
  t.equal(hex(a!.presharedKey), PSK);
  t.equal(a!.endpoint, '192.0.2.1:51820');
  t.equal(a!.persistentKeepalive, 25);
  t.equal(a!.replaceAllowedIps, true);
  t.same(a!.allowedIps, ['10.1.0.0/16', 'fd00::/64'], 'prefixes are masked, as wireguard-go stores them');
  t.equal(hex(b!.publicKey), B_PUB, 'hex keys of either case');
  t.equal(b!.updateOnly, true);
  t.equal(b!.presharedKey, null, 'a zero preshared key removes it');
  t.equal(c!.remove, true);
  t.same(parseSetRequest([]), { peers: [] }, 'an empty set is valid');
  t.equal(parseSetRequest([`private_key=${ZERO}`]).privateKey, null, 'a zero private key removes it');
  t.equal(parseSetRequest(['listen_port=0051\r']).listenPort, 51, 'leading zeros and a trailing CR, as Go reads them');
});

t.test('set=1: allowed_ip removal and the order of lines within a section', async (t) => {
  const u = parseSetRequest([
    `public_key=${A_PUB}`,
    'allowed_ip=10.0.0.0/8',
    'allowed_ip=-10.0.0.0/8',
    'allowed_ip=-192.0.2.0/24',
    'allowed_ip=192.0.2.0/24',
    'allowed_ip=-198.51.100.7/32',
  ]);
  t.same(u.peers[0]!.allowedIps, ['10.0.0.0/8', '192.0.2.0/24']);
  t.same(u.peers[0]!.removeAllowedIps, ['10.0.0.0/8', '198.51.100.7/32'], 'the last line about a prefix wins');
  const r = parseSetRequest([`public_key=${A_PUB}`, 'allowed_ip=10.0.0.0/8', 'replace_allowed_ips=true', 'allowed_ip=10.9.0.0/16']);
  t.same(r.peers[0]!.allowedIps, ['10.9.0.0/16'], 'replace drops what the section added before it');
});

t.test('set=1: every error has wireguard-go\'s errno', async (t) => {
  const peer = `public_key=${A_PUB}`;
  const cases: [string, string[], number][] = [
    ['line without =', ['noequals'], UapiErrno.EPROTO],
    ['line without = in a peer', [peer, 'allowed_ip'], UapiErrno.EPROTO],
    ['unknown device key', ['foo=bar'], UapiErrno.EINVAL],
    ['empty key', ['=x'], UapiErrno.EINVAL],
    ['peer key before any peer', ['remove=true'], UapiErrno.EINVAL],
    ['device key in a peer section', [peer, 'listen_port=1'], UapiErrno.EINVAL],
    ['unknown peer key', [peer, 'foo=bar'], UapiErrno.EINVAL],
    ['short public key', [`public_key=${A_PUB.slice(1)}`], UapiErrno.EINVAL],
    ['non-hex private key', [`private_key=${'g'.repeat(64)}`], UapiErrno.EINVAL],
    ['empty private key', ['private_key='], UapiErrno.EINVAL],
    ['long preshared key', [peer, `preshared_key=${PSK}00`], UapiErrno.EINVAL],
    ['listen_port with sign', ['listen_port=+5'], UapiErrno.EINVAL],
    ['listen_port too large', ['listen_port=65536'], UapiErrno.EINVAL],
    ['listen_port empty', ['listen_port='], UapiErrno.EINVAL],
    ['fwmark beyond 32 bits', ['fwmark=4294967296'], UapiErrno.EINVAL],
    ['fwmark in hex', ['fwmark=0x10'], UapiErrno.EINVAL],
    ['replace_peers=false', ['replace_peers=false'], UapiErrno.EINVAL],
    ['update_only=1', [peer, 'update_only=1'], UapiErrno.EINVAL],
    ['remove=yes', [peer, 'remove=yes'], UapiErrno.EINVAL],
    ['replace_allowed_ips=TRUE', [peer, 'replace_allowed_ips=TRUE'], UapiErrno.EINVAL],
    ['endpoint with a host name', [peer, 'endpoint=host:5'], UapiErrno.EINVAL],
    ['endpoint IPv6 without brackets', [peer, 'endpoint=::1:5'], UapiErrno.EINVAL],
    ['endpoint IPv4 in brackets', [peer, 'endpoint=[192.0.2.1]:5'], UapiErrno.EINVAL],
    ['endpoint port too large', [peer, 'endpoint=192.0.2.1:65536'], UapiErrno.EINVAL],
    ['endpoint IPv4 with zone', [peer, 'endpoint=192.0.2.1%lo:5'], UapiErrno.EINVAL],
    ['endpoint without port', [peer, 'endpoint=192.0.2.1'], UapiErrno.EINVAL],
    ['keepalive too large', [peer, 'persistent_keepalive_interval=65536'], UapiErrno.EINVAL],
    ['keepalive negative', [peer, 'persistent_keepalive_interval=-1'], UapiErrno.EINVAL],
    ['allowed_ip without length', [peer, 'allowed_ip=10.0.0.1'], UapiErrno.EINVAL],
    ['allowed_ip with leading zero octet', [peer, 'allowed_ip=010.0.0.1/32'], UapiErrno.EINVAL],
    ['allowed_ip length too large', [peer, 'allowed_ip=10.0.0.0/33'], UapiErrno.EINVAL],
    ['allowed_ip v6 length too large', [peer, 'allowed_ip=fd00::/129'], UapiErrno.EINVAL],
    ['allowed_ip length with leading zero', [peer, 'allowed_ip=10.0.0.0/08'], UapiErrno.EINVAL],
    ['allowed_ip with zone', [peer, 'allowed_ip=fe80::%lo/64'], UapiErrno.EINVAL],
    ['allowed_ip garbage', [peer, 'allowed_ip=1.2.3.4.5/32'], UapiErrno.EINVAL],
    ['protocol_version=2', [peer, 'protocol_version=2'], UapiErrno.EINVAL],
  ];
  for (const [name, lines, errno] of cases) {
    try {
      parseSetRequest(lines);
      t.fail(`${name}: accepted`);
    } catch (e) {
      t.ok(e instanceof UapiError && e instanceof CvlanError, `${name}: UapiError`);
      t.equal((e as UapiError).errno, errno, `${name}: errno ${errno}`);
      t.equal((e as UapiError).code, 'CVLAN_ERR_WG_UAPI');
    }
  }
  // Key material is never echoed in messages.
  try {
    parseSetRequest([`private_key=${DEV_PRIV.slice(2)}`]);
  } catch (e) {
    t.notMatch((e as Error).message, DEV_PRIV.slice(2, 20));
  }
});

t.test('status lines and the errno of apply failures', async (t) => {
  t.equal(statusLine(0), 'errno=0\n\n');
  t.equal(statusLine(UapiErrno.EINVAL), 'errno=-22\n\n', 'negative, as wireguard-go writes it and wg reads it');
  t.equal(errnoOf(new UapiError(UapiErrno.EPROTO, 'x')), 71);
  t.equal(errnoOf(new CvlanError('CVLAN_ERR_INVALID_ARG')), 22);
  t.equal(errnoOf(new CvlanError('CVLAN_ERR_KEY')), 22);
  t.equal(errnoOf(new CvlanError('CVLAN_ERR_ADDR_IN_USE')), 98);
  t.equal(errnoOf(new CvlanError('CVLAN_ERR_WORKER')), 5);
  t.equal(errnoOf(new Error('boom')), 5);
});

t.test('addresses are written as Go netip writes them', async (t) => {
  const endpoints: [string, string | null][] = [
    ['192.0.2.1:51820', '192.0.2.1:51820'],
    ['192.0.2.1:0051', '192.0.2.1:51'],
    ['[::ffff:1.2.3.4]:5', '[::ffff:1.2.3.4]:5'],
    ['[::FFFF:0102:0304]:5', '[::ffff:1.2.3.4]:5'],
    ['[2001:DB8:0:0:1:0:0:1]:1', '[2001:db8::1:0:0:1]:1'],
    ['[2001:db8:0:1:1:1:1:1]:1', '[2001:db8:0:1:1:1:1:1]:1'],
    ['[0:0:0:0:0:0:0:1]:1', '[::1]:1'],
    ['[::]:1', '[::]:1'],
    ['[fe80::1%eth0]:5', '[fe80::1%eth0]:5'],
    ['[fe80::1%]:5', null],
    ['[1:2:3:4:5:6:7:8:9]:5', null],
    ['[1::2::3]:5', null],
    ['[1.2.3.4::]:5', null],
    ['1.2.3:5', null],
    ['256.0.0.1:5', null],
  ];
  for (const [i, o] of endpoints) t.equal(canonicalEndpoint(i), o, i);
  const prefixes: [string, string | null][] = [
    ['10.1.2.3/8', '10.0.0.0/8'],
    ['10.1.2.3/0', '0.0.0.0/0'],
    ['10.1.2.3/23', '10.1.2.0/23'],
    ['10.1.3.255/23', '10.1.2.0/23'],
    ['fd00::1/64', 'fd00::/64'],
    ['2001:db8:ffff::/33', '2001:db8:8000::/33'],
    ['::/0', '::/0'],
    ['::ffff:10.1.2.3/120', '::ffff:10.1.2.0/120'],
    ['10.0.0.1', null],
    ['10.0.0.1/-1', null],
  ];
  for (const [i, o] of prefixes) t.equal(canonicalPrefix(i), o, i);
});

const peerA = (extra: Partial<WgDeviceUpdate['peers'][number]> = {}): WgDeviceUpdate['peers'][number] => ({
  publicKey: bytes(A_PUB),
  ...extra,
});
const peerB = (extra: Partial<WgDeviceUpdate['peers'][number]> = {}): WgDeviceUpdate['peers'][number] => ({
  publicKey: bytes(B_PUB),
  ...extra,
});
const ips = (wg: InMemoryWireGuard): Record<string, string[]> =>
  Object.fromEntries(wg.state().peers.map((p) => [hex(p.publicKey)!.slice(0, 4), p.allowedIps]));

t.test('InMemoryWireGuard: allowed IPs move between peers and keep their order', async (t) => {
  const wg = new InMemoryWireGuard('cvu0');
  wg.apply({ peers: [peerA({ allowedIps: ['10.0.0.0/8', '192.0.2.0/24', 'fd00::/64'] }), peerB({ allowedIps: ['198.51.100.0/24'] })] });
  t.same(ips(wg), { '5753': ['10.0.0.0/8', '192.0.2.0/24', 'fd00::/64'], '57d0': ['198.51.100.0/24'] });
  wg.apply({ peers: [peerB({ allowedIps: ['192.0.2.9/24'] })] });
  t.same(ips(wg), { '5753': ['10.0.0.0/8', 'fd00::/64'], '57d0': ['198.51.100.0/24', '192.0.2.0/24'] }, 'moved, as WireGuard does');
  wg.apply({ peers: [peerA({ allowedIps: ['10.0.0.0/8', '203.0.113.0/24'] })] });
  t.same(ips(wg)['5753'], ['10.0.0.0/8', 'fd00::/64', '203.0.113.0/24'], 'adding one it holds keeps its place');
  wg.apply({ peers: [peerA({ removeAllowedIps: ['fd00::/64', '192.0.2.0/24'] })] });
  t.same(ips(wg), { '5753': ['10.0.0.0/8', '203.0.113.0/24'], '57d0': ['198.51.100.0/24', '192.0.2.0/24'] }, 'removes only its own');
  wg.apply({ peers: [peerA({ replaceAllowedIps: true, allowedIps: ['203.0.113.0/24', '198.51.100.0/24'] })] });
  t.same(ips(wg), { '5753': ['203.0.113.0/24', '198.51.100.0/24'], '57d0': ['192.0.2.0/24'] }, 'replace');
});

t.test('InMemoryWireGuard: remove, update_only, replace_peers, own key', async (t) => {
  const wg = new InMemoryWireGuard('cvu0');
  wg.apply({ peers: [peerB({ updateOnly: true, allowedIps: ['10.0.0.0/8'] })] });
  t.equal(wg.state().peers.length, 0, 'update_only never creates');
  wg.apply({ peers: [peerA({ allowedIps: ['10.0.0.0/8'], endpoint: '[::ffff:192.0.2.1]:7', persistentKeepalive: 25, presharedKey: bytes(PSK) })] });
  wg.apply({ peers: [peerA({ updateOnly: true, persistentKeepalive: 0 })] });
  let a = wg.state().peers[0]!;
  t.equal(a.persistentKeepalive, 0, 'update_only updates an existing peer');
  t.equal(a.endpoint, '[::ffff:192.0.2.1]:7');
  t.equal(hex(a.presharedKey), PSK);
  wg.apply({ peers: [peerA({ presharedKey: null })] });
  a = wg.state().peers[0]!;
  t.equal(a.presharedKey, null);
  wg.apply({ peers: [peerA({ remove: true }), peerB({ allowedIps: ['10.0.0.0/8'] })] });
  t.same(ips(wg), { '57d0': ['10.0.0.0/8'] }, 'remove frees its allowed IPs');
  wg.apply({ peers: [peerB({ remove: true }), peerB({ remove: true })] });
  t.equal(wg.state().peers.length, 0, 'removing a missing peer is no error');
  wg.apply({ peers: [peerA(), peerB()] });
  wg.apply({ replacePeers: true, peers: [peerB({ allowedIps: ['10.0.0.0/8'] })] });
  t.same(ips(wg), { '57d0': ['10.0.0.0/8'] }, 'replace_peers');
  // The interface's own public key is never a peer: setting the key drops it, and a section naming it is ignored.
  wg.apply({ peers: [{ publicKey: bytes(DEV_PUB), allowedIps: ['192.0.2.0/24'] }] });
  t.equal(wg.state().peers.length, 2);
  wg.apply({ privateKey: bytes(DEV_PRIV), peers: [{ publicKey: bytes(DEV_PUB), allowedIps: ['198.51.100.0/24'] }] });
  t.same(ips(wg), { '57d0': ['10.0.0.0/8'] });
});

t.test('InMemoryWireGuard: private key, port, fwmark; snapshots are copies', async (t) => {
  const wg = new InMemoryWireGuard('cvu0');
  const unclamped = bytes('ff'.repeat(32));
  wg.apply({ privateKey: unclamped, listenPort: 51820, fwmark: 7, peers: [] });
  const s = wg.state();
  t.equal(hex(s.privateKey), 'f8' + 'ff'.repeat(30) + '7f', 'clamped as wireguard-go stores it');
  t.equal(s.listenPort, 51820);
  t.equal(s.fwmark, 7);
  s.privateKey![0] = 0;
  t.equal(wg.state().privateKey![0], 0xf8, 'the snapshot does not alias the device');
  wg.apply({ privateKey: bytes(ZERO), peers: [] });
  t.equal(wg.state().privateKey, null);
  wg.apply({ peers: [peerA()] });
  wg.setPeerStatistics(bytes(A_PUB), { rxBytes: 5n, txBytes: 6n, lastHandshake: { sec: 1, nsec: 2 }, endpoint: '192.0.2.1:9' });
  const p = wg.state().peers[0]!;
  t.same([p.rxBytes, p.txBytes, p.lastHandshake, p.endpoint], [5n, 6n, { sec: 1, nsec: 2 }, '192.0.2.1:9']);
  t.throws(() => wg.setPeerStatistics(bytes(B_PUB), { rxBytes: 1n }), { code: 'CVLAN_ERR_STATE' });
});

t.test('InMemoryWireGuard.apply is atomic and validates everything', async (t) => {
  const wg = new InMemoryWireGuard('cvu0');
  wg.apply({ listenPort: 1, peers: [peerA({ allowedIps: ['10.0.0.0/8'] })] });
  const before = wg.state();
  const bad: [string, WgDeviceUpdate][] = [
    ['bad second peer', { listenPort: 2, replacePeers: true, peers: [peerB(), peerA({ allowedIps: ['nope'] })] }],
    ['short key', { peers: [{ publicKey: new Uint8Array(31) }] }],
    ['short psk', { peers: [peerA({ presharedKey: new Uint8Array(8) })] }],
    ['short private key', { privateKey: new Uint8Array(16), peers: [] }],
    ['port', { listenPort: 65536, peers: [] }],
    ['fractional port', { listenPort: 1.5, peers: [] }],
    ['fwmark', { fwmark: -1, peers: [] }],
    ['endpoint', { peers: [peerA({ endpoint: 'example.com:1' })] }],
    ['keepalive', { peers: [peerA({ persistentKeepalive: 70000 })] }],
    ['removed prefix', { peers: [peerA({ removeAllowedIps: ['10.0.0.0/99'] })] }],
  ];
  for (const [name, u] of bad) {
    t.throws(() => wg.apply(u), { code: 'CVLAN_ERR_INVALID_ARG' }, name);
    t.same(wg.state(), before, `${name}: nothing changed`);
  }
});

t.test('set=1: 100,000 allowed_ip lines parse in linear time', async (t) => {
  // `wg set ... allowed-ips` with a large table; quadratic parsing held the event loop for minutes.
  const n = 100_000;
  const lines = [`public_key=${A_PUB}`, 'replace_allowed_ips=true'];
  for (let i = 0; i < n; i++) lines.push(`allowed_ip=10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}/32`);
  // The last line about a prefix wins also at scale: one added twice, one removed after being added.
  lines.push('allowed_ip=10.0.0.0/32', 'allowed_ip=-10.0.0.1/32');
  const t0 = performance.now();
  const u = parseSetRequest(lines);
  const ms = performance.now() - t0;
  t.equal(u.peers[0]!.allowedIps!.length, n, 'every prefix once');
  t.same(u.peers[0]!.removeAllowedIps, ['10.0.0.1/32']);
  t.ok(ms < 10_000, `parsed in ${ms.toFixed(0)} ms (quadratic parsing takes minutes here)`);
});
