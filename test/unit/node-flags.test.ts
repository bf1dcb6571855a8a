// The daemon's V8 flags (src/cli/node-flags.ts) are the same wherever it is started: the
// cvlan-vrouter script's shebang (the container's entry point runs it directly) and the wrapper
// deploy/install.sh writes. The test harness takes them from the module itself.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { DAEMON_NODE_FLAGS } from '../../src/cli/node-flags.js';

const repo = (p: string): string => readFileSync(fileURLToPath(new URL(`../../${p}`, import.meta.url)), 'utf8');

t.test('the shebang of cvlan-vrouter passes the flags to node', async (t) => {
  const first = repo('src/cli/cvlan-vrouter.ts').split('\n')[0];
  t.equal(first, `#!/usr/bin/env -S node ${DAEMON_NODE_FLAGS.join(' ')}`);
});

t.test("install.sh's cvlan-vrouter wrapper passes the same flags, vrouterctl's none", async (t) => {
  const script = repo('deploy/install.sh');
  const m = /\[ "\$cmd" = cvlan-vrouter \] && flags='([^']*)'/.exec(script);
  t.ok(m, 'the wrapper sets flags for cvlan-vrouter only');
  t.same(m![1]!.trim().split(' '), [...DAEMON_NODE_FLAGS]);
});

t.test('the flags are ones node accepts', async (t) => {
  // node rejects an unknown V8 flag at start ("bad option"): a typo would stop the daemon.
  const { spawnSync } = await import('node:child_process');
  const r = spawnSync(process.execPath, [...DAEMON_NODE_FLAGS, '-e', "process.stdout.write(String(require('v8').getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size))"], { encoding: 'utf8' });
  t.equal(r.status, 0, r.stderr);
  t.ok(Number(r.stdout) <= 4 * 1024 * 1024, `new space ${r.stdout} bytes: capped`);
});
