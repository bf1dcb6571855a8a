// What the daemon checks on its host instead of writing blindly, and how a charon that cannot
// start says why (its own output in the error), on a sysctl tree and a charon of the test's own.
import t from 'tap';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { CAP, charonPrivateRunPossible, checkHostNetworking, hasCapability, reportHostNetworking } from '../../src/daemon/host-checks.js';
import { CharonSupervisor } from '../../src/strongswan/supervisor.js';
import { CvlanError } from '../../src/errors.js';

function sysctlTree(t: { teardown(fn: () => void): void }, values: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), 'cvlan-sysctl-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  for (const [key, v] of Object.entries(values)) {
    const file = join(root, key.replace(/\./g, '/'));
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, `${v}\n`);
  }
  return root;
}

const GOOD = { 'net.ipv4.ip_forward': '1', 'net.ipv6.conf.all.forwarding': '1', 'net.ipv4.conf.all.rp_filter': '2', 'net.ipv4.conf.default.rp_filter': '0' };

void t.test('settings already right: nothing written, nothing reported', async (t) => {
  const root = sysctlTree(t, GOOD);
  const checks = checkHostNetworking({ procSys: root });
  t.ok(checks.every((c) => c.ok && !c.changed), 'all ok');
  const lines: string[] = [];
  reportHostNetworking(checks, { info: (_o, m) => lines.push(m ?? ''), warn: (_o, m) => lines.push(m ?? '') });
  t.same(lines, [], 'silent');
});

void t.test('forwarding off and writable: turned on and reported as changed', async (t) => {
  const root = sysctlTree(t, { ...GOOD, 'net.ipv4.ip_forward': '0' });
  const c = checkHostNetworking({ procSys: root }).find((x) => x.setting === 'net.ipv4.ip_forward')!;
  t.match(c, { ok: true, changed: true, found: '0' });
  t.equal(readFileSync(join(root, 'net/ipv4/ip_forward'), 'utf8'), '1\n', 'written');
});

void t.test('forwarding off and not writable (a container\'s /proc/sys): reported with the exact fix', async (t) => {
  const root = sysctlTree(t, { ...GOOD, 'net.ipv4.ip_forward': '0' });
  // A read-only sysctl (mode 0444) refuses writes even to root, as a read-only /proc/sys does.
  const file = join(root, 'net/ipv4/ip_forward');
  rmSync(file);
  symlinkSync('/proc/sys/kernel/osrelease', file);
  const checks = checkHostNetworking({ procSys: root });
  const c = checks.find((x) => x.setting === 'net.ipv4.ip_forward')!;
  t.equal(c.ok, false);
  t.match(c.reason, /^cannot write .*ip_forward: (EACCES|EROFS|EPERM)$/);
  t.match(c.fix, /^sysctl -w net\.ipv4\.ip_forward=1 .*docker run --sysctl net\.ipv4\.ip_forward=1/);
  const warned: object[] = [];
  reportHostNetworking(checks, { info: () => undefined, warn: (o) => warned.push(o) });
  t.match(warned, [{ setting: 'net.ipv4.ip_forward', fix: /sysctl -w/ }], 'one warning, naming setting and fix');
});

void t.test('write disabled: a wrong setting is only reported', async (t) => {
  const root = sysctlTree(t, { ...GOOD, 'net.ipv6.conf.all.forwarding': '0' });
  const c = checkHostNetworking({ procSys: root, write: false }).find((x) => x.setting === 'net.ipv6.conf.all.forwarding')!;
  t.match(c, { ok: false, changed: false, reason: 'writing disabled' });
  t.equal(readFileSync(join(root, 'net/ipv6/conf/all/forwarding'), 'utf8'), '0\n', 'untouched');
});

void t.test('strict rp_filter is reported, never written (host-wide)', async (t) => {
  const root = sysctlTree(t, { ...GOOD, 'net.ipv4.conf.all.rp_filter': '1' });
  const c = checkHostNetworking({ procSys: root }).find((x) => x.setting === 'net.ipv4.conf.all.rp_filter')!;
  t.match(c, { ok: false, changed: false, found: '1', want: '0 or 2' });
  t.match(c.fix, /sysctl -w net\.ipv4\.conf\.all\.rp_filter=2/);
  t.equal(readFileSync(join(root, 'net/ipv4/conf/all/rp_filter'), 'utf8'), '1\n', 'untouched');
});

void t.test('IPv6 switched off (no tree): not a problem', async (t) => {
  const root = sysctlTree(t, { 'net.ipv4.ip_forward': '1', 'net.ipv4.conf.all.rp_filter': '0', 'net.ipv4.conf.default.rp_filter': '0' });
  t.ok(checkHostNetworking({ procSys: root }).every((c) => c.ok));
});

void t.test('capabilities from /proc/self/status', async (t) => {
  // Docker's default set plus NET_ADMIN (0x800425fb) and the same with SYS_ADMIN.
  t.ok(hasCapability(CAP.NET_ADMIN, 'CapEff:\t00000000a80435fb\n'));
  t.notOk(hasCapability(CAP.SYS_ADMIN, 'CapEff:\t00000000a80435fb\n'));
  t.ok(hasCapability(CAP.SYS_ADMIN, 'CapEff:\t00000000a82435fb\n'));
  t.notOk(hasCapability(CAP.NET_ADMIN, 'no such line'), 'unreadable: no');
  t.equal(charonPrivateRunPossible({ CVLAN_CHARON_PRIVATE_RUN: '0' }), false, 'override off');
  t.equal(charonPrivateRunPossible({ CVLAN_CHARON_PRIVATE_RUN: '1', container: 'docker' }), true, 'override on');
  // Here: root with every capability, so the probe decides (a container marker does not).
  t.equal(charonPrivateRunPossible({ container: 'podman' }), hasCapability(CAP.SYS_ADMIN), 'possible exactly with CAP_SYS_ADMIN here');
});

void t.test('a charon that fails at startup: its own words are in the error', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cvlan-charon-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const fake = join(dir, 'charon');
  writeFileSync(fake, '#!/bin/sh\necho "00[DMN] Starting IKE charon daemon" >&2\necho "00[LIB] plugin \'cvlan\' failed to load: socket /nowhere missing" >&2\nexit 3\n');
  chmodSync(fake, 0o755);
  const sup = new CharonSupervisor({ runtimeDir: join(dir, 'run'), conf: { plugins: ['random', 'vici'] }, charonPath: fake, privateRun: false, startTimeoutMs: 5000 });
  const err = await sup.start().then(() => undefined, (e: unknown) => e);
  t.ok(err instanceof CvlanError, 'a CvlanError');
  t.match((err as Error).message, /^charon exited during startup \(code 3\); charon said: .*plugin 'cvlan' failed to load: socket \/nowhere missing/);
});
