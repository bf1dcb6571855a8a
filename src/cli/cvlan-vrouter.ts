#!/usr/bin/env -S node --max-semi-space-size=2
/**
 * cvlan-vrouter — the daemon's command line. One entry of `COMMANDS` per command; each command
 * lives in its own module (loaded only when run) with its own parseArgs options and `--help`.
 *
 * Exit codes: 0 success, 1 failure (for `check`: the configuration is invalid), 2 usage error
 * (unknown command or flag, bad value), each with one line on stderr naming what was wrong.
 */
import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { EXIT_OK, exitWith, UsageError } from './args.js';

interface Command {
  /** The synopsis in the command list. */
  usage: string;
  summary: string;
  /** Runs the command on the arguments after its name; its module is loaded only now. */
  main: (argv: string[]) => Promise<number>;
}

/** The commands, in the order `--help` lists them; a new one joins with one entry. */
export const COMMANDS: Record<string, Command> = {
  run: {
    usage: 'run [--config FILE] [--local TOML] [--runtime-dir DIR] [--admin-socket PATH]',
    summary: 'the vrouter daemon: under a controller when [controller] url is set and no --config, else standalone',
    main: async (argv) => (await import('./run.js')).main(argv),
  },
  init: {
    usage: 'init --controller URL --token T [--ca FILE] [--config-dir DIR] [--state-dir DIR]',
    summary: 'register with a controller and write [controller] of the local TOML',
    main: async (argv) => (await import('./init.js')).init(argv),
  },
  check: {
    usage: 'check --config FILE [--local TOML] [--json]',
    summary: 'validate a configuration without applying it',
    main: async (argv) => (await import('./check.js')).main(argv),
  },
  wireguard: {
    usage: 'wireguard [-f] [--listen-port N] [--workers N] [--mtu N] [--config FILE] IFNAME',
    summary: 'a userspace WireGuard interface, managed with wg(8) like wireguard-go',
    main: async (argv) => (await import('./wireguard.js')).main(argv),
  },
  demo: {
    usage: 'demo',
    summary: 'legacy IPsec router ⇄ cvlan-vrouter ⇄ WireGuard agent in namespaces: traffic, report, teardown',
    main: async (argv) => (await import('./demo.js')).main(argv),
  },
  testbed: {
    usage: 'testbed --config FILE',
    summary: 'the plain test/benchmark transport (never for production)',
    main: async (argv) => (await import('./testbed.js')).main(argv),
  },
  version: {
    usage: 'version',
    summary: 'versions of the CLI and the native addon',
    main: async (argv) => (await import('./version.js')).main(argv),
  },
};

export function usage(): string {
  const lines = Object.values(COMMANDS).map((c) => `  ${c.usage}\n      ${c.summary}`);
  return `usage: cvlan-vrouter <command> [options]

commands:
${lines.join('\n')}

\`cvlan-vrouter <command> --help\` describes a command.
exit codes: 0 ok, 1 failure (check: invalid configuration), 2 usage error
`;
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === '--help' || cmd === '-h' || cmd === 'help') {
    process.stdout.write(usage());
    return EXIT_OK;
  }
  if (cmd === undefined) throw new UsageError('no command given');
  if (cmd === '--version') return await COMMANDS.version!.main([]);
  const command = Object.prototype.hasOwnProperty.call(COMMANDS, cmd) ? COMMANDS[cmd] : undefined;
  if (!command) throw new UsageError(cmd.startsWith('-') ? `unknown option ${cmd} (options follow the command)` : `unknown command ${JSON.stringify(cmd)}`);
  return await command.main(rest);
}

function isEntryPoint(): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    return import.meta.url === pathToFileURL(realpathSync(script)).href;
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  const argv = process.argv.slice(2);
  const cmd = argv[0] !== undefined && Object.prototype.hasOwnProperty.call(COMMANDS, argv[0]) ? ` ${argv[0]}` : '';
  exitWith(`cvlan-vrouter${cmd}`, main(argv));
}
