// The benchmarks' command lines, on the built scripts as real processes: --help (exit 0, usage on
// stdout, nothing run) and an unknown flag refused (exit 2, the flag named on stderr). The list
// is every script in bench/ whose header says how to run it (`node dist/bench/<name>.js`), so a
// new entry point without these rules fails here.
// Needs dist/ (`npx tsc -p tsconfig.json`).
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { REPO_ROOT } from '../harness/cvlan.js';

const benchDir = join(REPO_ROOT, 'bench');
const entries = readdirSync(benchDir)
  .filter((f) => f.endsWith('.ts'))
  .map((f) => f.replace(/\.ts$/, ''))
  .filter((name) => readFileSync(join(benchDir, `${name}.ts`), 'utf8').includes(`node dist/bench/${name}.js`));
const built = (name: string) => join(REPO_ROOT, 'dist', 'bench', `${name}.js`);
const skip = existsSync(built('sizing')) ? undefined : 'dist/bench is not built (npx tsc -p tsconfig.json)';

t.test('every benchmark answers --help and refuses an unknown flag', { skip }, async (t) => {
  t.ok(entries.length >= 8, `entry points found: ${entries.join(', ')}`);
  for (const name of entries) {
    const help = spawnSync(process.execPath, [built(name), '--help'], { encoding: 'utf8', timeout: 20_000 });
    t.equal(help.status, 0, `${name} --help: exit 0`);
    t.match(help.stdout, new RegExp(`^usage: node dist/bench/${name}\\.js`), `${name} --help: usage on stdout`);
    const bad = spawnSync(process.execPath, [built(name), '--no-such-flag'], { encoding: 'utf8', timeout: 20_000 });
    t.equal(bad.status, 2, `${name} --no-such-flag: exit 2`);
    t.match(bad.stderr, new RegExp(`^${name}: unknown option --no-such-flag\\n`), `${name}: the flag named`);
  }
});
