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

/**
 * GET `path` from the admin API. Network failures become CVLAN_ERR_DAEMON_UNREACHABLE with the
 * target and the cause in one line; HTTP errors are returned, not thrown.
 */
export function adminGet(target: AdminTarget, path: string, timeoutMs = 5000): Promise<AdminResponse> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { accept: 'application/json' };
    const opts: http.RequestOptions =
      target.kind === 'unix'
        ? { socketPath: target.socketPath, path, headers }
        : {
            host: target.url.hostname.replace(/^\[|\]$/g, ''),
            port: target.url.port || 80,
            path,
            headers: { ...headers, authorization: `Bearer ${target.token}` },
          };
    const unreachable = (code: string | undefined, message: string, cause?: unknown) =>
      new CvlanError(
        'CVLAN_ERR_DAEMON_UNREACHABLE',
        `cannot reach the admin API at ${describeTarget(target)}: ${(code && causes[code]) ?? message}`,
        { cause, details: { target: describeTarget(target), errno: code ?? null } },
      );
    const req = http.get({ ...opts, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          contentType: String(res.headers['content-type'] ?? ''),
          body: Buffer.concat(chunks).toString('utf8'),
        }),
      );
      res.on('error', (e: NodeJS.ErrnoException) => reject(unreachable(e.code, e.message, e)));
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })));
    req.on('error', (e: NodeJS.ErrnoException) => reject(unreachable(e.code, e.message, e)));
  });
}
