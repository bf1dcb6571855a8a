/**
 * Running short-lived commands (ip, nft, wg, swanctl, ping, iperf3 clients), optionally inside a
 * network namespace. Long-lived daemons go through process.ts instead, which remembers their PIDs.
 */
import { execFile, execFileSync } from 'node:child_process';
import { LabError } from './errors.js';
import { tools } from './tools.js';

export interface RunOptions {
  /** Network namespace to run in (`ip netns exec`); undefined = the caller's namespace. */
  ns?: string | undefined;
  /** Data written to stdin. Default: none. */
  input?: string | undefined;
  /** Kill the command after this many milliseconds. Default 30 000 ms. */
  timeoutMs?: number | undefined;
  /** Resolve instead of throwing on a non-zero exit. Default false. */
  allowFailure?: boolean | undefined;
  /** Extra environment variables. */
  env?: Record<string, string> | undefined;
}

export interface RunResult {
  stdout: string;
  stderr: string;
  /** Exit status; null when killed by a signal (then `signal` is set). */
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** argv with the `ip netns exec` prefix when a namespace is given. */
export function inNs(ns: string | undefined, cmd: string, args: readonly string[]): [string, string[]] {
  return ns === undefined ? [cmd, [...args]] : [tools.ip, ['netns', 'exec', ns, cmd, ...args]];
}

function describe(cmd: string, args: readonly string[]): string {
  return [cmd, ...args].map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : JSON.stringify(a))).join(' ');
}

export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const [file, argv] = inNs(opts.ns, cmd, args);
  return new Promise((resolve, reject) => {
    const child = execFile(
      file,
      argv,
      {
        timeout: opts.timeoutMs ?? 30_000,
        maxBuffer: 64 * 1024 * 1024,
        env: opts.env !== undefined ? { ...process.env, ...opts.env } : process.env,
        killSignal: 'SIGKILL',
      },
      (err, stdout, stderr) => {
        const e = err as (Error & { code?: unknown; signal?: NodeJS.Signals | null; killed?: boolean }) | null;
        const code = e === null ? 0 : typeof e.code === 'number' ? e.code : null;
        const result: RunResult = { stdout, stderr, code, signal: e?.signal ?? null };
        if (e !== null && typeof e.code === 'string') {
          // spawn itself failed (ENOENT, EACCES): never a "failure" a caller may allow
          reject(new LabError('CVLAN_LAB_COMMAND', `${describe(file, argv)}: ${e.message}`, { cause: e }));
        } else if (e !== null && !opts.allowFailure) {
          reject(
            new LabError(
              'CVLAN_LAB_COMMAND',
              `${describe(file, argv)} failed (${code !== null ? `exit ${code}` : `signal ${String(e.signal)}`}): ${stderr.trim() || stdout.trim()}`,
              { details: { ...result } },
            ),
          );
        } else {
          resolve(result);
        }
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
    else child.stdin?.end();
  });
}

/**
 * Synchronous variant for emergency teardown (process `exit` handlers cannot wait for promises).
 * Never throws on a non-zero exit; reports it instead.
 */
export function runSync(cmd: string, args: readonly string[], opts: RunOptions = {}): RunResult {
  const [file, argv] = inNs(opts.ns, cmd, args);
  try {
    const stdout = execFileSync(file, argv, {
      timeout: opts.timeoutMs ?? 10_000,
      stdio: ['pipe', 'pipe', 'pipe'],
      input: opts.input ?? '',
      encoding: 'utf8',
    });
    return { stdout, stderr: '', code: 0, signal: null };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; status?: number | null; signal?: NodeJS.Signals | null };
    return { stdout: e.stdout ?? '', stderr: e.stderr ?? String(err), code: e.status ?? null, signal: e.signal ?? null };
  }
}

/** Blocks the thread; only for the synchronous teardown path. */
export function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
