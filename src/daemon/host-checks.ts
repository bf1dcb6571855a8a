/**
 * What the vrouter needs from the host it runs on, checked instead of assumed.
 *
 * Kernel settings (IP forwarding, reverse-path filtering) belong to whoever runs the vrouter: in a
 * container `/proc/sys` is mounted read-only, on a hardened host a unit may not touch it. So each
 * setting is read first; it is written only when it is wrong and the file is writable, and when
 * it stays wrong the report names the exact command that fixes it. Nothing here is fatal: the
 * translated WireGuard ⇄ IPsec path runs in the workers and needs none of these settings; only
 * packets that cross the host's own IP stack (local subnets, the vrouter's own addresses) do.
 *
 * The probe of the process's capabilities also lives here; the charon supervisor uses it to
 * decide whether charon can get a private /run.
 */

import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';

export interface HostCheck {
  /** The sysctl key, e.g. `net.ipv4.ip_forward`. */
  setting: string;
  /** What the vrouter needs it to be. */
  want: string;
  /** What it was when read (undefined: not present, e.g. IPv6 disabled). */
  found: string | undefined;
  /** ok: as needed (`changed` when the vrouter set it); otherwise the fix in `fix`. */
  ok: boolean;
  changed: boolean;
  /** Why a write was not done or failed (EROFS, EACCES, ...). */
  reason?: string;
  /** The exact command(s) that fix it on the host (and for a container). */
  fix?: string;
}

export interface HostCheckLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

export interface HostCheckOptions {
  /** Root of the sysctl tree; tests point it at a directory of their own. Default /proc/sys. */
  procSys?: string;
  /** Whether writing a wrong setting may be tried at all. Default true. */
  write?: boolean;
}

interface Wanted {
  setting: string;
  want: string;
  accept: (v: string) => boolean;
  /** Settings that may be written: forwarding yes; rp_filter never (see below). */
  writable: boolean;
}

/**
 * Forwarding must be on. rp_filter must not be strict (1): decapsulated packets arrive on a TUN
 * device with sources that are routed out of another device, and strict mode drops exactly those.
 * The kernel applies max(all, <device>), so `all` and `default` (which new TUN devices inherit)
 * decide; changing them affects every interface of the host, so the vrouter only reports them.
 */
const WANTED: readonly Wanted[] = [
  { setting: 'net.ipv4.ip_forward', want: '1', accept: (v) => v === '1', writable: true },
  { setting: 'net.ipv6.conf.all.forwarding', want: '1', accept: (v) => v === '1', writable: true },
  { setting: 'net.ipv4.conf.all.rp_filter', want: '0 or 2', accept: (v) => v !== '1', writable: false },
  { setting: 'net.ipv4.conf.default.rp_filter', want: '0 or 2', accept: (v) => v !== '1', writable: false },
];

function fixFor(setting: string, want: string): string {
  const value = want === '1' ? '1' : '2';
  return (
    `sysctl -w ${setting}=${value} (persist: echo '${setting} = ${value}' > /etc/sysctl.d/90-cvlan.conf); ` +
    `in a container: docker run --sysctl ${setting}=${value} ...`
  );
}

/** Reads, where needed and allowed corrects, and reports the kernel settings the vrouter relies on. */
export function checkHostNetworking(opts: HostCheckOptions = {}): HostCheck[] {
  const root = opts.procSys ?? '/proc/sys';
  const results: HostCheck[] = [];
  for (const w of WANTED) {
    const file = `${root}/${w.setting.replace(/\./g, '/')}`;
    let found: string | undefined;
    try {
      found = readFileSync(file, 'utf8').trim();
    } catch {
      found = undefined;
    }
    const base = { setting: w.setting, want: w.want, found };
    // A missing IPv6 tree means IPv6 is off on this host: nothing to forward, nothing to fix.
    if (found === undefined) {
      const ipv6Off = w.setting.startsWith('net.ipv6.');
      results.push(ipv6Off ? { ...base, ok: true, changed: false } : { ...base, ok: false, changed: false, reason: `cannot read ${file}`, fix: fixFor(w.setting, w.want) });
      continue;
    }
    if (w.accept(found)) {
      results.push({ ...base, ok: true, changed: false });
      continue;
    }
    if (!w.writable || opts.write === false) {
      results.push({ ...base, ok: false, changed: false, reason: w.writable ? 'writing disabled' : 'host-wide setting, left to the host', fix: fixFor(w.setting, w.want) });
      continue;
    }
    try {
      writeFileSync(file, `${w.want}\n`);
      results.push({ ...base, ok: true, changed: true });
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
      results.push({ ...base, ok: false, changed: false, reason: `cannot write ${file}: ${code}`, fix: fixFor(w.setting, w.want) });
    }
  }
  return results;
}

/** Logs one line per setting that was changed or needs the host's attention. */
export function reportHostNetworking(checks: readonly HostCheck[], logger: HostCheckLogger): void {
  for (const c of checks) {
    if (c.changed) logger.info({ setting: c.setting, was: c.found, now: c.want }, 'host setting changed');
    else if (!c.ok) {
      logger.warn(
        { setting: c.setting, found: c.found ?? null, want: c.want, reason: c.reason, fix: c.fix },
        'host setting needs a change: traffic that crosses the host IP stack (local subnets, the vrouter itself) may be dropped',
      );
    }
  }
}

/** Linux capability numbers used here (linux/capability.h). */
export const CAP = { NET_ADMIN: 12, NET_RAW: 13, SYS_ADMIN: 21 } as const;

/** Whether the process holds `cap` in its effective set (from /proc/self/status). */
export function hasCapability(cap: number, status?: string): boolean {
  let text = status;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/self/status', 'utf8');
    } catch {
      return false;
    }
  }
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(text);
  if (!m) return false;
  return ((BigInt(`0x${m[1]}`) >> BigInt(cap)) & 1n) === 1n;
}

let privateRunProbe: boolean | undefined;

/**
 * Whether charon can be given a private /run (`unshare -m` + a tmpfs mount). That is only needed
 * when several charons share one host (tests); it needs CAP_SYS_ADMIN, which containers and the
 * hardened systemd unit do not grant, and a seccomp or LSM profile may refuse it even then, so it
 * is tried once (a throw-away mount namespace) rather than inferred from a container marker:
 * a privileged container can, a plain one cannot. `CVLAN_CHARON_PRIVATE_RUN=0|1` overrides.
 */
export function charonPrivateRunPossible(env: NodeJS.ProcessEnv = process.env): boolean {
  const forced = env.CVLAN_CHARON_PRIVATE_RUN;
  if (forced === '0' || forced === '1') return forced === '1';
  if (!hasCapability(CAP.SYS_ADMIN)) return false;
  privateRunProbe ??= spawnSync('unshare', ['-m', '--propagation', 'private', 'mount', '-t', 'tmpfs', 'cvlan-probe', '/run'], { stdio: 'ignore', timeout: 5000 }).status === 0;
  return privateRunProbe;
}
