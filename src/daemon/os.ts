/**
 * The host plumbing a vrouter needs besides its devices: `ip` for links, addresses and routes
 * (the forwarding sysctls are read and reported by ./host-checks.ts). Every failure is a `CVLAN_ERR_TUN` that names what was being done
 * and carries `ip`'s own message.
 */
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { CvlanError } from '../errors.js';

const exec = promisify(execFile);

/** Runs `ip [-n netns] args…`; on failure throws `CVLAN_ERR_TUN` "`what`: <ip's stderr>". */
export async function ip(args: readonly string[], what: string, o: { netns?: string | undefined } = {}): Promise<void> {
  try {
    await exec('ip', [...(o.netns ? ['-n', o.netns] : []), ...args]);
  } catch (e) {
    throw new CvlanError('CVLAN_ERR_TUN', `${what}: ${String((e as { stderr?: string }).stderr ?? e).trim()}`);
  }
}

/** The `ip route` arguments that add (replace) or delete `prefix` on `dev`; IPv6 prefixes get `-6`. */
export function routeArgs(action: 'add' | 'remove', prefix: string, dev: string): string[] {
  return [...(prefix.includes(':') ? ['-6'] : []), 'route', action === 'add' ? 'replace' : 'del', prefix, 'dev', dev];
}

/** Routes `prefix` into `dev` (replacing any route of that prefix), in `netns` when given. */
export async function addRoute(prefix: string, dev: string, o: { netns?: string | undefined } = {}): Promise<void> {
  await ip(routeArgs('add', prefix, dev), `cannot route ${prefix} into ${dev}`, o);
}

/**
 * Routes every prefix into `dev` (replacing routes of those prefixes) with one `ip -batch`: one
 * process however many prefixes, where a spawn each made start-up grow with the tunnel count.
 */
export async function addRoutes(prefixes: readonly string[], dev: string): Promise<void> {
  if (prefixes.length === 0) return;
  // In a batch the family follows from each prefix (no `-6` per line).
  const stderr = await ipBatch(prefixes.map((p) => `route replace ${p} dev ${dev}\n`).join(''), false);
  if (stderr !== undefined) throw new CvlanError('CVLAN_ERR_TUN', `cannot route ${prefixes.length === 1 ? prefixes[0] : `${prefixes.length} prefixes`} into ${dev}: ${stderr.trim()}`);
}

/** Removes the routes of `prefixes` on `dev` with one `ip -force -batch`; routes already gone are no error. */
export async function removeRoutes(prefixes: readonly string[], dev: string): Promise<void> {
  if (prefixes.length === 0) return;
  await ipBatch(prefixes.map((p) => `route del ${p} dev ${dev}\n`).join(''), true);
}

/** Runs `script` through `ip [-force] -batch -`; resolves to ip's stderr when it failed, else undefined. */
async function ipBatch(script: string, force: boolean): Promise<string | undefined> {
  return new Promise<string | undefined>((resolve, reject) => {
    // -force: carry on past a failed line (a route already gone) instead of stopping there.
    const child = spawn('ip', [...(force ? ['-force'] : []), '-batch', '-'], { stdio: ['pipe', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve(code === 0 ? undefined : err));
    child.stdin.end(script);
  }).catch((e: unknown) => String(e));
}

/** Removes the route of `prefix` on `dev`; a route already gone is no error. */
export async function removeRoute(prefix: string, dev: string): Promise<void> {
  await ip(routeArgs('remove', prefix, dev), `cannot remove the route ${prefix} on ${dev}`).catch(() => undefined);
}
