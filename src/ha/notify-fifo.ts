/**
 * keepalived's `notify_fifo`: one line per state change of a VRRP instance or group,
 * `INSTANCE "cvlan" MASTER 150` (type, quoted name, state, priority). The daemon creates the FIFO
 * and holds it open read-write, so it never sees end-of-file while keepalived restarts and
 * keepalived never blocks on a missing reader.
 */

import { execFileSync } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { constants, lstatSync, openSync, rmSync } from 'node:fs';
import net from 'node:net';
import { CvlanError } from '../errors.js';

export type VrrpState = 'INIT' | 'BACKUP' | 'MASTER' | 'FAULT' | 'STOP' | 'DELETED';
const STATES: readonly VrrpState[] = ['INIT', 'BACKUP', 'MASTER', 'FAULT', 'STOP', 'DELETED'];

export interface VrrpNotice {
  type: 'INSTANCE' | 'GROUP' | 'MASTER_RX_LOWER_PRI';
  name: string;
  state: VrrpState;
  priority: number | undefined;
}

/** Parses one FIFO line; undefined for a line that is not a state change (logged by the caller). */
export function parseNotifyLine(line: string): VrrpNotice | undefined {
  const m = /^(INSTANCE|GROUP|MASTER_RX_LOWER_PRI) "([^"]*)" ([A-Z_]+)(?: (\d+))?$/.exec(line.trim());
  if (!m) return undefined;
  const state = m[3] as VrrpState;
  if (!STATES.includes(state)) return undefined;
  return { type: m[1] as VrrpNotice['type'], name: m[2]!, state, priority: m[4] === undefined ? undefined : Number(m[4]) };
}

export interface NotifyFifoEvents {
  notice: [VrrpNotice];
  /** A line that is not a state change, for the log. */
  unknown: [string];
}

export class NotifyFifo extends EventEmitter<NotifyFifoEvents> {
  private socket: net.Socket | null = null;
  private partial = '';

  constructor(readonly path: string) {
    super();
  }

  /** Creates the FIFO (replacing whatever is at the path) and starts reading. */
  open(): void {
    if (this.socket) return;
    let isFifo = false;
    try {
      isFifo = lstatSync(this.path).isFIFO();
    } catch {
      isFifo = false;
    }
    if (!isFifo) {
      rmSync(this.path, { force: true });
      try {
        execFileSync('mkfifo', ['-m', '0600', this.path], { stdio: ['ignore', 'ignore', 'pipe'] });
      } catch (e) {
        throw new CvlanError('CVLAN_ERR_HA', `cannot create the notify FIFO ${this.path}: ${(e as Error).message}`, { cause: e });
      }
    }
    // Read-write: the daemon is a writer too, so the FIFO never reports EOF between keepalived runs.
    const fd = openSync(this.path, constants.O_RDWR | constants.O_NONBLOCK);
    const socket = new net.Socket({ fd, readable: true, writable: false });
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.onData(chunk));
    socket.on('error', () => undefined);
    this.socket = socket;
  }

  close(): void {
    this.socket?.destroy();
    this.socket = null;
    rmSync(this.path, { force: true });
  }

  private onData(chunk: string): void {
    const lines = (this.partial + chunk).split('\n');
    this.partial = lines.pop() ?? '';
    for (const line of lines) {
      if (!line.trim()) continue;
      const notice = parseNotifyLine(line);
      if (notice) this.emit('notice', notice);
      else this.emit('unknown', line);
    }
  }
}
