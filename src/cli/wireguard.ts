/**
 * `cvlan-vrouter wireguard IFNAME`: a userspace WireGuard interface managed with wg(8), with
 * wireguard-go's conventions so it can stand in as `WG_QUICK_USERSPACE_IMPLEMENTATION`:
 *
 *   - it goes to the background: the command returns (exit 0) once the UAPI socket
 *     `/var/run/wireguard/IFNAME.sock` answers, and a detached child keeps the interface;
 *     `-f/--foreground` or env `WG_PROCESS_FOREGROUND=1` keep it in the foreground;
 *   - it stops when the interface is deleted (`ip link delete IFNAME`, which is how
 *     `wg-quick down` ends a userspace interface), on SIGTERM and on SIGINT.
 *
 * `--config FILE` applies a wg(8)/wg-quick configuration file at start, as `wg setconf` would
 * (the wg-quick-only keys Address, DNS, MTU, Table and the hooks are reported, never run).
 */
import { spawn } from 'node:child_process';
import { closeSync, readFileSync, writeSync } from 'node:fs';
import type { Logger } from 'pino';
import { CvlanError } from '../errors.js';
import { WireGuardDevice } from '../dataplane/index.js';
import { describeRefusal, startUapiServer } from '../wireguard/uapi-server.js';
import { parseWgQuick, type WgQuickConfig } from '../wireguard/wgquick.js';
import { cliLogger, intOption, parseCommand, stringOption, UsageError } from './args.js';

export const HELP = `usage: cvlan-vrouter wireguard [options] IFNAME

A userspace WireGuard interface IFNAME, managed with wg(8) like wireguard-go. Goes to the
background once the UAPI socket /var/run/wireguard/IFNAME.sock answers; stops when the interface
is deleted (wg-quick down) or on SIGTERM/SIGINT. Works as WG_QUICK_USERSPACE_IMPLEMENTATION.

options:
  -f, --foreground      stay in the foreground (also env WG_PROCESS_FOREGROUND=1)
  --listen-port N       UDP port, 0..65535 (0 picks a free one; default 51820)
  --workers N           data-plane worker threads, 1..256 (default: number of CPUs)
  --mtu N               TUN MTU in bytes, 576..65535 (default 1420)
  --config FILE         apply a wg(8)/wg-quick configuration file at start, like wg setconf
  -h, --help            this text

Logs JSON lines on stdout; env CVLAN_LOG_LEVEL sets the level.
`;

const OPTIONS = {
  foreground: { type: 'boolean', short: 'f' },
  'listen-port': { type: 'string' },
  workers: { type: 'string' },
  mtu: { type: 'string' },
  config: { type: 'string' },
} as const;

/** Interface names as wg-quick and the UAPI server accept them. */
const IFNAME = /^[a-zA-Z0-9_=+.-]{1,15}$/;

/** The child tells its parent on this descriptor that the UAPI socket answers. */
const READY_FD_ENV = 'CVLAN_WG_READY_FD';

/** How long the parent waits for the child's interface. */
const START_TIMEOUT_MS = 30_000;

interface WireguardArgs {
  name: string;
  listenPort: number;
  workers: number | undefined;
  mtu: number | undefined;
  config: WgQuickConfig | undefined;
}

/**
 * `prefix` is what precedes the options on this program's command line (`['wireguard']` for
 * cvlan-vrouter, nothing for cvlan-wireguard): the background child is started the same way.
 */
export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env, prefix: readonly string[] = ['wireguard']): Promise<number> {
  const help = prefix.length ? HELP : HELP.replace('cvlan-vrouter wireguard', 'cvlan-wireguard');
  const args = parseCommand({ name: 'cvlan-vrouter wireguard', help, options: OPTIONS, positionals: { min: 1, max: 1, names: 'IFNAME' } }, argv);
  if (!args) return 0;
  const name = args.positionals[0]!;
  if (!IFNAME.test(name)) throw new UsageError(`IFNAME: ${JSON.stringify(name)} is not an interface name (1-15 of A-Z a-z 0-9 _ = + . -)`);
  const configFile = stringOption(args.values, 'config');
  const parsed: WireguardArgs = {
    name,
    listenPort: intOption(args.values, 'listen-port', 0, 65535) ?? 51820,
    workers: intOption(args.values, 'workers', 1, 256),
    mtu: intOption(args.values, 'mtu', 576, 65535),
    // Read before forking so a bad file is reported by the command the user ran.
    config: configFile === undefined ? undefined : readWgConfig(configFile),
  };
  if (!args.values.foreground && env.WG_PROCESS_FOREGROUND !== '1') return await daemonize(argv, env, prefix);
  const readyFd = env[READY_FD_ENV] === undefined ? undefined : Number(env[READY_FD_ENV]);
  delete env[READY_FD_ENV];
  return await foreground(parsed, cliLogger(env, undefined, { detached: readyFd !== undefined }), readyFd);
}

function readWgConfig(path: string): WgQuickConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new UsageError(`--config: cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  return parseWgQuick(text);
}

/**
 * Starts this command again as a detached child in the foreground and returns once the child
 * reports its UAPI socket, or with the child's exit code if it fails first (its stderr is ours).
 */
async function daemonize(argv: string[], env: NodeJS.ProcessEnv, prefix: readonly string[]): Promise<number> {
  const script = process.argv[1];
  if (script === undefined) throw new CvlanError('CVLAN_ERR_STATE', 'cannot tell which script to start in the background; use --foreground');
  const child = spawn(process.execPath, [...process.execArgv, script, ...prefix, '--foreground', ...argv], {
    detached: true,
    stdio: ['ignore', 'inherit', 'inherit', 'pipe'],
    env: { ...env, WG_PROCESS_FOREGROUND: '1', [READY_FD_ENV]: '3' },
  });
  const pipe = child.stdio[3] as NodeJS.ReadableStream & { destroy(): void };
  return await new Promise<number>((resolve, reject) => {
    let said = '';
    const timer = setTimeout(() => {
      child.kill('SIGTERM');
      reject(new CvlanError('CVLAN_ERR_STATE', `the interface did not come up within ${START_TIMEOUT_MS / 1000} s`));
    }, START_TIMEOUT_MS);
    const done = (code: number): void => {
      clearTimeout(timer);
      child.removeAllListeners('exit');
      pipe.destroy();
      child.unref();
      resolve(code);
    };
    pipe.on('data', (d: Buffer) => {
      said += d.toString('utf8');
      if (said.includes('ready\n')) done(0);
    });
    pipe.on('error', () => undefined);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    // Exiting before "ready" is a failure whatever the code.
    child.once('exit', (code) => done(code !== null && code > 0 ? code : 1));
  });
}

/** True while `name` is an interface of this process's network namespace. */
function interfaceExists(name: string): boolean {
  try {
    // /proc/self/net follows the process's namespace whatever /sys shows.
    return readFileSync('/proc/self/net/dev', 'utf8')
      .split('\n')
      .some((l) => l.trimStart().startsWith(`${name}:`));
  } catch {
    return true;
  }
}

async function foreground(a: WireguardArgs, log: Logger, readyFd: number | undefined): Promise<number> {
  const dev = WireGuardDevice.open({
    tunName: a.name,
    listenPort: a.listenPort,
    ...(a.workers !== undefined ? { workers: a.workers } : {}),
    ...(a.mtu !== undefined ? { mtu: a.mtu } : {}),
  });
  dev.on('event', (ev) => {
    const level = ev.type === 'worker-failed' || ev.type === 'handshake-failed' ? 'warn' : 'info';
    log[level]({ event: ev.type, worker: ev.worker, peer: ev.peer, endpoint: ev.endpoint, reason: ev.reason }, ev.type);
  });
  let uapi;
  try {
    if (a.config) {
      dev.apply(a.config.update);
      const i = a.config.interface;
      const notApplied = [i.addresses.length && 'Address', (i.dns.length || i.dnsSearch.length) && 'DNS', i.mtu !== null && 'MTU', i.table !== null && 'Table', (i.preUp.length || i.postUp.length || i.preDown.length || i.postDown.length) && 'hooks'].filter(
        (x): x is string => typeof x === 'string',
      );
      log.info({ peers: a.config.update.peers.length, not_applied: notApplied }, 'configuration file applied');
    }
    uapi = await startUapiServer(dev, {
      onSet: (u) => log.info({ peers: u.peers.length, listen_port: dev.listenPort }, 'configuration set'),
      onRefused: (e, errno) => log.warn(describeRefusal(e, errno), 'configuration refused'),
    });
  } catch (e) {
    dev.close();
    throw e;
  }
  log.info({ interface: a.name, listen_port: dev.listenPort, uapi: uapi.path }, 'ready');
  if (readyFd !== undefined && Number.isInteger(readyFd)) {
    try {
      writeSync(readyFd, 'ready\n');
      closeSync(readyFd);
    } catch {
      // The parent is gone; the interface stays up all the same.
    }
  }
  return await new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (why: string): void => {
      if (stopping) return;
      stopping = true;
      clearInterval(watch);
      void uapi.close().then(() => {
        dev.close();
        log.info({ reason: why }, 'stopped');
        resolve(0);
      });
    };
    // Also the handle that keeps the process alive (the workers' threads are no event-loop handles).
    const watch = setInterval(() => {
      if (!interfaceExists(a.name)) stop('interface deleted');
    }, 500);
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}
