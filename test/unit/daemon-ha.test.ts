// What the daemon refuses under [ha] (src/daemon/ha.ts) and the configuration generation both
// nodes compute from the same documents.
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { loadDesiredState } from '../../src/config/load.js';
import type { DesiredState } from '../../src/config/model.js';
import { documentsGeneration, haRefusal } from '../../src/daemon/ha.js';
import { unsupported } from '../../src/daemon/vrouter.js';
import { genkey, pubkey } from '../../src/secrets/keys.js';

const dir = mkdtempSync(join(tmpdir(), 'cvlan-daemon-ha-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const keyFile = join(dir, 'sync.key');
writeFileSync(keyFile, randomBytes(32).toString('base64'), { mode: 0o600 });
const otherKeyFile = join(dir, 'other.key');
writeFileSync(otherKeyFile, randomBytes(32).toString('base64'), { mode: 0o600 });

const wgOnly = {
  vrouter_id: 'vr',
  tenant_id: 'acme',
  wireguard: { listen_port: 51820, private_key: genkey() },
  wireguard_peers: [{ public_key: pubkey(genkey()), allowed_ips: ['10.9.0.1/32'] }],
};
const withTunnel = {
  ...wgOnly,
  tunnels: [{ id: 'site-a', type: 'ipsec', remote_id: 'a.example.net', auth: { method: 'psk', psk: 'a-pre-shared-key-never-stored-in-clear' }, local_subnets: ['10.1.0.0/24'], remote_subnets: ['10.2.0.0/24'] }],
};
const ha = (extra = ''): string =>
  `[ha]\nnode_id = 1\nlocal_address = "10.0.0.1"\npeer_address = "10.0.0.2"\ninterface = "eth0"\nvips = ["192.0.2.10/24"]\nsync_key_file = "${keyFile}"\n${extra}`;
const state = (doc: unknown, toml: string): DesiredState => loadDesiredState({ controllerDocs: [doc], localToml: toml, stateDir: null });
const issues = (e: { issues: { path: string; reason: string }[] } | undefined) => e?.issues ?? [];

t.test('accepted: WireGuard only, listening on a VIP; no [ha] at all', async (t) => {
  t.equal(haRefusal(state(wgOnly, `[network]\nlisten_address = "192.0.2.10"\n${ha()}`)), undefined);
  t.equal(haRefusal(state(withTunnel, '[network]\nlisten_address = "192.0.2.1"\n')), undefined, 'IPsec without [ha] is not this module’s business');
});

t.test('refused: no listen address to bind the VIP', async (t) => {
  const [i] = issues(haRefusal(state(wgOnly, ha())));
  t.equal(i?.path, 'network.listen_address');
  t.match(i?.reason, /with \[ha\].*VIP/);
});

t.test('IPsec under [ha]: accepted with charon_ha (the default), refused without (unsupported(), which start and reload both call)', async (t) => {
  t.same(issues(unsupported(state(withTunnel, `[network]\nlisten_address = "192.0.2.10"\n${ha()}`))), [], 'charon_ha on: accepted');
  const [i] = issues(unsupported(state(withTunnel, `[network]\nlisten_address = "192.0.2.10"\n${ha('charon_ha = false\n')}`)));
  t.equal(i?.path, 'ha.charon_ha');
  t.match(i?.reason, /tenants\[0\]\.tunnels.*IKE_SA/);
});

t.test('refused: [ha] changed on a reload', async (t) => {
  const running = state(wgOnly, `[network]\nlisten_address = "192.0.2.10"\n${ha()}`);
  t.equal(haRefusal(state(wgOnly, `[network]\nlisten_address = "192.0.2.10"\n${ha()}`), running), undefined, 'the same [ha]: accepted');
  const [i] = issues(haRefusal(state(wgOnly, `[network]\nlisten_address = "192.0.2.10"\n${ha('priority = 200\n')}`), running));
  t.equal(i?.path, 'ha');
  t.match(i?.reason, /restart/);
  t.equal(issues(haRefusal(state(wgOnly, ''), running))[0]?.path, 'ha', '[ha] removed: refused too');
});

t.test('generation: the same documents and key give the same number on both nodes; any change another', async (t) => {
  const g = documentsGeneration([wgOnly], keyFile);
  t.ok(Number.isSafeInteger(g) && g >= 0, `a safe integer (${g})`);
  t.equal(documentsGeneration([JSON.parse(JSON.stringify(wgOnly))], keyFile), g, 'deterministic');
  t.not(documentsGeneration([{ ...wgOnly, wireguard_peers: [] }], keyFile), g, 'another document');
  t.not(documentsGeneration([wgOnly], otherKeyFile), g, 'keyed');
  t.throws(() => documentsGeneration([wgOnly], join(dir, 'missing.key')), { code: 'CVLAN_ERR_CONFIG' });
});
