/**
 * A Lab is one test's private piece of network: namespaces, veth pairs, bridges, addresses,
 * routes, sysctls, nftables tables, processes and temp files. It records an undo step for every
 * object it creates and `teardown()` replays them in reverse. A process-wide registry replays
 * every live lab on normal exit, on an uncaught exception and on SIGINT/SIGTERM/SIGHUP, so an
 * interrupted test run leaves nothing behind.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LabError } from './errors.js';
import { run, runSync, type RunOptions, type RunResult } from './exec.js';
import { ifName, randomSuffix } from './names.js';
import { LabProcess, alive, type SpawnOptions } from './process.js';
import { tools } from './tools.js';

/** One end of a link: the namespace it lives in (undefined = the harness's own) and its name. */
export interface LinkEnd {
  ns: string | undefined;
  name: string;
}

export interface VethEnd {
  /** Namespace of this end; undefined = the harness's own namespace. */
  ns: string | undefined;
  /** Interface name; default a unique `v<suffix>` name. At most 15 characters. */
  name?: string;
  /** Addresses in CIDR form, IPv4 or IPv6 (IPv6 is added with `nodad` so it is usable at once). */
  addresses?: string[];
}

export interface RouteOptions {
  via?: string;
  dev?: string;
  src?: string;
  /** Routing table; default main. */
  table?: string | number;
  metric?: number;
}

export interface TeardownReport {
  /** Undo steps that failed (the object may be left behind); empty on a clean teardown. */
  errors: string[];
}

interface Undo {
  what: string;
  sync: () => void;
  async?: () => Promise<void>;
}

const live = new Set<Lab>();
let handlersInstalled = false;

function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', teardownAllSync);
  // The monitor variant observes without changing Node's own crash behaviour.
  process.on('uncaughtExceptionMonitor', teardownAllSync);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const handler = (): void => {
      teardownAllSync();
      process.removeListener(sig, handler);
      // Re-raise so the default action (or another listener, e.g. the test runner's) still applies.
      process.kill(process.pid, sig);
    };
    process.on(sig, handler);
  }
}

/** Tears down every lab of this process synchronously; used by the exit and signal handlers. */
export function teardownAllSync(): void {
  for (const lab of [...live].reverse()) lab.teardownSync();
}

/** Labs not yet torn down in this process. */
export function liveLabs(): readonly Lab[] {
  return [...live];
}

export interface LabOptions {
  /** Short word used in namespace names (`cvl-<label>-<suffix>`) and the temp dir. Default `lab`. */
  label?: string;
}

export class Lab {
  /** Random suffix shared by this lab's names. */
  readonly id: string;
  readonly label: string;
  /** Private temp directory (mode 0700), removed on teardown. */
  readonly dir: string;
  readonly namespaces: string[] = [];
  readonly processes: LabProcess[] = [];
  private readonly undos: Undo[] = [];
  private state: 'up' | 'down' = 'up';

  private constructor(label: string) {
    this.label = label;
    this.id = randomSuffix(5);
    this.dir = mkdtempSync(join(tmpdir(), `cvlan-lab-${label}-`));
    this.push({ what: `remove ${this.dir}`, sync: () => rmSync(this.dir, { recursive: true, force: true }) });
  }

  static create(opts: LabOptions = {}): Lab {
    const label = opts.label ?? 'lab';
    if (!/^[a-z0-9]{1,12}$/.test(label)) throw new LabError('CVLAN_LAB_ARG', `lab label ${label}: 1-12 of [a-z0-9]`);
    installHandlers();
    const lab = new Lab(label);
    live.add(lab);
    return lab;
  }

  get tornDown(): boolean {
    return this.state === 'down';
  }

  private assertUp(): void {
    if (this.state !== 'up') throw new LabError('CVLAN_LAB_TORN_DOWN');
  }

  private push(u: Undo): void {
    this.undos.push(u);
  }

  /**
   * Registers a cleanup step run at teardown, in reverse order with the lab's own steps. `sync`
   * must work without the event loop (it also runs from exit handlers); `async` is preferred
   * when present.
   */
  onTeardown(what: string, sync: () => void, async?: () => Promise<void>): void {
    this.assertUp();
    this.push(async !== undefined ? { what, sync, async } : { what, sync });
  }

  /** A fresh interface name `<prefix><random>`; the prefix may be up to 10 characters. */
  ifname(prefix = 'cv'): string {
    return ifName(prefix, randomSuffix(15 - prefix.length > 5 ? 5 : 15 - prefix.length));
  }

  /** Runs a short command inside `ns` (or the harness's namespace). */
  exec(ns: string | undefined, cmd: string, args: readonly string[], opts: Omit<RunOptions, 'ns'> = {}): Promise<RunResult> {
    return run(cmd, args, { ...opts, ns });
  }

  /** `ip [-n ns] args`. */
  ip(ns: string | undefined, args: readonly string[], opts: Omit<RunOptions, 'ns'> = {}): Promise<RunResult> {
    return run(tools.ip, ns === undefined ? args : ['-n', ns, ...args], opts);
  }

  /** Creates a network namespace `cvl-<label>-<lab id>-<word>` with loopback up. */
  async namespace(word = 'ns'): Promise<string> {
    this.assertUp();
    const name = `cvl-${this.label}-${this.id}-${word}-${randomSuffix(3)}`;
    await run(tools.ip, ['netns', 'add', name]);
    this.namespaces.push(name);
    this.push({
      what: `delete netns ${name}`,
      sync: () => {
        killNamespacePids(name);
        const r = runSync(tools.ip, ['netns', 'del', name]);
        if (r.code !== 0 && !/No such file|Cannot remove/.test(r.stderr)) throw new Error(r.stderr.trim());
      },
    });
    await this.ip(name, ['link', 'set', 'lo', 'up']);
    return name;
  }

  /** A veth pair between two namespaces, both ends up, with optional addresses and MTU (bytes, default kernel's 1500). */
  async veth(a: VethEnd, b: VethEnd, opts: { mtu?: number } = {}): Promise<[LinkEnd, LinkEnd]> {
    this.assertUp();
    const an = a.name ?? this.ifname('v');
    const bn = b.name ?? this.ifname('v');
    const args = ['link', 'add', an];
    if (a.ns !== undefined) args.push('netns', a.ns);
    if (opts.mtu !== undefined) args.push('mtu', String(opts.mtu));
    args.push('type', 'veth', 'peer', 'name', bn);
    if (b.ns !== undefined) args.push('netns', b.ns);
    if (opts.mtu !== undefined) args.push('mtu', String(opts.mtu));
    await this.ip(undefined, args);
    this.pushLinkUndo({ ns: a.ns, name: an });
    const ends: [LinkEnd, LinkEnd] = [
      { ns: a.ns, name: an },
      { ns: b.ns, name: bn },
    ];
    for (const [end, spec] of [
      [ends[0], a],
      [ends[1], b],
    ] as const) {
      for (const cidr of spec.addresses ?? []) await this.addAddress(end.ns, end.name, cidr);
      await this.ip(end.ns, ['link', 'set', end.name, 'up']);
    }
    return ends;
  }

  /** A Linux bridge, up, with optional addresses. */
  async bridge(ns: string | undefined, opts: { name?: string; addresses?: string[] } = {}): Promise<LinkEnd> {
    this.assertUp();
    const name = opts.name ?? this.ifname('br');
    await this.ip(ns, ['link', 'add', name, 'type', 'bridge']);
    this.pushLinkUndo({ ns, name });
    for (const cidr of opts.addresses ?? []) await this.addAddress(ns, name, cidr);
    await this.ip(ns, ['link', 'set', name, 'up']);
    return { ns, name };
  }

  /** Enslaves an interface to a bridge. */
  async attach(port: LinkEnd, bridge: LinkEnd): Promise<void> {
    await this.ip(port.ns, ['link', 'set', port.name, 'master', bridge.name]);
  }

  private pushLinkUndo(end: LinkEnd): void {
    this.push({
      what: `delete link ${end.name}${end.ns !== undefined ? ` in ${end.ns}` : ''}`,
      sync: () => {
        const r = runSync(tools.ip, end.ns === undefined ? ['link', 'del', end.name] : ['-n', end.ns, 'link', 'del', end.name]);
        // gone with its peer or its namespace already: fine
        if (r.code !== 0 && !/Cannot find device|does not exist|No such file|Invalid netns/i.test(r.stderr)) {
          throw new Error(r.stderr.trim());
        }
      },
    });
  }

  async addAddress(ns: string | undefined, dev: string, cidr: string): Promise<void> {
    const v6 = cidr.includes(':');
    await this.ip(ns, [...(v6 ? ['-6'] : []), 'addr', 'add', cidr, 'dev', dev, ...(v6 ? ['nodad'] : [])]);
  }

  async addRoute(ns: string | undefined, dest: string, r: RouteOptions): Promise<void> {
    this.assertUp();
    const spec = [dest];
    if (r.via !== undefined) spec.push('via', r.via);
    if (r.dev !== undefined) spec.push('dev', r.dev);
    if (r.src !== undefined) spec.push('src', r.src);
    if (r.table !== undefined) spec.push('table', String(r.table));
    if (r.metric !== undefined) spec.push('metric', String(r.metric));
    const fam = dest.includes(':') || (r.via?.includes(':') ?? false) ? ['-6'] : [];
    await this.ip(ns, [...fam, 'route', 'add', ...spec]);
    if (ns === undefined) {
      // routes inside a lab namespace die with it; only the harness's own table needs an undo
      this.push({ what: `delete route ${dest}`, sync: () => void runSync(tools.ip, [...fam, 'route', 'del', ...spec]) });
    }
  }

  /** Sets a sysctl in `ns`; in the harness's own namespace the old value is restored at teardown. */
  async sysctl(ns: string | undefined, key: string, value: string): Promise<void> {
    this.assertUp();
    const path = `/proc/sys/${key.replace(/\./g, '/')}`;
    if (ns === undefined) {
      const old = (await run('cat', [path])).stdout.trim();
      this.push({ what: `restore ${key}=${old}`, sync: () => void runSync('sh', ['-c', `echo ${old} > ${path}`]) });
    }
    // `ip netns exec` remounts /proc/sys for the namespace, so a write there is per namespace
    await run('sh', ['-c', `echo ${value} > ${path}`], { ns });
  }

  /** Turns on IPv4 and IPv6 forwarding in `ns` (a router). */
  async forwarding(ns: string): Promise<void> {
    await this.sysctl(ns, 'net.ipv4.ip_forward', '1');
    await this.sysctl(ns, 'net.ipv6.conf.all.forwarding', '1');
  }

  /** Writes a file into the lab's temp dir (mode 0600 by default) and returns its path. */
  writeFile(name: string, content: string | Uint8Array, mode = 0o600): string {
    this.assertUp();
    if (name.includes('/') || name.startsWith('.')) throw new LabError('CVLAN_LAB_ARG', `file name ${name}`);
    const path = join(this.dir, name);
    writeFileSync(path, content, { mode });
    return path;
  }

  /** Starts a long-lived process; it is stopped by PID at teardown. */
  spawn(name: string, cmd: string, args: readonly string[], opts: SpawnOptions = {}): LabProcess {
    this.assertUp();
    const p = new LabProcess(name, cmd, args, opts);
    this.processes.push(p);
    this.push({ what: `stop ${name} (pid ${p.pid})`, sync: () => p.stopSync(), async: async () => void (await p.stop()) });
    return p;
  }

  /** Every PID this lab started that is still alive (for leak checks). */
  livePids(): number[] {
    return this.processes.filter((p) => p.running && alive(p.pid)).map((p) => p.pid);
  }

  /** Undoes everything in reverse order. Idempotent; never throws, reports failures instead. */
  async teardown(): Promise<TeardownReport> {
    if (this.state === 'down') return { errors: [] };
    this.state = 'down';
    const errors: string[] = [];
    while (this.undos.length > 0) {
      const u = this.undos.pop() as Undo;
      try {
        if (u.async !== undefined) await u.async();
        else u.sync();
      } catch (err) {
        errors.push(`${u.what}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    live.delete(this);
    return { errors };
  }

  /** Synchronous teardown for exit/signal handlers. */
  teardownSync(): TeardownReport {
    if (this.state === 'down' && this.undos.length === 0) return { errors: [] };
    this.state = 'down';
    const errors: string[] = [];
    while (this.undos.length > 0) {
      const u = this.undos.pop() as Undo;
      try {
        u.sync();
      } catch (err) {
        errors.push(`${u.what}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    live.delete(this);
    return { errors };
  }
}

/**
 * Anything still running inside a lab namespace is the lab's (the names are unique), including
 * grandchildren the lab never saw (charon's updown scripts): kill them so the namespace really goes.
 */
function killNamespacePids(ns: string): void {
  const r = runSync(tools.ip, ['netns', 'pids', ns]);
  if (r.code !== 0) return;
  for (const s of r.stdout.split(/\s+/)) {
    const pid = Number(s);
    if (!Number.isInteger(pid) || pid <= 1 || pid === process.pid) continue;
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // raced with its own exit
    }
  }
}

/** Runs `fn` with a fresh lab and always tears it down, also when `fn` throws. */
export async function withLab<T>(fn: (lab: Lab) => Promise<T>, opts: LabOptions = {}): Promise<T> {
  const lab = Lab.create(opts);
  try {
    return await fn(lab);
  } finally {
    await lab.teardown();
  }
}
