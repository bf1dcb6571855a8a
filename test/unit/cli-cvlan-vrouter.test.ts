// The rules of cvlan-vrouter's command line, on the built CLI as a real process: --help for the
// program and each command (exit 0, usage on stdout, nothing created), usage errors (exit 2, one
// line naming the flag or argument), and `check` (exit 0 valid / 1 invalid, issues with lines).
// Needs dist/ (`npx tsc -p tsconfig.json`).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { CVLAN_CLI } from '../harness/cvlan.js';

const skip = existsSync(CVLAN_CLI) ? undefined : `${CVLAN_CLI} is not built (npx tsc -p tsconfig.json)`;
const dir = mkdtempSync(join(tmpdir(), 'cvlan-cli-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

/** Every run gets a fresh empty working directory and a local TOML whose state dir is inside it. */
function cli(args: string[], env: Record<string, string> = {}) {
  const cwd = mkdtempSync(join(dir, 'run-'));
  const r = spawnSync(process.execPath, [CVLAN_CLI, ...args], { cwd, env: { ...process.env, ...env }, encoding: 'utf8', timeout: 20_000 });
  return { code: r.status, out: r.stdout, err: r.stderr, cwd, wrote: readdirSync(cwd) };
}

const COMMANDS = ['run', 'check', 'wireguard', 'demo', 'testbed', 'version'];

t.test('--help: the program', { skip }, async (t) => {
  for (const h of ['--help', '-h', 'help']) {
    const r = cli([h]);
    t.equal(r.code, 0, `${h}: exit 0`);
    t.match(r.out, /^usage: cvlan-vrouter <command>/, `${h}: usage on stdout`);
    for (const c of COMMANDS) t.match(r.out, new RegExp(`\\n  ${c}\\b`), `${h}: lists ${c}`);
    t.equal(r.err, '', `${h}: nothing on stderr`);
  }
});

t.test('--help: each command, without side effects', { skip }, async (t) => {
  const state = join(dir, 'help-state');
  const toml = join(dir, 'help.toml');
  writeFileSync(toml, `[state]\ndir = "${state}"\n[admin]\nsocket = "${join(dir, 'help-admin.sock')}"\n`);
  const args: Record<string, string[]> = {
    run: ['--local', toml, '--config', join(dir, 'none.json')],
    check: ['--config', join(dir, 'none.json')],
    wireguard: ['cvhelp0'],
    demo: [],
    testbed: ['--config', join(dir, 'none.json')],
    version: [],
  };
  for (const c of COMMANDS) {
    for (const h of ['--help', '-h']) {
      const started = Date.now();
      const r = cli([c, ...args[c]!, h]);
      t.equal(r.code, 0, `${c} ${h}: exit 0`);
      t.match(r.out, new RegExp(`^usage: cvlan-vrouter ${c}\\b`), `${c} ${h}: its usage`);
      t.equal(r.err, '', `${c} ${h}: nothing on stderr`);
      t.same(r.wrote, [], `${c} ${h}: nothing written in the working directory`);
      t.ok(Date.now() - started < 10_000, `${c} ${h}: returns at once`);
    }
  }
  t.notOk(existsSync(state), 'run --help created no state dir (no secrets key)');
  t.notOk(existsSync(join(dir, 'help-admin.sock')), 'run --help served no admin socket');
  t.notOk(existsSync('/var/run/wireguard/cvhelp0.sock'), 'wireguard --help opened no interface');
  t.notOk(existsSync('/sys/class/net/cvhelp0'), 'no TUN device');
});

t.test('usage errors: exit 2, the flag or argument named', { skip }, async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [[], /cvlan-vrouter: no command given/],
    [['frobnicate'], /unknown command "frobnicate"/],
    [['--bogus'], /unknown option --bogus/],
    [['wireguard', '--listen-port', 'abc', 'wgx'], /cvlan-vrouter wireguard: --listen-port: expected an integer 0\.\.65535, got "abc"/],
    [['wireguard', '--listen-port', '70000', 'wgx'], /--listen-port: expected an integer 0\.\.65535, got "70000"/],
    [['wireguard', '--listen-port', '1.5', 'wgx'], /--listen-port: expected an integer/],
    [['wireguard', '--workers', '0', 'wgx'], /--workers: expected an integer 1\.\.256, got "0"/],
    [['wireguard', '--mtu', '100', 'wgx'], /--mtu: expected an integer 576\.\.65535, got "100"/],
    [['wireguard', '--bogus', 'wgx'], /cvlan-vrouter wireguard: unknown option --bogus/],
    [['wireguard', '-x', 'wgx'], /unknown option -x/],
    [['wireguard'], /missing IFNAME/],
    [['wireguard', 'a', 'b'], /unexpected argument: "b"/],
    [['wireguard', 'name with space'], /IFNAME: "name with space" is not an interface name/],
    [['wireguard', 'waytoolonginterfacename'], /is not an interface name/],
    [['wireguard', '--config', join(dir, 'missing.conf'), 'wgx'], /--config: cannot read .*missing\.conf: ENOENT/],
    [['wireguard', '--listen-port'], /option --listen-port needs a value/],
    [['run', '--bogus'], /cvlan-vrouter run: unknown option --bogus/],
    [['run', '--config'], /option --config needs a value/],
    [['run', 'extra'], /unexpected argument: "extra"/],
    [['check'], /cvlan-vrouter check: --config FILE is required/],
    [['check', '--config', 'x.json', '--strict'], /unknown option --strict/],
    [['testbed'], /--config FILE is required/],
    [['demo', '--fast'], /cvlan-vrouter demo: unknown option --fast/],
    [['version', 'now'], /unexpected argument: "now"/],
  ];
  for (const [args, message] of cases) {
    const r = cli(args);
    t.equal(r.code, 2, `${JSON.stringify(args)}: exit 2`);
    t.match(r.err, message, `${JSON.stringify(args)}: ${message.source}`);
    t.match(r.err, /try `cvlan-vrouter( \w+)? --help`/, `${JSON.stringify(args)}: points to --help`);
    t.equal(r.out, '', `${JSON.stringify(args)}: nothing on stdout`);
    t.same(r.wrote, [], `${JSON.stringify(args)}: nothing written`);
  }
  const lvl = cli(['version'], { CVLAN_LOG_LEVEL: 'loud' });
  t.equal(lvl.code, 0, 'version logs nothing, so it does not read CVLAN_LOG_LEVEL');
  const lvl2 = cli(['testbed', '--config', join(dir, 'none.json')], { CVLAN_LOG_LEVEL: 'loud' });
  t.equal(lvl2.code, 2, 'a bad CVLAN_LOG_LEVEL is a usage error');
  t.match(lvl2.err, /CVLAN_LOG_LEVEL: expected one of fatal, error, warn, info, debug, trace, silent, got "loud"/);
  const spread = cli(['testbed', '--config', join(dir, 'none.json')], { CVLAN_SPREAD_CRYPTO: 'off' });
  t.equal(spread.code, 2, 'a CVLAN_SPREAD_CRYPTO other than 0 or 1 is a usage error');
  t.match(spread.err, /CVLAN_SPREAD_CRYPTO: expected 0 .* or 1 .*, got "off"/);
});

const PEER = 'HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=';

t.test('check: valid, invalid JSON, invalid fields, invalid TOML', { skip }, async (t) => {
  const state = join(dir, 'check-state');
  const toml = join(dir, 'check.toml');
  writeFileSync(toml, `[state]\ndir = "${state}"\n`);
  // No private key: `run` would generate and keep one in the state dir; `check` must not.
  const good = join(dir, 'good.json');
  writeFileSync(good, JSON.stringify({ tenant_id: 'acme', wireguard: { listen_port: 51830 }, wireguard_peers: [{ name: 'laptop', public_key: PEER, allowed_ips: ['10.1.0.2/32'] }] }, null, 2));
  let r = cli(['check', '--config', good, '--local', toml]);
  t.equal(r.code, 0, 'valid: exit 0');
  t.match(r.out, /good\.json: valid \(1 tenant, version [0-9a-f]{12}\)/);
  t.notOk(existsSync(state), 'check wrote nothing to the state dir (no key generated)');

  const syntax = join(dir, 'syntax.json');
  writeFileSync(syntax, '{\n  "tenant_id": "acme",\n  "wireguard_peers": [\n    { "public_key": "x", }\n  ]\n}\n');
  r = cli(['check', '--config', syntax, '--local', toml]);
  t.equal(r.code, 1, 'JSON syntax error: exit 1');
  t.match(r.out, /syntax\.json:4: JSON syntax error: unexpected "}", expected a property name in double quotes/, 'the line of the error, not a byte position');
  t.notMatch(r.out, /position/);

  const fields = join(dir, 'fields.json');
  writeFileSync(
    fields,
    '{\n  "tenant_id": "acme",\n  "wireguard": {\n    "listen_port": 70000\n  },\n  "wireguard_peers": [\n    {\n      "public_key": "' +
      PEER +
      '",\n      "allowed_ips": ["10.1.0.2/24"]\n    }\n  ],\n  "colour": "red"\n}\n',
  );
  r = cli(['check', '--config', fields, '--local', toml]);
  t.equal(r.code, 1, 'invalid fields: exit 1');
  t.match(r.out, /fields\.json:4: wireguard\.listen_port: 70000 is not valid/, 'listen_port on line 4');
  t.match(r.out, /fields\.json:9: wireguard_peers\[0\]\.allowed_ips\[0\]: "10\.1\.0\.2\/24" has host bits set/, 'allowed_ips[0] on line 9');
  t.match(r.out, /fields\.json:12: colour: unknown field/, 'unknown key on line 12');
  t.match(r.out, /fields\.json: invalid \(3 issues\)/);

  const json = cli(['check', '--config', fields, '--local', toml, '--json']);
  t.equal(json.code, 1);
  const parsed = JSON.parse(json.out) as { valid: boolean; issues: { file: string; line: number; path: string }[] };
  t.equal(parsed.valid, false);
  t.same(
    parsed.issues.map((i) => [i.line, i.path]).sort((x, y) => Number(x[0]) - Number(y[0])),
    [
      [4, 'wireguard.listen_port'],
      [9, 'wireguard_peers[0].allowed_ips[0]'],
      [12, 'colour'],
    ],
    '--json: issues with file, line and path',
  );

  const badToml = join(dir, 'bad.toml');
  writeFileSync(badToml, `[state]\ndir = "${state}"\n\n[performance]\nworker_threads = "many"\n`);
  r = cli(['check', '--config', good, '--local', badToml]);
  t.equal(r.code, 1, 'invalid TOML value: exit 1');
  t.match(r.out, /bad\.toml:5: performance\.worker_threads: /, 'the TOML line');

  const tomlSyntax = join(dir, 'syntax.toml');
  writeFileSync(tomlSyntax, '[state]\ndir = "/x"\n[admin\n');
  r = cli(['check', '--config', good, '--local', tomlSyntax]);
  t.equal(r.code, 1, 'TOML syntax error: exit 1');
  t.match(r.out, /syntax\.toml:3: TOML syntax error/);

  r = cli(['check', '--config', join(dir, 'absent.json'), '--local', toml]);
  t.equal(r.code, 1, 'a missing file is an invalid configuration');
  t.match(r.out, /absent\.json: cannot read/);
  t.notOk(existsSync(state), 'still nothing in the state dir');
});

t.test('check: what run would refuse (IPsec under [ha] without charon_ha) is invalid too', { skip }, async (t) => {
  const state = join(dir, 'check-ha-state');
  const toml = join(dir, 'check-ha.toml');
  writeFileSync(
    toml,
    `[state]\ndir = "${state}"\n[network]\nlisten_address = "192.0.2.10"\n[ha]\nnode_id = 1\nlocal_address = "10.0.0.1"\npeer_address = "10.0.0.2"\ninterface = "eth0"\nvips = ["192.0.2.10/24"]\nsync_key_file = "${join(dir, 'sync.key')}"\n`,
  );
  const doc = join(dir, 'ha-ipsec.json');
  const tunnel = { id: 'site-a', type: 'ipsec', remote_id: 'a.example.net', auth: { method: 'psk', psk: 'a-pre-shared-key-of-enough-length' }, local_subnets: ['10.1.0.0/24'], remote_subnets: ['10.2.0.0/24'] };
  writeFileSync(doc, JSON.stringify({ tenant_id: 'acme', tunnels: [tunnel] }, null, 2));
  t.equal(cli(['check', '--config', doc, '--local', toml]).code, 0, 'IPsec under [ha] (charon_ha on by default): valid');
  writeFileSync(toml, `${readFileSync(toml, 'utf8')}charon_ha = false\n`);
  const r = cli(['check', '--config', doc, '--local', toml]);
  t.equal(r.code, 1, 'exit 1');
  t.match(r.out, /ha\.charon_ha: false while tenants\[0\]\.tunnels needs IKE/, 'the field and the reason');
  const wgOnly = join(dir, 'ha-wg.json');
  writeFileSync(wgOnly, JSON.stringify({ tenant_id: 'acme', wireguard: { listen_port: 51830 }, wireguard_peers: [{ name: 'laptop', public_key: PEER, allowed_ips: ['10.1.0.2/32'] }] }));
  t.equal(cli(['check', '--config', wgOnly, '--local', toml]).code, 0, 'WireGuard only under [ha]: valid');
});
