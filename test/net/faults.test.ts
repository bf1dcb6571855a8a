// Faults an operator meets, each under traffic: our charon stopped (SIGSTOP) while the peer floods
// IKE, the runtime directory removed before SIGTERM, the TUN device deleted, the admin socket
// flooded, the state directory full. Each ends with traffic flowing again, or with a clear error and a health check that
// says not ready.
import t from 'tap';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { adminGet } from '../../src/api/client.js';
import { useLab, closeLab } from '../harness/tap.js';
import { twoHosts } from '../harness/topology.js';
import { site, waitUp, OURS, LEGACY } from '../harness/ipsec-site.js';
import { cvlanTestbedMissing } from '../harness/cvlan.js';
import { missingPrerequisites, tools } from '../harness/tools.js';
import { run, runSync } from '../harness/exec.js';
import { ping, waitForPing } from '../harness/ping.js';

const skip = cvlanTestbedMissing() ?? missingPrerequisites('charon', 'swanctl', 'iperf3', 'nft');

/** The one process named `comm` in namespace `ns`. */
async function pidIn(ns: string, comm: string): Promise<number | undefined> {
  const pids = (await run(tools.ip, ['netns', 'pids', ns])).stdout.trim().split('\n').map(Number);
  return pids.find((p) => {
    try {
      return readFileSync(`/proc/${p}/comm`, 'utf8').trim() === comm;
    } catch {
      return false;
    }
  });
}

/** What `ikeFlood` sends: IKE messages of established IKE_SAs, new IKE_SAs, or junk. */
type FloodKind = 'informational' | 'sa-init' | 'junk';

/**
 * Sends 1200-byte datagrams to `dest`:500 from `ns` for `ms` (or `count` of them), from 16
 * source ports so they spread over the workers; resolves with the number sent.
 */
async function ikeFlood(ns: string, dest: string, ms: number, kind: FloodKind, count = Infinity): Promise<number> {
  const script = `
    const dgram = require('node:dgram');
    const crypto = require('node:crypto');
    const socks = Array.from({ length: 16 }, () => dgram.createSocket('udp4'));
    const end = Date.now() + ${ms};
    const kind = ${JSON.stringify(kind)};
    const count = ${Number.isFinite(count) ? count : 'Infinity'};
    let sent = 0;
    const pkt = Buffer.alloc(1200, kind === 'junk' ? 0x41 : 0);
    if (kind !== 'junk') {
      pkt[16] = kind === 'sa-init' ? 33 : 46; pkt[17] = 0x20; pkt[18] = kind === 'sa-init' ? 34 : 37; pkt[19] = 0x08;
      pkt.writeUInt32BE(pkt.length, 24);
    }
    const burst = () => {
      if (Date.now() >= end || sent >= count) { console.log(sent); socks.forEach((s) => s.close()); return; }
      for (let i = 0; i < 64 && sent < count; i++) {
        crypto.randomFillSync(pkt, 0, kind === 'sa-init' ? 8 : 16);
        socks[i % 16].send(pkt, 500, ${JSON.stringify(dest)});
        sent++;
      }
      setTimeout(burst, 2);
    };
    burst();`;
  return Number((await run(tools.node, ['-e', script], { ns, timeoutMs: ms + 10_000 })).stdout.trim());
}

/** `cvlan_vrouter_drops_total{reason}` from the daemon's /metrics. */
async function dropsOf(admin: string): Promise<Record<string, number>> {
  const text = (await adminGet({ kind: 'unix', socketPath: admin }, '/metrics')).body;
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^cvlan_vrouter_drops_total\{reason="([a-z_]+)"\} (\d+)/gm)) out[m[1]!] = Number(m[2]);
  return out;
}

t.test('charon stopped (SIGSTOP) under an IKE flood: no forwarding gap, the link survives', { skip }, async (t) => {
  const lab = useLab(t, { label: 'fstop' });
  const h = await twoHosts(lab);
  const s = await site(lab, { esp: 'aes256gcm16', weInitiate: false, ours: [h.a, h.addrA], legacy: [h.b, h.addrB] });
  await waitUp(s);
  await waitForPing(h.a, LEGACY.lan, 15_000, OURS.lan);
  // Junk on the IKE port is refused before charon, under its own reason.
  const junkBefore = (await dropsOf(s.ours.admin))['malformed'] ?? 0;
  await ikeFlood(h.b, h.addrA, 5_000, 'junk', 200);
  const junk = ((await dropsOf(s.ours.admin))['malformed'] ?? 0) - junkBefore;
  t.ok(junk >= 190, `${junk}/200 junk IKE datagrams counted as malformed (ike_malformed)`);
  const charon = await pidIn(h.a, 'charon');
  t.ok(charon !== undefined, 'found our charon');
  process.kill(charon!, 'SIGSTOP');
  let flooded = 0;
  let during;
  try {
    // 6 s of pings every 50 ms through the tunnel while the legacy side floods our port 500:
    // a worker that blocked on charon's socket (2 s per attempt before) would lose dozens.
    const flood = ikeFlood(h.b, h.addrA, 6_000, 'informational');
    during = await ping(h.b, OURS.lan, { count: 110, intervalMs: 50, source: LEGACY.lan });
    flooded = await flood;
  } finally {
    process.kill(charon!, 'SIGCONT');
  }
  t.ok(flooded > 5_000, `${flooded} IKE datagrams sent while charon was stopped`);
  t.ok(during.received >= 109, `${during.received}/110 pings through the tunnel while charon was stopped`);
  // A stalled worker delays replies rather than losing them: the slowest round trip shows it.
  const maxRtt = Number(/= [\d.]+\/[\d.]+\/([\d.]+)\//.exec(during.output)?.[1] ?? Infinity);
  t.ok(maxRtt < 500, `slowest round trip ${maxRtt} ms (no worker stalled on charon's socket)`);
  const drops = await dropsOf(s.ours.admin);
  t.ok((drops['queue_full'] ?? 0) > 0, `the overflow is counted (queue_full: ${drops['queue_full']})`, { drops });
  // The link was kept: no reconnect, no charon restart, and IKE still works (a rekey both ways).
  await s.legacy.swanctl(['--rekey', '--ike', s.legacy.name]);
  const after = await waitUp(s, 20_000);
  t.ok(after.ike_sa !== null, 'IKE_SA up after SIGCONT and a rekey');
  t.equal((await ping(h.b, OURS.lan, { count: 5, intervalMs: 100, source: LEGACY.lan })).received, 5, 'traffic after SIGCONT');
  t.notOk(s.ours.process.output().some((l) => /charon_restart/.test(l.line)), 'charon was not restarted');
  t.ok(await pidIn(h.a, 'charon') === charon, 'the same charon is running');
  await closeLab(t, lab);
});


t.test('runtime directory removed, then SIGTERM: the daemon stops', { skip }, async (t) => {
  const lab = useLab(t, { label: 'frun' });
  const h = await twoHosts(lab);
  const s = await site(lab, { esp: 'aes256gcm16', weInitiate: false, ours: [h.a, h.addrA], legacy: [h.b, h.addrB] });
  await waitUp(s);
  // The harness puts the runtime directory (charon's plugin socket, VICI) next to the admin socket.
  rmSync(`${dirname(s.ours.admin)}/run`, { recursive: true, force: true });
  s.ours.process.signal('SIGTERM');
  const exit = await Promise.race([s.ours.process.exited, sleep(15_000).then(() => undefined)]);
  t.ok(exit !== undefined, 'exited within 15 s of SIGTERM');
  t.equal(exit?.code, 0, 'exit code 0');
  await closeLab(t, lab);
});

/** CPU seconds (user + system) the process has used, from /proc/PID/stat. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 14 and 15 (utime, stime) counted from 1, in clock ticks (USER_HZ, 100 on Linux).
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

t.test('TUN device deleted under traffic: no spinning worker, logged, not ready', { skip }, async (t) => {
  const lab = useLab(t, { label: 'ftun' });
  const h = await twoHosts(lab);
  const s = await site(lab, { esp: 'aes256gcm16', weInitiate: false, ours: [h.a, h.addrA], legacy: [h.b, h.addrB] });
  await waitUp(s);
  await waitForPing(h.a, LEGACY.lan, 15_000, OURS.lan);
  const ready = await adminGet({ kind: 'unix', socketPath: s.ours.admin }, '/readyz');
  t.equal(ready.status, 200, 'ready before');
  const tun = s.ours.ready.ipsec!.interface;
  // Traffic toward the TUN keeps arriving (ESP from the legacy side) while it is deleted.
  const traffic = ping(h.b, OURS.lan, { count: 60, intervalMs: 50, source: LEGACY.lan });
  await sleep(500);
  await run(tools.ip, ['link', 'del', tun], { ns: h.a });
  await sleep(1000);
  const pid = s.ours.process.pid;
  const before = cpuSeconds(pid);
  await sleep(3000);
  const used = cpuSeconds(pid) - before;
  await traffic;
  t.ok(used < 0.6, `the daemon used ${used.toFixed(2)} CPU seconds in 3 s after the TUN was deleted (a spinning worker uses 3)`);
  const lost = s.ours.process.output().find((l) => /"event":"device_lost"/.test(l.line));
  t.ok(lost, 'device_lost logged');
  t.match(lost?.line ?? '', new RegExp(`"device":"${tun}"`), 'the log line names the device');
  t.match(lost?.line ?? '', /"level":50/, 'logged as an error');
  const after = await adminGet({ kind: 'unix', socketPath: s.ours.admin }, '/readyz');
  t.equal(after.status, 503, '/readyz answers 503');
  t.match(after.body, new RegExp(`TUN ${tun} lost`), 'and says why');
  await closeLab(t, lab);
});

t.test('admin socket flooded: traffic goes on, the API answers again', { skip }, async (t) => {
  const lab = useLab(t, { label: 'fadm' });
  const h = await twoHosts(lab);
  const s = await site(lab, { esp: 'aes256gcm16', weInitiate: false, ours: [h.a, h.addrA], legacy: [h.b, h.addrB] });
  await waitUp(s);
  await waitForPing(h.a, LEGACY.lan, 15_000, OURS.lan);
  // 400 idle connections that never send a request, and 2000 requests in flight at once.
  const idle: Socket[] = [];
  for (let i = 0; i < 400; i++) idle.push(connect(s.ours.admin).on('error', () => undefined));
  const burst = Array.from({ length: 2000 }, () => adminGet({ kind: 'unix', socketPath: s.ours.admin }, '/v1/stats', 20_000).then((r) => r.status, () => 0));
  const during = await ping(h.b, OURS.lan, { count: 40, intervalMs: 50, source: LEGACY.lan });
  const statuses = await Promise.all(burst);
  for (const c of idle) c.destroy();
  t.equal(during.received, 40, 'no ping lost while the admin API is flooded');
  t.ok(statuses.filter((x) => x === 200).length > 1000, `${statuses.filter((x) => x === 200).length}/2000 flood requests answered`);
  const ready = await adminGet({ kind: 'unix', socketPath: s.ours.admin }, '/readyz');
  t.equal(ready.status, 200, 'the API answers and is ready after the flood');
  await closeLab(t, lab);
});

t.test('state directory full: a reload fails with ENOSPC named, the running state stays, traffic goes on', { skip }, async (t) => {
  const lab = useLab(t, { label: 'fstate' });
  const h = await twoHosts(lab);
  const s = await site(lab, { esp: 'aes256gcm16', weInitiate: false, ours: [h.a, h.addrA], legacy: [h.b, h.addrB] });
  await waitUp(s);
  await waitForPing(h.a, LEGACY.lan, 15_000, OURS.lan);
  // A 64 KiB tmpfs over the state directory, in the daemon's own mount namespace, filled up.
  const stateDir = `${dirname(s.ours.admin)}/state`;
  const inDaemon = ['-t', String(s.ours.process.pid), '-m'];
  await run('nsenter', [...inDaemon, 'mount', '-t', 'tmpfs', '-o', 'size=64k,mode=0700', 'cvlan-full', stateDir]);
  lab.onTeardown(
    `umount ${stateDir}`,
    () => void runSync('nsenter', [...inDaemon, 'umount', '-l', stateDir]),
    async () => void (await run('nsenter', [...inDaemon, 'umount', '-l', stateDir]).catch(() => undefined)),
  );
  await run('nsenter', [...inDaemon, 'dd', 'if=/dev/zero', `of=${stateDir}/filler`, 'bs=4k']).catch(() => undefined);
  s.ours.process.signal('SIGHUP');
  // The reload cannot write its files: refused (or applied but not stored), with the cause.
  const full = /ENOSPC|no space left/i;
  await s.ours.process.waitReady({ line: full, timeoutMs: 15_000 }).catch(() => undefined);
  const line = s.ours.process.output().find((l) => full.test(l.line))?.line ?? '';
  t.match(line, /"level":50/, 'logged as an error naming ENOSPC', { line });
  t.match(line, /config_refused|cannot store the applied configuration/, 'as a refused reload or a failed save');
  t.equal((await ping(h.b, OURS.lan, { count: 10, intervalMs: 100, source: LEGACY.lan })).received, 10, 'traffic goes on');
  t.ok(readdirSync('/proc').includes(String(s.ours.process.pid)), 'the daemon keeps running');
  await closeLab(t, lab);
});
