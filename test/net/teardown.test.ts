// A torn-down lab leaves nothing: no namespace, no link, no process, no file. Checked after a
// normal teardown, after an error thrown in the test body, after one of the lab's children was
// SIGKILLed, and for whole test processes that crash or are interrupted.
import t from 'tap';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Lab, withLab } from '../harness/lab.js';
import { leftovers, type LabFootprint } from '../harness/leaks.js';
import { WG_RUN_DIR, wireguardGo } from '../harness/wireguard.js';
import { dropPercent, masquerade } from '../harness/nft.js';
import { missingPrerequisites } from '../harness/tools.js';

const skip = missingPrerequisites('wg', 'wireguardGo', 'nft', 'setpriv', 'unshare');
const none: LabFootprint = { namespaces: [], interfaces: [], pids: [], paths: [] };

/** Builds a bit of everything and returns what it created. */
async function populate(lab: Lab): Promise<{ footprint: LabFootprint; wgPid: number }> {
  const a = await lab.namespace('a');
  const b = await lab.namespace('b');
  const [rootEnd] = await lab.veth({ ns: undefined }, { ns: a, addresses: ['10.66.0.2/24'] });
  const [ab] = await lab.veth({ ns: a, addresses: ['10.66.1.1/24'] }, { ns: b, addresses: ['10.66.1.2/24'] });
  await lab.bridge(b);
  await masquerade(lab, a, ab.name);
  await dropPercent(lab, ab, { percent: 5 });
  const sleeper = lab.spawn('sleep', 'sleep', ['600'], { ns: b });
  const priv = lab.spawn('private-run sleep', 'sleep', ['600'], { ns: b, privateRun: true });
  const wg = await wireguardGo(lab, a, { addresses: ['10.67.0.1/24'] });
  lab.writeFile('marker', 'x');
  return {
    footprint: {
      namespaces: [...lab.namespaces],
      interfaces: [rootEnd.name],
      pids: [sleeper.pid, priv.pid, wg.process.pid],
      paths: [lab.dir, `${WG_RUN_DIR}/${wg.name}.sock`],
    },
    wgPid: wg.process.pid,
  };
}

t.test('teardown after a normal test', { skip }, async (t) => {
  const lab = Lab.create({ label: 'td' });
  const { footprint } = await populate(lab);
  t.same(await leftovers(footprint), footprint, 'everything exists before teardown (the check can fail)');
  const r = await lab.teardown();
  t.same(r.errors, []);
  t.same(await leftovers(footprint), none, 'nothing left');
  t.same(await lab.teardown(), { errors: [] }, 'teardown is idempotent');
});

t.test('teardown after an error thrown in the test body', { skip }, async (t) => {
  let footprint: LabFootprint = none;
  await t.rejects(
    withLab(
      async (lab) => {
        footprint = (await populate(lab)).footprint;
        throw new Error('deliberate');
      },
      { label: 'td' },
    ),
    { message: 'deliberate' },
  );
  t.ok(footprint.namespaces.length > 0);
  t.same(await leftovers(footprint), none, 'nothing left');
});

t.test('teardown after a lab child was SIGKILLed mid-test', { skip }, async (t) => {
  const lab = Lab.create({ label: 'td' });
  const { footprint, wgPid } = await populate(lab);
  process.kill(wgPid, 'SIGKILL');
  const wg = lab.processes.find((p) => p.pid === wgPid);
  t.same(await wg?.exited, { code: null, signal: 'SIGKILL' }, 'the child died');
  const r = await lab.teardown();
  t.same(r.errors, [], 'teardown copes with a dead child');
  t.same(await leftovers(footprint), none, 'nothing left, not even its UAPI socket');
});

const fixture = fileURLToPath(new URL(`../harness/fixtures/lab-child.${import.meta.url.endsWith('.ts') ? 'ts' : 'js'}`, import.meta.url));
// the TypeScript loader this test runs under, so the fixture runs the same way
const loader = process.execArgv.filter((a) => a.includes('@tapjs/typescript'));

for (const mode of ['throw', 'reject', 'exit', 'sigterm', 'sigint'] as const) {
  t.test(`a test process that ends with ${mode} leaves nothing`, { skip }, async (t) => {
    const child = spawn(process.execPath, [...loader, fixture, mode], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    const exited = new Promise<[number | null, NodeJS.Signals | null]>((r) => child.once('exit', (c, s) => r([c, s])));
    const footprint = await new Promise<LabFootprint>((resolve, reject) => {
      const check = setInterval(() => {
        const line = out.split('\n').find((l) => l.startsWith('{'));
        if (line !== undefined) {
          clearInterval(check);
          resolve(JSON.parse(line) as LabFootprint);
        }
      }, 20);
      void exited.then(() => {
        setTimeout(() => {
          clearInterval(check);
          reject(new Error(`fixture exited before reporting: ${err}`));
        }, 100);
      });
    });
    t.ok(footprint.pids.length === 3 && footprint.namespaces.length === 1, 'fixture built its lab');
    if (mode === 'sigterm') child.kill('SIGTERM');
    if (mode === 'sigint') child.kill('SIGINT');
    const [code, signal] = await exited;
    if (mode === 'sigterm' || mode === 'sigint') t.equal(signal, mode.toUpperCase(), 'died of the re-raised signal');
    else t.not(code, 0, `exited with an error (code ${String(code)})`);
    t.same(await leftovers(footprint), none, 'nothing left');
  });
}
