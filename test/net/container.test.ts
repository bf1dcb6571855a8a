// The Dockerfile's image, built and run for real on a machine without a Docker engine: buildah with
// chroot isolation from a Debian base made locally with debootstrap. The container sits in its own
// network namespace with only the capabilities `docker run --cap-add NET_ADMIN --device
// /dev/net/tun` gives (no CAP_SYS_ADMIN, no NET_RAW), a read-only root filesystem, a read-only
// /proc/sys and the state directory as a volume, and carries WireGuard (wireguard-go) ⇄ IPsec
// (strongSwan kernel-libipsec) traffic. The image's own HEALTHCHECK, `wg` and `swanctl` (no flags)
// are run inside it; a recreated container comes back from the volume alone.
//
// Slow the first time (debootstrap, npm, apt inside the build: ≈ 2-3 min); the base, the npm
// packages and the image (tagged by a hash of its inputs) are cached in /var/cache/cvlan-test and
// buildah's storage, so an unchanged tree starts in seconds.
import t from 'tap';
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { adminGet } from '../../src/api/client.js';
import { demoDefaultDocument, substitutePlaceholders } from '../../src/config/load.js';
import { CAP, hasCapability } from '../../src/daemon/host-checks.js';
import { useLab, closeLab } from '../harness/tap.js';
import { missingPrerequisites, resolveTool } from '../harness/tools.js';
import { genKeyPair, wireguardGo } from '../harness/wireguard.js';
import { strongswanPeer } from '../harness/strongswan.js';
import { ping, waitForPing } from '../harness/ping.js';
import { cvlanTestbedMissing, REPO_ROOT } from '../harness/cvlan.js';
import { randomSuffix } from '../harness/names.js';
import type { Lab } from '../harness/lab.js';
import type { LabProcess } from '../harness/process.js';

const exec = promisify(execFile);
const IMAGE_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const NET = { legacy: '192.0.2.1', vrouterLegacy: '192.0.2.2', vrouterAgent: '198.51.100.1', agent: '198.51.100.2', legacyLan: '10.10.0.1', agentInner: '10.20.0.2' };

function containerToolsMissing(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces, buildah storage)';
  const missing = ['buildah', 'debootstrap', 'strip'].filter((n) => resolveTool(n) === undefined);
  return missing.length > 0 ? `missing ${missing.join(', ')} (scripts/setup.sh installs them)` : undefined;
}

const skip = cvlanTestbedMissing() ?? containerToolsMissing() ?? missingPrerequisites('charon', 'swanctl', 'wireguardGo');

interface ImageConfig {
  Entrypoint?: string[];
  Cmd?: string[];
  Volumes?: Record<string, unknown>;
  Healthcheck?: { Test?: string[] };
}

/** One container of the image (its rootfs mounted so the test can make it read-only). */
class Container {
  readonly name = `cvlan-test-${randomSuffix(6)}`;
  rootfs = '';
  constructor(readonly image: string) {}

  async create(lab: Lab): Promise<void> {
    await exec('buildah', ['from', '--quiet', '--name', this.name, this.image]);
    // buildah mounts an image VOLUME and a `-v` on the same path in random order (a Go map), so
    // the working container forgets the declaration; the image keeps it for Docker and Podman.
    await exec('buildah', ['config', '--volume', '/var/lib/cvlan-', this.name]);
    lab.onTeardown(`buildah rm ${this.name}`, () => {
      try {
        execFileSync('mount', ['-o', 'remount,rw', this.rootfs], { stdio: 'ignore' });
      } catch {
        // not mounted (any more)
      }
      execFileSync('buildah', ['rm', this.name], { stdio: 'ignore' });
    });
    this.rootfs = (await exec('buildah', ['mount', this.name])).stdout.trim();
  }

  /**
   * `docker run --read-only`: buildah itself writes to the rootfs while it sets a run up and
   * cleans up (it has no read-only option), so the root is made read-only between the two:
   * see `start`, and `stopDaemon`, which makes it writable again only after traffic was checked.
   */
  async readOnly(on: boolean): Promise<void> {
    await exec('mount', ['-o', `remount,${on ? 'ro' : 'rw'}`, this.rootfs]);
  }

  /**
   * Starts `cmd` in the container in `ns`, with the root read-only before `cmd` runs: a gate
   * script waits (sh of the image) until the test has remounted the rootfs, then execs `cmd`.
   */
  async start(lab: Lab, ns: string, name: string, volumes: { state: string; run: string; etc: string }, cmd: readonly string[]): Promise<LabProcess> {
    const gate = 'touch /run/.cvlan-gate-waiting; while [ ! -e /run/.cvlan-gate-go ]; do sleep 0.05; done; rm -f /run/.cvlan-gate-*; exec "$@"';
    const proc = lab.spawn(name, 'buildah', this.runArgs(volumes, ['sh', '-c', gate, 'sh', ...cmd]), { ns });
    await proc.waitReady({ file: join(volumes.run, '.cvlan-gate-waiting'), timeoutMs: 30_000 });
    await this.readOnly(true);
    writeFileSync(join(volumes.run, '.cvlan-gate-go'), '');
    return proc;
  }

  /** `buildah run` argv for `cmd` in namespace-less form; the caller adds `ip netns exec`. */
  runArgs(volumes: { state: string; run: string; etc: string }, cmd: readonly string[]): string[] {
    return [
      'run', '--isolation', 'chroot', '--cap-add', 'CAP_NET_ADMIN',
      '-v', `${volumes.state}:/var/lib/cvlan`, '-v', `${volumes.run}:/run`, '-v', `${volumes.etc}:/etc/cvlan:ro`,
      '-e', 'CVLAN_LOG_LEVEL=info',
      this.name, '--', ...cmd,
    ];
  }
}

/** The PID of the daemon inside the container: the node process in `ns` running `cvlan-vrouter … run`. */
async function daemonPid(ns: string): Promise<number | undefined> {
  const pids = (await exec('ip', ['netns', 'pids', ns])).stdout.split('\n').filter(Boolean).map(Number);
  for (const pid of pids) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      if (cmd.some((a) => a.endsWith('cvlan-vrouter')) && cmd.includes('run') && readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'node') return pid;
    } catch {
      // gone meanwhile
    }
  }
  return undefined;
}

/** Stops the containerized daemon by its own PID (buildah would SIGKILL it) and waits for buildah. */
async function stopDaemon(ctr: Container, ns: string, proc: LabProcess): Promise<number | null> {
  const pid = await daemonPid(ns);
  if (pid === undefined) throw new Error('daemon process not found');
  await ctr.readOnly(false);
  process.kill(pid, 'SIGTERM');
  const st = await Promise.race([proc.exited, new Promise<null>((r) => setTimeout(() => r(null), 20_000))]);
  return st === null ? null : st.code;
}

t.test('container: the image runs WireGuard ⇄ IPsec with NET_ADMIN, a read-only root and a state volume', { skip }, async (t) => {
  const started = Date.now();
  const built = await exec(join(REPO_ROOT, 'deploy/container/build-local.sh'), [], { cwd: REPO_ROOT, timeout: 12 * 60_000, maxBuffer: 1 << 24 });
  const image = built.stdout.trim().split('\n').pop()!;
  t.comment(`image ${image} ready after ${((Date.now() - started) / 1000).toFixed(0)} s (${built.stderr.includes('up to date') ? 'cached' : 'built'})`);

  const info = JSON.parse((await exec('buildah', ['inspect', '--type', 'image', image], { maxBuffer: 1 << 24 })).stdout) as { Docker?: { config?: ImageConfig }; OCIv1?: { config?: ImageConfig } };
  const cfg = info.Docker?.config ?? {};
  t.same(cfg.Entrypoint, ['cvlan-vrouter'], 'entrypoint is the daemon');
  t.ok(cfg.Volumes && '/var/lib/cvlan' in cfg.Volumes, '/var/lib/cvlan is a volume');
  const health = cfg.Healthcheck?.Test ?? [];
  t.equal(health[0], 'CMD', 'the image has a HEALTHCHECK');
  t.comment(`image size: ${(await exec('buildah', ['images', '--format', '{{.Size}}', image])).stdout.trim()}`);

  const lab = useLab(t, { label: 'ctr' });
  const [nsL, nsR, nsA] = [await lab.namespace('legacy'), await lab.namespace('vrouter'), await lab.namespace('agent')];
  await lab.veth({ ns: nsL, addresses: [`${NET.legacy}/24`] }, { ns: nsR, addresses: [`${NET.vrouterLegacy}/24`] });
  await lab.veth({ ns: nsR, addresses: [`${NET.vrouterAgent}/24`] }, { ns: nsA, addresses: [`${NET.agent}/24`] });
  await lab.addAddress(nsL, 'lo', `${NET.legacyLan}/32`);

  // The operator's files: /etc/cvlan (read-only), the state volume, and what `--tmpfs /run` gives.
  const vol = { etc: join(lab.dir, 'etc'), state: join(lab.dir, 'state'), run: join(lab.dir, 'run') };
  for (const d of Object.values(vol)) mkdirSync(d, { recursive: true, mode: 0o700 });
  const psk = randomBytes(24).toString('base64');
  const agentKeys = await genKeyPair();
  // No WireGuard key in the document: the daemon generates one and keeps it on the volume.
  const doc = substitutePlaceholders(demoDefaultDocument(), { DEMO_PSK: psk, VROUTER_WG_PRIVATE_KEY: '', AGENT_PUBLIC_KEY: agentKeys.publicKey }) as { wireguard: Record<string, unknown> };
  delete doc.wireguard.private_key;
  writeFileSync(join(vol.etc, 'config.json'), JSON.stringify(doc, null, 2), { mode: 0o600 });
  writeFileSync(join(vol.etc, 'vrouter.toml'), `[network]\nlisten_address = "${NET.vrouterLegacy}"\n\n[performance]\nworker_threads = 2\n`);

  const ctr = new Container(image);
  await ctr.create(lab);
  const before = await lab.exec(nsR, 'buildah', ctr.runArgs(vol, health.slice(1)), { allowFailure: true }).then((r) => ({ code: r.code, out: r.stdout + r.stderr }));
  t.not(before.code, 0, `HEALTHCHECK fails before the daemon runs: ${before.out.trim().split('\n')[0]}`);

  const command = [...(cfg.Entrypoint ?? []), ...(cfg.Cmd ?? [])];
  t.same(command, ['cvlan-vrouter', 'run', '--config', '/etc/cvlan/config.json'], 'the image runs the daemon on /etc/cvlan/config.json');
  const daemon = await ctr.start(lab, nsR, 'container', vol, command);
  await daemon.waitReady({ line: /"event":"ready"/, timeoutMs: 60_000 });
  const readyLine = daemon.lastOutput(500).split('\n').find((l) => l.includes('"event":"ready"'))!;
  const ready = JSON.parse(readyLine.slice(readyLine.indexOf('{'))) as { wireguard: { public_key: string } };
  const vrouterKey = ready.wireguard.public_key;
  t.match(vrouterKey, /^[A-Za-z0-9+/]{43}=$/, 'the daemon generated its WireGuard key');

  // What the daemon itself runs with.
  const pid = await daemonPid(nsR);
  t.ok(pid, `daemon PID ${pid}`);
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  t.ok(hasCapability(CAP.NET_ADMIN, status), 'CAP_NET_ADMIN');
  t.notOk(hasCapability(CAP.SYS_ADMIN, status), 'no CAP_SYS_ADMIN');
  t.notOk(hasCapability(CAP.NET_RAW, status), 'no CAP_NET_RAW');
  const mounts = readFileSync(`/proc/${pid}/mountinfo`, 'utf8').split('\n').map((l) => l.split(' '));
  const opts = (target: string): string => mounts.filter((m) => m[4] === target).pop()?.[5] ?? '';
  // The tools an operator reaches for run inside the running container (`docker exec`).
  const inside = (cmd: readonly string[]): Promise<{ code: number | null; stdout: string; stderr: string }> => lab.exec(undefined, 'nsenter', [`--target=${pid}`, '--mount', '--net', '--root', '--wd', '--', 'env', '-i', `PATH=${IMAGE_PATH}`, ...cmd], { allowFailure: true });
  const write = await inside(['sh', '-c', 'echo x > /opt/cvlan-vrouter/probe']);
  t.match(write.stderr, /Read-only file system/, 'root filesystem read-only');
  t.match(opts('/proc/sys'), /^ro\b/, '/proc/sys read-only');
  t.match(opts('/var/lib/cvlan'), /^rw\b/, 'state volume writable');
  // ip_forward is 0 in a fresh namespace and /proc/sys cannot be written: reported with the fix.
  t.match(daemon.lastOutput(500), /"setting":"net\.ipv4\.ip_forward".*"fix":"sysctl -w net\.ipv4\.ip_forward=1.*host setting needs a change/, 'forwarding reported with the exact fix, not attempted blindly');
  t.notMatch(daemon.lastOutput(500), /"level":60/, 'nothing fatal logged');

  const legacy = await strongswanPeer(lab, nsL, {
    localAddr: NET.legacy,
    remoteAddr: NET.vrouterLegacy,
    localId: 'legacy.demo.cvlan',
    remoteId: 'vrouter.demo.cvlan',
    localTs: ['10.10.0.0/24'],
    remoteTs: ['10.20.0.0/24'],
    auth: { method: 'psk', psk },
    ikeProposals: 'aes256gcm16-prfsha256-x25519',
    espProposals: 'aes256gcm16',
    forceEncap: true,
  });
  await legacy.initiate(20);
  await wireguardGo(lab, nsA, {
    keys: agentKeys,
    addresses: [`${NET.agentInner}/24`],
    peers: [{ publicKey: vrouterKey, endpoint: `${NET.vrouterAgent}:51820`, allowedIps: ['10.10.0.0/24'], persistentKeepalive: 25 }],
    routes: ['10.10.0.0/24'],
  });
  t.ok((await waitForPing(nsA, NET.legacyLan, 20_000)).received > 0, 'agent → legacy LAN: WireGuard in, ESP out of the container');
  t.equal((await ping(nsL, NET.agentInner, { count: 3, source: NET.legacyLan })).received, 3, 'legacy LAN → agent: ESP in, WireGuard out');

  // HEALTHCHECK, swanctl and wg as an operator runs them: no flags.
  const after = await inside(health.slice(1));
  t.equal(after.code, 0, `HEALTHCHECK passes once ready ${after.stderr.trim()}`);
  const sas = await inside(['swanctl', '--list-sas']);
  t.equal(sas.code, 0, `swanctl --list-sas works without --uri ${sas.stderr.trim()}`);
  t.match(sas.stdout, /legacy-site.*ESTABLISHED/, 'swanctl shows the established IKE_SA');
  const wg = await inside(['wg', 'show', 'all', 'latest-handshakes']);
  t.equal(wg.code, 0, `wg works in the container ${wg.stderr.trim()}`);
  t.match(wg.stdout, new RegExp(`${agentKeys.publicKey.replace(/[+/]/g, '\\$&')}\\s+[1-9]`), 'wg shows the agent with a handshake');
  const tunnels = JSON.parse((await adminGet({ kind: 'unix', socketPath: join(vol.run, 'cvlan/admin.sock') }, '/v1/tunnels')).body) as { tunnels: { id: string; state: string }[] };
  t.ok(tunnels.tunnels.some((x) => x.id === 'legacy-site' && x.state === 'up'), 'admin API: tunnel up');

  t.equal(await stopDaemon(ctr, nsR, daemon), 0, 'SIGTERM: the daemon and the container exit 0', { output: daemon.lastOutput(8) });
  t.ok(existsSync(join(vol.state, 'applied.json')), 'the applied configuration is on the volume', { output: daemon.lastOutput(60) });

  // Recreated container, same volume, no configuration file: the stored state and the generated
  // key come back (a fresh /run, as a new container gets).
  rmSync(join(vol.etc, 'config.json'));
  rmSync(vol.run, { recursive: true, force: true });
  mkdirSync(vol.run, { mode: 0o700 });
  const again = new Container(image);
  await again.create(lab);
  const second = await again.start(lab, nsR, 'container (recreated)', vol, command);
  await second.waitReady({ line: /"event":"ready"/, timeoutMs: 60_000 });
  t.match(second.lastOutput(500), /using the last applied configuration/, 'started from the stored configuration');
  t.match(second.lastOutput(500), new RegExp(`"public_key":"${vrouterKey.replace(/[+/]/g, '\\$&')}"`), 'same WireGuard key as before');
  await legacy.initiate(20);
  t.ok((await waitForPing(nsA, NET.legacyLan, 40_000)).received > 0, 'traffic flows through the recreated container');
  t.equal(await stopDaemon(again, nsR, second), 0, 'recreated container stops cleanly');
  await closeLab(t, lab);
});
