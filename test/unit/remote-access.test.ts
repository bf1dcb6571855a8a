// Remote access: the `remote_access` section's validation and its translation into charon's
// load-pool / load-conn messages.
import t from 'tap';
import { parseControllerDocs } from '../../src/config/controller.js';
import { ConfigError } from '../../src/errors.js';
import { poolSize } from '../../src/remote-access/config.js';
import { poolSection, remoteAccessConnSection, type RemoteAccessConn } from '../../src/remote-access/connection.js';

const ra = (extra: object = {}): object => ({
  local_id: 'vpn.acme.example',
  certificate: 'file:/etc/cvlan/vpn.pem',
  private_key: 'file:/etc/cvlan/vpn.key',
  pools: [{ range: '10.99.0.0/24', dns: ['10.1.0.53'], search_domains: ['Acme.Example'] }],
  local_subnets: ['10.1.0.0/16'],
  users: [{ name: 'alice', secret: 'correct horse battery staple' }],
  ...extra,
});

function issues(docs: unknown[]): string[] {
  try {
    parseControllerDocs(docs);
    return [];
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    return e.issues.map((i) => `${i.path}: ${i.reason}`);
  }
}

t.test('a tenant with remote access: defaults, routes, secrets', async (t) => {
  const { tenants } = parseControllerDocs([{ tenant_id: 'acme', remote_access: ra() }]);
  const s = tenants[0]!.remoteAccess!;
  t.equal(s.id, 'ra-acme', 'connection named after the tenant');
  t.equal(s.auth, 'eap', 'EAP by default');
  t.equal(s.maxClients, 254, 'cap defaults to the IPv4 pool');
  t.same(s.pools, [{ name: 'ra-acme-0', range: '10.99.0.0/24', dns: ['10.1.0.53'], searchDomains: ['acme.example'] }]);
  t.same(tenants[0]!.routes, [{ prefix: '10.99.0.0/24', via: { kind: 'ipsec', tunnel: 'ra-acme' } }], 'the pool is routed to the connection');
  t.equal(JSON.stringify(s.users), '[{"name":"alice","secret":"<redacted>"}]', 'the password never prints');
});

t.test('refusals name the field and the reason', async (t) => {
  t.match(issues([{ tenant_id: 'a', remote_access: ra({ auth: 'psk' }) }]), [/^remote_access\.auth: "psk" is not supported/]);
  t.match(issues([{ tenant_id: 'a', remote_access: ra({ pools: [{ range: '10.99.0.1/24' }] }) }]), [/^remote_access\.pools\[0\]\.range: .*10\.99\.0\.0\/24/]);
  t.match(issues([{ tenant_id: 'a', remote_access: ra({ pools: [{ range: '10.99.0.0/31' }] }) }]), [/^remote_access\.pools\[0\]\.range: 10\.99\.0\.0\/31 leaves no address/]);
  t.match(issues([{ tenant_id: 'a', remote_access: ra({ pools: [{ range: '10.99.0.0/24' }, { range: '10.98.0.0/24' }] }) }]), [/a second IPv4 pool/]);
  t.match(issues([{ tenant_id: 'a', remote_access: ra({ max_clients: 300 }) }]), [/^remote_access\.max_clients: 300 is more than the IPv4 pool leases \(254\)/]);
  t.match(issues([{ tenant_id: 'a', remote_access: ra({ pools: [{ range: '10.99.0.0/24', dns: ['dns.example'] }] }) }]), [/dns\[0\]: "dns\.example" is not an IP address/]);
  t.match(issues([{ tenant_id: 'a', remote_access: ra({ auth: 'pubkey', users: [] }) }]), [/remote_access\.ca: missing; auth "pubkey" needs the tenant's CA/, /remote_access\.devices: missing; expected an array/]);
  t.match(issues([{ tenant_id: 'a', remote_access: ra({ users: [{ name: 'alice', secret: '' }] }) }]), [/users\[0\]\.secret: expected a non-empty string/]);
  t.match(
    issues([[{ tenant_id: 'a', remote_access: ra() }, { tenant_id: 'b', remote_access: ra({ local_id: 'vpn.b.example' }) }]]),
    [/^\[1\]\.remote_access\.users\[0\]\.name: user "alice" is already defined/],
    'EAP user names are vrouter-wide',
  );
  t.match(issues([[{ tenant_id: 'a', remote_access: ra() }, { tenant_id: 'b', remote_access: ra({ users: [{ name: 'bob', secret: 'another long secret' }] }) }]]), [/local_id: "vpn\.acme\.example" is already the remote-access identity/]);
  t.match(issues([{ tenant_id: 'a', tunnels: [], remote_access: ra({ crl: 'not a crl' }) }]), [/remote_access\.crl: a CRL needs the ca/]);
  const leaked = issues([{ tenant_id: 'a', remote_access: ra({ users: [{ name: 'alice', secret: 'x'.repeat(2000) }] }) }]);
  t.notMatch(leaked.join('\n'), /xxxx/, 'a refused secret is not quoted');
});

t.test('charon messages', async (t) => {
  t.equal(poolSize('10.99.0.0/24'), 254);
  t.equal(poolSize('10.99.0.0/30'), 2);
  t.equal(poolSize('fd00::/64'), 2 ** 31 - 2, 'charon caps a pool at 2^31 addresses');
  t.same(poolSection({ name: 'p', range: '10.99.0.0/24', dns: ['10.1.0.53', 'fd00::53'], searchDomains: ['acme.example'] }), {
    p: { addrs: '10.99.0.0/24', dns: ['10.1.0.53', 'fd00::53'], '25': ['acme.example'] },
  });
  const conn: RemoteAccessConn = {
    id: 'ra-acme',
    ifId: 7,
    localAddress: '192.0.2.1',
    localId: 'vpn.acme.example',
    auth: 'pubkey+eap',
    certificate: 'CERT',
    ca: 'CA',
    pools: [{ name: 'p4', range: '10.99.0.0/24', dns: [], searchDomains: [] }],
    localSubnets: ['10.1.0.0/16'],
    ikeProposals: ['aes256gcm16-prfsha256-x25519'],
    espProposals: ['aes256gcm16'],
  };
  const s = remoteAccessConnSection(conn);
  t.same(s['remote-1'], { auth: 'pubkey', cacerts: ['CA'] }, 'first round: the device certificate, from the tenant CA only');
  t.same(s['remote-2'], { auth: 'eap-mschapv2', eap_id: '%any' }, 'second round: the user (RFC 4739)');
  t.notOk('remote' in s);
  t.same(s.pools, ['p4']);
  t.equal(s.if_id_in, 7);
  const child = (s.children as Record<string, Record<string, unknown>>)['ra-acme']!;
  t.equal(child.if_id_out, 7, 'every CHILD_SA carries the tenant connection if_id');
  t.notOk('remote_ts' in child, 'remote_ts is the leased address (dynamic)');
  t.same(remoteAccessConnSection({ ...conn, auth: 'eap' }).remote, { auth: 'eap-mschapv2', eap_id: '%any' });
  t.same(remoteAccessConnSection({ ...conn, auth: 'pubkey' }).remote, { auth: 'pubkey', cacerts: ['CA'] });
});

t.test('vrouterctl clients: table and --json through the admin API', async (t) => {
  const { startAdminServer } = await import('../../src/api/server.js');
  const { SnapshotStateSource } = await import('../../src/api/state.js');
  const { main } = await import('../../src/cli/vrouterctl.js');
  const { sampleSnapshot, tempSocketDir } = await import('./api-fixture.js');
  const { join } = await import('node:path');
  const view = {
    clients: [{ tenant: 'acme', connection: 'ra-acme', user: 'alice', device: 'laptop.acme.example', remote: '198.51.100.7', addresses: ['10.99.0.1', 'fd00:99::1'], established: 12, ike_id: 3 }],
    pools: [{ tenant: 'acme', pool: 'ra-acme-0', range: '10.99.0.0/24', size: 254, online: 1, offline: 2, leases: [{ address: '10.99.0.1', identity: 'alice', status: 'online' as const }] }],
    exhausted: { acme: 1 },
  };
  class WithClients extends SnapshotStateSource {
    clients() {
      return view;
    }
  }
  const socketPath = join(tempSocketDir(), 'admin.sock');
  const server = await startAdminServer({ source: new WithClients(sampleSnapshot()), socketPath });
  t.teardown(() => server.close());
  const run = async (argv: string[]): Promise<string> => {
    let out = '';
    const code = await main(argv, {
      stdout: { write: (s: string) => (out += s) },
      stderr: { write: () => undefined },
      stdin: (async function* () {})(),
      env: {},
    });
    t.equal(code, 0, argv.join(' '));
    return out;
  };
  t.same(JSON.parse(await run(['--socket', socketPath, '--json', 'clients'])), view, '--json is the API view');
  const table = await run(['--socket', socketPath, 'clients']);
  t.match(table, /acme\s+alice\s+laptop\.acme\.example\s+198\.51\.100\.7\s+10\.99\.0\.1,fd00:99::1\s+12s/);
  t.match(table, /acme\s+ra-acme-0\s+10\.99\.0\.0\/24\s+1\s+2\s+254/);
});
