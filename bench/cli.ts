/**
 * The command line of every benchmark, as of the project's commands (`src/cli/args.ts`): strict
 * flags, `-h/--help` answered before anything runs (exit 0), a bad flag or value named on stderr
 * with exit 2.
 */
import type { ParseArgsConfig } from 'node:util';
import { parseCommand, UsageError, EXIT_OK, EXIT_USAGE, type Parsed } from '../src/cli/args.js';

type Options = NonNullable<ParseArgsConfig['options']>;

/** Exits 2 naming the mistake, as the project's commands do. */
export function usageExit(name: string, message: string): never {
  process.stderr.write(`${name}: ${message}\ntry \`node dist/bench/${name}.js --help\`\n`);
  process.exit(EXIT_USAGE);
}

/** Parses this benchmark's flags; prints `help` and exits 0 for --help, exits 2 for a bad flag. */
export function benchArgs<O extends Options>(name: string, help: string, options: O, argv: string[] = process.argv.slice(2)): Parsed<O>['values'] {
  try {
    const parsed = parseCommand({ name, help: help.endsWith('\n') ? help : `${help}\n`, options }, argv);
    if (!parsed) process.exit(EXIT_OK);
    return parsed.values;
  } catch (e) {
    if (e instanceof UsageError) usageExit(name, e.message);
    throw e;
  }
}
