// strongswan.conf rendering: exact plugin list and order, sockets, and refusal of anything that
// would break the file's syntax or make charon print key material.
import t from 'tap';
import { PLUGINS_CVLAN, PLUGINS_KERNEL_LIBIPSEC, renderStrongswanConf } from '../../src/strongswan/conf.js';

void t.test('production instance: cvlan plugin with its socket, ahead of kernel-netlink', async (t) => {
  const text = renderStrongswanConf({
    viciSocket: '/run/cvlan/charon.vici',
    plugins: PLUGINS_CVLAN,
    cvlanSocket: '/run/cvlan/dataplane.sock',
  });
  const load = /^ {2}load = (.*)$/m.exec(text)?.[1]?.split(' ') ?? [];
  t.same(load, [...PLUGINS_CVLAN]);
  t.ok(load.indexOf('cvlan') < load.indexOf('kernel-netlink'), 'cvlan has priority over kernel-netlink');
  t.notOk(load.includes('kernel-libipsec') || load.includes('socket-default'), 'cvlan replaces them');
  t.match(text, /\n {4}vici \{\n {6}socket = unix:\/\/\/run\/cvlan\/charon\.vici\n {4}\}/);
  t.match(text, /\n {4}cvlan \{\n {6}socket = \/run\/cvlan\/dataplane\.sock\n {4}\}/);
  t.match(text, /port = 500\n {2}port_nat_t = 4500/);
  t.match(text, /stderr \{\n {6}default = 1/);
  // Braces balance: every section opened is closed.
  t.equal((text.match(/\{/g) ?? []).length, (text.match(/\}/g) ?? []).length);
});

void t.test('test instance: stock kernel-libipsec setup without bypass-lan and ha', async (t) => {
  const text = renderStrongswanConf({
    viciSocket: '/tmp/x/charon.vici',
    plugins: PLUGINS_KERNEL_LIBIPSEC,
    pluginSettings: { 'kernel-netlink': { fwmark: '0x42' } },
    charonSettings: { install_routes: true, retransmit_tries: 2 },
    port: 10500,
    portNatT: 14500,
    logLevel: 2,
  });
  t.match(text, /load = .*kernel-libipsec kernel-netlink socket-default vici\n/);
  t.notMatch(text, /bypass-lan|\bha\b/);
  t.match(text, /install_routes = yes\n {2}retransmit_tries = 2\n/);
  t.match(text, /kernel-netlink \{\n {6}fwmark = 0x42/);
  t.match(text, /port = 10500\n {2}port_nat_t = 14500/);
});

void t.test('refused inputs', async (t) => {
  const base = { viciSocket: '/tmp/v', plugins: ['vici'] };
  const bad: Array<[string, Parameters<typeof renderStrongswanConf>[0]]> = [
    ['relative socket', { ...base, viciSocket: 'v' }],
    ['no plugins', { ...base, plugins: [] }],
    ['no vici', { ...base, plugins: ['random'] }],
    ['plugin name with space', { ...base, plugins: ['vici', 'a b'] }],
    ['value with brace', { ...base, charonSettings: { x: 'a}b' } }],
    ['value with newline', { ...base, pluginSettings: { vici: { x: 'a\nb' } } }],
    ['log level 4 prints keys', { ...base, logLevel: 4 as never }],
    ['bad port', { ...base, port: 70000 }],
    ['relative cvlan socket', { ...base, cvlanSocket: 'x.sock' }],
  ];
  for (const [what, opts] of bad) t.throws(() => renderStrongswanConf(opts), { code: 'CVLAN_ERR_CONFIG' }, what);
});

void t.test('log subsystems: levels over the default, names and levels checked', async (t) => {
  const base = { viciSocket: '/run/cvlan/charon.vici', plugins: PLUGINS_CVLAN };
  const text = renderStrongswanConf({ ...base, logGroups: { net: 0, enc: 1 } });
  t.match(text, /stderr \{\n {6}default = 1\n {6}net = 0\n {6}enc = 1\n {6}ike_name = yes\n/);
  t.notMatch(renderStrongswanConf(base), /net = /, 'none unless asked for');
  t.throws(() => renderStrongswanConf({ ...base, logGroups: { 'net = 0\n  x': 0 } }), { code: 'CVLAN_ERR_CONFIG' });
  t.throws(() => renderStrongswanConf({ ...base, logGroups: { ike: 4 as 2 } }), /must be -1, 0, 1 or 2/, 'level 4 dumps key material');
});

void t.test('quiet liveness: the IKE lines move to the cvlan plugin at the level they had', async (t) => {
  const base = { viciSocket: '/run/cvlan/charon.vici', plugins: PLUGINS_CVLAN, cvlanSocket: '/run/cvlan/dp.sock' };
  const text = renderStrongswanConf({ ...base, logGroups: { net: 0, enc: 0 }, quietLiveness: true });
  t.match(text, /stderr \{\n {6}default = 1\n {6}net = 0\n {6}enc = 0\n {6}ike = -1\n {6}ike_name = yes\n/, "charon's own logger leaves IKE out");
  t.match(text, /\n {4}cvlan \{\n {6}socket = \/run\/cvlan\/dp\.sock\n {6}ike_log_level = 1\n {4}\}/, 'the plugin writes IKE at level 1');
  t.match(renderStrongswanConf({ ...base, logLevel: 0, logGroups: { ike: 2 }, quietLiveness: true }), /ike_log_level = 2\n/, 'an IKE level of its own is kept');
  const silent = renderStrongswanConf({ ...base, logGroups: { ike: -1 }, quietLiveness: true });
  t.notMatch(silent, /ike_log_level/, 'IKE off: nothing for the plugin to write');
  t.notMatch(renderStrongswanConf({ ...base, logGroups: { net: 0 } }), /ike_log_level|ike = -1/, 'none unless asked for');
  t.throws(() => renderStrongswanConf({ viciSocket: '/v', plugins: ['vici'], quietLiveness: true }), /needs the cvlan plugin/);
});
