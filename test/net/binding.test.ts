// The Node-API binding: errors with stable codes, finalizers, events from worker threads, and
// start/resize/stop without leaking threads, fds or TUN devices. Needs root (TUN devices);
// creates only uniquely named TUN devices without addresses, in the test's own namespace.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, readdirSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { createSocket } from 'node:dgram';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PlainDevice, nativeInfo, addonPath, totals, type DataplaneEvent } from '../../src/dataplane/index.js';
import { CvlanError } from '../../src/errors.js';

const repo = fileURLToPath(new URL('../..', import.meta.url));
const tunName = (tag: string): string => `cvb${tag}${process.pid % 100000}`.slice(0, 15);
const linkExists = (name: string): boolean => existsSync(`/sys/class/net/${name}`);
const threads = (): number => readdirSync('/proc/self/task').length;
const fds = (): number => readdirSync('/proc/self/fd').length;
const until = async (cond: () => boolean, ms = 3000): Promise<boolean> => {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return cond();
};

t.test('nativeInfo reports the build', async (t) => {
  const info = nativeInfo();
  t.equal(info.version, '0.1.0');
  t.equal(info.defaultWorkers, availableParallelism());
  t.ok(info.transports.includes('plain-insecure-test-only'));
});

t.test('workers start, report events from their threads, and stop without leaks', async (t) => {
  const baseThreads = threads();
  const baseFds = fds();
  const name = tunName('a');
  const events: DataplaneEvent[] = [];
  const dev = PlainDevice.open({ tunName: name, listenPort: 0, workers: 2, peers: [] });
  dev.on('event', (e) => events.push(e));
  t.ok(linkExists(name), 'TUN device exists');
  t.ok(dev.listenPort > 0, 'port 0 resolved to a real port');
  t.equal(dev.workers, 2);
  t.ok(await until(() => events.filter((e) => e.type === 'worker-started').length === 2), 'two worker-started events');
  t.equal(threads(), baseThreads + 2, 'two worker threads');
  t.same(new Set(events.map((e) => e.worker)), new Set([0, 1]));
  const stats = dev.stats();
  t.equal(stats.length, 2);
  t.ok(stats.every((s) => s.active && typeof s.udpRxPackets === 'bigint'));
  t.ok(stats[0]!.drops.some((d) => d.reason === 'no_route'), 'drop reasons are named');

  dev.setWorkers(3);
  t.equal(dev.workers, 3);
  t.equal(threads(), baseThreads + 3);
  dev.setWorkers(1);
  t.equal(threads(), baseThreads + 1);
  t.ok(linkExists(name), 'resizing keeps the device');
  t.equal(dev.stats().filter((s) => s.active).length, 1);

  dev.close();
  dev.close(); // idempotent
  t.notOk(linkExists(name), 'TUN device removed with its last queue');
  t.equal(threads(), baseThreads, 'threads joined');
  t.equal(fds(), baseFds, 'no file descriptor left open');
  t.ok(await until(() => events.filter((e) => e.type === 'worker-stopped').length === 3), 'worker-stopped events');
  t.throws(() => dev.stats(), { code: 'CVLAN_ERR_CLOSED' });
});

t.test('a panicking worker is restarted, counted and keeps its queue', async (t) => {
  const name = tunName('p');
  const dev = PlainDevice.open({ tunName: name, listenPort: 0, workers: 2, peers: [] });
  t.teardown(() => dev.close());
  const events: DataplaneEvent[] = [];
  dev.on('event', (e) => events.push(e));
  dev.injectPanic(1);
  t.ok(await until(() => events.some((e) => e.type === 'worker-restarted')), 'worker-restarted event');
  const ev = events.find((e) => e.type === 'worker-restarted')!;
  t.equal(ev.worker, 1);
  t.match(ev.reason, /injected panic/);
  t.equal(dev.stats()[1]!.restarts, 1n);
  t.ok(dev.stats()[1]!.active, 'worker runs again');
  t.equal(totals(dev.stats()).restarts, 1n);
  t.throws(() => dev.injectPanic(7), { code: 'CVLAN_ERR_INVALID_ARG' });
});

t.test('bad input gives stable error codes', async (t) => {
  const name = tunName('e');
  const dev = PlainDevice.open({ tunName: name, listenPort: 0, workers: 1, peers: [] });
  t.teardown(() => dev.close());
  t.throws(() => PlainDevice.open({ tunName: name, listenPort: 0, peers: [] }), { code: 'CVLAN_ERR_TUN_BUSY' }, 'TUN name in use');
  t.notOk(linkExists(tunName('x')));
  t.throws(() => PlainDevice.open({ tunName: tunName('x'), listenPort: dev.listenPort, peers: [] }), { code: 'CVLAN_ERR_ADDR_IN_USE' }, 'port in use by our device');
  t.notOk(linkExists(tunName('x')), 'nothing half-created after a failed start');

  const sock = createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
  t.teardown(() => sock.close());
  t.throws(
    () => PlainDevice.open({ tunName: tunName('y'), listenAddress: '127.0.0.1', listenPort: sock.address().port, peers: [] }),
    { code: 'CVLAN_ERR_ADDR_IN_USE' },
    'port in use by another socket (without SO_REUSEPORT sharing)',
  );
  t.throws(() => PlainDevice.open({ tunName: 'this-name-is-too-long', listenPort: 0, peers: [] }), { code: 'CVLAN_ERR_INVALID_ARG' });
  t.throws(() => PlainDevice.open({ tunName: tunName('z'), listenPort: 0, workers: 0, peers: [] }), { code: 'CVLAN_ERR_INVALID_ARG' });
  t.throws(() => PlainDevice.open({ tunName: tunName('z'), listenPort: 70000, peers: [] }), { code: 'CVLAN_ERR_INVALID_ARG' });
  t.throws(() => dev.setPeers([{ endpoint: 'nowhere', allowedIps: [] }]), { code: 'CVLAN_ERR_INVALID_ARG', message: /peers\[0\]\.endpoint/ });
  t.throws(() => dev.setPeers([{ endpoint: '127.0.0.1:1', allowedIps: ['10.0.0.0/33'] }]), { code: 'CVLAN_ERR_INVALID_ARG', message: /allowed_ips\[0\]/ });
  t.throws(() => dev.setWorkers(1000), { code: 'CVLAN_ERR_INVALID_ARG' });
  const err = (() => { try { dev.setWorkers(0); } catch (e) { return e; } })();
  t.ok(err instanceof CvlanError, 'native errors become CvlanError');
});

// Child processes exercise what cannot happen inside this one: the finalizer, no root, no /dev/net/tun.
const child = (code: string, opts: { prefix?: string[]; env?: NodeJS.ProcessEnv; nodeArgs?: string[] } = {}) => {
  const dir = mkdtempSync(join(tmpdir(), 'cvbind-'));
  chmodSync(dir, 0o755); // readable by the unprivileged child too
  const file = join(dir, 'child.mjs');
  writeFileSync(file, code);
  try {
    const cmd = [...(opts.prefix ?? []), process.execPath, ...(opts.nodeArgs ?? []), file];
    const r = spawnSync(cmd[0]!, cmd.slice(1), { encoding: 'utf8', env: { ...process.env, ...opts.env }, cwd: repo, timeout: 20_000 });
    return { status: r.status, out: `${r.stdout}${r.stderr}` };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
};
const wrapper = join(repo, 'dist/src/dataplane/index.js');

t.test('the finalizer stops workers and removes the TUN device when the object is collected', async (t) => {
  t.ok(existsSync(wrapper), 'compiled wrapper present (setup runs tsc)');
  const name = tunName('f');
  const r = child(
    `import { PlainDevice } from ${JSON.stringify(wrapper)};
     import { existsSync, readdirSync } from 'node:fs';
     const before = readdirSync('/proc/self/task').length;
     (() => { PlainDevice.open({ tunName: ${JSON.stringify(name)}, listenPort: 0, workers: 2, peers: [] }); })();
     console.log('created', existsSync('/sys/class/net/${name}'), readdirSync('/proc/self/task').length - before);
     for (let i = 0; i < 50 && existsSync('/sys/class/net/${name}'); i++) { globalThis.gc(); await new Promise(r => setTimeout(r, 20)); }
     console.log('collected', !existsSync('/sys/class/net/${name}'), readdirSync('/proc/self/task').length - before);`,
    { nodeArgs: ['--expose-gc'] },
  );
  t.match(r.out, /created true 2/);
  t.match(r.out, /collected true 0/, r.out);
  t.notOk(linkExists(name));
});

t.test('without root the error names the cause', async (t) => {
  const r = child(
    `import { PlainDevice } from ${JSON.stringify(wrapper)};
     try { PlainDevice.open({ tunName: ${JSON.stringify(tunName('r'))}, listenPort: 0, peers: [] }); console.log('opened'); }
     catch (e) { console.log(e.code, e.message); }`,
    { prefix: ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups', '--inh-caps=-all'] },
  );
  t.match(r.out, /CVLAN_ERR_PERMISSION .*(root|CAP_NET_ADMIN)/, r.out);
});

t.test('a missing /dev/net/tun gives CVLAN_ERR_NO_TUN', async (t) => {
  const r = child(
    `import { PlainDevice } from ${JSON.stringify(wrapper)};
     try { PlainDevice.open({ tunName: ${JSON.stringify(tunName('n'))}, listenPort: 0, peers: [] }); console.log('opened'); }
     catch (e) { console.log(e.code, e.message); }`,
    { prefix: ['unshare', '-m', 'sh', '-c', 'mount -t tmpfs none /dev/net && exec "$0" "$@"'] },
  );
  t.match(r.out, /CVLAN_ERR_NO_TUN .*\/dev\/net\/tun/, r.out);
});

t.test('a missing or foreign addon says what to run', async (t) => {
  const missing = child(`import { nativeInfo } from ${JSON.stringify(wrapper)};
     try { nativeInfo(); } catch (e) { console.log(e.code, e.message); }`, { env: { CVLAN_NATIVE_PATH: '/nonexistent/cvlan.node' } });
  t.match(missing.out, /CVLAN_ERR_ADDON_MISSING .*npm run build:native/);
  const dir = mkdtempSync(join(tmpdir(), 'cvbind-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const bogus = join(dir, 'cvlan.node');
  // A 32-bit ELF header: what an addon built for another platform looks like to dlopen.
  const elf32 = Buffer.alloc(512);
  elf32.set([0x7f, 0x45, 0x4c, 0x46, 1, 1, 1], 0);
  elf32[16] = 3;
  elf32[18] = 3;
  writeFileSync(bogus, elf32);
  const foreign = child(`import { nativeInfo } from ${JSON.stringify(wrapper)};
     try { nativeInfo(); } catch (e) { console.log(e.code, e.message, '|cause:', !!e.cause); }`, { env: { CVLAN_NATIVE_PATH: bogus } });
  t.match(foreign.out, /CVLAN_ERR_ADDON_MISSING .*another Node\.js or platform.*npm run build:native.*\|cause: true/);
  t.equal(addonPath(), join(repo, 'build', 'cvlan.linux-x64-gnu.node'));
});

