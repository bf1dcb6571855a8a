/**
 * Which controller generation the stored last applied configuration (`<state dir>/applied.json`,
 * `../reconcile/store.ts`) is: `<state dir>/controller/generation.json`. The two files are
 * written one after the other; `version` ties them together, so after a crash between the two
 * writes the generation is simply not trusted and the document is fetched again.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync, constants as fsc } from 'node:fs';
import { dirname, join } from 'node:path';

export const GENERATION_FILE = join('controller', 'generation.json');

export interface StoredGeneration {
  generation: number;
  etag: string;
  /** configVersion() of the applied state this generation gave. */
  version: string;
}

export function storeGeneration(stateDir: string, g: StoredGeneration): void {
  const path = join(stateDir, GENERATION_FILE);
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.tmp`;
  const fd = openSync(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_TRUNC | fsc.O_NOFOLLOW, 0o600);
  try {
    writeSync(fd, `${JSON.stringify(g)}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}

/** The stored generation if it belongs to the applied configuration of `version`. */
export function loadGeneration(stateDir: string, version: string): StoredGeneration | undefined {
  try {
    const v = JSON.parse(readFileSync(join(stateDir, GENERATION_FILE), 'utf8')) as Partial<StoredGeneration>;
    if (Number.isSafeInteger(v.generation) && typeof v.etag === 'string' && v.version === version) return v as StoredGeneration;
  } catch {
    // Missing or unreadable: the configuration is fetched in full.
  }
  return undefined;
}
