/**
 * The sync channel's key: 32 random bytes, base64, in a file only root can read. It
 * authenticates and encrypts everything the two nodes exchange, including the session keys
 * they sync, so a file readable by others is refused rather than used.
 */

import { readFileSync, statSync } from 'node:fs';
import { ConfigError } from '../errors.js';
import { secureBuffer, type SecureKey } from '../secrets/keys.js';

export const SYNC_KEY_BYTES = 32;

export function readSyncKey(path: string): SecureKey {
  const fail = (reason: string): never => {
    throw new ConfigError([{ path: 'ha.sync_key_file', reason: `${path}: ${reason}` }]);
  };
  let mode: number;
  try {
    mode = statSync(path).mode;
  } catch (e) {
    return fail(`cannot read: ${(e as Error).message}`);
  }
  if ((mode & 0o077) !== 0) fail(`readable by group or others (mode ${(mode & 0o777).toString(8)}); chmod 600 it`);
  const text = readFileSync(path, 'utf8').trim();
  const raw = /^[A-Za-z0-9+/]+={0,2}$/.test(text) ? Buffer.from(text, 'base64') : Buffer.alloc(0);
  try {
    if (raw.length !== SYNC_KEY_BYTES) fail(`expected ${SYNC_KEY_BYTES} bytes in base64 (\`head -c 32 /dev/urandom | base64\`), got ${raw.length === 0 ? 'no valid base64' : `${raw.length} bytes`}`);
    const key = secureBuffer(SYNC_KEY_BYTES);
    raw.copy(key.bytes);
    return key;
  } finally {
    raw.fill(0);
  }
}
