/**
 * `cvlan-vrouter run` in a lab namespace: the controller document and the local TOML are written
 * to the lab's private dir (0600), the daemon's admin socket, state and runtime dirs live there
 * too, and the handle resolves once the daemon printed its `ready` line.
 */
import type { Lab } from './lab.js';
import type { LabProcess } from './process.js';
import { CVLAN_CLI } from './cvlan.js';
import { DAEMON_NODE_FLAGS } from '../../src/cli/node-flags.js';
import { tools } from './tools.js';
import { randomSuffix } from './names.js';

export interface VrouterRunOptions {
  /** The controller JSON document (tenant document), secrets in clear. */
  document: unknown;
  /** `[network] listen_address`; required when the document has IPsec tunnels. */
  listenAddress?: string;
  workers?: number;
  /** Daemon log level. Default `warn`. */
  logLevel?: string;
  /** `[ipsec] esp_encapsulation`. Default the daemon's (`udp`). */
  espEncapsulation?: 'udp' | 'auto';
  timeoutMs?: number;
  /**
   * Run with a private /run (own mount namespace): two daemons with the same tenant on one host
   * (an active-active pair) would otherwise share /var/run/wireguard/wg-<tenant>.sock.
   */
  privateRun?: boolean;
  /** More sections of the local TOML (e.g. `[ha]`), appended as given. */
  extraToml?: string;
}

export interface VrouterRun {
  ns: string;
  process: LabProcess;
  /** Admin socket path. */
  admin: string;
  /** Path of the document; rewrite it and send SIGHUP to reload. */
  config: string;
  /** The daemon's charon VICI socket (for `swanctl --uri unix://...`). */
  charonVici: string;
  /** The `ready` line, parsed. */
  ready: { wireguard: { interface: string; listen_port: number; public_key: string | null } | null; ipsec: { interface: string } | null };
}

export async function vrouterRun(lab: Lab, ns: string, o: VrouterRunOptions): Promise<VrouterRun> {
  const tag = randomSuffix(4);
  const dir = `${lab.dir}/vrouter-${tag}`;
  const config = lab.writeFile(`vrouter-${tag}.json`, JSON.stringify(o.document, null, 2));
  const admin = `${dir}/admin.sock`;
  const toml = [
    ...(o.listenAddress ? ['[network]', `listen_address = "${o.listenAddress}"`, ''] : []),
    ...(o.espEncapsulation ? ['[ipsec]', `esp_encapsulation = "${o.espEncapsulation}"`, ''] : []),
    '[performance]',
    `worker_threads = ${o.workers ?? 2}`,
    '',
    '[admin]',
    `socket = "${admin}"`,
    '',
    '[state]',
    `dir = "${dir}/state"`,
    '',
    ...(o.extraToml !== undefined ? [o.extraToml] : []),
  ].join('\n');
  const local = lab.writeFile(`vrouter-${tag}.toml`, toml);
  const process = lab.spawn(`cvlan-vrouter run@${ns}`, tools.node, [...DAEMON_NODE_FLAGS, CVLAN_CLI, 'run', '--config', config, '--local', local, '--runtime-dir', `${dir}/run`], {
    ns,
    env: { CVLAN_LOG_LEVEL: o.logLevel ?? 'warn' },
    privateRun: o.privateRun ?? false,
  });
  const line = await process.waitReady({ line: /"event":"ready"/, timeoutMs: o.timeoutMs ?? 30_000 });
  const ready = JSON.parse(line.slice(line.indexOf('{'))) as VrouterRun['ready'];
  return { ns, process, admin, config, ready, charonVici: `${dir}/run/charon/charon.vici` };
}
