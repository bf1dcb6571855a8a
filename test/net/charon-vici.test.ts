// Two supervised charons (kernel-libipsec, userspace ESP) in two network namespaces, configured
// only through our VICI client: PSK tunnel up, events, list-sas on both sides, ping through the
// tunnel, terminate, then kill -9 one charon and watch the supervisor bring it back and reload.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { PLUGINS_KERNEL_LIBIPSEC } from '../../src/strongswan/conf.js';
import { CharonSupervisor, type ExitInfo, type StartInfo } from '../../src/strongswan/supervisor.js';
import { ViciClient } from '../../src/strongswan/vici/client.js';
import type { ChildUpdownEvent, IkeUpdownEvent } from '../../src/strongswan/vici/types.js';
import { createTwoHosts, inNs, type Host, type TwoHosts } from './charon-fixture.js';

const CHARON = '/usr/lib/ipsec/charon';
const skip =
  process.getuid?.() !== 0
    ? 'needs root (network namespaces)'
    : !existsSync(CHARON)
      ? 'strongSwan charon is not installed'
      : !existsSync('/usr/lib/ipsec/plugins/libstrongswan-gcm.so') && !existsSync('/usr/lib/ipsec/plugins/libstrongswan-openssl.so')
        ? 'no AES-GCM provider for charon (install libstrongswan-standard-plugins)'
        : false;

function waitFor<T>(what: string, ms: number, attach: (done: (v: T) => void) => () => void): Promise<T> {
  return new Promise((resolve, reject) => {
    const detach = attach((v) => {
      clearTimeout(timer);
      detach();
      resolve(v);
    });
    const timer = setTimeout(() => {
      detach();
      reject(new Error(`timed out waiting for ${what}`));
    }, ms);
  });
}

async function until<T>(what: string, ms: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

function connFor(me: Host, peer: Host, meId: string, peerId: string) {
  return {
    version: 2,
    local_addrs: [me.underlay],
    remote_addrs: [peer.underlay],
    proposals: ['aes256gcm16-prfsha256-x25519'],
    local: { auth: 'psk', id: meId },
    remote: { auth: 'psk', id: peerId },
    children: {
      net: {
        local_ts: [me.innerSubnet],
        remote_ts: [peer.innerSubnet],
        esp_proposals: ['aes256gcm16'],
        mode: 'tunnel',
      },
    },
  };
}

void t.test('two supervised charons over our VICI client', { skip, timeout: 120_000 }, async (t) => {
  let hosts: TwoHosts | undefined = undefined;
  const dirs: string[] = [];
  const sups: CharonSupervisor[] = [];
  const clients: ViciClient[] = [];
  // The PSK is random per run so the log check below means something.
  const psk = randomBytes(24).toString('base64');
  t.teardown(async () => {
    for (const c of clients) await c.close();
    for (const s of sups) await s.stop();
    await hosts?.destroy();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  hosts = await createTwoHosts();
  const { a, b } = hosts;
  const ids = { a: 'a.cvlan.test', b: 'b.cvlan.test' };
  const hookRuns = { a: 0, b: 0 };

  const setup = async (side: 'a' | 'b', me: Host, peer: Host) => {
    const dir = await mkdtemp(path.join(tmpdir(), 'cvlan-charon-'));
    dirs.push(dir);
    const client = new ViciClient({
      socketPath: path.join(dir, 'charon.vici'),
      requestTimeoutMs: 15_000,
      reconnectInitialMs: 50,
      reconnectMaxMs: 500,
    });
    clients.push(client);
    const sup = new CharonSupervisor({
      runtimeDir: dir,
      netns: me.ns,
      conf: { plugins: PLUGINS_KERNEL_LIBIPSEC, logLevel: 1 },
      backoffInitialMs: 200,
      backoffMaxMs: 2_000,
      onStart: async () => {
        await client.connect(10_000);
        await client.loadShared({ id: 'psk-gw', type: 'IKE', data: psk, owners: [ids.a, ids.b] });
        await client.loadConn('gw', connFor(me, peer, side === 'a' ? ids.a : ids.b, side === 'a' ? ids.b : ids.a));
        hookRuns[side] += 1;
      },
    });
    sups.push(sup);
    return { client, sup };
  };

  const A = await setup('a', a, b);
  const B = await setup('b', b, a);
  const [infoA, infoB] = await Promise.all([A.sup.start(), B.sup.start()]);
  t.equal(hookRuns.a, 1, 'hook ran once on A');
  t.equal(hookRuns.b, 1, 'hook ran once on B');
  t.equal((await readFile(`/proc/${infoA.pid}/comm`, 'utf8')).trim(), 'charon', 'the supervised PID is charon itself');
  t.not(infoA.pid, infoB.pid);

  const conf = await readFile(A.sup.confPath, 'utf8');
  t.match(conf, /load = .*kernel-libipsec kernel-netlink/);
  t.notMatch(conf, /bypass-lan|\bha\b/);

  const version = await A.client.version();
  t.equal(version.daemon, 'charon');
  t.match(version.version, /^5\./);
  const stats = await A.client.stats();
  t.ok(stats.plugins.includes('kernel-libipsec'), 'kernel-libipsec loaded');
  t.notOk(stats.plugins.includes('bypass-lan'), 'bypass-lan not loaded');
  t.same(await A.client.getConns(), ['gw']);

  await A.client.subscribe('ike-updown');
  await A.client.subscribe('child-updown');

  // Errors from charon come back as CVLAN_ERR_VICI_COMMAND with its errmsg.
  await t.rejects(A.client.initiate({ child: 'no-such-child', timeoutMs: 2_000 }), { code: 'CVLAN_ERR_VICI_COMMAND' });
  await t.rejects(A.client.request('no-such-command'), { code: 'CVLAN_ERR_VICI_COMMAND', message: /does not know/ });
  await t.rejects(A.client.subscribe('no-such-event'), { code: 'CVLAN_ERR_VICI_COMMAND' });

  const ikeUp = waitFor<IkeUpdownEvent>('ike-updown up', 20_000, (done) => {
    const f = (e: IkeUpdownEvent) => e.up && done(e);
    A.client.on('ike-updown', f);
    return () => A.client.off('ike-updown', f);
  });
  const childUp = waitFor<ChildUpdownEvent>('child-updown up', 20_000, (done) => {
    const f = (e: ChildUpdownEvent) => e.up && done(e);
    A.client.on('child-updown', f);
    return () => A.client.off('child-updown', f);
  });
  await A.client.initiate({ child: 'net', ike: 'gw', timeoutMs: 15_000 });
  const [ike, child] = await Promise.all([ikeUp, childUp]);
  t.equal(ike.ike.name, 'gw');
  t.equal(ike.ike.state, 'ESTABLISHED');
  t.equal(ike.ike.remoteHost, b.underlay);
  t.equal(child.ike.childSas.length, 1);
  t.equal(child.ike.childSas[0]?.name, 'net');

  for (const [side, client] of [['A', A.client], ['B', B.client]] as const) {
    const sas = await client.listSas();
    t.equal(sas.length, 1, `${side}: one IKE_SA`);
    const sa = sas[0]!;
    t.equal(sa.name, 'gw');
    t.equal(sa.state, 'ESTABLISHED');
    t.equal(sa.initiator, side === 'A', `${side}: initiator flag`);
    t.match(sa.encrAlg, /AES_GCM_16/);
    t.equal(sa.dhGroup, 'CURVE_25519');
    t.equal(sa.childSas.length, 1);
    t.equal(sa.childSas[0]?.state, 'INSTALLED');
    t.match(sa.childSas[0]?.encrAlg, /AES_GCM_16/);
    t.equal(sa.childSas[0]?.encrKeysize, 256);
  }
  const [saA] = await A.client.listSas({ ike: 'gw' });
  const [saB] = await B.client.listSas({ ike: 'gw' });
  t.equal(saA?.childSas[0]?.spiOut, saB?.childSas[0]?.spiIn, 'SPIs pair up across the two charons');
  t.same((await A.client.listSas({ ikeId: saA!.uniqueId! })).map((s) => s.uniqueId), [saA!.uniqueId], 'list-sas by ike-id');

  // Traffic between the inner subnets goes through kernel-libipsec's userspace ESP.
  const ping = await inNs(a.ns, 'ping', ['-c', '3', '-i', '0.2', '-w', '10', '-I', a.inner, b.inner], 20_000);
  t.match(ping.stdout, /3 received/);
  const [after] = await B.client.listSas();
  t.ok((after?.childSas[0]?.packetsIn ?? 0) >= 3, 'B counted the ESP packets');

  const conns = await B.client.listConns();
  t.same(conns.map((c) => c.name), ['gw']);
  t.same(conns[0]?.children, ['net']);

  const ikeDown = waitFor<IkeUpdownEvent>('ike-updown down', 15_000, (done) => {
    const f = (e: IkeUpdownEvent) => !e.up && done(e);
    A.client.on('ike-updown', f);
    return () => A.client.off('ike-updown', f);
  });
  // by unique id (`ike-id`), as the daemon tears down one IKE_SA of a connection
  await A.client.terminate({ ikeId: saA!.uniqueId!, timeoutMs: 10_000 });
  t.equal((await ikeDown).ike.name, 'gw');
  t.same(await A.client.listSas(), [], 'A has no SA after terminate');
  await until('B to drop the SA', 10_000, async () => ((await B.client.listSas()).length === 0 ? true : undefined));

  // --- supervision: kill -9 → exited, restarting (backoff), started with a new PID, hook reloads ---
  const exited = waitFor<ExitInfo>('exited', 10_000, (done) => {
    A.sup.on('exited', done);
    return () => A.sup.off('exited', done);
  });
  const restarting = waitFor<{ delayMs: number; attempt: number }>('restarting', 10_000, (done) => {
    A.sup.on('restarting', done);
    return () => A.sup.off('restarting', done);
  });
  const ready = waitFor<StartInfo>('ready', 20_000, (done) => {
    A.sup.on('ready', done);
    return () => A.sup.off('ready', done);
  });
  const oldPid = infoA.pid;
  process.kill(oldPid, 'SIGKILL');
  const ex = await exited;
  t.equal(ex.signal, 'SIGKILL');
  t.equal(ex.expected, false);
  const rs = await restarting;
  t.equal(rs.attempt, 1);
  t.equal(rs.delayMs, 200, 'first restart waits backoffInitialMs');
  const again = await ready;
  t.not(again.pid, oldPid, 'a new charon');
  t.equal(again.generation, 2);
  t.equal(hookRuns.a, 2, 'the reload hook ran after the restart');
  t.same((await A.client.listConns()).map((c) => c.name), ['gw'], 'connection is loaded again');

  // Subscriptions survived the reconnect: bring the tunnel up again and see the events.
  const ikeUp2 = waitFor<IkeUpdownEvent>('ike-updown up after restart', 20_000, (done) => {
    const f = (e: IkeUpdownEvent) => e.up && done(e);
    A.client.on('ike-updown', f);
    return () => A.client.off('ike-updown', f);
  });
  await A.client.initiate({ child: 'net', ike: 'gw', timeoutMs: 15_000 });
  t.equal((await ikeUp2).ike.state, 'ESTABLISHED');

  // The PSK must not show in anything charon printed (it went to our log stream).
  for (const s of [A.sup, B.sup]) {
    const out = s.recentOutput().join('\n');
    t.ok(out.length > 0, 'charon output captured');
    t.notMatch(out, psk, 'PSK not in charon output');
  }

  await A.sup.stop();
  t.equal(A.sup.pid, undefined, 'stopped');
  t.notOk(existsSync(`/proc/${again.pid}`) && (await readFile(`/proc/${again.pid}/comm`, 'utf8').catch(() => '')).trim() === 'charon');
});
