// The `bgp` section: every bad field named with its reason; the rendered BIRD configuration is
// accepted by BIRD's own parser (`bird -p`), keeps tenants in separate tables, exports only what
// the tenant reaches and never prints a TCP MD5 key anywhere but the file.
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { ConfigError } from '../../src/errors.js';
import { parseControllerDocs } from '../../src/config/controller.js';
import type { TenantBgpSpec } from '../../src/config/model.js';
import { renderBirdConf, sessionSymbol, symbolOf, tenantSymbols } from '../../src/routing/bird-conf.js';

const MD5 = 'md5-key-never-printed';

function doc(tenant: string, bgp: unknown): Record<string, unknown> {
  return { tenant_id: tenant, tun: [{ name: `tun-${tenant}`, addresses: ['10.20.0.1/24'], subnets: ['10.20.0.0/24'] }], bgp };
}

const GOOD = {
  asn: 65001,
  router_id: '192.0.2.1',
  neighbors: [
    { name: 'vpc', address: '192.0.2.254', asn: 65000, local_address: '192.0.2.1', password: MD5, import: { max_prefixes: 50, allow: ['10.50.0.0/16', 'fd50::/48'] } },
    { name: 'v6-router', address: '2001:db8::fe', asn: 65000, local_address: '2001:db8::1' },
  ],
  announce: { aggregate: ['10.0.0.0/8'], communities: ['65001:100'], med: 50 },
};

function parseBgpOf(bgp: unknown): TenantBgpSpec {
  const cfg = parseControllerDocs([doc('acme', bgp)]);
  const spec = cfg.tenants[0]?.bgp;
  if (spec === undefined) throw new Error('no bgp');
  return spec;
}

function issuesOf(bgp: unknown): { path: string; reason: string }[] {
  try {
    parseControllerDocs([doc('acme', bgp)]);
  } catch (e) {
    if (e instanceof ConfigError) return e.issues;
    throw e;
  }
  return [];
}

t.test('a good bgp section is parsed with defaults', async (t) => {
  const b = parseBgpOf(GOOD);
  t.equal(b.asn, 65001);
  t.equal(b.neighbors[0]?.holdTime, 9, 'hold time defaults to 9 s');
  t.same(b.neighbors[0]?.import, { maxPrefixes: 50, allow: ['10.50.0.0/16', 'fd50::/48'], install: false });
  t.same(b.announce.communities, [[65001, 100]]);
  t.equal(b.announce.ipsec && b.announce.wireguard && b.announce.tun, true, 'every source announced by default');
  t.notMatch(inspect(b), MD5, 'the password prints redacted');
  t.notMatch(JSON.stringify(b), MD5);
});

t.test('bad fields are refused with path and reason, all at once', async (t) => {
  const issues = issuesOf({
    asn: 0,
    router_id: '2001:db8::1',
    neighbors: [
      { name: 'a', address: '300.1.1.1', asn: 65000, hold_time: 1, extra: 1 },
      { name: 'a', address: '192.0.2.9', asn: 4294967295, local_address: '2001:db8::2', import: { max_prefixes: 0, allow: ['10.0.0.1/8'] } },
      { name: 'b', address: '192.0.2.8', asn: 65000, password: 'bad"quote' },
    ],
    announce: { ipsec: 'yes', communities: ['65536:1', 'x'], med: -1, aggregate: ['nope'] },
  });
  const paths = issues.map((i) => i.path);
  for (const p of [
    'bgp.asn',
    'bgp.router_id',
    'bgp.neighbors[0].address',
    'bgp.neighbors[0].hold_time',
    'bgp.neighbors[0].extra',
    'bgp.neighbors[1].name',
    'bgp.neighbors[1].asn',
    'bgp.neighbors[1].local_address',
    'bgp.neighbors[1].import.max_prefixes',
    'bgp.neighbors[1].import.allow[0]',
    'bgp.neighbors[2].password',
    'bgp.announce.ipsec',
    'bgp.announce.communities[0]',
    'bgp.announce.communities[1]',
    'bgp.announce.med',
    'bgp.announce.aggregate[0]',
  ]) {
    t.ok(paths.includes(p), `${p} is named`);
  }
  t.notMatch(JSON.stringify(issues), 'bad"quote', 'a refused password is not echoed');
  t.match(issues.find((i) => i.path === 'bgp.neighbors[1].import.allow[0]')?.reason ?? '', '10.0.0.0/8', 'host bits: the canonical prefix is named');
  t.same(issuesOf({ asn: 65001, neighbors: [] }).map((i) => i.path), ['bgp.neighbors'], 'at least one neighbour');
});

t.test('several BGP tenants: every session names a distinct source address', async (t) => {
  const issuesOfDocs = (docs: unknown[]): string[] => {
    try {
      parseControllerDocs(docs);
    } catch (e) {
      if (e instanceof ConfigError) return e.issues.map((i) => i.path);
      throw e;
    }
    return [];
  };
  const nb = (local?: string): Record<string, unknown> => ({ name: 'vpc', address: '192.0.2.254', asn: 65000, ...(local ? { local_address: local } : {}) });
  const two = (a?: string, b?: string): unknown[] => [
    { tenant_id: 'red', bgp: { asn: 65001, neighbors: [nb(a)] } },
    { tenant_id: 'blue', bgp: { asn: 65002, neighbors: [nb(b)] } },
  ];
  t.same(issuesOfDocs(two('192.0.2.1', '192.0.2.2')), [], 'distinct source addresses: fine');
  t.same(issuesOfDocs(two(undefined, '192.0.2.2')), ['docs[0].bgp.neighbors[0].local_address'], 'missing one is named');
  t.same(issuesOfDocs(two('192.0.2.1', '192.0.2.1')), ['docs[1].bgp.neighbors[0].local_address'], 'a shared one is named');
  t.same(issuesOfDocs([{ tenant_id: 'red', bgp: { asn: 65001, neighbors: [nb(), { ...nb(), name: 'b' }] } }]), ['bgp.neighbors[1].address'], 'one session per neighbour address');
  const installing = { ...nb('192.0.2.1'), import: { max_prefixes: 5, allow: ['10.50.0.0/16'], install: true } };
  t.same(issuesOfDocs([{ tenant_id: 'red', bgp: { asn: 65001, neighbors: [installing] } }]), [], 'install: fine with one tenant');
  t.same(
    issuesOfDocs([{ tenant_id: 'red', bgp: { asn: 65001, neighbors: [installing] } }, { tenant_id: 'blue' }]),
    ['docs[0].bgp.neighbors[0].import.install'],
    'install: refused with several tenants (one routing table in the namespace)',
  );
  t.same(issuesOfDocs([{ tenant_id: 'red', bgp: { asn: 65001, neighbors: [nb('192.0.2.1'), { ...nb(), name: 'b', address: '192.0.2.253' }] } }]), ['bgp.neighbors'], 'all or none give local_address');
});

t.test('rendering: tables per tenant, static routes, filters, symbols', async (t) => {
  const acme = parseBgpOf(GOOD);
  const text = renderBirdConf({ tenant: 'acme', bgp: acme, prefixes: ['10.0.0.0/8', '2001:db8:1::/48'] });
  const globex = renderBirdConf({ tenant: 'globex', bgp: parseBgpOf({ asn: 65002, neighbors: [{ name: 'vpc', address: '192.0.2.254', asn: 65000, local_address: '192.0.2.2' }] }), prefixes: ['10.0.0.0/8'] });
  const a = tenantSymbols('acme');
  t.not(a.v4, tenantSymbols('globex').v4, 'tenant tables are named apart');
  t.match(text, `router id 192.0.2.1;`, "the tenant's router id");
  t.match(text, `ipv4 table ${a.v4};`);
  t.match(text, new RegExp(`protocol static ${a.s4} \\{\\n  ipv4 \\{ table ${a.v4}; \\};\\n  route 10\\.0\\.0\\.0/8 blackhole;`));
  t.match(text, `route 2001:db8:1::/48 blackhole;`);
  t.match(text, `protocol bgp ${sessionSymbol('acme', 'vpc')} {`);
  t.match(text, 'bgp_community.add((65001,100)); bgp_med = 50; accept;');
  t.match(text, 'import filter { if net ~ [ 10.50.0.0/16+ ] then accept; reject; };');
  t.match(text, 'import limit 50 action block;');
  t.match(text, 'local 192.0.2.1 as 65001;');
  t.match(text, 'strict bind yes;', 'a source address binds the listening socket');
  t.match(globex, 'local 192.0.2.2 as 65002;');
  t.notMatch(globex, 'acme');
  t.match(text, `password "${MD5}";`, 'the key is in the file (0600), nowhere else');
  t.equal(
    renderBirdConf({ tenant: 'acme', bgp: acme, prefixes: ['2001:db8:1::/48', '10.0.0.0/8'] }),
    renderBirdConf({ tenant: 'acme', bgp: acme, prefixes: ['10.0.0.0/8', '2001:db8:1::/48'] }),
    'same input, same text',
  );
  t.ok(symbolOf('a-b') !== symbolOf('a_b'), 'symbols of different ids never collide on sanitizing');
  t.ok(symbolOf('x'.repeat(63), 'y'.repeat(63)).length <= 64);

  const bird = spawnSync('bird', ['--version'], { encoding: 'utf8' });
  if (bird.error !== undefined) {
    t.fail('BIRD is not installed: the parse check needs `bird` (scripts/setup.sh installs bird2)');
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'cvlan-bird-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'bird.conf');
  for (const [what, conf] of [['acme', text], ['globex', globex]] as const) {
    writeFileSync(file, conf, { mode: 0o600 });
    t.doesNotThrow(() => execFileSync('bird', ['-p', '-c', file], { stdio: 'pipe' }), `BIRD parses the rendered configuration (${what})`);
  }
  const installs = parseBgpOf({ asn: 65001, neighbors: [{ name: 'vpc', address: '192.0.2.254', asn: 65000, import: { max_prefixes: 5, allow: ['10.50.0.0/16'], install: true } }] });
  const withKernel = renderBirdConf({ tenant: 'acme', bgp: installs, prefixes: ['10.0.0.0/8'] });
  t.match(withKernel, `protocol kernel ${a.k4} { ipv4 { table ${a.v4}; export where source = RTS_BGP; import none; }; learn off; }`, 'install: learned routes (only) into the kernel');
  t.notMatch(text, 'protocol kernel', 'no kernel protocol without install');
  writeFileSync(file, withKernel);
  t.doesNotThrow(() => execFileSync('bird', ['-p', '-c', file], { stdio: 'pipe' }), 'BIRD parses it with install');
  writeFileSync(file, renderBirdConf({ tenant: 'acme', bgp: acme, prefixes: [] }));
  t.doesNotThrow(() => execFileSync('bird', ['-p', '-c', file], { stdio: 'pipe' }), 'also with nothing to announce');
});
