// The daemon's batched route plumbing (src/daemon/os.ts addRoutes/removeRoutes), run inside a
// namespace of the test's own: one `ip -batch` adds IPv4 and IPv6 prefixes to a device, and one
// `ip -force -batch` removes some of them, a prefix never routed among them, without stopping at it.
import t from 'tap';
import { join } from 'node:path';
import { withLab } from '../harness/lab.js';
import { run } from '../harness/exec.js';
import { tools } from '../harness/tools.js';
import { cvlanTestbedMissing, REPO_ROOT } from '../harness/cvlan.js';

// The built module, run by a node process of its own inside the namespace.
const os = join(REPO_ROOT, 'dist', 'src', 'daemon', 'os.js');
const skip = cvlanTestbedMissing();

t.test('addRoutes then removeRoutes, with a prefix that has no route', { skip }, async (t) => {
  await withLab(
    async (lab) => {
      const ns = await lab.namespace('rt');
      // A bridge (no dummy driver in a container); up with an address, so routes into it take.
      const dev = (await lab.bridge(ns, { addresses: ['192.0.2.1/24'] })).name;
      await lab.ip(ns, ['link', 'set', dev, 'up']);
      const call = (fn: string, prefixes: string[]): Promise<unknown> =>
        run(tools.node, ['--input-type=module', '-e', `const m = await import(${JSON.stringify(os)}); await m.${fn}(${JSON.stringify(prefixes)}, ${JSON.stringify(dev)});`], { ns });
      const routes = async (): Promise<string[]> =>
        [...(await lab.ip(ns, ['route', 'show', 'dev', dev])).stdout.split('\n'), ...(await lab.ip(ns, ['-6', 'route', 'show', 'dev', dev])).stdout.split('\n')]
          .map((l) => l.split(' ')[0]!)
          .filter((p) => /^(10\.9\d\.|fd00:77:)/.test(p)) // not the bridge's own connected routes
          .sort();

      const added = Array.from({ length: 300 }, (_, i) => `10.${90 + (i >> 8)}.${i & 255}.0/24`);
      await call('addRoutes', [...added, 'fd00:77::/64']);
      const all = await routes();
      t.equal(all.length, 301, '300 IPv4 prefixes and one IPv6 in one batch');
      t.ok(all.includes('fd00:77::/64') && all.includes('10.91.43.0/24'));

      // Every other one removed, plus a prefix that was never routed (must not stop the batch).
      const gone = [...added.filter((_, i) => i % 2 === 0), '10.99.99.0/24', 'fd00:77::/64'];
      await call('removeRoutes', gone);
      const left = await routes();
      t.equal(left.length, 150, 'the rest are there');
      t.ok(
        left.every((p) => !gone.includes(p)),
        'none of the removed prefixes is left',
      );
    },
    { label: 'routes' },
  );
});
