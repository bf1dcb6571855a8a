/**
 * Minimal admin API client over node:http, for vrouterctl and tests. No dependencies: the unix
 * socket is just `socketPath` on the request.
 */

import http from 'node:http';
import { CvlanError } from '../errors.js';

export type AdminTarget =
  | { kind: 'unix'; socketPath: string }
  | { kind: 'tcp'; url: URL; token: string };

export interface AdminResponse {
  status: number;
  contentType: string;
  body: string;
}

/** Human name of the target for messages; never includes the token. */
export function describeTarget(t: AdminTarget): string {
  return t.kind === 'unix' ? t.socketPath : t.url.origin;
}

const causes: Record<string, string> = {
  ENOENT: 'no such socket (is cvlan-vrouter running?)',
  ECONNREFUSED: 'connection refused (is cvlan-vrouter running?)',
  EACCES: 'permission denied (run as root or a member of the socket owner group)',
  EPERM: 'operation not permitted',
  ENOTSOCK: 'not a socket',
  ETIMEDOUT: 'timed out',
  ECONNRESET: 'connection reset',
  EHOSTUNREACH: 'host unreachable',
};

function requestOptions(target: AdminTarget, method: string, path: string, accept: string): http.RequestOptions {
  const headers: Record<string, string> = { accept };
  return target.kind === 'unix'
    ? { socketPath: target.socketPath, path, method, headers }
    : {
        host: target.url.hostname.replace(/^\[|\]$/g, ''),
        port: target.url.port || 80,
        path,
        method,
        headers: { ...headers, authorization: `Bearer ${target.token}` },
      };
}

function unreachable(target: AdminTarget, code: string | undefined, message: string, cause?: unknown): CvlanError {
  return new CvlanError('CVLAN_ERR_DAEMON_UNREACHABLE', `cannot reach the admin API at ${describeTarget(target)}: ${(code && causes[code]) ?? message}`, {
    cause,
    details: { target: describeTarget(target), errno: code ?? null },
  });
}

/**
 * GET `path` from the admin API. Network failures become CVLAN_ERR_DAEMON_UNREACHABLE with the
 * target and the cause in one line; HTTP errors are returned, not thrown.
 */
export function adminGet(target: AdminTarget, path: string, timeoutMs = 5000): Promise<AdminResponse> {
  return adminRequest(target, 'GET', path, timeoutMs);
}

/** One request without a body (the API takes none), answered in full. */
export function adminRequest(target: AdminTarget, method: 'GET' | 'POST', path: string, timeoutMs = 5000): Promise<AdminResponse> {
  return new Promise((resolve, reject) => {
    const req = http.request({ ...requestOptions(target, method, path, 'application/json'), timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          contentType: String(res.headers['content-type'] ?? ''),
          body: Buffer.concat(chunks).toString('utf8'),
        }),
      );
      res.on('error', (e: NodeJS.ErrnoException) => reject(unreachable(target, e.code, e.message, e)));
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })));
    req.on('error', (e: NodeJS.ErrnoException) => reject(unreachable(target, e.code, e.message, e)));
    req.end();
  });
}

/**
 * GET an NDJSON stream (`/v1/events?follow=true`): `onLine` gets each line as it arrives.
 * Resolves with the HTTP status when the stream ends (a non-2xx answer: its body as `error`).
 * Without `timeoutMs` the stream may stay idle for as long as the daemon sends nothing.
 */
export function adminStream(target: AdminTarget, path: string, onLine: (line: string) => void, signal?: AbortSignal): Promise<{ status: number; error?: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ ...requestOptions(target, 'GET', path, 'application/x-ndjson'), ...(signal ? { signal } : {}) }, (res) => {
      const status = res.statusCode ?? 0;
      let pending = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        if (status < 200 || status > 299) {
          pending += chunk;
          return;
        }
        pending += chunk;
        let nl: number;
        while ((nl = pending.indexOf('\n')) >= 0) {
          const line = pending.slice(0, nl);
          pending = pending.slice(nl + 1);
          if (line.length > 0) onLine(line);
        }
      });
      res.on('end', () => resolve(status >= 200 && status <= 299 ? { status } : { status, error: pending }));
      res.on('error', (e: NodeJS.ErrnoException) => (signal?.aborted ? resolve({ status }) : reject(unreachable(target, e.code, e.message, e))));
    });
    req.on('error', (e: NodeJS.ErrnoException) => (signal?.aborted ? resolve({ status: 0 }) : reject(unreachable(target, e.code, e.message, e))));
    req.end();
  });
}
