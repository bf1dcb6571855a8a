/**
 * The UAPI socket of one WireGuard interface, where `wg` looks for it: `<dir>/<name>.sock`.
 * As wireguard-go's ipc package: the directory is created 0755 if missing, the socket is bound
 * under umask 077 (and then set to 0600), a stale socket is replaced but a live one is refused.
 *
 * Per connection, requests are read one after the other: `get=1` followed by an empty line,
 * or `set=1`, its lines and an empty line (or the end of the stream, which wireguard-go also
 * takes as the end of a `set`). Any other operation line closes the connection. A `set` larger
 * than `maxRequestBytes` is answered with EMSGSIZE and the connection is closed.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import { chmodSync, lstatSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { CvlanError } from '../errors.js';
import type { WgDeviceUpdate, WireGuardControl } from './control.js';
import { errnoOf, formatGetResponse, parseSetRequest, statusLine, UapiErrno, UapiError } from './uapi.js';

export interface UapiServerOptions {
  /** Directory of the socket. Default `/var/run/wireguard`, where `wg` looks. */
  dir?: string;
  /** Largest `set` request accepted, in bytes. Default 4 MiB (tens of thousands of peers). */
  maxRequestBytes?: number;
  /** Called after each `set` that was applied (for logs; the update holds keys, do not log it whole). */
  onSet?: (update: WgDeviceUpdate) => void;
  /** Called when a `set` is refused, with the error and the errno `wg` is told (for logs). */
  onRefused?: (err: unknown, errno: number) => void;
}

export interface UapiServer {
  /** The socket's path. */
  readonly path: string;
  /** Stops accepting, closes open connections and removes the socket. */
  close(): Promise<void>;
}

/** Interface names as wg-quick accepts them; also keeps the socket path inside `dir`. */
const IFNAME = /^[a-zA-Z0-9_=+.-]{1,15}$/;

const DEFAULT_MAX_REQUEST = 4 << 20;

function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

function listen(server: Server, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (e: Error): void => reject(e);
    server.once('error', onError);
    // The bind happens synchronously inside listen(): restore the umask right after it, so no
    // other file the process creates meanwhile gets the restrictive mask.
    const old = process.umask(0o077);
    try {
      server.listen(path, () => {
        server.off('error', onError);
        resolve();
      });
    } finally {
      process.umask(old);
    }
  });
}

/**
 * What a log line may say about a refused `set`: the errno and error code, and the message
 * unless it comes from parsing the request (which may quote a line holding a key).
 */
export function describeRefusal(err: unknown, errno: number): { errno: number; code?: string; reason?: string } {
  const code = err instanceof CvlanError ? err.code : undefined;
  const parse = err instanceof UapiError;
  return { errno: -errno, ...(code ? { code } : {}), ...(!parse && err instanceof Error ? { reason: err.message } : {}) };
}

export async function startUapiServer(control: WireGuardControl, options: UapiServerOptions = {}): Promise<UapiServer> {
  const dir = options.dir ?? '/var/run/wireguard';
  const max = options.maxRequestBytes ?? DEFAULT_MAX_REQUEST;
  if (!IFNAME.test(control.name)) {
    throw new CvlanError('CVLAN_ERR_INVALID_ARG', `interface name ${JSON.stringify(control.name)} must match ${IFNAME.source}`);
  }
  if (!Number.isInteger(max) || max < 1024) {
    throw new CvlanError('CVLAN_ERR_INVALID_ARG', 'maxRequestBytes must be an integer of at least 1024');
  }
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const path = join(dir, `${control.name}.sock`);

  const conns = new Set<Socket>();
  const server = createServer((sock) => {
    conns.add(sock);
    sock.once('close', () => conns.delete(sock));
    serve(sock, control, max, options);
  });
  try {
    await listen(server, path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE') {
      throw new CvlanError('CVLAN_ERR_SOCKET', `cannot listen on ${path}: ${(e as Error).message}`, { cause: e });
    }
    if (!lstatSync(path).isSocket()) {
      throw new CvlanError('CVLAN_ERR_WG_UAPI_IN_USE', `${path} exists and is not a socket`);
    }
    if (await answers(path)) {
      throw new CvlanError('CVLAN_ERR_WG_UAPI_IN_USE', `${path} is answered by another process`);
    }
    // A stale socket left by a process that died: replace it, as wireguard-go does.
    rmSync(path, { force: true });
    await listen(server, path).catch((e2: unknown) => {
      throw new CvlanError('CVLAN_ERR_SOCKET', `cannot listen on ${path}: ${(e2 as Error).message}`, { cause: e2 });
    });
  }
  chmodSync(path, 0o600);
  const ino = lstatSync(path).ino;

  let closing: Promise<void> | undefined;
  return {
    path,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const c of conns) c.destroy();
        // Remove the socket only if it is still ours (not one a successor bound meanwhile).
        try {
          if (lstatSync(path).ino === ino) rmSync(path, { force: true });
        } catch {
          // already gone
        }
      })),
  };
}

/** Answers the requests of one connection, in order. */
function serve(sock: Socket, control: WireGuardControl, max: number, hooks: Pick<UapiServerOptions, 'onSet' | 'onRefused'>): void {
  let buf = '';
  let mode: 'op' | 'get' | 'set' = 'op';
  let lines: string[] = [];
  let size = 0;
  let done = false;

  const refuse = (): void => {
    // EMSGSIZE, then close: the rest of the oversized request is not read.
    done = true;
    buf = '';
    sock.end(statusLine(UapiErrno.EMSGSIZE));
  };

  const handleSet = (): void => {
    let errno = 0;
    try {
      const update = parseSetRequest(lines);
      control.apply(update);
      hooks.onSet?.(update);
    } catch (e) {
      errno = errnoOf(e);
      hooks.onRefused?.(e, errno);
    }
    lines = [];
    size = 0;
    mode = 'op';
    sock.write(statusLine(errno));
  };

  const handleGet = (): void => {
    let reply: string;
    try {
      reply = formatGetResponse(control.state());
    } catch (e) {
      reply = statusLine(errnoOf(e));
    }
    mode = 'op';
    sock.write(reply);
  };

  const pump = (): void => {
    for (;;) {
      if (mode === 'get') {
        if (buf.length === 0) return;
        const next = buf[0];
        buf = buf.slice(1);
        // wireguard-go reads exactly one byte after `get=1\n` and wants the empty line.
        if (next === '\n') handleGet();
        else {
          mode = 'op';
          sock.write(statusLine(UapiErrno.EINVAL));
        }
        continue;
      }
      const nl = buf.indexOf('\n');
      if (nl < 0) {
        const pending = mode === 'set' ? size + buf.length : buf.length;
        if (pending > max) {
          if (mode === 'set') refuse();
          else {
            done = true;
            sock.destroy();
          }
        }
        return;
      }
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (mode === 'op') {
        if (line === 'get=1') mode = 'get';
        else if (line === 'set=1') mode = 'set';
        else {
          done = true;
          sock.destroy();
          return;
        }
      } else if (line === '') {
        handleSet();
      } else {
        size += line.length + 1;
        if (size > max) {
          refuse();
          return;
        }
        lines.push(line);
      }
    }
  };

  sock.setEncoding('utf8');
  sock.on('error', () => sock.destroy());
  sock.on('data', (chunk: string) => {
    if (done) return;
    buf += chunk;
    pump();
  });
  sock.on('end', () => {
    // The end of the stream ends a `set` too (Go's scanner hands over the last, unterminated line).
    if (mode === 'set' && !done) {
      if (buf !== '') lines.push(buf);
      buf = '';
      handleSet();
    }
    sock.end();
  });
}
