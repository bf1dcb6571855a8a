// [ha] in the local TOML: defaults, every field's validation naming the field and the reason,
// and what it renders into (keepalived.conf, charon's ha plugin settings), and the sync key file.
import t from 'tap';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, type ConfigIssue } from '../../src/errors.js';
import { parseLocalToml } from '../../src/config/local.js';
import { renderKeepalivedConf } from '../../src/ha/keepalived-conf.js';
import { charonHaFifoPath, charonHaSettings } from '../../src/ha/charon-ha.js';
import { readSyncKey } from '../../src/ha/sync-key.js';
import { renderStrongswanConf, PLUGINS_CVLAN } from '../../src/strongswan/conf.js';

const BASE = `
[network]
public_interface = "eth0"
[ha]
node_id = 1
local_address = "10.0.0.2"
peer_address = "10.0.0.3"
vips = ["192.0.2.10/24"]
sync_key_file = "/etc/cvlan/ha.key"
`;

function issuesOf(text: string): ConfigIssue[] {
  try {
    parseLocalToml(text, 'vrouter.toml');
  } catch (e) {
    if (e instanceof ConfigError) return e.issues;
    throw e;
  }
  throw new Error('expected a ConfigError');
}

t.test('defaults: the minimal [ha] table', async (t) => {
  const c = parseLocalToml(BASE, 'vrouter.toml');
  t.same(c.ha, {
    nodeId: 1,
    localAddress: '10.0.0.2',
    peerAddress: '10.0.0.3',
    interface: 'eth0',
    vips: ['192.0.2.10/24'],
    privateVips: [],
    virtualRouterId: 51,
    priority: 100,
    preempt: false,
    advertIntervalMs: 1000,
    syncKeyFile: '/etc/cvlan/ha.key',
    syncPort: 4610,
    syncIntervalMs: 100,
    leaseMessages: 1048576,
    charonHa: true,
    keepalivedPath: '/usr/sbin/keepalived',
  });
  t.equal(parseLocalToml('', 'x').ha, undefined, 'no [ha], no HA');
});

t.test('every bad field is named with its reason and line', async (t) => {
  const issues = issuesOf(`
[ha]
node_id = 0
local_address = "10.0.0.2:80"
peer_address = "fe80::1"
vips = ["192.0.2.10", "192.0.2.11/33", 7]
private_vips = ["10.1.0.1/24"]
priority = 255
preempt = "yes"
advert_interval_ms = 15
sync_key_file = "ha.key"
sync_port = 0
sync_interval_ms = 5
lease_messages = 10
charon_ha = 1
colour = "red"
`);
  const by = Object.fromEntries(issues.map((i) => [i.path, i.reason]));
  t.match(by['ha.colour'], /unknown field/);
  t.match(by['ha.node_id'], /0 is not valid; expected an integer 1\.\.255 \(at vrouter\.toml:3\)/);
  t.match(by['ha.local_address'], /not valid; expected an IPv4 or IPv6 address \(no port\)/);
  t.match(by['ha.interface'], /missing; expected the interface VRRP runs on/);
  t.match(by['ha.vips[0]'], /expected "address\/prefix-length"/);
  t.match(by['ha.vips[1]'], /prefix length over 32/);
  t.match(by['ha.vips[2]'], /got a number \(at vrouter\.toml:6\)/);
  t.match(by['ha.private_vips'], /needs network\.private_interface/);
  t.match(by['ha.priority'], /255 is not valid; expected an integer 1\.\.254/);
  t.match(by['ha.preempt'], /expected true or false, got a string/);
  t.match(by['ha.advert_interval_ms'], /multiple of 10 ms/);
  t.match(by['ha.sync_key_file'], /not an absolute path/);
  t.match(by['ha.sync_port'], /expected an integer 1\.\.65535/);
  t.match(by['ha.sync_interval_ms'], /expected an integer 10\.\.10000 \(milliseconds\)/);
  t.match(by['ha.lease_messages'], /\(messages\)/);
  t.match(by['ha.charon_ha'], /expected true or false/);
});

t.test('cross-field rules', async (t) => {
  const same = issuesOf(BASE.replace('"10.0.0.3"', '"10.0.0.2"'));
  t.match(same, [{ path: 'ha.peer_address', reason: /same as ha\.local_address/ }]);
  const family = issuesOf(BASE.replace('"10.0.0.3"', '"2001:db8::3"'));
  t.match(family, [{ path: 'ha.peer_address', reason: /same address family/ }]);
  const noKey = issuesOf(BASE.replace('sync_key_file = "/etc/cvlan/ha.key"', ''));
  t.match(noKey, [{ path: 'ha.sync_key_file', reason: /missing; .*32-byte sync key/ }]);
  const listen = issuesOf(BASE.replace('public_interface = "eth0"', 'public_interface = "eth0"\nlisten_address = "192.0.2.99"'));
  t.match(listen, [{ path: 'network.listen_address', reason: /not one of ha\.vips/ }]);
  const ok = parseLocalToml(BASE.replace('public_interface = "eth0"', 'public_interface = "eth0"\nlisten_address = "192.0.2.10"'));
  t.equal(ok.network.listenAddress, '192.0.2.10');
});

t.test('keepalived.conf: unicast peer, VIPs, nopreempt unless asked, the fence track_file, the notify FIFO', async (t) => {
  const c = parseLocalToml(BASE + 'advert_interval_ms = 250\npriority = 150\n', 'x');
  const conf = renderKeepalivedConf(c.ha!, { notifyFifo: '/var/lib/cvlan/ha/keepalived.fifo', fenceFile: '/var/lib/cvlan/ha/fence' });
  t.match(conf, /notify_fifo "\/var\/lib\/cvlan\/ha\/keepalived.fifo"/);
  t.match(conf, /track_file cvlan_fence \{\n {2}file "\/var\/lib\/cvlan\/ha\/fence"\n {2}weight 0\n\}/);
  t.match(conf, /vrrp_instance cvlan \{\n {2}state BACKUP\n {2}interface eth0\n {2}virtual_router_id 51\n {2}priority 150\n {2}advert_int 0\.25\n/);
  t.match(conf, /\n {2}nopreempt\n/);
  t.match(conf, /unicast_src_ip 10\.0\.0\.2\n {2}unicast_peer \{\n {4}10\.0\.0\.3\n/);
  t.match(conf, /virtual_ipaddress \{\n {4}192\.0\.2\.10\/24 dev eth0\n/);
  t.notMatch(conf, /notify_master|notify_backup|vrrp_script/, 'no scripts: role changes come through the FIFO');
  const pre = renderKeepalivedConf(parseLocalToml(BASE + 'preempt = true\n').ha!, { notifyFifo: '/f', fenceFile: '/g' });
  t.notMatch(pre, /nopreempt/);
  t.throws(() => renderKeepalivedConf(c.ha!, { notifyFifo: '/a b', fenceFile: '/g' }), /cannot be quoted/);
});

t.test('charon ha plugin: loopback only, one segment, no heartbeat of its own, FIFO control, resync', async (t) => {
  const c = parseLocalToml(BASE, 'x');
  const s = charonHaSettings(c.ha!);
  t.same(s.settings, { local: '127.0.0.1', remote: '127.0.0.2', segment_count: 1, monitor: false, fifo_interface: true, resync: true });
  t.same(s.relay, { bind: '127.0.0.2:4510', deliverTo: '127.0.0.1:4510' });
  t.equal(s.settings.secret, undefined, 'no plugin secret: the sync channel encrypts');
  const conf = renderStrongswanConf({ viciSocket: '/run/cvlan/charon.vici', plugins: [...PLUGINS_CVLAN, 'ha'], pluginSettings: { ha: s.settings } });
  t.match(conf, /load = .* ha\b/);
  t.match(conf, /ha \{[^}]*local = 127\.0\.0\.1[^}]*remote = 127\.0\.0\.2/s);
  t.equal(charonHaFifoPath(process.pid), '/proc/' + process.pid + '/root/run/charon.ha', "through charon's own mount namespace, /var/run resolved there");
  t.equal(charonHaFifoPath(undefined), '/var/run/charon.ha');
  t.throws(() => charonHaSettings({ ...c.ha!, charonHa: false }));
});

t.test('sync key file: 32 bytes of base64, mode 0600', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cvlan-ha-key-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'ha.key');
  const good = Buffer.alloc(32, 7).toString('base64');
  writeFileSync(path, `${good}\n`, { mode: 0o600 });
  const key = readSyncKey(path);
  t.equal(key.bytes.length, 32);
  t.equal(key.bytes[5], 7);
  key.dispose();
  chmodSync(path, 0o644);
  t.throws(() => readSyncKey(path), { code: 'CVLAN_ERR_CONFIG', issues: [{ path: 'ha.sync_key_file', reason: /readable by group or others \(mode 644\)/ }] });
  writeFileSync(path, Buffer.alloc(16).toString('base64'), { mode: 0o600 });
  chmodSync(path, 0o600);
  t.throws(() => readSyncKey(path), { code: 'CVLAN_ERR_CONFIG', issues: [{ reason: /expected 32 bytes .* got 16 bytes/ }] });
  writeFileSync(path, 'not base64!', { mode: 0o600 });
  t.throws(() => readSyncKey(path), { code: 'CVLAN_ERR_CONFIG', issues: [{ reason: /got no valid base64/ }] });
  t.throws(() => readSyncKey(join(dir, 'missing')), { code: 'CVLAN_ERR_CONFIG', issues: [{ reason: /cannot read/ }] });
});
