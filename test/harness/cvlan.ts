/**
 * cvlan-vrouter itself under test: `cvlan-vrouter testbed --config <file>` in a namespace. The
 * testbed brings up one TUN device and a plain (unencrypted, test-only) UDP transport to its peers,
 * logs a JSON line with `"msg":"ready"` on stdout when it forwards, and exits 0 on SIGTERM after
 * removing its TUN device.
 */
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Lab } from './lab.js';
import type { ExitStatus, LabProcess } from './process.js';
import { randomSuffix } from './names.js';
import { tools } from './tools.js';

/** Repository root (this file is test/harness/cvlan.ts, or dist/test/harness/cvlan.js once compiled). */
export const REPO_ROOT = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'crates'))) return dir;
    dir = resolve(dir, '..');
  }
  return resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
})();

/** The compiled CLI; env CVLAN_VROUTER_CLI overrides. A live binding: see `useCvlanCli`. */
export let CVLAN_CLI = process.env.CVLAN_VROUTER_CLI ?? join(REPO_ROOT, 'dist', 'src', 'cli', 'cvlan-vrouter.js');

/**
 * Runs `fn` with another build's CLI (e.g. a checkout of an earlier commit), so a benchmark can
 * compare two builds in one run. Processes spawned inside `fn` use it; the previous CLI is restored after.
 */
export async function useCvlanCli<T>(cli: string, fn: () => Promise<T>): Promise<T> {
  const previous = CVLAN_CLI;
  CVLAN_CLI = cli;
  try {
    return await fn();
  } finally {
    CVLAN_CLI = previous;
  }
}

/** Why the testbed cannot run (to pass to tap's `skip`), or undefined when it can. */
export function cvlanTestbedMissing(): string | undefined {
  return existsSync(CVLAN_CLI) ? undefined : `cvlan-vrouter is not built yet (${CVLAN_CLI} missing; run npx tsc -p tsconfig.json)`;
}

/** The testbed configuration contract (JSON). */
export interface TestbedConfig {
  transport: 'plain-insecure-test-only';
  tun: {
    name: string;
    /** CIDR, IPv4 or IPv6. */
    address: string;
    /** Bytes. */
    mtu: number;
  };
  listen_port: number;
  workers: number;
  peers: { endpoint: string; allowed_ips: string[] }[];
}

export interface CvlanTestbed {
  ns: string;
  config: TestbedConfig;
  configPath: string;
  process: LabProcess;
  /** The parsed ready log line. */
  ready: Record<string, unknown>;
  /** SIGTERM and wait; the testbed is expected to exit 0 after removing its TUN device. */
  stop(graceMs?: number): Promise<ExitStatus>;
}

export interface CvlanTestbedOptions {
  /** Readiness timeout, ms. Default 15 000. */
  timeoutMs?: number;
  /** Extra environment (e.g. a log level). */
  env?: Record<string, string>;
}

/** Spawns the testbed in `ns` and waits for its `"msg":"ready"` JSON log line. */
export async function cvlanTestbed(lab: Lab, ns: string, config: TestbedConfig, opts: CvlanTestbedOptions = {}): Promise<CvlanTestbed> {
  const configPath = lab.writeFile(`testbed-${randomSuffix(4)}.json`, JSON.stringify(config, null, 2));
  const process = lab.spawn(`cvlan-vrouter@${ns}`, tools.node, [CVLAN_CLI, 'testbed', '--config', configPath], {
    ns,
    env: opts.env ?? {},
  });
  const line = await process.waitReady({ line: (l) => parseJsonLine(l)?.msg === 'ready', timeoutMs: opts.timeoutMs ?? 15_000 });
  return {
    ns,
    config,
    configPath,
    process,
    ready: parseJsonLine(line) ?? {},
    stop: (graceMs = 10_000) => process.stop(graceMs),
  };
}

function parseJsonLine(line: string): Record<string, unknown> | undefined {
  if (!line.startsWith('{')) return undefined;
  try {
    const v: unknown = JSON.parse(line);
    return typeof v === 'object' && v !== null ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
