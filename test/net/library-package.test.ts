// The package as a library user gets it: `npm pack`, install the tarball into a fresh directory,
// compile the example program (examples/wireguard-device.ts) against the installed type
// declarations, and run it as root in a fresh namespace: it opens a WireGuard device from the
// installed package (whose tarball carries the native addon), configures it, sends traffic into
// it and reads its stats. A consumer with a type error must not compile: the types are real.
// Needs dist/ (`npx tsc -p tsconfig.json`) and the addon in build/; the dependencies come from
// the npm registry (or npm's cache).
import { existsSync, mkdirSync, readFileSync, writeFileSync, copyFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { useLab, closeLab } from '../harness/tap.js';
import { REPO_ROOT } from '../harness/cvlan.js';
import { run } from '../harness/exec.js';
import { tools } from '../harness/tools.js';

const ADDON = join(REPO_ROOT, 'build', 'cvlan.linux-x64-gnu.node');
const TSC = join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
const skip = !existsSync(join(REPO_ROOT, 'dist', 'src', 'index.d.ts'))
  ? 'dist/ is not built with declarations (npx tsc -p tsconfig.json)'
  : !existsSync(ADDON)
    ? 'the native addon is not built (npm run build:native)'
    : process.getuid?.() !== 0
      ? 'opening a TUN device needs root'
      : undefined;

const CONSUMER_TSCONFIG = {
  compilerOptions: {
    target: 'ES2022',
    module: 'NodeNext',
    moduleResolution: 'NodeNext',
    strict: true,
    outDir: 'out',
    types: ['node'],
    // Only @types/node comes from the repository; cvlan-vrouter's types come from the tarball.
    typeRoots: [join(REPO_ROOT, 'node_modules', '@types')],
  },
  include: ['*.ts'],
};

t.test('npm pack → npm install → tsc → run the example as root', { skip, timeout: 300_000 }, async (t) => {
  const lab = useLab(t, { label: 'libpack' });
  const npm = async (cwd: string, args: string[]) => run('/bin/sh', ['-c', 'cd "$0" && exec npm "$@"', cwd, ...args], { timeoutMs: 240_000 });

  // Scripts off: dist/ is what the tests run against; `prepack` would rebuild it.
  const packed = JSON.parse((await npm(REPO_ROOT, ['pack', '--ignore-scripts', '--json', '--pack-destination', lab.dir])).stdout) as { filename: string; files: { path: string }[] }[];
  const tarball = join(lab.dir, packed[0]!.filename);
  const files = packed[0]!.files.map((f) => f.path);
  t.ok(files.includes('dist/src/index.js') && files.includes('dist/src/index.d.ts'), 'the entry and its declarations are packed');
  t.ok(files.includes('build/cvlan.linux-x64-gnu.node'), 'the native addon is packed');
  t.ok(files.includes('dist/src/cli/cvlan-wireguard.js'), 'the CLIs are packed');
  t.notOk(files.some((f) => f.startsWith('src/') || f.startsWith('dist/test/unit') || f.startsWith('dist/test/net') || f.startsWith('crates/')), 'no sources, tests or crates');

  const app = join(lab.dir, 'app');
  mkdirSync(app);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
  await npm(app, ['install', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error', tarball]);
  const installed = join(app, 'node_modules', 'cvlan-vrouter');
  t.equal((JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8')) as { version: string }).version, (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version, 'installed the packed version');

  writeFileSync(join(app, 'tsconfig.json'), JSON.stringify(CONSUMER_TSCONFIG));
  copyFileSync(join(REPO_ROOT, 'examples', 'wireguard-device.ts'), join(app, 'consumer.ts'));
  await run(tools.node, [TSC, '-p', join(app, 'tsconfig.json')], { timeoutMs: 180_000 });
  t.ok(existsSync(join(app, 'out', 'consumer.js')), 'the example compiles against the installed declarations');

  // A consumer that gets the API wrong is refused by the compiler, naming the mistake.
  const wrongDir = join(lab.dir, 'wrong');
  mkdirSync(wrongDir);
  writeFileSync(join(wrongDir, 'package.json'), JSON.stringify({ name: 'wrong', private: true, type: 'module' }));
  writeFileSync(join(wrongDir, 'tsconfig.json'), JSON.stringify({ ...CONSUMER_TSCONFIG, compilerOptions: { ...CONSUMER_TSCONFIG.compilerOptions, noEmit: true } }));
  writeFileSync(join(wrongDir, 'wrong.ts'), "import { WireGuardDevice } from 'cvlan-vrouter';\nWireGuardDevice.open({ tunName: 'x', listenPort: '51820' });\n");
  await run('/bin/ln', ['-s', join(app, 'node_modules'), join(wrongDir, 'node_modules')]);
  const wrong = await run(tools.node, [TSC, '-p', join(wrongDir, 'tsconfig.json')], { allowFailure: true, timeoutMs: 180_000 });
  t.not(wrong.code, 0, 'a wrong option type does not compile');
  // Column 38 of line 2 is `listenPort`.
  t.match(wrong.stdout, /wrong\.ts\(2,38\): error TS2322: Type 'string' is not assignable to type 'number'/, 'the compiler points at listenPort');

  const ns = await lab.namespace('lib');
  await lab.ip(ns, ['link', 'set', 'lo', 'up']);
  const ifname = lab.ifname('lib');
  const out = await run(tools.node, [join(app, 'out', 'consumer.js'), ifname], { ns, timeoutMs: 60_000 });
  const report = JSON.parse(out.stdout.trim().split('\n').pop()!) as Record<string, unknown>;
  t.equal(report.interface, ifname, 'the device opened with the given name');
  t.ok(typeof report.listen_port === 'number' && report.listen_port > 0, `a UDP port was bound (${String(report.listen_port)})`);
  t.equal(report.peers, 1, 'the peer was configured');
  t.same(report.allowed_ips, ['10.123.0.2/32'], 'with its allowed IPs');
  t.ok((report.tun_rx_packets as number) >= 3, `the workers read the pings from the TUN device (${String(report.tun_rx_packets)})`);
  t.ok((report.udp_tx_packets as number) >= 1, `and sent a handshake initiation (${String(report.udp_tx_packets)} UDP packets)`);
  t.ok((report.events as string[]).includes('worker-started'), 'events reached the program');
  const gone = await run(tools.ip, ['link', 'show', 'dev', ifname], { ns, allowFailure: true });
  t.not(gone.code, 0, 'closing the device removed its interface');

  // The installed CLIs find the addon inside the package too.
  const version = await run(join(app, 'node_modules', '.bin', 'cvlan-vrouter'), ['version', '--json']);
  t.match(JSON.parse(version.stdout) as object, { version: String(report.addon) }, 'the installed cvlan-vrouter loads the packed addon');
  const help = await run(join(app, 'node_modules', '.bin', 'cvlan-wireguard'), ['--help']);
  t.match(help.stdout, /usage: cvlan-wireguard/, 'the installed cvlan-wireguard answers --help');
  await closeLab(t, lab);
});
