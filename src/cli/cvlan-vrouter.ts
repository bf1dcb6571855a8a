#!/usr/bin/env node
/**
 * cvlan-vrouter — the daemon's command line.
 *
 *   cvlan-vrouter run --config FILE [--local TOML] [--runtime-dir DIR]
 *                                         the daemon on a standalone configuration (./run.ts)
 *   cvlan-vrouter demo                    the demo topology on the embedded default (./demo.ts)
 *   cvlan-vrouter testbed --config FILE   plain (unencrypted) transport for tests and benchmarks
 *   cvlan-vrouter wireguard IFNAME [--listen-port N] [--workers N] [--mtu N]
 *                                         a userspace WireGuard interface managed with `wg`
 *   cvlan-vrouter version                 versions of the CLI and the native addon
 *
 * Signals: SIGTERM/SIGINT stop cleanly (workers joined, TUN removed, exit 0); SIGHUP reloads the
 * configuration file in place (peers, worker count); SIGUSR1 logs one `stats` line.
 */
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { createLogger } from '../log.js';
import { CvlanError, ConfigError } from '../errors.js';
import { parseTestbedConfig, type TestbedConfig } from '../config/testbed.js';
import { nativeInfo, PlainDevice, WireGuardDevice, totals, type WorkerStats } from '../dataplane/index.js';
import { startUapiServer } from '../wireguard/uapi-server.js';
import { runDaemon } from './run.js';

const USAGE = `usage: cvlan-vrouter <command> [options]
  run [--config FILE] [--local TOML] [--runtime-dir DIR] [--admin-socket PATH]
                          the vrouter daemon (under a controller when [controller] url is set and
                          no --config; standalone: the controller JSON from FILE, else the last
                          applied configuration stored in the state dir)
  init --controller URL --token T [--ca FILE] [--config-dir DIR] [--state-dir DIR]
                          register with the controller and write [controller] (init --help)
  demo                    legacy IPsec router ⇄ cvlan-vrouter ⇄ WireGuard agent in namespaces,
                          on the embedded default configuration; traffic, report, teardown
  testbed --config FILE   run the plain test/benchmark transport (never for production)
  wireguard IFNAME [--listen-port N] [--workers N] [--mtu N]
                          a userspace WireGuard interface, managed with wg(8) like wireguard-go
  version                 print versions
`;

const log = createLogger({ level: (process.env.CVLAN_LOG_LEVEL as 'info' | undefined) ?? 'info' });

function readJson(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new CvlanError('CVLAN_ERR_CONFIG', `cannot read ${path}: ${(e as Error).message}`, { cause: e });
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new CvlanError('CVLAN_ERR_CONFIG', `${path} is not valid JSON: ${(e as Error).message}`, { cause: e });
  }
}

function ip(args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

function statsJson(stats: WorkerStats[]): unknown {
  return JSON.parse(JSON.stringify({ workers: stats, totals: totals(stats) }, (_k, v: unknown) => (typeof v === 'bigint' ? Number(v) : v)));
}

function peersOf(cfg: TestbedConfig): { endpoint: string; allowedIps: string[] }[] {
  return cfg.peers.map((p) => ({ endpoint: p.endpoint, allowedIps: p.allowed_ips }));
}

async function testbed(configPath: string): Promise<number> {
  let cfg = parseTestbedConfig(readJson(configPath));
  const dev = PlainDevice.open({
    tunName: cfg.tun.name,
    mtu: cfg.tun.mtu,
    listenPort: cfg.listen_port,
    ...(cfg.workers === undefined ? {} : { workers: cfg.workers }),
    peers: peersOf(cfg),
  });
  dev.on('event', (ev) => {
    const level = ev.type === 'worker-failed' ? 'error' : ev.type === 'worker-restarted' ? 'warn' : 'info';
    log[level]({ event: ev.type, worker: ev.worker, reason: ev.reason }, `data-plane ${ev.type}`);
  });
  try {
    for (const a of cfg.tun.addresses) ip(a.includes(':') ? ['-6', 'addr', 'add', a, 'dev', cfg.tun.name, 'nodad'] : ['addr', 'add', a, 'dev', cfg.tun.name]);
  } catch (e) {
    dev.close();
    throw new CvlanError('CVLAN_ERR_TUN', `cannot address ${cfg.tun.name}: ${String((e as { stderr?: Buffer }).stderr ?? e).trim()}`, { cause: e });
  }
  log.info({ tun: cfg.tun.name, listen_port: dev.listenPort, workers: dev.workers, transport: cfg.transport }, 'ready');

  return await new Promise<number>((resolve) => {
    // Workers run on their own threads and the event callback is unref'd: without a handle
    // of its own, Node.js would consider the daemon idle and exit.
    const keepAlive = setInterval(() => undefined, 1 << 30);
    const stop = (signal: string): void => {
      clearInterval(keepAlive);
      const final = dev.closed ? [] : dev.stats();
      dev.close();
      log.info({ signal, ...(statsJson(final) as object) }, 'stopped');
      resolve(0);
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
    process.on('SIGUSR1', () => {
      if (!dev.closed) log.info(statsJson(dev.stats()) as object, 'stats');
    });
    process.on('SIGHUP', () => {
      try {
        const next = parseTestbedConfig(readJson(configPath));
        if (next.tun.name !== cfg.tun.name || next.listen_port !== cfg.listen_port) {
          throw new CvlanError('CVLAN_ERR_CONFIG', 'tun.name and listen_port cannot change at runtime; restart instead');
        }
        dev.setPeers(peersOf(next));
        if (next.workers !== undefined && next.workers !== dev.workers) dev.setWorkers(next.workers);
        cfg = next;
        log.info({ workers: dev.workers, peers: next.peers.length }, 'reloaded');
      } catch (e) {
        // The running configuration stays as it was.
        log.error({ err: describe(e) }, 'reload refused');
      }
    });
  });
}

async function wireguard(name: string, listenPort: number, workers: number | undefined, mtu: number | undefined): Promise<number> {
  const dev = WireGuardDevice.open({
    tunName: name,
    listenPort,
    ...(workers !== undefined ? { workers } : {}),
    ...(mtu !== undefined ? { mtu } : {}),
  });
  dev.on('event', (ev) => {
    const level = ev.type === 'worker-failed' || ev.type === 'handshake-failed' ? 'warn' : 'info';
    log[level]({ event: ev.type, worker: ev.worker, peer: ev.peer, endpoint: ev.endpoint, reason: ev.reason }, ev.type);
  });
  let uapi;
  try {
    uapi = await startUapiServer(dev, { onSet: (u) => log.info({ peers: u.peers.length }, 'configuration set') });
  } catch (e) {
    dev.close();
    throw e;
  }
  log.info({ interface: name, listen_port: dev.listenPort, uapi: uapi.path }, 'ready');
  return await new Promise<number>((resolve) => {
    const keepAlive = setInterval(() => undefined, 1 << 30);
    const stop = (signal: string): void => {
      clearInterval(keepAlive);
      void uapi.close().then(() => {
        dev.close();
        log.info({ signal }, 'stopped');
        resolve(0);
      });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}

function describe(e: unknown): { code?: string; message: string; issues?: unknown } {
  if (e instanceof ConfigError) return { code: e.code, message: e.message, issues: e.issues };
  if (e instanceof CvlanError) return { code: e.code, message: e.message };
  return { message: e instanceof Error ? e.message : String(e) };
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  const opt = (name: string): string | undefined => {
    const i = rest.indexOf(name);
    return i >= 0 ? rest[i + 1] : undefined;
  };
  switch (cmd) {
    case 'run': {
      const config = opt('--config');
      const local = opt('--local');
      const runtimeDir = opt('--runtime-dir');
      const adminSocket = opt('--admin-socket');
      return await runDaemon(
        { ...(config ? { config } : {}), ...(local ? { local } : {}), ...(runtimeDir ? { runtimeDir } : {}), ...(adminSocket ? { adminSocket: adminSocket === 'none' ? null : adminSocket } : {}) },
        log,
      );
    }
    case 'init':
      return await (await import('./init.js')).init(rest);
    case 'demo': {
      const { demo } = await import('./demo.js');
      return await demo();
    }
    case 'testbed': {
      const config = opt('--config');
      if (!config) {
        process.stderr.write(USAGE);
        return 1;
      }
      return await testbed(config);
    }
    case 'wireguard': {
      const name = rest.find((a, i) => !a.startsWith('-') && !['--listen-port', '--workers', '--mtu'].includes(rest[i - 1] ?? ''));
      if (!name) {
        process.stderr.write(USAGE);
        return 1;
      }
      const num = (flag: string): number | undefined => (opt(flag) === undefined ? undefined : Number(opt(flag)));
      return await wireguard(name, num('--listen-port') ?? 51820, num('--workers'), num('--mtu'));
    }
    case 'version': {
      const info = nativeInfo();
      process.stdout.write(`cvlan-vrouter ${info.version} (native addon ${info.version}, N-API ${info.napiVersion})\n`);
      return 0;
    }
    default:
      process.stderr.write(USAGE);
      return 1;
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    const d = describe(e);
    log.fatal({ err: d }, d.message);
    process.stderr.write(`cvlan-vrouter: ${d.code ? `${d.code}: ` : ''}${d.message}\n`);
    process.exit(2);
  },
);
