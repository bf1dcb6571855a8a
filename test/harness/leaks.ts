/** What a lab may leave behind, looked up from outside: for teardown tests and post-run checks. */
import { existsSync } from 'node:fs';
import { run } from './exec.js';
import { alive } from './process.js';
import { tools } from './tools.js';

export interface LabFootprint {
  namespaces: string[];
  /** Interfaces in the harness's own namespace. */
  interfaces: string[];
  pids: number[];
  paths: string[];
}

/** The subset of `footprint` that still exists: namespaces, root-namespace links, live PIDs, paths. */
export async function leftovers(footprint: LabFootprint): Promise<LabFootprint> {
  const netns = (await run(tools.ip, ['netns', 'list'])).stdout;
  const present = new Set(netns.split('\n').map((l) => l.split(' ')[0]));
  const links = (await run(tools.ip, ['-o', 'link', 'show'])).stdout;
  const linkNames = new Set(links.split('\n').map((l) => /^\d+: ([^:@]+)/.exec(l)?.[1]));
  return {
    namespaces: footprint.namespaces.filter((n) => present.has(n)),
    interfaces: footprint.interfaces.filter((i) => linkNames.has(i)),
    pids: footprint.pids.filter((p) => alive(p)),
    paths: footprint.paths.filter((p) => existsSync(p)),
  };
}
