/**
 * Long-lived processes of a lab (peers, daemons, iperf3 servers). Each is started through
 * `ip netns exec` so its PID is the daemon's own PID (ip, setpriv, unshare and sh all exec), and
 * it is stopped by that PID only: SIGTERM, then SIGKILL. Nothing here ever kills by name.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { LabError } from './errors.js';
import { sleep, sleepSync } from './exec.js';
import { tools } from './tools.js';

export interface SpawnOptions {
  /** Network namespace; undefined = the caller's namespace. */
  ns?: string | undefined;
  /**
   * Give the process its own mount namespace with an empty tmpfs on /run, so daemons that insist
   * on fixed paths there (charon's pid file) do not collide. Default false.
   */
  privateRun?: boolean | undefined;
  /** Extra environment variables. */
  env?: Record<string, string> | undefined;
  /** Working directory. Default: the caller's. */
  cwd?: string | undefined;
  /** Lines of output kept for error messages. Default 200. */
  keepLines?: number | undefined;
}

export interface ReadyCheck {
  /** A line of stdout or stderr matching this (substring, RegExp or predicate). */
  line?: string | RegExp | ((line: string) => boolean);
  /** A path that must exist (seen from the harness's own mount namespace). */
  file?: string;
  /** A path that must exist and be a unix socket. */
  socket?: string;
  /** Polled until it resolves true. */
  probe?: () => Promise<boolean>;
  /** Give up after this long. Default 10 000 ms. */
  timeoutMs?: number;
  /** Poll interval for file/socket/probe. Default 50 ms. */
  intervalMs?: number;
}

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface OutputLine {
  stream: 'stdout' | 'stderr';
  line: string;
}

/** Wraps `cmd args` so it dies with the harness (SIGKILL on parent death) and optionally gets a private /run. */
function wrap(cmd: string, args: readonly string[], opts: SpawnOptions): [string, string[]] {
  let argv: string[] = [cmd, ...args];
  if (opts.privateRun) {
    argv = [
      tools.unshare,
      '--mount',
      '--propagation',
      'private',
      'sh',
      '-c',
      'mount -t tmpfs -o mode=0755 cvlan-lab-run /run && exec "$@"',
      'sh',
      ...argv,
    ];
  }
  // Parent-death signal: if the test process itself is SIGKILLed (no handler can run), its
  // daemons still go instead of lingering with their namespaces.
  argv = [tools.setpriv, '--pdeathsig', 'KILL', ...argv];
  if (opts.ns !== undefined) argv = [tools.ip, 'netns', 'exec', opts.ns, ...argv];
  return [argv[0] as string, argv.slice(1)];
}

export class LabProcess {
  readonly name: string;
  readonly pid: number;
  readonly command: string[];
  /** Settles when the process has exited (never rejects). */
  readonly exited: Promise<ExitStatus>;
  private readonly child: ChildProcess;
  private readonly lines: OutputLine[] = [];
  private readonly keep: number;
  private readonly listeners = new Set<(l: OutputLine) => void>();
  private status: ExitStatus | undefined;

  constructor(name: string, cmd: string, args: readonly string[], opts: SpawnOptions = {}) {
    this.name = name;
    this.keep = opts.keepLines ?? 200;
    const [file, argv] = wrap(cmd, args, opts);
    this.command = [cmd, ...args];
    this.child = spawn(file, argv, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: opts.env !== undefined ? { ...process.env, ...opts.env } : process.env,
      cwd: opts.cwd,
    });
    if (this.child.pid === undefined) {
      throw new LabError('CVLAN_LAB_COMMAND', `${name}: could not start ${file}`);
    }
    this.pid = this.child.pid;
    this.exited = new Promise((resolve) => {
      this.child.once('error', (err) => {
        this.push('stderr', `spawn error: ${err.message}`);
      });
      this.child.once('exit', (code, signal) => {
        this.status = { code, signal };
        resolve(this.status);
      });
    });
    for (const stream of ['stdout', 'stderr'] as const) {
      let partial = '';
      this.child[stream]?.setEncoding('utf8');
      this.child[stream]?.on('data', (chunk: string) => {
        partial += chunk;
        let nl: number;
        while ((nl = partial.indexOf('\n')) >= 0) {
          this.push(stream, partial.slice(0, nl));
          partial = partial.slice(nl + 1);
        }
      });
      this.child[stream]?.on('end', () => {
        if (partial !== '') this.push(stream, partial);
        partial = '';
      });
    }
  }

  private push(stream: OutputLine['stream'], line: string): void {
    const l = { stream, line };
    this.lines.push(l);
    if (this.lines.length > this.keep) this.lines.shift();
    for (const f of this.listeners) f(l);
  }

  get running(): boolean {
    return this.status === undefined;
  }

  get exitStatus(): ExitStatus | undefined {
    return this.status;
  }

  /** The last `n` lines of output, for error messages. */
  lastOutput(n = 30): string {
    return this.lines
      .slice(-n)
      .map((l) => `[${this.name} ${l.stream}] ${l.line}`)
      .join('\n');
  }

  /** Every kept line (the last `keepLines`). */
  output(): readonly OutputLine[] {
    return this.lines;
  }

  /** Calls `f` for each new line until the returned function is called. */
  onLine(f: (l: OutputLine) => void): () => void {
    this.listeners.add(f);
    return () => this.listeners.delete(f);
  }

  /**
   * Resolves with the matching line (or '' for file/socket/probe checks) once every given check
   * passed; rejects with CVLAN_LAB_EXITED or CVLAN_LAB_TIMEOUT carrying the last output.
   */
  async waitReady(check: ReadyCheck): Promise<string> {
    const timeoutMs = check.timeoutMs ?? 10_000;
    const interval = check.intervalMs ?? 50;
    const deadline = Date.now() + timeoutMs;
    let matched: string | undefined;
    let off: (() => void) | undefined;
    if (check.line !== undefined) {
      const m = check.line;
      const test =
        typeof m === 'function' ? m : typeof m === 'string' ? (s: string) => s.includes(m) : (s: string) => m.test(s);
      matched = this.lines.find((l) => test(l.line))?.line;
      if (matched === undefined) {
        off = this.onLine((l) => {
          if (matched === undefined && test(l.line)) matched = l.line;
        });
      }
    }
    try {
      for (;;) {
        let ok = check.line === undefined || matched !== undefined;
        if (ok && check.file !== undefined) ok = exists(check.file, false);
        if (ok && check.socket !== undefined) ok = exists(check.socket, true);
        if (ok && check.probe !== undefined) ok = await check.probe().catch(() => false);
        if (ok) return matched ?? '';
        if (!this.running) {
          // let the pipes drain so the error shows the daemon's last words
          await sleep(20);
          const s = this.status;
          throw new LabError(
            'CVLAN_LAB_EXITED',
            `${this.name} (pid ${this.pid}) exited (${s?.code !== null ? `code ${String(s?.code)}` : `signal ${String(s?.signal)}`}) before it was ready: ${describeCheck(check)}\n${this.lastOutput()}`,
          );
        }
        if (Date.now() >= deadline) {
          throw new LabError(
            'CVLAN_LAB_TIMEOUT',
            `${this.name} (pid ${this.pid}) not ready after ${timeoutMs} ms: ${describeCheck(check)}\n${this.lastOutput()}`,
          );
        }
        await Promise.race([sleep(interval), this.exited]);
      }
    } finally {
      off?.();
    }
  }

  /** SIGTERM, then SIGKILL after `graceMs` (default 5000 ms). Resolves with the exit status. */
  async stop(graceMs = 5000): Promise<ExitStatus> {
    if (this.status !== undefined) return this.status;
    this.signal('SIGTERM');
    const timer = sleep(graceMs).then(() => undefined);
    const first = await Promise.race([this.exited, timer]);
    if (first !== undefined) return first;
    this.signal('SIGKILL');
    return this.exited;
  }

  /** Sends a signal to this PID; a no-op once the process is known to have exited. */
  signal(sig: NodeJS.Signals): void {
    if (this.status !== undefined) return;
    try {
      process.kill(this.pid, sig);
    } catch {
      // already gone (ESRCH): the exit event is on its way
    }
  }

  /**
   * Synchronous stop for the emergency path (exit handlers). The PID cannot have been reused: an
   * exited child stays a zombie until Node reaps it, and Node only reaps after `exit` fired.
   */
  stopSync(graceMs = 2000): void {
    if (this.status !== undefined) return;
    this.signal('SIGTERM');
    const deadline = Date.now() + graceMs;
    while (Date.now() < deadline) {
      if (!alive(this.pid)) return;
      sleepSync(20);
    }
    this.signal('SIGKILL');
    const hard = Date.now() + 1000;
    while (Date.now() < hard && alive(this.pid)) sleepSync(10);
  }
}

/** True while the PID exists and is not a zombie. */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

function exists(path: string, socket: boolean): boolean {
  try {
    const st = statSync(path);
    return socket ? st.isSocket() : true;
  } catch {
    return false;
  }
}

function describeCheck(c: ReadyCheck): string {
  const parts: string[] = [];
  if (c.line !== undefined) parts.push(`line ${typeof c.line === 'function' ? '(predicate)' : String(c.line)}`);
  if (c.file !== undefined) parts.push(`file ${c.file}`);
  if (c.socket !== undefined) parts.push(`socket ${c.socket}`);
  if (c.probe !== undefined) parts.push('probe');
  return `waiting for ${parts.join(' and ') || 'nothing'}`;
}
