// Reconcile: the plan is the smallest set of operations (unchanged peers and tunnels are not
// touched, a changed PSK is a change), one tenant ⇄ several and the IPsec service's start, stop and
// reopening are plan steps; the stored configuration is atomic, 0600, holds no secret in clear and loads back to the
// same state.
import t from 'tap';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '../../src/errors.js';
import { configVersion, loadDesiredState } from '../../src/config/load.js';
import type { DesiredState } from '../../src/config/model.js';
import { plan } from '../../src/reconcile/plan.js';
import { loadApplied, sealSecrets, storeApplied } from '../../src/reconcile/store.js';
import { genkey, pubkey } from '../../src/secrets/keys.js';
import { generateSealKeypair, SEALED_PREFIX } from '../../src/secrets/sealed.js';

const PSK = 'a-pre-shared-key-never-stored-in-clear';
const WG_PRIV = genkey();
const [P1, P2, P3] = [pubkey(genkey()), pubkey(genkey()), pubkey(genkey())];
const PEER_PSK = genkey();

type Doc = Record<string, unknown> & { tunnels: Record<string, unknown>[]; wireguard_peers: Record<string, unknown>[] };

function doc(): Doc {
  return {
    vrouter_id: 'vr',
    tenant_id: 'acme',
    tunnels: [
      {
        id: 'site-a',
        type: 'ipsec',
        remote_id: 'a.example.net',
        auth: { method: 'psk', psk: PSK },
        local_subnets: ['10.1.0.0/24'],
        remote_subnets: ['10.2.0.0/24'],
      },
      {
        id: 'site-b',
        type: 'ipsec',
        remote_id: 'b.example.net',
        auth: { method: 'psk', psk: PSK },
        local_subnets: ['10.1.0.0/24'],
        remote_subnets: ['10.3.0.0/24'],
      },
    ],
    wireguard: { listen_port: 51820, private_key: WG_PRIV },
    wireguard_peers: [
      { public_key: P1, allowed_ips: ['10.9.0.1/32'] },
      { public_key: P2, allowed_ips: ['10.9.0.2/32'], preshared_key: PEER_PSK },
    ],
  };
}

const LOCAL = '[network]\nlisten_address = "192.0.2.1"\n';
const load = (d: unknown): DesiredState => loadDesiredState({ controllerDocs: [d], localToml: LOCAL, stateDir: null });
/** The issues of the ConfigError `f` throws (fails the test when it throws nothing else). */
function issuesOf(f: () => unknown): { path: string; reason: string }[] {
  try {
    f();
  } catch (e) {
    if (e instanceof ConfigError) return e.issues;
    throw e;
  }
  return [];
}
const kinds = (ops: { kind: string }[]): string[] => ops.map((o) => o.kind).sort();

t.test('an identical state plans nothing', async (t) => {
  t.same(plan(load(doc()), load(doc())), []);
});

t.test('only what changed is touched', async (t) => {
  const next = doc();
  next.wireguard_peers[0]!.allowed_ips = ['10.9.0.1/32', '10.9.1.0/24'];
  next.wireguard_peers.push({ public_key: P3, allowed_ips: ['10.9.0.3/32'] });
  next.tunnels.pop();
  const ops = plan(load(doc()), load(next));
  t.same(kinds(ops), ['peer-upsert', 'peer-upsert', 'tunnel-remove']);
  t.ok(ops.some((o) => o.kind === 'peer-upsert' && o.peer.publicKey === P1 && o.previous !== undefined), 'P1 changed in place');
  t.ok(ops.some((o) => o.kind === 'peer-upsert' && o.peer.publicKey === P3 && o.previous === undefined), 'P3 is new');
  t.notOk(ops.some((o) => 'peer' in o && o.peer.publicKey === P2), 'P2 untouched');
  t.ok(ops.some((o) => o.kind === 'tunnel-remove' && o.tunnel.id === 'site-b'));
});

t.test('a changed secret is a change (compared by digest)', async (t) => {
  const next = doc();
  (next.tunnels[0]!.auth as Record<string, string>).psk = `${PSK}-rotated`;
  const ops = plan(load(doc()), load(next));
  t.same(kinds(ops), ['tunnel-replace']);
  t.notMatch(JSON.stringify(ops.map((o) => ({ ...o, tunnel: undefined, previous: undefined }))), PSK);
});

t.test('a WireGuard port or key change replaces that interface, peers and all', async (t) => {
  const next = doc();
  next.wireguard = { listen_port: 51821, private_key: WG_PRIV };
  next.wireguard_peers.pop();
  const ops = plan(load(doc()), load(next));
  t.same(kinds(ops), ['wireguard-replace'], 'one operation; the peers come with the interface');
  const op = ops[0] as Extract<(typeof ops)[number], { kind: 'wireguard-replace' }>;
  t.equal(op.previous?.listenPort, 51820);
  t.equal(op.wireguard?.listenPort, 51821);
});

t.test('a changed tenant TUN is closed and opened again; the unchanged ones stay', async (t) => {
  const lan = { name: 'cvlan-lan', addresses: ['10.50.0.1/24'], subnets: ['10.50.0.0/24'] };
  const dmz = { name: 'cvlan-dmz', addresses: ['10.51.0.1/24'], subnets: ['10.51.0.0/24'] };
  const a = { ...doc(), tun: [lan, dmz] };
  const b = { ...doc(), tun: [{ ...lan, mtu: 1380 }, dmz] };
  const ops = plan(load(a), load(b));
  t.same(kinds(ops), ['tun-replace']);
  const op = ops[0] as Extract<(typeof ops)[number], { kind: 'tun-replace' }>;
  t.same([op.gone.map((x) => x.name), op.added.map((x) => `${x.name}/${x.mtu}`)], [['cvlan-lan'], ['cvlan-lan/1380']]);
  const c = { ...doc(), tun: [dmz] };
  const removed = plan(load(a), load(c))[0] as typeof op;
  t.same([removed.gone.map((x) => x.name), removed.added], [['cvlan-lan'], []]);
  t.same(plan(load(a), load({ ...doc(), tun: [lan, dmz] })), [], 'no change, no operation');
});

t.test('tenants come and go with everything they hold while there are several', async (t) => {
  const tenant = (id: string, port: number) => ({ tenant_id: id, wireguard: { listen_port: port, private_key: WG_PRIV }, wireguard_peers: [{ public_key: P1, allowed_ips: ['10.9.0.1/32'] }] });
  const ab = { tenants: [tenant('alpha', 51830), tenant('beta', 51831)] };
  const ac = { tenants: [tenant('alpha', 51830), tenant('gamma', 51832)] };
  const ops = plan(load(ab), load(ac));
  t.same(ops.map((o) => `${o.kind} ${o.tenant}`), ['tenant-remove beta', 'tenant-add gamma'], 'alpha is untouched');
  const renamed = plan(load(doc()), load({ ...doc(), tenant_id: 'other' }));
  t.same(kinds(renamed), ['tenant-add', 'tenant-remove'], 'one tenant renamed: removed and added');
  const withTunnel = { tenants: [tenant('alpha', 51830), { ...tenant('gamma', 51832), tunnels: doc().tunnels }] };
  t.same(
    plan(load(ab), load(withTunnel)).map((o) => `${o.kind} ${o.tenant ?? ''}`.trim()),
    ['ipsec-start', 'tenant-remove beta', 'tenant-add gamma'],
    'a new tenant with the first IPsec tunnels: the IPsec service starts first',
  );
});

t.test('one tenant ⇄ several is a routing-mode step, planned with the tenants', async (t) => {
  const two = { tenants: [doc(), { tenant_id: 'beta', wireguard: { listen_port: 51830 }, wireguard_peers: [] }] };
  const up = plan(load(doc()), load(two));
  t.same(up.map((o) => o.kind), ['routing-mode', 'tenant-add'], 'one → two: the namespace stops routing, then beta comes');
  t.match(up[0], { kind: 'routing-mode', shared: true });
  const down = plan(load(two), load(doc()));
  t.same(down.map((o) => o.kind), ['routing-mode', 'tenant-remove']);
  t.match(down[0], { kind: 'routing-mode', shared: false }, 'two → one: the namespace routes again');
  t.same(plan(load({ tenants: [] }), load(doc())).map((o) => o.kind), ['ipsec-start', 'tenant-add'], 'none → one: no mode change');
});

t.test('the IPsec service starts with the first tunnel, stops after the last, reopens on new settings', async (t) => {
  const none = { ...doc(), tunnels: [] };
  t.same(kinds(plan(load(none), load(doc()))), ['ipsec-start', 'tunnel-add', 'tunnel-add'], 'first tunnels: start, then load');
  t.same(kinds(plan(load(doc()), load(none))), ['ipsec-stop', 'tunnel-remove', 'tunnel-remove'], 'last tunnels: unloaded (applied before the stop)');
  const at = (addr: string, esp = 'udp'): DesiredState =>
    loadDesiredState({ controllerDocs: [doc()], localToml: `[network]\nlisten_address = "${addr}"\n[ipsec]\nesp_encapsulation = "${esp}"\n`, stateDir: null });
  const moved = plan(at('192.0.2.1'), at('192.0.2.2'));
  t.same(moved, [{ kind: 'ipsec-restart', fields: ['network.listen_address'] }], 'a new listen address reopens the service, which loads every tunnel itself');
  t.same(plan(at('192.0.2.1'), at('192.0.2.1', 'auto')), [{ kind: 'ipsec-restart', fields: ['ipsec.esp_encapsulation'] }]);
  const changed = doc();
  changed.tunnels[0]!.proposals = { esp: ['aes128gcm16-x25519'] };
  t.same(kinds(plan(at('192.0.2.1'), loadDesiredState({ controllerDocs: [changed], localToml: '[network]\nlisten_address = "192.0.2.2"\n', stateDir: null }))), ['ipsec-restart'], 'with the restart, no tunnel step besides');
  t.same(kinds(plan(loadDesiredState({ controllerDocs: [none], localToml: '', stateDir: null }), at('192.0.2.2'))), ['ipsec-start', 'tunnel-add', 'tunnel-add'], 'without tunnels before, the address only matters to the start');
});

t.test('the stored configuration: atomic, 0600, sealed, and loads back to the same state', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cvlan-store-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const kp = generateSealKeypair();
  const d = doc();
  const state = loadDesiredState({ controllerDocs: [d], localToml: LOCAL, secretsKey: kp, stateDir: null });
  const path = storeApplied(dir, [d], kp, configVersion(state));
  t.equal(statSync(path).mode & 0o777, 0o600, 'mode 0600');
  t.same(readdirSync(dir), ['applied.json'], 'no temporary file left');
  const text = readFileSync(path, 'utf8');
  t.notMatch(text, PSK, 'no PSK in clear');
  t.notMatch(text, WG_PRIV, 'no private key in clear');
  t.notMatch(text, (d.wireguard_peers[1] as { preshared_key: string }).preshared_key, 'no preshared key in clear');
  t.match(text, SEALED_PREFIX);
  const back = loadApplied(dir)!;
  t.equal(back.version, configVersion(state));
  const again = loadDesiredState({ controllerDocs: back.documents, localToml: LOCAL, secretsKey: kp, stateDir: null });
  t.equal(configVersion(again), configVersion(state), 'same state after a restart');
  const foreign = issuesOf(() => loadDesiredState({ controllerDocs: back.documents, localToml: LOCAL, secretsKey: generateSealKeypair(), stateDir: null }));
  t.ok(foreign.some((i) => /tunnels\[0\]\.auth\.psk/.test(i.path) && /cannot decrypt/.test(i.reason)), 'another vrouter key cannot open it');
  t.equal(loadApplied(join(dir, 'none')), undefined, 'nothing stored yet');
  t.same(sealSecrets({ private_key: 'file:/etc/cvlan/key.pem' }, kp.publicKey), { private_key: 'file:/etc/cvlan/key.pem' }, 'file references stay');
});
