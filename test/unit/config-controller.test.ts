// Controller JSON → desired state: every class of bad input names its field and reason, all
// issues come at once, and secrets never show in errors or in the printed state.
import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { ConfigError, type ConfigIssue } from '../../src/errors.js';
import { configVersion, loadDesiredState, loadStandalone, type LoadOptions } from '../../src/config/load.js';
import { disposeDesiredState, Secret, type DesiredState } from '../../src/config/model.js';
import { SMALL_ORDER_POINTS, proposalProblem } from '../../src/config/normalize.js';
import { genkey, pubkey } from '../../src/secrets/keys.js';
import { generateSealKeypair, seal } from '../../src/secrets/sealed.js';

const sodium = createRequire(import.meta.url)('sodium-native') as { crypto_scalarmult(q: Buffer, n: Buffer, p: Buffer): void };

const PSK = 'psk-that-must-never-be-printed-0123';
const EAP = 'eap-password-never-printed';
const WG_PRIV = genkey();
const WG_PUB = pubkey(WG_PRIV);
const PEER1 = pubkey(genkey());
const PEER2 = pubkey(genkey());
const PEER_PSK = genkey();

type Doc = Record<string, unknown>;

function tenantDoc(over: Doc = {}): Doc {
  return {
    vrouter_id: 'vr-1',
    tenant_id: 'acme',
    tunnels: [
      {
        id: 'site-a',
        type: 'ipsec',
        remote_id: 'site-a.example.net',
        remote_address: '192.0.2.10',
        local_id: 'vr-1.example.net',
        auth: { method: 'psk', psk: PSK },
        local_subnets: ['10.20.0.0/24'],
        remote_subnets: ['10.10.0.0/24'],
        proposals: { ike: ['aes256gcm16-prfsha256-x25519'], esp: ['aes256gcm16', 'aes256-sha256-ecp256-esn'] },
      },
    ],
    wireguard: { listen_port: 51820, private_key: WG_PRIV },
    wireguard_peers: [
      { name: 'agent-1', public_key: PEER1, allowed_ips: ['10.20.0.2/32', '2001:DB8:0:0::/64'], endpoint: '198.51.100.7:51820', preshared_key: PEER_PSK, persistent_keepalive: 25 },
      { public_key: PEER2, allowed_ips: ['10.20.0.0/24'] },
    ],
    tun: [{ name: 'cvacme0', addresses: ['10.30.0.1/24'], mtu: 1400, subnets: ['10.30.0.0/24'] }],
    ...over,
  };
}

function load(docs: unknown, more: Partial<LoadOptions> = {}): DesiredState {
  return loadDesiredState({ controllerDocs: docs, stateDir: null, ...more });
}

function issuesOf(fn: () => unknown): { err: ConfigError; issues: ConfigIssue[] } {
  try {
    fn();
  } catch (e) {
    if (e instanceof ConfigError) return { err: e, issues: e.issues };
    throw e;
  }
  throw new Error('expected a ConfigError');
}

/** The issue at exactly `path`, checked against `reason`. */
function hasIssue(t: Test, issues: ConfigIssue[], path: string, reason: RegExp): void {
  const i = issues.find((x) => x.path === path);
  t.ok(i, `an issue at ${path}`);
  if (i) t.match(i.reason, reason, `${path}: ${i.reason}`);
}

t.test('a valid tenant document normalizes into a frozen desired state', async (t) => {
  const s = load(tenantDoc());
  t.teardown(() => disposeDesiredState(s));
  t.equal(s.vrouterId, 'vr-1');
  t.equal(s.tenants.length, 1);
  const acme = s.tenants[0]!;
  t.equal(acme.id, 'acme');
  t.equal(acme.wireguard?.listenPort, 51820);
  t.equal(acme.wireguard?.publicKey, WG_PUB);
  t.equal(acme.wireguard?.publicKey, execFileSync('wg', ['pubkey'], { input: `${WG_PRIV}\n`, encoding: 'utf8' }).trim(), 'public key as `wg pubkey` derives it');
  t.same(acme.peers[0]!.allowedIps, ['10.20.0.2/32', '2001:db8::/64'], 'IPv6 in canonical (RFC 5952) text');
  t.equal(acme.peers[1]!.persistentKeepalive, 0, 'keepalive defaults to off');
  t.ok(acme.peers[0]!.presharedKey instanceof Secret);
  t.equal(acme.peers[0]!.presharedKey!.length, 32, 'preshared key held as 32 raw bytes');
  const tun = acme.tunnels[0]!;
  t.same(tun.espProposals, ['aes256gcm16', 'aes256-sha256-ecp256-esn']);
  t.equal(tun.auth.method === 'psk' && tun.auth.psk.text(), PSK, 'the PSK is there for whoever applies it');
  t.same(
    acme.routes.map((r) => `${r.prefix} ${r.via.kind}`),
    ['10.20.0.2/32 wireguard', '10.10.0.0/24 ipsec', '10.20.0.0/24 wireguard', '10.30.0.0/24 tun', '2001:db8::/64 wireguard'],
    'routes most specific first, IPv4 before IPv6',
  );
  t.equal(acme.tuns[0]!.mtu, 1400);
  t.ok(Object.isFrozen(s) && Object.isFrozen(acme.peers) && Object.isFrozen(acme.peers[0]!.allowedIps), 'deeply frozen');
  t.throws(() => {
    (acme.peers as unknown as unknown[]).push({});
  });
  t.equal(s.local.state.dir, '/var/lib/cvlan', 'local defaults without a TOML');
});

t.test('secrets never appear in JSON.stringify, util.inspect or String of the state', async (t) => {
  const s = load(tenantDoc());
  t.teardown(() => disposeDesiredState(s));
  const json = JSON.stringify(s);
  const shown = inspect(s, { depth: null, showHidden: true });
  for (const secret of [PSK, WG_PRIV, PEER_PSK, Buffer.from(PSK).toString('hex'), Buffer.from(PSK).toString('base64')]) {
    t.notOk(json.includes(secret), 'not in JSON');
    t.notOk(shown.includes(secret), 'not in inspect');
  }
  t.match(json, /"psk":"<redacted>"/);
  t.match(shown, /<redacted>/);
  const auth = s.tenants[0]!.tunnels[0]!.auth;
  t.equal(auth.method === 'psk' && `${auth.psk}`, '<redacted>', 'template literal');
  t.equal(auth.method === 'psk' && String(auth.psk), '<redacted>');
  disposeDesiredState(s);
  t.ok(auth.method === 'psk' && auth.psk.disposed, 'disposed');
  t.throws(() => auth.method === 'psk' && auth.psk.text(), /disposed/);
});

t.test('every bad-input class names its field and reason', async (t) => {
  const cases: { name: string; doc: Doc; path: string; reason: RegExp; code?: string }[] = [
    { name: 'unknown field', doc: tenantDoc({ tunnel: [] }), path: 'tunnel', reason: /unknown field; expected one of: .*tunnels/ },
    { name: 'unknown nested field', doc: tenantDoc({ wireguard: { listen_port: 51820, privat_key: 'x' } }), path: 'wireguard.privat_key', reason: /unknown field/ },
    { name: 'wrong type', doc: tenantDoc({ tunnels: {} }), path: 'tunnels', reason: /expected an array, got an object/ },
    { name: 'missing tenant id', doc: tenantDoc({ tenant_id: undefined }), path: 'tenant_id', reason: /missing/ },
    { name: 'bad tenant id', doc: tenantDoc({ tenant_id: '../etc' }), path: 'tenant_id', reason: /"\.\.\/etc" is not valid; expected 1-63 characters/ },
    { name: 'public key not base64', doc: withPeer({ public_key: 'hello' }), path: 'wireguard_peers[0].public_key', reason: /"hello" is not a public key; expected 44 characters of base64/ },
    { name: 'public key all zero', doc: withPeer({ public_key: Buffer.alloc(32).toString('base64') }), path: 'wireguard_peers[0].public_key', reason: /small order/ },
    { name: 'public key of order 8', doc: withPeer({ public_key: Buffer.from(SMALL_ORDER_POINTS[2]!, 'hex').toString('base64') }), path: 'wireguard_peers[0].public_key', reason: /small order/ },
    {
      name: 'public key p (non-canonical zero) with bit 255 set',
      doc: withPeer({ public_key: Buffer.from(SMALL_ORDER_POINTS[5]!.slice(0, 62) + 'ff', 'hex').toString('base64') }),
      path: 'wireguard_peers[0].public_key',
      reason: /small order/,
    },
    { name: 'host bits set', doc: withPeer({ allowed_ips: ['10.20.0.5/24'] }), path: 'wireguard_peers[0].allowed_ips[0]', reason: /"10\.20\.0\.5\/24" has host bits set; the prefix is "10\.20\.0\.0\/24"/ },
    { name: 'not a CIDR', doc: withPeer({ allowed_ips: ['10.20.0.5'] }), path: 'wireguard_peers[0].allowed_ips[0]', reason: /is not a prefix; expected address\/length/ },
    { name: 'prefix too long', doc: withPeer({ allowed_ips: ['10.0.0.0/33'] }), path: 'wireguard_peers[0].allowed_ips[0]', reason: /out of range; expected 0\.\.32/ },
    { name: 'bad endpoint', doc: withPeer({ endpoint: '198.51.100.7' }), path: 'wireguard_peers[0].endpoint', reason: /expected "host:port"/ },
    { name: 'endpoint port 0', doc: withPeer({ endpoint: 'peer.example:0' }), path: 'wireguard_peers[0].endpoint', reason: /port 1\.\.65535/ },
    { name: 'keepalive range', doc: withPeer({ persistent_keepalive: 70000 }), path: 'wireguard_peers[0].persistent_keepalive', reason: /70000 is not valid; expected an integer 0\.\.65535 \(seconds/ },
    { name: 'preshared key not a key', doc: withPeer({ preshared_key: 'short-secret-value' }), path: 'wireguard_peers[0].preshared_key', reason: /not a 32-byte key in base64 \(value not shown: secret\)/ },
    {
      name: 'identical prefix on two peers of one tenant',
      doc: tenantDoc({ wireguard_peers: [{ public_key: PEER1, allowed_ips: ['10.20.0.0/24'] }, { public_key: PEER2, allowed_ips: ['10.20.0.0/24'] }] }),
      path: 'wireguard_peers[1].allowed_ips[0]',
      reason: /10\.20\.0\.0\/24 is already routed in this tenant by wireguard_peers\[0\]\.allowed_ips\[0\]; .*nested prefixes are allowed/,
    },
    {
      name: 'identical prefix as a peer and a tunnel',
      doc: tenantDoc({ wireguard_peers: [{ public_key: PEER1, allowed_ips: ['10.10.0.0/24'] }] }),
      path: 'tunnels[0].remote_subnets[0]',
      reason: /already routed in this tenant by wireguard_peers\[0\]\.allowed_ips\[0\]/,
    },
    { name: 'same prefix twice on one peer', doc: withPeer({ allowed_ips: ['10.9.0.0/16', '10.9.0.0/16'] }), path: 'wireguard_peers[0].allowed_ips[1]', reason: /listed twice/ },
    {
      name: 'duplicate peer key',
      doc: tenantDoc({ wireguard_peers: [{ public_key: PEER1, allowed_ips: ['10.20.0.2/32'] }, { public_key: PEER1, allowed_ips: ['10.20.0.3/32'] }] }),
      path: 'wireguard_peers[1].public_key',
      reason: /already the peer at wireguard_peers\[0\]/,
    },
    { name: "peer with the tenant's own key", doc: withPeer({ public_key: WG_PUB }), path: 'wireguard_peers[0].public_key', reason: /own WireGuard public key/ },
    { name: 'duplicate tunnel id', doc: tenantDoc({ tunnels: [tunnel(), tunnel({ remote_id: 'other', remote_subnets: ['10.11.0.0/24'] })] }), path: 'tunnels[1].id', reason: /tunnel id "site-a" is already used by tunnels\[0\]/ },
    { name: 'tunnel type', doc: tenantDoc({ tunnels: [tunnel({ type: 'gre' })] }), path: 'tunnels[0].type', reason: /"gre" is not supported; expected "ipsec"/ },
    { name: 'auth method', doc: tenantDoc({ tunnels: [tunnel({ auth: { method: 'rsa' } })] }), path: 'tunnels[0].auth.method', reason: /expected "psk", "pubkey" or "eap"/ },
    { name: 'short psk', doc: tenantDoc({ tunnels: [tunnel({ auth: { method: 'psk', psk: 'tiny' } })] }), path: 'tunnels[0].auth.psk', reason: /4 bytes, shorter than 16 \(value not shown: secret\)/ },
    { name: 'eap method', doc: tenantDoc({ tunnels: [tunnel({ auth: { method: 'eap', eap_method: 'md5', eap_identity: 'u', eap_secret: EAP, eap_role: 'client', ca: 'file:/etc/cvlan/ca.pem' } })] }), path: 'tunnels[0].auth.eap_method', reason: /expected "mschapv2"/ },
    { name: 'eap server without certificate', doc: tenantDoc({ tunnels: [tunnel({ auth: { method: 'eap', eap_identity: 'u', eap_secret: EAP } })] }), path: 'tunnels[0].auth.certificate', reason: /EAP server .* authenticates with a certificate/ },
    { name: 'pubkey with a non-PEM certificate', doc: tenantDoc({ tunnels: [tunnel({ auth: { method: 'pubkey', certificate: 'hello', private_key: 'file:/k.pem', ca: 'file:/ca.pem' } })] }), path: 'tunnels[0].auth.certificate', reason: /neither a PEM certificate/ },
    { name: 'unknown cipher', doc: tenantDoc({ tunnels: [tunnel({ proposals: { ike: ['aes256gcm16-prfsha256-modp1024'] } })] }), path: 'tunnels[0].proposals.ike[0]', reason: /unsupported algorithm "modp1024".*supported IKE tokens/ },
    { name: 'AEAD with integrity', doc: tenantDoc({ tunnels: [tunnel({ proposals: { esp: ['aes128gcm16-sha256'] } })] }), path: 'tunnels[0].proposals.esp[0]', reason: /carry their own integrity; remove sha256/ },
    { name: 'CBC without integrity', doc: tenantDoc({ tunnels: [tunnel({ proposals: { esp: ['aes128'] } })] }), path: 'tunnels[0].proposals.esp[0]', reason: /need an integrity algorithm/ },
    { name: 'IKE without PRF', doc: tenantDoc({ tunnels: [tunnel({ proposals: { ike: ['chacha20poly1305-x25519'] } })] }), path: 'tunnels[0].proposals.ike[0]', reason: /needs a PRF/ },
    { name: 'empty subnets', doc: tenantDoc({ tunnels: [tunnel({ local_subnets: [] })] }), path: 'tunnels[0].local_subnets', reason: /at least one entry/ },
    { name: 'dpd delay negative', doc: tenantDoc({ tunnels: [tunnel({ dpd_delay: -1 })] }), path: 'tunnels[0].dpd_delay', reason: /expected an integer 0\.\.3600/ },
    { name: 'rekey too soon', doc: tenantDoc({ tunnels: [tunnel({ rekey: { child_seconds: 5 } })] }), path: 'tunnels[0].rekey.child_seconds', reason: /expected an integer 10\.\./ },
    { name: 'rekey unknown field', doc: tenantDoc({ tunnels: [tunnel({ rekey: { child_minutes: 5 } })] }), path: 'tunnels[0].rekey.child_minutes', reason: /unknown/ },
    { name: 'rekey bytes not a number', doc: tenantDoc({ tunnels: [tunnel({ rekey: { child_bytes: '1G' } })] }), path: 'tunnels[0].rekey.child_bytes', reason: /expected an integer/ },
    { name: 'remote address with port', doc: tenantDoc({ tunnels: [tunnel({ remote_address: '192.0.2.1:500' })] }), path: 'tunnels[0].remote_address', reason: /not a host name or IP address/ },
    { name: 'TUN name too long', doc: tenantDoc({ tun: [{ name: 'a-very-long-interface', subnets: [] }] }), path: 'tun[0].name', reason: /1-15/ },
    { name: 'TUN mtu', doc: tenantDoc({ tun: [{ name: 'cv0', mtu: 100 }] }), path: 'tun[0].mtu', reason: /576\.\.65535 \(bytes\)/ },
    { name: 'WireGuard on the IKE port', doc: tenantDoc({ wireguard: { listen_port: 4500, private_key: WG_PRIV } }), path: 'wireguard.listen_port', reason: /kept for IKE/ },
    { name: 'bad private key', doc: tenantDoc({ wireguard: { listen_port: 51820, private_key: 'nope' } }), path: 'wireguard.private_key', reason: /value not shown: secret/ },
    { name: 'rule to an unknown tenant', doc: tenantDoc({ rules: [{ from_tenant: 'acme', from_prefix: '10.20.0.0/24', to_tenant: 'globex', to_prefix: '10.0.0.0/8' }] }), path: 'rules[0].to_tenant', reason: /unknown tenant "globex"; known tenants: "acme"/ },
    { name: 'rule with mixed families', doc: tenantDoc({ rules: [{ from_tenant: 'acme', from_prefix: '10.20.0.0/24', to_tenant: 'acme', to_prefix: '::/0' }] }), path: 'rules[0].to_prefix', reason: /different address families/ },
    { name: 'test-only transport', doc: tenantDoc({ tunnels: [tunnel({ type: 'plain-insecure-test-only' })] }), path: 'tunnels[0].type', reason: /for tests and benchmarks only/, code: 'CVLAN_ERR_CONFIG_TEST_ONLY' },
    { name: 'placeholder left in', doc: withPeer({ public_key: '${AGENT_PUBLIC_KEY}' }), path: 'wireguard_peers[0].public_key', reason: /placeholder \$\{AGENT_PUBLIC_KEY\} was not substituted/ },
  ];
  for (const c of cases) {
    const { err, issues } = issuesOf(() => load(c.doc));
    t.equal(err.code, c.code ?? 'CVLAN_ERR_CONFIG', `${c.name}: code`);
    hasIssue(t, issues, c.path, c.reason);
    t.equal(issues.filter((i) => i.path === c.path).length, 1, `${c.name}: reported once`);
  }
});

function tunnel(over: Doc = {}): Doc {
  return { ...(tenantDoc().tunnels as Doc[])[0], ...over };
}
function withPeer(over: Doc): Doc {
  return tenantDoc({ wireguard_peers: [{ public_key: PEER1, allowed_ips: ['10.20.0.2/32'], ...over }] });
}

t.test('a PSK shorter than 16 bytes only with allow_weak_psk, per tunnel, marked weak', async (t) => {
  const base = (tenantDoc().tunnels as Doc[])[0]!;
  const short = 'legacy12'; // 8 bytes, as common cloud gateways accept
  const s = load(
    tenantDoc({
      tunnels: [
        { ...base, auth: { method: 'psk', psk: short, allow_weak_psk: true } },
        { ...base, id: 'site-b', remote_id: 'b', remote_subnets: ['10.11.0.0/24'], auth: { method: 'psk', psk: PSK, allow_weak_psk: true } },
        { ...base, id: 'site-c', remote_id: 'c', remote_subnets: ['10.12.0.0/24'] },
      ],
    }),
  );
  t.teardown(() => disposeDesiredState(s));
  const [a, b, c] = s.tenants[0]!.tunnels;
  t.match(a?.auth, { method: 'psk', weak: true });
  t.equal(a?.auth.method === 'psk' && a.auth.psk.text(), short, 'the short key is kept as given');
  t.match(b?.auth, { method: 'psk', weak: false }, 'allowed but long enough: not weak');
  t.match(c?.auth, { method: 'psk', weak: false });

  const refused = issuesOf(() => load(tenantDoc({ tunnels: [tunnel({ auth: { method: 'psk', psk: short } })] }))).issues;
  t.equal(refused.length, 1, 'without the flag the safe default holds');
  t.equal(refused[0]?.path, 'tunnels[0].auth.psk');
  t.match(refused[0]?.reason, /8 bytes, shorter than 16 .*allow_weak_psk/, 'the reason says how to accept it');
  t.notMatch(refused[0]?.reason, new RegExp(short), 'without showing the key');

  const bad = issuesOf(() => load(tenantDoc({ tunnels: [tunnel({ auth: { method: 'psk', psk: short, allow_weak_psk: 'yes' } })] }))).issues;
  t.ok(bad.some((i) => i.path === 'tunnels[0].auth.allow_weak_psk' && /expected true or false/.test(i.reason)), 'the flag is a boolean');
  const empty = issuesOf(() => load(tenantDoc({ tunnels: [tunnel({ auth: { method: 'psk', psk: '', allow_weak_psk: true } })] }))).issues;
  t.ok(empty.some((i) => i.path === 'tunnels[0].auth.psk'), 'an empty key stays refused');
  const onPubkey = issuesOf(() => load(tenantDoc({ tunnels: [tunnel({ auth: { method: 'pubkey', allow_weak_psk: true } })] }))).issues;
  t.ok(onPubkey.some((i) => i.path === 'tunnels[0].auth.allow_weak_psk'), 'only a PSK tunnel takes the flag');
});

t.test('dpd_delay and rekey reach the tunnel spec; absent they stay undefined (defaults apply)', async (t) => {
  const base = (tenantDoc().tunnels as Doc[])[0]!;
  const s = load(
    tenantDoc({
      tunnels: [
        { ...base, dpd_delay: 5, rekey: { ike_seconds: 600, child_seconds: 60, child_bytes: 1_000_000_000, child_packets: 0 } },
        { ...base, id: 'site-b', remote_id: 'b', remote_subnets: ['10.11.0.0/24'] },
      ],
    }),
  );
  t.teardown(() => disposeDesiredState(s));
  const [a, b] = s.tenants[0]!.tunnels;
  t.match(a, { dpdDelay: 5, ikeRekeySeconds: 600, childRekeySeconds: 60, childRekeyBytes: 1_000_000_000, childRekeyPackets: 0 });
  t.equal(b?.dpdDelay, undefined);
  t.equal(b?.childRekeySeconds, undefined);
});

t.test('nested prefixes in one tenant are allowed (longest prefix wins)', async (t) => {
  const s = load(tenantDoc({ wireguard_peers: [{ public_key: PEER1, allowed_ips: ['10.0.0.0/16'] }, { public_key: PEER2, allowed_ips: ['10.0.1.0/24'] }] }));
  t.teardown(() => disposeDesiredState(s));
  t.same(s.tenants[0]!.routes.filter((r) => r.via.kind === 'wireguard').map((r) => r.prefix), ['10.0.1.0/24', '10.0.0.0/16']);
});

t.test('all issues are reported at once, in one ConfigError', async (t) => {
  const doc = tenantDoc({
    tenant_id: 7,
    extra: true,
    tunnels: [tunnel({ local_subnets: ['10.20.0.1/24'], proposals: { ike: ['foo'], esp: ['aes256gcm16'] } })],
    wireguard_peers: [
      { public_key: 'x', allowed_ips: ['10.1.0.0/16'] },
      { public_key: PEER2, allowed_ips: ['300.1.0.0/16'], persistent_keepalive: -1 },
    ],
  });
  const { issues, err } = issuesOf(() => load(doc));
  t.same(
    issues.map((i) => i.path).sort(),
    [
      'extra',
      'tenant_id',
      'tunnels[0].local_subnets[0]',
      'tunnels[0].proposals.ike[0]',
      'wireguard_peers[0].public_key',
      'wireguard_peers[1].allowed_ips[0]',
      'wireguard_peers[1].persistent_keepalive',
    ],
  );
  t.match(err.message, /^invalid configuration: /);
  t.notMatch(err.message, PSK);
});

t.test('secrets never appear in issues, messages or serialized errors', async (t) => {
  const kp = generateSealKeypair();
  const other = generateSealKeypair();
  t.teardown(() => (kp.secretKey.dispose(), other.secretKey.dispose()));
  const shortPsk = 'tiny-psk-value';
  const doc = tenantDoc({
    tunnels: [
      tunnel({ auth: { method: 'psk', psk: shortPsk } }),
      tunnel({ id: 'site-b', remote_id: 'b', remote_subnets: ['10.11.0.0/24'], auth: { method: 'eap', eap_identity: 'u', eap_secret: seal(other.publicKey, EAP), eap_role: 'client', ca: 'file:/ca.pem' } }),
    ],
    wireguard: { listen_port: 51820, private_key: 'an-invalid-private-key-text' },
    wireguard_peers: [{ public_key: PEER1, allowed_ips: ['10.20.0.2/32'], preshared_key: 'bad-preshared-key-text' }],
    bogus: 1,
  });
  const { err, issues } = issuesOf(() => load(doc, { secretsKey: kp }));
  hasIssue(t, issues, 'tunnels[1].auth.eap_secret', /cannot decrypt: .*does not open with this vrouter's secrets key/);
  t.equal(err.code, 'CVLAN_ERR_CONFIG');
  const everything = [err.message, JSON.stringify(err), JSON.stringify(issues), inspect(err, { depth: null }), String(err.stack)].join('\n');
  for (const s of [shortPsk, EAP, 'an-invalid-private-key-text', 'bad-preshared-key-text']) t.notOk(everything.includes(s), `no trace of a secret (${s.length} chars)`);
});

t.test('sealed secrets open with the vrouter key; without a key they are a clear issue', async (t) => {
  const kp = generateSealKeypair();
  t.teardown(() => kp.secretKey.dispose());
  const doc = tenantDoc({
    tunnels: [tunnel({ auth: { method: 'psk', psk: seal(kp.publicKey, PSK) } })],
    wireguard: { listen_port: 51820, private_key: seal(kp.publicKey, WG_PRIV) },
    wireguard_peers: [{ public_key: PEER1, allowed_ips: ['10.20.0.2/32'], preshared_key: seal(kp.publicKey, Buffer.from(PEER_PSK, 'base64')) }],
  });
  const s = load(doc, { secretsKey: kp });
  t.teardown(() => disposeDesiredState(s));
  const acme = s.tenants[0]!;
  const auth = acme.tunnels[0]!.auth;
  t.equal(auth.method === 'psk' && auth.psk.text(), PSK);
  t.equal(auth.method === 'psk' && auth.psk.origin, 'sealed');
  t.equal(acme.wireguard?.publicKey, WG_PUB, 'sealed base64 private key');
  t.equal(acme.peers[0]!.presharedKey!.use((b) => b.toString('base64')), PEER_PSK, 'sealed raw 32-byte preshared key');

  const { issues } = issuesOf(() => load(doc));
  hasIssue(t, issues, 'tunnels[0].auth.psk', /sealed \("encrypted:\.\.\."\) but no secrets key was given/);
  hasIssue(t, issues, 'wireguard.private_key', /no secrets key/);
});

t.test('multi-tenant: overlapping prefixes across tenants are accepted; shared names and ports are not', async (t) => {
  const acme = tenantDoc();
  const globex = tenantDoc({
    tenant_id: 'globex',
    tunnels: [tunnel({ id: 'globex-site', remote_id: 'globex-site.example.net' })],
    wireguard: { listen_port: 51821 },
    wireguard_peers: [{ public_key: PEER1, allowed_ips: ['10.20.0.2/32', '10.20.0.0/24'] }],
    tun: [{ name: 'cvglobex0', subnets: ['10.30.0.0/24'] }],
  });
  const rules = [{ from_tenant: 'acme', from_prefix: '10.20.0.0/24', to_tenant: 'globex', to_prefix: '10.30.0.0/24' }];
  const s = load({ vrouter_id: 'vr-1', tenants: [acme, globex], rules });
  t.teardown(() => disposeDesiredState(s));
  t.same(s.tenants.map((x) => x.id), ['acme', 'globex']);
  t.same(s.rules, [{ fromTenant: 'acme', fromPrefix: '10.20.0.0/24', toTenant: 'globex', toPrefix: '10.30.0.0/24' }]);
  t.equal(s.tenants[1]!.wireguard?.privateKey, undefined, 'no key in the document and no state dir: left to the vrouter');

  // The same shapes, but colliding where the vrouter is one namespace.
  const clash = tenantDoc({ tenant_id: 'globex', tun: [{ name: 'cvacme0' }], wireguard: { listen_port: 51820, private_key: genkey() } });
  const { issues } = issuesOf(() => load({ tenants: [acme, clash, tenantDoc({ vrouter_id: 'vr-2', tunnels: [], wireguard_peers: [], wireguard: undefined, tun: [] })] }));
  hasIssue(t, issues, 'tenants[1].tunnels[0].id', /already used by tenants\[0\]\.tunnels\[0\]/);
  hasIssue(t, issues, 'tenants[1].tun[0].name', /already defined at tenants\[0\]\.tun\[0\]/);
  hasIssue(t, issues, 'tenants[1].wireguard.listen_port', /UDP 51820 is already the WireGuard port of tenants\[0\]\.wireguard\.listen_port/);
  hasIssue(t, issues, 'tenants[1].tunnels[0].remote_id', /charon could not tell the tunnels apart/);
  hasIssue(t, issues, 'tenants[2].tenant_id', /tenant "acme" is already defined at tenants\[0\]/);
  hasIssue(t, issues, 'tenants[2].vrouter_id', /"vr-2" differs from "vr-1"/);
  // A peer key may appear in two tenants (an agent in two meshes): no issue for it.
  t.notOk(issues.some((i) => i.path.endsWith('public_key')));
});

t.test('the path names the document as written: wrapper, array and several documents', async (t) => {
  const bad = tenantDoc({ tenant_id: 'globex', tunnels: [], tun: [], wireguard: { listen_port: 51821 }, wireguard_peers: [{ public_key: 'AAAA', allowed_ips: [] }] });
  hasIssue(t, issuesOf(() => load({ tenants: [tenantDoc(), bad] })).issues, 'tenants[1].wireguard_peers[0].public_key', /not a public key/);
  hasIssue(t, issuesOf(() => load([[tenantDoc(), bad]])).issues, '[1].wireguard_peers[0].public_key', /not a public key/);
  hasIssue(t, issuesOf(() => load([tenantDoc(), bad])).issues, 'docs[1].wireguard_peers[0].public_key', /not a public key/);
  hasIssue(t, issuesOf(() => load(['text'])).issues, '(document)', /expected a tenant document/);
  // A rule in a tenant's document must involve that tenant.
  const third = tenantDoc({ tenant_id: 'initech', tunnels: [], tun: [], wireguard: { listen_port: 51822 }, wireguard_peers: [], rules: [{ from_tenant: 'acme', from_prefix: '10.0.0.0/8', to_tenant: 'globex', to_prefix: '10.0.0.0/8' }] });
  const good = tenantDoc({ tenant_id: 'globex', tunnels: [], tun: [], wireguard: { listen_port: 51821 }, wireguard_peers: [] });
  hasIssue(t, issuesOf(() => load({ tenants: [tenantDoc(), good, third] })).issues, 'tenants[2].rules[0]', /must have "initech" as from_tenant or to_tenant/);
});

t.test('configVersion: stable, order-independent, sensitive to secrets without revealing them', async (t) => {
  const kp = generateSealKeypair();
  t.teardown(() => kp.secretKey.dispose());
  const a = load(tenantDoc(), { secretsKey: kp });
  const reordered = Object.fromEntries(Object.entries(tenantDoc()).reverse());
  const b = load(reordered, { secretsKey: kp });
  const c = load(tenantDoc({ tunnels: [tunnel({ auth: { method: 'psk', psk: `${PSK}-changed` } })] }), { secretsKey: kp });
  t.teardown(() => [a, b, c].forEach(disposeDesiredState));
  t.match(configVersion(a), /^[0-9a-f]{64}$/);
  t.equal(configVersion(a), configVersion(b), 'same content, other key order: same version');
  t.not(configVersion(a), configVersion(c), 'a changed PSK changes the version');
  const sealedAgain = load(tenantDoc({ tunnels: [tunnel({ auth: { method: 'psk', psk: seal(kp.publicKey, PSK) } })] }), { secretsKey: kp });
  t.teardown(() => disposeDesiredState(sealedAgain));
  t.equal(configVersion(sealedAgain), configVersion(a), 'the same PSK sealed instead of plain: same version (same effect)');
  t.notOk(configVersion(a).includes(Buffer.from(PSK).toString('hex')));
});

t.test('missing WireGuard keys are generated once and kept in the state dir (0600)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cvlan-config-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const doc = tenantDoc({ wireguard: { listen_port: 51820 } });
  const a = load(doc, { stateDir: dir });
  const b = load(doc, { stateDir: dir });
  t.teardown(() => [a, b].forEach(disposeDesiredState));
  const file = join(dir, 'wireguard', 'acme.key');
  t.equal(statSync(file).mode & 0o777, 0o600);
  const text = readFileSync(file, 'utf8').trim();
  t.equal(a.tenants[0]!.wireguard?.publicKey, execFileSync('wg', ['pubkey'], { input: `${text}\n`, encoding: 'utf8' }).trim());
  t.equal(b.tenants[0]!.wireguard?.publicKey, a.tenants[0]!.wireguard?.publicKey, 'same key on reload');
  t.equal(a.tenants[0]!.wireguard?.privateKey?.origin, 'state');
});

t.test('the small-order list is what X25519 itself refuses', async (t) => {
  const scalar = Buffer.from(genkey(), 'base64');
  for (const hex of SMALL_ORDER_POINTS) {
    t.throws(() => sodium.crypto_scalarmult(Buffer.alloc(32), scalar, Buffer.from(hex, 'hex')), `libsodium refuses ${hex.slice(0, 8)}...`);
  }
  t.doesNotThrow(() => sodium.crypto_scalarmult(Buffer.alloc(32), scalar, Buffer.from(PEER1, 'base64')));
});

t.test('proposal grammar', async (t) => {
  for (const ok of ['aes128gcm16-prfsha256-ecp256', 'chacha20poly1305-prfsha384-x25519-ecp384', 'aes256-sha384-ecp384', 'aes128-sha512-prfsha256-x25519', 'AES256GCM16-PRFSHA256-X25519']) {
    t.equal(proposalProblem('ike', ok), undefined, `IKE ${ok}`);
  }
  for (const ok of ['aes128gcm16', 'chacha20poly1305-x25519', 'aes256-sha512-noesn', 'aes128-sha256-esn-noesn', 'aes256gcm16-ecp384-esn']) {
    t.equal(proposalProblem('esp', ok), undefined, `ESP ${ok}`);
  }
  t.match(proposalProblem('ike', 'aes256-sha512-x25519'), /needs a PRF/, 'sha512 would derive prfsha512, which is not offered');
  t.match(proposalProblem('ike', 'aes256gcm16-prfsha256'), /no key exchange group/);
  t.match(proposalProblem('esp', 'aes256gcm16-prfsha256'), /unsupported algorithm "prfsha256"/);
  t.match(proposalProblem('ike', 'aes256gcm16-prfsha256-x25519-esn'), /unsupported algorithm "esn"/);
  t.match(proposalProblem('esp', 'aes128gcm16-aes256'), /mixes AEAD and CBC/);
  t.match(proposalProblem('esp', 'aes128gcm16-aes128gcm16'), /appears twice/);
  t.match(proposalProblem('esp', '3des-sha1'), /unsupported algorithm "3des"/);
});

t.test('loadStandalone reads the file; JSON errors carry the position', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cvlan-config-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const { writeFileSync } = await import('node:fs');
  const good = join(dir, 'tenant.json');
  writeFileSync(good, JSON.stringify(tenantDoc({ wireguard_peers: [{ public_key: '${PEER}', allowed_ips: ['10.20.0.9/32'] }] })));
  const s = loadStandalone(good, { stateDir: null, vars: { PEER: PEER2 } });
  t.teardown(() => disposeDesiredState(s));
  t.equal(s.tenants[0]!.peers[0]!.publicKey, PEER2);
  const broken = join(dir, 'broken.json');
  writeFileSync(broken, '{\n  "tenant_id": "acme",\n  oops\n}');
  hasIssue(t, issuesOf(() => loadStandalone(broken, { stateDir: null })).issues, broken, /not valid JSON: .*(position|line)/);
  hasIssue(t, issuesOf(() => loadStandalone(join(dir, 'missing.json'), { stateDir: null })).issues, join(dir, 'missing.json'), /cannot read/);
});

t.test('pubkey and EAP auth with real PEM material (made by openssl)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cvlan-pem-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/CN=vr-1.example.net', '-days', '2',
    '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
  const cert = readFileSync(join(dir, 'cert.pem'), 'utf8');
  const key = readFileSync(join(dir, 'key.pem'), 'utf8');
  const kp = generateSealKeypair();
  t.teardown(() => kp.secretKey.dispose());
  const s = load(
    tenantDoc({
      tunnels: [
        tunnel({ auth: { method: 'pubkey', certificate: cert, private_key: seal(kp.publicKey, key), ca: 'file:/etc/cvlan/ca.pem' } }),
        tunnel({ id: 'eap-users', remote_id: '%any', remote_subnets: ['10.99.0.0/24'], auth: { method: 'eap', eap_identity: 'alice', eap_secret: EAP, certificate: cert, private_key: key } }),
      ],
    }),
    { secretsKey: kp },
  );
  t.teardown(() => disposeDesiredState(s));
  const [pk, eap] = s.tenants[0]!.tunnels.map((x) => x.auth);
  t.ok(pk?.method === 'pubkey' && pk.privateKey.kind === 'pem' && pk.privateKey.pem.text() === key, 'sealed PEM key opened');
  t.same(pk?.method === 'pubkey' && pk.ca, { kind: 'file', path: '/etc/cvlan/ca.pem' });
  t.ok(eap?.method === 'eap' && eap.role === 'server' && eap.eapMethod === 'mschapv2' && eap.eapSecret.text() === EAP);
  const json = JSON.stringify(s);
  t.notOk(json.includes('PRIVATE KEY'), 'no private key in JSON');
  t.ok(json.includes('BEGIN CERTIFICATE'), 'certificates are not secrets');

  const broken = key.replace(/\n[A-Za-z0-9+/]{10}/, '\nAAAAAAAAAA');
  const { issues, err } = issuesOf(() => load(tenantDoc({ tunnels: [tunnel({ auth: { method: 'pubkey', certificate: cert.replace('MII', 'MIX'), private_key: broken, ca: cert } })] })));
  hasIssue(t, issues, 'tunnels[0].auth.certificate', /does not parse/);
  hasIssue(t, issues, 'tunnels[0].auth.private_key', /does not parse .*value not shown: secret/);
  t.notOk(err.message.includes(broken.split('\n')[1]!), 'no key material in the message');
});
