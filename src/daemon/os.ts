/**
 * The host plumbing a vrouter needs besides its devices: `ip` for links, addresses and routes,
 * and the forwarding sysctls. Every failure is a `CVLAN_ERR_TUN` that names what was being done
 * and carries `ip`'s own message.
 */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
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

/** Removes the route of `prefix` on `dev`; a route already gone is no error. */
export async function removeRoute(prefix: string, dev: string): Promise<void> {
  await ip(routeArgs('remove', prefix, dev), `cannot remove the route ${prefix} on ${dev}`).catch(() => undefined);
}

/** Lets this namespace's IP stack forward between the devices (one-tenant vrouters only). */
export function enableForwarding(): void {
  writeFileSync('/proc/sys/net/ipv4/ip_forward', '1\n');
  writeFileSync('/proc/sys/net/ipv6/conf/all/forwarding', '1\n');
}
