// Local TOML overrides, the embedded demo document, and the two sources validated together.
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, type ConfigIssue } from '../../src/errors.js';
import { defaultLocalConfig, loadLocalToml, parseLocalToml } from '../../src/config/local.js';
import { DEMO_PLACEHOLDERS, demoDefaultDocument, loadDemoDefault, loadDesiredState } from '../../src/config/load.js';
import { disposeDesiredState } from '../../src/config/model.js';
import { genkey, pubkey } from '../../src/secrets/keys.js';

function issuesOf(fn: () => unknown): { err: ConfigError; issues: ConfigIssue[] } {
  try {
    fn();
  } catch (e) {
    if (e instanceof ConfigError) return { err: e, issues: e.issues };
    throw e;
  }
  throw new Error('expected a ConfigError');
}

t.test('defaults', async (t) => {
  const c = defaultLocalConfig();
  t.same(c, {
    controller: { pollInterval: 30, statusInterval: 60, backoffMax: 60 },
    network: {},
    ipsec: { backend: 'strongswan', strongswanSocket: '/run/cvlan/charon.vici', charonPath: '/usr/lib/ipsec/charon', espEncapsulation: 'udp' },
    performance: { workerThreads: availableParallelism() },
    admin: { socket: '/run/cvlan/admin.sock' },
    state: { dir: '/var/lib/cvlan' },
  });
});

t.test('every key', async (t) => {
  const c = parseLocalToml(`
[controller]
url = "https://controller.example.net/api"
token_file = "/etc/cvlan/controller.token"
poll_interval = 15

[network]
public_interface = "eth0"
private_interface = "eth1"
listen_address = "2001:db8::1"

[ipsec]
backend = "strongswan"
strongswan_socket = "/run/cvlan/vici"
charon_path = "/usr/libexec/ipsec/charon"
esp_encapsulation = "auto"

[performance]
worker_threads = 4

[admin]
socket = false
tcp = "127.0.0.1:9180"
token_file = "/etc/cvlan/admin.token"

[state]
dir = "/srv/cvlan"
`);
  t.same(c, {
    controller: { url: 'https://controller.example.net/api', tokenFile: '/etc/cvlan/controller.token', pollInterval: 15, statusInterval: 60, backoffMax: 60 },
    network: { publicInterface: 'eth0', privateInterface: 'eth1', listenAddress: '2001:db8::1' },
    ipsec: { backend: 'strongswan', strongswanSocket: '/run/cvlan/vici', charonPath: '/usr/libexec/ipsec/charon', espEncapsulation: 'auto' },
    performance: { workerThreads: 4 },
    admin: { socket: null, tcp: { host: '127.0.0.1', port: 9180 }, tokenFile: '/etc/cvlan/admin.token' },
    state: { dir: '/srv/cvlan' },
  });
});

t.test('unknown keys and wrong types name the field, the file and the line; all at once', async (t) => {
  const text = [
    '[controller]', //                     1
    'url = "ftp://x"', //                  2
    'poll_interval = "often"', //          3
    '', //                                 4
    '[performance]', //                    5
    'worker_threads = 0', //               6
    'workers = 2', //                      7
    '', //                                 8
    '[ipsec]', //                          9
    'backend = "libreswan"', //            10
    'charon_path = "charon"', //           11
    '[admin]', //                          12
    'tcp = "0.0.0.0:9180"', //             13
    '[extra]', //                          14
    'x = 1', //                            15
  ].join('\n');
  const { err, issues } = issuesOf(() => parseLocalToml(text, '/etc/cvlan/vrouter.toml'));
  t.equal(err.code, 'CVLAN_ERR_CONFIG');
  const byPath = Object.fromEntries(issues.map((i) => [i.path, i.reason]));
  t.match(byPath['controller.url'], /"ftp:\/\/x" is not valid; expected an http:\/\/ or https:\/\/ URL \(at \/etc\/cvlan\/vrouter\.toml:2\)/);
  t.match(byPath['controller.poll_interval'], /expected an integer 1\.\.300 \(seconds\) \(at \/etc\/cvlan\/vrouter\.toml:3\)/);
  t.match(byPath['performance.worker_threads'], /0 is not valid; expected an integer 1\.\.256 .*vrouter\.toml:6\)/);
  t.match(byPath['performance.workers'], /unknown field; expected one of: worker_threads .*vrouter\.toml:7\)/);
  t.match(byPath['ipsec.backend'], /"libreswan" is not supported; expected "strongswan" .*:10\)/);
  t.match(byPath['ipsec.charon_path'], /not an absolute path .*:11\)/);
  t.match(byPath['admin.token_file'], /missing; the TCP listener \(admin.tcp\) requires a bearer token file/);
  t.match(byPath.extra, /unknown section .*vrouter\.toml:14\)/);
  t.equal(issues.length, 8);
});

t.test('esp_encapsulation: "udp" or "auto", anything else named', async (t) => {
  t.equal(parseLocalToml('[ipsec]\nesp_encapsulation = "udp"\n', 'v.toml').ipsec.espEncapsulation, 'udp');
  const { issues } = issuesOf(() => parseLocalToml('[ipsec]\nesp_encapsulation = "raw"\n', 'v.toml'));
  t.match(issues, [{ path: 'ipsec.esp_encapsulation', reason: /"raw" is not valid; expected "udp" .* or "auto" .*v\.toml:2\)/ }]);
});

t.test('a stray top-level key is located too', async (t) => {
  const { issues } = issuesOf(() => parseLocalToml('# comment\nworkers = 2\n', 'v.toml'));
  t.same(issues, [{ path: 'workers', reason: 'unknown section or key; expected one of the sections [controller], [network], [ipsec], [performance], [admin], [state], [ha] (at v.toml:2)' }]);
});

t.test('syntax errors carry line and column from the parser', async (t) => {
  const { issues } = issuesOf(() => parseLocalToml('[controller]\nurl = "https://x"\npoll_interval = = 3\n', '/etc/cvlan/vrouter.toml'));
  t.equal(issues.length, 1);
  t.match(issues[0]!.path, /^\/etc\/cvlan\/vrouter\.toml:3:\d+$/);
  t.match(issues[0]!.reason, /TOML syntax error/);
});

t.test('the test-only transport is refused in the TOML too', async (t) => {
  const { err, issues } = issuesOf(() => parseLocalToml('[ipsec]\nbackend = "plain-insecure-test-only"\n'));
  t.equal(err.code, 'CVLAN_ERR_CONFIG_TEST_ONLY');
  t.equal(issues[0]!.path, 'ipsec.backend');
});

t.test('loadLocalToml: the default path may be absent, an explicit one may not', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cvlan-toml-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const f = join(dir, 'vrouter.toml');
  writeFileSync(f, '[performance]\nworker_threads = 3\n');
  t.equal(loadLocalToml(f).performance.workerThreads, 3);
  t.throws(() => loadLocalToml(join(dir, 'nope.toml')), { code: 'CVLAN_ERR_CONFIG', message: /cannot read/ });
  writeFileSync(f, '[state]\ndir = "relative"\n');
  const { issues } = issuesOf(() => loadLocalToml(f));
  t.match(issues[0]!.reason, new RegExp(`not an absolute path \\(at ${f.replace(/[.]/g, '\\.')}:2\\)`));
});

t.test('TOML and controller issues are reported together', async (t) => {
  const { issues } = issuesOf(() =>
    loadDesiredState({
      controllerDocs: { tenant_id: 'acme', wireguard_peers: [{ public_key: 'x', allowed_ips: [] }] },
      localToml: { text: '[performance]\nworker_threads = "all"\n', file: 'vrouter.toml' },
      stateDir: null,
    }),
  );
  t.same(issues.map((i) => i.path), ['performance.worker_threads', 'wireguard_peers[0].public_key']);
  t.match(issues[0]!.reason, /vrouter\.toml:2/);
});

t.test('the embedded demo document validates once its placeholders are filled', async (t) => {
  const doc = demoDefaultDocument() as { tunnels: { remote_subnets: string[]; local_subnets: string[] }[] };
  t.same(doc.tunnels[0]!.remote_subnets, ['10.10.0.0/24'], 'site subnet behind the legacy router');
  t.same(doc.tunnels[0]!.local_subnets, ['10.20.0.0/24'], 'the mesh');
  const text = JSON.stringify(doc);
  for (const p of DEMO_PLACEHOLDERS) t.ok(text.includes(`\${${p}}`), `placeholder ${p}`);

  const { issues } = issuesOf(() => loadDesiredState({ controllerDocs: doc, stateDir: null }));
  t.same(issues.map((i) => i.path).sort(), ['tunnels[0].auth.psk', 'wireguard.private_key', 'wireguard_peers[0].public_key']);

  const agent = genkey();
  const vr = genkey();
  const s = loadDemoDefault({ DEMO_PSK: 'demo-psk-0123456789abcdef', VROUTER_WG_PRIVATE_KEY: vr, AGENT_PUBLIC_KEY: pubkey(agent) });
  t.teardown(() => disposeDesiredState(s));
  const demo = s.tenants[0]!;
  t.equal(demo.id, 'demo');
  t.equal(demo.wireguard?.publicKey, pubkey(vr));
  t.same(demo.peers[0]!.allowedIps, ['10.20.0.2/32']);
  t.same(
    demo.routes.map((r) => [r.prefix, r.via]),
    [
      ['10.20.0.2/32', { kind: 'wireguard', peer: pubkey(agent) }],
      ['10.10.0.0/24', { kind: 'ipsec', tunnel: 'legacy-site' }],
    ],
  );
  t.equal(demo.tunnels[0]!.remoteAddress, undefined, 'responder only: the legacy router initiates');
});
