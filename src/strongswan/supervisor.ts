/**
 * Runs charon as a child process and keeps it running.
 *
 * charon always writes /var/run/charon.pid and refuses to start when that file names a live
 * process. Where several charons share a host (tests), every instance gets its own mount
 * namespace with a private tmpfs on /run (`unshare -m`, mounts private by default). That needs
 * CAP_SYS_ADMIN, which a container or the hardened systemd unit does not have, and there only one
 * charon runs: it is started directly, after a pid file left by a previous container is cleared.
 * Optionally it runs inside a network namespace (`ip netns exec`). The wrappers exec into the
 * next program, so the PID we spawn becomes charon's own PID: signals reach charon directly and
 * nothing else is ever signalled. A start that fails reports charon's own last lines. util-linux
 * `setpriv --pdeathsig TERM` in front makes the kernel send charon SIGTERM when the daemon dies
 * however it dies (SIGKILL included): charon never outlives it holding the plugin's socket.
 *
 * The data plane keeps forwarding on installed SAs while charon is down, so a restart is cheap;
 * after every (re)start the owner's `onStart` hook reloads connections and secrets.
 */

import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { readFileSync, unlinkSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { CvlanError } from '../errors.js';
import { charonPrivateRunPossible } from '../daemon/host-checks.js';
import { writeStrongswanConf, type CharonConfOptions } from './conf.js';

export interface SupervisorLogger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

export interface StartInfo {
  pid: number;
  /** 1 for the first start, then +1 per restart. */
  generation: number;
  viciSocket: string;
}

export interface CharonSupervisorOptions {
  /** Directory for this instance's strongswan.conf and VICI socket (created, mode 0700). */
  runtimeDir: string;
  /** strongswan.conf contents; the VICI socket path is chosen by the supervisor. */
  conf: Omit<CharonConfOptions, 'viciSocket'>;
  /** Network namespace to run charon in (`ip netns exec`); default: the caller's. */
  netns?: string;
  /** Default /usr/lib/ipsec/charon. */
  charonPath?: string;
  /**
   * Run charon with a private /run (`unshare -m` + tmpfs), so several instances can share a host.
   * Default: when possible (CAP_SYS_ADMIN, not in a container; see `charonPrivateRunPossible`).
   */
  privateRun?: boolean;
  /** util-linux `setpriv` (parent-death signal); null to run without. Default from PATH. */
  setprivPath?: string | null;
  /** How long charon may take until its VICI socket accepts connections, ms. Default 10000. */
  startTimeoutMs?: number;
  /** Grace time between SIGTERM and SIGKILL on stop, ms. Default 5000. */
  stopTimeoutMs?: number;
  /** First restart delay, ms; doubles per consecutive failure. Default 500. */
  backoffInitialMs?: number;
  /** Largest restart delay, ms. Default 30000. */
  backoffMaxMs?: number;
  /** Uptime after which charon counts as healthy and the backoff starts over, ms. Default 10000. */
  stableAfterMs?: number;
  /** Consecutive restarts without reaching stableAfterMs before giving up. Default Infinity. */
  maxRestarts?: number;
  /** Runs after every start once the VICI socket is up: load connections, secrets, certificates. */
  onStart?: (info: StartInfo) => Promise<void> | void;
  logger?: SupervisorLogger;
}

export interface ExitInfo {
  pid: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  /** True when stop() asked for it. */
  expected: boolean;
  uptimeMs: number;
}

export interface CharonSupervisorEvents {
  started: [StartInfo];
  /** The onStart hook finished (successfully) for this start. */
  ready: [StartInfo];
  exited: [ExitInfo];
  restarting: [{ delayMs: number; attempt: number }];
  'hook-failed': [{ info: StartInfo; error: Error }];
  /** maxRestarts consecutive failures: supervision stopped. */
  'gave-up': [{ attempts: number }];
  /** One line charon wrote (stdout or stderr), for whoever watches for authentication failures. */
  line: [string];
}

const OUTPUT_LINES = 200;

export class CharonSupervisor extends EventEmitter<CharonSupervisorEvents> {
  readonly viciSocket: string;
  readonly confPath: string;
  private readonly opts: CharonSupervisorOptions;
  private child: ChildProcess | null = null;
  private childExited: Promise<void> | null = null;
  private stopping = false;
  private running = false;
  private generation = 0;
  private failures = 0;
  private restartTimer: NodeJS.Timeout | null = null;
  private startedAt = 0;
  private readonly output: string[] = [];
  /** Set once a charon opened its VICI socket: only then are exits restarted. */
  private everStarted = false;

  constructor(opts: CharonSupervisorOptions) {
    super();
    if (!path.isAbsolute(opts.runtimeDir)) {
      throw new CvlanError('CVLAN_ERR_CONFIG', 'charon supervisor: runtimeDir must be an absolute path');
    }
    this.opts = opts;
    this.viciSocket = path.join(opts.runtimeDir, 'charon.vici');
    this.confPath = path.join(opts.runtimeDir, 'strongswan.conf');
    // Unix socket paths are limited to 108 bytes (sun_path) including the terminator.
    if (Buffer.byteLength(this.viciSocket) > 107) {
      throw new CvlanError('CVLAN_ERR_CONFIG', 'charon supervisor: runtimeDir is too long for a unix socket path');
    }
  }

  /** PID of the running charon, if any. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** charon's last lines of output (stderr/stdout), for diagnostics. */
  recentOutput(): string[] {
    return [...this.output];
  }

  /**
   * Writes strongswan.conf, starts charon and waits until it is ready and the onStart hook ran.
   * If this very first start fails, supervision stops and the error (CVLAN_ERR_CHARON) is thrown:
   * a charon that never came up is a setup problem, not something to retry forever.
   */
  async start(): Promise<StartInfo> {
    if (this.running) throw new CvlanError('CVLAN_ERR_STATE', 'charon supervisor already started');
    this.running = true;
    this.stopping = false;
    await mkdir(this.opts.runtimeDir, { recursive: true, mode: 0o700 });
    await writeStrongswanConf(this.confPath, { ...this.opts.conf, viciSocket: this.viciSocket });
    try {
      this.everStarted = false;
      return await this.launch(true);
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  /** Stops charon: SIGTERM, then SIGKILL after stopTimeoutMs. Only the PID this supervisor started. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.running = false;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = null;
    const child = this.child;
    const exited = this.childExited;
    if (!child || !exited) return;
    if (alive(child)) child.kill('SIGTERM');
    const timeout = this.opts.stopTimeoutMs ?? 5_000;
    const done = await Promise.race([exited.then(() => true), sleep(timeout).then(() => false)]);
    if (!done) {
      this.opts.logger?.warn({ pid: child.pid }, 'charon did not stop on SIGTERM, killing it');
      if (alive(child)) child.kill('SIGKILL');
      await exited;
    }
  }

  /** `first`: the start() call itself, whose failure is reported to the caller instead of retried. */
  private async launch(first: boolean): Promise<StartInfo> {
    this.generation += 1;
    // A socket file left by a killed charon would make the readiness probe race the new one.
    await rm(this.viciSocket, { force: true });
    const charon = this.opts.charonPath ?? '/usr/lib/ipsec/charon';
    const privateRun = this.opts.privateRun ?? charonPrivateRunPossible();
    if (!privateRun) clearStalePidFile();
    // $0 carries the binary path into the script so no path is ever spliced into shell text.
    const inner = privateRun
      ? ['unshare', '-m', '--propagation', 'private', 'sh', '-c', 'mount -t tmpfs -o mode=0755,size=16m cvlan-run /run && exec "$0"', charon]
      : [charon];
    const argv = [
      ...(this.opts.setprivPath !== null ? [this.opts.setprivPath ?? 'setpriv', '--pdeathsig', 'TERM', '--'] : []),
      ...(this.opts.netns ? ['ip', 'netns', 'exec', this.opts.netns] : []),
      ...inner,
    ];
    const child = spawn(argv[0]!, argv.slice(1), {
      env: { ...process.env, STRONGSWAN_CONF: this.confPath },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    this.startedAt = Date.now();
    this.childExited = new Promise<void>((resolve) => {
      child.once('exit', (code, signal) => {
        this.onExit(child, code, signal);
        resolve();
      });
      // A spawn that failed (no such program) never exits: there is nothing to wait for.
      child.once('error', () => {
        if (child.pid === undefined) {
          if (this.child === child) this.child = null;
          resolve();
        }
      });
    });
    const spawnError = new Promise<never>((_, reject) => {
      child.once('error', (err) =>
        reject(new CvlanError('CVLAN_ERR_CHARON', `cannot run ${argv[0]}: ${err.message}`, { cause: err })),
      );
    });
    spawnError.catch(() => undefined);
    this.capture(child);

    const pid = child.pid;
    const info: StartInfo = { pid: pid ?? -1, generation: this.generation, viciSocket: this.viciSocket };
    await Promise.race([this.waitForVici(child), spawnError]);
    this.everStarted = true;
    this.opts.logger?.info({ pid, generation: this.generation, netns: this.opts.netns }, 'charon started');
    this.emit('started', info);
    if (this.opts.onStart) {
      try {
        await this.opts.onStart(info);
      } catch (err) {
        this.opts.logger?.warn({ pid, err: (err as Error).message }, 'charon onStart hook failed');
        this.emit('hook-failed', { info, error: err as Error });
        if (first) throw err;
        return info;
      }
    }
    this.emit('ready', info);
    return info;
  }

  private async waitForVici(child: ChildProcess): Promise<void> {
    const deadline = Date.now() + (this.opts.startTimeoutMs ?? 10_000);
    for (;;) {
      if (!alive(child) || this.child !== child) {
        // Let the pipes drain: the lines that say why are usually the last ones written.
        if (child.stdout?.readableEnded === false || child.stderr?.readableEnded === false) {
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        const how = child.signalCode ? `signal ${child.signalCode}` : `code ${child.exitCode}`;
        throw new CvlanError('CVLAN_ERR_CHARON', `charon exited during startup (${how})${lastLines(this.output)}`, {
          details: { code: child.exitCode, signal: child.signalCode, output: this.output.slice(-10) },
        });
      }
      if (await canConnect(this.viciSocket)) return;
      if (Date.now() > deadline) {
        // Kill the instance that hangs: its exit then takes the usual restart path (or start() fails).
        if (alive(child)) child.kill('SIGKILL');
        throw new CvlanError('CVLAN_ERR_CHARON', `charon did not open its VICI socket in time${lastLines(this.output)}`, {
          details: { output: this.output.slice(-10) },
        });
      }
      // Referenced: while charon starts, this wait may be all that keeps the process alive.
      await new Promise((resolve) => setTimeout(resolve, 50));
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
          // charon's level is capped at 2 in conf.ts, where no key material is printed.
          this.opts.logger?.debug({ charon: line }, 'charon');
          this.emit('line', line);
        }
      });
    }
  }

  private onExit(child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (this.child !== child) return;
    const uptimeMs = Date.now() - this.startedAt;
    const info: ExitInfo = { pid: child.pid ?? -1, code, signal, expected: this.stopping, uptimeMs };
    this.child = null;
    (this.stopping ? this.opts.logger?.info : this.opts.logger?.warn)?.call(this.opts.logger, { ...info }, 'charon exited');
    this.emit('exited', info);
    if (this.stopping || !this.running) return;
    // The first start reports its own failure through start(); only a charon that ran is restarted.
    if (!this.everStarted) return;
    if (uptimeMs >= (this.opts.stableAfterMs ?? 10_000)) this.failures = 0;
    this.failures += 1;
    const max = this.opts.maxRestarts ?? Infinity;
    if (this.failures > max) {
      this.running = false;
      this.opts.logger?.warn({ attempts: this.failures - 1 }, 'charon keeps failing, giving up');
      this.emit('gave-up', { attempts: this.failures - 1 });
      return;
    }
    const initial = this.opts.backoffInitialMs ?? 500;
    const delayMs = Math.min(initial * 2 ** (this.failures - 1), this.opts.backoffMaxMs ?? 30_000);
    this.emit('restarting', { delayMs, attempt: this.failures });
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
      if (this.stopping || !this.running) return;
      this.launch(false).catch((err: Error) => {
        this.opts.logger?.warn({ err: err.message }, 'charon restart failed');
        // waitForVici killed a hung instance, or it died early: onExit schedules the next try.
      });
    }, delayMs);
  }

}

/** charon's last lines for an error message: what it said is usually the reason. */
function lastLines(output: readonly string[]): string {
  const tail = output.slice(-5);
  return tail.length > 0 ? `; charon said: ${tail.join(' | ')}` : '; charon printed nothing';
}

const PID_FILE = '/var/run/charon.pid';

/**
 * Without a private /run, a pid file left behind (a container recreated with a persistent /run, a
 * crash) can name a PID that now belongs to another process, and charon would refuse to start.
 * A pid file naming a live charon is left alone: charon then reports that it already runs.
 */
function clearStalePidFile(): void {
  let pid: number;
  try {
    pid = Number.parseInt(readFileSync(PID_FILE, 'utf8'), 10);
  } catch {
    return;
  }
  let comm = '';
  try {
    comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    // no such process: stale
  }
  if (comm === 'charon') return;
  try {
    unlinkSync(PID_FILE);
  } catch {
    // read-only /run: charon itself reports what it cannot do
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
