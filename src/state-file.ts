/**
 * Files the daemon keeps in its state directory (the last applied configuration, the controller
 * credential): written 0600, never followed through a symlink, and durably — the new content is
 * complete on disk (fsync) before it replaces the old one (rename), and the rename itself is on
 * disk (fsync of the directory) before the caller goes on. A crash leaves the old file or the new.
 */
import { closeSync, constants as fsc, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';

/** Replaces `path` with `body` (mode 0600) as described above; on failure the old file stays and the error is thrown. */
export function writeStateFile(path: string, body: string | Buffer): void {
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    const fd = openSync(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_TRUNC | fsc.O_NOFOLLOW, 0o600);
    try {
      writeSync(fd, typeof body === 'string' ? Buffer.from(body, 'utf8') : body);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
    const dir = openSync(dirname(path), fsc.O_RDONLY | fsc.O_DIRECTORY);
    try {
      fsyncSync(dir);
    } finally {
      closeSync(dir);
    }
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}
