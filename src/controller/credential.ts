/**
 * The vrouter's controller credential: an Ed25519 key pair generated here, whose private half
 * never leaves `<state dir>/controller/credential.json` (0600), plus the vrouter id and expiry
 * the controller bound to its public half. Written atomically (temporary file, fsync, rename),
 * so a rotation interrupted at any point leaves the old or the new credential, never a torn one.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { CvlanError } from '../errors.js';
import { writeStateFile } from '../state-file.js';

export const CREDENTIAL_FILE = join('controller', 'credential.json');
const FORMAT = 1;

export interface Credential {
  vrouterId: string;
  /** The controller's URL this credential belongs to. */
  url: string;
  privateKey: KeyObject;
  /** Raw 32-byte public key, base64 (the API's Ed25519PublicKey). */
  publicKey: string;
  expiresAt: string;
  /** SHA-256 (hex) of the token it was registered with: a second `init` with it does nothing. */
  tokenSha256: string;
}

export function newKeyPair(): { privateKey: KeyObject; publicKey: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return { privateKey, publicKey: rawPublicKey(publicKey) };
}

export function rawPublicKey(k: KeyObject): string {
  // The SPKI DER of an Ed25519 key is a fixed 12-byte header followed by the 32 raw bytes.
  return k.export({ format: 'der', type: 'spki' }).subarray(12).toString('base64');
}

export function publicKeyFromRaw(raw: string): KeyObject {
  const bytes = Buffer.from(raw, 'base64');
  if (bytes.length !== 32) throw new CvlanError('CVLAN_ERR_KEY', 'an Ed25519 public key is 32 bytes');
  return createPublicKey({ key: Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), bytes]), format: 'der', type: 'spki' });
}

export function signWith(key: KeyObject, data: Buffer): Buffer {
  return sign(null, data, key);
}

export function tokenDigest(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

export function writeCredential(path: string, c: Credential): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const body = Buffer.from(
    `${JSON.stringify(
      {
        format: FORMAT,
        vrouter_id: c.vrouterId,
        url: c.url,
        public_key: c.publicKey,
        private_key: c.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
        expires_at: c.expiresAt,
        token_sha256: c.tokenSha256,
      },
      null,
      2,
    )}\n`,
  );
  try {
    writeStateFile(path, body);
  } catch (e) {
    throw new CvlanError('CVLAN_ERR_KEY', `cannot write the controller credential ${path}: ${(e as Error).message}`, { cause: e });
  } finally {
    body.fill(0);
  }
}

/** The stored credential, or undefined when there is none yet. */
export function readCredential(path: string): Credential | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new CvlanError('CVLAN_ERR_KEY', `cannot read the controller credential ${path}: ${(e as Error).message}`, { cause: e });
  }
  try {
    const v = JSON.parse(text) as Record<string, unknown>;
    const str = (k: string): string => {
      if (typeof v[k] !== 'string') throw new Error(`${k} is missing`);
      return v[k];
    };
    if (v.format !== FORMAT) throw new Error(`format is not ${FORMAT}`);
    const privateKey = createPrivateKey({ key: str('private_key'), format: 'pem' });
    if (privateKey.asymmetricKeyType !== 'ed25519') throw new Error('private_key is not an Ed25519 key');
    if (rawPublicKey(createPublicKey(privateKey)) !== str('public_key')) throw new Error('public_key does not belong to private_key');
    return { vrouterId: str('vrouter_id'), url: str('url'), privateKey, publicKey: str('public_key'), expiresAt: str('expires_at'), tokenSha256: str('token_sha256') };
  } catch (e) {
    throw new CvlanError('CVLAN_ERR_KEY', `the controller credential ${path} is not usable: ${(e as Error).message}; run \`cvlan-vrouter init\` again with a new token`, { cause: e });
  }
}
