// Two network namespaces joined by a veth pair, each with an "inner" address on lo for traffic
// that goes through the tunnel. Names carry a random suffix so parallel runs do not collide;
// destroy() removes everything it created and is safe to call more than once or after a half setup.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';

const exec = promisify(execFile);

export async function run(cmd: string, args: string[], timeoutMs = 15_000): Promise<{ stdout: string; stderr: string }> {
  return exec(cmd, args, { timeout: timeoutMs });
}

export async function inNs(ns: string, cmd: string, args: string[], timeoutMs?: number): Promise<{ stdout: string; stderr: string }> {
  return run('ip', ['netns', 'exec', ns, cmd, ...args], timeoutMs);
}

export interface Host {
  ns: string;
  /** Address on the veth (the IKE endpoint). */
  underlay: string;
  /** Address on lo inside the protected subnet. */
  inner: string;
  innerSubnet: string;
}

export interface TwoHosts {
  a: Host;
  b: Host;
  destroy(): Promise<void>;
}

export function suffix(): string {
  return randomBytes(3).toString('hex');
}

export async function createTwoHosts(): Promise<TwoHosts> {
  const id = suffix();
  // Documentation prefixes (RFC 5737): cannot clash with anything routed on the host.
  const a: Host = { ns: `cvtA-${id}`, underlay: '192.0.2.1', inner: '198.51.100.1', innerSubnet: '198.51.100.0/24' };
  const b: Host = { ns: `cvtB-${id}`, underlay: '192.0.2.2', inner: '203.0.113.1', innerSubnet: '203.0.113.0/24' };
  const vethA = `cva${id}`; // ≤ 15 chars
  const vethB = `cvb${id}`;
  const created: string[] = [];
  const destroy = async (): Promise<void> => {
    for (const ns of created.splice(0).reverse()) {
      // Deleting the namespace removes the veth pair and everything inside it.
      await run('ip', ['netns', 'del', ns]).catch(() => undefined);
    }
    await run('ip', ['link', 'del', vethA]).catch(() => undefined);
  };
  try {
    for (const h of [a, b]) {
      await run('ip', ['netns', 'add', h.ns]);
      created.push(h.ns);
    }
    await run('ip', ['link', 'add', vethA, 'type', 'veth', 'peer', 'name', vethB]);
    await run('ip', ['link', 'set', vethA, 'netns', a.ns]);
    await run('ip', ['link', 'set', vethB, 'netns', b.ns]);
    for (const [h, dev] of [[a, vethA], [b, vethB]] as const) {
      await inNs(h.ns, 'ip', ['link', 'set', 'lo', 'up']);
      await inNs(h.ns, 'ip', ['addr', 'add', `${h.underlay}/24`, 'dev', dev]);
      await inNs(h.ns, 'ip', ['link', 'set', dev, 'up']);
      await inNs(h.ns, 'ip', ['addr', 'add', `${h.inner}/32`, 'dev', 'lo']);
    }
  } catch (err) {
    await destroy();
    throw err;
  }
  return { a, b, destroy };
}
