/**
 * One piscina task of the flood generator: builds and sends `kind` datagrams to `host:port` at
 * `rate` per second for `durationMs` from its own UDP socket (its own source port), and counts
 * what comes back (cookie replies, for WireGuard).
 */
import { createSocket } from 'node:dgram';
import { ikeSaInit, mac1Key, wgInitiation, WG_COOKIE_REPLY_LEN, WG_INITIATION_LEN, type FloodKind } from './flood-packets.js';

export interface FloodTask {
  kind: FloodKind;
  host: string;
  port: number;
  /** Datagrams per second for this task. */
  rate: number;
  durationMs: number;
  /** The target's WireGuard public key (base64), for `wg-mac1`. */
  publicKey?: string;
  /** Source address to send from (default: the route's). */
  source?: string;
}

export interface FloodResult {
  sent: number;
  /** Datagrams received back; `cookieReplies` of them WireGuard cookie replies. */
  received: number;
  cookieReplies: number;
}

/** Distinct datagrams per task. */
const POOL = 4096;

/** Send in slices of 10 ms: fine enough for a steady rate, coarse enough for few timers. */
const SLICE_MS = 10;

export default async function flood(task: FloodTask): Promise<FloodResult> {
  const sock = createSocket(task.host.includes(':') ? 'udp6' : 'udp4');
  const result: FloodResult = { sent: 0, received: 0, cookieReplies: 0 };
  sock.on('message', (m) => {
    result.received++;
    if (m.length === WG_COOKIE_REPLY_LEN && m[0] === 3) result.cookieReplies++;
  });
  await new Promise<void>((resolve) => sock.bind({ port: 0, ...(task.source ? { address: task.source } : {}) }, resolve));
  const key = task.kind === 'wg-mac1' ? mac1Key(Buffer.from(task.publicKey ?? '', 'base64')) : undefined;
  if (task.kind === 'wg-mac1' && key && Buffer.from(task.publicKey ?? '', 'base64').length !== 32) {
    throw new RangeError('publicKey: 32 bytes in base64 needed for wg-mac1');
  }
  // A pool of distinct datagrams made up front and sent in turn: the target does the same work
  // for each (MAC1 check, cookie reply, header check; none of it remembers earlier messages
  // before a cookie round trip), while the generator spends its CPU on sending, not on
  // BLAKE2s in JavaScript, and takes less of the machine it shares with the tunnel.
  const pool = Array.from({ length: POOL }, () => (task.kind === 'ike-sa-init' ? ikeSaInit(Buffer.alloc(300)) : wgInitiation(Buffer.alloc(WG_INITIATION_LEN), key)));
  const build = (): Buffer => pool[result.sent % POOL]!;
  const start = Date.now();
  await new Promise<void>((resolve) => {
    const tick = (): void => {
      const elapsed = Date.now() - start;
      if (elapsed >= task.durationMs) return resolve();
      const due = Math.floor((task.rate * elapsed) / 1000);
      while (result.sent < due) {
        sock.send(build(), task.port, task.host);
        result.sent++;
      }
      setTimeout(tick, SLICE_MS);
    };
    tick();
  });
  // Replies still in flight.
  await new Promise((r) => setTimeout(r, 200));
  sock.close();
  return result;
}
