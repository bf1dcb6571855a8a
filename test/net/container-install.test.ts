// The README's install path on a clean Debian 12 (the debootstrapped base of the container test,
// with no strongSwan, no WireGuard tools, no cvlan anything): the release tarball from
// deploy/package.sh, its install.sh, then what is installed works — the command, the charon plugin
// loaded by the installed charon, the unit that systemd accepts, swanctl's socket setting — and a
// second run (an upgrade) leaves the same result. The cloud-init extraction of install.sh is used.
import t from 'tap';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { REPO_ROOT, cvlanTestbedMissing } from '../harness/cvlan.js';
import { resolveTool } from '../harness/tools.js';
import { randomSuffix } from '../harness/names.js';

const exec = promisify(execFile);
const BASE = 'localhost/cvlan-base:bookworm-node20';
const skip =
  cvlanTestbedMissing() ??
  (process.getuid?.() !== 0 ? 'needs root (buildah storage)' : undefined) ??
  (['buildah', 'debootstrap', 'strip'].every((n) => resolveTool(n)) ? undefined : 'missing buildah/debootstrap (scripts/setup.sh installs them)');

t.test('install.sh from the release tarball on a clean Debian 12', { skip }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cvlan-install-'));
  const name = `cvlan-install-${randomSuffix(6)}`;
  t.teardown(async () => {
    await exec('buildah', ['rm', name]).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });
  await exec(join(REPO_ROOT, 'deploy/container/local-base.sh'), [BASE], { timeout: 600_000 });
  const tarball = join(dir, 'release.tar.gz');
  await exec(join(REPO_ROOT, 'deploy/package.sh'), [tarball], { cwd: REPO_ROOT, timeout: 300_000, maxBuffer: 1 << 24 });
  await exec('buildah', ['from', '--quiet', '--name', name, BASE]);
  const run = (script: string): Promise<{ stdout: string; stderr: string }> =>
    exec('buildah', ['run', '--isolation', 'chroot', '-v', `${dir}:/release:ro`, name, '--', 'sh', '-ec', script], { timeout: 600_000, maxBuffer: 1 << 24 });

  await t.rejects(run('command -v charon swanctl wg cvlan-vrouter'), 'nothing of it is there before');
  // As cloud-init's bootstrap does it: install.sh taken out of the tarball, given the tarball.
  const extract = "tar -xzOf /release/release.tar.gz --wildcards --no-wildcards-match-slash 'cvlan-vrouter-*/install.sh' > /tmp/install.sh";
  const first = await run(`${extract}; sh /tmp/install.sh /release/release.tar.gz`);
  t.match(first.stderr, /install\.sh: installed cvlan-vrouter \d+\.\d+\.\d+/, 'the installer reports the installed version');

  const v = await run('cvlan-vrouter version; vrouterctl --help | head -n 1');
  t.match(v.stdout, /^cvlan-vrouter \d+\.\d+\.\d+ \(native addon/m, 'cvlan-vrouter runs (its own Node.js, the addon)');
  t.match(v.stdout, /usage: vrouterctl/, 'vrouterctl runs');
  const plugin = await run('ls -l /usr/lib/ipsec/plugins/libstrongswan-cvlan.so; swanctl --help 2>&1 | head -n 1; wg --version');
  t.match(plugin.stdout, /libstrongswan-cvlan\.so/, 'the charon plugin is in charon\'s plugin directory');
  t.match(plugin.stdout, /wireguard-tools/, 'wg is installed');
  const files = await run('cat /etc/strongswan.d/cvlan-swanctl.conf /etc/sysctl.d/90-cvlan.conf; stat -c "%a %n" /etc/cvlan /var/lib/cvlan; cmp /etc/systemd/system/cvlan-vrouter.service /opt/cvlan-vrouter/deploy/systemd/cvlan-vrouter.service && echo unit-installed');
  t.match(files.stdout, /socket = unix:\/\/\/run\/cvlan-vrouter\/charon\/charon\.vici/, 'swanctl finds the unit\'s charon without --uri');
  t.match(files.stdout, /net\.ipv4\.ip_forward = 1/, 'forwarding persisted in sysctl.d');
  t.match(files.stdout, /700 \/var\/lib\/cvlan/, 'state directory 0700');
  t.match(files.stdout, /unit-installed/, 'the unit is in /etc/systemd/system');

  // Upgrade: the same tarball again; the result is the same and still runs.
  await run('sh /opt/cvlan-vrouter/install.sh /release/release.tar.gz');
  t.match((await run('cvlan-vrouter version')).stdout, /^cvlan-vrouter /, 'a second install (upgrade) leaves a working installation');
  t.equal((await run('ls -d /opt/cvlan-vrouter.* 2>/dev/null | wc -l')).stdout.trim(), '0', 'no half-installed directory left behind');
});
