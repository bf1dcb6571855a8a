/**
 * REFERENCE controller — for tests and for trying cvlan-vrouter by hand. Not the product's
 * controller: one process, state in one JSON file, no users, no audit. It follows
 * `api/controller.openapi.json` (request bodies are validated against the document's own
 * schemas) and adds a small admin API under `/reference/admin/` (bearer token in
 * `<state dir>/admin.token`) to mint tokens and set a vrouter's document; `./cli.ts` drives it.
 */
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { randomBytes, timingSafeEqual, verify, createHash } from 'node:crypto';
import { existsSync, readFileSync, renameSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { readFileSync as readJson } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { makePki } from './pki.js';
import {
  API_PREFIX,
  API_VERSION,
  API_VERSION_HEADER,
  MAX_WAIT_S,
  SIGNATURE_WINDOW_S,
  etagOf,
  parseAuthorization,
  registerProofText,
  rotateProofText,
  signedText,
  type ApiErrorCode,
  type StatusReport,
} from '../protocol.js';
import { publicKeyFromRaw } from '../credential.js';

/** The OpenAPI document, located from this file (src/ or dist/src/). */
export function openapiPath(): string {
  const here = fileURLToPath(new URL('.', import.meta.url));
  for (const up of ['../../../api', '../../../../api']) {
    const p = join(here, up, 'controller.openapi.json');
    if (existsSync(p)) return p;
  }
  throw new Error('api/controller.openapi.json not found');
}

export function loadOpenapi(): { components: { schemas: Record<string, unknown> } } & Record<string, unknown> {
  return JSON.parse(readJson(openapiPath(), 'utf8')) as { components: { schemas: Record<string, unknown> } };
}

interface VrouterRecord {
  public_key: string | null;
  /** Where the controller would seal secrets to (the reference stores it and shows it). */
  secrets_public_key?: string;
  expires_at: string | null;
  revoked: boolean;
  generation: number;
  document: unknown;
  status: StatusReport | null;
}

interface State {
  /** sha256(token) → the vrouter it registers, and the key it was used with. */
  tokens: Record<string, { vrouter_id: string; used_with: string | null }>;
  vrouters: Record<string, VrouterRecord>;
}

/** One HTTP exchange, as the server saw it (for tests that check both sides against the document). */
export interface Exchange {
  method: string;
  /** The route template, e.g. `/cvlan/v1/vrouters/:vrouter_id/config`. */
  route: string;
  status: number;
  requestHeaders: Record<string, unknown>;
  requestBody: unknown;
  responseHeaders: Record<string, unknown>;
  responseBody: string;
}

export interface ReferenceControllerOptions {
  stateDir: string;
  host?: string;
  /** 0: any free port. */
  port?: number;
  /** Names in the generated server certificate. Default 127.0.0.1 and localhost. */
  names?: string[];
  /** Seconds a credential is valid after registration or rotation. Default 30 days. */
  credentialLifetimeS?: number;
  /** The API version answered (another value plays a controller of another version). */
  apiVersion?: string;
  observe?: (e: Exchange) => void;
}

export interface ReferenceController {
  url: string;
  caFile: string;
  ca: string;
  adminToken: string;
  mintToken(vrouterId: string): string;
  setDocument(vrouterId: string, document: unknown): number;
  record(vrouterId: string): VrouterRecord | undefined;
  revoke(vrouterId: string): void;
  expire(vrouterId: string): void;
  /** Resolves with the next status report of `vrouterId` for which `pred` holds. */
  waitStatus(vrouterId: string, pred: (s: StatusReport) => boolean, timeoutMs?: number): Promise<StatusReport>;
  close(): Promise<void>;
}

class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: ApiErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export async function startReferenceController(o: ReferenceControllerOptions): Promise<ReferenceController> {
  mkdirSync(o.stateDir, { recursive: true, mode: 0o700 });
  const pki = makePki(join(o.stateDir, 'pki'), o.names);
  const stateFile = join(o.stateDir, 'state.json');
  const state: State = existsSync(stateFile) ? (JSON.parse(readFileSync(stateFile, 'utf8')) as State) : { tokens: {}, vrouters: {} };
  const tokenFile = join(o.stateDir, 'admin.token');
  if (!existsSync(tokenFile)) writeFileSync(tokenFile, `${randomBytes(24).toString('base64url')}\n`, { mode: 0o600 });
  const adminToken = readFileSync(tokenFile, 'utf8').trim();
  const lifetime = o.credentialLifetimeS ?? 30 * 86400;
  const version = o.apiVersion ?? API_VERSION;
  const save = (): void => {
    writeFileSync(`${stateFile}.tmp`, JSON.stringify(state, null, 2), { mode: 0o600 });
    renameSync(`${stateFile}.tmp`, stateFile);
  };
  const waiters = new Map<string, Set<() => void>>();
  const statusWaiters = new Set<{ id: string; pred: (s: StatusReport) => boolean; resolve: (s: StatusReport) => void }>();
  const wake = (id: string): void => {
    for (const w of waiters.get(id) ?? []) w();
    waiters.delete(id);
  };
  const vrouter = (id: string): VrouterRecord => {
    state.vrouters[id] ??= { public_key: null, expires_at: null, revoked: false, generation: 0, document: null, status: null };
    return state.vrouters[id];
  };

  // The document's schemas carry OpenAPI-only keywords (`components` around them): not strict.
  const app: FastifyInstance = Fastify({ https: { key: pki.key, cert: pki.cert }, bodyLimit: 1024 * 1024, logger: false, ajv: { customOptions: { strict: false } } });
  const openapi = loadOpenapi();
  app.addSchema({ $id: 'openapi', components: openapi.components });
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (req, body, done) => {
    (req as FastifyRequest & { rawBody?: Buffer }).rawBody = body as Buffer;
    try {
      done(null, JSON.parse((body as Buffer).toString('utf8')));
    } catch (e) {
      done(new ApiError(400, 'bad_request', `body is not JSON: ${(e as Error).message}`), undefined);
    }
  });
  app.addHook('onRequest', async (req) => {
    if (!req.url.startsWith(`${API_PREFIX}/`)) return;
    const v = req.headers[API_VERSION_HEADER];
    if (v !== version) throw new ApiError(400, 'unsupported_api_version', `this controller speaks API version ${version}; the request asked for ${String(v)}`);
  });
  app.addHook('onSend', async (req, reply, payload) => {
    reply.header(API_VERSION_HEADER, version);
    if (o.observe && req.url.startsWith(`${API_PREFIX}/`)) {
      o.observe({
        method: req.method,
        route: req.routeOptions.url ?? req.url,
        status: reply.statusCode,
        requestHeaders: { ...req.headers },
        requestBody: req.body,
        responseHeaders: { ...reply.getHeaders(), [API_VERSION_HEADER]: version },
        responseBody: typeof payload === 'string' ? payload : Buffer.isBuffer(payload) ? payload.toString('utf8') : '',
      });
    }
    return payload;
  });
  app.setErrorHandler((err: Error & { validation?: unknown; statusCode?: number }, _req, reply) => {
    if (err instanceof ApiError) return reply.code(err.status).send({ code: err.code, message: err.message });
    if (err.validation) return reply.code(400).send({ code: 'bad_request', message: err.message });
    if (err.statusCode === 413) return reply.code(413).send({ code: 'too_large', message: err.message });
    return reply.code(err.statusCode && err.statusCode < 500 ? err.statusCode : 500).send({ code: 'bad_request', message: err.message });
  });
  app.setNotFoundHandler((req, reply) => reply.code(404).send({ code: 'not_found', message: `no route ${req.method} ${req.url.split('?')[0]}` }));

  /** Verifies the request signature; returns the vrouter's record. */
  const authenticate = (req: FastifyRequest): VrouterRecord => {
    const id = (req.params as { vrouter_id: string }).vrouter_id;
    const auth = parseAuthorization(req.headers.authorization);
    if (!auth) throw new ApiError(401, 'bad_signature', 'missing or malformed Authorization header');
    const rec = state.vrouters[auth.id];
    if (auth.id !== id || !rec?.public_key) throw new ApiError(401, 'unknown_vrouter', `vrouter ${auth.id} is not registered here`);
    if (rec.revoked) throw new ApiError(401, 'credential_revoked', 'the credential was revoked');
    if (Math.abs(Date.now() / 1000 - auth.ts) > SIGNATURE_WINDOW_S) throw new ApiError(401, 'bad_signature', `the timestamp is more than ${SIGNATURE_WINDOW_S} s off`);
    const body = (req as FastifyRequest & { rawBody?: Buffer }).rawBody ?? Buffer.alloc(0);
    if (!verify(null, signedText(req.method, req.url, auth.ts, body), publicKeyFromRaw(rec.public_key), auth.sig)) {
      throw new ApiError(401, 'bad_signature', 'the signature does not verify');
    }
    if (rec.expires_at !== null && Date.parse(rec.expires_at) <= Date.now()) throw new ApiError(401, 'credential_expired', `the credential expired at ${rec.expires_at}`);
    return rec;
  };
  const ref = (name: string): { $ref: string } => ({ $ref: `openapi#/components/schemas/${name}` });
  const expiry = (): string => new Date(Date.now() + lifetime * 1000).toISOString();

  app.post(`${API_PREFIX}/register`, { schema: { body: ref('RegisterRequest') } }, async (req, reply) => {
    const b = req.body as { token: string; public_key: string; proof: string; secrets_public_key?: string };
    const t = state.tokens[createHash('sha256').update(b.token).digest('hex')];
    if (!t) throw new ApiError(401, 'bad_token', 'unknown token');
    if (t.used_with !== null && t.used_with !== b.public_key) throw new ApiError(401, 'bad_token', 'the token was already used');
    if (!verify(null, registerProofText(b.token, b.public_key), publicKeyFromRaw(b.public_key), Buffer.from(b.proof, 'base64'))) {
      throw new ApiError(400, 'bad_request', 'proof does not verify with public_key');
    }
    const rec = vrouter(t.vrouter_id);
    if (t.used_with === null) {
      t.used_with = b.public_key;
      rec.public_key = b.public_key;
      rec.expires_at = expiry();
      rec.revoked = false;
      if (b.secrets_public_key !== undefined) rec.secrets_public_key = b.secrets_public_key;
      save();
    }
    return reply.code(201).send({ vrouter_id: t.vrouter_id, credential: { public_key: rec.public_key, expires_at: rec.expires_at } });
  });

  app.get(`${API_PREFIX}/vrouters/:vrouter_id/config`, async (req, reply) => {
    const rec = authenticate(req);
    const id = (req.params as { vrouter_id: string }).vrouter_id;
    const q = req.query as { wait?: string };
    const wait = q.wait === undefined ? 0 : Number(q.wait);
    if (!Number.isInteger(wait) || wait < 0 || wait > MAX_WAIT_S) throw new ApiError(400, 'bad_request', `wait must be an integer 0..${MAX_WAIT_S}`);
    if (rec.generation === 0) {
      // Nothing assigned yet: hold the poll like an unchanged document.
      if (wait > 0) await holdUntilChange(id, wait, req);
      if (vrouter(id).generation === 0) return reply.code(304).header('etag', etagOf(0)).send();
    }
    if (req.headers['if-none-match'] === etagOf(rec.generation) && wait > 0) await holdUntilChange(id, wait, req);
    const now = vrouter(id);
    reply.header('etag', etagOf(now.generation));
    if (req.headers['if-none-match'] === etagOf(now.generation)) return reply.code(304).send();
    return reply.code(200).send({ generation: now.generation, document: now.document });
  });

  const holdUntilChange = (id: string, waitS: number, req: FastifyRequest): Promise<void> =>
    new Promise<void>((resolve) => {
      const set = waiters.get(id) ?? new Set();
      waiters.set(id, set);
      const done = (): void => {
        clearTimeout(timer);
        set.delete(done);
        resolve();
      };
      const timer = setTimeout(done, waitS * 1000);
      set.add(done);
      req.raw.once('close', done);
    });

  app.post(`${API_PREFIX}/vrouters/:vrouter_id/status`, { schema: { body: ref('StatusReport') } }, async (req, reply) => {
    const rec = authenticate(req);
    const id = (req.params as { vrouter_id: string }).vrouter_id;
    rec.status = req.body as StatusReport;
    save();
    for (const w of [...statusWaiters]) {
      if (w.id === id && w.pred(rec.status)) {
        statusWaiters.delete(w);
        w.resolve(rec.status);
      }
    }
    return reply.code(204).send();
  });

  app.post(`${API_PREFIX}/vrouters/:vrouter_id/credential`, { schema: { body: ref('RotateRequest') } }, async (req, reply) => {
    const rec = authenticate(req);
    const id = (req.params as { vrouter_id: string }).vrouter_id;
    const b = req.body as { public_key: string; proof: string };
    if (!verify(null, rotateProofText(id, b.public_key), publicKeyFromRaw(b.public_key), Buffer.from(b.proof, 'base64'))) {
      throw new ApiError(400, 'bad_request', 'proof does not verify with public_key');
    }
    rec.public_key = b.public_key;
    rec.expires_at = expiry();
    save();
    return reply.code(200).send({ public_key: rec.public_key, expires_at: rec.expires_at });
  });

  // --- the reference's own admin API (not part of the controller API) ---
  const admin = async (req: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const got = Buffer.from(req.headers.authorization ?? '');
    const want = Buffer.from(`Bearer ${adminToken}`);
    if (got.length !== want.length || !timingSafeEqual(got, want)) await reply.code(401).send({ code: 'bad_token', message: 'admin bearer token required' });
  };
  const api: ReferenceController = {
    url: '',
    caFile: pki.caFile,
    ca: pki.ca,
    adminToken,
    mintToken(vrouterId) {
      const token = `cvt_${randomBytes(24).toString('base64url')}`;
      state.tokens[createHash('sha256').update(token).digest('hex')] = { vrouter_id: vrouterId, used_with: null };
      vrouter(vrouterId);
      save();
      return token;
    },
    setDocument(vrouterId, document) {
      const rec = vrouter(vrouterId);
      rec.generation += 1;
      rec.document = document;
      save();
      wake(vrouterId);
      return rec.generation;
    },
    record: (id) => state.vrouters[id],
    revoke(id) {
      vrouter(id).revoked = true;
      save();
    },
    expire(id) {
      vrouter(id).expires_at = new Date(Date.now() - 1000).toISOString();
      save();
    },
    waitStatus(id, pred, timeoutMs = 60_000) {
      const last = state.vrouters[id]?.status;
      return new Promise((resolve, reject) => {
        const w = {
          id,
          pred,
          resolve: (s: StatusReport) => {
            clearTimeout(timer);
            resolve(s);
          },
        };
        const timer = setTimeout(() => {
          statusWaiters.delete(w);
          reject(new Error(`no matching status report from ${id} within ${timeoutMs} ms; last: ${JSON.stringify(state.vrouters[id]?.status ?? null)}`));
        }, timeoutMs);
        if (last && pred(last)) w.resolve(last);
        else statusWaiters.add(w);
      });
    },
    async close() {
      for (const id of [...waiters.keys()]) wake(id);
      await app.close();
    },
  };
  app.post('/reference/admin/tokens', { preHandler: admin }, async (req) => {
    const b = req.body as { vrouter_id?: unknown };
    if (typeof b?.vrouter_id !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/.test(b.vrouter_id)) throw new ApiError(400, 'bad_request', 'vrouter_id: expected an id');
    return { token: api.mintToken(b.vrouter_id) };
  });
  app.put('/reference/admin/vrouters/:id/document', { preHandler: admin }, async (req) => ({ generation: api.setDocument((req.params as { id: string }).id, req.body) }));
  app.get('/reference/admin/vrouters/:id', { preHandler: admin }, async (req, reply) => {
    const rec = api.record((req.params as { id: string }).id);
    if (!rec) return reply.code(404).send({ code: 'not_found', message: 'no such vrouter' });
    return { ...rec, document: undefined };
  });
  app.post('/reference/admin/vrouters/:id/revoke', { preHandler: admin }, async (req) => {
    api.revoke((req.params as { id: string }).id);
    return {};
  });

  const address = await app.listen({ host: o.host ?? '127.0.0.1', port: o.port ?? 0 });
  api.url = address;
  writeFileSync(join(o.stateDir, 'url'), `${address}\n`);
  return api;
}
