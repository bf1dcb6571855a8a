// wg-quick files: parsing as wg/wg-quick read them (comments, case, whitespace, accumulating
// keys), the update `wg setconf` would apply, errors that name line and key without echoing
// keys, and writing (byte-exact `wg showconf` layout, round trip through the reference device).
import t from 'tap';
import { ConfigError } from '../../src/errors.js';
import { InMemoryWireGuard } from '../../src/wireguard/control.js';
import { formatWgQuick, parseWgQuick } from '../../src/wireguard/wgquick.js';

// Keys made with `wg genkey` / `wg pubkey` / `wg genpsk` for these tests only.
const PRIV = 'KMRqpdFPAcmkBveoSHTbc6D/3xMCnDAqTMgcaG451n0=';
const A_PUB = 'V1N6pxENHs0VjL/Ic+oSSeWdC9b2vgwXjl/uvb+UaG0=';
const B_PUB = 'V9DpOLzGq2m4OPvMFYJrp4JRe5xWHy8Gr4IaODtTQ0Y=';
const PSK = '+xT66wtMXkHLntCFWLb9Ve0+CYpvx3rIjp8+Ld0SIfM=';
const b64 = (k: Uint8Array | null | undefined): string | null => (k ? Buffer.from(k).toString('base64') : null);

const FILE = `# site A
[Interface]
privatekey = ${PRIV}   # trailing comment
ListenPort=51820
FwMark = 0x1f
Address = 10.0.0.1/24, fd00::1/64
Address = 192.0.2.7
DNS = 10.0.0.53, example.internal
MTU = 1420
Table = off
PreUp = echo pre
PostUp = iptables -A FORWARD -i %i -j ACCEPT
PostDown = iptables -D FORWARD -i %i -j ACCEPT
SaveConfig = false

[peer]
PublicKey = ${A_PUB}
PresharedKey = ${PSK}
AllowedIPs = 10.1.2.3/16, fd01::/64
allowedips = 192.0.2.9
Endpoint = 198.51.100.1:51820
PersistentKeepalive = 25

[Peer]
PublicKey=${B_PUB}
Endpoint = [2001:DB8::1]:51821
PersistentKeepalive = off
`;

t.test('a full file: WireGuard settings as `wg setconf` applies them, wg-quick settings surfaced', async (t) => {
  const { update, interface: iface } = parseWgQuick(FILE);
  t.equal(b64(update.privateKey), PRIV);
  t.equal(update.listenPort, 51820);
  t.equal(update.fwmark, 31);
  t.equal(update.replacePeers, true);
  t.equal(update.peers.length, 2);
  const [a, b] = update.peers;
  t.equal(b64(a!.publicKey), A_PUB);
  t.equal(b64(a!.presharedKey), PSK);
  t.same(a!.allowedIps, ['10.1.0.0/16', 'fd01::/64', '192.0.2.9/32'], 'accumulated, masked, bare address = host');
  t.equal(a!.replaceAllowedIps, true);
  t.equal(a!.endpoint, '198.51.100.1:51820');
  t.equal(a!.persistentKeepalive, 25);
  t.equal(b64(b!.publicKey), B_PUB);
  t.equal(b!.endpoint, '[2001:db8::1]:51821');
  t.equal(b!.persistentKeepalive, 0);
  t.same(b!.allowedIps, []);
  t.same(iface, {
    addresses: ['10.0.0.1/24', 'fd00::1/64', '192.0.2.7/32'],
    dns: ['10.0.0.53'],
    dnsSearch: ['example.internal'],
    mtu: 1420,
    table: 'off',
    preUp: ['echo pre'],
    postUp: ['iptables -A FORWARD -i %i -j ACCEPT'],
    preDown: [],
    postDown: ['iptables -D FORWARD -i %i -j ACCEPT'],
    saveConfig: false,
  });
  t.same(parseWgQuick('').update, { replacePeers: true, peers: [] }, 'an empty file removes every peer, as setconf');
  t.equal(parseWgQuick('[Interface]\r\nListenPort = 1\r\n').update.listenPort, 1, 'CRLF line ends');
});

t.test('errors name line and key, collect every problem, never echo keys', async (t) => {
  const secret = PRIV.slice(0, 30);
  const bad = `[Interface]
PrivateKey = ${secret}
ListenPort = 65536
Frobnicate = 1
MTU = 9
[Peer]
PublicKey = ${A_PUB}
AllowedIPs = 10.0.0.0/33, 10.0.0.0/8
Endpoint = vpn.example.com:51820
PersistentKeepalive = -1
ListenPort = 1
[Peer]
Endpoint = 192.0.2.1:1
[Unknown]
just a line
`;
  try {
    parseWgQuick(bad);
    t.fail('accepted');
  } catch (e) {
    t.ok(e instanceof ConfigError);
    const err = e as ConfigError;
    t.equal(err.code, 'CVLAN_ERR_CONFIG');
    t.same(
      err.issues.map((i) => i.path),
      [
        'line 2: PrivateKey',
        'line 3: ListenPort',
        'line 4: Frobnicate',
        'line 5: MTU',
        'line 8: AllowedIPs',
        'line 9: Endpoint',
        'line 10: PersistentKeepalive',
        'line 11: ListenPort',
        'line 12: [Peer]',
        'line 14',
        'line 15: just a line',
      ],
    );
    t.notMatch(err.message, secret.slice(0, 12), 'the key is not echoed');
    t.match(err.issues[8]!.reason, /PublicKey is missing/);
    t.match(err.issues[5]!.reason, /host names/);
  }
  const issues = (text: string): { path: string; reason: string }[] => {
    try {
      parseWgQuick(text);
    } catch (e) {
      if (e instanceof ConfigError) return e.issues;
    }
    return [];
  };
  t.match(issues('ListenPort = 1\n'), [{ path: 'line 1: ListenPort', reason: /outside/ }]);
  t.match(issues('[Interface]\n[Interface]\n'), [{ path: 'line 2: [Interface]' }]);
  t.match(issues(`[Peer]\nPublicKey = ${A_PUB.replace('=', 'A')}\n`), [{ path: 'line 2: PublicKey' }]);
  t.match(issues(`[Peer]\nPresharedKey = ${PSK.slice(0, 42)}B=\n`), [{ path: 'line 2: PresharedKey' }]);
  t.match(issues('[Interface]\nSaveConfig = yes\n'), [{ path: 'line 2: SaveConfig' }]);
  t.match(issues('[Interface]\nFwMark = 0x100000000\n'), [{ path: 'line 2: FwMark' }]);
  t.match(issues('[Interface]\nAddress = 10.0.0.1/40\n'), [{ path: 'line 2: Address' }]);
  t.match(issues('[Interface]\nDNS = 10.0.0.300\n'), [{ path: 'line 2: DNS' }]);
});

t.test('writing: the `wg showconf` layout, and a round trip through the reference device', async (t) => {
  const wg = new InMemoryWireGuard('cvuq0');
  const parsed = parseWgQuick(FILE);
  wg.apply(parsed.update);
  const text = formatWgQuick(wg.state());
  t.equal(
    text,
    `[Interface]
ListenPort = 51820
FwMark = 0x1f
PrivateKey = ${PRIV}

[Peer]
PublicKey = ${A_PUB}
PresharedKey = ${PSK}
AllowedIPs = 10.1.0.0/16, fd01::/64, 192.0.2.9/32
Endpoint = 198.51.100.1:51820
PersistentKeepalive = 25

[Peer]
PublicKey = ${B_PUB}
Endpoint = [2001:db8::1]:51821
`,
  );
  t.equal(formatWgQuick({ privateKey: null, listenPort: 0, fwmark: 0, peers: [] }), '[Interface]\n\n');
  const full = formatWgQuick(wg.state(), parsed.interface);
  t.match(full, /^\[Interface\]\nAddress = 10\.0\.0\.1\/24, fd00::1\/64, 192\.0\.2\.7\/32\nDNS = 10\.0\.0\.53, example\.internal\nMTU = 1420\nTable = off\nPreUp = echo pre\nPostUp = /);
  const again = parseWgQuick(full);
  t.same(again.interface, parsed.interface, 'wg-quick settings survive');
  const wg2 = new InMemoryWireGuard('cvuq1');
  wg2.apply(again.update);
  t.same(wg2.state(), wg.state(), 'the device state survives');
});
