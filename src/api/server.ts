/**
 * The admin API: views of the router over HTTP/JSON, Prometheus text, the event log as NDJSON
 * (`GET /v1/events[?follow=true]`), and two operator actions on IPsec tunnels
 * (`POST /v1/tunnels/<id>/initiate|terminate`), and the packet trace (`/v1/trace`, `./trace.ts`).
 *
 * Two listeners, same routes. The unix socket (default) is guarded by file permissions: parent
 * directory 0700 when we create it, socket 0600 right after listen. TCP is opt-in and every
 * request on it needs `Authorization: Bearer <token>`; a failed check answers 401 with the same
 * body whatever was wrong, before routing, so an unauthenticated client learns nothing (not even
 * which routes exist).
 *
 * The API takes no request bodies; a request that carries one is refused before it is read.
 */

import { createHash, timingSafeEqual } from 'node:crypto';
import { lstat, mkdir, chmod, unlink } from 'node:fs/promises';
import { STATUS_CODES } from 'node:http';
import net, { type AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { dirname, isAbsolute } from 'node:path';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply } from 'fastify';
import pino, { type Logger } from 'pino';
import { CvlanError, type ErrorCode } from '../errors.js';
import { VrouterMetrics } from '../metrics/registry.js';
import * as S from './schemas.js';
import type { RouterControl, RouterStateSource } from './state.js';
import type { EventStream } from './events.js';
import { TraceApi, type TraceControl, type TraceFilterQuery, type TraceView } from './trace.js';
import { traceClear, traceRead, traceStart, traceStatus, traceStop } from '../dataplane/trace.js';

export const DEFAULT_ADMIN_SOCKET = '/run/cvlan/admin.sock';

/** Shortest bearer token accepted: 128 bits of base64/hex-ish text. */
export const MIN_TOKEN_CHARS = 22;

/** Bytes a `/v1/events?follow` client may leave unread before it is disconnected. */
const MAX_FOLLOWER_BACKLOG = 1 << 20;
/** Longest a tunnel action may take: charon's own timeout plus margin. */
const ACTION_TIMEOUT_MS = 30_000;
/** HTTP status of an action's failure, by error code; other errors are internal (500). */
const ACTION_STATUS: Partial<Record<ErrorCode, number>> = {
  CVLAN_ERR_API_NOT_FOUND: 404,
  CVLAN_ERR_STATE: 409,
  CVLAN_ERR_VICI_COMMAND: 502,
  CVLAN_ERR_VICI_CLOSED: 503,
  CVLAN_ERR_VICI_TIMEOUT: 504,
};

export interface AdminServerOptions {
  /** Where the views come from. Required. */
  source: RouterStateSource;
  /** Unix socket path (absolute). Default `/run/cvlan/admin.sock`; `null` serves no unix socket. */
  socketPath?: string | null;
  /**
   * Optional TCP listener. `port` 0 picks a free port. `token` (at least 22 characters, no
   * whitespace) is required of every request as `Authorization: Bearer <token>`. Default: none.
   */
  tcp?: { host: string; port: number; token: string };
  /** Logger for server errors. Default: silent. Requests are not logged (they carry tokens). */
  logger?: Logger;
  /** Largest request body in bytes fastify would read. Default 1024; the routes take none anyway. */
  bodyLimit?: number;
  /** Time a request may take, in milliseconds. Default 10000. */
  requestTimeoutMs?: number;
  /** Metrics registry to serve on /metrics. Default: a new one over `source`. */
  metrics?: VrouterMetrics;
  /** The event log for `/v1/events`. Default: none (the route answers 404). */
  events?: EventStream;
  /** Operator actions (`initiate`, `terminate`). Default: none (the routes answer 404). */
  control?: RouterControl;
  /** The packet trace. Default: the data plane's (one per process). */
  trace?: TraceControl;
}

type TraceStatusView = TraceView['status'];

/** The data plane's packet trace. */
const dataplaneTrace: TraceControl = { start: traceStart, stop: traceStop, clear: traceClear, status: traceStatus, read: traceRead };

export interface AdminServer {
  /** The unix socket served, or null. */
  readonly socketPath: string | null;
  /** The bound TCP address, or null. */
  readonly tcpAddress: AddressInfo | null;
  readonly metrics: VrouterMetrics;
  close(): Promise<void>;
}

interface Resolved {
  source: RouterStateSource;
  socketPath: string | null;
  tcp: { host: string; port: number; tokenDigest: Buffer } | null;
  logger: Logger;
  bodyLimit: number;
  requestTimeoutMs: number;
  metrics: VrouterMetrics;
  events: EventStream | undefined;
  control: RouterControl | undefined;
  trace: TraceControl;
}

function optionsError(message: string): CvlanError {
  return new CvlanError('CVLAN_ERR_API_OPTIONS', message);
}

function digest(token: string): Buffer {
  // Comparing fixed-size digests keeps the comparison constant-time even when lengths differ.
  return createHash('sha256').update(token, 'utf8').digest();
}

function resolveOptions(o: AdminServerOptions): Resolved {
  if (!o || typeof o.source !== 'object' || o.source === null) throw optionsError('options.source (a RouterStateSource) is required');
  const socketPath = o.socketPath === undefined ? DEFAULT_ADMIN_SOCKET : o.socketPath;
  if (socketPath !== null && (typeof socketPath !== 'string' || !isAbsolute(socketPath))) {
    throw optionsError('options.socketPath must be an absolute path, or null for no unix socket');
  }
  let tcp: Resolved['tcp'] = null;
  if (o.tcp !== undefined) {
    const { host, port, token } = o.tcp;
    if (typeof host !== 'string' || host.length === 0) throw optionsError('options.tcp.host must be a host name or address');
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw optionsError('options.tcp.port must be an integer 0..65535');
    if (typeof token !== 'string' || token.length < MIN_TOKEN_CHARS || /\s/.test(token)) {
      throw optionsError(`options.tcp.token must be at least ${MIN_TOKEN_CHARS} characters without whitespace; generate one with \`openssl rand -base64 32\``);
    }
    tcp = { host, port, tokenDigest: digest(token) };
  }
  if (socketPath === null && tcp === null) throw optionsError('nothing to listen on: give options.socketPath or options.tcp');
  const bodyLimit = o.bodyLimit ?? 1024;
  if (!Number.isInteger(bodyLimit) || bodyLimit < 0 || bodyLimit > 1 << 20) throw optionsError('options.bodyLimit must be 0..1048576 bytes');
  const requestTimeoutMs = o.requestTimeoutMs ?? 10_000;
  if (!Number.isInteger(requestTimeoutMs) || requestTimeoutMs < 100) throw optionsError('options.requestTimeoutMs must be an integer >= 100');
  return {
    source: o.source,
    socketPath,
    tcp,
    logger: o.logger ?? pino({ level: 'silent' }),
    bodyLimit,
    requestTimeoutMs,
    metrics: o.metrics ?? new VrouterMetrics(o.source),
    events: o.events,
    control: o.control,
    trace: o.trace ?? dataplaneTrace,
  };
}

export function errorBody(code: ErrorCode, message: string) {
  return { error: { code, message } };
}

function sendError(reply: FastifyReply, status: number, code: ErrorCode, message: string) {
  return reply.code(status).send(errorBody(code, message));
}

const errorResponses = { '4xx': S.errorSchema, '5xx': S.errorSchema } as const;

function buildApp(r: Resolved, auth: Buffer | null): FastifyInstance {
  const app = Fastify({
    logger: false,
    bodyLimit: r.bodyLimit,
    requestTimeout: r.requestTimeoutMs,
    connectionTimeout: r.requestTimeoutMs,
    return503OnClosing: true,
    forceCloseConnections: true,
    clientErrorHandler(err: NodeJS.ErrnoException, socket: Duplex) {
      // Errors node's HTTP parser raises before a request exists; answered in the API's own shape.
      if (err.code === 'ECONNRESET' || socket.destroyed || !socket.writable) return;
      const timeout = err.code === 'ERR_HTTP_REQUEST_TIMEOUT';
      const status = timeout ? 408 : err.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
      r.logger.debug({ errno: err.code }, 'admin API client error');
      const body = JSON.stringify(errorBody('CVLAN_ERR_API_BAD_REQUEST', timeout ? 'request timeout' : 'malformed request'));
      socket.end(
        `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nconnection: close\r\ncontent-type: application/json; charset=utf-8\r\n` +
          `content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      );
    },
  });

  if (auth !== null) {
    const expected = auth;
    app.addHook('onRequest', async (req, reply) => {
      const h = req.headers.authorization;
      const m = typeof h === 'string' ? /^Bearer ([^\s]+)$/.exec(h) : null;
      const ok = m !== null && timingSafeEqual(digest(m[1]!), expected);
      if (!ok) {
        reply.header('www-authenticate', 'Bearer');
        return sendError(reply, 401, 'CVLAN_ERR_API_UNAUTHORIZED', 'unauthorized');
      }
    });
  }

  app.addHook('onRequest', async (req, reply) => {
    const len = req.headers['content-length'];
    const chunked = req.headers['transfer-encoding'] !== undefined;
    if (!chunked && (len === undefined || len === '0')) return;
    // Not reading the body: close the connection after answering so its bytes are discarded.
    reply.header('connection', 'close');
    const n = Number(len);
    if (!chunked && Number.isInteger(n) && n <= r.bodyLimit) {
      return sendError(reply, 400, 'CVLAN_ERR_API_BAD_REQUEST', 'this API takes no request body');
    }
    return sendError(reply, 413, 'CVLAN_ERR_API_BAD_REQUEST', 'request body too large');
  });

  app.setNotFoundHandler((_req, reply) => sendError(reply, 404, 'CVLAN_ERR_API_NOT_FOUND', 'no such route'));

  app.setErrorHandler((err: FastifyError, _req, reply) => {
    if (err.validation) {
      return sendError(reply, 400, 'CVLAN_ERR_API_BAD_REQUEST', `invalid request: ${err.message}`);
    }
    const status = err.statusCode ?? 500;
    if (status >= 400 && status < 500) {
      return sendError(reply, status, 'CVLAN_ERR_API_BAD_REQUEST', 'bad request');
    }
    r.logger.error({ err }, 'admin API request failed');
    return sendError(reply, 500, 'CVLAN_ERR_INTERNAL', 'internal error');
  });

  const src = r.source;
  const route = <T>(url: string, response: object, handler: () => T) =>
    app.get(url, { schema: { querystring: S.noQuery, response: { 200: response, ...errorResponses } } }, async () =>
      handler(),
    );

  const healthResponses = { 200: S.healthSchema, 503: S.healthSchema, ...errorResponses };
  app.get('/healthz', { schema: { querystring: S.noQuery, response: healthResponses } }, async (_req, reply) => {
    const h = src.health();
    return reply.code(h.live ? 200 : 503).send(h);
  });
  app.get('/readyz', { schema: { querystring: S.noQuery, response: healthResponses } }, async (_req, reply) => {
    const h = src.health();
    // A standby is healthy but passive: a load balancer or probe must not send it traffic.
    const ha = src.ha?.() ?? null;
    if (ha && ha.role !== 'active') {
      const why = ha.fenced ? `fenced: ${ha.fence_reason ?? 'unknown'}` : `VRRP ${ha.vrrp_state}`;
      return reply.code(503).send({ ...h, ready: false, reasons: [...h.reasons, `HA standby (passive; ${why}): the active node serves`] });
    }
    return reply.code(h.live && h.ready ? 200 : 503).send(h);
  });

  route('/v1/tenants', S.tenantsResponse, () => ({ tenants: src.tenants() }));
  route('/v1/tunnels', S.tunnelsResponse, () => ({ tunnels: src.tunnels() }));
  route('/v1/peers', S.peersResponse, () => ({ peers: src.wireguardPeers() }));
  route('/v1/drops', S.dropsResponse, () => ({ drops: src.drops() }));
  route('/v1/workers', S.workersResponse, () => ({ workers: src.workers() }));
  route('/v1/clients', S.clientsResponse, () => src.clients?.() ?? { clients: [], pools: [], exhausted: {} });
  route('/v1/config', S.configSchema, () => {
    const c = src.configVersion();
    return { version: c.version, applied_at: c.appliedAt };
  });
  route('/v1/stats', S.statsSchema, () => summary(src));
  route('/v1/ha', S.haResponse, () => ({ ha: src.ha?.() ?? null }));

  app.get<{ Querystring: { tenant: string } }>(
    '/v1/routes',
    { schema: { querystring: S.routesQuery, response: { 200: S.routesResponse, ...errorResponses } } },
    async (req, reply) => {
      const routes = src.routes(req.query.tenant);
      if (routes === undefined) return sendError(reply, 404, 'CVLAN_ERR_API_NOT_FOUND', 'no such tenant');
      return { tenant: req.query.tenant, routes, bgp: src.bgp?.(req.query.tenant) ?? null };
    },
  );

  app.get<{ Querystring: { follow?: boolean } }>('/v1/events', { schema: { querystring: S.eventsQuery } }, (req, reply) => {
    const events = r.events;
    if (!events) return sendError(reply, 404, 'CVLAN_ERR_API_NOT_FOUND', 'this daemon keeps no event stream');
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'content-type': 'application/x-ndjson; charset=utf-8', 'cache-control': 'no-store' });
    for (const line of events.recent()) res.write(`${line}\n`);
    if (!req.query.follow) {
      res.end();
      return;
    }
    // A follower is idle for as long as nothing happens; only its own close ends it.
    req.raw.socket.setTimeout(0);
    const stop = events.follow({
      line(text) {
        // Bounded: a client that does not read is cut off rather than buffered for.
        if (res.writableLength > MAX_FOLLOWER_BACKLOG) {
          stop();
          res.destroy();
          return;
        }
        res.write(`${text}\n`);
      },
      end: () => res.end(),
    });
    res.on('close', stop);
  });

  for (const action of ['initiate', 'terminate'] as const) {
    app.post<{ Params: { id: string } }>(
      `/v1/tunnels/:id/${action}`,
      { schema: { params: S.tunnelParams, querystring: S.noQuery, response: { 200: S.tunnelActionResponse, ...errorResponses } } },
      async (req, reply) => {
        const control = r.control;
        if (!control) return sendError(reply, 404, 'CVLAN_ERR_API_NOT_FOUND', 'this daemon takes no tunnel actions');
        // charon may take longer than an idle connection is otherwise allowed to be.
        req.raw.socket.setTimeout(ACTION_TIMEOUT_MS);
        try {
          return await (action === 'initiate' ? control.initiateTunnel(req.params.id) : control.terminateTunnel(req.params.id));
        } catch (e) {
          if (!(e instanceof CvlanError)) throw e;
          const status = ACTION_STATUS[e.code];
          if (status === undefined) throw e;
          return sendError(reply, status, e.code, e.message);
        }
      },
    );
  }

  const trace = new TraceApi(src, r.trace);
  // A name the API cannot resolve, or a value the data plane refuses: 400 naming the field.
  const traceAction = (f: () => TraceStatusView) => async (_req: unknown, reply: FastifyReply) => {
    try {
      return f();
    } catch (e) {
      if (e instanceof CvlanError && e.code === 'CVLAN_ERR_API_BAD_REQUEST') return sendError(reply, 400, e.code, e.message);
      throw e;
    }
  };
  app.post<{ Querystring: TraceFilterQuery }>(
    '/v1/trace/start',
    { schema: { querystring: S.traceStartQuery, response: { 200: S.traceStatusSchema, ...errorResponses } } },
    async (req, reply) => traceAction(() => trace.start(req.query))(req, reply),
  );
  for (const action of ['stop', 'clear'] as const) {
    app.post(
      `/v1/trace/${action}`,
      { schema: { querystring: S.noQuery, response: { 200: S.traceStatusSchema, ...errorResponses } } },
      traceAction(() => (action === 'stop' ? trace.stop() : trace.clear())),
    );
  }
  route('/v1/trace', S.traceResponse, () => trace.view());

  app.get(
    '/metrics',
    { schema: { querystring: S.noQuery, response: { 200: { type: 'string' }, ...errorResponses } } },
    async (_req, reply) => {
      const text = await r.metrics.scrape();
      return reply.type(r.metrics.contentType).send(text);
    },
  );

  return app;
}

/** What `vrouterctl stats` prints: one read of each view, summed. */
export function summary(src: RouterStateSource) {
  const h = src.health();
  const c = src.counters();
  const tunnels = src.tunnels();
  const sum = <T>(xs: T[], f: (x: T) => number) => xs.reduce((a, x) => a + f(x), 0);
  return {
    live: h.live,
    ready: h.ready,
    config_version: src.configVersion().version,
    uptime_s: Math.floor(process.uptime()),
    tenants: src.tenants().length,
    ipsec_tunnels: tunnels.length,
    ipsec_tunnels_up: tunnels.filter((t) => t.state === 'up' || t.state === 'rekeying').length,
    ike_sa_active: c.ike_sa_active,
    child_sa_active: c.child_sa_active,
    ike_rekeys_total: c.ike_rekeys_total,
    child_rekeys_total: c.child_rekeys_total,
    wireguard_peers: src.wireguardPeers().length,
    bytes_in: sum(c.tunnels, (t) => t.bytes_in),
    bytes_out: sum(c.tunnels, (t) => t.bytes_out),
    packets_in: sum(c.tunnels, (t) => t.packets_in),
    packets_out: sum(c.tunnels, (t) => t.packets_out),
    drops_total: sum(c.drops, (d) => d.count),
    workers: c.workers.length,
    worker_restarts_total: sum(c.workers, (w) => w.restarts),
  };
}

/** Removes a socket file left by a dead daemon; refuses if something answers or it is not a socket. */
async function clearStaleSocket(path: string): Promise<void> {
  let st;
  try {
    st = await lstat(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  if (!st.isSocket()) {
    throw new CvlanError('CVLAN_ERR_API_OPTIONS', `${path} exists and is not a socket; not removing it`);
  }
  const cause = await new Promise<NodeJS.ErrnoException | null>((resolve) => {
    const c = net.connect(path);
    c.setTimeout(1000, () => {
      c.destroy();
      resolve(null); // a listener that accepts but is too slow is still a listener
    });
    c.once('connect', () => {
      c.destroy();
      resolve(null);
    });
    c.once('error', (e: NodeJS.ErrnoException) => resolve(e));
  });
  if (cause === null) {
    throw new CvlanError('CVLAN_ERR_API_SOCKET_IN_USE', `another process answers on ${path}; is a daemon already running?`);
  }
  if (cause.code !== 'ECONNREFUSED' && cause.code !== 'ENOENT') {
    throw new CvlanError('CVLAN_ERR_API_SOCKET_IN_USE', `cannot tell whether ${path} is in use (${cause.code ?? cause.message})`, { cause });
  }
  await unlink(path).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'ENOENT') throw e;
  });
}

export async function startAdminServer(options: AdminServerOptions): Promise<AdminServer> {
  const r = resolveOptions(options);
  const apps: FastifyInstance[] = [];
  let tcpAddress: AddressInfo | null = null;
  try {
    if (r.socketPath !== null) {
      await mkdir(dirname(r.socketPath), { recursive: true, mode: 0o700 });
      await clearStaleSocket(r.socketPath);
      const app = buildApp(r, null);
      apps.push(app);
      await app.listen({ path: r.socketPath });
      await chmod(r.socketPath, 0o600);
    }
    if (r.tcp !== null) {
      const app = buildApp(r, r.tcp.tokenDigest);
      apps.push(app);
      await app.listen({ host: r.tcp.host, port: r.tcp.port });
      tcpAddress = app.server.address() as AddressInfo;
    }
  } catch (e) {
    await Promise.allSettled(apps.map((a) => a.close()));
    throw e;
  }
  let closed: Promise<void> | undefined;
  return {
    socketPath: r.socketPath,
    tcpAddress,
    metrics: r.metrics,
    close() {
      closed ??= (async () => {
        await Promise.allSettled(apps.map((a) => a.close()));
        if (r.socketPath !== null) await unlink(r.socketPath).catch(() => undefined);
      })();
      return closed;
    },
  };
}
