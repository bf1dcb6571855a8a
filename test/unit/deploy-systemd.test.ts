// deploy/systemd/cvlan-vrouter.service, read by systemd itself: `systemd-analyze verify` in a
// scratch root (the unit installed, its commands present, the system's own targets) must print
// nothing, `systemd-analyze security --offline` must rate it well, and the hardening the daemon's
// design relies on is there. A broken copy shows the check can fail.
import t from 'tap';
import { execFile } from 'node:child_process';
import { chmodSync, copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { REPO_ROOT } from '../harness/cvlan.js';

const exec = promisify(execFile);
const UNIT = join(REPO_ROOT, 'deploy/systemd/cvlan-vrouter.service');
const SYSTEM_UNITS = '/usr/lib/systemd/system';
const skip = existsSync('/usr/bin/systemd-analyze') && existsSync(SYSTEM_UNITS) ? undefined : 'systemd-analyze is not installed (apt-get install systemd)';

/** A root with the unit installed and every command it names present, for `verify --root`. */
function scratchRoot(t: { teardown(fn: () => void): void }, unitText: string): string {
  const r = mkdtempSync(join(tmpdir(), 'cvlan-unit-'));
  t.teardown(() => rmSync(r, { recursive: true, force: true }));
  for (const d of ['usr/local/bin', 'usr/bin', 'usr/lib/systemd', 'etc/systemd/system']) mkdirSync(join(r, d), { recursive: true });
  symlinkSync('usr/bin', join(r, 'bin'));
  copyFileSync('/usr/bin/kill', join(r, 'usr/bin/kill'));
  writeFileSync(join(r, 'usr/local/bin/cvlan-vrouter'), '#!/bin/sh\n');
  chmodSync(join(r, 'usr/local/bin/cvlan-vrouter'), 0o755);
  cpSync(SYSTEM_UNITS, join(r, 'usr/lib/systemd/system'), { recursive: true });
  writeFileSync(join(r, 'etc/systemd/system/cvlan-vrouter.service'), unitText);
  return r;
}

async function verify(root: string): Promise<{ code: number; out: string }> {
  try {
    const r = await exec('systemd-analyze', ['verify', '--man=no', `--root=${root}`, 'cvlan-vrouter.service']);
    return { code: 0, out: (r.stdout + r.stderr).trim() };
  } catch (e) {
    const x = e as { code?: number; stdout?: string; stderr?: string };
    return { code: x.code ?? -1, out: `${x.stdout ?? ''}${x.stderr ?? ''}`.trim() };
  }
}

/** `Key=value` lines of [Service]. */
function serviceKeys(text: string): Map<string, string> {
  const m = new Map<string, string>();
  let section = '';
  for (const line of text.split('\n')) {
    const h = /^\[(\w+)\]/.exec(line);
    if (h) section = h[1]!;
    const kv = /^(\w+)=(.*)$/.exec(line);
    if (kv && section === 'Service') m.set(kv[1]!, kv[2]!);
  }
  return m;
}

const text = readFileSync(UNIT, 'utf8');

void t.test('systemd-analyze verify accepts the unit without a word', { skip }, async (t) => {
  const r = await verify(scratchRoot(t, text));
  t.equal(r.code, 0, 'exit 0');
  t.equal(r.out, '', 'no diagnostics');
});

void t.test('the check fails on a broken unit', { skip }, async (t) => {
  const r = await verify(scratchRoot(t, text.replace('ProtectSystem=strict', 'ProtectSystem=strict\nProtectSytem=full')));
  t.match(r.out, /Unknown key 'ProtectSytem'/, 'a misspelt key is reported');
  const missing = await verify(scratchRoot(t, text.replace('/usr/local/bin/cvlan-vrouter', '/usr/local/bin/cvlan-vrouterd')));
  t.not(missing.code, 0, 'a missing command fails verify');
});

void t.test('hardening: what the daemon needs and nothing more', async (t) => {
  const k = serviceKeys(text);
  const caps = (k.get('CapabilityBoundingSet') ?? '').split(/\s+/).sort();
  t.same(caps, ['CAP_NET_ADMIN', 'CAP_NET_BIND_SERVICE', 'CAP_NET_RAW'], 'bounding set: TUN/routes, raw ESP, IKE ports');
  t.notMatch(text.replace(/^#.*$/gm, ''), /CAP_SYS_ADMIN/, 'no CAP_SYS_ADMIN (charon runs without a private /run)');
  t.same((k.get('AmbientCapabilities') ?? '').split(/\s+/).sort(), caps, 'ambient = bounding (inherited by charon)');
  t.equal(k.get('ProtectSystem'), 'strict');
  t.equal(k.get('StateDirectory'), 'cvlan', '/var/lib/cvlan is the state directory');
  t.match(k.get('RuntimeDirectory'), /\bcvlan\b.*\bwireguard\b/, 'admin socket and wg UAPI sockets have a writable /run');
  t.equal(k.get('Restart'), 'on-failure');
  t.equal(k.get('NoNewPrivileges'), 'yes');
  t.equal(k.get('DeviceAllow'), '/dev/net/tun rw', 'only the TUN device');
  t.match(k.get('ExecStart'), /--runtime-dir \/run\/cvlan-vrouter/, 'charon\'s files under a RuntimeDirectory');
});

void t.test('systemd-analyze security rates the unit', { skip }, async (t) => {
  const r = await exec('systemd-analyze', ['security', '--offline=yes', '--no-pager', UNIT]).catch((e: { stdout?: string }) => ({ stdout: e.stdout ?? '' }));
  const m = /Overall exposure level for cvlan-vrouter\.service: ([0-9.]+)/.exec(r.stdout);
  t.ok(m, 'an overall exposure level');
  t.ok(Number(m?.[1]) <= 3.5, `exposure ${m?.[1]} ≤ 3.5 (0 = fully locked down, 10 = unprotected)`);
});
