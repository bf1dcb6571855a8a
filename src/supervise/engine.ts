/**
 * Runs a trusted engine (BIRD, keepalived, …) as a child process and keeps it running: the one
 * pattern the daemon uses for the programs it configures. The owner writes the engine's
 * configuration, says how to start it and which unix socket answers once it is ready; this class
 * starts it, waits for that socket, runs the owner's `onStart` hook after every (re)start,
 * restarts it with exponential backoff when it dies, keeps its last lines of output for errors,
 * and stops it (SIGTERM, then SIGKILL) — only ever the PID it spawned itself.
 *
 * The data plane never waits for an engine: a crash costs what the engine provides (BGP
 * announcements, VRRP adverts) until the restart, never forwarding.
 */

import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { rm } from 'node:fs/promises';
import net from 'node:net';
import { CvlanError, type ErrorCode } from '../errors.js';

export interface EngineLogger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

export interface EngineStart {
  pid: number;
  /** 1 for the first start, then +1 per restart. */
  generation: number;
}

export interface EngineExit {
  pid: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  /** True when stop() asked for it. */
  expected: boolean;
  uptimeMs: number;
}

export interface EngineOptions {
  /** Names the engine in logs and errors ("bird"). */
  name: string;
  /** Error code of a failed first start. */
  errorCode: ErrorCode;
  /** The program and its arguments (the program execs itself: the spawned PID is the engine's). */
  argv: readonly string[];
  env?: NodeJS.ProcessEnv;
  /** A unix socket the engine listens on once it is ready; removed before every start. */
  readySocket?: string;
  /**
   * For an engine without a control socket (keepalived): true once it is ready. Polled like the
   * socket; used when `readySocket` is absent.
   */
  readyProbe?: () => Promise<boolean>;
  /** ms until the socket must accept connections. Default 10 000. */
  startTimeoutMs?: number;
  /** Grace between SIGTERM and SIGKILL on stop, ms. Default 5 000. */
  stopTimeoutMs?: number;
  /** First restart delay, ms; doubles per consecutive failure. Default 500. */
  backoffInitialMs?: number;
  /** Largest restart delay, ms. Default 30 000. */
  backoffMaxMs?: number;
  /** Uptime after which the engine counts as healthy and the backoff starts over, ms. Default 10 000. */
  stableAfterMs?: number;
  /** Runs after every start once the socket is up (push the current state). */
  onStart?: (info: EngineStart) => Promise<void> | void;
  logger?: EngineLogger;
}

export interface EngineEvents {
  started: [EngineStart];
  /** onStart finished for this start. */
  ready: [EngineStart];
  exited: [EngineExit];
  restarting: [{ delayMs: number; attempt: number }];
  'hook-failed': [{ info: EngineStart; error: Error }];
  /** One line of the engine's output (stdout or stderr). */
  line: [string];
}

const OUTPUT_LINES = 200;

export class EngineSupervisor extends EventEmitter<EngineEvents> {
  private readonly opts: EngineOptions;
  private child: ChildProcess | null = null;
  private childExited: Promise<void> | null = null;
  private stopping = false;
  private running = false;
  private generation = 0;
  private failures = 0;
  private restartTimer: NodeJS.Timeout | null = null;
  private startedAt = 0;
  private readonly output: string[] = [];
  /** Set once an instance opened its socket: only then are exits restarted. */
  private everStarted = false;

  constructor(opts: EngineOptions) {
    super();
    this.opts = opts;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** How many times the engine was started (restarts included). */
  get starts(): number {
    return this.generation;
  }

  /** The engine's last lines of output, for diagnostics. */
  recentOutput(): string[] {
    return [...this.output];
  }

  /**
   * Starts the engine and waits until it is ready and `onStart` ran. A first start that fails
   * throws (with the engine's own last output): that is a setup problem, not one to retry forever.
   */
  async start(): Promise<EngineStart> {
    if (this.running) throw new CvlanError('CVLAN_ERR_STATE', `${this.opts.name} supervisor already started`);
    this.running = true;
    this.stopping = false;
    this.everStarted = false;
    try {
      return await this.launch(true);
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  /** SIGTERM, then SIGKILL after stopTimeoutMs; only the PID this supervisor started. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.running = false;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = null;
    const child = this.child;
    const exited = this.childExited;
    if (!child || !exited) return;
    if (alive(child)) child.kill('SIGTERM');
    const done = await Promise.race([exited.then(() => true), sleep(this.opts.stopTimeoutMs ?? 5_000).then(() => false)]);
    if (!done) {
      this.opts.logger?.warn({ engine: this.opts.name, pid: child.pid }, 'engine did not stop on SIGTERM, killing it');
      if (alive(child)) child.kill('SIGKILL');
      await exited;
    }
  }

  private async launch(first: boolean): Promise<EngineStart> {
    this.generation += 1;
    // A socket left by a killed instance would make the readiness probe race the new one.
    if (this.opts.readySocket) await rm(this.opts.readySocket, { force: true });
    const [program, ...args] = this.opts.argv;
    const child = spawn(program as string, args, { env: this.opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    this.startedAt = Date.now();
    this.childExited = new Promise<void>((resolve) => {
      child.once('exit', (code, signal) => {
        this.onExit(child, code, signal);
        resolve();
      });
      child.once('error', () => {
        // A spawn that failed (no such program) never exits.
        if (child.pid === undefined) {
          if (this.child === child) this.child = null;
          resolve();
        }
      });
    });
    const spawnError = new Promise<never>((_, reject) => {
      child.once('error', (err) => reject(new CvlanError(this.opts.errorCode, `cannot run ${program}: ${err.message}`, { cause: err })));
    });
    spawnError.catch(() => undefined);
    this.capture(child);

    const info: EngineStart = { pid: child.pid ?? -1, generation: this.generation };
    await Promise.race([this.waitReady(child), spawnError]);
    this.everStarted = true;
    this.opts.logger?.info({ engine: this.opts.name, pid: info.pid, generation: info.generation }, 'engine started');
    this.emit('started', info);
    if (this.opts.onStart) {
      try {
        await this.opts.onStart(info);
      } catch (err) {
        this.opts.logger?.warn({ engine: this.opts.name, pid: info.pid, err: (err as Error).message }, 'engine onStart hook failed');
        this.emit('hook-failed', { info, error: err as Error });
        if (first) throw err;
        return info;
      }
    }
    this.emit('ready', info);
    return info;
  }

  private async waitReady(child: ChildProcess): Promise<void> {
    const deadline = Date.now() + (this.opts.startTimeoutMs ?? 10_000);
    for (;;) {
      if (!alive(child) || this.child !== child) {
        // Give the pipes a moment: the reason is usually the engine's last line.
        await sleep(50);
        const last = this.output.slice(-5).join(' | ');
        throw new CvlanError(this.opts.errorCode, `${this.opts.name} exited during startup${last ? `: ${last}` : ''}`, {
          details: { code: child.exitCode, signal: child.signalCode, output: this.output.slice(-10) },
        });
      }
      if (this.opts.readySocket ? await canConnect(this.opts.readySocket) : await (this.opts.readyProbe?.() ?? true)) return;
      if (Date.now() > deadline) {
        if (alive(child)) child.kill('SIGKILL');
        throw new CvlanError(this.opts.errorCode, `${this.opts.name} did not ${this.opts.readySocket ? `open ${this.opts.readySocket}` : 'become ready'} in time`, {
          details: { output: this.output.slice(-10) },
        });
      }
      await sleep(50);
    }
  }

  private capture(child: ChildProcess): void {
    for (const stream of [child.stdout, child.stderr]) {
      if (!stream) continue;
      let partial = '';
      stream.setEncoding('utf8');
      stream.on('data', (chunk: string) => {
        const lines = (partial + chunk).split('\n');
        partial = lines.pop() ?? '';
        for (const line of lines) {
          if (!line) continue;
          this.output.push(line);
          if (this.output.length > OUTPUT_LINES) this.output.shift();
          this.opts.logger?.debug({ engine: this.opts.name, line }, 'engine output');
          this.emit('line', line);
        }
      });
    }
  }

  private onExit(child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (this.child !== child) return;
    const uptimeMs = Date.now() - this.startedAt;
    const info: EngineExit = { pid: child.pid ?? -1, code, signal, expected: this.stopping, uptimeMs };
    this.child = null;
    (this.stopping ? this.opts.logger?.info : this.opts.logger?.warn)?.call(this.opts.logger, { engine: this.opts.name, ...info }, 'engine exited');
    this.emit('exited', info);
    if (this.stopping || !this.running || !this.everStarted) return;
    if (uptimeMs >= (this.opts.stableAfterMs ?? 10_000)) this.failures = 0;
    this.failures += 1;
    const delayMs = Math.min((this.opts.backoffInitialMs ?? 500) * 2 ** (this.failures - 1), this.opts.backoffMaxMs ?? 30_000);
    this.emit('restarting', { delayMs, attempt: this.failures });
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
      if (this.stopping || !this.running) return;
      this.launch(false).catch((err: Error) => {
        // A hung instance was killed, or it died early: onExit schedules the next try.
        this.opts.logger?.warn({ engine: this.opts.name, err: err.message }, 'engine restart failed');
      });
    }, delayMs);
  }
}

function alive(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

function canConnect(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createConnection({ path: socketPath });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}
