/**
 * `cvlan-vrouter testbed --config FILE`: one TUN device and the plain (unencrypted, test-only)
 * UDP transport to its peers, for tests and benchmarks; never for production.
 *
 *   SIGTERM / SIGINT   workers joined, TUN removed, exit 0
 *   SIGHUP             the file is read again: peers and worker count change in place
 *   SIGUSR1            one `stats` log line
 */
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import type { Logger } from 'pino';
import { CvlanError } from '../errors.js';
import { parseTestbedConfig, type TestbedConfig } from '../config/testbed.js';
import { PlainDevice, totals, type WorkerStats } from '../dataplane/index.js';
import { cliLogger, parseCommand, stringOption, UsageError } from './args.js';
import { describeError } from './errors.js';

export const HELP = `usage: cvlan-vrouter testbed --config FILE

Runs the plain test/benchmark transport: a TUN device and unencrypted UDP to the peers of FILE
(never for production). Logs JSON lines; {"msg":"ready"} once it forwards.

options:
  --config FILE   the testbed configuration (JSON)
  -h, --help      this text
`;

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

export function statsJson(stats: WorkerStats[]): unknown {
  return JSON.parse(JSON.stringify({ workers: stats, totals: totals(stats) }, (_k, v: unknown) => (typeof v === 'bigint' ? Number(v) : v)));
}

function peersOf(cfg: TestbedConfig): { endpoint: string; allowedIps: string[] }[] {
  return cfg.peers.map((p) => ({ endpoint: p.endpoint, allowedIps: p.allowed_ips }));
}

export async function main(argv: string[]): Promise<number> {
  const args = parseCommand({ name: 'cvlan-vrouter testbed', help: HELP, options: { config: { type: 'string' } } }, argv);
  if (!args) return 0;
  const config = stringOption(args.values, 'config');
  if (config === undefined) throw new UsageError('--config FILE is required');
  return await testbed(config, cliLogger());
}

async function testbed(configPath: string, log: Logger): Promise<number> {
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
        log.error({ err: describeError(e) }, 'reload refused');
      }
    });
  });
}
