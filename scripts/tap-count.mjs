// Reads TAP 14 from stdin, echoes it, and appends "passed failed skipped" for the tests one
// level below each file (the `t.test(...)` blocks) to the file named in argv[2]. A file that
// fails without any subtest result (crash, syntax error) counts as one failure.
import { appendFileSync } from 'node:fs';
import { createInterface } from 'node:readline';

const out = process.argv[2];
let passed = 0, failed = 0, skipped = 0, subInFile = 0;
const rl = createInterface({ input: process.stdin });
for await (const line of rl) {
  process.stdout.write(line + '\n');
  const sub = /^ {4}(not ok|ok) \d+/.exec(line);
  if (sub) {
    subInFile++;
    if (/# (SKIP|TODO)/i.test(line)) skipped++;
    else if (sub[1] === 'ok') passed++;
    else failed++;
    continue;
  }
  const top = /^(not ok|ok) \d+/.exec(line);
  if (top) {
    if (subInFile === 0) {
      if (/# SKIP/i.test(line)) skipped++;
      else if (top[1] === 'ok') passed++;
      else failed++;
    }
    subInFile = 0;
  }
}
appendFileSync(out, `${passed} ${failed} ${skipped}\n`);
