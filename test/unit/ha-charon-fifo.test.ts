// The commands the daemon writes to charon's ha plugin FIFO (src/ha/charon-ha.ts): one line per
// open, as ha_ctl.c reads them; no reader (charon still starting) is an error the caller retries.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, readSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resyncCharonHaSegment, setCharonHaSegment } from '../../src/ha/charon-ha.js';

const dir = mkdtempSync(join(tmpdir(), 'cvlan-ha-fifo-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const fifo = join(dir, 'charon.ha');
execFileSync('mkfifo', ['-m', '0600', fifo]);

/** What one write carried, read as the plugin does (one read per open). */
async function written(write: () => Promise<void>): Promise<string> {
  const fd = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    await write();
    const buf = Buffer.alloc(8);
    return buf.subarray(0, readSync(fd, buf)).toString();
  } finally {
    closeSync(fd);
  }
}

t.test('activate, deactivate, resync: segment 1, one line each', async (t) => {
  t.equal(await written(() => setCharonHaSegment(fifo, true)), '+1\n');
  t.equal(await written(() => setCharonHaSegment(fifo, false)), '-1\n');
  t.equal(await written(() => resyncCharonHaSegment(fifo)), '*1\n');
});

t.test('no reader yet: refused at once (ENXIO), not blocked', async (t) => {
  await t.rejects(setCharonHaSegment(fifo, true), { code: 'ENXIO' });
  await t.rejects(resyncCharonHaSegment(join(dir, 'absent')), { code: 'ENOENT' });
});
