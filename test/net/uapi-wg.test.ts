// The stock `wg` tool against the UAPI server, with no native code: InMemoryWireGuard behind
// startUapiServer in /var/run/wireguard, driven by `wg set/show/showconf/syncconf`, and the same
// commands against a real wireguard-go interface in a throwaway network namespace to compare the
// `get=1` replies line by line. Needs root and wg; the wireguard-go part is skipped without it.
// Interface names are random (the socket directory is not per namespace); everything started is
// stopped by PID and removed in teardown.
import t from 'tap';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CvlanError } from '../../src/errors.js';
import { InMemoryWireGuard, type WgDeviceUpdate } from '../../src/wireguard/control.js';
import { startUapiServer, type UapiServer } from '../../src/wireguard/uapi-server.js';
import { formatWgQuick } from '../../src/wireguard/wgquick.js';
import { randomSuffix } from '../harness/names.js';

const exec = promisify(execFile);
const WIREGUARD_GO = process.env.CVLAN_WIREGUARD_GO ?? '/opt/cvlan-tools/bin/wireguard-go';
const RUN_DIR = '/var/run/wireguard';

const canRun = process.getuid?.() === 0 && (await exec('wg', ['--version']).then(() => true, () => false));
if (!canRun) t.plan(0, 'needs root and wireguard-tools');

const tmp = mkdtempSync(join(tmpdir(), 'cvlan-uapi-wg-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));

async function wg(...args: string[]): Promise<string> {
  return (await exec('wg', args, { timeout: 10_000 })).stdout;
}
async function wgFails(...args: string[]): Promise<string> {
  try {
    await exec('wg', args, { timeout: 10_000 });
  } catch (e) {
    return (e as { stderr: string }).stderr;
  }
  throw new Error(`wg ${args.join(' ')} succeeded`);
}
async function keypair(): Promise<{ priv: string; pub: string; file: string }> {
  const priv = (await wg('genkey')).trim();
  const pub = (await exec('sh', ['-c', `printf %s '${priv}' | wg pubkey`])).stdout.trim();
  const file = join(tmp, `k${randomSuffix(8)}`);
  writeFileSync(file, `${priv}\n`, { mode: 0o600 });
  return { priv, pub, file };
}
const b64 = (k: Uint8Array | null): string => (k ? Buffer.from(k).toString('base64') : '(none)');
const bytes = (b: string): Uint8Array => new Uint8Array(Buffer.from(b, 'base64'));

/** One raw request over a UAPI socket; resolves with everything read until the server closes or a reply ends. */
function raw(ifname: string, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(join(RUN_DIR, `${ifname}.sock`));
    let out = '';
    const timer = setTimeout(() => s.destroy(), 3000);
    s.setEncoding('utf8');
    s.on('data', (c: string) => {
      out += c;
      if (/errno=-?\d+\n\n$/.test(out)) s.end();
    });
    s.on('error', reject);
    s.on('close', () => {
      clearTimeout(timer);
      resolve(out);
    });
    s.write(request);
  });
}

/** Splits a `get=1` reply into the device lines and one block of lines per peer, keyed by public key. */
function blocks(reply: string): { device: string[]; peers: Map<string, string[]> } {
  const device: string[] = [];
  const peers = new Map<string, string[]>();
  let cur: string[] = device;
  for (const line of reply.split('\n').filter((l) => l !== '')) {
    if (line.startsWith('errno=')) device.push(line);
    else if (line.startsWith('public_key=')) peers.set(line, (cur = [line]));
    else cur.push(line);
  }
  return { device, peers };
}

/** A device whose apply refuses one listen port with "address in use", to see how wg reports errno. */
class PortCheckingWireGuard extends InMemoryWireGuard {
  override apply(update: WgDeviceUpdate): void {
    if (update.listenPort === 1) throw new CvlanError('CVLAN_ERR_ADDR_IN_USE');
    super.apply(update);
  }
}

const dev = await keypair();
const a = await keypair();
const b = await keypair();
const c = await keypair();
const psk = (await wg('genpsk')).trim();
const pskFile = join(tmp, 'psk');
writeFileSync(pskFile, `${psk}\n`, { mode: 0o600 });

/** The same configuration for both implementations, as `wg set` arguments. */
const setArgs = (ifname: string): string[] => [
  'set', ifname,
  'private-key', dev.file,
  'listen-port', '51820',
  'fwmark', '0x20',
  'peer', a.pub,
  'allowed-ips', '10.1.2.3/16,fd00::1/64,192.0.2.9',
  'endpoint', '192.0.2.1:51820',
  'persistent-keepalive', '25',
  'preshared-key', pskFile,
  'peer', b.pub,
  'allowed-ips', '198.51.100.0/24',
  'endpoint', '[2001:DB8::1]:51821',
];

t.test('wg drives the in-memory device through the UAPI socket', async (t) => {
  const ifname = `cvu${randomSuffix(8)}`;
  const mem = new PortCheckingWireGuard(ifname);
  const srv: UapiServer = await startUapiServer(mem);
  t.teardown(() => srv.close());

  await wg(...setArgs(ifname));
  let s = mem.state();
  t.equal(b64(s.privateKey), dev.priv);
  t.equal(s.listenPort, 51820);
  t.equal(s.fwmark, 0x20);
  t.same(
    s.peers.map((p) => [b64(p.publicKey), b64(p.presharedKey), p.endpoint, p.allowedIps, p.persistentKeepalive]),
    [
      [a.pub, psk, '192.0.2.1:51820', ['10.1.0.0/16', 'fd00::/64', '192.0.2.9/32'], 25],
      [b.pub, '(none)', '[2001:db8::1]:51821', ['198.51.100.0/24'], 0],
    ],
  );

  // What the data plane would measure: `wg show` must print exactly this.
  const hs = Math.floor(Date.now() / 1000) - 5;
  mem.setPeerStatistics(bytes(a.pub), { rxBytes: 123456789012n, txBytes: 42n, lastHandshake: { sec: hs, nsec: 999 } });
  const dump = await wg('show', ifname, 'dump');
  t.equal(
    dump,
    [
      [dev.priv, dev.pub, '51820', '0x20'],
      [a.pub, psk, '192.0.2.1:51820', '10.1.0.0/16,fd00::/64,192.0.2.9/32', String(hs), '123456789012', '42', '25'],
      [b.pub, '(none)', '[2001:db8::1]:51821', '198.51.100.0/24', '0', '0', '0', 'off'],
    ]
      .map((l) => `${l.join('\t')}\n`)
      .join(''),
  );
  t.equal(await wg('show', ifname, 'public-key'), `${dev.pub}\n`);
  t.equal(await wg('show', ifname, 'transfer'), `${a.pub}\t123456789012\t42\n${b.pub}\t0\t0\n`);
  t.equal(await wg('show', ifname, 'latest-handshakes'), `${a.pub}\t${hs}\n${b.pub}\t0\n`);
  t.equal(await wg('showconf', ifname), formatWgQuick(mem.state()), 'showconf = formatWgQuick, byte for byte');

  await wg('set', ifname, 'peer', b.pub, 'remove');
  t.same(mem.state().peers.map((p) => b64(p.publicKey)), [a.pub], 'peer removed');

  // syncconf: keeps A (changed), drops what the file does not list, adds C; counters of A survive.
  const conf = join(tmp, `${ifname}.conf`);
  writeFileSync(
    conf,
    `[Interface]\nPrivateKey = ${dev.priv}\nListenPort = 51821\n\n[Peer]\nPublicKey = ${a.pub}\nAllowedIPs = 10.9.0.0/16\n\n[Peer]\nPublicKey = ${c.pub}\nAllowedIPs = 10.1.0.0/16, 192.0.2.9/32\nEndpoint = 203.0.113.5:1\n`,
    { mode: 0o600 },
  );
  await wg('set', ifname, 'peer', b.pub, 'allowed-ips', '172.16.0.0/12');
  await wg('syncconf', ifname, conf);
  s = mem.state();
  t.equal(s.listenPort, 51821);
  t.same(
    s.peers.map((p) => [b64(p.publicKey), b64(p.presharedKey), p.endpoint, p.allowedIps]),
    [
      // syncconf sends only what the file sets: A keeps its preshared key and endpoint.
      [a.pub, psk, '192.0.2.1:51820', ['10.9.0.0/16']],
      [c.pub, '(none)', '203.0.113.5:1', ['10.1.0.0/16', '192.0.2.9/32']],
    ],
  );
  t.equal(s.peers[0]!.rxBytes, 123456789012n, 'syncconf does not recreate a peer it keeps');

  // Bad input: refused by wg itself, by the protocol, and by the device (errno reaches wg's message).
  const before = mem.state();
  t.match(await wgFails('set', ifname, 'peer', a.pub, 'allowed-ips', '10.0.0.0/33'), /allowed IP|10\.0\.0\.0\/33/i);
  t.equal(await raw(ifname, 'set=1\nlisten_port=abc\n\n'), 'errno=-22\n\n');
  t.equal(await raw(ifname, `set=1\npublic_key=${Buffer.from(a.pub, 'base64').toString('hex')}\nallowed_ip=10.0.0.1\n\n`), 'errno=-22\n\n');
  t.equal(await raw(ifname, 'set=1\nnot a key value line\n\n'), 'errno=-71\n\n');
  t.match(await wgFails('set', ifname, 'listen-port', '1'), /Unable to modify interface: Address already in use/);
  t.same(mem.state(), before, 'nothing changed');
});

t.test('get=1 matches wireguard-go for the same configuration', { skip: !existsSync(WIREGUARD_GO) && 'no wireguard-go' }, async (t) => {
  const suffix = randomSuffix(8);
  const ns = `cvuns${suffix}`;
  const goIf = `cvg${suffix}`;
  const memIf = `cvm${suffix}`;
  await exec('ip', ['netns', 'add', ns]);
  const child: ChildProcess = spawn('ip', ['netns', 'exec', ns, WIREGUARD_GO, goIf], {
    env: { ...process.env, WG_PROCESS_FOREGROUND: '1', LOG_LEVEL: 'error' },
    stdio: ['ignore', 'ignore', 'ignore'],
  });
  t.teardown(async () => {
    if (child.pid !== undefined && child.exitCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      process.kill(child.pid, 'SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
      if (child.exitCode === null) process.kill(child.pid, 'SIGKILL');
    }
    // wireguard-go removes its socket on exit; a SIGKILLed one would not.
    rmSync(join(RUN_DIR, `${goIf}.sock`), { force: true });
    await exec('ip', ['netns', 'del', ns]).catch(() => undefined);
  });
  const sock = join(RUN_DIR, `${goIf}.sock`);
  for (let i = 0; i < 100 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 50));
  t.ok(existsSync(sock), 'wireguard-go is up');

  const mem = new InMemoryWireGuard(memIf);
  const srv = await startUapiServer(mem);
  t.teardown(() => srv.close());

  for (const ifname of [goIf, memIf]) await wg(...setArgs(ifname));
  const goGet = blocks(await raw(goIf, 'get=1\n\n'));
  const memGet = blocks(await raw(memIf, 'get=1\n\n'));
  t.same(memGet.device, goGet.device, 'device lines (order and values)');
  t.same([...memGet.peers.keys()].sort(), [...goGet.peers.keys()].sort(), 'the same peers');
  for (const [k, lines] of goGet.peers) t.same(memGet.peers.get(k), lines, `peer block ${k.slice(11, 19)}… line for line`);

  // The same changes, then the same answers again (wireguard-go lists peers in map order).
  for (const ifname of [goIf, memIf]) {
    await wg('set', ifname, 'fwmark', '0', 'peer', b.pub, 'allowed-ips', '10.1.0.0/16,::ffff:10.0.0.0/104', 'persistent-keepalive', '7');
    await wg('set', ifname, 'peer', a.pub, 'remove', 'peer', c.pub, 'endpoint', '[fe80::1%lo]:9');
  }
  const go2 = blocks(await raw(goIf, 'get=1\n\n'));
  const mem2 = blocks(await raw(memIf, 'get=1\n\n'));
  t.same(mem2.device, go2.device);
  t.same([...mem2.peers.keys()].sort(), [...go2.peers.keys()].sort());
  for (const [k, lines] of go2.peers) t.same(mem2.peers.get(k), lines, `after changes: peer ${k.slice(11, 19)}…`);
  // Same refusals, same errno.
  for (const req of ['set=1\nlisten_port=65536\n\n', 'set=1\nfoo=bar\n\n', 'set=1\nnoequals\n\n', 'get=1\nX']) {
    t.equal(await raw(memIf, req), await raw(goIf, req), JSON.stringify(req));
  }
  const showGo = (await wg('show', goIf, 'dump')).split('\n').slice(1).sort();
  const showMem = (await wg('show', memIf, 'dump')).split('\n').slice(1).sort();
  t.same(showMem, showGo, 'wg show dump: same peer lines');
});
