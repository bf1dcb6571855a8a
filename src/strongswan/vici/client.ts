/**
 * VICI client over charon's unix socket.
 *
 * The protocol has no request ids: a response belongs to whatever was sent last. So exactly one
 * exchange (command, or event (un)registration) is on the wire at a time and everything else waits
 * in a FIFO queue. A request that times out leaves the stream out of step (its late answer would
 * be taken for the next request's), so a timeout closes the connection; the client then reconnects
 * with backoff and registers its event subscriptions again before the queue moves on.
 *
 * `pipeline` is the one exception: a batch of commands (loading many connections and secrets) is
 * written at once as one queue item and the responses, which charon sends in the order of the
 * requests, are matched in that order: one round trip per batch instead of one per command.
 *
 * Streamed commands (list-sas, list-conns) register their stream event, send the command, collect
 * the events that arrive before the response, and unregister, all as one queue item.
 */

import { EventEmitter } from 'node:events';
import net from 'node:net';
import { CvlanError } from '../../errors.js';
import {
  decodePacket,
  encodePacket,
  frame,
  FrameDecoder,
  PACKET_NAMES,
  PacketType,
  type ViciInputSection,
  type ViciPacket,
  type ViciSection,
} from './encoding.js';
import {
  list,
  num,
  parseChildRekey,
  parseChildUpdown,
  parseIkeRekey,
  parseIkeUpdown,
  parseListConn,
  parseListSa,
  parseLog,
  str,
  sub,
  type ChildRekeyEvent,
  type ChildUpdownEvent,
  type ConnInfo,
  type IkeRekeyEvent,
  type IkeSaInfo,
  type IkeUpdownEvent,
  type LogEvent,
} from './types.js';

/** Minimal logger shape (pino's methods fit). */
export interface ViciLogger {
  debug(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

export interface ViciClientOptions {
  /** Filesystem path of charon's VICI socket (`charon.plugins.vici.socket` without `unix://`). */
  socketPath: string;
  /**
   * Time one queued operation may take once it is its turn, in milliseconds, including waiting
   * for the connection to come (back) up. Default 15000.
   */
  requestTimeoutMs?: number;
  /** Reconnect after the connection drops or fails. Default true. */
  reconnect?: boolean;
  /** First reconnect delay in milliseconds; doubles per failed attempt. Default 100. */
  reconnectInitialMs?: number;
  /** Upper bound of the reconnect delay in milliseconds. Default 5000. */
  reconnectMaxMs?: number;
  logger?: ViciLogger;
}

/** Events charon raises that this client knows how to type. */
export type ViciEventName = 'ike-updown' | 'child-updown' | 'ike-rekey' | 'child-rekey' | 'log';

export interface ViciClientEvents {
  connected: [];
  disconnected: [cause: Error | undefined];
  'ike-updown': [IkeUpdownEvent];
  'child-updown': [ChildUpdownEvent];
  'ike-rekey': [IkeRekeyEvent];
  'child-rekey': [ChildRekeyEvent];
  log: [LogEvent];
  /** Every event charon sends outside a streamed command, undecoded beyond the message tree. */
  event: [name: string, message: ViciSection];
}

export interface LoadSharedOptions {
  /** Unique identifier so the secret can be replaced or unloaded later. */
  id?: string;
  type: 'IKE' | 'EAP' | 'XAUTH' | 'NTLM' | 'PPK';
  /** The secret. Sent to charon only; never logged or put in errors. */
  data: string | Buffer;
  owners: string[];
}

export interface InitiateOptions {
  child: string;
  ike?: string;
  /** How long charon waits for the result, ms; 0 = until done, -1 = return at once. Default 0. */
  timeoutMs?: number;
  initLimits?: boolean;
}

export interface TerminateOptions {
  ike?: string;
  child?: string;
  ikeId?: number;
  childId?: number;
  force?: boolean;
  /** How long charon waits for the result, ms; 0 = until done, -1 = return at once. Default 0. */
  timeoutMs?: number;
}

export interface VersionInfo {
  daemon: string | undefined;
  version: string | undefined;
  sysname: string | undefined;
  release: string | undefined;
  machine: string | undefined;
}

export interface StatsInfo {
  uptimeSince: string | undefined;
  workersTotal: number | undefined;
  ikeSasTotal: number | undefined;
  ikeSasHalfOpen: number | undefined;
  plugins: string[];
  raw: ViciSection;
}

interface Waiter {
  kind: 'cmd' | 'event';
  resolve(p: ViciPacket): void;
  reject(e: Error): void;
}

interface Stream {
  event: string;
  items: ViciSection[];
}

interface Task {
  run(deadline: number): Promise<unknown>;
  timeoutMs: number;
  resolve(v: unknown): void;
  reject(e: Error): void;
}

const TYPED_PARSERS: Record<ViciEventName, (m: ViciSection) => unknown> = {
  'ike-updown': parseIkeUpdown,
  'child-updown': parseChildUpdown,
  'ike-rekey': parseIkeRekey,
  'child-rekey': parseChildRekey,
  log: parseLog,
};

function closedError(message: string, cause?: unknown): CvlanError {
  return new CvlanError('CVLAN_ERR_VICI_CLOSED', message, cause !== undefined ? { cause } : undefined);
}

export class ViciClient extends EventEmitter<ViciClientEvents> {
  readonly socketPath: string;
  private readonly requestTimeoutMs: number;
  private readonly reconnectEnabled: boolean;
  private readonly reconnectInitialMs: number;
  private readonly reconnectMaxMs: number;
  private readonly logger: ViciLogger | undefined;

  private socket: net.Socket | null = null;
  private decoder = new FrameDecoder();
  /** Socket connected and subscriptions registered: user operations may go. */
  private ready = false;
  private started = false;
  private closed = false;
  private everReady = false;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private reconnectDelay: number;
  /** Exchanges on the wire, oldest first (more than one only within a `pipeline` batch). */
  private waiters: Waiter[] = [];
  private stream: Stream | null = null;
  private readyWaiters = new Set<{ resolve(): void; reject(e: Error): void }>();
  private readonly queue: Task[] = [];
  private pumping = false;
  /** Events the owner subscribed to; registered again after every reconnect. */
  private readonly subscriptions = new Set<string>();

  constructor(options: ViciClientOptions) {
    super();
    if (!options.socketPath) throw new CvlanError('CVLAN_ERR_CONFIG', 'ViciClient needs socketPath');
    this.socketPath = options.socketPath;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 15_000;
    this.reconnectEnabled = options.reconnect ?? true;
    this.reconnectInitialMs = options.reconnectInitialMs ?? 100;
    this.reconnectMaxMs = options.reconnectMaxMs ?? 5_000;
    this.reconnectDelay = this.reconnectInitialMs;
    this.logger = options.logger;
  }

  /** True while the connection is up and subscriptions are registered. */
  get isConnected(): boolean {
    return this.ready;
  }

  /**
   * Opens the connection and waits until it is usable, at most `timeoutMs` (default: the request
   * timeout). With reconnect enabled a failed attempt is retried with backoff until then; if the
   * wait times out the client keeps trying in the background until close().
   */
  async connect(timeoutMs = this.requestTimeoutMs): Promise<void> {
    if (this.closed) throw closedError('the VICI client was closed');
    if (!this.started) {
      this.started = true;
      this.openSocket();
    }
    await this.waitReady(Date.now() + timeoutMs);
  }

  /** Closes the connection for good; queued and in-flight operations fail with CVLAN_ERR_VICI_CLOSED. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    const err = closedError('the VICI client was closed');
    for (const t of this.queue.splice(0)) t.reject(err);
    for (const w of this.readyWaiters) w.reject(err);
    this.readyWaiters.clear();
    const sock = this.socket;
    if (sock && !sock.destroyed) {
      await new Promise<void>((resolve) => {
        sock.once('close', () => resolve());
        sock.destroy();
      });
    }
  }

  // --- events ---

  /**
   * Subscribes to a charon event; the registration survives reconnects. Listen with
   * `client.on(name, ...)` (typed for the known events) or `client.on('event', ...)`.
   */
  async subscribe(name: ViciEventName | string): Promise<void> {
    if (this.subscriptions.has(name)) return;
    this.subscriptions.add(name);
    try {
      await this.enqueue(async (deadline) => {
        // A reconnect in between has registered it already with the whole set.
        if (!this.ready) await this.waitReady(deadline);
        else await this.register(name, deadline);
      });
    } catch (err) {
      this.subscriptions.delete(name);
      throw err;
    }
  }

  async unsubscribe(name: string): Promise<void> {
    if (!this.subscriptions.delete(name)) return;
    await this.enqueue(async (deadline) => {
      await this.waitReady(deadline);
      const reply = await this.exchange(encodePacket(PacketType.EVENT_UNREGISTER, name), 'event', deadline);
      if (reply.type !== PacketType.EVENT_CONFIRM) {
        throw new CvlanError('CVLAN_ERR_VICI_COMMAND', `charon refused to unregister event "${name}"`);
      }
    });
  }

  // --- generic commands ---

  /** Sends one command and returns its response message; `success = no` throws CVLAN_ERR_VICI_COMMAND. */
  async request(command: string, message: ViciInputSection = {}, opts: { timeoutMs?: number } = {}): Promise<ViciSection> {
    const packet = encodePacket(PacketType.CMD_REQUEST, command, message);
    return this.enqueue(async (deadline) => {
      await this.waitReady(deadline);
      const reply = await this.exchange(packet, 'cmd', deadline);
      return checkResponse(command, reply);
    }, opts.timeoutMs);
  }

  /**
   * Sends `commands` in batches of `batch` written at once (see the module doc) and returns, per
   * command in order, its response message or its error (`success = no`: CVLAN_ERR_VICI_COMMAND).
   * A lost connection fails the rest of its batch; later batches wait for the reconnect. A batch
   * may take `timeoutMs` (default the request timeout × batch size / 8).
   */
  async pipeline(
    commands: readonly { command: string; message?: ViciInputSection }[],
    opts: { batch?: number; timeoutMs?: number } = {},
  ): Promise<(ViciSection | Error)[]> {
    const size = Math.max(1, opts.batch ?? 64);
    const out: (ViciSection | Error)[] = [];
    for (let i = 0; i < commands.length; i += size) {
      const chunk = commands.slice(i, i + size);
      const packets = chunk.map((c) => encodePacket(PacketType.CMD_REQUEST, c.command, c.message ?? {}));
      const results = await this.enqueue(async (deadline) => {
        await this.waitReady(deadline);
        const replies = await Promise.allSettled(this.exchangeMany(packets, 'cmd', deadline));
        return replies.map((r, j) => {
          if (r.status === 'rejected') return r.reason as Error;
          try {
            return checkResponse(chunk[j]!.command, r.value);
          } catch (e) {
            return e as Error;
          }
        });
        // A busy charon answers a load-conn in up to ~0.25 s (measured at 2000 connections while it
        // initiates the ones already loaded): the batch gets time for its size, not one request's.
      }, opts.timeoutMs ?? this.requestTimeoutMs * Math.max(1, chunk.length / 8)).catch((e: unknown) => chunk.map(() => e as Error));
      out.push(...results);
    }
    return out;
  }

  /** A command whose results arrive as `event` events before its response (list-sas, list-conns, ...). */
  async streamedRequest(
    command: string,
    event: string,
    message: ViciInputSection = {},
    opts: { timeoutMs?: number } = {},
  ): Promise<{ response: ViciSection; events: ViciSection[] }> {
    const packet = encodePacket(PacketType.CMD_REQUEST, command, message);
    return this.enqueue(async (deadline) => {
      await this.waitReady(deadline);
      const alreadyRegistered = this.subscriptions.has(event);
      if (!alreadyRegistered) await this.register(event, deadline);
      const stream: Stream = { event, items: [] };
      this.stream = stream;
      try {
        const reply = await this.exchange(packet, 'cmd', deadline);
        const response = checkResponse(command, reply);
        return { response, events: stream.items };
      } finally {
        this.stream = null;
        if (!alreadyRegistered && this.ready) {
          // Best effort: a stale registration only costs the odd unexpected event, which is ignored.
          try {
            await this.exchange(encodePacket(PacketType.EVENT_UNREGISTER, event), 'event', deadline);
          } catch (err) {
            this.logger?.debug({ err, event }, 'vici: unregistering stream event failed');
          }
        }
      }
    }, opts.timeoutMs);
  }

  // --- typed commands ---

  async version(): Promise<VersionInfo> {
    const r = await this.request('version');
    return {
      daemon: str(r, 'daemon'),
      version: str(r, 'version'),
      sysname: str(r, 'sysname'),
      release: str(r, 'release'),
      machine: str(r, 'machine'),
    };
  }

  async stats(): Promise<StatsInfo> {
    const r = await this.request('stats');
    const ikesas = sub(r, 'ikesas') ?? {};
    return {
      uptimeSince: str(sub(r, 'uptime') ?? {}, 'since'),
      workersTotal: num(sub(r, 'workers') ?? {}, 'total'),
      ikeSasTotal: num(ikesas, 'total'),
      ikeSasHalfOpen: num(ikesas, 'half-open'),
      plugins: list(r, 'plugins'),
      raw: r,
    };
  }

  /** Loads (or replaces) one connection: `conn` is the swanctl.conf-shaped body of `connections.<name>`. */
  async loadConn(name: string, conn: ViciInputSection): Promise<void> {
    await this.request('load-conn', { [name]: conn });
  }

  async unloadConn(name: string): Promise<void> {
    await this.request('unload-conn', { name });
  }

  /** Names of the connections loaded over VICI. */
  async getConns(): Promise<string[]> {
    return list(await this.request('get-conns'), 'conns');
  }

  async loadShared(opts: LoadSharedOptions): Promise<void> {
    await this.request('load-shared', { id: opts.id, type: opts.type, data: opts.data, owners: opts.owners });
  }

  async unloadShared(id: string): Promise<void> {
    await this.request('unload-shared', { id });
  }

  /** `data` is PEM or DER. */
  async loadCert(opts: { type: 'X509' | 'X509_AC' | 'X509_CRL'; flag?: 'NONE' | 'CA' | 'AA' | 'OCSP'; data: string | Buffer }): Promise<void> {
    await this.request('load-cert', { type: opts.type, flag: opts.flag, data: opts.data });
  }

  /** `data` is PEM or DER; it is a private key and is never logged. */
  async loadKey(opts: { type: 'RSA' | 'ECDSA' | 'ED25519' | 'ED448' | 'ANY'; data: string | Buffer }): Promise<void> {
    await this.request('load-key', { type: opts.type.toLowerCase(), data: opts.data });
  }

  /**
   * Initiates a CHILD_SA (and its IKE_SA). Our own request timeout is stretched past charon's so
   * the answer to a long negotiation is not taken for a hung daemon.
   */
  async initiate(opts: InitiateOptions): Promise<void> {
    const charonTimeout = opts.timeoutMs ?? 0;
    await this.request(
      'initiate',
      { child: opts.child, ike: opts.ike, timeout: charonTimeout, 'init-limits': opts.initLimits },
      { timeoutMs: charonTimeout > 0 ? charonTimeout + this.requestTimeoutMs : undefined },
    );
  }

  async terminate(opts: TerminateOptions): Promise<void> {
    const charonTimeout = opts.timeoutMs ?? 0;
    await this.request(
      'terminate',
      {
        ike: opts.ike,
        child: opts.child,
        'ike-id': opts.ikeId,
        'child-id': opts.childId,
        force: opts.force,
        timeout: charonTimeout,
      },
      { timeoutMs: charonTimeout > 0 ? charonTimeout + this.requestTimeoutMs : undefined },
    );
  }

  async listSas(filter: { ike?: string; ikeId?: number; noblock?: boolean } = {}): Promise<IkeSaInfo[]> {
    const { events } = await this.streamedRequest('list-sas', 'list-sa', {
      ike: filter.ike,
      'ike-id': filter.ikeId,
      noblock: filter.noblock ? 'yes' : undefined,
    });
    return events.flatMap(parseListSa);
  }

  async listConns(filter: { ike?: string } = {}): Promise<ConnInfo[]> {
    const { events } = await this.streamedRequest('list-conns', 'list-conn', { ike: filter.ike });
    return events.flatMap(parseListConn);
  }

  // --- queue ---

  private enqueue<T>(run: (deadline: number) => Promise<T>, timeoutMs?: number): Promise<T> {
    if (this.closed) return Promise.reject(closedError('the VICI client was closed'));
    if (!this.started) {
      this.started = true;
      this.openSocket();
    }
    return new Promise<T>((resolve, reject) => {
      this.queue.push({
        run,
        timeoutMs: timeoutMs ?? this.requestTimeoutMs,
        resolve: resolve as (v: unknown) => void,
        reject,
      });
      void this.pump();
    });
  }

  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      for (let task = this.queue.shift(); task; task = this.queue.shift()) {
        try {
          task.resolve(await task.run(Date.now() + task.timeoutMs));
        } catch (err) {
          task.reject(err as Error);
        }
      }
    } finally {
      this.pumping = false;
    }
  }

  private waitReady(deadline: number): Promise<void> {
    if (this.ready) return Promise.resolve();
    if (this.closed) return Promise.reject(closedError('the VICI client was closed'));
    if (!this.reconnectEnabled && this.everReady) {
      return Promise.reject(closedError('the VICI connection was lost and reconnect is disabled'));
    }
    return new Promise<void>((resolve, reject) => {
      const entry = {
        resolve: () => {
          clearTimeout(timer);
          this.readyWaiters.delete(entry);
          resolve();
        },
        reject: (e: Error) => {
          clearTimeout(timer);
          this.readyWaiters.delete(entry);
          reject(e);
        },
      };
      const timer = setTimeout(
        () =>
          entry.reject(
            new CvlanError('CVLAN_ERR_VICI_TIMEOUT', `no VICI connection to ${this.socketPath} in time`, {
              details: { socketPath: this.socketPath },
            }),
          ),
        Math.max(0, deadline - Date.now()),
      );
      this.readyWaiters.add(entry);
    });
  }

  // --- wire ---

  private exchange(packet: Buffer, kind: Waiter['kind'], deadline: number): Promise<ViciPacket> {
    return this.exchangeMany([packet], kind, deadline)[0]!;
  }

  /** Writes `packets` at once; the n-th answer settles the n-th promise. One deadline for all. */
  private exchangeMany(packets: readonly Buffer[], kind: Waiter['kind'], deadline: number): Promise<ViciPacket>[] {
    const sock = this.socket;
    if (!sock || sock.destroyed || this.waiters.length > 0) {
      return packets.map(() => Promise.reject(closedError('the VICI connection is not open')));
    }
    let open = packets.length;
    const timer = setTimeout(() => {
      const name = PACKET_NAMES[packets[0]![0]!] ?? 'packet';
      const err = new CvlanError('CVLAN_ERR_VICI_TIMEOUT', `charon did not answer ${name} in time`);
      for (const w of this.waiters.splice(0)) w.reject(err);
      // The answers may still come and would then be read as the next request's: start over.
      this.dropConnection(err);
    }, Math.max(0, deadline - Date.now()));
    const settled = (): void => {
      if (--open === 0) clearTimeout(timer);
    };
    const promises = packets.map(
      (_, i) =>
        new Promise<ViciPacket>((resolve, reject) => {
          this.waiters[i] = {
            kind,
            resolve: (p) => {
              settled();
              resolve(p);
            },
            reject: (e) => {
              settled();
              reject(e);
            },
          };
        }),
    );
    sock.cork();
    for (const p of packets) sock.write(frame(p));
    sock.uncork();
    return promises;
  }

  private async register(name: string, deadline: number): Promise<void> {
    const reply = await this.exchange(encodePacket(PacketType.EVENT_REGISTER, name), 'event', deadline);
    if (reply.type !== PacketType.EVENT_CONFIRM) {
      throw new CvlanError('CVLAN_ERR_VICI_COMMAND', `charon has no event "${name}"`, { details: { event: name } });
    }
  }

  private openSocket(): void {
    this.reconnectTimer = null;
    if (this.closed) return;
    this.decoder = new FrameDecoder();
    const sock = net.createConnection({ path: this.socketPath });
    this.socket = sock;
    let failure: Error | undefined;
    sock.on('connect', () => {
      this.reconnectDelay = this.reconnectInitialMs;
      void this.onConnected(sock);
    });
    sock.on('data', (chunk: Buffer) => this.onData(sock, chunk));
    sock.on('error', (err) => {
      failure = err;
    });
    sock.on('close', () => this.onClose(sock, failure));
  }

  private async onConnected(sock: net.Socket): Promise<void> {
    // Subscriptions first, so no event is missed and the queue sees a fully set-up connection.
    try {
      for (const name of this.subscriptions) {
        try {
          await this.register(name, Date.now() + this.requestTimeoutMs);
        } catch (err) {
          if ((err as CvlanError).code !== 'CVLAN_ERR_VICI_COMMAND') throw err;
          this.logger?.warn({ event: name }, 'vici: charon does not know this event');
        }
      }
    } catch (err) {
      if (this.socket === sock) this.dropConnection(err as Error);
      return;
    }
    if (this.socket !== sock || sock.destroyed) return;
    this.ready = true;
    this.everReady = true;
    for (const w of [...this.readyWaiters]) w.resolve();
    this.emit('connected');
  }

  private onData(sock: net.Socket, chunk: Buffer): void {
    if (this.socket !== sock) return;
    try {
      for (const seg of this.decoder.push(chunk)) this.onPacket(decodePacket(seg));
    } catch (err) {
      this.logger?.warn({ err }, 'vici: malformed data from charon, reconnecting');
      this.dropConnection(err as Error);
    }
  }

  private onPacket(p: ViciPacket): void {
    switch (p.type) {
      case PacketType.EVENT:
        this.onEvent(p.name, p.message);
        return;
      case PacketType.CMD_RESPONSE:
      case PacketType.CMD_UNKNOWN:
      case PacketType.EVENT_CONFIRM:
      case PacketType.EVENT_UNKNOWN: {
        const w = this.waiters[0];
        const kind = p.type === PacketType.CMD_RESPONSE || p.type === PacketType.CMD_UNKNOWN ? 'cmd' : 'event';
        if (!w || w.kind !== kind) {
          throw new CvlanError('CVLAN_ERR_VICI_PROTOCOL', `unexpected ${PACKET_NAMES[p.type]} from charon`);
        }
        this.waiters.shift();
        w.resolve(p);
        return;
      }
      default:
        throw new CvlanError('CVLAN_ERR_VICI_PROTOCOL', `charon sent a client-only packet ${PACKET_NAMES[p.type]}`);
    }
  }

  private onEvent(name: string, message: ViciSection): void {
    if (this.stream && this.stream.event === name) {
      this.stream.items.push(message);
      if (!this.subscriptions.has(name)) return;
    }
    if (!this.subscriptions.has(name)) return;
    this.emit('event', name, message);
    const parse = TYPED_PARSERS[name as ViciEventName];
    if (parse) {
      const typed = parse(message);
      // Cast: the map above pairs each name with the parser of its payload type.
      if (typed !== undefined) (this.emit as (n: string, v: unknown) => boolean)(name, typed);
    }
  }

  private dropConnection(cause: Error): void {
    // Not ready from now on, not only once 'close' fires: the next queued request must wait for
    // the new connection instead of writing into the one being torn down.
    if (this.ready) {
      this.ready = false;
      this.emit('disconnected', cause);
    }
    const sock = this.socket;
    if (sock && !sock.destroyed) {
      (sock as net.Socket & { cvlanCause?: Error }).cvlanCause = cause;
      sock.destroy();
    }
  }

  private onClose(sock: net.Socket, failure: Error | undefined): void {
    if (this.socket !== sock) return;
    const cause = (sock as net.Socket & { cvlanCause?: Error }).cvlanCause ?? failure;
    const wasReady = this.ready;
    this.socket = null;
    this.ready = false;
    this.stream = null;
    for (const w of this.waiters.splice(0)) {
      w.reject(
        cause instanceof CvlanError ? cause : closedError('the VICI connection closed during a request', cause),
      );
    }
    if (wasReady) this.emit('disconnected', cause);
    if (this.closed) return;
    if (!this.reconnectEnabled && this.everReady) {
      for (const r of [...this.readyWaiters]) r.reject(closedError('the VICI connection was lost', cause));
      return;
    }
    const delay = this.reconnectDelay;
    this.reconnectDelay = Math.min(this.reconnectDelay * 2, this.reconnectMaxMs);
    this.logger?.debug({ delayMs: delay, err: cause?.message }, 'vici: reconnecting');
    this.reconnectTimer = setTimeout(() => this.openSocket(), delay);
  }
}

function checkResponse(command: string, reply: ViciPacket): ViciSection {
  if (reply.type === PacketType.CMD_UNKNOWN) {
    throw new CvlanError('CVLAN_ERR_VICI_COMMAND', `charon does not know the command "${command}"`, {
      details: { command },
    });
  }
  if (reply.type !== PacketType.CMD_RESPONSE) {
    throw new CvlanError('CVLAN_ERR_VICI_PROTOCOL', `unexpected ${PACKET_NAMES[reply.type]} for "${command}"`);
  }
  const msg = reply.message;
  const success = str(msg, 'success');
  if (success !== undefined && success !== 'yes') {
    const errmsg = str(msg, 'errmsg') ?? 'no reason given';
    throw new CvlanError('CVLAN_ERR_VICI_COMMAND', `${command} failed: ${errmsg}`, {
      details: { command, errmsg },
    });
  }
  return msg;
}
