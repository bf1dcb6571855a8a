// `wg-quick up/down` with WG_QUICK_USERSPACE_IMPLEMENTATION=cvlan-wireguard, on a real wg-quick
// configuration file, against wireguard-go in another namespace: `up` returns once our interface
// forks to the background (wg-quick then configures it with wg setconf and ip), traffic flows,
// and `down` (which deletes the interface) ends the background process and removes its socket.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { useLab, closeLab } from '../harness/tap.js';
import { twoHosts } from '../harness/topology.js';
import { wireguardGo, genKeyPair, wgShow, WG_RUN_DIR } from '../harness/wireguard.js';
import { cvlanTestbedMissing, CVLAN_CLI } from '../harness/cvlan.js';
import { missingPrerequisites, tools } from '../harness/tools.js';
import { run } from '../harness/exec.js';
import { waitForPing, ping } from '../harness/ping.js';

const WG_QUICK = '/usr/bin/wg-quick';
const skip = cvlanTestbedMissing() ?? missingPrerequisites('wg', 'wireguardGo') ?? (existsSync(WG_QUICK) ? undefined : 'wg-quick (wireguard-tools) is not installed');

/** PID of a process that is `cvlan-wireguard ... name` (the background child), if any. */
function daemonPid(name: string): number | undefined {
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      if (argv.some((a) => a.endsWith('cvlan-wireguard.js')) && argv.includes('--foreground') && argv.includes(name)) return Number(pid);
    } catch {
      // gone meanwhile
    }
  }
  return undefined;
}

t.test('wg-quick up/down with cvlan-wireguard as the userspace implementation', { skip }, async (t) => {
  const lab = useLab(t, { label: 'wgquick' });
  const h = await twoHosts(lab);
  const name = lab.ifname('wq');
  const ours = await genKeyPair();
  const peer = await wireguardGo(lab, h.b, {
    listenPort: 51820,
    addresses: ['10.77.0.2/24'],
    peers: [{ publicKey: ours.publicKey, allowedIps: ['10.77.0.1/32'] }],
  });
  // The implementation wg-quick runs as `$WG_QUICK_USERSPACE_IMPLEMENTATION IFNAME`.
  const impl = lab.writeFile('cvlan-wireguard', `#!/bin/sh\nexec ${tools.node} ${join(CVLAN_CLI, '..', 'cvlan-wireguard.js')} --workers 1 "$@"\n`, 0o755);
  // ListenPort is the port the interface starts with: `wg setconf` sends listen_port=0 ("any")
  // for a file without one, and changing the port of a running interface is another matter.
  const conf = lab.writeFile(
    `${name}.conf`,
    `# written by the test\n[Interface]\nPrivateKey = ${ours.privateKey}\nListenPort = 51820\nAddress = 10.77.0.1/24\nMTU = 1400\n\n[Peer]\nPublicKey = ${peer.keys.publicKey}\nEndpoint = ${h.addrB}:51820\nAllowedIPs = 10.77.0.2/32, 10.78.0.0/16\nPersistentKeepalive = 5\n`,
  );
  const log = join(lab.dir, 'wg-quick.log');
  const wgQuick = (verb: 'up' | 'down') =>
    run('/bin/sh', ['-c', `"$0" ${verb} "$1" >>"$2" 2>&1`, WG_QUICK, conf, log], { ns: h.a, env: { WG_QUICK_USERSPACE_IMPLEMENTATION: impl }, allowFailure: true, timeoutMs: 30_000 });
  // The background process is not the lab's: stop it by its own PID should the test fail midway.
  lab.onTeardown(`stop cvlan-wireguard ${name}`, () => {
    const pid = daemonPid(name);
    if (pid !== undefined) process.kill(pid, 'SIGTERM');
  });

  const started = Date.now();
  const up = await wgQuick('up');
  t.equal(up.code, 0, `wg-quick up exits 0 (${readFileSync(log, 'utf8').trim().split('\n').slice(-3).join(' | ')})`);
  t.ok(Date.now() - started < 20_000, 'wg-quick up returns: the implementation went to the background');
  t.match(readFileSync(log, 'utf8'), /Falling back to slow userspace implementation/, 'wg-quick used the userspace implementation');
  const pid = daemonPid(name);
  t.ok(pid, 'the interface lives on in a background process');
  t.ok(existsSync(`${WG_RUN_DIR}/${name}.sock`), 'UAPI socket in place');

  const show = await wgShow(h.a, name);
  t.equal(show.publicKey, ours.publicKey, 'wg setconf applied the private key');
  t.same([...show.peers[0]!.allowedIps].sort(), ['10.77.0.2/32', '10.78.0.0/16'], 'wg setconf applied the peer');
  const addr = (await run(tools.ip, ['-o', 'addr', 'show', 'dev', name], { ns: h.a })).stdout;
  t.match(addr, /inet 10\.77\.0\.1\/24/, 'wg-quick set the address');
  const link = (await run(tools.ip, ['-o', 'link', 'show', 'dev', name], { ns: h.a })).stdout;
  t.match(link, /mtu 1400/, 'wg-quick set the MTU');
  t.match(link, /UP/, 'wg-quick brought the link up');
  const routes = (await run(tools.ip, ['route', 'show', 'dev', name], { ns: h.a })).stdout;
  t.match(routes, /10\.78\.0\.0\/16/, 'wg-quick routed the allowed IPs');

  t.ok((await waitForPing(h.a, '10.77.0.2', 15_000)).received > 0, 'traffic through the tunnel to wireguard-go');
  t.equal((await ping(h.a, '10.77.0.2', { count: 3 })).received, 3, 'steady traffic');
  const theirs = await wgShow(h.b, peer.name);
  t.ok(theirs.peers[0]!.latestHandshake > 0, 'wireguard-go saw our handshake');

  const down = await wgQuick('down');
  t.equal(down.code, 0, 'wg-quick down exits 0');
  const deadline = Date.now() + 10_000;
  while (daemonPid(name) !== undefined && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  t.equal(daemonPid(name), undefined, 'the background process ended when wg-quick deleted the interface');
  t.notOk(existsSync(`${WG_RUN_DIR}/${name}.sock`), 'UAPI socket removed');
  const gone = await run(tools.ip, ['link', 'show', 'dev', name], { ns: h.a, allowFailure: true });
  t.not(gone.code, 0, 'interface gone');
  t.match(readFileSync(log, 'utf8'), /"msg":"stopped"/, 'the process logged its stop');
  await closeLab(t, lab);
});

t.test('cvlan-vrouter wireguard --config FILE in the background; a failing start is the command\'s failure', { skip }, async (t) => {
  const lab = useLab(t, { label: 'wgconf' });
  const ns = await lab.namespace('c');
  await lab.ip(ns, ['link', 'set', 'lo', 'up']);
  const name = lab.ifname('wc');
  const ours = await genKeyPair();
  const peer = await genKeyPair();
  const conf = lab.writeFile(
    `${name}.conf`,
    `[Interface]\nPrivateKey = ${ours.privateKey}\nAddress = 10.79.0.1/24\n\n[Peer]\nPublicKey = ${peer.publicKey}\nAllowedIPs = 10.79.0.2/32\nEndpoint = 127.0.0.1:51999\n`,
  );
  const cvlan = (...args: string[]) => run(tools.node, [CVLAN_CLI, 'wireguard', '--workers', '1', ...args], { ns, allowFailure: true, timeoutMs: 30_000 });
  lab.onTeardown(`stop cvlan-vrouter wireguard ${name}`, () => {
    for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
      try {
        const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
        if (argv.includes('--foreground') && argv.includes(name)) process.kill(Number(pid), 'SIGTERM');
      } catch {
        // gone meanwhile
      }
    }
  });

  const up = await cvlan('--config', conf, name);
  t.equal(up.code, 0, `exit 0 once the interface is up (${up.stderr.trim()})`);
  t.match(up.stdout, /"msg":"configuration file applied"/, 'the file was applied');
  t.match(up.stdout, /"not_applied":\["Address"\]/, 'and it says that Address is wg-quick\'s, not applied');
  const show = await wgShow(ns, name);
  t.equal(show.publicKey, ours.publicKey, 'the private key from the file');
  t.same(show.peers.map((p) => [p.publicKey, p.allowedIps, p.endpoint]), [[peer.publicKey, ['10.79.0.2/32'], '127.0.0.1:51999']], 'the peer from the file');

  const twice = await cvlan(name);
  t.not(twice.code, 0, 'a second interface of the same name fails');
  t.match(twice.stderr, /CVLAN_ERR_/, 'with the background process\'s error on stderr');
  t.equal((await wgShow(ns, name)).publicKey, ours.publicKey, 'the first interface is untouched');

  await lab.ip(ns, ['link', 'delete', 'dev', name]);
  const deadline = Date.now() + 10_000;
  while (existsSync(`${WG_RUN_DIR}/${name}.sock`) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  t.notOk(existsSync(`${WG_RUN_DIR}/${name}.sock`), 'deleting the interface ended the process and removed its socket');
  await closeLab(t, lab);
});
