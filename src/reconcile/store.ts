/**
 * The last applied configuration, on disk, so a restarted vrouter comes back without the
 * controller or the file: `<state dir>/applied.json`, mode 0600, replaced atomically (write a
 * temporary file, fsync, rename over the old one, fsync the directory). A crash at any point
 * leaves either the old or the new file, never a torn one.
 *
 * Every secret value in the stored documents is sealed to the vrouter's secrets key
 * (`"encrypted:..."`, `../secrets/sealed.ts`): the file holds no PSK, EAP password or private
 * key in clear. `file:/...` references are kept as they are.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CvlanError } from '../errors.js';
import { writeStateFile } from '../state-file.js';
import { SEALED_PREFIX, seal, type SealKeypair } from '../secrets/sealed.js';

export const APPLIED_FILE = 'applied.json';
const FORMAT = 1;

/** Field names whose string values are secrets in the controller documents (docs/configuration.md). */
const SECRET_FIELDS = new Set(['psk', 'eap_secret', 'private_key', 'preshared_key']);

export interface StoredConfig {
  /** configVersion() of the state these documents gave when they were applied. */
  version: string;
  savedAt: string;
  /** The controller documents, secrets sealed. */
  documents: unknown[];
}

/** A deep copy of `doc` with every plain secret value sealed to `publicKey`. */
export function sealSecrets(doc: unknown, publicKey: Buffer): unknown {
  const walk = (v: unknown, key: string | undefined): unknown => {
    if (Array.isArray(v)) return v.map((x) => walk(x, undefined));
    if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x, k)]));
    if (typeof v === 'string' && key !== undefined && SECRET_FIELDS.has(key) && !v.startsWith(SEALED_PREFIX) && !v.startsWith('file:')) return seal(publicKey, v);
    return v;
  };
  return walk(doc, undefined);
}

export function storeApplied(stateDir: string, documents: unknown[], keypair: SealKeypair, version: string): string {
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const path = join(stateDir, APPLIED_FILE);
  const body = `${JSON.stringify({ format: FORMAT, version, saved_at: new Date().toISOString(), documents: documents.map((d) => sealSecrets(d, keypair.publicKey)) }, null, 2)}\n`;
  try {
    writeStateFile(path, body);
  } catch (e) {
    throw new CvlanError('CVLAN_ERR_CONFIG', `cannot store the applied configuration in ${path}: ${(e as Error).message}`, { cause: e });
  }
  return path;
}

/** The stored configuration, or undefined when none was stored yet. */
export function loadApplied(stateDir: string): StoredConfig | undefined {
  const path = join(stateDir, APPLIED_FILE);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new CvlanError('CVLAN_ERR_CONFIG', `cannot read the stored configuration ${path}: ${(e as Error).message}`, { cause: e });
  }
  let v: { format?: unknown; version?: unknown; saved_at?: unknown; documents?: unknown };
  try {
    v = JSON.parse(text) as typeof v;
  } catch (e) {
    throw new CvlanError('CVLAN_ERR_CONFIG', `the stored configuration ${path} is not valid JSON: ${(e as Error).message}`, { cause: e });
  }
  if (v.format !== FORMAT || typeof v.version !== 'string' || typeof v.saved_at !== 'string' || !Array.isArray(v.documents)) {
    throw new CvlanError('CVLAN_ERR_CONFIG', `the stored configuration ${path} is not in format ${FORMAT}`);
  }
  return { version: v.version, savedAt: v.saved_at, documents: v.documents };
}
