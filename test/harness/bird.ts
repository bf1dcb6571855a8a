/**
 * A BIRD 2 router of the lab's own, standing for a VPC or LAN router: it peers with the vrouter
 * over BGP, keeps each tenant's session in a table of its own, and can inject prefixes of its own
 * (to test import filters and limits). Started through `lab.spawn`, so it dies with the lab.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { join } from 'node:path';
import type { Lab } from './lab.js';
import type { LabProcess } from './process.js';
import { tools } from './tools.js';
import { randomSuffix } from './names.js';

const run = promisify(execFile);

export interface BirdRouterSession {
  /** BIRD symbol of the session (its table is `t_<name>`). */
  name: string;
  /** The vrouter's address for this session. */
  neighbor: string;
  neighborAs: number;
  /** Prefixes this router announces into the session (blackhole static routes). */
  announce?: string[];
  /** Install what it learns into the kernel's main table (so its own traffic follows it). */
  kernel?: boolean;
}

export interface BirdRouter {
  process: LabProcess;
  socket: string;
  /** Prefixes in the session's table that came from the vrouter. */
  learned(session: string): Promise<string[]>;
  /** BGP state of the session (Established, Active, …). */
  state(session: string): Promise<string>;
  birdc(...args: string[]): Promise<string>;
}

export interface BirdRouterOptions {
  localAs: number;
  routerId: string;
  sessions: BirdRouterSession[];
  /**
   * One table for every session, installed into the kernel with equal-cost paths merged (an ECMP
   * router in front of an active-active pair); then `learned(name)` reads that one table.
   */
  ecmp?: boolean;
}

export async function birdRouter(lab: Lab, ns: string, opts: BirdRouterOptions): Promise<BirdRouter> {
  const id = randomSuffix(5);
  const socket = join(lab.dir, `bird-${id}.ctl`);
  const table = (name: string): string => (opts.ecmp ? 't_all' : `t_${name}`);
  const conf = [
    'log stderr all;',
    `router id ${opts.routerId};`,
    'protocol device { scan time 2; }',
    ...(opts.ecmp
      ? ['ipv4 table t_all;', 'protocol kernel k_all { merge paths yes limit 8; ipv4 { table t_all; export where source = RTS_BGP; import none; }; learn off; }']
      : []),
    ...opts.sessions.flatMap((s) => [
      ...(opts.ecmp ? [] : [`ipv4 table t_${s.name};`]),
      `protocol static ${s.name}_s { ipv4 { table ${table(s.name)}; }; ${(s.announce ?? []).map((p) => `route ${p} blackhole;`).join(' ')} }`,
      ...(s.kernel && !opts.ecmp ? [`protocol kernel ${s.name}_k { ipv4 { table t_${s.name}; export where source = RTS_BGP; import none; }; learn off; }`] : []),
      `protocol bgp ${s.name} { local as ${opts.localAs}; neighbor ${s.neighbor} as ${s.neighborAs}; hold time 9; keepalive time 3;`,
      `  ipv4 { table ${table(s.name)}; import all; export where source = RTS_STATIC; }; }`,
    ]),
  ].join('\n');
  const file = lab.writeFile(`bird-${id}.conf`, `${conf}\n`);
  const process = lab.spawn(`bird@${ns}`, tools.bird, ['-f', '-c', file, '-s', socket, '-P', join(lab.dir, `bird-${id}.pid`)], { ns });
  await process.waitReady({ socket, timeoutMs: 10_000 });
  const birdc = async (...args: string[]): Promise<string> => (await run(tools.birdc, ['-s', socket, ...args], { encoding: 'utf8' })).stdout;
  return {
    process,
    socket,
    birdc,
    learned: async (session) => {
      const out = await birdc('show', 'route', 'table', table(session), 'protocol', session);
      return [...out.matchAll(/^([0-9.]+\/\d+)\s/gm)].map((m) => m[1] as string).sort();
    },
    state: async (session) => /BGP state:\s+(\S+)/.exec(await birdc('show', 'protocols', 'all', session))?.[1] ?? 'unknown',
  };
}
