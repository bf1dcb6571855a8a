/**
 * The HTTPS side of the controller API (`api/controller.openapi.json`): register, fetch or
 * long-poll the configuration, report status, rotate the credential. No retries here: the loop
 * (`./loop.ts`) decides what to do with each failure.
 *
 * Every failure is a CvlanError with one of the CVLAN_ERR_CONTROLLER_* codes, so callers (and
 * `init`'s exit codes) can tell a bad token from an unreachable controller, a certificate that
 * does not verify, a controller of another API version and an answer the API does not allow.
 * Answers are read as a stream and cut off at `maxResponseBytes`: a controller (or anything
 * posing as one) cannot make the vrouter buffer more than that.
 */
import { request as httpsRequest } from 'node:https';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import type { KeyObject } from 'node:crypto';
import { CvlanError, type ErrorCode } from '../errors.js';
import {
  API_VERSION,
  API_VERSION_HEADER,
  MAX_WAIT_S,
  authorizationHeader,
  paths,
  registerProofText,
  rotateProofText,
  signedText,
  type StatusReport,
} from './protocol.js';
import { newKeyPair, signWith, type Credential } from './credential.js';

/** Bytes; the default ceiling of one answer (a large multi-tenant document fits many times). */
export const DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024;
/** Milliseconds without progress (connect, TLS, first byte, next byte) before a request fails. */
export const DEFAULT_TIMEOUT_MS = 15_000;

export interface ControllerClientOptions {
  /** Base URL, `https://host[:port][/prefix]`; `http://` only for a controller on loopback in tests. */
  url: string;
  /** PEM of the CA the controller's certificate must chain to; without it, the system trust store. */
  ca?: string;
  /** Bytes. Default DEFAULT_MAX_RESPONSE_BYTES. */
  maxResponseBytes?: number;
  /** Milliseconds. Default DEFAULT_TIMEOUT_MS; a long poll adds its wait. */
  timeoutMs?: number;
  /** Unix time in milliseconds (signatures carry it). Default Date.now. */
  now?: () => number;
}

export type ConfigAnswer =
  | { changed: false; etag: string }
  | { changed: true; etag: string; generation: number; document: unknown };

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

const TLS_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_SIGNATURE_FAILURE',
  'CERT_REVOKED',
  'CERT_UNTRUSTED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'EPROTO',
]);
const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE', 'ECONNABORTED']);

function fail(code: ErrorCode, message: string, cause?: unknown): CvlanError {
  return new CvlanError(code, message, cause === undefined ? undefined : { cause });
}

export class ControllerClient {
  readonly #base: URL;
  readonly #o: ControllerClientOptions;
  readonly #aborts = new Set<AbortController>();

  constructor(o: ControllerClientOptions) {
    let u: URL;
    try {
      u = new URL(o.url);
    } catch (e) {
      throw fail('CVLAN_ERR_CONFIG', `controller URL ${JSON.stringify(o.url)} is not a URL`, e);
    }
    if (u.protocol !== 'https:' && u.protocol !== 'http:') throw fail('CVLAN_ERR_CONFIG', `controller URL ${o.url}: expected https://`);
    this.#base = u;
    this.#o = o;
  }

  get url(): string {
    return this.#o.url;
  }

  /** Aborts requests in flight (a long poll when the daemon stops). */
  close(): void {
    for (const a of this.#aborts) a.abort();
    this.#aborts.clear();
  }

  #now(): number {
    return (this.#o.now ?? Date.now)();
  }

  #path(p: string): string {
    return `${this.#base.pathname.replace(/\/+$/, '')}${p}`;
  }

  async #request(method: 'GET' | 'POST', path: string, o: { body?: unknown; credential?: Credential; headers?: Record<string, string>; extraTimeoutMs?: number } = {}): Promise<Answer> {
    const full = this.#path(path);
    const body = o.body === undefined ? Buffer.alloc(0) : Buffer.from(JSON.stringify(o.body), 'utf8');
    const headers: Record<string, string> = { accept: 'application/json', [API_VERSION_HEADER]: API_VERSION, ...o.headers };
    if (o.body !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(body.length);
    }
    if (o.credential) {
      const ts = Math.floor(this.#now() / 1000);
      headers.authorization = authorizationHeader(o.credential.vrouterId, ts, signWith(o.credential.privateKey, signedText(method, full, ts, body)));
    }
    const limit = this.#o.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
    const timeout = (this.#o.timeoutMs ?? DEFAULT_TIMEOUT_MS) + (o.extraTimeoutMs ?? 0);
    const what = `${method} ${this.#base.origin}${full.split('?')[0]}`;
    const abort = new AbortController();
    this.#aborts.add(abort);
    try {
      return await new Promise<Answer>((resolve, reject) => {
        const req = (this.#base.protocol === 'https:' ? httpsRequest : httpRequest)(
          {
            protocol: this.#base.protocol,
            hostname: this.#base.hostname.replace(/^\[|\]$/g, ''),
            port: this.#base.port || undefined,
            path: full,
            method,
            headers,
            signal: abort.signal,
            timeout,
            ...(this.#base.protocol === 'https:' && this.#o.ca !== undefined ? { ca: this.#o.ca } : {}),
          },
          (res) => {
            const declared = Number(res.headers['content-length'] ?? NaN);
            if (declared > limit) {
              res.destroy();
              req.destroy();
              reject(fail('CVLAN_ERR_CONTROLLER_PROTOCOL', `${what}: the answer is ${declared} bytes, more than the limit of ${limit}`));
              return;
            }
            const chunks: Buffer[] = [];
            let size = 0;
            res.on('data', (c: Buffer) => {
              size += c.length;
              if (size > limit) {
                // Stop reading at the limit: the rest is never buffered.
                res.destroy();
                req.destroy();
                reject(fail('CVLAN_ERR_CONTROLLER_PROTOCOL', `${what}: the answer exceeds the limit of ${limit} bytes`));
                return;
              }
              chunks.push(c);
            });
            res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
            res.on('error', (e) => reject(this.#transportError(what, e)));
          },
        );
        req.on('timeout', () => req.destroy(Object.assign(new Error(`no progress for ${timeout} ms`), { code: 'ETIMEDOUT' })));
        req.on('error', (e) => reject(this.#transportError(what, e)));
        req.end(body);
      });
    } finally {
      this.#aborts.delete(abort);
    }
  }

  #transportError(what: string, e: unknown): CvlanError {
    if (e instanceof CvlanError) return e;
    const err = e as NodeJS.ErrnoException;
    const code = err.code ?? '';
    if (err.name === 'AbortError') return fail('CVLAN_ERR_CONTROLLER_UNREACHABLE', `${what}: aborted`, e);
    if (TLS_CODES.has(code) || code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_')) {
      const hint = this.#o.ca !== undefined ? 'the pinned CA (--ca)' : 'the system trust store (pin the controller CA with --ca)';
      return fail('CVLAN_ERR_CONTROLLER_TLS', `${what}: the controller's certificate does not verify against ${hint}: ${code} ${err.message}`, e);
    }
    if (UNREACHABLE_CODES.has(code)) return fail('CVLAN_ERR_CONTROLLER_UNREACHABLE', `${what}: ${code} ${err.message}`, e);
    return fail('CVLAN_ERR_CONTROLLER_UNREACHABLE', `${what}: ${err.message}`, e);
  }

  /** Checks the version header and turns API errors into CvlanErrors; returns the answer otherwise. */
  #check(what: string, a: Answer, expected: number[]): Answer {
    const version = a.headers[API_VERSION_HEADER];
    if (version !== API_VERSION) {
      throw fail(
        'CVLAN_ERR_CONTROLLER_VERSION',
        version === undefined
          ? `${what}: the server answered ${a.status} without a CVLAN-API-Version header; it is not a controller of API version ${API_VERSION} (check the URL)`
          : `${what}: the controller speaks API version ${String(version)}, this vrouter speaks version ${API_VERSION}; upgrade the vrouter or the controller`,
      );
    }
    if (expected.includes(a.status)) return a;
    let code = '';
    let message = '';
    try {
      const v = JSON.parse(a.body.toString('utf8')) as { code?: unknown; message?: unknown };
      if (typeof v.code === 'string') code = v.code;
      if (typeof v.message === 'string') message = v.message.slice(0, 300);
    } catch {
      // An error without a JSON body: the status alone is reported.
    }
    const said = `${what}: ${a.status}${code ? ` ${code}` : ''}${message ? `: ${message}` : ''}`;
    if (code === 'bad_token') throw fail('CVLAN_ERR_CONTROLLER_TOKEN', `${said} (ask the controller for a new token)`);
    if (['bad_signature', 'credential_expired', 'credential_revoked', 'unknown_vrouter'].includes(code) || a.status === 401) {
      throw fail('CVLAN_ERR_CONTROLLER_CREDENTIAL', `${said} (register again: cvlan-vrouter init --token NEW)`);
    }
    if (code === 'unsupported_api_version') throw fail('CVLAN_ERR_CONTROLLER_VERSION', said);
    throw fail('CVLAN_ERR_CONTROLLER_PROTOCOL', said);
  }

  #json(what: string, a: Answer): Record<string, unknown> {
    let v: unknown;
    try {
      v = JSON.parse(a.body.toString('utf8'));
    } catch (e) {
      throw fail('CVLAN_ERR_CONTROLLER_PROTOCOL', `${what}: the answer is not valid JSON: ${(e as Error).message}`, e);
    }
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw fail('CVLAN_ERR_CONTROLLER_PROTOCOL', `${what}: the answer is not a JSON object`);
    return v as Record<string, unknown>;
  }

  /** Trades the one-time token for a vrouter id bound to a key pair generated here. */
  async register(token: string, o: { hostname?: string; secretsPublicKey?: Buffer; keyPair?: { privateKey: KeyObject; publicKey: string } } = {}): Promise<Omit<Credential, 'tokenSha256'>> {
    const kp = o.keyPair ?? newKeyPair();
    const what = `POST ${this.#base.origin}${this.#path(paths.register)}`;
    const a = this.#check(
      what,
      await this.#request('POST', paths.register, {
        body: {
          token,
          public_key: kp.publicKey,
          proof: signWith(kp.privateKey, registerProofText(token, kp.publicKey)).toString('base64'),
          ...(o.hostname ? { hostname: o.hostname } : {}),
          ...(o.secretsPublicKey ? { secrets_public_key: o.secretsPublicKey.toString('base64') } : {}),
        },
      }),
      [201],
    );
    const v = this.#json(what, a);
    const cred = v.credential as Record<string, unknown> | undefined;
    if (typeof v.vrouter_id !== 'string' || typeof cred?.expires_at !== 'string' || cred.public_key !== kp.publicKey) {
      throw fail('CVLAN_ERR_CONTROLLER_PROTOCOL', `${what}: the answer lacks vrouter_id or a credential for the key sent`);
    }
    return { vrouterId: v.vrouter_id, url: this.#o.url, privateKey: kp.privateKey, publicKey: kp.publicKey, expiresAt: cred.expires_at };
  }

  /**
   * The configuration. With `etag`, the controller holds the request up to `waitS` seconds
   * while it is unchanged (long poll) and then answers `{changed: false}`.
   */
  async getConfig(c: Credential, o: { etag?: string; waitS?: number } = {}): Promise<ConfigAnswer> {
    const wait = Math.min(Math.max(0, Math.floor(o.waitS ?? 0)), MAX_WAIT_S);
    const path = `${paths.config(c.vrouterId)}${wait > 0 ? `?wait=${wait}` : ''}`;
    const what = `GET ${this.#base.origin}${this.#path(paths.config(c.vrouterId))}`;
    const a = this.#check(
      what,
      await this.#request('GET', path, { credential: c, ...(o.etag !== undefined ? { headers: { 'if-none-match': o.etag } } : {}), extraTimeoutMs: wait * 1000 }),
      [200, 304],
    );
    const etag = a.headers.etag;
    if (typeof etag !== 'string' || etag.length === 0) throw fail('CVLAN_ERR_CONTROLLER_PROTOCOL', `${what}: ${a.status} without an ETag`);
    if (a.status === 304) return { changed: false, etag };
    const v = this.#json(what, a);
    if (!Number.isSafeInteger(v.generation) || (v.generation as number) < 1) throw fail('CVLAN_ERR_CONTROLLER_PROTOCOL', `${what}: generation is not an integer ≥ 1`);
    if (typeof v.document !== 'object' || v.document === null) throw fail('CVLAN_ERR_CONTROLLER_PROTOCOL', `${what}: document is not a JSON object or array`);
    return { changed: true, etag, generation: v.generation as number, document: v.document };
  }

  async reportStatus(c: Credential, report: StatusReport): Promise<void> {
    const what = `POST ${this.#base.origin}${this.#path(paths.status(c.vrouterId))}`;
    this.#check(what, await this.#request('POST', paths.status(c.vrouterId), { credential: c, body: report }), [204]);
  }

  /** A new key pair, registered with the old one; the caller stores the result before using it. */
  async rotate(c: Credential): Promise<Credential> {
    const kp = newKeyPair();
    const what = `POST ${this.#base.origin}${this.#path(paths.credential(c.vrouterId))}`;
    const a = this.#check(
      what,
      await this.#request('POST', paths.credential(c.vrouterId), {
        credential: c,
        body: { public_key: kp.publicKey, proof: signWith(kp.privateKey, rotateProofText(c.vrouterId, kp.publicKey)).toString('base64') },
      }),
      [200],
    );
    const v = this.#json(what, a);
    if (v.public_key !== kp.publicKey || typeof v.expires_at !== 'string') throw fail('CVLAN_ERR_CONTROLLER_PROTOCOL', `${what}: the answer is not the new credential`);
    return { ...c, privateKey: kp.privateKey, publicKey: kp.publicKey, expiresAt: v.expires_at };
  }
}
