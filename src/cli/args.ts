/**
 * What every cvlan-vrouter command shares on its command line: `node:util` parseArgs in strict
 * mode (an unknown flag or a flag without its value is refused, naming the flag), `-h/--help`
 * answered before anything else runs (exit 0, no side effect), typed values checked here so a
 * bad value never reaches the data plane, and one exit code for usage errors.
 *
 * Exit codes of cvlan-vrouter: 0 success, 1 failure at run time (or `check`: the configuration
 * is invalid), 2 usage error (unknown command or flag, bad value, missing argument).
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import pino, { type DestinationStream, type Logger } from 'pino';
import { createLogger } from '../log.js';
import { describeError } from './errors.js';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** A mistake on the command line; the message names the flag or argument. */
export class UsageError extends Error {
  override name = 'UsageError';
}

type Options = NonNullable<ParseArgsConfig['options']>;

export interface CommandLine<O extends Options> {
  /** `cvlan-vrouter wireguard`: the prefix of messages. */
  name: string;
  /** The help text, printed as is for `--help`. */
  help: string;
  options: O;
  /** Positional arguments accepted; default none. */
  positionals?: { min: number; max: number; names: string };
}

export type Parsed<O extends Options> = ReturnType<typeof parseArgs<{ options: O; allowPositionals: true; strict: true; args: string[] }>>;

const HELP = { help: { type: 'boolean', short: 'h' } } as const;

/**
 * Parses `argv` for one command. Returns undefined when help was asked for (and printed);
 * throws UsageError for anything the command does not accept.
 */
export function parseCommand<O extends Options>(cmd: CommandLine<O>, argv: string[], out: { write(s: string): unknown } = process.stdout): Parsed<O> | undefined {
  // Help wins over every other mistake on the line, as with most tools: `x --bogus --help` helps.
  const end = argv.indexOf('--');
  const head = end < 0 ? argv : argv.slice(0, end);
  if (head.includes('--help') || head.includes('-h')) {
    out.write(cmd.help);
    return undefined;
  }
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: { ...cmd.options, ...HELP }, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError(parseArgsMessage(e as Error));
  }
  const p = cmd.positionals ?? { min: 0, max: 0, names: '' };
  const n = parsed.positionals.length;
  if (n > p.max) throw new UsageError(`unexpected argument: ${JSON.stringify(parsed.positionals[p.max])}`);
  if (n < p.min) throw new UsageError(`missing ${p.names}`);
  return parsed as unknown as Parsed<O>;
}

/** parseArgs' messages, shortened to the part that names the flag. */
function parseArgsMessage(e: Error): string {
  const code = (e as NodeJS.ErrnoException).code;
  const m = /^Unknown option '([^']+)'/.exec(e.message);
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && m) return `unknown option ${m[1]}`;
  const v = /^Option '([^' ]+)[^']*' argument missing/.exec(e.message);
  if (v) return `option ${v[1]!.replace(/^-\w, /, '')} needs a value`;
  return e.message;
}

/**
 * An integer option in [min, max], or undefined when not given. `--listen-port abc`, `1.5`,
 * `0x10` and `''` are refused with the flag named.
 */
export function intOption(values: Record<string, unknown>, flag: string, min: number, max: number): number | undefined {
  const v = values[flag];
  if (v === undefined) return undefined;
  const s = String(v);
  const n = /^(0|[1-9][0-9]*)$/.test(s) ? Number(s) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(`--${flag}: expected an integer ${min}..${max}, got ${JSON.stringify(s)}`);
  }
  return n;
}

/** A string option that, when given, must not be empty. */
export function stringOption(values: Record<string, unknown>, flag: string): string | undefined {
  const v = values[flag];
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v.length === 0) throw new UsageError(`--${flag}: expected a non-empty value`);
  return v;
}

const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/**
 * The JSON logger of a daemon command, on stdout; env CVLAN_LOG_LEVEL (refused when not a level).
 * Also refuses a CVLAN_SPREAD_CRYPTO other than 0 or 1: the data plane reads it itself
 * (`spread.rs`) and would take a typo for "on".
 * `also` receives the same lines (after redaction), e.g. the admin API's event stream.
 */
export function cliLogger(env: NodeJS.ProcessEnv = process.env, also?: DestinationStream, opts: { detached?: boolean } = {}): Logger {
  const text = env.CVLAN_LOG_LEVEL ?? 'info';
  if (!(LEVELS as readonly string[]).includes(text)) throw new UsageError(`CVLAN_LOG_LEVEL: expected one of ${LEVELS.join(', ')}, got ${JSON.stringify(text)}`);
  const level = text as (typeof LEVELS)[number];
  const spread = env.CVLAN_SPREAD_CRYPTO;
  if (spread !== undefined && spread !== '0' && spread !== '1') {
    throw new UsageError(`CVLAN_SPREAD_CRYPTO: expected 0 (each flow's crypto on one worker) or 1 (shared by every worker, the default), got ${JSON.stringify(spread)}`);
  }
  if (opts.detached) {
    // A background process outlives whatever read its stdout: a closed pipe must not end it.
    const out = pino.destination({ dest: 1, sync: true });
    out.on('error', () => undefined);
    return createLogger({ level, destination: out });
  }
  if (!also || level === 'silent') return createLogger({ level });
  return createLogger({ level, destination: pino.multistream([{ stream: pino.destination(1), level }, { stream: also, level }]) });
}

/**
 * Runs a program's main and exits: its code, 2 after a UsageError (one line naming the mistake
 * and where help is), 1 after any other error (one line with its code and message).
 */
export function exitWith(program: string, run: Promise<number>): void {
  run.then(
    (code) => process.exit(code),
    (e: unknown) => {
      if (e instanceof UsageError) {
        process.stderr.write(`${program}: ${e.message}\ntry \`${program} --help\`\n`);
        process.exit(EXIT_USAGE);
      }
      const d = describeError(e);
      createLogger().fatal({ err: d }, d.message);
      process.stderr.write(`${program}: ${d.code ? `${d.code}: ` : ''}${d.message}\n`);
      process.exit(EXIT_FAILURE);
    },
  );
}
